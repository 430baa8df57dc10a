//! A counting global allocator shows that a worker relays packets without heap
//! allocation in steady state, for plain forwarding and SRTP -> SRTP re-keying,
//! with both backends.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use rtp_core::srtp::SrtpProfile;
use rtp_dataplane::SessionSpec;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards to the system allocator and only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// `alternate`: a plain peer that alternates between two SSRCs every packet
/// (each change starts the leg's receive statistics over).
fn case(backend: rtp_dataplane::BackendKind, srtp: bool, alternate: bool) -> u64 {
    let dp = start(backend);
    let h = &dp.workers()[0];
    let (a, b) = (peer(V4), peer(V4));
    let (mut leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, _, _) = per_session_leg(V4, false);
    leg1.remote = Some(b.local_addr().unwrap());
    if srtp {
        leg0.srtp = Some(leg_srtp(SrtpProfile::AesCm128HmacSha1_80, 1, 2));
        leg1.srtp = Some(leg_srtp(SrtpProfile::AeadAes128Gcm, 3, 4));
    }
    add_session(
        h,
        SessionSpec {
            id: 1,
            legs: [leg0, leg1],
            rtcp_to_control: false,
            rtcp_mode: Default::default(),
        },
    );
    let mut tx = srtp.then(|| ctx(SrtpProfile::AesCm128HmacSha1_80, 1));
    let total = 3000usize;
    let warm = 500usize;
    // Every packet is built before the measured window.
    let packets: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            let ssrc = if alternate && i % 2 == 1 { 0x78 } else { 0x77 };
            protect(tx.as_mut(), rtp(ssrc, i as u16, 160), false)
        })
        .collect();
    let mut buf = [0u8; 2048];
    let mut lockstep = |range: std::ops::Range<usize>| {
        for chunk in packets[range].chunks(16) {
            for p in chunk {
                a.send_to(p, addr0).unwrap();
            }
            for _ in chunk {
                loop {
                    match b.recv_from(&mut buf) {
                        Ok(_) => break,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => panic!("packet lost: {e}"),
                    }
                }
            }
        }
    };
    lockstep(0..warm);
    let before = ALLOCS.load(Ordering::Relaxed);
    lockstep(warm..total);
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let s = snapshot(h, 1);
    assert_eq!(s.legs[1].counters.tx_rtp, total as u64);
    dp.shutdown();
    allocs
}

#[test]
fn zero_allocations_per_packet_through_a_worker() {
    for backend in BACKENDS {
        for srtp in [false, true] {
            let n = case(backend, srtp, false);
            assert_eq!(
                n, 0,
                "{backend:?} srtp={srtp}: {n} allocations in 2500 relayed packets"
            );
        }
        // In the same test: the counter is process-wide, so cases must not run
        // in parallel.
        let n = case(backend, false, true);
        assert_eq!(
            n, 0,
            "{backend:?} alternating SSRCs: {n} allocations in 2500 relayed packets"
        );
    }
}
