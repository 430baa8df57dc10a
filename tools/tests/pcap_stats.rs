//! `rtp-pcap stats` against real captures of a real sender, cross-checked with
//! Wireshark (`tshark -z rtp,streams`) and with what the test itself did to the stream.
//!
//! ffmpeg sends 2 s of PCMU (20 ms packets) over RTP to 127.0.0.1. The traffic is
//! captured on `lo` with dumpcap. If dumpcap cannot capture here (missing, or no
//! permission on `lo`), the test records the datagrams itself at its receiving socket,
//! with their arrival times, and writes the pcap with rtp-pcap's own writer; the sender
//! is still ffmpeg. `RTP_PCAP_TEST_NO_DUMPCAP=1` forces that path.
//!
//! - `clean_capture_matches_tshark`: ffmpeg -> sink, starting at sequence number 65480
//!   so that the capture crosses the sequence wrap. pcapng.
//! - `lossy_reordered_capture_matches_tshark`: ffmpeg -> in-test relay -> sink. The
//!   relay drops every 10th packet and swaps some pairs (only among the first 80 RTP
//!   packets, so the last packet of the capture is in order, see below). Classic pcap.
//!
//! Definitions compared with Wireshark 4.0 (`ui/tap-rtp-analysis.c`, `tap-rtp-common.c`):
//! - packets: both count every packet of the stream.
//! - lost: both are `expected - packets`; Wireshark's expected uses the sequence number
//!   of the *last* packet of the stream, ours the *highest*. They agree when the last
//!   packet is in order, which is why the relay leaves the tail alone.
//! - jitter: both are RFC 3550 A.8 on the capture's arrival times, in ms, with the
//!   maximum and the mean of the running estimate over the packets after the first.
//!   Wireshark's current source flags late packets ("wrong timestamp"), leaves them
//!   out of its max and mean and keeps the last in-time packet as the reference; we
//!   follow A.8 literally (previous packet in arrival order, late ones included). On an
//!   in-order stream that is the same computation, so the clean capture must agree to
//!   the printed precision (0.001 ms, plus rounding). On the reordered capture the
//!   installed Wireshark 4.0.17 gave the same figures as ours to the printed precision
//!   in every run we made (so it does not seem to apply those exclusions); the test
//!   allows 0.01 ms there. Both captures are also checked against an A.8 computed in
//!   this file from tshark's per-packet fields, independently of rtp-core.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rtp_tools::pcap::capture::CaptureWriter;
use rtp_tools::pcap::net::{build_ip_udp, linktype};

const SSRC: u32 = 0x1122_3344;

fn need(tool: &str) {
    let ok = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "this test needs `{tool}` on PATH; install the system packages with `sudo bash .ci/install.sh`"
    );
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Two UDP sockets on 127.0.0.1 ports P (even) and P + 1, chosen by the kernel.
fn bind_pair() -> (UdpSocket, UdpSocket) {
    for _ in 0..500 {
        let a = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let p = a.local_addr().unwrap().port();
        let (lo, hi) = if p.is_multiple_of(2) {
            (p, p + 1)
        } else {
            (p - 1, p)
        };
        if hi == u16::MAX {
            continue;
        }
        let (x, y) = if lo == p {
            (Some(a), UdpSocket::bind(("127.0.0.1", hi)).ok())
        } else {
            (UdpSocket::bind(("127.0.0.1", lo)).ok(), Some(a))
        };
        if let (Some(x), Some(y)) = (x, y) {
            return (x, y);
        }
    }
    panic!("no free even/odd UDP port pair on 127.0.0.1");
}

/// A free port pair for ffmpeg's own sockets (released before ffmpeg binds: small race).
fn free_pair_port() -> u16 {
    let (a, _b) = bind_pair();
    a.local_addr().unwrap().port()
}

