//! Loopback relay tests: every pipeline mode, both backends, IPv4 and IPv6,
//! per-session and shared ports, RTCP with SRTCP, bad traffic, shutdown.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::*;
use rtp_core::srtp::SrtpProfile;
use rtp_dataplane::{
    BackendKind, Command, Dataplane, DataplaneConfig, DropReason, Event, IdlePolicy, LatchMode,
    LegSpec, LegUpdate, LocalBinding, Rewrite, SessionSpec, WorkerHandle,
};

const V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);
const CM: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;
const GCM: SrtpProfile = SrtpProfile::AeadAes128Gcm;

#[test]
fn plain_forwarding_both_ways_every_backend_v4_and_v6() {
    for backend in BACKENDS {
        for ip in [V4, V6] {
            let dp = start(backend);
            let h = &dp.workers()[0];
            let (a, b) = (peer(ip), peer(ip));
            let (leg0, addr0, _) = per_session_leg(ip, false);
            let (mut leg1, addr1, _) = per_session_leg(ip, false);
            leg1.remote = Some(b.local_addr().unwrap());
            add_session(h, pair(1, leg0, leg1));
            let got = flow(&a, addr0, None, &b, None, 0x1111, 100, 200);
            assert_intact(&got, 0x1111, 100, 200);
            // The reply goes to the address leg 0 latched.
            let back = flow(&b, addr1, None, &a, None, 0x2222, 7, 50);
            assert_intact(&back, 0x2222, 7, 50);
            let s = snapshot(h, 1);
            let (l0, l1) = (&s.legs[0].counters, &s.legs[1].counters);
            assert_eq!(
                (l0.rx_rtp, l1.tx_rtp, l1.rx_rtp, l0.tx_rtp),
                (200, 200, 50, 50),
                "{backend:?} {ip}"
            );
            assert_eq!(l0.dropped_total() + l1.dropped_total(), 0);
            assert_eq!(s.legs[0].remote, Some(a.local_addr().unwrap()));
            let q = s.legs[0].quality.expect("receive statistics");
            assert_eq!((q.ssrc, q.lost), (0x1111, 0));
            let w = dp.shutdown();
            assert_eq!(w[0].backend, Some(backend));
        }
    }
}

/// Leg 0 talks to A with `p0` keys (None: plain), leg 1 to B with `p1`.
fn transform_case(backend: BackendKind, p0: Option<SrtpProfile>, p1: Option<SrtpProfile>) {
    let dp = start(backend);
    let h = &dp.workers()[0];
    let (a, b) = (peer(V4), peer(V4));
    let (mut leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, addr1, _) = per_session_leg(V4, false);
    leg0.srtp = p0.map(|p| leg_srtp(p, 1, 2));
    leg1.srtp = p1.map(|p| leg_srtp(p, 3, 4));
    leg1.remote = Some(b.local_addr().unwrap());
    add_session(h, pair(9, leg0, leg1));
    // A encrypts with leg 0's inbound key; B decrypts with leg 1's outbound key.
    let mut a_tx = p0.map(|p| ctx(p, 1));
    let mut b_rx = p1.map(|p| ctx(p, 4));
    // Across the sequence wrap (ROC 0 -> 1 on both sides).
    let got = flow(
        &a,
        addr0,
        a_tx.as_mut(),
        &b,
        b_rx.as_mut(),
        0xA,
        65_500,
        100,
    );
    if got.len() != 100 {
        panic!("{backend:?} {p0:?} {p1:?}: {:?}", snapshot(h, 9));
    }
    assert_intact(&got, 0xA, 65_500, 100);
    let mut b_tx = p1.map(|p| ctx(p, 3));
    let mut a_rx = p0.map(|p| ctx(p, 2));
    let back = flow(&b, addr1, b_tx.as_mut(), &a, a_rx.as_mut(), 0xB, 1, 60);
    assert_intact(&back, 0xB, 1, 60);
    let s = snapshot(h, 9);
    assert_eq!(s.legs[0].counters.rx_rtp, 100);
    assert_eq!(s.legs[1].counters.tx_rtp, 100);
    assert_eq!(
        s.legs[0].counters.dropped_total() + s.legs[1].counters.dropped_total(),
        0
    );
    dp.shutdown();
}

#[test]
fn srtp_to_rtp_rtp_to_srtp_and_rekeying_across_profiles() {
    for backend in BACKENDS {
        transform_case(backend, Some(CM), None);
        transform_case(backend, None, Some(CM));
        transform_case(backend, Some(CM), Some(GCM));
        transform_case(
            backend,
            Some(SrtpProfile::AesCm256HmacSha1_32),
            Some(SrtpProfile::AeadAes256Gcm),
        );
    }
}

fn rr(ssrc: u32) -> Vec<u8> {
    // RR with no report blocks.
    let mut p = vec![0x80, 201, 0, 1];
    p.extend_from_slice(&ssrc.to_be_bytes());
    p
}

