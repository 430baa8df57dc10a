//! rtp-gateway against rtpengine (Debian's rtpengine-daemon, userspace, one media
//! thread), both set up over ng by the same load generator, in one run:
//!
//! (a) highest relayed packets/s with loss under 0.1% and no standing queue (p99
//!     one-way latency under 10 ms), plain and RTP -> SRTP
//!     (AES_CM_128_HMAC_SHA1_80 towards the receiver);
//! (b) relay CPU time per relayed packet at fixed offered loads of 40k and 60k
//!     packets/s (rtp-gateway with a blocking, a spin-then-park and a coalescing worker);
//! (c) one-way latency p50 / p99 / p99.9 at 50% of rtpengine's plain maximum;
//! (d) the highest rate at which p99 one-way latency stays at or under 1 ms.
//!
//! 1,000 calls (one per stream), 20 ms packets of 160 bytes of payload (188-byte
//! packets: rtp-load adds a 16-byte send-time extension). Each relay runs on core
//! 1 (the gateway's worker pinned there, rtpengine under `taskset -c 1` with
//! `--num-threads=1`); the generator and receiver share one thread on core 0.
//! CPU time is read from /proc (rtpengine: the process; rtp-gateway: its worker,
//! control and ng threads).
//!
//! (b) also has a floor: the CPU per packet of `rtp-load reflect` (one thread on
//! the relay core that does nothing but a blocking `recv_from` and a `send_to` of
//! each datagram), the kernel's share of relaying a packet on loopback at the same
//! offered loads. A relay cannot cost less per packet than that without batching
//! the kernel's work.
//!
//! (b) is then measured again in alternating rounds (`VS_CPU_ROUNDS`, 7 by
//! default): the blocking and the coalescing gateway, rtpengine and the floor,
//! each started afresh,
//! judged on the median of per-round ratios with its 95% confidence interval
//! (met / missed / undecided). `VS_CPU_ONLY=1` runs only these rounds.
//!
//! Run: `cargo bench -p relay-bench --bench vs_rtpengine` (about 15 minutes).
//! Without `--bench` it does a short smoke run (and skips rtpengine if it is not
//! installed outside CI).

use std::net::SocketAddr;
use std::time::Duration;

use relay_bench::{audio_class, median, median_ci, verdict_at_most};
use rtp_core::srtp::SrtpProfile;
use rtp_tools::gateway::{Gateway, GatewayConfig};
use rtp_tools::interop::{free_port_range, Rtpengine};
use rtp_tools::load::reflect::{ReflectConfig, Reflector};
use rtp_tools::load::report::LatencySummary;
use rtp_tools::load::{run, LoadConfig, LoadResult, Target};

const GEN_CORE: usize = 0;
const RELAY_CORE: usize = 1;
const TICK: f64 = 0.01; // /proc CPU times are in 1/100 s

enum Relay {
    Ours(Gateway),
    Rtpengine(Rtpengine),
}

impl Relay {
    fn ng(&self) -> SocketAddr {
        match self {
            Relay::Ours(g) => g.ng_addr(),
            Relay::Rtpengine(r) => r.ng(),
        }
    }

    /// CPU seconds used so far by the relay.
    fn cpu(&self) -> f64 {
        let stat = |path: &str| -> f64 {
            let s = std::fs::read_to_string(path).unwrap_or_default();
            // Fields after the parenthesised command name.
            let rest = s.rsplit(')').next().unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
            (t(11) + t(12)) * TICK
        };
        match self {
            Relay::Rtpengine(r) => stat(&format!("/proc/{}/stat", r.pid())),
            Relay::Ours(_) => {
                let mut total = 0.0;
                for e in std::fs::read_dir("/proc/self/task")
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                    if comm.starts_with("rtp-worker")
                        || comm.starts_with("rtp-control")
                        || comm.starts_with("rtp-gateway")
                    {
                        total += stat(&e.path().join("stat").to_string_lossy());
                    }
                }
                total
            }
        }
    }

    fn stop(self) {
        match self {
            Relay::Ours(g) => g.shutdown(),
            Relay::Rtpengine(r) => drop(r),
        }
    }
}

