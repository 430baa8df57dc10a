//! The per-leg reporter: builds our compound RTCP packet (SR or RR, SDES CNAME,
//! optional XR, optional BYE) from the numbers of the dataplane.

use core::time::Duration;

use rtp_core::rtcp::{
    sdes_item, ByeRepr, CompoundBuilder, ReportBlock, RrRepr, RtcpError, SdesRepr, SrRepr,
    StatsSummary, VoipMetrics, XrBlock, XrRepr,
};
use rtp_core::stats::{
    clamp_cumulative_lost, fraction_lost, mos_from_r, r_factor, BurstGapCounts, Codec, GMIN_DEFAULT,
};
use rtp_core::time::{duration_to_compact, duration_to_rtp_ts, NtpTime};

/// What we sent on a leg (from the dataplane's counters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SenderState {
    /// SSRC of the RTP we send on the leg.
    pub ssrc: u32,
    /// RTP packets sent.
    pub packets: u64,
    /// RTP payload octets sent (headers and padding excluded, RFC 3550 6.4.1).
    pub octets: u64,
    /// RTP timestamp of the last packet sent.
    pub last_rtp_ts: u32,
    /// Wall-clock time (since the UNIX epoch) that packet was sent.
    pub last_sent_wall: Duration,
    /// RTP clock rate of what we send.
    pub clock_rate: u32,
}

impl SenderState {
    /// The RTP timestamp matching wall time `now`: the last sent timestamp
    /// extrapolated at the clock rate. This gives SRs a consistent NTP <-> RTP
    /// mapping as long as the relayed source's clock runs at its nominal rate.
    pub fn rtp_ts_at(&self, now: Duration) -> u32 {
        let ahead = now.saturating_sub(self.last_sent_wall);
        let behind = self.last_sent_wall.saturating_sub(now);
        let a = duration_to_rtp_ts(ahead, self.clock_rate) as u32;
        let b = duration_to_rtp_ts(behind, self.clock_rate) as u32;
        self.last_rtp_ts.wrapping_add(a).wrapping_sub(b)
    }
}

/// What we received on a leg (from the dataplane's receive statistics).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReceptionState {
    /// SSRC of the source.
    pub ssrc: u32,
    /// Packets expected (from the sequence numbers).
    pub expected: u64,
    /// Packets lost, `expected - received` (negative with duplicates).
    pub lost: i64,
    /// Extended highest sequence number received.
    pub ext_highest_seq: u64,
    /// Interarrival jitter in seconds.
    pub jitter_secs: f64,
    /// RTP clock rate of the source.
    pub clock_rate: u32,
    /// Burst/gap counts of RFC 3611 4.7.2 (Gmin 16).
    pub burst: BurstGapCounts,
}

impl ReceptionState {
    /// Packets received.
    pub fn received(&self) -> u64 {
        (self.expected as i64 - self.lost).max(0) as u64
    }

    /// Jitter in timestamp units.
    pub fn jitter_units(&self) -> u32 {
        let j = self.jitter_secs * f64::from(self.clock_rate);
        if j.is_finite() && j > 0.0 {
            j.round().min(f64::from(u32::MAX)) as u32
        } else {
            0
        }
    }
}

/// XR blocks to add to reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct XrConfig {
    /// VoIP metrics (RFC 3611 4.7).
    pub voip_metrics: bool,
    /// Statistics summary (RFC 3611 4.6, loss and duplicate flags plus jitter).
    pub stats_summary: bool,
}

impl XrConfig {
    fn any(&self) -> bool {
        self.voip_metrics || self.stats_summary
    }
}

/// Reporter configuration.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// Our SSRC when we send no media on the leg (receiver reports).
    pub ssrc: u32,
    /// SDES CNAME.
    pub cname: String,
    /// Optional SDES NAME.
    pub name: Option<String>,
    /// Optional SDES TOOL.
    pub tool: Option<String>,
    /// XR blocks.
    pub xr: XrConfig,
    /// Codec of the media received (E-model Ie/Bpl).
    pub codec: Codec,
    /// Media per packet in ms (burst/gap durations).
    pub packet_ms: f64,
}

/// Inputs of a report besides our counters.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReportInputs {
    /// The last SR received from the source: (compact NTP, wall-clock arrival).
    pub last_sr: Option<(u32, Duration)>,
    /// Round-trip time, when known (XR round-trip delay, MOS).
    pub rtt: Option<Duration>,
}

/// One leg's reporter: keeps the previous interval's expected/received counts
/// (RFC 3550 A.3) and the NTP times of our recent SRs (to check LSR echoes).
#[derive(Debug, Clone)]
pub struct Reporter {
    cfg: ReporterConfig,
    prior: Option<(u64, u64, u32)>,
    recent_srs: [u32; 8],
    next_sr: usize,
    /// Wall-clock times of the last report and the one before.
    reports: [Option<Duration>; 2],
}

