use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn rfc3711_b3_key_derivation() {
    // RFC 3711 Appendix B.3.
    let mk = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let ms = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut enc = [0u8; 16];
    kdf(&mk, &ms, 0, &mut enc);
    assert_eq!(enc.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut salt = [0u8; 14];
    kdf(&mk, &ms, 2, &mut salt);
    assert_eq!(salt.to_vec(), hex("30CBBC08863D8C85D49DB34A9AE1"));
    let mut auth = [0u8; 20];
    kdf(&mk, &ms, 1, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("CEBE321F6FF7716B6FD4AB49AF256A156D38BAA4")
    );
}

#[test]
fn rfc3711_b2_aes_cm_keystream() {
    // RFC 3711 Appendix B.2: session key and salt given, SSRC 0 and index 0, so the
    // IV is salt || 0000; encrypting zeros yields the keystream.
    let keys = SessionKeys {
        cipher: Cipher::Cm128(Box::new(Aes128::new(
            hex("2B7E151628AED2A6ABF7158809CF4F3C").as_slice().into(),
        ))),
        salt: hex("F0F1F2F3F4F5F6F7F8F9FAFBFCFD").try_into().unwrap(),
        auth: HmacSha1Key::unused(),
        tag_len: 0,
    };
    let mut ks = [0u8; 48];
    keys.ctr_xor(0, 0, &mut ks);
    assert_eq!(
        ks.to_vec(),
        hex(
            "E03EAD0935C95E80E166B16DD92B4EB4 D23513162B02D0F72A43A2FE4A5F97AB
             41E95B3BB0A2E8DD477901E4FCA894C0"
        )
    );
}

#[test]
fn libsrtp_reference_packet_aes_cm_128_80() {
    // The reference packet of libsrtp's test driver (srtp_driver.c,
    // srtp_validate): master key/salt = the RFC 3711 B.3 values, header
    // 800f1234 decafbad cafebabe, payload abababab x4.
    let key_salt = hex("e1f97a0d3e018be0d64fa32c06de41390ec675ad498afeebb6960b3aabe6");
    let cfg = SrtpConfig::from_key_salt(SrtpProfile::AesCm128HmacSha1_80, &key_salt).unwrap();
    let mut tx = SrtpContext::new(cfg.clone()).unwrap();
    let mut buf = [0u8; 64];
    let plain = hex("800f1234decafbadcafebabeabababababababababababababababab");
    buf[..plain.len()].copy_from_slice(&plain);
    let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
    let want = hex("800f1234decafbadcafebabe4e55dc4ce79978d88ca4d215949d2402b78d6acc99ea179b8dbb");
    assert_eq!(buf[..n].to_vec(), want);
    let mut rx = SrtpContext::new(cfg).unwrap();
    let mut pkt = want.clone();
    let u = rx.unprotect_rtp(&mut pkt).unwrap();
    assert_eq!(pkt[..u.len].to_vec(), plain);
    assert_eq!(u.payload, 12..28);
}

fn cfg(p: SrtpProfile) -> SrtpConfig {
    let key: Vec<u8> = (0..p.key_len() as u8).collect();
    let salt: Vec<u8> = (100..100 + p.salt_len() as u8).collect();
    SrtpConfig::new(p, &key, &salt).unwrap()
}

fn rtp(seq: u16, ssrc: u32, payload_len: usize, buf: &mut [u8]) -> usize {
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    for (i, b) in buf[12..12 + payload_len].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    12 + payload_len
}

#[test]
fn every_profile_round_trips_across_a_wrap() {
    for p in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        for i in 0..300u32 {
            let seq = (65_400 + i) as u16;
            let mut buf = [0u8; 300];
            let n = rtp(seq, 0x1234, 160, &mut buf);
            let plain = buf[..n].to_vec();
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            assert_eq!(m, n + p.rtp_tag_len(), "{p:?}");
            if !matches!(
                p,
                SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32
            ) {
                assert_ne!(buf[12..n], plain[12..], "{p:?} payload not encrypted");
            }
            let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
            assert_eq!(buf[..u.len], plain[..], "{p:?} seq {seq}");
        }
        // 65400 + 299 wraps once: ROC 1 on both sides.
        assert_eq!(tx.roc(0x1234), Some(1));
        assert_eq!(rx.roc(0x1234), Some(1));
    }
}

#[test]
fn replay_reorder_tamper_and_unchanged_buffer() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        let mut pkts = Vec::new();
        for seq in 1000..1010u16 {
            let mut buf = [0u8; 300];
            let n = rtp(seq, 7, 20, &mut buf);
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            pkts.push(buf[..m].to_vec());
        }
        // Reordered delivery inside the window is accepted.
        for i in [1usize, 0, 3, 2, 5, 4] {
            let mut b = pkts[i].clone();
            rx.unprotect_rtp(&mut b).unwrap();
        }
        // Replays are rejected and leave the buffer unchanged.
        let mut b = pkts[2].clone();
        assert_eq!(rx.unprotect_rtp(&mut b), Err(SrtpError::Replayed));
        assert_eq!(b, pkts[2]);
        // A flipped payload bit fails authentication; buffer unchanged.
        let mut b = pkts[7].clone();
        b[14] ^= 1;
        let before = b.clone();
        assert_eq!(rx.unprotect_rtp(&mut b), Err(SrtpError::AuthFailed));
        assert_eq!(b, before);
        // ... and does not advance the state: the genuine packet still goes in.
        let mut b = pkts[7].clone();
        rx.unprotect_rtp(&mut b).unwrap();
        // Truncated.
        let mut short = pkts[8][..10].to_vec();
        assert_eq!(rx.unprotect_rtp(&mut short), Err(SrtpError::Truncated));
        // Wrong key.
        let mut other = SrtpContext::new(
            SrtpConfig::new(p, &vec![9u8; p.key_len()], &vec![9u8; p.salt_len()]).unwrap(),
        )
        .unwrap();
        let mut b = pkts[9].clone();
        assert_eq!(other.unprotect_rtp(&mut b), Err(SrtpError::AuthFailed));
        assert_eq!(b, pkts[9]);
    }
}

#[test]
fn a_forged_packet_across_the_wrap_changes_no_state() {
    // Highest sequence 65535 with ROC 0: a forged seq 0 (which would be ROC 1)
    // fails and leaves the ROC and the highest sequence as they were, so a late
    // genuine packet from before the wrap and the genuine seq 0 both go in.
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        let pkts: Vec<(Vec<u8>, Vec<u8>)> = [65_533u16, 65_534, 65_535, 0, 1]
            .into_iter()
            .map(|seq| {
                let mut buf = [0u8; 200];
                let n = rtp(seq, 9, 40, &mut buf);
                let plain = buf[..n].to_vec();
                let m = tx.protect_rtp(&mut buf, n).unwrap();
                (buf[..m].to_vec(), plain)
            })
            .collect();
        for (pkt, _) in &pkts[1..3] {
            rx.unprotect_rtp(&mut pkt.clone()).unwrap();
        }
        let state = |rx: &SrtpContext| {
            let st = rx.streams.get(9).unwrap();
            (st.roc, st.s_l)
        };
        assert_eq!(state(&rx), (0, Some(65_535)));
        // Seq 0 and 1 with a payload byte or the tag's last byte flipped.
        for (i, tag) in [(3usize, false), (4, false), (3, true)] {
            let mut forged = pkts[i].0.clone();
            let at = if tag { forged.len() - 1 } else { 20 };
            forged[at] ^= 1;
            let before = forged.clone();
            assert_eq!(
                rx.unprotect_rtp(&mut forged),
                Err(SrtpError::AuthFailed),
                "{p:?}"
            );
            assert_eq!(forged, before);
            assert_eq!(state(&rx), (0, Some(65_535)), "{p:?}: state moved");
        }
        // A genuine packet from before the wrap still decrypts with ROC 0 ...
        let (pkt, plain) = &pkts[0];
        let mut b = pkt.clone();
        let u = rx.unprotect_rtp(&mut b).unwrap();
        assert_eq!(b[..u.len], plain[..], "{p:?}");
        // ... and the genuine seq 0 and 1 with ROC 1.
        for (pkt, plain) in &pkts[3..] {
            let mut b = pkt.clone();
            let u = rx.unprotect_rtp(&mut b).unwrap();
            assert_eq!(b[..u.len], plain[..], "{p:?}");
        }
        assert_eq!(state(&rx), (1, Some(1)));
    }
}

