//! A captured Chromium ClientHello (DTLS 1.3 + 1.2 offer, post-quantum key share,
//! two fragments in two datagrams) replayed into our server: it must answer with a
//! valid DTLS 1.2 server flight. (Live Chromium runs in CI through the gateway:
//! `tools/tests/webrtc_chromium.rs`, both DTLS roles, the cookie exchange included.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rtp_control::dtls::{Certificate, CipherSuite, DtlsConfig, DtlsEndpoint};

fn fixture() -> Vec<Vec<u8>> {
    let raw = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/chromium_client_hello.bin"
    ))
    .unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let n = u16::from_be_bytes([raw[i], raw[i + 1]]) as usize;
        out.push(raw[i + 2..i + 2 + n].to_vec());
        i += 2 + n;
    }
    out
}

fn u24(b: &[u8]) -> usize {
    ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize
}

/// Reassembles the plaintext handshake messages of a flight: seq -> (type, body).
fn messages(datagrams: &[Vec<u8>]) -> BTreeMap<u16, (u8, Vec<u8>)> {
    let mut parts: BTreeMap<u16, (u8, Vec<u8>)> = BTreeMap::new();
    for d in datagrams {
        let mut i = 0;
        while i + 13 <= d.len() {
            assert_eq!(&d[i + 1..i + 3], &[0xFE, 0xFD], "record version DTLS 1.2");
            let len = u16::from_be_bytes([d[i + 11], d[i + 12]]) as usize;
            assert_eq!(d[i], 22, "only handshake records in the first flight");
            assert_eq!(&d[i + 3..i + 5], &[0, 0], "epoch 0");
            let body = &d[i + 13..i + 13 + len];
            let mut j = 0;
            while j < body.len() {
                let (ty, total, seq, off, fl) = (
                    body[j],
                    u24(&body[j + 1..]),
                    u16::from_be_bytes([body[j + 4], body[j + 5]]),
                    u24(&body[j + 6..]),
                    u24(&body[j + 9..]),
                );
                let e = parts.entry(seq).or_insert_with(|| (ty, vec![0; total]));
                e.1[off..off + fl].copy_from_slice(&body[j + 12..j + 12 + fl]);
                j += 12 + fl;
            }
            i += 13 + len;
        }
        assert_eq!(i, d.len());
    }
    parts
}

fn server_flight(order: &[usize], cfg: DtlsConfig) -> Vec<Vec<u8>> {
    let dgrams = fixture();
    assert_eq!(dgrams.len(), 2);
    assert_eq!((dgrams[0].len(), dgrams[1].len()), (1200, 263));
    let cert = Arc::new(Certificate::generate().unwrap());
    let mut server = DtlsEndpoint::server(Arc::new(cfg), cert, None, Instant::now());
    for &i in order {
        server.handle_datagram(&dgrams[i], Instant::now());
    }
    if let Some(e) = server.poll_event() {
        panic!("server event {e:?}");
    }
    assert!(!server.is_closed());
    let mut out = Vec::new();
    while let Some(d) = server.poll_transmit() {
        out.push(d);
    }
    out
}

fn check_flight(flight: &[Vec<u8>], mtu: usize) {
    assert!(!flight.is_empty(), "no answer to the Chromium ClientHello");
    assert!(flight.iter().all(|d| d.len() <= mtu));
    let msgs = messages(flight);
    let types: Vec<u8> = msgs.values().map(|m| m.0).collect();
    assert_eq!(
        types,
        vec![2, 11, 12, 13, 14],
        "SH, Certificate, SKE, CertificateRequest, SHD"
    );
    assert_eq!(
        *msgs.keys().next().unwrap(),
        0,
        "ServerHello message_seq = ClientHello's"
    );
    let sh = &msgs[&0].1;
    assert_eq!(&sh[..2], &[0xFE, 0xFD], "ServerHello version DTLS 1.2");
    let sid_len = sh[34] as usize;
    let p = 35 + sid_len;
    let suite = u16::from_be_bytes([sh[p], sh[p + 1]]);
    let suite = CipherSuite::from_id(suite).expect("a suite we implement");
    assert!(suite.is_ecdsa());
    assert_eq!(suite, CipherSuite::EcdheEcdsaAes128GcmSha256);
    assert_eq!(sh[p + 2], 0, "null compression");
    let ext_len = u16::from_be_bytes([sh[p + 3], sh[p + 4]]) as usize;
    let mut exts = BTreeMap::new();
    let mut e = &sh[p + 5..p + 5 + ext_len];
    while !e.is_empty() {
        let ty = u16::from_be_bytes([e[0], e[1]]);
        let n = u16::from_be_bytes([e[2], e[3]]) as usize;
        exts.insert(ty, e[4..4 + n].to_vec());
        e = &e[4 + n..];
    }
    assert_eq!(
        exts.get(&14),
        Some(&vec![0, 2, 0, 1, 0]),
        "use_srtp: SRTP_AES128_CM_HMAC_SHA1_80, no MKI"
    );
    assert_eq!(exts.get(&23), Some(&vec![]), "extended_master_secret");
    assert_eq!(
        exts.get(&0xff01),
        Some(&vec![0]),
        "empty renegotiation_info"
    );
    assert!(
        !exts.contains_key(&43),
        "no supported_versions: this is DTLS 1.2"
    );
    // ServerKeyExchange: named curve x25519 (Chromium's first classical group we share).
    let ske = &msgs[&2].1;
    assert_eq!(&ske[..4], &[3, 0, 29, 32]);
    // CertificateRequest asks for ECDSA or RSA certificates.
    assert_eq!(&msgs[&3].1[..3], &[2, 64, 1]);
    assert!(msgs[&4].1.is_empty());
}

#[test]
fn chromium_client_hello_gets_a_dtls12_server_flight() {
    check_flight(&server_flight(&[0, 1], DtlsConfig::default()), 1200);
}

#[test]
fn chromium_client_hello_fragments_reversed() {
    check_flight(&server_flight(&[1, 0], DtlsConfig::default()), 1200);
}

#[test]
fn chromium_client_hello_duplicated_with_small_mtu() {
    let cfg = DtlsConfig {
        mtu: 400,
        ..DtlsConfig::default()
    };
    let flight = server_flight(&[1, 1, 0, 0], cfg);
    check_flight(&flight, 400);
    assert!(flight.len() >= 2);
}
