//! Our DTLS client against our DTLS server over a deterministic simulated network.

mod dtls_support;

use std::sync::Arc;
use std::time::Duration;

use dtls_support::{certs, Netem, Pair};
use rtp_control::dtls::{
    Certificate, CipherSuite, DtlsConfig, DtlsEndpoint, DtlsError, DtlsEvent, Fingerprint,
    NamedGroup, Role,
};
use rtp_core::srtp::SrtpProfile;

fn cfg() -> DtlsConfig {
    DtlsConfig::default()
}

#[test]
fn clean_handshake_agrees_on_keys() {
    let mut p = Pair::new(1, Netem::perfect(), cfg(), cfg());
    p.run(Duration::from_secs(5));
    let (c, s) = p.keys();
    assert_eq!(c.role, Role::Client);
    assert_eq!(s.role, Role::Server);
    assert_eq!(c.keying_material, s.keying_material);
    assert_eq!(c.keying_material.len(), 60);
    assert_eq!(c.cipher_suite, CipherSuite::EcdheEcdsaAes128GcmSha256);
    assert_eq!(c.group, NamedGroup::X25519);
    assert_eq!(c.srtp_profile, SrtpProfile::AesCm128HmacSha1_80);
    assert!(c.extended_master_secret && s.extended_master_secret);
    assert_eq!(
        c.export("EXPERIMENTAL test", 20),
        s.export("EXPERIMENTAL test", 20)
    );
    assert!(!format!("{c:?}").contains(&format!("{:?}", &c.keying_material[..4])));
    // Each side reports the other's fingerprint.
    assert_eq!(
        c.peer_fingerprint,
        Fingerprint::of_der(
            rtp_control::dtls::FingerprintAlgorithm::Sha256,
            &c.peer_certificate
        )
    );
    let (c_out, c_in) = c.srtp_configs().unwrap();
    let (s_out, s_in) = s.srtp_configs().unwrap();
    assert_eq!(format!("{c_out:?}"), format!("{s_in:?}"));
    assert_eq!(format!("{c_in:?}"), format!("{s_out:?}"));
    // One round trip for the cookie-less exchange: 2 flights each way, no retransmission.
    assert_eq!(p.client.retransmissions(), 0);
    assert_eq!(p.server.retransmissions(), 0);
    assert!(p.client.is_connected() && p.server.is_connected());
    assert!(p.c.max_datagram <= 1200 && p.s.max_datagram <= 1200);
}

#[test]
fn application_data_and_close_notify() {
    let mut p = Pair::new(2, Netem::perfect(), cfg(), cfg());
    p.run(Duration::from_secs(5));
    p.keys();
    p.client.send_application_data(b"ping").unwrap();
    p.server.send_application_data(b"pong").unwrap();
    for _ in 0..10 {
        p.step();
    }
    assert_eq!(p.s.app_data, vec![b"ping".to_vec()]);
    assert_eq!(p.c.app_data, vec![b"pong".to_vec()]);
    assert_eq!(
        p.client.send_application_data(&[0; 1200]),
        Err(DtlsError::TooLarge)
    );
    p.client.close();
    assert!(p.client.is_closed());
    for _ in 0..10 {
        p.step();
    }
    assert!(p.c.closed, "client reports Closed");
    assert!(p.s.closed, "server got close_notify");
    assert!(p.server.is_closed());
    assert_eq!(p.server.send_application_data(b"x"), Err(DtlsError::Closed));
}

#[test]
fn every_suite_profile_group() {
    let (cc, sc) = certs();
    let mut n = 0;
    for suite in CipherSuite::ALL.into_iter().filter(|s| s.is_ecdsa()) {
        for profile in [
            SrtpProfile::AesCm128HmacSha1_80,
            SrtpProfile::AesCm128HmacSha1_32,
            SrtpProfile::AeadAes128Gcm,
            SrtpProfile::AeadAes256Gcm,
        ] {
            for group in [
                NamedGroup::X25519,
                NamedGroup::Secp256r1,
                NamedGroup::Secp384r1,
            ] {
                let ccfg = DtlsConfig {
                    cipher_suites: vec![suite],
                    srtp_profiles: vec![profile],
                    groups: vec![group],
                    ..cfg()
                };
                let mut p = Pair::with_certs(
                    n,
                    Netem::perfect(),
                    ccfg,
                    cfg(),
                    cc.clone(),
                    sc.clone(),
                    true,
                );
                p.run(Duration::from_secs(5));
                let (c, s) = p.keys();
                assert_eq!(
                    (c.cipher_suite, c.srtp_profile, c.group),
                    (suite, profile, group)
                );
                assert_eq!(
                    (s.cipher_suite, s.srtp_profile, s.group),
                    (suite, profile, group)
                );
                assert_eq!(c.keying_material, s.keying_material);
                assert_eq!(
                    c.keying_material.len(),
                    2 * (profile.key_len() + profile.salt_len())
                );
                c.srtp_configs().unwrap();
                n += 1;
            }
        }
    }
    assert_eq!(n, 36);
}

