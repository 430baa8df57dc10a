//! Reception side: every RTCP compound received on a leg is parsed; sender
//! reports are remembered (for our LSR/DLSR), report blocks about our stream give
//! the round-trip time and what the peer sees, and the leg's quality (loss,
//! jitter, RTT, MOS, bitrate) is kept with counters of what was ignored.

use core::time::Duration;

use rtp_core::rtcp::{Compound, RtcpPacket};
use rtp_core::stats::{mos_from_r, r_factor, Codec};
use rtp_core::time::{compact_to_duration, NtpTime};

/// Round-trip times above this are treated as absurd and ignored.
pub const MAX_RTT: Duration = Duration::from_secs(60);

/// The last SR received from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RemoteSr {
    /// Sender SSRC.
    pub ssrc: u32,
    /// NTP timestamp.
    pub ntp: u64,
    /// RTP timestamp.
    pub rtp_ts: u32,
    /// Sender's packet count.
    pub packets: u32,
    /// Sender's octet count.
    pub octets: u32,
    /// Wall-clock arrival (since the UNIX epoch).
    pub arrival: Duration,
}

impl RemoteSr {
    /// The LSR value to echo: the middle 32 bits of the NTP timestamp.
    pub fn lsr(&self) -> u32 {
        NtpTime(self.ntp).to_compact()
    }
}

/// What the peer reports about the stream we send it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RemoteReport {
    /// Fraction lost in its last interval (0..=1).
    pub fraction_lost: f64,
    /// Its cumulative loss count.
    pub cumulative_lost: i32,
    /// Its jitter estimate in timestamp units.
    pub jitter: u32,
    /// Its extended highest sequence number.
    pub ext_highest_seq: u32,
}

/// Counters of what was received and what was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtcpRxCounters {
    /// Compound packets handled.
    pub compounds: u64,
    /// RTCP packets parsed (inside compounds).
    pub packets: u64,
    /// Sender reports.
    pub sr: u64,
    /// Receiver reports.
    pub rr: u64,
    /// SDES packets.
    pub sdes: u64,
    /// BYE packets.
    pub bye: u64,
    /// XR packets.
    pub xr: u64,
    /// Feedback packets (NACK, PLI, FIR, REMB, TWCC, other).
    pub feedback: u64,
    /// Packets that failed to parse (lying lengths, bad counts, truncation).
    pub malformed: u64,
    /// Packets of unknown type (skipped).
    pub unknown_type: u64,
    /// Report blocks about an SSRC that is not ours (ignored).
    pub unknown_ssrc_blocks: u64,
    /// Report blocks whose LSR/DLSR gave no usable RTT: LSR not one of our SRs,
    /// a negative result, or one above [`MAX_RTT`].
    pub absurd_rtt: u64,
    /// RTT samples taken.
    pub rtt_samples: u64,
}

/// What one compound told us.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RxSummary {
    /// An SR arrived.
    pub sr: Option<RemoteSr>,
    /// An RTT sample.
    pub rtt: Option<Duration>,
    /// The peer said BYE.
    pub bye: bool,
    /// Feedback packets (to forward when passing through).
    pub feedback: u32,
    /// Packets in the compound that could not be parsed.
    pub malformed: u32,
}

/// RTCP reception state of one leg.
#[derive(Debug, Clone, Default)]
pub struct RtcpReception {
    last_sr: Option<RemoteSr>,
    rtt: Option<Duration>,
    rtt_smoothed: Option<f64>,
    remote: Option<RemoteReport>,
    cname: Option<String>,
    counters: RtcpRxCounters,
}

