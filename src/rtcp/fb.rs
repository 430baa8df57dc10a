//! Feedback messages: generic NACK (RFC 4585), transport-wide CC feedback
//! (draft-holmer-rmcat-transport-wide-cc-extensions-01), RFC 8888 congestion control
//! feedback, PLI (RFC 4585), FIR (RFC 5104) and REMB (draft-alvestrand-rmcat-remb).

use super::{be16, be32, emit_packet, pt, RtcpError, RtcpWrite, Writer};

fn ssrc_pair(body: &[u8]) -> Result<(u32, u32, &[u8]), RtcpError> {
    if body.len() < 8 {
        return Err(RtcpError::Truncated);
    }
    Ok((be32(body, 0), be32(body, 4), &body[8..]))
}

// ---------------------------------------------------------------- NACK

/// One generic NACK entry: a lost packet ID and a bitmask of the 16 following.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NackPair {
    /// Packet ID (sequence number) of a lost packet.
    pub pid: u16,
    /// Bit i set: `pid + i + 1` is lost too.
    pub blp: u16,
}

impl NackPair {
    /// The sequence numbers this entry reports lost.
    pub fn lost(self) -> impl Iterator<Item = u16> {
        core::iter::once(self.pid).chain(
            (0..16u16)
                .filter(move |i| self.blp & (1 << i) != 0)
                .map(move |i| self.pid.wrapping_add(i + 1)),
        )
    }

    /// Packs an ascending (wrapping) list of lost sequence numbers into entries.
    /// Returns how many entries were written into `out`, or `BufferTooSmall`.
    pub fn pack(seqs: &[u16], out: &mut [NackPair]) -> Result<usize, RtcpError> {
        let mut n = 0usize;
        for &s in seqs {
            if n > 0 {
                let cur = &mut out[n - 1];
                let d = s.wrapping_sub(cur.pid);
                if d == 0 {
                    continue;
                }
                if (1..=16).contains(&d) {
                    cur.blp |= 1 << (d - 1);
                    continue;
                }
            }
            let slot = out.get_mut(n).ok_or(RtcpError::BufferTooSmall)?;
            *slot = NackPair { pid: s, blp: 0 };
            n += 1;
        }
        Ok(n)
    }
}

/// A generic NACK view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nack<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Nack<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = ssrc_pair(body)?;
        if fci.is_empty() || fci.len() % 4 != 0 {
            return Err(RtcpError::BadItem);
        }
        Ok(Nack {
            sender_ssrc,
            media_ssrc,
            fci,
        })
    }
    /// The entries.
    pub fn pairs(&self) -> impl Iterator<Item = NackPair> + 'a {
        self.fci.chunks_exact(4).map(|c| NackPair {
            pid: be16(c, 0),
            blp: be16(c, 2),
        })
    }
    /// Every sequence number reported lost.
    pub fn lost(&self) -> impl Iterator<Item = u16> + 'a {
        self.pairs().flat_map(NackPair::lost)
    }
}

/// Writer of a generic NACK.
#[derive(Debug, Clone, Copy, Default)]
pub struct NackRepr<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
    /// At least one entry.
    pub pairs: &'a [NackPair],
}

impl RtcpWrite for NackRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if self.pairs.is_empty() {
            return Err(RtcpError::InvalidValue);
        }
        emit_packet(buf, 1, pt::RTPFB, |w| {
            w.u32(self.sender_ssrc)?;
            w.u32(self.media_ssrc)?;
            self.pairs.iter().try_for_each(|p| {
                w.u16(p.pid)?;
                w.u16(p.blp)
            })
        })
    }
}

// ---------------------------------------------------------------- PLI

/// A picture loss indication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pli {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
}

impl Pli {
    pub(crate) fn parse(body: &[u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, _) = ssrc_pair(body)?;
        Ok(Pli {
            sender_ssrc,
            media_ssrc,
        })
    }
}

/// Writer of a PLI (the view type writes itself).
pub type PliRepr = Pli;

