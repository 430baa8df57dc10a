//! The syscall layer: socket address conversion, `recvmmsg`/`sendmmsg` with UDP GSO,
//! eventfd wakers, and the SO_REUSEPORT steering program. Every `unsafe` block of
//! the mio backend lives here.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Room for an IPv4 or IPv6 socket address, as the kernel writes it.
#[derive(Clone, Copy)]
#[repr(C)]
pub union RawAddr {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

impl std::fmt::Debug for RawAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawAddr({:?})", self.get())
    }
}

impl RawAddr {
    /// An all-zero address (family AF_UNSPEC).
    pub fn zeroed() -> Self {
        // SAFETY: both members are plain C structs for which all-zero bytes are valid.
        unsafe { zeroed() }
    }

    /// Capacity handed to the kernel as `msg_namelen`.
    pub const CAPACITY: libc::socklen_t = size_of::<libc::sockaddr_in6>() as libc::socklen_t;

    /// Writes `addr` and returns the length to pass to the kernel.
    pub fn set(&mut self, addr: &SocketAddr) -> libc::socklen_t {
        match addr {
            SocketAddr::V4(a) => {
                let sin = libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                };
                self.v4 = sin;
                size_of::<libc::sockaddr_in>() as libc::socklen_t
            }
            SocketAddr::V6(a) => {
                let sin6 = libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                };
                self.v6 = sin6;
                size_of::<libc::sockaddr_in6>() as libc::socklen_t
            }
        }
    }

    /// Reads the address the kernel wrote, if it is IPv4 or IPv6.
    pub fn get(&self) -> Option<SocketAddr> {
        // SAFETY: the family field is at the same offset in both members and every
        // bit pattern of the union is a valid value of either member.
        unsafe {
            match i32::from(self.v4.sin_family) {
                libc::AF_INET => {
                    let a = self.v4;
                    Some(SocketAddr::V4(SocketAddrV4::new(
                        Ipv4Addr::from(a.sin_addr.s_addr.to_ne_bytes()),
                        u16::from_be(a.sin_port),
                    )))
                }
                libc::AF_INET6 => {
                    let a = self.v6;
                    let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
                    let port = u16::from_be(a.sin6_port);
                    // A dual-stack socket reports IPv4 peers as v4-mapped.
                    Some(match ip.to_ipv4_mapped() {
                        Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                        None => SocketAddr::V6(SocketAddrV6::new(
                            ip,
                            port,
                            a.sin6_flowinfo,
                            a.sin6_scope_id,
                        )),
                    })
                }
                _ => None,
            }
        }
    }

    /// Parses a socket address from the bytes the kernel wrote (io_uring recvmsg).
    pub fn from_bytes(bytes: &[u8]) -> Option<SocketAddr> {
        let mut raw = RawAddr::zeroed();
        let n = bytes.len().min(size_of::<RawAddr>());
        // SAFETY: `raw` is `size_of::<RawAddr>()` bytes long and `n` never exceeds it;
        // any byte pattern is a valid RawAddr.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                (&mut raw as *mut RawAddr).cast::<u8>(),
                n,
            );
        }
        raw.get()
    }
}

/// One datagram to receive: where its bytes go.
#[derive(Debug, Clone, Copy)]
pub struct RecvSlot {
    /// Start of the receive buffer.
    pub ptr: *mut u8,
    /// Its capacity.
    pub cap: usize,
}

/// What `recvmmsg` returned for one slot.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Datagram length (may exceed the buffer when `truncated`).
    pub len: usize,
    /// Source address.
    pub src: Option<SocketAddr>,
    /// The datagram did not fit the buffer.
    pub truncated: bool,
}

/// Preallocated `mmsghdr`/`iovec`/address arrays for batched receive and send.
pub struct MmsgBatch {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<RawAddr>,
    cmsgs: Vec<[u64; 4]>,
}

// SAFETY: the raw pointers inside are only scratch space rewritten before each call;
// the batch is owned and used by one worker thread.
unsafe impl Send for MmsgBatch {}

impl std::fmt::Debug for MmsgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgBatch")
            .field("capacity", &self.hdrs.len())
            .finish()
    }
}

/// Largest number of segments the kernel accepts in one GSO send.
pub const GSO_MAX_SEGMENTS: usize = 64;

/// One message of a send batch: `iov` indexes a run of consecutive iovecs; more
/// than one means a GSO send of equal-sized segments.
#[derive(Debug, Clone, Copy)]
pub struct SendMsg {
    /// Destination.
    pub dst: SocketAddr,
    /// First iovec of this message in the batch's iovec list.
    pub first_iov: usize,
    /// Number of iovecs (segments).
    pub iov_count: usize,
    /// Segment size for GSO (ignored when `iov_count == 1`).
    pub segment: u16,
}

