//! The Engine API end to end on loopback: create, media both ways, query, update,
//! delete (ports freed), limits, media timeout, SRTP failure events, shutdown.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use common::{builder, free_range, rtp_packet, wait_event};
use rtp_control::dataplane::{BackendChoice, BackendKind, LegSrtp, LegUpdate};
use rtp_control::{CloseReason, Engine, EngineError, EngineEvent, LegConfig};
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn engine(ports: u16) -> Engine {
    builder(ports).start().expect("engine starts")
}

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp_packet(8, ssrc, seq, seq as u8)
}

fn recv(s: &UdpSocket) -> Option<Vec<u8>> {
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, _)) => return Some(buf[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn key(seed: u8) -> SrtpConfig {
    let p = SrtpProfile::AesCm128HmacSha1_80;
    let k: Vec<u8> = (0..16).map(|i| seed ^ i).collect();
    let s: Vec<u8> = (0..14).map(|i| seed.wrapping_add(i)).collect();
    SrtpConfig::new(p, &k, &s).unwrap()
}

#[test]
fn a_call_relays_both_ways_and_delete_frees_its_ports() {
    // Both backends: io_uring registers the sockets in its file table, which
    // holds them open until the backend lets go of them.
    for backend in [BackendKind::Mmsg, BackendKind::IoUring] {
        a_call_relays_and_frees_its_ports(backend);
    }
}

fn a_call_relays_and_frees_its_ports(backend: BackendKind) {
    let e = builder(20)
        .backend(BackendChoice::Only(backend))
        .start()
        .expect("engine starts");
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig::default(),
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                rtcp_mux: false,
                ..LegConfig::default()
            },
        ])
        .unwrap();
    assert!(call.legs[1].local_rtcp.is_some());
    assert_eq!(
        call.legs[1].local_rtcp.unwrap().port(),
        call.legs[1].local.port() + 1
    );
    for seq in 0..100 {
        a.send_to(&rtp(1, seq), call.legs[0].local).unwrap();
        assert_eq!(recv(&b).unwrap(), rtp(1, seq));
    }
    for seq in 0..50 {
        b.send_to(&rtp(2, seq), call.legs[1].local).unwrap();
        assert_eq!(recv(&a).unwrap(), rtp(2, seq));
    }
    let q = e.query(call.id).unwrap();
    assert_eq!(q.legs[0].counters.rx_rtp, 100);
    assert_eq!(q.legs[1].counters.tx_rtp, 100);
    assert_eq!(q.legs[1].counters.rx_rtp, 50);
    assert_eq!(e.calls().unwrap(), vec![call.id]);
    wait_event(&e, |ev| matches!(ev, EngineEvent::Latched { leg: 0, .. }));
    let fin = e.delete_call(call.id).unwrap();
    assert_eq!(fin.legs[0].counters.rx_rtp, 100);
    assert!(matches!(e.query(call.id), Err(EngineError::NoSuchCall(_))));
    // The ports are free again.
    for leg in &call.legs {
        assert!(UdpSocket::bind(leg.local).is_ok(), "{backend:?}");
        if let Some(rtcp) = leg.local_rtcp {
            assert!(UdpSocket::bind(rtcp).is_ok(), "{backend:?}");
        }
    }
    assert_eq!(e.stats().unwrap().ports_in_use, 0);
    e.shutdown();
}

