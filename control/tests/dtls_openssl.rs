//! Interop with OpenSSL 3 (`openssl s_server` / `s_client`, DTLS 1.2 + use_srtp):
//! both roles, every suite, every SRTP profile, fragmentation on both sides,
//! client certificates (ECDSA and RSA), the cookie exchange. Keying material and
//! fingerprints must equal what OpenSSL reports.
//!
//! Without `openssl` the test prints a note and passes, unless `CI` is set.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_control::dtls::{
    Certificate, CipherSuite, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsEvent,
    DtlsKeys, Fingerprint, NamedGroup,
};
use rtp_core::srtp::SrtpProfile;

/// Kills the child by its PID when dropped (also on panic).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_ok() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("openssl is required in CI (apt-get install openssl)");
        }
        eprintln!("note: openssl not installed, DTLS interop test skipped");
    }
    ok
}

struct Work {
    dir: PathBuf,
}

impl Drop for Work {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Work {
    fn new() -> Self {
        // One directory per test (the tests of this file run in parallel).
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rtp-dtls-openssl-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("no-ems.cnf"),
            "openssl_conf = default_conf\n[default_conf]\nssl_conf = ssl_sect\n[ssl_sect]\n\
             system_default = system_default_sect\n[system_default_sect]\nOptions = -ExtendedMasterSecret\n",
        )
        .unwrap();
        let w = Work { dir };
        w.run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:secp384r1",
            "-nodes",
            "-keyout",
            "ec384.key",
            "-out",
            "ec384.crt",
            "-days",
            "30",
            "-subj",
            "/CN=openssl-p384",
        ]);
        w.run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "ec.key",
            "-out",
            "ec.crt",
            "-days",
            "30",
            "-subj",
            "/CN=openssl-ec",
        ]);
        w.run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "rsa.key",
            "-out",
            "rsa.crt",
            "-days",
            "30",
            "-subj",
            "/CN=openssl-rsa",
        ]);
        w
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// "sha-256 AB:CD:..." of a PEM certificate file, computed by OpenSSL.
    fn fingerprint(&self, pem_file: &Path) -> Fingerprint {
        let s = self.run(&[
            "x509",
            "-noout",
            "-fingerprint",
            "-sha256",
            "-in",
            pem_file.to_str().unwrap(),
        ]);
        let hex = s.trim().rsplit('=').next().unwrap();
        format!("sha-256 {hex}").parse().unwrap()
    }

    /// The fingerprint of the first PEM certificate in an s_server/s_client log.
    fn fingerprint_in_log(&self, log: &str, name: &str) -> Option<Fingerprint> {
        let start = log.find("-----BEGIN CERTIFICATE-----")?;
        let end = log[start..].find("-----END CERTIFICATE-----")? + start + 25;
        let f = self.path(name);
        fs::write(&f, &log[start..end]).unwrap();
        Some(self.fingerprint(&f))
    }
}

/// Our client socket and a free port for OpenSSL's server. The socket is
/// bound first and the port picked to differ from it: OpenSSL binds only
/// after it starts, and a client socket that happened to get the same port
/// would send its ClientHello to itself.
fn client_socket_and_server_port() -> (UdpSocket, u16) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let ours = sock.local_addr().unwrap().port();
    loop {
        let port = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port != ours {
            return (sock, port);
        }
    }
}

fn openssl_profile(p: SrtpProfile) -> &'static str {
    match p {
        SrtpProfile::AesCm128HmacSha1_80 => "SRTP_AES128_CM_SHA1_80",
        SrtpProfile::AesCm128HmacSha1_32 => "SRTP_AES128_CM_SHA1_32",
        SrtpProfile::AeadAes128Gcm => "SRTP_AEAD_AES_128_GCM",
        SrtpProfile::AeadAes256Gcm => "SRTP_AEAD_AES_256_GCM",
        _ => unreachable!(),
    }
}

fn field<'a>(log: &'a str, prefix: &str) -> Option<&'a str> {
    log.lines()
        .find_map(|l| l.trim_start().strip_prefix(prefix))
        .map(str::trim)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Runs our endpoint on a real socket until `done` or the deadline.
