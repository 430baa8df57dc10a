//! `Engine`: the embedding API. A builder-configured engine starts the dataplane
//! workers and one control thread; calls are created, updated, queried and
//! deleted through a typed API, and an event stream reports what happens to them.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtp_core::demux::PacketKind;
use rtp_core::srtp::SrtpProfile;
use rtp_dataplane::ports::PortAllocator;

use crate::reporting::{LegRtcpStats, Outgoing, Reporting, RtcpConfig, RtcpMode, RtcpWorkerStats};
use crate::rtcp::{QualityAlert, QualityThresholds};
use rtp_dataplane::{
    BackendChoice, BackendKind, Command, Dataplane, DataplaneConfig, DropReason, Event, IdlePolicy,
    LatchMode, LegSnapshot, LegSpec, LegSrtp, LegUpdate, LocalBinding, Rewrite, SessionSnapshot,
    SessionSpec, WorkerCounters,
};

use crate::dtls::{Certificate, CipherSuite, DtlsConfig, Fingerprint};
use crate::dtls_legs::{DtlsCounters, DtlsLegParams, DtlsLegs, Outcome};
use crate::ice::{AnswerBudget, IceCounters, IceLegParams, IceLite};

/// A call, as the engine names it.
pub type CallId = u64;

/// Engine configuration (see [`EngineBuilder`] for the defaults).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Address media ports are bound on.
    pub bind_ip: IpAddr,
    /// Address advertised to peers (in SDP); defaults to `bind_ip`.
    pub advertise_ip: Option<IpAddr>,
    /// First media port.
    pub port_min: u16,
    /// Last media port.
    pub port_max: u16,
    /// Dataplane settings (workers, cores, backend, idle policy, batch, pool).
    pub dataplane: DataplaneConfig,
    /// Most calls at once; more are refused with [`EngineError::Limit`].
    pub max_calls: usize,
    /// A call that relays no packet for this long is deleted
    /// ([`EngineEvent::MediaTimeout`]); `None` keeps silent calls.
    pub media_timeout: Option<Duration>,
    /// SRTP authentication/replay failures on a leg, per check interval, above
    /// which an [`EngineEvent::SrtpFailures`] is raised.
    pub srtp_failure_threshold: u64,
    /// How often call statistics are collected (media timeout, SRTP failures).
    pub check_interval: Duration,
    /// SO_RCVBUF/SO_SNDBUF of media sockets.
    pub socket_buffer: Option<usize>,
    /// Nice value of the control thread (DTLS handshakes, RTCP, signalling);
    /// e.g. 10 lets workers that share its cores preempt it. `None`: inherited.
    pub control_nice: Option<i32>,
    /// Core the control thread is pinned to (keep it off the workers' cores when
    /// there are cores to spare). `None`: not pinned.
    pub control_core: Option<usize>,
    /// Run the control thread in the SCHED_IDLE class: only on CPU time the
    /// workers leave idle, preempted at once when a worker wakes. Protects the
    /// workers' latency from handshake storms where cores are shared; handshakes
    /// and signalling then wait for idle time, so do not combine it with
    /// busy-polling workers on every core (there is none).
    pub control_sched_idle: bool,
    /// DTLS settings of DTLS-SRTP legs (MTU, timeouts, suites, SRTP profiles).
    pub dtls: DtlsConfig,
    /// Certificate and private key (PEM) of DTLS-SRTP legs; `None` generates a
    /// self-signed ECDSA P-256 certificate at start.
    pub dtls_certificate: Option<(String, String)>,
    /// Thresholds of the quality alarms ([`EngineEvent::Quality`]).
    pub quality_thresholds: QualityThresholds,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            bind_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            advertise_ip: None,
            port_min: 30000,
            port_max: 39999,
            dataplane: DataplaneConfig::default(),
            max_calls: 10_000,
            media_timeout: Some(Duration::from_secs(60)),
            srtp_failure_threshold: 100,
            check_interval: Duration::from_secs(1),
            socket_buffer: Some(1 << 20),
            control_nice: None,
            control_core: None,
            control_sched_idle: false,
            dtls: DtlsConfig::default(),
            dtls_certificate: None,
            quality_thresholds: QualityThresholds::default(),
        }
    }
}

impl EngineConfig {
    /// Checks the configuration; the error says what to change.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |s: String| Err(EngineError::Config(s));
        if self.port_min == 0 || self.port_max < self.port_min {
            return bad(format!(
                "port range {}-{}: port_min must be at least 1 and not above port_max",
                self.port_min, self.port_max
            ));
        }
        if self.max_calls == 0 {
            return bad("max_calls must be at least 1".into());
        }
        if self.check_interval.is_zero() {
            return bad("check_interval must be above zero".into());
        }
        if let Some(a) = self.advertise_ip {
            if a.is_ipv4() != self.bind_ip.is_ipv4() {
                return bad(format!(
                    "advertise_ip {a} and bind_ip {} must be the same address family",
                    self.bind_ip
                ));
            }
        }
        if let Some(c) = self.control_core {
            let n = rtp_dataplane::sys::online_cpus();
            if c >= n {
                return bad(format!(
                    "control_core {c} does not exist: this machine has cores 0-{}",
                    n.saturating_sub(1)
                ));
            }
        }
        if let Some(n) = self.control_nice {
            if !(-20..=19).contains(&n) {
                return bad(format!("control_nice {n} must be within -20..=19"));
            }
        }
        if self.dtls.mtu < 256 {
            return bad(format!(
                "dtls.mtu {} is too small: at least 256 bytes",
                self.dtls.mtu
            ));
        }
        self.dtls
            .validate()
            .map_err(|e| EngineError::Config(format!("dtls: {e}")))?;
        if !self.dtls.require_client_certificate {
            return bad(
                "dtls.require_client_certificate must stay on: DTLS-SRTP legs \
                 check the peer's certificate against its signalled fingerprint"
                    .into(),
            );
        }
        self.dataplane
            .validate()
            .map_err(|e| EngineError::Config(format!("dataplane: {e}")))
    }

    /// The DTLS certificate: loaded from the configured PEM or generated.
    fn certificate(&self) -> Result<Certificate, EngineError> {
        match &self.dtls_certificate {
            Some((cert, key)) => Certificate::from_pem(cert, key).map_err(|e| {
                EngineError::Config(format!("dtls_certificate: cannot load the PEM: {e}"))
            }),
            None => Certificate::generate()
                .map_err(|e| EngineError::Config(format!("cannot generate a certificate: {e}"))),
        }
    }
}

/// Builds an [`Engine`].
#[derive(Debug, Clone, Default)]
pub struct EngineBuilder {
    cfg: EngineConfig,
}

impl EngineBuilder {
    /// Media ports on `ip` (advertised as `ip` unless [`advertise`](Self::advertise)).
    pub fn bind_ip(mut self, ip: IpAddr) -> Self {
        self.cfg.bind_ip = ip;
        self
    }
    /// The address written into SDP.
    pub fn advertise(mut self, ip: IpAddr) -> Self {
        self.cfg.advertise_ip = Some(ip);
        self
    }
    /// Media port range.
    pub fn ports(mut self, min: u16, max: u16) -> Self {
        self.cfg.port_min = min;
        self.cfg.port_max = max;
        self
    }
    /// Number of workers and the cores they are pinned to (empty: not pinned).
    pub fn workers(mut self, n: usize, cores: Vec<usize>) -> Self {
        self.cfg.dataplane.workers = n;
        self.cfg.dataplane.cores = cores;
        self
    }
    /// I/O backend.
    pub fn backend(mut self, b: BackendChoice) -> Self {
        self.cfg.dataplane.backend = b;
        self
    }
    /// Idle policy of the workers.
    pub fn idle(mut self, i: IdlePolicy) -> Self {
        self.cfg.dataplane.idle = i;
        self
    }
    /// Compact SRTP session keys in the workers (see
    /// [`rtp_core::srtp::SrtpConfig::with_compact_keys`]): about 2.8 KB less per
    /// SRTP -> SRTP call, for some tens of nanoseconds per packet.
    pub fn compact_srtp_keys(mut self, on: bool) -> Self {
        self.cfg.dataplane.compact_srtp_keys = on;
        self
    }
    /// Receive batch size.
    pub fn batch(mut self, n: usize) -> Self {
        self.cfg.dataplane.batch = n;
        self
    }
    /// Frames per worker pool.
    pub fn pool_frames(mut self, n: usize) -> Self {
        self.cfg.dataplane.pool_frames = n;
        self
    }
    /// Most calls at once.
    pub fn max_calls(mut self, n: usize) -> Self {
        self.cfg.max_calls = n;
        self
    }
    /// Media timeout (`None`: never).
    pub fn media_timeout(mut self, t: Option<Duration>) -> Self {
        self.cfg.media_timeout = t;
        self
    }
    /// Statistics collection interval.
    pub fn check_interval(mut self, t: Duration) -> Self {
        self.cfg.check_interval = t;
        self
    }
    /// SRTP failures per interval that raise an event.
    pub fn srtp_failure_threshold(mut self, n: u64) -> Self {
        self.cfg.srtp_failure_threshold = n;
        self
    }
    /// The whole configuration.
    pub fn config(mut self, cfg: EngineConfig) -> Self {
        self.cfg = cfg;
        self
    }
    /// Pins the control thread to a core (see [`EngineConfig::control_core`]).
    pub fn control_core(mut self, c: usize) -> Self {
        self.cfg.control_core = Some(c);
        self
    }

