//! RFC 7983 demultiplexing of the datagrams that share one 5-tuple (STUN, ZRTP,
//! DTLS, TURN channel data, RTP, RTCP), with RFC 5761 RTP/RTCP separation.

/// What a datagram is, judged by its first two bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketKind {
    /// First byte 0..=3.
    Stun,
    /// First byte 16..=19.
    Zrtp,
    /// First byte 20..=63.
    Dtls,
    /// First byte 64..=79.
    TurnChannel,
    /// First byte 128..=191 and second byte outside 192..=223.
    Rtp,
    /// First byte 128..=191 and second byte 192..=223 (RTCP packet types; RTP
    /// payload types 64..=95 with the marker set, which RFC 5761 forbids when
    /// multiplexing).
    Rtcp,
    /// Anything else, including datagrams too short to tell.
    Unknown,
}

/// Classifies a datagram (RFC 7983 section 7, RFC 5761 section 4). Never panics;
/// an empty buffer, or an RTP/RTCP first byte with no second byte, is `Unknown`.
#[inline]
pub fn classify(buf: &[u8]) -> PacketKind {
    match buf {
        [0..=3, ..] => PacketKind::Stun,
        [16..=19, ..] => PacketKind::Zrtp,
        [20..=63, ..] => PacketKind::Dtls,
        [64..=79, ..] => PacketKind::TurnChannel,
        [128..=191, 192..=223, ..] => PacketKind::Rtcp,
        [128..=191, _, ..] => PacketKind::Rtp,
        _ => PacketKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_every_range_boundary() {
        // RFC 7983 section 7 table, both ends of each range, and the gaps.
        let cases: &[(&[u8], PacketKind)] = &[
            (&[], PacketKind::Unknown),
            (&[0], PacketKind::Stun),
            (&[3, 0], PacketKind::Stun),
            (&[4], PacketKind::Unknown),
            (&[15], PacketKind::Unknown),
            (&[16], PacketKind::Zrtp),
            (&[19], PacketKind::Zrtp),
            (&[20], PacketKind::Dtls),
            (&[22, 0xfe, 0xfd], PacketKind::Dtls), // DTLS 1.2 handshake record
            (&[63], PacketKind::Dtls),
            (&[64], PacketKind::TurnChannel),
            (&[79], PacketKind::TurnChannel),
            (&[80], PacketKind::Unknown),
            (&[127, 0], PacketKind::Unknown),
            (&[128], PacketKind::Unknown), // too short to split RTP from RTCP
            (&[0x80, 0x00], PacketKind::Rtp), // PT 0 (PCMU)
            (&[0x80, 0xe0], PacketKind::Rtp), // marker + PT 96
            (&[0x80, 0xbf], PacketKind::Rtp), // marker + PT 63
            (&[0x80, 0xc0], PacketKind::Rtcp), // 192 (FIR, historic)
            (&[0x80, 0xc8], PacketKind::Rtcp), // 200 SR
            (&[0x81, 0xc9], PacketKind::Rtcp), // 201 RR with one block
            (&[0x8f, 0xce], PacketKind::Rtcp), // 206 PSFB
            (&[0xbf, 0xdf], PacketKind::Rtcp), // 223, top of the range
            (&[0x80, 0xe0 - 1], PacketKind::Rtcp),
            (&[191, 0x60], PacketKind::Rtp),
            (&[192, 0xc8], PacketKind::Unknown),
            (&[255], PacketKind::Unknown),
        ];
        for &(buf, want) in cases {
            assert_eq!(classify(buf), want, "{buf:02x?}");
        }
    }
}