struct Driver {
    sock: UdpSocket,
    ep: Option<DtlsEndpoint>,
    peer: Option<SocketAddr>,
    cookies: Option<CookieKeys>,
    server_cfg: Option<(Arc<DtlsConfig>, Arc<Certificate>)>,
    keys: Option<Box<DtlsKeys>>,
    failed: Option<String>,
    closed: bool,
    max_sent: usize,
    app: Vec<Vec<u8>>,
}

impl Driver {
    fn step(&mut self, until: Instant) {
        let now = Instant::now();
        if let Some(ep) = self.ep.as_mut() {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            while let Some(d) = ep.poll_transmit() {
                self.max_sent = self.max_sent.max(d.len());
                if let Some(p) = self.peer {
                    let _ = self.sock.send_to(&d, p);
                }
            }
            while let Some(ev) = ep.poll_event() {
                match ev {
                    DtlsEvent::Connected(k) => self.keys = Some(k),
                    DtlsEvent::Failed(e) => self.failed = Some(e.to_string()),
                    DtlsEvent::Closed => self.closed = true,
                    DtlsEvent::ApplicationData(d) => self.app.push(d),
                }
            }
        }
        let mut wait = until
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        if let Some(t) = self.ep.as_ref().and_then(|e| e.poll_timeout()) {
            wait = wait.min(t.saturating_duration_since(Instant::now()));
        }
        self.sock
            .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 2048];
        if let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            let now = Instant::now();
            if self.ep.is_none() {
                let (cfg, cert) = self.server_cfg.clone().unwrap();
                let accept = match &self.cookies {
                    None => true,
                    Some(c) => match c.check(from, &buf[..n]) {
                        CookieVerdict::Respond(hvr) => {
                            let _ = self.sock.send_to(&hvr, from);
                            false
                        }
                        CookieVerdict::Accept => true,
                        CookieVerdict::Drop => false,
                    },
                };
                if accept {
                    self.peer = Some(from);
                    self.ep = Some(DtlsEndpoint::server(cfg, cert, None, now));
                }
            }
            if Some(from) == self.peer {
                if let Some(ep) = self.ep.as_mut() {
                    ep.handle_datagram(&buf[..n], now);
                }
            }
        }
    }
}

fn our_cfg(mtu: usize) -> DtlsConfig {
    DtlsConfig {
        mtu,
        initial_timeout: Duration::from_millis(300),
        ..DtlsConfig::default()
    }
}

#[derive(Debug, Clone)]
struct Case {
    name: &'static str,
    /// OpenSSL's certificate: "ec" or "rsa".
    ossl_cert: &'static str,
    cipher: Option<CipherSuite>,
    profiles: Vec<SrtpProfile>,
    ossl_mtu: Option<u32>,
    our_mtu: usize,
    extra: Vec<&'static str>,
    groups: Vec<NamedGroup>,
    cookies: bool,
    /// Turn extended_master_secret off in OpenSSL (OPENSSL_CONF).
    no_ems: bool,
}

impl Case {
    fn new(name: &'static str) -> Self {
        Case {
            name,
            ossl_cert: "ec",
            cipher: None,
            profiles: vec![SrtpProfile::AesCm128HmacSha1_80, SrtpProfile::AeadAes128Gcm],
            ossl_mtu: Some(1200),
            our_mtu: 1200,
            extra: vec![],
            groups: DtlsConfig::default().groups,
            cookies: false,
            no_ems: false,
        }
    }

    fn ossl_args(&self, w: &Work) -> Vec<String> {
        let mut a: Vec<String> = vec!["-dtls1_2".into(), "-use_srtp".into()];
        a.push(
            self.profiles
                .iter()
                .map(|p| openssl_profile(*p))
                .collect::<Vec<_>>()
                .join(":"),
        );
        a.extend(
            [
                "-keymatexport",
                "EXTRACTOR-dtls_srtp",
                "-keymatexportlen",
                "88",
            ]
            .map(String::from),
        );
        if let Some(m) = self.ossl_mtu {
            a.extend(["-mtu".into(), m.to_string()]);
        }
        if let Some(c) = self.cipher {
            a.extend(["-cipher".into(), c.openssl_name().into()]);
        }
        a.extend([
            "-cert".into(),
            w.path(&format!("{}.crt", self.ossl_cert))
                .to_str()
                .unwrap()
                .into(),
            "-key".into(),
            w.path(&format!("{}.key", self.ossl_cert))
                .to_str()
                .unwrap()
                .into(),
        ]);
        a.extend(self.extra.iter().map(|s| s.to_string()));
        a
    }