#[test]
fn rtcp_is_relayed_with_srtcp_between_separate_and_muxed_ports() {
    for backend in BACKENDS {
        // io_uring's pass with compact SRTP keys (AES schedules per packet).
        let dp = Dataplane::start(DataplaneConfig {
            compact_srtp_keys: backend == BackendKind::IoUring,
            ..config(backend)
        })
        .expect("dataplane starts");
        let h = &dp.workers()[0];
        let (a, a_rtcp, b) = (peer(V4), peer(V4), peer(V4));
        // Leg 0: separate RTCP port; leg 1: rtcp-mux.
        let (mut leg0, addr0, rtcp0) = per_session_leg(V4, true);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.srtp = Some(leg_srtp(CM, 1, 2));
        leg1.srtp = Some(leg_srtp(GCM, 3, 4));
        leg1.remote = Some(b.local_addr().unwrap());
        leg1.rewrite = Rewrite {
            ssrc: Some(0xBEEF),
            ..Rewrite::default()
        };
        add_session(
            h,
            SessionSpec {
                id: 3,
                legs: [leg0, leg1],
                rtcp_to_control: true,
                rtcp_mode: Default::default(),
            },
        );
        let rtcp0 = rtcp0.unwrap();
        let (mut a_tx, mut b_rx, mut b_tx, mut a_rx) =
            (ctx(CM, 1), ctx(GCM, 4), ctx(GCM, 3), ctx(CM, 2));
        for i in 0..20u32 {
            let p = protect(Some(&mut a_tx), rr(0x1000 + i), true);
            a_rtcp.send_to(&p, rtcp0).unwrap();
            let (got, _) = recv(&b).expect("SRTCP relayed to B");
            let plain = unprotect(Some(&mut b_rx), got, true);
            // The sender SSRC is rewritten for leg 1.
            assert_eq!(plain, rr(0xBEEF));
        }
        // The control plane got decrypted copies.
        let e = wait_event(h, "RTCP copy", |e| matches!(e, Event::Rtcp { .. }));
        let Event::Rtcp { session, leg, data } = e else {
            unreachable!()
        };
        assert_eq!((session, leg, data), (3, 0, rr(0x1000)));
        // B's muxed RTCP goes to A's latched RTCP port.
        for i in 0..20u32 {
            let p = protect(Some(&mut b_tx), rr(0x2000 + i), true);
            b.send_to(&p, addr1).unwrap();
            let (got, _) = recv(&a_rtcp).expect("SRTCP relayed to A's RTCP port");
            assert_eq!(unprotect(Some(&mut a_rx), got, true), rr(0x2000 + i));
        }
        // RTP still flows on the RTP ports.
        let got = flow(
            &a,
            addr0,
            Some(&mut a_tx),
            &b,
            Some(&mut b_rx),
            0x77,
            10,
            20,
        );
        assert_eq!(got.len(), 20);
        let s = snapshot(h, 3);
        assert_eq!(
            (s.legs[0].counters.rx_rtcp, s.legs[1].counters.tx_rtcp),
            (20, 20)
        );
        assert_eq!(
            (s.legs[1].counters.rx_rtcp, s.legs[0].counters.tx_rtcp),
            (20, 20)
        );
        assert_eq!(s.legs[0].remote_rtcp, Some(a_rtcp.local_addr().unwrap()));
        dp.shutdown();
    }
}

#[test]
fn shared_port_flows_are_told_apart_by_ssrc_then_address() {
    for backend in BACKENDS {
        for ip in [V4, V6] {
            let mut cfg = config(backend);
            cfg.shared = vec![SocketAddr::new(ip, 0)];
            let dp = Dataplane::start(cfg).unwrap();
            let shared = dp.shared_addrs()[0];
            let h = &dp.workers()[0];
            let (a, b, c) = (peer(ip), peer(ip), peer(ip));
            let leg = |ssrc| {
                LegSpec::new(LocalBinding::Shared {
                    index: 0,
                    ssrc: Some(ssrc),
                })
            };
            add_session(
                h,
                SessionSpec {
                    id: 5,
                    legs: [leg(0xAAAA), leg(0xBBBB)],
                    rtcp_to_control: false,
                    rtcp_mode: Default::default(),
                },
            );
            // B announces itself first (leg 0 has no remote yet: counted, dropped).
            b.send_to(&rtp(0xBBBB, 1, 160), shared).unwrap();
            wait_event(h, "B latched", |e| {
                matches!(e, Event::Latched { leg: 1, .. })
            });
            let got = flow(&a, shared, None, &b, None, 0xAAAA, 500, 100);
            assert_intact(&got, 0xAAAA, 500, 100);
            let back = flow(&b, shared, None, &a, None, 0xBBBB, 2, 100);
            assert_intact(&back, 0xBBBB, 2, 100);
            // An unknown SSRC from an unknown address is counted, not relayed.
            for i in 0..10 {
                c.send_to(&rtp(0xCCCC, i, 160), shared).unwrap();
            }
            let got = flow(&a, shared, None, &b, None, 0xAAAA, 600, 10);
            assert_intact(&got, 0xAAAA, 600, 10);
            let s = snapshot(h, 5);
            assert_eq!(s.legs[0].counters.rx_rtp, 110);
            assert_eq!(s.legs[1].counters.rx_rtp, 101);
            assert_eq!(s.legs[0].counters.dropped(DropReason::NoRemote), 1);
            let w = dp.shutdown();
            assert_eq!(w[0].unknown_flow, 10, "{backend:?} {ip}");
        }
    }
}

#[test]
fn srtp_on_a_shared_port_is_relayed_by_ssrc_then_address() {
    for backend in BACKENDS {
        let mut cfg = config(backend);
        cfg.shared = vec![SocketAddr::new(V4, 0)];
        let dp = Dataplane::start(cfg).unwrap();
        let shared = dp.shared_addrs()[0];
        let h = &dp.workers()[0];
        let (a, b, evil) = (peer(V4), peer(V4), peer(V4));
        let leg = |ssrc| {
            LegSpec::new(LocalBinding::Shared {
                index: 0,
                ssrc: Some(ssrc),
            })
        };
        // A speaks SRTP (CM), B SRTP under other keys (GCM), both on one port.
        let (mut leg0, mut leg1) = (leg(0xAAAA), leg(0xBBBB));
        leg0.srtp = Some(leg_srtp(CM, 1, 2));
        leg1.srtp = Some(leg_srtp(GCM, 3, 4));
        add_session(h, pair(12, leg0, leg1));
        let (mut a_tx, mut a_rx, mut b_tx, mut b_rx) =
            (ctx(CM, 1), ctx(CM, 2), ctx(GCM, 3), ctx(GCM, 4));
        let p = protect(Some(&mut b_tx), rtp(0xBBBB, 0, 160), false);
        b.send_to(&p, shared).unwrap();
        wait_event(h, "B latched", |e| {
            matches!(e, Event::Latched { leg: 1, .. })
        });
        let got = flow(
            &a,
            shared,
            Some(&mut a_tx),
            &b,
            Some(&mut b_rx),
            0xAAAA,
            0,
            50,
        );
        assert_intact(&got, 0xAAAA, 0, 50);
        // A forgery with A's SSRC from elsewhere fails authentication.
        let forged = protect(Some(&mut ctx(CM, 9)), rtp(0xAAAA, 50, 160), false);
        evil.send_to(&forged, shared).unwrap();
        let back = flow(
            &b,
            shared,
            Some(&mut b_tx),
            &a,
            Some(&mut a_rx),
            0xBBBB,
            1,
            50,
        );
        assert_intact(&back, 0xBBBB, 1, 50);
        let s = snapshot(h, 12);
        assert_eq!(s.legs[0].remote, Some(a.local_addr().unwrap()));
        assert_eq!(s.legs[0].counters.dropped(DropReason::Auth), 1);
        assert_eq!(
            (s.legs[0].counters.rx_rtp, s.legs[1].counters.rx_rtp),
            (50, 51)
        );
        dp.shutdown();
    }
}

