//! Side-by-side SRTP cost: this project vs libsrtp 2 built against OpenSSL (its
//! fastest build) vs the webrtc-rs `webrtc-srtp` crate (pure Rust, default
//! features), measured in one process on the same machine.
//!
//! Start-up cross-check: for AES_CM_128_HMAC_SHA1_80 and AEAD_AES_128_GCM, RTP and
//! SRTCP, every implementation's protected packet is unprotected by each of the
//! other two and must give back the original plaintext; any disagreement panics,
//! so nothing broken is ever timed. All three use the same master key||salt and
//! a 1024-packet replay window (webrtc-srtp disables replay checks unless told).
//!
//! Measurement, built for a noisy shared machine: each row runs R rounds; in each
//! round a batch of packets is timed for every implementation in turn, the order
//! rotating by one each round, so that slow phases of the machine hit all of them
//! alike. A row reports, per implementation, the median ns/packet over the rounds
//! and, for ours against each other implementation, the median of the per-round
//! ratios ours / theirs.
//!
//! - protect: fresh sequence numbers (SRTCP: fresh indices) from a sending
//!   context kept across rounds; writing the plaintext header is in the timing.
//!   webrtc-srtp returns a newly allocated `Bytes` per packet; its allocation and
//!   drop are part of its cost.
//! - unprotect: measured directly. Before timing, each implementation protects
//!   a batch of distinct packets (fresh sequence numbers / indices) into a pristine
//!   vector. Each round creates a fresh receiving context and unprotects the
//!   batch's first packet outside the timed region (stream set-up, lazy key
//!   derivation), then times, for each other pristine packet, copying it into a
//!   work buffer and unprotecting it there. The copy costs the same for all three
//!   (webrtc-srtp does not need it but gets it too) and slightly pulls the ratios
//!   towards 1; batches of 1200-byte packets are shorter so that the pristine
//!   packets stay in L2.
//!
//! - "pairs" rows (AES_CM_128_HMAC_SHA1_80, RTP): ours through the split API,
//!   two packets at a time (both encrypted, or both checked up to the tag, then
//!   the two HMAC-SHA1 tags computed together, their SHA-1 compressions
//!   alternating so that the CPU overlaps them), as a relay worker can do with
//!   the packets of one received batch; libsrtp and webrtc-rs one packet per
//!   call, as they offer nothing else. The start-up cross-check also passes
//!   split-protected packets to libsrtp and libsrtp's to the split unprotect.
//! - "x16" rows (the same): ours through the split API sixteen packets at a time,
//!   their tags computed by one `TagBatch` / `CheckBatch` (in sixteen AVX-512
//!   lanes where the CPU has them, which the run prints), as a relay worker does
//!   with a received batch; the cross-check covers them too.
//!
//! The goal column is issue 3's, for 160-byte RTP: AES_CM_128_HMAC_SHA1_80 at most
//! 0.4x libsrtp, AEAD_AES_128_GCM at most 0.6x, judged on the measured median ratio.
//!
//! Run: `cargo bench -p srtp-bench --bench srtp_vs_libsrtp`. Under
//! `cargo test --benches` (no `--bench` argument) it runs the cross-check and
//! one short row only.

use std::hint::black_box;
use std::time::Instant;

use rtp_core::srtp::{
    CheckBatch, Opening, PendingCheck, PendingTag, SrtpConfig, SrtpContext, SrtpProfile, TagBatch,
};
use srtp_bench::Session;
use webrtc_srtp::context::Context as WebrtcContext;
use webrtc_srtp::option::{srtcp_replay_protection, srtp_replay_protection};
use webrtc_srtp::protection_profile::ProtectionProfile;

/// Rounds per row in the full run.
const ROUNDS: usize = 41;
/// Replay window of every receiving context, in packets.
const WINDOW: u32 = 1024;
/// Implementation names, in column order.
const NAMES: [&str; 3] = ["ours", "libsrtp", "webrtc-rs"];

/// What is protected: RTP with a 12-byte header and this payload, or the SRTCP
/// compound (52 bytes, RR-like).
#[derive(Clone, Copy, Debug)]
enum Kind {
    Rtp(usize),
    Rtcp,
}

impl Kind {
    fn label(self) -> String {
        match self {
            Kind::Rtp(pl) => format!("rtp {pl}"),
            Kind::Rtcp => "srtcp 52".to_string(),
        }
    }
}

/// One SRTP context (one direction) of one implementation.
enum Ctx {
    Ours(Box<SrtpContext>),
    Lib(Session),
    Web(Box<WebrtcContext>),
}

