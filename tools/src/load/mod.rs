//! `rtp-load`: paced RTP/SRTP streams, received back from a relay or reflector,
//! with per-packet one-way latency (a send timestamp in an RFC 8285 header
//! extension), loss, duplicates, reordering and jitter per stream, HdrHistograms
//! per class and in total, a live progress line, a report table, JSON, `.hgrm`
//! files and plots.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtp_control::dataplane::ports::udp_socket;
use rtp_control::dataplane::sys::{MmsgBatch, Received, RecvSlot, SendMsg};
use rtp_control::dataplane::{BackendChoice, IdlePolicy, LatchMode, LegSrtp};
use rtp_control::{Engine, LegConfig};
use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::{PendingTag, SrtpConfig, SrtpContext, SrtpProfile, TagBatch};

use crate::gateway::client::NgClient;
use rtp_core::stats::ReceiverStats;

pub mod reflect;
pub mod report;
pub mod schedule;

pub use schedule::{Pacer, Release, StreamClass};

/// RFC 8285 one-byte extension id carrying the send time (u64 ns, big-endian).
pub const TIMESTAMP_EXT_ID: u8 = 1;
/// RFC 8285 one-byte extension id carrying the low 16 bits of the packet's
/// number in its stream (0, 1, ... in sending order; big-endian). Loss and
/// duplicates are counted from it, whatever a relay does to sequence numbers.
pub const INDEX_EXT_ID: u8 = 2;
/// Bytes of RTP header we write: 12 fixed + 4 extension header + 12 extension
/// body (the send time in 9 bytes, the packet number in 3).
pub const HEADER_LEN: usize = 28;
const BATCH: usize = 64;
/// Packets of one stream behind its newest arrival that are still told apart
/// from duplicates (older arrivals count as distinct late ones).
pub const ARRIVAL_WINDOW: u64 = 4096;
/// Upper bound of the adaptive part of the drain (4 x the largest latency seen).
pub const MAX_ADAPTIVE_DRAIN: Duration = Duration::from_secs(30);

/// Where the streams go.
#[derive(Debug, Clone)]
pub enum Target {
    /// An in-process engine on loopback relays every stream (a call per stream):
    /// the measured latency is one way through the gateway.
    Embedded(GatewayOptions),
    /// An external reflector that sends every packet back to its source: the
    /// measured latency is the round trip through it.
    Reflector(SocketAddr),
    /// A relay set up over the ng control protocol (rtp-gateway or rtpengine):
    /// one call per stream, offered by our sender and answered by our receiver;
    /// the measured latency is one way through the relay.
    Ng(SocketAddr),
}

/// Settings of the embedded gateway.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Backend.
    pub backend: BackendChoice,
    /// Workers.
    pub workers: usize,
    /// Cores for the workers (empty: not pinned).
    pub cores: Vec<usize>,
    /// Idle policy.
    pub idle: IdlePolicy,
    /// Port range for the calls.
    pub ports: (u16, u16),
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions {
            backend: BackendChoice::Auto,
            workers: 1,
            cores: Vec::new(),
            idle: IdlePolicy::default(),
            ports: (40000, 59999),
        }
    }
}

/// A run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Stream classes.
    pub classes: Vec<StreamClass>,
    /// How long to send.
    pub duration: Duration,
    /// SRTP profile (`None`: plain RTP).
    pub srtp: Option<SrtpProfile>,
    /// First SSRC (stream `i` uses `ssrc_base + i`).
    pub ssrc_base: u32,
    /// First sequence number of every stream.
    pub seq_start: u16,
    /// Where to send.
    pub target: Target,
    /// Print a progress line every second.
    pub progress: bool,
    /// How long at least to wait for stragglers after the last send (the wait
    /// grows to 4x the largest latency seen, see [`drain_time`]; it ends early
    /// once every sent packet arrived).
    pub drain: Duration,
    /// Spin between sends instead of sleeping in the kernel (no wake-up cost,
    /// one core at 100%).
    pub busy_poll: bool,
    /// Pin the generator thread to this core.
    pub load_core: Option<usize>,
    /// With SRTP and an ng relay: send plain RTP and have the relay encrypt
    /// towards the receiver (RTP -> SRTP).
    pub plain_sender: bool,
}

impl LoadConfig {
    /// Total streams.
    pub fn streams(&self) -> usize {
        self.classes.iter().map(|c| c.streams).sum()
    }

    /// Offered packets per second (all streams talking).
    pub fn rate(&self) -> f64 {
        self.classes.iter().map(StreamClass::rate).sum()
    }

    /// Checks the configuration.
    pub fn check(&self) -> Result<(), String> {
        if self.classes.is_empty() {
            return Err("no stream class".into());
        }
        for c in &self.classes {
            c.check()?;
        }
        if self.duration.is_zero() {
            return Err("duration must be above zero".into());
        }
        if u64::from(self.ssrc_base) + self.streams() as u64 > u64::from(u32::MAX) {
            return Err("ssrc_base + streams overflows 32 bits".into());
        }
        Ok(())
    }
}