#[test]
fn rtp_to_srtp_bridge_with_keys_set_by_an_update() {
    let e = engine(20);
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig::default(),
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    // The answer brings leg 1's keys.
    e.update_leg(
        call.id,
        1,
        LegUpdate {
            srtp: Some(Some(LegSrtp {
                inbound: key(1),
                outbound: key(2),
            })),
            ..LegUpdate::default()
        },
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut b_rx = SrtpContext::new(key(2)).unwrap();
    for seq in 0..50 {
        a.send_to(&rtp(7, seq), call.legs[0].local).unwrap();
        let mut p = recv(&b).unwrap();
        let u = b_rx.unprotect_rtp(&mut p).expect("SRTP from the engine");
        assert_eq!(&p[..u.len], &rtp(7, seq)[..]);
    }
    e.shutdown();
}

#[test]
fn limits_are_errors_not_crashes() {
    let (lo, hi) = free_range(4);
    let e = Engine::builder()
        .ports(lo, hi)
        .max_calls(1)
        .backend(BackendChoice::Only(BackendKind::Mmsg))
        .pool_frames(256)
        .start()
        .unwrap();
    let c = e
        .create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    assert!(matches!(
        e.create_call([LegConfig::default(), LegConfig::default()]),
        Err(EngineError::Limit(_))
    ));
    e.delete_call(c.id).unwrap();
    e.create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    e.shutdown();

    // Bad configuration is refused up front, saying what to change.
    let err = Engine::builder()
        .ports(100, 50)
        .start()
        .unwrap_err()
        .to_string();
    assert!(err.contains("port"), "{err}");
    let err = Engine::builder()
        .workers(0, vec![])
        .start()
        .unwrap_err()
        .to_string();
    assert!(err.contains("workers"), "{err}");
}

#[test]
fn silent_calls_time_out_and_srtp_failures_raise_events() {
    let (lo, hi) = free_range(20);
    let e = Engine::builder()
        .ports(lo, hi)
        .backend(BackendChoice::Only(BackendKind::IoUring))
        .pool_frames(512)
        .check_interval(Duration::from_millis(50))
        .media_timeout(Some(Duration::from_millis(400)))
        .srtp_failure_threshold(5)
        .start()
        .unwrap();
    let (a, b) = (peer(), peer());
    let call = e
        .create_call([
            LegConfig {
                srtp: Some(LegSrtp {
                    inbound: key(3),
                    outbound: key(4),
                }),
                ..LegConfig::default()
            },
            LegConfig {
                remote: Some(b.local_addr().unwrap()),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    // Packets under the wrong key.
    let mut wrong = SrtpContext::new(key(9)).unwrap();
    for seq in 0..40u16 {
        let mut p = rtp(5, seq);
        let n = p.len();
        p.resize(n + 16, 0);
        let n = wrong.protect_rtp(&mut p, n).unwrap();
        a.send_to(&p[..n], call.legs[0].local).unwrap();
    }
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::SrtpFailures { .. }));
    let EngineEvent::SrtpFailures {
        call: c, leg, auth, ..
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((c, leg), (call.id, 0));
    assert!(auth > 5);
    // No valid media: the call times out and is closed with its numbers.
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::CallClosed { .. }));
    let EngineEvent::CallClosed {
        call: c,
        reason,
        stats,
    } = ev
    else {
        unreachable!()
    };
    assert_eq!((c, reason), (call.id, CloseReason::MediaTimeout));
    assert_eq!(stats.legs[0].counters.rx_rtp, 0);
    assert!(e.calls().unwrap().is_empty());
    e.shutdown();
}

#[test]
fn shutdown_closes_every_call_with_its_numbers() {
    let e = engine(40);
    let a = peer();
    let b = peer();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let c = e
            .create_call([
                LegConfig::default(),
                LegConfig {
                    remote: Some(b.local_addr().unwrap()),
                    ..LegConfig::default()
                },
            ])
            .unwrap();
        a.send_to(&rtp(1, 1), c.legs[0].local).unwrap();
        recv(&b).unwrap();
        ids.push(c.id);
    }
    let _ = SocketAddr::new(LO, 0);
    let stats = e.stats().unwrap();
    assert_eq!(stats.calls, 5);
    assert_eq!(stats.workers.len(), 1);
    drop(e); // Drop shuts down gracefully too.
}

