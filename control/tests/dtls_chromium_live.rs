//! Live interop with headless Chromium (WebRTC, DTLS-SRTP) on 127.0.0.1, both
//! DTLS roles. Chromium offers; this test binary, re-executed as the answerer
//! inside the recipe's network namespace (`chromium_webrtc.sh offer`), answers as
//! an ICE-lite peer, runs our DTLS endpoint and decrypts Chromium's SRTP with the
//! exported keys.
//!
//! Runs when `chromium` is installed and the interop recipes are found
//! (`RTP_INTEROP_DIR`, or `shared/interop` next to the repository, or
//! `/work/shared/interop`). Chromium is not part of the CI install and the
//! recipes live outside the repository, so these tests are opt-in (`#[ignore]`):
//! `cargo test -p rtp-control --test dtls_chromium_live -- --ignored`. The CI
//! proof for Chromium is the captured ClientHello replayed in `dtls_chromium.rs`.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rtp_control::dtls::{
    Certificate, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsEvent, DtlsKeys,
    Fingerprint,
};
use rtp_core::srtp::SrtpContext;

const CHILD_ENV: &str = "RTP_DTLS_CHROMIUM_CHILD";

fn recipes() -> Option<PathBuf> {
    let mut c: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("RTP_INTEROP_DIR") {
        c.push(d.into());
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    c.push(repo.join("../shared/interop"));
    c.push(repo.join("shared/interop"));
    c.push("/work/shared/interop".into());
    c.into_iter()
        .find(|d| d.join("chromium_webrtc.sh").is_file())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run_live(setup: &str, cookie: bool) {
    let Some(dir) = recipes() else {
        eprintln!("note: interop recipes not found, Chromium live test skipped");
        return;
    };
    if !(have("chromium") && have("unshare") && have("dumpcap") && have("tshark")) {
        eprintln!("note: chromium/unshare/dumpcap/tshark missing, Chromium live test skipped");
        return;
    }
    let work = std::env::temp_dir().join(format!(
        "rtp-dtls-chromium-{setup}-{cookie}-{}",
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("timeout")
        .args(["120", "bash"])
        .arg(dir.join("chromium_webrtc.sh"))
        .arg("offer")
        .arg(&work)
        .arg("--")
        .arg(&exe)
        .args([
            "--exact",
            "chromium_answerer_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &work)
        .env("RTP_DTLS_CHROMIUM_SETUP", setup)
        .env("RTP_DTLS_CHROMIUM_COOKIE", if cookie { "1" } else { "0" })
        .env("TIMEOUT", "60")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result = fs::read_to_string(work.join("answerer-result.txt")).unwrap_or_default();
    let log = fs::read_to_string(work.join("answerer.log")).unwrap_or_default();
    eprintln!("chromium ({setup}):\n{stdout}\nanswerer:\n{result}");
    assert!(
        out.status.success(),
        "Chromium did not connect\n{stdout}\n{}\nanswerer log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(result.contains("CONNECTED=1"), "{result}\n{log}");
    let srtp_ok: usize = result
        .lines()
        .find_map(|l| l.strip_prefix("SRTP_OK="))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        srtp_ok >= 20,
        "decrypted only {srtp_ok} SRTP packets from Chromium\n{result}"
    );
    assert!(result.contains("SRTP_FAIL=0"), "{result}");
    // Chromium reports DTLS 1.2 with our parameters.
    assert!(stdout.contains("tlsVersion=FEFD"), "{stdout}");
    if cookie {
        assert!(
            !result.contains("HVR_SENT=0"),
            "no HelloVerifyRequest sent\n{result}"
        );
    }
    let _ = fs::remove_dir_all(&work);
}

#[test]
#[ignore = "opt-in: needs chromium (not in the CI install) and the shared interop recipes; run with -- --ignored"]
fn chromium_is_dtls_client_we_are_server() {
    run_live("passive", false);
}

#[test]
#[ignore = "opt-in: needs chromium (not in the CI install) and the shared interop recipes; run with -- --ignored"]
fn chromium_is_dtls_client_through_the_cookie_exchange() {
    run_live("passive", true);
}

#[test]
#[ignore = "opt-in: needs chromium (not in the CI install) and the shared interop recipes; run with -- --ignored"]
fn chromium_is_dtls_server_we_are_client() {
    run_live("active", false);
}

// ------------------------------------------------------------------ the answerer

fn sdp_attr<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim_end().strip_prefix(&format!("a={name}:")))
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A Binding success response (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
fn stun_response(req: &[u8], from: SocketAddr, pwd: &str) -> Option<Vec<u8>> {
    if req.len() < 20 || req[0..2] != [0, 1] || req[4..8] != [0x21, 0x12, 0xA4, 0x42] {
        return None;
    }
    let mut m = vec![0x01, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42];
    m.extend_from_slice(&req[8..20]);
    let SocketAddr::V4(a) = from else { return None };
    m.extend_from_slice(&[0x00, 0x20, 0, 8, 0, 1]);
    m.extend_from_slice(&(a.port() ^ 0x2112).to_be_bytes());
    let ip = u32::from(*a.ip()) ^ 0x2112_A442;
    m.extend_from_slice(&ip.to_be_bytes());
    let set_len = |m: &mut Vec<u8>, extra: usize| {
        let l = (m.len() - 20 + extra) as u16;
        m[2..4].copy_from_slice(&l.to_be_bytes());
    };
    set_len(&mut m, 24);
    let mut h = <Hmac<sha1::Sha1> as Mac>::new_from_slice(pwd.as_bytes()).unwrap();
    h.update(&m);
    let mi = h.finalize().into_bytes();
    m.extend_from_slice(&[0x00, 0x08, 0, 20]);
    m.extend_from_slice(&mi);
    set_len(&mut m, 8);
    let fp = crc32(&m) ^ 0x5354_554E;
    m.extend_from_slice(&[0x80, 0x28, 0, 4]);
    m.extend_from_slice(&fp.to_be_bytes());
    Some(m)
}

#[test]
fn chromium_answerer_child() {
    let Some(work) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let work = PathBuf::from(work);
    let setup = std::env::var("RTP_DTLS_CHROMIUM_SETUP").unwrap_or_else(|_| "passive".into());
    let mut result = String::new();
    let offer_path = work.join("offer.sdp");
    let t0 = Instant::now();
    while !offer_path.exists() && t0.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(100));
    let offer = fs::read_to_string(&offer_path).expect("offer.sdp");
    let fp: Fingerprint = sdp_attr(&offer, "fingerprint")
        .expect("a=fingerprint")
        .parse()
        .unwrap();
    let cert = Arc::new(Certificate::generate().unwrap());
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    let (ufrag, pwd) = ("rtpcore", "rtpcoreicepassword0123456789");
    let answer = [
        "v=0".to_string(),
        "o=- 4611731400430051336 2 IN IP4 127.0.0.1".into(),
        "s=-".into(),
        "t=0 0".into(),
        "a=group:BUNDLE 0".into(),
        "a=ice-lite".into(),
        format!("m=audio {port} UDP/TLS/RTP/SAVPF 111"),
        "c=IN IP4 127.0.0.1".into(),
        "a=mid:0".into(),
        format!("a=ice-ufrag:{ufrag}"),
        format!("a=ice-pwd:{pwd}"),
        format!("a=fingerprint:{}", cert.fingerprint()),
        format!("a=setup:{setup}"),
        "a=rtcp-mux".into(),
        "a=recvonly".into(),
        "a=rtpmap:111 opus/48000/2".into(),
        format!("a=candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host"),
        "a=end-of-candidates".into(),
        String::new(),
    ]
    .join("\r\n");
    fs::write(work.join("answer.tmp"), answer).unwrap();
    fs::rename(work.join("answer.tmp"), work.join("answer.sdp")).unwrap();

    let cfg = Arc::new(DtlsConfig::default());
    let cookies = (std::env::var("RTP_DTLS_CHROMIUM_COOKIE").as_deref() == Ok("1"))
        .then(|| CookieKeys::new(Instant::now()));
    let mut hvr_sent = 0usize;
    let mut ep: Option<DtlsEndpoint> = None;
    let mut peer: Option<SocketAddr> = None;
    let mut keys: Option<Box<DtlsKeys>> = None;
    let mut srtp: Option<SrtpContext> = None;
    let (mut ok, mut fail, mut stun) = (0usize, 0usize, 0usize);
    let mut failed = None;
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && ok < 50 && failed.is_none() {
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let now = Instant::now();
            match buf[0] {
                0..=3 => {
                    if let Some(r) = stun_response(&buf[..n], from, pwd) {
                        stun += 1;
                        let _ = sock.send_to(&r, from);
                        if peer.is_none() {
                            peer = Some(from);
                        }
                        if ep.is_none() && cookies.is_none() {
                            ep = Some(if setup == "passive" {
                                DtlsEndpoint::server(
                                    cfg.clone(),
                                    cert.clone(),
                                    Some(fp.clone()),
                                    now,
                                )
                            } else {
                                DtlsEndpoint::client(
                                    cfg.clone(),
                                    cert.clone(),
                                    Some(fp.clone()),
                                    now,
                                )
                            });
                        }
                    }
                }
                20..=63 if Some(from) == peer => {
                    if ep.is_none() {
                        // The stateless front door: endpoints only for a valid cookie.
                        match cookies.as_ref().map(|c| c.check(from, &buf[..n])) {
                            Some(CookieVerdict::Respond(hvr)) => {
                                hvr_sent += 1;
                                let _ = sock.send_to(&hvr, from);
                            }
                            Some(CookieVerdict::Accept) => {
                                ep = Some(DtlsEndpoint::server(
                                    cfg.clone(),
                                    cert.clone(),
                                    Some(fp.clone()),
                                    now,
                                ));
                            }
                            _ => {}
                        }
                    }
                    if let Some(e) = ep.as_mut() {
                        e.handle_datagram(&buf[..n], now);
                    }
                }
                128..=191 => {
                    if let Some(ctx) = srtp.as_mut() {
                        let pt = buf[1] & 0x7F;
                        if (64..96).contains(&pt) {
                            // RTCP (rtcp-mux): not counted.
                        } else {
                            match ctx.unprotect_rtp(&mut buf[..n]) {
                                Ok(_) => ok += 1,
                                Err(_) => fail += 1,
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if let Some(e) = ep.as_mut() {
            let now = Instant::now();
            if e.poll_timeout().is_some_and(|t| t <= now) {
                e.handle_timeout(now);
            }
            while let Some(d) = e.poll_transmit() {
                if let Some(p) = peer {
                    let _ = sock.send_to(&d, p);
                }
            }
            while let Some(ev) = e.poll_event() {
                match ev {
                    DtlsEvent::Connected(k) => {
                        let (_, inbound) = k.srtp_configs().unwrap();
                        srtp = Some(SrtpContext::new(inbound).unwrap());
                        keys = Some(k);
                    }
                    DtlsEvent::Failed(err) => failed = Some(err.to_string()),
                    _ => {}
                }
            }
        }
    }
    result.push_str(&format!("STUN_ANSWERED={stun}\nHVR_SENT={hvr_sent}\n"));
    if let Some(k) = &keys {
        result.push_str(&format!(
            "CONNECTED=1\nROLE={:?}\nCIPHER={}\nGROUP={:?}\nSRTP_PROFILE={:?}\nEMS={}\nPEER_FINGERPRINT_OK={}\n",
            k.role,
            k.cipher_suite,
            k.group,
            k.srtp_profile,
            k.extended_master_secret,
            k.peer_fingerprint == fp
        ));
    } else {
        result.push_str(&format!("CONNECTED=0\nFAILED={failed:?}\n"));
    }
    result.push_str(&format!("SRTP_OK={ok}\nSRTP_FAIL={fail}\n"));
    fs::write(work.join("answerer-result.txt"), result).unwrap();
}
