//! DTLS-SRTP legs through the Engine on loopback: the control thread runs the
//! handshake (as server and as client), installs the exported keys into the
//! worker, and media flows SRTP <-> RTP; a fingerprint mismatch or a peer that
//! never answers closes the call with an event and installs no keys.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{builder, rtp_packet};
use rtp_control::dtls::{
    Certificate, DtlsConfig, DtlsEndpoint, DtlsEvent, DtlsKeys, Fingerprint, Role,
};
use rtp_control::{CloseReason, DtlsLegParams, Engine, EngineEvent, LegConfig};
use rtp_core::srtp::SrtpContext;

fn engine(dtls: DtlsConfig) -> Engine {
    builder(20).dtls(dtls).start().expect("engine starts")
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    s
}

fn rtp(ssrc: u32, seq: u16) -> Vec<u8> {
    rtp_packet(0, ssrc, seq, seq as u8)
}

fn recv(s: &UdpSocket, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            return Some((buf[..n].to_vec(), from));
        }
    }
    None
}

fn wait_event(e: &Engine, what: &str, pred: impl FnMut(&EngineEvent) -> bool) -> EngineEvent {
    common::wait_event_for(e, what, Duration::from_secs(10), pred)
}

/// Drives our own endpoint over `s` towards `to` (client) or whoever speaks
/// first (server) until it connects, fails, or `wait` passes.
fn handshake(
    s: &UdpSocket,
    mut ep: DtlsEndpoint,
    mut to: Option<SocketAddr>,
    wait: Duration,
) -> (Result<DtlsKeys, String>, Option<SocketAddr>) {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        let now = Instant::now();
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(d) = ep.poll_transmit() {
            if let Some(t) = to {
                s.send_to(&d, t).unwrap();
            }
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                DtlsEvent::Connected(k) => return (Ok(*k), to),
                DtlsEvent::Failed(e) => return (Err(e.to_string()), to),
                _ => {}
            }
        }
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            if buf[0] >= 20 && buf[0] <= 63 {
                to.get_or_insert(from);
                ep.handle_datagram(&buf[..n], Instant::now());
            }
        }
    }
    (Err("no handshake result in time".into()), to)
}

/// Media both ways between the plain side `a` and the DTLS side `d`.
fn media_both_ways(
    a: &UdpSocket,
    a_to: SocketAddr,
    d: &UdpSocket,
    d_to: SocketAddr,
    keys: &DtlsKeys,
) {
    let (out, inb) = keys.srtp_configs().unwrap();
    let mut tx = SrtpContext::new(out).unwrap();
    let mut rx = SrtpContext::new(inb).unwrap();
    // Plain -> engine -> SRTP to the DTLS peer.
    let mut got = 0;
    for seq in 0..50u16 {
        a.send_to(&rtp(0xA, seq), a_to).unwrap();
        if let Some((mut p, _)) = recv(d, Duration::from_millis(500)) {
            let n = rx
                .unprotect_rtp(&mut p)
                .expect("SRTP from the engine authenticates")
                .len;
            assert_eq!(&p[..n], &rtp(0xA, seq)[..]);
            got += 1;
        }
    }
    assert!(got >= 45, "only {got}/50 packets reached the DTLS peer");
    // SRTP from the DTLS peer -> engine -> plain.
    let mut got = 0;
    for seq in 0..50u16 {
        let mut p = rtp(0xB, seq);
        let n = p.len();
        p.resize(n + 64, 0);
        let m = tx.protect_rtp(&mut p, n).unwrap();
        d.send_to(&p[..m], d_to).unwrap();
        if let Some((q, _)) = recv(a, Duration::from_millis(500)) {
            assert_eq!(q, rtp(0xB, seq));
            got += 1;
        }
    }
    assert!(got >= 45, "only {got}/50 packets reached the plain peer");
}

/// A call between the plain peer `a` (leg 0) and a DTLS leg (leg 1).
fn plain_and_dtls(e: &Engine, a: &UdpSocket, dtls_leg: LegConfig) -> rtp_control::CallInfo {
    e.create_call([
        LegConfig {
            remote: Some(a.local_addr().unwrap()),
            ..LegConfig::default()
        },
        dtls_leg,
    ])
    .unwrap()
}

fn peer_cert() -> (Arc<Certificate>, Fingerprint) {
    let c = Certificate::generate().unwrap();
    let f = c.fingerprint();
    (Arc::new(c), f)
}