#[test]
fn protect_refuses_to_reuse_an_index() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        for defer in [false, true] {
            let mut tx = SrtpContext::new(cfg(p)).unwrap();
            let mut rx = SrtpContext::new(cfg(p)).unwrap();
            let send = |tx: &mut SrtpContext, seq: u16| {
                let mut buf = [0u8; 200];
                let n = rtp(seq, 4, 40, &mut buf);
                let before = buf;
                let r = if defer {
                    tx.protect_rtp_deferred(&mut buf, n).map(|(m, tag)| {
                        if let Some(tag) = tag {
                            tag.write(&mut buf).unwrap();
                        }
                        m
                    })
                } else {
                    tx.protect_rtp(&mut buf, n)
                };
                match r {
                    Ok(m) => Ok(buf[..m].to_vec()),
                    Err(e) => {
                        assert_eq!(buf, before, "{p:?}: a refused packet changed");
                        Err(e)
                    }
                }
            };
            // In order, with 105 held back and sent late (relays forward what
            // arrives reordered): accepted once, refused again.
            let mut out = Vec::new();
            for seq in (100..=160).filter(|&s| s != 105) {
                out.push(send(&mut tx, seq).unwrap());
            }
            out.push(send(&mut tx, 105).unwrap());
            assert_eq!(send(&mut tx, 105), Err(SrtpError::IndexReused), "{p:?}");
            assert_eq!(send(&mut tx, 160), Err(SrtpError::IndexReused), "{p:?}");
            assert_eq!(send(&mut tx, 140), Err(SrtpError::IndexReused), "{p:?}");
            // 96 is 64 behind 160, past the window: whether it was sent cannot
            // be told.
            assert_eq!(send(&mut tx, 96), Err(SrtpError::TooOld), "{p:?}");
            // A jump clears the window, and its edge is exact.
            out.push(send(&mut tx, 1000).unwrap());
            out.push(send(&mut tx, 1000 - 63).unwrap());
            assert_eq!(send(&mut tx, 1000 - 64), Err(SrtpError::TooOld));
            for mut pkt in out {
                rx.unprotect_rtp(&mut pkt).unwrap();
            }
            // Across the wrap: 65535 sent after 0 and 1 keeps ROC 0 (the
            // receiver's guess), and the stream goes on with ROC 1.
            let mut tx = SrtpContext::new(cfg(p)).unwrap();
            let mut rx = SrtpContext::new(cfg(p)).unwrap();
            for seq in [65_533u16, 65_534, 0, 1, 65_535, 2] {
                let mut pkt = send(&mut tx, seq).unwrap();
                rx.unprotect_rtp(&mut pkt)
                    .unwrap_or_else(|e| panic!("{p:?} seq {seq}: {e}"));
            }
            assert_eq!(send(&mut tx, 65_535), Err(SrtpError::IndexReused));
            assert_eq!((tx.roc(4), rx.roc(4)), (Some(1), Some(1)));
        }
    }
    // A stream that has received checks its sends against its receive window.
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let (mut tx, mut both) = (
        SrtpContext::new(cfg(p)).unwrap(),
        SrtpContext::new(cfg(p)).unwrap(),
    );
    let mut buf = [0u8; 200];
    let n = rtp(7, 4, 40, &mut buf);
    let m = tx.protect_rtp(&mut buf, n).unwrap();
    both.unprotect_rtp(&mut buf[..m]).unwrap();
    assert_eq!(both.protect_rtp(&mut buf, n), Err(SrtpError::IndexReused));
    let n = rtp(8, 4, 40, &mut buf);
    both.protect_rtp(&mut buf, n).unwrap();
    assert_eq!(both.protect_rtp(&mut buf, n), Err(SrtpError::IndexReused));
}

#[test]
fn allow_repeat_tx_lets_an_index_go_out_again() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let c = cfg(p).with_allow_repeat_tx(true);
        assert!(format!("{c:?}").contains("allow_repeat_tx: true"));
        let mut tx = SrtpContext::new(c).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        let mut first = Vec::new();
        for seq in [10u16, 10, 200, 10] {
            let mut buf = [0u8; 200];
            let n = rtp(seq, 4, 40, &mut buf);
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            if seq == 10 {
                // The same packet at the same index: the same bytes.
                if first.is_empty() {
                    first = buf[..m].to_vec();
                }
                assert_eq!(buf[..m], first[..], "{p:?}");
            }
        }
        rx.unprotect_rtp(&mut first).unwrap();
    }
}

/// Protects sequence numbers `0..n` with a replay window of `window` packets and
/// unprotects all but those in `hold`, which are returned (still protected) with
/// the receiver.
fn receive_all_but(window: usize, n: u16, hold: &[u16]) -> (SrtpContext, Vec<Vec<u8>>) {
    let c = cfg(SrtpProfile::AesCm128HmacSha1_80)
        .with_replay_window(window)
        .unwrap();
    let mut tx = SrtpContext::new(c.clone()).unwrap();
    let mut rx = SrtpContext::new(c).unwrap();
    let mut held = Vec::new();
    for seq in 0..n {
        let mut buf = [0u8; 100];
        let len = rtp(seq, 1, 4, &mut buf);
        let m = tx.protect_rtp(&mut buf, len).unwrap();
        if hold.contains(&seq) {
            held.push(buf[..m].to_vec());
        } else {
            rx.unprotect_rtp(&mut buf[..m]).unwrap();
        }
    }
    (rx, held)
}

#[test]
fn too_old_for_the_window() {
    let (mut rx, mut held) = receive_all_but(64, 100, &[0]);
    assert_eq!(rx.unprotect_rtp(&mut held[0]), Err(SrtpError::TooOld));
    assert_eq!(
        cfg(SrtpProfile::AesCm128HmacSha1_80).with_replay_window(10),
        Err(SrtpError::BadConfig)
    );
}

#[test]
fn replay_window_rounds_up_to_a_power_of_two() {
    // 100 becomes 128: with 199 the highest, 72 (127 behind) is still checked
    // against the window, 71 (128 behind) is too old.
    let (mut rx, mut held) = receive_all_but(100, 200, &[71, 72]);
    assert_eq!(rx.unprotect_rtp(&mut held[0]), Err(SrtpError::TooOld));
    let mut again = held[1].clone();
    assert!(rx.unprotect_rtp(&mut held[1]).is_ok());
    assert_eq!(rx.unprotect_rtp(&mut again), Err(SrtpError::Replayed));
}

#[test]
fn srtcp_round_trip_replay_and_tamper() {
    for p in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        // An RR with one report block (32 bytes).
        let mut plain = vec![0x81u8, 201, 0, 7, 0, 0, 0, 42];
        plain.extend((0..24u8).map(|i| i * 3));
        let mut buf = [0u8; 128];
        buf[..32].copy_from_slice(&plain);
        let m = tx.protect_rtcp(&mut buf, 32).unwrap();
        assert_eq!(m, 32 + 4 + p.rtcp_tag_len());
        let pkt = buf[..m].to_vec();
        let mut b = pkt.clone();
        let u = rx.unprotect_rtcp(&mut b).unwrap();
        assert_eq!(b[..u.len], plain[..], "{p:?}");
        let mut b = pkt.clone();
        assert_eq!(rx.unprotect_rtcp(&mut b), Err(SrtpError::Replayed));
        assert_eq!(b, pkt);
        // A tampered copy of an accepted packet is refused (as a replay: the index
        // is checked first) and left as it was.
        let mut b = pkt.clone();
        b[10] ^= 0x80;
        let before = b.clone();
        assert_eq!(rx.unprotect_rtcp(&mut b), Err(SrtpError::Replayed));
        assert_eq!(b, before);
        // A tampered fresh one fails authentication and is left as it was.
        buf[..32].copy_from_slice(&plain);
        let m2 = tx.protect_rtcp(&mut buf, 32).unwrap();
        let mut t = buf[..m2].to_vec();
        t[12] ^= 1;
        let t_before = t.clone();
        assert_eq!(
            rx.unprotect_rtcp(&mut t),
            Err(SrtpError::AuthFailed),
            "{p:?}"
        );
        assert_eq!(t, t_before);
        // ... and does not take its index: the genuine packet still goes in.
        let u = rx.unprotect_rtcp(&mut buf[..m2]).unwrap();
        assert_eq!(buf[..u.len], plain[..], "{p:?}");
    }
}

#[test]
fn srtcp_index_exhaustion() {
    let mut tx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    tx.add_ssrc(42);
    tx.streams.get_mut(42).unwrap().rtcp_next = 0x8000_0000;
    let mut buf = [0u8; 64];
    buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 42]);
    assert_eq!(tx.protect_rtcp(&mut buf, 8), Err(SrtpError::IndexExhausted));
}

#[test]
fn srtp_index_exhaustion() {
    let mut tx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    tx.set_roc(5, u32::MAX);
    let mut buf = [0u8; 64];
    let n = rtp(65535, 5, 4, &mut buf);
    tx.protect_rtp(&mut buf, n).unwrap();
    let n = rtp(0, 5, 4, &mut buf);
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::IndexExhausted));
}

