//! The WebRTC-to-SIP bridge against a real WebRTC stack: GStreamer webrtcbin
//! (libnice full ICE agent, OpenSSL DTLS, libsrtp; tests/support/
//! gst_webrtc_peer.py) is the browser side, this test is the SIP side with a
//! plain RTP socket, and rtp-gateway sits between them. Two calls, one per
//! direction:
//!
//! * The SIP side offers RTP/AVP over ng with `ICE=force`,
//!   `transport-protocol=UDP/TLS/RTP/SAVPF` and `rtcp-mux=require`; webrtcbin
//!   answers the gateway's SDP (ICE-lite, DTLS `actpass`: it takes `active`).
//! * webrtcbin offers (BUNDLE, trickle, `a=mid`); the gateway's offer to the
//!   SIP side has `ICE=remove`, `RTP/AVP`, `rtcp-mux=demux`; the SIP answer
//!   goes back with `ICE=force` and `UDP/TLS/RTP/SAVPF` (the gateway answers
//!   DTLS `active`: it is the client once ICE nominated).
//!
//! Each time libnice's connectivity checks meet the gateway's ICE-lite
//! responder, DTLS-SRTP runs, and media flows both ways: webrtcbin's PCMU
//! reaches the plain socket as RTP with the negotiated payload type, and the
//! plain socket's RTP reaches webrtcbin, which decrypts it.
//!
//! libnice never gathers loopback candidates, so the calls run in a private
//! network namespace (`unshare`, user namespace too when not root, and a PID
//! namespace so that every process in it dies with it) with a veth pair whose
//! one address is private to that namespace: no packet leaves it. The test
//! re-executes its own binary there (`webrtc_in_namespace`, which does nothing
//! unless the environment says it is that child).

use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rtp_core::rtp::RtpBuilder;
use rtp_tools::gateway::bencode::Value;
use rtp_tools::gateway::sdp::Sdp;
use rtp_tools::gateway::{Gateway, GatewayConfig};

/// Set in the re-executed child (the namespace's work directory).
const CHILD_ENV: &str = "RTP_WEBRTC_GST_CHILD";
/// The system Python (python3-gi and GStreamer's typelibs are Debian packages).
const PYTHON: &str = "/usr/bin/python3";
/// The namespace's one non-loopback address (RFC 1918, never routed out: the
/// namespace has no other interface).
const NS_ADDR: &str = "10.99.0.1";
/// webrtcbin's RTP SSRC (the script's default).
const WEB_SSRC: u32 = 0x0BAD_CAFE;
/// How long webrtcbin runs media after the answer.
const MEDIA_SECS: u64 = 8;
/// Packets each way that prove media flows (50 per second are sent).
const MIN_PACKETS: usize = 50;