    /// Nice value of the control thread (see [`EngineConfig::control_nice`]).
    pub fn control_nice(mut self, n: i32) -> Self {
        self.cfg.control_nice = Some(n);
        self
    }

    /// DTLS settings of DTLS-SRTP legs.
    pub fn dtls(mut self, d: DtlsConfig) -> Self {
        self.cfg.dtls = d;
        self
    }

    /// The DTLS certificate and key (PEM) instead of a generated one.
    pub fn dtls_certificate(mut self, cert_pem: String, key_pem: String) -> Self {
        self.cfg.dtls_certificate = Some((cert_pem, key_pem));
        self
    }

    /// Validates and starts.
    pub fn start(self) -> Result<Engine, EngineError> {
        Engine::start(self.cfg)
    }
}

/// One leg of a call.
#[derive(Debug, Clone)]
pub struct LegConfig {
    /// Remote RTP address if known (from SDP); learned from the first packet otherwise.
    pub remote: Option<SocketAddr>,
    /// Remote RTCP address if signalled separately.
    pub remote_rtcp: Option<SocketAddr>,
    /// One port for RTP and RTCP (rtcp-mux) or an RTP/RTCP port pair.
    pub rtcp_mux: bool,
    /// SDES keys (`None`: plain RTP on this leg).
    pub srtp: Option<LegSrtp>,
    /// Address learning. Ignored on a leg with [`ice`](Self::ice), which
    /// starts in [`LatchMode::Nominated`]: its remote addresses are only the
    /// signalled ones and those the peer nominates, never learned from a
    /// packet (switch it with [`Engine::update_leg`] and `latch: Some(Learn
    /// {..})` when the peer turns out not to do ICE, and back with `latch:
    /// Some(LatchMode::Nominated)` when it does ICE after all).
    pub latch: LatchMode,
    /// Rewriting of what is sent on this leg.
    pub rewrite: Rewrite,
    /// RTP clock rate of what this leg receives.
    pub clock_rate: u32,
    /// DTLS-SRTP on this leg (`srtp` must then be `None`): the keys come from a
    /// handshake the engine runs; until then nothing is relayed to or from it.
    pub dtls: Option<DtlsLegParams>,
    /// RTCP handling and reporting (a call terminates RTCP when either leg asks).
    pub rtcp: RtcpConfig,
    /// ICE-lite on this leg ([`crate::ice`]): the engine answers the peer's
    /// STUN connectivity checks on the leg's ports with these credentials and
    /// sends media to the address the peer nominates (USE-CANDIDATE), which
    /// replaces `remote` (or `remote_rtcp` for component 2, the RTCP port of a
    /// leg without rtcp-mux) and starts a DTLS client leg's handshake. Host
    /// candidates only (the leg's own address and ports); no checks or consent
    /// requests are sent, no TURN. Leave `remote` unset when the peer's address
    /// is only known from its candidates. The leg is created in
    /// [`LatchMode::Nominated`] (whatever `latch` says): RTP and RTCP from any
    /// address but the signalled or nominated one are dropped (`wrong_source`),
    /// before the first nomination too, so a packet from elsewhere cannot
    /// take the media. `None`: STUN on the leg is counted and dropped
    /// ([`EngineStats::ice`]) until [`Engine::set_ice`] turns ICE-lite on for
    /// the leg (a re-offer that adds ICE), which makes it an ICE leg as if it
    /// had been created with these credentials.
    pub ice: Option<IceLegParams>,
}

impl Default for LegConfig {
    fn default() -> Self {
        LegConfig {
            remote: None,
            remote_rtcp: None,
            rtcp_mux: true,
            srtp: None,
            latch: LatchMode::default(),
            rewrite: Rewrite::default(),
            clock_rate: 8000,
            dtls: None,
            rtcp: RtcpConfig::default(),
            ice: None,
        }
    }
}

/// Where a leg's media goes: what to put in SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegInfo {
    /// Bound RTP address.
    pub local: SocketAddr,
    /// Advertised RTP address.
    pub advertised: SocketAddr,
    /// Bound RTCP address when not muxed.
    pub local_rtcp: Option<SocketAddr>,
}

/// A created call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallInfo {
    /// Id.
    pub id: CallId,
    /// Worker that owns it.
    pub worker: usize,
    /// Both legs.
    pub legs: [LegInfo; 2],
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Deleted through the API.
    Deleted,
    /// No media for the configured timeout.
    MediaTimeout,
    /// The engine shut down.
    Shutdown,
    /// A DTLS-SRTP handshake failed (timeout, fingerprint mismatch, alert).
    DtlsFailed,
}

/// What the engine reports.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// A leg's remote address was learned or changed.
    Latched {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// RTCP port rather than RTP.
        rtcp: bool,
        /// New remote.
        addr: SocketAddr,
    },
    /// The ICE peer of a leg nominated a candidate pair (USE-CANDIDATE): media
    /// to it now goes to `addr`.
    IceNominated {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// RTCP component (2) rather than RTP (1).
        rtcp: bool,
        /// The peer's address of the nominated pair.
        addr: SocketAddr,
    },
    /// A call was silent for the media timeout and is being deleted.
    MediaTimeout {
        /// Call.
        call: CallId,
    },
    /// SRTP failures on a leg above the threshold within one check interval.
    SrtpFailures {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// Authentication failures in the interval.
        auth: u64,
        /// Replays in the interval.
        replay: u64,
    },
    /// A DTLS-SRTP handshake completed and its keys are being installed.
    DtlsConnected {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// Negotiated SRTP profile.
        profile: SrtpProfile,
        /// Negotiated DTLS cipher suite.
        cipher: CipherSuite,
        /// Fingerprint of the peer's certificate.
        peer_fingerprint: Fingerprint,
    },
    /// One DTLS-SRTP handshake attempt on a leg failed (fingerprint mismatch,
    /// alert, decode error, timeout): no keys were installed; the leg accepts
    /// another attempt until its deadline (`dtls.handshake_timeout`).
    DtlsAttemptFailed {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// The address the attempt ran with.
        from: Option<SocketAddr>,
        /// What went wrong.
        reason: String,
    },
    /// A DTLS-SRTP leg did not connect by its deadline (or its keys could not be
    /// installed): the call is closed ([`CloseReason::DtlsFailed`]); `reason` is
    /// the last attempt's error.
    DtlsFailed {
        /// Call.
        call: CallId,
        /// Leg.
        leg: usize,
        /// What went wrong.
        reason: String,
    },
    /// A quality alarm on a leg was raised or cleared (loss or jitter above, MOS
    /// below the configured thresholds, with hysteresis).
    Quality {
        /// Call.
        call: CallId,
        /// Leg (what this leg receives).
        leg: usize,
        /// The alarm.
        alert: QualityAlert,
    },
    /// A call ended; its final numbers.
    CallClosed {
        /// Call.
        call: CallId,
        /// Why.
        reason: CloseReason,
        /// Final statistics.
        stats: Box<SessionSnapshot>,
    },
    /// Something went wrong.
    Error {
        /// Call, when it concerns one.
        call: Option<CallId>,
        /// What.
        message: String,
    },
}