#[test]
fn shared_port_steering_puts_a_flow_on_the_predicted_worker() {
    for backend in BACKENDS {
        let mut cfg = config(backend);
        cfg.workers = 2;
        cfg.shared = vec![SocketAddr::new(V4, 0)];
        let dp = Dataplane::start(cfg).unwrap();
        let shared = dp.shared_addrs()[0];
        for round in 0..4u64 {
            let (a, b) = (peer(V4), peer(V4));
            let w = dp.worker_for_remote(&a.local_addr().unwrap());
            let h = &dp.workers()[w];
            let mut leg0 = LegSpec::new(LocalBinding::Shared {
                index: 0,
                ssrc: None,
            });
            leg0.remote = Some(a.local_addr().unwrap());
            leg0.latch = LatchMode::Fixed;
            let (mut leg1, _, _) = per_session_leg(V4, false);
            leg1.remote = Some(b.local_addr().unwrap());
            add_session(h, pair(100 + round, leg0, leg1));
            let got = flow(&a, shared, None, &b, None, 0x5000 + round as u32, 0, 50);
            assert_intact(&got, 0x5000 + round as u32, 0, 50);
        }
        let w = dp.shutdown();
        assert_eq!(w[0].unknown_flow + w[1].unknown_flow, 0);
    }
}

/// Bursts of SRTP, so that the worker receives many packets per turn and checks
/// their tags together (`precheck`: sixteen-lane SHA-1 where the CPU has it):
/// forgeries, a replay of a packet in the same burst (both pass phase one; the
/// first to finish wins), a wrong key, all counted exactly; every legitimate
/// packet relayed intact, re-protected for the other SRTP leg.
#[test]
fn srtp_bursts_are_checked_together_and_bad_packets_among_them_dropped() {
    use rand::{Rng, SeedableRng};
    for (backend, shared) in BACKENDS.into_iter().flat_map(|b| [(b, false), (b, true)]) {
        let mut cfg = config(backend);
        if shared {
            cfg.shared = vec![SocketAddr::new(V4, 0)];
        }
        let dp = Dataplane::start(cfg).unwrap();
        let h = &dp.workers()[0];
        let (a, b) = (peer(V4), peer(V4));
        // Per-session ports, or one shared port where the flows are found by
        // SSRC.
        let (mut leg0, addr0, mut leg1) = if shared {
            let leg = |ssrc| {
                LegSpec::new(LocalBinding::Shared {
                    index: 0,
                    ssrc: Some(ssrc),
                })
            };
            (leg(0x4321), dp.shared_addrs()[0], leg(0x5555))
        } else {
            let (leg0, addr0, _) = per_session_leg(V4, false);
            (leg0, addr0, per_session_leg(V4, false).0)
        };
        leg0.srtp = Some(leg_srtp(CM, 1, 2));
        leg0.remote = Some(a.local_addr().unwrap());
        leg1.srtp = Some(leg_srtp(CM, 3, 4));
        leg1.remote = Some(b.local_addr().unwrap());
        add_session(h, pair(43, leg0, leg1));
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut a_tx = ctx(CM, 1);
        let mut wrong = ctx(CM, 99);
        let mut b_rx = ctx(CM, 4);
        let (mut forged, mut replays, mut wrong_key) = (0, 0, 0);
        let mut received = Vec::new();
        let mut seq = 0u16;
        for _ in 0..15 {
            let mut burst = Vec::new();
            for k in 0..20 {
                let p = protect(Some(&mut a_tx), rtp(0x4321, seq, 160), false);
                seq += 1;
                burst.push(p.clone());
                match k % 7 {
                    1 => {
                        let mut g: Vec<u8> = (0..200).map(|_| rng.gen()).collect();
                        g[0] = 0x80;
                        g[1] = 0;
                        // A fresh index of the stream, so that it fails on its tag.
                        g[2..4].copy_from_slice(&seq.to_be_bytes());
                        g[8..12].copy_from_slice(&0x4321u32.to_be_bytes());
                        burst.push(g);
                        forged += 1;
                    }
                    3 => {
                        burst.push(p);
                        replays += 1;
                    }
                    5 => {
                        let w = protect(Some(&mut wrong), rtp(0x4321, seq, 160), false);
                        burst.push(w);
                        wrong_key += 1;
                    }
                    _ => {}
                }
            }
            for p in &burst {
                a.send_to(p, addr0).unwrap();
            }
            for _ in 0..20 {
                let (mut got, _) = recv(&b).expect("legitimate packet relayed");
                let u = b_rx
                    .unprotect_rtp(&mut got)
                    .expect("re-protected for B's keys");
                got.truncate(u.len);
                received.push(got);
            }
        }
        assert_intact(&received, 0x4321, 0, 300);
        b.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(recv(&b).is_none(), "no bad packet relayed");
        let l0 = snapshot(h, 43).legs[0].counters;
        assert_eq!(l0.rx_rtp, 300, "{backend:?} shared {shared}");
        assert_eq!(l0.dropped(DropReason::Replay), replays, "{l0:?}");
        assert_eq!(l0.dropped(DropReason::Auth), forged + wrong_key, "{l0:?}");
        dp.shutdown();
    }
}

