//! # rtp-dataplane
//!
//! Pinned per-core workers that move RTP between sockets with in-place SRTP, no locks
//! and no allocation per packet.
//!
//! - [`Dataplane::start`] spawns the workers of a [`DataplaneConfig`]; each pins
//!   itself to its core, then allocates its [`pool::FramePool`] and its I/O backend
//!   ([`backend::mmsg`]: mio + recvmmsg/sendmmsg with UDP GSO, or
//!   [`backend::uring`]: io_uring multishot recvmsg over a provided-buffer ring).
//! - The control plane drives each worker through its [`WorkerHandle`]: commands
//!   in ([`Command`]: add/update/remove sessions, install keys, send a packet on a
//!   leg, snapshot statistics) and events out ([`Event`]: STUN/DTLS datagrams,
//!   RTCP copies, latch changes, statistics, errors), over bounded lock-free rings.
//! - A session is two legs; what arrives on one is relayed to the other, with
//!   the transform given by each leg's SRTP keys (none, SRTP -> RTP, RTP -> SRTP,
//!   SRTP -> SRTP with other keys or another profile), optional SSRC/sequence/PT
//!   rewriting, symmetric latching, and per-leg counters and receive statistics.
//!
//! All syscalls and their `unsafe` live in [`sys`], [`pool`] and [`backend`].

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_queue::ArrayQueue;

pub mod backend;
pub mod pool;
pub mod ports;
mod relay_rtcp;
pub mod ring;
pub mod session;
mod slab;
pub mod sys;
mod worker;

pub use backend::BackendKind;
pub use ring::{Command, Event, WorkerHandle};
pub use session::{
    DropReason, LatchMode, LegCounters, LegQuality, LegSender, LegSnapshot, LegSpec, LegSrtp,
    LegUpdate, LocalBinding, Rewrite, RtcpMode, SessionId, SessionSnapshot, SessionSpec,
};
pub use worker::{IdlePolicy, WorkerCounters};

use ring::Channel;
use sys::EventFd;
use worker::{Worker, WorkerSetup};

/// Which I/O backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendChoice {
    /// io_uring when the start-up probe passes, otherwise mmsg (and say why).
    #[default]
    Auto,
    /// Exactly this backend (io_uring fails the start when unavailable).
    Only(BackendKind),
}

/// Dataplane configuration.
#[derive(Debug, Clone)]
pub struct DataplaneConfig {
    /// Number of workers.
    pub workers: usize,
    /// Core of each worker (worker i on `cores[i % len]`); empty: no pinning.
    pub cores: Vec<usize>,
    /// I/O backend.
    pub backend: BackendChoice,
    /// Datagrams per receive batch (and per recvmmsg/sendmmsg call).
    pub batch: usize,
    /// Frames per worker pool (at most 65536).
    pub pool_frames: usize,
    /// Idle policy of every worker.
    pub idle: IdlePolicy,
    /// Capacity of each command ring.
    pub command_ring: usize,
    /// Capacity of each event ring.
    pub event_ring: usize,
    /// Shared ports: each worker binds one SO_REUSEPORT socket per address (port 0
    /// picks a port for the whole group).
    pub shared: Vec<SocketAddr>,
    /// Send runs of equal-sized datagrams to one destination with UDP GSO (mmsg
    /// backend, when the kernel supports it).
    pub gso: bool,
    /// SO_RCVBUF/SO_SNDBUF of shared sockets.
    pub socket_buffer: Option<usize>,
    /// SRTP contexts keep their session keys compact and expand the AES key
    /// schedule per packet ([`rtp_core::srtp::SrtpConfig::with_compact_keys`]):
    /// about 2.8 KB less per SRTP -> SRTP session, for some tens of nanoseconds
    /// per packet.
    pub compact_srtp_keys: bool,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            workers: 1,
            cores: Vec::new(),
            backend: BackendChoice::Auto,
            batch: 32,
            pool_frames: 8192,
            idle: IdlePolicy::default(),
            command_ring: 4096,
            event_ring: 16384,
            shared: Vec::new(),
            gso: true,
            socket_buffer: Some(4 << 20),
            compact_srtp_keys: false,
        }
    }
}

/// A configuration the dataplane refuses, with what to change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl DataplaneConfig {
    /// Checks the configuration; the error says which setting to change.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |s: String| Err(ConfigError(s));
        if self.workers == 0 || self.workers > 1024 {
            return err(format!("workers = {}: must be 1..=1024", self.workers));
        }
        if self.batch == 0 || self.batch > 1024 {
            return err(format!("batch = {}: must be 1..=1024", self.batch));
        }
        if self.pool_frames < 2 * self.batch || self.pool_frames > pool::MAX_FRAMES {
            return err(format!(
                "pool_frames = {}: must be at least 2 x batch ({}) and at most {}",
                self.pool_frames,
                2 * self.batch,
                pool::MAX_FRAMES
            ));
        }
        if let IdlePolicy::Coalesce { batch, wait } = self.idle {
            if batch == 0 || batch > 4096 || wait > std::time::Duration::from_millis(10) {
                return err(format!(
                    "idle coalesce:{batch}:{}: batch must be 1..=4096 and the wait at most 10 ms",
                    wait.as_micros()
                ));
            }
        }
        if self.command_ring == 0 || self.event_ring == 0 {
            return err("command_ring and event_ring must be at least 1".into());
        }
        let n = sys::online_cpus();
        if let Some(c) = self.cores.iter().find(|&&c| c >= n) {
            return err(format!(
                "core {c} does not exist (this machine has {n} cores)"
            ));
        }
        Ok(())
    }
}