/// Engine errors.
#[derive(Debug)]
pub enum EngineError {
    /// Bad configuration.
    Config(String),
    /// A limit (max calls, ports) was reached.
    Limit(String),
    /// No call with this id.
    NoSuchCall(CallId),
    /// The dataplane refused or failed.
    Dataplane(String),
    /// A worker did not answer in time.
    Timeout,
    /// The engine has stopped.
    Stopped,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineError::Config(s) => write!(f, "configuration: {s}"),
            EngineError::Limit(s) => write!(f, "limit reached: {s}"),
            EngineError::NoSuchCall(id) => write!(f, "no call {id}"),
            EngineError::Dataplane(s) => write!(f, "dataplane: {s}"),
            EngineError::Timeout => write!(f, "the dataplane did not answer in time"),
            EngineError::Stopped => write!(f, "the engine has stopped"),
        }
    }
}

impl std::error::Error for EngineError {}

/// Statistics of the whole engine.
#[derive(Debug, Clone)]
pub struct EngineStats {
    /// Calls now.
    pub calls: usize,
    /// Ports in use.
    pub ports_in_use: usize,
    /// Per-worker counters.
    pub workers: Vec<WorkerCounters>,
    /// Backend in use.
    pub backend: BackendKind,
    /// DTLS handshakes.
    pub dtls: DtlsCounters,
    /// RTCP counters and call-quality aggregates per worker.
    pub rtcp: Vec<RtcpWorkerStats>,
    /// Commands that found their worker's command ring full and waited in the
    /// control thread for room (delayed, not lost).
    pub commands_held: u64,
    /// ICE-lite: checks answered, nominations, drops per reason (since start).
    pub ice: IceCounters,
}

type Reply<T> = Sender<Result<T, EngineError>>;

enum Request {
    Create(Box<[LegConfig; 2]>, Reply<CallInfo>),
    Update(CallId, usize, Box<LegUpdate>, Reply<()>),
    SetDtls(CallId, usize, DtlsLegParams, Reply<()>),
    SetIce(CallId, usize, IceLegParams, Reply<()>),
    Query(CallId, Reply<SessionSnapshot>),
    Delete(CallId, Reply<SessionSnapshot>),
    List(Reply<Vec<CallId>>),
    Stats(Reply<EngineStats>),
    Rtcp(CallId, Reply<[LegRtcpStats; 2]>),
}

/// The running engine. Cheap to share by reference across threads.
#[derive(Debug)]
pub struct Engine {
    requests: Sender<Request>,
    events: std::sync::Mutex<Receiver<EngineEvent>>,
    thread: Option<JoinHandle<()>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    backend: BackendKind,
    backend_note: Option<String>,
    control_notes: Vec<String>,
    fingerprint: Fingerprint,
}

/// Where and how the control plane's threads run: the engine's control thread,
/// and any threads of the embedding program that belong to the control plane
/// (signalling servers, event consumers), which should stay off the workers'
/// cores and out of their way just the same. See [`EngineConfig::control_core`],
/// [`EngineConfig::control_nice`] and [`EngineConfig::control_sched_idle`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlPlacement {
    /// Core to pin to.
    pub core: Option<usize>,
    /// Nice value.
    pub nice: Option<i32>,
    /// SCHED_IDLE class.
    pub sched_idle: bool,
    /// Without a `core`: cores to keep off (bit i = core i), the workers'
    /// cores by default, so that control-plane work (a sweep of every call's
    /// statistics, a DTLS handshake) never preempts a worker. Ignored when it
    /// would leave no core.
    pub avoid: u64,
}

impl ControlPlacement {
    /// Applies the settings to the calling thread; returns one line per setting
    /// the kernel refused (the thread runs on; the caller decides whether that
    /// matters).
    pub fn apply(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(c) = self.core {
            if !rtp_dataplane::sys::pin_thread(c) {
                notes.push(format!(
                    "control_core {c}: the kernel refused to pin a control-plane thread \
                     there (outside this process's CPU set?); it runs unpinned"
                ));
            }
        }
        if let Some(n) = self.nice {
            if !rtp_dataplane::sys::set_thread_nice(n) {
                notes.push(format!(
                    "control_nice {n}: the kernel refused it (a negative value needs \
                     CAP_SYS_NICE); the control plane keeps the default priority"
                ));
            }
        }
        if self.core.is_none() && self.avoid != 0 {
            let cores: Vec<usize> = (0..64).filter(|c| self.avoid & (1 << c) != 0).collect();
            // On a machine with no core to spare the set stays as it was: that
            // is the deployment's choice (nice / SCHED_IDLE), not an error.
            let _ = rtp_dataplane::sys::avoid_cores(&cores);
        }
        if self.sched_idle && !rtp_dataplane::sys::set_thread_sched_idle() {
            notes.push(
                "control_sched_idle: the kernel refused SCHED_IDLE; the control plane \
                 keeps its scheduling class"
                    .to_owned(),
            );
        }
        notes
    }
}

impl EngineConfig {
    /// The control plane's placement from this configuration.
    pub fn control_placement(&self) -> ControlPlacement {
        ControlPlacement {
            core: self.control_core,
            nice: self.control_nice,
            sched_idle: self.control_sched_idle,
            avoid: self
                .dataplane
                .cores
                .iter()
                .filter(|&&c| c < 64)
                .fold(0, |m, &c| m | 1 << c),
        }
    }
}

const ANSWER: Duration = Duration::from_secs(5);

/// Unauthenticated STUN answers (401) the whole engine sends at once and
/// per second: enough for peers with stale credentials, small next to a
/// worker's command ring, which also carries other calls' keys and removals.
const ICE_ERROR_BURST: u32 = 64;
const ICE_ERROR_RATE: u32 = 100;

/// A periodic statistics sweep in progress.
#[derive(Debug)]
struct Sweep {
    token: u64,
    /// Sessions per slice.
    slice: u32,
    /// Per worker: the slot to ask for next (`None`: done) and whether a slice
    /// is awaited.
    workers: Vec<(Option<u32>, bool)>,
    /// When the last slice was answered (or the sweep started).
    answered: Instant,
}

impl Engine {
    /// A builder with the defaults.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Validates `cfg`, starts the dataplane and the control thread.
    pub fn start(cfg: EngineConfig) -> Result<Self, EngineError> {
        cfg.validate()?;
        let cert = cfg.certificate()?;
        let dtls = DtlsLegs::new(cfg.dtls.clone(), cert);
        let fingerprint = dtls.fingerprint().clone();
        let mut ports = PortAllocator::new(cfg.bind_ip, cfg.port_min, cfg.port_max)
            .map_err(|e| EngineError::Config(e.to_string()))?;
        if let Some(b) = cfg.socket_buffer {
            ports = ports.with_socket_buffer(b);
        }
        let dp = Dataplane::start(cfg.dataplane.clone())
            .map_err(|e| EngineError::Dataplane(e.to_string()))?;
        let backend = dp.backend();
        let backend_note = dp.backend_note().map(str::to_owned);
        let (req_tx, req_rx) = mpsc::channel();
        let (ev_tx, ev_rx) = mpsc::channel();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers = dp.workers().len();
        let cfg_thresholds = cfg.quality_thresholds;
        let control = Control {
            cfg,
            dp: Some(dp),
            ports,
            calls: HashMap::new(),
            next_id: 1,
            load: vec![0; workers],
            events: ev_tx,
            pending: Vec::new(),
            next_token: 1,
            last_check: Instant::now(),
            checking: None,
            dtls,
            outcomes: Vec::new(),
            reporting: Reporting::new(cfg_thresholds),
            outgoing: Vec::new(),
            held: (0..workers).map(|_| VecDeque::new()).collect(),
            commands_held: 0,
            ice: IceCounters::default(),
            ice_budget: AnswerBudget::new(ICE_ERROR_BURST, ICE_ERROR_RATE, Instant::now()),
            own_ports: HashSet::new(),
        };
        let s = stop.clone();
        let placement = control.cfg.control_placement();
        let (notes_tx, notes_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("rtp-control".into())
            .spawn(move || {
                let _ = notes_tx.send(placement.apply());
                control.run(req_rx, s)
            })
            .map_err(|e| EngineError::Dataplane(format!("cannot start the control thread: {e}")))?;
        let control_notes: Vec<String> = notes_rx.recv_timeout(ANSWER).unwrap_or_default();
        Ok(Engine {
            requests: req_tx,
            events: std::sync::Mutex::new(ev_rx),
            thread: Some(thread),
            stop,
            backend,
            backend_note,
            control_notes,
            fingerprint,
        })
    }

    fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, EngineError> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .send(make(tx))
            .map_err(|_| EngineError::Stopped)?;
        match rx.recv_timeout(ANSWER) {
            Ok(r) => r,
            Err(RecvTimeoutError::Timeout) => Err(EngineError::Timeout),
            Err(RecvTimeoutError::Disconnected) => Err(EngineError::Stopped),
        }
    }

