//! RTCP and RTP helpers of the relay pipeline for RTCP reporting: the RTP payload
//! length a sender report counts, the feedback filter of terminated RTCP, and the
//! media-SSRC mapping inside relayed RTCP. All work on plaintext packets in place
//! and never index past the slice, whatever its length fields say.

/// RTP payload length of a checked plaintext packet: minus header, CSRCs,
/// extension and padding (0 when the numbers do not add up).
#[inline]
pub(crate) fn rtp_payload_len(pkt: &[u8]) -> usize {
    let Some(&b0) = pkt.first() else { return 0 };
    let mut hdr = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = pkt
            .get(hdr + 2..hdr + 4)
            .map_or(0, |w| usize::from(u16::from_be_bytes([w[0], w[1]])));
        hdr += 4 + 4 * words;
    }
    let pad = if b0 & 0x20 != 0 {
        pkt.last().map_or(0, |&p| usize::from(p))
    } else {
        0
    };
    pkt.len().saturating_sub(hdr + pad)
}

/// Moves the feedback packets (RTPFB, PSFB) of a plaintext compound to its
/// front and returns their total length (0: nothing to relay).
pub(crate) fn keep_feedback(pkt: &mut [u8]) -> usize {
    let (mut at, mut kept) = (0, 0);
    while at + 4 <= pkt.len() {
        let words = usize::from(u16::from_be_bytes([pkt[at + 2], pkt[at + 3]]));
        let end = (at + 4 * (words + 1)).min(pkt.len());
        if matches!(pkt[at + 1], 205 | 206) {
            pkt.copy_within(at..end, kept);
            kept += end - at;
        }
        at = end;
    }
    kept
}

/// Replaces media SSRC `from` by `to` where a plaintext compound names the
/// source it reports on: SR/RR report blocks, the media SSRC of RTPFB/PSFB, FIR
/// entries and the REMB SSRC list.
pub(crate) fn map_media_ssrc(pkt: &mut [u8], from: u32, to: u32) {
    let (from, to) = (from.to_be_bytes(), to.to_be_bytes());
    let swap = |pkt: &mut [u8], at: usize| {
        if pkt.get(at..at + 4) == Some(&from[..]) {
            pkt[at..at + 4].copy_from_slice(&to);
        }
    };
    let mut at = 0;
    while at + 8 <= pkt.len() {
        let count = usize::from(pkt[at] & 0x1f);
        let pt = pkt[at + 1];
        let words = usize::from(u16::from_be_bytes([pkt[at + 2], pkt[at + 3]]));
        let end = (at + 4 * (words + 1)).min(pkt.len());
        match pt {
            200 | 201 => {
                let first = at + if pt == 200 { 28 } else { 8 };
                for i in 0..count {
                    let b = first + 24 * i;
                    if b + 24 > end {
                        break;
                    }
                    swap(pkt, b);
                }
            }
            205 | 206 => {
                // A feedback packet too short for a media SSRC must not reach
                // into the next packet of the compound.
                if at + 12 <= end {
                    swap(pkt, at + 8);
                }
                if pt == 206 && count == 4 {
                    // FIR: entries of (SSRC, seq) after the common part.
                    let mut e = at + 12;
                    while e + 8 <= end {
                        swap(pkt, e);
                        e += 8;
                    }
                } else if pt == 206 && count == 15 && pkt.get(at + 12..at + 16) == Some(b"REMB") {
                    let n = usize::from(pkt.get(at + 16).copied().unwrap_or(0));
                    for i in 0..n {
                        let e = at + 20 + 4 * i;
                        if e + 4 > end {
                            break;
                        }
                        swap(pkt, e);
                    }
                }
            }
            _ => {}
        }
        at = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rr_block(media: u32) -> Vec<u8> {
        // RR (1 block) + PLI + SDES-less REMB with two SSRCs + FIR with one entry.
        let mut p = vec![0x81, 201, 0, 7, 0, 0, 0, 9];
        p.extend_from_slice(&media.to_be_bytes());
        p.extend_from_slice(&[0; 20]);
        p.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 9]);
        p.extend_from_slice(&media.to_be_bytes());
        p.extend_from_slice(&[0x8f, 206, 0, 6, 0, 0, 0, 9, 0, 0, 0, 0]);
        p.extend_from_slice(b"REMB");
        p.extend_from_slice(&[2, 0, 0, 1]);
        p.extend_from_slice(&media.to_be_bytes());
        p.extend_from_slice(&7u32.to_be_bytes());
        p.extend_from_slice(&[0x84, 206, 0, 4, 0, 0, 0, 9, 0, 0, 0, 0]);
        p.extend_from_slice(&media.to_be_bytes());
        p.extend_from_slice(&[1, 0, 0, 0]);
        p
    }

    #[test]
    fn maps_blocks_feedback_remb_and_fir() {
        let mut p = rr_block(0xAAAA);
        map_media_ssrc(&mut p, 0xAAAA, 0xBBBB);
        let n = p
            .windows(4)
            .filter(|w| *w == 0xBBBBu32.to_be_bytes())
            .count();
        assert_eq!(n, 4, "RR block, PLI media, REMB entry, FIR entry");
        assert!(!p.windows(4).any(|w| w == 0xAAAAu32.to_be_bytes()));
    }

    /// A feedback packet whose length field leaves no room for the media SSRC:
    /// the bytes after it belong to the next packet and are left alone.
    #[test]
    fn short_feedback_does_not_rewrite_the_next_packet() {
        // PLI of one word (sender SSRC only), then a BYE whose header words,
        // read as an SSRC, equal the SSRC being mapped.
        let bye = [0x81, 203, 0, 1, 0, 0, 0, 9];
        let mut p = vec![0x81, 206, 0, 1, 0, 0, 0, 9];
        p.extend_from_slice(&bye);
        let before = p.clone();
        map_media_ssrc(&mut p, u32::from_be_bytes([0x81, 203, 0, 1]), 0xBBBB);
        assert_eq!(p, before);
    }

    #[test]
    fn keeps_only_feedback() {
        let mut p = rr_block(1);
        let n = keep_feedback(&mut p);
        assert_eq!(n, 12 + 28 + 20);
        assert_eq!((p[1], p[13], p[41]), (206, 206, 206));
    }

    #[test]
    fn payload_length() {
        let mut p = vec![0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        p.extend_from_slice(&[0; 160]);
        assert_eq!(rtp_payload_len(&p), 160);
        // CSRC + extension of one word + 4 bytes of padding
        let mut q = vec![
            0xb1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 1, 2, 3, 4,
        ];
        q.extend_from_slice(&[9; 20]);
        q.extend_from_slice(&[0, 0, 0, 4]);
        assert_eq!(rtp_payload_len(&q), 20);
        assert_eq!(rtp_payload_len(&[]), 0);
        assert_eq!(rtp_payload_len(&[0x8f, 0]), 0);
    }

    /// Random bytes with random length fields: nothing panics, the feedback
    /// filter never grows the packet.
    #[test]
    fn lying_lengths_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let len = (next() % 80) as usize;
            let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if len > 1 && next() % 2 == 0 {
                p[1] = [200, 201, 205, 206][(next() % 4) as usize];
            }
            let mut q = p.clone();
            map_media_ssrc(&mut p, next() as u32, 5);
            let _ = rtp_payload_len(&p);
            assert!(keep_feedback(&mut q) <= len);
        }
    }
}
