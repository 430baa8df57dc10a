//! Interop with libsrtp 2 (the system library) for every profile both implement:
//! our protect -> libsrtp unprotect and back, identical ciphertext for identical
//! input, across a sequence wrap (ROC 0 -> 1), reordering inside the replay window,
//! replays and tampered packets rejected by both (SRTP and SRTCP), SRTCP both
//! ways, libsrtp's authenticated-only SRTCP, and a repeated send index refused by
//! both unless `allow_repeat_tx`; tags computed in batches (`TagBatch`,
//! `CheckBatch`) both ways.

use libsrtp_shim::{status, Options, Session};
use rtp_core::srtp::{
    CheckBatch, Opening, SrtpConfig, SrtpContext, SrtpError, SrtpProfile, TagBatch,
};

fn key_salt(p: SrtpProfile) -> Vec<u8> {
    (0..(p.key_len() + p.salt_len()) as u8)
        .map(|i| i.wrapping_mul(13).wrapping_add(1))
        .collect()
}

fn ours(p: SrtpProfile) -> SrtpContext {
    SrtpContext::new(SrtpConfig::from_key_salt(p, &key_salt(p)).unwrap()).unwrap()
}

fn rtp(seq: u16, payload: usize) -> Vec<u8> {
    let mut v = vec![0x80, 0x00];
    v.extend(seq.to_be_bytes());
    v.extend((u32::from(seq) * 160).to_be_bytes());
    v.extend(0xdead_beefu32.to_be_bytes());
    v.extend((0..payload).map(|i| (i as u8) ^ (seq as u8)));
    v
}

fn protect_ours(ctx: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 64, 0);
    let n = ctx.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

fn protect_lib(s: &mut Session, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 64, 0);
    let n = s.protect(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn rtp_both_ways_identical_ciphertext_across_wrap() {
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let mut our_tx = ours(p);
        let mut our_rx = ours(p);
        let mut lib_tx = Session::new(p, &ks, true, 1024).unwrap();
        let mut lib_rx = Session::new(p, &ks, false, 1024).unwrap();
        for i in 0..300u32 {
            let seq = (65_400 + i) as u16;
            let plain = rtp(seq, if i % 2 == 0 { 160 } else { 1200 });
            let a = protect_ours(&mut our_tx, &plain);
            let b = protect_lib(&mut lib_tx, &plain);
            assert_eq!(a, b, "{p:?} seq {seq}: ciphertexts differ");
            let mut x = a.clone();
            let n = lib_rx.unprotect(&mut x).unwrap();
            assert_eq!(&x[..n], &plain[..], "{p:?}: libsrtp decrypts ours");
            let mut y = b.clone();
            let u = our_rx.unprotect_rtp(&mut y).unwrap();
            assert_eq!(&y[..u.len], &plain[..], "{p:?}: we decrypt libsrtp's");
        }
        assert_eq!(our_rx.roc(0xdead_beef), Some(1));
    }
}

