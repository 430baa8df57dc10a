//! DTLS-SRTP benchmark, all in one run:
//!
//! 1. Full handshakes (P-256 ECDHE, ECDSA certificates both ways: the server asks
//!    for the client's certificate; ECDHE-ECDSA-AES128-GCM-SHA256 with use_srtp
//!    and a cookie exchange) one after another from the same client (our sans-IO
//!    endpoint on a fresh socket each time) against (a) our server, one thread
//!    running `CookieKeys` + `DtlsEndpoint`s, and (b) `openssl s_server` on the
//!    same machine. Figures: handshakes/s and the server's CPU time per handshake
//!    (thread CPU clock for ours, /proc utime+stime for OpenSSL), and their ratios.
//! 2. Relay latency during a handshake storm: `rtp-load` through the in-process
//!    gateway (one busy-polled worker on core 1; calls over ng), p50/p99/p99.9
//!    with no handshakes and with 200 DTLS-SRTP handshakes/s run by the engine's
//!    control thread (a client thread creates a DTLS call per handshake, connects,
//!    deletes it). Alternating runs, medians; the ratio is the figure (goal <= 1.2x).
//!
//! Run: `cargo bench -p relay-bench --bench dtls` (about 2 minutes). Without
//! `--bench` (as `cargo test --all-targets` runs it) it does a short smoke run.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_bench::{audio_class, median};
use rtp_control::dtls::{
    Certificate, CipherSuite, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint, DtlsEvent,
    NamedGroup, Role,
};
use rtp_control::{DtlsLegParams, Engine, LegConfig};
use rtp_core::srtp::SrtpProfile;
use rtp_tools::dtls_tool::drive_handshake;
use rtp_tools::gateway::{Gateway, GatewayConfig};
use rtp_tools::interop::{free_port_range, openssl_cert};
use rtp_tools::load::report::LatencySummary;
use rtp_tools::load::{run, LoadConfig, Target};

const GEN_CORE: usize = 0;
const RELAY_CORE: usize = 1;

/// P-256 only, one suite, one profile: the same work for every server.
fn config() -> DtlsConfig {
    DtlsConfig {
        groups: vec![NamedGroup::Secp256r1],
        cipher_suites: vec![CipherSuite::EcdheEcdsaAes128GcmSha256],
        srtp_profiles: vec![SrtpProfile::AesCm128HmacSha1_80],
        ..DtlsConfig::default()
    }
}

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// utime + stime of a process, from /proc.
fn process_cpu(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Our server: one thread, the cookie front door and one endpoint per client;
/// returns (handshakes completed, its CPU time).
fn our_server(sock: UdpSocket, stop: Arc<AtomicBool>) -> (u64, Duration) {
    let cert = Arc::new(Certificate::generate().unwrap());
    let cfg = Arc::new(config());
    let cpu0 = thread_cpu();
    let mut cookies = CookieKeys::new(Instant::now());
    let mut eps: HashMap<SocketAddr, DtlsEndpoint> = HashMap::new();
    let mut done = 0u64;
    let mut buf = vec![0u8; 65536];
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        cookies.rotate_if_due(now);
        if let Ok((n, src)) = sock.recv_from(&mut buf) {
            let d = &buf[..n];
            if let std::collections::hash_map::Entry::Vacant(e) = eps.entry(src) {
                match cookies.check(src, d) {
                    CookieVerdict::Respond(hvr) => {
                        let _ = sock.send_to(&hvr, src);
                        continue;
                    }
                    CookieVerdict::Drop => continue,
                    CookieVerdict::Accept => {
                        e.insert(DtlsEndpoint::server(cfg.clone(), cert.clone(), None, now));
                    }
                }
            }
            if let Some(ep) = eps.get_mut(&src) {
                ep.handle_datagram(d, now);
            }
        }
        let now = Instant::now();
        eps.retain(|peer, ep| {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            while let Some(d) = ep.poll_transmit() {
                let _ = sock.send_to(&d, peer);
            }
            while let Some(e) = ep.poll_event() {
                if matches!(e, DtlsEvent::Connected(_)) {
                    done += 1;
                }
            }
            !ep.is_closed()
        });
    }
    (done, thread_cpu() - cpu0)
}