impl MmsgBatch {
    /// Scratch space for `n` messages of up to [`GSO_MAX_SEGMENTS`] segments.
    pub fn new(n: usize) -> Self {
        // SAFETY: mmsghdr and iovec are plain C structs; all-zero is valid.
        let hdr: libc::mmsghdr = unsafe { zeroed() };
        let iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        MmsgBatch {
            hdrs: vec![hdr; n],
            iovs: vec![iov; n * 2],
            addrs: vec![RawAddr::zeroed(); n],
            cmsgs: vec![[0u64; 4]; n],
        }
    }

    /// Capacity in messages.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// `recvmmsg` into `slots` (non-blocking); results go to `out`. Returns how
    /// many datagrams arrived (0 when the socket had none).
    pub fn recv(
        &mut self,
        fd: RawFd,
        slots: &[RecvSlot],
        out: &mut Vec<Received>,
    ) -> io::Result<usize> {
        self.recv_flags(fd, slots, out, libc::MSG_DONTWAIT)
    }

    /// Like [`recv`](Self::recv) but waits (up to the socket's receive timeout)
    /// for the first datagram, then takes what else is queued (MSG_WAITFORONE).
    /// The socket must be in blocking mode.
    pub fn recv_wait(
        &mut self,
        fd: RawFd,
        slots: &[RecvSlot],
        out: &mut Vec<Received>,
    ) -> io::Result<usize> {
        self.recv_flags(fd, slots, out, libc::MSG_WAITFORONE)
    }

    fn recv_flags(
        &mut self,
        fd: RawFd,
        slots: &[RecvSlot],
        out: &mut Vec<Received>,
        flags: libc::c_int,
    ) -> io::Result<usize> {
        let n = slots.len().min(self.hdrs.len());
        if n == 0 {
            return Ok(0);
        }
        for (i, slot) in slots.iter().take(n).enumerate() {
            self.iovs[i] = libc::iovec {
                iov_base: slot.ptr.cast(),
                iov_len: slot.cap,
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut RawAddr).cast();
            h.msg_namelen = RawAddr::CAPACITY;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live scratch space owned by `self` and at
        // buffers the caller guarantees are valid for `cap` bytes; n <= capacity.
        let r = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let r = r as usize;
        for i in 0..r {
            let h = &self.hdrs[i];
            out.push(Received {
                len: h.msg_len as usize,
                src: self.addrs[i].get(),
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            });
        }
        Ok(r)
    }

    /// Prepares iovec `i` of the next send.
    pub fn set_iov(&mut self, i: usize, ptr: *const u8, len: usize) {
        if i >= self.iovs.len() {
            self.iovs.resize(
                i + 1,
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                },
            );
        }
        self.iovs[i] = libc::iovec {
            iov_base: ptr as *mut libc::c_void,
            iov_len: len,
        };
    }

    /// `sendmmsg` of `msgs` (whose iovecs were set with [`set_iov`](Self::set_iov)).
    /// Returns how many messages the kernel took, or the error of the first one
    /// it refused.
    pub fn send(&mut self, fd: RawFd, msgs: &[SendMsg]) -> io::Result<usize> {
        // Only messages whose iovecs all exist: the kernel would read past the
        // list otherwise. A bad message ends the batch before it.
        let iovs = self.iovs.len();
        let n = msgs
            .iter()
            .take(self.hdrs.len())
            .take_while(|m| {
                m.first_iov
                    .checked_add(m.iov_count)
                    .is_some_and(|e| e <= iovs)
            })
            .count();
        if n == 0 {
            if msgs.is_empty() || self.hdrs.is_empty() {
                return Ok(0);
            }
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "send message names iovecs that were not set",
            ));
        }
        for (i, m) in msgs.iter().take(n).enumerate() {
            let namelen = self.addrs[i].set(&m.dst);
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut RawAddr).cast();
            h.msg_namelen = namelen;
            h.msg_iov = self.iovs[m.first_iov..].as_mut_ptr();
            h.msg_iovlen = m.iov_count;
            h.msg_flags = 0;
            if m.iov_count > 1 {
                let c = &mut self.cmsgs[i];
                // SAFETY: CMSG_SPACE of a u16 (24 bytes) fits the 32-byte buffer.
                unsafe {
                    let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
                    h.msg_control = c.as_mut_ptr().cast();
                    h.msg_controllen = space;
                    let cm = libc::CMSG_FIRSTHDR(h);
                    (*cm).cmsg_level = libc::SOL_UDP;
                    (*cm).cmsg_type = libc::UDP_SEGMENT;
                    (*cm).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
                    std::ptr::write_unaligned(libc::CMSG_DATA(cm).cast::<u16>(), m.segment);
                }
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
        }
        // SAFETY: headers point at scratch space owned by `self` and at frame bytes
        // the caller keeps alive for the duration of the call.
        let r = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if r < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(r as usize)
        }
    }
}

