//! Cryptex (RFC 9335): the appendix A test vectors, round trips for every profile,
//! tampering, mixed cryptex / plain traffic and malformed input.

use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 9335 A.1: AES_CM_128_HMAC_SHA1_80, master key/salt as in RFC 3711 B.3.
fn a1_config() -> SrtpConfig {
    SrtpConfig::new(
        SrtpProfile::AesCm128HmacSha1_80,
        &hex("e1f97a0d3e018be0d64fa32c06de4139"),
        &hex("0ec675ad498afeebb6960b3aabe6"),
    )
    .unwrap()
    .with_cryptex(true)
}

/// RFC 9335 A.2: AEAD_AES_128_GCM.
fn a2_config() -> SrtpConfig {
    SrtpConfig::new(
        SrtpProfile::AeadAes128Gcm,
        &hex("000102030405060708090a0b0c0d0e0f"),
        &hex("a0a1a2a3a4a5a6a7a8a9aaab"),
    )
    .unwrap()
    .with_cryptex(true)
}

/// The plaintext packets of RFC 9335 A.1.1-A.1.6 (the same for A.2.1-A.2.6).
const PLAIN: [&str; 6] = [
    // x.1 one-byte extension.
    "900f1235 decafbad cafebabe bede0001 51000200
     abababab abababab abababab abababab",
    // x.2 two-byte extension.
    "900f1236 decafbad cafebabe 10000001 05020002
     abababab abababab abababab abababab",
    // x.3 one-byte extension and CSRCs.
    "920f1238 decafbad cafebabe 0001e240 0000b26e bede0001 51000200
     abababab abababab abababab abababab",
    // x.4 two-byte extension and CSRCs.
    "920f1239 decafbad cafebabe 0001e240 0000b26e 10000001 05020002
     abababab abababab abababab abababab",
    // x.5 empty one-byte extension and CSRCs.
    "920f123a decafbad cafebabe 0001e240 0000b26e bede0000
     abababab abababab abababab abababab",
    // x.6 empty two-byte extension and CSRCs.
    "920f123b decafbad cafebabe 0001e240 0000b26e 10000000
     abababab abababab abababab abababab",
];

/// RFC 9335 A.1.1-A.1.6, the SRTP packets.
const A1_PROTECTED: [&str; 6] = [
    "900f1235 decafbad cafebabe c0de0001 eb923652 51c3e036 f8de27e9 c27ee3e0
     b4651d9f bc4218a7 0244522f 34a5",
    "900f1236 decafbad cafebabe c2de0001 4ed9cc4e 6a712b30 96c5ca77 339d4204
     ce0d7739 6cab6958 5fbce381 94a5",
    "920f1238 decafbad cafebabe 8bb6e12b 5cff16dd c0de0001 92838c8c 09e58393
     e1de3a9a 74734d67 45671338 c3acf11d a2df8423 bee0",
    "920f1239 decafbad cafebabe f70e513e b90b9b25 c2de0001 bbed4848 faa64466
     5f3d7f34 125914e9 f4d0ae92 3c6f479b 95a0f7b5 3133",
    "920f123a decafbad cafebabe 7130b6ab fe2ab0e3 c0de0000 e3d9f64b 25c9e74c
     b4cf8e43 fb92e378 1c2c0cea b6b3a499 a14c",
    "920f123b decafbad cafebabe cbf24c12 4330e1c8 c2de0000 599dd45b c9d687b6
     03e8b59d 771fd38e 88b170e0 cd31e125 eabe",
];

/// RFC 9335 A.2.1-A.2.6, the SRTP packets.
const A2_PROTECTED: [&str; 6] = [
    "900f1235 decafbad cafebabe c0de0001 39972dc9 572c4d99 e8fc355d e743fb2e
     94f9d8ff 54e72f41 93bbc5c7 4ffab0fa 9fa0fbeb",
    "900f1236 decafbad cafebabe c2de0001 bb75a4c5 45cd1f41 3bdb7daa 2b1e3263
     de313667 c9632490 81b35a65 f5cb6c88 b394235f",
    "920f1238 decafbad cafebabe 63bbccc4 a7f695c4 c0de0001 8ad7c71f ac70a80c
     92866b4c 6ba98546 ef913586 e95ffaaf fe956885 bb0647a8 bc094ac8",
    "920f1239 decafbad cafebabe 3680524f 8d312b00 c2de0001 c78d1200 38422bc1
     11a7187a 18246f98 0c059cc6 bc9df8b6 26394eca 344e4b05 d80fea83",
    "920f123a decafbad cafebabe 15b6bb43 37906fff c0de0000 b7b96453 7a2b03ab
     7ba5389c e9331712 6b5d974d f30c6884 dcb651c5 e120c1da",
    "920f123b decafbad cafebabe dcb38c9e 48bf95f4 c2de0000 61ee432c f9203170
     76613258 d3ce4236 c06ac429 681ad084 13512dc9 8b5207d8",
];

