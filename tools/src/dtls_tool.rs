//! `rtp-dtls`: a DTLS-SRTP handshake tester over one UDP socket, built on the
//! sans-IO endpoint in `rtp_control::dtls`. It prints what a DTLS-SRTP
//! integration needs to compare with its peer (the same keys as OpenSSL's
//! `s_client`/`s_server` `-keymatexport EXTRACTOR-dtls_srtp` output) and can
//! prove the keys by echoing SRTP packets after the handshake.

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_control::dtls::{
    Certificate, CipherSuite, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsEvent,
    DtlsKeys, Fingerprint, Role,
};
use rtp_core::demux::{classify, PacketKind};
use rtp_core::rtp::RtpBuilder;
use rtp_core::srtp::{SrtpContext, SrtpProfile};

/// The DTLS-SRTP profile names OpenSSL uses (`-use_srtp`).
pub const PROFILE_NAMES: [(&str, SrtpProfile); 4] = [
    ("SRTP_AES128_CM_SHA1_80", SrtpProfile::AesCm128HmacSha1_80),
    ("SRTP_AES128_CM_SHA1_32", SrtpProfile::AesCm128HmacSha1_32),
    ("SRTP_AEAD_AES_128_GCM", SrtpProfile::AeadAes128Gcm),
    ("SRTP_AEAD_AES_256_GCM", SrtpProfile::AeadAes256Gcm),
];

/// The OpenSSL name of a DTLS-SRTP profile.
pub fn profile_name(p: SrtpProfile) -> &'static str {
    PROFILE_NAMES
        .iter()
        .find(|(_, q)| *q == p)
        .map(|(n, _)| *n)
        .unwrap_or("unknown")
}

/// Parses a colon-separated OpenSSL profile list (`SRTP_AES128_CM_SHA1_80:...`).
pub fn parse_profiles(s: &str) -> Result<Vec<SrtpProfile>, String> {
    s.split(':')
        .filter(|n| !n.is_empty())
        .map(|n| {
            PROFILE_NAMES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(n))
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!(
                        "unknown SRTP profile {n:?}; known: {}",
                        PROFILE_NAMES.map(|(n, _)| n).join(", ")
                    )
                })
        })
        .collect()
}

/// Parses a colon-separated OpenSSL cipher list (`ECDHE-ECDSA-AES128-GCM-SHA256:...`).
pub fn parse_ciphers(s: &str) -> Result<Vec<CipherSuite>, String> {
    s.split(':')
        .filter(|n| !n.is_empty())
        .map(|n| {
            n.parse::<CipherSuite>()
                .map_err(|_| format!("unknown cipher suite {n:?}"))
        })
        .collect()
}

/// What to do.
#[derive(Debug, Clone)]
pub struct DtlsToolOptions {
    /// Client (connects) or server (listens).
    pub role: Role,
    /// Client: the server's address. Server: the address to listen on.
    pub addr: SocketAddr,
    /// Client: local address to bind (port 0 for any).
    pub bind: Option<SocketAddr>,
    /// DTLS settings (profiles, suites, MTU, timeouts).
    pub config: DtlsConfig,
    /// Our certificate and key (PEM); generated when `None`.
    pub cert: Option<(String, String)>,
    /// The peer's fingerprint we require (`sha-256 AB:..`).
    pub expect_fingerprint: Option<Fingerprint>,
    /// Server: answer ClientHellos without a cookie with a HelloVerifyRequest.
    pub cookies: bool,
    /// SRTP packets to echo after the handshake (client sends, server echoes).
    pub echo: usize,
    /// Give up after this long.
    pub timeout: Duration,
    /// Server: print `LISTEN=ADDR` (the bound address) on stdout once bound, so
    /// that a caller that asked for port 0 learns the port.
    pub announce: bool,
}

/// The outcome, as `KEY=VALUE` lines ([`DtlsReport::render`]).
#[derive(Debug, Clone)]
pub struct DtlsReport {
    /// The keys (role, suite, profile, EMS, material, fingerprints).
    pub keys: DtlsKeys,
    /// Our certificate's fingerprint.
    pub local_fingerprint: Fingerprint,
    /// The peer's address.
    pub peer: SocketAddr,
    /// SRTP packets echoed and verified (client) or echoed (server).
    pub srtp_echoed: usize,
    /// Handshake duration.
    pub handshake: Duration,
}

impl DtlsReport {
    /// `KEY=VALUE` lines.
    pub fn render(&self) -> String {
        let k = &self.keys;
        let mut s = String::new();
        let role = match k.role {
            Role::Client => "client",
            Role::Server => "server",
        };
        let hex: String = k.keying_material.iter().fold(String::new(), |mut h, b| {
            let _ = write!(h, "{b:02X}");
            h
        });
        let _ = writeln!(s, "ROLE={role}");
        let _ = writeln!(s, "PEER={}", self.peer);
        let _ = writeln!(s, "CIPHER={}", k.cipher_suite);
        let _ = writeln!(s, "SRTP_PROFILE={}", profile_name(k.srtp_profile));
        let _ = writeln!(
            s,
            "EMS={}",
            if k.extended_master_secret {
                "yes"
            } else {
                "no"
            }
        );
        let _ = writeln!(s, "KEYING_MATERIAL={hex}");
        let _ = writeln!(s, "LOCAL_FINGERPRINT={}", self.local_fingerprint);
        let _ = writeln!(s, "PEER_FINGERPRINT={}", k.peer_fingerprint);
        let _ = writeln!(s, "HANDSHAKE_MS={}", self.handshake.as_millis());
        let _ = writeln!(s, "SRTP_ECHOED={}", self.srtp_echoed);
        s
    }
}