impl RtcpReception {
    /// Fresh state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles one received compound at wall-clock `arrival`. `our_ssrcs` are the
    /// SSRCs we send as on this leg; `is_our_sr(lsr)` says whether an LSR echoes
    /// one of our recent SRs (so a garbage LSR never becomes an RTT).
    pub fn on_compound(
        &mut self,
        data: &[u8],
        arrival: Duration,
        our_ssrcs: &[u32],
        is_our_sr: impl Fn(u32) -> bool,
    ) -> RxSummary {
        let mut sum = RxSummary::default();
        self.counters.compounds += 1;
        let arrival_compact = NtpTime::from_unix(arrival).to_compact();
        for p in Compound::new(data) {
            let p = match p {
                Ok(p) => p,
                Err(_) => {
                    self.counters.malformed += 1;
                    sum.malformed += 1;
                    continue;
                }
            };
            self.counters.packets += 1;
            let blocks = match p {
                RtcpPacket::Sr(sr) => {
                    self.counters.sr += 1;
                    let r = RemoteSr {
                        ssrc: sr.ssrc(),
                        ntp: sr.ntp_time(),
                        rtp_ts: sr.rtp_timestamp(),
                        packets: sr.packet_count(),
                        octets: sr.octet_count(),
                        arrival,
                    };
                    self.last_sr = Some(r);
                    sum.sr = Some(r);
                    Some(sr.report_blocks())
                }
                RtcpPacket::Rr(rr) => {
                    self.counters.rr += 1;
                    Some(rr.report_blocks())
                }
                RtcpPacket::Sdes(s) => {
                    self.counters.sdes += 1;
                    if let Some(c) = s
                        .chunks()
                        .next()
                        .and_then(|c| c.find(rtp_core::rtcp::sdes_item::CNAME))
                    {
                        if self.cname.as_deref().map(str::as_bytes) != Some(c) {
                            self.cname = Some(String::from_utf8_lossy(c).into_owned());
                        }
                    }
                    None
                }
                RtcpPacket::Bye(_) => {
                    self.counters.bye += 1;
                    sum.bye = true;
                    None
                }
                RtcpPacket::Xr(_) => {
                    self.counters.xr += 1;
                    None
                }
                RtcpPacket::Nack(_)
                | RtcpPacket::Pli(_)
                | RtcpPacket::Fir(_)
                | RtcpPacket::Remb(_)
                | RtcpPacket::Twcc(_)
                | RtcpPacket::Ccfb(_)
                | RtcpPacket::OtherFb { .. } => {
                    self.counters.feedback += 1;
                    sum.feedback += 1;
                    None
                }
                RtcpPacket::App(_) => None,
                RtcpPacket::Unknown { .. } => {
                    self.counters.unknown_type += 1;
                    None
                }
            };
            for b in blocks.into_iter().flatten() {
                if !our_ssrcs.contains(&b.ssrc) {
                    self.counters.unknown_ssrc_blocks += 1;
                    continue;
                }
                self.remote = Some(RemoteReport {
                    fraction_lost: f64::from(b.fraction_lost) / 256.0,
                    cumulative_lost: b.cumulative_lost,
                    jitter: b.jitter,
                    ext_highest_seq: b.ext_highest_seq,
                });
                if b.lsr == 0 {
                    continue; // no SR of ours seen yet: no sample, nothing wrong
                }
                match rtt_sample(arrival_compact, b.lsr, b.dlsr) {
                    Some(rtt) if is_our_sr(b.lsr) => {
                        self.counters.rtt_samples += 1;
                        self.rtt = Some(rtt);
                        let ms = rtt.as_secs_f64() * 1000.0;
                        self.rtt_smoothed = Some(match self.rtt_smoothed {
                            Some(s) => s + (ms - s) / 8.0,
                            None => ms,
                        });
                        sum.rtt = Some(rtt);
                    }
                    _ => self.counters.absurd_rtt += 1,
                }
            }
        }
        sum
    }

    /// The last SR from the peer.
    pub fn last_sr(&self) -> Option<RemoteSr> {
        self.last_sr
    }

    /// The (LSR, arrival) pair our next report block echoes.
    pub fn lsr_input(&self) -> Option<(u32, Duration)> {
        self.last_sr.map(|s| (s.lsr(), s.arrival))
    }

    /// The last RTT sample.
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// The smoothed RTT in ms (EWMA with gain 1/8).
    pub fn rtt_smoothed_ms(&self) -> Option<f64> {
        self.rtt_smoothed
    }

    /// What the peer last reported about our stream.
    pub fn remote_report(&self) -> Option<RemoteReport> {
        self.remote
    }

    /// The peer's CNAME.
    pub fn cname(&self) -> Option<&str> {
        self.cname.as_deref()
    }

    /// Counters.
    pub fn counters(&self) -> &RtcpRxCounters {
        &self.counters
    }
}

/// RTT = arrival - LSR - DLSR in compact NTP (RFC 3550 6.4.1); `None` when the
/// LSR lies in the future, DLSR exceeds the time since the LSR (which modular
/// arithmetic would otherwise turn into a plausible value), or the result is
/// above [`MAX_RTT`].
pub fn rtt_sample(arrival_compact: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let elapsed = arrival_compact.wrapping_sub(lsr);
    if (elapsed as i32) < 0 || dlsr > elapsed {
        return None;
    }
    let r = compact_to_duration(elapsed - dlsr);
    (r <= MAX_RTT).then_some(r)
}

/// A leg's quality figures, as exposed by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QualityFigures {
    /// Loss of what we receive, fraction (0..=1) over the last interval.
    pub loss: f64,
    /// Cumulative loss of what we receive, fraction (0..=1).
    pub loss_total: f64,
    /// Interarrival jitter of what we receive, ms.
    pub jitter_ms: f64,
    /// Round-trip time, ms (smoothed), when measured.
    pub rtt_ms: Option<f64>,
    /// MOS (E-model, conversational) of what we receive, 1..=4.5, when anything
    /// was received.
    pub mos: Option<f64>,
    /// R factor behind the MOS.
    pub r_factor: Option<f64>,
    /// Receive bitrate, bits per second (over the last snapshot interval).
    pub rx_bitrate: f64,
    /// Loss the peer reports for what we send (fraction, last interval).
    pub remote_loss: Option<f64>,
    /// Jitter the peer reports for what we send, ms.
    pub remote_jitter_ms: Option<f64>,
}

/// The E-model MOS for `loss` (fraction) with a one-way delay of
/// `rtt/2 + jitter buffer` (the buffer taken as twice the jitter, at least
/// `packet_ms`). Never NaN: non-finite inputs count as zero.
pub fn estimate_mos(
    codec: Codec,
    loss: f64,
    jitter_ms: f64,
    rtt_ms: Option<f64>,
    packet_ms: f64,
) -> (f64, f64) {
    let clean = |x: f64| if x.is_finite() && x > 0.0 { x } else { 0.0 };
    let loss_pct = (clean(loss) * 100.0).min(100.0);
    let jb = (2.0 * clean(jitter_ms)).max(clean(packet_ms));
    let delay = clean(rtt_ms.unwrap_or(0.0)) / 2.0 + jb;
    let r = r_factor(codec, delay, loss_pct, 1.0);
    (mos_from_r(r), r)
}