/// Batches of 20 packets across the wrap (16 in the lanes, 4 in pairs): ours
/// protected with a `TagBatch` -> libsrtp, libsrtp's -> ours with a
/// `CheckBatch`, for every profile both have (AEAD ones finish in phase one).
#[test]
fn batched_tags_both_ways_across_wrap() {
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let (mut our_tx, mut our_rx) = (ours(p), ours(p));
        let mut lib_tx = Session::new(p, &ks, true, 1024).unwrap();
        let mut lib_rx = Session::new(p, &ks, false, 1024).unwrap();
        for round in 0..8u16 {
            let plains: Vec<Vec<u8>> = (0..20u16)
                .map(|k| {
                    rtp(
                        65_470u16.wrapping_add(round * 20 + k),
                        160 + usize::from(k) * 50,
                    )
                })
                .collect();
            let mut bufs: Vec<Vec<u8>> = plains
                .iter()
                .map(|pl| {
                    let mut b = pl.clone();
                    b.resize(pl.len() + 64, 0);
                    b
                })
                .collect();
            let mut lens = Vec::new();
            let mut tags = TagBatch::new();
            for (b, pl) in bufs.iter_mut().zip(&plains) {
                let (n, tag) = our_tx.protect_rtp_deferred(b, pl.len()).unwrap();
                lens.push(n);
                if let Some(tag) = tag {
                    tags.push(tag, b).unwrap();
                }
            }
            tags.finish();
            for ((b, &n), pl) in bufs.iter_mut().zip(&lens).zip(&plains) {
                let m = lib_rx.unprotect(&mut b[..n]).unwrap();
                assert_eq!(&b[..m], &pl[..], "{p:?}: libsrtp decrypts our batch");
            }
            let mut theirs: Vec<Vec<u8>> = plains
                .iter()
                .map(|pl| protect_lib(&mut lib_tx, pl))
                .collect();
            let mut opened: Vec<Option<Opening>> = theirs
                .iter_mut()
                .map(|b| Some(our_rx.unprotect_rtp_deferred(b).unwrap()))
                .collect();
            let mut checks = CheckBatch::new();
            for (o, b) in opened.iter_mut().zip(&theirs) {
                if let Some(Opening::Pending(c)) = o {
                    checks.push(c, b);
                }
            }
            checks.finish();
            for ((o, b), pl) in opened.iter_mut().zip(&mut theirs).zip(&plains) {
                let u = match o.take().unwrap() {
                    Opening::Done(u) => u,
                    Opening::Pending(c) => our_rx.unprotect_rtp_finish(b, c).unwrap(),
                };
                assert_eq!(&b[..u.len], &pl[..], "{p:?}: we decrypt libsrtp's batch");
            }
        }
        assert_eq!(our_rx.roc(0xdead_beef), Some(1), "{p:?}");
    }
}

#[test]
fn reorder_replay_and_tamper_rejected_by_both() {
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let mut tx = ours(p);
        let pkts: Vec<Vec<u8>> = (100..120u16)
            .map(|s| protect_ours(&mut tx, &rtp(s, 160)))
            .collect();
        let mut our_rx = ours(p);
        let mut lib_rx = Session::new(p, &ks, false, 1024).unwrap();
        for i in [1usize, 0, 3, 2, 10, 5, 4, 9, 8] {
            our_rx.unprotect_rtp(&mut pkts[i].clone()).unwrap();
            lib_rx.unprotect(&mut pkts[i].clone()).unwrap();
        }
        // Replay.
        assert_eq!(
            our_rx.unprotect_rtp(&mut pkts[3].clone()),
            Err(SrtpError::Replayed)
        );
        assert_eq!(
            lib_rx.unprotect(&mut pkts[3].clone()).unwrap_err().0,
            status::REPLAY_FAIL
        );
        // Tampered payload byte.
        let mut t = pkts[12].clone();
        t[20] ^= 0x40;
        let before = t.clone();
        assert_eq!(our_rx.unprotect_rtp(&mut t), Err(SrtpError::AuthFailed));
        assert_eq!(t, before, "our failed unprotect leaves the buffer alone");
        assert_eq!(lib_rx.unprotect(&mut t).unwrap_err().0, status::AUTH_FAIL);
        // Tampered tag.
        let mut t = pkts[13].clone();
        let last = t.len() - 1;
        t[last] ^= 1;
        assert_eq!(
            our_rx.unprotect_rtp(&mut t.clone()),
            Err(SrtpError::AuthFailed)
        );
        assert_eq!(lib_rx.unprotect(&mut t).unwrap_err().0, status::AUTH_FAIL);
        // Neither took the tampered packets' indices.
        for i in [12, 13] {
            our_rx.unprotect_rtp(&mut pkts[i].clone()).unwrap();
            lib_rx.unprotect(&mut pkts[i].clone()).unwrap();
        }
    }
}

/// An RR with one report block: 32 bytes, sender SSRC 0xdeadbeef.
fn rr() -> Vec<u8> {
    let mut plain = vec![0x81u8, 201, 0, 7, 0xde, 0xad, 0xbe, 0xef];
    plain.extend((0..24u8).map(|i| i.wrapping_mul(5)));
    plain
}