impl RtcpWrite for Pli {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        emit_packet(buf, 1, pt::PSFB, |w| {
            w.u32(self.sender_ssrc)?;
            w.u32(self.media_ssrc)
        })
    }
}

// ---------------------------------------------------------------- FIR

/// One FIR entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FirEntry {
    /// The media sender asked for a decoder refresh point.
    pub ssrc: u32,
    /// Command sequence number.
    pub seq: u8,
}

/// A full intra request view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fir<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    fci: &'a [u8],
}

impl<'a> Fir<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _, fci) = ssrc_pair(body)?;
        if fci.is_empty() || fci.len() % 8 != 0 {
            return Err(RtcpError::BadItem);
        }
        Ok(Fir { sender_ssrc, fci })
    }
    /// The entries.
    pub fn entries(&self) -> impl Iterator<Item = FirEntry> + 'a {
        self.fci.chunks_exact(8).map(|c| FirEntry {
            ssrc: be32(c, 0),
            seq: c[4],
        })
    }
}

/// Writer of a FIR.
#[derive(Debug, Clone, Copy, Default)]
pub struct FirRepr<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// At least one entry.
    pub entries: &'a [FirEntry],
}

impl RtcpWrite for FirRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if self.entries.is_empty() {
            return Err(RtcpError::InvalidValue);
        }
        emit_packet(buf, 4, pt::PSFB, |w| {
            w.u32(self.sender_ssrc)?;
            w.u32(0)?; // media source SSRC: unused (RFC 5104 4.3.1.2)
            self.entries.iter().try_for_each(|e| {
                w.u32(e.ssrc)?;
                w.u8(e.seq)?;
                w.zeros(3)
            })
        })
    }
}

// ---------------------------------------------------------------- REMB

/// A receiver estimated maximum bitrate view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Estimated bitrate in bit/s (mantissa << exponent, saturating).
    pub bitrate: u64,
    ssrcs: &'a [u8],
}

impl<'a> Remb<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, _, fci) = ssrc_pair(body)?;
        if fci.len() < 8 || &fci[..4] != b"REMB" {
            return Err(RtcpError::BadItem);
        }
        let n = usize::from(fci[4]);
        let exp = u32::from(fci[5] >> 2);
        let mantissa = (u32::from(fci[5] & 3) << 16) | u32::from(be16(fci, 6));
        let wide = u128::from(mantissa) << exp;
        let ssrcs = fci.get(8..8 + 4 * n).ok_or(RtcpError::CountMismatch)?;
        Ok(Remb {
            sender_ssrc,
            bitrate: u64::try_from(wide).unwrap_or(u64::MAX),
            ssrcs,
        })
    }
    /// The media sources the estimate applies to.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
}

/// Writer of a REMB. The bitrate is rounded down to an 18-bit mantissa.
#[derive(Debug, Clone, Copy, Default)]
pub struct RembRepr<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Bitrate in bit/s.
    pub bitrate: u64,
    /// Up to 255 media sources.
    pub ssrcs: &'a [u32],
}

impl RembRepr<'_> {
    /// (exponent, mantissa) of the encoded bitrate.
    pub fn encode_bitrate(bitrate: u64) -> (u8, u32) {
        let mut exp = 0u8;
        let mut m = bitrate;
        while m >= 1 << 18 {
            m >>= 1;
            exp += 1;
        }
        (exp, m as u32)
    }
}

impl RtcpWrite for RembRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = u8::try_from(self.ssrcs.len()).map_err(|_| RtcpError::InvalidValue)?;
        let (exp, m) = Self::encode_bitrate(self.bitrate);
        emit_packet(buf, 15, pt::PSFB, |w| {
            w.u32(self.sender_ssrc)?;
            w.u32(0)?;
            w.bytes(b"REMB")?;
            w.u8(n)?;
            w.u8((exp << 2) | (m >> 16) as u8)?;
            w.u16(m as u16)?;
            self.ssrcs.iter().try_for_each(|s| w.u32(*s))
        })
    }
}

// ---------------------------------------------------------------- TWCC