    fn env(&self, w: &Work, cmd: &mut Command) {
        if self.no_ems {
            cmd.env("OPENSSL_CONF", w.path("no-ems.cnf"));
        }
    }
}

/// Compares our result with OpenSSL's log; returns an error text on mismatch.
fn compare(
    w: &Work,
    case: &Case,
    keys: &DtlsKeys,
    log: &str,
    our_cert: &Certificate,
) -> Result<(), String> {
    let km = field(log, "Keying material:").ok_or("OpenSSL printed no keying material")?;
    let n = keys.keying_material.len();
    if !km.starts_with(&hex(&keys.keying_material)) || km.len() != 176 {
        return Err(format!(
            "keying material differs:\n ours    {}\n openssl {}",
            hex(&keys.keying_material),
            &km[..2 * n.min(km.len() / 2)]
        ));
    }
    let prof = field(log, "SRTP Extension negotiated, profile=").ok_or("no SRTP profile in log")?;
    if prof != openssl_profile(keys.srtp_profile) {
        return Err(format!(
            "profile: ours {:?} openssl {prof}",
            keys.srtp_profile
        ));
    }
    let cipher = field(log, "CIPHER is ")
        .or_else(|| log.lines().find_map(|l| l.split("Cipher is ").nth(1)))
        .ok_or("no cipher in log")?
        .trim();
    if cipher != keys.cipher_suite.openssl_name() {
        return Err(format!(
            "cipher: ours {} openssl {cipher}",
            keys.cipher_suite
        ));
    }
    if let Some(c) = case.cipher {
        if c != keys.cipher_suite {
            return Err(format!("expected {c}, got {}", keys.cipher_suite));
        }
    }
    if let Some(ems) = field(log, "Extended master secret:") {
        if (ems == "yes") != keys.extended_master_secret {
            return Err(format!(
                "EMS: ours {} openssl {ems}",
                keys.extended_master_secret
            ));
        }
    }
    let want_peer = w.fingerprint(&w.path(&format!("{}.crt", case.ossl_cert)));
    if keys.peer_fingerprint != want_peer {
        return Err(format!(
            "peer fingerprint: ours {} openssl {want_peer}",
            keys.peer_fingerprint
        ));
    }
    // OpenSSL saw our certificate.
    let seen = w.fingerprint_in_log(log, &format!("{}-seen.pem", case.name));
    if seen.as_ref() != Some(&our_cert.fingerprint()) {
        return Err(format!(
            "OpenSSL saw {seen:?}, we are {}",
            our_cert.fingerprint()
        ));
    }
    Ok(())
}