#[test]
fn server_preference_wins() {
    let scfg = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::AeadAes256Gcm, SrtpProfile::AesCm128HmacSha1_80],
        cipher_suites: vec![
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
            CipherSuite::EcdheEcdsaAes128GcmSha256,
        ],
        groups: vec![NamedGroup::Secp256r1, NamedGroup::X25519],
        ..cfg()
    };
    let mut p = Pair::new(3, Netem::perfect(), cfg(), scfg);
    p.run(Duration::from_secs(5));
    let (c, _) = p.keys();
    assert_eq!(c.srtp_profile, SrtpProfile::AeadAes256Gcm);
    assert_eq!(
        c.cipher_suite,
        CipherSuite::EcdheEcdsaChacha20Poly1305Sha256
    );
    assert_eq!(c.group, NamedGroup::Secp256r1);
    assert_eq!(c.keying_material.len(), 88);
}

#[test]
fn lossy_reordering_duplicating_network() {
    let ccfg = DtlsConfig {
        max_timeout: Duration::from_secs(4),
        handshake_timeout: Duration::from_secs(60),
        ..cfg()
    };
    let mut retrans = 0;
    for seed in 0..30 {
        let mut p = Pair::new(100 + seed, Netem::hostile(), ccfg.clone(), ccfg.clone());
        p.run(Duration::from_secs(70));
        let (c, s) = p.keys();
        assert_eq!(c.keying_material, s.keying_material, "seed {seed}");
        retrans += p.client.retransmissions() + p.server.retransmissions();
    }
    assert!(
        retrans > 30,
        "the loss must have forced retransmissions ({retrans})"
    );
}

#[test]
fn lossy_with_small_mtu_and_defaults() {
    // Default timers (1 s doubling to 16 s, 30 s budget), 30% loss, MTU 300.
    let c = DtlsConfig { mtu: 300, ..cfg() };
    let mut ok = 0;
    for seed in 0..20 {
        let mut p = Pair::new(500 + seed, Netem::hostile(), c.clone(), c.clone());
        p.run(Duration::from_secs(40));
        assert!(p.c.max_datagram <= 300 && p.s.max_datagram <= 300);
        match (&p.c.connected, &p.s.connected) {
            (Some(a), Some(b)) => {
                assert_eq!(a.1.keying_material, b.1.keying_material);
                ok += 1;
            }
            _ => {
                // Allowed only as a clean timeout within the budget.
                for l in [&p.c, &p.s] {
                    if let Some((t, e)) = &l.failed {
                        assert_eq!(*e, DtlsError::Timeout);
                        assert!(*t <= Duration::from_secs(31));
                    }
                }
            }
        }
    }
    eprintln!("{ok}/20 handshakes completed within the default 30 s budget");
    assert!(ok >= 17, "only {ok}/20 handshakes completed");
}

