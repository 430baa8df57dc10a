//! DTLS-SRTP media with GStreamer's dtlssrtpenc/dtlssrtpdec (OpenSSL DTLS and
//! libsrtp underneath: a second, independent stack): GStreamer connects as the
//! DTLS client to an Engine leg in the server role; the engine verifies its
//! certificate against the signalled fingerprint, installs the keys, and relays
//! SRTP <-> plain RTP both ways.

use std::io::Read;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtp_control::dataplane::{BackendChoice, BackendKind};
use rtp_control::dtls::{Fingerprint, Role};
use rtp_control::{DtlsLegParams, Engine, EngineEvent, LegConfig};
use rtp_core::rtp::RtpBuilder;
use rtp_core::srtp::SrtpProfile;
use rtp_tools::interop::{free_port_range, openssl_cert, openssl_fingerprint, require};

const GST_SSRC: u32 = 0x600D_F00D;

/// The system Python (python3-gi is a Debian package; a user's pyenv or venv
/// `python3` first on PATH would not have it).
const PYTHON: &str = "/usr/bin/python3";

fn have_gst_python() -> bool {
    let ok = Command::new(PYTHON)
        .args(["-c", "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst; Gst.init(None); assert Gst.ElementFactory.find('dtlssrtpenc')"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    require(ok, "GStreamer (plugins-bad) with python3-gi")
}

/// A certificate + key PEM for GStreamer, and its fingerprint.
fn gst_pem(dir: &std::path::Path) -> (PathBuf, Fingerprint) {
    let (c, k) = openssl_cert(dir, "gst", false).expect("openssl makes a certificate");
    let cert = std::fs::read_to_string(&c).unwrap();
    let key = std::fs::read_to_string(&k).unwrap();
    let pem = dir.join("gst.pem");
    std::fs::write(&pem, format!("{cert}{key}")).unwrap();
    let fp = openssl_fingerprint(&c).expect("fingerprint");
    (pem, fp.parse().unwrap())
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let n = RtpBuilder::new()
        .payload_type(0)
        .sequence_number(seq)
        .timestamp(u32::from(seq) * 160)
        .ssrc(0xA)
        .payload(&[0xFF; 160])
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn gstreamer_dtls_srtp_client_through_an_engine_leg() {
    if !have_gst_python() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("dtls-gst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (pem, gst_fp) = gst_pem(&dir);
    let (lo, hi) = free_port_range(20);
    let e = Engine::builder()
        .ports(lo, hi)
        .backend(BackendChoice::Only(BackendKind::Mmsg))
        .pool_frames(1024)
        .start()
        .unwrap();
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    let call = e
        .create_call([
            LegConfig {
                remote: Some(a.local_addr().unwrap()),
                ..LegConfig::default()
            },
            LegConfig {
                dtls: Some(DtlsLegParams {
                    role: Some(Role::Server),
                    fingerprint: Some(gst_fp.clone()),
                }),
                ..LegConfig::default()
            },
        ])
        .unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/gst_dtls_client.py"
    );
    let mut child = Command::new(PYTHON)
        .arg(script)
        .args(["--remote-port", &call.legs[1].local.port().to_string()])
        .arg("--pem")
        .arg(&pem)
        .args(["--duration", "4"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The plain side: sends PCMU to the engine every 20 ms, counts what GStreamer
    // sent (decrypted by the engine).
    let stop = Arc::new(AtomicBool::new(false));
    let plain = {
        let (a, stop, to) = (a.try_clone().unwrap(), stop.clone(), call.legs[0].local);
        std::thread::spawn(move || {
            let (mut seq, mut got, mut buf) = (0u16, 0usize, [0u8; 2048]);
            let mut next = Instant::now();
            while !stop.load(Ordering::Acquire) {
                if Instant::now() >= next {
                    let _ = a.send_to(&rtp(seq), to);
                    seq = seq.wrapping_add(1);
                    next += Duration::from_millis(20);
                }
                if let Ok(n) = a.recv(&mut buf) {
                    if n >= 12 && u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]) == GST_SSRC
                    {
                        got += 1;
                    }
                }
            }
            got
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    stop.store(true, Ordering::Release);
    let from_gst = plain.join().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(status.is_some_and(|s| s.success()), "gst helper: {out}");
    let kv = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(kv("CONNECTED"), "yes", "{out}");
    assert_eq!(kv("PEER_FINGERPRINT"), e.fingerprint().to_string());
    let to_gst: usize = kv("RTP_RECEIVED").parse().unwrap_or(0);
    eprintln!("GStreamer decrypted {to_gst} packets from the engine; the engine relayed {from_gst} of GStreamer's");
    assert!(
        to_gst >= 50,
        "GStreamer decrypted {to_gst} packets from the engine\n{out}"
    );
    assert!(
        from_gst >= 50,
        "the engine relayed {from_gst} of GStreamer's packets"
    );
    let mut connected = None;
    while let Some(ev) = e.next_event(Duration::from_millis(10)) {
        if let EngineEvent::DtlsConnected { profile, .. } = ev {
            connected = Some(profile);
        }
    }
    assert_eq!(connected, Some(SrtpProfile::AesCm128HmacSha1_80));
    e.shutdown();
    let _ = std::fs::remove_dir_all(dir);
}