    /// The backend the workers use.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Why the backend is not the preferred one, if so.
    pub fn backend_note(&self) -> Option<&str> {
        self.backend_note.as_deref()
    }

    /// Control-thread settings (`control_core`, `control_nice`,
    /// `control_sched_idle`) that the kernel refused, one line each
    /// (rtp-gateway logs them as warnings at start).
    pub fn control_notes(&self) -> &[String] {
        &self.control_notes
    }

    /// Creates a call with two legs: allocates their ports on the least loaded
    /// worker and starts relaying.
    pub fn create_call(&self, legs: [LegConfig; 2]) -> Result<CallInfo, EngineError> {
        self.ask(|r| Request::Create(Box::new(legs), r))
    }

    /// Changes a leg (remote address after an answer or re-offer, keys, latching,
    /// rewriting). An ICE leg switched back to [`LatchMode::Nominated`] from
    /// another mode (its peer does ICE after all) forgets its nominations: the
    /// peer's next nominating check sets the remote address again, also when
    /// it nominates the address it nominated before (address learning may
    /// have moved the remote since).
    pub fn update_leg(
        &self,
        call: CallId,
        leg: usize,
        update: LegUpdate,
    ) -> Result<(), EngineError> {
        self.ask(|r| Request::Update(call, leg, Box::new(update), r))
    }

    /// Sets a DTLS-SRTP leg's role and expected peer fingerprint (an answer
    /// decided `a=setup`, or a re-offer changed them). A client leg starts its
    /// handshake once it has a remote address.
    pub fn set_dtls(
        &self,
        call: CallId,
        leg: usize,
        params: DtlsLegParams,
    ) -> Result<(), EngineError> {
        self.ask(|r| Request::SetDtls(call, leg, params, r))
    }

    /// Sets an ICE-lite leg's credentials: the peer's arrive with its SDP (an
    /// answer). New local ones are an ICE restart: the nominations are
    /// forgotten and the peer's checks must nominate again (media keeps going
    /// to the last nominated address until then); the previous credentials
    /// are accepted as well until the peer's first valid check with the new
    /// ones (in case the restarting offer never reaches it).
    ///
    /// On a leg created without [`LegConfig::ice`] (a re-offer or re-INVITE
    /// that brings ICE), this turns ICE-lite on: the leg answers checks with
    /// these credentials from now on, exactly as a leg created with them, and
    /// switches to [`LatchMode::Nominated`]. It keeps its current remote
    /// addresses (signalled or learned), so media goes on flowing to and from
    /// the current peer until the first nomination moves it; a packet from
    /// any other address is dropped, no longer learned. The credentials may
    /// lack the peer's (`remote: None`: they come with its answer, by another
    /// `set_ice`).
    ///
    /// [`EngineError::NoSuchCall`] for a call that does not exist (or is being
    /// deleted, when ICE would be turned on); [`EngineError::Config`] for a
    /// leg other than 0 or 1, or credentials that are not valid RFC 8839 ones.
    pub fn set_ice(
        &self,
        call: CallId,
        leg: usize,
        params: IceLegParams,
    ) -> Result<(), EngineError> {
        self.ask(|r| Request::SetIce(call, leg, params, r))
    }

    /// The fingerprint of the engine's DTLS certificate (`a=fingerprint`).
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Current statistics of a call.
    pub fn query(&self, call: CallId) -> Result<SessionSnapshot, EngineError> {
        self.ask(|r| Request::Query(call, r))
    }

    /// Deletes a call, frees its ports, returns its final statistics.
    pub fn delete_call(&self, call: CallId) -> Result<SessionSnapshot, EngineError> {
        self.ask(|r| Request::Delete(call, r))
    }

    /// Ids of the current calls.
    pub fn calls(&self) -> Result<Vec<CallId>, EngineError> {
        self.ask(Request::List)
    }

    /// Engine-wide statistics.
    pub fn stats(&self) -> Result<EngineStats, EngineError> {
        self.ask(Request::Stats)
    }

    /// RTCP figures and quality of a call's legs (loss, jitter, RTT, MOS,
    /// bitrate, reports sent and received, counters), as of the last statistics
    /// sweep and the RTCP received since.
    pub fn rtcp_stats(&self, call: CallId) -> Result<[LegRtcpStats; 2], EngineError> {
        self.ask(|r| Request::Rtcp(call, r))
    }

    /// The next event, waiting up to `timeout`.
    pub fn next_event(&self, timeout: Duration) -> Option<EngineEvent> {
        let rx = self.events.lock().ok()?;
        rx.recv_timeout(timeout).ok()
    }

    /// Graceful shutdown: calls are closed (with events), workers drain and stop.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

struct CallState {
    worker: usize,
    ports: Vec<(u16, bool)>,
    info: CallInfo,
    rx_total: u64,
    last_media: Instant,
    failures: [(u64, u64); 2],
    /// The worker confirmed the session.
    added: bool,
    /// Its creation timed out: the caller was told it failed, so the call is
    /// removed as soon as the worker has it (or forgotten if the worker refused
    /// it).
    abandoned: bool,
    /// ICE-lite responders of the ICE legs (created with ICE, or turned on
    /// later by [`Engine::set_ice`]).
    ice: [Option<IceLite>; 2],
    /// Each leg's latch mode as last set (at creation, by an update, or when
    /// ICE was turned on): an ICE leg that goes back to
    /// [`LatchMode::Nominated`] forgets its nominations.
    latch: [LatchMode; 2],
}

enum Pending {
    Create(CallId, Reply<CallInfo>, Instant),
    Query(u64, Reply<SessionSnapshot>, Instant),
    Delete(CallId, Reply<SessionSnapshot>, Instant, CloseReason),
    Stats(u64, Vec<WorkerCounters>, usize, Reply<EngineStats>, Instant),
}

impl Pending {
    fn since(&self) -> Instant {
        match self {
            Pending::Create(_, _, t)
            | Pending::Query(_, _, t)
            | Pending::Delete(_, _, t, _)
            | Pending::Stats(_, _, _, _, t) => *t,
        }
    }
}

struct Control {
    cfg: EngineConfig,
    dp: Option<Dataplane>,
    ports: PortAllocator,
    calls: HashMap<CallId, CallState>,
    next_id: CallId,
    load: Vec<usize>,
    events: Sender<EngineEvent>,
    pending: Vec<Pending>,
    next_token: u64,
    last_check: Instant,
    /// The periodic statistics sweep under way, if any.
    checking: Option<Sweep>,
    /// DTLS-SRTP legs and their handshakes.
    dtls: DtlsLegs,
    /// Scratch list of what the DTLS legs asked for.
    outcomes: Vec<Outcome>,
    /// RTCP reporting and call quality.
    reporting: Reporting,
    outgoing: Vec<Outgoing>,
    /// Per worker, commands its full ring could not take yet, in order: they
    /// go first on the next turns, so a busy worker delays a change, a key or
    /// a removal but never loses it.
    held: Vec<VecDeque<Command>>,
    /// Commands that had to wait in `held`.
    commands_held: u64,
    /// ICE-lite counters of the whole engine.
    ice: IceCounters,
    /// Unauthenticated STUN answers (401) the engine may still send.
    ice_budget: AnswerBudget,
    /// Media ports the calls hold now (RTP and RTCP): never an ICE
    /// nomination on one of the engine's addresses.
    own_ports: HashSet<u16>,
}

/// The most commands held for one worker before the engine answers "busy".
const MAX_HELD: usize = 65_536;

impl Control {
    fn dp(&self) -> &Dataplane {
        self.dp.as_ref().expect("dataplane runs until shutdown")
    }

