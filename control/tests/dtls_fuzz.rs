//! The DTLS fuzz targets' entry points on stable, in every `cargo test`: the
//! checked-in seed corpora (`fuzz/corpus/dtls_*`, when present) and seeded
//! random and mutated inputs go through the record walker, every handshake
//! parser, the cookie check and endpoints at each stage of a handshake. No
//! panic, and the state an endpoint keeps stays within its limits. (The fuzz
//! crate itself is outside the workspace and needs nightly.)

mod dtls_support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dtls_support::certs;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rtp_control::dtls::{
    fuzz_parse_handshake, fuzz_parse_records, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint,
};

/// The most datagrams an endpoint queues (its `MAX_QUEUED_DATAGRAMS`).
const MAX_QUEUED: usize = 128;

/// The files of `fuzz/corpus/<target>` (none when the folder is absent).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// A random change to `d` (bit flips, truncation, a splice, a new length
/// field, or fresh bytes).
fn mutate(rng: &mut StdRng, d: &[u8], pool: &[Vec<u8>]) -> Vec<u8> {
    let mut d = d.to_vec();
    match rng.gen_range(0..5) {
        0 => {
            for _ in 0..rng.gen_range(1..8) {
                if !d.is_empty() {
                    let i = rng.gen_range(0..d.len());
                    d[i] ^= 1 << rng.gen_range(0..8);
                }
            }
        }
        1 => d.truncate(rng.gen_range(0..=d.len())),
        2 => {
            if let Some(o) = pool.get(rng.gen_range(0..pool.len().max(1))) {
                let cut = rng.gen_range(0..=d.len());
                d.truncate(cut);
                d.extend_from_slice(&o[rng.gen_range(0..=o.len())..]);
            }
        }
        3 => {
            // A record or handshake length field.
            if d.len() > 25 {
                let i = [11, 12, 14, 15, 16, 22, 23, 24][rng.gen_range(0..8)];
                d[i] = rng.gen();
            }
        }
        _ => d = (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect(),
    }
    d
}

fn check_bounds(ep: &mut DtlsEndpoint, cfg: &DtlsConfig) {
    assert!(ep.buffered_handshake_bytes() <= cfg.max_buffered_fragments);
    assert!(ep.queued_datagrams() <= MAX_QUEUED);
    while let Some(d) = ep.poll_transmit() {
        assert!(d.len() <= cfg.mtu, "{} > {}", d.len(), cfg.mtu);
    }
    while ep.poll_event().is_some() {}
}

/// What `fuzz/fuzz_targets/dtls_record.rs` does with one input.
fn record_target(data: &[u8], cookies: &CookieKeys, cfg: &Arc<DtlsConfig>) {
    let (_, sc) = certs();
    assert!(fuzz_parse_records(data) <= data.len() / 13);
    if let Some((&ty, body)) = data.split_first() {
        fuzz_parse_handshake(ty, body);
    }
    let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
    if let CookieVerdict::Respond(hvr) = cookies.check(peer, data) {
        assert!(hvr.len() < 100, "a HelloVerifyRequest is small");
    }
    let now = Instant::now();
    let mut server = DtlsEndpoint::server(cfg.clone(), sc, None, now);
    server.handle_datagram(data, now);
    check_bounds(&mut server, cfg);
}

/// What `fuzz/fuzz_targets/dtls_handshake.rs` does with one input: the first
/// byte picks the stage, the rest is datagrams with 2-byte length prefixes.
fn handshake_target(data: &[u8], cfg: &Arc<DtlsConfig>) {
    let Some((&stage, mut rest)) = data.split_first() else {
        return;
    };
    let (cc, sc) = certs();
    let now = Instant::now();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, now);
    let mut server = DtlsEndpoint::server(cfg.clone(), sc, None, now);
    let pump = |from: &mut DtlsEndpoint, to: &mut DtlsEndpoint, t: Instant| {
        while let Some(d) = from.poll_transmit() {
            assert!(d.len() <= cfg.mtu);
            to.handle_datagram(&d, t);
        }
    };
    for _ in 0..(stage % 4) {
        pump(&mut client, &mut server, now);
        pump(&mut server, &mut client, now);
    }
    let mut t = now;
    while rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let (d, tail) = rest[2..].split_at(n);
        rest = tail;
        if n.is_multiple_of(2) {
            server.handle_datagram(d, t);
        } else {
            client.handle_datagram(d, t);
        }
        t += Duration::from_millis(300);
        client.handle_timeout(t);
        server.handle_timeout(t);
        assert!(client.queued_datagrams() <= MAX_QUEUED && server.queued_datagrams() <= MAX_QUEUED);
        pump(&mut client, &mut server, t);
        pump(&mut server, &mut client, t);
        for ep in [&mut client, &mut server] {
            assert!(ep.buffered_handshake_bytes() <= cfg.max_buffered_fragments);
            while ep.poll_event().is_some() {}
        }
    }
    check_bounds(&mut client, cfg);
    check_bounds(&mut server, cfg);
}

/// Joins datagrams into a `dtls_handshake` input.
fn framed(stage: u8, datagrams: &[Vec<u8>]) -> Vec<u8> {
    let mut v = vec![stage];
    for d in datagrams {
        v.extend_from_slice(&(d.len().min(u16::MAX as usize) as u16).to_be_bytes());
        v.extend_from_slice(d);
    }
    v
}

/// Splits a `dtls_handshake` input back into its datagrams.
fn unframed(data: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = data.get(1..).unwrap_or_default();
    while rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        out.push(rest[2..2 + n].to_vec());
        rest = &rest[2 + n..];
    }
    out
}

#[test]
fn dtls_record_corpus_and_mutations() {
    let cfg = Arc::new(DtlsConfig::default());
    let cookies = CookieKeys::new(Instant::now());
    let mut pool = corpus("dtls_record");
    for d in &pool {
        record_target(d, &cookies, &cfg);
    }
    // Our own first flights as seeds too, so the mutations start from real
    // records even without a corpus.
    let (cc, _) = certs();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, Instant::now());
    pool.extend(std::iter::from_fn(|| client.poll_transmit()));
    let mut rng = StdRng::seed_from_u64(0xD71C);
    for _ in 0..1500 {
        let base = pool[rng.gen_range(0..pool.len())].clone();
        record_target(&mutate(&mut rng, &base, &pool), &cookies, &cfg);
    }
}

#[test]
fn dtls_handshake_corpus_and_mutations() {
    let cfg = Arc::new(DtlsConfig {
        mtu: 400,
        ..DtlsConfig::default()
    });
    let seeds = corpus("dtls_handshake");
    for d in &seeds {
        handshake_target(d, &cfg);
    }
    let mut pool: Vec<Vec<u8>> = seeds.iter().flat_map(|d| unframed(d)).collect();
    let (cc, _) = certs();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc, None, Instant::now());
    pool.extend(std::iter::from_fn(|| client.poll_transmit()));
    let mut rng = StdRng::seed_from_u64(0xD71D);
    for _ in 0..60 {
        let datagrams: Vec<Vec<u8>> = (0..rng.gen_range(1..6))
            .map(|_| {
                let base = pool[rng.gen_range(0..pool.len())].clone();
                mutate(&mut rng, &base, &pool)
            })
            .collect();
        handshake_target(&framed(rng.gen(), &datagrams), &cfg);
    }
}