/// What a report contained (for counters and tests).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ReportSummary {
    /// An SR (rather than an RR).
    pub sender_report: bool,
    /// The SSRC the report was sent as.
    pub ssrc: u32,
    /// The report block, if one was included.
    pub block: Option<ReportBlock>,
    /// The SR's NTP time.
    pub ntp: Option<NtpTime>,
    /// Bytes written.
    pub len: usize,
}

/// Largest compound we build (fits a minimum IPv4 MTU with SRTCP overhead).
pub const MAX_REPORT: usize = 512;

impl Reporter {
    /// A reporter.
    pub fn new(cfg: ReporterConfig) -> Self {
        Reporter {
            cfg,
            prior: None,
            recent_srs: [0; 8],
            next_sr: 0,
            reports: [None, None],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ReporterConfig {
        &self.cfg
    }

    /// Whether `lsr` echoes one of our recent SRs.
    pub fn is_our_sr(&self, lsr: u32) -> bool {
        lsr != 0 && self.recent_srs.contains(&lsr)
    }

    /// Whether the leg counts as a sender: it sent RTP since the report before
    /// the last one (RFC 3550 6.3.8 `we_sent`).
    pub fn is_sender(&self, sender: Option<&SenderState>) -> bool {
        match sender {
            Some(s) if s.packets > 0 => match self.reports[1] {
                Some(before_last) => s.last_sent_wall > before_last,
                None => true,
            },
            _ => false,
        }
    }

    /// The SSRC reports go out as.
    pub fn report_ssrc(&self, sender: Option<&SenderState>) -> u32 {
        match sender {
            Some(s) if s.packets > 0 => s.ssrc,
            _ => self.cfg.ssrc,
        }
    }

    /// The report block for `rx` at `now`, starting a new interval.
    pub fn report_block(
        &mut self,
        rx: &ReceptionState,
        inputs: &ReportInputs,
        now: Duration,
    ) -> ReportBlock {
        let received = rx.received();
        let fraction = match self.prior {
            // A new source (SSRC change) starts the interval afresh.
            Some((e, r, ssrc)) if ssrc == rx.ssrc => {
                fraction_lost(rx.expected.saturating_sub(e), received.saturating_sub(r))
            }
            _ => fraction_lost(rx.expected, received),
        };
        self.prior = Some((rx.expected, received, rx.ssrc));
        let (lsr, dlsr) = match inputs.last_sr {
            Some((lsr, at)) => (lsr, duration_to_compact(now.saturating_sub(at))),
            None => (0, 0),
        };
        ReportBlock {
            ssrc: rx.ssrc,
            fraction_lost: fraction,
            cumulative_lost: clamp_cumulative_lost(rx.lost),
            ext_highest_seq: rx.ext_highest_seq as u32,
            jitter: rx.jitter_units(),
            lsr,
            dlsr,
        }
    }

    /// The VoIP metrics block for `rx` (RFC 3611 4.7).
    pub fn voip_metrics(&self, rx: &ReceptionState, rtt: Option<Duration>) -> VoipMetrics {
        let frac = |a: u64, b: u64| {
            (a.min(b) * 256)
                .checked_div(b)
                .map_or(0, |v| v.min(255) as u8)
        };
        let lost = rx.lost.max(0) as u64;
        let c = rx.burst;
        let ms = self.cfg.packet_ms.max(0.0);
        let mean = |pk: u64, n: u64| {
            if n == 0 {
                0
            } else {
                ((pk as f64 / n as f64) * ms).round().min(65535.0) as u16
            }
        };
        let rtt_ms = rtt.map(|d| d.as_secs_f64() * 1000.0);
        let loss_pct = if rx.expected == 0 {
            0.0
        } else {
            100.0 * lost as f64 / rx.expected as f64
        };
        // One-way delay: half the RTT plus a nominal jitter buffer of twice the
        // jitter (at least one packet).
        let jb_ms = (2.0 * rx.jitter_secs * 1000.0).max(ms);
        let one_way = rtt_ms.unwrap_or(0.0) / 2.0 + jb_ms;
        let r_lq = r_factor(self.cfg.codec, 0.0, loss_pct, 1.0);
        let r_cq = r_factor(self.cfg.codec, one_way, loss_pct, 1.0);
        let mos10 = |r: f64| (mos_from_r(r) * 10.0).round().clamp(10.0, 50.0) as u8;
        VoipMetrics {
            ssrc: rx.ssrc,
            loss_rate: frac(lost, rx.expected),
            // A relay has no jitter buffer: nothing is discarded late.
            discard_rate: 0,
            burst_density: frac(c.burst_lost, c.burst_packets),
            gap_density: frac(c.gap_lost, c.gap_packets),
            burst_duration: mean(c.burst_packets, c.bursts),
            gap_duration: mean(c.gap_packets, c.gaps),
            round_trip_delay: rtt_ms.map(|v| v.round().min(65535.0) as u16).unwrap_or(0),
            // The relay adds no buffering of its own.
            end_system_delay: 0,
            signal_level: 127,
            noise_level: 127,
            rerl: 127,
            gmin: GMIN_DEFAULT as u8,
            r_factor: r_cq.round().clamp(0.0, 100.0) as u8,
            ext_r_factor: 127,
            mos_lq: mos10(r_lq),
            mos_cq: mos10(r_cq),
            rx_config: 0,
            jb_nominal: 0,
            jb_maximum: 0,
            jb_abs_max: 0,
        }
    }

    /// Builds our compound report into `buf` at wall-clock time `now` (since the
    /// UNIX epoch): SR (when we sent RTP since the last report) or RR, with a
    /// report block when a source was received; SDES CNAME (NAME, TOOL when
    /// configured); XR blocks when configured; BYE when `bye`.
    pub fn build(
        &mut self,
        now: Duration,
        sender: Option<&SenderState>,
        rx: Option<&ReceptionState>,
        inputs: &ReportInputs,
        bye: bool,
        buf: &mut [u8],
    ) -> Result<ReportSummary, RtcpError> {
        let ssrc = self.report_ssrc(sender);
        let sending = self.is_sender(sender);
        let block = rx
            .filter(|r| r.expected > 0)
            .map(|r| self.report_block(r, inputs, now));
        let blocks: &[ReportBlock] = match &block {
            Some(b) => core::slice::from_ref(b),
            None => &[],
        };
        let mut c = CompoundBuilder::new(buf);
        let mut summary = ReportSummary {
            ssrc,
            block,
            ..ReportSummary::default()
        };
        match sender.filter(|_| sending) {
            Some(s) => {
                let ntp = NtpTime::from_unix(now);
                c.push(&SrRepr {
                    ssrc,
                    ntp_time: ntp.0,
                    rtp_timestamp: s.rtp_ts_at(now),
                    packet_count: s.packets as u32,
                    octet_count: s.octets as u32,
                    reports: blocks,
                })?;
                self.recent_srs[self.next_sr] = ntp.to_compact();
                self.next_sr = (self.next_sr + 1) % self.recent_srs.len();
                summary.sender_report = true;
                summary.ntp = Some(ntp);
            }
            None => {
                c.push(&RrRepr {
                    ssrc,
                    reports: blocks,
                })?;
            }
        }
        let mut items: [(u8, &[u8]); 3] = [(sdes_item::CNAME, self.cfg.cname.as_bytes()); 3];
        let mut n = 1;
        for (kind, v) in [
            (sdes_item::NAME, &self.cfg.name),
            (sdes_item::TOOL, &self.cfg.tool),
        ] {
            if let Some(v) = v {
                items[n] = (kind, v.as_bytes());
                n += 1;
            }
        }
        let chunks = [(ssrc, &items[..n])];
        c.push(&SdesRepr { chunks: &chunks })?;
        if let (true, Some(r)) = (self.cfg.xr.any(), rx.filter(|r| r.expected > 0)) {
            let mut xr: [XrBlock<'_>; 2] = [XrBlock::Rrt { ntp_time: 0 }; 2];
            let mut k = 0;
            if self.cfg.xr.voip_metrics {
                xr[k] = XrBlock::VoipMetrics(self.voip_metrics(r, inputs.rtt));
                k += 1;
            }
            if self.cfg.xr.stats_summary {
                let j = r.jitter_units();
                let end = (r.ext_highest_seq as u16).wrapping_add(1);
                let begin = end.wrapping_sub(r.expected.min(65535) as u16);
                xr[k] = XrBlock::StatsSummary(StatsSummary {
                    // L and D flags; J with min=max=mean=the current estimate.
                    flags: 0x80 | 0x40 | 0x20,
                    ssrc: r.ssrc,
                    begin_seq: begin,
                    end_seq: end,
                    lost_packets: r.lost.clamp(0, i64::from(u32::MAX)) as u32,
                    dup_packets: (-r.lost).max(0) as u32,
                    min_jitter: j,
                    max_jitter: j,
                    mean_jitter: j,
                    dev_jitter: 0,
                    ..StatsSummary::default()
                });
                k += 1;
            }
            c.push(&XrRepr {
                ssrc,
                blocks: &xr[..k],
            })?;
        }
        if bye {
            c.push(&ByeRepr {
                ssrcs: &[ssrc],
                reason: None,
            })?;
        }
        summary.len = c.len();
        self.reports = [Some(now), self.reports[0]];
        Ok(summary)
    }
}