    /// Sends a command that must not be lost (a session change, keys, a
    /// removal) to worker `w`, after any it holds; a full ring holds it for the
    /// next turn. Errs only when the worker is [`MAX_HELD`] commands behind.
    fn command(&mut self, w: usize, cmd: Command) -> Result<(), EngineError> {
        let cmd = if self.held[w].is_empty() {
            match self.dp().workers()[w].send(cmd) {
                Ok(()) => return Ok(()),
                Err(c) => c,
            }
        } else {
            cmd
        };
        if self.held[w].len() >= MAX_HELD {
            return Err(EngineError::Limit(format!(
                "worker {w} is busy: {MAX_HELD} commands wait for its ring"
            )));
        }
        self.held[w].push_back(cmd);
        self.commands_held += 1;
        Ok(())
    }

    /// Moves held commands into their workers' rings while they have room.
    fn flush_held(&mut self) {
        let Some(dp) = self.dp.as_ref() else { return };
        for (w, held) in self.held.iter_mut().enumerate() {
            while let Some(c) = held.pop_front() {
                if let Err(c) = dp.workers()[w].send(c) {
                    held.push_front(c);
                    break;
                }
            }
        }
    }

    fn run(
        mut self,
        requests: Receiver<Request>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        loop {
            if stop.load(std::sync::atomic::Ordering::Acquire) {
                break;
            }
            self.flush_held();
            match requests.recv_timeout(Duration::from_millis(2)) {
                Ok(r) => self.request(r),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            while let Ok(r) = requests.try_recv() {
                self.request(r);
            }
            self.worker_events();
            self.with_dtls(|d, now, out| d.timers(now, out));
            self.rtcp_tick();
            self.expire_pending();
            if self.last_check.elapsed() >= self.cfg.check_interval {
                self.last_check = Instant::now();
                self.sweep();
            }
            self.sweep_step();
        }
        self.shutdown();
    }

    /// Sends the RTCP reports that are due.
    fn rtcp_tick(&mut self) {
        let mut out = std::mem::take(&mut self.outgoing);
        self.reporting.poll(Instant::now(), &mut out);
        self.send_rtcp(&mut out);
        self.outgoing = out;
    }

    fn send_rtcp(&mut self, out: &mut Vec<Outgoing>) {
        for o in out.drain(..) {
            let Some(h) = self.dp.as_ref().and_then(|d| d.workers().get(o.worker)) else {
                continue;
            };
            // A full ring loses this report (the next one follows the
            // schedule); so does a worker with held commands, which the report
            // must not overtake (a BYE before its session exists).
            if !self.held[o.worker].is_empty() {
                continue;
            }
            let _ = h.send(Command::SendOnLeg {
                session: o.call,
                leg: o.leg,
                data: o.data,
                rtcp: true,
                protect: true,
                to: None,
            });
        }
    }

    fn emit(&self, e: EngineEvent) {
        let _ = self.events.send(e);
    }

    fn request(&mut self, r: Request) {
        match r {
            Request::Create(legs, reply) => self.create(*legs, reply),
            Request::Update(id, leg, u, reply) => {
                let Some(c) = self.calls.get(&id) else {
                    let _ = reply.send(Err(EngineError::NoSuchCall(id)));
                    return;
                };
                let (remote, latch) = (u.remote, u.latch);
                let cmd = Command::UpdateLeg {
                    session: id,
                    leg,
                    update: u,
                };
                let r = self.command(c.worker, cmd);
                if let (Ok(()), Some(latch)) = (&r, latch) {
                    self.latch_changed(id, leg, latch);
                }
                if let (Ok(()), Some(remote)) = (&r, remote) {
                    self.with_dtls(|d, now, out| d.remote_changed(id, leg, remote, now, out));
                }
                let _ = reply.send(r);
            }
            Request::SetDtls(id, leg, params, reply) => {
                if !self.calls.contains_key(&id) {
                    let _ = reply.send(Err(EngineError::NoSuchCall(id)));
                    return;
                }
                let known = self.with_dtls(|d, now, out| d.set(id, leg, params, now, out));
                let _ = reply.send(if known {
                    Ok(())
                } else {
                    Err(EngineError::Config(format!(
                        "leg {leg} of call {id} was not created as a DTLS-SRTP leg"
                    )))
                });
            }
            Request::SetIce(id, leg, params, reply) => {
                let _ = reply.send(self.set_ice(id, leg, params));
            }
            Request::Query(id, reply) => {
                let Some(w) = self.calls.get(&id).map(|c| c.worker) else {
                    let _ = reply.send(Err(EngineError::NoSuchCall(id)));
                    return;
                };
                let token = self.token();
                let snap = Command::Snapshot {
                    session: Some(id),
                    token,
                };
                if let Err(e) = self.command(w, snap) {
                    let _ = reply.send(Err(e));
                    return;
                }
                self.pending
                    .push(Pending::Query(token, reply, Instant::now()));
            }
            Request::Delete(id, reply) => self.delete(id, reply, CloseReason::Deleted),
            Request::List(reply) => {
                let mut v: Vec<CallId> = self.calls.keys().copied().collect();
                v.sort_unstable();
                let _ = reply.send(Ok(v));
            }
            Request::Rtcp(id, reply) => {
                let _ = reply.send(self.reporting.stats(id).ok_or(EngineError::NoSuchCall(id)));
            }
            Request::Stats(reply) => {
                let token = self.token();
                let n = self.dp().workers().len();
                // Held behind a full ring like any command: a request lost
                // there would leave the caller waiting for a timeout.
                for w in 0..n {
                    let snap = Command::Snapshot {
                        session: Some(u64::MAX),
                        token,
                    };
                    if let Err(e) = self.command(w, snap) {
                        let _ = reply.send(Err(e));
                        return;
                    }
                }
                self.pending
                    .push(Pending::Stats(token, Vec::new(), n, reply, Instant::now()));
            }
        }
    }

    fn token(&mut self) -> u64 {
        self.next_token += 1;
        self.next_token
    }

    /// [`Engine::set_ice`].
    fn set_ice(&mut self, id: CallId, leg: usize, params: IceLegParams) -> Result<(), EngineError> {
        let c = self.calls.get_mut(&id).ok_or(EngineError::NoSuchCall(id))?;
        let Some(ice) = c.ice.get_mut(leg) else {
            return Err(EngineError::Config(format!("call {id} has no leg {leg}")));
        };
        params
            .validate()
            .map_err(|e| EngineError::Config(format!("leg {leg}: {e}")))?;
        if let Some(ice) = ice {
            ice.set_params(params);
            return Ok(());
        }
        // ICE turned on for a leg created without it. A call on its way out
        // takes no command that would follow its removal.
        let worker = c.worker;
        if self.leaving(id) {
            return Err(EngineError::NoSuchCall(id));
        }
        // Nominated from now on, keeping the current remote addresses (the
        // update carries none): media goes on with the current peer until a
        // nomination, and no packet from elsewhere is learned. The responder
        // is installed only once the change is queued for the worker: a
        // nomination's update, and any answer, go behind it.
        self.command(
            worker,
            Command::UpdateLeg {
                session: id,
                leg,
                update: Box::new(LegUpdate {
                    latch: Some(LatchMode::Nominated),
                    ..LegUpdate::default()
                }),
            },
        )?;
        self.latch_changed(id, leg, LatchMode::Nominated);
        if let Some(c) = self.calls.get_mut(&id) {
            c.ice[leg] = Some(IceLite::new(params));
        }
        Ok(())
    }

    /// Records the latch mode a leg was given; an ICE leg back in
    /// [`LatchMode::Nominated`] from another mode forgets its nominations
    /// (see [`Engine::update_leg`]).
    fn latch_changed(&mut self, id: CallId, leg: usize, mode: LatchMode) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(l) = c.latch.get_mut(leg) else {
            return;
        };
        let back = mode == LatchMode::Nominated && *l != LatchMode::Nominated;
        *l = mode;
        if let Some(ice) = c.ice[leg].as_mut().filter(|_| back) {
            ice.forget_nomination(1);
            ice.forget_nomination(2);
        }
    }

    /// A call deleted (its removal under way) or abandoned by its creator:
    /// it answers no check, takes no nomination and no new ICE leg.
    fn leaving(&self, id: CallId) -> bool {
        self.calls.get(&id).is_some_and(|c| c.abandoned)
            || self
                .pending
                .iter()
                .any(|p| matches!(p, Pending::Delete(i, ..) if *i == id))
    }

