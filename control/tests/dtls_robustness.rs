//! Seeded random and mutated datagrams fed into endpoints at every stage of the
//! handshake: no panic, bounded buffers and queues, datagrams within the MTU.

mod dtls_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use dtls_support::{certs, Netem, Pair};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_control::dtls::{DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent};

fn mutate(rng: &mut StdRng, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut d = if pool.is_empty() || rng.gen_bool(0.1) {
        (0..rng.gen_range(0..300)).map(|_| rng.gen()).collect()
    } else {
        pool[rng.gen_range(0..pool.len())].clone()
    };
    match rng.gen_range(0..8) {
        0 => {
            // Flip a few bits.
            for _ in 0..rng.gen_range(1..8) {
                if !d.is_empty() {
                    let i = rng.gen_range(0..d.len());
                    d[i] ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => {
            let n = rng.gen_range(0..=d.len());
            d.truncate(n);
        }
        2 => {
            // Splice two datagrams.
            if let Some(o) = pool.get(rng.gen_range(0..pool.len().max(1))) {
                let cut = rng.gen_range(0..=d.len());
                d.truncate(cut);
                let from = rng.gen_range(0..=o.len());
                d.extend_from_slice(&o[from..]);
            }
        }
        3 => {
            // Corrupt a handshake header field (length, seq, offset) inside the first record.
            if d.len() > 25 {
                let i = 13 + rng.gen_range(0..12);
                d[i] = rng.gen();
            }
        }
        4 => {
            // Bump the epoch or sequence number.
            if d.len() > 13 {
                d[3 + rng.gen_range(0..8)] = rng.gen();
            }
        }
        5 => {
            // A well-formed record header around random bytes.
            let n = rng.gen_range(0..200usize);
            let mut r = vec![rng.gen_range(20..24), 0xFE, 0xFD, 0, rng.gen_range(0..2)];
            r.extend_from_slice(&rng.gen::<[u8; 6]>());
            r.extend_from_slice(&(n as u16).to_be_bytes());
            r.extend((0..n).map(|_| rng.gen::<u8>()));
            d = r;
        }
        6 => {
            // Duplicate as is (replay).
        }
        _ => {
            // Handshake record with a huge declared message length.
            let mut r = vec![22, 0xFE, 0xFD, 0, 0, 0, 0, 0, 0, 0, rng.gen(), 0, 24];
            r.extend_from_slice(&[
                rng.gen_range(0..21),
                0xFF,
                0xFF,
                0xFF,
                0,
                rng.gen_range(0..5),
            ]);
            r.extend_from_slice(&[0, 0, 0, 0, 0, 12]);
            r.extend((0..12).map(|_| rng.gen::<u8>()));
            d = r;
        }
    }
    d
}

fn check_bounds(ep: &mut DtlsEndpoint, cfg: &DtlsConfig) {
    assert!(ep.buffered_handshake_bytes() <= cfg.max_buffered_fragments);
    assert!(ep.queued_datagrams() <= 128);
    while let Some(d) = ep.poll_transmit() {
        assert!(d.len() <= cfg.mtu, "{} > {}", d.len(), cfg.mtu);
    }
    while ep.poll_event().is_some() {}
}

#[test]
fn mutated_datagrams_at_every_stage() {
    let (cc, sc) = certs();
    let cfg = DtlsConfig {
        mtu: 500,
        max_buffered_fragments: 8 * 1024,
        ..DtlsConfig::default()
    };
    let mut rng = StdRng::seed_from_u64(0xD715);
    // DTLS_ROBUSTNESS_ROUNDS=5000 for a longer soak.
    let rounds: u64 = std::env::var("DTLS_ROBUSTNESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120);
    let mut injected = 0;
    for round in 0..rounds {
        let mut p = Pair::with_certs(
            round,
            Netem::perfect(),
            cfg.clone(),
            cfg.clone(),
            cc.clone(),
            sc.clone(),
            true,
        );
        // Drive a random number of steps into the handshake (0 = fresh endpoints).
        let steps = rng.gen_range(0..12);
        for _ in 0..steps {
            p.step();
        }
        let pool: Vec<Vec<u8>> = p.c.sent.iter().chain(p.s.sent.iter()).cloned().collect();
        for _ in 0..60 {
            let d = mutate(&mut rng, &pool);
            let now = p.now;
            if rng.gen_bool(0.5) {
                p.server.handle_datagram(&d, now);
            } else {
                p.client.handle_datagram(&d, now);
            }
            injected += 1;
            check_bounds(&mut p.client, &cfg);
            check_bounds(&mut p.server, &cfg);
        }
        // Time still works afterwards.
        let later = p.now + Duration::from_secs(40);
        p.client.handle_timeout(later);
        p.server.handle_timeout(later);
        check_bounds(&mut p.client, &cfg);
        check_bounds(&mut p.server, &cfg);
    }
    assert_eq!(injected, rounds * 60);
}

#[test]
fn pure_garbage_into_fresh_endpoints() {
    let (cc, _) = certs();
    let cfg = std::sync::Arc::new(DtlsConfig::default());
    let mut rng = StdRng::seed_from_u64(7);
    let now = std::time::Instant::now();
    let mut server = DtlsEndpoint::server(cfg.clone(), cc.clone(), None, now);
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, now);
    for _ in 0..20_000 {
        let n = rng.gen_range(0..1500);
        let mut d: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
        if rng.gen_bool(0.5) && d.len() > 13 {
            // Make the record header plausible so the parsers go deeper.
            d[0] = 22;
            d[1] = 0xFE;
            d[2] = 0xFD;
            d[3] = 0;
            d[4] = 0;
            let l = (d.len() - 13) as u16;
            d[11..13].copy_from_slice(&l.to_be_bytes());
        }
        server.handle_datagram(&d, now);
        client.handle_datagram(&d, now);
        check_bounds(&mut server, &cfg);
        check_bounds(&mut client, &cfg);
    }
}

/// Everything `from` wants sent, delivered to `to`; returns the datagrams.
fn pump(from: &mut DtlsEndpoint, to: &mut DtlsEndpoint, now: Instant) -> Vec<Vec<u8>> {
    let ds: Vec<Vec<u8>> = std::iter::from_fn(|| from.poll_transmit()).collect();
    for d in &ds {
        to.handle_datagram(d, now);
    }
    ds
}

/// The records of a datagram.
fn records(mut d: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    while d.len() >= 13 {
        let n = (13 + u16::from_be_bytes([d[11], d[12]]) as usize).min(d.len());
        v.push(&d[..n]);
        d = &d[n..];
    }
    v
}

/// The first record of `d` with a new record sequence number (what a spoofer
/// sends: it passes the epoch-0 replay window).
fn first_record_with_seq(d: &[u8], seq: u64) -> Vec<u8> {
    let len = u16::from_be_bytes([d[11], d[12]]) as usize;
    let mut r = d[..13 + len].to_vec();
    r[5..11].copy_from_slice(&seq.to_be_bytes()[2..]);
    r
}

#[test]
fn records_from_anyone_buy_a_bounded_number_of_flights() {
    let (cc, sc) = certs();
    let cfg = Arc::new(DtlsConfig::default());
    let t0 = Instant::now();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, t0);
    let mut server = DtlsEndpoint::server(cfg.clone(), sc, None, t0);
    let hello = pump(&mut client, &mut server, t0);
    assert!(
        !pump(&mut server, &mut client, t0).is_empty(),
        "server flight"
    );
    // Before connected: copies of the ClientHello with fresh record numbers,
    // one every 10 ms for 3 s, resend the flight at most twice per second.
    for i in 0..300u64 {
        let now = t0 + Duration::from_millis(10 * i);
        server.handle_datagram(&first_record_with_seq(&hello[0], 100 + i), now);
    }
    let resent = server.retransmissions();
    assert!((1..=6).contains(&resent), "{resent} resends");
    while server.poll_transmit().is_some() {}
    // The client's flight connects the server; its final flight is lost.
    let t1 = t0 + Duration::from_secs(3);
    let flight = pump(&mut client, &mut server, t1);
    assert!(server.is_connected());
    while server.poll_transmit().is_some() {}
    // Connected: an epoch-0 record of the client's flight (fresh numbers) is
    // no reason to resend, however often.
    let cke = flight
        .iter()
        .flat_map(|d| records(d))
        .find(|r| r[0] == 22 && r[13] == 16)
        .expect("ClientKeyExchange");
    for i in 0..100u64 {
        let now = t1 + Duration::from_secs(i);
        server.handle_datagram(&first_record_with_seq(cke, 1000 + i), now);
    }
    assert!(
        server.poll_transmit().is_none(),
        "spoofed records are ignored"
    );
    // The client's real retransmission (with its authenticated Finished) gets
    // the final flight again.
    let t2 = t1 + Duration::from_secs(1);
    client.handle_timeout(t2);
    pump(&mut client, &mut server, t2);
    assert!(!pump(&mut server, &mut client, t2).is_empty());
    assert!(client.is_connected());
}

#[test]
fn an_out_of_state_message_fails_with_unexpected_message_and_frees_the_state() {
    let (cc, sc) = certs();
    let cfg = Arc::new(DtlsConfig::default());
    let now = Instant::now();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, now);
    let mut server = DtlsEndpoint::server(cfg.clone(), sc.clone(), None, now);
    pump(&mut client, &mut server, now);
    let server_hello = server.poll_transmit().expect("ServerHello");
    assert_eq!(server_hello[13], 2);
    // A ServerHello sent to a server.
    let mut other = DtlsEndpoint::server(cfg, sc, None, now);
    other.handle_datagram(&server_hello, now);
    let alert = other.poll_transmit().expect("alert");
    assert_eq!(
        (alert[0], &alert[13..]),
        (21, &[2u8, 10][..]),
        "fatal unexpected_message"
    );
    assert!(matches!(
        other.poll_event(),
        Some(DtlsEvent::Failed(DtlsError::UnexpectedMessage(_)))
    ));
    assert!(other.is_closed());
    assert_eq!(other.poll_timeout(), None);
    assert_eq!(other.buffered_handshake_bytes(), 0);
    // Anything after is ignored.
    other.handle_datagram(&server_hello, now);
    assert!(other.poll_transmit().is_none() && other.poll_event().is_none());
}

#[test]
fn a_server_hello_extension_we_did_not_offer_gets_unsupported_extension() {
    let (cc, sc) = certs();
    let cfg = Arc::new(DtlsConfig::default());
    let now = Instant::now();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, now);
    let mut server = DtlsEndpoint::server(cfg, sc, None, now);
    pump(&mut client, &mut server, now);
    let mut flight = server.poll_transmit().expect("ServerHello");
    assert_eq!(flight[13], 2);
    // Rename the (empty) extended_master_secret extension of the ServerHello
    // to a type the client never offered (extensions start 40 bytes into
    // the body with an empty session id).
    let exts = 13 + 12 + 40;
    let at = flight[exts..]
        .windows(4)
        .position(|w| w == [0, 23, 0, 0])
        .expect("extended_master_secret")
        + exts;
    flight[at..at + 2].copy_from_slice(&0x1234u16.to_be_bytes());
    client.handle_datagram(&flight, now);
    let alert = client.poll_transmit().expect("alert");
    assert_eq!((alert[0], &alert[13..]), (21, &[2u8, 110][..]));
    match client.poll_event() {
        Some(DtlsEvent::Failed(DtlsError::HandshakeFailure(m))) => assert!(m.contains("0x1234")),
        e => panic!("{e:?}"),
    }
    assert!(client.is_closed());
}