/// Protects `plain` with a fresh context, checks the result is `want`; unprotects
/// `want` with another fresh context and checks the result is `back`.
fn check_vector(cfg: &SrtpConfig, plain: &[u8], want: &[u8], back: &[u8], name: &str) {
    let mut tx = SrtpContext::new(cfg.clone()).unwrap();
    let mut buf = [0u8; 128];
    buf[..plain.len()].copy_from_slice(plain);
    let n = tx.protect_rtp(&mut buf, plain.len()).unwrap();
    assert_eq!(buf[..n], want[..], "{name}: protect");

    let mut rx = SrtpContext::new(cfg.clone()).unwrap();
    let mut pkt = want.to_vec();
    let u = rx.unprotect_rtp(&mut pkt).unwrap();
    assert_eq!(pkt[..u.len], back[..], "{name}: unprotect");
    assert!(u.cryptex, "{name}");
    assert_eq!(u.payload, back.len() - 16..back.len(), "{name}: payload");
}

#[test]
fn rfc9335_a1_aes_cm_128_hmac_sha1_80_vectors() {
    let cfg = a1_config();
    for (i, (p, w)) in PLAIN.iter().zip(A1_PROTECTED).enumerate() {
        let (p, w) = (hex(p), hex(w));
        check_vector(&cfg, &p, &w, &p, &format!("A.1.{}", i + 1));
    }
}

#[test]
fn rfc9335_a2_aead_aes_128_gcm_vectors() {
    let cfg = a2_config();
    // The session key and salt listed in A.2.
    let (mut key, mut salt) = ([0u8; 16], [0u8; 12]);
    kdf(cfg.key(), cfg.salt(), 0, &mut key);
    kdf(cfg.key(), cfg.salt(), 2, &mut salt);
    assert_eq!(key.to_vec(), hex("077c6143cb221bc355ff23d5f984a16e"));
    assert_eq!(salt.to_vec(), hex("9af3e95364ebac9c99c5a7c4"));
    for (i, (p, w)) in PLAIN.iter().zip(A2_PROTECTED).enumerate() {
        let (p, w) = (hex(p), hex(w));
        check_vector(&cfg, &p, &w, &p, &format!("A.2.{}", i + 1));
    }
}

#[test]
fn csrcs_without_extension_get_an_empty_c0de_block() {
    // RFC 9335 4.1: a packet with CSRCs and no extension is sent with an empty
    // 0xC0DE block, which makes it identical on the wire to the x.5 vectors (empty
    // one-byte extension and CSRCs); the receiver keeps the block as an empty
    // 0xBEDE extension.
    for (cfg, protected) in [
        (a1_config(), A1_PROTECTED[4]),
        (a2_config(), A2_PROTECTED[4]),
    ] {
        let with_ext = hex(PLAIN[4]);
        // 820f123a ..., no X bit, no extension.
        let mut plain = with_ext[..20].to_vec();
        plain[0] &= !0x10;
        plain.extend_from_slice(&with_ext[24..]);
        let want = hex(protected);
        check_vector(&cfg, &plain, &want, &with_ext, "CSRCs only");

        // It needs 4 bytes more room than plain SRTP, which rtp_overhead counts.
        assert_eq!(
            cfg.rtp_overhead(),
            cfg.profile().rtp_tag_len() + 4,
            "{:?}",
            cfg.profile()
        );
        assert_eq!(want.len(), plain.len() + cfg.rtp_overhead());
        let mut tx = SrtpContext::new(cfg.clone()).unwrap();
        let mut buf = vec![0u8; want.len() - 1];
        buf[..plain.len()].copy_from_slice(&plain);
        let before = buf.clone();
        assert_eq!(
            tx.protect_rtp(&mut buf, plain.len()),
            Err(SrtpError::BufferTooSmall)
        );
        assert_eq!(buf, before);
    }
}