/// OpenSSL is the server, we are the client.
fn run_ossl_server(w: &Work, case: &Case) -> Result<String, String> {
    let (sock, port) = client_socket_and_server_port();
    let out = w.path(&format!("{}.server.out", case.name));
    let mut cmd = Command::new("openssl");
    cmd.arg("s_server")
        .args([
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-verify",
            "1",
        ])
        .args(case.ossl_args(w))
        .stdin(Stdio::piped()); // kept open: s_server quits on stdin EOF
    case.env(w, &mut cmd);
    cmd.stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(w.path(&format!("{}.server.err", case.name))).unwrap());
    let _proc = Proc(cmd.spawn().map_err(|e| e.to_string())?);
    let cert = Arc::new(Certificate::generate().unwrap());
    let cfg = DtlsConfig {
        groups: case.groups.clone(),
        ..our_cfg(case.our_mtu)
    };
    let mut d = Driver {
        sock,
        ep: Some(DtlsEndpoint::client(
            Arc::new(cfg),
            cert.clone(),
            None,
            Instant::now(),
        )),
        peer: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        cookies: None,
        server_cfg: None,
        keys: None,
        failed: None,
        closed: false,
        max_sent: 0,
        app: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && d.keys.is_none() && d.failed.is_none() {
        d.step(deadline);
    }
    // Wait for OpenSSL's report.
    let log_deadline = Instant::now() + Duration::from_secs(5);
    let mut log = String::new();
    while Instant::now() < log_deadline {
        log = fs::read_to_string(&out).unwrap_or_default();
        if log.contains("Keying material:") || d.failed.is_some() {
            break;
        }
        d.step(log_deadline);
    }
    let err = fs::read_to_string(w.path(&format!("{}.server.err", case.name))).unwrap_or_default();
    if let Some(f) = d.failed {
        return Err(format!("we failed: {f}\nopenssl: {err}"));
    }
    let keys = d
        .keys
        .ok_or_else(|| format!("no handshake\nopenssl: {err}"))?;
    if d.max_sent > case.our_mtu {
        return Err(format!(
            "we sent {} bytes > mtu {}",
            d.max_sent, case.our_mtu
        ));
    }
    compare(w, case, &keys, &log, &cert).map_err(|e| format!("{e}\nopenssl stderr: {err}"))?;
    Ok(format!(
        "{} {:?} {:?} ems={}",
        keys.cipher_suite, keys.srtp_profile, keys.group, keys.extended_master_secret
    ))
}

/// OpenSSL is the client, we are the server.
fn run_ossl_client(w: &Work, case: &Case) -> Result<String, String> {
    let cert = Arc::new(Certificate::generate().unwrap());
    let cfg = DtlsConfig {
        groups: case.groups.clone(),
        ..our_cfg(case.our_mtu)
    };
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let out = w.path(&format!("{}.client.out", case.name));
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .args(["-connect", &format!("127.0.0.1:{port}"), "-noservername"])
        .args(case.ossl_args(w))
        .stdin(Stdio::null()); // handshake, print, close_notify, exit
    case.env(w, &mut cmd);
    cmd.stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(w.path(&format!("{}.client.err", case.name))).unwrap());
    let mut proc = Proc(cmd.spawn().map_err(|e| e.to_string())?);
    let mut d = Driver {
        sock,
        ep: None,
        peer: None,
        cookies: case.cookies.then(|| CookieKeys::new(Instant::now())),
        server_cfg: Some((Arc::new(cfg), cert.clone())),
        keys: None,
        failed: None,
        closed: false,
        max_sent: 0,
        app: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut exited = false;
    while Instant::now() < deadline && d.failed.is_none() {
        d.step(deadline);
        if let Ok(Some(_)) = proc.0.try_wait() {
            exited = true;
            // Drain what is left (its close_notify).
            let t = Instant::now() + Duration::from_millis(100);
            while Instant::now() < t {
                d.step(t);
            }
            break;
        }
    }
    let log = fs::read_to_string(&out).unwrap_or_default();
    let err = fs::read_to_string(w.path(&format!("{}.client.err", case.name))).unwrap_or_default();
    if let Some(f) = d.failed {
        return Err(format!("we failed: {f}\nopenssl: {err}"));
    }
    let keys = d
        .keys
        .ok_or_else(|| format!("no handshake (s_client exited: {exited})\nopenssl: {err}"))?;
    if d.max_sent > case.our_mtu {
        return Err(format!(
            "we sent {} bytes > mtu {}",
            d.max_sent, case.our_mtu
        ));
    }
    compare(w, case, &keys, &log, &cert).map_err(|e| format!("{e}\nopenssl stderr: {err}"))?;
    if !d.closed {
        return Err("no close_notify from s_client seen".into());
    }
    Ok(format!(
        "{} {:?} {:?} ems={}",
        keys.cipher_suite, keys.srtp_profile, keys.group, keys.extended_master_secret
    ))
}

fn all_profiles() -> [SrtpProfile; 4] {
    [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
    ]
}

