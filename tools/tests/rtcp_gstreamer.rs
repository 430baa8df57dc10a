//! Interop with GStreamer's rtpbin as RTCP peers of a call whose RTCP the gateway
//! terminates (ng flag `RTCP terminate`):
//!
//! ```text
//!  gst S (sender) --RTP--> [QS: drops every 10th] --> leg 0 ==gateway== leg 1 --RTP--> gst R
//!        <-RTCP-- [PS] <--RTCP (our RR)-- leg 0        leg 1 --RTCP (our SR)--> [PR] --> gst R
//!        --SR---> [PS] --> leg 0                       leg 1 <-- [PR] <--RR-- gst R
//! ```
//!
//! The proxies (QS, PS, PR: sockets of this test) only forward datagrams: rtpbin
//! sends from udpsink's ephemeral port, not from the port it listens on, and the
//! gateway's symmetric latching would follow that port; the proxies make gst's
//! transport symmetric. QS also injects 10 % loss.
//!
//! In the plain variant gst S is `support/gst_rtcp_sender.py` (rtpbin driven from
//! Python gi, as gst-launch cannot print rtpbin's statistics): at the end it
//! prints the report block rtpbin stored from our last RR about its SSRC
//! (`have-rb`, `rb-fractionlost`, `rb-packetslost`, `rb-exthighestseq`,
//! `rb-jitter`, `rb-lsr`, `rb-dlsr`, `rb-round-trip`). Checked: GStreamer's own
//! statistics show our report block with the injected loss, a small jitter and
//! an RTT it computed from our LSR/DLSR, equal field by field to the RR of ours
//! on the wire with that extended highest sequence, and agreeing with our ng
//! query figures.
//!
//! Also checked: gst R's RRs echo our SR (LSR = middle bits of one of our SR NTP times:
//! GStreamer parsed our SR) and report the injected loss; our RRs to gst S carry
//! the same loss and a plausible jitter; our statistics (ng query) hold gst S's SR
//! (SSRC, NTP, packet count) as captured on the wire; every RTCP packet we emit
//! decodes in tshark without malformed or expert-error flags; /metrics counts our
//! reports. Without gst-launch-1.0, dumpcap, tshark or (plain variant) python3-gi
//! for `/usr/bin/python3` the test is skipped, except under `CI`, where that is
//! a failure.
//!
//! The SRTP variant runs the same call as RTP/SAVP with SDES keys: gst S encrypts
//! with `srtpenc`, gst R decrypts our SRTP and SRTCP with `srtpdec` (libsrtp) and
//! sends SRTCP RRs. Its RRs are then opaque to tshark, so the proof that GStreamer
//! decrypted and parsed our SRTCP SR is our measured RTT on leg 1 (an RTT sample
//! is only taken from a report block whose LSR is one of our own SRs).

use std::collections::HashMap;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::SrtpProfile;
use rtp_tools::gateway::bencode::Value;
use rtp_tools::gateway::sdp::Sdp;
use rtp_tools::gateway::{Gateway, GatewayConfig};
use rtp_tools::interop::free_port_range;

const GST_SSRC: u32 = 287_454_020;
const RUN: Duration = Duration::from_secs(11);
/// The system Python (python3-gi is a Debian package; a user's pyenv or venv
/// `python3` first on PATH would not have it).
const PYTHON: &str = "/usr/bin/python3";

/// Whether `PYTHON` has GStreamer's introspection bindings.
fn python_gi() -> bool {
    Command::new(PYTHON)
        .args([
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); from gi.repository import Gst",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn tool(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|p| p.exists())
    })
}