/// Runs one handshake (and the optional SRTP echo) on a real socket.
pub fn run(opts: &DtlsToolOptions) -> Result<DtlsReport, String> {
    let cert = match &opts.cert {
        Some((c, k)) => Certificate::from_pem(c, k).map_err(|e| format!("--cert/--key: {e}"))?,
        None => Certificate::generate().map_err(|e| format!("certificate: {e}"))?,
    };
    let local_fingerprint = cert.fingerprint();
    let cert = Arc::new(cert);
    let config = Arc::new(opts.config.clone());
    let deadline = Instant::now() + opts.timeout;
    let sock = match opts.role {
        Role::Client => UdpSocket::bind(opts.bind.unwrap_or_else(|| unspecified(opts.addr))),
        Role::Server => UdpSocket::bind(opts.addr),
    }
    .map_err(|e| format!("bind: {e}"))?;
    if opts.announce && opts.role == Role::Server {
        use std::io::Write;
        let addr = sock.local_addr().map_err(|e| e.to_string())?;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "LISTEN={addr}");
        let _ = out.flush();
    }
    let started = Instant::now();
    let (ep, to) = match opts.role {
        Role::Client => (
            DtlsEndpoint::client(
                config,
                cert,
                opts.expect_fingerprint.clone(),
                Instant::now(),
            ),
            Some(opts.addr),
        ),
        Role::Server => {
            let mut ep = DtlsEndpoint::server(
                config,
                cert,
                opts.expect_fingerprint.clone(),
                Instant::now(),
            );
            let mut to = None;
            if opts.cookies {
                let (src, hello) = accept_with_cookie(&sock, deadline)?;
                ep.handle_datagram(&hello, Instant::now());
                to = Some(src);
            }
            (ep, to)
        }
    };
    let hs = drive_handshake(&sock, ep, to, deadline)?;
    let handshake = started.elapsed();
    let mut hs = hs;
    let echoed = echo(&sock, opts.role, &mut hs, opts.echo, deadline)?;
    if opts.role == Role::Server && echoed == 0 {
        // Nothing proves the client has our final flight: stay a little for
        // its retransmission (until its close_notify, at most four initial
        // timeouts: its first two retransmissions come after one and three).
        let until = Instant::now() + opts.config.initial_timeout.saturating_mul(4);
        linger(&sock, &mut hs, until.min(deadline))?;
    }
    let mut ep = hs.endpoint;
    ep.close();
    while let Some(d) = ep.poll_transmit() {
        let _ = sock.send_to(&d, hs.peer);
    }
    Ok(DtlsReport {
        keys: hs.keys,
        local_fingerprint,
        peer: hs.peer,
        srtp_echoed: echoed,
        handshake,
    })
}

/// A completed handshake on a socket.
#[derive(Debug)]
pub struct Handshake {
    /// The exported keys.
    pub keys: DtlsKeys,
    /// Who it ran with.
    pub peer: SocketAddr,
    /// The endpoint (for close_notify, retransmissions of the last flight).
    pub endpoint: DtlsEndpoint,
}

/// Server front door: answers hellos without a valid cookie with a
/// HelloVerifyRequest; returns the first client that came back with a valid
/// cookie, and its ClientHello (to feed to the endpoint).
fn accept_with_cookie(
    sock: &UdpSocket,
    deadline: Instant,
) -> Result<(SocketAddr, Vec<u8>), String> {
    let cookies = CookieKeys::new(Instant::now());
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .map_err(|e| e.to_string())?;
    while Instant::now() < deadline {
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        match cookies.check(src, &buf[..n]) {
            CookieVerdict::Respond(hvr) => {
                let _ = sock.send_to(&hvr, src);
            }
            CookieVerdict::Accept => return Ok((src, buf[..n].to_vec())),
            CookieVerdict::Drop => {}
        }
    }
    Err("timed out waiting for a client".into())
}