/// Sequential handshakes from our client to `server` for `secs`.
fn client_run(server: SocketAddr, secs: f64) -> (u64, Duration) {
    let cert = Arc::new(Certificate::generate().unwrap());
    let cfg = Arc::new(config());
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ep = DtlsEndpoint::client(cfg.clone(), cert.clone(), None, Instant::now());
        match drive_handshake(
            &s,
            ep,
            Some(server),
            Instant::now() + Duration::from_secs(5),
        ) {
            Ok(mut hs) => {
                n += 1;
                hs.endpoint.close();
                while let Some(d) = hs.endpoint.poll_transmit() {
                    let _ = s.send_to(&d, server);
                }
            }
            Err(e) => eprintln!("handshake failed: {e}"),
        }
    }
    (n, start.elapsed())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn openssl_server(dir: &std::path::Path) -> Option<(Kill, SocketAddr)> {
    let (c, k) = openssl_cert(dir, "s", false).ok()?;
    let port = UdpSocket::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-dtls1_2",
            "-quiet",
            "-accept",
            &format!("127.0.0.1:{port}"),
        ])
        .args(["-verify", "1", "-mtu", "1200", "-groups", "P-256"])
        .args([
            "-cipher",
            "ECDHE-ECDSA-AES128-GCM-SHA256",
            "-use_srtp",
            "SRTP_AES128_CM_SHA1_80",
        ])
        .arg("-cert")
        .arg(&c)
        .arg("-key")
        .arg(&k)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    std::thread::sleep(Duration::from_millis(300));
    Some((Kill(child), format!("127.0.0.1:{port}").parse().ok()?))
}

fn handshake_rates(secs: f64) {
    println!("## 1. Full DTLS 1.2 handshakes, one after another (P-256 ECDHE, ECDSA both ways, cookie exchange)");
    println!("| server | handshakes/s | server CPU per handshake |");
    println!("|---|---|---|");
    // Ours.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let t = std::thread::spawn(move || our_server(sock, st));
    let (n, el) = client_run(addr, secs);
    stop.store(true, Ordering::Release);
    let (done, cpu) = t.join().unwrap();
    let ours_rate = n as f64 / el.as_secs_f64();
    let ours_cpu = cpu.as_secs_f64() / done.max(1) as f64;
    println!(
        "| rtp-control DtlsEndpoint (one thread) | {ours_rate:.0} | {:.3} ms |",
        ours_cpu * 1e3
    );
    // OpenSSL.
    let dir = std::env::temp_dir().join(format!("dtls-bench-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    match openssl_server(&dir) {
        Some((srv, addr)) => {
            let cpu0 = process_cpu(srv.0.id());
            let (n2, el2) = client_run(addr, secs);
            let cpu = process_cpu(srv.0.id()) - cpu0;
            drop(srv);
            let rate = n2 as f64 / el2.as_secs_f64();
            let per = cpu.as_secs_f64() / n2.max(1) as f64;
            println!("| openssl s_server 3.0 | {rate:.0} | {:.3} ms |", per * 1e3);
            println!(
                "ratio ours/OpenSSL: handshakes/s {:.2}x, server CPU per handshake {:.2}x (lower is better)",
                ours_rate / rate.max(1e-9),
                ours_cpu / per.max(1e-9)
            );
        }
        None => println!("| openssl s_server | not installed | |"),
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// What the storm's client asks of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Storm {
    /// A call with a DTLS server leg per handshake; the client offers only this
    /// ECDHE group (P-256: the figure; X25519: what browsers offer first).
    Dtls(NamedGroup),
    /// The same call set-up and tear-down with plain legs and no handshake: what
    /// the call churn alone costs the relay.
    ChurnOnly,
    /// The same P-256 handshakes (both sides) computed in memory by the storm's
    /// thread, nothing through the engine: what the storm's CPU alone costs.
    CpuOnly,
}

impl Storm {
    fn name(self) -> &'static str {
        match self {
            Storm::Dtls(NamedGroup::X25519) => "DTLS, client offers X25519",
            Storm::Dtls(_) => "DTLS, client offers P-256",
            Storm::ChurnOnly => "call churn only (no DTLS)",
            Storm::CpuOnly => "P-256 handshakes in memory on the storm thread (CPU only)",
        }
    }

    /// Its name in `STORM_KINDS`.
    fn tag(self) -> &'static str {
        match self {
            Storm::Dtls(NamedGroup::X25519) => "x25519",
            Storm::Dtls(_) => "p256",
            Storm::ChurnOnly => "churn",
            Storm::CpuOnly => "cpu",
        }
    }
}