fn protect_rtcp_with(f: impl FnOnce(&mut [u8], usize) -> usize) -> Vec<u8> {
    let plain = rr();
    let mut buf = plain.clone();
    buf.resize(128, 0);
    let n = f(&mut buf, plain.len());
    buf.truncate(n);
    buf
}

#[test]
fn srtcp_reorder_replay_and_tamper_rejected_by_both() {
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let mut our_tx = ours(p);
        let mut lib_tx = Session::new(p, &ks, true, 1024).unwrap();
        let mut our_rx = ours(p);
        let mut lib_rx = Session::new(p, &ks, false, 1024).unwrap();
        let ours_sent: Vec<Vec<u8>> = (0..8)
            .map(|_| protect_rtcp_with(|b, n| our_tx.protect_rtcp(b, n).unwrap()))
            .collect();
        let libs_sent: Vec<Vec<u8>> = (0..8)
            .map(|_| protect_rtcp_with(|b, n| lib_tx.protect_rtcp(b, n).unwrap()))
            .collect();
        // Reordered: accepted by both.
        for i in [1usize, 0, 3, 2] {
            let n = lib_rx.unprotect_rtcp(&mut ours_sent[i].clone()).unwrap();
            assert_eq!(n, 32, "{p:?}");
            let u = our_rx.unprotect_rtcp(&mut libs_sent[i].clone()).unwrap();
            assert_eq!(u.len, 32, "{p:?}");
        }
        // Replays.
        assert_eq!(
            lib_rx
                .unprotect_rtcp(&mut ours_sent[2].clone())
                .unwrap_err()
                .0,
            status::REPLAY_FAIL,
            "{p:?}"
        );
        assert_eq!(
            our_rx.unprotect_rtcp(&mut libs_sent[2].clone()),
            Err(SrtpError::Replayed),
            "{p:?}"
        );
        // Tampered: a body byte, the last byte (tag or index), the E flag.
        for (k, at) in [(4usize, Some(12usize)), (5, None), (6, Some(0))] {
            for (pkts, by_lib) in [(&ours_sent, true), (&libs_sent, false)] {
                let mut t = pkts[k].clone();
                let at = match at {
                    Some(0) => e_flag_at(p, t.len()),
                    Some(at) => at,
                    None => t.len() - 1,
                };
                t[at] ^= 0x80;
                if by_lib {
                    let e = lib_rx.unprotect_rtcp(&mut t).unwrap_err().0;
                    // With the HMAC profiles, a cleared E flag where the policy
                    // encrypts is refused before the tag is checked
                    // (srtp_err_status_cant_check).
                    assert!(
                        e == status::AUTH_FAIL || (k == 6 && e == CANT_CHECK),
                        "{p:?} byte {at}: libsrtp takes our tampered SRTCP ({e})"
                    );
                } else {
                    let before = t.clone();
                    assert_eq!(
                        our_rx.unprotect_rtcp(&mut t),
                        Err(SrtpError::AuthFailed),
                        "{p:?} byte {at}: we take libsrtp's tampered SRTCP"
                    );
                    assert_eq!(t, before);
                }
            }
        }
        // The genuine ones still go in.
        for k in 4..8 {
            lib_rx.unprotect_rtcp(&mut ours_sent[k].clone()).unwrap();
            our_rx.unprotect_rtcp(&mut libs_sent[k].clone()).unwrap();
        }
    }
}

/// libsrtp's `srtp_err_status_cant_check`.
const CANT_CHECK: i32 = 14;

/// Where the byte holding the E flag is in an SRTCP packet of `len` bytes (no MKI).
fn e_flag_at(p: SrtpProfile, len: usize) -> usize {
    if p.is_aead() {
        len - 4
    } else {
        len - 4 - p.rtcp_tag_len()
    }
}