#[test]
fn bad_traffic_is_counted_and_harms_no_legitimate_stream() {
    use rand::{Rng, SeedableRng};
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, b, evil) = (peer(V4), peer(V4), peer(V4));
        let (mut leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.srtp = Some(leg_srtp(CM, 1, 2));
        leg1.remote = Some(b.local_addr().unwrap());
        add_session(h, pair(42, leg0, leg1));
        // B confirms its signalled address first: an address nobody sent from
        // yet would latch to the first valid packet, the attacker's included.
        b.send_to(&rtp(0xB0B, 0, 20), addr1).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while snapshot(h, 42).legs[1].counters.rx_rtp == 0 {
            assert!(Instant::now() < deadline, "B's packet not seen");
            std::thread::sleep(Duration::from_millis(1));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut a_tx = ctx(CM, 1);
        let mut wrong = ctx(CM, 99);
        let (mut garbage, mut forged, mut replays, mut spoofs, mut wrong_key) = (0, 0, 0, 0, 0);
        let mut received = Vec::new();
        let mut last_legit = Vec::new();
        for seq in 0..300u16 {
            let p = protect(Some(&mut a_tx), rtp(0x1234, seq, 160), false);
            a.send_to(&p, addr0).unwrap();
            let (got, _) = recv(&b).expect("legitimate packet relayed");
            received.push(got);
            match seq % 5 {
                0 => {
                    // Not RTP at all.
                    let len = rng.gen_range(1..300);
                    let mut g: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                    g[0] = 0xFF;
                    evil.send_to(&g, addr0).unwrap();
                    garbage += 1;
                }
                1 => {
                    // Looks like RTP, random body: fails authentication.
                    let mut g: Vec<u8> = (0..200).map(|_| rng.gen()).collect();
                    g[0] = 0x80;
                    g[1] = 0;
                    evil.send_to(&g, addr0).unwrap();
                    forged += 1;
                }
                2 if !last_legit.is_empty() => {
                    // A captured packet replayed from another address.
                    evil.send_to(&last_legit, addr0).unwrap();
                    replays += 1;
                }
                3 => {
                    // SRTP under a wrong key.
                    let p = protect(Some(&mut wrong), rtp(0x1234, 60_000 + seq, 160), false);
                    evil.send_to(&p, addr0).unwrap();
                    wrong_key += 1;
                }
                _ => {
                    // Plain RTP to the plain leg from a spoofed source.
                    evil.send_to(&rtp(0x9999, seq, 160), addr1).unwrap();
                    spoofs += 1;
                }
            }
            last_legit = p;
        }
        assert_intact(&received, 0x1234, 0, 300);
        // Nothing else reached B, and nothing reached the attacker.
        b.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        assert!(recv(&b).is_none(), "no bad packet relayed");
        evil.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(recv(&evil).is_none());
        let s = snapshot(h, 42);
        let l0 = &s.legs[0].counters;
        assert_eq!(l0.rx_rtp, 300);
        assert_eq!(l0.dropped(DropReason::Malformed), garbage, "{l0:?}");
        // RFC 3711 3.3 checks the replay list before the tag, so a forgery whose
        // random index is old counts as a replay: the two together are exact.
        assert_eq!(
            l0.dropped(DropReason::Auth) + l0.dropped(DropReason::Replay),
            forged + wrong_key + replays,
            "{l0:?}"
        );
        assert!(l0.dropped(DropReason::Replay) >= replays, "{l0:?}");
        assert_eq!(s.legs[1].counters.dropped(DropReason::WrongSource), spoofs);
        assert_eq!(
            s.legs[0].remote,
            Some(a.local_addr().unwrap()),
            "no re-latch to the attacker"
        );
        // The worker's drop totals are the legs' drops, and keep those of a
        // session once it is removed.
        let legs: Vec<u64> = DropReason::ALL
            .iter()
            .map(|&r| s.legs[0].counters.dropped(r) + s.legs[1].counters.dropped(r))
            .collect();
        h.send(Command::RemoveSession(42)).unwrap();
        wait_event(h, "removed", |e| matches!(e, Event::SessionRemoved(_)));
        let w = dp.shutdown();
        assert_eq!(w[0].drops.to_vec(), legs, "{backend:?}");
    }
}

#[test]
fn srtp_leg_relatches_on_authenticated_packets_and_plain_leg_after_silence() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, a2, b, b2) = (peer(V4), peer(V4), peer(V4), peer(V4));
        let (mut leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.srtp = Some(leg_srtp(CM, 1, 2));
        leg1.latch = LatchMode::Learn {
            relatch_after: Duration::from_millis(200),
        };
        add_session(h, pair(8, leg0, leg1));
        let mut a_tx = ctx(CM, 1);
        let mut a_rx = ctx(CM, 2);
        // B latches leg 1 (A not known yet: dropped as no_remote), A latches leg 0.
        b.send_to(&rtp(0xB, 0, 20), addr1).unwrap();
        wait_event(h, "B latched", |e| {
            matches!(e, Event::Latched { leg: 1, .. })
        });
        assert_intact(
            &flow(&a, addr0, Some(&mut a_tx), &b, None, 0xA, 0, 10),
            0xA,
            0,
            10,
        );
        // A moves (NAT rebinding): the first authenticated packet moves the latch.
        assert_intact(
            &flow(&a2, addr0, Some(&mut a_tx), &b, None, 0xA, 10, 10),
            0xA,
            10,
            10,
        );
        let back = flow(&b, addr1, None, &a2, Some(&mut a_rx), 0xB, 1, 5);
        assert_intact(&back, 0xB, 1, 5);
        // B2 with B's SSRC while B is active: refused.
        b2.send_to(&rtp(0xB, 6, 160), addr1).unwrap();
        // After B has been silent for longer than relatch_after, B2 takes over.
        std::thread::sleep(Duration::from_millis(300));
        let back = flow(&b2, addr1, None, &a2, Some(&mut a_rx), 0xB, 7, 5);
        assert_intact(&back, 0xB, 7, 5);
        let s = snapshot(h, 8);
        assert_eq!(s.legs[1].remote, Some(b2.local_addr().unwrap()));
        assert_eq!(s.legs[0].remote, Some(a2.local_addr().unwrap()));
        assert_eq!(s.legs[1].counters.dropped(DropReason::WrongSource), 1);
        dp.shutdown();
    }
}