impl Ctx {
    /// Implementation `imp` (index into NAMES), sending or receiving.
    fn new(imp: usize, p: SrtpProfile, ks: &[u8], outbound: bool) -> Ctx {
        match imp {
            0 => {
                let cfg = SrtpConfig::from_key_salt(p, ks)
                    .and_then(|c| c.with_replay_window(WINDOW as usize))
                    .expect("rtp-core config");
                Ctx::Ours(Box::new(SrtpContext::new(cfg).expect("rtp-core context")))
            }
            1 => Ctx::Lib(Session::new(p, ks, outbound, WINDOW).expect("libsrtp session")),
            _ => {
                let wp = match p {
                    SrtpProfile::AesCm128HmacSha1_80 => ProtectionProfile::Aes128CmHmacSha1_80,
                    SrtpProfile::AeadAes128Gcm => ProtectionProfile::AeadAes128Gcm,
                    other => panic!("no webrtc-srtp mapping for {}", other.sdes_name()),
                };
                let (key, salt) = ks.split_at(p.key_len());
                let c = WebrtcContext::new(
                    key,
                    salt,
                    wp,
                    Some(srtp_replay_protection(WINDOW as usize)),
                    Some(srtcp_replay_protection(WINDOW as usize)),
                )
                .expect("webrtc-srtp context");
                Ctx::Web(Box::new(c))
            }
        }
    }

    /// Protects `buf[..len]` in place (webrtc-srtp's output is copied back);
    /// returns the protected length. Setup and cross-check only.
    fn protect(&mut self, kind: Kind, buf: &mut [u8], len: usize) -> Result<usize, String> {
        match (self, kind) {
            (Ctx::Ours(c), Kind::Rtp(_)) => c.protect_rtp(buf, len).map_err(|e| e.to_string()),
            (Ctx::Ours(c), Kind::Rtcp) => c.protect_rtcp(buf, len).map_err(|e| e.to_string()),
            (Ctx::Lib(s), Kind::Rtp(_)) => s.protect(buf, len).map_err(|e| format!("{e:?}")),
            (Ctx::Lib(s), Kind::Rtcp) => s.protect_rtcp(buf, len).map_err(|e| format!("{e:?}")),
            (Ctx::Web(c), kind) => {
                let out = match kind {
                    Kind::Rtp(_) => c.encrypt_rtp(&buf[..len]),
                    Kind::Rtcp => c.encrypt_rtcp(&buf[..len]),
                }
                .map_err(|e| e.to_string())?;
                buf[..out.len()].copy_from_slice(&out);
                Ok(out.len())
            }
        }
    }