/// Reception status of one packet in transport-wide CC feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwccStatus {
    /// Not received.
    NotReceived,
    /// Received, delta in 250 us units, 0..=255.
    Small(u8),
    /// Received, signed delta in 250 us units.
    Large(i16),
}

impl TwccStatus {
    fn symbol(self) -> u16 {
        match self {
            TwccStatus::NotReceived => 0,
            TwccStatus::Small(_) => 1,
            TwccStatus::Large(_) => 2,
        }
    }
    /// The receive delta in microseconds, if received.
    pub fn delta_us(self) -> Option<i64> {
        match self {
            TwccStatus::NotReceived => None,
            TwccStatus::Small(d) => Some(i64::from(d) * 250),
            TwccStatus::Large(d) => Some(i64::from(d) * 250),
        }
    }
}

/// Symbol `k` (0-based) of a chunk, and how many symbols the chunk holds.
fn chunk_symbol(chunk: u16, k: usize) -> (u16, usize) {
    if chunk & 0x8000 == 0 {
        ((chunk >> 13) & 3, usize::from(chunk & 0x1fff))
    } else if chunk & 0x4000 == 0 {
        ((chunk >> (13 - k.min(13))) & 1, 14)
    } else {
        ((chunk >> (12 - 2 * k.min(6))) & 3, 7)
    }
}

/// A transport-wide CC feedback view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Twcc<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
    /// Transport-wide sequence number of the first packet reported.
    pub base_seq: u16,
    /// Number of packets reported.
    pub status_count: u16,
    /// Reference time, signed, in 64 ms units.
    pub reference_time: i32,
    /// Feedback packet counter.
    pub fb_pkt_count: u8,
    chunks: &'a [u8],
    deltas: &'a [u8],
}

impl<'a> Twcc<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        let (sender_ssrc, media_ssrc, fci) = ssrc_pair(body)?;
        if fci.len() < 8 {
            return Err(RtcpError::Truncated);
        }
        let base_seq = be16(fci, 0);
        let status_count = be16(fci, 2);
        let rt = (u32::from(fci[4]) << 16) | (u32::from(fci[5]) << 8) | u32::from(fci[6]);
        let reference_time = ((rt << 8) as i32) >> 8;
        let rest = &fci[8..];
        // Walk the chunks to find where they end and how many delta bytes follow.
        let mut covered = 0usize;
        let mut at = 0usize;
        let mut delta_bytes = 0usize;
        while covered < usize::from(status_count) {
            let c = rest.get(at..at + 2).ok_or(RtcpError::Truncated)?;
            let chunk = u16::from_be_bytes([c[0], c[1]]);
            at += 2;
            let (_, n) = chunk_symbol(chunk, 0);
            if n == 0 {
                return Err(RtcpError::BadItem);
            }
            let take = n.min(usize::from(status_count) - covered);
            for k in 0..take {
                let sym = if chunk & 0x8000 == 0 {
                    chunk_symbol(chunk, 0).0
                } else {
                    chunk_symbol(chunk, k).0
                };
                delta_bytes += match sym {
                    0 => 0,
                    1 => 1,
                    2 => 2,
                    _ => return Err(RtcpError::BadItem),
                };
            }
            covered += take;
        }
        let deltas = rest.get(at..at + delta_bytes).ok_or(RtcpError::Truncated)?;
        Ok(Twcc {
            sender_ssrc,
            media_ssrc,
            base_seq,
            status_count,
            reference_time,
            fb_pkt_count: fci[7],
            chunks: &rest[..at],
            deltas,
        })
    }

    /// Each reported packet: (transport-wide sequence number, status).
    pub fn packets(&self) -> TwccPackets<'a> {
        TwccPackets {
            twcc: *self,
            emitted: 0,
            chunk_at: 0,
            in_chunk: 0,
            delta_at: 0,
        }
    }
}

/// Iterator over the packets of a TWCC feedback.
#[derive(Debug, Clone)]
pub struct TwccPackets<'a> {
    twcc: Twcc<'a>,
    emitted: u16,
    chunk_at: usize,
    in_chunk: usize,
    delta_at: usize,
}

