//! Stateless cookie exchange (`CookieKeys`): spoofed ClientHellos get a
//! HelloVerifyRequest and leave no state; a client that returns the cookie is
//! accepted and completes the handshake with a server endpoint created then.

mod dtls_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtls_support::certs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_control::dtls::{CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsEvent, DtlsKeys};

/// Counts live heap bytes of this thread (to show that `check` keeps nothing).
struct Counting;
thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
}
static TOTAL: AtomicIsize = AtomicIsize::new(0);

fn live() -> isize {
    LIVE.with(|l| l.get())
}

// SAFETY: forwards to the system allocator and only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let _ = LIVE.try_with(|c| c.set(c.get() + l.size() as isize));
        TOTAL.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let _ = LIVE.try_with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

/// A ClientHello datagram as our client sends it first.
fn client_hello() -> (DtlsEndpoint, Vec<u8>) {
    let (c, _) = certs();
    let mut ep = DtlsEndpoint::client(Arc::new(DtlsConfig::default()), c, None, Instant::now());
    let d = ep.poll_transmit().unwrap();
    (ep, d)
}

fn addr(rng: &mut StdRng) -> SocketAddr {
    SocketAddr::from((rng.gen::<[u8; 4]>(), rng.gen::<u16>()))
}

/// (record seq, message type, message_seq, cookie) of a HelloVerifyRequest.
fn parse_hvr(d: &[u8]) -> (u64, u8, u16, Vec<u8>) {
    assert_eq!(d[0], 22);
    assert_eq!(&d[1..3], &[0xFE, 0xFF], "HVR says DTLS 1.0");
    let seq = d[5..11].iter().fold(0u64, |a, &b| (a << 8) | b as u64);
    let hs = &d[13..];
    let body = &hs[12..];
    assert_eq!(&body[..2], &[0xFE, 0xFF]);
    let n = body[2] as usize;
    assert_eq!(body.len(), 3 + n);
    (
        seq,
        hs[0],
        u16::from_be_bytes([hs[4], hs[5]]),
        body[3..].to_vec(),
    )
}

#[test]
fn spoofed_hellos_get_hvr_and_leave_no_state() {
    let now = Instant::now();
    let keys = CookieKeys::new(now);
    let (_, ch) = client_hello();
    let mut rng = StdRng::seed_from_u64(1);
    let addrs: Vec<SocketAddr> = (0..10_000).map(|_| addr(&mut rng)).collect();
    let before = live();
    let mut responded = 0;
    for a in &addrs {
        match keys.check(*a, &ch) {
            CookieVerdict::Respond(hvr) => {
                let (seq, ty, mseq, cookie) = parse_hvr(&hvr);
                assert_eq!((seq, ty, mseq, cookie.len()), (0, 3, 0, 32));
                responded += 1;
            }
            v => panic!("{v:?}"),
        }
    }
    let after = live();
    assert_eq!(responded, 10_000);
    assert_eq!(after, before, "check kept {} bytes", after - before);
    assert!(TOTAL.load(Ordering::Relaxed) > 0);
}

#[test]
fn cookie_is_bound_to_address_and_rotates() {
    let t0 = Instant::now();
    let mut keys = CookieKeys::new(t0);
    let a: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    let b: SocketAddr = "192.0.2.1:5001".parse().unwrap();
    let (mut ep, ch) = client_hello();
    let CookieVerdict::Respond(hvr) = keys.check(a, &ch) else {
        panic!()
    };
    ep.handle_datagram(&hvr, t0);
    let ch2 = ep.poll_transmit().expect("ClientHello with cookie");
    assert_eq!(keys.check(a, &ch2), CookieVerdict::Accept);
    assert!(
        matches!(keys.check(b, &ch2), CookieVerdict::Respond(_)),
        "other port"
    );
    keys.rotate_if_due(t0 + Duration::from_secs(59));
    assert_eq!(keys.check(a, &ch2), CookieVerdict::Accept);
    keys.rotate_if_due(t0 + Duration::from_secs(60));
    assert_eq!(
        keys.check(a, &ch2),
        CookieVerdict::Accept,
        "previous secret still valid"
    );
    keys.rotate_if_due(t0 + Duration::from_secs(120));
    assert!(
        matches!(keys.check(a, &ch2), CookieVerdict::Respond(_)),
        "expired after two rotations"
    );
    // Not a ClientHello, or garbage: dropped.
    assert_eq!(keys.check(a, &hvr), CookieVerdict::Drop);
    assert_eq!(keys.check(a, &[22, 0xFE]), CookieVerdict::Drop);
    assert_eq!(keys.check(a, &[]), CookieVerdict::Drop);
    let mut app = ch.clone();
    app[0] = 23;
    assert_eq!(keys.check(a, &app), CookieVerdict::Drop);
}