fn report(results: Vec<(String, Result<String, String>)>) {
    let mut failed = 0;
    for (name, r) in &results {
        match r {
            Ok(s) => eprintln!("PASS {name}: {s}"),
            Err(e) => {
                failed += 1;
                eprintln!("FAIL {name}: {e}");
            }
        }
    }
    assert_eq!(
        failed,
        0,
        "{failed} of {} OpenSSL cases failed",
        results.len()
    );
}

#[test]
fn we_are_client_openssl_is_server() {
    if !openssl_ok() {
        return;
    }
    let w = Work::new();
    let mut cases = Vec::new();
    for suite in CipherSuite::ALL {
        let mut c = Case::new(Box::leak(
            format!("client-{}", suite.openssl_name()).into_boxed_str(),
        ));
        c.cipher = Some(suite);
        c.ossl_cert = if suite.is_ecdsa() { "ec" } else { "rsa" };
        cases.push(c);
    }
    for p in all_profiles() {
        let mut c = Case::new(Box::leak(
            format!("client-{}", openssl_profile(p)).into_boxed_str(),
        ));
        c.profiles = vec![p];
        cases.push(c);
    }
    let mut c = Case::new("client-openssl-mtu0-fragments");
    c.ossl_mtu = None;
    cases.push(c);
    let mut c = Case::new("client-our-mtu-300");
    c.our_mtu = 300;
    c.ossl_mtu = Some(300);
    cases.push(c);
    let mut c = Case::new("client-our-mtu-150-fragmented-client-hello");
    c.our_mtu = 150;
    c.ossl_mtu = Some(256); // OpenSSL's minimum
    cases.push(c);
    let mut c = Case::new("client-p256-only");
    c.groups = vec![NamedGroup::Secp256r1];
    cases.push(c);
    for sig in [
        "rsa_pkcs1_sha256",
        "rsa_pkcs1_sha384",
        "rsa_pkcs1_sha512",
        "rsa_pss_rsae_sha256",
        "rsa_pss_rsae_sha384",
        "rsa_pss_rsae_sha512",
    ] {
        let mut c = Case::new(Box::leak(format!("client-rsa-{sig}").into_boxed_str()));
        c.ossl_cert = "rsa";
        // -client_sigalgs keeps ecdsa_secp256r1_sha256 in the CertificateRequest.
        c.extra = vec!["-sigalgs", sig, "-client_sigalgs", "ecdsa_secp256r1_sha256"];
        cases.push(c);
    }
    // P-384 ECDHE (our first choice, OpenSSL follows the client's order); P-256
    // stays in both lists for the two P-256 certificates (RFC 8422 5.1; OpenSSL
    // refuses a client certificate on a curve outside its -groups).
    let mut c = Case::new("client-p384-ecdhe");
    c.groups = vec![NamedGroup::Secp384r1, NamedGroup::Secp256r1];
    c.extra = vec!["-groups", "P-384:P-256"];
    cases.push(c);
    let mut c = Case::new("client-p384-server-certificate");
    c.ossl_cert = "ec384";
    cases.push(c);
    let mut c = Case::new("client-openssl-without-ems");
    c.no_ems = true;
    cases.push(c);
    let mut c = Case::new("client-ecdsa-sha384");
    c.extra = vec![
        "-sigalgs",
        "ecdsa_secp384r1_sha384",
        "-client_sigalgs",
        "ecdsa_secp256r1_sha256",
    ];
    cases.push(c);
    let results = cases
        .iter()
        .map(|c| (c.name.to_string(), run_ossl_server(&w, c)))
        .collect();
    report(results);
}

