//! `rtp-dtls` as people use it: against itself (with SRTP echo proving the keys)
//! and against OpenSSL's `s_server` / `s_client` (`-dtls1_2 -use_srtp
//! -keymatexport EXTRACTOR-dtls_srtp`), comparing the exported keying material
//! and the fingerprints. Ports are picked at run time; every process started is
//! killed by PID when the test ends, pass or fail.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_control::dtls::{Certificate, DtlsConfig, DtlsEndpoint, DtlsEvent};

use rtp_tools::interop::{self, require};

const BIN: &str = env!("CARGO_BIN_EXE_rtp-dtls");

/// Kills the child when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn have_openssl() -> bool {
    require(interop::have_openssl(), "openssl")
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn workdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtp-dtls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn openssl_cert(dir: &Path, name: &str, rsa: bool) -> (PathBuf, PathBuf) {
    interop::openssl_cert(dir, name, rsa).expect("openssl makes a certificate")
}

fn openssl_fingerprint(cert: &Path) -> String {
    interop::openssl_fingerprint(cert).expect("openssl fingerprint")
}

fn kv(out: &str) -> HashMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The keying material OpenSSL printed, upper-case hex.
fn openssl_material(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("Keying material: "))
        .map(|h| h.trim().to_uppercase())
}

fn openssl_profile(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.strip_prefix("SRTP Extension negotiated, profile="))
        .map(str::to_string)
}