#[test]
fn a_plain_leg_signalled_with_one_address_latches_to_the_nated_source() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        // The SDP of leg 1 says `sdp`; the phone behind NAT sends from `nat`.
        let (a, sdp, nat) = (peer(V4), peer(V4), peer(V4));
        let (leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg1.remote = Some(sdp.local_addr().unwrap());
        add_session(h, pair(9, leg0, leg1));
        nat.send_to(&rtp(0xB, 0, 20), addr1).unwrap();
        let e = wait_event(h, "leg 1 latched", |e| {
            matches!(e, Event::Latched { leg: 1, .. })
        });
        assert!(
            matches!(e, Event::Latched { addr, .. } if addr == nat.local_addr().unwrap()),
            "{backend:?}: {e:?}"
        );
        // Media flows both ways, to the NATed address.
        assert_intact(&flow(&a, addr0, None, &nat, None, 0xA, 0, 20), 0xA, 0, 20);
        assert_intact(&flow(&nat, addr1, None, &a, None, 0xB, 1, 20), 0xB, 1, 20);
        sdp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(
            recv(&sdp).is_none(),
            "nothing went to the signalled address"
        );
        let s = snapshot(h, 9);
        assert_eq!(s.legs[1].remote, Some(nat.local_addr().unwrap()));
        assert_eq!(s.legs[1].counters.dropped(DropReason::WrongSource), 0);
        dp.shutdown();
    }
}

#[test]
fn spoofed_rtcp_does_not_move_a_latched_muxed_leg() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, b, evil) = (peer(V4), peer(V4), peer(V4));
        let (mut leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.latch = LatchMode::Learn {
            relatch_after: Duration::from_millis(20),
        };
        leg1.remote = Some(b.local_addr().unwrap());
        add_session(h, pair(10, leg0, leg1));
        assert_intact(&flow(&a, addr0, None, &b, None, 0xA, 0, 5), 0xA, 0, 5);
        // A is silent for longer than relatch_after; RTCP from elsewhere with
        // another sender SSRC must not take its media.
        std::thread::sleep(Duration::from_millis(60));
        for i in 0..3 {
            evil.send_to(&rr(0xE000 + i), addr0).unwrap();
        }
        let back = flow(&b, addr1, None, &a, None, 0xB, 0, 5);
        assert_intact(&back, 0xB, 0, 5);
        evil.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        assert!(recv(&evil).is_none(), "{backend:?}: media hijacked");
        let s = snapshot(h, 10);
        assert_eq!(s.legs[0].remote, Some(a.local_addr().unwrap()));
        assert_eq!(s.legs[0].counters.dropped(DropReason::WrongSource), 3);
        dp.shutdown();
    }
}

/// Waits until leg `leg` of session `id` counted `n` drops for `r`.
fn drops_until(h: &WorkerHandle, id: u64, leg: usize, r: DropReason, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = snapshot(h, id).legs[leg].counters.dropped(r);
        if got >= n {
            assert_eq!(got, n, "{r:?} drops");
            return;
        }
        assert!(Instant::now() < deadline, "{got} of {n} {r:?} drops");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// An ICE leg: its remote is only what the control plane sets (a nominated
/// candidate); RTP and RTCP from anywhere else are dropped, before and after,
/// and never take the media.
#[test]
fn a_nominated_leg_takes_media_only_from_the_address_set_for_it() {
    let dp = start(BackendKind::Mmsg);
    let h = &dp.workers()[0];
    let (a, b, evil) = (peer(V4), peer(V4), peer(V4));
    let (mut leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, addr1, _) = per_session_leg(V4, false);
    leg0.remote = Some(a.local_addr().unwrap());
    leg1.latch = LatchMode::Nominated;
    add_session(h, pair(30, leg0, leg1));
    // Nothing nominated yet: whoever sends, nothing is learned.
    evil.send_to(&rtp(0xE, 0, 20), addr1).unwrap();
    evil.send_to(&rr(0xE), addr1).unwrap();
    b.send_to(&rtp(0xB, 0, 20), addr1).unwrap();
    drops_until(h, 30, 1, DropReason::WrongSource, 3);
    assert_eq!(snapshot(h, 30).legs[1].remote, None);
    // B is nominated; what the other source sends first must not reach A.
    h.send(Command::UpdateLeg {
        session: 30,
        leg: 1,
        update: Box::new(LegUpdate {
            remote: Some(Some(b.local_addr().unwrap())),
            ..LegUpdate::default()
        }),
    })
    .unwrap();
    for seq in 1..4 {
        evil.send_to(&rtp(0xE, seq, 20), addr1).unwrap();
    }
    evil.send_to(&rr(0xE), addr1).unwrap();
    assert_intact(&flow(&b, addr1, None, &a, None, 0xB, 1, 10), 0xB, 1, 10);
    assert_intact(&flow(&a, addr0, None, &b, None, 0xA, 1, 10), 0xA, 1, 10);
    evil.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    assert!(recv(&evil).is_none(), "media went to the other source");
    let s = snapshot(h, 30);
    assert_eq!(s.legs[1].remote, Some(b.local_addr().unwrap()));
    assert_eq!(s.legs[1].counters.dropped(DropReason::WrongSource), 7);
    dp.shutdown();
}

#[test]
fn rewriting_ssrc_sequence_and_payload_type() {
    let dp = start(BackendKind::Mmsg);
    let h = &dp.workers()[0];
    let (a, b) = (peer(V4), peer(V4));
    let (leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, _, _) = per_session_leg(V4, false);
    leg1.remote = Some(b.local_addr().unwrap());
    leg1.rewrite = Rewrite {
        ssrc: Some(0xCAFE),
        seq_offset: 1000,
        pt_map: vec![(0, 8)],
    };
    add_session(h, pair(2, leg0, leg1));
    let got = flow(&a, addr0, None, &b, None, 0x1, 65_000, 20);
    assert_eq!(got.len(), 20);
    for (i, p) in got.iter().enumerate() {
        let mut want = rtp(0x1, 65_000u16.wrapping_add(i as u16), 160);
        want[1] = 8;
        want[2..4].copy_from_slice(
            &65_000u16
                .wrapping_add(i as u16)
                .wrapping_add(1000)
                .to_be_bytes(),
        );
        want[8..12].copy_from_slice(&0xCAFEu32.to_be_bytes());
        assert_eq!(p, &want);
    }
    dp.shutdown();
}

#[test]
fn stun_and_dtls_go_to_the_control_plane_and_it_can_answer_on_the_leg() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let a = peer(V4);
        let (leg0, addr0, _) = per_session_leg(V4, false);
        let (leg1, _, _) = per_session_leg(V4, false);
        add_session(h, pair(4, leg0, leg1));
        let hello = [22u8, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        a.send_to(&hello, addr0).unwrap();
        let e = wait_event(h, "DTLS datagram", |e| matches!(e, Event::Datagram { .. }));
        let Event::Datagram { leg, src, data, .. } = e else {
            unreachable!()
        };
        assert_eq!(
            (leg, src, data.as_slice()),
            (Some((4, 0)), a.local_addr().unwrap(), &hello[..])
        );
        h.send(Command::SendOnLeg {
            session: 4,
            leg: 0,
            data: b"\x16\xfe\xfdanswer".to_vec(),
            rtcp: false,
            protect: false,
            to: Some(src),
        })
        .unwrap();
        let (got, from) = recv(&a).expect("answer sent from the leg's socket");
        assert_eq!((got.as_slice(), from), (&b"\x16\xfe\xfdanswer"[..], addr0));
        dp.shutdown();
    }
}

