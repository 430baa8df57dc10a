//! ICE-lite through the Engine on loopback: a client socket plays the full
//! (controlling) ICE agent with rtp_core's STUN request builder (pinned by the
//! RFC 5769 vectors in rtp_core::stun); the engine answers its checks on the
//! leg's ports, refuses wrong credentials, moves media to the nominated
//! address, and counts what it drops without disturbing other calls.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{builder, rtp_packet, wait_event};
use rtp_control::dtls::Role;
use rtp_control::{
    DtlsLegParams, Engine, EngineError, EngineEvent, EngineStats, IceCredentials, IceLegParams,
    LegConfig,
};
use rtp_core::stun::{BindingRequest, Class, IceRole, StunMessage, TransactionId};

fn engine() -> Engine {
    builder(20).start().expect("engine starts")
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buf = [0u8; 2048];
    loop {
        match s.recv_from(&mut buf) {
            Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

fn creds(ufrag: &str, pwd: &str) -> IceCredentials {
    IceCredentials {
        ufrag: ufrag.into(),
        pwd: pwd.into(),
    }
}

/// Our side (the engine's) and the peer's.
fn params() -> IceLegParams {
    IceLegParams {
        local: creds("EnGi", "engine+password/engine+p"),
        remote: Some(creds("PeEr", "peer+password/peer+pass")),
    }
}

fn ice_leg() -> LegConfig {
    LegConfig {
        ice: Some(params()),
        ..LegConfig::default()
    }
}

/// A leg without ICE whose media goes to `peer`.
fn leg_to(peer: &UdpSocket) -> LegConfig {
    LegConfig {
        remote: Some(peer.local_addr().unwrap()),
        ..LegConfig::default()
    }
}

/// A check as a controlling full agent sends it.
fn check(tid: u8, user: &str, pwd: &str, use_candidate: bool) -> (Vec<u8>, TransactionId) {
    let id = [tid; 12];
    let mut b = [0u8; 200];
    let n = BindingRequest {
        username: Some(user),
        priority: Some(0x6e00_01ff),
        use_candidate,
        role: Some(IceRole::Controlling(0x0102_0304_0506_0708)),
    }
    .emit(&mut b, &id, Some(pwd.as_bytes()))
    .unwrap();
    (b[..n].to_vec(), id)
}

/// Sends a check from `s` to `to`; returns the answer (from `to`).
fn ask(s: &UdpSocket, to: SocketAddr, req: &(Vec<u8>, TransactionId)) -> Vec<u8> {
    s.send_to(&req.0, to).unwrap();
    let (r, from) = recv(s).expect("an answer to the check");
    assert_eq!(from, to, "answered from the port the check went to");
    let m = StunMessage::new_checked(&r[..]).expect("the answer is STUN");
    assert_eq!(m.transaction_id(), req.1);
    m.check_fingerprint()
        .expect("the answer's FINGERPRINT verifies");
    r
}

fn assert_success(r: &[u8], pwd: &str, mapped: SocketAddr) {
    let m = StunMessage::new_checked(r).unwrap();
    assert_eq!(m.class(), Class::Success);
    m.check_integrity(pwd.as_bytes())
        .expect("signed with the local password");
    assert_eq!(m.xor_mapped_address(), Ok(Some(mapped)));
}

fn error_code(r: &[u8]) -> Option<u16> {
    let m = StunMessage::new_checked(r).unwrap();
    assert_eq!(m.class(), Class::Error);
    m.error_code().unwrap().map(|(c, _)| c)
}

/// Polls the engine's statistics until `done` holds (a datagram's way through
/// the worker and the control thread is not ordered with a stats request).
fn stats_until(e: &Engine, done: impl Fn(&EngineStats) -> bool) -> EngineStats {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = e.stats().unwrap();
        if done(&s) || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

const LOCAL_PWD: &str = "engine+password/engine+p";

#[test]
fn checks_are_answered_and_the_nominated_address_gets_the_media() {
    let e = engine();
    let call = e.create_call([ice_leg(), LegConfig::default()]).unwrap();
    let port = call.legs[0].local;
    let (a, b, c) = (sock(), sock(), sock());

    // A valid check without USE-CANDIDATE: a signed success naming A.
    let r = ask(&a, port, &check(1, "EnGi:PeEr", LOCAL_PWD, false));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());

    // Wrong password, wrong username: 401, unsigned, nominating nothing.
    let r = ask(
        &a,
        port,
        &check(2, "EnGi:PeEr", "not+the+password+at+all", true),
    );
    assert_eq!(error_code(&r), Some(401));
    let m = StunMessage::new_checked(&r[..]).unwrap();
    assert!(m.check_integrity(LOCAL_PWD.as_bytes()).is_err());
    let r = ask(&a, port, &check(3, "EnGi:Someone", LOCAL_PWD, true));
    assert_eq!(error_code(&r), Some(401));

    // B nominates: the first nomination event is B's (A's bad checks did not).
    let r = ask(&b, port, &check(4, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, b.local_addr().unwrap());
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    match ev {
        EngineEvent::IceNominated {
            call: id,
            leg,
            rtcp,
            addr,
        } => {
            assert_eq!((id, leg, rtcp), (call.id, 0, false));
            assert_eq!(addr, b.local_addr().unwrap());
        }
        _ => unreachable!(),
    }

    // Media into leg 1 goes to B.
    let pkt = rtp_packet(0, 0x1234, 1, 7);
    c.send_to(&pkt, call.legs[1].local).unwrap();
    let (got, from) = recv(&b).expect("RTP relayed to the nominated address");
    assert_eq!((got, from), (pkt, port));

    let s = stats_until(&e, |s| s.ice.nominations == 1);
    assert_eq!(
        (
            s.ice.answered,
            s.ice.bad_integrity,
            s.ice.unknown_username,
            s.ice.nominations
        ),
        (2, 1, 1, 1)
    );
    e.shutdown();
}

#[test]
fn only_the_nominated_address_sends_media_into_an_ice_leg() {
    let e = engine();
    let (a, evil, c) = (sock(), sock(), sock());
    let call = e.create_call([ice_leg(), leg_to(&c)]).unwrap();
    let port = call.legs[0].local;
    // Before any nomination, and after A's: RTP from elsewhere goes nowhere.
    evil.send_to(&rtp_packet(0, 0xE, 1, 1), port).unwrap();
    let r = ask(&a, port, &check(1, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    evil.send_to(&rtp_packet(0, 0xE, 2, 2), port).unwrap();
    let pkt = rtp_packet(0, 0xA, 1, 3);
    a.send_to(&pkt, port).unwrap();
    let (got, _) = recv(&c).expect("A's RTP relayed");
    assert_eq!(got, pkt, "the first packet relayed is the nominated peer's");
    let q = e.query(call.id).unwrap();
    assert_eq!(q.legs[0].remote, Some(a.local_addr().unwrap()));
    assert_eq!(
        q.legs[0]
            .counters
            .dropped(rtp_control::dataplane::DropReason::WrongSource),
        2
    );
    // Media the other way goes to A.
    c.send_to(&rtp_packet(0, 0xC, 1, 4), call.legs[1].local)
        .unwrap();
    assert_eq!(recv(&a).unwrap().0, rtp_packet(0, 0xC, 1, 4));
    e.shutdown();
}

#[test]
fn set_ice_needs_a_leg_and_new_local_credentials_restart() {
    let e = engine();
    let call = e.create_call([ice_leg(), LegConfig::default()]).unwrap();
    let port = call.legs[0].local;
    let a = sock();

    assert!(matches!(
        e.set_ice(call.id, 2, params()),
        Err(EngineError::Config(_))
    ));
    assert!(matches!(
        e.set_ice(call.id + 100, 0, params()),
        Err(EngineError::NoSuchCall(_))
    ));
    let mut bad = params();
    bad.local.pwd = "short".into();
    assert!(matches!(
        e.set_ice(call.id, 0, bad.clone()),
        Err(EngineError::Config(_))
    ));
    let refused = e.create_call([
        LegConfig {
            ice: Some(bad),
            ..LegConfig::default()
        },
        LegConfig::default(),
    ]);
    assert!(matches!(refused, Err(EngineError::Config(_))));

    // Nominate, then restart with new local credentials: until the peer
    // uses the new ones (its offer may be lost), its consent checks with the
    // old ones are still answered, signed with the old password.
    let r = ask(&a, port, &check(1, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    let mut restart = params();
    restart.local = creds("NeWu", "new+engine+password+abc");
    e.set_ice(call.id, 0, restart.clone()).unwrap();
    let r = ask(&a, port, &check(2, "EnGi:PeEr", LOCAL_PWD, false));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    // The new ones work and nominate again; then the old ones are refused.
    let r = ask(&a, port, &check(3, "NeWu:PeEr", &restart.local.pwd, true));
    assert_success(&r, &restart.local.pwd, a.local_addr().unwrap());
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    assert!(
        matches!(ev, EngineEvent::IceNominated { addr, .. } if addr == a.local_addr().unwrap())
    );
    let r = ask(&a, port, &check(4, "EnGi:PeEr", LOCAL_PWD, false));
    assert_eq!(error_code(&r), Some(401));
    e.shutdown();
}

#[test]
fn stun_without_ice_and_garbage_are_counted_drops_and_other_calls_go_on() {
    let e = engine();
    let plain = e
        .create_call([LegConfig::default(), LegConfig::default()])
        .unwrap();
    let ice = e.create_call([ice_leg(), LegConfig::default()]).unwrap();
    let (a, b) = (sock(), sock());

    // STUN on a leg without ICE: no answer, counted.
    let req = check(1, "EnGi:PeEr", LOCAL_PWD, true);
    a.send_to(&req.0, plain.legs[0].local).unwrap();
    let s = stats_until(&e, |s| s.ice.not_ice == 1);
    assert_eq!(s.ice.not_ice, 1);

    // Garbage with a STUN first byte on the ICE leg: each dropped and counted;
    // the valid check sent after them gets the first answer.
    let (mut no_fp, _) = check(2, "EnGi:PeEr", LOCAL_PWD, true);
    let last = no_fp.len() - 1;
    no_fp[last] ^= 0xff;
    let garbage: Vec<Vec<u8>> = vec![
        vec![0],
        vec![0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42],
        vec![0x01; 64],
        {
            let mut t = req.0.clone();
            t[3] = 0xfc; // length past the datagram
            t
        },
        {
            let mut t = req.0.clone();
            t[21] = 0x06; // USERNAME's type byte moved: attribute lengths break
            t[23] = 0xff;
            t
        },
        no_fp,
    ];
    for g in &garbage {
        a.send_to(g, ice.legs[0].local).unwrap();
    }
    // A request with no credentials (28 bytes): no answer, which would be
    // larger, to a source that may be forged.
    let mut bare = [0u8; 28];
    let n = BindingRequest::default()
        .emit(&mut bare, &[7; 12], None)
        .unwrap();
    a.send_to(&bare[..n], ice.legs[0].local).unwrap();
    let r = ask(
        &a,
        ice.legs[0].local,
        &check(3, "EnGi:PeEr", LOCAL_PWD, false),
    );
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    let s = stats_until(&e, |s| s.ice.malformed + s.ice.bad_fingerprint == 6);
    assert_eq!((s.ice.malformed, s.ice.bad_fingerprint), (5, 1));
    assert_eq!((s.ice.no_credentials, s.ice.bad_request), (1, 0));

    // The plain call relays as before, the engine still answers.
    b.send_to(&rtp_packet(0, 9, 1, 1), plain.legs[0].local)
        .unwrap();
    let c = sock();
    c.send_to(&rtp_packet(0, 10, 1, 2), plain.legs[1].local)
        .unwrap();
    let (got, _) = recv(&b).expect("relayed to the latched address");
    assert_eq!(got, rtp_packet(0, 10, 1, 2));
    assert_eq!(e.calls().unwrap(), vec![plain.id, ice.id]);
    e.shutdown();
}

#[test]
fn the_rtcp_port_is_component_2() {
    let e = engine();
    let call = e
        .create_call([
            LegConfig {
                rtcp_mux: false,
                // No remote signalled: the answer on the RTCP port goes to
                // the checking address, not to an RTCP destination.
                ..ice_leg()
            },
            LegConfig::default(),
        ])
        .unwrap();
    let rtcp_port = call.legs[0].local_rtcp.expect("an RTCP port");
    let a = sock();
    let r = ask(&a, rtcp_port, &check(1, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    let q = e.query(call.id).unwrap();
    assert_eq!(q.legs[0].counters.tx_rtcp, 0, "a STUN answer is not RTCP");
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    assert!(matches!(
        ev,
        EngineEvent::IceNominated { leg: 0, rtcp: true, addr, .. } if addr == a.local_addr().unwrap()
    ));
    e.shutdown();
}

#[test]
fn a_dtls_client_leg_handshakes_with_the_nominated_address() {
    let e = engine();
    let call = e
        .create_call([
            LegConfig {
                dtls: Some(DtlsLegParams {
                    role: Some(Role::Client),
                    fingerprint: None,
                }),
                ..ice_leg()
            },
            LegConfig::default(),
        ])
        .unwrap();
    let a = sock();
    let r = ask(
        &a,
        call.legs[0].local,
        &check(1, "EnGi:PeEr", LOCAL_PWD, true),
    );
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    // The ClientHello follows, to the nominated address.
    let (hello, from) = recv(&a).expect("a ClientHello");
    assert_eq!(from, call.legs[0].local);
    assert_eq!(hello[0], 22, "a DTLS handshake record");
    e.shutdown();
}

#[test]
fn a_flood_of_forged_checks_gets_a_bounded_number_of_answers() {
    let e = engine();
    let call = e.create_call([ice_leg(), LegConfig::default()]).unwrap();
    let a = sock();
    const N: u64 = 300;
    for i in 0..N {
        let (req, _) = check(i as u8, "EnGi:PeEr", "forged+password+forged+pw", true);
        a.send_to(&req, call.legs[0].local).unwrap();
    }
    let s = stats_until(&e, |s| s.ice.bad_integrity == N);
    assert_eq!(s.ice.bad_integrity, N);
    // The engine's budget (64 at once, 100 a second) answered some 401s and
    // dropped the rest: sending 300 checks takes milliseconds, not seconds.
    assert!(s.ice.rate_limited > 0, "{:?}", s.ice);
    a.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut answers = 0;
    while let Some((r, _)) = recv(&a) {
        assert_eq!(error_code(&r), Some(401));
        answers += 1;
    }
    // (Fewer may arrive than were sent: the client's receive buffer is small.)
    assert!(
        answers > 0 && answers + s.ice.rate_limited <= N,
        "{answers}"
    );
    // A valid check is answered whatever is left of the error budget.
    let r = ask(
        &a,
        call.legs[0].local,
        &check(1, "EnGi:PeEr", LOCAL_PWD, false),
    );
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    e.shutdown();
}

/// The remote of leg 0 as the worker has it. The query also orders: the
/// worker carried out every command sent before it.
fn remote0(e: &Engine, call: u64) -> Option<SocketAddr> {
    e.query(call).unwrap().legs[0].remote
}

/// RTP and RTCP leg 0 dropped as `wrong_source`.
fn wrong_source0(e: &Engine, call: u64) -> u64 {
    e.query(call).unwrap().legs[0]
        .counters
        .dropped(rtp_control::dataplane::DropReason::WrongSource)
}

/// A SIP leg upgraded to ICE mid-call (a re-INVITE that adds ICE): created
/// without ICE, its media going to the signalled address, `set_ice` turns
/// ICE-lite on. Until a nomination media goes on to the old remote and a
/// stranger's RTP is dropped, not learned (before, as a learning leg that
/// has received nothing yet, its first packet would have taken the media);
/// a nominating check from a new address is answered, signed, and moves the
/// media there.
#[test]
fn set_ice_turns_ice_on_for_a_leg_created_without_it() {
    let e = engine();
    let (old, new, stranger, c) = (sock(), sock(), sock(), sock());
    let call = e.create_call([leg_to(&old), leg_to(&c)]).unwrap();
    let (port, port1) = (call.legs[0].local, call.legs[1].local);
    let mut seq = 0;
    let mut to_leg0 = |expect: &UdpSocket| {
        seq += 1;
        let pkt = rtp_packet(0, 0xC, seq, seq as u8);
        c.send_to(&pkt, port1).unwrap();
        let (got, from) = recv(expect).expect("RTP relayed to leg 0's remote");
        assert_eq!((got, from), (pkt, port));
    };
    to_leg0(&old);
    // No ICE yet: a check is not answered, only counted.
    let req = check(1, "EnGi:PeEr", LOCAL_PWD, true);
    new.send_to(&req.0, port).unwrap();
    let s = stats_until(&e, |s| s.ice.not_ice == 1);
    assert_eq!((s.ice.not_ice, s.ice.answered), (1, 0));

    e.set_ice(call.id, 0, params()).unwrap();
    assert_eq!(remote0(&e, call.id), Some(old.local_addr().unwrap()));
    stranger.send_to(&rtp_packet(0, 0xE, 1, 1), port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while wrong_source0(&e, call.id) != 1 {
        assert!(Instant::now() < deadline, "the stranger's RTP is dropped");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(remote0(&e, call.id), Some(old.local_addr().unwrap()));
    to_leg0(&old);
    // The old peer's own media still goes through.
    let pkt = rtp_packet(0, 0xA, 1, 9);
    old.send_to(&pkt, port).unwrap();
    assert_eq!(recv(&c).expect("the old peer's RTP relayed").0, pkt);

    // The peer's check from its new address: answered, and it nominates.
    let r = ask(&new, port, &check(2, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, new.local_addr().unwrap());
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    assert!(matches!(
        ev,
        EngineEvent::IceNominated { call: id, leg: 0, rtcp: false, addr }
            if id == call.id && addr == new.local_addr().unwrap()
    ));
    to_leg0(&new);
    // Now only the nominated address sends into the leg.
    old.send_to(&rtp_packet(0, 0xA, 2, 2), port).unwrap();
    let pkt = rtp_packet(0, 0xA, 3, 3);
    new.send_to(&pkt, port).unwrap();
    assert_eq!(
        recv(&c).unwrap().0,
        pkt,
        "the first relayed is the new one's"
    );
    let s = stats_until(&e, |s| s.ice.nominations == 1);
    assert_eq!((s.ice.answered, s.ice.nominations), (1, 1));
    e.shutdown();
}

/// An ICE leg that fell back to address learning (its peer seemed not to do
/// ICE) goes back with `latch: Some(Nominated)`: what learning took is kept
/// until the peer nominates, a stranger is no longer learned, and a
/// nomination of the address nominated before the fallback moves the media
/// back (the leg forgot it).
#[test]
fn an_ice_leg_goes_back_from_learning_to_nominations() {
    use rtp_control::dataplane::{LatchMode, LegUpdate};
    let e = engine();
    let (a, sdp_addr, learned, stranger, c) = (sock(), sock(), sock(), sock(), sock());
    let call = e.create_call([ice_leg(), leg_to(&c)]).unwrap();
    let port = call.legs[0].local;
    let r = ask(&a, port, &check(1, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    // Fallback: the SDP address, learning.
    e.update_leg(
        call.id,
        0,
        LegUpdate {
            remote: Some(Some(sdp_addr.local_addr().unwrap())),
            latch: Some(LatchMode::default()),
            ..LegUpdate::default()
        },
    )
    .unwrap();
    let pkt = rtp_packet(0, 0x1, 1, 1);
    learned.send_to(&pkt, port).unwrap();
    assert_eq!(recv(&c).expect("learned").0, pkt);
    assert_eq!(remote0(&e, call.id), Some(learned.local_addr().unwrap()));
    // Back to nominations.
    e.update_leg(
        call.id,
        0,
        LegUpdate {
            latch: Some(LatchMode::Nominated),
            ..LegUpdate::default()
        },
    )
    .unwrap();
    assert_eq!(remote0(&e, call.id), Some(learned.local_addr().unwrap()));
    stranger.send_to(&rtp_packet(0, 0xE, 1, 1), port).unwrap();
    let pkt = rtp_packet(0, 0x1, 2, 2);
    learned.send_to(&pkt, port).unwrap();
    assert_eq!(recv(&c).unwrap().0, pkt, "the stranger's RTP was dropped");
    assert_eq!(remote0(&e, call.id), Some(learned.local_addr().unwrap()));
    // A nominates again, the same address as before: it is taken again.
    let r = ask(&a, port, &check(2, "EnGi:PeEr", LOCAL_PWD, true));
    assert_success(&r, LOCAL_PWD, a.local_addr().unwrap());
    let ev = wait_event(&e, |ev| matches!(ev, EngineEvent::IceNominated { .. }));
    assert!(
        matches!(ev, EngineEvent::IceNominated { addr, .. } if addr == a.local_addr().unwrap())
    );
    assert_eq!(remote0(&e, call.id), Some(a.local_addr().unwrap()));
    let pkt = rtp_packet(0, 0xC, 1, 3);
    c.send_to(&pkt, call.legs[1].local).unwrap();
    assert_eq!(recv(&a).expect("media to the nominated address").0, pkt);
    e.shutdown();
}
