//! Receiver statistics: interarrival jitter (RFC 3550 A.8), loss (A.3), report-block
//! figures, round-trip time from LSR/DLSR (section 6.4.1), burst/gap metrics
//! (RFC 3611 section 4.7.2) and an E-model voice-quality estimate (ITU-T G.107).
//!
//! [`ReceiverStats::report_block`] returns a [`ReportBlockSummary`], which is the RTCP
//! report block type, ready for the SR/RR writers.

use core::time::Duration;

use crate::seq::{SeqOutcome, SeqTracker};
use crate::time::{compact_to_duration, duration_to_compact, ts_diff, NtpTime};

/// Interarrival jitter estimator of RFC 3550 A.8, in RTP timestamp units.
///
/// For each packet, in arrival order, `D = (Rj - Ri) - (Sj - Si)` against the previous
/// packet and `J += (|D| - J) / 16`. Kept in floating point so that arrival times
/// finer than one RTP unit are not rounded away.
///
/// A source is measured in one time base, [`update`](Self::update) (arrival as a
/// `Duration`) or [`update_units`](Self::update_units) (arrival in RTP units);
/// switching from one to the other starts again from the next packet, as
/// [`reset_reference`](Self::reset_reference) does. 24 bytes: one per received
/// source.
#[derive(Debug, Clone, Copy)]
pub struct JitterEstimator {
    last: Last,
    jitter: f64,
}

/// The previous packet: its arrival and RTP timestamp.
#[derive(Debug, Clone, Copy)]
enum Last {
    None,
    /// Nanoseconds since the caller's origin.
    Ns(u64, u32),
    /// RTP timestamp units (wrapping).
    Units(u32, u32),
}

const NO_ARRIVAL: u64 = u64::MAX;

impl Default for JitterEstimator {
    fn default() -> Self {
        JitterEstimator {
            last: Last::None,
            jitter: 0.0,
        }
    }
}

impl JitterEstimator {
    /// A fresh estimator (jitter 0).
    pub fn new() -> Self {
        Self::default()
    }

    fn step(&mut self, d: f64) {
        self.jitter += (d.abs() - self.jitter) / 16.0;
    }

    /// One packet with RTP timestamp `rtp_ts`, arriving at `arrival` (any fixed
    /// origin), for a clock of `clock_rate` Hz.
    pub fn update(&mut self, arrival: Duration, rtp_ts: u32, clock_rate: u32) {
        let now = arrival_ns(arrival);
        if let Last::Ns(last, last_ts) = self.last {
            let secs = if now >= last {
                Duration::from_nanos(now - last).as_secs_f64()
            } else {
                -Duration::from_nanos(last - now).as_secs_f64()
            };
            let d = secs * f64::from(clock_rate) - ts_diff(rtp_ts, last_ts) as f64;
            self.step(d);
        }
        self.last = Last::Ns(now, rtp_ts);
    }

    /// One packet whose arrival time is already in RTP timestamp units (wrapping).
    pub fn update_units(&mut self, arrival_units: u32, rtp_ts: u32) {
        if let Last::Units(last_arrival, last_ts) = self.last {
            let d = ts_diff(arrival_units, last_arrival) - ts_diff(rtp_ts, last_ts);
            self.step(d as f64);
        }
        self.last = Last::Units(arrival_units, rtp_ts);
    }

    /// Forget the previous packet (after a sender restart); the estimate is kept.
    pub fn reset_reference(&mut self) {
        self.last = Last::None;
    }

    /// The current estimate in RTP timestamp units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// The estimate as a report block carries it (rounded to whole units).
    pub fn jitter_units(&self) -> u32 {
        // The estimate is never negative; `as` saturates huge values.
        self.jitter.round() as u32
    }
}

/// The numbers of one RTCP reception report block (RFC 3550 6.4.1): the RTCP
/// report block type itself, so a summary goes straight into an SR/RR writer.
pub type ReportBlockSummary = crate::rtcp::ReportBlock;

/// Largest cumulative-lost value a report block can carry (2^23 - 1).
pub const CUMULATIVE_LOST_MAX: i32 = 0x7f_ffff;
/// Smallest cumulative-lost value a report block can carry (-2^23).
pub const CUMULATIVE_LOST_MIN: i32 = -0x80_0000;

/// Clamps a cumulative-lost count to the 24-bit signed field of a report block.
pub fn clamp_cumulative_lost(lost: i64) -> i32 {
    lost.clamp(
        i64::from(CUMULATIVE_LOST_MIN),
        i64::from(CUMULATIVE_LOST_MAX),
    ) as i32
}

/// The fraction lost of RFC 3550 A.3: `lost_interval * 256 / expected_interval`,
/// 0 when nothing was expected or nothing was lost (duplicates), at most 255.
pub fn fraction_lost(expected_interval: u64, received_interval: u64) -> u8 {
    if expected_interval == 0 || received_interval >= expected_interval {
        return 0;
    }
    let lost = expected_interval - received_interval;
    // All lost would be 256, which does not fit the 8-bit field.
    ((lost << 8) / expected_interval).min(255) as u8
}

