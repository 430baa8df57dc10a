//! `rtp-pcap decrypt` and `encrypt` against a real SRTP implementation: GStreamer's
//! srtpenc (libsrtp 2) produces the encrypted capture we decrypt, and srtpdec must
//! accept what we encrypt. Needs gst-launch-1.0 (installed by `.ci/install.sh`);
//! fails, not skips, without it.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rtp_tools::pcap::capture::{CaptureReader, CaptureWriter};
use rtp_tools::pcap::net::{build_ip_udp, linktype};

#[path = "../../tests/support/gst.rs"]
mod gst;
use gst::{gst_path, hex, srtpdec_accepts, Reap};

const SSRC: u32 = 287_454_020;
const BIN: &str = env!("CARGO_BIN_EXE_rtp-pcap");

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rtp-pcap-crypt-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// GStreamer srtpenc sends `n` PCMU packets of silence (every payload byte 0xFF)
/// from seq 65520 to a socket of ours; we record them into a raw-IP pcap at `path`.
fn capture_gst_srtp(key_salt: &[u8], cipher: &str, auth: &str, n: usize, path: &Path) {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let dst = sock.local_addr().unwrap();
    let pipeline = format!(
        "audiotestsrc is-live=true wave=silence num-buffers={n} samplesperbuffer=160 \
         ! audio/x-raw,rate=8000,channels=1 ! mulawenc \
         ! rtppcmupay pt=0 ssrc={SSRC} seqnum-offset=65520 timestamp-offset=0 \
         ! srtpenc key={} rtp-cipher={cipher} rtp-auth={auth} rtcp-cipher={cipher} rtcp-auth={auth} \
         ! udpsink host=127.0.0.1 port={}",
        hex(key_salt),
        dst.port()
    );
    let _gst = Reap(
        Command::new(gst_path())
            .arg("-q")
            .args(pipeline.split_whitespace())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut w = CaptureWriter::create(path, linktype::RAW).unwrap();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    while got < n && Instant::now() < deadline {
        let Ok((len, src)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let frame = build_ip_udp(src, dst, &buf[..len]).unwrap();
        w.write_raw(t0 + Duration::from_millis(20 * got as u64), &frame)
            .unwrap();
        got += 1;
    }
    w.finish().unwrap();
    assert_eq!(got, n, "GStreamer sent {got} of {n} packets");
}

fn run_tool(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// (source, payload) of every frame.
fn payloads(path: &Path) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut r = CaptureReader::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(f) = r.next_frame() {
        let f = f.unwrap();
        let (u, p) = f.udp_payload().expect("UDP frame");
        v.push((u.src, p.to_vec()));
    }
    v
}

fn json_total(text: &str, field: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(text).expect("JSON report");
    v["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

#[test]
fn decrypt_a_gstreamer_capture_then_encrypt_for_srtpdec() {
    let dir = tmpdir("roundtrip");
    let key: Vec<u8> = (0..30u8).map(|i| i.wrapping_mul(11)).collect();
    let b64 = STANDARD.encode(&key);
    let enc = dir.join("gst_srtp.pcap");
    capture_gst_srtp(&key, "aes-128-icm", "hmac-sha1-80", 40, &enc);

    // Decrypt: every packet authenticates, and the output is plain RTP whose payload
    // is GStreamer's: 160 bytes of PCMU silence (0xFF; the ciphertext is not).
    let dec = dir.join("plain.pcap");
    let (ok, out) = run_tool(&[
        "decrypt",
        "--profile",
        "AES_CM_128_HMAC_SHA1_80",
        "--key",
        &b64,
        "--json",
        enc.to_str().unwrap(),
        dec.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(json_total(&out, "ok"), 40, "{out}");
    assert_eq!(json_total(&out, "auth_failed"), 0, "{out}");
    let plain = payloads(&dec);
    assert_eq!(plain.len(), 40);
    for (_, p) in &plain {
        assert_eq!(p.len(), 172);
        assert_eq!(u32::from_be_bytes([p[8], p[9], p[10], p[11]]), SSRC);
        assert!(
            p[12..].iter().all(|b| *b == 0xff),
            "not decrypted: {p:02x?}"
        );
    }
    // And the analyser sees one clean stream across the wrap.
    let (ok, stats) = run_tool(&["stats", "--json", dec.to_str().unwrap()]);
    assert!(ok, "{stats}");
    assert!(stats.contains("\"lost\": 0"), "{stats}");

    // Encrypt with another key (via an SDP file, GCM this time, bound to the port
    // GStreamer sent from) and replay to srtpdec.
    let key2: Vec<u8> = (0..28u8)
        .map(|i| i.wrapping_mul(5).wrapping_add(9))
        .collect();
    let sender_port = plain[0].0.port();
    let sdp = dir.join("offer.sdp");
    std::fs::write(
        &sdp,
        format!(
            "v=0\r\nm=audio {sender_port} RTP/SAVP 0\r\na=crypto:1 AEAD_AES_128_GCM inline:{}\r\n",
            STANDARD.encode(&key2)
        ),
    )
    .unwrap();
    let enc2 = dir.join("ours_srtp.pcap");
    let (ok, out) = run_tool(&[
        "encrypt",
        "--sdp",
        sdp.to_str().unwrap(),
        "--json",
        dec.to_str().unwrap(),
        enc2.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    assert_eq!(json_total(&out, "ok"), 40, "{out}");

    let packets: Vec<Vec<u8>> = payloads(&enc2).into_iter().map(|(_, p)| p).collect();
    let chains = srtpdec_accepts(SSRC, &key2, "aes-128-gcm", "null", "null", &packets);
    assert_eq!(
        chains, 40,
        "srtpdec accepted {chains} of 40 packets we encrypted"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn wrong_key_counts_failures_and_fails() {
    let dir = tmpdir("wrongkey");
    let key: Vec<u8> = (0..30u8).collect();
    let enc = dir.join("gst_srtp.pcap");
    capture_gst_srtp(&key, "aes-128-icm", "hmac-sha1-80", 10, &enc);
    let wrong = STANDARD.encode([7u8; 30]);
    let (ok, out) = run_tool(&[
        "decrypt",
        "--key",
        &wrong,
        "--json",
        enc.to_str().unwrap(),
        dir.join("out.pcap").to_str().unwrap(),
    ]);
    assert!(!ok, "a capture where nothing authenticates must fail");
    assert_eq!(json_total(&out, "auth_failed"), 10, "{out}");
    assert_eq!(json_total(&out, "ok"), 0, "{out}");
    // Frames that fail are copied unchanged.
    assert_eq!(payloads(&dir.join("out.pcap")), payloads(&enc));
    // Garbage input is a clear error, not a panic.
    std::fs::write(dir.join("junk.pcap"), b"not a capture at all").unwrap();
    let (ok, _) = run_tool(&[
        "decrypt",
        "--key",
        &wrong,
        dir.join("junk.pcap").to_str().unwrap(),
        dir.join("out2.pcap").to_str().unwrap(),
    ]);
    assert!(!ok);
    std::fs::remove_dir_all(&dir).ok();
}
