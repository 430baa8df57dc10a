//! The rings between the control plane and a worker: bounded, lock-free
//! (crossbeam `ArrayQueue`), one command ring in and one event ring out per worker.
//! A full ring is counted by whoever pushes; nobody waits.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use rtp_core::demux::PacketKind;

use crate::session::{LegIndex, LegUpdate, SessionId, SessionSnapshot, SessionSpec};
use crate::sys::EventFd;
use crate::worker::WorkerCounters;

/// What the control plane asks of a worker.
#[derive(Debug)]
pub enum Command {
    /// Start relaying a session (its sockets move into the worker).
    AddSession(Box<SessionSpec>),
    /// Change a leg.
    UpdateLeg {
        /// Session.
        session: SessionId,
        /// Leg.
        leg: LegIndex,
        /// The change.
        update: Box<LegUpdate>,
    },
    /// Stop relaying a session and close its sockets; answered with
    /// [`Event::SessionRemoved`] carrying its final numbers.
    RemoveSession(SessionId),
    /// Send a datagram on a leg: RTCP (SRTCP-protected when the leg is secure and
    /// `protect` is set) goes to the leg's RTCP destination, anything else (DTLS,
    /// STUN) to `to` or the leg's RTP remote, unchanged.
    SendOnLeg {
        /// Session.
        session: SessionId,
        /// Leg.
        leg: LegIndex,
        /// The datagram.
        data: Vec<u8>,
        /// It is RTCP: send to the RTCP destination, SRTCP-protect if `protect`.
        rtcp: bool,
        /// Apply the leg's outbound SRTP/SRTCP.
        protect: bool,
        /// Explicit destination (e.g. a STUN answer to an unlatched address).
        to: Option<SocketAddr>,
    },
    /// Send a datagram from a shared socket (e.g. a STUN answer to a flow that has
    /// no session yet).
    SendFromShared {
        /// Index of the shared address.
        index: usize,
        /// Destination.
        to: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Report numbers: one session or all; answered with [`Event::Stats`].
    Snapshot {
        /// `None`: every session, in one turn of the worker (with many sessions a
        /// long one: periodic sweeps use [`Command::SnapshotSlots`] instead).
        session: Option<SessionId>,
        /// Echoed in the answer.
        token: u64,
    },
    /// Report the numbers of the sessions in the worker's slots from `from` on,
    /// at most `max` of them; answered with [`Event::Stats`] whose `next_slot`
    /// says where to continue. A periodic sweep asks in such slices so that
    /// neither the worker nor the control plane spends a long stretch on it.
    SnapshotSlots {
        /// First slot to look at.
        from: u32,
        /// Most sessions to report.
        max: u32,
        /// Echoed in the answer.
        token: u64,
    },
}

/// What a worker tells the control plane.
#[derive(Debug)]
pub enum Event {
    /// A session was added.
    SessionAdded(SessionId),
    /// A session could not be added or updated.
    Error {
        /// Session, if the error concerns one.
        session: Option<SessionId>,
        /// What went wrong.
        message: String,
    },
    /// A session was removed; its final numbers.
    SessionRemoved(Box<SessionSnapshot>),
    /// A datagram for the control plane (STUN, DTLS, or from an unknown flow on a
    /// shared port).
    Datagram {
        /// Owning session and leg, when the flow is known.
        leg: Option<(SessionId, LegIndex)>,
        /// Its class (RFC 7983).
        kind: PacketKind,
        /// The local address it arrived on.
        local: Option<SocketAddr>,
        /// The sender.
        src: SocketAddr,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A received RTCP packet (decrypted), for sessions that asked for copies.
    Rtcp {
        /// Session.
        session: SessionId,
        /// Leg it arrived on.
        leg: LegIndex,
        /// The compound packet.
        data: Vec<u8>,
    },
    /// A leg's remote address was learned or changed.
    Latched {
        /// Session.
        session: SessionId,
        /// Leg.
        leg: LegIndex,
        /// RTCP (separate port) rather than RTP.
        rtcp: bool,
        /// The new remote.
        addr: SocketAddr,
    },
    /// Answer to [`Command::Snapshot`].
    Stats {
        /// The request's token.
        token: u64,
        /// Which worker answers.
        worker: usize,
        /// Worker counters.
        counters: Box<WorkerCounters>,
        /// Sessions asked for.
        sessions: Vec<SessionSnapshot>,
        /// For [`Command::SnapshotSlots`]: the slot to continue from, `None`
        /// when the worker's sessions have all been reported.
        next_slot: Option<u32>,
    },
}

/// Shared between a worker and the control plane: the two rings, the wakers and
/// the counters of full rings.
#[derive(Debug)]
pub(crate) struct Channel {
    pub commands: ArrayQueue<Command>,
    pub events: ArrayQueue<Event>,
    /// Wakes the worker when it waits in the kernel.
    pub wake: EventFd,
    /// Commands refused because the ring was full.
    pub commands_refused: AtomicU64,
}

/// The control plane's handle to one worker.
#[derive(Debug, Clone)]
pub struct WorkerHandle {
    pub(crate) index: usize,
    pub(crate) chan: Arc<Channel>,
}

impl WorkerHandle {
    /// The worker's index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Queues a command and wakes the worker. A full ring gives the command back
    /// (and is counted); the caller decides whether to retry.
    pub fn send(&self, cmd: Command) -> Result<(), Command> {
        match self.chan.commands.push(cmd) {
            Ok(()) => {
                self.chan.wake.notify();
                Ok(())
            }
            Err(c) => {
                self.chan.commands_refused.fetch_add(1, Ordering::Relaxed);
                Err(c)
            }
        }
    }

    /// Takes the next event of this worker, if any.
    pub fn poll_event(&self) -> Option<Event> {
        self.chan.events.pop()
    }

    /// Commands refused because the ring was full.
    pub fn commands_refused(&self) -> u64 {
        self.chan.commands_refused.load(Ordering::Relaxed)
    }
}