#[test]
fn engine_as_dtls_server_installs_keys_and_media_flows_both_ways() {
    let e = engine(DtlsConfig::default());
    let (cert, fp) = peer_cert();
    let (a, d) = (sock(), sock());
    let call = plain_and_dtls(
        &e,
        &a,
        LegConfig {
            dtls: Some(DtlsLegParams {
                role: Some(Role::Server),
                fingerprint: Some(fp.clone()),
            }),
            ..LegConfig::default()
        },
    );
    // Before the handshake nothing reaches the DTLS side in the clear.
    a.send_to(&rtp(0xA, 999), call.legs[0].local).unwrap();
    assert!(recv(&d, Duration::from_millis(200)).is_none());
    // Garbage and a cookie-less hello from someone else allocate nothing and do
    // not fail the leg (the hello gets a HelloVerifyRequest, the garbage nothing).
    let spoof = sock();
    spoof
        .send_to(
            &[22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3],
            call.legs[1].local,
        )
        .unwrap();
    let mut probe = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        peer_cert().0,
        None,
        Instant::now(),
    );
    let hello = probe.poll_transmit().expect("a ClientHello");
    spoof.send_to(&hello, call.legs[1].local).unwrap();
    let (hvr, _) = recv(&spoof, Duration::from_secs(2)).expect("a HelloVerifyRequest");
    assert_eq!(
        (hvr[0], hvr[13]),
        (22, 3),
        "handshake record, HelloVerifyRequest"
    );
    let ep = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        cert,
        Some(e.fingerprint().clone()),
        Instant::now(),
    );
    let (keys, _) = handshake(&d, ep, Some(call.legs[1].local), Duration::from_secs(10));
    let keys = keys.expect("handshake with the engine completes");
    assert_eq!(keys.peer_fingerprint, *e.fingerprint());
    match wait_event(&e, "connected", |ev| {
        matches!(ev, EngineEvent::DtlsConnected { .. })
    }) {
        EngineEvent::DtlsConnected {
            call: c,
            leg,
            profile,
            peer_fingerprint,
            ..
        } => {
            assert_eq!((c, leg), (call.id, 1));
            assert_eq!(profile, keys.srtp_profile);
            assert_eq!(peer_fingerprint, fp);
        }
        _ => unreachable!(),
    }
    media_both_ways(&a, call.legs[0].local, &d, call.legs[1].local, &keys);
    let st = e.stats().unwrap();
    assert_eq!(
        (st.dtls.started, st.dtls.completed, st.dtls.failed),
        (1, 1, 0)
    );
    e.delete_call(call.id).unwrap();
    e.shutdown();
}

#[test]
fn engine_as_dtls_client_starts_towards_the_signalled_remote() {
    let e = engine(DtlsConfig::default());
    let (cert, fp) = peer_cert();
    let (a, d) = (sock(), sock());
    let call = plain_and_dtls(
        &e,
        &a,
        LegConfig {
            remote: Some(d.local_addr().unwrap()),
            dtls: Some(DtlsLegParams {
                role: None,
                fingerprint: None,
            }),
            ..LegConfig::default()
        },
    );
    // Role undecided (we offered actpass): nothing is sent yet.
    assert!(recv(&d, Duration::from_millis(200)).is_none());
    // The answer says a=setup:passive: we are the client.
    e.set_dtls(
        call.id,
        1,
        DtlsLegParams {
            role: Some(Role::Client),
            fingerprint: Some(fp),
        },
    )
    .unwrap();
    let ep = DtlsEndpoint::server(
        Arc::new(DtlsConfig::default()),
        cert,
        Some(e.fingerprint().clone()),
        Instant::now(),
    );
    let (keys, from) = handshake(&d, ep, None, Duration::from_secs(10));
    let keys = keys.expect("handshake with the engine completes");
    assert_eq!(from, Some(call.legs[1].local));
    wait_event(&e, "connected", |ev| {
        matches!(ev, EngineEvent::DtlsConnected { .. })
    });
    media_both_ways(&a, call.legs[0].local, &d, call.legs[1].local, &keys);
    e.shutdown();
}

