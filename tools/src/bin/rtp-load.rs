//! `rtp-load`: paced RTP/SRTP load with latency histograms, through an embedded
//! gateway (default) or an external reflector; `rtp-load reflect` is the reflector.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use rtp_control::dataplane::{BackendChoice, BackendKind, IdlePolicy};
use rtp_core::srtp::SrtpProfile;
use rtp_tools::load::reflect::{ReflectConfig, Reflector};
use rtp_tools::load::{
    default_worker_cores, report, run, GatewayOptions, LoadConfig, StreamClass, Target,
};

#[derive(Parser, Debug)]
#[command(
    name = "rtp-load",
    version,
    about = "Paced RTP/SRTP streams with one-way latency histograms, loss, jitter and reordering",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send every datagram back to its source (a reflector for multi-host labs),
    /// optionally with deliberate drops, delay, reordering and duplicates.
    Reflect(ReflectArgs),
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Number of streams (of the default class).
    #[arg(long, default_value_t = 1000)]
    streams: usize,
    /// Seconds to send.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Packet time in milliseconds.
    #[arg(long, default_value_t = 20)]
    ptime: u64,
    /// RTP payload bytes.
    #[arg(long, default_value_t = 160)]
    payload: usize,
    /// RTP payload type.
    #[arg(long, default_value_t = 0)]
    pt: u8,
    /// RTP clock rate.
    #[arg(long, default_value_t = 8000)]
    clock_rate: u32,
    /// Stream classes instead of the default one: NAME:STREAMS:PTIME_MS:PAYLOAD[:PT[:CLOCK_RATE]]
    /// (repeatable), e.g. --class audio:800:20:160 --class video:20:33:1200:96:90000.
    #[arg(long = "class")]
    classes: Vec<String>,
    /// Talk spurts ON_MS:OFF_MS (streams pause and resume, phases spread).
    #[arg(long)]
    talk_spurt: Option<String>,
    /// SRTP profile (SDES name, e.g. AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM) or "none".
    #[arg(long, default_value = "AES_CM_128_HMAC_SHA1_80")]
    srtp: String,
    /// First SSRC (stream i uses SSRC + i).
    #[arg(long, default_value_t = 0x1000_0000)]
    ssrc: u32,
    /// First sequence number.
    #[arg(long, default_value_t = 0)]
    seq_start: u16,
    /// Gateway: "embedded" (an in-process engine relays every stream).
    #[arg(long, default_value = "embedded", conflicts_with = "target")]
    gateway: String,
    /// Send to an external reflector instead (latency is then the round trip).
    #[arg(long, conflicts_with = "ng")]
    target: Option<SocketAddr>,
    /// Set the calls up over the ng protocol on this relay (rtp-gateway or
    /// rtpengine), one per stream, and measure one way through it.
    #[arg(long)]
    ng: Option<SocketAddr>,
    /// With --ng and --srtp: send plain RTP, the relay encrypts towards the
    /// receiver (RTP -> SRTP).
    #[arg(long, requires = "ng")]
    rtp_to_srtp: bool,
    /// Embedded gateway backend: auto, mmsg or io_uring.
    #[arg(long, default_value = "auto")]
    backend: String,
    /// Embedded gateway workers.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Cores to pin the embedded gateway's workers to (comma-separated).
    #[arg(long, value_delimiter = ',')]
    cores: Vec<usize>,
    /// Embedded gateway idle policy: busy, spin:MICROS, block, coalesce:BATCH:MICROS, or auto (busy on
    /// machines with at least 2 cores, block otherwise).
    #[arg(long, default_value = "auto")]
    idle: String,
    /// Embedded gateway port range MIN-MAX.
    #[arg(long, default_value = "40000-59999")]
    ports: String,
    /// Output folder (default: target/rtp-load/<unix time>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also write the JSON report here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Seconds to wait at least for stragglers after the last send (the wait
    /// grows to 4x the largest latency seen, up to 30 s; it ends as soon as
    /// every packet arrived).
    #[arg(long, default_value_t = 0.5)]
    drain: f64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// How the generator waits between sends: busy (spins: no wake-up cost, a
    /// whole core), sleep, or auto (busy on machines with at least 2 cores).
    #[arg(long, default_value = "auto")]
    poll: String,
    /// Core to pin the generator to ("none": not pinned; default: core 0 when the
    /// gateway workers are pinned).
    #[arg(long)]
    load_core: Option<String>,
}

