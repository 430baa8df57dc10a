//! `rtp-load`: paced RTP/SRTP streams, received back from a relay or reflector,
//! with per-packet one-way latency (a send timestamp in an RFC 8285 header
//! extension), loss, duplicates, reordering and jitter per stream, HdrHistograms
//! per class and in total, a live progress line, a report table, JSON, `.hgrm`
//! files and plots.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rtp_control::dataplane::ports::udp_socket;
use rtp_control::dataplane::sys::{MmsgBatch, Received, RecvSlot, SendMsg};
use rtp_control::dataplane::{BackendChoice, IdlePolicy, LatchMode, LegSrtp};
use rtp_control::{Engine, LegConfig};
use rtp_core::srtp::sdes::CryptoAttribute;
use rtp_core::srtp::{SrtpConfig, SrtpContext, SrtpProfile};

use crate::gateway::client::NgClient;
use rtp_core::stats::ReceiverStats;

pub mod reflect;
pub mod report;
pub mod schedule;

pub use schedule::{Pacer, StreamClass};

/// RFC 8285 one-byte extension id carrying the send time (u64 ns, big-endian).
pub const TIMESTAMP_EXT_ID: u8 = 1;
/// Bytes of RTP header we write: 12 fixed + 4 extension header + 12 extension body.
pub const HEADER_LEN: usize = 28;
const BATCH: usize = 64;

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
    /// How long to wait for stragglers after the last send.
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
    /// Latency percentiles of this second (µs).
    pub p50_us: f64,
    /// 99th percentile (µs).
    pub p99_us: f64,
    /// Maximum (µs).
    pub max_us: f64,
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

