//! mio readiness + recvmmsg/sendmmsg (+ UDP GSO) backend.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use super::{BackendCounters, BackendKind, IoBackend, RxPacket, SockId, TxFailure, TxPacket};
use crate::pool::{FrameId, FramePool, HEADROOM, MAX_DATAGRAM};
use crate::sys::{MmsgBatch, Received, RecvSlot, SendMsg, GSO_MAX_SEGMENTS};

const WAKER: Token = Token(usize::MAX);

#[derive(Debug, Clone, Copy, Default)]
struct SockState {
    fd: RawFd,
    live: bool,
    queued: bool,
}

/// The mio + recvmmsg/sendmmsg backend.
pub struct MmsgBackend {
    poll: Poll,
    events: Events,
    waker: RawFd,
    socks: Vec<SockState>,
    ready: VecDeque<SockId>,
    batch: MmsgBatch,
    batch_size: usize,
    gso: bool,
    turns_since_poll: u32,
    // Scratch, reused every turn.
    frames: Vec<FrameId>,
    slots: Vec<RecvSlot>,
    received: Vec<Received>,
    msgs: Vec<SendMsg>,
    msg_pkts: Vec<(usize, usize)>,
    taken: Vec<bool>,
    order: Vec<usize>,
    counters: BackendCounters,
}

// SAFETY: the raw pointers in the scratch vectors point into the worker's frame
// pool and are rewritten before every call; the backend is used by one thread.
unsafe impl Send for MmsgBackend {}

impl std::fmt::Debug for MmsgBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgBackend")
            .field("batch", &self.batch_size)
            .field("gso", &self.gso)
            .finish_non_exhaustive()
    }
}

impl MmsgBackend {
    /// A backend moving up to `batch` datagrams per system call; `waker` is an
    /// eventfd that interrupts a wait; `gso` enables UDP_SEGMENT for runs of
    /// equal-sized datagrams to one destination.
    pub fn new(batch: usize, waker: RawFd, gso: bool) -> io::Result<Self> {
        let batch = batch.clamp(1, 1024);
        let poll = Poll::new()?;
        poll.registry()
            .register(&mut SourceFd(&waker), WAKER, Interest::READABLE)?;
        Ok(MmsgBackend {
            poll,
            events: Events::with_capacity(1024),
            waker,
            socks: Vec::new(),
            ready: VecDeque::with_capacity(1024),
            batch: MmsgBatch::new(batch),
            batch_size: batch,
            gso,
            turns_since_poll: 0,
            frames: Vec::with_capacity(batch),
            slots: Vec::with_capacity(batch),
            received: Vec::with_capacity(batch),
            msgs: Vec::with_capacity(batch),
            msg_pkts: Vec::with_capacity(batch),
            taken: Vec::with_capacity(batch),
            order: Vec::with_capacity(batch),
            counters: BackendCounters::default(),
        })
    }

    fn poll(&mut self, timeout: Duration) -> io::Result<bool> {
        self.turns_since_poll = 0;
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut woken = false;
        for ev in self.events.iter() {
            if ev.token() == WAKER {
                woken = true;
                continue;
            }
            let id = ev.token().0;
            if let Some(s) = self.socks.get_mut(id) {
                if s.live && !s.queued {
                    s.queued = true;
                    self.ready.push_back(id as SockId);
                }
            }
        }
        if woken {
            crate::sys::EventFd::drain_fd(self.waker);
        }
        Ok(woken)
    }
}