fn ours(idle: &str, streams: usize) -> Relay {
    // Four ports per call: an RTP/RTCP pair on each side.
    let (lo, hi) = free_port_range(4 * streams as u16 + 200);
    let g = Gateway::start(&GatewayConfig {
        listen_ng: "127.0.0.1:0".parse().unwrap(),
        port_min: lo,
        port_max: hi,
        cores: vec![RELAY_CORE],
        backend: "io_uring".into(),
        idle: idle.into(),
        max_calls: streams + 100,
        media_timeout: 0,
        ..GatewayConfig::default()
    })
    .expect("gateway starts");
    Relay::Ours(g)
}

fn rtpengine(streams: usize) -> Option<Relay> {
    if !Rtpengine::installed() {
        assert!(
            std::env::var("CI").is_err(),
            "rtpengine must be installed in CI"
        );
        println!("rtpengine not installed: its column is skipped (sudo bash .ci/install.sh)");
        return None;
    }
    Some(Relay::Rtpengine(
        Rtpengine::start(Some(RELAY_CORE), streams).expect("rtpengine starts"),
    ))
}

/// On-CPU nanoseconds of this process's thread named `name` (schedstat).
fn thread_cpu_ns(name: &str) -> Option<u64> {
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == name {
            let st = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            return st.split_whitespace().next()?.parse().ok();
        }
    }
    None
}

/// CPU microseconds per reflected packet of a recv_from/send_to reflector on the
/// relay core, at `rate` packets/s.
fn floor_cpu(streams: usize, rate: f64, secs: f64) -> Option<f64> {
    let r = Reflector::spawn(ReflectConfig {
        core: Some(RELAY_CORE),
        ..ReflectConfig::default()
    })
    .expect("reflector starts");
    // The thread name as /proc shows it (15 bytes).
    let name = "rtp-load-reflec";
    std::thread::sleep(Duration::from_millis(50));
    let cpu0 = thread_cpu_ns(name)?;
    let res = run(load_config(
        streams,
        rate,
        secs,
        false,
        Target::Reflector(r.addr()),
    ))
    .expect("load runs");
    let cpu = thread_cpu_ns(name)?.saturating_sub(cpu0);
    r.stop().expect("reflector stops");
    Some(cpu as f64 / 1e3 / res.received().max(1) as f64)
}

fn load_config(
    streams: usize,
    rate: f64,
    secs: f64,
    rtp_to_srtp: bool,
    target: Target,
) -> LoadConfig {
    LoadConfig {
        classes: vec![audio_class(streams, rate)],
        duration: Duration::from_secs_f64(secs),
        srtp: rtp_to_srtp.then_some(SrtpProfile::AesCm128HmacSha1_80),
        ssrc_base: 0x3000_0000,
        seq_start: 0,
        target,
        progress: false,
        drain: Duration::from_millis(300),
        busy_poll: true,
        load_core: Some(GEN_CORE),
        plain_sender: true,
    }
}

fn load(
    relay: &Relay,
    streams: usize,
    rate: f64,
    secs: f64,
    rtp_to_srtp: bool,
) -> (LoadResult, f64) {
    let cfg = load_config(streams, rate, secs, rtp_to_srtp, Target::Ng(relay.ng()));
    // Relay CPU over the whole run, call set-up and deletion included (the
    // caller subtracts a run without media to isolate the per-packet cost).
    let cpu0 = relay.cpu();
    let r = run(cfg).expect("load runs");
    let cpu = relay.cpu() - cpu0;
    (r, cpu)
}

/// A rate ramp: start, step, number of steps, seconds per step.
#[derive(Clone, Copy)]
struct Ramp {
    start: f64,
    step: f64,
    steps: usize,
    secs: f64,
}