fn cfg(p: SrtpProfile) -> SrtpConfig {
    let key: Vec<u8> = (0..p.key_len() as u8).collect();
    let salt: Vec<u8> = (100..100 + p.salt_len() as u8).collect();
    SrtpConfig::new(p, &key, &salt).unwrap()
}

/// Packet shapes: (CSRC count, extension profile and body words or none).
const SHAPES: [(u8, Option<(u16, u16)>); 7] = [
    (0, Some((0xBEDE, 2))),
    (0, Some((0x1000, 1))),
    (3, Some((0xBEDE, 1))),
    (15, Some((0x1000, 3))),
    (2, Some((0xBEDE, 0))),
    (4, None),
    (0, None),
];

/// An RTP packet of the given shape with a 40-byte payload; returns its length.
fn shaped(seq: u16, cc: u8, ext: Option<(u16, u16)>, buf: &mut [u8]) -> usize {
    buf[0] = 0x80 | cc | if ext.is_some() { 0x10 } else { 0 };
    buf[1] = 96;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 960).to_be_bytes());
    buf[8..12].copy_from_slice(&0x5eed_f00du32.to_be_bytes());
    let mut at = 12;
    for i in 0..u32::from(cc) {
        buf[at..at + 4].copy_from_slice(&(0x1000_0000 + i).to_be_bytes());
        at += 4;
    }
    if let Some((profile, words)) = ext {
        buf[at..at + 2].copy_from_slice(&profile.to_be_bytes());
        buf[at + 2..at + 4].copy_from_slice(&words.to_be_bytes());
        at += 4;
        for b in &mut buf[at..at + 4 * usize::from(words)] {
            *b = 0x5a;
        }
        at += 4 * usize::from(words);
    }
    for (i, b) in buf[at..at + 40].iter_mut().enumerate() {
        *b = i as u8 ^ seq as u8;
    }
    at + 40
}

#[test]
fn every_profile_round_trips_every_shape() {
    for p in SrtpProfile::ALL {
        for mki in [None, Some(&[7u8, 8][..])] {
            let mut c = cfg(p).with_cryptex(true);
            if let Some(m) = mki {
                c = c.with_mki(m).unwrap();
            }
            let mut tx = SrtpContext::new(c.clone()).unwrap();
            let mut rx = SrtpContext::new(c.clone()).unwrap();
            let null = matches!(
                p,
                SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32
            );
            for (i, (cc, ext)) in SHAPES.into_iter().enumerate() {
                let seq = 100 + i as u16;
                let mut buf = [0u8; 400];
                let n = shaped(seq, cc, ext, &mut buf);
                let plain = buf[..n].to_vec();
                let m = tx.protect_rtp(&mut buf, n).unwrap();
                let what = format!("{p:?} mki {mki:?} cc {cc} ext {ext:?}");
                let ext_at = 12 + 4 * usize::from(cc);
                let inserted = cc > 0 && ext.is_none();
                let grow = if inserted { 4 } else { 0 };
                assert_eq!(
                    m,
                    n + grow + p.rtp_tag_len() + usize::from(c.mki_len),
                    "{what}"
                );
                assert_eq!(buf[1..12], plain[1..12], "{what}: fixed header in clear");
                if cc > 0 || ext.is_some() {
                    assert_eq!(buf[0] & 0x10, 0x10, "{what}: X bit");
                    let marked = if matches!(ext, Some((0x1000, _))) {
                        0xC2DE
                    } else {
                        0xC0DE
                    };
                    assert_eq!(
                        u16::from_be_bytes([buf[ext_at], buf[ext_at + 1]]),
                        marked,
                        "{what}: marked"
                    );
                    assert_eq!(
                        buf[ext_at + 2..ext_at + 4],
                        w_of(ext).to_be_bytes(),
                        "{what}: length in clear"
                    );
                    if !null {
                        if cc > 0 {
                            assert_ne!(buf[12..ext_at], plain[12..ext_at], "{what}: CSRCs");
                        }
                        let body = ext_at + 4..ext_at + 4 + 4 * usize::from(w_of(ext));
                        if !body.is_empty() {
                            assert_ne!(buf[body.clone()], plain[body], "{what}: ext body");
                        }
                    }
                } else {
                    assert_eq!(buf[0], plain[0], "{what}");
                }
                let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
                assert_eq!(u.cryptex, cc > 0 || ext.is_some(), "{what}");
                assert_eq!(u.len, n + grow, "{what}");
                if inserted {
                    // The empty block stays, as an empty one-byte extension.
                    assert_eq!(buf[0], plain[0] | 0x10, "{what}");
                    assert_eq!(buf[1..ext_at], plain[1..ext_at], "{what}");
                    assert_eq!(buf[ext_at..ext_at + 4], [0xBE, 0xDE, 0, 0], "{what}");
                    assert_eq!(buf[ext_at + 4..u.len], plain[ext_at..], "{what}");
                } else {
                    assert_eq!(buf[..u.len], plain[..], "{what}");
                }
                assert_eq!(u.payload, u.len - 40..u.len, "{what}");
            }
        }
    }
}