    /// Unprotects the whole of `buf`; returns the plaintext length (the plaintext
    /// starts the buffer).
    /// Setup and cross-check only.
    fn unprotect(&mut self, kind: Kind, buf: &mut [u8]) -> Result<usize, String> {
        match (self, kind) {
            (Ctx::Ours(c), Kind::Rtp(_)) => c
                .unprotect_rtp(buf)
                .map(|u| u.len)
                .map_err(|e| e.to_string()),
            (Ctx::Ours(c), Kind::Rtcp) => c
                .unprotect_rtcp(buf)
                .map(|u| u.len)
                .map_err(|e| e.to_string()),
            (Ctx::Lib(s), Kind::Rtp(_)) => s.unprotect(buf).map_err(|e| format!("{e:?}")),
            (Ctx::Lib(s), Kind::Rtcp) => s.unprotect_rtcp(buf).map_err(|e| format!("{e:?}")),
            (Ctx::Web(c), kind) => {
                let out = match kind {
                    Kind::Rtp(_) => c.decrypt_rtp(buf),
                    Kind::Rtcp => c.decrypt_rtcp(buf),
                }
                .map_err(|e| e.to_string())?;
                buf[..out.len()].copy_from_slice(&out);
                Ok(out.len())
            }
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fill_rtp(buf: &mut [u8], seq: u16, payload: usize) -> usize {
    buf[0] = 0x80;
    buf[1] = 0;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[8..12].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
    12 + payload
}

fn fill_rtcp(buf: &mut [u8]) -> usize {
    buf[..4].copy_from_slice(&[0x81, 201, 0, 12]);
    buf[4..8].copy_from_slice(&0xcafe_babeu32.to_be_bytes());
    52
}

/// Writes plaintext packet number `seq` of `kind` (a recognisable payload) into
/// `buf`; returns its length.
fn plaintext(buf: &mut [u8], kind: Kind, seq: u16) -> usize {
    let n = match kind {
        Kind::Rtp(pl) => fill_rtp(buf, seq, pl),
        Kind::Rtcp => fill_rtcp(buf),
    };
    let start = if matches!(kind, Kind::Rtp(_)) { 12 } else { 8 };
    for (i, b) in buf[start..n].iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(7) ^ seq as u8;
    }
    n
}

/// ns per call of `f(i)` for i in 0..n.
fn timed(n: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

/// SHA-1's initial state and a message block, for the floor lines.
const SHA1_H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const BLOCK: [u8; 64] = [0x5a; 64];

/// ns per HMAC-SHA1 tag of a packet with a 160-byte payload at its least: four
/// SHA-1 compressions (three for the 176 authenticated bytes and their padding,
/// after the inner state precomputed per key, and one for the outer hash), on
/// the `sha1` crate's compression function (SHA-NI where the CPU has it), which
/// is what rtp-core's HMAC runs.
fn time_sha1_floor(n: usize) -> f64 {
    let block = [sha1::digest::generic_array::GenericArray::from(BLOCK)];
    let mut state = SHA1_H0;
    timed(n, |_| {
        for _ in 0..4 {
            sha1::compress(&mut state, black_box(&block));
        }
        black_box(&mut state);
    })
}

/// As `time_sha1_floor`, plus the ten AES-128 block encryptions of a 160-byte
/// payload's keystream (the `aes` crate, AES-NI where the CPU has it): what the
/// two primitives of one CM-80 packet cost with no protocol work at all. On CPUs
/// where AES and SHA instructions share an execution port this is close to the
/// sum of the two; where they do not, the AES rounds hide under the SHA chain.
fn time_primitives_floor(n: usize) -> f64 {
    use aes::cipher::{BlockEncrypt, KeyInit};
    let aes = aes::Aes128::new(&[0x3cu8; 16].into());
    let block = [sha1::digest::generic_array::GenericArray::from(BLOCK)];
    let mut state = SHA1_H0;
    timed(n, |i| {
        let mut keystream = [aes::Block::default(); 10];
        for (j, b) in keystream.iter_mut().enumerate() {
            *b = ((i as u128) << 16 | j as u128).to_be_bytes().into();
        }
        aes.encrypt_blocks(&mut keystream);
        for _ in 0..4 {
            sha1::compress(&mut state, black_box(&block));
        }
        black_box((&mut state, &keystream));
    })
}

/// As `time_sha1_floor`, for two messages whose compressions alternate (what
/// the split API's pairs do): ns per message.
fn time_sha1_pair_floor(n: usize) -> f64 {
    let block = [sha1::digest::generic_array::GenericArray::from(BLOCK)];
    let h0 = SHA1_H0;
    timed(n / 2, |_| {
        let (mut a, mut b) = (black_box(h0), black_box(h0));
        for _ in 0..4 {
            sha1::compress(&mut a, black_box(&block));
            sha1::compress(&mut b, black_box(&block));
        }
        black_box((a, b));
    }) / 2.0
}

/// ns/packet protecting `n` packets with fresh sequence numbers from `*seq` on.
fn time_protect(ctx: &mut Ctx, kind: Kind, seq: &mut u16, n: usize) -> f64 {
    let mut buf = [0u8; 1600];
    let mut next = || {
        *seq = seq.wrapping_add(1);
        *seq
    };
    match (ctx, kind) {
        (Ctx::Ours(c), Kind::Rtp(pl)) => timed(n, |_| {
            let len = fill_rtp(&mut buf, next(), pl);
            black_box(c.protect_rtp(&mut buf, len).unwrap());
        }),
        (Ctx::Ours(c), Kind::Rtcp) => timed(n, |_| {
            let len = fill_rtcp(&mut buf);
            black_box(c.protect_rtcp(&mut buf, len).unwrap());
        }),
        (Ctx::Lib(s), Kind::Rtp(pl)) => timed(n, |_| {
            let len = fill_rtp(&mut buf, next(), pl);
            black_box(s.protect(&mut buf, len).unwrap());
        }),
        (Ctx::Lib(s), Kind::Rtcp) => timed(n, |_| {
            let len = fill_rtcp(&mut buf);
            black_box(s.protect_rtcp(&mut buf, len).unwrap());
        }),
        (Ctx::Web(c), Kind::Rtp(pl)) => timed(n, |_| {
            let len = fill_rtp(&mut buf, next(), pl);
            black_box(c.encrypt_rtp(&buf[..len]).unwrap());
        }),
        (Ctx::Web(c), Kind::Rtcp) => timed(n, |_| {
            let len = fill_rtcp(&mut buf);
            black_box(c.encrypt_rtcp(&buf[..len]).unwrap());
        }),
    }
}

/// ns/packet copying each of `pkts` into a work buffer and unprotecting it there.
fn time_unprotect(ctx: &mut Ctx, kind: Kind, pkts: &[Vec<u8>]) -> f64 {
    let mut work = [0u8; 1600];
    let n = pkts.len();
    match (ctx, kind) {
        (Ctx::Ours(c), Kind::Rtp(_)) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(c.unprotect_rtp(w).unwrap());
        }),
        (Ctx::Ours(c), Kind::Rtcp) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(c.unprotect_rtcp(w).unwrap());
        }),
        (Ctx::Lib(s), Kind::Rtp(_)) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(s.unprotect(w).unwrap());
        }),
        (Ctx::Lib(s), Kind::Rtcp) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(s.unprotect_rtcp(w).unwrap());
        }),
        (Ctx::Web(c), Kind::Rtp(_)) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(c.decrypt_rtp(w).unwrap());
        }),
        (Ctx::Web(c), Kind::Rtcp) => timed(n, |i| {
            let w = &mut work[..pkts[i].len()];
            w.copy_from_slice(&pkts[i]);
            black_box(c.decrypt_rtcp(w).unwrap());
        }),
    }
}