/// A STUN binding request (RFC 7983 first byte 0..=3): copied to the control
/// plane, so a stream of them fills the event ring.
fn stun(i: u32) -> Vec<u8> {
    let mut p = vec![0, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42];
    p.extend_from_slice(&[0; 8]);
    p.extend_from_slice(&i.to_be_bytes());
    p
}

#[test]
fn answers_to_commands_survive_an_event_ring_flooded_from_outside() {
    for backend in BACKENDS {
        let dp = Dataplane::start(DataplaneConfig {
            event_ring: 4,
            ..config(backend)
        })
        .expect("dataplane starts");
        let h = &dp.workers()[0];
        let flood = peer(V4);
        let (leg0, addr0, _) = per_session_leg(V4, false);
        let (leg1, _, _) = per_session_leg(V4, false);
        add_session(h, pair(11, leg0, leg1));
        // Nobody reads events meanwhile: the ring fills with STUN copies.
        for i in 0..64 {
            flood.send_to(&stun(i), addr0).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        h.send(Command::RemoveSession(11)).unwrap();
        h.send(Command::Snapshot {
            session: None,
            token: 5,
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        // The removal and the numbers arrive, in order, once the ring is read.
        let mut order = Vec::new();
        let Event::Stats { counters, .. } = wait_event(h, "stats", |e| match e {
            Event::SessionRemoved(s) => {
                order.push(s.id);
                false
            }
            e => matches!(e, Event::Stats { token: 5, .. }),
        }) else {
            unreachable!()
        };
        assert_eq!(order, vec![11], "{backend:?}");
        assert_eq!(counters.sessions, 0);
        // The removal waited (the snapshot was taken before its own answer).
        assert!(counters.events_deferred >= 1, "{counters:?}");
        assert!(counters.event_ring_full >= 60, "{counters:?}");
        dp.shutdown();
    }
}

#[test]
fn bad_commands_get_errors_and_other_sessions_keep_flowing() {
    let dp = start(BackendKind::IoUring);
    let h = &dp.workers()[0];
    let (a, b) = (peer(V4), peer(V4));
    let (leg0, addr0, _) = per_session_leg(V4, false);
    let (mut leg1, _, _) = per_session_leg(V4, false);
    leg1.remote = Some(b.local_addr().unwrap());
    add_session(h, pair(1, leg0, leg1));
    // Duplicate id, unknown shared index, removal of an unknown session.
    let (dup0, _, _) = per_session_leg(V4, false);
    let (dup1, _, _) = per_session_leg(V4, false);
    for spec in [
        SessionSpec {
            id: 1,
            legs: [dup0, dup1],
            rtcp_to_control: false,
            rtcp_mode: Default::default(),
        },
        SessionSpec {
            id: 2,
            legs: [
                LegSpec::new(LocalBinding::Shared {
                    index: 3,
                    ssrc: None,
                }),
                LegSpec::new(LocalBinding::Shared {
                    index: 0,
                    ssrc: None,
                }),
            ],
            rtcp_to_control: false,
            rtcp_mode: Default::default(),
        },
    ] {
        h.send(Command::AddSession(Box::new(spec))).unwrap();
        wait_event(h, "error", |e| matches!(e, Event::Error { .. }));
    }
    h.send(Command::RemoveSession(77)).unwrap();
    wait_event(h, "error", |e| {
        matches!(
            e,
            Event::Error {
                session: Some(77),
                ..
            }
        )
    });
    assert_intact(&flow(&a, addr0, None, &b, None, 3, 0, 50), 3, 0, 50);
    // Removing the session reports its final numbers and closes its ports.
    h.send(Command::RemoveSession(1)).unwrap();
    let e = wait_event(h, "removed", |e| matches!(e, Event::SessionRemoved(_)));
    let Event::SessionRemoved(s) = e else {
        unreachable!()
    };
    assert_eq!(s.legs[0].counters.rx_rtp, 50);
    std::thread::sleep(Duration::from_millis(20));
    assert!(std::net::UdpSocket::bind(addr0).is_ok(), "port released");
    dp.shutdown();
}

#[test]
fn graceful_shutdown_relays_everything_already_received() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, b) = (peer(V4), peer(V4));
        let (leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, _, _) = per_session_leg(V4, false);
        leg1.remote = Some(b.local_addr().unwrap());
        leg1.latch = LatchMode::Fixed;
        add_session(h, pair(1, leg0, leg1));
        for seq in 0..400u16 {
            a.send_to(&rtp(0x51, seq, 160), addr0).unwrap();
        }
        let w = dp.shutdown();
        b.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut got = Vec::new();
        while let Some((p, _)) = recv(&b) {
            got.push(p);
        }
        assert_eq!(
            w[0].rx_packets, 400,
            "{backend:?}: the worker read all that was queued"
        );
        assert_eq!(w[0].tx_packets, 400);
        assert_intact(&got, 0x51, 0, 400);
    }
}

#[test]
fn configuration_errors_say_what_to_change() {
    let bad = [
        DataplaneConfig {
            workers: 0,
            ..DataplaneConfig::default()
        },
        DataplaneConfig {
            batch: 0,
            ..DataplaneConfig::default()
        },
        DataplaneConfig {
            pool_frames: 10,
            ..DataplaneConfig::default()
        },
        DataplaneConfig {
            cores: vec![4096],
            ..DataplaneConfig::default()
        },
    ];
    for (cfg, word) in bad
        .into_iter()
        .zip(["workers", "batch", "pool_frames", "core"])
    {
        let e = Dataplane::start(cfg).unwrap_err().to_string();
        assert!(e.contains(word), "{e}");
    }
}