/// Highest achieved rate of a ramp with loss < 0.1% and p99 <= `p99_us` (10 ms
/// when not given). The ramp also stops where the generator falls short of the offered
/// rate by more than 5% (then the figure is the generator's, and says so).
fn ramp(relay: &Relay, streams: usize, ramp: Ramp, srtp: bool, p99_us: Option<f64>) -> (f64, bool) {
    let Ramp {
        start,
        step,
        steps,
        secs,
    } = ramp;
    let mut best = 0.0;
    let mut rate = start;
    for _ in 0..steps {
        let (r, _) = load(relay, streams, rate, secs, srtp);
        let sent = r.sent();
        let achieved = sent as f64 / r.elapsed.as_secs_f64().max(1e-9);
        let p99 = LatencySummary::of(&r.latency).p99_us;
        // Overload shows as a standing queue before it shows as loss (the
        // sockets buffer seconds of packets): p99 above 10 ms counts as overload.
        if r.loss_ratio() >= 0.001 || p99 > p99_us.unwrap_or(10_000.0) {
            return (best, false);
        }
        best = achieved;
        if achieved < 0.95 * rate {
            return (best, true);
        }
        rate += step;
    }
    (best, true)
}

/// CPU microseconds per relayed packet at each of `rates`, call set-up and
/// teardown subtracted (a run of 10 ms with the same calls measures them).
fn cpu_per_packet(relay: &Relay, streams: usize, rates: &[f64], secs: f64) -> Vec<f64> {
    let (_, setup) = load(relay, streams, 1000.0, 0.01, false);
    rates
        .iter()
        .map(|&rate| {
            let (r, c) = load(relay, streams, rate, secs, false);
            (c - setup).max(0.0) / r.received().max(1) as f64 * 1e6
        })
        .collect()
}