/// Per-stream results.
#[derive(Debug, Clone, Default)]
pub struct StreamResult {
    /// Packets sent.
    pub sent: u64,
    /// Distinct packets received.
    pub received: u64,
    /// Duplicates received.
    pub duplicates: u64,
    /// Packets that arrived after a later one.
    pub reordered: u64,
    /// Interarrival jitter at the end (ms).
    pub jitter_ms: f64,
}

impl StreamResult {
    /// Lost packets.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }
}

/// Per-second figures.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Second {
    /// Seconds since the start.
    pub t: u64,
    /// Packets sent in this second.
    pub sent: u64,
    /// Packets received in this second.
    pub received: u64,
    /// Latency percentiles of the packets received in this second (µs;
    /// `None`, JSON null, when nothing arrived).
    pub p50_us: Option<f64>,
    /// 99th percentile (µs).
    pub p99_us: Option<f64>,
    /// Maximum (µs).
    pub max_us: Option<f64>,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadResult {
    /// The configuration.
    pub config: LoadConfig,
    /// Streams, by global index.
    pub streams: Vec<StreamResult>,
    /// Latency histogram of each class (ns).
    pub class_latency: Vec<Histogram<u64>>,
    /// Latency histogram of everything (ns).
    pub latency: Histogram<u64>,
    /// Per-second series.
    pub seconds: Vec<Second>,
    /// How late the sender was against the schedule (ns).
    pub send_lateness: Histogram<u64>,
    /// Sends the kernel refused.
    pub send_errors: u64,
    /// Packets that failed SRTP authentication or were not ours.
    pub rx_rejected: u64,
    /// Wall time of the sending phase.
    pub elapsed: Duration,
    /// What the target was, for the report.
    pub target_desc: String,
    /// Gateway counters (embedded target).
    pub gateway: Option<GatewaySummary>,
}

/// Numbers from the embedded gateway.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct GatewaySummary {
    /// Backend.
    pub backend: &'static str,
    /// Packets the gateway received.
    pub rx_packets: u64,
    /// Packets it sent.
    pub tx_packets: u64,
    /// Frames it could not get from its pool.
    pub pool_empty: u64,
    /// Calls it relayed.
    pub calls: usize,
}

impl LoadResult {
    /// Packets sent, all streams.
    pub fn sent(&self) -> u64 {
        self.streams.iter().map(|s| s.sent).sum()
    }

    /// Distinct packets received, all streams.
    pub fn received(&self) -> u64 {
        self.streams.iter().map(|s| s.received).sum()
    }

    /// Packets lost, all streams.
    pub fn lost(&self) -> u64 {
        self.streams.iter().map(StreamResult::lost).sum()
    }

    /// Lost / sent (1 when nothing was sent).
    pub fn loss_ratio(&self) -> f64 {
        match self.sent() {
            0 => 1.0,
            n => self.lost() as f64 / n as f64,
        }
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

fn master_attr(profile: SrtpProfile, seed: u64) -> CryptoAttribute {
    use rand::{Rng, SeedableRng};
    let mut r = rand::rngs::StdRng::seed_from_u64(seed);
    CryptoAttribute {
        tag: 1,
        profile,
        key: (0..profile.key_len()).map(|_| r.gen()).collect(),
        salt: (0..profile.salt_len()).map(|_| r.gen()).collect(),
        lifetime: None,
        mki: None,
    }
}

fn master(profile: SrtpProfile, seed: u64) -> SrtpConfig {
    master_attr(profile, seed)
        .to_config()
        .expect("lengths of the profile")
}

/// What setting up the ng calls gives: per stream, where to send and the key to
/// decrypt with at the receiver; and the call-ids.
type NgCalls = (Vec<SocketAddr>, Vec<Option<SrtpConfig>>, Vec<String>);
/// One stream set up by one ng client: index, destination, receiver key.
type NgStream = (usize, SocketAddr, Option<SrtpConfig>);

/// One ng call per stream, set up by several clients in parallel; returns where
/// each stream is sent and the relay's key towards our receiver for each.
fn ng_calls(
    server: SocketAddr,
    cfg: &LoadConfig,
    tx: SocketAddr,
    rx: SocketAddr,
    seed: u64,
) -> Result<NgCalls, String> {
    let streams = cfg.streams();
    let a_key = cfg
        .srtp
        .filter(|_| !cfg.plain_sender)
        .map(|p| master_attr(p, seed));
    let b_key = cfg.srtp.map(|p| master_attr(p, seed ^ 0xB));
    let mut pts = Vec::with_capacity(streams);
    for c in &cfg.classes {
        pts.extend(std::iter::repeat_n(c.pt, c.streams));
    }
    let ids: Vec<String> = (0..streams)
        .map(|i| format!("rtp-load-{}-{seed:x}-{i}", std::process::id()))
        .collect();
    let threads = 8.min(streams.max(1));
    let results: Vec<Result<Vec<NgStream>, String>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let (ids, pts, a_key, b_key) = (&ids, &pts, &a_key, &b_key);
                s.spawn(move || {
                    let mut c = NgClient::new(server).map_err(|e| e.to_string())?;
                    let mut out = Vec::new();
                    for i in (t..streams).step_by(threads) {
                        let (dst, relay_key) =
                            c.stream(&ids[i], tx, rx, pts[i], a_key.as_ref(), b_key.as_ref())?;
                        let k = relay_key
                            .map(|k| k.to_config().map_err(|e| e.to_string()))
                            .transpose()?;
                        out.push((i, dst, k));
                    }
                    Ok(out)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("ng client panicked".into()))
            })
            .collect()
    });
    let mut dests = vec![rx; streams];
    let mut keys = vec![None; streams];
    for r in results {
        for (i, d, k) in r? {
            dests[i] = d;
            keys[i] = k;
        }
    }
    Ok((dests, keys, ids))
}

