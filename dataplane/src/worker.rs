//! A worker: one thread pinned to a core that owns a frame pool, an I/O backend,
//! its sockets, its flow table and its sessions, and runs the relay pipeline.

use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::session::RxStats;
use crate::slab::Slab;
use rtp_core::demux::{classify, PacketKind};
use rtp_core::srtp::{CheckBatch, Opening, PendingCheck, PendingTag, TagBatch};
use rtp_core::stats::{BurstGapTracker, ReceiverStats};

use crate::backend::mmsg::MmsgBackend;
use crate::backend::uring::UringBackend;
use crate::backend::{
    BackendCounters, BackendKind, IoBackend, RxPacket, SockId, TxFailure, TxPacket,
};
use crate::pool::{FrameId, FramePool, FRAME_SIZE, HEADROOM, MAX_DATAGRAM};
use crate::relay_rtcp::{keep_feedback, map_media_ssrc, rtp_payload_len};
use crate::ring::{Channel, Command, Event};
use crate::session::{
    DropReason, LatchMode, Leg, LegIndex, LegSpec, LegUpdate, LocalBinding, RtcpMode, SessionId,
    SessionSnapshot, SessionSpec,
};
use crate::sys::EventFd;

/// What a worker does when it has nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Never sleep: poll the backend without waiting (lowest latency, one core
    /// at 100%).
    BusyPoll,
    /// Busy-poll for `spin` after the last packet, then wait in the kernel.
    SpinThenPark {
        /// How long to keep polling after the last activity.
        spin: Duration,
    },
    /// Always wait in the kernel for packets or commands.
    Block,
    /// Wait in the kernel like `Block`, but once something arrives let up to
    /// `batch` datagrams (and send completions) gather for at most `wait` before
    /// waking: one wake-up per batch instead of one per datagram, at the price of
    /// up to `wait` of added latency (interrupt moderation). With the io_uring
    /// backend; the mmsg backend behaves as `Block`.
    Coalesce {
        /// Completions to wait for.
        batch: usize,
        /// The longest extra wait.
        wait: Duration,
    },
}

impl std::str::FromStr for IdlePolicy {
    type Err = String;

    /// `busy`, `block`, `spin:MICROS` or `coalesce:BATCH:MICROS`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("idle {s:?}: expected busy, block, spin:MICROS or coalesce:BATCH:MICROS");
        let micros = |v: &str| {
            v.parse::<u64>()
                .map(Duration::from_micros)
                .map_err(|_| bad())
        };
        match s {
            "busy" => Ok(IdlePolicy::BusyPoll),
            "block" => Ok(IdlePolicy::Block),
            _ => {
                if let Some(v) = s.strip_prefix("spin:") {
                    return Ok(IdlePolicy::SpinThenPark { spin: micros(v)? });
                }
                let (batch, wait) = s
                    .strip_prefix("coalesce:")
                    .and_then(|v| v.split_once(':'))
                    .ok_or_else(bad)?;
                Ok(IdlePolicy::Coalesce {
                    batch: batch.parse().map_err(|_| bad())?,
                    wait: micros(wait)?,
                })
            }
        }
    }
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::SpinThenPark {
            spin: Duration::from_micros(200),
        }
    }
}

/// The longest a parked worker waits before looking at its rings again (they
/// also wake it through an eventfd).
const PARK: Duration = Duration::from_millis(50);
/// Commands taken per loop turn, so that a burst of commands cannot starve media.
const COMMANDS_PER_TURN: usize = 64;
const NO_TAG: u32 = u32::MAX;

/// Counters of one worker (besides the per-leg ones).
#[derive(Debug, Clone, Default)]
pub struct WorkerCounters {
    /// Worker index.
    pub worker: usize,
    /// Packets that arrived on a leg still waiting for its DTLS keys and were
    /// kept for it ([`EARLY_MAX`] at most, [`EARLY_PER_LEG`] per leg, for
    /// [`EARLY_TTL`]; from the leg's remote only, once it has one).
    pub early_held: u64,
    /// Of those, the ones relayed once the keys arrived (the others expired or
    /// their session went: counted as `no_keys` drops of their leg).
    pub early_relayed: u64,
    /// Backend in use.
    pub backend: Option<BackendKind>,
    /// Core the worker is pinned to, if pinning succeeded.
    pub core: Option<usize>,
    /// Datagrams received.
    pub rx_packets: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Datagrams handed to the kernel.
    pub tx_packets: u64,
    /// Bytes handed to the kernel.
    pub tx_bytes: u64,
    /// Datagrams on a shared port matching no flow.
    pub unknown_flow: u64,
    /// Datagrams on sockets with no owner (a session being removed).
    pub orphaned: u64,
    /// Datagrams handed to the control plane (STUN, DTLS, unknown flows).
    pub to_control: u64,
    /// Data events (datagrams, RTCP copies, latch changes) dropped because the
    /// event ring was full.
    pub event_ring_full: u64,
    /// Answers to commands (session added/removed, errors, statistics) that
    /// found the event ring full and waited in the worker until it had room:
    /// delayed, never lost.
    pub events_deferred: u64,
    /// Frame allocations that found the pool empty (receive and command sends).
    pub pool_empty: u64,
    /// Frames in the pool.
    pub pool_frames: usize,
    /// Frames free at the time of the snapshot.
    pub pool_free: usize,
    /// Frame frees the pool refused (a frame freed twice): a bug, counted
    /// instead of handing one frame to two owners.
    pub pool_bad_frees: u64,
    /// Send failures not attributable to a leg.
    pub send_errors: u64,
    /// Commands processed.
    pub commands: u64,
    /// Sessions currently owned.
    pub sessions: usize,
    /// Loop turns.
    pub turns: u64,
    /// Backend counters.
    pub io: BackendCounters,
    /// Drops of all legs (current and removed sessions) by [`DropReason`].
    pub drops: [u64; DropReason::ALL.len()],
}

/// How a worker is set up (from the dataplane configuration).
#[derive(Debug)]
pub(crate) struct WorkerSetup {
    pub index: usize,
    pub core: Option<usize>,
    pub backend: BackendKind,
    pub batch: usize,
    pub pool_frames: usize,
    pub idle: IdlePolicy,
    pub gso: bool,
    pub compact_srtp_keys: bool,
    pub shared: Vec<UdpSocket>,
}

enum Owner {
    Leg { slot: u32, leg: u8, rtcp: bool },
    Shared,
}

struct SockEntry {
    sock: UdpSocket,
    local: Option<SocketAddr>,
    owner: Owner,
}

struct Session {
    id: SessionId,
    legs: [Leg; 2],
    rtcp_to_control: bool,
    rtcp_mode: RtcpMode,
}

/// Source check before the packet is authenticated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Current,
    New,
    Moved,
}

