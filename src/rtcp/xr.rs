//! Extended reports (RFC 3611).

use super::{be16, be32, be64, emit_packet, pt, RtcpError, RtcpWrite, Writer};

/// XR block types.
pub mod bt {
    /// Loss RLE report.
    pub const LOSS_RLE: u8 = 1;
    /// Duplicate RLE report.
    pub const DUP_RLE: u8 = 2;
    /// Packet receipt times.
    pub const RECEIPT_TIMES: u8 = 3;
    /// Receiver reference time.
    pub const RRT: u8 = 4;
    /// DLRR.
    pub const DLRR: u8 = 5;
    /// Statistics summary.
    pub const STATS_SUMMARY: u8 = 6;
    /// VoIP metrics.
    pub const VOIP_METRICS: u8 = 7;
}

/// One DLRR sub-block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DlrrItem {
    /// The receiver.
    pub ssrc: u32,
    /// Last RR (middle 32 bits of the RRT NTP time).
    pub lrr: u32,
    /// Delay since last RR, in 1/65536 s.
    pub dlrr: u32,
}

/// Statistics summary block (RFC 3611 4.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSummary {
    /// The type-specific byte: L, D, J flags and ToH.
    pub flags: u8,
    /// Source reported on.
    pub ssrc: u32,
    /// First sequence number of the interval.
    pub begin_seq: u16,
    /// Last sequence number plus one.
    pub end_seq: u16,
    /// Lost packets.
    pub lost_packets: u32,
    /// Duplicate packets.
    pub dup_packets: u32,
    /// Minimum jitter.
    pub min_jitter: u32,
    /// Maximum jitter.
    pub max_jitter: u32,
    /// Mean jitter.
    pub mean_jitter: u32,
    /// Standard deviation of jitter.
    pub dev_jitter: u32,
    /// Minimum TTL or hop limit.
    pub min_ttl: u8,
    /// Maximum TTL or hop limit.
    pub max_ttl: u8,
    /// Mean TTL or hop limit.
    pub mean_ttl: u8,
    /// Standard deviation of TTL or hop limit.
    pub dev_ttl: u8,
}

/// VoIP metrics block (RFC 3611 4.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VoipMetrics {
    /// Source reported on.
    pub ssrc: u32,
    /// Loss rate (1/256).
    pub loss_rate: u8,
    /// Discard rate (1/256).
    pub discard_rate: u8,
    /// Burst density (1/256).
    pub burst_density: u8,
    /// Gap density (1/256).
    pub gap_density: u8,
    /// Mean burst duration, ms.
    pub burst_duration: u16,
    /// Mean gap duration, ms.
    pub gap_duration: u16,
    /// Round-trip delay, ms.
    pub round_trip_delay: u16,
    /// End-system delay, ms.
    pub end_system_delay: u16,
    /// Signal level, dBm (signed).
    pub signal_level: u8,
    /// Noise level, dBm (signed).
    pub noise_level: u8,
    /// Residual echo return loss, dB.
    pub rerl: u8,
    /// Gap threshold.
    pub gmin: u8,
    /// R factor (127 = unavailable).
    pub r_factor: u8,
    /// External R factor.
    pub ext_r_factor: u8,
    /// MOS-LQ x10.
    pub mos_lq: u8,
    /// MOS-CQ x10.
    pub mos_cq: u8,
    /// Receiver configuration byte.
    pub rx_config: u8,
    /// Jitter buffer nominal delay, ms.
    pub jb_nominal: u16,
    /// Jitter buffer maximum delay, ms.
    pub jb_maximum: u16,
    /// Jitter buffer absolute maximum delay, ms.
    pub jb_abs_max: u16,
}