/// Parses (msg_type, message_seq, offset, frag_len) of every plaintext handshake
/// fragment in a datagram.
fn fragments(d: &[u8]) -> Vec<(u8, u16, usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i + 13 <= d.len() {
        let len = u16::from_be_bytes([d[i + 11], d[i + 12]]) as usize;
        let epoch = u16::from_be_bytes([d[i + 3], d[i + 4]]);
        let body = &d[i + 13..(i + 13 + len).min(d.len())];
        if d[i] == 22 && epoch == 0 {
            let mut j = 0;
            while j + 12 <= body.len() {
                let u24 =
                    |b: &[u8]| ((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize;
                let fl = u24(&body[j + 9..]);
                out.push((
                    body[j],
                    u16::from_be_bytes([body[j + 4], body[j + 5]]),
                    u24(&body[j + 6..]),
                    fl,
                ));
                j += 12 + fl;
            }
        }
        i += 13 + len;
    }
    out
}

#[test]
fn small_mtu_fragments_both_ways() {
    let c = DtlsConfig { mtu: 300, ..cfg() };
    let mut p = Pair::new(4, Netem::perfect(), c.clone(), c);
    p.run(Duration::from_secs(5));
    let (a, b) = p.keys();
    assert_eq!(a.keying_material, b.keying_material);
    assert!(p.c.max_datagram <= 300 && p.s.max_datagram <= 300);
    // Certificates (~350 bytes) cannot fit: both sides sent fragments at offset > 0.
    for log in [&p.c, &p.s] {
        let frags: Vec<_> = log.sent.iter().flat_map(|d| fragments(d)).collect();
        assert!(frags.iter().any(|f| f.0 == 11 && f.2 > 0), "{frags:?}");
    }
    // And with a tiny MTU.
    let c = DtlsConfig { mtu: 100, ..cfg() };
    let mut p = Pair::new(5, Netem::perfect(), c.clone(), c);
    p.run(Duration::from_secs(5));
    p.keys();
    assert!(p.c.max_datagram <= 100 && p.s.max_datagram <= 100);
}

#[test]
fn several_records_share_a_datagram() {
    let mut p = Pair::new(6, Netem::perfect(), cfg(), cfg());
    p.run(Duration::from_secs(5));
    p.keys();
    // The server's first flight (ServerHello .. ServerHelloDone) is one datagram.
    let f = fragments(&p.s.sent[0]);
    let types: Vec<u8> = f.iter().map(|x| x.0).collect();
    assert_eq!(types, vec![2, 11, 12, 13, 14]);
}

#[test]
fn peer_vanishes_client_times_out() {
    let mut p = Pair::new(7, Netem::perfect(), cfg(), cfg());
    p.filter = Some(Box::new(|_, _, _| true)); // nothing arrives
    p.run(Duration::from_secs(60));
    let (t, e) = p.c.failed.as_ref().expect("client failed");
    assert_eq!(*e, DtlsError::Timeout);
    assert!(
        *t >= Duration::from_secs(30) && *t <= Duration::from_millis(30_100),
        "{t:?}"
    );
    assert!(p.client.is_closed());
    assert!(p.client.poll_timeout().is_none());
    // 1 + retransmissions at 1, 3, 7, 15 (and 31 is past the deadline).
    assert_eq!(p.c.sent.len(), 5);
    assert!(p.c.connected.is_none());
    // The server, which never heard anything, times out too.
    assert_eq!(
        p.s.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::Timeout)
    );
}

#[test]
fn peer_vanishes_mid_handshake() {
    let mut p = Pair::new(8, Netem::perfect(), cfg(), cfg());
    // Only the first flight of each side gets through: the server "disappears"
    // after its first flight.
    p.filter = Some(Box::new(|_, idx, _| idx > 0));
    p.run(Duration::from_secs(60));
    assert_eq!(
        p.c.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::Timeout)
    );
    assert!(p.c.failed.as_ref().unwrap().0 <= Duration::from_millis(30_100));
    assert!(p.client.is_closed());
}

#[test]
fn fingerprint_mismatch_fails_without_connected() {
    let (cc, sc) = certs();
    let other = Arc::new(Certificate::generate().unwrap());
    let start = std::time::Instant::now();
    let mut p = Pair::with_certs(
        9,
        Netem::perfect(),
        cfg(),
        cfg(),
        cc.clone(),
        sc.clone(),
        false,
    );
    p.client = DtlsEndpoint::client(
        Arc::new(cfg()),
        cc.clone(),
        Some(other.fingerprint()),
        start,
    );
    p.run(Duration::from_secs(5));
    match &p.c.failed {
        Some((_, DtlsError::FingerprintMismatch { expected, got })) => {
            assert_eq!(*expected, other.fingerprint());
            assert_eq!(*got, sc.fingerprint());
        }
        x => panic!("{x:?}"),
    }
    assert!(p.c.connected.is_none() && p.s.connected.is_none());
    // The server hears bad_certificate.
    assert_eq!(
        p.s.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::AlertReceived {
            level: 2,
            description: 42
        })
    );

    // Server side check of the client certificate.
    let mut p = Pair::with_certs(10, Netem::perfect(), cfg(), cfg(), cc, sc.clone(), false);
    p.server = DtlsEndpoint::server(Arc::new(cfg()), sc, Some(other.fingerprint()), start);
    p.run(Duration::from_secs(5));
    assert!(
        matches!(p.s.failed, Some((_, DtlsError::FingerprintMismatch { .. }))),
        "{:?}",
        p.s.failed
    );
    assert!(p.c.connected.is_none() && p.s.connected.is_none());
}

