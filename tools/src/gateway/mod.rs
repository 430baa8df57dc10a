//! `rtp-gateway`: an [`Engine`] driven by the ng control protocol over UDP and
//! TCP, with Prometheus metrics over HTTP. Configuration comes from a TOML file
//! (every option documented in `tools/rtp-gateway.example.toml`), overridable by
//! flags.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rtp_control::dataplane::{BackendChoice, BackendKind, DropReason, IdlePolicy};
use rtp_control::{ControlPlacement, Engine, EngineConfig, EngineEvent};
use serde::Deserialize;

pub mod bencode;
pub mod client;
pub mod ng;
pub mod sdp;

use ng::{NgOptions, NgServer};

/// The configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// ng control address (UDP), loopback by default.
    pub listen_ng: SocketAddr,
    /// ng control address over TCP (optional).
    pub listen_tcp_ng: Option<SocketAddr>,
    /// Prometheus metrics address (`GET /metrics`), optional.
    pub listen_metrics: Option<SocketAddr>,
    /// Address media ports are bound on.
    pub interface: IpAddr,
    /// Address written into SDP (defaults to `interface`).
    pub advertise: Option<IpAddr>,
    /// First media port.
    pub port_min: u16,
    /// Last media port.
    pub port_max: u16,
    /// Dataplane workers.
    pub workers: usize,
    /// Cores for the workers (empty: not pinned).
    pub cores: Vec<usize>,
    /// `auto`, `mmsg` or `io_uring`.
    pub backend: String,
    /// `busy`, `spin:MICROS` or `block`.
    pub idle: String,
    /// Most calls at once.
    pub max_calls: usize,
    /// Seconds without media before a call is deleted (0: never).
    pub media_timeout: u64,
    /// Seconds a reply stays in the retransmission cache.
    pub cookie_ttl: u64,
    /// Nice value of the engine's control thread (DTLS handshakes, RTCP): a
    /// positive value lets the workers preempt it. `None`: inherited.
    pub control_nice: Option<i32>,
    /// Core the control thread is pinned to. `None`: not pinned.
    pub control_core: Option<usize>,
    /// Run the control thread only on idle CPU time (SCHED_IDLE).
    pub control_sched_idle: bool,
    /// DTLS-SRTP certificate (PEM file); with `dtls_key`. Unset: a self-signed
    /// ECDSA P-256 certificate is generated at start.
    pub dtls_cert: Option<std::path::PathBuf>,
    /// Private key (PEM file) of `dtls_cert`.
    pub dtls_key: Option<std::path::PathBuf>,
    /// Largest DTLS datagram the gateway sends (handshake flights are fragmented
    /// to fit).
    pub dtls_mtu: usize,
    /// Keep SRTP session keys compact and expand AES key schedules per packet
    /// (about 2.8 KB less per SRTP -> SRTP call).
    pub compact_srtp_keys: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen_ng: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 2223),
            listen_tcp_ng: None,
            listen_metrics: None,
            interface: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise: None,
            port_min: 30000,
            port_max: 39999,
            workers: 1,
            cores: Vec::new(),
            backend: "auto".into(),
            idle: "spin:200".into(),
            max_calls: 10_000,
            media_timeout: 60,
            cookie_ttl: 30,
            control_nice: None,
            control_core: None,
            control_sched_idle: false,
            dtls_cert: None,
            dtls_key: None,
            dtls_mtu: 1200,
            compact_srtp_keys: false,
        }
    }
}