fn ng_delete(server: SocketAddr, ids: &[String]) {
    let threads = 8.min(ids.len().max(1));
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || {
                if let Ok(mut c) = NgClient::new(server) {
                    for id in ids.iter().skip(t).step_by(threads) {
                        let _ = c.delete(id);
                    }
                }
            });
        }
    });
}

/// Cores of the embedded gateway's workers when `--cores` is not given: the
/// last `workers` cores, one each, core 0 left to the generator. Busy-polling
/// workers sharing a core would starve each other, so more workers than that
/// is an error that says what to do.
pub fn default_worker_cores(workers: usize, cpus: usize) -> Result<Vec<usize>, String> {
    if workers == 0 {
        return Err("--workers 0: at least one worker".into());
    }
    if workers >= cpus {
        return Err(format!(
            "--workers {workers}: this machine has {cpus} cores and core 0 is the generator's; \
             use at most {} workers or choose cores with --cores",
            cpus.saturating_sub(1)
        ));
    }
    Ok((cpus - workers..cpus).collect())
}

/// The local address the kernel would send from to reach `peer`, found with a
/// UDP socket connected to it (connecting sends nothing). Loopback for a
/// loopback peer; the address of the outgoing interface for a peer on another
/// host or namespace, so that a reflector or relay there can answer and an ng
/// offer advertises an address it can reach (a loopback-bound socket cannot
/// send off the host at all).
pub fn local_ip_towards(peer: SocketAddr) -> Result<IpAddr, String> {
    let any = if peer.is_ipv4() {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    };
    let probe =
        UdpSocket::bind(SocketAddr::new(any, 0)).map_err(|e| format!("probe socket: {e}"))?;
    probe
        .connect(peer)
        .map_err(|e| format!("no route to {peer}: {e}"))?;
    probe
        .local_addr()
        .map(|a| a.ip())
        .map_err(|e| format!("probe socket towards {peer}: {e}"))
}

/// How long the run waits for stragglers after its last send: at least `min`,
/// and 4x the largest latency seen so far (capped at [`MAX_ADAPTIVE_DRAIN`]),
/// so a path with long round trips does not count its tail as lost.
pub fn drain_time(min: Duration, max_latency: Duration) -> Duration {
    min.max(max_latency.saturating_mul(4).min(MAX_ADAPTIVE_DRAIN))
}

/// Which packet of its stream a received one is: the newest index below
/// `sent` whose low 16 bits are `low` (`None`: not a packet we sent). Exact
/// unless a packet arrives 65,536 packets of its stream late.
pub fn packet_index(low: u16, sent: u64) -> Option<u64> {
    let last = sent.checked_sub(1)?;
    let back = u64::from((last as u16).wrapping_sub(low));
    last.checked_sub(back)
}

/// What an arrival was, for [`Arrivals`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy, in order.
    New,
    /// First copy, after a later packet of the stream.
    Late,
    /// A copy of a packet that already arrived.
    Duplicate,
}

/// Which packets of one stream arrived, by packet number: a ring of
/// [`ARRIVAL_WINDOW`] bits behind the newest, counting distinct arrivals,
/// duplicates and late ones itself (RFC 3550's sequence tracking restarts on a
/// large gap and skips packets it holds for bad, which would skew the loss).
#[derive(Debug, Clone)]
pub struct Arrivals {
    bits: [u64; (ARRIVAL_WINDOW / 64) as usize],
    newest: Option<u64>,
    /// Distinct packets.
    pub distinct: u64,
    /// Copies of packets that already arrived.
    pub duplicates: u64,
    /// Distinct packets that arrived after a later one.
    pub late: u64,
}

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals {
            bits: [0; (ARRIVAL_WINDOW / 64) as usize],
            newest: None,
            distinct: 0,
            duplicates: 0,
            late: 0,
        }
    }
}

impl Arrivals {
    fn bit(i: u64) -> (usize, u64) {
        let b = i % ARRIVAL_WINDOW;
        ((b / 64) as usize, 1 << (b % 64))
    }