/// ns/packet protecting `n` RTP packets with rtp-core's split API, two at a time:
/// both encrypted, then their tags computed together.
fn time_protect_split(c: &mut SrtpContext, payload: usize, seq: &mut u16, n: usize) -> f64 {
    let mut pair = [[0u8; 1600]; 2];
    let mut next = || {
        *seq = seq.wrapping_add(1);
        *seq
    };
    timed(n / 2, |_| {
        let [a, b] = &mut pair;
        let la = fill_rtp(a, next(), payload);
        let lb = fill_rtp(b, next(), payload);
        let (na, ta) = c.protect_rtp_deferred(a, la).unwrap();
        let (nb, tb) = c.protect_rtp_deferred(b, lb).unwrap();
        let r = PendingTag::write_pair(ta.unwrap(), a, tb.unwrap(), b);
        assert!(r.iter().all(Result::is_ok));
        black_box((na, nb));
    }) / 2.0
}

/// ns/packet copying `pkts` two at a time into work buffers and unprotecting them
/// with rtp-core's split API (tags computed together).
fn time_unprotect_split(c: &mut SrtpContext, pkts: &[Vec<u8>]) -> f64 {
    let mut pair = [[0u8; 1600]; 2];
    timed(pkts.len() / 2, |i| {
        let [a, b] = &mut pair;
        let (pa, pb) = (&pkts[2 * i], &pkts[2 * i + 1]);
        let (a, b) = (&mut a[..pa.len()], &mut b[..pb.len()]);
        a.copy_from_slice(pa);
        b.copy_from_slice(pb);
        let (Ok(Opening::Pending(mut ca)), Ok(Opening::Pending(mut cb))) =
            (c.unprotect_rtp_deferred(a), c.unprotect_rtp_deferred(b))
        else {
            panic!("an HMAC profile's packets stop at the tag");
        };
        PendingCheck::compute_pair(&mut ca, a, &mut cb, b);
        black_box(c.unprotect_rtp_finish(a, ca).unwrap());
        black_box(c.unprotect_rtp_finish(b, cb).unwrap());
    }) / 2.0
}

/// ns/packet protecting `n` RTP packets with rtp-core's split API, sixteen at a
/// time: all encrypted, then their tags computed by one [`TagBatch`].
fn time_protect_batch(c: &mut SrtpContext, payload: usize, seq: &mut u16, n: usize) -> f64 {
    let mut bufs = [[0u8; 1600]; TagBatch::CAPACITY];
    let mut next = || {
        *seq = seq.wrapping_add(1);
        *seq
    };
    let per = TagBatch::CAPACITY;
    timed(n / per, |_| {
        let mut batch = TagBatch::new();
        for b in bufs.iter_mut() {
            let l = fill_rtp(b, next(), payload);
            let (m, tag) = c.protect_rtp_deferred(b, l).unwrap();
            batch.push(tag.unwrap(), b).unwrap();
            black_box(m);
        }
        batch.finish();
    }) / per as f64
}