impl Iterator for TwccPackets<'_> {
    type Item = (u16, TwccStatus);
    fn next(&mut self) -> Option<(u16, TwccStatus)> {
        if self.emitted >= self.twcc.status_count {
            return None;
        }
        let chunk = be16(self.twcc.chunks, self.chunk_at);
        let (sym, n) = chunk_symbol(chunk, self.in_chunk);
        let d = self.twcc.deltas;
        let status = match sym {
            0 => TwccStatus::NotReceived,
            1 => {
                let v = *d.get(self.delta_at)?;
                self.delta_at += 1;
                TwccStatus::Small(v)
            }
            _ => {
                let v = be16(d, self.delta_at) as i16;
                self.delta_at += 2;
                TwccStatus::Large(v)
            }
        };
        self.in_chunk += 1;
        if self.in_chunk >= n {
            self.in_chunk = 0;
            self.chunk_at += 2;
        }
        let seq = self.twcc.base_seq.wrapping_add(self.emitted);
        self.emitted += 1;
        Some((seq, status))
    }
}

/// Writer of a transport-wide CC feedback. Chunks are chosen greedily: run-length
/// chunks for runs of 14 or more, one-bit vectors where only "not received" and
/// "small delta" occur, two-bit vectors otherwise.
#[derive(Debug, Clone, Copy)]
pub struct TwccRepr<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// SSRC of the media source.
    pub media_ssrc: u32,
    /// Sequence number of `statuses[0]`.
    pub base_seq: u16,
    /// Reference time in 64 ms units (24-bit signed).
    pub reference_time: i32,
    /// Feedback packet counter.
    pub fb_pkt_count: u8,
    /// One status per packet, consecutive sequence numbers; 1..=65535 of them.
    pub statuses: &'a [TwccStatus],
}

impl TwccRepr<'_> {
    fn write_chunks(&self, w: &mut Writer<'_>) -> Result<(), RtcpError> {
        let s = self.statuses;
        let mut i = 0usize;
        while i < s.len() {
            let sym = s[i].symbol();
            let run = s[i..]
                .iter()
                .take(0x1fff)
                .take_while(|x| x.symbol() == sym)
                .count();
            if run >= 14 {
                w.u16((sym << 13) | run as u16)?;
                i += run;
                continue;
            }
            let win = &s[i..s.len().min(i + 14)];
            if win.iter().all(|x| x.symbol() <= 1) {
                let mut c = 0x8000u16;
                for (k, x) in win.iter().enumerate() {
                    c |= x.symbol() << (13 - k);
                }
                w.u16(c)?;
                i += win.len();
            } else {
                let win = &s[i..s.len().min(i + 7)];
                let mut c = 0xc000u16;
                for (k, x) in win.iter().enumerate() {
                    c |= x.symbol() << (12 - 2 * k);
                }
                w.u16(c)?;
                i += win.len();
            }
        }
        Ok(())
    }
}

impl RtcpWrite for TwccRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let count = u16::try_from(self.statuses.len()).map_err(|_| RtcpError::InvalidValue)?;
        if count == 0 || !(-0x80_0000..0x80_0000).contains(&self.reference_time) {
            return Err(RtcpError::InvalidValue);
        }
        emit_packet(buf, 15, pt::RTPFB, |w| {
            w.u32(self.sender_ssrc)?;
            w.u32(self.media_ssrc)?;
            w.u16(self.base_seq)?;
            w.u16(count)?;
            w.u24(self.reference_time as u32 & 0x00ff_ffff)?;
            w.u8(self.fb_pkt_count)?;
            self.write_chunks(w)?;
            for st in self.statuses {
                match *st {
                    TwccStatus::NotReceived => {}
                    TwccStatus::Small(d) => w.u8(d)?,
                    TwccStatus::Large(d) => w.u16(d as u16)?,
                }
            }
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- RFC 8888

/// One RFC 8888 packet metric block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CcfbMetric {
    /// R: the packet was received.
    pub received: bool,
    /// ECN bits (2).
    pub ecn: u8,
    /// Arrival time offset (13 bits, 1/1024 s units).
    pub ato: u16,
}

impl CcfbMetric {
    fn from_u16(v: u16) -> Self {
        CcfbMetric {
            received: v & 0x8000 != 0,
            ecn: ((v >> 13) & 3) as u8,
            ato: v & 0x1fff,
        }
    }
    fn to_u16(self) -> u16 {
        (u16::from(self.received) << 15) | (u16::from(self.ecn & 3) << 13) | (self.ato & 0x1fff)
    }
}

/// One per-SSRC report block of an RFC 8888 feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CcfbStream<'a> {
    /// Media source.
    pub ssrc: u32,
    /// Sequence number of the first metric.
    pub begin_seq: u16,
    metrics: &'a [u8],
}