/// Extension body words of a shape (0 for the inserted empty block).
fn w_of(ext: Option<(u16, u16)>) -> u16 {
    ext.map_or(0, |(_, w)| w)
}

#[test]
fn tampering_anywhere_fails_and_leaves_the_buffer_unchanged() {
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::NullHmacSha1_80,
    ] {
        let c = cfg(p).with_cryptex(true);
        let mut tx = SrtpContext::new(c.clone()).unwrap();
        let mut rx = SrtpContext::new(c).unwrap();
        let mut buf = [0u8; 400];
        let n = shaped(500, 2, Some((0xBEDE, 2)), &mut buf);
        let m = tx.protect_rtp(&mut buf, n).unwrap();
        let good = buf[..m].to_vec();
        // Every byte: fixed header, CSRCs, extension header (the marker and the
        // length), extension body, payload, tag.
        for at in 0..m {
            let mut b = good.clone();
            b[at] ^= 0x04;
            let before = b.clone();
            let r = rx.unprotect_rtp(&mut b);
            assert!(r.is_err(), "{p:?} byte {at}: {r:?}");
            assert_eq!(b, before, "{p:?} byte {at}: buffer changed");
        }
        // The state did not move: the genuine packet still goes in.
        let mut b = good.clone();
        let u = rx.unprotect_rtp(&mut b).unwrap();
        assert!(u.cryptex);
        assert_eq!(
            rx.unprotect_rtp(&mut good.clone()),
            Err(SrtpError::Replayed)
        );
    }
}

#[test]
fn plain_packets_still_work_in_a_cryptex_context() {
    // RFC 9335 allows a sender to mix cryptex and plain SRTP: a cryptex receiver
    // takes packets of a sender that does not use it, extensions and CSRCs included.
    for p in SrtpProfile::ALL {
        let mut tx = SrtpContext::new(cfg(p)).unwrap();
        let mut rx = SrtpContext::new(cfg(p).with_cryptex(true)).unwrap();
        for (i, (cc, ext)) in SHAPES.into_iter().enumerate() {
            let mut buf = [0u8; 400];
            let n = shaped(7 + i as u16, cc, ext, &mut buf);
            let plain = buf[..n].to_vec();
            let m = tx.protect_rtp(&mut buf, n).unwrap();
            assert_eq!(buf[..n - 40], plain[..n - 40], "{p:?}: header in clear");
            let u = rx.unprotect_rtp(&mut buf[..m]).unwrap();
            assert!(!u.cryptex);
            assert_eq!(buf[..u.len], plain[..], "{p:?} cc {cc} ext {ext:?}");
        }
    }
}