/// Kills (SIGKILL) and reaps a child on drop, unless it was already waited for.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_timeout(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let child = self.0.as_mut()?;
        let end = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = child.try_wait() {
                self.0 = None;
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    fn pid(&self) -> Option<u32> {
        self.0.as_ref().map(|c| c.id())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Threads that stop when the guard is dropped.
struct Threads {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Threads {
    fn new() -> Self {
        Threads {
            stop: Arc::new(AtomicBool::new(false)),
            handles: Vec::new(),
        }
    }
    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let s = self.stop.clone();
        self.handles.push(std::thread::spawn(move || f(s)));
    }
    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A datagram the sink received: arrival time, source, destination, bytes.
type Received = (Duration, SocketAddr, SocketAddr, Vec<u8>);

fn now_unix() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Reads datagrams until told to stop, recording them.
fn sink(sock: UdpSocket, log: Arc<Mutex<Vec<Received>>>, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let me = sock.local_addr().unwrap();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, from)) = sock.recv_from(&mut buf) {
            let t = now_unix();
            log.lock().unwrap().push((t, from, me, buf[..n].to_vec()));
        }
    }
}

/// What the relay did to the RTP packets.
#[derive(Debug, Default, Clone)]
struct RelayLog {
    forwarded: u64,
    dropped: u64,
    swapped: u64,
    /// Sequence numbers in the order the relay sent them.
    seqs: Vec<u16>,
}

impl RelayLog {
    fn sent(&mut self, pkt: &[u8]) {
        self.forwarded += 1;
        if let Some(b) = pkt.get(2..4) {
            self.seqs.push(u16::from_be_bytes([b[0], b[1]]));
        }
    }
}

/// RTP relay: drops packet i (0-based) when i % 10 == 9, holds packet i when
/// i % 7 == 3 and sends it after the next one (a swapped pair); only for i < 80. A held
/// packet with nothing after it within 200 ms is sent as is.
fn relay_rtp(sock: UdpSocket, to: SocketAddr, log: Arc<Mutex<RelayLog>>, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut i: u64 = 0;
    let mut held: Option<Vec<u8>> = None;
    while !stop.load(Ordering::SeqCst) {
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let pkt = &buf[..n];
                let idx = i;
                i += 1;
                let mut l = log.lock().unwrap();
                if idx < 80 && idx % 10 == 9 {
                    l.dropped += 1;
                    continue;
                }
                if let Some(h) = held.take() {
                    sock.send_to(pkt, to).unwrap();
                    sock.send_to(&h, to).unwrap();
                    l.sent(pkt);
                    l.sent(&h);
                    l.swapped += 1;
                } else if idx < 80 && idx % 7 == 3 {
                    held = Some(pkt.to_vec());
                } else {
                    sock.send_to(pkt, to).unwrap();
                    l.sent(pkt);
                }
            }
            Err(_) => {
                if let Some(h) = held.take() {
                    sock.send_to(&h, to).unwrap();
                    log.lock().unwrap().sent(&h);
                }
            }
        }
    }
}

/// Forwards datagrams unchanged (RTCP leg of the relay).
fn relay_plain(sock: UdpSocket, to: SocketAddr, stop: Arc<AtomicBool>) {
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let _ = sock.send_to(&buf[..n], to);
        }
    }
}

/// dumpcap on `lo`, started and confirmed capturing; `None` if it cannot capture here.
fn start_dumpcap(pcap: &Path, filter: &str, pcapng: bool) -> Option<ChildGuard> {
    if std::env::var_os("RTP_PCAP_TEST_NO_DUMPCAP").is_some() {
        eprintln!("RTP_PCAP_TEST_NO_DUMPCAP set: recording in the test instead");
        return None;
    }
    if !have("dumpcap") {
        eprintln!("dumpcap not found: recording in the test instead");
        return None;
    }
    let log = pcap.with_extension("dumpcap.log");
    let mut cmd = Command::new("dumpcap");
    cmd.args(["-q", "-i", "lo", "-f", filter, "-w"])
        .arg(pcap)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if !pcapng {
        cmd.arg("-P");
    }
    let mut guard = ChildGuard(Some(cmd.spawn().ok()?));
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("File:") {
            std::thread::sleep(Duration::from_millis(300));
            return Some(guard);
        }
        if guard.wait_timeout(Duration::from_millis(50)).is_some() {
            eprintln!(
                "dumpcap cannot capture on lo ({}): recording in the test instead",
                text.trim()
            );
            return None;
        }
    }
    eprintln!("dumpcap did not start: recording in the test instead");
    None
}

