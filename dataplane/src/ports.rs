//! Sockets for the dataplane: a port-range allocator for per-session port pairs
//! (SIP gateways advertise one port per stream), and the SO_REUSEPORT groups of
//! shared ports (one socket per worker, as WebRTC servers use).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// A socket bound to one of our ports.
#[derive(Debug)]
pub struct PortPair {
    /// The RTP port (even when a pair was asked for).
    pub port: u16,
    /// RTP (and muxed RTCP) socket.
    pub rtp: UdpSocket,
    /// RTCP socket on `port + 1`, when asked for.
    pub rtcp: Option<UdpSocket>,
}

/// What a port of the range is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    Free,
    /// Allocated alone.
    Single,
    /// The RTP (even) port of a pair.
    PairRtp,
    /// The RTCP port of a pair, freed with its RTP port.
    PairRtcp,
}

/// Hands out ports from a range, skipping ports other programs hold.
#[derive(Debug)]
pub struct PortAllocator {
    ip: IpAddr,
    first: u16,
    last: u16,
    next: u16,
    used: Vec<Use>,
    in_use: usize,
    socket_buffer: Option<usize>,
}

/// Creates a non-blocking UDP socket bound to `addr` with optional buffer sizes.
pub fn udp_socket(
    addr: SocketAddr,
    reuse_port: bool,
    buffer: Option<usize>,
) -> io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    if let Some(b) = buffer {
        // The kernel caps these at rmem_max/wmem_max; a smaller buffer is not fatal.
        let _ = s.set_recv_buffer_size(b);
        let _ = s.set_send_buffer_size(b);
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

impl PortAllocator {
    /// Ports `first..=last` on `ip`. Errors when the range is empty.
    pub fn new(ip: IpAddr, first: u16, last: u16) -> io::Result<Self> {
        if first == 0 || last < first {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("port range {first}-{last} is empty or starts at 0"),
            ));
        }
        Ok(PortAllocator {
            ip,
            first,
            last,
            next: first,
            used: vec![Use::Free; usize::from(last - first) + 1],
            in_use: 0,
            socket_buffer: None,
        })
    }

    /// Sets SO_RCVBUF/SO_SNDBUF of the sockets it creates.
    pub fn with_socket_buffer(mut self, bytes: usize) -> Self {
        self.socket_buffer = Some(bytes);
        self
    }

    /// The address the ports are on.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// Ports handed out and not released.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Ports in the range.
    pub fn capacity(&self) -> usize {
        self.used.len()
    }

    fn is_free(&self, p: u16) -> bool {
        self.state(p) == Some(Use::Free)
    }

    fn state(&self, p: u16) -> Option<Use> {
        (p >= self.first && p <= self.last).then(|| self.used[usize::from(p - self.first)])
    }

    fn mark(&mut self, p: u16, to: Use) {
        let i = usize::from(p - self.first);
        let was = std::mem::replace(&mut self.used[i], to);
        match (was == Use::Free, to == Use::Free) {
            (true, false) => self.in_use += 1,
            (false, true) => self.in_use -= 1,
            _ => {}
        }
    }

    /// The candidate at cursor `p` (the next even port for a pair) and the cursor
    /// after it. `p + 1` wraps to 0 when `p` is 65535 and a pair is asked for: the
    /// cursor then restarts at the range's start rather than walking ports below it.
    fn step(&self, p: u16, pair: bool) -> (u16, u16) {
        let cand = if pair && p % 2 == 1 {
            p.wrapping_add(1)
        } else {
            p
        };
        let step = if pair { 2 } else { 1 };
        let next = if cand < self.first || u32::from(cand) + step > u32::from(self.last) {
            self.first
        } else {
            cand + step as u16
        };
        (cand, next)
    }

    /// Binds a port (an even RTP port and the next one for RTCP when `pair`),
    /// trying the range round-robin and skipping ports that fail to bind.
    pub fn allocate(&mut self, pair: bool) -> io::Result<PortPair> {
        let span = u32::from(self.last - self.first) + 1;
        let mut p = self.next;
        for _ in 0..span {
            let cand;
            (cand, p) = self.step(p, pair);
            if !self.is_free(cand) || (pair && !self.is_free(cand.wrapping_add(1))) {
                continue;
            }
            let Ok(rtp) = udp_socket(SocketAddr::new(self.ip, cand), false, self.socket_buffer)
            else {
                continue;
            };
            let rtcp = if pair {
                match udp_socket(
                    SocketAddr::new(self.ip, cand + 1),
                    false,
                    self.socket_buffer,
                ) {
                    Ok(s) => Some(s),
                    Err(_) => continue,
                }
            } else {
                None
            };
            if pair {
                self.mark(cand, Use::PairRtp);
                self.mark(cand + 1, Use::PairRtcp);
            } else {
                self.mark(cand, Use::Single);
            }
            self.next = p;
            return Ok(PortPair {
                port: cand,
                rtp,
                rtcp,
            });
        }
        Err(io::Error::new(
            io::ErrorKind::AddrNotAvailable,
            format!(
                "no free {} in {}-{} on {} ({} in use)",
                if pair { "port pair" } else { "port" },
                self.first,
                self.last,
                self.ip,
                self.in_use
            ),
        ))
    }

    /// Gives back a port handed out by [`PortAllocator::allocate`] (and its RTCP
    /// neighbour when it was allocated as a pair). Only what was allocated that
    /// way is freed: a port that is free, outside the range, the RTCP half of a
    /// pair, or released with the wrong `pair` flag is refused (`false`) and
    /// changes nothing, so a caller's mistake cannot free a neighbour that
    /// another call holds.
    pub fn release(&mut self, port: u16, pair: bool) -> bool {
        match (self.state(port), pair) {
            (Some(Use::Single), false) => {
                self.mark(port, Use::Free);
                true
            }
            (Some(Use::PairRtp), true) => {
                self.mark(port, Use::Free);
                self.mark(port + 1, Use::Free);
                true
            }
            _ => false,
        }
    }
}