#[test]
fn bundled_streams_from_one_address_are_told_apart_by_ssrc() {
    for backend in BACKENDS {
        let mut cfg = config(backend);
        cfg.shared = vec![SocketAddr::new(V4, 0)];
        let dp = Dataplane::start(cfg).unwrap();
        let shared = dp.shared_addrs()[0];
        let h = &dp.workers()[0];
        // Two sessions whose A sides are the same remote transport.
        let a = peer(V4);
        let sinks = [peer(V4), peer(V4)];
        for (i, sink) in sinks.iter().enumerate() {
            let mut leg0 = LegSpec::new(LocalBinding::Shared {
                index: 0,
                ssrc: Some(0x100 + i as u32),
            });
            leg0.remote = Some(a.local_addr().unwrap());
            let (mut leg1, _, _) = per_session_leg(V4, false);
            leg1.remote = Some(sink.local_addr().unwrap());
            add_session(h, pair(20 + i as u64, leg0, leg1));
        }
        for round in 0..3u16 {
            for (i, sink) in sinks.iter().enumerate() {
                let ssrc = 0x100 + i as u32;
                let got = flow(&a, shared, None, sink, None, ssrc, round * 10, 10);
                assert_intact(&got, ssrc, round * 10, 10);
            }
        }
        // Removing one session leaves its bundled neighbour's flows alone, in
        // either order of removal.
        let (gone, stays) = if backend == BackendKind::Mmsg {
            (20, 1)
        } else {
            (21, 0)
        };
        h.send(Command::RemoveSession(gone)).unwrap();
        wait_event(h, "removed", |e| matches!(e, Event::SessionRemoved(_)));
        let ssrc = 0x100 + stays as u32;
        let got = flow(&a, shared, None, &sinks[stays], None, ssrc, 40, 10);
        assert_intact(&got, ssrc, 40, 10);
        dp.shutdown();
    }
}

#[test]
fn a_leg_waiting_for_dtls_keys_relays_nothing_in_the_clear_until_keys_arrive() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, b) = (peer(V4), peer(V4));
        // Leg 0 is plain; leg 1 is secure but its keys come later (DTLS-SRTP).
        let (mut leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.remote = Some(a.local_addr().unwrap());
        leg1.remote = Some(b.local_addr().unwrap());
        leg1.keys_pending = true;
        add_session(h, pair(21, leg0, leg1));
        // Plain media towards the pending leg is not sent in the clear ...
        assert!(flow(&a, addr0, None, &b, None, 0xA, 1, 16).is_empty());
        // ... and what arrives on it is not relayed: kept for the keys, it
        // expired while `flow` waited for it (2 s, more than EARLY_TTL).
        assert!(flow(&b, addr1, None, &a, None, 0xB, 1, 16).is_empty());
        let s = snapshot(h, 21);
        assert_eq!(s.legs[1].counters.dropped(DropReason::NoKeys), 32);
        // Locally generated RTCP that asks for protection is dropped (counted) too.
        h.send(Command::SendOnLeg {
            session: 21,
            leg: 1,
            data: rr(0x77),
            rtcp: true,
            protect: true,
            to: None,
        })
        .unwrap();
        let s = snapshot(h, 21);
        assert_eq!(s.legs[1].counters.dropped(DropReason::NoKeys), 33);
        assert_eq!(s.legs[1].counters.tx_rtcp, 0);
        // The handshake completes: keys installed, media flows, encrypted.
        h.send(Command::UpdateLeg {
            session: 21,
            leg: 1,
            update: Box::new(LegUpdate {
                srtp: Some(Some(leg_srtp(CM, 5, 6))),
                ..LegUpdate::default()
            }),
        })
        .unwrap();
        let mut b_rx = ctx(CM, 6);
        let got = flow(&a, addr0, None, &b, Some(&mut b_rx), 0xA, 100, 30);
        assert_intact(&got, 0xA, 100, 30);
        let mut b_tx = ctx(CM, 5);
        let back = flow(&b, addr1, Some(&mut b_tx), &a, None, 0xB, 100, 30);
        assert_intact(&back, 0xB, 100, 30);
        dp.shutdown();
    }
}