/// Errors starting the dataplane.
#[derive(Debug)]
pub enum StartError {
    /// Bad configuration.
    Config(ConfigError),
    /// io_uring was required but is unavailable.
    Backend(String),
    /// A socket or thread could not be created.
    Io(io::Error),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(e) => write!(f, "configuration: {e}"),
            StartError::Backend(e) => write!(f, "backend: {e}"),
            StartError::Io(e) => write!(f, "i/o: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Io(e)
    }
}

/// Running workers.
#[derive(Debug)]
pub struct Dataplane {
    handles: Vec<WorkerHandle>,
    threads: Vec<JoinHandle<WorkerCounters>>,
    stops: Vec<Arc<AtomicBool>>,
    backend: BackendKind,
    backend_note: Option<String>,
    shared: Vec<SocketAddr>,
    notify: Arc<EventFd>,
}

impl Dataplane {
    /// Validates `cfg`, binds the shared ports, probes the backend and starts the
    /// workers.
    pub fn start(cfg: DataplaneConfig) -> Result<Self, StartError> {
        cfg.validate().map_err(StartError::Config)?;
        let (backend, backend_note) = match cfg.backend {
            BackendChoice::Only(BackendKind::Mmsg) => (BackendKind::Mmsg, None),
            BackendChoice::Only(BackendKind::IoUring) => {
                backend::probe_io_uring().map_err(StartError::Backend)?;
                (BackendKind::IoUring, None)
            }
            BackendChoice::Auto => match backend::probe_io_uring() {
                Ok(()) => (BackendKind::IoUring, None),
                Err(why) => (
                    BackendKind::Mmsg,
                    Some(format!("io_uring unavailable ({why}); using mmsg")),
                ),
            },
        };
        let gso = cfg.gso && sys::probe_gso();
        // Shared groups: socket i of every group goes to worker i.
        let mut per_worker: Vec<Vec<std::net::UdpSocket>> =
            (0..cfg.workers).map(|_| Vec::new()).collect();
        let mut shared = Vec::new();
        for &addr in &cfg.shared {
            let group = ports::shared_group(addr, cfg.workers, cfg.socket_buffer)?;
            shared.push(group[0].local_addr()?);
            for (i, s) in group.into_iter().enumerate() {
                per_worker[i].push(s);
            }
        }
        let notify = Arc::new(EventFd::new()?);
        let mut dp = Dataplane {
            handles: Vec::new(),
            threads: Vec::new(),
            stops: Vec::new(),
            backend,
            backend_note,
            shared,
            notify: notify.clone(),
        };
        for (index, socks) in per_worker.into_iter().enumerate() {
            let chan = Arc::new(Channel {
                commands: ArrayQueue::new(cfg.command_ring),
                events: ArrayQueue::new(cfg.event_ring),
                wake: EventFd::new()?,
                commands_refused: AtomicU64::new(0),
            });
            let stop = Arc::new(AtomicBool::new(false));
            let setup = WorkerSetup {
                index,
                core: (!cfg.cores.is_empty()).then(|| cfg.cores[index % cfg.cores.len()]),
                backend,
                batch: cfg.batch,
                pool_frames: cfg.pool_frames,
                idle: cfg.idle,
                gso,
                compact_srtp_keys: cfg.compact_srtp_keys,
                shared: socks,
            };
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (c, n, s) = (chan.clone(), notify.clone(), stop.clone());
            let t = std::thread::Builder::new()
                .name(format!("rtp-worker-{index}"))
                .spawn(move || match Worker::new(setup, c, n, s) {
                    Ok(w) => {
                        let _ = ready_tx.send(Ok(()));
                        w.run()
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        WorkerCounters::default()
                    }
                })?;
            let ready = ready_rx
                .recv()
                .unwrap_or_else(|_| Err(io::Error::other("worker thread died while starting")));
            dp.threads.push(t);
            dp.stops.push(stop);
            dp.handles.push(WorkerHandle { index, chan });
            if let Err(e) = ready {
                dp.stop_all();
                return Err(StartError::Io(e));
            }
        }
        Ok(dp)
    }

    /// Handles of the workers, by index.
    pub fn workers(&self) -> &[WorkerHandle] {
        &self.handles
    }

    /// The backend the workers use.
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// Why the backend differs from the preferred one, if it does.
    pub fn backend_note(&self) -> Option<&str> {
        self.backend_note.as_deref()
    }

    /// Bound shared addresses, in configuration order.
    pub fn shared_addrs(&self) -> &[SocketAddr] {
        &self.shared
    }

    /// The worker whose shared socket receives the flow from `remote`.
    pub fn worker_for_remote(&self, remote: &SocketAddr) -> usize {
        sys::reuseport_index(remote, self.handles.len())
    }

    /// An eventfd that becomes readable when a worker pushed events (for the
    /// control thread's poll loop); read it to clear it.
    pub fn event_fd(&self) -> RawFd {
        self.notify.as_raw_fd()
    }

    /// Clears the event notification.
    pub fn clear_event_fd(&self) {
        self.notify.drain();
    }

    fn stop_all(&mut self) -> Vec<WorkerCounters> {
        for (s, h) in self.stops.iter().zip(&self.handles) {
            s.store(true, Ordering::Release);
            h.chan.wake.notify();
        }
        self.threads
            .drain(..)
            .map(|t| t.join().unwrap_or_default())
            .collect()
    }

    /// Graceful shutdown: every worker stops accepting, relays what its sockets
    /// already hold, waits for its sends to complete and closes its sockets.
    /// Returns the final counters of each worker. Events stay readable on the
    /// handles.
    pub fn shutdown(mut self) -> Vec<WorkerCounters> {
        self.stop_all()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        self.stop_all();
    }
}