#[test]
fn ssrcs_have_their_own_roc_and_strict_mode() {
    let mut tx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    let mut buf = [0u8; 64];
    let n = rtp(65535, 1, 4, &mut buf);
    tx.protect_rtp(&mut buf, n).unwrap();
    let n = rtp(0, 1, 4, &mut buf);
    tx.protect_rtp(&mut buf, n).unwrap();
    let n = rtp(10, 2, 4, &mut buf);
    tx.protect_rtp(&mut buf, n).unwrap();
    assert_eq!((tx.roc(1), tx.roc(2)), (Some(1), Some(0)));
    tx.remove_ssrc(1);
    assert_eq!(tx.roc(1), None);
    assert_eq!((tx.stream_count(), tx.roc(2)), (1, Some(0)));
    // The first SSRC is kept inline and the others in a map: removals and
    // re-additions in any order keep every stream's own state.
    for ssrc in 3..10 {
        tx.set_roc(ssrc, ssrc);
    }
    for gone in [2, 5, 3, 9] {
        tx.remove_ssrc(gone);
        assert_eq!(tx.roc(gone), None);
    }
    tx.remove_ssrc(77);
    assert_eq!(tx.stream_count(), 4);
    for ssrc in [4, 6, 7, 8] {
        assert_eq!(tx.roc(ssrc), Some(ssrc));
    }
    tx.set_roc(2, 1);
    assert_eq!((tx.stream_count(), tx.roc(2)), (5, Some(1)));

    let strict = cfg(SrtpProfile::AesCm128HmacSha1_80).with_strict_ssrc(true);
    let mut rx = SrtpContext::new(strict).unwrap();
    let n = rtp(1, 3, 4, &mut buf);
    let before = buf;
    assert_eq!(
        rx.unprotect_rtp(&mut buf[..n + 10]),
        Err(SrtpError::UnknownSsrc)
    );
    assert_eq!(buf, before);
}

#[test]
fn protect_needs_tailroom_and_keys_need_right_lengths() {
    let mut tx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    let mut buf = [0u8; 20];
    let n = rtp(1, 1, 8, &mut buf);
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::BufferTooSmall));
    assert_eq!(
        SrtpConfig::new(SrtpProfile::AeadAes128Gcm, &[0; 16], &[0; 14]),
        Err(SrtpError::BadKeyLength)
    );
}

#[test]
fn sdes_parse_format_and_errors() {
    let line = "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4";
    let a = sdes::CryptoAttribute::parse(line).unwrap();
    assert_eq!(a.tag, 1);
    assert_eq!(a.profile, SrtpProfile::AesCm128HmacSha1_80);
    assert_eq!((a.key.len(), a.salt.len()), (16, 14));
    assert_eq!(a.lifetime, Some(1 << 20));
    assert_eq!(a.mki, Some((1, 4)));
    assert_eq!(a.to_string(), line);
    assert_eq!(sdes::CryptoAttribute::parse(&a.to_string()).unwrap(), a);
    a.to_config().unwrap();

    use sdes::{CryptoAttribute as C, SdesError as E};
    assert_eq!(
        C::parse("1 AES_CM_129 inline:AAAA").unwrap_err(),
        E::UnknownSuite
    );
    assert_eq!(
        C::parse("1 AES_CM_128_HMAC_SHA1_80 inline:!!!").unwrap_err(),
        E::BadKeyParam
    );
    assert_eq!(
        C::parse("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA").unwrap_err(),
        E::BadKeyLength
    );
    assert_eq!(
        C::parse("x AES_CM_128_HMAC_SHA1_80").unwrap_err(),
        E::Syntax
    );
}

#[test]
fn sdes_mki_is_applied_and_interoperates() {
    // `|1:4`: MKI 1 as 4 big-endian bytes. A context from the line and one
    // configured with the same MKI directly read each other's packets (a context
    // without the MKI would look for the tag 4 bytes too early).
    for (suite, p) in [
        ("AES_CM_128_HMAC_SHA1_80", SrtpProfile::AesCm128HmacSha1_80),
        ("AEAD_AES_128_GCM", SrtpProfile::AeadAes128Gcm),
    ] {
        let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&ks);
        let line = format!("a=crypto:1 {suite} inline:{b64}|2^31|1:4");
        let a = sdes::CryptoAttribute::parse(&line).unwrap();
        assert_eq!(a.mki, Some((1, 4)));
        assert_eq!(a.to_string(), line, "parse -> format round-trips");
        let direct = SrtpConfig::from_key_salt(p, &ks)
            .unwrap()
            .with_mki(&[0, 0, 0, 1])
            .unwrap();
        assert_eq!(a.to_config().unwrap(), direct);
        let from_sdes = a.to_config().unwrap();
        for (t, r) in [(&from_sdes, &direct), (&direct, &from_sdes)] {
            let mut tx = SrtpContext::new(t.clone()).unwrap();
            let mut rx = SrtpContext::new(r.clone()).unwrap();
            let mut buf = [0u8; 200];
            let n = rtp(1, 5, 40, &mut buf);
            let plain = buf[..n].to_vec();
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            assert_eq!(m, n + 4 + p.rtp_tag_len());
            let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
            assert_eq!(buf[..u.len], plain[..], "{p:?}");
            let mut rr = [0u8; 64];
            rr[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 5]);
            let m = tx.protect_rtcp(&mut rr, 8).unwrap();
            assert_eq!(rx.unprotect_rtcp(&mut rr[..m]).unwrap().len, 8);
        }
    }
    // Lengths 1..=4 give that many bytes; longer ones, or a value that does not
    // fit, are refused.
    let key = "inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR";
    let mki_of = |mki: &str| {
        sdes::CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 {key}|{mki}"))
            .unwrap()
            .to_config()
    };
    let base = sdes::CryptoAttribute::parse(&format!("1 AES_CM_128_HMAC_SHA1_80 {key}"))
        .unwrap()
        .to_config()
        .unwrap();
    let with = |m: &[u8]| base.clone().with_mki(m).unwrap();
    assert_eq!(mki_of("255:1").unwrap(), with(&[255]));
    assert_eq!(mki_of("258:2").unwrap(), with(&[1, 2]));
    assert_eq!(mki_of("65536:3").unwrap(), with(&[1, 0, 0]));
    assert_eq!(mki_of("4294967295:4").unwrap(), with(&[255; 4]));
    assert_eq!(mki_of("256:1"), Err(SrtpError::BadMki));
    assert_eq!(mki_of("1:5"), Err(SrtpError::BadMki));
    assert_eq!(mki_of("1:128"), Err(SrtpError::BadMki));
}

#[test]
fn rfc5764_keying_material_split() {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let material: Vec<u8> = (0..60u8).collect();
    let (client, server) = dtls_srtp_keys(p, &material).unwrap();
    // client_key = 0..16, server_key = 16..32, client_salt = 32..46, server_salt = 46..60.
    assert_eq!(
        client,
        SrtpConfig::new(p, &material[..16], &material[32..46]).unwrap()
    );
    assert_eq!(
        server,
        SrtpConfig::new(p, &material[16..32], &material[46..]).unwrap()
    );
    assert_eq!(
        dtls_srtp_keys(p, &material[..59]),
        Err(SrtpError::BadKeyLength)
    );
    assert_eq!(
        SrtpProfile::from_dtls_id(7),
        Some(SrtpProfile::AeadAes128Gcm)
    );
}

#[test]
fn mki_is_appended_and_matched() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let c = cfg(p).with_mki(&[0xab, 0xcd]).unwrap();
        let mut tx = SrtpContext::new(c.clone()).unwrap();
        let mut rx = SrtpContext::new(c).unwrap();
        let mut buf = [0u8; 300];
        let n = rtp(5, 9, 20, &mut buf);
        let plain = buf[..n].to_vec();
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        assert_eq!(m, n + 2 + p.rtp_tag_len());
        // CM: MKI before the tag; GCM: after the tag (RFC 3711 3.1, RFC 7714 8).
        let at = if p.is_aead() { n + 16 } else { n };
        assert_eq!(buf[at..at + 2], [0xab, 0xcd], "{p:?}");
        let pkt = buf[..m].to_vec();
        let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
        assert_eq!(buf[..u.len], plain[..]);

        let mut other = SrtpContext::new(cfg(p).with_mki(&[0xab, 0xce]).unwrap()).unwrap();
        let mut b = pkt.clone();
        assert_eq!(other.unprotect_rtp(&mut b), Err(SrtpError::MkiMismatch));
        assert_eq!(b, pkt);

        // SRTCP with MKI.
        let mut rr = [0u8; 128];
        rr[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
        let m = tx.protect_rtcp(&mut rr, 8).unwrap();
        assert_eq!(m, 8 + 4 + 2 + p.rtcp_tag_len());
        let u = rx.unprotect_rtcp(&mut rr[..m]).unwrap();
        assert_eq!(rr[..u.len], [0x80, 201, 0, 1, 0, 0, 0, 9]);
    }
    assert_eq!(
        cfg(SrtpProfile::AesCm128HmacSha1_80).with_mki(&[1, 2, 3, 4, 5]),
        Err(SrtpError::BadConfig)
    );
}

