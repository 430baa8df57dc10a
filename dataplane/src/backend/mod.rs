//! I/O backends: "receive a batch of datagrams into pool frames with their source,
//! transmit a batch of frames". The pipeline only sees [`RxPacket`] and [`TxPacket`],
//! never a socket, so a kernel-bypass backend (AF_XDP) fits the same trait.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::Duration;

use crate::pool::{FrameId, FramePool};

pub mod mmsg;
pub mod uring;

/// Index of a socket in its worker's socket table.
pub type SockId = u32;

/// A received datagram: its bytes are `frame[start..start + len]`.
#[derive(Debug, Clone, Copy)]
pub struct RxPacket {
    /// The frame holding the datagram (owned by the receiver of this value).
    pub frame: FrameId,
    /// Offset of the first byte in the frame.
    pub start: u16,
    /// Datagram length.
    pub len: u16,
    /// Socket it arrived on.
    pub sock: SockId,
    /// Sender.
    pub src: SocketAddr,
}

/// A datagram to send: `frame[start..start + len]` from socket `sock` to `dst`.
#[derive(Debug, Clone, Copy)]
pub struct TxPacket {
    /// The frame (handed to the backend, which frees it once sent).
    pub frame: FrameId,
    /// Offset of the first byte.
    pub start: u16,
    /// Length.
    pub len: u16,
    /// Socket to send from.
    pub sock: SockId,
    /// Destination.
    pub dst: SocketAddr,
    /// Caller's tag, returned with a failure so it can be counted where it belongs.
    pub tag: u32,
}

/// A send that failed.
#[derive(Debug, Clone, Copy)]
pub struct TxFailure {
    /// The tag of the packet.
    pub tag: u32,
    /// Why.
    pub kind: io::ErrorKind,
}

/// Counters kept by a backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackendCounters {
    /// Datagrams larger than a frame, dropped.
    pub truncated: u64,
    /// Receive attempts that found no free frame (the datagrams stay queued in the
    /// kernel or, for io_uring, are dropped by it).
    pub no_frame: u64,
    /// Receive errors other than "nothing to read".
    pub rx_errors: u64,
    /// Receive system calls (mmsg) or receive completions (io_uring).
    pub rx_calls: u64,
    /// Send system calls (mmsg) or submissions (io_uring).
    pub tx_calls: u64,
    /// Datagrams sent as part of a GSO super-datagram.
    pub gso_segments: u64,
    /// GSO sends the kernel refused (EIO: the device cannot checksum the
    /// segments; EINVAL: the socket sends without UDP checksums). The first one
    /// turns GSO off for the backend; the refused datagrams were sent one by one.
    pub gso_fallbacks: u64,
    /// io_uring submissions given up after bounded retries (the kernel kept
    /// refusing them): a send counted as failed, a receive armed again later.
    pub submit_failures: u64,
}

/// Which backend a worker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// mio readiness + recvmmsg/sendmmsg.
    Mmsg,
    /// io_uring: multishot recvmsg with a provided-buffer ring, batched sendmsg.
    IoUring,
}

impl BackendKind {
    /// Short name, as used in configuration and reports.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Mmsg => "mmsg",
            BackendKind::IoUring => "io_uring",
        }
    }
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "mmsg" | "mio" => Ok(BackendKind::Mmsg),
            "io_uring" | "uring" | "io-uring" => Ok(BackendKind::IoUring),
            _ => Err(format!("unknown backend {s:?} (expected mmsg or io_uring)")),
        }
    }
}

/// The interface every backend implements.
pub trait IoBackend: Send {
    /// Which backend this is.
    fn kind(&self) -> BackendKind;
    /// Starts receiving on a socket (non-blocking UDP).
    fn add_socket(&mut self, id: SockId, fd: RawFd) -> io::Result<()>;
    /// Stops receiving on a socket; the caller closes it afterwards.
    fn remove_socket(&mut self, id: SockId, fd: RawFd);
    /// Waits up to `timeout` for work (zero: do not wait), then appends up to `max`
    /// received datagrams to `rx` and any completed send failures to `failed`.
    /// Returns whether the waker fired.
    fn recv(
        &mut self,
        pool: &mut FramePool,
        timeout: Duration,
        max: usize,
        rx: &mut Vec<RxPacket>,
        failed: &mut Vec<TxFailure>,
    ) -> io::Result<bool>;
    /// Transmits and drains `tx`; frames go back to the pool once the kernel is
    /// done with them.
    fn send(&mut self, pool: &mut FramePool, tx: &mut Vec<TxPacket>, failed: &mut Vec<TxFailure>);
    /// Sends handed to the kernel whose completion has not been seen yet.
    fn in_flight(&self) -> usize;
    /// Counters.
    fn counters(&self) -> BackendCounters;
    /// Interrupt moderation for [`IdlePolicy::Coalesce`](crate::IdlePolicy): once a
    /// wait finds work, wait up to `wait` longer until `batch` completions are
    /// ready. Backends that cannot wait for a count keep waking on the first.
    fn set_coalesce(&mut self, _batch: usize, _wait: Duration) {}
}

/// Whether io_uring with the features the io_uring backend needs works here.
pub fn probe_io_uring() -> Result<(), String> {
    uring::probe()
}