/// ns/packet copying `pkts` sixteen at a time into work buffers and unprotecting
/// them with rtp-core's split API: phase one for all, their tags computed by one
/// [`CheckBatch`], then each finished.
fn time_unprotect_batch(c: &mut SrtpContext, pkts: &[Vec<u8>]) -> f64 {
    const PER: usize = CheckBatch::CAPACITY;
    let mut bufs = [[0u8; 1600]; PER];
    timed(pkts.len() / PER, |i| {
        let chunk = &pkts[PER * i..PER * (i + 1)];
        let mut checks: [Option<PendingCheck>; PER] = [const { None }; PER];
        for ((b, p), check) in bufs.iter_mut().zip(chunk).zip(&mut checks) {
            let b = &mut b[..p.len()];
            b.copy_from_slice(p);
            let Ok(Opening::Pending(c)) = c.unprotect_rtp_deferred(b) else {
                panic!("an HMAC profile's packets stop at the tag");
            };
            *check = Some(c);
        }
        let mut batch = CheckBatch::new();
        for ((b, p), check) in bufs.iter().zip(chunk).zip(&mut checks) {
            batch.push(check.as_mut().expect("set above"), &b[..p.len()]);
        }
        batch.finish();
        for ((b, p), check) in bufs.iter_mut().zip(chunk).zip(&mut checks) {
            let check = check.take().expect("set above");
            black_box(c.unprotect_rtp_finish(&mut b[..p.len()], check).unwrap());
        }
    }) / PER as f64
}

/// `n` distinct packets of `kind` protected by a fresh sending context of `imp`
/// (sequence numbers 1..=n; SRTCP indices in order).
fn pristine(imp: usize, p: SrtpProfile, ks: &[u8], kind: Kind, n: usize) -> Vec<Vec<u8>> {
    let mut tx = Ctx::new(imp, p, ks, true);
    let mut buf = [0u8; 1600];
    (1..=n)
        .map(|s| {
            let len = plaintext(&mut buf, kind, s as u16);
            let m = tx.protect(kind, &mut buf, len).unwrap();
            buf[..m].to_vec()
        })
        .collect()
}

/// Panics unless packets protected by rtp-core's split API (tags in pairs) are
/// accepted by libsrtp, and libsrtp's packets by the split unprotect.
fn cross_check_split(p: SrtpProfile, ks: &[u8], payload: usize) {
    let Ctx::Ours(mut ours) = Ctx::new(0, p, ks, true) else {
        unreachable!("implementation 0 is rtp-core")
    };
    let mut lib_rx = Ctx::new(1, p, ks, false);
    let mut seq = 0;
    let mut pair = [[0u8; 1600]; 2];
    for _ in 0..3 {
        let [a, b] = &mut pair;
        let la = plaintext(a, Kind::Rtp(payload), seq + 1);
        let lb = plaintext(b, Kind::Rtp(payload), seq + 2);
        seq += 2;
        let (na, ta) = ours.protect_rtp_deferred(a, la).unwrap();
        let (nb, tb) = ours.protect_rtp_deferred(b, lb).unwrap();
        let r = PendingTag::write_pair(ta.unwrap(), a, tb.unwrap(), b);
        assert!(r.iter().all(Result::is_ok));
        for (buf, n, l) in [(&mut *a, na, la), (&mut *b, nb, lb)] {
            let mut want = [0u8; 1600];
            plaintext(
                &mut want,
                Kind::Rtp(payload),
                u16::from_be_bytes([buf[2], buf[3]]),
            );
            match lib_rx.unprotect(Kind::Rtp(payload), &mut buf[..n]) {
                Ok(m) if buf[..m] == want[..l] => {}
                other => panic!("cross-check failed, ours split protect -> libsrtp: {other:?}"),
            }
        }
    }
    let Ctx::Ours(mut ours_rx) = Ctx::new(0, p, ks, false) else {
        unreachable!("implementation 0 is rtp-core")
    };
    let pkts = pristine(1, p, ks, Kind::Rtp(payload), 4);
    for (i, two) in pkts.chunks(2).enumerate() {
        let [a, b] = &mut pair;
        let (a, b) = (&mut a[..two[0].len()], &mut b[..two[1].len()]);
        a.copy_from_slice(&two[0]);
        b.copy_from_slice(&two[1]);
        let (Ok(Opening::Pending(mut ca)), Ok(Opening::Pending(mut cb))) = (
            ours_rx.unprotect_rtp_deferred(a),
            ours_rx.unprotect_rtp_deferred(b),
        ) else {
            panic!("cross-check failed, libsrtp -> ours split unprotect: phase one");
        };
        PendingCheck::compute_pair(&mut ca, a, &mut cb, b);
        for (k, (buf, check)) in [(a, ca), (b, cb)].into_iter().enumerate() {
            let mut want = [0u8; 1600];
            let wl = plaintext(&mut want, Kind::Rtp(payload), (2 * i + k + 1) as u16);
            match ours_rx.unprotect_rtp_finish(buf, check) {
                Ok(u) if buf[..u.len] == want[..wl] => {}
                other => panic!("cross-check failed, libsrtp -> ours split unprotect: {other:?}"),
            }
        }
    }
}