#[test]
fn srtcp_authenticated_only_from_libsrtp() {
    // libsrtp with sec_serv_auth for RTCP sends E = 0 and the packet in clear;
    // we authenticate it (GCM: RFC 7714 9.3, the whole packet as AAD), and refuse
    // it tampered.
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let opts = Options {
            rtcp_auth_only: true,
            ..Options::default()
        };
        let mut lib_tx = Session::with_options(p, &ks, true, 1024, opts).unwrap();
        let mut our_rx = ours(p);
        for round in 0..3 {
            let pkt = protect_rtcp_with(|b, n| lib_tx.protect_rtcp(b, n).unwrap());
            assert_eq!(pkt[..32], rr()[..], "{p:?}: sent in clear");
            assert_eq!(pkt[e_flag_at(p, pkt.len())] & 0x80, 0, "{p:?}: E = 0");
            let mut t = pkt.clone();
            t[20] ^= 1;
            let before = t.clone();
            assert_eq!(our_rx.unprotect_rtcp(&mut t), Err(SrtpError::AuthFailed));
            assert_eq!(t, before);
            let mut y = pkt.clone();
            let u = our_rx
                .unprotect_rtcp(&mut y)
                .unwrap_or_else(|e| panic!("{p:?} round {round}: {e}"));
            assert_eq!(y[..u.len], rr()[..]);
        }
    }
}

#[test]
fn repeated_index_refused_by_both_unless_allowed() {
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let ks = key_salt(p);
        for allow in [false, true] {
            let cfg = SrtpConfig::from_key_salt(p, &ks)
                .unwrap()
                .with_allow_repeat_tx(allow);
            let mut our_tx = SrtpContext::new(cfg).unwrap();
            let opts = Options {
                allow_repeat_tx: allow,
                ..Options::default()
            };
            let mut lib_tx = Session::with_options(p, &ks, true, 1024, opts).unwrap();
            for seq in [10u16, 12, 11] {
                let a = protect_ours(&mut our_tx, &rtp(seq, 40));
                assert_eq!(a, protect_lib(&mut lib_tx, &rtp(seq, 40)));
            }
            let plain = rtp(11, 40);
            let mut a = plain.clone();
            a.resize(plain.len() + 64, 0);
            let mut b = a.clone();
            let ours_again = our_tx.protect_rtp(&mut a, plain.len());
            let lib_again = lib_tx.protect(&mut b, plain.len());
            if allow {
                assert_eq!(ours_again.unwrap(), lib_again.unwrap());
                assert_eq!(a, b, "{p:?}: the same bytes again");
            } else {
                assert_eq!(ours_again, Err(SrtpError::IndexReused), "{p:?}");
                assert_eq!(lib_again.unwrap_err().0, status::REPLAY_FAIL, "{p:?}");
            }
        }
    }
}

#[test]
fn srtcp_both_ways() {
    for p in SrtpProfile::ALL {
        let ks = key_salt(p);
        let mut our_tx = ours(p);
        let mut our_rx = ours(p);
        let mut lib_tx = Session::new(p, &ks, true, 1024).unwrap();
        let mut lib_rx = Session::new(p, &ks, false, 1024).unwrap();
        // An RR with one report block: 32 bytes, sender SSRC 0xdeadbeef.
        let mut plain = vec![0x81u8, 201, 0, 7, 0xde, 0xad, 0xbe, 0xef];
        plain.extend((0..24u8).map(|i| i.wrapping_mul(5)));
        for round in 0..5 {
            let mut a = plain.clone();
            a.resize(128, 0);
            let n = our_tx.protect_rtcp(&mut a, plain.len()).unwrap();
            a.truncate(n);
            let mut x = a.clone();
            let m = lib_rx.unprotect_rtcp(&mut x).unwrap_or_else(|e| {
                panic!("{p:?} round {round}: libsrtp rejects our SRTCP: {e:?}")
            });
            assert_eq!(&x[..m], &plain[..]);

            let mut b = plain.clone();
            b.resize(128, 0);
            let n = lib_tx.protect_rtcp(&mut b, plain.len()).unwrap();
            b.truncate(n);
            let mut y = b.clone();
            let u = our_rx
                .unprotect_rtcp(&mut y)
                .unwrap_or_else(|e| panic!("{p:?} round {round}: we reject libsrtp SRTCP: {e}"));
            assert_eq!(&y[..u.len], &plain[..]);
            // Replays are rejected by us.
            assert_eq!(
                our_rx.unprotect_rtcp(&mut b.clone()),
                Err(SrtpError::Replayed)
            );
        }
    }
}