/// Kills (by PID) and reaps a child when dropped.
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A scratch directory, removed when dropped (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Forwards datagrams between a peer and the gateway from one socket: what comes
/// from `gateway` goes to `peer`, everything else to `gateway`. `drop_every`
/// drops every n-th datagram towards the gateway.
struct Proxy {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start(sock: UdpSocket, gateway: SocketAddr, peer: SocketAddr, drop_every: u64) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 2048];
            let mut n_in = 0u64;
            while !s.load(Ordering::Acquire) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if from == gateway {
                    let _ = sock.send_to(&buf[..n], peer);
                } else {
                    n_in += 1;
                    if drop_every > 0 && n_in.is_multiple_of(drop_every) {
                        continue;
                    }
                    let _ = sock.send_to(&buf[..n], gateway);
                }
            }
        });
        Proxy {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn port_of(s: &UdpSocket) -> u16 {
    s.local_addr().unwrap().port()
}

/// An even port P with P and P + 1 free (checked by binding, then released).
fn free_pair() -> u16 {
    for _ in 0..200 {
        let p = port_of(&bind()) & !1;
        if p < 1024 || p == u16::MAX - 1 {
            continue;
        }
        if let (Ok(a), Ok(b)) = (
            UdpSocket::bind(("127.0.0.1", p)),
            UdpSocket::bind(("127.0.0.1", p + 1)),
        ) {
            drop((a, b));
            return p;
        }
    }
    panic!("no free port pair");
}

fn ng(addr: SocketAddr, req: &Value) -> Value {
    static COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let c = COOKIE.fetch_add(1, Ordering::Relaxed);
    let s = bind();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut msg = format!("r{c}-{} ", std::process::id()).into_bytes();
    let skip = msg.len();
    req.encode_into(&mut msg);
    s.send_to(&msg, addr).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).expect("ng reply");
    let v = Value::decode(&buf[skip..n]).expect("bencode reply");
    assert_eq!(v.get_str("result"), Some("ok"), "{v:?}");
    v
}

fn sdp(port: u16, rtcp: u16, key: Option<(u32, &[u8])>) -> String {
    let (proto, crypto) = match key {
        Some((tag, k)) => {
            let c = CryptoAttribute {
                tag,
                profile: SrtpProfile::AesCm128HmacSha1_80,
                key: k[..16].to_vec(),
                salt: k[16..].to_vec(),
                lifetime: None,
                mki: None,
            };
            ("RTP/SAVP", format!("{c}\r\n"))
        }
        None => ("RTP/AVP", String::new()),
    };
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} {proto} 0\r\na=rtpmap:0 PCMU/8000\r\na=rtcp:{rtcp}\r\n{crypto}a=sendrecv\r\n"
    )
}