    /// A STUN datagram on a leg's port: the leg's ICE-lite responder judges
    /// it; its answer goes back from the port it arrived on, and a nomination
    /// becomes the leg's remote address.
    fn ice_datagram(
        &mut self,
        call: CallId,
        leg: usize,
        local: Option<SocketAddr>,
        src: SocketAddr,
        data: &[u8],
    ) {
        let leaving = self.leaving(call);
        // A call on its way out (deleted, or abandoned by its creator) answers
        // nothing and takes no nomination: an update would follow its removal
        // and a nomination could start a handshake for it.
        let Some(c) = self.calls.get_mut(&call).filter(|_| !leaving) else {
            self.ice.no_leg += 1;
            return;
        };
        let worker = c.worker;
        // Component 2 is the RTCP port of a leg without rtcp-mux.
        let on_rtcp_port = match (local, c.info.legs.get(leg).and_then(|l| l.local_rtcp)) {
            (Some(l), Some(r)) => l.port() == r.port(),
            _ => false,
        };
        let component = if on_rtcp_port { 2 } else { 1 };
        let Some(ice) = c.ice.get_mut(leg).and_then(Option::as_mut) else {
            self.ice.not_ice += 1;
            return;
        };
        let now = Instant::now();
        let (cfg, own_ports) = (&self.cfg, &self.own_ports);
        let own = |a: SocketAddr| own_ports.contains(&a.port()) && own_ip(cfg, a.ip());
        let out = ice.on_datagram_guarded(data, src, component, now, own);
        self.ice.count(out.input);
        if out.refused_nomination {
            self.ice.refused_nominations += 1;
        }
        let mut reply = out.reply;
        if reply.is_some() && out.input.is_unauthenticated_answer() && !self.ice_budget.take(now) {
            self.ice.rate_limited += 1;
            reply = None;
        }
        let Some(h) = self.dp.as_ref().and_then(|d| d.workers().get(worker)) else {
            return;
        };
        if let Some(reply) = reply {
            // An answer may be lost (the peer retransmits its check), but it
            // never overtakes held commands nor adds to them.
            let sent = if self.held[worker].is_empty() {
                h.send(Command::SendOnLeg {
                    session: call,
                    leg,
                    data: reply,
                    rtcp: on_rtcp_port,
                    protect: false,
                    to: Some(src),
                })
                .is_ok()
            } else {
                false
            };
            if !sent {
                self.ice.ring_full += 1;
            }
        }
        let Some(addr) = out.nominated else { return };
        let update = if on_rtcp_port {
            LegUpdate {
                remote_rtcp: Some(Some(addr)),
                ..LegUpdate::default()
            }
        } else {
            LegUpdate {
                remote: Some(Some(addr)),
                ..LegUpdate::default()
            }
        };
        let sent = self.command(
            worker,
            Command::UpdateLeg {
                session: call,
                leg,
                update: Box::new(update),
            },
        );
        if sent.is_err() {
            // Forget it: the peer's next nominating check installs it.
            self.ice.ring_full += 1;
            if let Some(ice) = self
                .calls
                .get_mut(&call)
                .and_then(|c| c.ice.get_mut(leg)?.as_mut())
            {
                ice.forget_nomination(component);
            }
            return;
        }
        self.ice.nominations += 1;
        if !on_rtcp_port {
            // As for Engine::update_leg: a DTLS client leg waiting for its
            // remote starts its handshake towards the nominated address.
            self.with_dtls(|d, now, out| d.remote_changed(call, leg, Some(addr), now, out));
        }
        self.emit(EngineEvent::IceNominated {
            call,
            leg,
            rtcp: on_rtcp_port,
            addr,
        });
    }