#[test]
fn non_zero_key_derivation_rate_rekeys_every_kdr_packets() {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let c = cfg(p).with_kdr(16).unwrap();
    let mut tx = SrtpContext::new(c.clone()).unwrap();
    let mut rx = SrtpContext::new(c).unwrap();
    // A receiver that derives once (kdr 0) shares the keys only while
    // index DIV 16 == 0, i.e. for indices 0..16.
    let mut rx0 = SrtpContext::new(cfg(p)).unwrap();
    for seq in 0..100u16 {
        let mut buf = [0u8; 300];
        let n = rtp(seq, 3, 40, &mut buf);
        let plain = buf[..n].to_vec();
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        let mut copy = buf[..m].to_vec();
        let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
        assert_eq!(buf[..u.len], plain[..]);
        let r0 = rx0.unprotect_rtp(&mut copy);
        if seq < 16 {
            assert!(r0.is_ok(), "seq {seq}");
        } else {
            assert_eq!(r0, Err(SrtpError::AuthFailed), "seq {seq}");
        }
    }
    // SRTCP re-keys too, by SRTCP index.
    for _ in 0..40 {
        let mut rr = [0u8; 128];
        rr[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 3]);
        let m = tx.protect_rtcp(&mut rr, 8).unwrap();
        rx.unprotect_rtcp(&mut rr[..m]).unwrap();
    }
    assert_eq!(cfg(p).with_kdr(3), Err(SrtpError::BadConfig));
    assert_eq!(cfg(p).with_kdr(1 << 25), Err(SrtpError::BadConfig));
}

#[test]
fn a_forged_packet_in_the_next_kdr_period_keeps_the_streams_keys() {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let c = cfg(p).with_kdr(16).unwrap();
    let (mut tx, mut rx) = (
        SrtpContext::new(c.clone()).unwrap(),
        SrtpContext::new(c).unwrap(),
    );
    let pkts: Vec<Vec<u8>> = (0..20u16)
        .map(|seq| {
            let mut buf = [0u8; 200];
            let n = rtp(seq, 3, 40, &mut buf);
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            buf[..m].to_vec()
        })
        .collect();
    let rr: Vec<Vec<u8>> = (0..20)
        .map(|_| {
            let mut b = [0u8; 64];
            b[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 3]);
            let m = tx.protect_rtcp(&mut b, 8).unwrap();
            b[..m].to_vec()
        })
        .collect();
    rx.unprotect_rtp(&mut pkts[0].clone()).unwrap();
    rx.unprotect_rtcp(&mut rr[0].clone()).unwrap();
    let kept = |rx: &SrtpContext| {
        let k = &rx.extra.as_ref().unwrap().kdr[&3];
        (k.rtp.as_ref().unwrap().0, k.rtcp.as_ref().unwrap().0)
    };
    assert_eq!(kept(&rx), (0, 0));
    // Index 16 is in r = 1: forged, it fails and the r = 0 keys stay.
    let mut forged = pkts[16].clone();
    forged[20] ^= 1;
    assert_eq!(rx.unprotect_rtp(&mut forged), Err(SrtpError::AuthFailed));
    let mut forged = rr[16].clone();
    forged[9] ^= 1;
    assert_eq!(rx.unprotect_rtcp(&mut forged), Err(SrtpError::AuthFailed));
    assert_eq!(kept(&rx), (0, 0));
    // Genuine: kept once they authenticate.
    rx.unprotect_rtp(&mut pkts[15].clone()).unwrap();
    rx.unprotect_rtp(&mut pkts[16].clone()).unwrap();
    rx.unprotect_rtcp(&mut rr[17].clone()).unwrap();
    assert_eq!(kept(&rx), (1, 1));
    rx.unprotect_rtcp(&mut rr[1].clone()).unwrap();
    assert_eq!(kept(&rx), (1, 0));
}

#[test]
fn key_derivation_rate_keys_match_rfc3711_4_3_1() {
    // The session keys for packet index i under a key derivation rate, computed
    // here from RFC 3711 4.3.1 with the `ctr` crate: r = i DIV kdr, key_id =
    // label || r (8 + 48 bits), x = key_id XOR master_salt, key = AES-CM(master
    // key, x * 2^16). Packets protected with them by hand (AES-CM and HMAC-SHA1
    // from their crates) equal protect's, across r boundaries and with ROCs that
    // put r past 32 bits.
    use cipher::{KeyIvInit, StreamCipher};
    use hmac::{Hmac, Mac};
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let base = cfg(p);
    let (mk, ms) = (base.key().to_vec(), base.salt().to_vec());
    let aes_cm = |key: &[u8], iv: [u8; 16], data: &mut [u8]| {
        ctr::Ctr128BE::<aes::Aes128>::new(key.into(), &iv.into()).apply_keystream(data);
    };
    let session = |label: u8, r: u64, len: usize| {
        let mut key_id = [0u8; 14];
        key_id[7] = label;
        key_id[8..].copy_from_slice(&r.to_be_bytes()[2..]);
        let mut iv = [0u8; 16];
        for (i, b) in iv[..14].iter_mut().enumerate() {
            *b = key_id[i] ^ ms[i];
        }
        let mut out = vec![0u8; len];
        aes_cm(&mk, iv, &mut out);
        out
    };
    // IV = session salt * 2^16 XOR SSRC * 2^64 XOR index * 2^16.
    let packet_iv = |salt: &[u8], ssrc: u32, index: u64| {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(salt);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[8..14].iter_mut().zip(&index.to_be_bytes()[2..]) {
            *d ^= s;
        }
        iv
    };
    let hmac = |key: &[u8], parts: &[&[u8]]| {
        let mut m = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
        for part in parts {
            m.update(part);
        }
        m.finalize().into_bytes().to_vec()
    };
    let ssrc = 0x0bad_cafe;
    for (kdr, roc) in [(16u64, 0u32), (16, 0x1234_5678), (1 << 24, 0xffff_fff0)] {
        let mut tx = SrtpContext::new(base.clone().with_kdr(kdr).unwrap()).unwrap();
        tx.set_roc(ssrc, roc);
        for seq in [0u16, 15, 16, 17, 4095, 30_000] {
            let index = (u64::from(roc) << 16) | u64::from(seq);
            let r = index / kdr;
            let (ke, ka, ks) = (session(0, r, 16), session(1, r, 20), session(2, r, 14));
            let mut buf = [0u8; 200];
            let n = rtp(seq, ssrc, 50, &mut buf);
            let mut want = buf[..n].to_vec();
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            aes_cm(&ke, packet_iv(&ks, ssrc, index), &mut want[12..]);
            let tag = hmac(&ka, &[&want, &roc.to_be_bytes()]);
            want.extend_from_slice(&tag[..10]);
            assert_eq!(buf[..m], want[..], "kdr {kdr} roc {roc:#x} seq {seq}");
        }
        // SRTCP: r = SRTCP index DIV kdr, labels 3, 4, 5.
        for index in [0u32, 15, 16, 0x7fff_ffff] {
            tx.streams.get_mut(ssrc).unwrap().rtcp_next = index;
            let r = u64::from(index) / kdr;
            let (ke, ka, ks) = (session(3, r, 16), session(4, r, 20), session(5, r, 14));
            let mut buf = [0u8; 128];
            buf[..8].copy_from_slice(&[0x81, 201, 0, 7, 0x0b, 0xad, 0xca, 0xfe]);
            buf[8..32].fill(0x5a);
            let mut want = buf[..32].to_vec();
            let m = tx.protect_rtcp(&mut buf, 32).unwrap();
            aes_cm(&ke, packet_iv(&ks, ssrc, u64::from(index)), &mut want[8..]);
            want.extend((0x8000_0000 | index).to_be_bytes());
            let tag = hmac(&ka, &[&want]);
            want.extend_from_slice(&tag[..10]);
            assert_eq!(buf[..m], want[..], "kdr {kdr} SRTCP index {index:#x}");
        }
    }
}

