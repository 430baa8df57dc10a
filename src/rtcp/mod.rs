//! RTCP (RFC 3550 and its extensions) as zero-copy views and writers.
//!
//! A datagram is a compound of RTCP packets. [`Compound`] iterates over it and yields
//! each sub-packet as a typed view ([`RtcpPacket`]) or a typed [`RtcpError`] for the
//! one that is broken. Views borrow the datagram and never allocate; every accessor
//! is bounds-checked once, at construction. Writers (`*Repr` types and the
//! [`CompoundBuilder`]) serialise into a caller-provided buffer and return the length
//! written.
//!
//! Reduced-size RTCP (RFC 5506) is accepted by the iterator; [`validate_compound`]
//! applies the RFC 3550 A.2 rules when strict checking is wanted.

use core::fmt;

mod fb;
mod report;
mod sdes;
mod xr;

pub use fb::{
    Ccfb, CcfbMetric, CcfbRepr, CcfbReprBlock, CcfbStream, Fir, FirEntry, FirRepr, Nack, NackPair,
    NackRepr, Pli, PliRepr, Remb, RembRepr, Twcc, TwccRepr, TwccStatus,
};
pub use report::{ReceiverReport, ReportBlock, RrRepr, SenderReport, SrRepr};
pub use sdes::item as sdes_item;
pub use sdes::{App, AppRepr, Bye, ByeRepr, Sdes, SdesChunk, SdesItem, SdesItemList, SdesRepr};
pub use xr::bt as xr_block_type;
pub use xr::{DlrrItem, StatsSummary, VoipMetrics, Xr, XrBlock, XrBlockRepr, XrRepr};

/// RTCP packet types (RFC 3550, RFC 4585, RFC 3611).
pub mod pt {
    /// Sender report.
    pub const SR: u8 = 200;
    /// Receiver report.
    pub const RR: u8 = 201;
    /// Source description.
    pub const SDES: u8 = 202;
    /// Goodbye.
    pub const BYE: u8 = 203;
    /// Application-defined.
    pub const APP: u8 = 204;
    /// Transport-layer feedback (RFC 4585).
    pub const RTPFB: u8 = 205;
    /// Payload-specific feedback (RFC 4585).
    pub const PSFB: u8 = 206;
    /// Extended reports (RFC 3611).
    pub const XR: u8 = 207;
}

/// Why an RTCP packet could not be read or written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RtcpError {
    /// Shorter than its header or than a structure it announces.
    Truncated,
    /// The version field is not 2.
    BadVersion(u8),
    /// The length field points past the end of the datagram.
    BadLength,
    /// The padding count is zero or larger than the packet body.
    BadPadding,
    /// The count field (report blocks, sources, items) does not match the length.
    CountMismatch,
    /// An item, block or chunk inside the packet is malformed.
    BadItem,
    /// The caller's buffer is too small for what is being written.
    BufferTooSmall,
    /// A value does not fit its field (too many report blocks, text too long, ...).
    InvalidValue,
    /// Strict validation (RFC 3550 A.2) failed: the compound does not start with SR/RR,
    /// or a packet other than the last one is padded.
    NotCompliant,
}

impl fmt::Display for RtcpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RtcpError::Truncated => "RTCP packet truncated",
            RtcpError::BadVersion(v) => return write!(f, "RTCP version {v}, expected 2"),
            RtcpError::BadLength => "RTCP length field runs past the datagram",
            RtcpError::BadPadding => "RTCP padding count is zero or exceeds the body",
            RtcpError::CountMismatch => "RTCP count field does not match the length",
            RtcpError::BadItem => "malformed item inside an RTCP packet",
            RtcpError::BufferTooSmall => "output buffer too small",
            RtcpError::InvalidValue => "value does not fit its RTCP field",
            RtcpError::NotCompliant => "compound RTCP violates RFC 3550 A.2",
        };
        f.write_str(s)
    }
}

impl std::error::Error for RtcpError {}