/// One XR report block. Also the writer of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XrBlock<'a> {
    /// Loss RLE: run-length and bit-vector chunks (2 bytes each, raw).
    LossRle {
        /// Thinning (low 4 bits of the type-specific byte).
        thinning: u8,
        /// Source reported on.
        ssrc: u32,
        /// First sequence number.
        begin_seq: u16,
        /// Last sequence number plus one.
        end_seq: u16,
        /// The chunks, raw, including any terminating null chunk.
        chunks: &'a [u8],
    },
    /// Duplicate RLE, same layout as loss RLE.
    DupRle {
        /// Thinning.
        thinning: u8,
        /// Source reported on.
        ssrc: u32,
        /// First sequence number.
        begin_seq: u16,
        /// Last sequence number plus one.
        end_seq: u16,
        /// The chunks, raw.
        chunks: &'a [u8],
    },
    /// Packet receipt times (32-bit RTP-clock times, raw).
    ReceiptTimes {
        /// Thinning.
        thinning: u8,
        /// Source reported on.
        ssrc: u32,
        /// First sequence number.
        begin_seq: u16,
        /// Last sequence number plus one.
        end_seq: u16,
        /// Receipt times, 4 bytes each.
        times: &'a [u8],
    },
    /// Receiver reference time.
    Rrt {
        /// NTP timestamp.
        ntp_time: u64,
    },
    /// DLRR sub-blocks (12 bytes each, raw; see [`XrBlock::dlrr_items`]).
    Dlrr {
        /// The sub-blocks.
        items: &'a [u8],
    },
    /// Statistics summary.
    StatsSummary(StatsSummary),
    /// VoIP metrics.
    VoipMetrics(VoipMetrics),
    /// A block type not decoded here.
    Unknown {
        /// Block type.
        block_type: u8,
        /// Type-specific byte.
        type_specific: u8,
        /// Contents.
        data: &'a [u8],
    },
}

impl<'a> XrBlock<'a> {
    /// The block type.
    pub fn block_type(&self) -> u8 {
        match self {
            XrBlock::LossRle { .. } => bt::LOSS_RLE,
            XrBlock::DupRle { .. } => bt::DUP_RLE,
            XrBlock::ReceiptTimes { .. } => bt::RECEIPT_TIMES,
            XrBlock::Rrt { .. } => bt::RRT,
            XrBlock::Dlrr { .. } => bt::DLRR,
            XrBlock::StatsSummary(_) => bt::STATS_SUMMARY,
            XrBlock::VoipMetrics(_) => bt::VOIP_METRICS,
            XrBlock::Unknown { block_type, .. } => *block_type,
        }
    }