#[test]
fn kdf_with_r_differs_from_r_zero() {
    // RFC 3711 4.3.1: r enters the low 48 bits of the key id, so the r = 1 key
    // differs from the B.3 (r = 0) key.
    let mk = hex("E1F97A0D3E018BE0D64FA32C06DE4139");
    let ms = hex("0EC675AD498AFEEBB6960B3AABE6");
    let mut k1 = [0u8; 16];
    kdf_r(&mk, &ms, 0, 1, &mut k1);
    assert_ne!(k1.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
    let mut k0 = [0u8; 16];
    kdf_r(&mk, &ms, 0, 0, &mut k0);
    assert_eq!(k0.to_vec(), hex("C61E7A93744F39EE10734AFE3FF7A087"));
}

#[test]
fn rfc7714_16_1_aead_aes_128_gcm_rtp() {
    // RFC 7714 section 16.1.1: session key and salt given directly (no KDF), SSRC
    // 0x5501a0b2, ROC 0, seq 0xf17b; IV from section 16.1.1 as well.
    let key = hex("000102030405060708090a0b0c0d0e0f");
    let keys = SessionKeys {
        cipher: Cipher::Gcm(Box::new(GcmKey::new(&key))),
        salt: {
            let mut s = [0u8; 14];
            s[..12].copy_from_slice(&hex("517569642070726f2071756f"));
            s
        },
        auth: HmacSha1Key::unused(),
        tag_len: 16,
    };
    assert_eq!(
        keys.gcm_iv(0x5501_a0b2, 0, 0xf17b).to_vec(),
        hex("51753c6580c2726f20718414")
    );
    let mut pkt = hex(
        "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f 6d6e6973
         20646976 69736120 696e2070 61727465 73207472 6573",
    );
    let iv = keys.gcm_iv(0x5501_a0b2, 0, 0xf17b);
    let (head, body) = pkt.split_at_mut(12);
    let tag = keys.gcm_seal(&iv, head, body);
    pkt.extend_from_slice(&tag);
    assert_eq!(
        pkt,
        hex("8040f17b 8041f8d3 5501a0b2
             f24de3a3 fb34de6c acba861c 9d7e4bca be633bd5 0d294e6f 42a5f47a
             51c7d19b 36de3adf 8833
             899d7f27 beb16a91 52cf765e e4390cce")
    );
    // Section 17: the SRTCP IV for SSRC "Mars" (0x4d617273), index 0x5d4.
    let (aad, iv) = keys.srtcp_gcm_params(&hex("81c8000d4d617273"), 0x4d61_7273, 0x8000_05d4);
    assert_eq!(iv.to_vec(), hex("517524055203726f207170bb"));
    assert_eq!(aad.to_vec(), hex("81c8000d4d617273800005d4"));
}

#[test]
fn rfc7714_17_1_aead_aes_128_gcm_srtcp() {
    // RFC 7714 section 17.1: the same session key and salt as 16.1, SSRC "Mars"
    // (0x4d617273), SRTCP index 0x5d4, encrypted. The whole protect_rtcp path:
    // header || ciphertext || tag || E+index (RFC 7714 9.2's order).
    let keys = || SessionKeys {
        cipher: Cipher::Gcm(Box::new(GcmKey::new(&hex(
            "000102030405060708090a0b0c0d0e0f",
        )))),
        salt: {
            let mut s = [0u8; 14];
            s[..12].copy_from_slice(&hex("517569642070726f2071756f"));
            s
        },
        auth: HmacSha1Key::unused(),
        tag_len: 16,
    };
    let context = || {
        let mut c = SrtpContext::new(cfg(SrtpProfile::AeadAes128Gcm)).unwrap();
        c.extra = Some(Box::new(Extra {
            rtcp: Some(keys()),
            ..Extra::default()
        }));
        c.add_ssrc(0x4d61_7273);
        c
    };
    let plain = hex(
        "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930 4c756e61
         deadbeef deadbeef deadbeef deadbeef deadbeef",
    );
    let published = hex(
        "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7 6c06f32d
         c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f c5abf872
         45d9eade 800005d4",
    );
    let mut tx = context();
    tx.streams.get_mut(0x4d61_7273).unwrap().rtcp_next = 0x5d4;
    let mut buf = plain.clone();
    buf.resize(plain.len() + 20, 0);
    let n = tx.protect_rtcp(&mut buf, plain.len()).unwrap();
    assert_eq!(&buf[..n], published.as_slice());

    let mut rx = context();
    let mut tampered = published.clone();
    tampered[30] ^= 0x08;
    assert_eq!(rx.unprotect_rtcp(&mut tampered), Err(SrtpError::AuthFailed));
    let mut pkt = published.clone();
    let u = rx.unprotect_rtcp(&mut pkt).unwrap();
    assert_eq!(&pkt[..u.len], plain.as_slice());
}

#[test]
fn gcm_srtcp_authenticated_only() {
    // E = 0 with GCM (RFC 7714 9.3): the tag is GCM's over no plaintext with the
    // whole packet and E||index as AAD. Built here with `aes-gcm` from session
    // keys derived by the KDF, then read by unprotect.
    use aes_gcm::aead::AeadInPlace;
    for p in [SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm] {
        let c = cfg(p);
        let (mut key, mut salt) = ([0u8; 32], [0u8; 12]);
        let key = &mut key[..p.key_len()];
        kdf(c.key(), c.salt(), 3, key);
        kdf(c.key(), c.salt(), 5, &mut salt);
        let ssrc = 0x0102_0304u32;
        let mut plain = vec![0x81u8, 201, 0, 7];
        plain.extend(ssrc.to_be_bytes());
        plain.extend((0..24u8).map(|i| i * 7));
        for index in [0u32, 5, 0x7fff_ffff] {
            // IV = salt ^ (00 00 || SSRC || 00 00 || index), RFC 7714 9.1.
            let mut iv = salt;
            for (d, s) in iv[2..6].iter_mut().zip(ssrc.to_be_bytes()) {
                *d ^= s;
            }
            for (d, s) in iv[8..12].iter_mut().zip(index.to_be_bytes()) {
                *d ^= s;
            }
            let mut aad = plain.clone();
            aad.extend(index.to_be_bytes()); // E = 0
            let tag = match p {
                SrtpProfile::AeadAes128Gcm => <Aes128Gcm as aes_gcm::KeyInit>::new_from_slice(key)
                    .unwrap()
                    .encrypt_in_place_detached((&iv).into(), &aad, &mut []),
                _ => <Aes256Gcm as aes_gcm::KeyInit>::new_from_slice(key)
                    .unwrap()
                    .encrypt_in_place_detached((&iv).into(), &aad, &mut []),
            }
            .unwrap();
            let mut pkt = plain.clone();
            pkt.extend_from_slice(&tag);
            pkt.extend(index.to_be_bytes());
            let mut rx = SrtpContext::new(c.clone()).unwrap();
            // Tampered anywhere (the clear body, the tag, the index, the E flag):
            // refused and left as it was.
            for at in [12, 8 + 24, pkt.len() - 1, pkt.len() - 4] {
                let mut bad = pkt.clone();
                bad[at] ^= 0x80;
                let before = bad.clone();
                assert_eq!(rx.unprotect_rtcp(&mut bad), Err(SrtpError::AuthFailed));
                assert_eq!(bad, before, "{p:?} byte {at}");
            }
            let mut got = pkt.clone();
            let u = rx.unprotect_rtcp(&mut got).unwrap();
            assert_eq!(got[..u.len], plain[..], "{p:?} index {index}");
            assert_eq!(got[u.len..], pkt[u.len..], "the trailer is put back");
            assert_eq!(rx.unprotect_rtcp(&mut pkt), Err(SrtpError::Replayed));
        }
    }
}

#[test]
fn rfc6188_7_2_aes_256_key_derivation() {
    // RFC 6188 section 7.2: AES_256_CM_PRF with a 32-byte master key.
    let mk = hex("f0f04914b513f2763a1b1fa130f10e2998f6f6e43e4309d1e622a0e332b9f1b6");
    let ms = hex("3b04803de51ee7c96423ab5b78d2");
    let mut enc = [0u8; 32];
    kdf(&mk, &ms, 0, &mut enc);
    assert_eq!(
        enc.to_vec(),
        hex("5ba1064e30ec51613cad926c5a28ef731ec7fb397f70a960653caf06554cd8c4")
    );
    let mut salt = [0u8; 14];
    kdf(&mk, &ms, 2, &mut salt);
    assert_eq!(salt.to_vec(), hex("fa31791685ca444a9e07c6c64e93"));
    let mut auth = [0u8; 20];
    kdf(&mk, &ms, 1, &mut auth);
    assert_eq!(
        auth.to_vec(),
        hex("fd9c32d39ed5fbb5a9dc96b30818454d1313dc05")
    );
}

#[test]
fn forged_packets_do_not_create_state() {
    // A flood of packets with random SSRCs and bad tags: every one fails, and no
    // per-SSRC state is created (a gateway must not grow a table for an attacker).
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        let mut buf = [0u8; 200];
        for i in 0..5000u32 {
            let n = rtp(i as u16, i.wrapping_mul(2_654_435_761), 40, &mut buf);
            let m = n + p.rtp_tag_len();
            assert_eq!(rx.unprotect_rtp(&mut buf[..m]), Err(SrtpError::AuthFailed));
            let mut rr = [0u8; 64];
            rr[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 0]);
            rr[4..8].copy_from_slice(&i.to_be_bytes());
            rr[8..12].copy_from_slice(&0x8000_0001u32.to_be_bytes());
            let len = 8 + 4 + p.rtcp_tag_len();
            let _ = rx.unprotect_rtcp(&mut rr[..len]);
        }
        assert_eq!(rx.stream_count(), 0, "{p:?}");
        // A genuine packet still creates its stream.
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let n = rtp(1, 77, 40, &mut buf);
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        rx.unprotect_rtp(&mut buf[..m]).unwrap();
        assert_eq!(rx.stream_count(), 1);
    }
}

