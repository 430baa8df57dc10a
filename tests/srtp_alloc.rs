//! Zero heap allocations per packet in steady-state SRTP/SRTCP protect and unprotect:
//! a counting global allocator wraps the system one, and after the first packet of a
//! stream (which creates its per-SSRC state) the count must not move.
//!
//! Only the test's own thread is counted: the test harness's other threads may
//! allocate at any time (a process-wide count failed now and then with 4 such
//! allocations).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use rtp_core::srtp::{Opening, PendingCheck, PendingTag, SrtpConfig, SrtpContext, SrtpProfile};

struct Counting;
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Const-initialised and without a destructor: safe to read inside the
    // allocator.
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTED.with(Cell::get) {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        count();
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
    one(0, &mut tx, &mut rx); // warm-up: creates the per-SSRC state
    two(0, &mut tx, &mut rx);
    let before = ALLOCS.load(Ordering::Relaxed);
    for i in 1..packets {
        one(i, &mut tx, &mut rx);
        two(i, &mut tx, &mut rx);
    }
    let after = ALLOCS.load(Ordering::Relaxed);
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
    let before = ALLOCS.load(Ordering::Relaxed);
    let cfg = SrtpConfig::new(SrtpProfile::AeadAes128Gcm, &[0; 16], &[0; 12]).unwrap();
    let mut ctx = SrtpContext::new(cfg).unwrap();
    ctx.add_ssrc(1);
    assert!(ALLOCS.load(Ordering::Relaxed) > before);
}
