//! io_uring backend: one multishot `recvmsg` per socket that picks frames from a
//! provided-buffer ring filled from the worker's pool, and `sendmsg` requests
//! queued during a loop turn and submitted once.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, Fd, Fixed, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{cqueue, opcode, squeue, IoUring};

use super::{BackendCounters, BackendKind, IoBackend, RxPacket, SockId, TxFailure, TxPacket};
use crate::pool::{FrameId, FramePool, HEADROOM, MAX_DATAGRAM};
use crate::sys::{EventFd, RawAddr};

const OP_SHIFT: u64 = 56;
const OP_RECV: u64 = 1;
const OP_SEND: u64 = 2;
const OP_WAKE: u64 = 3;
const OP_CANCEL: u64 = 4;
const BGID: u16 = 0;
/// Submission attempts before an entry is given up (and counted).
const PUSH_TRIES: usize = 8;
/// Completions reaped into the stash when the kernel refuses submissions.
const STASH: usize = 1024;
/// Longest single wait of a shutdown for the kernel to let go of our memory.
const DROP_WAIT: Duration = Duration::from_millis(10);
/// Bytes io_uring writes before the payload: `io_uring_recvmsg_out` (16) and the
/// name area (`msg_namelen` of the template).
const PREFIX: usize = 16 + RawAddr::CAPACITY as usize;
const _: () = assert!(PREFIX <= HEADROOM);

fn ud(op: u64, gen: u32, id: u32) -> u64 {
    (op << OP_SHIFT) | (u64::from(gen & 0x00ff_ffff) << 32) | u64::from(id)
}

#[derive(Debug, Clone, Copy, Default)]
struct USock {
    fd: RawFd,
    live: bool,
    gen: u32,
    armed: bool,
    /// Registered in the ring's file table at the socket's id: requests name it
    /// by index, and the kernel does not look the descriptor up (and take and
    /// drop a reference to it) for every datagram.
    fixed: bool,
}

/// Slots of the registered file table: sockets with a larger id (or all, when the
/// registration fails) are named by descriptor.
fn fixed_files() -> u32 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0 {
        lim.rlim_cur
    } else {
        1024
    };
    soft.clamp(64, 1 << 16) as u32
}

/// Per-frame send state whose address the kernel reads until the completion.
#[repr(C)]
struct TxSlot {
    hdr: libc::msghdr,
    iov: libc::iovec,
    addr: RawAddr,
    tag: u32,
}

/// The provided-buffer ring: page-aligned shared memory the kernel takes frames from.
struct BufRing {
    base: *mut BufRingEntry,
    entries: u16,
    tail: u16,
    bytes: usize,
}

impl BufRing {
    fn new(entries: u16) -> io::Result<Self> {
        let bytes = usize::from(entries) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: anonymous private mapping; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(BufRing {
            base: p.cast(),
            entries,
            tail: 0,
            bytes,
        })
    }

    /// Queues one buffer (published by [`publish`](Self::publish)).
    fn push(&mut self, addr: u64, len: u32, bid: u16) {
        let i = usize::from(self.tail & (self.entries - 1));
        // SAFETY: i < entries; the entry is not in the kernel's hands (the caller
        // never queues more than `entries` buffers).
        let e = unsafe { &mut *self.base.add(i) };
        e.set_addr(addr);
        e.set_len(len);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field of the first entry, read by the kernel; it is a
        // naturally aligned u16 inside our mapping.
        unsafe {
            let t = BufRingEntry::tail(self.base) as *const AtomicU16;
            (*t).store(self.tail, Ordering::Release);
        }
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe {
            libc::munmap(self.base.cast(), self.bytes);
        }
    }
}