#[derive(Args, Debug)]
struct ReflectArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Drop every Nth datagram.
    #[arg(long, default_value_t = 0)]
    drop_every: u64,
    /// Hold every datagram this many milliseconds.
    #[arg(long, default_value_t = 0.0)]
    delay_ms: f64,
    /// Hold back every Nth datagram ...
    #[arg(long, default_value_t = 0)]
    reorder_every: u64,
    /// ... until this many later datagrams have gone (use more than the number
    /// of streams to reorder within a stream).
    #[arg(long, default_value_t = 1)]
    reorder_depth: u64,
    /// Send every Nth datagram twice.
    #[arg(long, default_value_t = 0)]
    duplicate_every: u64,
    /// Stop after this many seconds (default: 3600).
    #[arg(long, default_value_t = 3600.0)]
    duration: f64,
    /// Pin the reflecting thread to this core.
    #[arg(long)]
    core: Option<usize>,
}

fn parse_idle(s: &str, many_cores: bool) -> Result<IdlePolicy, String> {
    match s {
        "auto" if many_cores => Ok(IdlePolicy::BusyPoll),
        "auto" => Ok(IdlePolicy::Block),
        _ => s.parse().map_err(|e| format!("--idle: {e}")),
    }
}

/// Seconds given on the command line as a duration: a clear error, never a
/// panic, for negative, NaN, infinite or overlong values.
fn seconds(flag: &str, v: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v)
        .map_err(|_| format!("{flag} {v}: expected a non-negative number of seconds"))
}

fn config(a: &RunArgs) -> Result<LoadConfig, String> {
    let cpus = rtp_control::dataplane::sys::online_cpus();
    let many_cores = cpus >= 2;
    let load_core = match a.load_core.as_deref() {
        Some("none") => None,
        Some(c) => Some(
            c.parse::<usize>()
                .map_err(|_| format!("--load-core {c:?}: a core number or none"))?,
        ),
        None if many_cores && a.target.is_none() && a.ng.is_none() && a.cores.is_empty() => Some(0),
        None => None,
    };
    let mut classes = if a.classes.is_empty() {
        vec![StreamClass {
            name: "streams".into(),
            streams: a.streams,
            ptime: Duration::from_millis(a.ptime),
            payload: a.payload,
            pt: a.pt,
            clock_rate: a.clock_rate,
            talk_spurt: None,
        }]
    } else {
        a.classes
            .iter()
            .map(|c| StreamClass::parse(c))
            .collect::<Result<_, _>>()?
    };
    if let Some(t) = &a.talk_spurt {
        let (on, off) = t
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .ok_or_else(|| format!("--talk-spurt {t:?}: expected ON_MS:OFF_MS"))?;
        for c in &mut classes {
            c.talk_spurt = Some((Duration::from_millis(on), Duration::from_millis(off)));
        }
    }
    let srtp = match a.srtp.as_str() {
        "none" | "NONE" | "off" => None,
        name => Some(SrtpProfile::from_sdes_name(name).ok_or_else(|| {
            format!("--srtp {name:?}: unknown profile (try AES_CM_128_HMAC_SHA1_80, AEAD_AES_128_GCM or none)")
        })?),
    };
    if !(a.duration.is_finite() && a.duration > 0.0 && a.duration < 1e6) {
        return Err(format!(
            "--duration {}: must be a positive number of seconds",
            a.duration
        ));
    }
    let target = match (a.target, a.ng) {
        (Some(t), _) => Target::Reflector(t),
        (None, Some(n)) => Target::Ng(n),
        (None, None) => {
            if a.gateway != "embedded" {
                return Err(format!(
                    "--gateway {:?}: only \"embedded\" is available (use --target ADDR for a reflector)",
                    a.gateway
                ));
            }
            let backend = match a.backend.as_str() {
                "auto" => BackendChoice::Auto,
                b => BackendChoice::Only(b.parse::<BackendKind>()?),
            };
            let (lo, hi) = a
                .ports
                .split_once('-')
                .and_then(|(l, h)| Some((l.parse().ok()?, h.parse().ok()?)))
                .ok_or_else(|| format!("--ports {:?}: expected MIN-MAX", a.ports))?;
            Target::Embedded(GatewayOptions {
                backend,
                workers: a.workers,
                cores: if a.cores.is_empty() && many_cores {
                    // The workers on the last cores, the generator on core 0.
                    default_worker_cores(a.workers, cpus)?
                } else {
                    a.cores.clone()
                },
                idle: parse_idle(&a.idle, many_cores)?,
                ports: (lo, hi),
            })
        }
    };
    Ok(LoadConfig {
        classes,
        duration: seconds("--duration", a.duration)?,
        srtp,
        ssrc_base: a.ssrc,
        seq_start: a.seq_start,
        target,
        progress: !a.quiet,
        drain: seconds("--drain", a.drain)?,
        busy_poll: match a.poll.as_str() {
            "busy" => true,
            "sleep" => false,
            "auto" => many_cores,
            p => return Err(format!("--poll {p:?}: expected busy, sleep or auto")),
        },
        load_core,
        plain_sender: a.rtp_to_srtp,
    })
}

