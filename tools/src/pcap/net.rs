//! Hand-written link, IPv4/IPv6 and UDP parsing for captured frames.
//!
//! Every function takes untrusted bytes and returns a typed error instead of
//! panicking: lengths are checked with `get`, lying length fields are errors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// pcap link types this module understands (tcpdump.org LINKTYPE_* values).
pub mod linktype {
    /// BSD loopback: 4-byte address family in host byte order.
    pub const NULL: u32 = 0;
    /// Ethernet II (with optional 802.1Q / 802.1ad tags).
    pub const ETHERNET: u32 = 1;
    /// Raw IP (version from the first nibble).
    pub const RAW: u32 = 101;
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: u32 = 108;
    /// Linux cooked capture v1.
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4.
    pub const IPV4: u32 = 228;
    /// Raw IPv6.
    pub const IPV6: u32 = 229;
    /// Linux cooked capture v2.
    pub const LINUX_SLL2: u32 = 276;
}

/// Why a frame could not be read as IPv4/IPv6 + UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NetError {
    /// The link type is not one of [`linktype`].
    UnsupportedLinkType(u32),
    /// The frame ends inside a header.
    Truncated,
    /// The frame carries something other than IPv4/IPv6 (ARP, ...).
    NotIp,
    /// An IP header field is inconsistent (version, header length, total length).
    BadIpHeader,
    /// An IP fragment (only unfragmented datagrams are analysed).
    Fragment,
    /// IP, but not UDP.
    NotUdp,
    /// The UDP length field is below 8 or runs past the IP payload.
    BadUdpLength,
    /// The replacement payload does not fit a UDP datagram.
    PayloadTooLarge,
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::UnsupportedLinkType(l) => write!(f, "unsupported link type {l}"),
            NetError::Truncated => f.write_str("frame truncated inside a header"),
            NetError::NotIp => f.write_str("not an IPv4/IPv6 frame"),
            NetError::BadIpHeader => f.write_str("inconsistent IP header"),
            NetError::Fragment => f.write_str("IP fragment"),
            NetError::NotUdp => f.write_str("not UDP"),
            NetError::BadUdpLength => f.write_str("bad UDP length field"),
            NetError::PayloadTooLarge => f.write_str("payload too large for UDP"),
        }
    }
}

impl std::error::Error for NetError {}

/// Where the IP, UDP and payload parts of a frame are, and the endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFrame {
    /// Offset of the IP header in the frame.
    pub ip_offset: usize,
    /// Offset of the UDP header in the frame.
    pub udp_offset: usize,
    /// Offset of the UDP payload in the frame.
    pub payload_offset: usize,
    /// Length of the UDP payload (from the UDP length field).
    pub payload_len: usize,
    /// Source address and port.
    pub src: SocketAddr,
    /// Destination address and port.
    pub dst: SocketAddr,
}

impl UdpFrame {
    /// The payload range within the frame.
    pub fn payload_range(&self) -> std::ops::Range<usize> {
        self.payload_offset..self.payload_offset + self.payload_len
    }
}

fn be16(b: &[u8], at: usize) -> Result<u16, NetError> {
    match b.get(at..at + 2) {
        Some(s) => Ok(u16::from_be_bytes([s[0], s[1]])),
        None => Err(NetError::Truncated),
    }
}

fn byte(b: &[u8], at: usize) -> Result<u8, NetError> {
    b.get(at).copied().ok_or(NetError::Truncated)
}

/// Ethertypes.
const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88a8, 0x9100];