    fn create(&mut self, legs: [LegConfig; 2], reply: Reply<CallInfo>) {
        if self.calls.len() >= self.cfg.max_calls {
            let _ = reply.send(Err(EngineError::Limit(format!(
                "max_calls ({}) reached",
                self.cfg.max_calls
            ))));
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        if legs.iter().any(|l| l.dtls.is_some() && l.srtp.is_some()) {
            let _ = reply.send(Err(EngineError::Config(
                "a leg has either SDES keys (srtp) or DTLS-SRTP (dtls), not both".into(),
            )));
            return;
        }
        if let Some(e) = legs
            .iter()
            .enumerate()
            .find_map(|(i, l)| Some((i, l.ice.as_ref()?.validate().err()?)))
        {
            let _ = reply.send(Err(EngineError::Config(format!("leg {}: {}", e.0, e.1))));
            return;
        }
        let ice = [
            legs[0].ice.clone().map(IceLite::new),
            legs[1].ice.clone().map(IceLite::new),
        ];
        let dtls: Vec<(usize, DtlsLegParams, Option<SocketAddr>)> = legs
            .iter()
            .enumerate()
            .filter_map(|(i, l)| l.dtls.clone().map(|d| (i, d, l.remote)))
            .collect();
        let rtcp = [legs[0].rtcp.clone(), legs[1].rtcp.clone()];
        let clock_rates = [legs[0].clock_rate, legs[1].clock_rate];
        let mut specs = Vec::with_capacity(2);
        let mut infos = Vec::with_capacity(2);
        let mut latch = [LatchMode::default(); 2];
        let mut held = Vec::new();
        let advertise = self.cfg.advertise_ip.unwrap_or(self.cfg.bind_ip);
        for (i, l) in legs.into_iter().enumerate() {
            let pair = !l.rtcp_mux;
            let p = match self.ports.allocate(pair) {
                Ok(p) => p,
                Err(e) => {
                    for (port, pair) in held {
                        self.release_port(port, pair);
                    }
                    let _ = reply.send(Err(EngineError::Limit(format!("ports: {e}"))));
                    return;
                }
            };
            held.push((p.port, pair));
            self.own_ports.insert(p.port);
            if pair {
                self.own_ports.insert(p.port + 1);
            }
            let local = SocketAddr::new(self.cfg.bind_ip, p.port);
            infos.push(LegInfo {
                local,
                advertised: SocketAddr::new(advertise, p.port),
                local_rtcp: pair.then(|| SocketAddr::new(self.cfg.bind_ip, p.port + 1)),
            });
            let mut spec = LegSpec::new(LocalBinding::PerSession {
                rtp: p.rtp,
                rtcp: p.rtcp,
            });
            spec.remote = l.remote;
            spec.remote_rtcp = l.remote_rtcp;
            spec.rtcp_mux = l.rtcp_mux;
            spec.latch = if l.ice.is_some() {
                LatchMode::Nominated
            } else {
                l.latch
            };
            latch[i] = spec.latch;
            spec.srtp = l.srtp;
            spec.keys_pending = l.dtls.is_some();
            spec.rewrite = l.rewrite;
            spec.clock_rate = l.clock_rate;
            specs.push(spec);
        }
        let worker = (0..self.load.len())
            .min_by_key(|&w| self.load[w])
            .unwrap_or(0);
        let legs: [LegSpec; 2] = match specs.try_into() {
            Ok(l) => l,
            Err(_) => unreachable!("two legs"),
        };
        let terminate = rtcp.iter().any(|c| c.mode == RtcpMode::Terminate);
        let spec = SessionSpec {
            id,
            legs,
            rtcp_to_control: false,
            rtcp_mode: if terminate {
                RtcpMode::Terminate
            } else {
                RtcpMode::Forward
            },
        };
        if let Err(e) = self.command(worker, Command::AddSession(Box::new(spec))) {
            for (port, pair) in held {
                self.release_port(port, pair);
            }
            let _ = reply.send(Err(e));
            return;
        }
        let info = CallInfo {
            id,
            worker,
            legs: [infos[0], infos[1]],
        };
        self.load[worker] += 1;
        self.reporting.add_call(
            id,
            worker,
            [&rtcp[0], &rtcp[1]],
            clock_rates,
            Instant::now(),
        );
        self.calls.insert(
            id,
            CallState {
                worker,
                ports: held,
                info,
                rx_total: 0,
                last_media: Instant::now(),
                failures: [(0, 0); 2],
                added: false,
                abandoned: false,
                ice,
                latch,
            },
        );
        self.pending
            .push(Pending::Create(id, reply, Instant::now()));
        self.with_dtls(|d, now, out| {
            for (leg, params, remote) in dtls {
                d.add(id, leg, worker, params, remote, now, out);
            }
        });
    }

    /// Runs `f` on the DTLS legs and carries out what they asked for.
    fn with_dtls<T>(
        &mut self,
        f: impl FnOnce(&mut DtlsLegs, Instant, &mut Vec<Outcome>) -> T,
    ) -> T {
        let mut out = std::mem::take(&mut self.outcomes);
        let r = f(&mut self.dtls, Instant::now(), &mut out);
        self.apply(&mut out);
        self.outcomes = out;
        r
    }

    /// Carries out what the DTLS legs asked for.
    fn apply(&mut self, out: &mut Vec<Outcome>) {
        for o in out.drain(..) {
            match o {
                Outcome::Command(w, cmd) => {
                    // Handshake datagrams and keys keep their order behind any
                    // held commands. A worker too far behind loses a datagram
                    // (retransmission recovers it) or the keys, which would not
                    // recover: the leg fails.
                    let keys = match &cmd {
                        Command::UpdateLeg { session, leg, .. } => Some((*session, *leg)),
                        _ => None,
                    };
                    if let (Err(e), Some((call, leg))) = (self.command(w, cmd), keys) {
                        self.emit(EngineEvent::DtlsFailed {
                            call,
                            leg,
                            reason: format!("{e}: DTLS keys not installed"),
                        });
                        self.close_failed(call);
                    }
                }
                Outcome::AttemptFailed {
                    call,
                    leg,
                    from,
                    error,
                } => {
                    self.emit(EngineEvent::DtlsAttemptFailed {
                        call,
                        leg,
                        from,
                        reason: error.to_string(),
                    });
                }
                Outcome::Connected { call, leg, keys } => {
                    self.emit(EngineEvent::DtlsConnected {
                        call,
                        leg,
                        profile: keys.srtp_profile,
                        cipher: keys.cipher_suite,
                        peer_fingerprint: keys.peer_fingerprint.clone(),
                    });
                }
                Outcome::Failed { call, leg, error } => {
                    self.emit(EngineEvent::DtlsFailed {
                        call,
                        leg,
                        reason: error.to_string(),
                    });
                    self.close_failed(call);
                }
            }
        }
    }

    /// Closes a call whose DTLS-SRTP leg failed (unless a delete is under way).
    fn close_failed(&mut self, call: CallId) {
        if self.calls.contains_key(&call)
            && !self
                .pending
                .iter()
                .any(|p| matches!(p, Pending::Delete(i, ..) if *i == call))
        {
            let (tx, _rx) = mpsc::channel();
            self.delete(call, tx, CloseReason::DtlsFailed);
        }
    }

    fn delete(&mut self, id: CallId, reply: Reply<SessionSnapshot>, reason: CloseReason) {
        let Some(c) = self.calls.get(&id) else {
            let _ = reply.send(Err(EngineError::NoSuchCall(id)));
            return;
        };
        let worker = c.worker;
        // Terminated RTCP ends with a BYE on each leg, queued before the removal.
        let mut byes = self.reporting.end_call(id);
        self.send_rtcp(&mut byes);
        if let Err(e) = self.command(worker, Command::RemoveSession(id)) {
            let _ = reply.send(Err(e));
            return;
        }
        self.pending
            .push(Pending::Delete(id, reply, Instant::now(), reason));
    }

    fn release_port(&mut self, port: u16, pair: bool) {
        self.ports.release(port, pair);
        self.own_ports.remove(&port);
        if pair {
            self.own_ports.remove(&port.wrapping_add(1));
        }
    }

    fn forget(&mut self, id: CallId) {
        self.dtls.remove_call(id);
        if let Some(c) = self.calls.remove(&id) {
            for (port, pair) in c.ports {
                self.release_port(port, pair);
            }
            self.load[c.worker] -= 1;
        }
        self.reporting.forget(id);
    }

    fn worker_events(&mut self) {
        let n = self.dp.as_ref().map(|d| d.workers().len()).unwrap_or(0);
        for w in 0..n {
            for _ in 0..4096 {
                let Some(e) = self.dp().workers()[w].poll_event() else {
                    break;
                };
                self.worker_event(w, e);
            }
        }
        if let Some(dp) = &self.dp {
            dp.clear_event_fd();
        }
    }

    fn take_pending(&mut self, f: impl Fn(&Pending) -> bool) -> Option<Pending> {
        let i = self.pending.iter().position(f)?;
        Some(self.pending.swap_remove(i))
    }

    fn worker_event(&mut self, w: usize, e: Event) {
        match e {
            Event::SessionAdded(id) => {
                if let Some(c) = self.calls.get_mut(&id) {
                    c.added = true;
                }
                if let Some(Pending::Create(_, reply, _)) =
                    self.take_pending(|p| matches!(p, Pending::Create(i, _, _) if *i == id))
                {
                    let info = self.calls.get(&id).map(|c| c.info);
                    let _ = reply.send(info.ok_or(EngineError::NoSuchCall(id)));
                } else if self.calls.get(&id).is_some_and(|c| c.abandoned) {
                    // Added after its creation timed out: nobody knows this call.
                    self.remove_abandoned(id);
                }
            }
            Event::Error { session, message } => {
                if let Some(id) = session {
                    if let Some(Pending::Create(_, reply, _)) =
                        self.take_pending(|p| matches!(p, Pending::Create(i, _, _) if *i == id))
                    {
                        self.forget(id);
                        let _ = reply.send(Err(EngineError::Dataplane(message)));
                        return;
                    }
                    if self.calls.get(&id).is_some_and(|c| c.abandoned && !c.added) {
                        // The late answer to a timed-out creation is a refusal:
                        // the worker never had the session.
                        let _ =
                            self.take_pending(|p| matches!(p, Pending::Delete(i, ..) if *i == id));
                        self.forget(id);
                    }
                }
                self.emit(EngineEvent::Error {
                    call: session,
                    message,
                });
            }
            Event::SessionRemoved(snap) => {
                let id = snap.id;
                self.forget(id);
                let reason = match self
                    .take_pending(|p| matches!(p, Pending::Delete(i, _, _, _) if *i == id))
                {
                    Some(Pending::Delete(_, reply, _, reason)) => {
                        let _ = reply.send(Ok((*snap).clone()));
                        reason
                    }
                    _ => CloseReason::Deleted,
                };
                self.emit(EngineEvent::CallClosed {
                    call: id,
                    reason,
                    stats: snap,
                });
            }
            Event::Latched {
                session,
                leg,
                rtcp,
                addr,
            } => self.emit(EngineEvent::Latched {
                call: session,
                leg,
                rtcp,
                addr,
            }),
            Event::Stats {
                token,
                counters,
                sessions,
                next_slot,
                ..
            } => self.stats_event(w, token, *counters, sessions, next_slot),
            Event::Datagram {
                leg: Some((call, leg)),
                kind: PacketKind::Dtls,
                src,
                data,
                ..
            } => {
                self.with_dtls(|d, now, out| d.datagram(call, leg, src, &data, now, out));
            }
            Event::Rtcp { session, leg, data } => {
                self.reporting.on_rtcp(session, leg, &data, Instant::now());
            }
            Event::Datagram {
                leg: Some((call, leg)),
                kind: PacketKind::Stun,
                local,
                src,
                data,
            } => self.ice_datagram(call, leg, local, src, &data),
            Event::Datagram {
                leg: None,
                kind: PacketKind::Stun,
                ..
            } => {
                // Shared ports (no per-call socket) are not used by the
                // engine's calls; a STUN flow nobody owns is dropped.
                self.ice.no_leg += 1;
            }
            Event::Datagram { .. } => {}
        }
    }

    fn stats_event(
        &mut self,
        w: usize,
        token: u64,
        counters: WorkerCounters,
        mut sessions: Vec<SessionSnapshot>,
        next_slot: Option<u32>,
    ) {
        if let Some(sw) = self.checking.as_mut().filter(|sw| sw.token == token) {
            if let Some(c) = sw.workers.get_mut(w) {
                *c = (next_slot, false);
            }
            sw.answered = Instant::now();
            let mut alerts = Vec::new();
            for s in &sessions {
                self.check_call(s);
                alerts.clear();
                self.reporting.on_snapshot(s, Instant::now(), &mut alerts);
                for &(leg, alert) in &alerts {
                    self.emit(EngineEvent::Quality {
                        call: s.id,
                        leg,
                        alert,
                    });
                }
            }
            return;
        }
        if let Some(Pending::Query(_, reply, _)) =
            self.take_pending(|p| matches!(p, Pending::Query(t, _, _) if *t == token))
        {
            let _ = reply.send(sessions.pop().ok_or(EngineError::Timeout));
            return;
        }
        if let Some(i) = self
            .pending
            .iter()
            .position(|p| matches!(p, Pending::Stats(t, ..) if *t == token))
        {
            let done = if let Pending::Stats(_, v, n, _, _) = &mut self.pending[i] {
                v.push(counters);
                v.len() == *n
            } else {
                false
            };
            if done {
                if let Pending::Stats(_, mut v, _, reply, _) = self.pending.swap_remove(i) {
                    v.sort_by_key(|c| c.worker);
                    let rtcp = self.reporting.worker_stats(self.dp().workers().len());
                    let _ = reply.send(Ok(EngineStats {
                        rtcp,
                        calls: self.calls.len(),
                        ports_in_use: self.ports.in_use(),
                        workers: v,
                        backend: self.dp().backend(),
                        dtls: self.dtls.counters,
                        commands_held: self.commands_held,
                        ice: self.ice,
                    }));
                }
            }
        }
    }

    /// Periodic: starts a sweep over every worker's sessions (media timeouts,
    /// SRTP failures, RTCP statistics), carried out slice by slice in
    /// [`Control::sweep_step`].
    fn sweep(&mut self) {
        if self.checking.is_some() || self.calls.is_empty() {
            return;
        }
        let token = self.token();
        let n = self.dp().workers().len();
        // About a hundred slices per worker, at least 32 sessions each: with one
        // slice per worker per loop turn (2 ms when idle) a sweep of 1,000 calls
        // takes some 60 ms in turns of tens of microseconds, instead of one turn
        // of more than a millisecond that delays whatever shares the core.
        let per_worker = self.calls.len() / n.max(1);
        let slice = (per_worker / 100).clamp(32, 4096) as u32;
        self.checking = Some(Sweep {
            token,
            slice,
            workers: vec![(Some(0), false); n],
            answered: Instant::now(),
        });
    }

    /// Asks each worker for its next slice of the sweep once it answered the last.
    fn sweep_step(&mut self) {
        let Some(mut sw) = self.checking.take() else {
            return;
        };
        let mut busy = false;
        for (i, (next, waiting)) in sw.workers.iter_mut().enumerate() {
            if *waiting {
                busy = true;
                continue;
            }
            let Some(from) = *next else { continue };
            busy = true;
            let Some(h) = self.dp.as_ref().and_then(|d| d.workers().get(i)) else {
                continue;
            };
            // A full ring: ask again next turn.
            *waiting = h
                .send(Command::SnapshotSlots {
                    from,
                    max: sw.slice,
                    token: sw.token,
                })
                .is_ok();
        }
        if busy {
            self.checking = Some(sw);
        }
    }

    fn check_call(&mut self, s: &SessionSnapshot) {
        let threshold = self.cfg.srtp_failure_threshold;
        let timeout = self.cfg.media_timeout;
        let Some(c) = self.calls.get_mut(&s.id) else {
            return;
        };
        let rx: u64 = s
            .legs
            .iter()
            .map(|l| l.counters.rx_rtp + l.counters.rx_rtcp)
            .sum();
        if rx != c.rx_total {
            c.rx_total = rx;
            c.last_media = Instant::now();
        }
        let mut events = Vec::new();
        for (i, l) in s.legs.iter().enumerate() {
            let (auth, replay) = failures(l);
            let (pa, pr) = c.failures[i];
            let (da, dr) = (auth - pa.min(auth), replay - pr.min(replay));
            c.failures[i] = (auth, replay);
            if da + dr > threshold {
                events.push(EngineEvent::SrtpFailures {
                    call: s.id,
                    leg: i,
                    auth: da,
                    replay: dr,
                });
            }
        }
        let timed_out = timeout.is_some_and(|t| c.last_media.elapsed() >= t);
        for e in events {
            self.emit(e);
        }
        if timed_out
            && !self
                .pending
                .iter()
                .any(|p| matches!(p, Pending::Delete(i, ..) if *i == s.id))
        {
            self.emit(EngineEvent::MediaTimeout { call: s.id });
            let (tx, _rx) = mpsc::channel();
            self.delete(s.id, tx, CloseReason::MediaTimeout);
        }
    }

    /// Removes a call whose creation timed out (unless a removal is under way).
    fn remove_abandoned(&mut self, id: CallId) {
        if !self
            .pending
            .iter()
            .any(|p| matches!(p, Pending::Delete(i, ..) if *i == id))
        {
            // A full command ring: the call stays abandoned and its late
            // SessionAdded asks again.
            let (tx, _rx) = mpsc::channel();
            self.delete(id, tx, CloseReason::Deleted);
        }
    }

    fn expire_pending(&mut self) {
        let mut abandoned = Vec::new();
        let mut i = 0;
        while i < self.pending.len() {
            if self.pending[i].since().elapsed() < ANSWER {
                i += 1;
                continue;
            }
            match self.pending.swap_remove(i) {
                Pending::Create(id, r, _) => {
                    let _ = r.send(Err(EngineError::Timeout));
                    abandoned.push(id);
                }
                Pending::Query(_, r, _) => {
                    let _ = r.send(Err(EngineError::Timeout));
                }
                Pending::Delete(_, r, _, _) => {
                    let _ = r.send(Err(EngineError::Timeout));
                }
                Pending::Stats(_, _, _, r, _) => {
                    let _ = r.send(Err(EngineError::Timeout));
                }
            }
        }
        // The caller was told the creation failed: the call must not live on
        // unknown to it, holding ports and a place under max_calls. The worker
        // takes commands in order, so the removal follows the addition.
        for id in abandoned {
            if let Some(c) = self.calls.get_mut(&id) {
                c.abandoned = true;
                self.remove_abandoned(id);
            }
        }
        // A sweep whose answers stopped coming (a worker's event ring was full)
        // must not block the next one.
        if self
            .checking
            .as_ref()
            .is_some_and(|sw| sw.answered.elapsed() > ANSWER)
        {
            self.checking = None;
        }
    }

    fn shutdown(&mut self) {
        let Some(dp) = self.dp.take() else { return };
        // Ask every worker for its sessions' final numbers (after a BYE on each
        // terminated leg), then stop them.
        for (id, c) in &self.calls {
            for o in self.reporting.end_call(*id) {
                let _ = dp.workers()[o.worker].send(Command::SendOnLeg {
                    session: o.call,
                    leg: o.leg,
                    data: o.data,
                    rtcp: true,
                    protect: true,
                    to: None,
                });
            }
            let _ = dp.workers()[c.worker].send(Command::RemoveSession(*id));
        }
        let handles: Vec<_> = dp.workers().to_vec();
        dp.shutdown();
        for h in handles {
            while let Some(e) = h.poll_event() {
                if let Event::SessionRemoved(snap) = e {
                    let id = snap.id;
                    self.emit(EngineEvent::CallClosed {
                        call: id,
                        reason: CloseReason::Shutdown,
                        stats: snap,
                    });
                }
            }
        }
        self.calls.clear();
        for p in self.pending.drain(..) {
            match p {
                Pending::Create(_, r, _) => {
                    let _ = r.send(Err(EngineError::Stopped));
                }
                Pending::Query(_, r, _) => {
                    let _ = r.send(Err(EngineError::Stopped));
                }
                Pending::Delete(_, r, _, _) => {
                    let _ = r.send(Err(EngineError::Stopped));
                }
                Pending::Stats(_, _, _, r, _) => {
                    let _ = r.send(Err(EngineError::Stopped));
                }
            }
        }
    }
}

/// Whether `ip` is one of the engine's media addresses: the bound one, the
/// advertised one, and any loopback address when bound to loopback or to
/// all interfaces.
fn own_ip(cfg: &EngineConfig, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    let bind = cfg.bind_ip;
    ip == bind
        || Some(ip) == cfg.advertise_ip
        || (ip.is_loopback() && (bind.is_loopback() || bind.is_unspecified()))
}

fn failures(l: &LegSnapshot) -> (u64, u64) {
    (
        l.counters.dropped(DropReason::Auth),
        l.counters.dropped(DropReason::Replay),
    )
}