/// Per-source receiver statistics (RFC 3550 A.1, A.3, A.8), fed one RTP packet at a
/// time with its arrival time.
///
/// A gateway holds one per received stream, so the state is kept small (120 bytes
/// on 64-bit targets): 32-bit where A.1 and A.3 are (see [`SeqTracker`]).
#[derive(Debug, Clone)]
pub struct ReceiverStats {
    ssrc: u32,
    clock_rate: u32,
    seq: SeqTracker,
    jitter: JitterEstimator,
    /// A.3 `expected_prior` and `received_prior`: 32 bits, and the intervals are
    /// their wrapping differences, as in A.3.
    expected_prior: u32,
    received_prior: u32,
    /// Compact NTP time of the last SR, and its arrival in nanoseconds since the
    /// caller's origin (`NO_ARRIVAL`: no SR yet).
    last_sr_ntp: u32,
    last_sr_ns: u64,
}

/// Nanoseconds since the caller's origin; 584 years fit, later times saturate just
/// below `NO_ARRIVAL`.
fn arrival_ns(arrival: Duration) -> u64 {
    u64::try_from(arrival.as_nanos()).unwrap_or(NO_ARRIVAL - 1)
}

impl ReceiverStats {
    /// Statistics for `ssrc` whose RTP clock runs at `clock_rate` Hz, with the
    /// probation of RFC 3550 A.1.
    pub fn new(ssrc: u32, clock_rate: u32) -> Self {
        Self::with_tracker(ssrc, clock_rate, SeqTracker::new())
    }

    /// Statistics with a given sequence tracker (e.g. without probation).
    pub fn with_tracker(ssrc: u32, clock_rate: u32, seq: SeqTracker) -> Self {
        ReceiverStats {
            ssrc,
            clock_rate,
            seq,
            jitter: JitterEstimator::new(),
            expected_prior: 0,
            received_prior: 0,
            last_sr_ntp: 0,
            last_sr_ns: NO_ARRIVAL,
        }
    }

    /// One RTP packet of this source, arrived at `arrival` (any fixed origin).
    pub fn on_rtp(&mut self, seq: u16, rtp_ts: u32, arrival: Duration) -> SeqOutcome {
        let rate = self.clock_rate;
        self.on_seq(seq, |j| j.update(arrival, rtp_ts, rate))
    }

    /// One RTP packet whose arrival time is given in RTP timestamp units of this
    /// source's clock (a wrapping 32-bit counter, any origin).
    pub fn on_rtp_units(&mut self, seq: u16, rtp_ts: u32, arrival_units: u32) -> SeqOutcome {
        self.on_seq(seq, |j| j.update_units(arrival_units, rtp_ts))
    }

    /// Sequence tracking shared by both arrival forms: a bad packet leaves jitter
    /// alone, a restart resets the loss interval and the jitter reference first.
    fn on_seq(&mut self, seq: u16, jitter: impl FnOnce(&mut JitterEstimator)) -> SeqOutcome {
        let outcome = self.seq.update(seq);
        match outcome {
            SeqOutcome::BadSeq => {}
            SeqOutcome::Restarted { .. } => {
                self.expected_prior = 0;
                self.received_prior = 0;
                self.jitter.reset_reference();
                jitter(&mut self.jitter);
            }
            _ => jitter(&mut self.jitter),
        }
        outcome
    }

    /// A sender report from this source arrived at `arrival` carrying `ntp`.
    pub fn on_sender_report(&mut self, ntp: NtpTime, arrival: Duration) {
        self.last_sr_ntp = ntp.to_compact();
        self.last_sr_ns = arrival_ns(arrival);
    }

    /// The sequence tracker.
    pub fn seq(&self) -> &SeqTracker {
        &self.seq
    }

    /// The jitter estimator.
    pub fn jitter(&self) -> &JitterEstimator {
        &self.jitter
    }

    /// The SSRC.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// The clock rate in Hz.
    pub fn clock_rate(&self) -> u32 {
        self.clock_rate
    }

    /// The report block for a report sent at `now` (same origin as the arrival times),
    /// and start a new reporting interval (A.3 `expected_prior` / `received_prior`).
    pub fn report_block(&mut self, now: Duration) -> ReportBlockSummary {
        // A.3 in 32 bits: both counts only grow between restarts (which reset the
        // priors), so the wrapping differences are the intervals, also across the
        // 2^32 wrap of `expected` or `received`.
        let expected = self.seq.expected_u32();
        let received = self.seq.received_u32();
        let fraction = fraction_lost(
            u64::from(expected.wrapping_sub(self.expected_prior)),
            u64::from(received.wrapping_sub(self.received_prior)),
        );
        self.expected_prior = expected;
        self.received_prior = received;
        let (lsr, dlsr) = if self.last_sr_ns == NO_ARRIVAL {
            (0, 0)
        } else {
            // Exact below 584 years; `now` saturates as the arrival did.
            let delay = arrival_ns(now).saturating_sub(self.last_sr_ns);
            (
                self.last_sr_ntp,
                duration_to_compact(Duration::from_nanos(delay)),
            )
        };
        ReportBlockSummary {
            ssrc: self.ssrc,
            fraction_lost: fraction,
            cumulative_lost: clamp_cumulative_lost(self.seq.lost()),
            ext_highest_seq: self.seq.ext_highest_seq().unwrap_or(0) as u32,
            jitter: self.jitter.jitter_units(),
            lsr,
            dlsr,
        }
    }
}