impl<'a> CcfbStream<'a> {
    /// The metrics, one per sequence number from `begin_seq`.
    pub fn metrics(&self) -> impl Iterator<Item = CcfbMetric> + 'a {
        self.metrics
            .chunks_exact(2)
            .map(|c| CcfbMetric::from_u16(be16(c, 0)))
    }
}

/// An RFC 8888 congestion control feedback view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ccfb<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Report timestamp (middle 32 bits of NTP).
    pub report_timestamp: u32,
    blocks: &'a [u8],
}

fn ccfb_block(b: &[u8]) -> Result<(CcfbStream<'_>, usize), RtcpError> {
    if b.len() < 8 {
        return Err(RtcpError::Truncated);
    }
    let n = usize::from(be16(b, 6));
    let used = 8 + (2 * n).div_ceil(4) * 4;
    let metrics = b.get(8..8 + 2 * n).ok_or(RtcpError::CountMismatch)?;
    if used > b.len() {
        return Err(RtcpError::CountMismatch);
    }
    let s = CcfbStream {
        ssrc: be32(b, 0),
        begin_seq: be16(b, 4),
        metrics,
    };
    Ok((s, used))
}

impl<'a> Ccfb<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 8 {
            return Err(RtcpError::Truncated);
        }
        let blocks = &body[4..body.len() - 4];
        let mut rest = blocks;
        while !rest.is_empty() {
            let (_, used) = ccfb_block(rest)?;
            rest = &rest[used..];
        }
        Ok(Ccfb {
            sender_ssrc: be32(body, 0),
            report_timestamp: be32(body, body.len() - 4),
            blocks,
        })
    }
    /// The per-SSRC report blocks.
    pub fn streams(&self) -> impl Iterator<Item = CcfbStream<'a>> + 'a {
        let mut rest = self.blocks;
        core::iter::from_fn(move || {
            let (s, used) = ccfb_block(rest).ok()?;
            rest = &rest[used..];
            Some(s)
        })
    }
}

/// A report block for [`CcfbRepr`].
#[derive(Debug, Clone, Copy)]
pub struct CcfbReprBlock<'a> {
    /// Media source.
    pub ssrc: u32,
    /// Sequence number of `metrics[0]`.
    pub begin_seq: u16,
    /// One metric per sequence number.
    pub metrics: &'a [CcfbMetric],
}

/// Writer of an RFC 8888 feedback.
#[derive(Debug, Clone, Copy)]
pub struct CcfbRepr<'a> {
    /// SSRC of the packet sender.
    pub sender_ssrc: u32,
    /// Per-SSRC blocks.
    pub blocks: &'a [CcfbReprBlock<'a>],
    /// Report timestamp.
    pub report_timestamp: u32,
}

impl RtcpWrite for CcfbRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        emit_packet(buf, 11, pt::RTPFB, |w| {
            w.u32(self.sender_ssrc)?;
            for b in self.blocks {
                let n = u16::try_from(b.metrics.len()).map_err(|_| RtcpError::InvalidValue)?;
                w.u32(b.ssrc)?;
                w.u16(b.begin_seq)?;
                w.u16(n)?;
                b.metrics.iter().try_for_each(|m| w.u16(m.to_u16()))?;
                w.align4()?;
            }
            w.u32(self.report_timestamp)
        })
    }
}
