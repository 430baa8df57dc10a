//! The perf lab: runs the scenario matrix of a TOML file (streams x rate x relay x
//! backend x SRTP profile) with `rtp-load`, writes every run's report, histogram
//! and plots under `perf/results/<scenario>/<run>/`, and prints a summary table
//! (also written as `summary.md`).
//!
//! `cargo run --release -p relay-bench --bin perf-lab -- perf/scenarios/smoke.toml [RESULTS_ROOT]`
//!
//! A scenario gives `streams` and either `rates` (offered packets/s; the packet
//! time follows) or `ptime_ms` (the rate follows), not both.
//!
//! Relays: `minimal` (a busy-polled recvmmsg -> sendmmsg reflector: the kernel's
//! ceiling), `gateway` (rtp-load's embedded engine), `rtp-gateway` (the daemon's
//! library over ng) and `rtpengine` (Debian's rtpengine-daemon in userspace over
//! ng; skipped with a note when not installed).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use relay_bench::MinimalRelay;
use rtp_control::dataplane::{BackendChoice, BackendKind, IdlePolicy};
use rtp_core::srtp::SrtpProfile;
use rtp_tools::gateway::{Gateway, GatewayConfig};
use rtp_tools::interop::{free_port_range, Rtpengine};
use rtp_tools::load::{report, run, GatewayOptions, LoadConfig, StreamClass, Target};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    /// Folder name under perf/results/.
    name: String,
    /// Seconds per run.
    #[serde(default = "default_duration")]
    duration: f64,
    /// Packet time (ms) of every stream when `rates` is not given (offered
    /// rate = streams / packet time; default 20).
    ptime_ms: Option<u64>,
    /// Payload (bytes) of every stream.
    #[serde(default = "default_payload")]
    payload: usize,
    /// The matrix.
    streams: Vec<usize>,
    /// Offered packets/s (the packet time is derived: streams / rate); without
    /// it, one rate per stream count from `ptime_ms`.
    rates: Option<Vec<f64>>,
    /// minimal, gateway, rtp-gateway, rtpengine.
    relays: Vec<String>,
    /// mmsg, io_uring (for the relays of this project).
    #[serde(default = "default_backends")]
    backends: Vec<String>,
    /// SRTP profiles (SDES names) or "none".
    #[serde(default = "default_srtp")]
    srtp: Vec<String>,
    /// Core of the relay and of the generator.
    #[serde(default = "default_relay_core")]
    relay_core: usize,
    #[serde(default)]
    load_core: usize,
}

fn default_duration() -> f64 {
    5.0
}
fn default_payload() -> usize {
    160
}
fn default_backends() -> Vec<String> {
    vec!["io_uring".into()]
}
fn default_srtp() -> Vec<String> {
    vec!["none".into()]
}
fn default_relay_core() -> usize {
    1
}

fn backend(b: &str) -> Result<BackendKind, String> {
    b.parse::<BackendKind>()
}

impl Scenario {
    /// The offered rates of a run with `streams` streams, checked.
    fn rates(&self, streams: usize) -> Result<Vec<f64>, String> {
        let rates =
            match (&self.rates, self.ptime_ms) {
                (Some(_), Some(_)) => return Err(
                    "set rates or ptime_ms, not both (the packet time follows from streams / rate)"
                        .into(),
                ),
                (Some(r), None) => r.clone(),
                (None, p) => {
                    let p = p.unwrap_or(20);
                    if p == 0 {
                        return Err("ptime_ms must be above zero".into());
                    }
                    vec![streams as f64 * 1000.0 / p as f64]
                }
            };
        match rates.iter().find(|r| !(r.is_finite() && **r > 0.0)) {
            Some(r) => Err(format!("rate {r}: must be a positive number of packets/s")),
            None => Ok(rates),
        }
    }
}

/// Ports for `streams` calls of `per_call` ports each, plus `spare`; an error
/// when one range cannot hold them (never a truncated count).
fn ports(streams: usize, per_call: usize, spare: usize) -> Result<(u16, u16), String> {
    let n = streams
        .checked_mul(per_call)
        .and_then(|n| n.checked_add(spare))
        .filter(|&n| n <= 30_000)
        .ok_or_else(|| {
            format!("{streams} streams need more than 30000 ports ({per_call} per call): use fewer")
        })?;
    Ok(free_port_range(n as u16))
}

fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1}"))
}