impl IoBackend for MmsgBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Mmsg
    }

    fn add_socket(&mut self, id: SockId, fd: RawFd) -> io::Result<()> {
        let i = id as usize;
        if self.socks.len() <= i {
            self.socks.resize(i + 1, SockState::default());
        }
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), Token(i), Interest::READABLE)?;
        // Edge-triggered: anything already queued must be read without an event.
        self.socks[i] = SockState {
            fd,
            live: true,
            queued: true,
        };
        self.ready.push_back(id);
        Ok(())
    }

    fn remove_socket(&mut self, id: SockId, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(s) = self.socks.get_mut(id as usize) {
            s.live = false;
        }
        // A queued id for a dead socket is skipped when reached.
    }

    fn recv(
        &mut self,
        pool: &mut FramePool,
        timeout: Duration,
        max: usize,
        rx: &mut Vec<RxPacket>,
        _failed: &mut Vec<TxFailure>,
    ) -> io::Result<bool> {
        let mut woken = false;
        if self.ready.is_empty() {
            woken = self.poll(timeout)?;
        } else {
            self.turns_since_poll += 1;
            if self.turns_since_poll >= 4 {
                woken = self.poll(Duration::ZERO)?;
            }
        }
        if woken {
            // A command was queued before whatever arrived with it: the worker
            // applies it first (e.g. a leg's new remote before the packet that
            // the peer sent after hearing the answer).
            return Ok(true);
        }
        let target = rx.len() + max;
        while rx.len() < target {
            let Some(&id) = self.ready.front() else { break };
            let st = self.socks[id as usize];
            if !st.live {
                self.ready.pop_front();
                self.socks[id as usize].queued = false;
                continue;
            }
            let want = (target - rx.len()).min(self.batch_size);
            self.frames.clear();
            self.slots.clear();
            for _ in 0..want {
                let Some(f) = pool.alloc() else { break };
                self.frames.push(f);
                self.slots.push(RecvSlot {
                    // SAFETY: HEADROOM + MAX_DATAGRAM < FRAME_SIZE.
                    ptr: unsafe { pool.ptr(f).add(HEADROOM) },
                    cap: MAX_DATAGRAM,
                });
            }
            if self.frames.is_empty() {
                self.counters.no_frame += 1;
                break;
            }
            self.received.clear();
            self.counters.rx_calls += 1;
            let n = match self.batch.recv(st.fd, &self.slots, &mut self.received) {
                Ok(n) => n,
                Err(_) => {
                    self.counters.rx_errors += 1;
                    0
                }
            };
            for (i, r) in self.received.iter().enumerate() {
                let f = self.frames[i];
                match r.src {
                    Some(src) if !r.truncated => rx.push(RxPacket {
                        frame: f,
                        start: HEADROOM as u16,
                        len: r.len as u16,
                        sock: id,
                        src,
                    }),
                    _ => {
                        self.counters.truncated += 1;
                        pool.free(f);
                    }
                }
            }
            for &f in &self.frames[n..] {
                pool.free(f);
            }
            let asked = self.frames.len();
            self.ready.pop_front();
            if n < asked {
                // Drained: wait for the next edge.
                self.socks[id as usize].queued = false;
            } else {
                // More may be queued: come back after the other ready sockets.
                self.ready.push_back(id);
            }
        }
        Ok(woken)
    }

    fn send(&mut self, pool: &mut FramePool, tx: &mut Vec<TxPacket>, failed: &mut Vec<TxFailure>) {
        let n = tx.len();
        self.taken.clear();
        self.taken.resize(n, false);
        for first in 0..n {
            if self.taken[first] {
                continue;
            }
            let sock = tx[first].sock;
            // All packets of this socket, in order (per-socket order is preserved).
            self.order.clear();
            for (j, p) in tx.iter().enumerate().skip(first) {
                if !self.taken[j] && p.sock == sock {
                    self.taken[j] = true;
                    self.order.push(j);
                }
            }
            let fd = match self.socks.get(sock as usize) {
                Some(s) if s.live => s.fd,
                _ => {
                    for &j in &self.order {
                        failed.push(TxFailure {
                            tag: tx[j].tag,
                            kind: io::ErrorKind::NotConnected,
                        });
                    }
                    continue;
                }
            };
            // Build messages: runs of equal-sized datagrams to one destination
            // become one GSO message when enabled.
            let mut k = 0;
            while k < self.order.len() {
                self.msgs.clear();
                self.msg_pkts.clear();
                let mut iov = 0;
                while k < self.order.len() && self.msgs.len() < self.batch.capacity() {
                    let p = tx[self.order[k]];
                    let mut run = 1;
                    if self.gso {
                        let mut total = usize::from(p.len);
                        while k + run < self.order.len() && run < GSO_MAX_SEGMENTS {
                            let q = tx[self.order[k + run]];
                            if q.dst != p.dst || q.len > p.len || total + usize::from(q.len) > 65000
                            {
                                break;
                            }
                            total += usize::from(q.len);
                            run += 1;
                            if q.len < p.len {
                                break; // a shorter segment must be the last
                            }
                        }
                    }
                    for r in 0..run {
                        let q = tx[self.order[k + r]];
                        // SAFETY: start + len lies inside the frame (set by the pipeline).
                        let ptr = unsafe { pool.ptr(q.frame).add(usize::from(q.start)) };
                        self.batch.set_iov(iov + r, ptr, usize::from(q.len));
                    }
                    self.msgs.push(SendMsg {
                        dst: p.dst,
                        first_iov: iov,
                        iov_count: run,
                        segment: p.len,
                    });
                    self.msg_pkts.push((k, run));
                    if run > 1 {
                        self.counters.gso_segments += run as u64;
                    }
                    iov += run;
                    k += run;
                }
                // Send the messages; on an error skip the refused one and go on,
                // except for a full socket buffer, which fails the rest.
                let mut m = 0;
                while m < self.msgs.len() {
                    self.counters.tx_calls += 1;
                    match self.batch.send(fd, &self.msgs[m..]) {
                        Ok(sent) if sent > 0 => m += sent,
                        Ok(_) => {
                            m = self.fail_from(
                                m,
                                self.msgs.len(),
                                io::ErrorKind::WouldBlock,
                                tx,
                                failed,
                            )
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            m = self.fail_from(m, self.msgs.len(), e.kind(), tx, failed)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if self.msgs[m].iov_count > 1 && gso_refused(&e) => {
                            // This path cannot segment (a device without checksum
                            // offload says EIO; a socket without UDP checksums,
                            // EINVAL): GSO is off from now on, and this message's
                            // datagrams go one by one.
                            self.gso = false;
                            self.counters.gso_fallbacks += 1;
                            self.counters.gso_segments -= self.msgs[m].iov_count as u64;
                            m = if self.send_one_by_one(fd, m, tx, failed) {
                                m + 1
                            } else {
                                let full = io::ErrorKind::WouldBlock;
                                self.fail_from(m + 1, self.msgs.len(), full, tx, failed)
                            };
                        }
                        Err(e) => m = self.fail_from(m, m + 1, e.kind(), tx, failed),
                    }
                }
            }
        }
        for p in tx.drain(..) {
            pool.free(p.frame);
        }
    }

    fn in_flight(&self) -> usize {
        0
    }

    fn counters(&self) -> BackendCounters {
        self.counters
    }
}