/// The io_uring backend.
pub struct UringBackend {
    ring: IoUring,
    bufs: BufRing,
    /// Frames currently in the buffer ring.
    given: usize,
    template: Box<libc::msghdr>,
    socks: Vec<USock>,
    slots: Box<[TxSlot]>,
    in_flight: usize,
    waker: RawFd,
    waker_armed: bool,
    /// Completions taken off a completion queue that overflowed (the kernel
    /// refused submissions with EBUSY until some were reaped), handled in order
    /// before the queue's next ones.
    stash: Vec<(u64, i32, u32)>,
    /// Sockets whose receive could not be submitted: armed again next turn.
    rearm: Vec<SockId>,
    /// Cancellations that could not be submitted: tried again next turn.
    cancels: Vec<u64>,
    /// Interrupt moderation: after a wait that found work, wait up to this long
    /// for this many completions (see `IdlePolicy::Coalesce`).
    coalesce: Option<(u32, Duration)>,
    counters: BackendCounters,
    /// Size of the registered file table (0: none).
    files: u32,
    /// The kernel takes a destination address with `IORING_OP_SEND` (Linux 6.0):
    /// a send is then one address copy instead of a `msghdr`, an iovec and an
    /// address.
    send_to: bool,
}

// SAFETY: raw pointers point into memory owned by this value (mapping, slots,
// template); the backend is used by one thread at a time.
unsafe impl Send for UringBackend {}

impl std::fmt::Debug for UringBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringBackend")
            .field("buffers", &self.bufs.entries)
            .field("given", &self.given)
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// Checks that io_uring, multishot recvmsg and provided-buffer rings work.
pub fn probe() -> Result<(), String> {
    let ring = IoUring::new(8).map_err(|e| format!("io_uring_setup failed: {e}"))?;
    // The worker's ring defers task work (Linux 6.1).
    IoUring::<squeue::Entry, cqueue::Entry>::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(8)
        .map_err(|e| format!("io_uring without DEFER_TASKRUN (Linux 6.1 or later): {e}"))?;
    let mut p = io_uring::Probe::new();
    ring.submitter()
        .register_probe(&mut p)
        .map_err(|e| format!("io_uring probe failed: {e}"))?;
    for (op, name) in [
        (opcode::RecvMsgMulti::CODE, "recvmsg"),
        (opcode::SendMsg::CODE, "sendmsg"),
        (opcode::PollAdd::CODE, "poll_add"),
    ] {
        if !p.is_supported(op) {
            return Err(format!("io_uring lacks {name}"));
        }
    }
    let bufs = BufRing::new(8).map_err(|e| e.to_string())?;
    // SAFETY: a page-aligned mapping of 8 entries that outlives the registration.
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.base as u64, 8, BGID, 0)
    }
    .map_err(|e| format!("io_uring provided-buffer rings unavailable: {e}"))?;
    let _ = ring.submitter().unregister_buf_ring(BGID);
    Ok(())
}