/// Sets the calling thread's timer slack (how late the kernel may wake a sleeping
/// thread so that it can batch wake-ups; 50 us by default). Pacers that sleep
/// until a send time want 1 ns.
pub fn set_timer_slack_ns(ns: u64) -> bool {
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes a plain integer and affects only the
    // calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns as libc::c_ulong, 0, 0, 0) == 0 }
}

/// Puts the calling thread in the SCHED_IDLE class: it runs only on otherwise
/// idle CPU time and any normal thread that wakes preempts it at once (for
/// control-plane work such as DTLS handshakes beside latency-critical workers).
pub fn set_thread_sched_idle() -> bool {
    let p = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler(0, ...) changes only the calling thread's policy;
    // `p` lives across the call.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &p) == 0 }
}

/// Pins the calling thread to `core`; false when the core does not exist or the
/// kernel refuses.
pub fn pin_thread(core: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id: core })
}

/// Removes `cores` from the calling thread's CPU set (the control plane keeps off
/// the workers' cores); false when that would leave no CPU (the set is left as it
/// was) or the kernel refuses.
pub fn avoid_cores(cores: &[usize]) -> bool {
    // SAFETY: cpu_set_t is plain data, zeroed is a valid empty set; the CPU_*
    // helpers index within it (cores beyond CPU_SETSIZE are skipped), and
    // sched_{get,set}affinity(0, ...) act on the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        let size = std::mem::size_of::<libc::cpu_set_t>();
        if libc::sched_getaffinity(0, size, &mut set) != 0 {
            return false;
        }
        for &c in cores {
            if c < libc::CPU_SETSIZE as usize {
                libc::CPU_CLR(c, &mut set);
            }
        }
        if libc::CPU_COUNT(&set) == 0 {
            return false;
        }
        libc::sched_setaffinity(0, size, &set) == 0
    }
}

/// Sets the calling thread's nice value (-20..=19; higher yields to others), e.g.
/// a control thread that must not delay the dataplane workers it shares cores
/// with. Raising priority (negative values) needs CAP_SYS_NICE.
pub fn set_thread_nice(nice: i32) -> bool {
    // SAFETY: gettid has no preconditions; setpriority(PRIO_PROCESS, tid) changes
    // only that thread's nice value on Linux.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, nice.clamp(-20, 19)) == 0
    }
}

/// Waits until `fd` is readable or `timeout` passes (nanosecond resolution, ppoll);
/// returns whether it is readable.
pub fn wait_readable(fd: RawFd, timeout: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: one live pollfd, a live timespec, no signal mask.
    let r = unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
    r > 0 && p.revents & libc::POLLIN != 0
}

/// CPUs of this machine (not only those the calling thread may run on).
pub fn online_cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Whether the kernel accepts UDP GSO (UDP_SEGMENT) on a UDP socket.
pub fn probe_gso() -> bool {
    let Ok(s) = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)) else {
        return false;
    };
    let seg: libc::c_int = 1200;
    // SAFETY: setsockopt with a valid fd and a pointer to a c_int of the given size.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&seg as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    r == 0
}