fn run_load(a: &RunArgs) -> Result<(), String> {
    let cfg = config(a)?;
    let out = a.out.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        PathBuf::from("target/rtp-load").join(t.to_string())
    });
    println!(
        "rtp-load: {} streams, {:.0} pkt/s offered for {:.1} s, srtp {}",
        cfg.streams(),
        cfg.rate(),
        cfg.duration.as_secs_f64(),
        cfg.srtp.map(|p| p.sdes_name()).unwrap_or("none")
    );
    let result = run(cfg)?;
    let rep = report::write_all(&result, &out)?;
    println!();
    print!("{}", rep.table());
    if let Some(j) = &a.json {
        let json = serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?;
        std::fs::write(j, json).map_err(|e| format!("{}: {e}", j.display()))?;
    }
    println!("results: {} ({})", out.display(), rep.files.join(", "));
    Ok(())
}

fn reflect(a: &ReflectArgs) -> Result<(), String> {
    let delay = seconds("--delay-ms", a.delay_ms / 1e3).map_err(|_| {
        format!(
            "--delay-ms {}: expected a non-negative number of milliseconds",
            a.delay_ms
        )
    })?;
    let duration = seconds("--duration", a.duration)?;
    let r = Reflector::spawn(ReflectConfig {
        listen: Some(a.listen),
        drop_every: a.drop_every,
        delay,
        reorder_every: a.reorder_every,
        reorder_depth: a.reorder_depth,
        duplicate_every: a.duplicate_every,
        duration: Some(duration),
        core: a.core,
    })
    .map_err(|e| format!("reflect on {}: {e}", a.listen))?;
    println!("reflecting on {}", r.addr());
    while !r.is_finished() {
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = r.stop().map_err(|e| e.to_string())?;
    println!(
        "received {} sent {} dropped {} reordered {} duplicated {}",
        st.received, st.sent, st.dropped, st.reordered, st.duplicated
    );
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match &cli.command {
        Some(Command::Reflect(a)) => reflect(a),
        None => run_load(&cli.run),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtp-load: {e}");
            ExitCode::FAILURE
        }
    }
}