impl UringBackend {
    /// A backend whose buffer ring holds up to half of `pool`'s frames; `waker` is
    /// an eventfd that interrupts a wait.
    pub fn new(pool: &FramePool, waker: RawFd) -> io::Result<Self> {
        let half = (pool.capacity() / 2).clamp(2, 32768);
        let entries = 1u16 << (usize::BITS - 1 - half.leading_zeros());
        // Task work is deferred to this thread's own io_uring_enter calls
        // (DEFER_TASKRUN): completions are posted when the worker asks for them,
        // no other thread is ever interrupted to run them, and a wait for N
        // completions sleeps until N are pending (what `IdlePolicy::Coalesce`
        // relies on; with COOP_TASKRUN each datagram woke the waiting worker).
        // TASKRUN_FLAG tells a busy-polling worker when work is pending.
        let ring = IoUring::builder()
            .setup_cqsize(16384)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(4096)?;
        let bufs = BufRing::new(entries)?;
        // SAFETY: page-aligned mapping of `entries` entries, alive as long as `ring`
        // (it is declared after the ring, so it is unmapped after the ring closes).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(bufs.base as u64, entries, BGID, 0)?
        };
        // SAFETY: msghdr is a plain C struct; all-zero is valid.
        let mut template: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        template.msg_namelen = RawAddr::CAPACITY;
        let slots = (0..pool.capacity())
            .map(|_| TxSlot {
                // SAFETY: plain C structs; all-zero is valid.
                hdr: unsafe { std::mem::zeroed() },
                iov: libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
                addr: RawAddr::zeroed(),
                tag: 0,
            })
            .collect();
        let files = fixed_files();
        let files = match ring.submitter().register_files_sparse(files) {
            Ok(()) => files,
            Err(_) => 0,
        };
        let mut p = io_uring::Probe::new();
        // SEND_ZC and the destination address of IORING_OP_SEND came together
        // (Linux 6.0).
        let send_to =
            ring.submitter().register_probe(&mut p).is_ok() && p.is_supported(opcode::SendZc::CODE);
        let mut b = UringBackend {
            files,
            send_to,
            ring,
            bufs,
            given: 0,
            template,
            socks: Vec::new(),
            slots,
            in_flight: 0,
            waker,
            waker_armed: false,
            stash: Vec::with_capacity(STASH),
            rearm: Vec::new(),
            cancels: Vec::new(),
            coalesce: None,
            counters: BackendCounters::default(),
        };
        b.arm_waker();
        Ok(b)
    }

    /// Queues a submission; `false` (counted) when the queue stayed full after
    /// a bounded number of submissions: the caller undoes or retries later.
    fn push_sqe(&mut self, e: squeue::Entry) -> bool {
        for _ in 0..PUSH_TRIES {
            // SAFETY: every entry we build points at memory that outlives the
            // request (template, slots, frames); see the callers.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return true;
            }
            // Submission queue full: hand it to the kernel and retry. With the
            // completion queue overflowing, the kernel refuses (EBUSY) until
            // completions are reaped: take some into the stash.
            if let Err(err) = self.ring.submit() {
                if err.raw_os_error() == Some(libc::EBUSY) {
                    self.stash_completions();
                }
            }
        }
        self.counters.submit_failures += 1;
        false
    }

    /// Moves completions (as many as the stash has room for) off the queue.
    fn stash_completions(&mut self) {
        let room = STASH.saturating_sub(self.stash.len());
        let mut cq = self.ring.completion();
        for _ in 0..room {
            let Some(c) = cq.next() else { break };
            self.stash.push((c.user_data(), c.result(), c.flags()));
        }
    }

    fn arm_waker(&mut self) {
        let e = opcode::PollAdd::new(Fd(self.waker), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(ud(OP_WAKE, 0, 0));
        // Not armed: tried again next turn (meanwhile the worker waits at most
        // its park interval for commands).
        self.waker_armed = self.push_sqe(e);
    }

    /// Submissions that failed earlier: the waker, receives, cancellations.
    fn retry_submissions(&mut self) {
        if !self.waker_armed {
            self.arm_waker();
        }
        for _ in 0..self.rearm.len() {
            let id = self.rearm.swap_remove(0);
            if self
                .socks
                .get(id as usize)
                .is_some_and(|s| s.live && !s.armed)
            {
                self.arm_recv(id);
            }
        }
        for _ in 0..self.cancels.len() {
            let target = self.cancels.swap_remove(0);
            self.cancel(target);
        }
    }

    fn cancel(&mut self, target: u64) {
        let e = opcode::AsyncCancel::new(target)
            .build()
            .user_data(ud(OP_CANCEL, 0, 0));
        if self.push_sqe(e) {
            // Make sure the cancel reaches the kernel before the caller closes the fd.
            let _ = self.ring.submit();
        } else {
            self.cancels.push(target);
        }
    }

    fn arm_recv(&mut self, id: SockId) {
        let s = self.socks[id as usize];
        let hdr = &*self.template as *const libc::msghdr;
        let e = if s.fixed {
            opcode::RecvMsgMulti::new(Fixed(id), hdr, BGID).build()
        } else {
            opcode::RecvMsgMulti::new(Fd(s.fd), hdr, BGID).build()
        }
        .user_data(ud(OP_RECV, s.gen, id));
        if self.push_sqe(e) {
            self.socks[id as usize].armed = true;
        } else {
            self.rearm.push(id);
        }
    }

    fn refill(&mut self, pool: &mut FramePool) {
        let mut added = false;
        while self.given < usize::from(self.bufs.entries) {
            let Some(f) = pool.alloc() else { break };
            // SAFETY: HEADROOM >= PREFIX, so the buffer starts inside the frame.
            let addr = unsafe { pool.ptr(f).add(HEADROOM - PREFIX) } as u64;
            self.bufs
                .push(addr, (PREFIX + MAX_DATAGRAM) as u32, f as u16);
            self.given += 1;
            added = true;
        }
        if added {
            self.bufs.publish();
        }
    }

    fn wait(&mut self, timeout: Duration) -> io::Result<()> {
        let r = if timeout.is_zero() || !self.ring.completion().is_empty() {
            self.ring.submit()
        } else {
            let ts = Timespec::from(timeout);
            let args = SubmitArgs::new().timespec(&ts);
            self.ring.submitter().submit_with_args(1, &args)
        };
        Self::waited(r)?;
        // Interrupt moderation: work is there, but less than a batch; let more
        // arrive (one wake-up per batch instead of one per datagram).
        if let Some((batch, wait)) = self.coalesce {
            let have = self.ring.completion().len();
            if !timeout.is_zero() && have > 0 && have < batch as usize {
                let ts = Timespec::from(wait);
                let args = SubmitArgs::new().timespec(&ts);
                Self::waited(
                    self.ring
                        .submitter()
                        .submit_with_args(batch as usize, &args),
                )?;
            }
        }
        Ok(())
    }

    /// The result of `io_uring_enter`: a timeout, an interrupted wait and a full
    /// completion queue are not errors.
    fn waited(r: io::Result<usize>) -> io::Result<()> {
        match r {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Handles one completion; returns whether the waker fired.
    fn complete(
        &mut self,
        pool: &mut FramePool,
        user_data: u64,
        res: i32,
        flags: u32,
        rx: &mut Vec<RxPacket>,
        failed: &mut Vec<TxFailure>,
    ) -> bool {
        let op = user_data >> OP_SHIFT;
        let id = user_data as u32;
        let gen = ((user_data >> 32) & 0x00ff_ffff) as u32;
        match op {
            OP_RECV => {
                self.counters.rx_calls += 1;
                let current = self
                    .socks
                    .get(id as usize)
                    .is_some_and(|s| s.live && s.gen & 0x00ff_ffff == gen);
                if let Some(bid) = cqueue::buffer_select(flags) {
                    self.given -= 1;
                    let f = FrameId::from(bid);
                    match self.parse(pool, f, res) {
                        Some((start, len, src)) if current && res >= 0 => rx.push(RxPacket {
                            frame: f,
                            start,
                            len,
                            sock: id,
                            src,
                        }),
                        Some(_) => pool.free(f),
                        None => {
                            self.counters.truncated += 1;
                            pool.free(f);
                        }
                    }
                } else if res == -libc::ENOBUFS {
                    self.counters.no_frame += 1;
                } else if res < 0 && res != -libc::ECANCELED {
                    self.counters.rx_errors += 1;
                }
                if !cqueue::more(flags) {
                    if let Some(s) = self.socks.get_mut(id as usize) {
                        if s.gen & 0x00ff_ffff == gen {
                            s.armed = false;
                            if s.live {
                                self.arm_recv(id);
                            }
                        }
                    }
                }
                false
            }
            OP_SEND => {
                self.in_flight -= 1;
                if res < 0 {
                    failed.push(TxFailure {
                        tag: self.slots[id as usize].tag,
                        kind: io::Error::from_raw_os_error(-res).kind(),
                    });
                }
                pool.free(id);
                false
            }
            OP_WAKE => {
                EventFd::drain_fd(self.waker);
                if !cqueue::more(flags) {
                    self.arm_waker();
                }
                true
            }
            _ => false,
        }
    }

    /// Payload position and source of a received frame; `None` when truncated or
    /// malformed.
    fn parse(
        &self,
        pool: &FramePool,
        f: FrameId,
        res: i32,
    ) -> Option<(u16, u16, std::net::SocketAddr)> {
        let n = usize::try_from(res).ok()?;
        let frame = pool.frame(f);
        let buf = frame.get(HEADROOM - PREFIX..HEADROOM - PREFIX + n)?;
        let out = RecvMsgOut::parse(buf, &self.template).ok()?;
        if out.is_payload_truncated() || out.is_name_data_truncated() {
            return None;
        }
        let src = RawAddr::from_bytes(out.name_data())?;
        let payload = out.payload_data();
        let start = payload.as_ptr() as usize - frame.as_ptr() as usize;
        Some((start as u16, payload.len() as u16, src))
    }
}

impl IoBackend for UringBackend {
    fn set_coalesce(&mut self, batch: usize, wait: Duration) {
        self.coalesce = Some((batch.clamp(1, 4096) as u32, wait));
    }

    fn kind(&self) -> BackendKind {
        BackendKind::IoUring
    }

    fn add_socket(&mut self, id: SockId, fd: RawFd) -> io::Result<()> {
        let i = id as usize;
        if self.socks.len() <= i {
            self.socks.resize(i + 1, USock::default());
        }
        let gen = self.socks[i].gen.wrapping_add(1);
        let fixed = id < self.files
            && self
                .ring
                .submitter()
                .register_files_update(id, &[fd])
                .is_ok();
        self.socks[i] = USock {
            fd,
            live: true,
            gen,
            armed: false,
            fixed,
        };
        self.arm_recv(id);
        Ok(())
    }

    fn remove_socket(&mut self, id: SockId, _fd: RawFd) {
        let Some(s) = self.socks.get_mut(id as usize) else {
            return;
        };
        if !s.live {
            return;
        }
        s.live = false;
        let (target, armed, fixed) = (ud(OP_RECV, s.gen, id), s.armed, s.fixed);
        s.fixed = false;
        if armed {
            self.cancel(target);
        }
        if fixed {
            // The table holds a reference to the socket: without this, closing
            // the descriptor would leave it open (and its port bound).
            let _ = self.ring.submitter().register_files_update(id, &[-1]);
        }
    }

    fn recv(
        &mut self,
        pool: &mut FramePool,
        timeout: Duration,
        max: usize,
        rx: &mut Vec<RxPacket>,
        failed: &mut Vec<TxFailure>,
    ) -> io::Result<bool> {
        self.refill(pool);
        self.retry_submissions();
        let timeout = if self.stash.is_empty() {
            timeout
        } else {
            Duration::ZERO
        };
        self.wait(timeout)?;
        let target = rx.len() + max;
        let mut woken = false;
        // Completions reaped while submissions were refused come first.
        let mut k = 0;
        while k < self.stash.len() && rx.len() < target && !woken {
            let (u, r, f) = self.stash[k];
            k += 1;
            woken |= self.complete(pool, u, r, f, rx, failed);
        }
        self.stash.drain(..k);
        if !self.stash.is_empty() || woken {
            return Ok(woken);
        }
        loop {
            // Take completions in small groups so that re-arming (which pushes
            // submissions) does not overlap a borrow of the completion queue.
            let mut batch = [(0u64, 0i32, 0u32); 32];
            let mut n = 0;
            {
                let mut cq = self.ring.completion();
                while n < batch.len() && rx.len() + n < target {
                    let Some(c) = cq.next() else { break };
                    batch[n] = (c.user_data(), c.result(), c.flags());
                    n += 1;
                    if c.user_data() >> OP_SHIFT == OP_WAKE {
                        // Commands queued before what follows: let the worker
                        // apply them first.
                        break;
                    }
                }
            }
            for &(u, r, f) in &batch[..n] {
                woken |= self.complete(pool, u, r, f, rx, failed);
            }
            // Completions stashed meanwhile (re-arming met a refused
            // submission) precede those still queued: next turn.
            if woken || n < batch.len() || rx.len() >= target || !self.stash.is_empty() {
                break;
            }
        }
        Ok(woken)
    }

    fn send(&mut self, pool: &mut FramePool, tx: &mut Vec<TxPacket>, failed: &mut Vec<TxFailure>) {
        if tx.is_empty() {
            return;
        }
        for p in tx.drain(..) {
            let (fd, fixed) = match self.socks.get(p.sock as usize) {
                Some(s) if s.live => (s.fd, s.fixed),
                _ => {
                    failed.push(TxFailure {
                        tag: p.tag,
                        kind: io::ErrorKind::NotConnected,
                    });
                    pool.free(p.frame);
                    continue;
                }
            };
            // SAFETY: start + len lies inside the frame (set by the pipeline).
            let data = unsafe { pool.ptr(p.frame).add(usize::from(p.start)) };
            let slot = &mut self.slots[p.frame as usize];
            slot.tag = p.tag;
            slot.iov = libc::iovec {
                iov_base: data.cast(),
                iov_len: usize::from(p.len),
            };
            let namelen = slot.addr.set(&p.dst);
            let e = if self.send_to {
                let addr = (&slot.addr as *const RawAddr).cast::<libc::sockaddr>();
                let (buf, len) = (data as *const u8, u32::from(p.len));
                if fixed {
                    opcode::Send::new(Fixed(p.sock), buf, len)
                        .dest_addr(addr)
                        .dest_addr_len(namelen)
                        .build()
                } else {
                    opcode::Send::new(Fd(fd), buf, len)
                        .dest_addr(addr)
                        .dest_addr_len(namelen)
                        .build()
                }
            } else {
                slot.hdr.msg_name = (&mut slot.addr as *mut RawAddr).cast();
                slot.hdr.msg_namelen = namelen;
                slot.hdr.msg_iov = &mut slot.iov;
                slot.hdr.msg_iovlen = 1;
                slot.hdr.msg_control = std::ptr::null_mut();
                slot.hdr.msg_controllen = 0;
                slot.hdr.msg_flags = 0;
                if fixed {
                    opcode::SendMsg::new(Fixed(p.sock), &slot.hdr).build()
                } else {
                    opcode::SendMsg::new(Fd(fd), &slot.hdr).build()
                }
            };
            if self.push_sqe(e.user_data(ud(OP_SEND, 0, p.frame))) {
                self.in_flight += 1;
            } else {
                // The kernel kept refusing submissions: counted by push_sqe, and
                // reported to the pipeline as a send that would block.
                failed.push(TxFailure {
                    tag: p.tag,
                    kind: io::ErrorKind::WouldBlock,
                });
                pool.free(p.frame);
            }
        }
        self.counters.tx_calls += 1;
        let _ = self.ring.submit();
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }

    fn counters(&self) -> BackendCounters {
        self.counters
    }
}

impl Drop for UringBackend {
    fn drop(&mut self) {
        // Cancel every receive and wait (bounded) until the kernel has let go of
        // all frames and send slots before the memory is released.
        for id in 0..self.socks.len() {
            if self.socks[id].live {
                let fd = self.socks[id].fd;
                self.remove_socket(id as SockId, fd);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while (self.in_flight > 0 || self.socks.iter().any(|s| s.armed))
            && Instant::now() < deadline
        {
            for _ in 0..self.cancels.len() {
                let target = self.cancels.swap_remove(0);
                self.cancel(target);
            }
            // Every wait is bounded, so the deadline holds.
            let ts =
                Timespec::from(DROP_WAIT.min(deadline.saturating_duration_since(Instant::now())));
            let args = SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            let mut done = std::mem::take(&mut self.stash);
            for c in self.ring.completion() {
                done.push((c.user_data(), c.result(), c.flags()));
            }
            for (u, _r, f) in done {
                match u >> OP_SHIFT {
                    OP_SEND => self.in_flight -= 1,
                    OP_RECV if !cqueue::more(f) => {
                        if let Some(s) = self.socks.get_mut(u as u32 as usize) {
                            s.armed = false;
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