/// Starts `rtp-dtls server` on port 0 and returns it with the port it bound.
fn tool_server(args: &[&str]) -> (Proc, u16, BufReader<std::process::ChildStdout>) {
    let mut c = Command::new(BIN)
        .args(["server", "--listen", "127.0.0.1:0", "--timeout", "15"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(c.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port = line
        .trim()
        .strip_prefix("LISTEN=")
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("LISTEN= line, got {line:?}"));
    (Proc(c), port, out)
}

fn rest(mut r: BufReader<std::process::ChildStdout>, p: &mut Proc) -> String {
    let mut s = String::new();
    let _ = std::io::Read::read_to_string(&mut r, &mut s);
    let _ = p.0.wait();
    s
}

#[test]
fn rtp_dtls_against_itself_agrees_on_keys_and_echoes_srtp() {
    for profiles in ["SRTP_AES128_CM_SHA1_80", "SRTP_AEAD_AES_256_GCM"] {
        let (mut srv, port, out) =
            tool_server(&["--cookies", "--echo", "20", "--profiles", profiles]);
        let cli = Command::new(BIN)
            .args(["client", "--connect", &format!("127.0.0.1:{port}")])
            .args(["--echo", "20", "--mtu", "300", "--timeout", "15"])
            .args(["--profiles", "SRTP_AES128_CM_SHA1_80:SRTP_AEAD_AES_256_GCM"])
            .output()
            .unwrap();
        let c = kv(&String::from_utf8_lossy(&cli.stdout));
        assert!(cli.status.success(), "client: {c:?}");
        let s = kv(&rest(out, &mut srv));
        assert_eq!(c["KEYING_MATERIAL"], s["KEYING_MATERIAL"]);
        assert_eq!(c["SRTP_PROFILE"], profiles, "the server's preference wins");
        assert_eq!(c["PEER_FINGERPRINT"], s["LOCAL_FINGERPRINT"]);
        assert_eq!(s["PEER_FINGERPRINT"], c["LOCAL_FINGERPRINT"]);
        assert_eq!(c["SRTP_ECHOED"], "20");
        assert_eq!(c["EMS"], "yes");
    }
}

#[test]
fn rtp_dtls_client_against_openssl_s_server() {
    if !have_openssl() {
        return;
    }
    let dir = workdir("cli");
    for (rsa, cipher) in [
        (false, "ECDHE-ECDSA-AES128-GCM-SHA256"),
        (true, "ECDHE-RSA-AES256-GCM-SHA384"),
    ] {
        let (cert, key) = openssl_cert(&dir, if rsa { "rsa" } else { "ec" }, rsa);
        let port = free_port();
        let mut srv = Proc(
            Command::new("openssl")
                .args([
                    "s_server",
                    "-dtls1_2",
                    "-accept",
                    &format!("127.0.0.1:{port}"),
                ])
                .args(["-naccept", "1", "-verify", "1", "-mtu", "1200"])
                .args(["-use_srtp", "SRTP_AEAD_AES_128_GCM:SRTP_AES128_CM_SHA1_80"])
                .args([
                    "-keymatexport",
                    "EXTRACTOR-dtls_srtp",
                    "-keymatexportlen",
                    "56",
                ])
                .args(["-cipher", cipher])
                .arg("-cert")
                .arg(&cert)
                .arg("-key")
                .arg(&key)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        std::thread::sleep(Duration::from_millis(300));
        let cli = Command::new(BIN)
            .args([
                "client",
                "--connect",
                &format!("127.0.0.1:{port}"),
                "--timeout",
                "10",
            ])
            .args(["--expect-fingerprint", &openssl_fingerprint(&cert)])
            .output()
            .unwrap();
        let c = kv(&String::from_utf8_lossy(&cli.stdout));
        assert!(cli.status.success(), "{cipher}: {c:?}");
        // s_server prints the keys right after the handshake; then stop it.
        let mut so = BufReader::new(srv.0.stdout.take().unwrap());
        let (mut text, deadline) = (String::new(), Instant::now() + Duration::from_secs(5));
        while Instant::now() < deadline && !text.contains("Keying material:") {
            let mut l = String::new();
            if so.read_line(&mut l).unwrap_or(0) == 0 {
                break;
            }
            text.push_str(&l);
        }
        drop(srv);
        assert_eq!(c["CIPHER"], cipher);
        assert_eq!(Some(c["SRTP_PROFILE"].clone()), openssl_profile(&text));
        assert_eq!(c["SRTP_PROFILE"], "SRTP_AEAD_AES_128_GCM", "server order");
        assert_eq!(
            Some(c["KEYING_MATERIAL"].clone()),
            openssl_material(&text),
            "{text}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn openssl_s_client_against_rtp_dtls_server_with_cookies_and_fragments() {
    if !have_openssl() {
        return;
    }
    let dir = workdir("srv");
    let (cert, key) = openssl_cert(&dir, "cli", false);
    let (mut srv, port, out) = tool_server(&["--cookies", "--mtu", "300"]);
    let o = Command::new("openssl")
        .args([
            "s_client",
            "-dtls1_2",
            "-connect",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-noservername", "-mtu", "300"])
        .args(["-use_srtp", "SRTP_AES128_CM_SHA1_32:SRTP_AES128_CM_SHA1_80"])
        .args([
            "-keymatexport",
            "EXTRACTOR-dtls_srtp",
            "-keymatexportlen",
            "60",
        ])
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let s = kv(&rest(out, &mut srv));
    assert_eq!(
        s.get("ROLE").map(String::as_str),
        Some("server"),
        "{s:?}\n{text}"
    );
    assert_eq!(Some(s["KEYING_MATERIAL"].clone()), openssl_material(&text));
    assert_eq!(Some(s["SRTP_PROFILE"].clone()), openssl_profile(&text));
    assert_eq!(s["PEER_FINGERPRINT"], openssl_fingerprint(&cert));
    let _ = std::fs::remove_dir_all(dir);
}

/// The fixed test certificates of `control/tests/fixtures` (paths, fingerprint).
fn fixture(name: &str) -> (PathBuf, PathBuf, String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/tests/fixtures");
    let (cert, key) = (
        dir.join(format!("dtls_{name}.pem")),
        dir.join(format!("dtls_{name}.key")),
    );
    let fp = Certificate::from_pem(
        &std::fs::read_to_string(&cert).unwrap(),
        &std::fs::read_to_string(&key).unwrap(),
    )
    .unwrap()
    .fingerprint()
    .to_string();
    (cert, key, fp)
}

#[test]
fn rtp_dtls_loads_pem_certificates_and_selects_the_cipher() {
    let (scert, skey, sfp) = fixture("server");
    let (ccert, ckey, cfp) = fixture("client");
    let (scert, skey) = (scert.to_str().unwrap(), skey.to_str().unwrap());
    let (mut srv, port, out) = tool_server(&["--cert", scert, "--key", skey]);
    let cipher = "ECDHE-ECDSA-AES256-GCM-SHA384";
    let cli = Command::new(BIN)
        .args(["client", "--connect", &format!("127.0.0.1:{port}")])
        .args(["--timeout", "10", "--cipher", cipher])
        .arg("--cert")
        .arg(&ccert)
        .arg("--key")
        .arg(&ckey)
        .args(["--expect-fingerprint", &sfp])
        .output()
        .unwrap();
    let c = kv(&String::from_utf8_lossy(&cli.stdout));
    assert!(cli.status.success(), "client: {c:?}");
    let s = kv(&rest(out, &mut srv));
    assert_eq!(
        (c["CIPHER"].as_str(), s["CIPHER"].as_str()),
        (cipher, cipher)
    );
    assert_eq!(
        (
            s["LOCAL_FINGERPRINT"].as_str(),
            c["PEER_FINGERPRINT"].as_str()
        ),
        (&*sfp, &*sfp)
    );
    assert_eq!(
        (
            c["LOCAL_FINGERPRINT"].as_str(),
            s["PEER_FINGERPRINT"].as_str()
        ),
        (&*cfp, &*cfp)
    );
    assert_eq!(c["KEYING_MATERIAL"], s["KEYING_MATERIAL"]);
}

#[test]
fn rtp_dtls_with_a_wrong_expected_fingerprint_fails() {
    let (mut srv, port, out) = tool_server(&[]);
    let wrong = format!("sha-256 {}", ["00"; 32].join(":"));
    let cli = Command::new(BIN)
        .args(["client", "--connect", &format!("127.0.0.1:{port}")])
        .args(["--timeout", "5", "--expect-fingerprint", &wrong])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&cli.stderr);
    assert_eq!(cli.status.code(), Some(1), "{stderr}");
    assert!(String::from_utf8_lossy(&cli.stdout).contains("RESULT=failed"));
    assert!(stderr.contains("fingerprint"), "{stderr}");
    assert!(!kv(&rest(out, &mut srv)).contains_key("KEYING_MATERIAL"));
    assert!(
        !srv.0.wait().unwrap().success(),
        "the server got bad_certificate"
    );
}

#[test]
fn rtp_dtls_rejects_options_that_cannot_work() {
    for (args, says) in [
        (
            &["server", "--cipher", "ECDHE-RSA-AES128-GCM-SHA256"][..],
            "ECDHE-ECDSA",
        ),
        (&["client", "--mtu", "63"][..], "--mtu 63"),
        (&["client", "--profiles", ""][..], "--profiles"),
        (&["client", "--cipher", ":"][..], "--cipher"),
    ] {
        let addr = if args[0] == "server" {
            "--listen"
        } else {
            "--connect"
        };
        let o = Command::new(BIN)
            .args(&args[..1])
            .args([addr, "127.0.0.1:0"])
            .args(&args[1..])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(
            o.stdout.is_empty(),
            "{args:?}: nothing bound, nothing printed"
        );
    }
}

/// With `--echo 0` nothing but the handshake proves the client has the
/// server's final flight: the server stays to answer the client's
/// retransmission when that flight is lost.
#[test]
fn rtp_dtls_server_answers_a_client_that_lost_its_final_flight() {
    let (mut srv, port, out) = tool_server(&[]);
    let server: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let cert = Arc::new(Certificate::generate().unwrap());
    let mut ep = DtlsEndpoint::client(Arc::new(DtlsConfig::default()), cert, None, Instant::now());
    let deadline = Instant::now() + Duration::from_secs(8);
    let (mut buf, mut dropped) = (vec![0u8; 2048], 0);
    let connected = loop {
        let now = Instant::now();
        assert!(now < deadline, "not connected (dropped {dropped})");
        if ep.poll_timeout().is_some_and(|t| t <= now) {
            ep.handle_timeout(now);
        }
        while let Some(d) = ep.poll_transmit() {
            sock.send_to(&d, server).unwrap();
        }
        match ep.poll_event() {
            Some(DtlsEvent::Connected(k)) => break k,
            Some(e) => panic!("{e:?}"),
            None => {}
        }
        let Ok((n, _)) = sock.recv_from(&mut buf) else {
            continue;
        };
        // The server's ChangeCipherSpec and epoch-1 Finished: lost until we
        // retransmitted our flight once.
        let final_flight = buf[0] == 20 || buf[3..5] == [0, 1];
        if final_flight && ep.retransmissions() == 0 {
            dropped += 1;
            continue;
        }
        ep.handle_datagram(&buf[..n], Instant::now());
    };
    assert!(dropped > 0);
    ep.close();
    while let Some(d) = ep.poll_transmit() {
        sock.send_to(&d, server).unwrap();
    }
    let s = kv(&rest(out, &mut srv));
    assert_eq!(s["KEYING_MATERIAL"], hex(&connected.keying_material));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02X}")).collect()
}