/// Finds the offset of the IP header for a link type.
pub fn ip_offset(link: u32, frame: &[u8]) -> Result<usize, NetError> {
    match link {
        linktype::ETHERNET => {
            let mut off = 12;
            let mut ethertype = be16(frame, off)?;
            // Up to a few stacked VLAN tags (802.1Q, 802.1ad QinQ).
            let mut tags = 0;
            while ETH_VLAN.contains(&ethertype) {
                tags += 1;
                if tags > 4 {
                    return Err(NetError::NotIp);
                }
                off += 4;
                ethertype = be16(frame, off)?;
            }
            ethertype_ip(ethertype, off + 2)
        }
        linktype::LINUX_SLL => ethertype_ip(be16(frame, 14)?, 16),
        linktype::LINUX_SLL2 => ethertype_ip(be16(frame, 0)?, 20),
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => Ok(0),
        linktype::NULL | linktype::LOOP => {
            let fam = frame.get(0..4).ok_or(NetError::Truncated)?;
            let fam = [fam[0], fam[1], fam[2], fam[3]];
            // NULL is host byte order of the capturing machine: accept either order.
            let le = u32::from_le_bytes(fam);
            let be = u32::from_be_bytes(fam);
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24, 28 or 30 (BSDs).
            let ok = |v: u32| matches!(v, 2 | 10 | 24 | 28 | 30);
            if ok(le) || ok(be) {
                Ok(4)
            } else {
                Err(NetError::NotIp)
            }
        }
        other => Err(NetError::UnsupportedLinkType(other)),
    }
}

fn ethertype_ip(ethertype: u16, off: usize) -> Result<usize, NetError> {
    if ethertype == ETH_IPV4 || ethertype == ETH_IPV6 {
        Ok(off)
    } else {
        Err(NetError::NotIp)
    }
}

/// Parses a captured frame of link type `link` down to its UDP payload.
pub fn parse_udp_frame(link: u32, frame: &[u8]) -> Result<UdpFrame, NetError> {
    let ip_off = ip_offset(link, frame)?;
    let ip = frame.get(ip_off..).ok_or(NetError::Truncated)?;
    let version = byte(ip, 0)? >> 4;
    let (udp_rel, ip_payload_end, src_ip, dst_ip) = match version {
        4 => parse_ipv4(ip)?,
        6 => parse_ipv6(ip)?,
        _ => return Err(NetError::NotIp),
    };
    let udp = ip.get(udp_rel..ip_payload_end).ok_or(NetError::Truncated)?;
    let sport = be16(udp, 0)?;
    let dport = be16(udp, 2)?;
    let ulen = usize::from(be16(udp, 4)?);
    be16(udp, 6)?;
    if ulen < 8 || ulen > udp.len() {
        return Err(NetError::BadUdpLength);
    }
    Ok(UdpFrame {
        ip_offset: ip_off,
        udp_offset: ip_off + udp_rel,
        payload_offset: ip_off + udp_rel + 8,
        payload_len: ulen - 8,
        src: SocketAddr::new(src_ip, sport),
        dst: SocketAddr::new(dst_ip, dport),
    })
}

/// Returns (UDP offset, end of IP payload, src, dst), offsets relative to the IP header.
fn parse_ipv4(ip: &[u8]) -> Result<(usize, usize, IpAddr, IpAddr), NetError> {
    let ihl = usize::from(byte(ip, 0)? & 0x0f) * 4;
    let total = usize::from(be16(ip, 2)?);
    if ihl < 20 {
        return Err(NetError::BadIpHeader);
    }
    if ip.len() < ihl {
        return Err(NetError::Truncated);
    }
    if total < ihl {
        return Err(NetError::BadIpHeader);
    }
    if total > ip.len() {
        // Cut by the snap length (or lying): the UDP payload is not all there.
        return Err(NetError::Truncated);
    }
    let frag = be16(ip, 6)?;
    if frag & 0x3fff != 0 {
        // MF set or a non-zero offset.
        return Err(NetError::Fragment);
    }
    if byte(ip, 9)? != 17 {
        return Err(NetError::NotUdp);
    }
    let a = ip.get(12..20).ok_or(NetError::Truncated)?;
    let src = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
    let dst = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
    Ok((ihl, total, IpAddr::V4(src), IpAddr::V4(dst)))
}

