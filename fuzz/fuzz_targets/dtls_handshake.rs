//! Fuzz target: arbitrary datagrams into a client and a server endpoint at a
//! stage of the handshake chosen by the first byte (fresh, after the ClientHello,
//! after the server's first flight, connected). The rest of the input is a
//! sequence of datagrams, each prefixed with a 2-byte length.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtp_control::dtls::{Certificate, DtlsConfig, DtlsEndpoint};

fn certs() -> &'static (Arc<Certificate>, Arc<Certificate>, Arc<DtlsConfig>) {
    static C: OnceLock<(Arc<Certificate>, Arc<Certificate>, Arc<DtlsConfig>)> = OnceLock::new();
    C.get_or_init(|| {
        (
            Arc::new(Certificate::generate().expect("certificate")),
            Arc::new(Certificate::generate().expect("certificate")),
            Arc::new(DtlsConfig { mtu: 400, ..DtlsConfig::default() }),
        )
    })
}

/// Moves every queued datagram from one endpoint into the other.
fn pump(from: &mut DtlsEndpoint, to: &mut DtlsEndpoint, now: Instant) {
    while let Some(d) = from.poll_transmit() {
        to.handle_datagram(&d, now);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&stage, mut rest)) = data.split_first() else { return };
    let (cc, sc, cfg) = certs();
    let now = Instant::now();
    let mut client = DtlsEndpoint::client(cfg.clone(), cc.clone(), None, now);
    let mut server = DtlsEndpoint::server(cfg.clone(), sc.clone(), None, now);
    for _ in 0..(stage % 4) {
        pump(&mut client, &mut server, now);
        pump(&mut server, &mut client, now);
    }
    let mut t = now;
    while rest.len() >= 2 {
        let n = (u16::from_be_bytes([rest[0], rest[1]]) as usize).min(rest.len() - 2);
        let (d, tail) = rest[2..].split_at(n);
        rest = tail;
        if n % 2 == 0 {
            server.handle_datagram(d, t);
        } else {
            client.handle_datagram(d, t);
        }
        t += Duration::from_millis(300);
        client.handle_timeout(t);
        server.handle_timeout(t);
        pump(&mut client, &mut server, t);
        pump(&mut server, &mut client, t);
        while client.poll_event().is_some() {}
        while server.poll_event().is_some() {}
    }
});
