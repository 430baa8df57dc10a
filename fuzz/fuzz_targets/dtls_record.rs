//! Fuzz target: the DTLS record walker, every handshake message parser, the
//! stateless cookie check and a fresh server endpoint must take arbitrary bytes
//! without panicking.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use rtp_control::dtls::{
    fuzz_parse_handshake, fuzz_parse_records, Certificate, CookieKeys, DtlsConfig, DtlsEndpoint,
};

struct Fixture {
    cert: Arc<Certificate>,
    config: Arc<DtlsConfig>,
    cookies: CookieKeys,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        cert: Arc::new(Certificate::generate().expect("certificate")),
        config: Arc::new(DtlsConfig::default()),
        cookies: CookieKeys::new(Instant::now()),
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    std::hint::black_box(fuzz_parse_records(data));
    if let Some((&ty, body)) = data.split_first() {
        std::hint::black_box(fuzz_parse_handshake(ty, body));
    }
    std::hint::black_box(f.cookies.check("192.0.2.1:5000".parse().unwrap(), data));
    let mut server = DtlsEndpoint::server(f.config.clone(), f.cert.clone(), None, Instant::now());
    server.handle_datagram(data, Instant::now());
    while server.poll_transmit().is_some() {}
});
