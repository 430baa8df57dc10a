//! `rtp-gateway`: the media relay daemon, driven over the ng control protocol.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use rtp_tools::gateway::{Gateway, GatewayConfig};

#[derive(Parser, Debug)]
#[command(
    name = "rtp-gateway",
    version,
    about = "RTP/SRTP media relay driven by rtpengine's ng control protocol"
)]
struct Cli {
    /// TOML configuration (see tools/rtp-gateway.example.toml); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// ng control address (UDP).
    #[arg(long)]
    listen_ng: Option<SocketAddr>,
    /// ng control address (TCP).
    #[arg(long)]
    listen_tcp_ng: Option<SocketAddr>,
    /// Prometheus metrics address (GET /metrics).
    #[arg(long)]
    listen_metrics: Option<SocketAddr>,
    /// Address media ports are bound on.
    #[arg(long)]
    interface: Option<IpAddr>,
    /// Address written into SDP.
    #[arg(long)]
    advertise: Option<IpAddr>,
    /// First media port.
    #[arg(long)]
    port_min: Option<u16>,
    /// Last media port.
    #[arg(long)]
    port_max: Option<u16>,
    /// Dataplane workers.
    #[arg(long)]
    workers: Option<usize>,
    /// auto, mmsg or io_uring.
    #[arg(long)]
    backend: Option<String>,
    /// busy, spin:MICROS or block.
    #[arg(long)]
    idle: Option<String>,
    /// Most calls at once.
    #[arg(long)]
    max_calls: Option<usize>,
    /// Seconds without media before a call is deleted (0: never).
    #[arg(long)]
    media_timeout: Option<u64>,
    /// Nice value of the control thread.
    #[arg(long)]
    control_nice: Option<i32>,
    /// Core the control thread is pinned to.
    #[arg(long)]
    control_core: Option<usize>,
    /// DTLS certificate (PEM file), with --dtls-key.
    #[arg(long, requires = "dtls_key")]
    dtls_cert: Option<PathBuf>,
    /// DTLS private key (PEM file), with --dtls-cert.
    #[arg(long, requires = "dtls_cert")]
    dtls_key: Option<PathBuf>,
    /// Largest DTLS datagram to send.
    #[arg(long)]
    dtls_mtu: Option<usize>,
    /// Keep SRTP session keys compact (AES key schedules expanded per packet).
    #[arg(long)]
    compact_srtp_keys: bool,
}

fn config(cli: &Cli) -> Result<GatewayConfig, String> {
    let mut c = match &cli.config {
        Some(p) => GatewayConfig::from_toml(
            &std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        )?,
        None => GatewayConfig::default(),
    };
    macro_rules! over {
        ($($f:ident),*) => { $( if let Some(v) = cli.$f.clone() { c.$f = v; } )* };
    }
    over!(
        listen_ng,
        interface,
        port_min,
        port_max,
        workers,
        backend,
        idle,
        max_calls,
        media_timeout,
        dtls_mtu
    );
    if cli.control_nice.is_some() {
        c.control_nice = cli.control_nice;
    }
    if cli.compact_srtp_keys {
        c.compact_srtp_keys = true;
    }
    if cli.control_core.is_some() {
        c.control_core = cli.control_core;
    }
    if cli.dtls_cert.is_some() {
        c.dtls_cert = cli.dtls_cert.clone();
        c.dtls_key = cli.dtls_key.clone();
    }
    if cli.listen_tcp_ng.is_some() {
        c.listen_tcp_ng = cli.listen_tcp_ng;
    }
    if cli.listen_metrics.is_some() {
        c.listen_metrics = cli.listen_metrics;
    }
    if cli.advertise.is_some() {
        c.advertise = cli.advertise;
    }
    Ok(c)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let cfg = match config(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("rtp-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(e) = signal_hook::flag::register(sig, stop.clone()) {
            eprintln!("rtp-gateway: cannot handle signal {sig}: {e}");
            return ExitCode::FAILURE;
        }
    }
    let gw = match Gateway::start(&cfg) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rtp-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(
        ng = %gw.ng_addr(),
        tcp = ?gw.tcp_addr(),
        metrics = ?gw.metrics_addr(),
        backend = gw.ng().engine().backend().name(),
        "rtp-gateway ready"
    );
    // Machine-readable for scripts and tests.
    println!("NG_ADDR={}", gw.ng_addr());
    if let Some(t) = gw.tcp_addr() {
        println!("TCP_NG_ADDR={t}");
    }
    if let Some(m) = gw.metrics_addr() {
        println!("METRICS_ADDR={m}");
    }
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
    }
    tracing::info!("signal received: draining and stopping");
    gw.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}