#[test]
fn deletions_are_not_lost_when_stun_floods_the_event_ring() {
    const CALLS: usize = 8;
    let (lo, hi) = free_range(2 * CALLS as u16);
    let mut c = rtp_control::EngineConfig {
        port_min: lo,
        port_max: hi,
        max_calls: CALLS,
        ..Default::default()
    };
    c.dataplane.backend = BackendChoice::Only(BackendKind::Mmsg);
    c.dataplane.pool_frames = 1024;
    c.dataplane.event_ring = 1;
    let e = Engine::start(c).expect("engine starts");
    let calls: Vec<_> = (0..CALLS)
        .map(|_| {
            e.create_call([LegConfig::default(), LegConfig::default()])
                .unwrap()
        })
        .collect();
    // A peer sends STUN to every leg as fast as it can: each datagram is copied
    // to the control plane through an event ring of one slot.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let targets: Vec<SocketAddr> = calls.iter().map(|c| c.legs[0].local).collect();
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            let mut p = vec![0u8, 1, 0, 0, 0x21, 0x12, 0xA4, 0x42];
            p.extend_from_slice(&[7; 12]);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for t in &targets {
                    let _ = s.send_to(&p, t);
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(20));
    let deleted: Vec<_> = calls.iter().map(|c| e.delete_call(c.id)).collect();
    let stats = e.stats();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.join().unwrap();
    for d in deleted {
        d.expect("the removal reaches the control plane");
    }
    let stats = stats.unwrap();
    assert!(stats.workers[0].event_ring_full > 0, "the ring was flooded");
    assert_eq!((stats.calls, stats.ports_in_use), (0, 0));
    // The places under max_calls and the ports are free again.
    e.create_call([LegConfig::default(), LegConfig::default()])
        .expect("a new call fits");
    e.shutdown();
}

#[test]
fn a_port_range_smaller_than_max_calls_runs_out_with_a_clear_error() {
    // Two ports: one call of two muxed legs.
    let (lo, hi) = free_range(2);
    let e = builder(2).ports(lo, hi).max_calls(100).start().unwrap();
    let c = e
        .create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    let err = e
        .create_call([LegConfig::default(), LegConfig::default()])
        .unwrap_err();
    assert!(matches!(err, EngineError::Limit(_)), "{err:?}");
    assert!(err.to_string().contains("port"), "{err}");
    // Nothing leaked: the failed call held no port, and deleting frees the rest.
    assert_eq!(e.stats().unwrap().ports_in_use, 2);
    e.delete_call(c.id).unwrap();
    assert_eq!(e.stats().unwrap().ports_in_use, 0);
    e.create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    e.shutdown();
}

/// A worker whose command ring is full delays the control plane's changes but
/// never loses them: with a ring of one slot, updates from several threads all
/// succeed, and the last remote address set is where media goes.
#[test]
fn a_full_command_ring_delays_updates_but_loses_none() {
    let (lo, hi) = free_range(4);
    let mut c = rtp_control::EngineConfig {
        port_min: lo,
        port_max: hi,
        ..Default::default()
    };
    c.dataplane.backend = BackendChoice::Only(BackendKind::Mmsg);
    c.dataplane.command_ring = 1;
    let e = Engine::start(c).expect("engine starts");
    let call = e
        .create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    let decoy: SocketAddr = "127.0.0.1:9".parse().unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..150 {
                    let u = LegUpdate {
                        remote: Some(Some(decoy)),
                        ..LegUpdate::default()
                    };
                    e.update_leg(call.id, 0, u)
                        .expect("an update is not refused");
                }
            });
        }
    });
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let u = LegUpdate {
        remote: Some(Some(sink.local_addr().unwrap())),
        ..LegUpdate::default()
    };
    e.update_leg(call.id, 0, u).unwrap();
    let held = e.stats().unwrap().commands_held;
    eprintln!("commands held for a full ring: {held}");
    let src = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 2048];
    let mut got = false;
    for seq in 0..20 {
        src.send_to(&rtp_packet(0, 7, seq, 1), call.legs[1].local)
            .unwrap();
        if sink.recv(&mut buf).is_ok() {
            got = true;
            break;
        }
    }
    assert!(got, "media goes to the last remote set");
    e.shutdown();
}