impl GatewayConfig {
    /// Parses a TOML document; errors name the bad key.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| format!("configuration: {e}"))
    }

    fn engine(&self) -> Result<EngineConfig, String> {
        let backend = match self.backend.as_str() {
            "auto" => BackendChoice::Auto,
            b => BackendChoice::Only(
                b.parse::<BackendKind>()
                    .map_err(|e| format!("backend: {e}"))?,
            ),
        };
        let idle: IdlePolicy = self.idle.parse()?;
        let mut c = EngineConfig {
            bind_ip: self.interface,
            advertise_ip: self.advertise,
            port_min: self.port_min,
            port_max: self.port_max,
            max_calls: self.max_calls,
            media_timeout: (self.media_timeout > 0)
                .then(|| Duration::from_secs(self.media_timeout)),
            ..EngineConfig::default()
        };
        c.control_nice = self.control_nice;
        c.control_core = self.control_core;
        c.control_sched_idle = self.control_sched_idle;
        c.dtls.mtu = self.dtls_mtu;
        c.dtls_certificate = match (&self.dtls_cert, &self.dtls_key) {
            (Some(cp), Some(kp)) => Some((
                std::fs::read_to_string(cp)
                    .map_err(|e| format!("dtls_cert {}: {e}", cp.display()))?,
                std::fs::read_to_string(kp)
                    .map_err(|e| format!("dtls_key {}: {e}", kp.display()))?,
            )),
            (None, None) => None,
            _ => return Err("dtls_cert and dtls_key go together: set both or neither".into()),
        };
        c.dataplane.workers = self.workers;
        c.dataplane.cores = self.cores.clone();
        c.dataplane.backend = backend;
        c.dataplane.idle = idle;
        c.dataplane.compact_srtp_keys = self.compact_srtp_keys;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }
}

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    ng: Arc<NgServer>,
    ng_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
    metrics_addr: Option<SocketAddr>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Gateway {
    /// Validates the configuration, starts the engine and the listeners.
    pub fn start(cfg: &GatewayConfig) -> Result<Self, String> {
        let ecfg = cfg.engine()?;
        // The listeners and the event consumer are control plane too: they run
        // where the control thread runs (a setting the kernel refuses is
        // reported once, by the engine).
        let place = ecfg.control_placement();
        let engine = Engine::start(ecfg).map_err(|e| e.to_string())?;
        if let Some(note) = engine.backend_note() {
            tracing::warn!("{note}");
        }
        for note in engine.control_notes() {
            tracing::warn!("{note}");
        }
        let advertise = cfg.advertise.unwrap_or(cfg.interface);
        let ng = Arc::new(NgServer::new(
            engine,
            advertise,
            NgOptions {
                cookie_ttl: Duration::from_secs(cfg.cookie_ttl),
                ..NgOptions::default()
            },
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let udp = UdpSocket::bind(cfg.listen_ng)
            .map_err(|e| format!("listen_ng {}: {e}", cfg.listen_ng))?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?;
        let ng_addr = udp.local_addr().map_err(|e| e.to_string())?;
        let mut threads = Vec::new();
        {
            let (ng, stop) = (ng.clone(), stop.clone());
            threads.push(spawn_placed("ng-udp", place, move || {
                serve_udp(&udp, &ng, &stop)
            }));
        }
        let mut tcp_addr = None;
        if let Some(a) = cfg.listen_tcp_ng {
            let l = TcpListener::bind(a).map_err(|e| format!("listen_tcp_ng {a}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            tcp_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
            let (ng, stop) = (ng.clone(), stop.clone());
            threads.push(spawn_placed("ng-tcp", place, move || {
                serve_tcp(&l, &ng, &stop)
            }));
        }
        let mut metrics_addr = None;
        if let Some(a) = cfg.listen_metrics {
            let l = TcpListener::bind(a).map_err(|e| format!("listen_metrics {a}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            metrics_addr = Some(l.local_addr().map_err(|e| e.to_string())?);
            let (ng, stop) = (ng.clone(), stop.clone());
            threads.push(spawn_placed("metrics", place, move || {
                serve_metrics(&l, &ng, &stop)
            }));
        }
        {
            let (ng, stop) = (ng.clone(), stop.clone());
            threads.push(spawn_placed("events", place, move || {
                while !stop.load(Ordering::Acquire) {
                    if let Some(e) = ng.engine().next_event(Duration::from_millis(100)) {
                        // Log lines carry the ng call-id of the engine call, as
                        // those of ng commands do (`call` is the engine's id).
                        let engine_call = match &e {
                            EngineEvent::CallClosed { call, .. }
                            | EngineEvent::MediaTimeout { call }
                            | EngineEvent::SrtpFailures { call, .. }
                            | EngineEvent::Latched { call, .. }
                            | EngineEvent::DtlsConnected { call, .. }
                            | EngineEvent::DtlsAttemptFailed { call, .. }
                            | EngineEvent::DtlsFailed { call, .. }
                            | EngineEvent::Quality { call, .. }
                            | EngineEvent::IceNominated { call, .. } => Some(*call),
                            EngineEvent::Error { call, .. } => *call,
                        };
                        let call_id = engine_call
                            .and_then(|c| ng.call_id_of(c))
                            .unwrap_or_else(|| "-".into());
                        let _span = tracing::info_span!("ng", call_id = %call_id).entered();
                        match e {
                            EngineEvent::CallClosed { call, reason, .. } => {
                                tracing::info!(call, ?reason, "media call closed");
                                ng.engine_call_closed(call);
                            }
                            EngineEvent::MediaTimeout { call } => {
                                tracing::info!(call, "media timeout")
                            }
                            EngineEvent::SrtpFailures {
                                call,
                                leg,
                                auth,
                                replay,
                            } => {
                                tracing::warn!(call, leg, auth, replay, "SRTP failures")
                            }
                            EngineEvent::Latched {
                                call, leg, addr, ..
                            } => {
                                tracing::debug!(call, leg, %addr, "latched")
                            }
                            EngineEvent::IceNominated {
                                call, leg, addr, ..
                            } => {
                                tracing::info!(call, leg, %addr, "ICE candidate nominated")
                            }
                            EngineEvent::Error { call, message } => {
                                tracing::warn!(?call, %message, "engine error")
                            }
                            EngineEvent::DtlsConnected {
                                call,
                                leg,
                                profile,
                                cipher,
                                ..
                            } => {
                                tracing::info!(call, leg, ?profile, %cipher, "DTLS-SRTP keys installed")
                            }
                            EngineEvent::DtlsAttemptFailed {
                                call,
                                leg,
                                from,
                                reason,
                            } => {
                                tracing::info!(call, leg, ?from, %reason, "DTLS-SRTP attempt failed")
                            }
                            EngineEvent::DtlsFailed { call, leg, reason } => {
                                tracing::warn!(call, leg, %reason, "DTLS-SRTP handshake failed")
                            }
                            EngineEvent::Quality { call, leg, alert } => {
                                tracing::info!(
                                    call,
                                    leg,
                                    metric = ?alert.metric,
                                    raised = alert.raised,
                                    value = alert.value,
                                    threshold = alert.threshold,
                                    "call quality"
                                )
                            }
                        }
                    }
                }
            }));
        }
        Ok(Gateway {
            ng,
            ng_addr,
            tcp_addr,
            metrics_addr,
            stop,
            threads,
        })
    }

    /// The ng UDP address.
    pub fn ng_addr(&self) -> SocketAddr {
        self.ng_addr
    }

    /// The ng TCP address.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// The metrics address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The ng processor.
    pub fn ng(&self) -> &NgServer {
        &self.ng
    }

    /// Stops the listeners, then the engine (calls are closed and drained).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Release);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // Every thread that held the ng server has been joined: the engine is
        // shut down here, on this thread (calls closed, workers drained).
        match Arc::try_unwrap(self.ng) {
            Ok(ng) => {
                ng.into_engine().shutdown();
                tracing::info!("engine stopped: calls closed, workers drained");
            }
            Err(_) => tracing::warn!("the ng server is still in use: engine not drained"),
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("rtp-gateway-{name}"))
        .spawn(f)
        .expect("thread")
}

/// A control-plane thread of the gateway, placed like the engine's control
/// thread (threads it starts inherit the placement).
fn spawn_placed(
    name: &str,
    place: ControlPlacement,
    f: impl FnOnce() + Send + 'static,
) -> JoinHandle<()> {
    spawn(name, move || {
        let _ = place.apply();
        f()
    })
}

fn serve_udp(sock: &UdpSocket, ng: &NgServer, stop: &AtomicBool) {
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Acquire) {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) => {
                if let Some(reply) = ng.handle(&buf[..n]) {
                    let _ = sock.send_to(&reply, from);
                }
            }
            Err(_) => continue,
        }
    }
}

fn serve_tcp(l: &TcpListener, ng: &Arc<NgServer>, stop: &Arc<AtomicBool>) {
    // Connections are tracked (proxies keep them open for good): at stop each
    // one's socket is shut down and its thread joined, so that no thread still
    // holds the ng server when the gateway shuts the engine down.
    let mut conns: Vec<(TcpStream, JoinHandle<()>)> = Vec::new();
    while !stop.load(Ordering::Acquire) {
        match l.accept() {
            Ok((s, _)) => {
                conns.retain(|(_, t)| !t.is_finished());
                let Ok(handle) = s.try_clone() else { continue };
                let (ng, stop) = (ng.clone(), stop.clone());
                let t = spawn("ng-tcp-conn", move || {
                    let mut s = s;
                    tcp_conn(&mut s, &ng, &stop);
                    // (The listener's handle keeps the socket open: close it.)
                    let _ = s.shutdown(std::net::Shutdown::Both);
                });
                conns.push((handle, t));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    for (s, t) in conns {
        let _ = s.shutdown(std::net::Shutdown::Both);
        let _ = t.join();
    }
}

/// Longest cookie on ng over TCP.
const MAX_COOKIE: usize = 256;
/// Longest message on ng over TCP.
const MAX_TCP_MESSAGE: usize = 1 << 20;

/// ng over TCP: each message is `cookie <bencoded dictionary>`, back to back; a
/// complete dictionary delimits itself. Bytes that can never be a message get an
/// error reply (with the cookie, when there is one) and the connection is
/// closed: past a framing error there is no telling where the next message
/// starts.
fn tcp_conn(s: &mut TcpStream, ng: &NgServer, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    let mut acc: Vec<u8> = Vec::new();
    // The message being framed: where its bencode starts, and the framer.
    let mut frame: Option<(usize, bencode::Framer)> = None;
    let mut buf = [0u8; 16384];
    while !stop.load(Ordering::Acquire) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => acc.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        }
        loop {
            if frame.is_none() {
                // Line ends or spaces between messages are tolerated.
                let lead = acc.iter().take_while(|b| b.is_ascii_whitespace()).count();
                acc.drain(..lead);
                match acc.iter().take(MAX_COOKIE + 1).position(|&b| b == b' ') {
                    Some(sp) => frame = Some((sp + 1, bencode::Framer::new(MAX_TCP_MESSAGE))),
                    None if acc.len() > MAX_COOKIE => {
                        tracing::warn!("ng over TCP: no cookie: closing the connection");
                        return;
                    }
                    None => break,
                }
            }
            let Some((start, f)) = frame.as_mut() else {
                break;
            };
            match f.scan(&acc[*start..]) {
                Ok(Some(len)) => {
                    let msg: Vec<u8> = acc.drain(..*start + len).collect();
                    frame = None;
                    if let Some(reply) = ng.handle(&msg) {
                        if s.write_all(&reply).is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%e, "ng over TCP: not a message: closing the connection");
                    let mut out = acc[..*start].to_vec();
                    ng::error("Invalid NG data format").encode_into(&mut out);
                    let _ = s.write_all(&out);
                    let _ = s.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }
}

fn serve_metrics(l: &TcpListener, ng: &NgServer, stop: &AtomicBool) {
    while !stop.load(Ordering::Acquire) {
        match l.accept() {
            Ok((mut s, _)) => {
                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                let mut req = [0u8; 1024];
                let n = s.read(&mut req).unwrap_or(0);
                let head = String::from_utf8_lossy(&req[..n]);
                let (status, body) = if head.starts_with("GET /metrics") {
                    ("200 OK", metrics(ng))
                } else {
                    ("404 Not Found", "not found\n".to_string())
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Prometheus text exposition of the gateway.
pub fn metrics(ng: &NgServer) -> String {
    let mut out = String::new();
    let mut line = |name: &str, help: &str, kind: &str, samples: Vec<(String, u64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    line(
        "rtp_gateway_calls",
        "Calls known to the ng layer.",
        "gauge",
        vec![(String::new(), ng.call_count() as u64)],
    );
    let Ok(s) = ng.engine().stats() else {
        return out;
    };
    line(
        "rtp_gateway_ports_in_use",
        "Media ports in use.",
        "gauge",
        vec![(String::new(), s.ports_in_use as u64)],
    );
    line(
        "rtp_gateway_legs",
        "Media legs (two per relayed media stream).",
        "gauge",
        vec![(String::new(), 2 * s.calls as u64)],
    );
    let w = |f: &dyn Fn(&rtp_control::dataplane::WorkerCounters) -> u64| {
        s.workers
            .iter()
            .map(|c| (format!("{{worker=\"{}\"}}", c.worker), f(c)))
            .collect::<Vec<_>>()
    };
    line(
        "rtp_gateway_rx_packets_total",
        "Datagrams received.",
        "counter",
        w(&|c| c.rx_packets),
    );
    line(
        "rtp_gateway_tx_packets_total",
        "Datagrams sent.",
        "counter",
        w(&|c| c.tx_packets),
    );
    line(
        "rtp_gateway_unknown_flow_total",
        "Datagrams matching no flow.",
        "counter",
        w(&|c| c.unknown_flow),
    );
    line(
        "rtp_gateway_pool_empty_total",
        "Frame pool exhaustion events.",
        "counter",
        w(&|c| c.pool_empty),
    );
    line(
        "rtp_gateway_pool_free_frames",
        "Free frames in the pool.",
        "gauge",
        w(&|c| c.pool_free as u64),
    );
    line(
        "rtp_gateway_pool_bad_frees_total",
        "Frame frees the pool refused (a frame freed twice: a bug, counted).",
        "counter",
        w(&|c| c.pool_bad_frees),
    );
    line(
        "rtp_gateway_event_ring_full_total",
        "Data events (datagram and RTCP copies, latch changes) dropped on a full event ring.",
        "counter",
        w(&|c| c.event_ring_full),
    );
    line(
        "rtp_gateway_events_deferred_total",
        "Answers to commands that waited in the worker for room in a full event ring (never dropped).",
        "counter",
        w(&|c| c.events_deferred),
    );
    line(
        "rtp_gateway_submit_failures_total",
        "io_uring submissions given up after bounded retries.",
        "counter",
        w(&|c| c.io.submit_failures),
    );
    line(
        "rtp_gateway_early_held_total",
        "Packets that arrived before their leg's DTLS keys and were kept for them.",
        "counter",
        w(&|c| c.early_held),
    );
    line(
        "rtp_gateway_early_relayed_total",
        "Kept early packets relayed once the keys arrived.",
        "counter",
        w(&|c| c.early_relayed),
    );
    line(
        "rtp_gateway_gso_fallbacks_total",
        "UDP GSO sends the kernel refused (then sent datagram by datagram, GSO off).",
        "counter",
        w(&|c| c.io.gso_fallbacks),
    );
    line(
        "rtp_gateway_commands_held_total",
        "Control commands that waited for room in a worker's full command ring (never dropped).",
        "counter",
        vec![(String::new(), s.commands_held)],
    );
    line(
        "rtp_gateway_send_errors_total",
        "Sends the kernel refused.",
        "counter",
        w(&|c| c.send_errors),
    );
    let mut drops = Vec::new();
    for c in &s.workers {
        for r in DropReason::ALL {
            drops.push((
                format!("{{worker=\"{}\",reason=\"{}\"}}", c.worker, r.name()),
                c.drops[r as usize],
            ));
        }
    }
    line(
        "rtp_gateway_dropped_packets_total",
        "Packets dropped, by reason.",
        "counter",
        drops,
    );
    let i = &s.ice;
    line(
        "rtp_gateway_ice_stun_total",
        "STUN datagrams on ICE-lite legs, by outcome.",
        "counter",
        [
            ("answered", i.answered),
            ("nominations", i.nominations),
            ("indications", i.indications),
            ("malformed", i.malformed),
            ("bad_fingerprint", i.bad_fingerprint),
            ("unexpected", i.unexpected),
            ("no_credentials", i.no_credentials),
            ("bad_request", i.bad_request),
            ("unknown_username", i.unknown_username),
            ("bad_integrity", i.bad_integrity),
            ("unknown_attribute", i.unknown_attribute),
            ("role_conflicts", i.role_conflicts),
            ("refused_nominations", i.refused_nominations),
            ("not_ice", i.not_ice),
            ("no_leg", i.no_leg),
            ("ring_full", i.ring_full),
            ("rate_limited", i.rate_limited),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{{outcome=\"{k}\"}}"), v))
        .collect(),
    );
    rtcp_metrics(&mut out, &s.rtcp);
    out
}

/// RTCP counters and call-quality aggregates, per worker (never per call: sums
/// and counts over the current legs, so averages are `_sum / count`).
fn rtcp_metrics(out: &mut String, rtcp: &[rtp_control::RtcpWorkerStats]) {
    let mut family = |name: &str, help: &str, kind: &str, samples: Vec<(String, String)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
        for (labels, v) in samples {
            out.push_str(&format!("{name}{labels} {v}\n"));
        }
    };
    let w = |f: &dyn Fn(&rtp_control::RtcpWorkerStats) -> String| {
        rtcp.iter()
            .map(|c| (format!("{{worker=\"{}\"}}", c.worker), f(c)))
            .collect::<Vec<_>>()
    };
    family(
        "rtp_gateway_rtcp_reports_sent_total",
        "RTCP compound reports the gateway sent (terminated calls).",
        "counter",
        w(&|c| c.reports_sent.to_string()),
    );
    family(
        "rtp_gateway_rtcp_received_total",
        "RTCP compounds received and parsed (terminated calls).",
        "counter",
        w(&|c| c.compounds_received.to_string()),
    );
    family(
        "rtp_gateway_rtcp_rtt_samples_total",
        "Round-trip time samples taken from report blocks.",
        "counter",
        w(&|c| c.rtt_samples.to_string()),
    );
    let mut ignored = Vec::new();
    for c in rtcp {
        for (reason, v) in [
            ("malformed", c.malformed),
            ("unknown_type", c.unknown_type),
            ("unknown_ssrc", c.unknown_ssrc_blocks),
            ("absurd_rtt", c.absurd_rtt),
        ] {
            ignored.push((
                format!("{{worker=\"{}\",reason=\"{reason}\"}}", c.worker),
                v.to_string(),
            ));
        }
    }
    family(
        "rtp_gateway_rtcp_ignored_total",
        "RTCP packets or report blocks ignored, by reason.",
        "counter",
        ignored,
    );
    family(
        "rtp_gateway_legs_with_mos",
        "Legs of current calls with a MOS estimate.",
        "gauge",
        w(&|c| c.legs.to_string()),
    );
    family(
        "rtp_gateway_leg_mos_sum",
        "Sum of the MOS of those legs.",
        "gauge",
        w(&|c| format!("{:.3}", c.mos_sum)),
    );
    let mut buckets = Vec::new();
    for c in rtcp {
        for (le, n) in rtp_control::reporting::MOS_BUCKETS
            .iter()
            .zip(c.mos_buckets)
        {
            buckets.push((
                format!("{{worker=\"{}\",le=\"{le}\"}}", c.worker),
                n.to_string(),
            ));
        }
    }
    family(
        "rtp_gateway_legs_mos_at_most",
        "Legs of current calls whose MOS is at most `le`.",
        "gauge",
        buckets,
    );
    family(
        "rtp_gateway_legs_with_rtt",
        "Legs of current calls with a measured round-trip time.",
        "gauge",
        w(&|c| c.rtt_legs.to_string()),
    );
    family(
        "rtp_gateway_leg_rtt_seconds_sum",
        "Sum of those legs' round-trip times.",
        "gauge",
        w(&|c| format!("{:.6}", c.rtt_sum_secs)),
    );
    family(
        "rtp_gateway_leg_loss_ratio_sum",
        "Sum of the legs' receive loss fractions (last interval).",
        "gauge",
        w(&|c| format!("{:.6}", c.loss_sum)),
    );
    family(
        "rtp_gateway_leg_jitter_seconds_sum",
        "Sum of the legs' receive jitter.",
        "gauge",
        w(&|c| format!("{:.6}", c.jitter_sum_secs)),
    );
}