fn parse_ipv6(ip: &[u8]) -> Result<(usize, usize, IpAddr, IpAddr), NetError> {
    let plen = usize::from(be16(ip, 4)?);
    let mut next = byte(ip, 6)?;
    let addrs = ip.get(8..40).ok_or(NetError::Truncated)?;
    let mut s = [0u8; 16];
    let mut d = [0u8; 16];
    s.copy_from_slice(&addrs[..16]);
    d.copy_from_slice(&addrs[16..]);
    let end = 40 + plen;
    if end > ip.len() {
        return Err(NetError::Truncated);
    }
    let mut off = 40;
    // Walk a bounded number of extension headers.
    for _ in 0..8 {
        match next {
            17 => {
                return Ok((
                    off,
                    end,
                    IpAddr::V6(Ipv6Addr::from(s)),
                    IpAddr::V6(Ipv6Addr::from(d)),
                ))
            }
            // hop-by-hop, routing, destination options: length in 8-octet units + 1
            0 | 43 | 60 => {
                let n = byte(ip, off)?;
                let len = (usize::from(byte(ip, off + 1)?) + 1) * 8;
                next = n;
                off += len;
                if off > end {
                    return Err(NetError::BadIpHeader);
                }
            }
            44 => return Err(NetError::Fragment),
            _ => return Err(NetError::NotUdp),
        }
    }
    Err(NetError::NotUdp)
}

/// The internet checksum (RFC 1071) of `data`, continuing from `sum`.
fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A copy of `frame` (parsed as `udp`) whose UDP payload is `payload`: the IP total
/// length (IPv4) or payload length (IPv6), the IPv4 header checksum and the UDP length
/// are recomputed, and the UDP checksum is recomputed over the new datagram (so the
/// result passes checksum validation in Wireshark). Bytes after the IP datagram in the
/// original frame (Ethernet padding) are dropped.
pub fn replace_udp_payload(
    frame: &[u8],
    udp: &UdpFrame,
    payload: &[u8],
) -> Result<Vec<u8>, NetError> {
    let ulen = payload.len() + 8;
    let head = frame.get(..udp.payload_offset).ok_or(NetError::Truncated)?;
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head);
    out.extend_from_slice(payload);
    let ip = udp.ip_offset;
    let ip_version = byte(&out, ip)? >> 4;
    let ip_payload_len = udp
        .payload_offset
        .checked_sub(8 + ip)
        .ok_or(NetError::Truncated)?
        + ulen;
    let u16_at = |out: &mut Vec<u8>, at: usize, v: u16| -> Result<(), NetError> {
        let s = out.get_mut(at..at + 2).ok_or(NetError::Truncated)?;
        s.copy_from_slice(&v.to_be_bytes());
        Ok(())
    };
    let ulen16 = u16::try_from(ulen).map_err(|_| NetError::PayloadTooLarge)?;
    let mut pseudo = 0u32;
    match ip_version {
        4 => {
            let total = u16::try_from(ip_payload_len).map_err(|_| NetError::PayloadTooLarge)?;
            u16_at(&mut out, ip + 2, total)?;
            u16_at(&mut out, ip + 10, 0)?;
            let ihl = usize::from(byte(&out, ip)? & 0x0f) * 4;
            let hdr = out.get(ip..ip + ihl).ok_or(NetError::Truncated)?;
            let c = checksum_fold(checksum_add(0, hdr));
            u16_at(&mut out, ip + 10, c)?;
            pseudo = checksum_add(
                pseudo,
                out.get(ip + 12..ip + 20).ok_or(NetError::Truncated)?,
            );
        }
        6 => {
            let plen = ip_payload_len
                .checked_sub(40)
                .ok_or(NetError::BadIpHeader)?;
            let plen = u16::try_from(plen).map_err(|_| NetError::PayloadTooLarge)?;
            u16_at(&mut out, ip + 4, plen)?;
            pseudo = checksum_add(pseudo, out.get(ip + 8..ip + 40).ok_or(NetError::Truncated)?);
        }
        _ => return Err(NetError::NotIp),
    }
    pseudo += 17 + u32::from(ulen16);
    u16_at(&mut out, udp.udp_offset + 4, ulen16)?;
    u16_at(&mut out, udp.udp_offset + 6, 0)?;
    let seg = out.get(udp.udp_offset..).ok_or(NetError::Truncated)?;
    let mut c = checksum_fold(checksum_add(pseudo, seg));
    if c == 0 {
        // 0 means "no checksum" in UDP; a computed 0 is sent as 0xffff.
        c = 0xffff;
    }
    u16_at(&mut out, udp.udp_offset + 6, c)?;
    Ok(out)
}