    /// Accounts the arrival of packet number `i`.
    pub fn on_packet(&mut self, i: u64) -> Arrival {
        let outcome = match self.newest {
            Some(n) if i <= n => {
                if n - i >= ARRIVAL_WINDOW {
                    // Too old to tell: a distinct late arrival.
                    Arrival::Late
                } else {
                    let (w, m) = Self::bit(i);
                    if self.bits[w] & m != 0 {
                        Arrival::Duplicate
                    } else {
                        self.bits[w] |= m;
                        Arrival::Late
                    }
                }
            }
            newest => {
                // Forget the slots the window moves past.
                let from = newest.map_or(0, |n| n + 1);
                if i - from >= ARRIVAL_WINDOW {
                    self.bits = [0; (ARRIVAL_WINDOW / 64) as usize];
                } else {
                    for j in from..i {
                        let (w, m) = Self::bit(j);
                        self.bits[w] &= !m;
                    }
                }
                let (w, m) = Self::bit(i);
                self.bits[w] |= m;
                self.newest = Some(i);
                Arrival::New
            }
        };
        match outcome {
            Arrival::New => self.distinct += 1,
            Arrival::Late => {
                self.distinct += 1;
                self.late += 1;
            }
            Arrival::Duplicate => self.duplicates += 1,
        }
        outcome
    }
}