/// Panics unless sixteen packets whose tags one [`TagBatch`] wrote are accepted by
/// libsrtp, and sixteen of libsrtp's by the split unprotect with a [`CheckBatch`].
fn cross_check_batch(p: SrtpProfile, ks: &[u8], payload: usize) {
    const PER: usize = TagBatch::CAPACITY;
    let Ctx::Ours(mut ours) = Ctx::new(0, p, ks, true) else {
        unreachable!("implementation 0 is rtp-core")
    };
    let mut lib_rx = Ctx::new(1, p, ks, false);
    let mut bufs = [[0u8; 1600]; PER];
    let mut lens = [(0usize, 0usize); PER];
    let mut batch = TagBatch::new();
    for (i, (b, l)) in bufs.iter_mut().zip(&mut lens).enumerate() {
        let n = plaintext(b, Kind::Rtp(payload), i as u16 + 1);
        let (m, tag) = ours.protect_rtp_deferred(b, n).unwrap();
        batch.push(tag.unwrap(), b).unwrap();
        *l = (n, m);
    }
    batch.finish();
    for (i, (b, &(n, m))) in bufs.iter_mut().zip(&lens).enumerate() {
        let mut want = [0u8; 1600];
        plaintext(&mut want, Kind::Rtp(payload), i as u16 + 1);
        match lib_rx.unprotect(Kind::Rtp(payload), &mut b[..m]) {
            Ok(k) if b[..k] == want[..n] => {}
            other => panic!("cross-check failed, ours batch protect -> libsrtp: {other:?}"),
        }
    }
    let Ctx::Ours(mut ours_rx) = Ctx::new(0, p, ks, false) else {
        unreachable!("implementation 0 is rtp-core")
    };
    let pkts = pristine(1, p, ks, Kind::Rtp(payload), PER);
    let mut checks: [Option<PendingCheck>; PER] = [const { None }; PER];
    for ((b, pkt), check) in bufs.iter_mut().zip(&pkts).zip(&mut checks) {
        let b = &mut b[..pkt.len()];
        b.copy_from_slice(pkt);
        let Ok(Opening::Pending(c)) = ours_rx.unprotect_rtp_deferred(b) else {
            panic!("cross-check failed, libsrtp -> ours batch unprotect: phase one");
        };
        *check = Some(c);
    }
    let mut batch = CheckBatch::new();
    for ((b, pkt), check) in bufs.iter().zip(&pkts).zip(&mut checks) {
        batch.push(check.as_mut().expect("set above"), &b[..pkt.len()]);
    }
    batch.finish();
    for (i, ((b, pkt), check)) in bufs.iter_mut().zip(&pkts).zip(&mut checks).enumerate() {
        let mut want = [0u8; 1600];
        let wl = plaintext(&mut want, Kind::Rtp(payload), i as u16 + 1);
        let check = check.take().expect("set above");
        match ours_rx.unprotect_rtp_finish(&mut b[..pkt.len()], check) {
            Ok(u) if b[..u.len] == want[..wl] => {}
            other => panic!("cross-check failed, libsrtp -> ours batch unprotect: {other:?}"),
        }
    }
}

/// Panics unless every implementation's protected packets are accepted by each of
/// the others and give back the original plaintext.
fn cross_check(p: SrtpProfile, ks: &[u8], kind: Kind) {
    for (from, from_name) in NAMES.iter().enumerate() {
        let pkts = pristine(from, p, ks, kind, 3);
        for (to, to_name) in NAMES.iter().enumerate().filter(|&(t, _)| t != from) {
            let mut rx = Ctx::new(to, p, ks, false);
            for (i, pkt) in pkts.iter().enumerate() {
                let mut want = [0u8; 1600];
                let wlen = plaintext(&mut want, kind, i as u16 + 1);
                let mut buf = pkt.clone();
                let what = format!(
                    "{} {} packet {}: {} protect -> {} unprotect",
                    p.sdes_name(),
                    kind.label(),
                    i + 1,
                    from_name,
                    to_name
                );
                match rx.unprotect(kind, &mut buf) {
                    Ok(n) if buf[..n] == want[..wlen] => {}
                    Ok(n) => panic!(
                        "cross-check failed, {what}: plaintext differs ({n} bytes, want {wlen})"
                    ),
                    Err(e) => panic!("cross-check failed, {what}: rejected ({e})"),
                }
            }
        }
    }
}

