//! Sender and receiver reports (RFC 3550 6.4).

use super::{be32, be64, emit_packet, pt, RtcpError, RtcpWrite, Writer};

const BLOCK_LEN: usize = 24;

/// One reception report block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// The source this block reports on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256 units.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit signed; clamped on write).
    pub cumulative_lost: i32,
    /// Extended highest sequence number received.
    pub ext_highest_seq: u32,
    /// Interarrival jitter, in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

impl ReportBlock {
    /// Reads a block from exactly 24 bytes (callers slice it).
    pub fn parse(b: &[u8]) -> Result<Self, RtcpError> {
        if b.len() < BLOCK_LEN {
            return Err(RtcpError::Truncated);
        }
        let lost_raw = be32(b, 4) & 0x00ff_ffff;
        // Sign-extend the 24-bit value.
        let cumulative_lost = ((lost_raw << 8) as i32) >> 8;
        Ok(ReportBlock {
            ssrc: be32(b, 0),
            fraction_lost: b[4],
            cumulative_lost,
            ext_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            lsr: be32(b, 16),
            dlsr: be32(b, 20),
        })
    }

    pub(crate) fn write(&self, w: &mut Writer<'_>) -> Result<(), RtcpError> {
        let lost = self.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff) as u32 & 0x00ff_ffff;
        w.u32(self.ssrc)?;
        w.u32((u32::from(self.fraction_lost) << 24) | lost)?;
        w.u32(self.ext_highest_seq)?;
        w.u32(self.jitter)?;
        w.u32(self.lsr)?;
        w.u32(self.dlsr)
    }
}

fn blocks(count: u8, b: &[u8]) -> Result<(&[u8], &[u8]), RtcpError> {
    let n = usize::from(count) * BLOCK_LEN;
    if b.len() < n {
        return Err(RtcpError::CountMismatch);
    }
    Ok(b.split_at(n))
}

/// Iterator over report blocks.
#[derive(Debug, Clone)]
pub struct ReportBlocks<'a>(core::slice::ChunksExact<'a, u8>);

impl Iterator for ReportBlocks<'_> {
    type Item = ReportBlock;
    fn next(&mut self) -> Option<ReportBlock> {
        self.0.next().and_then(|c| ReportBlock::parse(c).ok())
    }
}

/// A sender report view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderReport<'a> {
    body: &'a [u8],
    blocks: &'a [u8],
    ext: &'a [u8],
}

impl<'a> SenderReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 24 {
            return Err(RtcpError::Truncated);
        }
        let (blocks, ext) = blocks(count, &body[24..])?;
        Ok(SenderReport { body, blocks, ext })
    }
    /// SSRC of the sender.
    pub fn ssrc(&self) -> u32 {
        be32(self.body, 0)
    }
    /// NTP timestamp (64 bits).
    pub fn ntp_time(&self) -> u64 {
        be64(self.body, 4)
    }
    /// RTP timestamp matching the NTP time.
    pub fn rtp_timestamp(&self) -> u32 {
        be32(self.body, 12)
    }
    /// Sender's packet count.
    pub fn packet_count(&self) -> u32 {
        be32(self.body, 16)
    }
    /// Sender's octet count.
    pub fn octet_count(&self) -> u32 {
        be32(self.body, 20)
    }
    /// The report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.blocks.chunks_exact(BLOCK_LEN))
    }
    /// Profile-specific extension bytes after the blocks.
    pub fn extension(&self) -> &'a [u8] {
        self.ext
    }
}

/// A receiver report view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport<'a> {
    ssrc: u32,
    blocks: &'a [u8],
    ext: &'a [u8],
}

impl<'a> ReceiverReport<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let (blocks, ext) = blocks(count, &body[4..])?;
        Ok(ReceiverReport {
            ssrc: be32(body, 0),
            blocks,
            ext,
        })
    }
    /// SSRC of the packet's sender.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }
    /// The report blocks.
    pub fn report_blocks(&self) -> ReportBlocks<'a> {
        ReportBlocks(self.blocks.chunks_exact(BLOCK_LEN))
    }
    /// Profile-specific extension bytes after the blocks.
    pub fn extension(&self) -> &'a [u8] {
        self.ext
    }
}

/// Writer of a sender report.
#[derive(Debug, Clone, Copy, Default)]
pub struct SrRepr<'a> {
    /// SSRC of the sender.
    pub ssrc: u32,
    /// NTP timestamp.
    pub ntp_time: u64,
    /// RTP timestamp.
    pub rtp_timestamp: u32,
    /// Packet count.
    pub packet_count: u32,
    /// Octet count.
    pub octet_count: u32,
    /// Up to 31 report blocks.
    pub reports: &'a [ReportBlock],
}

impl RtcpWrite for SrRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = u8::try_from(self.reports.len()).map_err(|_| RtcpError::InvalidValue)?;
        emit_packet(buf, n, pt::SR, |w| {
            w.u32(self.ssrc)?;
            w.u64(self.ntp_time)?;
            w.u32(self.rtp_timestamp)?;
            w.u32(self.packet_count)?;
            w.u32(self.octet_count)?;
            self.reports.iter().try_for_each(|r| r.write(w))
        })
    }
}

/// Writer of a receiver report.
#[derive(Debug, Clone, Copy, Default)]
pub struct RrRepr<'a> {
    /// SSRC of the packet's sender.
    pub ssrc: u32,
    /// Up to 31 report blocks.
    pub reports: &'a [ReportBlock],
}

impl RtcpWrite for RrRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = u8::try_from(self.reports.len()).map_err(|_| RtcpError::InvalidValue)?;
        emit_packet(buf, n, pt::RR, |w| {
            w.u32(self.ssrc)?;
            self.reports.iter().try_for_each(|r| r.write(w))
        })
    }
}