/// Runs the load; blocks for its duration.
pub fn run(cfg: LoadConfig) -> Result<LoadResult, String> {
    cfg.check()?;
    let streams = cfg.streams();
    // Keys and ng call-ids differ across runs (the OS random source).
    let seed: u64 = rand::random();
    // Keys: what we send with, and what we receive with.
    let (tx_key, rx_key) = match cfg.srtp {
        Some(p) => (Some(master(p, seed)), Some(master(p, seed ^ 0xA5A5))),
        None => (None, None),
    };
    let buf = Some(8 << 20);
    // Our sockets bind the address the kernel would send from towards the
    // target: loopback for a local one, the interface towards a remote one.
    let local_ip = match &cfg.target {
        Target::Reflector(a) | Target::Ng(a) => local_ip_towards(*a)?,
        Target::Embedded(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    let tx_sock = udp_socket(SocketAddr::new(local_ip, 0), false, buf)
        .map_err(|e| format!("sender socket: {e}"))?;
    let mut per_stream_keys: Vec<Option<SrtpConfig>> = Vec::new();
    let mut ng_ids: Vec<String> = Vec::new();
    let (rx_sock, dests, engine, target_desc) = match &cfg.target {
        Target::Ng(server) => {
            let rx = udp_socket(SocketAddr::new(local_ip, 0), false, buf)
                .map_err(|e| format!("receiver socket: {e}"))?;
            let tx_addr = tx_sock.local_addr().map_err(|e| e.to_string())?;
            let rx_addr = rx.local_addr().map_err(|e| e.to_string())?;
            let (dests, keys, ids) = ng_calls(*server, &cfg, tx_addr, rx_addr, seed)?;
            per_stream_keys = keys;
            ng_ids = ids;
            (
                rx,
                dests,
                None,
                format!(
                    "relay at ng {server} ({streams} calls from {}; latency is one way through it)",
                    tx_addr.ip()
                ),
            )
        }
        Target::Reflector(addr) => {
            let rx = tx_sock.try_clone().map_err(|e| e.to_string())?;
            // A reflector echoes our own packets: receive with the sending key.
            (
                rx,
                vec![*addr; streams],
                None,
                format!("reflector {addr} (from {local_ip}; latency is the round trip)"),
            )
        }
        Target::Embedded(g) => {
            let rx = udp_socket(SocketAddr::new(local_ip, 0), false, buf)
                .map_err(|e| format!("receiver socket: {e}"))?;
            let engine = Engine::builder()
                .ports(g.ports.0, g.ports.1)
                .workers(g.workers, g.cores.clone())
                .backend(g.backend)
                .idle(g.idle)
                .max_calls(streams.max(1))
                .media_timeout(None)
                .start()
                .map_err(|e| format!("embedded gateway: {e}"))?;
            let dests = create_calls(
                &engine,
                streams,
                &cfg,
                rx.local_addr().map_err(|e| e.to_string())?,
                &tx_key,
                &rx_key,
            )?;
            let desc = format!(
                "embedded gateway ({} calls, {} backend, {} worker(s); latency is one way through it)",
                streams,
                engine.backend().name(),
                g.workers
            );
            (rx, dests, Some(engine), desc)
        }
    };
    let rx_key = match cfg.target {
        Target::Reflector(_) => tx_key.clone(),
        Target::Embedded(_) => rx_key,
        Target::Ng(_) => None,
    };
    // ng: the sender's key is the one offered; the relay chose one key per call
    // towards the receiver.
    let tx_key = match cfg.target {
        Target::Ng(_) => cfg
            .srtp
            .filter(|_| !cfg.plain_sender)
            .map(|p| master(p, seed)),
        _ => tx_key,
    };
    let ctx = tx_key.map(|k| SrtpContext::new(k).expect("valid key"));
    let mut tx = Tx::new(&cfg, ctx);
    let mut rx = Rx::new(&cfg, rx_key);
    rx.per_stream = per_stream_keys
        .into_iter()
        .map(|k| k.map(|k| SrtpContext::new(k).expect("valid key")))
        .collect();
    load_loop(&cfg, &tx_sock, &rx_sock, &dests, &mut tx, &mut rx);
    let (sent, lateness, send_errors, elapsed) = (tx.sent, tx.lateness, tx.errors, tx.elapsed);
    let rx = rx.finish();
    if let Target::Ng(server) = cfg.target {
        ng_delete(server, &ng_ids);
    }
    let gateway = engine.map(|e| {
        let s = e.stats().ok();
        let g = GatewaySummary {
            backend: e.backend().name(),
            rx_packets: s
                .as_ref()
                .map(|s| s.workers.iter().map(|w| w.rx_packets).sum())
                .unwrap_or(0),
            tx_packets: s
                .as_ref()
                .map(|s| s.workers.iter().map(|w| w.tx_packets).sum())
                .unwrap_or(0),
            pool_empty: s
                .as_ref()
                .map(|s| s.workers.iter().map(|w| w.pool_empty).sum())
                .unwrap_or(0),
            calls: s.as_ref().map(|s| s.calls).unwrap_or(0),
        };
        e.shutdown();
        g
    });
    let mut streams_out = rx.streams;
    for (s, n) in streams_out.iter_mut().zip(sent) {
        s.sent = n;
    }
    Ok(LoadResult {
        config: cfg,
        streams: streams_out,
        class_latency: rx.class_latency,
        latency: rx.latency,
        seconds: rx.seconds,
        send_lateness: lateness,
        send_errors,
        rx_rejected: rx.rejected,
        elapsed,
        target_desc,
        gateway,
    })
}

/// One call per stream: leg 0 learns our sender, leg 1 sends to our receiver.
fn create_calls(
    engine: &Engine,
    streams: usize,
    cfg: &LoadConfig,
    rx_addr: SocketAddr,
    tx_key: &Option<SrtpConfig>,
    rx_key: &Option<SrtpConfig>,
) -> Result<Vec<SocketAddr>, String> {
    // Keys the gateway uses towards the sides that never send back.
    let unused = cfg.srtp.map(|p| master(p, 0x5eed));
    let mut dests = vec![SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0); streams];
    let mut clock = Vec::with_capacity(streams);
    for c in &cfg.classes {
        clock.extend(std::iter::repeat_n(c.clock_rate, c.streams));
    }
    // Several creators in parallel: each create waits for its worker's answer.
    let threads = 16.min(streams.max(1));
    let results: Vec<Result<Vec<(usize, SocketAddr)>, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let clock = &clock;
                let unused = &unused;
                s.spawn(move || {
                    let mut out = Vec::new();
                    for i in (t..streams).step_by(threads) {
                        let leg0 = LegConfig {
                            srtp: tx_key.as_ref().map(|k| LegSrtp {
                                inbound: k.clone(),
                                outbound: unused.clone().expect("set with SRTP"),
                            }),
                            clock_rate: clock[i],
                            ..LegConfig::default()
                        };
                        let leg1 = LegConfig {
                            remote: Some(rx_addr),
                            latch: LatchMode::Fixed,
                            srtp: rx_key.as_ref().map(|k| LegSrtp {
                                inbound: unused.clone().expect("set with SRTP"),
                                outbound: k.clone(),
                            }),
                            ..LegConfig::default()
                        };
                        let c = engine
                            .create_call([leg0, leg1])
                            .map_err(|e| format!("create call: {e}"))?;
                        out.push((i, c.legs[0].local));
                    }
                    Ok(out)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("creator panicked".into())))
            .collect()
    });
    for r in results {
        for (i, a) in r? {
            dests[i] = a;
        }
    }
    Ok(dests)
}

/// Writes a packet into `buf`; returns the plain length. `index` is the
/// packet's number in its stream (its sequence number is `seq`).
#[allow(clippy::too_many_arguments)]
fn build(
    buf: &mut [u8],
    class: &StreamClass,
    ssrc: u32,
    seq: u16,
    index: u64,
    k: u64,
    marker: bool,
    now_ns: u64,
) -> usize {
    buf[0] = 0x90; // V=2, X=1
    buf[1] = (u8::from(marker) << 7) | (class.pt & 0x7f);
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    let ts = (k as u32).wrapping_mul(class.samples_per_packet());
    buf[4..8].copy_from_slice(&ts.to_be_bytes());
    buf[8..12].copy_from_slice(&ssrc.to_be_bytes());
    buf[12..16].copy_from_slice(&[0xBE, 0xDE, 0, 3]);
    buf[16] = (TIMESTAMP_EXT_ID << 4) | 7; // 8 bytes
    buf[17..25].copy_from_slice(&now_ns.to_be_bytes());
    buf[25] = (INDEX_EXT_ID << 4) | 1; // 2 bytes
    buf[26..28].copy_from_slice(&(index as u16).to_be_bytes());
    let end = HEADER_LEN + class.payload;
    for (i, b) in buf[HEADER_LEN..end].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    end
}