fn stop_dumpcap(mut g: ChildGuard) {
    std::thread::sleep(Duration::from_millis(500));
    if let Some(pid) = g.pid() {
        let _ = Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
    }
    if g.wait_timeout(Duration::from_secs(5)).is_none() {
        panic!("dumpcap did not stop on SIGINT");
    }
}

/// ffmpeg: 2 s of a 1 kHz sine as PCMU, 20 ms packets, to `dest` (RTCP to dest + 1).
fn run_ffmpeg(dest: u16, first_seq: u16) {
    let local = free_pair_port();
    let url = format!(
        "rtp://127.0.0.1:{dest}?localrtpport={local}&localrtcpport={}",
        local + 1
    );
    let child = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=1000:sample_rate=8000:samples_per_frame=160",
            "-t",
            "2",
            "-ac",
            "1",
            "-c:a",
            "pcm_mulaw",
            "-payload_type",
            "0",
            "-ssrc",
            &SSRC.to_string(),
            "-seq",
            &first_seq.to_string(),
            "-f",
            "rtp",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ffmpeg");
    let mut g = ChildGuard(Some(child));
    let mut err = String::new();
    if let Some(e) = g.0.as_mut().and_then(|c| c.stderr.take()) {
        // Read in a thread so a chatty ffmpeg cannot block on a full pipe.
        let h = std::thread::spawn(move || {
            let mut s = String::new();
            let _ = BufReader::new(e).read_to_string(&mut s);
            s
        });
        let st = g
            .wait_timeout(Duration::from_secs(20))
            .expect("ffmpeg did not finish within 20 s");
        err = h.join().unwrap_or_default();
        assert!(st.success(), "ffmpeg failed ({st}): {err}");
    }
    let _ = err;
}

fn write_recorded(pcap: &Path, log: &[Received]) {
    let mut w = CaptureWriter::create(pcap, linktype::RAW).unwrap();
    let mut sorted = log.to_vec();
    sorted.sort_by_key(|r| r.0);
    for (t, from, to, data) in &sorted {
        w.write_raw(*t, &build_ip_udp(*from, *to, data).unwrap())
            .unwrap();
    }
    w.finish().unwrap();
}