#[test]
fn compact_keys_give_the_same_bytes_and_a_small_context() {
    for p in SrtpProfile::ALL {
        let mut full = SrtpContext::new(cfg(p)).unwrap();
        let mut compact = SrtpContext::new(cfg(p).with_compact_keys(true)).unwrap();
        let mut rx_full = SrtpContext::new(cfg(p)).unwrap();
        let mut rx_compact = SrtpContext::new(cfg(p).with_compact_keys(true)).unwrap();
        for i in 0..40u32 {
            let seq = (65_520 + i) as u16;
            let (mut a, mut b) = ([0u8; 300], [0u8; 300]);
            let n = rtp(seq, 0x5678, 160, &mut a);
            rtp(seq, 0x5678, 160, &mut b);
            let m = full.protect_rtp(&mut a, n).unwrap();
            assert_eq!(compact.protect_rtp(&mut b, n).unwrap(), m);
            assert_eq!(a[..m], b[..m], "{p:?} seq {seq}: same SRTP bytes");
            // Each side reads the other's packets.
            let ua = rx_compact.unprotect_rtp(&mut a[..m]).unwrap();
            let ub = rx_full.unprotect_rtp(&mut b[..m]).unwrap();
            assert_eq!(a[..ua.len], b[..ub.len]);
            // A tampered packet is refused by a compact context and left as it was.
            let mut t = [0u8; 300];
            let n = rtp(seq, 0x9999, 160, &mut t);
            let m = full.protect_rtp(&mut t, n).unwrap();
            t[20] ^= 4;
            let before = t;
            assert_eq!(
                rx_compact.unprotect_rtp(&mut t[..m]),
                Err(SrtpError::AuthFailed)
            );
            assert_eq!(t, before);
        }
        // SRTCP too.
        let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
        for buf in [&mut a, &mut b] {
            buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 9]);
        }
        let m = full.protect_rtcp(&mut a, 8).unwrap();
        assert_eq!(compact.protect_rtcp(&mut b, 8).unwrap(), m);
        assert_eq!(a[..m], b[..m], "{p:?} SRTCP");
        assert!(rx_compact.unprotect_rtcp(&mut a[..m]).is_ok());
    }
    // What a compact context keeps inline: no key schedule.
    assert!(
        std::mem::size_of::<SessionKeys>() <= 128,
        "{} bytes",
        std::mem::size_of::<SessionKeys>()
    );
}

#[test]
fn srtcp_replay_window_is_128_packets_whatever_the_rtp_window() {
    let c = cfg(SrtpProfile::AesCm128HmacSha1_80)
        .with_replay_window(4096)
        .unwrap();
    let mut tx = SrtpContext::new(c.clone()).unwrap();
    let mut rx = SrtpContext::new(c).unwrap();
    // SRTCP indices 0..=128.
    let pkts: Vec<Vec<u8>> = (0..=SRTCP_WINDOW)
        .map(|_| {
            let mut buf = [0u8; 64];
            buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 42]);
            let m = tx.protect_rtcp(&mut buf, 8).unwrap();
            buf[..m].to_vec()
        })
        .collect();
    // The newest first: index 0 is then 128 behind (too old), index 1 is inside.
    rx.unprotect_rtcp(&mut pkts[128].clone()).unwrap();
    assert_eq!(
        rx.unprotect_rtcp(&mut pkts[0].clone()),
        Err(SrtpError::TooOld)
    );
    rx.unprotect_rtcp(&mut pkts[1].clone()).unwrap();
    assert_eq!(
        rx.unprotect_rtcp(&mut pkts[1].clone()),
        Err(SrtpError::Replayed)
    );
    // A jump past the whole window clears it.
    rx.streams.get_mut(42).unwrap().update_rtcp(1000, 64);
    assert_eq!(
        rx.unprotect_rtcp(&mut pkts[128].clone()),
        Err(SrtpError::TooOld)
    );
}

#[test]
fn context_memory_stays_small() {
    // Four contexts per relayed SRTP call: these sizes are what the relay
    // benchmark's heap figure is made of.
    use std::mem::{size_of, size_of_val};
    assert!(size_of::<SrtpConfig>() <= 56);
    assert!(size_of::<SessionKeys>() <= 80);
    assert!(
        size_of::<Stream>() <= 32,
        "{} {}",
        size_of::<Stream>(),
        size_of::<SrtpContext>()
    );
    assert!(size_of::<SrtpContext>() <= 184);
    // A receiving stream's replay state: the default 1,024-packet bitmap and the
    // SRTCP window in one allocation.
    assert_eq!(size_of_val(&*rx_windows(16)), 8 + 24 + 128);
    for log2 in 6..=15 {
        let c = cfg(SrtpProfile::AesCm128HmacSha1_80)
            .with_replay_window(1 << log2)
            .unwrap();
        let words = c.replay_words();
        assert_eq!(words, 1 << (log2 - 6));
        assert_eq!(rx_windows(words).bits.len(), words as usize);
    }
}

#[test]
fn where_the_state_of_a_stream_lives() {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let rr = |ssrc: u8| {
        let mut b = [0u8; 128];
        b[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, ssrc]);
        b
    };
    for compact in [false, true] {
        let c = cfg(p).with_compact_keys(compact);
        let (mut tx, mut rx) = (
            SrtpContext::new(c.clone()).unwrap(),
            SrtpContext::new(c).unwrap(),
        );
        let mut buf = [0u8; 300];
        let n = rtp(1, 5, 160, &mut buf);
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        rx.unprotect_rtp(&mut buf[..m]).unwrap();
        // A sender keeps no replay state; a receiver has its windows.
        assert!(tx.streams.get(5).unwrap().rx_windows().is_none());
        assert!(rx.streams.get(5).unwrap().rx_windows().is_some());
        assert!(tx.extra.is_none() && rx.extra.is_none());
        for _ in 0..3 {
            let mut b = rr(5);
            let m = tx.protect_rtcp(&mut b, 8).unwrap();
            rx.unprotect_rtcp(&mut b[..m]).unwrap();
            assert_eq!(rx.unprotect_rtcp(&mut b[..m]), Err(SrtpError::Replayed));
        }
        // Expanded keys keep the SRTCP keys; compact 128-bit ones derive them
        // per packet.
        assert_eq!(tx.extra.is_some(), !compact, "compact {compact}");
        assert_eq!(rx.extra.is_some(), !compact, "compact {compact}");
    }
    // Under a key derivation rate, per-stream keys: kept for streams that
    // authenticated, not for forged SSRCs, and dropped with the stream.
    let c = cfg(p).with_kdr(16).unwrap();
    let (mut tx, mut rx) = (
        SrtpContext::new(c.clone()).unwrap(),
        SrtpContext::new(c).unwrap(),
    );
    let mut buf = [0u8; 300];
    for ssrc in 1..=1000u32 {
        let n = rtp(ssrc as u16, ssrc, 40, &mut buf);
        assert_eq!(
            rx.unprotect_rtp(&mut buf[..n + 10]),
            Err(SrtpError::AuthFailed)
        );
        let mut b = rr(ssrc as u8);
        b[4..8].copy_from_slice(&ssrc.to_be_bytes());
        b[8..12].copy_from_slice(&0x8000_0001u32.to_be_bytes());
        assert!(rx.unprotect_rtcp(&mut b[..8 + 4 + 10]).is_err());
    }
    assert!(rx.extra.is_none(), "forged packets kept no keys");
    for ssrc in [7u32, 8] {
        let n = rtp(1, ssrc, 40, &mut buf);
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        rx.unprotect_rtp(&mut buf[..m]).unwrap();
        let mut b = rr(ssrc as u8);
        let m = tx.protect_rtcp(&mut b, 8).unwrap();
        rx.unprotect_rtcp(&mut b[..m]).unwrap();
    }
    assert_eq!(rx.extra.as_ref().unwrap().kdr.len(), 2);
    rx.remove_ssrc(7);
    assert_eq!(rx.stream_count(), 1);
    assert_eq!(rx.extra.as_ref().unwrap().kdr.len(), 1);
    // The remaining stream goes on.
    let n = rtp(2, 8, 40, &mut buf);
    let m = tx.protect_rtp(&mut buf, n).unwrap();
    rx.unprotect_rtp(&mut buf[..m]).unwrap();
}