pub(crate) struct Worker {
    index: usize,
    chan: Arc<Channel>,
    notify: Arc<EventFd>,
    stop: Arc<AtomicBool>,
    idle: IdlePolicy,
    compact_srtp_keys: bool,
    batch: usize,
    /// Declared before the pool, so dropped first: the io_uring backend waits
    /// there for the kernel to let go of the pool's frames.
    backend: Box<dyn IoBackend>,
    pool: FramePool,
    socks: Vec<Option<SockEntry>>,
    free_socks: Vec<SockId>,
    shared: Vec<SockId>,
    sessions: Slab<Session>,
    free_sessions: Vec<u32>,
    by_id: HashMap<SessionId, u32>,
    /// Shared-port flows by (socket, remote).
    flows: HashMap<(SockId, SocketAddr), (u32, u8)>,
    /// Shared-port flows by (socket, SSRC), before the remote is known.
    ssrc_flows: HashMap<(SockId, u32), (u32, u8)>,
    rx: Vec<RxPacket>,
    tx: Vec<TxPacket>,
    /// HMAC-SHA1 tags of queued SRTP packets, written together before the batch
    /// is sent: frame, packet start, tag.
    tags: Vec<(FrameId, u16, PendingTag)>,
    /// Per packet of the received batch: its SRTP tag, checked up to the tag
    /// and computed with the others' before the batch is relayed (`precheck`).
    /// With the session slot and leg it was checked for.
    checks: Vec<Option<(u32, u8, PendingCheck)>>,
    failed: Vec<TxFailure>,
    counters: WorkerCounters,
    /// Drops of every leg, current and removed, by reason: kept as they happen so
    /// that a statistics slice does not walk every session for them.
    leg_drops: [u64; DropReason::ALL.len()],
    epoch: Instant,
    now_ns: u64,
    events_pushed: bool,
    /// Answers to commands that found the event ring full, in order; pushed
    /// before anything else as the ring frees up. Bounded: no command is taken
    /// while it holds `COMMANDS_PER_TURN` or more, and each command has at most
    /// one answer.
    backlog: VecDeque<Event>,
    /// Packets that arrived on legs waiting for their DTLS keys, oldest first.
    /// A peer starts sending the moment its side of the handshake completes,
    /// a round trip and a command before ours installs the keys: those first
    /// packets (a browser's first video key frame among them) are kept and
    /// relayed when the keys arrive rather than dropped.
    early: VecDeque<Early>,
    early_scratch: Vec<Early>,
}

/// Most packets a worker keeps for legs waiting for their keys.
pub const EARLY_MAX: usize = 64;
/// Most packets kept for one leg: anyone can send to a leg's port, and one
/// leg must not take the room of the others.
pub const EARLY_PER_LEG: usize = 16;
/// How long such a packet is kept.
pub const EARLY_TTL: Duration = Duration::from_millis(500);

/// A packet kept for a leg waiting for its keys.
#[derive(Debug, Clone, Copy)]
struct Early {
    id: SessionId,
    slot: u32,
    leg: u8,
    rtcp: bool,
    at_ns: u64,
    p: RxPacket,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn tag(slot: u32, leg: usize) -> u32 {
    (slot << 1) | leg as u32
}

impl Worker {
    /// Builds the worker on its own thread: pins first, then allocates.
    pub(crate) fn new(
        setup: WorkerSetup,
        chan: Arc<Channel>,
        notify: Arc<EventFd>,
        stop: Arc<AtomicBool>,
    ) -> std::io::Result<Self> {
        let mut counters = WorkerCounters {
            worker: setup.index,
            ..WorkerCounters::default()
        };
        if let Some(core) = setup.core {
            if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                counters.core = Some(core);
            }
        }
        let pool = FramePool::new(setup.pool_frames);
        let waker = chan.wake.as_raw_fd();
        let mut backend: Box<dyn IoBackend> = match setup.backend {
            BackendKind::Mmsg => Box::new(MmsgBackend::new(setup.batch, waker, setup.gso)?),
            BackendKind::IoUring => Box::new(UringBackend::new(&pool, waker)?),
        };
        if let IdlePolicy::Coalesce { batch, wait } = setup.idle {
            backend.set_coalesce(batch, wait);
        }
        counters.backend = Some(backend.kind());
        counters.pool_frames = pool.capacity();
        let mut w = Worker {
            index: setup.index,
            chan,
            notify,
            stop,
            idle: setup.idle,
            compact_srtp_keys: setup.compact_srtp_keys,
            batch: setup.batch.max(1),
            pool,
            backend,
            socks: Vec::new(),
            free_socks: Vec::new(),
            shared: Vec::new(),
            sessions: Slab::new(),
            free_sessions: Vec::new(),
            by_id: HashMap::new(),
            flows: HashMap::new(),
            ssrc_flows: HashMap::new(),
            rx: Vec::with_capacity(setup.batch.max(1)),
            tx: Vec::with_capacity(setup.batch.max(1) + COMMANDS_PER_TURN),
            tags: Vec::with_capacity(setup.batch.max(1)),
            checks: Vec::with_capacity(setup.batch.max(1)),
            failed: Vec::with_capacity(setup.batch.max(1)),
            counters,
            leg_drops: [0; DropReason::ALL.len()],
            epoch: Instant::now(),
            now_ns: 0,
            events_pushed: false,
            backlog: VecDeque::with_capacity(2 * COMMANDS_PER_TURN),
            early: VecDeque::with_capacity(EARLY_MAX),
            early_scratch: Vec::with_capacity(EARLY_MAX),
        };
        for s in setup.shared {
            let id = w.add_sock(s, Owner::Shared)?;
            w.shared.push(id);
        }
        Ok(w)
    }

    fn add_sock(&mut self, sock: UdpSocket, owner: Owner) -> std::io::Result<SockId> {
        sock.set_nonblocking(true)?;
        let local = sock.local_addr().ok();
        let id = match self.free_socks.pop() {
            Some(id) => id,
            None => {
                self.socks.push(None);
                (self.socks.len() - 1) as SockId
            }
        };
        if let Err(e) = self.backend.add_socket(id, sock.as_raw_fd()) {
            self.free_socks.push(id);
            return Err(e);
        }
        self.socks[id as usize] = Some(SockEntry { sock, local, owner });
        Ok(id)
    }

    fn remove_sock(&mut self, id: SockId) {
        if let Some(e) = self.socks.get_mut(id as usize).and_then(Option::take) {
            self.backend.remove_socket(id, e.sock.as_raw_fd());
            self.free_socks.push(id);
            // `e.sock` closes here.
        }
    }

    /// A data event (datagram, RTCP copy, latch change): dropped and counted
    /// when the ring is full, or while answers wait for room (the slots the
    /// control plane frees go to those first).
    fn event(&mut self, e: Event) -> bool {
        if !self.backlog.is_empty() {
            self.counters.event_ring_full += 1;
            return false;
        }
        match self.chan.events.push(e) {
            Ok(()) => {
                self.events_pushed = true;
                true
            }
            Err(_) => {
                self.counters.event_ring_full += 1;
                false
            }
        }
    }