/// Round-trip time from a report block (RFC 3550 6.4.1): `arrival - LSR - DLSR`, all
/// in compact NTP form. `None` when no SR was reported (`lsr == 0`) or the result is
/// negative (clock trouble).
pub fn rtt(arrival_ntp_compact: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let rtt = arrival_ntp_compact.wrapping_sub(lsr).wrapping_sub(dlsr);
    if (rtt as i32) < 0 {
        return None;
    }
    Some(compact_to_duration(rtt))
}

/// Burst/gap metrics of RFC 3611 section 4.7.2, computed incrementally per packet.
///
/// A burst is a run of packets that starts and ends with a loss, in which no more
/// than `gmin - 1` packets in a row were received; everything else is a gap (a lone
/// loss with at least `gmin` received packets on each side is a gap loss). The
/// stream start counts as a gap.
///
/// A gateway holds one per received stream, so the counts are kept as `u32` (40
/// bytes in all) and saturate at `u32::MAX` (2^32 packets: 2.7 years of 50 packets
/// a second); [`counts`](Self::counts) widens them to the `u64` of
/// [`BurstGapCounts`].
#[derive(Debug, Clone)]
pub struct BurstGapTracker {
    /// RFC 3611's Gmin, an 8-bit field of the VoIP metrics block.
    gmin: u8,
    /// Packets received since the last loss.
    pkt: u32,
    /// Whether a loss run (burst candidate) is open.
    in_run: bool,
    run_lost: u32,
    run_recv: u32,
    totals: Totals,
    in_gap_period: bool,
}

/// [`BurstGapCounts`] in 32 bits, saturating.
#[derive(Debug, Clone, Copy, Default)]
struct Totals {
    bursts: u32,
    burst_packets: u32,
    burst_lost: u32,
    gaps: u32,
    gap_packets: u32,
    gap_lost: u32,
}

/// Raw counts behind [`BurstGapMetrics`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BurstGapCounts {
    /// Number of burst periods.
    pub bursts: u64,
    /// Packets (lost and received) inside bursts.
    pub burst_packets: u64,
    /// Packets lost inside bursts.
    pub burst_lost: u64,
    /// Number of gap periods.
    pub gaps: u64,
    /// Packets (lost and received) inside gaps.
    pub gap_packets: u64,
    /// Packets lost inside gaps (isolated losses).
    pub gap_lost: u64,
}

/// The burst/gap fields of an RTCP XR VoIP metrics block (RFC 3611 4.7.2).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BurstGapMetrics {
    /// Fraction of packets lost within bursts (0..=1).
    pub burst_density: f64,
    /// Fraction of packets lost within gaps (0..=1).
    pub gap_density: f64,
    /// Mean burst duration in milliseconds.
    pub burst_duration_ms: f64,
    /// Mean gap duration in milliseconds.
    pub gap_duration_ms: f64,
}

impl BurstGapMetrics {
    /// Burst density as the 8-bit field (fraction * 256, at most 255).
    pub fn burst_density_u8(&self) -> u8 {
        to_u8_fraction(self.burst_density)
    }

    /// Gap density as the 8-bit field.
    pub fn gap_density_u8(&self) -> u8 {
        to_u8_fraction(self.gap_density)
    }
}

fn to_u8_fraction(x: f64) -> u8 {
    (x * 256.0).floor().clamp(0.0, 255.0) as u8
}

/// The default `Gmin` of RFC 3611 4.7.2.
pub const GMIN_DEFAULT: u32 = 16;

impl Default for BurstGapTracker {
    fn default() -> Self {
        Self::new(GMIN_DEFAULT)
    }
}

impl BurstGapTracker {
    /// A tracker with the given `Gmin` (16 is the RFC 3611 recommendation; the
    /// block's field holds 1 to 255, and larger values are taken as 255).
    pub fn new(gmin: u32) -> Self {
        BurstGapTracker {
            gmin: gmin.clamp(1, 255) as u8,
            pkt: 0,
            in_run: false,
            run_lost: 0,
            run_recv: 0,
            totals: Totals::default(),
            in_gap_period: false,
        }
    }

    /// One packet received.
    pub fn on_received(&mut self) {
        self.pkt = self.pkt.saturating_add(1);
    }