#[test]
fn a_fingerprint_mismatch_installs_no_keys_and_closes_the_call_at_the_deadline() {
    let e = engine(DtlsConfig {
        handshake_timeout: Duration::from_secs(2),
        ..DtlsConfig::default()
    });
    let (cert, _) = peer_cert();
    let (_, other_fp) = peer_cert();
    let (a, d) = (sock(), sock());
    let call = plain_and_dtls(
        &e,
        &a,
        LegConfig {
            dtls: Some(DtlsLegParams {
                role: Some(Role::Server),
                fingerprint: Some(other_fp),
            }),
            ..LegConfig::default()
        },
    );
    let ep = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        cert,
        Some(e.fingerprint().clone()),
        Instant::now(),
    );
    let (r, _) = handshake(&d, ep, Some(call.legs[1].local), Duration::from_secs(5));
    // Our client may or may not see the alert before it thinks it is done; the
    // engine must not have installed keys either way.
    let _ = r;
    // The attempt fails at once; the leg waits for a better one until its
    // deadline, then the call closes with the last attempt's reason.
    match wait_event(&e, "attempt failure", |ev| {
        matches!(ev, EngineEvent::DtlsAttemptFailed { .. })
    }) {
        EngineEvent::DtlsAttemptFailed {
            call: c,
            leg,
            from,
            reason,
        } => {
            assert_eq!((c, leg, from), (call.id, 1, Some(d.local_addr().unwrap())));
            assert!(reason.to_lowercase().contains("fingerprint"), "{reason}");
        }
        _ => unreachable!(),
    }
    match wait_event(&e, "failure", |ev| {
        matches!(ev, EngineEvent::DtlsFailed { .. })
    }) {
        EngineEvent::DtlsFailed {
            call: c,
            leg,
            reason,
        } => {
            assert_eq!((c, leg), (call.id, 1));
            assert!(reason.to_lowercase().contains("fingerprint"), "{reason}");
        }
        _ => unreachable!(),
    }
    match wait_event(&e, "closed", |ev| {
        matches!(ev, EngineEvent::CallClosed { .. })
    }) {
        EngineEvent::CallClosed { reason, stats, .. } => {
            assert_eq!(reason, CloseReason::DtlsFailed);
            assert_eq!(stats.legs[1].counters.tx_rtp, 0);
        }
        _ => unreachable!(),
    }
    let st = e.stats().unwrap();
    assert_eq!((st.dtls.failed, st.dtls.legs_failed), (1, 1));
    e.shutdown();
}

#[test]
fn an_impostor_fails_alone_and_the_real_peer_still_connects() {
    let e = engine(DtlsConfig::default());
    let (cert, fp) = peer_cert();
    let (impostor_cert, _) = peer_cert();
    let (a, d, x) = (sock(), sock(), sock());
    let call = plain_and_dtls(
        &e,
        &a,
        LegConfig {
            dtls: Some(DtlsLegParams {
                role: Some(Role::Server),
                fingerprint: Some(fp),
            }),
            ..LegConfig::default()
        },
    );
    // Someone else reaches the port first, passes the cookie exchange, and
    // presents another certificate: that attempt fails, the call stays.
    let ep = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        impostor_cert,
        None,
        Instant::now(),
    );
    let _ = handshake(&x, ep, Some(call.legs[1].local), Duration::from_secs(3));
    wait_event(&e, "impostor's attempt fails", |ev| {
        matches!(ev, EngineEvent::DtlsAttemptFailed { .. })
    });
    let ep = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        cert,
        Some(e.fingerprint().clone()),
        Instant::now(),
    );
    let (keys, _) = handshake(&d, ep, Some(call.legs[1].local), Duration::from_secs(10));
    let keys = keys.expect("the real peer connects after the impostor failed");
    wait_event(&e, "connected", |ev| {
        matches!(ev, EngineEvent::DtlsConnected { .. })
    });
    media_both_ways(&a, call.legs[0].local, &d, call.legs[1].local, &keys);
    assert_eq!(e.calls().unwrap(), vec![call.id]);
    e.shutdown();
}

#[test]
fn a_peer_that_never_answers_fails_the_handshake_promptly() {
    let cfg = DtlsConfig {
        initial_timeout: Duration::from_millis(100),
        handshake_timeout: Duration::from_millis(1500),
        ..DtlsConfig::default()
    };
    let e = engine(cfg);
    let silent = sock();
    let started = Instant::now();
    let call = e
        .create_call([
            LegConfig::default(),
            LegConfig {
                remote: Some(silent.local_addr().unwrap()),
                dtls: Some(DtlsLegParams {
                    role: Some(Role::Client),
                    fingerprint: None,
                }),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    // The ClientHello is retransmitted with back-off while the peer is silent.
    let mut hellos = 0;
    while let Some((p, _)) = recv(&silent, Duration::from_millis(700)) {
        assert!(p[0] == 22 || p[0] == 21, "handshake or alert records only");
        hellos += 1;
    }
    assert!(hellos >= 2, "ClientHello retransmitted ({hellos})");
    wait_event(
        &e,
        "failure",
        |ev| matches!(ev, EngineEvent::DtlsFailed { call: c, .. } if *c == call.id),
    );
    wait_event(&e, "closed", |ev| {
        matches!(
            ev,
            EngineEvent::CallClosed {
                reason: CloseReason::DtlsFailed,
                ..
            }
        )
    });
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.calls().unwrap().is_empty());
    e.shutdown();
}
