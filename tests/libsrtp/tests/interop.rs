//! Interop with libsrtp 2 (the system library) for every profile both implement:
//! our protect -> libsrtp unprotect and back, identical ciphertext for identical
//! input, across a sequence wrap (ROC 0 -> 1), reordering inside the replay window,
//! replays and tampered packets rejected by both, and SRTCP both ways.

use libsrtp_shim::{status, Session};
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpError, SrtpProfile};

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

#[test]
fn reorder_replay_and_tamper_rejected_by_both() {
    for p in [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
    ] {
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