    /// DLRR sub-blocks (empty for other block types).
    pub fn dlrr_items(&self) -> impl Iterator<Item = DlrrItem> + 'a {
        let items: &'a [u8] = match self {
            XrBlock::Dlrr { items } => items,
            _ => &[],
        };
        items.chunks_exact(12).map(|c| DlrrItem {
            ssrc: be32(c, 0),
            lrr: be32(c, 4),
            dlrr: be32(c, 8),
        })
    }

    /// Reads one block at the start of `b`; returns it and its length.
    fn parse(b: &'a [u8]) -> Result<(Self, usize), RtcpError> {
        if b.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let (block_type, ts) = (b[0], b[1]);
        let len = 4 + 4 * usize::from(be16(b, 2));
        let c = b.get(4..len).ok_or(RtcpError::BadItem)?;
        let need = |n: usize| {
            if c.len() < n {
                Err(RtcpError::BadItem)
            } else {
                Ok(())
            }
        };
        let block = match block_type {
            bt::LOSS_RLE | bt::DUP_RLE | bt::RECEIPT_TIMES => {
                need(8)?;
                let (ssrc, begin_seq, end_seq, rest) =
                    (be32(c, 0), be16(c, 4), be16(c, 6), &c[8..]);
                let thinning = ts & 0x0f;
                match block_type {
                    bt::LOSS_RLE => XrBlock::LossRle {
                        thinning,
                        ssrc,
                        begin_seq,
                        end_seq,
                        chunks: rest,
                    },
                    bt::DUP_RLE => XrBlock::DupRle {
                        thinning,
                        ssrc,
                        begin_seq,
                        end_seq,
                        chunks: rest,
                    },
                    _ => XrBlock::ReceiptTimes {
                        thinning,
                        ssrc,
                        begin_seq,
                        end_seq,
                        times: rest,
                    },
                }
            }
            bt::RRT => {
                if c.len() != 8 {
                    return Err(RtcpError::BadItem);
                }
                XrBlock::Rrt {
                    ntp_time: be64(c, 0),
                }
            }
            bt::DLRR => {
                if c.len() % 12 != 0 {
                    return Err(RtcpError::BadItem);
                }
                XrBlock::Dlrr { items: c }
            }
            bt::STATS_SUMMARY => {
                if c.len() != 36 {
                    return Err(RtcpError::BadItem);
                }
                XrBlock::StatsSummary(StatsSummary {
                    flags: ts,
                    ssrc: be32(c, 0),
                    begin_seq: be16(c, 4),
                    end_seq: be16(c, 6),
                    lost_packets: be32(c, 8),
                    dup_packets: be32(c, 12),
                    min_jitter: be32(c, 16),
                    max_jitter: be32(c, 20),
                    mean_jitter: be32(c, 24),
                    dev_jitter: be32(c, 28),
                    min_ttl: c[32],
                    max_ttl: c[33],
                    mean_ttl: c[34],
                    dev_ttl: c[35],
                })
            }
            bt::VOIP_METRICS => {
                if c.len() != 32 {
                    return Err(RtcpError::BadItem);
                }
                XrBlock::VoipMetrics(VoipMetrics {
                    ssrc: be32(c, 0),
                    loss_rate: c[4],
                    discard_rate: c[5],
                    burst_density: c[6],
                    gap_density: c[7],
                    burst_duration: be16(c, 8),
                    gap_duration: be16(c, 10),
                    round_trip_delay: be16(c, 12),
                    end_system_delay: be16(c, 14),
                    signal_level: c[16],
                    noise_level: c[17],
                    rerl: c[18],
                    gmin: c[19],
                    r_factor: c[20],
                    ext_r_factor: c[21],
                    mos_lq: c[22],
                    mos_cq: c[23],
                    rx_config: c[24],
                    jb_nominal: be16(c, 26),
                    jb_maximum: be16(c, 28),
                    jb_abs_max: be16(c, 30),
                })
            }
            _ => XrBlock::Unknown {
                block_type,
                type_specific: ts,
                data: c,
            },
        };
        Ok((block, len))
    }

    fn write(&self, w: &mut Writer<'_>) -> Result<(), RtcpError> {
        let start = w.pos();
        w.u8(self.block_type())?;
        let words = |n: usize| u16::try_from(n / 4).map_err(|_| RtcpError::InvalidValue);
        match *self {
            XrBlock::LossRle {
                thinning,
                ssrc,
                begin_seq,
                end_seq,
                chunks,
            }
            | XrBlock::DupRle {
                thinning,
                ssrc,
                begin_seq,
                end_seq,
                chunks,
            }
            | XrBlock::ReceiptTimes {
                thinning,
                ssrc,
                begin_seq,
                end_seq,
                times: chunks,
            } => {
                let unit = if self.block_type() == bt::RECEIPT_TIMES {
                    4
                } else {
                    2
                };
                if thinning > 15 || chunks.len() % unit != 0 {
                    return Err(RtcpError::InvalidValue);
                }
                // RLE chunks are terminated by a null chunk up to a 32-bit boundary.
                let padded = chunks.len().div_ceil(4) * 4;
                w.u8(thinning)?;
                w.u16(words(8 + padded)?)?;
                w.u32(ssrc)?;
                w.u16(begin_seq)?;
                w.u16(end_seq)?;
                w.bytes(chunks)?;
                w.zeros(padded - chunks.len())?;
            }
            XrBlock::Rrt { ntp_time } => {
                w.u8(0)?;
                w.u16(2)?;
                w.u64(ntp_time)?;
            }
            XrBlock::Dlrr { items } => {
                if items.len() % 12 != 0 {
                    return Err(RtcpError::InvalidValue);
                }
                w.u8(0)?;
                w.u16(words(items.len())?)?;
                w.bytes(items)?;
            }
            XrBlock::StatsSummary(s) => {
                w.u8(s.flags)?;
                w.u16(9)?;
                w.u32(s.ssrc)?;
                w.u16(s.begin_seq)?;
                w.u16(s.end_seq)?;
                for v in [
                    s.lost_packets,
                    s.dup_packets,
                    s.min_jitter,
                    s.max_jitter,
                    s.mean_jitter,
                    s.dev_jitter,
                ] {
                    w.u32(v)?;
                }
                w.bytes(&[s.min_ttl, s.max_ttl, s.mean_ttl, s.dev_ttl])?;
            }
            XrBlock::VoipMetrics(v) => {
                w.u8(0)?;
                w.u16(8)?;
                w.u32(v.ssrc)?;
                w.bytes(&[v.loss_rate, v.discard_rate, v.burst_density, v.gap_density])?;
                for x in [
                    v.burst_duration,
                    v.gap_duration,
                    v.round_trip_delay,
                    v.end_system_delay,
                ] {
                    w.u16(x)?;
                }
                w.bytes(&[
                    v.signal_level,
                    v.noise_level,
                    v.rerl,
                    v.gmin,
                    v.r_factor,
                    v.ext_r_factor,
                    v.mos_lq,
                    v.mos_cq,
                    v.rx_config,
                    0,
                ])?;
                w.u16(v.jb_nominal)?;
                w.u16(v.jb_maximum)?;
                w.u16(v.jb_abs_max)?;
            }
            XrBlock::Unknown {
                type_specific,
                data,
                ..
            } => {
                if data.len() % 4 != 0 {
                    return Err(RtcpError::InvalidValue);
                }
                w.u8(type_specific)?;
                w.u16(words(data.len())?)?;
                w.bytes(data)?;
            }
        }
        debug_assert_eq!((w.pos() - start) % 4, 0);
        Ok(())
    }
}