/// The sending half: schedule, SRTP, batched sendmmsg.
struct Tx {
    release: Release,
    ctx: Option<SrtpContext>,
    batch: MmsgBatch,
    bufs: Vec<[u8; 1500]>,
    msgs: Vec<SendMsg>,
    /// Due time of each message of the batch.
    due_at: [u64; BATCH],
    sent: Vec<u64>,
    sent_total: u64,
    lateness: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Tx {
    fn new(cfg: &LoadConfig, ctx: Option<SrtpContext>) -> Self {
        Tx {
            release: Release::new(&cfg.classes, cfg.duration),
            ctx,
            batch: MmsgBatch::new(BATCH),
            bufs: vec![[0u8; 1500]; BATCH],
            msgs: Vec::with_capacity(BATCH),
            due_at: [0; BATCH],
            sent: vec![0; cfg.streams()],
            sent_total: 0,
            lateness: histogram(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Sends one batch of what is due at `now` (a backlog left by a late loop
    /// goes at once, so every run sends its exact count); records how late each
    /// packet left at the time the batch is handed to the kernel. Returns how
    /// many packets went out.
    fn send_due(
        &mut self,
        cfg: &LoadConfig,
        sock: &UdpSocket,
        dests: &[SocketAddr],
        epoch: Instant,
        now: u64,
    ) -> usize {
        self.msgs.clear();
        // The send time each packet carries. Plain packets share one clock read
        // per batch: building a whole batch takes a couple of microseconds, all
        // of it wait before the batch's one send anyway, and a clock read per
        // packet was a few percent of a fast sender's time. With SRTP, whose
        // protect costs ten times a clock read, each packet reads its own.
        let mut ts_ns = epoch.elapsed().as_nanos() as u64;
        // HMAC-SHA1 tags are written for the whole batch at once, before the
        // send (`TagBatch`: sixteen at a time in AVX-512 lanes where the CPU has
        // them).
        let mut tags: [Option<PendingTag>; BATCH] = [const { None }; BATCH];
        while self.msgs.len() < BATCH {
            let Some(d) = self.release.pop_due(now) else {
                break;
            };
            if !d.talking {
                continue;
            }
            let class = &cfg.classes[d.class];
            let s = d.stream;
            let index = self.sent[s];
            let seq = cfg.seq_start.wrapping_add(index as u16);
            let i = self.msgs.len();
            if self.ctx.is_some() && i > 0 {
                ts_ns = epoch.elapsed().as_nanos() as u64;
            }
            let buf = &mut self.bufs[i];
            let mut len = build(
                buf,
                class,
                cfg.ssrc_base + s as u32,
                seq,
                index,
                d.k,
                d.spurt_start,
                ts_ns,
            );
            if let Some(c) = self.ctx.as_mut() {
                match c.protect_rtp_deferred(buf, len) {
                    Ok((n, tag)) => {
                        len = n;
                        tags[i] = tag;
                    }
                    Err(_) => {
                        self.errors += 1;
                        continue;
                    }
                }
            }
            self.batch.set_iov(i, buf.as_ptr(), len);
            self.due_at[i] = d.at_ns;
            self.msgs.push(SendMsg {
                dst: dests[s],
                first_iov: i,
                iov_count: 1,
                segment: 0,
            });
            self.sent[s] += 1; // sequence numbers advance even if the send fails
        }
        let n = self.msgs.len();
        if n == 0 {
            return 0;
        }
        if self.ctx.is_some() {
            let mut batch = TagBatch::new();
            for (buf, tag) in self.bufs.iter_mut().zip(&mut tags) {
                if let Some(tag) = tag.take() {
                    if batch.push(tag, buf).is_err() {
                        // Cannot happen: the buffer is the one protect was given.
                        self.errors += 1;
                    }
                }
            }
            batch.finish();
        }
        let sent_at = epoch.elapsed().as_nanos() as u64;
        for &at in &self.due_at[..n] {
            let _ = self.lateness.record(sent_at.saturating_sub(at).max(1));
        }
        let mut done = 0;
        while done < n {
            match self.batch.send(sock.as_raw_fd(), &self.msgs[done..]) {
                Ok(k) if k > 0 => done += k,
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The refused message is lost; count it and go on.
                    self.errors += 1;
                    done += 1;
                }
            }
        }
        self.errors += (n - done) as u64;
        self.sent_total += n as u64;
        n
    }
}

struct RxOutcome {
    streams: Vec<StreamResult>,
    class_latency: Vec<Histogram<u64>>,
    latency: Histogram<u64>,
    seconds: Vec<Second>,
    rejected: u64,
}

/// Reads the send time and the packet number from our header extension.
fn stamps(pkt: &[u8]) -> Option<(u64, u16)> {
    let p = rtp_core::RtpPacket::new_checked(pkt).ok()?;
    let t = p.extension(TIMESTAMP_EXT_ID)?;
    let i = p.extension(INDEX_EXT_ID)?;
    Some((
        u64::from_be_bytes(t.try_into().ok()?),
        u16::from_be_bytes(i.try_into().ok()?),
    ))
}

/// The receiving half: recvmmsg, SRTP, per-stream arrivals and jitter,
/// histograms.
struct Rx {
    ssrc_base: u32,
    class_of: Vec<usize>,
    /// Jitter of each stream.
    stats: Vec<ReceiverStats>,
    arrivals: Vec<Arrivals>,
    srtp_dups: Vec<u64>,
    ctx: Option<SrtpContext>,
    /// One context per stream (ng: the relay keys each call separately).
    per_stream: Vec<Option<SrtpContext>>,
    class_latency: Vec<Histogram<u64>>,
    latency: Histogram<u64>,
    interval: Histogram<u64>,
    seconds: Vec<Second>,
    batch: MmsgBatch,
    bufs: Vec<[u8; 2048]>,
    got: Vec<Received>,
    rejected: u64,
    /// Distinct packets received, all streams.
    distinct_total: u64,
    last_sent: u64,
    last_received: u64,
    next_tick: u64,
}

impl Rx {
    fn new(cfg: &LoadConfig, key: Option<SrtpConfig>) -> Self {
        let mut class_of = Vec::with_capacity(cfg.streams());
        let mut stats = Vec::with_capacity(cfg.streams());
        for (ci, c) in cfg.classes.iter().enumerate() {
            for _ in 0..c.streams {
                let ssrc = cfg.ssrc_base + class_of.len() as u32;
                class_of.push(ci);
                stats.push(ReceiverStats::with_tracker(
                    ssrc,
                    c.clock_rate,
                    rtp_core::seq::SeqTracker::with_probation(0),
                ));
            }
        }
        Rx {
            ssrc_base: cfg.ssrc_base,
            srtp_dups: vec![0; stats.len()],
            arrivals: vec![Arrivals::default(); stats.len()],
            class_of,
            stats,
            ctx: key.map(|k| SrtpContext::new(k).expect("valid key")),
            per_stream: Vec::new(),
            class_latency: cfg.classes.iter().map(|_| histogram()).collect(),
            latency: histogram(),
            interval: histogram(),
            seconds: Vec::new(),
            batch: MmsgBatch::new(BATCH),
            bufs: vec![[0u8; 2048]; BATCH],
            got: Vec::with_capacity(BATCH),
            rejected: 0,
            distinct_total: 0,
            last_sent: 0,
            last_received: 0,
            next_tick: 1,
        }
    }

    /// Reads and accounts one batch; returns how many datagrams it read.
    /// `sent` is how many packets each stream has sent so far.
    fn drain(&mut self, sock: &UdpSocket, epoch: Instant, sent: &[u64]) -> usize {
        let slots: [RecvSlot; BATCH] = std::array::from_fn(|i| RecvSlot {
            ptr: self.bufs[i].as_mut_ptr(),
            cap: 2048,
        });
        self.got.clear();
        let n = self
            .batch
            .recv(sock.as_raw_fd(), &slots, &mut self.got)
            .unwrap_or(0);
        if n == 0 {
            return 0;
        }
        let now = epoch.elapsed();
        let now_ns = now.as_nanos() as u64;
        let streams = self.stats.len();
        for i in 0..n {
            let r = self.got[i];
            let pkt = &mut self.bufs[i][..r.len.min(2048)];
            let ctx = if self.per_stream.is_empty() || pkt.len() < 12 {
                self.ctx.as_mut()
            } else {
                let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                self.per_stream
                    .get_mut(ssrc.wrapping_sub(self.ssrc_base) as usize)
                    .and_then(Option::as_mut)
            };
            let len = match ctx {
                Some(c) => match c.unprotect_rtp(pkt) {
                    Ok(u) => u.len,
                    Err(rtp_core::srtp::SrtpError::Replayed) => {
                        // A copy of a packet we already have: a duplicate (the
                        // SSRC is in clear).
                        let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
                        match self
                            .srtp_dups
                            .get_mut(ssrc.wrapping_sub(self.ssrc_base) as usize)
                        {
                            Some(d) => *d += 1,
                            None => self.rejected += 1,
                        }
                        continue;
                    }
                    Err(_) => {
                        self.rejected += 1;
                        continue;
                    }
                },
                None => pkt.len(),
            };
            let pkt = &pkt[..len];
            let (Some((sent_ns, low)), true) = (stamps(pkt), pkt.len() >= 12) else {
                self.rejected += 1;
                continue;
            };
            let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
            let idx = ssrc.wrapping_sub(self.ssrc_base) as usize;
            if idx >= streams {
                self.rejected += 1;
                continue;
            }
            let Some(k) = packet_index(low, sent[idx]) else {
                self.rejected += 1;
                continue;
            };
            if self.arrivals[idx].on_packet(k) == Arrival::Duplicate {
                continue;
            }
            self.distinct_total += 1;
            let lat = now_ns.saturating_sub(sent_ns).max(1);
            let _ = self.latency.record(lat);
            let _ = self.class_latency[self.class_of[idx]].record(lat);
            let _ = self.interval.record(lat);
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
            self.stats[idx].on_rtp(seq, ts, now);
        }
        n
    }

    /// Once a second: the per-second series and the progress line.
    fn tick(&mut self, now: Duration, sent_total: u64, progress: bool) {
        if now < Duration::from_secs(self.next_tick) {
            return;
        }
        let i = &self.interval;
        // A second without arrivals has no latency (not 0 µs).
        let q = |v: u64| (!i.is_empty()).then(|| v as f64 / 1e3);
        let s = Second {
            t: self.next_tick,
            sent: sent_total - self.last_sent,
            received: self.distinct_total - self.last_received,
            p50_us: q(i.value_at_quantile(0.5)),
            p99_us: q(i.value_at_quantile(0.99)),
            max_us: q(i.max()),
        };
        if progress && s.sent > 0 {
            let loss = if sent_total > 0 {
                100.0 * (1.0 - self.distinct_total as f64 / sent_total as f64).max(0.0)
            } else {
                0.0
            };
            let us = |v: Option<f64>| v.map_or_else(|| "-".into(), |v| format!("{v:.1}"));
            println!(
                "[{:>4}s] offered {:>8} pkt/s  received {:>8} pkt/s  loss {:>6.3}%  p50 {:>8} us  p99 {:>8} us",
                s.t,
                s.sent,
                s.received,
                loss,
                us(s.p50_us),
                us(s.p99_us)
            );
        }
        if s.sent > 0 || s.received > 0 {
            self.seconds.push(s);
        }
        self.last_sent = sent_total;
        self.last_received = self.distinct_total;
        self.interval.reset();
        self.next_tick += 1;
    }

    fn finish(self) -> RxOutcome {
        let streams = self
            .stats
            .iter()
            .zip(&self.arrivals)
            .zip(&self.srtp_dups)
            .map(|((s, a), &srtp_dup)| StreamResult {
                sent: 0,
                received: a.distinct,
                duplicates: a.duplicates + srtp_dup,
                reordered: a.late,
                jitter_ms: s.jitter().jitter() / f64::from(s.clock_rate()) * 1e3,
            })
            .collect();
        RxOutcome {
            streams,
            class_latency: self.class_latency,
            latency: self.latency,
            seconds: self.seconds,
            rejected: self.rejected,
        }
    }
}

/// One thread sends on schedule and receives in between (a machine with few
/// cores has no spare one for a separate receiver, and a descheduled receiver
/// would add scheduler latency to every figure). It waits in `ppoll` for the
/// receive socket with a deadline at the next send, with a 1 ns timer slack.
/// After the last send it drains until every sent packet arrived or
/// [`drain_time`] passed.
fn load_loop(
    cfg: &LoadConfig,
    tx_sock: &UdpSocket,
    rx_sock: &UdpSocket,
    dests: &[SocketAddr],
    tx: &mut Tx,
    rx: &mut Rx,
) {
    use rtp_control::dataplane::sys::{set_timer_slack_ns, wait_readable};
    set_timer_slack_ns(1);
    if let Some(c) = cfg.load_core {
        core_affinity::set_for_current(core_affinity::CoreId { id: c });
    }
    let epoch = Instant::now();
    let mut drain_from: Option<Instant> = None;
    loop {
        let now = epoch.elapsed().as_nanos() as u64;
        if tx.release.sending() {
            tx.send_due(cfg, tx_sock, dests, epoch, now);
        } else if drain_from.is_none() {
            tx.elapsed = epoch.elapsed();
            drain_from = Some(Instant::now());
        }
        while rx.drain(rx_sock, epoch, &tx.sent) > 0 {}
        rx.tick(epoch.elapsed(), tx.sent_total, cfg.progress);
        if let Some(t0) = drain_from {
            let wait = drain_time(cfg.drain, Duration::from_nanos(rx.latency.max()));
            if rx.distinct_total >= tx.sent_total || t0.elapsed() >= wait {
                break;
            }
        }
        // Wait for a datagram, at most until the next send (5 ms at most).
        let now = epoch.elapsed().as_nanos() as u64;
        let wait = tx.release.wait_ns(now).unwrap_or(u64::MAX).min(5_000_000);
        if wait > 0 {
            if cfg.busy_poll {
                std::hint::spin_loop();
            } else {
                wait_readable(rx_sock.as_raw_fd(), Duration::from_nanos(wait));
            }
        }
    }
}