/// The common header of one RTCP packet, plus where its body lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtcpHeader {
    /// The P bit.
    pub padding: bool,
    /// The 5-bit count field (RC, SC, FMT or subtype, depending on the type).
    pub count: u8,
    /// Packet type.
    pub packet_type: u8,
    /// Total length of the packet in bytes, header and padding included.
    pub len: usize,
    /// Number of padding bytes at the end (0 when P is clear).
    pub pad_len: usize,
}

impl RtcpHeader {
    /// Reads and checks the header at the start of `buf` (which may hold further
    /// packets after this one).
    pub fn parse(buf: &[u8]) -> Result<Self, RtcpError> {
        let [b0, b1, l0, l1, ..] = *buf else {
            return Err(RtcpError::Truncated);
        };
        let version = b0 >> 6;
        if version != 2 {
            return Err(RtcpError::BadVersion(version));
        }
        let len = (usize::from(u16::from_be_bytes([l0, l1])) + 1) * 4;
        if len > buf.len() {
            return Err(RtcpError::BadLength);
        }
        let padding = b0 & 0x20 != 0;
        let pad_len = if padding {
            let p = usize::from(buf[len - 1]);
            if p == 0 || p > len - 4 {
                return Err(RtcpError::BadPadding);
            }
            p
        } else {
            0
        };
        Ok(RtcpHeader {
            padding,
            count: b0 & 0x1f,
            packet_type: b1,
            len,
            pad_len,
        })
    }
}