/// Rotating-order rounds: `f(imp)` times one batch of implementation `imp`.
/// Returns per implementation the median ns/packet, and the medians of the
/// per-round ratios ours/libsrtp and ours/webrtc-rs.
fn rounds(r: usize, mut f: impl FnMut(usize) -> f64) -> ([f64; 3], [f64; 2]) {
    let mut ns: [Vec<f64>; 3] = Default::default();
    let mut ratio: [Vec<f64>; 2] = Default::default();
    for round in 0..r {
        let mut t = [0.0; 3];
        for k in 0..3 {
            let imp = (round + k) % 3;
            t[imp] = f(imp);
        }
        for imp in 0..3 {
            ns[imp].push(t[imp]);
        }
        ratio[0].push(t[0] / t[1]);
        ratio[1].push(t[0] / t[2]);
    }
    let [a, b, c] = ns;
    let [x, y] = ratio;
    ([median(a), median(b), median(c)], [median(x), median(y)])
}

/// How a row calls rtp-core.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One packet per call, like the others.
    One,
    /// The split API, tags of two packets computed together.
    Pairs,
    /// The split API, tags of sixteen packets computed by one batch.
    X16,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::One => "",
            Mode::Pairs => " pairs",
            Mode::X16 => " x16",
        }
    }
}