#[test]
fn no_shared_parameters() {
    let rsa_only = DtlsConfig {
        cipher_suites: vec![CipherSuite::EcdheRsaAes128GcmSha256],
        ..cfg()
    };
    let mut p = Pair::new(11, Netem::perfect(), rsa_only, cfg());
    p.run(Duration::from_secs(5));
    assert_eq!(
        p.s.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::NoSharedCipherSuite)
    );
    assert_eq!(
        p.c.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::AlertReceived {
            level: 2,
            description: 40
        })
    );

    let a = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::AesCm128HmacSha1_32],
        ..cfg()
    };
    let b = DtlsConfig {
        srtp_profiles: vec![SrtpProfile::AeadAes128Gcm],
        ..cfg()
    };
    let mut p = Pair::new(12, Netem::perfect(), a, b);
    p.run(Duration::from_secs(5));
    assert_eq!(
        p.s.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::NoSharedSrtpProfile)
    );

    let a = DtlsConfig {
        groups: vec![NamedGroup::X25519],
        ..cfg()
    };
    let b = DtlsConfig {
        groups: vec![NamedGroup::Secp256r1],
        ..cfg()
    };
    let mut p = Pair::new(13, Netem::perfect(), a, b);
    p.run(Duration::from_secs(5));
    assert_eq!(
        p.s.failed.as_ref().map(|x| x.1.clone()),
        Some(DtlsError::NoSharedGroup)
    );
}

#[test]
fn lost_final_flight_is_retransmitted_after_completion() {
    let mut p = Pair::new(14, Netem::perfect(), cfg(), cfg());
    // Drop the server's second flight (CCS + Finished) once.
    p.filter = Some(Box::new(|from_client, idx, _| !from_client && idx == 1));
    p.run(Duration::from_secs(10));
    let (c, s) = p.keys();
    assert_eq!(c.keying_material, s.keying_material);
    assert!(p.server.is_connected());
    assert_eq!(p.client.retransmissions(), 1);
    assert_eq!(
        p.server.retransmissions(),
        1,
        "server answered the retransmitted flight"
    );
    // The server connected first, the client one timeout later.
    assert!(p.c.connected.as_ref().unwrap().0 >= Duration::from_secs(1));
}

#[test]
fn lost_client_finished_flight() {
    let mut p = Pair::new(15, Netem::perfect(), cfg(), cfg());
    // Drop the client's second flight once: the server retransmits its flight,
    // the client answers with its own.
    p.filter = Some(Box::new(|from_client, idx, _| from_client && idx == 1));
    p.run(Duration::from_secs(10));
    let (c, s) = p.keys();
    assert_eq!(c.keying_material, s.keying_material);
}

#[test]
fn server_without_client_certificate_request() {
    let s = DtlsConfig {
        require_client_certificate: false,
        ..cfg()
    };
    let (cc, sc) = certs();
    let mut p = Pair::with_certs(16, Netem::perfect(), cfg(), s, cc, sc, false);
    p.run(Duration::from_secs(5));
    let (c, s) = p.keys();
    assert_eq!(c.keying_material, s.keying_material);
    assert!(s.peer_certificate.is_empty());
    let _ = DtlsEvent::Closed;
}

#[test]
fn absurd_timer_configuration_does_not_panic() {
    let c = DtlsConfig {
        initial_timeout: Duration::MAX,
        max_timeout: Duration::MAX,
        handshake_timeout: Duration::MAX,
        mtu: 0,
        ..cfg()
    };
    let (cc, _) = certs();
    let now = std::time::Instant::now();
    let mut ep = DtlsEndpoint::client(Arc::new(c), cc, None, now);
    let d = ep.poll_transmit().unwrap();
    assert!(d.len() <= 64, "MTU floor of 64 bytes");
    ep.handle_timeout(now + Duration::from_secs(3600));
    assert!(!ep.is_closed());
}