    /// One packet lost.
    pub fn on_lost(&mut self) {
        if self.in_run && self.pkt < u32::from(self.gmin) {
            // Still inside the same loss run.
            self.run_lost = self.run_lost.saturating_add(1);
            self.run_recv = self.run_recv.saturating_add(self.pkt);
        } else {
            if self.in_run {
                Self::close_run(
                    &mut self.totals,
                    &mut self.in_gap_period,
                    self.run_lost,
                    self.run_recv,
                );
            }
            Self::add_gap(&mut self.totals, &mut self.in_gap_period, self.pkt, 0);
            self.in_run = true;
            self.run_lost = 1;
            self.run_recv = 0;
        }
        self.pkt = 0;
    }

    /// `n` packets lost in a row (O(1): after the first, the rest extend the same run).
    pub fn on_lost_run(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.on_lost();
        let more = u32::try_from(n - 1).unwrap_or(u32::MAX);
        self.run_lost = self.run_lost.saturating_add(more);
    }

    /// Feed a [`SeqOutcome`]: a gap of `n` before an accepted packet counts `n` losses.
    /// Late packets and duplicates are ignored (their slot was already counted lost).
    pub fn on_outcome(&mut self, outcome: SeqOutcome) {
        match outcome {
            SeqOutcome::Accepted { gap, .. } => {
                self.on_lost_run(gap);
                self.on_received();
            }
            SeqOutcome::Validated { .. } | SeqOutcome::Restarted { .. } => self.on_received(),
            _ => {}
        }
    }

    fn add_gap(t: &mut Totals, in_gap: &mut bool, packets: u32, lost: u32) {
        if packets == 0 {
            return;
        }
        if !*in_gap {
            t.gaps = t.gaps.saturating_add(1);
            *in_gap = true;
        }
        t.gap_packets = t.gap_packets.saturating_add(packets);
        t.gap_lost = t.gap_lost.saturating_add(lost);
    }

    fn close_run(t: &mut Totals, in_gap: &mut bool, lost: u32, recv: u32) {
        if lost == 1 && recv == 0 {
            Self::add_gap(t, in_gap, 1, 1);
        } else {
            t.bursts = t.bursts.saturating_add(1);
            t.burst_packets = t.burst_packets.saturating_add(lost.saturating_add(recv));
            t.burst_lost = t.burst_lost.saturating_add(lost);
            *in_gap = false;
        }
    }

    /// The counts so far, treating the stream as if it ended now (an open loss run is
    /// closed and the received packets after it belong to a gap). Each saturates at
    /// `u32::MAX`.
    pub fn counts(&self) -> BurstGapCounts {
        let mut t = self.totals;
        let mut in_gap = self.in_gap_period;
        if self.in_run {
            Self::close_run(&mut t, &mut in_gap, self.run_lost, self.run_recv);
        }
        Self::add_gap(&mut t, &mut in_gap, self.pkt, 0);
        BurstGapCounts {
            bursts: u64::from(t.bursts),
            burst_packets: u64::from(t.burst_packets),
            burst_lost: u64::from(t.burst_lost),
            gaps: u64::from(t.gaps),
            gap_packets: u64::from(t.gap_packets),
            gap_lost: u64::from(t.gap_lost),
        }
    }

    /// The metrics so far, with `packet_ms` milliseconds of media per packet.
    pub fn metrics(&self, packet_ms: f64) -> BurstGapMetrics {
        let c = self.counts();
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        BurstGapMetrics {
            burst_density: ratio(c.burst_lost, c.burst_packets),
            gap_density: ratio(c.gap_lost, c.gap_packets),
            burst_duration_ms: ratio(c.burst_packets, c.bursts) * packet_ms,
            gap_duration_ms: ratio(c.gap_packets, c.gaps) * packet_ms,
        }
    }
}

/// Codec impairment values for the E-model: equipment impairment `Ie` and packet-loss
/// robustness `Bpl` (ITU-T G.113 Appendix I, narrowband scale).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Codec {
    /// G.711 with packet-loss concealment (G.711 Appendix I): Ie 0, Bpl 25.1.
    G711Plc,
    /// G.711 without concealment (silence insertion): Ie 0, Bpl 4.3.
    G711NoPlc,
    /// G.729A with VAD: Ie 11, Bpl 19.0 (G.113 Appendix I).
    G729a,
    /// Opus (speech, 16 kbit/s or more) on the narrowband scale. ITU-T G.113 has no
    /// Opus entry, so these are planning assumptions, not table values: Ie 0, on the
    /// basis that published listening tests found Opus at such rates no worse than
    /// narrowband G.711 (e.g. A. Rämö, H. Toukomaa, "Voice quality characterization
    /// of IETF Opus codec", Interspeech 2011), and Bpl 25, assumed comparable to G.711
    /// with PLC because Opus conceals lost frames itself. Use [`Codec::Custom`] with
    /// measured values where the figure matters.
    Opus,
    /// Any other codec with its own values.
    Custom {
        /// Equipment impairment factor.
        ie: f64,
        /// Packet-loss robustness factor.
        bpl: f64,
    },
}