fn goal(p: SrtpProfile, kind: Kind, ratio: f64) -> String {
    let bound = match (p, kind) {
        (SrtpProfile::AesCm128HmacSha1_80, Kind::Rtp(160)) => 0.4,
        (SrtpProfile::AeadAes128Gcm, Kind::Rtp(160)) => 0.6,
        _ => return String::new(),
    };
    let met = if ratio <= bound { "met" } else { "not met" };
    format!("<= {bound} ({met})")
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep it short then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let profiles = [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm];
    let kinds = [Kind::Rtp(160), Kind::Rtp(1200), Kind::Rtcp];

    for p in profiles {
        let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
        for kind in [Kind::Rtp(160), Kind::Rtcp] {
            cross_check(p, &ks, kind);
        }
    }
    let cm80 = SrtpProfile::AesCm128HmacSha1_80;
    let ks: Vec<u8> = (0..(cm80.key_len() + cm80.salt_len()) as u8).collect();
    for payload in [160, 1200] {
        cross_check_split(cm80, &ks, payload);
        cross_check_batch(cm80, &ks, payload);
    }
    println!(
        "cross-check passed: ours, libsrtp and webrtc-rs accept each other's packets \
         (ours also with the split API, tags in pairs and in batches of 16, both ways \
         with libsrtp)"
    );
    println!(
        "sixteen-lane SHA-1 (AVX-512) on this CPU: {}",
        if sha1_lanes::Sha1x16::detect().is_some() {
            "yes, batches of 5 or more use it"
        } else {
            "no, batches are computed in pairs with SHA-NI"
        }
    );

    // Rows (profile, kind, mode): pairs and x16 rows time rtp-core's split API
    // (tags of two or sixteen packets computed together) against the others'
    // one-packet calls, which is all they offer.
    let (r, rows): (usize, Vec<(SrtpProfile, Kind, Mode)>) = if quick {
        (
            3,
            vec![
                (cm80, Kind::Rtp(160), Mode::One),
                (cm80, Kind::Rtp(160), Mode::Pairs),
                (cm80, Kind::Rtp(160), Mode::X16),
            ],
        )
    } else {
        let mut all: Vec<_> = profiles
            .iter()
            .flat_map(|&p| kinds.iter().map(move |&k| (p, k, Mode::One)))
            .collect();
        for mode in [Mode::Pairs, Mode::X16] {
            all.push((cm80, Kind::Rtp(160), mode));
            all.push((cm80, Kind::Rtp(1200), mode));
        }
        (ROUNDS, all)
    };

    println!(
        "{} rounds per row, implementation order rotating each round; ns = median ns/packet, \
         ratios = median of per-round ratios",
        r
    );
    println!(
        "{:<24} {:<26} {:>8} {:>10} {:>10} {:>12} {:>14}  goal (ours/libsrtp)",
        "profile",
        "operation",
        "ours ns",
        "libsrtp ns",
        "webrtc ns",
        "ours/libsrtp",
        "ours/webrtc-rs",
    );
    for (p, kind, mode) in rows {
        let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
        let batch = match (quick, kind) {
            (true, _) => 100,
            (false, Kind::Rtp(1200)) => 500,
            (false, _) => 2000,
        };
        let print = |op: &str, ns: [f64; 3], ratio: [f64; 2]| {
            let line = format!(
                "{:<24} {:<26} {:>8.0} {:>10.0} {:>10.0} {:>12.2} {:>14.2}  {}",
                p.sdes_name(),
                format!("{op}{} {}", mode.label(), kind.label()),
                ns[0],
                ns[1],
                ns[2],
                ratio[0],
                ratio[1],
                goal(p, kind, ratio[0])
            );
            println!("{}", line.trim_end());
        };

        // Protect: senders kept across rounds, one untimed warm-up batch each.
        let mut tx: Vec<Ctx> = (0..3).map(|i| Ctx::new(i, p, &ks, true)).collect();
        let mut seq = [0u16; 3];
        let mut protect = |imp: usize| match (&mut tx[imp], kind) {
            (Ctx::Ours(c), Kind::Rtp(pl)) if mode == Mode::Pairs => {
                time_protect_split(c, pl, &mut seq[imp], batch)
            }
            (Ctx::Ours(c), Kind::Rtp(pl)) if mode == Mode::X16 => {
                time_protect_batch(c, pl, &mut seq[imp], batch)
            }
            (ctx, _) => time_protect(ctx, kind, &mut seq[imp], batch),
        };
        (0..3).for_each(|imp| _ = protect(imp));
        let (ns, ratio) = rounds(r, protect);
        print("protect", ns, ratio);

        // Unprotect: packet 0 of each pristine batch warms a fresh receiver per round.
        let pkts: Vec<Vec<Vec<u8>>> = (0..3)
            .map(|i| pristine(i, p, &ks, kind, batch + 1))
            .collect();
        let mut work = [0u8; 1600];
        let mut unprotect = |imp: usize| {
            // Untimed: a fresh receiver, set up by the batch's first packet.
            let mut rx = Ctx::new(imp, p, &ks, false);
            let first = &pkts[imp][0];
            work[..first.len()].copy_from_slice(first);
            rx.unprotect(kind, &mut work[..first.len()]).unwrap();
            match &mut rx {
                Ctx::Ours(c) if mode == Mode::Pairs => time_unprotect_split(c, &pkts[imp][1..]),
                Ctx::Ours(c) if mode == Mode::X16 => time_unprotect_batch(c, &pkts[imp][1..]),
                rx => time_unprotect(rx, kind, &pkts[imp][1..]),
            }
        };
        (0..3).for_each(|imp| _ = unprotect(imp));
        let (ns, ratio) = rounds(r, unprotect);
        print("unprotect", ns, ratio);
    }

    // What the CM-80 goal asks against what SHA-1 alone costs on this CPU, in the
    // same rounds: slot 0 the four compressions, 1 libsrtp's protect, 2 ours.
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
    let mut lib = Ctx::new(1, p, &ks, true);
    let mut ours = Ctx::new(0, p, &ks, true);
    let mut seq = [0u16; 2];
    let n = if quick { 100 } else { 2000 };
    let (ns, ratio) = rounds(r, |slot| match slot {
        0 => time_sha1_floor(n),
        1 => time_protect(&mut lib, Kind::Rtp(160), &mut seq[0], n),
        _ => time_protect(&mut ours, Kind::Rtp(160), &mut seq[1], n),
    });
    println!(
        "HMAC-SHA1 floor of a 160-byte payload (4 SHA-1 compressions): {:.0} ns = {:.2}x \
         libsrtp's CM-80 protect ({:.0} ns; the 0.4x goal allows {:.0} ns for everything) \
         and {:.2}x ours ({:.0} ns)",
        ns[0],
        ratio[0],
        ns[1],
        0.4 * ns[1],
        ratio[1],
        ns[2]
    );
    let (ns, ratio) = rounds(r, |slot| match slot {
        0 => time_primitives_floor(n),
        1 => time_protect(&mut lib, Kind::Rtp(160), &mut seq[0], n),
        _ => time_protect(&mut ours, Kind::Rtp(160), &mut seq[1], n),
    });
    println!(
        "Both primitives of that packet (4 SHA-1 compressions + 10 AES-128 blocks, no \
         protocol work): {:.0} ns = {:.2}x libsrtp's CM-80 protect ({:.0} ns) and {:.2}x \
         ours ({:.0} ns); above 0.40x no implementation on these primitives meets the goal \
         in this run",
        ns[0], ratio[0], ns[1], ratio[1], ns[2]
    );
    let mut ours = Ctx::new(0, p, &ks, true);
    let (ns, ratio) = rounds(r, |slot| match (slot, &mut ours) {
        (0, _) => time_sha1_pair_floor(n),
        (1, _) => time_protect(&mut lib, Kind::Rtp(160), &mut seq[0], n),
        (_, Ctx::Ours(c)) => time_protect_split(c, 160, &mut seq[1], n),
        (_, other) => time_protect(other, Kind::Rtp(160), &mut seq[1], n),
    });
    println!(
        "The same with two messages' compressions alternating (the split API's pairs): \
         {:.0} ns per message = {:.2}x libsrtp's CM-80 protect ({:.0} ns) and {:.2}x ours \
         in pairs ({:.0} ns)",
        ns[0], ratio[0], ns[1], ratio[1], ns[2]
    );
}