#[test]
fn handshake_through_the_cookie_front_door() {
    let t0 = Instant::now();
    let keys = CookieKeys::new(t0);
    let (cc, sc) = certs();
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let mut client = DtlsEndpoint::client(
        Arc::new(DtlsConfig::default()),
        cc.clone(),
        Some(sc.fingerprint()),
        t0,
    );
    let ch1 = client.poll_transmit().unwrap();
    let CookieVerdict::Respond(hvr) = keys.check(peer, &ch1) else {
        panic!()
    };
    client.handle_datagram(&hvr, t0);
    let ch2 = client.poll_transmit().unwrap();
    // The second ClientHello has message_seq 1.
    assert_eq!(u16::from_be_bytes([ch2[13 + 4], ch2[13 + 5]]), 1);
    assert_eq!(keys.check(peer, &ch2), CookieVerdict::Accept);
    let mut server = DtlsEndpoint::server(
        Arc::new(DtlsConfig::default()),
        sc,
        Some(cc.fingerprint()),
        t0,
    );
    server.handle_datagram(&ch2, t0);
    let flight = server.poll_transmit().unwrap();
    // ServerHello with message_seq 1 (the HVR used 0).
    assert_eq!(flight[13], 2);
    assert_eq!(u16::from_be_bytes([flight[13 + 4], flight[13 + 5]]), 1);
    let (c, s) = finish(&mut client, &mut server, vec![flight], t0);
    assert_eq!(c.keying_material, s.keying_material);
}

/// Finishes a handshake by hand (no loss); panics unless both sides connect.
fn finish(
    client: &mut DtlsEndpoint,
    server: &mut DtlsEndpoint,
    mut to_client: Vec<Vec<u8>>,
    now: Instant,
) -> (Box<DtlsKeys>, Box<DtlsKeys>) {
    let mut to_server: Vec<Vec<u8>> = Vec::new();
    let mut connected = (None, None);
    for _ in 0..10 {
        while let Some(d) = server.poll_transmit() {
            to_client.push(d);
        }
        for d in to_client.drain(..) {
            client.handle_datagram(&d, now);
        }
        while let Some(d) = client.poll_transmit() {
            to_server.push(d);
        }
        for d in to_server.drain(..) {
            server.handle_datagram(&d, now);
        }
        while let Some(e) = client.poll_event() {
            match e {
                DtlsEvent::Connected(k) => connected.0 = Some(k),
                e => panic!("client: {e:?}"),
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                DtlsEvent::Connected(k) => connected.1 = Some(k),
                e => panic!("server: {e:?}"),
            }
        }
    }
    let (Some(c), Some(s)) = connected else {
        panic!("not connected: {connected:?}")
    };
    (c, s)
}

fn message_seq(datagram: &[u8]) -> u16 {
    u16::from_be_bytes([datagram[13 + 4], datagram[13 + 5]])
}

/// A ClientHello in two datagrams (as Chromium's with post-quantum key shares)
/// through the cookie exchange, with late fragments of the cookie-less first
/// hello arriving after the server endpoint was created: they are old and must
/// not wipe the reassembly of the second hello.
#[test]
fn stale_fragments_of_the_first_hello_leave_the_second_alone() {
    let t0 = Instant::now();
    let keys = CookieKeys::new(t0);
    let (cc, sc) = certs();
    let peer: SocketAddr = "198.51.100.7:40000".parse().unwrap();
    let small = DtlsConfig {
        mtu: 120,
        ..DtlsConfig::default()
    };
    let mut client = DtlsEndpoint::client(Arc::new(small), cc.clone(), Some(sc.fingerprint()), t0);
    let first: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    assert!(first.len() >= 2, "the ClientHello is fragmented");
    let CookieVerdict::Respond(hvr) = keys.check(peer, &first[0]) else {
        panic!()
    };
    client.handle_datagram(&hvr, t0);
    let second: Vec<Vec<u8>> = std::iter::from_fn(|| client.poll_transmit()).collect();
    assert!(second.len() >= 2);
    assert_eq!((message_seq(&first[1]), message_seq(&second[0])), (0, 1));
    assert_eq!(keys.check(peer, &second[0]), CookieVerdict::Accept);
    let mut server = DtlsEndpoint::server(
        Arc::new(DtlsConfig::default()),
        sc,
        Some(cc.fingerprint()),
        t0,
    );
    server.handle_datagram(&second[0], t0);
    // Reordered: the rest of the first hello arrives now.
    for d in first.iter().skip(1).chain(&first[..1]) {
        server.handle_datagram(d, t0);
    }
    assert!(
        server.poll_transmit().is_none(),
        "the cookie-less hello is old"
    );
    for d in &second[1..] {
        server.handle_datagram(d, t0);
    }
    let flight = server
        .poll_transmit()
        .expect("ServerHello right after the second hello, without a retransmission");
    assert_eq!((flight[13], message_seq(&flight)), (2, 1));
    let (c, s) = finish(&mut client, &mut server, vec![flight], t0);
    assert_eq!(c.keying_material, s.keying_material);
}