/// Drives `ep` on `sock` until it connects (or fails, or `deadline` passes).
/// `to`: where to send; `None` (a server) learns it from the first DTLS
/// datagram. Datagrams from other sources are ignored.
pub fn drive_handshake(
    sock: &UdpSocket,
    mut ep: DtlsEndpoint,
    mut to: Option<SocketAddr>,
    deadline: Instant,
) -> Result<Handshake, String> {
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out before the handshake completed".into());
        }
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(d) = ep.poll_transmit() {
            if let Some(p) = to {
                sock.send_to(&d, p).map_err(|e| format!("send: {e}"))?;
            }
        }
        while let Some(ev) = ep.poll_event() {
            match ev {
                DtlsEvent::Connected(k) => {
                    let peer = to.ok_or("connected without a peer")?;
                    // Flush what the last flight still holds (the server's
                    // ChangeCipherSpec + Finished).
                    while let Some(d) = ep.poll_transmit() {
                        sock.send_to(&d, peer).map_err(|e| format!("send: {e}"))?;
                    }
                    return Ok(Handshake {
                        keys: *k,
                        peer,
                        endpoint: ep,
                    });
                }
                DtlsEvent::Failed(err) => return Err(format!("handshake failed: {err}")),
                DtlsEvent::Closed => return Err("the peer closed the association".into()),
                DtlsEvent::ApplicationData(_) => {}
            }
        }
        let wait = ep
            .poll_timeout()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_millis(20))
            .clamp(Duration::from_millis(1), Duration::from_millis(20));
        sock.set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if classify(&buf[..n]) != PacketKind::Dtls || to.is_some_and(|p| p != src) {
            continue;
        }
        to = Some(src);
        ep.handle_datagram(&buf[..n], Instant::now());
    }
}

/// A server after the handshake: answers the client's retransmitted last
/// flight (it lost ours) until `until` or the client's close_notify.
fn linger(sock: &UdpSocket, hs: &mut Handshake, until: Instant) -> Result<(), String> {
    let mut buf = vec![0u8; 65536];
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        let wait = (until - now).clamp(Duration::from_millis(1), Duration::from_millis(20));
        sock.set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let Ok((n, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if src != hs.peer || classify(&buf[..n]) != PacketKind::Dtls {
            continue;
        }
        hs.endpoint.handle_datagram(&buf[..n], Instant::now());
        while let Some(d) = hs.endpoint.poll_transmit() {
            let _ = sock.send_to(&d, hs.peer);
        }
        while let Some(ev) = hs.endpoint.poll_event() {
            if matches!(ev, DtlsEvent::Closed | DtlsEvent::Failed(_)) {
                return Ok(());
            }
        }
    }
}

/// After the handshake: the client sends `n` SRTP packets and counts those that
/// come back and authenticate under the server's key; the server sends back
/// what authenticates under the client's key. Returns the count.
fn echo(
    sock: &UdpSocket,
    role: Role,
    hs: &mut Handshake,
    n: usize,
    deadline: Instant,
) -> Result<usize, String> {
    if n == 0 {
        return Ok(0);
    }
    let (out, inb) = hs.keys.srtp_configs().map_err(|e| e.to_string())?;
    let mut tx = SrtpContext::new(out).map_err(|e| e.to_string())?;
    let mut rx = SrtpContext::new(inb).map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    let (mut sent, mut done) = (0usize, 0usize);
    let mut progress = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    while done < n {
        if Instant::now() >= deadline {
            return Err(format!("timed out: {done} of {n} SRTP packets echoed"));
        }
        // A window of 8 probes in flight; lost ones are replaced by new ones.
        if role == Role::Client
            && (sent < done + 8 || progress.elapsed() > Duration::from_millis(200))
        {
            progress = Instant::now();
            let seq = sent as u16;
            let mut pkt = vec![0u8; 12 + 160 + 64];
            let len = RtpBuilder::new()
                .payload_type(0)
                .sequence_number(seq)
                .timestamp(u32::from(seq) * 160)
                .ssrc(0x5EC0_0001)
                .payload(&[0xA5; 160])
                .emit(&mut pkt)
                .map_err(|e| e.to_string())?;
            let len = tx.protect_rtp(&mut pkt, len).map_err(|e| e.to_string())?;
            sock.send_to(&pkt[..len], hs.peer)
                .map_err(|e| format!("send: {e}"))?;
            sent += 1;
        }
        let Ok((m, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        if src != hs.peer {
            continue;
        }
        match classify(&buf[..m]) {
            PacketKind::Rtp => {}
            PacketKind::Dtls => {
                // The peer lost our last flight and resends its own: answer it.
                hs.endpoint.handle_datagram(&buf[..m], Instant::now());
                while let Some(d) = hs.endpoint.poll_transmit() {
                    let _ = sock.send_to(&d, hs.peer);
                }
                continue;
            }
            _ => continue,
        }
        let Ok(u) = rx.unprotect_rtp(&mut buf[..m]) else {
            continue;
        };
        progress = Instant::now();
        match role {
            Role::Client => done += 1,
            Role::Server => {
                let len = u.len;
                if let Ok(k) = tx.protect_rtp(&mut buf, len) {
                    let _ = sock.send_to(&buf[..k], src);
                    done += 1;
                }
            }
        }
    }
    Ok(done)
}

fn unspecified(peer: SocketAddr) -> SocketAddr {
    match peer {
        SocketAddr::V4(_) => "0.0.0.0:0".parse().expect("literal"),
        SocketAddr::V6(_) => "[::]:0".parse().expect("literal"),
    }
}