fn have(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Everything the scenario needs, or a skip outside CI (a panic in CI, which
/// installs it all: .ci/install.sh).
fn prerequisites() -> bool {
    let gst = have(
        PYTHON,
        &[
            "-c",
            "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); \
             gi.require_version('GstSdp', '1.0'); from gi.repository import Gst, GstWebRTC, GstSdp; \
             Gst.init(None); \
             assert all(Gst.ElementFactory.find(e) for e in ('webrtcbin', 'nicesrc', 'dtlssrtpenc', 'mulawenc', 'rtppcmupay'))",
        ],
    );
    let ns = have("unshare", &["--version"]) && have("ip", &["-V"]);
    let missing = match (gst, ns) {
        (true, true) => return true,
        (false, _) => "GStreamer webrtcbin with libnice (gstreamer1.0-nice, gir1.2-gst-plugins-bad-1.0, python3-gi)",
        (true, false) => "unshare (util-linux) and ip (iproute2)",
    };
    assert!(
        std::env::var_os("CI").is_none(),
        "{missing} must be installed in CI (.ci/install.sh)"
    );
    eprintln!(
        "note: {missing} missing: the webrtcbin ICE test is skipped (sudo bash .ci/install.sh)"
    );
    false
}

fn is_root() -> bool {
    // The effective uid, from /proc (no libc call needed).
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Reads a child's pipe line by line on a thread, into a channel.
fn lines_of(r: impl Read + Send + 'static, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
}

/// Waits for `child` until `deadline`; kills it (by its PID) after that.
/// `None`: it was killed.
fn wait_until(child: &mut Child, deadline: Instant) -> Option<std::process::ExitStatus> {
    loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            return Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn webrtcbin_does_ice_with_the_gateways_ice_lite_and_media_flows() {
    if std::env::var_os(CHILD_ENV).is_some() || !prerequisites() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("webrtc-gst-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    // --kill-child: if this test kills unshare (timeout), the namespace's
    // first process gets SIGKILL, and with it every process of the PID
    // namespace (webrtcbin's Python too).
    cmd.args(["--net", "--pid", "--fork", "--kill-child"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "webrtc_in_namespace",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("unshare starts");
    let (tx, rx) = mpsc::channel();
    lines_of(child.stdout.take().unwrap(), tx.clone());
    lines_of(child.stderr.take().unwrap(), tx);
    let status = wait_until(&mut child, Instant::now() + Duration::from_secs(90));
    // The pipes close when the last process of the namespace is gone.
    let mut out = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        out.push_str(&l);
        out.push('\n');
    }
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("{out}");
    assert!(status.is_some(), "the namespace child timed out (killed)");
    assert!(
        status.unwrap().success(),
        "the namespace child failed: see its output above"
    );
    assert!(
        out.contains("test webrtc_in_namespace ... ok"),
        "the child did not run the scenario"
    );
}

// ------------------------------------------------------------------ in the namespace

fn ip(args: &str) {
    let ok = Command::new("ip")
        .args(args.split(' '))
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "ip {args} failed in the test's network namespace");
}

/// lo, and a veth pair with [`NS_ADDR`]: a non-loopback address for libnice
/// to gather, reachable only inside this namespace.
fn namespace_network() {
    ip("link set lo up");
    ip("link add rtpw0 type veth peer name rtpw1");
    ip(&format!("addr add {NS_ADDR}/32 dev rtpw0"));
    ip("link set rtpw0 up");
    ip("link set rtpw1 up");
}

fn ng(addr: SocketAddr, req: &Value) -> Value {
    static COOKIE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let c = COOKIE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut msg = format!("w{c} ").into_bytes();
    req.encode_into(&mut msg);
    s.send_to(&msg, addr).unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.recv(&mut buf).expect("ng reply");
    let sp = buf[..n].iter().position(|&b| b == b' ').unwrap();
    let r = Value::decode(&buf[sp + 1..n]).expect("bencode reply");
    assert_eq!(r.get_str("result"), Some("ok"), "{r:?}");
    r
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut buf = vec![0u8; 300];
    let n = RtpBuilder::new()
        .payload_type(0)
        .sequence_number(seq)
        .timestamp(u32::from(seq) * 160)
        .ssrc(0x51_9000)
        .payload(&[0xFF; 160])
        .emit(&mut buf)
        .unwrap();
    buf.truncate(n);
    buf
}

/// The answer webrtcbin's script writes, or why there is none.
fn wait_for_file(p: &Path, child: &mut Child, deadline: Instant) -> Result<String, String> {
    loop {
        if let Ok(t) = std::fs::read_to_string(p) {
            if !t.is_empty() {
                return Ok(t);
            }
        }
        if let Some(s) = child.try_wait().unwrap() {
            return Err(format!(
                "webrtcbin's script exited ({s}) before it answered"
            ));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err("no answer from webrtcbin within 20 s".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the script printed so far (until its pipes close, or 2 s of quiet).
fn drain(rx: &mpsc::Receiver<String>) -> String {
    let mut out = String::new();
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(2)) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// webrtcbin's script, started with `role`; its output lines on a channel.
fn start_peer(role: &str, offer: &Path, answer: &Path) -> (Child, mpsc::Receiver<String>) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/gst_webrtc_peer.py"
    );
    let mut py = Command::new(PYTHON)
        .arg(script)
        .args(["--role", role])
        .arg("--offer")
        .arg(offer)
        .arg("--answer")
        .arg(answer)
        .args(["--duration", &MEDIA_SECS.to_string()])
        .args(["--ssrc", &WEB_SSRC.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let (tx, rx) = mpsc::channel();
    lines_of(py.stdout.take().unwrap(), tx.clone());
    lines_of(py.stderr.take().unwrap(), tx);
    (py, rx)
}

/// What webrtcbin's SDP file says, or a panic with its output.
fn peer_sdp(p: &Path, py: &mut Child, rx: &mpsc::Receiver<String>) -> String {
    match wait_for_file(p, py, Instant::now() + Duration::from_secs(20)) {
        Ok(a) => a,
        Err(e) => panic!("{e}; webrtcbin:\n{}", drain(rx)),
    }
}

fn ng_sdp(
    g: SocketAddr,
    cmd: &str,
    tags: (&str, Option<&str>),
    sdp: &str,
    opts: &[(&str, Value)],
) -> Sdp {
    let mut req = Value::dict();
    req.set("command", Value::str(cmd))
        .set("call-id", Value::str(&format!("webrtc-{}", tags.0)))
        .set("from-tag", Value::str(tags.0))
        .set("sdp", Value::str(sdp));
    if let Some(t) = tags.1 {
        req.set("to-tag", Value::str(t));
    }
    for (k, v) in opts {
        req.set(k, v.clone());
    }
    let r = ng(g, &req);
    Sdp::parse(r.get_str("sdp").expect("sdp in the reply")).unwrap()
}

/// The plain SIP side's SDP for its socket.
fn sip_sdp(sip: &UdpSocket) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {NS_ADDR}\r\ns=sip\r\nc=IN IP4 {NS_ADDR}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\na=sendrecv\r\n",
        sip.local_addr().unwrap().port()
    )
}

/// An SDP the WebRTC side receives from the gateway: ICE-lite with our one
/// host candidate (rtcp-mux), DTLS-SRTP, a=mid.
fn assert_webrtc_sdp(s: &Sdp) {
    assert!(s.is_ice_lite(), "{}", s.render());
    let m = &s.media[0];
    assert_eq!(m.proto, "UDP/TLS/RTP/SAVPF");
    assert!(m.rtcp_mux() && m.has("end-of-candidates") && !m.attrs("mid").is_empty());
    assert_eq!(m.attrs("candidate").len(), 1, "{}", s.render());
    assert!(m.attrs("candidate")[0].contains(&format!(" {NS_ADDR} {} typ host", m.port)));
}

/// One call between webrtcbin and the plain SIP socket; `web_offers`: the
/// WebRTC side sends the offer (the usual browser-calls-SIP direction, where
/// the gateway answers DTLS `active`), else the SIP side does (the gateway
/// offers `actpass`, webrtcbin answers `active`).
fn call(gw: &Gateway, dir: &Path, web_offers: bool) {
    let g = gw.ng_addr();
    let addr: IpAddr = NS_ADDR.parse().unwrap();
    let sip = UdpSocket::bind(SocketAddr::new(addr, 0)).unwrap();
    sip.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let name = if web_offers {
        "web-offers"
    } else {
        "sip-offers"
    };
    eprintln!("=== {name}");
    let offer_path = dir.join(format!("{name}-offer.sdp"));
    let answer_path = dir.join(format!("{name}-answer.sdp"));
    let to_webrtc = [
        ("ICE", Value::str("force")),
        ("transport-protocol", Value::str("UDP/TLS/RTP/SAVPF")),
        ("rtcp-mux", Value::List(vec![Value::str("require")])),
    ];
    let to_sip = [
        ("ICE", Value::str("remove")),
        ("transport-protocol", Value::str("RTP/AVP")),
        ("rtcp-mux", Value::List(vec![Value::str("demux")])),
    ];
    let (mut py, rx, to_gateway) = if web_offers {
        let (mut py, rx) = start_peer("offer", &offer_path, &answer_path);
        let web = peer_sdp(&offer_path, &mut py, &rx);
        eprintln!("offer from webrtcbin:\n{web}");
        let out = ng_sdp(g, "offer", (name, None), &web, &to_sip);
        assert!(!out.has_ice(), "{}", out.render());
        let sip_leg = SocketAddr::new(out.media_ip(0).unwrap(), out.media[0].port);
        let back = ng_sdp(g, "answer", (name, Some("sip")), &sip_sdp(&sip), &to_webrtc);
        assert_webrtc_sdp(&back);
        eprintln!("answer to webrtcbin:\n{}", back.render());
        std::fs::write(&answer_path, back.render()).unwrap();
        (py, rx, sip_leg)
    } else {
        let out = ng_sdp(g, "offer", (name, None), &sip_sdp(&sip), &to_webrtc);
        assert_webrtc_sdp(&out);
        eprintln!("offer to webrtcbin:\n{}", out.render());
        std::fs::write(&offer_path, out.render()).unwrap();
        let (mut py, rx) = start_peer("answer", &offer_path, &answer_path);
        let web = peer_sdp(&answer_path, &mut py, &rx);
        eprintln!("answer from webrtcbin:\n{web}");
        let back = ng_sdp(g, "answer", (name, Some("web")), &web, &to_sip);
        assert!(!back.has_ice(), "{}", back.render());
        let sip_leg = SocketAddr::new(back.media_ip(0).unwrap(), back.media[0].port);
        (py, rx, sip_leg)
    };

    // Media: 20 ms RTP into the gateway; count webrtcbin's RTP out of it,
    // until the script stops (MEDIA_SECS after negotiation) or a deadline
    // kills it.
    let (mut seq, mut got, mut other_pt) = (0u16, 0usize, 0usize);
    let mut next = Instant::now();
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(MEDIA_SECS + 30);
    let status = loop {
        if let Some(s) = py.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = py.kill();
            let _ = py.wait();
            break None;
        }
        if Instant::now() >= next {
            let _ = sip.send_to(&rtp(seq), to_gateway);
            seq = seq.wrapping_add(1);
            next += Duration::from_millis(20);
        }
        if let Ok((n, from)) = sip.recv_from(&mut buf) {
            if n >= 12 && from == to_gateway && buf[0] >> 6 == 2 {
                if buf[1] & 0x7F == 0 {
                    got += 1;
                } else {
                    other_pt += 1;
                }
            }
        }
    };
    let out = drain(&rx);
    eprintln!("webrtcbin:\n{out}");
    let mut del = Value::dict();
    del.set("command", Value::str("delete"))
        .set("call-id", Value::str(&format!("webrtc-{name}")));
    ng(g, &del);
    let kv = |k: &str| {
        out.lines()
            .rev()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("")
            .to_string()
    };
    let web_got: usize = kv("RTP_RECEIVED").parse().unwrap_or(0);
    eprintln!(
        "{name}: webrtcbin decrypted {web_got} RTP packets from the gateway; the SIP side got \
         {got} of webrtcbin's (PT 0), {other_pt} with another PT; {seq} sent"
    );
    assert!(
        status.is_some(),
        "{name}: webrtcbin's script did not finish (killed)"
    );
    assert!(
        out.contains("ICE_CONNECTION_STATE=connected")
            || out.contains("ICE_CONNECTION_STATE=completed"),
        "{name}: ICE did not connect"
    );
    assert!(
        out.contains("DTLS_STATE=connected"),
        "{name}: DTLS did not connect"
    );
    assert!(
        web_got >= MIN_PACKETS,
        "{name}: webrtcbin decrypted {web_got} RTP packets (want >= {MIN_PACKETS})"
    );
    assert_eq!(
        kv("RTP_PT"),
        "0",
        "{name}: webrtcbin received the negotiated PT"
    );
    assert!(
        got >= MIN_PACKETS,
        "{name}: the SIP side got {got} RTP packets with PT 0 (want >= {MIN_PACKETS})"
    );
    assert!(
        status.unwrap().success(),
        "{name}: webrtcbin's script failed"
    );
}

#[test]
fn webrtc_in_namespace() {
    let Some(dir) = std::env::var_os(CHILD_ENV).map(PathBuf::from) else {
        return;
    };
    namespace_network();
    let (lo, hi) = rtp_tools::interop::free_port_range(40);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        interface: NS_ADDR.parse().unwrap(),
        port_min: lo,
        port_max: hi,
        backend: "mmsg".into(),
        ..GatewayConfig::default()
    })
    .unwrap();
    call(&gw, &dir, false);
    call(&gw, &dir, true);
    let ice = gw.ng().engine().stats().expect("engine stats").ice;
    eprintln!("gateway ICE counters: {ice:?}");
    // Each call: webrtcbin's checks answered, one nomination at least.
    assert!(ice.answered >= 2 && ice.nominations >= 2, "{ice:?}");
    assert_eq!(gw.ng().call_count(), 0);
    gw.shutdown();
}