    /// The answer to a command (session added or removed, an error, numbers):
    /// never dropped, or the control plane would lose track of a session and
    /// its ports. A full ring defers it to the backlog, kept in order.
    fn answer(&mut self, e: Event) {
        let e = if self.backlog.is_empty() {
            match self.chan.events.push(e) {
                Ok(()) => {
                    self.events_pushed = true;
                    return;
                }
                Err(e) => e,
            }
        } else {
            e
        };
        self.counters.events_deferred += 1;
        self.backlog.push_back(e);
    }

    /// Moves deferred answers into the ring while it has room.
    fn flush_backlog(&mut self) {
        while let Some(e) = self.backlog.pop_front() {
            if let Err(e) = self.chan.events.push(e) {
                self.backlog.push_front(e);
                break;
            }
            self.events_pushed = true;
        }
    }

    /// Runs until stopped; returns the final counters.
    pub(crate) fn run(mut self) -> WorkerCounters {
        let mut last_activity = Instant::now();
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let mut busy = self.commands();
            let timeout = if stopping {
                Duration::ZERO
            } else {
                match self.idle {
                    IdlePolicy::BusyPoll => Duration::ZERO,
                    IdlePolicy::SpinThenPark { spin } if last_activity.elapsed() < spin => {
                        Duration::ZERO
                    }
                    _ => PARK,
                }
            };
            let got = self.turn(timeout);
            busy |= got > 0;
            if busy {
                last_activity = Instant::now();
            }
            if stopping {
                // Commands queued before the stop (e.g. removals that report
                // final numbers) are all carried out.
                while self.commands() {}
                self.drain();
                // Answers still waiting for room go with the worker: counted.
                self.flush_backlog();
                self.counters.event_ring_full += self.backlog.len() as u64;
                if self.events_pushed {
                    self.notify.notify();
                }
                break;
            }
        }
        let mut c = self.snapshot_counters();
        // Close every socket (the backend is dropped with the worker).
        for id in 0..self.socks.len() {
            self.remove_sock(id as SockId);
        }
        c.sessions = 0;
        c
    }

    /// One loop turn: receive a batch, process it, send. Returns packets received.
    fn turn(&mut self, timeout: Duration) -> usize {
        let _ = self.backend.recv(
            &mut self.pool,
            timeout,
            self.batch,
            &mut self.rx,
            &mut self.failed,
        );
        self.counters.turns += 1;
        if !self.early.is_empty() {
            self.expire_early();
        }
        // Deferred answers take the ring's free slots before this batch's data
        // events.
        self.flush_backlog();
        let n = self.rx.len();
        if n > 0 {
            self.now_ns = self.epoch.elapsed().as_nanos() as u64;
            self.precheck();
            for i in 0..n {
                let p = self.rx[i];
                let check = self.checks.get_mut(i).and_then(Option::take);
                self.handle(p, check);
            }
            self.rx.clear();
        }
        self.flush();
        if self.events_pushed {
            self.events_pushed = false;
            self.notify.notify();
        }
        n
    }

    /// Phase one of SRTP unprotect for the batch's RTP packets on legs with
    /// HMAC-SHA1 keys (per-leg and shared ports), then their tags computed
    /// together (`CheckBatch`: sixteen at a time in AVX-512 lanes where the CPU
    /// has them). Phase one changes neither the packet nor the stream; the
    /// relay finishes each packet in order (`unprotect_rtp_finish` makes every
    /// check again) if it still finds it on the same leg, and a packet dropped
    /// before that just leaves its tag unused.
    fn precheck(&mut self) {
        let n = self.rx.len();
        self.checks.clear();
        self.checks.resize_with(n, || None);
        let mut pending = 0;
        for i in 0..n {
            let p = self.rx[i];
            let Some(Some(entry)) = self.socks.get(p.sock as usize) else {
                continue;
            };
            let start = usize::from(p.start);
            let end = start + usize::from(p.len);
            let (slot, leg) = match entry.owner {
                Owner::Leg {
                    slot,
                    leg,
                    rtcp: false,
                } => (slot, leg),
                Owner::Leg { .. } => continue,
                Owner::Shared => {
                    match self.shared_flow(&p, &self.pool.frame(p.frame)[start..end]) {
                        Some(hit) => hit,
                        None => continue,
                    }
                }
            };
            let Some(s) = self
                .sessions
                .get_mut(slot as usize)
                .and_then(Option::as_mut)
            else {
                continue;
            };
            let l = &mut s.legs[usize::from(leg)];
            let Some(ctx) = l.srtp_in.as_mut() else {
                continue;
            };
            // AEAD profiles finish in phase one: they are left to the relay.
            if l.keys_pending || ctx.profile().is_aead() {
                continue;
            }
            let data = &mut self.pool.frame_mut(p.frame)[start..end];
            if classify(data) != PacketKind::Rtp {
                continue;
            }
            if let Ok(Opening::Pending(c)) = ctx.unprotect_rtp_deferred(data) {
                self.checks[i] = Some((slot, leg, c));
                pending += 1;
            }
        }
        if pending < 2 {
            return; // one alone is computed by its finish
        }
        let mut batch = CheckBatch::new();
        for (p, check) in self.rx.iter().zip(&mut self.checks) {
            if let Some((_, _, c)) = check {
                let start = usize::from(p.start);
                batch.push(
                    c,
                    &self.pool.frame(p.frame)[start..start + usize::from(p.len)],
                );
            }
        }
        batch.finish();
    }

    fn flush(&mut self) {
        self.write_tags();
        if !self.tx.is_empty() {
            self.backend
                .send(&mut self.pool, &mut self.tx, &mut self.failed);
        }
        for i in 0..self.failed.len() {
            let f = self.failed[i];
            self.account_failure(f);
        }
        self.failed.clear();
    }

    /// Writes the deferred SRTP tags of the queued packets, up to sixteen at a
    /// time (`TagBatch`: in AVX-512 lanes where the CPU has them, about a
    /// quarter of SHA-NI's time per tag; in pairs otherwise).
    fn write_tags(&mut self) {
        const PER: usize = TagBatch::CAPACITY;
        while !self.tags.is_empty() {
            let start = self.tags.len().saturating_sub(PER);
            let mut ids = [None; PER];
            for (id, (f, _, _)) in ids.iter_mut().zip(&self.tags[start..]) {
                *id = Some(*f);
            }
            let frames = self.pool.frames_mut(ids);
            let mut batch = TagBatch::new();
            let mut left: [Option<(FrameId, u16, PendingTag)>; PER] = Default::default();
            for (((f, s, tag), frame), left) in self.tags.drain(start..).zip(frames).zip(&mut left)
            {
                let r = match frame {
                    Some(frame) => batch.push(tag, &mut frame[usize::from(s)..]),
                    // A frame queued twice cannot happen; were it so, its other
                    // tag is written after the batch.
                    None => {
                        *left = Some((f, s, tag));
                        Ok(())
                    }
                };
                // The tag's buffer is the frame region that protect was given,
                // which has room for it: this cannot fail.
                debug_assert!(r.is_ok(), "a deferred SRTP tag did not fit its frame");
            }
            batch.finish();
            for (f, s, tag) in left.into_iter().flatten() {
                let r = tag.write(&mut self.pool.frame_mut(f)[usize::from(s)..]);
                debug_assert!(r.is_ok(), "a deferred SRTP tag did not fit its frame");
            }
        }
    }

    fn account_failure(&mut self, f: TxFailure) {
        if f.tag == NO_TAG {
            self.counters.send_errors += 1;
            return;
        }
        let slot = (f.tag >> 1) as usize;
        match self.sessions.get_mut(slot).and_then(Option::as_mut) {
            Some(s) => s.legs[(f.tag & 1) as usize]
                .counters
                .drop(DropReason::SendError, &mut self.leg_drops),
            None => self.counters.send_errors += 1,
        }
    }

    /// Stop accepting: read what the kernel already queued on our sockets, relay
    /// it, and wait (bounded) for every send to complete.
    fn drain(&mut self) {
        for _ in 0..10_000 {
            if self.turn(Duration::ZERO) == 0 {
                // One more look after the io_uring completions of this turn.
                if self.turn(Duration::ZERO) == 0 {
                    break;
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while self.backend.in_flight() > 0 && Instant::now() < deadline {
            self.turn(Duration::from_millis(5));
        }
    }

    // ------------------------------------------------------------------ commands

    fn commands(&mut self) -> bool {
        self.flush_backlog();
        if self.backlog.len() >= COMMANDS_PER_TURN {
            // The control plane is not reading: leave its commands in their
            // ring (it sees that ring fill up) rather than pile up answers.
            if self.events_pushed {
                self.events_pushed = false;
                self.notify.notify();
            }
            return false;
        }
        let mut any = false;
        for _ in 0..COMMANDS_PER_TURN {
            let Some(cmd) = self.chan.commands.pop() else {
                break;
            };
            any = true;
            self.counters.commands += 1;
            self.command(cmd);
        }
        if any {
            self.flush();
            if self.events_pushed {
                self.events_pushed = false;
                self.notify.notify();
            }
        }
        any
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::AddSession(spec) => {
                let id = spec.id;
                match self.add_session(*spec) {
                    Ok(()) => self.answer(Event::SessionAdded(id)),
                    Err(message) => self.answer(Event::Error {
                        session: Some(id),
                        message,
                    }),
                };
            }
            Command::UpdateLeg {
                session,
                leg,
                update,
            } => {
                if let Err(message) = self.update_leg(session, leg, *update) {
                    self.answer(Event::Error {
                        session: Some(session),
                        message,
                    });
                }
            }
            Command::RemoveSession(id) => {
                // Sends queued on the session's sockets (a final RTCP BYE) go out
                // before the sockets close.
                self.flush();
                match self.remove_session(id) {
                    Some(snap) => {
                        self.answer(Event::SessionRemoved(Box::new(snap)));
                    }
                    None => {
                        self.answer(Event::Error {
                            session: Some(id),
                            message: format!("no session {id} on worker {}", self.index),
                        });
                    }
                }
            }
            Command::SendOnLeg {
                session,
                leg,
                data,
                rtcp,
                protect,
                to,
            } => {
                if let Err(message) = self.send_on_leg(session, leg, &data, rtcp, protect, to) {
                    self.answer(Event::Error {
                        session: Some(session),
                        message,
                    });
                }
            }
            Command::SendFromShared { index, to, data } => {
                let Some(&sock) = self.shared.get(index) else {
                    self.answer(Event::Error {
                        session: None,
                        message: format!("no shared address {index}"),
                    });
                    return;
                };
                self.send_copy(sock, to, &data, NO_TAG);
            }
            Command::Snapshot { session, token } => {
                let sessions = match session {
                    Some(id) => self.session_snapshot(id).into_iter().collect(),
                    None => (0..self.sessions.len() as u32)
                        .filter_map(|slot| self.session_snapshot_slot(slot))
                        .collect(),
                };
                self.stats_event(token, sessions, None);
            }
            Command::SnapshotSlots { from, max, token } => {
                let mut sessions = Vec::new();
                let mut slot = from as usize;
                // Empty slots cost a look each: bound those too.
                let mut budget = (max as usize).saturating_mul(8).max(64);
                while slot < self.sessions.len() && sessions.len() < max as usize && budget > 0 {
                    sessions.extend(self.session_snapshot_slot(slot as u32));
                    slot += 1;
                    budget -= 1;
                }
                let next = (slot < self.sessions.len()).then_some(slot as u32);
                self.stats_event(token, sessions, next);
            }
        }
    }

    fn stats_event(&mut self, token: u64, sessions: Vec<SessionSnapshot>, next: Option<u32>) {
        let counters = Box::new(self.snapshot_counters());
        let index = self.index;
        self.answer(Event::Stats {
            token,
            worker: index,
            counters,
            sessions,
            next_slot: next,
        });
    }

    fn snapshot_counters(&self) -> WorkerCounters {
        let mut c = self.counters.clone();
        c.io = self.backend.counters();
        c.pool_empty += self.pool.exhausted() + c.io.no_frame;
        c.pool_free = self.pool.available();
        c.pool_bad_frees = self.pool.bad_frees();
        c.sessions = self.by_id.len();
        c.drops = self.leg_drops;
        c
    }

    fn add_session(&mut self, spec: SessionSpec) -> Result<(), String> {
        if self.by_id.contains_key(&spec.id) {
            return Err(format!("session {} already exists", spec.id));
        }
        for l in &spec.legs {
            if let LocalBinding::Shared { index, .. } = l.local {
                if index >= self.shared.len() {
                    return Err(format!(
                        "shared address {index} is not configured ({} configured)",
                        self.shared.len()
                    ));
                }
            }
        }
        let slot = match self.free_sessions.pop() {
            Some(s) => s,
            None => self.sessions.push_empty() as u32,
        };
        let [a, b] = spec.legs;
        let legs = match (self.make_leg(slot, 0, a), self.make_leg(slot, 1, b)) {
            (Ok(a), Ok(b)) => [a, b],
            (a, b) => {
                let mut msg = String::new();
                for r in [a, b] {
                    match r {
                        Ok(l) => self.release_leg(&l),
                        Err(e) => msg = e,
                    }
                }
                self.free_sessions.push(slot);
                return Err(msg);
            }
        };
        for (i, l) in legs.iter().enumerate() {
            if l.shared {
                if let Some(ssrc) = l.shared_ssrc {
                    self.ssrc_flows.insert((l.rtp_sock, ssrc), (slot, i as u8));
                }
                if let Some(r) = l.remote {
                    self.flows.insert((l.rtp_sock, r), (slot, i as u8));
                }
            }
        }
        self.sessions[slot as usize] = Some(Session {
            id: spec.id,
            legs,
            rtcp_to_control: spec.rtcp_to_control || spec.rtcp_mode == RtcpMode::Terminate,
            rtcp_mode: spec.rtcp_mode,
        });
        self.by_id.insert(spec.id, slot);
        Ok(())
    }

    fn make_leg(&mut self, slot: u32, leg: usize, spec: LegSpec) -> Result<Leg, String> {
        let (rtp_sock, rtcp_sock, shared) = match spec.local {
            LocalBinding::PerSession { rtp, rtcp } => {
                let r = self
                    .add_sock(
                        rtp,
                        Owner::Leg {
                            slot,
                            leg: leg as u8,
                            rtcp: false,
                        },
                    )
                    .map_err(|e| format!("cannot register RTP socket: {e}"))?;
                let c = match rtcp {
                    Some(s) => match self.add_sock(
                        s,
                        Owner::Leg {
                            slot,
                            leg: leg as u8,
                            rtcp: true,
                        },
                    ) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            self.remove_sock(r);
                            return Err(format!("cannot register RTCP socket: {e}"));
                        }
                    },
                    None => None,
                };
                (r, c, None)
            }
            LocalBinding::Shared { index, ssrc } => (self.shared[index], None, Some(ssrc)),
        };
        let mut l = Leg {
            rtp_sock,
            rtcp_sock,
            shared: shared.is_some(),
            shared_ssrc: shared.flatten(),
            remote: spec.remote,
            remote_rtcp: spec.remote_rtcp,
            rtcp_mux: spec.rtcp_mux || rtcp_sock.is_none(),
            latch: spec.latch,
            latched_ssrc: None,
            last_rx_ns: 0,
            srtp_in: None,
            srtp_out: None,
            keys_pending: spec.keys_pending,
            rewrite: boxed_rewrite(spec.rewrite),
            clock_rate: spec.clock_rate.max(1),
            counters: Default::default(),
            rx: None,
            tx_ssrc: 0,
            tx_rtp_ts: 0,
            tx_last_ns: 0,
            tx_payload: 0,
        };
        if let Err(e) = l.set_srtp(spec.srtp.as_ref(), self.compact_srtp_keys) {
            self.release_leg(&l);
            return Err(format!("bad SRTP keys: {e}"));
        }
        Ok(l)
    }

    /// Unregisters a leg's own sockets (not shared ones).
    fn release_leg(&mut self, l: &Leg) {
        if !l.shared {
            self.remove_sock(l.rtp_sock);
        }
        if let Some(c) = l.rtcp_sock {
            self.remove_sock(c);
        }
    }

    fn remove_session(&mut self, id: SessionId) -> Option<SessionSnapshot> {
        if !self.early.is_empty() {
            let mut gone = self.pick_early(|e| e.id == id);
            for &e in &gone {
                self.drop_early(e);
            }
            gone.clear();
            self.early_scratch = gone;
        }
        let slot = self.by_id.remove(&id)?;
        let snap = self.session_snapshot_slot(slot);
        let s = self.sessions[slot as usize].take()?;
        for (i, l) in s.legs.iter().enumerate() {
            self.release_leg(l);
            if l.shared {
                // A leg's flows are its current remote and its signalled SSRC
                // (re-latching moves the address entry); remove those that still
                // point at it, without a scan of every flow of the worker.
                let target = (slot, i as u8);
                if let Some(r) = l.remote {
                    if self.flows.get(&(l.rtp_sock, r)) == Some(&target) {
                        self.flows.remove(&(l.rtp_sock, r));
                    }
                }
                if let Some(ssrc) = l.shared_ssrc {
                    if self.ssrc_flows.get(&(l.rtp_sock, ssrc)) == Some(&target) {
                        self.ssrc_flows.remove(&(l.rtp_sock, ssrc));
                    }
                }
            }
        }
        self.free_sessions.push(slot);
        snap
    }

    fn update_leg(&mut self, id: SessionId, leg: LegIndex, u: LegUpdate) -> Result<(), String> {
        let r = self.apply_leg_update(id, leg, u);
        if !self.early.is_empty() {
            if let Some(&slot) = self.by_id.get(&id) {
                let ready = self.sessions[slot as usize]
                    .as_ref()
                    .is_some_and(|s| !s.legs[leg.min(1)].keys_pending);
                if ready {
                    self.replay_early(id, slot, leg);
                }
            }
        }
        r
    }

    /// Packets kept for leg `leg` of session `id` go through the relay now
    /// that its keys are installed, in the order they arrived.
    fn replay_early(&mut self, id: SessionId, slot: u32, leg: LegIndex) {
        let mut mine = self.pick_early(|e| e.id == id && usize::from(e.leg) == leg);
        self.now_ns = self.epoch.elapsed().as_nanos() as u64;
        for e in mine.drain(..) {
            self.counters.early_relayed += 1;
            self.relay(slot, leg, e.p, e.rtcp, None);
        }
        self.early_scratch = mine;
    }

    /// Takes the kept packets that `pick` selects, in order (into the scratch
    /// list, which the caller gives back), and keeps the others.
    fn pick_early(&mut self, pick: impl Fn(&Early) -> bool) -> Vec<Early> {
        let mut out = std::mem::take(&mut self.early_scratch);
        for _ in 0..self.early.len() {
            let Some(e) = self.early.pop_front() else {
                break;
            };
            if pick(&e) {
                out.push(e);
            } else {
                self.early.push_back(e);
            }
        }
        out
    }

    /// Drops kept packets older than [`EARLY_TTL`] (counted as `no_keys`).
    fn expire_early(&mut self) {
        let now = self.epoch.elapsed().as_nanos() as u64;
        while let Some(e) = self.early.front().copied() {
            if now.saturating_sub(e.at_ns) < EARLY_TTL.as_nanos() as u64 {
                break;
            }
            self.early.pop_front();
            self.drop_early(e);
        }
    }

    /// A kept packet that will not be relayed: a `no_keys` drop of its leg.
    fn drop_early(&mut self, e: Early) {
        if let Some(s) = self
            .sessions
            .get_mut(e.slot as usize)
            .and_then(Option::as_mut)
            .filter(|s| s.id == e.id)
        {
            s.legs[usize::from(e.leg)]
                .counters
                .drop(DropReason::NoKeys, &mut self.leg_drops);
        }
        self.pool.free(e.p.frame);
    }

    fn apply_leg_update(
        &mut self,
        id: SessionId,
        leg: LegIndex,
        u: LegUpdate,
    ) -> Result<(), String> {
        let &slot = self
            .by_id
            .get(&id)
            .ok_or_else(|| format!("no session {id}"))?;
        if leg > 1 {
            return Err(format!("no leg {leg}"));
        }
        let compact = self.compact_srtp_keys;
        let s = self.sessions[slot as usize]
            .as_mut()
            .ok_or("session slot empty")?;
        let l = &mut s.legs[leg];
        if let Some(p) = u.keys_pending {
            l.keys_pending = p;
        }
        if let Some(srtp) = &u.srtp {
            l.set_srtp(srtp.as_ref(), compact)
                .map_err(|e| format!("bad SRTP keys: {e}"))?;
        }
        if let Some(r) = u.rewrite {
            l.rewrite = boxed_rewrite(r);
        }
        if let Some(m) = u.latch {
            l.latch = m;
        }
        if let Some(m) = u.rtcp_mux {
            l.rtcp_mux = m || l.rtcp_sock.is_none();
        }
        if let Some(r) = u.remote_rtcp {
            l.remote_rtcp = r;
        }
        if let Some(r) = u.remote {
            let old = l.remote;
            l.remote = r;
            l.latched_ssrc = None;
            if l.shared {
                let sock = l.rtp_sock;
                if let Some(o) = old {
                    self.flows.remove(&(sock, o));
                }
                if let Some(n) = r {
                    self.flows.insert((sock, n), (slot, leg as u8));
                }
            }
        }
        Ok(())
    }

    fn session_snapshot(&self, id: SessionId) -> Option<SessionSnapshot> {
        self.session_snapshot_slot(*self.by_id.get(&id)?)
    }

    fn session_snapshot_slot(&self, slot: u32) -> Option<SessionSnapshot> {
        let s = self.sessions.get(slot as usize)?.as_ref()?;
        let local = |sock: SockId| {
            self.socks
                .get(sock as usize)
                .and_then(|e| e.as_ref())
                .and_then(|e| e.local)
        };
        // The loop's clock (read once per turn), not a clock read per session.
        let now = self.now_ns;
        Some(SessionSnapshot {
            id: s.id,
            legs: [
                s.legs[0].snapshot(local(s.legs[0].rtp_sock), now),
                s.legs[1].snapshot(local(s.legs[1].rtp_sock), now),
            ],
        })
    }

    /// Copies `data` into a frame and queues it.
    fn send_copy(&mut self, sock: SockId, dst: SocketAddr, data: &[u8], tag: u32) -> bool {
        if data.len() > MAX_DATAGRAM {
            return false;
        }
        let Some(f) = self.pool.alloc() else {
            return false;
        };
        self.pool.frame_mut(f)[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        self.tx.push(TxPacket {
            frame: f,
            start: HEADROOM as u16,
            len: data.len() as u16,
            sock,
            dst,
            tag,
        });
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += data.len() as u64;
        true
    }

    fn send_on_leg(
        &mut self,
        id: SessionId,
        leg: LegIndex,
        data: &[u8],
        rtcp: bool,
        protect: bool,
        to: Option<SocketAddr>,
    ) -> Result<(), String> {
        let &slot = self
            .by_id
            .get(&id)
            .ok_or_else(|| format!("no session {id}"))?;
        if leg > 1 {
            return Err(format!("no leg {leg}"));
        }
        if data.len() > MAX_DATAGRAM {
            return Err(format!(
                "datagram of {} bytes exceeds {MAX_DATAGRAM}",
                data.len()
            ));
        }
        let s = self.sessions[slot as usize]
            .as_mut()
            .ok_or("session slot empty")?;
        let l = &mut s.legs[leg];
        if protect && l.keys_pending {
            // Reports due before a DTLS handshake completes: a counted drop, not
            // an error event per report.
            l.counters.drop(DropReason::NoKeys, &mut self.leg_drops);
            return Ok(());
        }
        let target = match (rtcp, to) {
            // An answer to what arrived on the RTCP port (a STUN check of ICE
            // component 2) leaves from that port, whatever the leg's RTCP
            // destination is, or before it has one.
            (true, Some(to)) => Some((l.rtcp_sock.unwrap_or(l.rtp_sock), to)),
            (true, None) => l.rtcp_target(),
            (false, _) => to.or(l.remote).map(|r| (l.rtp_sock, r)),
        };
        let Some((sock, dst)) = target else {
            // A report due before the leg's remote is known: a counted drop,
            // not an error event per report.
            l.counters.drop(DropReason::NoRemote, &mut self.leg_drops);
            return Ok(());
        };
        let dst = to.unwrap_or(dst);
        let Some(f) = self.pool.alloc() else {
            l.counters.drop(DropReason::PoolEmpty, &mut self.leg_drops);
            return Err("frame pool empty".into());
        };
        let frame = self.pool.frame_mut(f);
        frame[HEADROOM..HEADROOM + data.len()].copy_from_slice(data);
        let mut len = data.len();
        if protect {
            if let Some(ctx) = l.srtp_out.as_mut() {
                let r = if rtcp {
                    ctx.protect_rtcp(&mut frame[HEADROOM..], len)
                } else {
                    ctx.protect_rtp(&mut frame[HEADROOM..], len)
                };
                match r {
                    Ok(n) => len = n,
                    Err(e) => {
                        self.pool.free(f);
                        l.counters.drop(DropReason::Protect, &mut self.leg_drops);
                        return Err(format!("protect failed: {e}"));
                    }
                }
            }
        }
        if rtcp && protect {
            // RTCP proper; not a STUN answer on the RTCP port.
            l.counters.tx_rtcp += 1;
        }
        l.counters.tx_bytes += len as u64;
        self.tx.push(TxPacket {
            frame: f,
            start: HEADROOM as u16,
            len: len as u16,
            sock,
            dst,
            tag: tag(slot, leg),
        });
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += len as u64;
        Ok(())
    }

    // ------------------------------------------------------------------ pipeline

    fn free(&mut self, f: FrameId) {
        self.pool.free(f);
    }

    /// One received datagram.
    fn handle(&mut self, p: RxPacket, check: Option<(u32, u8, PendingCheck)>) {
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += u64::from(p.len);
        let start = usize::from(p.start);
        let end = start + usize::from(p.len);
        let (slot, leg, on_rtcp_sock, local) = {
            let Some(entry) = self.socks.get(p.sock as usize).and_then(|e| e.as_ref()) else {
                self.counters.orphaned += 1;
                self.free(p.frame);
                return;
            };
            let data = &self.pool.frame(p.frame)[start..end];
            match entry.owner {
                Owner::Leg { slot, leg, rtcp } => (slot, leg, rtcp, entry.local),
                Owner::Shared => match self.shared_flow(&p, data) {
                    Some((slot, leg)) => (slot, leg, false, entry.local),
                    None => {
                        let local = entry.local;
                        self.unknown_flow(p, local);
                        return;
                    }
                },
            }
        };
        let kind = classify(&self.pool.frame(p.frame)[start..end]);
        // A tag checked ahead for the leg the packet was found on then.
        let check = check
            .filter(|&(s, l, _)| (s, l) == (slot, leg))
            .map(|(_, _, c)| c);
        match kind {
            PacketKind::Rtp if !on_rtcp_sock => self.relay(slot, usize::from(leg), p, false, check),
            PacketKind::Rtp | PacketKind::Rtcp => self.relay(slot, usize::from(leg), p, true, None),
            PacketKind::Stun | PacketKind::Dtls | PacketKind::Zrtp | PacketKind::TurnChannel => {
                let Some(id) = self.sessions[slot as usize].as_ref().map(|s| s.id) else {
                    self.free(p.frame);
                    return;
                };
                let data = self.pool.frame(p.frame)[start..end].to_vec();
                self.free(p.frame);
                self.counters.to_control += 1;
                self.event(Event::Datagram {
                    leg: Some((id, usize::from(leg))),
                    kind,
                    local,
                    src: p.src,
                    data,
                });
            }
            PacketKind::Unknown => {
                if let Some(s) = self.sessions[slot as usize].as_mut() {
                    s.legs[usize::from(leg)]
                        .counters
                        .drop(DropReason::Malformed, &mut self.leg_drops);
                }
                self.free(p.frame);
            }
        }
    }

    /// The session and leg of a datagram on a shared port. A signalled SSRC wins
    /// over the address: several legs may share one remote transport (bundled
    /// streams).
    fn shared_flow(&self, p: &RxPacket, data: &[u8]) -> Option<(u32, u8)> {
        let ssrc = match classify(data) {
            PacketKind::Rtp if data.len() >= 12 => Some(be32(data, 8)),
            PacketKind::Rtcp if data.len() >= 8 => Some(be32(data, 4)),
            _ => None,
        };
        ssrc.and_then(|s| self.ssrc_flows.get(&(p.sock, s)))
            .or_else(|| self.flows.get(&(p.sock, p.src)))
            .copied()
    }

    /// A datagram on a shared port that matches no flow: STUN and DTLS go to the
    /// control plane (ICE and handshakes start before any media); the rest is
    /// counted and dropped.
    fn unknown_flow(&mut self, p: RxPacket, local: Option<SocketAddr>) {
        let start = usize::from(p.start);
        let data = &self.pool.frame(p.frame)[start..start + usize::from(p.len)];
        let kind = classify(data);
        if matches!(kind, PacketKind::Stun | PacketKind::Dtls) {
            let data = data.to_vec();
            self.counters.to_control += 1;
            self.event(Event::Datagram {
                leg: None,
                kind,
                local,
                src: p.src,
                data,
            });
        } else {
            self.counters.unknown_flow += 1;
        }
        self.free(p.frame);
    }

    /// RTP or RTCP received on leg `li` of session `slot`: check the source,
    /// unprotect, account, latch, rewrite, protect for the other leg, queue.
    ///
    /// `check` is the packet's SRTP tag computed ahead by `precheck`, if it was.
    fn relay(
        &mut self,
        slot: u32,
        li: usize,
        p: RxPacket,
        rtcp: bool,
        check: Option<PendingCheck>,
    ) {
        let now = self.now_ns;
        let Some(s) = self
            .sessions
            .get_mut(slot as usize)
            .and_then(Option::as_mut)
        else {
            self.counters.orphaned += 1;
            self.pool.free(p.frame);
            return;
        };
        let sid = s.id;
        let to_control = rtcp && s.rtcp_to_control;
        let terminate = rtcp && s.rtcp_mode == RtcpMode::Terminate;
        let [l0, l1] = &mut s.legs;
        let (inl, outl) = if li == 0 { (l0, l1) } else { (l1, l0) };
        let start = usize::from(p.start);
        let frame = self.pool.frame_mut(p.frame);
        let mut len = usize::from(p.len);

        // Source check (before authentication; latching happens after it).
        let separate_rtcp = rtcp && !inl.rtcp_mux && inl.rtcp_sock.is_some();
        let current = if separate_rtcp {
            inl.remote_rtcp
        } else {
            inl.remote
        };
        let source = match current {
            Some(r) if r == p.src => Source::Current,
            Some(_) => Source::Moved,
            None => Source::New,
        };
        let ssrc_at = if rtcp { 4 } else { 8 };
        if len < ssrc_at + 4 {
            inl.counters
                .drop(DropReason::Malformed, &mut self.leg_drops);
            self.pool.free(p.frame);
            return;
        }
        let pkt_ssrc = be32(&frame[start..], ssrc_at);
        if source != Source::Current {
            let allowed = match inl.latch {
                // Only the control plane sets an ICE leg's remote.
                LatchMode::Nominated => false,
                // No remote yet: the first packet sets it.
                _ if source == Source::New => true,
                LatchMode::Fixed => false,
                // Authentication (below) decides for SRTP legs.
                LatchMode::Learn { .. } if inl.srtp_in.is_some() => true,
                LatchMode::Learn { relatch_after } => match inl.latched_ssrc {
                    // No RTP accepted since the address was set: a signalled
                    // (SDP) address is a guess that NAT often makes wrong, so the
                    // first valid RTP packet latches (symmetric RTP). RTCP never
                    // moves the RTP address of a plain leg on its own; a separate
                    // RTCP port learns from its first packet.
                    None => !rtcp || separate_rtcp,
                    // Latched: only the latched source's SSRC may move it, and the
                    // RTP address only after that source fell silent.
                    Some(latched) => {
                        latched == pkt_ssrc
                            && (separate_rtcp
                                || now.saturating_sub(inl.last_rx_ns)
                                    >= relatch_after.as_nanos() as u64)
                    }
                },
            };
            if !allowed {
                inl.counters
                    .drop(DropReason::WrongSource, &mut self.leg_drops);
                self.pool.free(p.frame);
                return;
            }
        }

        if inl.keys_pending {
            // Kept only from the leg's remote once it has one (signalled,
            // nominated or the handshake's peer), and within its share.
            let room = self.early.len() < EARLY_MAX
                && self
                    .early
                    .iter()
                    .filter(|e| e.id == sid && usize::from(e.leg) == li)
                    .count()
                    < EARLY_PER_LEG;
            if room && source != Source::Moved {
                self.early.push_back(Early {
                    id: sid,
                    slot,
                    leg: li as u8,
                    rtcp,
                    at_ns: now,
                    p,
                });
                self.counters.early_held += 1;
            } else {
                inl.counters.drop(DropReason::NoKeys, &mut self.leg_drops);
                self.pool.free(p.frame);
            }
            return;
        }

        // Authenticate and decrypt in place, or check the plain packet.
        let pkt = &mut frame[start..start + len];
        let checked = match inl.srtp_in.as_mut() {
            Some(ctx) => {
                let r = match check {
                    _ if rtcp => ctx.unprotect_rtcp(pkt),
                    Some(check) => ctx.unprotect_rtp_finish(pkt, check),
                    None => ctx.unprotect_rtp(pkt),
                };
                r.map(|u| u.len).map_err(DropReason::of_srtp)
            }
            None => {
                let ok = if rtcp {
                    rtp_core::rtcp::validate_compound(pkt, false).is_ok()
                } else {
                    rtp_core::RtpPacket::new_checked(&*pkt).is_ok()
                };
                if ok {
                    Ok(len)
                } else {
                    Err(DropReason::Malformed)
                }
            }
        };
        match checked {
            Ok(n) => len = n,
            Err(r) => {
                inl.counters.drop(r, &mut self.leg_drops);
                self.pool.free(p.frame);
                return;
            }
        }

        // Accepted: latch, count, statistics.
        let mut latched = None;
        if source != Source::Current {
            if separate_rtcp {
                inl.remote_rtcp = Some(p.src);
            } else {
                if let Some(old) = inl.remote {
                    if inl.shared {
                        self.flows.remove(&(inl.rtp_sock, old));
                    }
                }
                inl.remote = Some(p.src);
                if inl.shared {
                    self.flows.insert((inl.rtp_sock, p.src), (slot, li as u8));
                }
            }
            latched = Some(Event::Latched {
                session: sid,
                leg: li,
                rtcp: separate_rtcp,
                addr: p.src,
            });
        }
        inl.counters.rx_bytes += u64::from(p.len);
        let pkt = &mut frame[start..start + len];
        if rtcp {
            inl.counters.rx_rtcp += 1;
        } else {
            inl.counters.rx_rtp += 1;
            inl.last_rx_ns = now;
            // The source's current SSRC: what a later move must carry (a peer
            // that changes SSRC on the same address keeps its latch).
            inl.latched_ssrc = Some(pkt_ssrc);
            let seq = u16::from_be_bytes([pkt[2], pkt[3]]);
            let ts = be32(pkt, 4);
            let fresh = || RxStats {
                stats: ReceiverStats::new(pkt_ssrc, inl.clock_rate),
                burst: BurstGapTracker::default(),
            };
            let rx = match &mut inl.rx {
                Some(rx) => {
                    // A new source starts its statistics over in the same box:
                    // a peer alternating SSRCs costs no allocation per packet.
                    if rx.stats.ssrc() != pkt_ssrc {
                        **rx = fresh();
                    }
                    rx
                }
                None => inl.rx.insert(Box::new(fresh())),
            };
            let outcome = rx.stats.on_rtp(seq, ts, Duration::from_nanos(now));
            rx.burst.on_outcome(outcome);
        }
        let copy = if to_control { Some(pkt.to_vec()) } else { None };
        // RTCP terminated by the control plane: only feedback goes on.
        if terminate {
            len = keep_feedback(&mut frame[start..start + len]);
            if len == 0 {
                self.pool.free(p.frame);
                self.after_relay(slot, li, sid, latched, copy);
                return;
            }
        }

        // Forward on the other leg.
        let target = if rtcp {
            outl.rtcp_target()
        } else {
            outl.remote.map(|r| (outl.rtp_sock, r))
        };
        let forwarded = match target {
            _ if outl.keys_pending => {
                outl.counters.drop(DropReason::NoKeys, &mut self.leg_drops);
                false
            }
            None => {
                outl.counters
                    .drop(DropReason::NoRemote, &mut self.leg_drops);
                false
            }
            Some((sock, dst)) => {
                let pkt = &mut frame[start..start + len];
                if let Some(r) = &outl.rewrite {
                    rewrite(r, pkt, rtcp);
                }
                if rtcp {
                    // Report blocks and feedback from this leg's peer name the SSRC
                    // we sent it; the other peer knows its own SSRC.
                    let from = inl.rewrite.as_ref().and_then(|r| r.ssrc);
                    if let (Some(from), Some(to)) = (from, outl.latched_ssrc) {
                        map_media_ssrc(pkt, from, to);
                    }
                } else {
                    outl.tx_ssrc = be32(pkt, 8);
                    outl.tx_rtp_ts = be32(pkt, 4);
                    outl.tx_last_ns = now;
                    outl.tx_payload += rtp_payload_len(pkt) as u64;
                }
                let r = match outl.srtp_out.as_mut() {
                    None => Ok(len),
                    Some(ctx) => {
                        let room = &mut frame[start..FRAME_SIZE];
                        if rtcp {
                            ctx.protect_rtcp(room, len)
                        } else {
                            // The tag is written with the next one's, before the
                            // batch is sent (`write_tags`).
                            ctx.protect_rtp_deferred(room, len).map(|(n, tag)| {
                                if let Some(tag) = tag {
                                    self.tags.push((p.frame, p.start, tag));
                                }
                                n
                            })
                        }
                    }
                };
                match r {
                    Ok(n) => {
                        if rtcp {
                            outl.counters.tx_rtcp += 1;
                        } else {
                            outl.counters.tx_rtp += 1;
                        }
                        outl.counters.tx_bytes += n as u64;
                        self.tx.push(TxPacket {
                            frame: p.frame,
                            start: p.start,
                            len: n as u16,
                            sock,
                            dst,
                            tag: tag(slot, 1 - li),
                        });
                        self.counters.tx_packets += 1;
                        self.counters.tx_bytes += n as u64;
                        true
                    }
                    Err(_) => {
                        outl.counters.drop(DropReason::Protect, &mut self.leg_drops);
                        false
                    }
                }
            }
        };
        if !forwarded {
            self.pool.free(p.frame);
        }
        self.after_relay(slot, li, sid, latched, copy);
    }

    /// Events of a relayed packet: the latch change and the RTCP copy.
    fn after_relay(
        &mut self,
        slot: u32,
        li: usize,
        sid: SessionId,
        latched: Option<Event>,
        copy: Option<Vec<u8>>,
    ) {
        if let Some(e) = latched {
            self.event(e);
        }
        if let Some(data) = copy {
            if !self.event(Event::Rtcp {
                session: sid,
                leg: li,
                data,
            }) {
                if let Some(s) = self.sessions[slot as usize].as_mut() {
                    s.legs[li]
                        .counters
                        .drop(DropReason::RingFull, &mut self.leg_drops);
                }
            }
        }
    }
}