/// Binds one SO_REUSEPORT socket per worker on `addr` (port 0 picks one port for
/// the group) and, with more than one worker, steers flows by remote port so that
/// [`crate::sys::reuseport_index`] predicts the worker.
pub fn shared_group(
    addr: SocketAddr,
    workers: usize,
    buffer: Option<usize>,
) -> io::Result<Vec<UdpSocket>> {
    let first = udp_socket(addr, true, buffer)?;
    let bound = first.local_addr()?;
    let mut v = vec![first];
    for _ in 1..workers {
        v.push(udp_socket(bound, true, buffer)?);
    }
    if workers > 1 {
        use std::os::fd::AsRawFd;
        crate::sys::attach_reuseport_steering(v[0].as_raw_fd(), bound.ip(), workers as u32)?;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn allocates_pairs_skips_held_ports_and_reuses_released() {
        // Find a free window of 8 ports by binding port 0 and looking around it.
        let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port() & !1;
        drop(probe);
        let (first, last) = (
            base.saturating_sub(8).max(1024),
            base.saturating_sub(8).max(1024) + 7,
        );
        let mut a = PortAllocator::new(IpAddr::V4(Ipv4Addr::LOCALHOST), first, last).unwrap();
        // Someone else holds a port in the range: it is skipped, not fatal.
        let held = UdpSocket::bind((Ipv4Addr::LOCALHOST, first + (first % 2))).ok();
        let mut got = Vec::new();
        while let Ok(p) = a.allocate(true) {
            assert_eq!(p.port % 2, 0);
            assert_eq!(
                p.rtcp.as_ref().unwrap().local_addr().unwrap().port(),
                p.port + 1
            );
            got.push(p);
        }
        assert!(!got.is_empty() && got.len() <= 4);
        if held.is_some() {
            assert!(got.iter().all(|p| p.port != first + (first % 2)));
        }
        let err = a.allocate(true).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrNotAvailable);
        let p = got.pop().unwrap();
        let port = p.port;
        drop(p);
        a.release(port, true);
        assert_eq!(a.allocate(true).unwrap().port, port);
        assert!(PortAllocator::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 10, 5).is_err());
    }

    /// Release frees exactly what was allocated: a wrong `pair` flag, the RTCP
    /// half of a pair, a free port or one outside the range change nothing (a
    /// release(pair=true) of a single port used to free the neighbour above it,
    /// which another call could hold).
    #[test]
    fn release_frees_only_what_was_allocated() {
        let l = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        let first = base.saturating_sub(8).max(1024) & !1;
        let mut a = PortAllocator::new(IpAddr::V4(Ipv4Addr::LOCALHOST), first, first + 63).unwrap();
        let single = a.allocate(false).unwrap();
        let pair = a.allocate(true).unwrap();
        let (s, p) = (single.port, pair.port);
        assert_eq!(a.in_use(), 3);
        assert!(!a.release(s, true), "a single port released as a pair");
        assert!(!a.release(p, false), "a pair released as a single port");
        assert!(!a.release(p + 1, true), "the RTCP half of a pair");
        assert!(!a.release(p + 1, false));
        assert!(!a.release(first + 63, false), "a free port");
        assert!(!a.release(first.wrapping_sub(2), true), "outside the range");
        assert_eq!(a.in_use(), 3, "nothing was freed");
        assert!(a.release(p, true));
        assert!(a.release(s, false));
        assert!(!a.release(s, false), "released twice");
        assert_eq!(a.in_use(), 0);
    }

    /// A single port at 65534 leaves the round-robin cursor at 65535; the next pair
    /// must wrap to the range's start, not to ports 0, 2, 4... below the range
    /// (which reported a full range while pairs were free). The cursor arithmetic
    /// alone, so that no test binds fixed ports at the top of the port space.
    #[test]
    fn the_cursor_wraps_to_the_range_start_at_the_top_of_the_port_space() {
        let a = PortAllocator::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 65532, 65535).unwrap();
        assert_eq!(a.step(65534, false), (65534, 65535));
        assert_eq!(a.step(65535, false), (65535, 65532));
        assert_eq!(a.step(65535, true), (0, 65532), "a pair at 65535 wraps");
        assert_eq!(a.step(65533, true), (65534, 65532));
        assert_eq!(a.step(65532, true), (65532, 65534));
    }

    #[test]
    fn shared_group_binds_one_port_for_all_workers() {
        let g = shared_group("127.0.0.1:0".parse().unwrap(), 3, None).unwrap();
        let port = g[0].local_addr().unwrap().port();
        assert!(g.iter().all(|s| s.local_addr().unwrap().port() == port));
    }
}