/// A non-blocking eventfd used to wake a worker (or the control thread) that waits
/// in the kernel.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// A new eventfd.
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(EventFd { fd })
    }

    /// Makes the eventfd readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) means it is
        // already readable, which is all a notification needs.
        unsafe {
            libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Clears the readable state; returns whether it was set.
    pub fn drain(&self) -> bool {
        Self::drain_fd(self.fd.as_raw_fd())
    }

    /// [`drain`](Self::drain) on a borrowed eventfd descriptor.
    pub fn drain_fd(fd: RawFd) -> bool {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64; a bad fd only yields an error.
        let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
        r == 8
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Attaches a classic BPF program to a SO_REUSEPORT group that picks the socket by
/// the remote UDP source port modulo `n`, so that a flow always lands on the same
/// worker and [`reuseport_index`] tells which one in advance.
pub fn attach_reuseport_steering(fd: RawFd, ip: IpAddr, n: u32) -> io::Result<()> {
    // The program runs with the UDP payload at offset 0; SKF_NET_OFF reaches the
    // network header, after which the UDP source port sits at the IP header length.
    const SKF_NET_OFF: i32 = -0x100000;
    let ip_header = match ip {
        IpAddr::V4(_) => 20,
        IpAddr::V6(_) => 40,
    };
    let mut prog = [
        libc::sock_filter {
            code: (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16,
            jt: 0,
            jf: 0,
            k: (SKF_NET_OFF + ip_header) as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: n.max(1),
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_A) as u16,
            jt: 0,
            jf: 0,
            k: 0,
        },
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: valid fd; `fprog` points at a live program of `len` instructions.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The worker a shared-port flow from `remote` lands on under
/// [`attach_reuseport_steering`] with `n` workers (IPv4 header without options).
pub fn reuseport_index(remote: &SocketAddr, n: usize) -> usize {
    usize::from(remote.port()) % n.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn raw_addr_round_trips_v4_and_v6() {
        for a in [
            "127.0.0.1:5004".parse::<SocketAddr>().unwrap(),
            "[::1]:40000".parse().unwrap(),
            "[fe80::1%2]:9".parse().unwrap(),
        ] {
            let mut r = RawAddr::zeroed();
            r.set(&a);
            assert_eq!(r.get(), Some(a));
        }
        assert_eq!(RawAddr::zeroed().get(), None);
    }

    #[test]
    fn mmsg_moves_a_batch() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = rx.local_addr().unwrap();
        let mut b = MmsgBatch::new(8);
        let payloads: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        for (i, p) in payloads.iter().enumerate() {
            b.set_iov(i, p.as_ptr(), p.len());
        }
        let msgs: Vec<SendMsg> = (0..5)
            .map(|i| SendMsg {
                dst,
                first_iov: i,
                iov_count: 1,
                segment: 0,
            })
            .collect();
        assert_eq!(b.send(tx.as_raw_fd(), &msgs).unwrap(), 5);
        let mut bufs = vec![[0u8; 64]; 8];
        let slots: Vec<RecvSlot> = bufs
            .iter_mut()
            .map(|b| RecvSlot {
                ptr: b.as_mut_ptr(),
                cap: 64,
            })
            .collect();
        let mut out = Vec::new();
        let mut got = 0;
        for _ in 0..100 {
            got += b.recv(rx.as_raw_fd(), &slots[got..], &mut out).unwrap();
            if got == 5 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, 5);
        for (i, r) in out.iter().enumerate() {
            assert_eq!(r.len, 10 + i);
            assert_eq!(r.src, Some(tx.local_addr().unwrap()));
            assert!(!r.truncated);
            assert_eq!(&bufs[i][..r.len], &payloads[i][..]);
        }
    }

    /// A message naming iovecs past the list is refused with a typed error (it
    /// panicked on the slice, or let the kernel read past the list).
    #[test]
    fn send_refuses_messages_past_the_iovec_list() {
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = rx.local_addr().unwrap();
        let mut b = MmsgBatch::new(2);
        let data = [7u8; 4];
        b.set_iov(0, data.as_ptr(), data.len());
        for (first_iov, iov_count) in [(1000, 1), (0, 5), (usize::MAX, 2)] {
            let m = SendMsg {
                dst,
                first_iov,
                iov_count,
                segment: 4,
            };
            let e = b.send(tx.as_raw_fd(), &[m]).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
        let ok = SendMsg {
            dst,
            first_iov: 0,
            iov_count: 1,
            segment: 0,
        };
        let bad = SendMsg { first_iov: 5, ..ok };
        assert_eq!(b.send(tx.as_raw_fd(), &[ok, bad]).unwrap(), 1);
    }

    #[test]
    fn gso_send_arrives_as_separate_datagrams() {
        if !probe_gso() {
            eprintln!("UDP GSO not supported by this kernel; skipping");
            return;
        }
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(2)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let segs: Vec<Vec<u8>> = vec![vec![1; 100], vec![2; 100], vec![3; 40]];
        let mut b = MmsgBatch::new(4);
        for (i, s) in segs.iter().enumerate() {
            b.set_iov(i, s.as_ptr(), s.len());
        }
        let m = SendMsg {
            dst: rx.local_addr().unwrap(),
            first_iov: 0,
            iov_count: 3,
            segment: 100,
        };
        assert_eq!(b.send(tx.as_raw_fd(), &[m]).unwrap(), 1);
        let mut buf = [0u8; 200];
        for s in &segs {
            let n = rx.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], &s[..]);
        }
    }

    #[test]
    fn eventfd_notifies_once() {
        let e = EventFd::new().unwrap();
        assert!(!e.drain());
        e.notify();
        e.notify();
        assert!(e.drain());
        assert!(!e.drain());
    }
}
