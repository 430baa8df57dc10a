//! WebRTC-to-SIP bridging with a real browser: headless Chromium (fake
//! microphone, Opus, ICE, DTLS-SRTP, rtcp-mux, BUNDLE) and a plain RTP peer
//! (what a SIP phone sends and receives) call each other through rtp-gateway,
//! set up over ng as a SIP proxy would:
//! - the browser calls: its offer with `transport-protocol: RTP/AVP`,
//!   `ICE: remove` and `rtcp-mux: demux` towards the phone, the phone's answer
//!   back, and the gateway's ICE-lite answer (its fingerprint, `a=setup:active`)
//!   to the browser, which is then the DTLS server;
//! - the phone calls: its offer with `transport-protocol: UDP/TLS/RTP/SAVPF`,
//!   `ICE: force` and `rtcp-mux: require` towards the browser (ICE-lite,
//!   `actpass`), the browser's answer (`active`: the DTLS client) back.
//!
//! Proven, both ways: the browser's ICE and DTLS connect to the gateway; the phone's
//! socket gets the browser's audio as plain RTP with the browser's Opus payload
//! type and SSRC, most of it recognisably 20 ms Opus frames (decrypted), and
//! the browser's RTCP reports in clear on its own RTCP port (demuxed); the
//! phone's RTP (Opus silence frames) reaches the browser (its `inbound-rtp`
//! counts packets, which it only does for packets that passed SRTP
//! authentication). The key facts (DTLS cipher, SRTP profile, selected
//! candidate pair, packet counts) are printed for the CI log.
//!
//! Everything runs in a network namespace of its own with only `lo` (up), and
//! a PID namespace: the test re-executes itself under `unshare`, and the
//! kernel ends every process left in the namespace (gateway, Chromium and its
//! helpers) when the re-executed test ends, whichever way it ends. Each
//! process also has a guard that stops it by PID (Chromium by its own process
//! group). The page (`support/chromium_peer.html`) is served by this test over
//! loopback HTTP, which also carries the signalling and the page's results.
//!
//! Needs `chromium`, `unshare` (util-linux) and `ip` (iproute2); CI installs
//! them (.ci/install.sh). Without them the test is skipped with a note, unless
//! `CI` is set, where their absence is a failure.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rtp_tools::gateway::bencode::Value;
use rtp_tools::gateway::client::NgClient;
use rtp_tools::gateway::sdp::Sdp;
use rtp_tools::interop::free_port_range;

/// Set in the re-executed test, inside the namespaces: its work directory
/// (made and removed by the outer test, also when the namespace is killed).
const CHILD_ENV: &str = "RTP_WEBRTC_CHROMIUM_CHILD";
/// The page, served to Chromium.
const PAGE: &str = include_str!("support/chromium_peer.html");
/// Everything inside the namespaces must be over by then (the outer test kills
/// the namespace after it).
const WHOLE_RUN: Duration = Duration::from_secs(120);
/// The ng call-id of the call.
const CALL_ID: &str = "webrtc-chromium";
/// An Opus packet of one 20 ms CELT fullband frame of silence (TOC 0xF8, then
/// the two bytes Opus encoders send for digital silence).
const OPUS_SILENCE: [u8; 3] = [0xF8, 0xFF, 0xFE];

/// Which side of the call offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Offerer {
    /// The browser calls the phone: the gateway answers the browser (and is
    /// the DTLS client, as the answerer of an `actpass` offer).
    Browser,
    /// The phone calls the browser: the gateway offers to the browser, which
    /// answers `active` (the gateway is the DTLS server).
    Phone,
}

#[test]
fn chromium_calls_a_plain_rtp_peer_through_the_gateway() {
    run(
        "chromium_calls_a_plain_rtp_peer_through_the_gateway",
        Offerer::Browser,
    );
}

#[test]
fn a_plain_rtp_peer_calls_chromium_through_the_gateway() {
    run(
        "a_plain_rtp_peer_calls_chromium_through_the_gateway",
        Offerer::Phone,
    );
}