/// Runs the load; blocks for its duration.
pub fn run(cfg: LoadConfig) -> Result<LoadResult, String> {
    cfg.check()?;
    let streams = cfg.streams();
    let seed = Instant::now().elapsed().as_nanos() as u64 ^ u64::from(std::process::id());
    // Keys: what we send with, and what we receive with.
    let (tx_key, rx_key) = match cfg.srtp {
        Some(p) => (Some(master(p, seed)), Some(master(p, seed ^ 0xA5A5))),
        None => (None, None),
    };
    let buf = Some(8 << 20);
    let local_ip = match &cfg.target {
        Target::Reflector(a) if a.is_ipv6() => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
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
                format!("relay at ng {server} ({streams} calls; latency is one way through it)"),
            )
        }
        Target::Reflector(addr) => {
            let rx = tx_sock.try_clone().map_err(|e| e.to_string())?;
            // A reflector echoes our own packets: receive with the sending key.
            (
                rx,
                vec![*addr; streams],
                None,
                format!("reflector {addr} (latency is the round trip)"),
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

/// Writes a packet into `buf`; returns the plain length.
fn build(
    buf: &mut [u8],
    class: &StreamClass,
    ssrc: u32,
    seq: u16,
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
    buf[25..28].fill(0);
    let end = HEADER_LEN + class.payload;
    for (i, b) in buf[HEADER_LEN..end].iter_mut().enumerate() {
        *b = (i as u8) ^ (seq as u8);
    }
    end
}

/// The sending half: pacer, SRTP, batched sendmmsg.
struct Tx {
    pacer: Pacer,
    ctx: Option<SrtpContext>,
    batch: MmsgBatch,
    bufs: Vec<[u8; 1500]>,
    msgs: Vec<SendMsg>,
    sent: Vec<u64>,
    sent_total: u64,
    lateness: Histogram<u64>,
    errors: u64,
    elapsed: Duration,
}

impl Tx {
    fn new(cfg: &LoadConfig, ctx: Option<SrtpContext>) -> Self {
        Tx {
            pacer: Pacer::new(&cfg.classes),
            ctx,
            batch: MmsgBatch::new(BATCH),
            bufs: vec![[0u8; 1500]; BATCH],
            msgs: Vec::with_capacity(BATCH),
            sent: vec![0; cfg.streams()],
            sent_total: 0,
            lateness: histogram(),
            errors: 0,
            elapsed: Duration::ZERO,
        }
    }

    /// Sends one batch of what is due at `now` (and before `end`); returns how
    /// many packets went out.
    fn send_due(
        &mut self,
        cfg: &LoadConfig,
        sock: &UdpSocket,
        dests: &[SocketAddr],
        epoch: Instant,
        now: u64,
        end: u64,
    ) -> usize {
        self.msgs.clear();
        while self.msgs.len() < BATCH
            && self.pacer.next_due_ns() <= now
            && self.pacer.next_due_ns() < end
        {
            let d = self.pacer.take();
            if !d.talking {
                continue;
            }
            let _ = self.lateness.record((now - d.at_ns).max(1));
            let class = &cfg.classes[d.class];
            let s = d.stream;
            let seq = cfg.seq_start.wrapping_add(self.sent[s] as u16);
            let i = self.msgs.len();
            let ts_ns = epoch.elapsed().as_nanos() as u64;
            let buf = &mut self.bufs[i];
            let mut len = build(
                buf,
                class,
                cfg.ssrc_base + s as u32,
                seq,
                d.k,
                d.spurt_start,
                ts_ns,
            );
            if let Some(c) = self.ctx.as_mut() {
                match c.protect_rtp(buf, len) {
                    Ok(n) => len = n,
                    Err(_) => {
                        self.errors += 1;
                        continue;
                    }
                }
            }
            self.batch.set_iov(i, buf.as_ptr(), len);
            self.msgs.push(SendMsg {
                dst: dests[s],
                first_iov: i,
                iov_count: 1,
                segment: 0,
            });
            self.sent[s] += 1; // sequence numbers advance even if the send fails
        }
        let n = self.msgs.len();
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

/// Reads the send time from our header extension.
fn send_time(pkt: &[u8]) -> Option<u64> {
    let p = rtp_core::RtpPacket::new_checked(pkt).ok()?;
    let v = p.extension(TIMESTAMP_EXT_ID)?;
    Some(u64::from_be_bytes(v.try_into().ok()?))
}

/// The receiving half: recvmmsg, SRTP, per-stream statistics, histograms.
struct Rx {
    ssrc_base: u32,
    class_of: Vec<usize>,
    stats: Vec<ReceiverStats>,
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
    received_total: u64,
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
            received_total: 0,
            last_sent: 0,
            last_received: 0,
            next_tick: 1,
        }
    }

    /// Reads and accounts one batch; returns how many datagrams it read.
    fn drain(&mut self, sock: &UdpSocket, epoch: Instant) -> usize {
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
            let (Some(sent_ns), true) = (send_time(pkt), pkt.len() >= 12) else {
                self.rejected += 1;
                continue;
            };
            let ssrc = u32::from_be_bytes([pkt[8], pkt[9], pkt[10], pkt[11]]);
            let idx = ssrc.wrapping_sub(self.ssrc_base) as usize;
            if idx >= streams {
                self.rejected += 1;
                continue;
            }
            let lat = now_ns.saturating_sub(sent_ns).max(1);
            let _ = self.latency.record(lat);
            let _ = self.class_latency[self.class_of[idx]].record(lat);
            let _ = self.interval.record(lat);
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            let ts = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
            self.stats[idx].on_rtp(seq, ts, now);
            self.received_total += 1;
        }
        n
    }

    /// Once a second: the per-second series and the progress line.
    fn tick(&mut self, now: Duration, sent_total: u64, progress: bool) {
        if now < Duration::from_secs(self.next_tick) {
            return;
        }
        let i = &self.interval;
        let s = Second {
            t: self.next_tick,
            sent: sent_total - self.last_sent,
            received: self.received_total - self.last_received,
            p50_us: i.value_at_quantile(0.5) as f64 / 1e3,
            p99_us: i.value_at_quantile(0.99) as f64 / 1e3,
            max_us: i.max() as f64 / 1e3,
        };
        if progress && s.sent > 0 {
            let loss = if sent_total > 0 {
                100.0 * (1.0 - self.received_total as f64 / sent_total as f64).max(0.0)
            } else {
                0.0
            };
            println!(
                "[{:>4}s] offered {:>8} pkt/s  received {:>8} pkt/s  loss {:>6.3}%  p50 {:>8.1} us  p99 {:>8.1} us",
                s.t, s.sent, s.received, loss, s.p50_us, s.p99_us
            );
        }
        if s.sent > 0 || s.received > 0 {
            self.seconds.push(s);
        }
        self.last_sent = sent_total;
        self.last_received = self.received_total;
        self.interval.reset();
        self.next_tick += 1;
    }

    fn finish(self) -> RxOutcome {
        let streams = self
            .stats
            .iter()
            .zip(&self.srtp_dups)
            .map(|(s, &srtp_dup)| {
                let t = s.seq();
                StreamResult {
                    sent: 0,
                    received: t.received().saturating_sub(t.duplicates()),
                    duplicates: t.duplicates() + srtp_dup,
                    reordered: t.out_of_order(),
                    jitter_ms: s.jitter().jitter() / f64::from(s.clock_rate()) * 1e3,
                }
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
    let end = cfg.duration.as_nanos() as u64;
    let mut drain_until: Option<Instant> = None;
    loop {
        let now = epoch.elapsed().as_nanos() as u64;
        let sending = tx.pacer.next_due_ns() < end;
        if sending {
            // Whatever was due before the end and is still unsent goes now, so
            // every run sends its exact count.
            tx.send_due(cfg, tx_sock, dests, epoch, now.min(end - 1), end);
        } else if drain_until.is_none() {
            tx.elapsed = epoch.elapsed();
            drain_until = Some(Instant::now() + cfg.drain);
        }
        while rx.drain(rx_sock, epoch) > 0 {}
        rx.tick(epoch.elapsed(), tx.sent_total, cfg.progress);
        if let Some(d) = drain_until {
            if rx.received_total >= tx.sent_total || Instant::now() >= d {
                break;
            }
        }
        // Wait for a datagram, at most until the next send.
        let now = epoch.elapsed().as_nanos() as u64;
        let next = if sending {
            tx.pacer.next_due_ns().min(end)
        } else {
            now + 5_000_000
        };
        if next > now {
            if cfg.busy_poll {
                std::hint::spin_loop();
            } else {
                wait_readable(
                    rx_sock.as_raw_fd(),
                    Duration::from_nanos((next - now).min(5_000_000)),
                );
            }
        }
    }
}