fn main() -> Result<(), String> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "perf/scenarios/smoke.toml".into());
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let sc: Scenario = toml::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let duration = Duration::try_from_secs_f64(sc.duration)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!(
                "{path}: duration {}: must be a positive number of seconds",
                sc.duration
            )
        })?;
    for &n in &sc.streams {
        sc.rates(n).map_err(|e| format!("{path}: {e}"))?;
    }
    let root = std::env::args()
        .nth(2)
        .unwrap_or_else(|| "perf/results".into());
    let out: PathBuf = Path::new(&root).join(&sc.name);
    std::fs::create_dir_all(&out).map_err(|e| e.to_string())?;
    let mut table = String::new();
    let _ = writeln!(
        table,
        "scenario {} ({path}), {} s per run",
        sc.name, sc.duration
    );
    let _ = writeln!(
        table,
        "| relay | backend | srtp | streams | offered pkt/s | sent pkt/s | received pkt/s | loss % | p50 us | p99 us | p99.9 us | max us |"
    );
    let _ = writeln!(table, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    print!("{table}");
    for relay in &sc.relays {
        let backends: Vec<&String> = if relay == "minimal" || relay == "rtpengine" {
            vec![&sc.backends[0]]
        } else {
            sc.backends.iter().collect()
        };
        for be in backends {
            for srtp in &sc.srtp {
                let profile = match srtp.as_str() {
                    "none" => None,
                    s => Some(
                        SrtpProfile::from_sdes_name(s)
                            .ok_or_else(|| format!("unknown SRTP profile {s}"))?,
                    ),
                };
                for &streams in &sc.streams {
                    for rate in sc.rates(streams)? {
                        // Keep what each run needs alive for its duration.
                        let mut _minimal = None;
                        let mut _gw = None;
                        let mut _rtpe = None;
                        let target = match relay.as_str() {
                            "minimal" => {
                                let m = MinimalRelay::start(sc.relay_core);
                                let t = Target::Reflector(m.addr());
                                _minimal = Some(m);
                                t
                            }
                            "gateway" => {
                                let (lo, hi) = ports(streams, 2, 100)?;
                                Target::Embedded(GatewayOptions {
                                    backend: BackendChoice::Only(backend(be)?),
                                    workers: 1,
                                    cores: vec![sc.relay_core],
                                    idle: IdlePolicy::BusyPoll,
                                    ports: (lo, hi),
                                })
                            }
                            "rtp-gateway" => {
                                let (lo, hi) = ports(streams, 4, 200)?;
                                let g = Gateway::start(&GatewayConfig {
                                    listen_ng: "127.0.0.1:0".parse().unwrap(),
                                    port_min: lo,
                                    port_max: hi,
                                    cores: vec![sc.relay_core],
                                    backend: be.clone(),
                                    max_calls: streams + 10,
                                    media_timeout: 0,
                                    ..GatewayConfig::default()
                                })?;
                                let t = Target::Ng(g.ng_addr());
                                _gw = Some(g);
                                t
                            }
                            "rtpengine" => match Rtpengine::installed()
                                .then(|| Rtpengine::start(Some(sc.relay_core), streams))
                                .transpose()?
                            {
                                Some(r) => {
                                    let t = Target::Ng(r.ng());
                                    _rtpe = Some(r);
                                    t
                                }
                                None => {
                                    println!("| rtpengine | - | - | - | - | - | not installed (sudo bash .ci/install.sh) | | | | | |");
                                    continue;
                                }
                            },
                            other => return Err(format!("unknown relay {other:?}")),
                        };
                        let cfg = LoadConfig {
                            classes: vec![StreamClass {
                                name: "audio".into(),
                                streams,
                                ptime: Duration::from_nanos((streams as f64 / rate * 1e9) as u64),
                                payload: sc.payload,
                                pt: 0,
                                clock_rate: 8000,
                                talk_spurt: None,
                            }],
                            duration,
                            srtp: profile,
                            ssrc_base: 0x4000_0000,
                            seq_start: 0,
                            target,
                            progress: false,
                            drain: Duration::from_millis(500),
                            busy_poll: true,
                            load_core: Some(sc.load_core),
                            plain_sender: false,
                        };
                        let r = run(cfg)?;
                        let dir = out.join(format!("{relay}-{be}-{srtp}-{streams}x{rate:.0}"));
                        let rep = report::write_all(&r, &dir)?;
                        let t = &rep.total;
                        let l = t.latency;
                        let row = format!(
                            "| {relay} | {be} | {srtp} | {streams} | {:.0} | {:.0} | {:.0} | {:.3} | {} | {} | {} | {} |",
                            rep.offered_rate,
                            rep.send_rate,
                            rep.receive_rate,
                            t.loss_percent,
                            us(l.map(|l| l.p50_us)),
                            us(l.map(|l| l.p99_us)),
                            us(l.map(|l| l.p999_us)),
                            us(l.map(|l| l.max_us))
                        );
                        println!("{row}");
                        let _ = writeln!(table, "{row}");
                    }
                }
            }
        }
    }
    std::fs::write(out.join("summary.md"), &table).map_err(|e| e.to_string())?;
    println!("results under {}", out.display());
    Ok(())
}