/// Builds a raw IPv4 + UDP datagram (link type [`linktype::RAW`] or
/// [`linktype::IPV4`]) carrying `payload`, with valid checksums. Both addresses must be
/// IPv4 (or both IPv6, which builds an IPv6 datagram).
pub fn build_ip_udp(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, NetError> {
    let mut out = Vec::with_capacity(48 + payload.len());
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&[0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&[0x60, 0, 0, 0, 0, 0, 17, 64]);
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
        }
        _ => return Err(NetError::BadIpHeader),
    }
    let udp_offset = out.len();
    out.extend_from_slice(&src.port().to_be_bytes());
    out.extend_from_slice(&dst.port().to_be_bytes());
    out.extend_from_slice(&[0, 8, 0, 0]);
    let frame = UdpFrame {
        ip_offset: 0,
        udp_offset,
        payload_offset: udp_offset + 8,
        payload_len: 0,
        src,
        dst,
    };
    replace_udp_payload(&out, &frame, payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(a: [u8; 4], p: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(a)), p)
    }

    #[test]
    fn ipv4_udp_roundtrip_and_checksums() {
        let pkt =
            build_ip_udp(v4([127, 0, 0, 1], 5000), v4([127, 0, 0, 1], 6000), b"hello").unwrap();
        assert_eq!(pkt.len(), 20 + 8 + 5);
        // A correct IPv4 header sums to 0xffff (checksum of it is 0).
        assert_eq!(checksum_fold(checksum_add(0, &pkt[..20])), 0);
        let f = parse_udp_frame(linktype::RAW, &pkt).unwrap();
        assert_eq!(&pkt[f.payload_range()], b"hello");
        assert_eq!(f.src.port(), 5000);
        assert_eq!(f.dst, v4([127, 0, 0, 1], 6000));
        // UDP checksum over pseudo header verifies to 0.
        let mut s = checksum_add(0, &pkt[12..20]);
        s += 17 + 13;
        assert_eq!(checksum_fold(checksum_add(s, &pkt[20..])), 0);
        // Replace with a longer payload; lengths follow.
        let big = replace_udp_payload(&pkt, &f, &[7u8; 300]).unwrap();
        let g = parse_udp_frame(linktype::RAW, &big).unwrap();
        assert_eq!(g.payload_len, 300);
        assert_eq!(u16::from_be_bytes([big[2], big[3]]), 328);
        assert_eq!(checksum_fold(checksum_add(0, &big[..20])), 0);
    }

    #[test]
    fn ethernet_vlan_sll_null() {
        let ip = build_ip_udp(v4([10, 0, 0, 1], 1), v4([10, 0, 0, 2], 2), b"x").unwrap();
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x00]);
        eth.extend_from_slice(&ip);
        eth.extend_from_slice(&[0u8; 10]); // Ethernet padding
        let f = parse_udp_frame(linktype::ETHERNET, &eth).unwrap();
        assert_eq!(f.ip_offset, 18);
        assert_eq!(&eth[f.payload_range()], b"x");
        let mut sll = vec![0u8; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip);
        assert_eq!(
            parse_udp_frame(linktype::LINUX_SLL, &sll)
                .unwrap()
                .ip_offset,
            16
        );
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0u8; 18]);
        sll2.extend_from_slice(&ip);
        assert_eq!(
            parse_udp_frame(linktype::LINUX_SLL2, &sll2)
                .unwrap()
                .ip_offset,
            20
        );
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        assert_eq!(
            parse_udp_frame(linktype::NULL, &null).unwrap().payload_len,
            1
        );
        let mut lo = 2u32.to_be_bytes().to_vec();
        lo.extend_from_slice(&ip);
        assert_eq!(parse_udp_frame(linktype::LOOP, &lo).unwrap().payload_len, 1);
    }

    #[test]
    fn ipv6_with_extension_header() {
        let s = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 4000);
        let pkt = build_ip_udp(s, s, b"abc").unwrap();
        let f = parse_udp_frame(linktype::IPV6, &pkt).unwrap();
        assert_eq!(&pkt[f.payload_range()], b"abc");
        // Insert an 8-byte destination-options header.
        let mut ext = pkt[..40].to_vec();
        ext[6] = 60;
        ext[5] += 8;
        ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
        ext.extend_from_slice(&pkt[40..]);
        let f = parse_udp_frame(linktype::RAW, &ext).unwrap();
        assert_eq!(f.udp_offset, 48);
        assert_eq!(&ext[f.payload_range()], b"abc");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        let pkt = build_ip_udp(v4([1, 2, 3, 4], 1), v4([5, 6, 7, 8], 2), b"payload").unwrap();
        // Every truncation of every link type.
        for link in [0, 1, 101, 108, 113, 228, 229, 276, 999] {
            for n in 0..pkt.len() {
                let _ = parse_udp_frame(link, &pkt[..n]);
            }
        }
        assert_eq!(
            parse_udp_frame(linktype::RAW, &pkt[..30]),
            Err(NetError::Truncated)
        );
        // Lying UDP length
        let mut bad = pkt.clone();
        bad[24..26].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(
            parse_udp_frame(linktype::RAW, &bad),
            Err(NetError::BadUdpLength)
        );
        // Fragment
        let mut frag = pkt.clone();
        frag[6] = 0x20;
        assert_eq!(
            parse_udp_frame(linktype::RAW, &frag),
            Err(NetError::Fragment)
        );
        // Pseudo-random bytes
        let mut x: u32 = 12345;
        for _ in 0..2000 {
            let mut buf = [0u8; 64];
            for b in &mut buf {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                *b = (x >> 16) as u8;
            }
            buf[0] = 0x45;
            for link in [1, 101, 113, 276] {
                let _ = parse_udp_frame(link, &buf);
            }
        }
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parse_never_panics(link in prop::sample::select(vec![0u32, 1, 101, 108, 113, 228, 229, 276, 7]),
                              data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_udp_frame(link, &data);
        }

        #[test]
        fn build_parse_roundtrip(payload in prop::collection::vec(any::<u8>(), 0..1500),
                                 sp in any::<u16>(), dp in any::<u16>(), v6 in any::<bool>()) {
            let (s, d): (SocketAddr, SocketAddr) = if v6 {
                (SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), sp),
                 SocketAddr::new(IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)), dp))
            } else {
                (SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), sp),
                 SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)), dp))
            };
            let pkt = build_ip_udp(s, d, &payload).unwrap();
            let f = parse_udp_frame(linktype::RAW, &pkt).unwrap();
            prop_assert_eq!(&pkt[f.payload_range()], &payload[..]);
            prop_assert_eq!((f.src, f.dst), (s, d));
            // The UDP checksum verifies over the pseudo header.
            let addrs = if v6 { &pkt[8..40] } else { &pkt[12..20] };
            let ulen = (payload.len() + 8) as u32;
            let sum = checksum_add(17 + ulen, addrs);
            prop_assert_eq!(checksum_fold(checksum_add(sum, &pkt[f.udp_offset..])), 0);
        }
    }
}