/// Runs ffmpeg (optionally through the relay) and returns the capture file, the RTP
/// destination port and the relay's log.
fn scenario(
    name: &str,
    first_seq: u16,
    with_relay: bool,
    pcapng: bool,
) -> (PathBuf, u16, RelayLog) {
    need("ffmpeg");
    let dir = std::env::temp_dir().join(format!("rtp-pcap-stats-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join(if pcapng { "cap.pcapng" } else { "cap.pcap" });

    let (sink_rtp, sink_rtcp) = bind_pair();
    let p = sink_rtp.local_addr().unwrap().port();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Threads::new();
    for s in [sink_rtp, sink_rtcp] {
        let r = recorded.clone();
        threads.spawn(move |stop| sink(s, r, stop));
    }
    let relay_log = Arc::new(Mutex::new(RelayLog::default()));
    let dest = if with_relay {
        let (r_rtp, r_rtcp) = bind_pair();
        let rp = r_rtp.local_addr().unwrap().port();
        let l = relay_log.clone();
        let to: SocketAddr = ([127, 0, 0, 1], p).into();
        threads.spawn(move |stop| relay_rtp(r_rtp, to, l, stop));
        let to1: SocketAddr = ([127, 0, 0, 1], p + 1).into();
        threads.spawn(move |stop| relay_plain(r_rtcp, to1, stop));
        rp
    } else {
        p
    };

    let filter = format!("udp dst port {p} or udp dst port {}", p + 1);
    let cap = start_dumpcap(&pcap, &filter, pcapng);
    run_ffmpeg(dest, first_seq);
    // Let the relay flush a held packet and the sink drain.
    std::thread::sleep(Duration::from_millis(400));
    match cap {
        Some(g) => stop_dumpcap(g),
        None => {
            threads.stop();
            write_recorded(&pcap, &recorded.lock().unwrap());
        }
    }
    threads.stop();
    let log = relay_log.lock().unwrap().clone();
    (pcap, p, log)
}

fn rtp_pcap_json(pcap: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_rtp-pcap"))
        .args(["stats", "--json"])
        .arg(pcap)
        .output()
        .expect("run rtp-pcap");
    assert!(
        out.status.success(),
        "rtp-pcap failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("rtp-pcap --json output is JSON")
}

#[derive(Debug)]
struct TsharkStream {
    ssrc: u32,
    packets: i64,
    lost: i64,
    max_delta: f64,
    mean_jitter: f64,
    max_jitter: f64,
}

/// Runs `tshark -z rtp,streams` and parses its table. Columns in Wireshark 4.0:
/// start end src sport dst dport SSRC payload pkts lost (pct) min-delta mean-delta
/// max-delta min-jitter mean-jitter max-jitter [problems].
fn tshark_streams(pcap: &Path, port: u16) -> Vec<TsharkStream> {
    need("tshark");
    let out = Command::new("tshark")
        .args(["-n", "-q", "-r"])
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},rtp"), "-z", "rtp,streams"])
        .stdin(Stdio::null())
        .output()
        .expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v = Vec::new();
    for line in out.stdout.lines() {
        let line = line.unwrap();
        let tok: Vec<&str> = line.split_whitespace().collect();
        let Some(k) = tok.iter().position(|t| t.starts_with("0x")) else {
            continue;
        };
        let f = |i: usize| -> f64 {
            tok.get(k + i)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected tshark line: {line}"))
        };
        v.push(TsharkStream {
            ssrc: u32::from_str_radix(tok[k].trim_start_matches("0x"), 16).unwrap(),
            packets: f(2) as i64,
            lost: f(3) as i64,
            max_delta: f(7),
            mean_jitter: f(9),
            max_jitter: f(10),
        });
    }
    assert!(
        !v.is_empty(),
        "tshark found no RTP stream:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    v
}

/// RFC 3550 A.8 computed here, independently of rtp-core, from the arrival time,
/// sequence number and timestamp that tshark decodes for each packet of our SSRC (in
/// capture order, 8000 Hz): returns (max, mean) of the running estimate in ms over the
/// packets after the first.
fn a8_from_tshark_fields(pcap: &Path, port: u16) -> (f64, f64) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(pcap)
        .args([
            "-d",
            &format!("udp.port=={port},rtp"),
            "-Y",
            &format!("rtp.ssrc == 0x{SSRC:08x}"),
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "rtp.timestamp",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run tshark");
    assert!(out.status.success(), "tshark failed");
    let rows: Vec<(f64, u32)> = out
        .stdout
        .lines()
        .map(|l| {
            let l = l.unwrap();
            let mut it = l.split('\t');
            let t: f64 = it.next().unwrap().parse().unwrap();
            let ts: u32 = it.next().unwrap().parse().unwrap();
            (t, ts)
        })
        .collect();
    assert!(rows.len() > 10, "tshark decoded too few RTP packets");
    let (mut j, mut max, mut sum) = (0.0f64, 0.0f64, 0.0f64);
    for w in rows.windows(2) {
        let arrival_units = (w[1].0 - w[0].0) * 8000.0;
        let ts_units = f64::from(w[1].1.wrapping_sub(w[0].1) as i32);
        j += ((arrival_units - ts_units).abs() - j) / 16.0;
        let ms = j / 8.0;
        max = max.max(ms);
        sum += ms;
    }
    (max, sum / (rows.len() - 1) as f64)
}

fn our_stream(j: &serde_json::Value) -> &serde_json::Value {
    let streams = j["rtp_streams"].as_array().expect("rtp_streams");
    let ours: Vec<_> = streams
        .iter()
        .filter(|s| s["ssrc"].as_u64() == Some(u64::from(SSRC)))
        .collect();
    assert_eq!(ours.len(), 1, "exactly one stream with our SSRC: {j:#}");
    ours[0]
}

#[test]
fn clean_capture_matches_tshark() {
    let (pcap, port, _) = scenario("clean", 65_480, false, true);
    let j = rtp_pcap_json(&pcap);
    let s = our_stream(&j);
    let t = tshark_streams(&pcap, port);
    let t = t
        .iter()
        .find(|t| t.ssrc == SSRC)
        .expect("tshark sees our SSRC");
    eprintln!("ours: {s:#}\ntshark: {t:?}");

    // Ground truth from the sender: 2 s of 20 ms packets, nothing lost on loopback.
    let packets = s["packets"].as_i64().unwrap();
    assert!(
        (95..=101).contains(&packets),
        "ffmpeg sends ~100 packets, got {packets}"
    );
    assert_eq!(s["lost"].as_i64(), Some(0));
    assert_eq!(s["first_seq"].as_u64(), Some(65_480));
    // The wrap is crossed: extended highest = 65480 + packets - 1 >= 65536.
    assert_eq!(s["ext_highest_seq"].as_i64(), Some(65_480 + packets - 1));
    assert_eq!(s["duplicates"].as_u64(), Some(0));
    assert_eq!(s["out_of_order"].as_u64(), Some(0));
    assert_eq!(s["clock_rate"].as_u64(), Some(8000));
    // The RTCP SR ffmpeg sends to port + 1 is found as an RTCP flow.
    let rtcp = j["rtcp_flows"].as_array().unwrap();
    assert!(
        rtcp.iter()
            .any(|f| f["first_packet_types"]["200"].as_u64() >= Some(1)),
        "ffmpeg's SR is listed: {j:#}"
    );

    // Against Wireshark.
    assert_eq!(packets, t.packets);
    assert_eq!(s["lost"].as_i64().unwrap(), t.lost);
    // tshark prints 3 decimals: allow rounding plus float noise.
    let tol = 0.0015;
    let close = |a: f64, b: f64| (a - b).abs() <= tol;
    let (mj, xj, md) = (
        s["mean_jitter_ms"].as_f64().unwrap(),
        s["max_jitter_ms"].as_f64().unwrap(),
        s["max_delta_ms"].as_f64().unwrap(),
    );
    assert!(
        close(xj, t.max_jitter),
        "max jitter {xj} vs tshark {}",
        t.max_jitter
    );
    assert!(
        close(mj, t.mean_jitter),
        "mean jitter {mj} vs tshark {}",
        t.mean_jitter
    );
    assert!(
        close(md, t.max_delta),
        "max delta {md} vs tshark {}",
        t.max_delta
    );
    let (hx, hm) = a8_from_tshark_fields(&pcap, port);
    assert!(
        (xj - hx).abs() < 1e-3,
        "max jitter {xj} vs A.8 by hand {hx}"
    );
    assert!(
        (mj - hm).abs() < 1e-3,
        "mean jitter {mj} vs A.8 by hand {hm}"
    );

    // The text output with a port hint names the stream; a hint for another port
    // leaves nothing.
    let text = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rtp-pcap"))
            .arg("stats")
            .args(args)
            .arg(&pcap)
            .output()
            .expect("run rtp-pcap");
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let t1 = text(&["--port", &port.to_string()]);
    assert!(
        t1.contains("0x11223344") && t1.contains("RTP streams: 1"),
        "{t1}"
    );
    let other = if port == 9 { 11 } else { 9 };
    let t2 = text(&["--port", &other.to_string()]);
    assert!(t2.contains("RTP streams: 0"), "{t2}");
    let _ = std::fs::remove_dir_all(pcap.parent().unwrap());
}

#[test]
fn lossy_reordered_capture_matches_tshark() {
    let (pcap, port, relay) = scenario("lossy", 30_000, true, false);
    let j = rtp_pcap_json(&pcap);
    let s = our_stream(&j);
    let t = tshark_streams(&pcap, port);
    let t = t
        .iter()
        .find(|t| t.ssrc == SSRC)
        .expect("tshark sees our SSRC");
    eprintln!("ours: {s:#}\ntshark: {t:?}\nrelay: {relay:?}");

    // Ground truth from the relay, which logged the sequence numbers it sent (no wrap
    // here: the stream starts at 30000). Counted by hand: a packet is late when below
    // the highest so far, a sequence error when not exactly highest + 1, and the lost
    // ones are the numbers between first and highest never sent.
    assert_eq!(relay.dropped, 8, "drops at i = 9, 19, ..., 79");
    // 10 pairs are planned; a held packet is sent alone if the next one is over 200 ms
    // late, so a loaded machine may make fewer.
    assert!(relay.swapped >= 5, "relay swapped {} pairs", relay.swapped);
    let seqs = &relay.seqs;
    let (mut late, mut errors, mut highest) = (0u64, 0u64, seqs[0]);
    for &q in &seqs[1..] {
        if q != highest + 1 {
            errors += 1;
        }
        if q < highest {
            late += 1;
        }
        highest = highest.max(q);
    }
    let distinct: std::collections::BTreeSet<u16> = seqs.iter().copied().collect();
    let lost = u64::from(highest - seqs[0] + 1) - distinct.len() as u64;
    assert_eq!(lost, relay.dropped);
    assert_eq!(late, relay.swapped);
    assert_eq!(s["packets"].as_u64(), Some(relay.forwarded));
    assert_eq!(s["packets"].as_u64(), Some(seqs.len() as u64));
    assert_eq!(s["lost"].as_u64(), Some(lost));
    assert_eq!(s["out_of_order"].as_u64(), Some(late));
    assert_eq!(s["duplicates"].as_u64(), Some(0));
    assert_eq!(s["sequence_errors"].as_u64(), Some(errors));
    assert_eq!(s["first_seq"].as_u64(), Some(u64::from(seqs[0])));
    assert_eq!(
        s["last_seq"].as_u64(),
        Some(u64::from(*seqs.last().unwrap()))
    );

    // Against Wireshark: counts exactly.
    assert_eq!(s["packets"].as_i64().unwrap(), t.packets);
    assert_eq!(s["lost"].as_i64().unwrap(), t.lost);
    assert!((s["max_delta_ms"].as_f64().unwrap() - t.max_delta).abs() <= 0.0015);
    // Jitter: A.8 in arrival order, late packets included, which the hand computation
    // over tshark's per-packet fields reproduces. Wireshark's stream table leaves
    // flagged (late) packets out of its max/mean; with Wireshark 4.0 the figures still
    // agreed to the printed precision in our runs, and 0.01 ms covers that difference.
    let (xj, mj) = (
        s["max_jitter_ms"].as_f64().unwrap(),
        s["mean_jitter_ms"].as_f64().unwrap(),
    );
    let (hx, hm) = a8_from_tshark_fields(&pcap, port);
    assert!(
        (xj - hx).abs() < 1e-3,
        "max jitter {xj} vs A.8 by hand {hx}"
    );
    assert!(
        (mj - hm).abs() < 1e-3,
        "mean jitter {mj} vs A.8 by hand {hm}"
    );
    assert!(
        xj + 0.0015 >= t.max_jitter,
        "max jitter {xj} < tshark {}",
        t.max_jitter
    );
    assert!(
        mj + 0.0015 >= t.mean_jitter,
        "mean jitter {mj} < tshark {}",
        t.mean_jitter
    );
    let _ = std::fs::remove_dir_all(pcap.parent().unwrap());
}

#[test]
fn cli_rejects_bad_input_with_a_message() {
    let dir = std::env::temp_dir().join(format!("rtp-pcap-stats-{}-cli", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pcap");
    std::fs::write(&junk, b"this is not a capture").unwrap();
    let run = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_rtp-pcap"))
            .args(args)
            .output()
            .expect("run rtp-pcap")
    };
    let out = run(&["stats".as_ref(), junk.as_os_str()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a pcap or pcapng file"));
    let out = run(&["stats".as_ref(), dir.join("missing.pcap").as_os_str()]);
    assert!(!out.status.success());
    let out = run(&[
        "stats".as_ref(),
        "--clock-rate".as_ref(),
        "200=8000".as_ref(),
        junk.as_os_str(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("above 127"));
    let _ = std::fs::remove_dir_all(&dir);
}