#[test]
fn without_cryptex_a_c0de_block_is_an_opaque_extension() {
    let mut buf = [0u8; 400];
    let n = shaped(9, 2, Some((0xBEDE, 1)), &mut buf);
    let plain = buf[..n].to_vec();
    // HMAC: the packet authenticates (the tag covers it as sent); nothing is
    // restored, the CSRCs and the extension stay as they were sent.
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let mut tx = SrtpContext::new(cfg(p).with_cryptex(true)).unwrap();
    let mut rx = SrtpContext::new(cfg(p)).unwrap();
    let mut b = buf;
    let m = tx.protect_rtp(&mut b, n).unwrap();
    let sent = b[..m].to_vec();
    let u = rx.unprotect_rtp(&mut b[..m]).unwrap();
    assert!(!u.cryptex);
    assert_eq!(b[..24], sent[..24], "CSRCs and extension header untouched");
    assert_eq!(b[20..22], [0xC0, 0xDE]);
    assert_ne!(b[..u.len], plain[..]);
    // GCM: the AAD differs (the receiver takes the encrypted CSRCs and extension as
    // AAD), so it fails authentication, leaving the packet as it was.
    let p = SrtpProfile::AeadAes128Gcm;
    let mut tx = SrtpContext::new(cfg(p).with_cryptex(true)).unwrap();
    let mut rx = SrtpContext::new(cfg(p)).unwrap();
    let mut b = buf;
    let m = tx.protect_rtp(&mut b, n).unwrap();
    let sent = b[..m].to_vec();
    assert_eq!(rx.unprotect_rtp(&mut b[..m]), Err(SrtpError::AuthFailed));
    assert_eq!(b[..m], sent[..]);
}

#[test]
fn extensions_cryptex_cannot_carry_are_refused() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        // RFC 3550 extensions of another profile, two-byte with appbits, and a packet
        // already marked as encrypted: refused before anything changes.
        for (cc, profile) in [
            (0, 0xABAC),
            (2, 0xABAC),
            (0, 0x1001),
            (1, 0x100f),
            (0, 0xC0DE),
        ] {
            let mut tx = SrtpContext::new(cfg(p).with_cryptex(true)).unwrap();
            let mut buf = [0u8; 400];
            let n = shaped(1, cc, Some((profile, 1)), &mut buf);
            let before = buf;
            assert_eq!(
                tx.protect_rtp(&mut buf, n),
                Err(SrtpError::CryptexUnsupported),
                "{p:?} {profile:#x}"
            );
            assert_eq!(buf, before);
            assert_eq!(tx.stream_count(), 0, "no state for a refused packet");
            // Without cryptex they are ordinary SRTP.
            let mut plain_tx = SrtpContext::new(cfg(p)).unwrap();
            plain_tx.protect_rtp(&mut buf, n).unwrap();
        }
    }
}

#[test]
fn config_flag_and_debug() {
    let c = cfg(SrtpProfile::AeadAes256Gcm);
    assert!(!c.cryptex());
    assert_eq!(c.rtp_overhead(), 16);
    let c = c.with_cryptex(true);
    assert!(c.cryptex());
    assert_eq!(c.rtp_overhead(), 20);
    assert!(format!("{c:?}").contains("cryptex: true"));
    assert!(!SrtpError::CryptexUnsupported.to_string().is_empty());
}

#[test]
fn malformed_and_random_input_never_panics() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(9335);
    for p in SrtpProfile::ALL {
        let c = cfg(p).with_cryptex(true);
        let mut tx = SrtpContext::new(c.clone()).unwrap();
        let mut rx = SrtpContext::new(c).unwrap();
        for _ in 0..2000 {
            let len = rng.gen_range(0..120);
            let mut buf = [0u8; 160];
            rng.fill(&mut buf[..len]);
            // Mostly version 2 with X set, and often a cryptex marker where the
            // extension header would be.
            if len > 0 && rng.gen_bool(0.8) {
                buf[0] = 0x90 | (buf[0] & 0x2f);
            }
            let at = 12 + 4 * usize::from(buf[0] & 0x0f);
            if at + 2 <= len && rng.gen_bool(0.5) {
                let marker: u16 = [0xC0DE, 0xC2DE, 0xBEDE, 0x1000][rng.gen_range(0..4)];
                buf[at..at + 2].copy_from_slice(&marker.to_be_bytes());
            }
            let original = buf;
            if rx.unprotect_rtp(&mut buf[..len]).is_err() {
                assert_eq!(buf, original, "{p:?}: failed unprotect changed the buffer");
            }
            let room = rng.gen_range(len..=160);
            if tx.protect_rtp(&mut buf[..room], len).is_err() {
                assert_eq!(buf, original, "{p:?}: failed protect changed the buffer");
            }
        }
    }
}