#[test]
fn we_are_server_openssl_is_client() {
    if !openssl_ok() {
        return;
    }
    let w = Work::new();
    let mut cases = Vec::new();
    for suite in CipherSuite::ALL.into_iter().filter(|s| s.is_ecdsa()) {
        let mut c = Case::new(Box::leak(
            format!("server-{}", suite.openssl_name()).into_boxed_str(),
        ));
        c.cipher = Some(suite);
        cases.push(c);
    }
    for p in all_profiles() {
        let mut c = Case::new(Box::leak(
            format!("server-{}", openssl_profile(p)).into_boxed_str(),
        ));
        c.profiles = vec![p];
        cases.push(c);
    }
    let mut c = Case::new("server-p384-ecdhe");
    c.groups = vec![NamedGroup::Secp384r1];
    cases.push(c);
    let mut c = Case::new("server-p384-client-certificate");
    c.ossl_cert = "ec384";
    cases.push(c);
    let mut c = Case::new("server-openssl-without-ems");
    c.no_ems = true;
    cases.push(c);
    let mut c = Case::new("server-cookie-exchange");
    c.cookies = true;
    cases.push(c);
    let mut c = Case::new("server-openssl-mtu-256");
    c.ossl_mtu = Some(256);
    cases.push(c);
    let mut c = Case::new("server-our-mtu-300");
    c.our_mtu = 300;
    cases.push(c);
    let mut c = Case::new("server-p256-only");
    c.groups = vec![NamedGroup::Secp256r1];
    cases.push(c);
    // RSA client certificates: we verify CertificateVerify with RSA.
    for sig in [
        None,
        Some("rsa_pkcs1_sha256"),
        Some("rsa_pss_rsae_sha256"),
        Some("rsa_pkcs1_sha512"),
    ] {
        let mut c = Case::new(Box::leak(
            format!("server-rsa-client-cert-{}", sig.unwrap_or("default")).into_boxed_str(),
        ));
        c.ossl_cert = "rsa";
        if let Some(s) = sig {
            c.extra = vec!["-client_sigalgs", s];
        }
        cases.push(c);
    }
    let results = cases
        .iter()
        .map(|c| (c.name.to_string(), run_ossl_client(&w, c)))
        .collect();
    report(results);
}

#[test]
fn certificate_from_openssl_pem() {
    if !openssl_ok() {
        return;
    }
    let w = Work::new();
    // PKCS#8 ("PRIVATE KEY"), as `openssl req -newkey ec` writes it.
    let pem = |f: &str| fs::read_to_string(w.path(f)).unwrap();
    let c = Certificate::from_pem(&pem("ec.crt"), &pem("ec.key")).unwrap();
    assert_eq!(c.fingerprint(), w.fingerprint(&w.path("ec.crt")));
    // SEC1 ("EC PRIVATE KEY" after an "EC PARAMETERS" block).
    w.run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-out",
        "sec1.key",
    ]);
    w.run(&[
        "req", "-new", "-x509", "-key", "sec1.key", "-out", "sec1.crt", "-days", "30", "-subj",
        "/CN=sec1",
    ]);
    assert!(pem("sec1.key").contains("BEGIN EC PARAMETERS"));
    let s = Certificate::from_pem(&pem("sec1.crt"), &pem("sec1.key")).unwrap();
    assert_eq!(s.fingerprint(), w.fingerprint(&w.path("sec1.crt")));
    // Wrong key, RSA key, garbage: errors.
    assert!(Certificate::from_pem(&pem("ec.crt"), &pem("sec1.key")).is_err());
    assert!(Certificate::from_pem(&pem("rsa.crt"), &pem("rsa.key")).is_err());
    assert!(Certificate::from_pem("nonsense", &pem("ec.key")).is_err());
    // The loaded certificates work in a handshake (in memory).
    let now = Instant::now();
    let cfg = Arc::new(DtlsConfig::default());
    let (c, s) = (Arc::new(c), Arc::new(s));
    let mut client = DtlsEndpoint::client(cfg.clone(), c.clone(), Some(s.fingerprint()), now);
    let mut server = DtlsEndpoint::server(cfg, s, Some(c.fingerprint()), now);
    for _ in 0..4 {
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(&d, now);
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(&d, now);
        }
    }
    assert!(client.is_connected() && server.is_connected());
}