/// (b) again, in alternating rounds: the blocking rtp-gateway (the default idle
/// policy, which the goal is about), the coalescing one, rtpengine and the kernel
/// floor, each started afresh per round, their order turned every round. A
/// single pass put the blocking gateway at 0.51x in one hour and 0.70-0.87x in
/// others; each ratio to rtpengine is judged on the median of per-round ratios
/// and its 95% interval.
fn cpu_rounds(streams: usize, rates: &[f64], secs: f64, rounds: usize) {
    if !Rtpengine::installed() {
        println!("rtpengine not installed: CPU rounds skipped");
        return;
    }
    // The contenders; index 1 is rtpengine, the reference.
    const NAMES: [&str; 4] = [
        "rtp-gateway (block)",
        "rtpengine",
        "rtp-gateway (coalesce:32:500)",
        "kernel floor",
    ];
    println!();
    println!(
        "CPU per packet in {rounds} alternating rounds ({streams} calls, {secs} s per load; \
         ratio to rtpengine = median of per-round ratios, 95% interval):"
    );
    let measure = |which: usize| -> Vec<f64> {
        let relay = match which {
            0 => ours("block", streams),
            1 => rtpengine(streams).expect("rtpengine installed"),
            2 => ours("coalesce:32:500", streams),
            _ => {
                return rates
                    .iter()
                    .map(|&r| floor_cpu(streams, r, secs).unwrap_or(f64::NAN))
                    .collect()
            }
        };
        let v = cpu_per_packet(&relay, streams, rates, secs);
        relay.stop();
        v
    };
    // us[contender][rate] and ratios[contender][rate], one entry per round.
    let mut us = vec![vec![Vec::new(); rates.len()]; NAMES.len()];
    let mut ratios = vec![vec![Vec::new(); rates.len()]; NAMES.len()];
    for round in 0..rounds {
        let mut got = vec![Vec::new(); NAMES.len()];
        for k in 0..NAMES.len() {
            let w = (k + round) % NAMES.len();
            got[w] = measure(w);
        }
        let mut line = Vec::new();
        for (i, r) in rates.iter().enumerate() {
            let mut parts = Vec::new();
            for (w, name) in NAMES.iter().enumerate() {
                us[w][i].push(got[w][i]);
                ratios[w][i].push(got[w][i] / got[1][i]);
                parts.push(format!("{name} {:.2}", got[w][i]));
            }
            line.push(format!("{r:.0}: {} us", parts.join(", ")));
        }
        println!("  round {}: {}", round + 1, line.join("; "));
    }
    println!("| relay | load pkt/s | us/pkt | x rtpengine | 95% interval | goal <= 0.5 |");
    println!("|---|---|---|---|---|---|");
    for (w, name) in NAMES.iter().enumerate() {
        for (i, r) in rates.iter().enumerate() {
            let m = median(&mut us[w][i]);
            if w == 1 {
                println!("| {name} | {r:.0} | {m:.2} | 1.00 | | |");
                continue;
            }
            let (lo, hi, cov) = median_ci(&mut ratios[w][i].clone(), 0.95);
            println!(
                "| {name} | {r:.0} | {m:.2} | {:.2} | {lo:.2}-{hi:.2} ({:.0}%) | {} |",
                median(&mut ratios[w][i]),
                cov * 100.0,
                if w == 0 {
                    verdict_at_most(lo, hi, cov, 0.5)
                } else {
                    "(not the default)"
                }
            );
        }
    }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // `VS_CPU_ONLY=1`: only the alternating CPU rounds (`VS_CPU_ROUNDS`, 7 by
    // default with --bench).
    let rounds = std::env::var("VS_CPU_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if full { 7 } else { 1 });
    let cpu_only = std::env::var_os("VS_CPU_ONLY").is_some();
    let (streams, secs, start, step, steps) = if full {
        (1000, 2.0, 20_000.0, 20_000.0, 10)
    } else {
        (20, 0.3, 2_000.0, 1_000.0, 1)
    };
    let fixed: &[f64] = if full {
        &[40_000.0, 60_000.0]
    } else {
        &[1_000.0]
    };
    if cpu_only {
        cpu_rounds(streams, fixed, secs * 2.0, rounds);
        return;
    }
    let mut relays: Vec<Box<dyn Fn() -> Option<Relay>>> = vec![
        Box::new(move || Some(ours("block", streams))),
        Box::new(move || Some(ours("spin:200", streams))),
        // Interrupt moderation: one wake-up per 32 completions or 500 us.
        Box::new(move || Some(ours("coalesce:32:500", streams))),
        Box::new(move || rtpengine(streams)),
    ];
    let labels = [
        "rtp-gateway (block)",
        "rtp-gateway (spin:200)",
        "rtp-gateway (coalesce:32:500)",
        "rtpengine",
    ];
    println!(
        "rtp-gateway vs rtpengine: {streams} calls, one relay core, generator on core {GEN_CORE}"
    );
    let mut maxima = Vec::new();
    for (i, mk) in relays.drain(..).enumerate() {
        let Some(relay) = mk() else { continue };
        let label = labels[i];
        let rp = Ramp {
            start,
            step,
            steps,
            secs,
        };
        let (plain, plain_gen) = ramp(&relay, streams, rp, false, None);
        let (srtp, srtp_gen) = ramp(&relay, streams, rp, true, None);
        let bound = |g: bool| if g { " (generator-bound)" } else { "" };
        let cpu: Vec<(f64, f64)> = fixed
            .iter()
            .copied()
            .zip(cpu_per_packet(&relay, streams, fixed, secs * 2.0))
            .collect();
        let (ms_rate, _) = ramp(
            &relay,
            streams,
            Ramp {
                start: start / 2.0,
                ..rp
            },
            false,
            Some(1000.0),
        );
        println!(
            "{label}: max plain {plain:.0} pkt/s{}, max RTP->SRTP {srtp:.0} pkt/s{}, p99<=1ms up to {ms_rate:.0} pkt/s, CPU us/pkt {}",
            bound(plain_gen),
            bound(srtp_gen),
            cpu.iter().map(|(r, c)| format!("{c:.2} at {r:.0}")).collect::<Vec<_>>().join(", ")
        );
        maxima.push((label, relay, plain, srtp, cpu, ms_rate));
    }
    // (b) floor: the kernel's share at the same loads.
    let floor: Vec<Option<f64>> = fixed
        .iter()
        .map(|&rate| floor_cpu(streams, rate, secs * 2.0))
        .collect();
    println!(
        "kernel floor (recv_from/send_to reflector): CPU us/pkt {}",
        floor
            .iter()
            .zip(fixed)
            .map(|(c, r)| format!("{:.2} at {r:.0}", c.unwrap_or(f64::NAN)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    // (c) latency at 50% of rtpengine's plain maximum (or of the first relay's).
    let reference = maxima
        .iter()
        .find(|m| m.0 == "rtpengine")
        .or(maxima.first())
        .map(|m| m.2)
        .unwrap_or(start);
    let half = (reference / 2.0).max(1000.0);
    println!();
    println!("| relay | max plain pkt/s | max RTP->SRTP pkt/s | CPU us/pkt at 40k | CPU us/pkt at 60k | p50 us @50% | p99 us @50% | p99.9 us @50% | p99<=1ms rate |");
    println!("|---|---|---|---|---|---|---|---|---|");
    let mut rows = Vec::new();
    for (label, relay, plain, srtp, cpu, ms_rate) in maxima {
        let (r, _) = load(&relay, streams, half, secs * 1.5, false);
        let l = LatencySummary::of(&r.latency);
        let c = |i: usize| {
            cpu.get(i)
                .map(|x| format!("{:.2}", x.1))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "| {label} | {plain:.0} | {srtp:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {ms_rate:.0} |",
            c(0),
            c(1),
            l.p50_us,
            l.p99_us,
            l.p999_us
        );
        rows.push((label, plain, srtp, cpu, l.p999_us, ms_rate));
        relay.stop();
    }
    let f = |i: usize| {
        floor
            .get(i)
            .copied()
            .flatten()
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "| kernel floor (recv_from/send_to reflector) | - | - | {} | {} | - | - | - | - |",
        f(0),
        f(1)
    );
    if let Some(e) = rows.iter().find(|r| r.0 == "rtpengine").cloned() {
        println!();
        println!("ratios to rtpengine (goals: plain >= 1.25, RTP->SRTP >= 1.5, CPU <= 0.5, p99.9 <= 1.0, 1ms-p99 rate >= 2.5):");
        for r in rows.iter().filter(|r| r.0 != "rtpengine") {
            let cpu_ratio = |i: usize| match (r.3.get(i), e.3.get(i)) {
                (Some(a), Some(b)) => format!("{:.2}", a.1 / b.1),
                _ => "-".into(),
            };
            println!(
                "  {}: plain {:.2}, RTP->SRTP {:.2}, CPU {} / {}, p99.9 {:.2}, 1ms-p99 rate {:.2}",
                r.0,
                r.1 / e.1.max(1.0),
                r.2 / e.2.max(1.0),
                cpu_ratio(0),
                cpu_ratio(1),
                r.4 / e.4.max(1e-9),
                r.5 / e.5.max(1.0)
            );
        }
        let floor_ratio = |i: usize| match (floor.get(i).copied().flatten(), e.3.get(i)) {
            (Some(a), Some(b)) => format!("{:.2}", a / b.1),
            _ => "-".into(),
        };
        println!(
            "  kernel floor: CPU {} / {} (the CPU goal of 0.5 is out of reach for any relay \
             that does not batch the kernel's work when this is above it)",
            floor_ratio(0),
            floor_ratio(1)
        );
    }
    cpu_rounds(streams, fixed, secs * 2.0, rounds);
}