#[test]
fn gcm_failure_leaves_every_size_of_packet_unchanged() {
    // ring decrypts before it checks the tag, so `gcm_open` backs the payload up
    // in size classes (256, 1536, 4096 bytes) and sends larger ones through
    // aes-gcm, which verifies first: every class, its edges, and the fallback.
    for p in [SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm] {
        for compact in [false, true] {
            let c = cfg(p).with_compact_keys(compact);
            let mut tx = SrtpContext::new(c.clone()).unwrap();
            let mut rx = SrtpContext::new(c).unwrap();
            for (i, payload) in [1usize, 256, 257, 1200, 1536, 1537, 4096, 4097, 9000]
                .into_iter()
                .enumerate()
            {
                let mut buf = vec![0u8; payload + 64];
                let n = rtp(i as u16, 0x1234, payload, &mut buf);
                let plain = buf[..n].to_vec();
                let m = tx.protect_rtp(&mut buf, n).unwrap();
                for at in [12, 12 + payload / 2, m - 1] {
                    let mut bad = buf[..m].to_vec();
                    bad[at] ^= 0x40;
                    let before = bad.clone();
                    assert_eq!(
                        rx.unprotect_rtp(&mut bad),
                        Err(SrtpError::AuthFailed),
                        "{p:?} compact {compact} payload {payload} byte {at}"
                    );
                    assert_eq!(bad, before, "{p:?} payload {payload}: buffer changed");
                }
                let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
                assert_eq!(buf[..u.len], plain[..], "{p:?} payload {payload}");
            }
        }
    }
}

/// Protects `pkts` with the split API, tags written in pairs (an odd one alone).
fn protect_split(ctx: &mut SrtpContext, pkts: &mut [Vec<u8>], lens: &[usize]) -> Vec<usize> {
    let mut jobs = Vec::new();
    let mut out = Vec::new();
    for (b, &n) in pkts.iter_mut().zip(lens) {
        let (m, job) = ctx.protect_rtp_deferred(b, n).unwrap();
        out.push(m);
        jobs.push(job);
    }
    let mut i = 0;
    while i < pkts.len() {
        match (jobs[i].take(), jobs.get_mut(i + 1).and_then(Option::take)) {
            (Some(a), Some(b)) => {
                let (x, y) = pkts.split_at_mut(i + 1);
                let r = PendingTag::write_pair(a, &mut x[i], b, &mut y[0]);
                assert!(r.iter().all(Result::is_ok));
            }
            (a, b) => {
                if let Some(a) = a {
                    a.write(&mut pkts[i]).unwrap();
                }
                if let Some(b) = b {
                    b.write(&mut pkts[i + 1]).unwrap();
                }
            }
        }
        i += 2;
    }
    out
}

/// Protects `pkts` with the split API, tags written by [`TagBatch`]es of `chunk`
/// packets (a batch computes itself when full: 40 packets in one batch are
/// computed 16, 16 and 8 at a time).
fn protect_batched(
    ctx: &mut SrtpContext,
    pkts: &mut [Vec<u8>],
    lens: &[usize],
    chunk: usize,
) -> Vec<usize> {
    let mut out = Vec::new();
    for (bufs, lens) in pkts.chunks_mut(chunk).zip(lens.chunks(chunk)) {
        let mut batch = TagBatch::new();
        for (b, &n) in bufs.iter_mut().zip(lens) {
            let (m, job) = ctx.protect_rtp_deferred(b, n).unwrap();
            out.push(m);
            if let Some(job) = job {
                batch.push(job, b).unwrap();
            }
        }
        assert!(batch.len() <= TagBatch::CAPACITY);
        batch.finish();
    }
    out
}

#[test]
fn split_protect_writes_the_same_bytes_as_protect() {
    // Every profile (AEAD ones finish in phase one), with and without MKI and
    // Cryptex, two SSRCs interleaved, payloads of different lengths (pairs whose
    // messages end at different steps), across a sequence number wrap.
    for p in SrtpProfile::ALL {
        for (mki, cryptex) in [(false, false), (true, false), (false, true)] {
            let mut c = cfg(p).with_cryptex(cryptex);
            if mki {
                c = c.with_mki(&[9, 8, 7]).unwrap();
            }
            let mut whole = SrtpContext::new(c.clone()).unwrap();
            let split = SrtpContext::new(c).unwrap();
            let mut bufs = Vec::new();
            let mut lens = Vec::new();
            for i in 0..40u32 {
                let mut b = vec![0u8; 1600];
                let n = rtp(
                    65_520u16.wrapping_add(i as u16 * 2),
                    0x10 + i % 2,
                    (i as usize * 37) % 1300,
                    &mut b,
                );
                lens.push(n);
                bufs.push(b);
            }
            let expect: Vec<Vec<u8>> = bufs
                .iter()
                .zip(&lens)
                .map(|(b, &n)| {
                    let mut b = b.clone();
                    let m = whole.protect_rtp(&mut b, n).unwrap();
                    b[..m].to_vec()
                })
                .collect();
            // In pairs, then in batches of 3 (SHA-NI), 7 and 40 (lanes when the
            // CPU has AVX-512), each on a fresh context.
            for chunk in [0, 3, 7, 40] {
                let mut split = SrtpContext::new(split.cfg.clone()).unwrap();
                let mut bufs = bufs.clone();
                let got = match chunk {
                    0 => protect_split(&mut split, &mut bufs, &lens),
                    _ => protect_batched(&mut split, &mut bufs, &lens, chunk),
                };
                for (i, (e, (b, m))) in expect.iter().zip(bufs.iter().zip(got)).enumerate() {
                    assert_eq!(
                        &b[..m],
                        &e[..],
                        "{p:?} mki {mki} cryptex {cryptex} batch {chunk} packet {i}"
                    );
                }
                assert_eq!(split.roc(0x10), whole.roc(0x10));
            }
        }
    }
}

#[test]
fn a_pending_tag_needs_its_buffer() {
    let mut tx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    let mut buf = [0u8; 300];
    let n = rtp(1, 5, 160, &mut buf);
    let (m, job) = tx.protect_rtp_deferred(&mut buf, n).unwrap();
    let mut short = buf[..m - 1].to_vec();
    assert_eq!(
        job.unwrap().write(&mut short),
        Err(SrtpError::BufferTooSmall)
    );
    // A pair with one short buffer still writes the other tag.
    let n = rtp(2, 5, 160, &mut buf);
    let (_, a) = tx.protect_rtp_deferred(&mut buf, n).unwrap();
    let mut other = [0u8; 300];
    let n2 = rtp(3, 5, 100, &mut other);
    let (m2, b) = tx.protect_rtp_deferred(&mut other, n2).unwrap();
    let r = PendingTag::write_pair(a.unwrap(), &mut buf[..10], b.unwrap(), &mut other);
    assert_eq!(r, [Err(SrtpError::BufferTooSmall), Ok(())]);
    let mut rx = SrtpContext::new(cfg(SrtpProfile::AesCm128HmacSha1_80)).unwrap();
    rx.unprotect_rtp(&mut other[..m2]).unwrap();
    // A batch refuses the short buffer at once and still tags the others.
    let n = rtp(4, 5, 160, &mut buf);
    let (_, a) = tx.protect_rtp_deferred(&mut buf, n).unwrap();
    let n2 = rtp(5, 5, 100, &mut other);
    let (m2, b) = tx.protect_rtp_deferred(&mut other, n2).unwrap();
    let mut batch = TagBatch::new();
    assert_eq!(
        batch.push(a.unwrap(), &mut buf[..10]),
        Err(SrtpError::BufferTooSmall)
    );
    batch.push(b.unwrap(), &mut other).unwrap();
    assert_eq!(batch.len(), 1);
    drop(batch); // dropping writes the pending tag
    rx.unprotect_rtp(&mut other[..m2]).unwrap();
}