/// Whether a GSO send failed because segmentation cannot be done on its path
/// (rather than because of the destination or the socket buffer).
fn gso_refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EIO) | Some(libc::EINVAL))
}

impl MmsgBackend {
    /// Whether later sends may use GSO (false once the kernel refused it).
    pub fn gso(&self) -> bool {
        self.gso
    }

    /// Sends the segments of GSO message `m` as separate datagrams. Failed ones
    /// are recorded; returns false when the socket buffer is full (the caller
    /// fails the rest of the batch, as for any full buffer).
    fn send_one_by_one(
        &mut self,
        fd: RawFd,
        m: usize,
        tx: &[TxPacket],
        failed: &mut Vec<TxFailure>,
    ) -> bool {
        let msg = self.msgs[m];
        let (k, _) = self.msg_pkts[m];
        for r in 0..msg.iov_count {
            let one = SendMsg {
                dst: msg.dst,
                first_iov: msg.first_iov + r,
                iov_count: 1,
                segment: 0,
            };
            let sent = loop {
                self.counters.tx_calls += 1;
                match self.batch.send(fd, std::slice::from_ref(&one)) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r,
                }
            };
            let kind = match sent {
                Ok(1) => continue,
                Ok(_) => io::ErrorKind::WouldBlock,
                Err(e) => e.kind(),
            };
            failed.push(TxFailure {
                tag: tx[self.order[k + r]].tag,
                kind,
            });
            if kind == io::ErrorKind::WouldBlock {
                for rest in r + 1..msg.iov_count {
                    failed.push(TxFailure {
                        tag: tx[self.order[k + rest]].tag,
                        kind,
                    });
                }
                return false;
            }
        }
        true
    }

    /// Records messages `from..to` of the current send as failed; returns `to`.
    fn fail_from(
        &self,
        from: usize,
        to: usize,
        kind: io::ErrorKind,
        tx: &[TxPacket],
        failed: &mut Vec<TxFailure>,
    ) -> usize {
        for &(k, run) in &self.msg_pkts[from..to] {
            for r in 0..run {
                failed.push(TxFailure {
                    tag: tx[self.order[k + r]].tag,
                    kind,
                });
            }
        }
        to
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{probe_gso, EventFd};
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    /// A run of equal datagrams to one destination goes as one GSO message; a
    /// kernel that refuses to segment it (here: a socket told to send without
    /// UDP checksums, which makes Linux answer EINVAL, as a device without
    /// checksum offload answers EIO) must not lose the datagrams: they go one
    /// by one, and GSO stays off afterwards.
    #[test]
    fn a_refused_gso_send_falls_back_to_single_datagrams() {
        if !probe_gso() {
            eprintln!("note: no UDP GSO on this kernel, fallback not reachable");
            return;
        }
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let tx_sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let one: libc::c_int = 1;
        // SAFETY: sets an int option on a live socket from a live int.
        let r = unsafe {
            libc::setsockopt(
                tx_sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_NO_CHECK,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0);
        let waker = EventFd::new().unwrap();
        let mut b = MmsgBackend::new(8, waker.as_raw_fd(), true).unwrap();
        b.add_socket(0, tx_sock.as_raw_fd()).unwrap();
        let mut pool = FramePool::new(16);
        let dst = rx.local_addr().unwrap();
        let send_four = |b: &mut MmsgBackend, pool: &mut FramePool, round: u8| {
            let mut tx = Vec::new();
            for i in 0..4u8 {
                let f = pool.alloc().unwrap();
                pool.frame_mut(f)[HEADROOM..HEADROOM + 100].fill(round * 16 + i);
                tx.push(TxPacket {
                    frame: f,
                    start: HEADROOM as u16,
                    len: 100,
                    sock: 0,
                    dst,
                    tag: u32::from(i),
                });
            }
            let mut failed = Vec::new();
            b.send(pool, &mut tx, &mut failed);
            assert!(failed.is_empty(), "{failed:?}");
        };
        send_four(&mut b, &mut pool, 1);
        let mut buf = [0u8; 2048];
        for i in 0..4u8 {
            let n = rx.recv(&mut buf).expect("datagram sent one by one");
            assert_eq!(n, 100);
            assert!(buf[..n].iter().all(|&x| x == 16 + i));
        }
        let c = b.counters();
        assert_eq!((c.gso_fallbacks, c.gso_segments), (1, 0));
        assert!(!b.gso());
        // Later runs are not offered to GSO again.
        send_four(&mut b, &mut pool, 2);
        for i in 0..4u8 {
            let n = rx.recv(&mut buf).unwrap();
            assert!(buf[..n].iter().all(|&x| x == 32 + i));
        }
        assert_eq!(b.counters().gso_fallbacks, 1);
    }
}