/// Whether the comma-separated list in env `var` names `key` (no variable: all).
fn selected(var: &str, key: &str) -> bool {
    std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == key))
}

/// A client thread that makes the engine run `rate` handshakes/s: per
/// handshake one call with a DTLS server leg, our client connects, the call is
/// deleted. With `Storm::ChurnOnly` the call has plain legs and no handshake;
/// with `Storm::CpuOnly` the handshakes run in memory, without the engine.
/// Returns (completed, failed).
fn storm(
    engine: &Engine,
    rate: f64,
    stop: &AtomicBool,
    core: Option<usize>,
    sched_idle: bool,
    kind: Storm,
) -> (u64, u64) {
    // The storm's client is test equipment (on a real deployment it is on other
    // hosts): it yields to the generator and the worker.
    if let Some(c) = core {
        rtp_control::dataplane::sys::pin_thread(c);
    }
    rtp_control::dataplane::sys::set_thread_nice(19);
    if sched_idle {
        rtp_control::dataplane::sys::set_thread_sched_idle();
    }
    let cert = Arc::new(Certificate::generate().unwrap());
    let fp = cert.fingerprint();
    let cfg = Arc::new(DtlsConfig {
        groups: match kind {
            Storm::Dtls(g) => vec![g],
            Storm::ChurnOnly | Storm::CpuOnly => vec![NamedGroup::Secp256r1],
        },
        ..config()
    });
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_nonblocking(true).unwrap();
    let period = Duration::from_secs_f64(1.0 / rate);
    let mut next = Instant::now();
    let mut live: HashMap<SocketAddr, (u64, DtlsEndpoint)> = HashMap::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if now >= next {
            next += period;
            if kind == Storm::ChurnOnly {
                match engine.create_call([LegConfig::default(), LegConfig::default()]) {
                    Ok(c) => {
                        ok += 1;
                        let _ = engine.delete_call(c.id);
                    }
                    Err(_) => failed += 1,
                }
                continue;
            }
            if kind == Storm::CpuOnly {
                if in_memory_handshake(&cfg, &cert, now) {
                    ok += 1;
                } else {
                    failed += 1;
                }
                continue;
            }
            let legs = [
                LegConfig::default(),
                LegConfig {
                    dtls: Some(DtlsLegParams {
                        role: Some(Role::Server),
                        fingerprint: Some(fp.clone()),
                    }),
                    ..LegConfig::default()
                },
            ];
            match engine.create_call(legs) {
                Ok(c) => {
                    let ep = DtlsEndpoint::client(
                        cfg.clone(),
                        cert.clone(),
                        Some(engine.fingerprint().clone()),
                        now,
                    );
                    live.insert(c.legs[1].local, (c.id, ep));
                }
                Err(_) => failed += 1,
            }
        }
        while let Ok((n, src)) = sock.recv_from(&mut buf) {
            if let Some((_, ep)) = live.get_mut(&src) {
                ep.handle_datagram(&buf[..n], Instant::now());
            }
        }
        let now = Instant::now();
        let mut finished = Vec::new();
        for (addr, (id, ep)) in live.iter_mut() {
            if ep.poll_timeout().is_some_and(|t| t <= now) {
                ep.handle_timeout(now);
            }
            while let Some(d) = ep.poll_transmit() {
                let _ = sock.send_to(&d, addr);
            }
            while let Some(e) = ep.poll_event() {
                match e {
                    DtlsEvent::Connected(_) => {
                        ok += 1;
                        finished.push((*addr, *id));
                    }
                    DtlsEvent::Failed(_) => {
                        failed += 1;
                        finished.push((*addr, *id));
                    }
                    _ => {}
                }
            }
        }
        for (addr, id) in finished {
            live.remove(&addr);
            let _ = engine.delete_call(id);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    for (_, (id, _)) in live {
        let _ = engine.delete_call(id);
    }
    (ok, failed)
}

/// One full handshake between two endpoints of this thread, datagrams passed
/// in memory (the same cryptography as a storm handshake, no engine or socket).
fn in_memory_handshake(cfg: &Arc<DtlsConfig>, cert: &Arc<Certificate>, now: Instant) -> bool {
    let mut client = DtlsEndpoint::client(cfg.clone(), cert.clone(), Some(cert.fingerprint()), now);
    let mut server = DtlsEndpoint::server(cfg.clone(), cert.clone(), Some(cert.fingerprint()), now);
    let mut done = [false; 2];
    for _ in 0..32 {
        while let Some(d) = client.poll_transmit() {
            server.handle_datagram(&d, now);
        }
        while let Some(d) = server.poll_transmit() {
            client.handle_datagram(&d, now);
        }
        for (i, ep) in [&mut client, &mut server].into_iter().enumerate() {
            while let Some(e) = ep.poll_event() {
                match e {
                    DtlsEvent::Connected(_) => done[i] = true,
                    DtlsEvent::Failed(_) => return false,
                    _ => {}
                }
            }
        }
        if done == [true; 2] {
            return true;
        }
    }
    false
}

/// Where things run during a storm measurement.
struct Layout {
    /// Worker idle policy (the worker is pinned to RELAY_CORE).
    idle: &'static str,
    /// The generator busy-polls (else it sleeps between sends).
    busy_generator: bool,
    /// The control thread's core (`None`: unpinned) and the storm client's.
    control_core: Option<usize>,
    /// The control thread (and the storm client) in SCHED_IDLE.
    sched_idle: bool,
}

fn storm_latency(
    runs: usize,
    secs: f64,
    streams: usize,
    rate: f64,
    hs_rate: f64,
    lay: &Layout,
    kind: Storm,
) {
    let Layout {
        idle,
        busy_generator,
        control_core,
        sched_idle,
    } = *lay;
    println!();
    println!(
        "### worker `{idle}` on core {RELAY_CORE}; generator {} on core {GEN_CORE}; control thread ({}) and storm client ({}) {}",
        if busy_generator { "busy-polling" } else { "sleeping" },
        if sched_idle { "SCHED_IDLE" } else { "nice 10" },
        if sched_idle { "SCHED_IDLE" } else { "nice 19" },
        match control_core {
            Some(c) => format!("pinned to core {c}"),
            None => "unpinned".into(),
        }
    );
    println!("({streams} streams, {rate:.0} pkt/s over ng through the in-process gateway, with and without a storm of {hs_rate:.0}/s: {}; {runs} alternating runs of {secs} s, medians)", kind.name());
    let (lo, hi) = free_port_range(4 * streams as u16 + 1000);
    let gw = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        port_min: lo,
        port_max: hi,
        backend: "io_uring".into(),
        idle: idle.into(),
        control_nice: Some(10),
        control_core,
        control_sched_idle: sched_idle,
        workers: 1,
        cores: vec![RELAY_CORE],
        max_calls: streams + 1000,
        ..GatewayConfig::default()
    })
    .expect("gateway starts");
    let mut res: [Vec<(f64, f64, f64, u64)>; 2] = [Vec::new(), Vec::new()];
    let mut storms = Vec::new();
    for r in 0..runs * 2 {
        let with = r % 2 == 1;
        let stop = AtomicBool::new(false);
        let (l, stormed) = std::thread::scope(|sc| {
            let h = with.then(|| {
                sc.spawn(|| {
                    storm(
                        gw.ng().engine(),
                        hs_rate,
                        &stop,
                        control_core,
                        sched_idle,
                        kind,
                    )
                })
            });
            let l = run(LoadConfig {
                classes: vec![audio_class(streams, rate)],
                duration: Duration::from_secs_f64(secs),
                srtp: None,
                ssrc_base: 0x3000_0000,
                seq_start: 0,
                target: Target::Ng(gw.ng_addr()),
                progress: false,
                drain: Duration::from_millis(300),
                busy_poll: busy_generator,
                load_core: Some(GEN_CORE),
                plain_sender: false,
            })
            .expect("load runs");
            stop.store(true, Ordering::Release);
            (l, h.map(|t| t.join().expect("storm thread")))
        });
        if let Some((ok, failed)) = stormed {
            storms.push(ok as f64 / secs);
            if failed > 0 {
                println!("(storm run {r}: {failed} handshakes failed)");
            }
        }
        let s = LatencySummary::of(&l.latency);
        res[usize::from(with)].push((s.p50_us, s.p99_us, s.p999_us, l.lost()));
    }
    gw.shutdown();
    println!("| storm/s achieved | p50 us | p99 us | p99.9 us | lost |");
    println!("|---|---|---|---|---|");
    let mut p99 = [0.0; 2];
    for (i, r) in res.iter().enumerate() {
        let mut p50: Vec<f64> = r.iter().map(|x| x.0).collect();
        let mut q99: Vec<f64> = r.iter().map(|x| x.1).collect();
        let mut q999: Vec<f64> = r.iter().map(|x| x.2).collect();
        let lost: u64 = r.iter().map(|x| x.3).sum();
        p99[i] = median(&mut q99);
        let hs = if i == 0 {
            "0".to_string()
        } else {
            format!("{:.0}", median(&mut storms.clone()))
        };
        println!(
            "| {hs} | {:.0} | {:.0} | {:.0} | {lost} |",
            median(&mut p50),
            p99[i],
            median(&mut q999)
        );
    }
    println!(
        "p99 with the storm / without: {:.2}x (goal: at most 1.2x)",
        p99[1] / p99[0].max(1e-9)
    );
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    if full {
        if std::env::var("STORM_LAYOUTS").is_err() {
            handshake_rates(10.0);
        }
        println!();
        println!("## 2. Relay latency during a handshake storm");
        let layouts = [
            // The control plane on its own core (here shared with the generator,
            // which sleeps between sends): the deployment the design intends.
            Layout {
                idle: "busy",
                busy_generator: false,
                control_core: Some(GEN_CORE),
                sched_idle: false,
            },
            // No core to spare: the control thread runs wherever it can.
            Layout {
                idle: "busy",
                busy_generator: true,
                control_core: None,
                sched_idle: false,
            },
            Layout {
                idle: "spin:50",
                busy_generator: true,
                control_core: None,
                sched_idle: false,
            },
            // No core to spare, control plane only on idle time.
            Layout {
                idle: "spin:50",
                busy_generator: true,
                control_core: None,
                sched_idle: true,
            },
            Layout {
                idle: "spin:50",
                busy_generator: false,
                control_core: None,
                sched_idle: true,
            },
            // Spare CPU (sleeping generator, parking worker), control plane at
            // normal priority: what a relay that is not at its limit sees.
            Layout {
                idle: "spin:50",
                busy_generator: false,
                control_core: None,
                sched_idle: false,
            },
            // The deployment advice: the control plane off the worker's core,
            // running only on idle time there.
            Layout {
                idle: "spin:50",
                busy_generator: false,
                control_core: Some(GEN_CORE),
                sched_idle: true,
            },
        ];
        // STORM_LAYOUTS=0,3 runs only those layouts (a quick look at one),
        // STORM_KINDS=p256,x25519,churn,cpu only those kinds of storm.
        for (i, lay) in layouts.iter().enumerate() {
            if !selected("STORM_LAYOUTS", &i.to_string()) {
                continue;
            }
            for kind in [
                Storm::Dtls(NamedGroup::Secp256r1),
                Storm::Dtls(NamedGroup::X25519),
                Storm::ChurnOnly,
                Storm::CpuOnly,
            ] {
                if selected("STORM_KINDS", kind.tag()) {
                    storm_latency(7, 4.0, 200, 10_000.0, 200.0, lay, kind);
                }
            }
        }
    } else {
        println!("(smoke run; `cargo bench -p relay-bench --bench dtls` for the figures)");
        handshake_rates(0.5);
        storm_latency(
            1,
            1.0,
            20,
            1000.0,
            50.0,
            &Layout {
                idle: "busy",
                busy_generator: false,
                control_core: Some(GEN_CORE),
                sched_idle: false,
            },
            Storm::Dtls(NamedGroup::X25519),
        );
    }
    let _ = std::io::stdout().flush();
}