/// One operation of the fuzz below on a copy of `input` in a buffer of `room`
/// bytes (`len` of them the packet); on error the buffer must be as it was.
fn fuzz_op(op: u8, ctx: &mut SrtpContext, input: &[u8], room: usize) -> Result<(), SrtpError> {
    let len = input.len();
    let mut buf = vec![0u8; room.max(len)];
    buf[..len].copy_from_slice(input);
    let before = buf.clone();
    let r = match op {
        0 => ctx.unprotect_rtp(&mut buf[..len]).map(|_| ()),
        1 => ctx.unprotect_rtcp(&mut buf[..len]).map(|_| ()),
        2 | 3 => match ctx.unprotect_rtp_deferred(&mut buf[..len]) {
            Ok(Opening::Pending(mut check)) => {
                // Tag computed in phase two, or left to finish.
                if op == 2 {
                    check.compute(&buf[..len]);
                }
                ctx.unprotect_rtp_finish(&mut buf[..len], check).map(|_| ())
            }
            r => r.map(|_| ()),
        },
        4 => ctx.protect_rtp(&mut buf, len).map(|_| ()),
        5 => ctx.protect_rtcp(&mut buf, len).map(|_| ()),
        _ => ctx
            .protect_rtp_deferred(&mut buf, len)
            .and_then(|(_, tag)| match tag {
                Some(tag) => tag.write(&mut buf),
                None => Ok(()),
            }),
    };
    if r.is_err() {
        assert_eq!(buf, before, "op {op}: a refused packet changed ({r:?})");
    }
    r
}

#[test]
fn random_and_mangled_input_in_every_api_never_panics_nor_changes_a_refused_buffer() {
    // Unprotect (whole and split) of SRTP and SRTCP and protect (whole and
    // split), for CM, GCM and NULL profiles, plain, with an MKI, strict, and both:
    // random bytes, and genuine packets mangled (a byte flipped, cut short,
    // another SSRC) or intact (accepted once, then replays).
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(3711);
    const SSRC: u32 = 0x5eed_f00d;
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::NullHmacSha1_80,
    ] {
        for (mki, strict) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = cfg(p).with_strict_ssrc(strict);
            if mki {
                c = c.with_mki(&[7, 0, 9]).unwrap();
            }
            let mut sender = SrtpContext::new(c.clone()).unwrap();
            let mut tx = SrtpContext::new(c.clone()).unwrap();
            let mut rx = SrtpContext::new(c).unwrap();
            for ctx in [&mut sender, &mut tx, &mut rx] {
                ctx.add_ssrc(SSRC);
            }
            let mut accepted = 0;
            for i in 0..400u16 {
                let mut input = if rng.gen_bool(0.3) {
                    let mut v = vec![0u8; rng.gen_range(0..120)];
                    rng.fill(&mut v[..]);
                    if let Some(b0) = v.first_mut() {
                        if rng.gen_bool(0.8) {
                            *b0 = 0x80 | (*b0 & 0x3f);
                        }
                    }
                    v
                } else {
                    // A genuine packet of the sender, RTP or RTCP.
                    let mut buf = [0u8; 200];
                    let n = if rng.gen_bool(0.5) {
                        let n = shaped(i, 0, None, &mut buf);
                        sender.protect_rtp(&mut buf, n).unwrap()
                    } else {
                        buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0x5e, 0xed, 0xf0, 0x0d]);
                        sender.protect_rtcp(&mut buf, 8).unwrap()
                    };
                    buf[..n].to_vec()
                };
                match rng.gen_range(0..4) {
                    0 if !input.is_empty() => {
                        let at = rng.gen_range(0..input.len());
                        input[at] ^= 1 << rng.gen_range(0..8);
                    }
                    1 => input.truncate(rng.gen_range(0..=input.len())),
                    2 if input.len() >= 12 => {
                        input[8..12].copy_from_slice(&rng.gen::<u32>().to_be_bytes());
                    }
                    _ => {}
                }
                for op in 0..4 {
                    accepted += usize::from(fuzz_op(op, &mut rx, &input, 0).is_ok());
                }
                let room = input.len() + rng.gen_range(0..40);
                for op in 4..7 {
                    let _ = fuzz_op(op, &mut tx, &input, room);
                }
            }
            // Intact genuine packets were among the inputs.
            assert!(accepted > 0, "{p:?} mki {mki} strict {strict}");
        }
    }
}