/// An XR packet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xr<'a> {
    /// SSRC of the packet sender.
    pub ssrc: u32,
    blocks: &'a [u8],
}

impl<'a> Xr<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, RtcpError> {
        if body.len() < 4 {
            return Err(RtcpError::Truncated);
        }
        let blocks = &body[4..];
        let mut rest = blocks;
        while !rest.is_empty() {
            let (_, used) = XrBlock::parse(rest)?;
            rest = &rest[used..];
        }
        Ok(Xr {
            ssrc: be32(body, 0),
            blocks,
        })
    }
    /// The report blocks.
    pub fn blocks(&self) -> impl Iterator<Item = XrBlock<'a>> + 'a {
        let mut rest = self.blocks;
        core::iter::from_fn(move || {
            let (b, used) = XrBlock::parse(rest).ok()?;
            rest = &rest[used..];
            Some(b)
        })
    }
}

/// Writer of an XR block (the view type writes itself).
pub type XrBlockRepr<'a> = XrBlock<'a>;

/// Writer of an XR packet.
#[derive(Debug, Clone, Copy)]
pub struct XrRepr<'a> {
    /// SSRC of the packet sender.
    pub ssrc: u32,
    /// The blocks.
    pub blocks: &'a [XrBlock<'a>],
}

impl RtcpWrite for XrRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        emit_packet(buf, 0, pt::XR, |w| {
            w.u32(self.ssrc)?;
            self.blocks.iter().try_for_each(|b| b.write(w))
        })
    }
}