impl Codec {
    /// The equipment impairment factor `Ie`.
    pub fn ie(self) -> f64 {
        match self {
            Codec::G711Plc | Codec::G711NoPlc | Codec::Opus => 0.0,
            Codec::G729a => 11.0,
            Codec::Custom { ie, .. } => ie,
        }
    }

    /// The packet-loss robustness factor `Bpl`.
    pub fn bpl(self) -> f64 {
        match self {
            Codec::G711Plc => 25.1,
            Codec::G711NoPlc => 4.3,
            Codec::G729a => 19.0,
            Codec::Opus => 25.0,
            Codec::Custom { bpl, .. } => bpl,
        }
    }
}

/// The E-model default of `Ro - Is` for narrowband telephony (G.107 defaults).
pub const R_DEFAULT: f64 = 93.2;

/// Delay impairment `Id` of the simplified E-model (Cole & Rosenbluth's fit of G.107):
/// `0.024 d + 0.11 (d - 177.3) H(d - 177.3)`, `d` the one-way delay in ms.
pub fn delay_impairment(one_way_delay_ms: f64) -> f64 {
    let d = one_way_delay_ms.max(0.0);
    let extra = if d > 177.3 { 0.11 * (d - 177.3) } else { 0.0 };
    0.024 * d + extra
}

/// Effective equipment impairment (G.107 7.2.3):
/// `Ie_eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)`, `Ppl` in percent,
/// `burst_r` 1 for random loss.
pub fn effective_ie(codec: Codec, loss_percent: f64, burst_r: f64) -> f64 {
    let ie = codec.ie();
    let ppl = loss_percent.clamp(0.0, 100.0);
    let burst_r = if burst_r > 0.0 { burst_r } else { 1.0 };
    let denom = ppl / burst_r + codec.bpl();
    if denom <= 0.0 {
        return ie;
    }
    ie + (95.0 - ie) * ppl / denom
}

/// The R factor: `93.2 - Id - Ie_eff`.
pub fn r_factor(codec: Codec, one_way_delay_ms: f64, loss_percent: f64, burst_r: f64) -> f64 {
    R_DEFAULT - delay_impairment(one_way_delay_ms) - effective_ie(codec, loss_percent, burst_r)
}