#[test]
fn split_unprotect_accepts_and_rejects_what_unprotect_does() {
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32,
        SrtpProfile::NullHmacSha1_80,
        SrtpProfile::AeadAes128Gcm,
    ] {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        // A batch across the wrap, two SSRCs, with a duplicate of packet 3 in
        // the same batch, packet 5 tampered, and packet 7 replayed from earlier.
        let mut batch: Vec<Vec<u8>> = (0..12u32)
            .map(|i| {
                let mut b = vec![0u8; 400];
                let n = rtp(65_526u16.wrapping_add(i as u16), 0x70 + i % 2, 160, &mut b);
                let m = tx.protect_rtp(&mut b, n).unwrap();
                b.truncate(m);
                b
            })
            .collect();
        let dup = batch[3].clone();
        batch.push(dup);
        batch[5][20] ^= 1;
        let plain: Vec<Vec<u8>> = batch.clone();

        // The whole API, packet by packet, on a twin receiver: the expected results.
        let mut twin = SrtpContext::new(cfg(p)).unwrap();
        twin.unprotect_rtp(&mut batch[7].clone()).unwrap();
        let expect: Vec<Result<Vec<u8>, SrtpError>> = batch
            .iter()
            .map(|b| {
                let mut b = b.clone();
                twin.unprotect_rtp(&mut b).map(|u| b[..u.len].to_vec())
            })
            .collect();

        // Phase one for the whole batch (packet 7 received before it), tags in
        // pairs or in a `CheckBatch`, then finish.
        for batched in [false, true] {
            let mut rx = SrtpContext::new(cfg(p)).unwrap();
            rx.unprotect_rtp(&mut plain[7].clone()).unwrap();
            let mut batch = plain.clone();
            let mut open: Vec<Result<Opening, SrtpError>> = batch
                .iter_mut()
                .map(|b| rx.unprotect_rtp_deferred(b))
                .collect();
            let pending: Vec<usize> = (0..open.len())
                .filter(|&i| matches!(open[i], Ok(Opening::Pending(_))))
                .collect();
            if batched {
                let mut tags = CheckBatch::new();
                for (o, b) in open.iter_mut().zip(&batch) {
                    if let Ok(Opening::Pending(c)) = o {
                        tags.push(c, b);
                    }
                }
                assert_eq!(tags.len(), pending.len());
                tags.finish();
            } else {
                for pair in pending.chunks(2) {
                    if let [i, j] = *pair {
                        let (x, y) = open.split_at_mut(j);
                        if let (Ok(Opening::Pending(a)), Ok(Opening::Pending(b))) =
                            (&mut x[i], &mut y[0])
                        {
                            PendingCheck::compute_pair(a, &batch[i], b, &batch[j]);
                        }
                    }
                    // An odd one out is computed by finish.
                }
            }
            for (i, o) in open.into_iter().enumerate() {
                let got = match o {
                    Ok(Opening::Done(u)) => Ok(batch[i][..u.len].to_vec()),
                    Ok(Opening::Pending(c)) => rx
                        .unprotect_rtp_finish(&mut batch[i], c)
                        .map(|u| batch[i][..u.len].to_vec()),
                    Err(e) => Err(e),
                };
                assert_eq!(got, expect[i], "{p:?} batched {batched} packet {i}");
                if got.is_err() {
                    assert_eq!(batch[i], plain[i], "{p:?} packet {i} changed on error");
                }
            }
            assert_eq!(rx.roc(0x70), twin.roc(0x70));
        }
        assert_eq!(expect[12], Err(SrtpError::Replayed));
        assert_eq!(expect[5], Err(SrtpError::AuthFailed));
        assert_eq!(expect[7], Err(SrtpError::Replayed));
    }
}

#[test]
fn a_check_from_another_context_does_not_authenticate() {
    // Both receivers would accept the packet; the check computed with one
    // context's keys cannot finish in a context with other keys.
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let other = SrtpConfig::new(p, &[0x55; 16], &[0x66; 14]).unwrap();
    let mut tx = SrtpContext::new(cfg(p)).unwrap();
    let mut buf = vec![0u8; 300];
    let n = rtp(10, 0x99, 160, &mut buf);
    let m = tx.protect_rtp(&mut buf, n).unwrap();
    buf.truncate(m);
    let before = buf.clone();
    let mut ours = SrtpContext::new(cfg(p)).unwrap();
    let mut theirs = SrtpContext::new(other).unwrap();
    let Ok(Opening::Pending(mut check)) = ours.unprotect_rtp_deferred(&mut buf) else {
        panic!("an HMAC profile stops at the tag");
    };
    check.compute(&buf);
    assert_eq!(
        theirs.unprotect_rtp_finish(&mut buf, check),
        Err(SrtpError::AuthFailed)
    );
    assert_eq!(buf, before);
    assert_eq!(theirs.stream_count(), 0);
    // The right context, with the tag left for finish to compute.
    let Ok(Opening::Pending(check)) = ours.unprotect_rtp_deferred(&mut buf) else {
        panic!("an HMAC profile stops at the tag");
    };
    let u = ours.unprotect_rtp_finish(&mut buf, check).unwrap();
    let mut plain = vec![0u8; 300];
    let n = rtp(10, 0x99, 160, &mut plain);
    assert_eq!(buf[..u.len], plain[..n]);
}

#[test]
fn every_payload_length_round_trips_and_tampering_changes_nothing() {
    // Payload lengths across partial AES blocks, the 128-byte keystream batches
    // and the 256-byte limit of the keystream computed in the MAC's shadow.
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32,
        SrtpProfile::NullHmacSha1_80,
    ] {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p)).unwrap();
        for (i, payload) in (0..=300).chain([511, 512, 513, 1200]).enumerate() {
            let mut buf = vec![0u8; 1600];
            let n = rtp(i as u16, 0x42, payload, &mut buf);
            let plain = buf[..n].to_vec();
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            buf.truncate(m);
            let mut bad = buf.clone();
            bad[m - 1] ^= 0x80;
            let before = bad.clone();
            assert_eq!(rx.unprotect_rtp(&mut bad), Err(SrtpError::AuthFailed));
            assert_eq!(bad, before, "{p:?} payload {payload}");
            let u = rx.unprotect_rtp(&mut buf).unwrap();
            assert_eq!(buf[..u.len], plain[..], "{p:?} payload {payload}");
        }
    }
}

#[test]
fn protect_matches_aes_ctr_and_hmac_from_their_crates_for_every_length() {
    // The counter blocks, the pipelined MAC and the tail padding, against the
    // `ctr` and `hmac` crates, for payloads across every block and batch edge.
    use cipher::{KeyIvInit, StreamCipher};
    use hmac::{Hmac, Mac};
    let c = cfg(SrtpProfile::AesCm128HmacSha1_80);
    let (mk, ms) = (c.key().to_vec(), c.salt().to_vec());
    let (mut ke, mut ka, mut ks) = ([0u8; 16], [0u8; 20], [0u8; 14]);
    kdf(&mk, &ms, 0, &mut ke);
    kdf(&mk, &ms, 1, &mut ka);
    kdf(&mk, &ms, 2, &mut ks);
    let mut tx = SrtpContext::new(c).unwrap();
    let ssrc = 0x1234_5678u32;
    for (i, payload) in (0..=300).chain([1200, 1500]).enumerate() {
        let seq = i as u16;
        let mut buf = vec![0u8; 1600];
        let n = rtp(seq, ssrc, payload, &mut buf);
        let mut want = buf[..n].to_vec();
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        // IV = salt ^ (SSRC << 64) ^ (index << 16), index = seq with ROC 0.
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&ks);
        for (d, s) in iv[4..8].iter_mut().zip(ssrc.to_be_bytes()) {
            *d ^= s;
        }
        for (d, s) in iv[12..14].iter_mut().zip(seq.to_be_bytes()) {
            *d ^= s;
        }
        ctr::Ctr128BE::<aes::Aes128>::new(&ke.into(), &iv.into()).apply_keystream(&mut want[12..]);
        let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(&ka).unwrap();
        mac.update(&want);
        mac.update(&0u32.to_be_bytes());
        want.extend_from_slice(&mac.finalize().into_bytes()[..10]);
        assert_eq!(buf[..m], want[..], "payload {payload}");
    }
}

#[test]
fn packets_longer_than_max_packet_are_refused_untouched() {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let (mut tx, mut rx) = (
        SrtpContext::new(cfg(p)).unwrap(),
        SrtpContext::new(cfg(p)).unwrap(),
    );
    let mut buf = vec![0u8; MAX_PACKET + 100];
    let n = rtp(1, 7, MAX_PACKET + 1 - 12, &mut buf);
    let before = buf.clone();
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Malformed));
    assert_eq!(tx.protect_rtcp(&mut buf, n), Err(SrtpError::Malformed));
    assert_eq!(
        rx.unprotect_rtp(&mut buf[..n]).map(|_| ()),
        Err(SrtpError::Malformed)
    );
    assert_eq!(
        rx.unprotect_rtcp(&mut buf[..n]).map(|_| ()),
        Err(SrtpError::Malformed)
    );
    assert_eq!(buf, before);
    // The limit is on the protected length: a packet one byte too long once its
    // tag is added is refused, untouched ...
    let n = rtp(2, 7, MAX_PACKET - 12 - 10 + 1, &mut buf);
    let before = buf.clone();
    assert_eq!(tx.protect_rtp(&mut buf, n), Err(SrtpError::Malformed));
    assert_eq!(buf, before);
    // ... and the longest one we protect our unprotect takes.
    let n = rtp(2, 7, MAX_PACKET - 12 - 10, &mut buf);
    let plain = buf[..n].to_vec();
    let m = tx.protect_rtp(&mut buf, n).unwrap();
    assert_eq!(m, MAX_PACKET);
    let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
    assert_eq!(buf[..u.len], plain[..]);
    // SRTCP too (tag and E||index: 14 bytes).
    let mut rtcp = |len: usize, buf: &mut [u8]| {
        buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0, 7]);
        tx.protect_rtcp(buf, len)
    };
    assert_eq!(
        rtcp(MAX_PACKET - 14 + 1, &mut buf),
        Err(SrtpError::Malformed)
    );
    let m = rtcp(MAX_PACKET - 14, &mut buf).unwrap();
    assert_eq!(m, MAX_PACKET);
    assert_eq!(
        rx.unprotect_rtcp(&mut buf[..m]).unwrap().len,
        MAX_PACKET - 14
    );
}