#[test]
fn spoofed_far_ahead_epoch0_record_does_not_block_the_handshake() {
    let mut p = Pair::new(17, Netem::perfect(), cfg(), cfg());
    // A junk handshake record with record sequence number 2^48 - 1, to both sides,
    // before anything else arrives.
    let mut junk = vec![
        22, 0xFE, 0xFD, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1, 0,
    ];
    junk[11..13].copy_from_slice(&1u16.to_be_bytes());
    let now = p.now;
    p.client.handle_datagram(&junk, now);
    p.server.handle_datagram(&junk, now);
    p.run(Duration::from_secs(5));
    let (c, s) = p.keys();
    assert_eq!(c.keying_material, s.keying_material);
    assert!(p.client.dropped_records() >= 1);
}

#[test]
fn dtls10_only_client_gets_protocol_version_alert() {
    let (cc, sc) = certs();
    let now = std::time::Instant::now();
    let mut client = DtlsEndpoint::client(Arc::new(cfg()), cc, None, now);
    let mut ch = client.poll_transmit().unwrap();
    // client_version (after the 13-byte record and 12-byte handshake headers).
    assert_eq!(&ch[25..27], &[0xFE, 0xFD]);
    ch[25..27].copy_from_slice(&[0xFE, 0xFF]);
    let mut server = DtlsEndpoint::server(Arc::new(cfg()), sc, None, now);
    server.handle_datagram(&ch, now);
    assert!(matches!(
        server.poll_event(),
        Some(DtlsEvent::Failed(DtlsError::ProtocolVersion))
    ));
    let alert = server.poll_transmit().unwrap();
    assert_eq!(
        (alert[0], &alert[13..]),
        (21, &[2u8, 70][..]),
        "fatal protocol_version"
    );
    assert!(server.is_closed());
    client.handle_datagram(&alert, now);
    assert!(matches!(
        client.poll_event(),
        Some(DtlsEvent::Failed(DtlsError::AlertReceived {
            level: 2,
            description: 70
        }))
    ));
}

/// The client's second flight delivered in reverse order (Finished first, then
/// ChangeCipherSpec, then the messages before it): the server keeps the early
/// epoch-1 record and the early ChangeCipherSpec, and completes without waiting
/// for a retransmission.
#[test]
fn reversed_client_flight_completes_without_retransmission() {
    let c = DtlsConfig { mtu: 64, ..cfg() };
    let (cc, sc) = certs();
    let now = std::time::Instant::now();
    let mut client = DtlsEndpoint::client(Arc::new(c.clone()), cc, None, now);
    let mut server = DtlsEndpoint::server(Arc::new(c), sc, None, now);
    let drain = |e: &mut DtlsEndpoint| std::iter::from_fn(|| e.poll_transmit()).collect::<Vec<_>>();
    for d in drain(&mut client) {
        server.handle_datagram(&d, now);
    }
    for d in drain(&mut server) {
        client.handle_datagram(&d, now);
    }
    let flight5 = drain(&mut client);
    assert!(flight5.len() > 5, "small MTU: many datagrams");
    // The last two datagrams are the ChangeCipherSpec and the Finished.
    assert_eq!(flight5[flight5.len() - 2][0], 20);
    assert_eq!(&flight5[flight5.len() - 1][3..5], &[0, 1]);
    for d in flight5.iter().rev() {
        server.handle_datagram(d, now);
    }
    assert!(server.is_connected(), "{server:?}");
    assert_eq!(server.retransmissions(), 0);
    for d in drain(&mut server) {
        client.handle_datagram(&d, now);
    }
    assert!(client.is_connected());
    assert_eq!(client.retransmissions(), 0);
}

#[test]
fn retransmission_backoff_is_capped() {
    let c = DtlsConfig {
        initial_timeout: Duration::from_secs(1),
        max_timeout: Duration::from_secs(2),
        handshake_timeout: Duration::from_secs(20),
        ..cfg()
    };
    let (cc, _) = certs();
    let t0 = std::time::Instant::now();
    let mut ep = DtlsEndpoint::client(Arc::new(c), cc, None, t0);
    let mut sends = vec![Duration::ZERO];
    ep.poll_transmit().unwrap();
    while let Some(t) = ep.poll_timeout() {
        ep.handle_timeout(t);
        if ep.poll_transmit().is_some() {
            sends.push(t - t0);
        }
    }
    let secs: Vec<u64> = sends.iter().map(|d| d.as_secs()).collect();
    // 1 s, then 2 s capped: 0, 1, 3, 5, ..., 19; then the 20 s budget ends it.
    assert_eq!(secs, vec![0, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    assert!(matches!(
        ep.poll_event(),
        Some(DtlsEvent::Failed(DtlsError::Timeout))
    ));
}