/// A peer starts sending SRTP the moment its side of the DTLS handshake is
/// done, before ours installs the keys: those first packets (a browser's
/// first key frame) are kept and relayed once the keys arrive, in order;
/// they expire after a while, and go with their session.
#[test]
fn packets_that_arrive_before_the_keys_are_relayed_when_the_keys_arrive() {
    for backend in BACKENDS {
        let dp = start(backend);
        let h = &dp.workers()[0];
        let (a, b) = (peer(V4), peer(V4));
        let (mut leg0, _, _) = per_session_leg(V4, false);
        let (mut leg1, addr1, _) = per_session_leg(V4, false);
        leg0.remote = Some(a.local_addr().unwrap());
        leg1.remote = Some(b.local_addr().unwrap());
        leg1.keys_pending = true;
        add_session(h, pair(22, leg0, leg1));
        let mut b_tx = ctx(CM, 5);
        for seq in 0..5u16 {
            b.send_to(&protect(Some(&mut b_tx), rtp(0xB, seq, 160), false), addr1)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while worker_counters(h).early_held < 5 {
            assert!(Instant::now() < deadline, "{backend:?}: packets not kept");
            std::thread::sleep(Duration::from_millis(2));
        }
        h.send(Command::UpdateLeg {
            session: 22,
            leg: 1,
            update: Box::new(LegUpdate {
                srtp: Some(Some(leg_srtp(CM, 5, 6))),
                ..LegUpdate::default()
            }),
        })
        .unwrap();
        let got: Vec<Vec<u8>> = (0..5).filter_map(|_| recv(&a).map(|(p, _)| p)).collect();
        assert_intact(&got, 0xB, 0, 5);
        let c = worker_counters(h);
        assert_eq!((c.early_held, c.early_relayed), (5, 5));
        let s = snapshot(h, 22);
        assert_eq!(s.legs[1].counters.dropped_total(), 0);
        // Kept packets of a leg whose keys never come expire (no_keys drops).
        let (leg2, _, _) = per_session_leg(V4, false);
        let (mut leg3, addr3, _) = per_session_leg(V4, false);
        leg3.keys_pending = true;
        add_session(h, pair(23, leg2, leg3));
        b.send_to(&protect(Some(&mut b_tx), rtp(0xB, 5, 160), false), addr3)
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while snapshot(h, 23).legs[1].counters.dropped(DropReason::NoKeys) == 0 {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: kept packet never expired"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(worker_counters(h).early_relayed, 5);
        dp.shutdown();
    }
}

/// The hold for packets before the keys takes, once the leg has a remote,
/// only that remote's packets, and at most 16 per leg: a stranger cannot
/// fill it.
#[test]
fn the_early_hold_takes_only_the_remote_and_a_share_per_leg() {
    let dp = start(BackendKind::Mmsg);
    let h = &dp.workers()[0];
    let (a, b, evil) = (peer(V4), peer(V4), peer(V4));
    let (mut leg0, _, _) = per_session_leg(V4, false);
    let (mut leg1, addr1, _) = per_session_leg(V4, false);
    leg0.remote = Some(a.local_addr().unwrap());
    leg1.remote = Some(b.local_addr().unwrap());
    leg1.keys_pending = true;
    add_session(h, pair(24, leg0, leg1));
    let mut b_tx = ctx(CM, 5);
    for seq in 0..5u16 {
        evil.send_to(&rtp(0xE, seq, 160), addr1).unwrap();
    }
    for seq in 0..20u16 {
        b.send_to(&protect(Some(&mut b_tx), rtp(0xB, seq, 160), false), addr1)
            .unwrap();
    }
    drops_until(h, 24, 1, DropReason::NoKeys, 9);
    assert_eq!(worker_counters(h).early_held, 16);
    h.send(Command::UpdateLeg {
        session: 24,
        leg: 1,
        update: Box::new(LegUpdate {
            srtp: Some(Some(leg_srtp(CM, 5, 6))),
            ..LegUpdate::default()
        }),
    })
    .unwrap();
    let got: Vec<Vec<u8>> = (0..16).filter_map(|_| recv(&a).map(|(p, _)| p)).collect();
    assert_intact(&got, 0xB, 0, 16);
    assert_eq!(worker_counters(h).early_relayed, 16);
    dp.shutdown();
}

#[test]
fn coalescing_relays_everything_and_a_lone_packet_within_the_wait() {
    for backend in BACKENDS {
        let dp = Dataplane::start(DataplaneConfig {
            idle: IdlePolicy::Coalesce {
                batch: 32,
                wait: Duration::from_millis(1),
            },
            ..config(backend)
        })
        .expect("dataplane starts");
        let h = &dp.workers()[0];
        let (a, b) = (peer(V4), peer(V4));
        let (leg0, addr0, _) = per_session_leg(V4, false);
        let (mut leg1, _, _) = per_session_leg(V4, false);
        leg1.remote = Some(b.local_addr().unwrap());
        add_session(h, pair(3, leg0, leg1));
        // Bursts of 16 (fewer than a batch) all arrive.
        let got = flow(&a, addr0, None, &b, None, 0x33, 0, 300);
        assert_intact(&got, 0x33, 0, 300);
        // A lone packet is not held until the park timeout (50 ms): it waits for
        // a batch at most the 1 ms coalescing wait, plus scheduling.
        std::thread::sleep(Duration::from_millis(120));
        let t = Instant::now();
        let one = flow(&a, addr0, None, &b, None, 0x33, 300, 1);
        assert_intact(&one, 0x33, 300, 1);
        assert!(
            t.elapsed() < Duration::from_millis(40),
            "{backend:?}: a lone packet took {:?}",
            t.elapsed()
        );
        dp.shutdown();
    }
    assert!(DataplaneConfig {
        idle: "coalesce:0:100".parse().unwrap(),
        ..DataplaneConfig::default()
    }
    .validate()
    .is_err());
    assert!("coalesce:16".parse::<IdlePolicy>().is_err());
    assert_eq!(
        "coalesce:16:250".parse::<IdlePolicy>(),
        Ok(IdlePolicy::Coalesce {
            batch: 16,
            wait: Duration::from_micros(250)
        })
    );
}

#[test]
fn a_sweep_in_slices_reports_every_session_once() {
    let ip: IpAddr = "127.0.0.1".parse().unwrap();
    let dp = start(BackendKind::Mmsg);
    let h = &dp.workers()[0];
    for id in 1..=9u64 {
        let (a, _, _) = per_session_leg(ip, false);
        let (b, _, _) = per_session_leg(ip, false);
        add_session(h, pair(id, a, b));
    }
    // A hole in the slots.
    h.send(Command::RemoveSession(4)).unwrap();
    wait_event(
        h,
        "removed",
        |e| matches!(e, Event::SessionRemoved(s) if s.id == 4),
    );
    let mut seen = Vec::new();
    let mut from = Some(0u32);
    let mut slices = 0;
    while let Some(f) = from {
        let token = 1000 + slices;
        h.send(Command::SnapshotSlots {
            from: f,
            max: 3,
            token,
        })
        .unwrap();
        let Event::Stats {
            sessions,
            next_slot,
            ..
        } = wait_event(
            h,
            "slice",
            |e| matches!(e, Event::Stats { token: t, .. } if *t == token),
        )
        else {
            unreachable!()
        };
        assert!(sessions.len() <= 3, "a slice holds at most max sessions");
        seen.extend(sessions.iter().map(|s| s.id));
        if let Some(n) = next_slot {
            assert!(n > f, "the sweep moves on");
        }
        from = next_slot;
        slices += 1;
        assert!(slices < 20, "the sweep ends");
    }
    seen.sort_unstable();
    assert_eq!(seen, vec![1, 2, 3, 5, 6, 7, 8, 9]);
    assert!(
        slices >= 3,
        "eight sessions in slices of three: {slices} slices"
    );
    // Asking past the end answers empty and done.
    h.send(Command::SnapshotSlots {
        from: 1_000,
        max: 3,
        token: 99,
    })
    .unwrap();
    match wait_event(h, "past the end", |e| {
        matches!(e, Event::Stats { token: 99, .. })
    }) {
        Event::Stats {
            sessions,
            next_slot,
            ..
        } => assert!(sessions.is_empty() && next_slot.is_none()),
        _ => unreachable!(),
    }
    dp.shutdown();
}