/// Runs the call of test `name` in its namespaces (this executable again,
/// running only that test), or, in there, the call itself.
fn run(name: &str, offerer: Offerer) {
    if let Some(work) = std::env::var_os(CHILD_ENV) {
        bridged_call(Path::new(&work), offerer);
        return;
    }
    let ci = std::env::var_os("CI").is_some();
    let missing: Vec<&str> = ["chromium", "unshare", "ip"]
        .into_iter()
        .filter(|c| !have(c))
        .collect();
    if !missing.is_empty() {
        assert!(
            !ci,
            "{} missing in CI (.ci/install.sh installs chromium, util-linux, iproute2)",
            missing.join(", ")
        );
        eprintln!(
            "note: {} not installed: WebRTC bridging with Chromium skipped (sudo bash .ci/install.sh)",
            missing.join(", ")
        );
        return;
    }
    // A network namespace with only lo, a PID namespace whose init is the
    // re-executed test (everything in it dies with it), and a mount namespace
    // for the matching /proc. Without root, a user namespace maps us to root.
    let mut cmd = Command::new("unshare");
    if !is_root() {
        cmd.arg("--map-root-user");
    }
    let exe = std::env::current_exe().expect("test executable");
    let work = WorkDir(std::env::temp_dir().join(format!(
        "rtp-webrtc-chromium-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )));
    std::fs::create_dir_all(&work.0).expect("work dir");
    cmd.args([
        "--net",
        "--pid",
        "--fork",
        "--kill-child",
        "--mount-proc",
        "sh",
        "-c",
        "ip link set lo up && exec \"$0\" \"$@\"",
    ])
    .arg(exe)
    .args(["--exact", name, "--nocapture", "--test-threads=1"])
    .env(CHILD_ENV, &work.0)
    .stdin(Stdio::null());
    // One browser at a time (the tests of this file run in parallel).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The child's output goes straight to ours: its facts are in the CI log.
    let child = Reaped::new("unshare", cmd.spawn().expect("unshare starts"));
    let status = child.wait_until(Instant::now() + WHOLE_RUN);
    match status {
        Some(s) => assert!(
            s.success(),
            "the bridged call failed ({s}); see its output above"
        ),
        None => panic!(
            "the bridged call did not finish in {} s: its namespace was killed",
            WHOLE_RUN.as_secs()
        ),
    }
}

// ------------------------------------------------------------------ processes

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// A child process killed (SIGKILL) and reaped when dropped, on every path.
struct Reaped {
    what: &'static str,
    child: Child,
    /// Kill its whole process group (it leads one) rather than the PID alone.
    group: bool,
}

impl Reaped {
    fn new(what: &'static str, child: Child) -> Self {
        Reaped {
            what,
            child,
            group: false,
        }
    }

    /// Its exit status, or `None` if it was still running at `deadline`.
    fn wait_until(mut self, deadline: Instant) -> Option<std::process::ExitStatus> {
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None; // killed by the drop
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Asks it to stop (SIGTERM) and waits up to `grace` before the drop
    /// kills it.
    fn stop(mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        self.signal("TERM");
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = self.child.try_wait() {
                if self.group {
                    self.signal("KILL"); // helpers that outlived the leader
                }
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn signal(&self, sig: &str) {
        let id = self.child.id().to_string();
        let target = if self.group { format!("-{id}") } else { id };
        let _ = Command::new("kill")
            .args([&format!("-{sig}"), "--", &target])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.group || self.child.try_wait().ok().flatten().is_none() {
            self.signal("KILL");
        }
        if self.child.wait().is_err() {
            eprintln!("could not reap {} ({})", self.what, self.child.id());
        }
    }
}

/// A work directory, removed when dropped.
struct WorkDir(PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The interfaces of this network namespace (`/proc/net/dev` is per namespace).
fn interfaces() -> Vec<String> {
    std::fs::read_to_string("/proc/net/dev")
        .expect("/proc/net/dev")
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect()
}

/// rtp-gateway on loopback with a free port range; its log lines are kept.
fn start_gateway() -> (Reaped, SocketAddr, Arc<Mutex<Vec<String>>>) {
    let (lo, hi) = free_port_range(100);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rtp-gateway"))
        .args(["--listen-ng", "127.0.0.1:0", "--backend", "mmsg"])
        .arg(format!("--port-min={lo}"))
        .arg(format!("--port-max={hi}"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("rtp-gateway starts");
    let out = child.stdout.take().expect("piped");
    let gw = Reaped::new("rtp-gateway", child);
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(a) = line.strip_prefix("NG_ADDR=") {
                let _ = tx.send(a.parse::<SocketAddr>());
            }
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    let ng = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| {
            panic!(
                "rtp-gateway printed no NG_ADDR: {:?}",
                log.lock().unwrap_or_else(|e| e.into_inner())
            )
        })
        .expect("NG_ADDR parses");
    (gw, ng, log)
}

/// Headless Chromium on the test's page, in a process group of its own; its
/// output goes to `log`.
fn start_chromium(url: &str, profile: &Path, log: &Path) -> Reaped {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(log).expect("chromium log");
    let child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--disable-extensions",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",
            // A fake microphone, granted without asking.
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            // Candidates on 127.0.0.1 (without it a namespace with only lo
            // gives none), as addresses rather than mDNS names.
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .process_group(0)
        .spawn()
        .expect("chromium starts");
    Reaped {
        what: "chromium",
        child,
        group: true,
    }
}

// ------------------------------------------------------------------ the page's server

/// What the page and the test exchange.
#[derive(Default)]
struct Exchange {
    offer: Option<String>,
    answer: Option<String>,
    result: Option<serde_json::Value>,
    log: Vec<String>,
}

type Shared = Arc<(Mutex<Exchange>, Condvar)>;

/// Serves the page and the signalling on 127.0.0.1 (one thread per
/// connection, one request each); returns the page's URL.
fn serve(shared: Shared) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("http bind");
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let shared = shared.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &shared);
            });
        }
    });
    url
}

fn handle(mut conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0u8; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut parts = request.split_whitespace();
    let method = parts.next().unwrap_or("");
    let path = parts.next().unwrap_or("").split('?').next().unwrap_or("");
    let (lock, cv) = &**shared;
    let (status, ctype, reply) = {
        let mut x = lock.lock().unwrap_or_else(|e| e.into_inner());
        match (method, path) {
            ("GET", "/") => ("200 OK", "text/html; charset=utf-8", PAGE.to_string()),
            ("POST", "/offer" | "/answer") => {
                let slot = if path == "/offer" {
                    &mut x.offer
                } else {
                    &mut x.answer
                };
                *slot = Some(body);
                ("200 OK", "text/plain", String::new())
            }
            ("GET", "/offer" | "/answer") => {
                match if path == "/offer" {
                    &x.offer
                } else {
                    &x.answer
                } {
                    Some(sdp) => ("200 OK", "application/sdp", sdp.clone()),
                    None => ("204 No Content", "text/plain", String::new()),
                }
            }
            ("POST", "/log") => {
                println!("page: {body}");
                x.log.push(body);
                ("200 OK", "text/plain", String::new())
            }
            ("POST", "/result") => {
                x.result = Some(serde_json::from_str(&body).unwrap_or_else(
                    |e| serde_json::json!({ "error": format!("result is not JSON ({e}): {body}") }),
                ));
                ("200 OK", "text/plain", String::new())
            }
            _ => ("404 Not Found", "text/plain", String::new()),
        }
    };
    cv.notify_all();
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    conn.flush()
}

/// Waits until `pick` finds something in the exchange, or `deadline`.
fn wait_for<T>(
    shared: &Shared,
    deadline: Instant,
    pick: impl Fn(&Exchange) -> Option<T>,
) -> Option<T> {
    let (lock, cv) = &**shared;
    let mut x = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if let Some(v) = pick(&x) {
            return Some(v);
        }
        let left = deadline.checked_duration_since(Instant::now())?;
        x = cv
            .wait_timeout(x, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

// ------------------------------------------------------------------ ng and SDP

fn ng_request(ng: &mut NgClient, req: &Value) -> Value {
    let r = ng.request(req).expect("ng reply");
    assert_eq!(r.get_str("result"), Some("ok"), "ng {req:?} -> {r:?}");
    if let Some(w) = r.get_str("warning") {
        println!("ng {} warning: {w}", req.get_str("command").unwrap_or("?"));
    }
    r
}

/// The payload type of `codec` (`opus/48000/2` and the like) in media section 0.
fn payload_type(sdp: &Sdp, codec: &str) -> Option<u8> {
    sdp.media[0].attrs("rtpmap").into_iter().find_map(|v| {
        let (pt, name) = v.split_once(' ')?;
        name.to_ascii_lowercase()
            .starts_with(codec)
            .then(|| pt.parse().ok())?
    })
}

/// Where media section 0 of an SDP goes (its `c=` and `m=` port).
fn media_addr(sdp: &Sdp) -> SocketAddr {
    let ip = sdp
        .media_ip(0)
        .or_else(|| sdp.session_ip())
        .expect("a c= line");
    SocketAddr::new(ip, sdp.media[0].port)
}

/// A plain SIP phone's SDP: RTP/AVP, Opus as `opus` (and PCMU in an offer),
/// its RTCP on a port of its own.
fn phone_sdp(rtp: SocketAddr, rtcp: SocketAddr, opus: u8, offer: bool) -> String {
    let (fmts, pcmu) = if offer {
        (format!("{opus} 0"), "a=rtpmap:0 PCMU/8000\r\n")
    } else {
        (opus.to_string(), "")
    };
    format!(
        "v=0\r\no=phone 2 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {fmts}\r\na=rtpmap:{opus} opus/48000/2\r\n\
         a=fmtp:{opus} minptime=10;useinbandfec=1\r\n{pcmu}a=ptime:20\r\n\
         a=rtcp:{rtcp_port}\r\na=sendrecv\r\n",
        ip = rtp.ip(),
        port = rtp.port(),
        rtcp_port = rtcp.port()
    )
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7F];
    p.extend(seq.to_be_bytes());
    p.extend(ts.to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The RTP payload of a plain RTP packet (after CSRCs and a header extension).
fn rtp_payload(p: &[u8]) -> Option<&[u8]> {
    if p.len() < 12 || p[0] >> 6 != 2 {
        return None;
    }
    let mut off = 12 + 4 * usize::from(p[0] & 0x0F);
    if p[0] & 0x10 != 0 {
        let ext = p.get(off + 2..off + 4)?;
        off += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let end = if p[0] & 0x20 != 0 {
        p.len().checked_sub(usize::from(*p.last()?))?
    } else {
        p.len()
    };
    p.get(off..end)
}

/// The sender SSRC of a plain RTCP compound packet that starts with a sender
/// or receiver report (RFC 3550 section 6.1). Every packet of the compound
/// must be version 2 and their lengths must add up to the datagram: SRTCP
/// (encrypted after the first 8 bytes, index and tag at the end) does not.
fn rtcp_sender(p: &[u8]) -> Option<u32> {
    if p.len() < 8 || !matches!(p[1], 200 | 201) {
        return None;
    }
    let mut off = 0;
    while off < p.len() {
        let h = p.get(off..off + 4)?;
        if h[0] >> 6 != 2 {
            return None;
        }
        off += 4 * (usize::from(u16::from_be_bytes([h[2], h[3]])) + 1);
    }
    (off == p.len()).then(|| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

/// Whether an Opus payload starts with the TOC byte of one 20 ms frame (code
/// 0; SILK, hybrid or CELT configuration with a 20 ms frame). An SRTP payload
/// relayed without decryption matches in about 7% of packets.
fn opus_20ms_frame(payload: &[u8]) -> bool {
    let Some(&toc) = payload.first() else {
        return false;
    };
    let config = toc >> 3;
    let frame_20ms = match config {
        0..=11 => config % 4 == 1,
        12..=15 => config % 2 == 1,
        _ => config % 4 == 3,
    };
    frame_20ms && toc & 0x03 == 0
}

// ------------------------------------------------------------------ the call

/// What the phone's sockets saw.
#[derive(Default, Debug)]
struct PhoneStats {
    rtp_by_pt: BTreeMap<u8, usize>,
    rtp_from_elsewhere: usize,
    opus_20ms: usize,
    ssrcs: BTreeMap<u32, usize>,
    /// Datagrams at the RTCP port.
    rtcp: usize,
    /// Of them, plain RTCP (not SRTCP) that starts with an SR or RR: its
    /// sender's SSRC.
    rtcp_senders: BTreeMap<u32, usize>,
    sent: u16,
}

fn bridged_call(work: &Path, offerer: Offerer) {
    let started = Instant::now();
    let ifaces = interfaces();
    assert_eq!(
        ifaces,
        ["lo"],
        "refusing to run Chromium with a non-loopback interface"
    );

    let shared: Shared = Arc::default();
    let role = match offerer {
        Offerer::Browser => "offer",
        Offerer::Phone => "answer",
    };
    let url = format!("{}?role={role}", serve(shared.clone()));
    let (gateway, ng_addr, gateway_log) = start_gateway();
    let mut ng = NgClient::new(ng_addr).expect("ng client");
    let chromium_log = work.join("chromium.log");
    let chromium = start_chromium(&url, &work.join("profile"), &chromium_log);
    println!(
        "chromium {} on {url}; rtp-gateway ng {ng_addr}",
        chromium.child.id()
    );

    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        call(&shared, &mut ng, started, offerer)
    }));
    // Stop the browser first (it would keep sending), then show the gateway's
    // view of the call.
    let _ = chromium.stop(Duration::from_secs(5));
    let mut delete = Value::dict();
    delete
        .set("command", Value::str("delete"))
        .set("call-id", Value::str(CALL_ID));
    if let Ok(r) = ng.request(&delete) {
        println!("ng delete: {r:?}");
    }
    let _ = gateway.stop(Duration::from_secs(10));
    if let Err(panic) = outcome {
        let page = shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .log
            .join("\n");
        let browser = std::fs::read_to_string(&chromium_log).unwrap_or_default();
        let tail: Vec<&str> = browser.lines().rev().take(60).collect();
        eprintln!(
            "---- page log\n{page}\n---- chromium log (last lines)\n{}\n---- rtp-gateway log\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            gateway_log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .join("\n")
        );
        std::panic::resume_unwind(panic);
    }
    // Chromium's own errors, for the log; not failures by themselves (but
    // D-Bus, there is none, and the zygote's, from its shutdown).
    let browser = std::fs::read_to_string(&chromium_log).unwrap_or_default();
    for l in browser
        .lines()
        .filter(|l| l.contains(":ERROR:") && !l.contains("dbus") && !l.contains("zygote"))
        .take(10)
    {
        println!("chromium: {l}");
    }
    println!("done in {:.1} s", started.elapsed().as_secs_f64());
}

/// The gateway's addresses on the call and the Opus payload type.
#[derive(Debug)]
struct Legs {
    opus: u8,
    /// Where the phone sends (the gateway's address in the phone's SDP).
    phone_side: SocketAddr,
    /// The gateway's candidate in the browser's SDP.
    browser_side: SocketAddr,
}

/// Signalling, media and the checks, with the processes already running.
fn call(shared: &Shared, ng: &mut NgClient, started: Instant, offerer: Offerer) {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("rtp bind");
    let rtcp = UdpSocket::bind("127.0.0.1:0").expect("rtcp bind");
    rtcp.set_nonblocking(true).unwrap();
    let phone = (rtp.local_addr().unwrap(), rtcp.local_addr().unwrap());
    let legs = match offerer {
        Offerer::Browser => browser_offers(shared, ng, started, phone),
        Offerer::Phone => phone_offers(shared, ng, started, phone),
    };
    media_and_checks(shared, &legs, &rtp, &rtcp);
}

/// The browser's offer, bridged to the phone as a SIP proxy would, and the
/// phone's answer back.
fn browser_offers(
    shared: &Shared,
    ng: &mut NgClient,
    started: Instant,
    (rtp, rtcp): (SocketAddr, SocketAddr),
) -> Legs {
    // 1. The browser's offer.
    let offer = wait_for(shared, started + Duration::from_secs(40), |x| {
        match (&x.offer, &x.result) {
            (Some(o), _) => Some(Ok(o.clone())),
            (None, Some(r)) => Some(Err(r.clone())),
            (None, None) => None,
        }
    })
    .expect("Chromium posted no offer within 40 s")
    .unwrap_or_else(|r| panic!("the page ended before its offer: {r}"));
    let offer_sdp = Sdp::parse(&offer).expect("Chromium's offer parses");
    let m = &offer_sdp.media[0];
    println!(
        "offer: m={} {} {} {}; {} candidate(s); setup {:?}",
        m.kind,
        m.port,
        m.proto,
        m.fmts.join(" "),
        m.attrs("candidate").len(),
        offer_sdp.media_or_session_attr(0, "setup")
    );
    assert!(m.proto.starts_with("UDP/TLS/RTP/SAVP"), "{offer}");
    assert!(m.rtcp_mux(), "{offer}");
    let opus = payload_type(&offer_sdp, "opus/48000").expect("Chromium offers Opus");

    // 2. ng offer, as a SIP proxy bridging to plain RTP.
    let mut req = Value::dict();
    req.set("command", Value::str("offer"))
        .set("call-id", Value::str(CALL_ID))
        .set("from-tag", Value::str("browser"))
        .set("sdp", Value::str(&offer))
        .set("transport-protocol", Value::str("RTP/AVP"))
        .set("ICE", Value::str("remove"))
        .set("rtcp-mux", Value::List(vec![Value::str("demux")]));
    let r = ng_request(ng, &req);
    let to_phone = Sdp::parse(r.get_str("sdp").expect("offer reply has sdp")).unwrap();
    check_phone_sdp(&to_phone, opus);
    let phone_side = media_addr(&to_phone);

    // 3. The phone answers from its plain sockets.
    let answer = phone_sdp(rtp, rtcp, opus, false);
    let mut req = Value::dict();
    req.set("command", Value::str("answer"))
        .set("call-id", Value::str(CALL_ID))
        .set("from-tag", Value::str("browser"))
        .set("to-tag", Value::str("phone"))
        .set("sdp", Value::str(&answer));
    let r = ng_request(ng, &req);
    let to_browser = r.get_str("sdp").expect("answer reply has sdp").to_string();
    let bsdp = Sdp::parse(&to_browser).unwrap();
    check_gateway_sdp(&bsdp, &to_browser);
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).answer = Some(to_browser.clone());
    shared.1.notify_all();
    Legs {
        opus,
        phone_side,
        browser_side: media_addr(&bsdp),
    }
}

/// What the gateway's SDP to the browser must have: ICE-lite with its
/// credentials and candidate, DTLS-SRTP, rtcp-mux.
fn check_gateway_sdp(bsdp: &Sdp, text: &str) {
    let bm = &bsdp.media[0];
    println!(
        "{} to the browser: m={} {} {}; ice-lite {}; setup {:?}; fingerprint {:?}; candidates {:?}",
        if bsdp.media_or_session_attr(0, "setup") == Some("actpass") {
            "offer"
        } else {
            "answer"
        },
        bm.kind,
        bm.port,
        bm.proto,
        bsdp.session.iter().any(|l| l == "a=ice-lite"),
        bsdp.media_or_session_attr(0, "setup"),
        bsdp.media_or_session_attr(0, "fingerprint"),
        bm.attrs("candidate")
    );
    assert!(bm.proto.starts_with("UDP/TLS/RTP/SAVP"), "{text}");
    assert!(
        bsdp.session.iter().any(|l| l == "a=ice-lite"),
        "the gateway is ICE-lite towards the browser: {text}"
    );
    assert!(
        bsdp.media_or_session_attr(0, "ice-ufrag").is_some(),
        "{text}"
    );
    assert!(
        bsdp.media_or_session_attr(0, "fingerprint").is_some(),
        "{text}"
    );
    assert!(!bm.attrs("candidate").is_empty(), "{text}");
    assert!(bm.rtcp_mux(), "{text}");
}

/// The phone's offer (Opus and PCMU), bridged to the browser as a SIP proxy
/// would for a WebRTC callee, and the browser's answer back.
fn phone_offers(
    shared: &Shared,
    ng: &mut NgClient,
    started: Instant,
    (rtp, rtcp): (SocketAddr, SocketAddr),
) -> Legs {
    let opus = 111;
    // 1. ng offer: DTLS-SRTP, ICE (the relay its only candidate) and rtcp-mux
    // only towards the browser.
    let mut req = Value::dict();
    req.set("command", Value::str("offer"))
        .set("call-id", Value::str(CALL_ID))
        .set("from-tag", Value::str("phone"))
        .set("sdp", Value::str(&phone_sdp(rtp, rtcp, opus, true)))
        .set("transport-protocol", Value::str("UDP/TLS/RTP/SAVPF"))
        .set("ICE", Value::str("force"))
        .set("rtcp-mux", Value::List(vec![Value::str("require")]));
    let r = ng_request(ng, &req);
    let to_browser = r.get_str("sdp").expect("offer reply has sdp").to_string();
    let bsdp = Sdp::parse(&to_browser).unwrap();
    check_gateway_sdp(&bsdp, &to_browser);
    assert_eq!(
        bsdp.media_or_session_attr(0, "setup"),
        Some("actpass"),
        "{to_browser}"
    );
    assert_eq!(
        payload_type(&bsdp, "opus/48000"),
        Some(opus),
        "{to_browser}"
    );
    shared.0.lock().unwrap_or_else(|e| e.into_inner()).offer = Some(to_browser.clone());
    shared.1.notify_all();

    // 2. The browser's answer.
    let answer = wait_for(shared, started + Duration::from_secs(40), |x| {
        match (&x.answer, &x.result) {
            (Some(a), _) => Some(Ok(a.clone())),
            (None, Some(r)) => Some(Err(r.clone())),
            (None, None) => None,
        }
    })
    .expect("Chromium posted no answer within 40 s")
    .unwrap_or_else(|r| panic!("the page ended before its answer: {r}"));
    let answer_sdp = Sdp::parse(&answer).expect("Chromium's answer parses");
    let m = &answer_sdp.media[0];
    println!(
        "answer from the browser: m={} {} {} {}; {} candidate(s); setup {:?}",
        m.kind,
        m.port,
        m.proto,
        m.fmts.join(" "),
        m.attrs("candidate").len(),
        answer_sdp.media_or_session_attr(0, "setup")
    );
    assert_eq!(
        answer_sdp.media_or_session_attr(0, "setup"),
        Some("active"),
        "the browser is the DTLS client: {answer}"
    );
    assert_eq!(
        payload_type(&answer_sdp, "opus/48000"),
        Some(opus),
        "{answer}"
    );

    // 3. ng answer: the phone gets plain RTP.
    let mut req = Value::dict();
    req.set("command", Value::str("answer"))
        .set("call-id", Value::str(CALL_ID))
        .set("from-tag", Value::str("phone"))
        .set("to-tag", Value::str("browser"))
        .set("sdp", Value::str(&answer));
    let r = ng_request(ng, &req);
    let to_phone = Sdp::parse(r.get_str("sdp").expect("answer reply has sdp")).unwrap();
    let pm = &to_phone.media[0];
    println!(
        "answer to the phone: m={} {} {} {}",
        pm.kind,
        pm.port,
        pm.proto,
        pm.fmts.join(" ")
    );
    check_phone_sdp(&to_phone, opus);
    Legs {
        opus,
        phone_side: media_addr(&to_phone),
        browser_side: media_addr(&bsdp),
    }
}

/// What the gateway's SDP to the phone must be: plain RTP with Opus, no ICE,
/// no DTLS, no rtcp-mux.
fn check_phone_sdp(to_phone: &Sdp, opus: u8) {
    let pm = &to_phone.media[0];
    assert_eq!(pm.proto, "RTP/AVP", "{to_phone:?}");
    for a in ["ice-ufrag", "candidate", "fingerprint", "crypto"] {
        assert!(
            pm.attrs(a).is_empty(),
            "a={a} towards the phone: {to_phone:?}"
        );
    }
    assert!(!to_phone.has_ice(), "{to_phone:?}");
    assert!(
        !pm.rtcp_mux(),
        "no rtcp-mux towards the phone: {to_phone:?}"
    );
    assert_eq!(
        payload_type(to_phone, "opus/48000"),
        Some(opus),
        "{to_phone:?}"
    );
}

/// Media both ways until the page reports, then the checks.
fn media_and_checks(shared: &Shared, legs: &Legs, rtp: &UdpSocket, rtcp: &UdpSocket) {
    let opus = legs.opus;
    // 4. Media: the phone sends an Opus silence frame every 20 ms and counts
    // what arrives, until the page reports, 20 of Chromium's RTP packets are in
    // and its first RTCP report (or the deadline).
    let mut phone = PhoneStats::default();
    let ssrc: u32 = rand::random();
    // (The page gives up on connecting after 30 s and on media after 20 s.)
    let deadline = Instant::now() + Duration::from_secs(55);
    let mut next_send = Instant::now();
    let mut buf = [0u8; 2048];
    rtp.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let result = loop {
        let now = Instant::now();
        if now >= next_send {
            let pkt = rtp_packet(
                opus,
                phone.sent,
                u32::from(phone.sent).wrapping_mul(960),
                ssrc,
                &OPUS_SILENCE,
            );
            let _ = rtp.send_to(&pkt, legs.phone_side);
            phone.sent = phone.sent.wrapping_add(1);
            next_send = (next_send + Duration::from_millis(20)).max(now);
        }
        if let Ok((n, from)) = rtp.recv_from(&mut buf) {
            let p = &buf[..n];
            if from != legs.phone_side {
                phone.rtp_from_elsewhere += 1;
            } else if let Some(payload) = rtp_payload(p) {
                *phone.rtp_by_pt.entry(p[1] & 0x7F).or_default() += 1;
                let s = u32::from_be_bytes([p[8], p[9], p[10], p[11]]);
                *phone.ssrcs.entry(s).or_default() += 1;
                if p[1] & 0x7F == opus && opus_20ms_frame(payload) {
                    phone.opus_20ms += 1;
                }
            }
        }
        while let Ok((n, from)) = rtcp.recv_from(&mut buf) {
            phone.rtcp += 1;
            if let Some(s) = rtcp_sender(&buf[..n]).filter(|_| from.ip() == legs.phone_side.ip()) {
                *phone.rtcp_senders.entry(s).or_default() += 1;
            }
        }
        let got = phone.rtp_by_pt.get(&opus).copied().unwrap_or(0);
        let result = shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .result
            .clone();
        let enough = got >= 20 && !phone.rtcp_senders.is_empty();
        match result {
            // At the deadline, the checks below say what is missing.
            Some(r) if r["connected"] != true || enough || now > deadline => break r,
            None if now > deadline => panic!("no result from the page in 55 s: {phone:?}"),
            _ => {}
        }
    };

    // 5. The facts, then the checks.
    let s = &result["stats"];
    let t = &s["transport"];
    println!("page result: {result}");
    println!(
        "browser: ICE {} / connection {} / DTLS transport {}; DTLS {} {} (tlsVersion {}), SRTP {}; role ice {} dtls {}",
        result["iceConnectionState"],
        result["connectionState"],
        result["dtlsTransportState"],
        t["dtlsState"],
        t["dtlsCipher"],
        t["tlsVersion"],
        t["srtpCipher"],
        t["iceRole"],
        t["dtlsRole"]
    );
    println!(
        "selected pair: {} -> {} ({}, nominated {}, {} checks, {} responses)",
        s["pair"]["local"],
        s["pair"]["remote"],
        s["pair"]["state"],
        s["pair"]["nominated"],
        s["pair"]["requestsSent"],
        s["pair"]["responsesReceived"]
    );
    println!(
        "browser sent {} RTP packets (ssrc {}), received {} (ssrc {}, lost {})",
        s["outbound"]["packetsSent"],
        s["outbound"]["ssrc"],
        s["inbound"]["packetsReceived"],
        s["inbound"]["ssrc"],
        s["inbound"]["packetsLost"]
    );
    println!(
        "phone: sent {} Opus packets; received RTP by PT {:?} (Opus PT {opus}, {} of them one 20 ms Opus frame), SSRCs {:?}, {} from elsewhere; {} RTCP datagrams, SR/RR senders {:?}",
        phone.sent, phone.rtp_by_pt, phone.opus_20ms, phone.ssrcs, phone.rtp_from_elsewhere, phone.rtcp, phone.rtcp_senders
    );

    assert!(result.get("error").is_none(), "the page failed: {result}");
    assert_eq!(
        result["connected"], true,
        "Chromium did not connect: {result}"
    );
    assert!(
        matches!(
            result["iceConnectionState"].as_str(),
            Some("connected" | "completed")
        ),
        "{result}"
    );
    assert_eq!(result["dtlsTransportState"], "connected", "{result}");
    assert_eq!(t["dtlsState"], "connected", "{result}");
    assert!(
        t["dtlsCipher"].as_str().is_some_and(|c| !c.is_empty()),
        "{result}"
    );
    assert!(
        t["srtpCipher"].as_str().is_some_and(|c| !c.is_empty()),
        "{result}"
    );
    let remote = &s["pair"]["remote"];
    assert_eq!(
        (remote["address"].as_str(), remote["port"].as_u64()),
        (
            Some(legs.browser_side.ip().to_string().as_str()),
            Some(u64::from(legs.browser_side.port()))
        ),
        "the selected pair ends at the gateway's candidate: {result}"
    );
    let from_browser = phone.rtp_by_pt.get(&opus).copied().unwrap_or(0);
    assert!(
        from_browser >= 20,
        "the phone got {from_browser} RTP packets with Opus PT {opus} from the gateway: {phone:?}"
    );
    assert!(
        phone.opus_20ms * 2 > from_browser,
        "most of the browser's audio should arrive as decrypted 20 ms Opus frames: {phone:?}"
    );
    // The stream the phone got is the browser's, and the one the browser
    // counts is the phone's (this relay keeps SSRCs).
    let browser_ssrc = s["outbound"]["ssrc"].as_u64();
    assert!(
        phone
            .ssrcs
            .keys()
            .all(|&k| Some(u64::from(k)) == browser_ssrc),
        "RTP at the phone from SSRCs other than the browser's {browser_ssrc:?}: {phone:?}"
    );
    assert_eq!(
        s["inbound"]["ssrc"].as_u64(),
        Some(u64::from(ssrc)),
        "the browser's inbound stream is the phone's: {result}"
    );
    // The browser's RTCP (SRTCP, muxed) reaches the phone's RTCP port in
    // clear.
    assert!(
        phone
            .rtcp_senders
            .keys()
            .any(|&k| Some(u64::from(k)) == browser_ssrc),
        "no plain RTCP report from the browser's SSRC {browser_ssrc:?} at the phone's RTCP port: {phone:?}"
    );
    let to_browser = s["inbound"]["packetsReceived"].as_u64().unwrap_or(0);
    assert!(
        to_browser > 0,
        "Chromium received none of the phone's RTP: {result}"
    );
}
