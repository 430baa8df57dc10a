//! `rtp-pcap decrypt` / `encrypt` on synthetic captures: what is skipped and why,
//! which key a packet takes, multi-interface pcapng, MKI. The packets are made with
//! rtp-core's SRTP; the GStreamer interop is in `pcap_crypt.rs`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};
use rtp_tools::pcap::capture::{CaptureFormat, CaptureReader, CaptureWriter, Frame};
use rtp_tools::pcap::net::{build_ip_udp, linktype};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_rtp-pcap");
const P: SrtpProfile = SrtpProfile::AesCm128HmacSha1_80;

struct TmpDir(PathBuf);

impl TmpDir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("rtp-pcap-cases-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        TmpDir(d)
    }
    fn path(&self, f: &str) -> String {
        self.0.join(f).to_str().unwrap().to_string()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn key(b: u8) -> Vec<u8> {
    (0..30u8)
        .map(|i| i.wrapping_mul(b).wrapping_add(1))
        .collect()
}

/// A plain RTP packet: PT 0, `seq`, `ssrc`, 20 payload bytes of `seq as u8`.
fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[seq as u8; 20]);
    p
}

/// A sending context for crafting captures: it may go back more than 64 indices
/// (to make a packet too old for the reader's replay window).
fn ctx(key_salt: &[u8], mki: Option<&[u8]>) -> SrtpContext {
    let mut cfg = SrtpConfig::from_key_salt(P, key_salt)
        .unwrap()
        .with_allow_repeat_tx(true);
    if let Some(m) = mki {
        cfg = cfg.with_mki(m).unwrap();
    }
    SrtpContext::new(cfg).unwrap()
}

fn protect(c: &mut SrtpContext, plain: &[u8]) -> Vec<u8> {
    let mut buf = plain.to_vec();
    buf.resize(plain.len() + 64, 0);
    let n = c.protect_rtp(&mut buf, plain.len()).unwrap();
    buf.truncate(n);
    buf
}

/// A raw-IP capture of (src port, dst port, payload) datagrams.
fn write_raw_ip(path: &str, linktype: u32, datagrams: &[(u16, u16, Vec<u8>)]) {
    let mut w = CaptureWriter::create(path, linktype).unwrap();
    for (i, (s, d, p)) in datagrams.iter().enumerate() {
        let ip = build_ip_udp(addr(*s), addr(*d), p).unwrap();
        w.write_raw(Duration::from_millis(20 * i as u64 + 1000), &ip)
            .unwrap();
    }
    w.finish().unwrap();
}