/// The tag and key||salt (hex) of the AES_CM_128_HMAC_SHA1_80 `a=crypto` of a
/// reply's SDP.
fn crypto_cm80(reply: &Value) -> (u32, String) {
    let s = Sdp::parse(reply.get_str("sdp").unwrap()).unwrap();
    let c = s.media[0]
        .attrs("crypto")
        .into_iter()
        .filter_map(|l| CryptoAttribute::parse(l).ok())
        .find(|c| c.profile == SrtpProfile::AesCm128HmacSha1_80)
        .expect("AES_CM_128_HMAC_SHA1_80 offered");
    (c.tag, hex(&[c.key, c.salt].concat()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// GStreamer caps fields for AES_CM_128_HMAC_SHA1_80 with `key_hex` and `ssrc`.
fn keycaps(key_hex: &str, ssrc: u32) -> String {
    format!(
        "srtp-key=(buffer){key_hex},srtp-cipher=(string)aes-128-icm,srtp-auth=(string)hmac-sha1-80,\
         srtcp-cipher=(string)aes-128-icm,srtcp-auth=(string)hmac-sha1-80,ssrc=(uint){ssrc}"
    )
}

/// (RTP port, RTCP port) the gateway put into an SDP.
fn ports(reply: &Value) -> (u16, u16) {
    let s = Sdp::parse(reply.get_str("sdp").unwrap()).unwrap();
    let m = &s.media[0];
    (m.port, m.rtcp_port().unwrap_or(m.port + 1))
}

fn gst(desc: &str) -> Reap {
    let child = Command::new(tool("gst-launch-1.0").expect("gst-launch-1.0"))
        .arg("-q")
        .args(desc.split_whitespace())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gst-launch starts");
    Reap(child)
}

/// gst S as `support/gst_rtcp_sender.py` for `secs` seconds (stdout piped, stderr
/// into `log`).
fn gst_sender(rtp: u16, rtcp: u16, listen: u16, secs: u64, log: &std::path::Path) -> Reap {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/gst_rtcp_sender.py"
    );
    let child = Command::new(PYTHON)
        .arg(script)
        .args(["--rtp-port", &rtp.to_string()])
        .args(["--rtcp-port", &rtcp.to_string()])
        .args(["--listen-port", &listen.to_string()])
        .args(["--ssrc", &GST_SSRC.to_string()])
        .args(["--duration", &secs.to_string()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("gst_rtcp_sender.py starts");
    Reap(child)
}

/// Waits (up to `limit`) for the helper to exit and returns its KEY=VALUE lines.
fn sender_report(
    helper: &mut Reap,
    limit: Duration,
    log: &std::path::Path,
) -> HashMap<String, String> {
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = helper.0.try_wait().unwrap() {
            break st;
        }
        let log = std::fs::read_to_string(log).unwrap_or_default();
        assert!(Instant::now() < deadline, "gst_rtcp_sender.py hangs: {log}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut out = String::new();
    helper
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let log = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        status.success() && !out.contains("ERROR="),
        "gst_rtcp_sender.py: {status}\n{out}\n{log}"
    );
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// dumpcap on lo with `filter` into `pcap`; waits until it captures.
fn dumpcap(pcap: &std::path::Path, filter: &str) -> Reap {
    let log = pcap.with_extension("log");
    let child = Command::new(tool("dumpcap").expect("dumpcap"))
        .args(["-q", "-i", "lo", "-f", filter, "-w"])
        .arg(pcap)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("dumpcap starts");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut t = String::new();
        if let Ok(mut f) = std::fs::File::open(&log) {
            let _ = f.read_to_string(&mut t);
        }
        if t.contains("File:") {
            std::thread::sleep(Duration::from_millis(300));
            break;
        }
        assert!(Instant::now() < deadline, "dumpcap did not start: {t}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Reap(child)
}

/// Stops dumpcap with SIGINT (it then finishes the file) and reaps it.
fn stop_capture(mut cap: Reap) {
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-INT", &cap.0.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = cap.0.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tshark(args: &[String]) -> String {
    let out = Command::new(tool("tshark").expect("tshark"))
        .args(args)
        .stderr(Stdio::null())
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One decoded RTCP packet (fields as tshark prints them, comma-aggregated).
#[derive(Debug, Default, Clone)]
struct Row {
    src: u16,
    dst: u16,
    f: HashMap<&'static str, String>,
}

const FIELDS: [&str; 18] = [
    "udp.srcport",
    "udp.dstport",
    "rtcp.pt",
    "rtcp.senderssrc",
    "rtcp.timestamp.ntp.msw",
    "rtcp.timestamp.ntp.lsw",
    "rtcp.sender.packetcount",
    "rtcp.ssrc.identifier",
    "rtcp.ssrc.fraction",
    "rtcp.ssrc.cum_nr",
    "rtcp.ssrc.ext_high",
    "rtcp.ssrc.jitter",
    "rtcp.ssrc.lsr",
    "rtcp.ssrc.dlsr",
    "rtcp.sdes.text",
    "rtcp.xr.bt",
    "rtcp.xr.voipmetrics.moslq",
    "rtcp.xr.stats.lost",
];

/// The `RTCP` dictionary of the first stream of `tag` in a query reply.
fn stream_rtcp<'a>(query: &'a Value, tag: &str) -> &'a Value {
    let side = query.get("tags").and_then(|t| t.get(tag)).expect("tag");
    let Some(Value::List(medias)) = side.get("medias") else {
        panic!("medias: {side:?}")
    };
    let Some(Value::List(streams)) = medias[0].get("streams") else {
        panic!("streams")
    };
    streams[0].get("RTCP").expect("RTCP dict")
}

fn int_of(d: &Value, k: &str) -> i64 {
    match d.get(k) {
        Some(Value::Int(i)) => *i,
        v => panic!("{k}: {v:?} in {d:?}"),
    }
}

fn first_u64(s: &str) -> Option<u64> {
    s.split(',').next().and_then(|v| {
        v.strip_prefix("0x")
            .map(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or_else(|| v.parse().ok())
    })
}

#[test]
fn gstreamer_rtpbin_and_terminated_rtcp() {
    run(false);
}

#[test]
fn gstreamer_rtpbin_and_terminated_srtcp() {
    run(true);
}

fn run(srtp: bool) {
    let need = ["gst-launch-1.0", "dumpcap", "tshark"];
    let missing = need
        .iter()
        .find(|t| tool(t).is_none())
        .map(|t| t.to_string())
        .or_else(|| (!srtp && !python_gi()).then(|| format!("python3-gi for {PYTHON}")));
    if let Some(missing) = missing {
        assert!(
            std::env::var("CI").is_err(),
            "{missing} must be installed in CI (.ci/install.sh)"
        );
        eprintln!("{missing} not installed: skipping the GStreamer RTCP interop test");
        return;
    }
    let (lo, hi) = free_port_range(40);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        listen_metrics: Some("127.0.0.1:0".parse().unwrap()),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        ..GatewayConfig::default()
    })
    .unwrap();
    let ng_addr = gw.ng_addr();

    // The test's sockets: proxies for gst S (RTP, RTCP) and gst R (RTCP), and the
    // ports the two pipelines listen on.
    let (qs, ps, pr) = (bind(), bind(), bind());
    let ls = port_of(&bind()); // gst S listens for our RRs here
    let rp = free_pair(); // gst R: RTP on rp, RTCP on rp + 1
    let flags = Value::List(vec![Value::str("RTCP terminate"), Value::str("RTCP XR")]);
    // SDES keys of gst S (its SRTP and SRTCP) and gst R (its SRTCP RRs).
    let s_key_bytes: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(7).wrapping_add(1))
        .collect();
    let r_key_bytes: Vec<u8> = (0..30u8)
        .map(|i| i.wrapping_mul(11).wrapping_add(5))
        .collect();
    let s_key = srtp.then_some((1, &s_key_bytes[..]));
    let call_id = if srtp { "gst-srtcp" } else { "gst-rtcp" };
    let mut offer = Value::dict();
    offer
        .set("command", Value::str("offer"))
        .set("call-id", Value::str(call_id))
        .set("from-tag", Value::str("S"))
        .set("sdp", Value::str(&sdp(port_of(&qs), port_of(&ps), s_key)))
        .set("flags", flags);
    let r = ng(ng_addr, &offer);
    let (_, leg1_rtcp) = ports(&r); // what gst R's side (leg 1) is given
                                    // Our key towards R (what gst R decrypts with); R answers that suite's tag.
    let to_r = srtp.then(|| crypto_cm80(&r));
    let to_r_key = to_r.as_ref().map(|(_, k)| k.clone());
    let r_key = to_r.as_ref().map(|(tag, _)| (*tag, &r_key_bytes[..]));
    let mut answer = Value::dict();
    answer
        .set("command", Value::str("answer"))
        .set("call-id", Value::str(call_id))
        .set("from-tag", Value::str("S"))
        .set("to-tag", Value::str("R"))
        .set("sdp", Value::str(&sdp(rp, port_of(&pr), r_key)));
    let r = ng(ng_addr, &answer);
    let (leg0_rtp, leg0_rtcp) = ports(&r);

    let dir = TempDir::new(&format!("rtcp-gst-{}-{srtp}", std::process::id()));
    let pcap = dir.0.join("rtcp.pcap");
    let cap = dumpcap(
        &pcap,
        &format!("udp port {leg0_rtcp} or udp port {leg1_rtcp}"),
    );
    let lo_addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let (qs_port, ps_port, pr_port) = (port_of(&qs), port_of(&ps), port_of(&pr));
    let _p_rtp = Proxy::start(qs, lo_addr(leg0_rtp), lo_addr(ls), 10);
    let _p_s = Proxy::start(ps, lo_addr(leg0_rtcp), lo_addr(ls), 0);
    let _p_r = Proxy::start(pr, lo_addr(leg1_rtcp), lo_addr(rp + 1), 0);

    let interval = "rtpsession0::rtcp-min-interval=1000000000";
    let media =
        "media=(string)audio,clock-rate=(int)8000,encoding-name=(string)PCMU,payload=(int)0";
    let recv = match &to_r_key {
        None => gst(&format!(
            "rtpbin name=rb {interval} \
             udpsrc address=127.0.0.1 port={rp} caps=application/x-rtp,{media} ! rb.recv_rtp_sink_0 \
             udpsrc address=127.0.0.1 port={} ! rb.recv_rtcp_sink_0 \
             rb. ! rtppcmudepay ! fakesink \
             rb.send_rtcp_src_0 ! udpsink host=127.0.0.1 port={pr_port} sync=false async=false",
            rp + 1
        )),
        // Our SRs to R carry the SSRC of the media we relay (gst S's), so srtpdec
        // finds their key in the caps.
        Some(k) => gst(&format!(
            "rtpbin name=rb {interval} srtpdec name=dec \
             udpsrc address=127.0.0.1 port={rp} caps=application/x-srtp,{media},{} ! dec.rtp_sink dec.rtp_src ! rb.recv_rtp_sink_0 \
             udpsrc address=127.0.0.1 port={} caps=application/x-srtcp,{} ! dec.rtcp_sink dec.rtcp_src ! rb.recv_rtcp_sink_0 \
             rb. ! rtppcmudepay ! fakesink \
             srtpenc name=enc key={} rb.send_rtcp_src_0 ! enc.rtcp_sink_0 enc.rtcp_src_0 ! udpsink host=127.0.0.1 port={pr_port} sync=false async=false",
            keycaps(k, GST_SSRC),
            rp + 1,
            keycaps(k, GST_SSRC),
            hex(&r_key_bytes),
        )),
    };
    std::thread::sleep(Duration::from_millis(500));
    let source = format!(
        "audiotestsrc is-live=true samplesperbuffer=160 ! audio/x-raw,rate=8000,channels=1 ! mulawenc ! rtppcmupay ssrc={GST_SSRC} ! rb.send_rtp_sink_0"
    );
    let helper_log = dir.0.join("gst_rtcp_sender.log");
    let mut send = if srtp {
        // Our RRs to S are SRTCP from an SSRC chosen at random per leg, which
        // srtpdec cannot be told in advance: gst S only sends here.
        gst(&format!(
            "rtpbin name=rb {interval} {source} srtpenc name=enc key={} \
             rb.send_rtp_src_0 ! enc.rtp_sink_0 enc.rtp_src_0 ! udpsink host=127.0.0.1 port={qs_port} \
             rb.send_rtcp_src_0 ! enc.rtcp_sink_0 enc.rtcp_src_0 ! udpsink host=127.0.0.1 port={ps_port} sync=false async=false",
            hex(&s_key_bytes)
        ))
    } else {
        // The same rtpbin pipeline, from Python, to read rtpbin's statistics.
        gst_sender(qs_port, ps_port, ls, RUN.as_secs(), &helper_log)
    };
    // What rtpbin made of our RRs (plain variant), once gst S has run for RUN.
    let gst_stats = if srtp {
        std::thread::sleep(RUN);
        HashMap::new()
    } else {
        sender_report(&mut send, RUN + Duration::from_secs(10), &helper_log)
    };

    // Our statistics of gst S's SRs, through ng query, while the call is up.
    let mut q = Value::dict();
    q.set("command", Value::str("query"))
        .set("call-id", Value::str(call_id));
    let query = ng(ng_addr, &q);
    let metrics = {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(gw.metrics_addr().unwrap()).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut t = String::new();
        s.read_to_string(&mut t).unwrap();
        t
    };
    drop(send);
    drop(recv);
    stop_capture(cap);
    gw.shutdown();

    // ---- what went over the wire, decoded port by port (tshark applies only one
    // `-d ...,srtcp` mapping at a time); `rtcp.pt` matches RTCP and SRTCP frames.
    let proto = if srtp { "srtcp" } else { "rtcp" };
    let (mut rows, mut emitted, mut malformed, mut errors) = (Vec::new(), 0, 0, 0);
    for port in [leg0_rtcp, leg1_rtcp] {
        let args: Vec<String> = vec![
            "-n".into(),
            "-r".into(),
            pcap.display().to_string(),
            "-d".into(),
            format!("udp.port=={port},{proto}"),
        ];
        let mut table = args.clone();
        table.extend([
            "-Y".into(),
            format!("rtcp.pt && udp.port=={port}"),
            "-T".into(),
            "fields".into(),
            "-E".into(),
            "occurrence=a".into(),
            "-E".into(),
            "aggregator=,".into(),
        ]);
        for f in FIELDS {
            table.push("-e".into());
            table.push(f.into());
        }
        rows.extend(tshark(&table).lines().map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            let mut r = Row::default();
            for (i, f) in FIELDS.iter().enumerate() {
                r.f.insert(f, v.get(i).unwrap_or(&"").to_string());
            }
            r.src = r.f["udp.srcport"].parse().unwrap_or(0);
            r.dst = r.f["udp.dstport"].parse().unwrap_or(0);
            r
        }));
        let count = |filter: &str| {
            let mut a = args.clone();
            a.extend(["-Y".into(), format!("udp.srcport=={port} && {filter}")]);
            tshark(&a).lines().count()
        };
        emitted += count("rtcp.pt");
        malformed += count("_ws.malformed");
        errors += count("_ws.expert.severity == 0x800000");
    }
    eprintln!(
        "captured RTCP packets: {}; ours: {emitted}, malformed {malformed}, expert errors {errors}",
        rows.len()
    );
    for r in &rows {
        eprintln!("{} -> {} {:?}", r.src, r.dst, r.f);
    }
    assert!(emitted >= 4, "we sent RTCP on both legs ({emitted})");
    assert_eq!((malformed, errors), (0, 0), "tshark flags our RTCP");

    if !srtp {
        // Our SRs to gst R (from leg 1) and their NTP middle bits.
        let our_srs: Vec<u32> = rows
            .iter()
            .filter(|r| r.src == leg1_rtcp && r.f["rtcp.pt"].starts_with("200"))
            .map(|r| {
                let msw = first_u64(&r.f["rtcp.timestamp.ntp.msw"]).unwrap();
                let lsw = first_u64(&r.f["rtcp.timestamp.ntp.lsw"]).unwrap();
                (((msw << 32) | lsw) >> 16) as u32
            })
            .collect();
        assert!(!our_srs.is_empty(), "we send SRs to the receiver");
        // (a) gst R's RRs (to leg 1): an LSR that is one of our SRs, and the loss.
        let gst_rrs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.dst == leg1_rtcp && r.f["rtcp.pt"].starts_with("201"))
            .collect();
        let echoed: Vec<&&Row> = gst_rrs
            .iter()
            .filter(|r| first_u64(&r.f["rtcp.ssrc.lsr"]).is_some_and(|l| l != 0))
            .collect();
        assert!(
            !echoed.is_empty(),
            "GStreamer's RRs never echoed our SR: {gst_rrs:?}"
        );
        for r in &echoed {
            let lsr = first_u64(&r.f["rtcp.ssrc.lsr"]).unwrap() as u32;
            assert!(
                our_srs.contains(&lsr),
                "LSR {lsr:08x} is not one of our SRs {our_srs:08x?}"
            );
            assert_eq!(
                first_u64(&r.f["rtcp.ssrc.identifier"]),
                Some(u64::from(GST_SSRC))
            );
        }
        let gst_frac = first_u64(&echoed.last().unwrap().f["rtcp.ssrc.fraction"]).unwrap();
        // 10 % dropped by the proxy: 25.6 / 256 (interval figures vary by a packet or two).
        assert!(
            (15..=37).contains(&gst_frac),
            "GStreamer's fraction lost {gst_frac}"
        );
        // Our RRs to gst S (from leg 0): the same loss, cumulative ~ a tenth, jitter
        // of a live 20 ms source over loopback well under 20 ms (160 units).
        let our_rrs: Vec<&Row> = rows
            .iter()
            .filter(|r| r.src == leg0_rtcp && r.f["rtcp.pt"].starts_with("201"))
            .filter(|r| !r.f["rtcp.ssrc.identifier"].is_empty())
            .collect();
        assert!(!our_rrs.is_empty(), "we send RRs about gst S's stream");
        let last = our_rrs.last().unwrap();
        assert_eq!(
            first_u64(&last.f["rtcp.ssrc.identifier"]),
            Some(u64::from(GST_SSRC))
        );
        let frac = first_u64(&last.f["rtcp.ssrc.fraction"]).unwrap();
        assert!((15..=37).contains(&frac), "our fraction lost {frac}");
        let jitter = first_u64(&last.f["rtcp.ssrc.jitter"]).unwrap();
        assert!(jitter < 160, "our jitter {jitter}");
        // XR (flag `RTCP XR`): VoIP metrics (type 7) and statistics summary (6) on
        // the leg that receives media, decoded by tshark; MOS-LQ for 10 % loss with
        // G.711 PLC is about 3.4.
        let xr = our_rrs
            .iter()
            .rev()
            .find(|r| r.f["rtcp.pt"].contains("207"))
            .expect("our reports carry XR");
        let bts = &xr.f["rtcp.xr.bt"];
        assert!(
            bts.contains('7') && bts.contains('6'),
            "XR block types {bts}"
        );
        // tshark prints MOS-LQ as a decimal ("3.4").
        let mos_lq: f64 = xr.f["rtcp.xr.voipmetrics.moslq"].parse().unwrap();
        assert!((2.5..=4.2).contains(&mos_lq), "MOS-LQ {mos_lq}");
        assert!(first_u64(&xr.f["rtcp.xr.stats.lost"]).unwrap() > 0);
        assert!(
            our_rrs
                .iter()
                .any(|r| first_u64(&r.f["rtcp.ssrc.lsr"]).is_some_and(|l| l != 0)),
            "our RRs echo gst S's SRs"
        );
        eprintln!(
            "interop figures: gst R fraction {gst_frac}/256, our fraction {frac}/256, our jitter {jitter} units, our MOS-LQ {mos_lq}, our SRs {}, gst RRs echoing them {}",
            our_srs.len(),
            echoed.len()
        );
    }

    // (b) our statistics of gst S's SRs equal what was on the wire.
    let gst_srs: Vec<&Row> = rows
        .iter()
        .filter(|r| r.dst == leg0_rtcp && r.f["rtcp.pt"].starts_with("200"))
        .collect();
    assert!(!gst_srs.is_empty(), "gst S sends SRs");
    let rtcp = stream_rtcp(&query, "S");
    eprintln!("ng query RTCP of leg 0: {rtcp:?}");
    assert_eq!(rtcp.get_str("mode"), Some("terminate"));
    let int = |k: &str| int_of(rtcp, k);
    assert_eq!(int("remote SSRC"), i64::from(GST_SSRC));
    let ntp = u64::from_str_radix(rtcp.get_str("remote NTP").unwrap(), 16).unwrap();
    if srtp {
        // SRTCP: the SR is opaque on the wire; it decrypted and parsed.
        assert!(int("remote packets") > 0);
        assert!(ntp > 0);
        // (a) gst R decrypted and parsed our SRTCP SR: its SRTCP RRs echo it (an
        // RTT sample needs an LSR that is one of our SRs) and report the loss.
        let r1 = stream_rtcp(&query, "R");
        eprintln!("ng query RTCP of leg 1: {r1:?}");
        let rtt_us = int_of(r1, "round-trip time");
        assert!((0..100_000).contains(&rtt_us), "RTT {rtt_us} us");
        let remote_loss = int_of(r1, "remote packet loss");
        assert!(
            (5..=15).contains(&remote_loss),
            "gst R's loss {remote_loss} %"
        );
        assert_eq!(int_of(r1, "malformed"), 0);
        eprintln!("interop figures (SRTP): RTT {rtt_us} us, gst R loss {remote_loss} %");
    } else {
        let wire: Vec<(u64, u64)> = gst_srs
            .iter()
            .map(|r| {
                let msw = first_u64(&r.f["rtcp.timestamp.ntp.msw"]).unwrap();
                let lsw = first_u64(&r.f["rtcp.timestamp.ntp.lsw"]).unwrap();
                (
                    (msw << 32) | lsw,
                    first_u64(&r.f["rtcp.sender.packetcount"]).unwrap(),
                )
            })
            .collect();
        let hit = wire
            .iter()
            .find(|(n, _)| *n == ntp)
            .expect("our remote NTP is one of gst S's SRs");
        assert_eq!(int("remote packets") as u64, hit.1);
    }
    assert!(int("reports sent") >= 1 && int("reports received") >= 2);
    let loss = int("total packet loss");
    assert!((5..=15).contains(&loss), "loss {loss} %");
    if !srtp {
        gst_sees_our_rrs(&gst_stats, &rows, leg0_rtcp, rtcp);
    }
    assert!(metrics.contains("rtp_gateway_rtcp_reports_sent_total{worker=\"0\"}"));
    let sent: u64 = metrics
        .lines()
        .find(|l| l.starts_with("rtp_gateway_rtcp_reports_sent_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(sent >= 2, "metrics: {sent} reports");
}

/// (c) GStreamer's own statistics (gst S's rtpbin, printed by
/// `gst_rtcp_sender.py`): the report block it stored from our RRs about its
/// SSRC shows the injected loss, equals our RR on the wire with that extended
/// highest sequence, and agrees with our engine's figures (`rtcp`: the ng query
/// `RTCP` dict of leg 0, i.e. `Engine::rtcp_stats`).
fn gst_sees_our_rrs(gst: &HashMap<String, String>, rows: &[Row], leg0_rtcp: u16, rtcp: &Value) {
    eprintln!("gst S rtpbin statistics: {gst:?}");
    let g = |k: &str| -> i64 {
        gst.get(k)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{k} in {gst:?}"))
    };
    assert_eq!(
        gst.get("HAVE_RB").map(String::as_str),
        Some("true"),
        "rtpbin holds no report block from us: {gst:?}"
    );
    assert_eq!(g("RB_SSRC"), i64::from(GST_SSRC));
    let (frac, lost, ext, jitter) = (
        g("RB_FRACTIONLOST"),
        g("RB_PACKETSLOST"),
        g("RB_EXTHIGHESTSEQ"),
        g("RB_JITTER"),
    );
    let (lsr, dlsr, rtt) = (g("RB_LSR"), g("RB_DLSR"), g("RB_ROUND_TRIP"));
    // QS drops exactly every 10th RTP datagram, so an interval of N packets loses
    // N/10 rounded either way: for N >= 40 (0.8 s of 20 ms packets; our reports
    // are seconds apart) the fraction is 25.6 +- 6.4 of 256, i.e. 18..=34.
    assert!(
        (18..=34).contains(&frac),
        "rtpbin: fraction lost {frac}/256"
    );
    // Cumulative: a tenth of the packets expected since gst's first sequence
    // number (extended highest - base + 1), within 1.5 points.
    let expected = ext - g("SEQNUM_BASE") + 1;
    assert!(
        expected >= 100 && expected <= g("PACKETS_SENT"),
        "rtpbin: extended highest {ext}, {expected} expected"
    );
    let ratio = lost as f64 / expected as f64;
    assert!(
        (0.085..=0.115).contains(&ratio),
        "rtpbin: {lost} of {expected} lost"
    );
    // Jitter of a live 20 ms source over loopback: well under 20 ms (160 units).
    assert!((0..160).contains(&jitter), "rtpbin: jitter {jitter}");
    // Our RR echoes gst S's SR (LSR), and the RTT rtpbin derives from our LSR and
    // DLSR is a loopback one (under 100 ms = 6554 / 65536 s): a wrong DLSR would
    // show here.
    assert!(lsr != 0, "rtpbin: LSR 0");
    assert!((0..6554).contains(&rtt), "rtpbin: round trip {rtt}/65536 s");

    // The same block on the wire: the first RR of ours with that extended
    // highest sequence (later ones would be sent after gst S stopped).
    let wire = rows
        .iter()
        .filter(|r| r.src == leg0_rtcp && r.f["rtcp.pt"].starts_with("201"))
        .find(|r| first_u64(&r.f["rtcp.ssrc.ext_high"]) == Some(ext as u64))
        .unwrap_or_else(|| panic!("no RR of ours on the wire with extended highest {ext}"));
    let w = |k: &str| first_u64(&wire.f[k]).map(|v| v as i64);
    assert_eq!(w("rtcp.senderssrc"), Some(g("RB_FROM")), "{wire:?}");
    assert_eq!(w("rtcp.ssrc.identifier"), Some(i64::from(GST_SSRC)));
    assert_eq!(w("rtcp.ssrc.fraction"), Some(frac), "{wire:?}");
    assert_eq!(w("rtcp.ssrc.cum_nr"), Some(lost), "{wire:?}");
    assert_eq!(w("rtcp.ssrc.jitter"), Some(jitter), "{wire:?}");
    assert_eq!(w("rtcp.ssrc.lsr"), Some(lsr), "{wire:?}");
    assert_eq!(w("rtcp.ssrc.dlsr"), Some(dlsr), "{wire:?}");

    // Our engine's figures (queried after gst S stopped, so over the whole run):
    // total loss and jitter within rounding and a report's age of rtpbin's.
    let int = |k: &str| int_of(rtcp, k);
    let total = int("total packet loss");
    assert!(
        (total as f64 - 100.0 * ratio).abs() <= 2.0,
        "our total loss {total} %, rtpbin {:.1} %",
        100.0 * ratio
    );
    let jitter_ms = int("jitter");
    assert!(
        (jitter_ms as f64 - jitter as f64 / 8.0).abs() <= 2.0,
        "our jitter {jitter_ms} ms, rtpbin {jitter} units"
    );
    assert!(int("reports sent") >= g("RB_UPDATES"));
    eprintln!(
        "rtpbin's view of our RRs: fraction {frac}/256 ({:.1} %), lost {lost} of {expected} ({:.1} %), \
         jitter {jitter} units, LSR {lsr:08x}, DLSR {dlsr}/65536 s, round trip {rtt}/65536 s \
         ({:.2} ms), {} distinct blocks seen; ours: total loss {total} %, jitter {jitter_ms} ms, {} reports",
        100.0 * frac as f64 / 256.0,
        100.0 * ratio,
        rtt as f64 * 1000.0 / 65536.0,
        g("RB_UPDATES"),
        int("reports sent"),
    );
}