/// MOS (conversational quality estimate) from R (G.107 Annex B):
/// 1 for R < 0, 4.5 for R > 100, else `1 + 0.035 R + R (R - 60) (100 - R) 7e-6`,
/// kept within 1..=4.5 (the cubic dips just below 1 for R under about 6.5).
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        (1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6).clamp(1.0, 4.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fraction_examples() {
        // A.3: 1 lost of 4 -> 64/256.
        assert_eq!(fraction_lost(4, 3), 64);
        // 5 lost of 100 -> 1280/100 = 12.8 -> 12.
        assert_eq!(fraction_lost(100, 95), 12);
        // duplicates: more received than expected -> 0
        assert_eq!(fraction_lost(10, 12), 0);
        assert_eq!(fraction_lost(0, 0), 0);
        // everything lost: 256 does not fit, 255
        assert_eq!(fraction_lost(10, 0), 255);
        assert_eq!(clamp_cumulative_lost(10_000_000), 0x7f_ffff);
        assert_eq!(clamp_cumulative_lost(-10_000_000), -0x80_0000);
        assert_eq!(clamp_cumulative_lost(-3), -3);
    }

    #[test]
    fn report_block_intervals() {
        let mut s = ReceiverStats::with_tracker(0xabc, 8000, SeqTracker::with_probation(0));
        let t = |ms: u64| Duration::from_millis(ms);
        // seq 0..=3 with 2 missing
        for seq in [0u16, 1, 3] {
            s.on_rtp(seq, u32::from(seq) * 160, t(20 * u64::from(seq)));
        }
        let rb = s.report_block(t(100));
        // expected 4, received 3: 64/256 and cumulative 1
        assert_eq!(rb.fraction_lost, 64);
        assert_eq!(rb.cumulative_lost, 1);
        assert_eq!(rb.ext_highest_seq, 3);
        assert_eq!(rb.ssrc, 0xabc);
        assert_eq!((rb.lsr, rb.dlsr), (0, 0));
        // next interval: 4..=7 all received, the late 2 arrives too (5 received, 4 expected)
        for seq in [4u16, 5, 2, 6, 7] {
            s.on_rtp(seq, u32::from(seq) * 160, t(20 * u64::from(seq)));
        }
        let rb = s.report_block(t(200));
        assert_eq!(rb.fraction_lost, 0);
        assert_eq!(rb.cumulative_lost, 0);
        assert_eq!(rb.ext_highest_seq, 7);
        // an SR, then a report 1.5 s later: DLSR = 1.5 * 65536
        s.on_sender_report(NtpTime::new(0x0000_b705, 0x2000_0000), t(1000));
        let rb = s.report_block(t(2500));
        assert_eq!(rb.lsr, 0xb705_2000);
        assert_eq!(rb.dlsr, 0x0001_8000);
    }

    #[test]
    fn sizes() {
        use std::mem::size_of;
        // One of each per received stream in a gateway (were 168, 80 and 32 bytes).
        assert!(size_of::<ReceiverStats>() <= 112);
        assert!(size_of::<BurstGapTracker>() <= 40);
        assert!(size_of::<JitterEstimator>() <= 24);
    }

    #[test]
    fn jitter_time_bases_do_not_mix() {
        // Same packets in either time base give the same estimate; switching
        // base restarts from the next packet instead of diffing across bases.
        let (mut a, mut b) = (JitterEstimator::new(), JitterEstimator::new());
        for (i, extra) in [0u32, 40, 0, 80, 8, 0].into_iter().enumerate() {
            let ts = 160 * i as u32;
            let units = ts + extra;
            a.update(Duration::from_micros(u64::from(units) * 125), ts, 8000);
            b.update_units(units, ts);
        }
        assert!(a.jitter() > 1.0);
        assert!((a.jitter() - b.jitter()).abs() < 1e-6);
        let before = a.jitter();
        // One packet in the other base: no step from an unrelated reference.
        a.update_units(5_000_000, 960);
        assert_eq!(a.jitter(), before);
        a.update(Duration::from_secs(100), 1120, 8000);
        assert_eq!(a.jitter(), before);
    }

    #[test]
    fn gmin_fits_the_xr_field() {
        let mut t = BurstGapTracker::new(1000);
        // A Gmin of 1000 is taken as 255: the same bursts and gaps.
        t.on_lost();
        for _ in 0..255 {
            t.on_received();
        }
        t.on_lost();
        let wide = t.counts();
        let mut u = BurstGapTracker::new(255);
        u.on_lost();
        for _ in 0..255 {
            u.on_received();
        }
        u.on_lost();
        assert_eq!(wide, u.counts());
    }

    #[test]
    fn report_block_across_32_bit_wrap() {
        // Extended numbers from 0xffff_fff0 across the 2^32 wrap to 0xf.
        let mut s = ReceiverStats::with_tracker(1, 8000, SeqTracker::started_at(0xffff_fff0));
        let t = Duration::from_millis;
        for seq in (0xfff1u16..=0xffff).filter(|q| *q != 0xfff5) {
            s.on_rtp_units(seq, 0, 0);
        }
        // 16 expected, 15 received: 1 * 256 / 16.
        let rb = s.report_block(t(1));
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (16, 1));
        assert_eq!(rb.ext_highest_seq, 0xffff_ffff);
        for seq in (0u16..=0xf).filter(|q| *q != 3 && *q != 7) {
            s.on_rtp_units(seq, 0, 0);
        }
        // Interval: 16 expected, 14 received: 2 * 256 / 16.
        let rb = s.report_block(t(2));
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (32, 3));
        assert_eq!(rb.ext_highest_seq, 0xf);
        assert_eq!((s.seq().expected(), s.seq().received()), (32, 29));
        // The priors are 32-bit and the intervals wrapping (A.3): with priors from
        // just before `expected` and `received` wrapped past 2^32, the interval is
        // 6 more than the counts: 22 expected, 21 received: 256 / 22.
        s.expected_prior = 32u32.wrapping_sub(22);
        s.received_prior = 29u32.wrapping_sub(21);
        let rb = s.report_block(t(3));
        assert_eq!((rb.fraction_lost, rb.cumulative_lost), (11, 3));
    }

    #[test]
    fn sender_report_arrival() {
        let mut s = ReceiverStats::new(1, 8000);
        let ntp = NtpTime::new(0x0000_b705, 0x2000_0000);
        // An SR arriving at the origin is an SR all the same.
        s.on_sender_report(ntp, Duration::ZERO);
        let rb = s.report_block(Duration::from_millis(250));
        assert_eq!((rb.lsr, rb.dlsr), (0xb705_2000, 0x4000));
        // A report "before" the SR arrived: DLSR 0.
        s.on_sender_report(ntp, Duration::from_secs(10));
        assert_eq!(s.report_block(Duration::from_secs(9)).dlsr, 0);
        // Beyond 584 years of nanoseconds both times saturate (still an SR).
        s.on_sender_report(ntp, Duration::MAX);
        let rb = s.report_block(Duration::MAX);
        assert_eq!((rb.lsr, rb.dlsr), (0xb705_2000, 0));
    }

    #[test]
    fn jitter_hand_worked() {
        // 8 kHz, 20 ms packets (160 units). Arrival in RTP units:
        //   packet:  ts     arrival   transit  D (vs previous)  J
        //   1        0      1000      1000     -                0
        //   2        160    1160      1000     0                0
        //   3        320    1352      1032     32               2
        //   4        480    1480      1000     -32 -> 32        2 + 30/16 = 3.875
        //   5        640    1640      1000     0                3.875 - 3.875/16 = 3.6328125
        let mut j = JitterEstimator::new();
        let pkts = [
            (0u32, 1000u32),
            (160, 1160),
            (320, 1352),
            (480, 1480),
            (640, 1640),
        ];
        let expect = [0.0, 0.0, 2.0, 3.875, 3.632_812_5];
        for ((ts, arr), e) in pkts.into_iter().zip(expect) {
            j.update_units(arr, ts);
            assert!((j.jitter() - e).abs() < 1e-12, "{} vs {}", j.jitter(), e);
        }
        assert_eq!(j.jitter_units(), 4);
        // The Duration form gives the same: 1 unit = 125 us at 8 kHz.
        let mut k = JitterEstimator::new();
        for (ts, arr) in pkts {
            k.update(Duration::from_micros(u64::from(arr) * 125), ts, 8000);
        }
        assert!((k.jitter() - 3.632_812_5).abs() < 1e-9);
        // Timestamp and arrival wrap do not disturb it.
        let mut w = JitterEstimator::new();
        for (ts, arr) in pkts {
            w.update_units(arr.wrapping_sub(1200), ts.wrapping_sub(400));
        }
        assert!((w.jitter() - 3.632_812_5).abs() < 1e-12);
    }

    #[test]
    fn receiver_stats_in_rtp_units() {
        // Same hand-worked sequence as `jitter_hand_worked`, through ReceiverStats.
        let mut s = ReceiverStats::with_tracker(1, 8000, SeqTracker::with_probation(0));
        let pkts = [
            (0u32, 1000u32),
            (160, 1160),
            (320, 1352),
            (480, 1480),
            (640, 1640),
        ];
        for (i, (ts, arr)) in pkts.into_iter().enumerate() {
            s.on_rtp_units(i as u16, ts, arr);
        }
        assert!((s.jitter().jitter() - 3.632_812_5).abs() < 1e-12);
        assert_eq!(s.report_block(Duration::ZERO).jitter, 4);
    }

    #[test]
    fn rtt_rfc3550_example() {
        // RFC 3550 6.4.1, figure 2: A receives the RR at 46864.500 s (0xb710:8000),
        // LSR = 46853.125 s (0xb705:2000), DLSR = 5.250 s (0x0005:4000):
        // delay = 0x0006:2000 = 6.125 s.
        let r = rtt(0xb710_8000, 0xb705_2000, 0x0005_4000).unwrap();
        assert_eq!(r, Duration::from_millis(6_125));
        assert_eq!(duration_to_compact(r), 0x0006_2000);
        assert_eq!(rtt(0xb710_8000, 0, 0x0005_4000), None);
        // DLSR larger than the elapsed time: negative -> None
        assert_eq!(rtt(0xb705_3000, 0xb705_2000, 0x0005_4000), None);
        // across the 16-bit seconds wrap of the compact form
        assert_eq!(
            rtt(0x0001_0000, 0xffff_8000, 0),
            Some(Duration::from_millis(1_500))
        );
    }

    #[test]
    fn emodel_g711() {
        // No loss, no delay: R = 93.2 - 0 - 0.
        let r = r_factor(Codec::G711Plc, 0.0, 0.0, 1.0);
        assert!((r - 93.2).abs() < 1e-12);
        // MOS by hand: 1 + 0.035*93.2 + 93.2*33.2*6.8*7e-6
        //   = 1 + 3.262 + 21040.832*7e-6 = 1 + 3.262 + 0.147285824 = 4.409285824
        let mos = mos_from_r(r);
        assert!((mos - 4.409_285_824).abs() < 1e-9, "{mos}");
        // 20 ms one-way: Id = 0.48, R = 92.72.
        assert!((r_factor(Codec::G711Plc, 20.0, 0.0, 1.0) - 92.72).abs() < 1e-9);
        // 277.3 ms: Id = 0.024*277.3 + 0.11*100 = 6.6552 + 11 = 17.6552
        assert!((delay_impairment(277.3) - 17.6552).abs() < 1e-9);
        // 1 % random loss with PLC: Ie_eff = 95 * 1 / (1 + 25.1) = 3.639846...
        let ie = effective_ie(Codec::G711Plc, 1.0, 1.0);
        assert!((ie - 95.0 / 26.1).abs() < 1e-12);
        // without PLC: 95 / (1 + 4.3) = 17.924528...
        assert!((effective_ie(Codec::G711NoPlc, 1.0, 1.0) - 95.0 / 5.3).abs() < 1e-12);
        // G.729A, 2 % loss, BurstR 2: 11 + 84 * 2 / (1 + 19) = 19.4
        assert!((effective_ie(Codec::G729a, 2.0, 2.0) - 19.4).abs() < 1e-12);
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
        // R = 50: 1 + 1.75 + 50*(-10)*50*7e-6 = 2.75 - 0.175 = 2.575
        assert!((mos_from_r(50.0) - 2.575).abs() < 1e-12);
    }

    #[test]
    fn mos_never_below_one_for_small_r() {
        // R = 5: 1 + 0.175 + 5 * (-55) * 95 * 7e-6 = 1.175 - 0.182875 = 0.992125,
        // below the MOS scale (and below XR's MOS x10 range of 10..=50).
        assert_eq!(mos_from_r(5.0), 1.0);
        for i in 0..=1000 {
            let m = mos_from_r(f64::from(i) / 10.0);
            assert!((1.0..=4.5).contains(&m), "R {} -> {m}", f64::from(i) / 10.0);
        }
    }

    #[test]
    fn burst_gap_hand_worked() {
        // 20 received, 1 lost, 20 received, lost, received, lost, lost, 20 received.
        // Gap 1: 20 + isolated loss + 20 = 41 packets, 1 lost. Burst: L R L L = 4
        // packets, 3 lost. Gap 2: 20 packets. Gaps: 2 (61 packets), bursts: 1.
        let mut t = BurstGapTracker::new(16);
        let rx = |t: &mut BurstGapTracker, n: usize| (0..n).for_each(|_| t.on_received());
        rx(&mut t, 20);
        t.on_lost();
        rx(&mut t, 20);
        t.on_lost();
        rx(&mut t, 1);
        t.on_lost();
        t.on_lost();
        rx(&mut t, 20);
        let c = t.counts();
        assert_eq!(
            c,
            BurstGapCounts {
                bursts: 1,
                burst_packets: 4,
                burst_lost: 3,
                gaps: 2,
                gap_packets: 61,
                gap_lost: 1
            }
        );
        let m = t.metrics(20.0);
        assert!((m.burst_density - 0.75).abs() < 1e-12);
        assert_eq!(m.burst_density_u8(), 192);
        // 1/61 * 256 = 4.19 -> 4
        assert_eq!(m.gap_density_u8(), 4);
        assert!((m.burst_duration_ms - 80.0).abs() < 1e-12);
        assert!((m.gap_duration_ms - 610.0).abs() < 1e-12);
    }

    #[test]
    fn lost_run_equals_single_losses() {
        let mut a = BurstGapTracker::new(4);
        let mut b = BurstGapTracker::new(4);
        for (recv, lost) in [(10u64, 3u64), (2, 1), (5, 0), (1, 7), (20, 1), (3, 2)] {
            for _ in 0..recv {
                a.on_received();
                b.on_received();
            }
            a.on_lost_run(lost);
            for _ in 0..lost {
                b.on_lost();
            }
        }
        assert_eq!(a.counts(), b.counts());
    }

    #[test]
    fn burst_gap_counts_saturate() {
        let mut t = BurstGapTracker::new(16);
        t.pkt = u32::MAX - 1;
        t.on_received();
        t.on_received();
        assert_eq!(t.counts().gap_packets, u64::from(u32::MAX));
        // A loss closes that gap period (saturated) and opens a loss run.
        t.on_lost();
        t.totals.gaps = u32::MAX;
        t.totals.bursts = u32::MAX - 1;
        t.totals.burst_packets = u32::MAX - 3;
        t.on_received();
        // A run of 2^33 losses, O(1), saturates the run.
        t.on_lost_run(1 << 33);
        assert_eq!(t.run_lost, u32::MAX);
        t.on_lost();
        let c = t.counts();
        let max = u64::from(u32::MAX);
        assert_eq!(c.gaps, max);
        assert_eq!(c.gap_packets, max);
        assert_eq!(c.gap_lost, 0);
        assert_eq!(c.bursts, max);
        assert_eq!(c.burst_packets, max);
        assert_eq!(c.burst_lost, max);
        // Counting goes on without overflow.
        for _ in 0..20 {
            t.on_received();
        }
        t.on_lost();
        t.on_lost();
        let c = t.counts();
        assert_eq!((c.bursts, c.burst_lost, c.gaps), (max, max, max));
        assert!((t.metrics(20.0).burst_density - 1.0).abs() < 1e-9);
    }

    #[test]
    fn burst_gap_from_outcomes() {
        // 15 received between two losses is below Gmin = 16: one burst.
        let mut t = BurstGapTracker::new(16);
        let mut s = SeqTracker::with_probation(0);
        for seq in (0u16..=10).chain(12..=26).chain(28..=60) {
            t.on_outcome(s.update(seq));
        }
        let c = t.counts();
        // burst: lost 11, 12..=26 (15 received), lost 27 = 17 packets, 2 lost
        assert_eq!((c.bursts, c.burst_packets, c.burst_lost), (1, 17, 2));
        assert_eq!((c.gaps, c.gap_packets, c.gap_lost), (2, 11 + 33, 0));
    }
}