fn frames(path: &str) -> Vec<Frame> {
    CaptureReader::open(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn payload(f: &Frame) -> Vec<u8> {
    f.udp_payload().expect("UDP frame").1.to_vec()
}

/// Runs the tool: (success, JSON report if any, stderr).
fn run(args: &[&str]) -> (bool, Value, String) {
    let out = Command::new(BIN).args(args).arg("--json").output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (
        out.status.success(),
        json,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn total(j: &Value, field: &str) -> u64 {
    j["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s[field].as_u64().unwrap())
        .sum()
}

fn stream(j: &Value, src: u16, ssrc: u32) -> &Value {
    let src = addr(src).to_string();
    j["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["src"] == src.as_str() && s["ssrc"] == ssrc)
        .unwrap_or_else(|| panic!("no stream from {src} ssrc {ssrc}: {j}"))
}

#[test]
fn unsupported_link_type_and_truncated_frames_are_errors_with_reasons() {
    let dir = TmpDir::new("linktype");
    let b64 = STANDARD.encode(key(3));
    let mut tx = ctx(&key(3), None);
    let pkts: Vec<_> = (0..3)
        .map(|s| (40000, 50000, protect(&mut tx, &rtp(s, 7))))
        .collect();

    // Link type 147 (USER0): nothing parses, so the run fails and says why.
    write_raw_ip(&dir.path("user0.pcap"), 147, &pkts);
    let (ok, j, err) = run(&[
        "decrypt",
        "--key",
        &b64,
        &dir.path("user0.pcap"),
        &dir.path("o1.pcap"),
    ]);
    assert!(!ok, "{j}");
    assert!(err.contains("unsupported link type 147"), "{err}");
    assert_eq!(j["skipped"]["unsupported_link_type"]["147"], 3, "{j}");
    assert_eq!(j["unchanged"], 3);

    // A frame cut by the snap length is counted as truncated and copied as it was.
    write_raw_ip(&dir.path("raw.pcap"), linktype::RAW, &pkts);
    let mut cut = frames(&dir.path("raw.pcap"));
    cut[1].data.truncate(40);
    let mut w = CaptureWriter::create(dir.path("cut.pcap"), linktype::RAW).unwrap();
    for f in &cut {
        w.write_frame(f).unwrap();
    }
    w.finish().unwrap();
    let (ok, j, err) = run(&[
        "decrypt",
        "--key",
        &b64,
        &dir.path("cut.pcap"),
        &dir.path("o2.pcap"),
    ]);
    assert!(ok, "{err}");
    assert_eq!(j["skipped"]["truncated"], 1, "{j}");
    assert_eq!((total(&j, "ok"), j["udp"].as_u64()), (2, Some(2)), "{j}");
    let out = frames(&dir.path("o2.pcap"));
    assert_eq!(
        (out[1].data.clone(), out[1].orig_len),
        (cut[1].data.clone(), cut[1].orig_len)
    );
    assert_eq!(payload(&out[0]), rtp(0, 7));

    // Only truncated frames: an error naming the reason.
    let mut w = CaptureWriter::create(dir.path("cut1.pcap"), linktype::RAW).unwrap();
    w.write_frame(&cut[1]).unwrap();
    w.finish().unwrap();
    let (ok, _, err) = run(&[
        "decrypt",
        "--key",
        &b64,
        &dir.path("cut1.pcap"),
        &dir.path("o3.pcap"),
    ]);
    assert!(!ok && err.contains("1 truncated"), "{err}");
}

#[test]
fn two_interface_pcapng_is_decrypted_whole() {
    let dir = TmpDir::new("pcapng");
    let mut tx = ctx(&key(5), None);
    let mut w = PcapNgWriter::new(Vec::new()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 65535))
        .unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::RAW, 65535))
        .unwrap();
    for seq in 0..4u16 {
        let ip = build_ip_udp(addr(40000), addr(50000), &protect(&mut tx, &rtp(seq, 9))).unwrap();
        let iface = u32::from(seq % 2);
        let data = if iface == 0 {
            let mut eth = vec![0u8; 12];
            eth.extend_from_slice(&[0x08, 0x00]);
            eth.extend_from_slice(&ip);
            eth
        } else {
            ip
        };
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: iface,
            timestamp: Duration::from_micros(1_000_000 + u64::from(seq)),
            original_len: data.len() as u32,
            data: Cow::Owned(data),
            options: vec![],
        })
        .unwrap();
    }
    let input = dir.path("two.pcapng");
    std::fs::write(&input, w.into_inner()).unwrap();
    let output = dir.path("out.pcapng");
    let (ok, j, err) = run(&[
        "decrypt",
        "--key",
        &STANDARD.encode(key(5)),
        &input,
        &output,
    ]);
    assert!(ok, "{err} {j}");
    assert_eq!(
        (total(&j, "ok"), j["dropped"].as_u64()),
        (4, Some(0)),
        "{j}"
    );
    let r = CaptureReader::open(&output).unwrap();
    assert_eq!(r.format(), CaptureFormat::PcapNg);
    let out: Vec<Frame> = r.map(Result::unwrap).collect();
    assert_eq!(out.len(), 4);
    for (seq, f) in out.iter().enumerate() {
        let want = if seq % 2 == 0 {
            linktype::ETHERNET
        } else {
            linktype::RAW
        };
        assert_eq!(f.linktype, want);
        assert_eq!(payload(f), rtp(seq as u16, 9));
    }
}

#[test]
fn sdp_offer_and_answer_each_decrypt_their_sender() {
    let dir = TmpDir::new("sdp");
    // The offerer sends from 40000 with key A, the answerer from 50000 with key B.
    let (a, b) = (key(3), key(7));
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\nm=audio 40000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n\
         v=0\r\no=- 2 1 IN IP4 127.0.0.1\r\nm=audio 50000 RTP/SAVP 0\r\n\
         a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}\r\n",
        STANDARD.encode(&a),
        STANDARD.encode(&b)
    );
    std::fs::write(dir.path("call.sdp"), sdp).unwrap();
    let (mut ta, mut tb) = (ctx(&a, None), ctx(&b, None));
    let mut pkts = Vec::new();
    for seq in 0..5u16 {
        pkts.push((40000, 50000, protect(&mut ta, &rtp(seq, 1))));
        pkts.push((50000, 40000, protect(&mut tb, &rtp(seq + 100, 2))));
    }
    write_raw_ip(&dir.path("in.pcap"), linktype::RAW, &pkts);
    let (ok, j, err) = run(&[
        "decrypt",
        "--sdp",
        &dir.path("call.sdp"),
        &dir.path("in.pcap"),
        &dir.path("out.pcap"),
    ]);
    assert!(ok, "{err} {j}");
    assert_eq!(stream(&j, 40000, 1)["ok"], 5, "{j}");
    assert_eq!(stream(&j, 50000, 2)["ok"], 5, "{j}");
    assert_eq!(total(&j, "auth_failed"), 0, "{j}");
    let out = frames(&dir.path("out.pcap"));
    for (i, f) in out.iter().enumerate() {
        let seq = (i / 2) as u16;
        let want = if i % 2 == 0 {
            rtp(seq, 1)
        } else {
            rtp(seq + 100, 2)
        };
        assert_eq!(payload(f), want, "frame {i}");
    }
}

