//! Zero heap allocations per packet in steady-state SRTP/SRTCP protect and unprotect:
//! a counting global allocator wraps the system one, and after the first packet of a
//! stream (which creates its per-SSRC state) the count must not move.
//!
//! Only each test's own thread is counted, in thread-local counters: the test
//! harness's other threads may allocate at any time (a process-wide count failed
//! now and then with 4 such allocations), and the tests run in parallel.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rtp_core::srtp::{
    CheckBatch, Opening, PendingCheck, PendingTag, SrtpConfig, SrtpContext, SrtpError, SrtpProfile,
    TagBatch,
};

struct Counting;

thread_local! {
    // Const-initialised and without destructors: safe to use inside the
    // allocator.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
    /// Allocations (and reallocations) made by this thread while counted.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed by this thread while counted.
    static LIVE: Cell<isize> = const { Cell::new(0) };
}

fn count(grow: isize, calls: usize) {
    if COUNTED.with(Cell::get) {
        ALLOCS.with(|a| a.set(a.get() + calls));
        LIVE.with(|l| l.set(l.get() + grow));
    }
}

fn allocs() -> usize {
    ALLOCS.with(Cell::get)
}

fn live() -> isize {
    LIVE.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize, 1);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize), 0);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count(new as isize - layout.size() as isize, 1);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn run(profile: SrtpProfile, packets: u32, compact: bool) {
    let ks: Vec<u8> = (0..(profile.key_len() + profile.salt_len()) as u8).collect();
    let cfg = SrtpConfig::from_key_salt(profile, &ks)
        .unwrap()
        .with_compact_keys(compact);
    let mut tx = SrtpContext::new(cfg.clone()).unwrap();
    let mut rx = SrtpContext::new(cfg).unwrap();
    let mut buf = [0u8; 1500];
    let mut one = |i: u32, tx: &mut SrtpContext, rx: &mut SrtpContext| {
        buf[0] = 0x80;
        buf[2..4].copy_from_slice(&(i as u16).to_be_bytes());
        buf[8..12].copy_from_slice(&0x1234u32.to_be_bytes());
        let n = tx.protect_rtp(&mut buf, 172).unwrap();
        rx.unprotect_rtp(&mut buf[..n]).unwrap();
        buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0x12, 0x34]);
        let n = tx.protect_rtcp(&mut buf, 8).unwrap();
        rx.unprotect_rtcp(&mut buf[..n]).unwrap();
    };
    // The split API, two packets at a time (tags computed together).
    let mut pair = [[0u8; 1500]; 2];
    let mut two = |i: u32, tx: &mut SrtpContext, rx: &mut SrtpContext| {
        let [a, b] = &mut pair;
        for (k, buf) in [&mut *a, &mut *b].into_iter().enumerate() {
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&((2 * i) as u16 + k as u16).to_be_bytes());
            buf[8..12].copy_from_slice(&0x5678u32.to_be_bytes());
        }
        let (na, ta) = tx.protect_rtp_deferred(a, 172).unwrap();
        let (nb, tb) = tx.protect_rtp_deferred(b, 172).unwrap();
        if let (Some(ta), Some(tb)) = (ta, tb) {
            let r = PendingTag::write_pair(ta, a, tb, b);
            assert!(r.iter().all(Result::is_ok));
        }
        let (a, b) = (&mut a[..na], &mut b[..nb]);
        let oa = rx.unprotect_rtp_deferred(a).unwrap();
        let ob = rx.unprotect_rtp_deferred(b).unwrap();
        if let (Opening::Pending(mut ca), Opening::Pending(mut cb)) = (oa, ob) {
            PendingCheck::compute_pair(&mut ca, a, &mut cb, b);
            rx.unprotect_rtp_finish(a, ca).unwrap();
            rx.unprotect_rtp_finish(b, cb).unwrap();
        }
    };
    // The batches: eight packets of another SSRC, tags computed together (in
    // AVX-512 lanes where the CPU has them).
    let mut eight = [[0u8; 1500]; 8];
    let mut batch = |i: u32, tx: &mut SrtpContext, rx: &mut SrtpContext| {
        let mut lens = [0usize; 8];
        let mut tags = TagBatch::new();
        for (k, (buf, n)) in eight.iter_mut().zip(&mut lens).enumerate() {
            buf[0] = 0x80;
            buf[2..4].copy_from_slice(&((8 * i) as u16 + k as u16).to_be_bytes());
            buf[8..12].copy_from_slice(&0x9abcu32.to_be_bytes());
            let (m, tag) = tx.protect_rtp_deferred(buf, 172).unwrap();
            *n = m;
            if let Some(tag) = tag {
                tags.push(tag, buf).unwrap();
            }
        }
        tags.finish();
        let mut checks: [Option<PendingCheck>; 8] = Default::default();
        for ((buf, &n), check) in eight.iter_mut().zip(&lens).zip(&mut checks) {
            match rx.unprotect_rtp_deferred(&mut buf[..n]).unwrap() {
                Opening::Pending(c) => *check = Some(c),
                Opening::Done(_) => {}
            }
        }
        let mut verify = CheckBatch::new();
        for ((buf, &n), check) in eight.iter().zip(&lens).zip(&mut checks) {
            if let Some(c) = check {
                verify.push(c, &buf[..n]);
            }
        }
        verify.finish();
        for ((buf, &n), check) in eight.iter_mut().zip(&lens).zip(&mut checks) {
            if let Some(c) = check.take() {
                rx.unprotect_rtp_finish(&mut buf[..n], c).unwrap();
            }
        }
    };
    one(0, &mut tx, &mut rx); // warm-up: creates the per-SSRC state
    two(0, &mut tx, &mut rx);
    batch(0, &mut tx, &mut rx);
    let before = allocs();
    for i in 1..packets {
        one(i, &mut tx, &mut rx);
        two(i, &mut tx, &mut rx);
        batch(i, &mut tx, &mut rx);
    }
    let after = allocs();
    assert_eq!(
        after - before,
        0,
        "{profile:?} (compact keys: {compact}): allocations in steady state"
    );
}