/// One RTCP packet of a compound, as a typed view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcpPacket<'a> {
    /// Sender report.
    Sr(SenderReport<'a>),
    /// Receiver report.
    Rr(ReceiverReport<'a>),
    /// Source description.
    Sdes(Sdes<'a>),
    /// Goodbye.
    Bye(Bye<'a>),
    /// Application-defined.
    App(App<'a>),
    /// Extended report.
    Xr(Xr<'a>),
    /// Generic NACK (RTPFB FMT 1).
    Nack(Nack<'a>),
    /// Transport-wide congestion control feedback (RTPFB FMT 15).
    Twcc(Twcc<'a>),
    /// RFC 8888 congestion control feedback (RTPFB FMT 11).
    Ccfb(Ccfb<'a>),
    /// Picture loss indication (PSFB FMT 1).
    Pli(Pli),
    /// Full intra request (PSFB FMT 4).
    Fir(Fir<'a>),
    /// Receiver estimated maximum bitrate (PSFB FMT 15, "REMB").
    Remb(Remb<'a>),
    /// A feedback message of a kind not decoded here (type, FMT, body).
    OtherFb {
        /// RTPFB or PSFB.
        packet_type: u8,
        /// The FMT field.
        fmt: u8,
        /// The body after the common header (padding removed).
        body: &'a [u8],
    },
    /// A packet type not decoded here.
    Unknown {
        /// The header.
        header: RtcpHeader,
        /// The body after the common header (padding removed).
        body: &'a [u8],
    },
}

impl<'a> RtcpPacket<'a> {
    /// Parses one packet from the start of `buf`; returns it and its length.
    pub fn parse(buf: &'a [u8]) -> Result<(Self, usize), (RtcpError, Option<usize>)> {
        let h = RtcpHeader::parse(buf).map_err(|e| (e, None))?;
        let body = buf.get(4..h.len - h.pad_len).unwrap_or(&[]);
        Self::from_parts(h, body)
            .map(|p| (p, h.len))
            .map_err(|e| (e, Some(h.len)))
    }

    fn from_parts(h: RtcpHeader, body: &'a [u8]) -> Result<Self, RtcpError> {
        Ok(match h.packet_type {
            pt::SR => RtcpPacket::Sr(SenderReport::parse(h.count, body)?),
            pt::RR => RtcpPacket::Rr(ReceiverReport::parse(h.count, body)?),
            pt::SDES => RtcpPacket::Sdes(Sdes::parse(h.count, body)?),
            pt::BYE => RtcpPacket::Bye(Bye::parse(h.count, body)?),
            pt::APP => RtcpPacket::App(App::parse(h.count, body)?),
            pt::XR => RtcpPacket::Xr(Xr::parse(body)?),
            pt::RTPFB => match h.count {
                1 => RtcpPacket::Nack(Nack::parse(body)?),
                11 => RtcpPacket::Ccfb(Ccfb::parse(body)?),
                15 => RtcpPacket::Twcc(Twcc::parse(body)?),
                fmt => other_fb(h.packet_type, fmt, body)?,
            },
            pt::PSFB => match h.count {
                1 => RtcpPacket::Pli(Pli::parse(body)?),
                4 => RtcpPacket::Fir(Fir::parse(body)?),
                15 if body.get(8..12) == Some(b"REMB") => RtcpPacket::Remb(Remb::parse(body)?),
                fmt => other_fb(h.packet_type, fmt, body)?,
            },
            _ => RtcpPacket::Unknown { header: h, body },
        })
    }

    /// The packet type byte.
    pub fn packet_type(&self) -> u8 {
        match self {
            RtcpPacket::Sr(_) => pt::SR,
            RtcpPacket::Rr(_) => pt::RR,
            RtcpPacket::Sdes(_) => pt::SDES,
            RtcpPacket::Bye(_) => pt::BYE,
            RtcpPacket::App(_) => pt::APP,
            RtcpPacket::Xr(_) => pt::XR,
            RtcpPacket::Nack(_) | RtcpPacket::Twcc(_) | RtcpPacket::Ccfb(_) => pt::RTPFB,
            RtcpPacket::Pli(_) | RtcpPacket::Fir(_) | RtcpPacket::Remb(_) => pt::PSFB,
            RtcpPacket::OtherFb { packet_type, .. } => *packet_type,
            RtcpPacket::Unknown { header, .. } => header.packet_type,
        }
    }
}

fn other_fb(packet_type: u8, fmt: u8, body: &[u8]) -> Result<RtcpPacket<'_>, RtcpError> {
    if body.len() < 8 {
        return Err(RtcpError::Truncated);
    }
    Ok(RtcpPacket::OtherFb {
        packet_type,
        fmt,
        body,
    })
}

/// Iterator over the packets of a compound RTCP datagram.
///
/// Yields `Ok(packet)` for each well-formed packet and `Err(e)` for a broken one.
/// When the broken packet's length field can be trusted, iteration goes on with the
/// next packet; when it cannot (bad version, length past the end), it stops.
#[derive(Debug, Clone)]
pub struct Compound<'a> {
    rest: &'a [u8],
}

impl<'a> Compound<'a> {
    /// Iterates over `datagram`.
    pub fn new(datagram: &'a [u8]) -> Self {
        Compound { rest: datagram }
    }
}

impl<'a> Iterator for Compound<'a> {
    type Item = Result<RtcpPacket<'a>, RtcpError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match RtcpPacket::parse(self.rest) {
            Ok((p, len)) => {
                self.rest = self.rest.get(len..).unwrap_or(&[]);
                Some(Ok(p))
            }
            Err((e, Some(len))) => {
                self.rest = self.rest.get(len..).unwrap_or(&[]);
                Some(Err(e))
            }
            Err((e, None)) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

/// Checks a compound against RFC 3550 A.2: every header valid, lengths adding up to
/// the datagram, only the last packet padded, and (when `strict`) the first packet
/// an SR or RR. With `strict == false` this accepts reduced-size RTCP (RFC 5506).
/// Returns the number of packets.
pub fn validate_compound(datagram: &[u8], strict: bool) -> Result<usize, RtcpError> {
    let mut rest = datagram;
    let mut n = 0usize;
    if rest.is_empty() {
        return Err(RtcpError::Truncated);
    }
    while !rest.is_empty() {
        let h = RtcpHeader::parse(rest)?;
        if strict && n == 0 && h.packet_type != pt::SR && h.packet_type != pt::RR {
            return Err(RtcpError::NotCompliant);
        }
        if h.padding && h.len != rest.len() {
            return Err(RtcpError::NotCompliant);
        }
        rest = rest.get(h.len..).unwrap_or(&[]);
        n += 1;
    }
    Ok(n)
}

/// A bounds-checked big-endian writer over a caller buffer.
#[derive(Debug)]
pub(crate) struct Writer<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl<'b> Writer<'b> {
    pub(crate) fn new(buf: &'b mut [u8]) -> Self {
        Writer { buf, pos: 0 }
    }
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) -> Result<(), RtcpError> {
        let end = self
            .pos
            .checked_add(b.len())
            .ok_or(RtcpError::BufferTooSmall)?;
        self.buf
            .get_mut(self.pos..end)
            .ok_or(RtcpError::BufferTooSmall)?
            .copy_from_slice(b);
        self.pos = end;
        Ok(())
    }
    pub(crate) fn u8(&mut self, v: u8) -> Result<(), RtcpError> {
        self.bytes(&[v])
    }
    pub(crate) fn u16(&mut self, v: u16) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn u24(&mut self, v: u32) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes()[1..])
    }
    pub(crate) fn u32(&mut self, v: u32) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn u64(&mut self, v: u64) -> Result<(), RtcpError> {
        self.bytes(&v.to_be_bytes())
    }
    pub(crate) fn zeros(&mut self, n: usize) -> Result<(), RtcpError> {
        for _ in 0..n {
            self.u8(0)?;
        }
        Ok(())
    }
    /// Zero bytes up to the next multiple of four.
    pub(crate) fn align4(&mut self) -> Result<(), RtcpError> {
        self.zeros((4 - self.pos % 4) % 4)
    }
}

/// Writes one RTCP packet: header, then `body` writes the body. If the body is not a
/// multiple of four bytes long, RTCP padding (P bit and count) fills it up.
pub(crate) fn emit_packet(
    buf: &mut [u8],
    count: u8,
    packet_type: u8,
    body: impl FnOnce(&mut Writer<'_>) -> Result<(), RtcpError>,
) -> Result<usize, RtcpError> {
    if count > 31 {
        return Err(RtcpError::InvalidValue);
    }
    let mut w = Writer::new(buf);
    w.bytes(&[0x80 | count, packet_type, 0, 0])?;
    body(&mut w)?;
    let pad = (4 - w.pos() % 4) % 4;
    if pad != 0 {
        w.zeros(pad - 1)?;
        w.u8(pad as u8)?;
    }
    let len = w.pos();
    let words = len / 4 - 1;
    let words = u16::try_from(words).map_err(|_| RtcpError::InvalidValue)?;
    if pad != 0 {
        buf[0] |= 0x20;
    }
    buf[2..4].copy_from_slice(&words.to_be_bytes());
    Ok(len)
}

/// Reads a big-endian u16 at `at` (caller checked the bounds).
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    match b.get(at..at + 2) {
        Some(&[x, y]) => u16::from_be_bytes([x, y]),
        _ => 0,
    }
}

/// Reads a big-endian u32 at `at` (caller checked the bounds).
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    match b.get(at..at + 4) {
        Some(&[a, c, d, e]) => u32::from_be_bytes([a, c, d, e]),
        _ => 0,
    }
}

/// Reads a big-endian u64 at `at` (caller checked the bounds).
pub(crate) fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

/// Something that serialises as one RTCP packet.
pub trait RtcpWrite {
    /// Writes the packet into `buf` and returns its length.
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError>;
}

/// Builds a compound RTCP datagram packet by packet into one buffer.
#[derive(Debug)]
pub struct CompoundBuilder<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> CompoundBuilder<'b> {
    /// Starts an empty compound in `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        CompoundBuilder { buf, len: 0 }
    }

    /// Appends one packet.
    pub fn push(&mut self, packet: &dyn RtcpWrite) -> Result<&mut Self, RtcpError> {
        let rest = self
            .buf
            .get_mut(self.len..)
            .ok_or(RtcpError::BufferTooSmall)?;
        self.len += packet.emit(rest)?;
        Ok(self)
    }

    /// Length written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Finishes and returns the datagram.
    pub fn finish(self) -> &'b [u8] {
        let CompoundBuilder { buf, len } = self;
        &buf[..len]
    }
}

#[cfg(test)]
mod tests;