#[test]
fn encrypt_leaves_non_rtp_udp_unchanged() {
    let dir = TmpDir::new("encrypt");
    // A DNS response whose first byte is 0x81 and which even parses as RTP (CC=1).
    let mut dns = vec![0x81, 0x23, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
    dns.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    let mut pkts: Vec<(u16, u16, Vec<u8>)> = (0..3).map(|s| (40000, 50000, rtp(s, 4))).collect();
    pkts.push((53, 40001, dns.clone()));
    pkts.push((45000, 45001, dns.clone()));
    pkts.push((40000, 50000, vec![0x81, 0, 1])); // too short to be RTP
    let input = dir.path("in.pcap");
    write_raw_ip(&input, linktype::RAW, &pkts);
    let b64 = STANDARD.encode(key(2));
    let key_for = format!("port:40000={b64}");
    for (name, args) in [
        (
            "default key, --port",
            vec!["--key", b64.as_str(), "--port", "50000"],
        ),
        ("port key", vec!["--key-for", key_for.as_str()]),
    ] {
        let output = dir.path("out.pcap");
        let mut a = vec!["encrypt"];
        a.extend_from_slice(&args);
        a.extend_from_slice(&[input.as_str(), output.as_str()]);
        let (ok, j, err) = run(&a);
        assert!(ok, "{name}: {err} {j}");
        assert_eq!(total(&j, "ok"), 3, "{name}: {j}");
        assert_eq!(j["skipped"]["service_port"], 1, "{name}: {j}");
        assert_eq!(j["skipped"]["not_rtp"], 1, "{name}: {j}");
        let out = frames(&output);
        let mut rx = ctx(&key(2), None);
        for (i, f) in out.iter().enumerate().take(3) {
            let mut p = payload(f);
            assert_eq!(p.len(), rtp(0, 4).len() + 10, "{name}");
            let n = rx.unprotect_rtp(&mut p).unwrap().len;
            assert_eq!(p[..n], rtp(i as u16, 4)[..], "{name}");
        }
        for (f, (_, _, want)) in out.iter().zip(&pkts).skip(3) {
            assert_eq!(&payload(f), want, "{name}: non-RTP datagram changed");
        }
    }
    // Default key only: the service port is still spared.
    let (ok, j, _) = run(&["encrypt", "--key", &b64, &input, &dir.path("out2.pcap")]);
    assert!(ok);
    assert_eq!(j["skipped"]["service_port"], 1, "{j}");
    assert_eq!(payload(&frames(&dir.path("out2.pcap"))[3]), dns);
}

#[test]
fn every_failure_reason_has_its_count() {
    let dir = TmpDir::new("reasons");
    let k = key(3);
    let mut tx = ctx(&k, None);
    let good = |tx: &mut SrtpContext, seq| protect(tx, &rtp(seq, 1));
    let first = good(&mut tx, 5000);
    let far = good(&mut tx, 6100);
    let mut forged = good(&mut tx, 6101);
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let old = good(&mut tx, 5001); // 1100 behind 6101: outside the 1024 window
    let mut tm = ctx(&k, Some(&[0, 0, 0, 2]));
    let wrong_mki = protect(&mut tm, &rtp(7, 3));
    let pkts = vec![
        (40000, 50000, first),
        (40000, 50000, far.clone()),
        (40000, 50000, far),                         // replayed
        (40000, 50000, forged),                      // auth_failed
        (40000, 50000, old),                         // too_old
        (40000, 50000, rtp(6200, 1)),                // long enough, but not SRTP
        (40000, 50000, rtp(9, 1)[..16].to_vec()),    // shorter than header + tag
        (40002, 50002, wrong_mki),                   // mki_mismatch (SDP key has MKI 1)
        (60000, 60001, good(&mut ctx(&k, None), 1)), // no_key
    ];
    let input = dir.path("in.pcap");
    write_raw_ip(&input, linktype::RAW, &pkts);
    std::fs::write(
        dir.path("k.sdp"),
        format!(
            "m=audio 40002 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|1:4\r\n",
            STANDARD.encode(&k)
        ),
    )
    .unwrap();
    let (ok, j, err) = run(&[
        "decrypt",
        "--key-for",
        &format!("port:40000={}", STANDARD.encode(&k)),
        "--sdp",
        &dir.path("k.sdp"),
        &input,
        &dir.path("out.pcap"),
    ]);
    assert!(ok, "{err} {j}");
    let s = stream(&j, 40000, 1);
    for (field, n) in [
        ("ok", 2),
        ("replayed", 1),
        ("auth_failed", 2),
        ("too_old", 1),
        ("truncated", 1),
        ("no_key", 0),
    ] {
        assert_eq!(s[field], n, "{field}: {s}");
    }
    assert_eq!(stream(&j, 40002, 3)["mki_mismatch"], 1, "{j}");
    assert_eq!(stream(&j, 60000, 1)["no_key"], 1, "{j}");
    assert_eq!(j["unchanged"], 7, "{j}");
}

#[test]
fn mki_from_sdp_round_trips() {
    let dir = TmpDir::new("mki");
    let k = key(9);
    let plain: Vec<_> = (0..5).map(|s| (40000, 50000, rtp(s, 6))).collect();
    let input = dir.path("plain.pcap");
    write_raw_ip(&input, linktype::RAW, &plain);
    std::fs::write(
        dir.path("mki.sdp"),
        format!(
            "m=audio 40000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{}|2^31|1:4\r\n",
            STANDARD.encode(&k)
        ),
    )
    .unwrap();
    let sdp = dir.path("mki.sdp");
    let (ok, j, err) = run(&["encrypt", "--sdp", &sdp, &input, &dir.path("enc.pcap")]);
    assert!(ok, "{err} {j}");
    assert_eq!(total(&j, "ok"), 5, "{j}");
    // Each packet carries MKI 00 00 00 01 before its tag, and rtp-core configured
    // with that MKI authenticates it.
    let mut rx = ctx(&k, Some(&[0, 0, 0, 1]));
    let plain_len = rtp(0, 6).len();
    for f in frames(&dir.path("enc.pcap")) {
        let mut p = payload(&f);
        assert_eq!(p.len(), plain_len + 4 + 10);
        assert_eq!(p[plain_len..plain_len + 4], [0, 0, 0, 1]);
        rx.unprotect_rtp(&mut p).unwrap();
    }
    let (ok, j, err) = run(&[
        "decrypt",
        "--sdp",
        &sdp,
        &dir.path("enc.pcap"),
        &dir.path("dec.pcap"),
    ]);
    assert!(ok, "{err} {j}");
    assert_eq!(total(&j, "ok"), 5, "{j}");
    let got: Vec<_> = frames(&dir.path("dec.pcap")).iter().map(payload).collect();
    let want: Vec<_> = plain.into_iter().map(|(_, _, p)| p).collect();
    assert_eq!(got, want);
}