#[test]
fn steady_state_allocates_nothing() {
    COUNTED.with(|c| c.set(true));
    // 70,000 packets also cross the sequence wrap.
    for p in SrtpProfile::ALL {
        let wrap = matches!(
            p,
            SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AeadAes128Gcm
        );
        run(p, if wrap { 70_000 } else { 2_000 }, false);
        // Compact keys expand their schedules on the stack.
        run(p, 2_000, true);
    }
    // The counter does count: creating a context allocates.
    let before = allocs();
    let cfg = SrtpConfig::new(SrtpProfile::AeadAes128Gcm, &[0; 16], &[0; 12]).unwrap();
    let mut ctx = SrtpContext::new(cfg).unwrap();
    ctx.add_ssrc(1);
    assert!(allocs() > before);
}

#[test]
fn forged_packets_under_a_key_derivation_rate_keep_nothing() {
    // A forged packet of a known SSRC whose index is in another `index DIV kdr`
    // than the stream's keys gets keys derived for it (freed again), but keeps
    // none: the stream's keys stay, and the next genuine packet goes in.
    COUNTED.with(|c| c.set(true));
    const SSRC: u32 = 0x1234;
    for p in [SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm] {
        let ks: Vec<u8> = (0..(p.key_len() + p.salt_len()) as u8).collect();
        let cfg = SrtpConfig::from_key_salt(p, &ks)
            .unwrap()
            .with_kdr(16)
            .unwrap();
        let mut tx = SrtpContext::new(cfg.clone()).unwrap();
        // Strict, with the SSRC known before any packet of it authenticated.
        let mut rx = SrtpContext::new(cfg.with_strict_ssrc(true)).unwrap();
        rx.add_ssrc(SSRC);
        let mut genuine = |seq: u16, rtcp: bool| {
            let mut buf = [0u8; 300];
            let n = if rtcp {
                buf[..8].copy_from_slice(&[0x80, 201, 0, 1, 0, 0, 0x12, 0x34]);
                tx.protect_rtcp(&mut buf, 8).unwrap()
            } else {
                buf[0] = 0x80;
                buf[2..4].copy_from_slice(&seq.to_be_bytes());
                buf[8..12].copy_from_slice(&SSRC.to_be_bytes());
                tx.protect_rtp(&mut buf, 172).unwrap()
            };
            buf[..n].to_vec()
        };
        let forge = |rx: &mut SrtpContext, mut pkt: Vec<u8>, rtcp: bool| {
            pkt[20] ^= 1;
            let r = if rtcp {
                rx.unprotect_rtcp(&mut pkt).map(|_| ())
            } else {
                rx.unprotect_rtp(&mut pkt).map(|_| ())
            };
            assert_eq!(r, Err(SrtpError::AuthFailed), "{p:?}");
        };
        // Genuine packets in every r of 0..200, SRTCP indices 0..40, held back.
        let rtp: Vec<Vec<u8>> = (0..200).map(|s| genuine(s, false)).collect();
        let rtcp: Vec<Vec<u8>> = (0..40).map(|_| genuine(0, true)).collect();
        for (pkts, is_rtcp) in [(&rtp, false), (&rtcp, true)] {
            // Before the stream has any keys, then with them (r = 0).
            for warm in [false, true] {
                if warm {
                    let mut first = pkts[0].clone();
                    let r = if is_rtcp {
                        rx.unprotect_rtcp(&mut first).map(|_| ())
                    } else {
                        rx.unprotect_rtp(&mut first).map(|_| ())
                    };
                    r.unwrap();
                }
                let before = live();
                for pkt in pkts.iter().skip(1).step_by(7) {
                    forge(&mut rx, pkt.clone(), is_rtcp);
                }
                assert_eq!(
                    live(),
                    before,
                    "{p:?} rtcp {is_rtcp}: forged packets kept memory"
                );
            }
            // The stream goes on, through every r.
            for pkt in &pkts[1..] {
                let mut b = pkt.clone();
                let r = if is_rtcp {
                    rx.unprotect_rtcp(&mut b).map(|_| ())
                } else {
                    rx.unprotect_rtp(&mut b).map(|_| ())
                };
                r.unwrap_or_else(|e| panic!("{p:?} rtcp {is_rtcp}: {e}"));
            }
        }
    }
}