/// OpenSSL's server asks to renegotiate (`r` on s_server's stdin): we refuse with
/// a no_renegotiation warning and the association keeps working; application data
/// flows both ways.
#[test]
fn renegotiation_refused_application_data_both_ways() {
    use std::io::Write;
    if !openssl_ok() {
        return;
    }
    let w = Work::new();
    let case = Case::new("renegotiation");
    let (sock, port) = client_socket_and_server_port();
    let out = w.path("renegotiation.server.out");
    let mut cmd = Command::new("openssl");
    cmd.arg("s_server")
        .args([
            "-accept",
            &format!("127.0.0.1:{port}"),
            "-naccept",
            "1",
            "-verify",
            "1",
        ])
        .args(case.ossl_args(&w))
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(w.path("renegotiation.server.err")).unwrap());
    let mut proc = Proc(cmd.spawn().unwrap());
    let cert = Arc::new(Certificate::generate().unwrap());
    let mut d = Driver {
        sock,
        ep: Some(DtlsEndpoint::client(
            Arc::new(our_cfg(1200)),
            cert,
            None,
            Instant::now(),
        )),
        peer: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        cookies: None,
        server_cfg: None,
        keys: None,
        failed: None,
        closed: false,
        max_sent: 0,
        app: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && d.keys.is_none() && d.failed.is_none() {
        d.step(deadline);
    }
    assert!(d.keys.is_some(), "no handshake: {:?}", d.failed);
    let run = |d: &mut Driver, ms: u64| {
        let t = Instant::now() + Duration::from_millis(ms);
        while Instant::now() < t {
            d.step(t);
        }
    };
    run(&mut d, 300);
    let stdin = proc.0.stdin.as_mut().unwrap();
    stdin.write_all(b"r\n").unwrap();
    stdin.flush().unwrap();
    run(&mut d, 700);
    stdin.write_all(b"hello from openssl\n").unwrap();
    stdin.flush().unwrap();
    run(&mut d, 700);
    d.ep.as_mut()
        .unwrap()
        .send_application_data(b"hello from rtp-core\n")
        .unwrap();
    run(&mut d, 700);
    let log = fs::read_to_string(&out).unwrap_or_default();
    assert!(d.failed.is_none(), "{:?}\n{log}", d.failed);
    assert!(d.ep.as_ref().unwrap().is_connected());
    assert!(
        d.app.iter().any(|a| a == b"hello from openssl\n"),
        "{:?}\n{log}",
        d.app
    );
    assert!(log.contains("hello from rtp-core"), "{log}");
    assert!(
        log.contains("SSL_do_handshake"),
        "s_server did not try to renegotiate\n{log}"
    );
}

/// An OpenSSL client without a certificate: our server (which requires one, as
/// DTLS-SRTP needs the fingerprint) fails the handshake with NoCertificate.
#[test]
fn server_rejects_client_without_certificate() {
    if !openssl_ok() {
        return;
    }
    let w = Work::new();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let mut cmd = Command::new("openssl");
    cmd.arg("s_client")
        .args([
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-noservername",
            "-dtls1_2",
        ])
        .args(["-use_srtp", "SRTP_AES128_CM_SHA1_80"])
        .stdin(Stdio::null())
        .stdout(fs::File::create(w.path("nocert.out")).unwrap())
        .stderr(fs::File::create(w.path("nocert.err")).unwrap());
    let mut proc = Proc(cmd.spawn().unwrap());
    let cert = Arc::new(Certificate::generate().unwrap());
    let mut d = Driver {
        sock,
        ep: None,
        peer: None,
        cookies: None,
        server_cfg: Some((Arc::new(our_cfg(1200)), cert)),
        keys: None,
        failed: None,
        closed: false,
        max_sent: 0,
        app: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && d.failed.is_none() && d.keys.is_none() {
        d.step(deadline);
    }
    assert!(d.keys.is_none());
    assert_eq!(
        d.failed,
        Some(rtp_control::dtls::DtlsError::NoCertificate.to_string())
    );
    // s_client hears our fatal alert and gives up.
    let t = Instant::now() + Duration::from_secs(5);
    let mut status = None;
    while Instant::now() < t && status.is_none() {
        d.step(t);
        status = proc.0.try_wait().unwrap();
    }
    assert!(
        status.is_some_and(|s| !s.success()),
        "s_client should fail: {status:?}"
    );
}