/// A leg's rewrite rules as it keeps them: nothing for the identity.
fn boxed_rewrite(r: crate::session::Rewrite) -> Option<Box<crate::session::Rewrite>> {
    (!r.is_identity()).then(|| Box::new(r))
}

/// Applies a leg's rewrite rules to a plaintext RTP or RTCP packet.
#[inline]
fn rewrite(r: &crate::session::Rewrite, pkt: &mut [u8], rtcp: bool) {
    if rtcp {
        // The first SSRC of every packet in the compound is the sender's (SR, RR,
        // SDES first chunk, BYE, APP, feedback).
        if let Some(ssrc) = r.ssrc {
            let mut at = 0;
            while at + 8 <= pkt.len() {
                pkt[at + 4..at + 8].copy_from_slice(&ssrc.to_be_bytes());
                let words = usize::from(u16::from_be_bytes([pkt[at + 2], pkt[at + 3]]));
                at += 4 * (words + 1);
            }
        }
        return;
    }
    if let Some(ssrc) = r.ssrc {
        pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
    }
    if r.seq_offset != 0 {
        let seq = u16::from_be_bytes([pkt[2], pkt[3]]).wrapping_add(r.seq_offset);
        pkt[2..4].copy_from_slice(&seq.to_be_bytes());
    }
    let pt = pkt[1] & 0x7f;
    if let Some(&(_, to)) = r.pt_map.iter().find(|(from, _)| *from == pt) {
        pkt[1] = (pkt[1] & 0x80) | (to & 0x7f);
    }
}
