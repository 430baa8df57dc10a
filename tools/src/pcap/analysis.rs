//! RTP/RTCP flow discovery and per-SSRC statistics for `rtp-pcap stats`.
//!
//! Every UDP datagram of the capture (restricted to `--port` hints when given) is
//! demultiplexed by its first two bytes: version 2 and a second byte in 200..=207 is
//! RTCP (SR, RR, SDES, BYE, APP, RTPFB, PSFB, XR), any other version-2 datagram of at
//! least 12 bytes is an RTP candidate. RTP candidates are grouped by (source,
//! destination, SSRC); a group is reported as a stream when it has at least two
//! packets and (without port hints) at least one pair of consecutive packets whose
//! sequence numbers step forward by less than 3000.
//!
//! The figures per stream (all in arrival order, as captured):
//! - `packets`: every packet of the stream, duplicates included.
//! - `expected`: highest extended sequence number - first sequence number + 1 (RFC 3550
//!   A.3 with the first packet as base; summed over restarts).
//! - `lost = expected - packets` (negative when duplicates outnumber losses), as
//!   Wireshark's RTP stream statistics count it.
//! - `duplicates`, `out_of_order` (late packets), `bad_seq`, `restarts`: from
//!   [`rtp_core::seq::SeqTracker`] (RFC 3550 A.1, no probation).
//! - `sequence_errors`: packets that were not exactly the next sequence number
//!   (a gap before them, late, duplicate, bad or restart).
//! - jitter: RFC 3550 A.8 against the previous packet in arrival order, converted to
//!   milliseconds with the clock rate; `max_jitter_ms` and `mean_jitter_ms` are the
//!   maximum and mean of the running estimate after each packet but the first.
//! - clock rate: `--clock-rate PT=HZ` first, then the static payload types of RFC 3551;
//!   for dynamic or unassigned types it is estimated from the timestamp advance over
//!   the capture time and snapped to the nearest of 8000, 16000, 24000, 32000, 44100,
//!   48000 and 90000 Hz; when it cannot be estimated (too short a stream), 8000 Hz.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use rtp_core::seq::{SeqOutcome, SeqTracker, MAX_DROPOUT};
use rtp_core::stats::{mos_from_r, r_factor, BurstGapTracker, Codec, JitterEstimator};
use rtp_core::time::RtpTimestampExtender;

use super::capture::{CaptureError, CaptureReader};

/// Options of the analysis.
#[derive(Debug, Clone, Default)]
pub struct AnalysisOptions {
    /// Only datagrams from or to these UDP ports (all UDP when empty).
    pub ports: Vec<u16>,
    /// Clock rates given by the user, by payload type.
    pub clock_rates: BTreeMap<u8, u32>,
}

/// The clock rate of a static payload type (RFC 3551 tables 4 and 5).
pub fn static_clock_rate(pt: u8) -> Option<u32> {
    Some(match pt {
        0 | 3 | 4 | 5 | 7 | 8 | 9 | 12 | 13 | 15 | 18 => 8000,
        6 => 16_000,
        10 | 11 => 44_100,
        16 => 11_025,
        17 => 22_050,
        14 | 25 | 26 | 28 | 31 | 32 | 33 | 34 => 90_000,
        _ => return None,
    })
}

/// Where a stream's clock rate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockRateSource {
    /// `--clock-rate PT=HZ`.
    User,
    /// RFC 3551 static payload type.
    Static,
    /// Estimated from timestamps against capture time.
    Estimated,
    /// Nothing better known: 8000 Hz.
    Default,
}

/// Burst/gap figures (RFC 3611 4.7.2, Gmin 16) of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BurstGapReport {
    /// Fraction of packets lost within bursts.
    pub burst_density: f64,
    /// Fraction of packets lost within gaps.
    pub gap_density: f64,
    /// Number of bursts.
    pub bursts: u64,
    /// Mean burst length in packets.
    pub mean_burst_packets: f64,
}

/// A listening-quality estimate from the E-model (ITU-T G.107, simplified), for
/// G.711 streams (PT 0 and 8): G.711 with PLC, the stream's loss rate, random loss
/// (BurstR 1) and no delay impairment, since one capture point cannot see the
/// mouth-to-ear delay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EModelReport {
    /// R factor.
    pub r: f64,
    /// MOS from R.
    pub mos: f64,
}

/// Statistics of one RTP stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    /// SSRC.
    pub ssrc: u32,
    /// SSRC as `0x%08X` (as Wireshark prints it).
    pub ssrc_hex: String,
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// Payload types seen.
    pub payload_types: Vec<u8>,
    /// Clock rate used for jitter, Hz.
    pub clock_rate: u32,
    /// Where the clock rate came from.
    pub clock_rate_source: ClockRateSource,
    /// Packets captured (duplicates included).
    pub packets: u64,
    /// Packets expected from the sequence numbers.
    pub expected: u64,
    /// expected - packets.
    pub lost: i64,
    /// lost / expected in percent.
    pub lost_percent: f64,
    /// Duplicate packets.
    pub duplicates: u64,
    /// Late (reordered) packets.
    pub out_of_order: u64,
    /// Packets rejected as bad sequence numbers (jumps).
    pub bad_seq: u64,
    /// Times the sequence tracking restarted after a jump.
    pub restarts: u64,
    /// Packets that were not exactly the next sequence number.
    pub sequence_errors: u64,
    /// Sequence number of the first packet.
    pub first_seq: u16,
    /// Sequence number of the last packet.
    pub last_seq: u16,
    /// Highest extended sequence number.
    pub ext_highest_seq: u64,
    /// RTP timestamp of the first packet.
    pub first_timestamp: u32,
    /// RTP timestamp of the last packet.
    pub last_timestamp: u32,
    /// Packets with the marker bit.
    pub markers: u64,
    /// Capture time of the first packet, seconds since the UNIX epoch.
    pub start_time: f64,
    /// Capture time of the last packet, seconds since the UNIX epoch.
    pub end_time: f64,
    /// Largest arrival-time gap between consecutive packets, ms.
    pub max_delta_ms: f64,
    /// Largest running jitter estimate, ms.
    pub max_jitter_ms: f64,
    /// Mean running jitter estimate, ms.
    pub mean_jitter_ms: f64,
    /// Final jitter estimate in RTP units (what a report block would carry).
    pub jitter_units: u32,
    /// UDP payload bytes.
    pub bytes: u64,
    /// Burst/gap metrics.
    pub burst_gap: BurstGapReport,
    /// E-model estimate (G.711 streams only).
    pub emodel: Option<EModelReport>,
}

/// One RTCP flow (source, destination).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RtcpFlowReport {
    /// Source address.
    pub src: SocketAddr,
    /// Destination address.
    pub dst: SocketAddr,
    /// Datagrams.
    pub packets: u64,
    /// Count of the first packet type of each datagram (200 SR, 201 RR, ...).
    pub first_packet_types: BTreeMap<u8, u64>,
    /// Sender SSRCs of the first packets.
    pub ssrcs: Vec<u32>,
}

/// Frame counters of the whole capture.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FrameCounts {
    /// Frames read.
    pub frames: u64,
    /// UDP datagrams.
    pub udp: u64,
    /// Frames that were not (unfragmented) UDP over IP.
    pub not_udp: u64,
    /// Datagrams classified as RTP in a reported stream.
    pub rtp: u64,
    /// Datagrams classified as RTCP.
    pub rtcp: u64,
    /// Other UDP datagrams (including RTP candidates not reported as a stream).
    pub other_udp: u64,
}

/// The result of `rtp-pcap stats`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Frame counters.
    pub counts: FrameCounts,
    /// RTP streams, ordered by first appearance.
    pub rtp_streams: Vec<StreamReport>,
    /// RTCP flows, ordered by first appearance.
    pub rtcp_flows: Vec<RtcpFlowReport>,
    /// A read error that ended the capture early (e.g. a truncated last frame).
    pub read_error: Option<String>,
}

#[derive(Debug, Clone, Copy)]
struct Pkt {
    t: Duration,
    seq: u16,
    ts: u32,
    pt: u8,
    marker: bool,
    len: usize,
}

type StreamKey = (SocketAddr, SocketAddr, u32);

/// Classifies a UDP payload: `Some(true)` RTCP, `Some(false)` RTP candidate.
pub fn classify(payload: &[u8]) -> Option<bool> {
    let b0 = *payload.first()?;
    let b1 = *payload.get(1)?;
    if b0 >> 6 != 2 {
        return None;
    }
    if (200..=207).contains(&b1) {
        return (payload.len() >= 8).then_some(true);
    }
    (payload.len() >= 12).then_some(false)
}

/// Reads the whole capture and computes the report.
pub fn analyze<R: Read>(
    reader: CaptureReader<R>,
    opts: &AnalysisOptions,
) -> Result<Report, CaptureError> {
    let mut counts = FrameCounts::default();
    let mut order: Vec<StreamKey> = Vec::new();
    let mut streams: HashMap<StreamKey, Vec<Pkt>> = HashMap::new();
    let mut rtcp_order: Vec<(SocketAddr, SocketAddr)> = Vec::new();
    let mut rtcp: HashMap<(SocketAddr, SocketAddr), RtcpFlowReport> = HashMap::new();
    let mut read_error = None;
    for frame in reader {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                read_error = Some(e.to_string());
                break;
            }
        };
        counts.frames += 1;
        let Some((udp, payload)) = frame.udp_payload() else {
            counts.not_udp += 1;
            continue;
        };
        counts.udp += 1;
        if !opts.ports.is_empty()
            && !opts.ports.contains(&udp.src.port())
            && !opts.ports.contains(&udp.dst.port())
        {
            counts.other_udp += 1;
            continue;
        }
        match classify(payload) {
            Some(true) => {
                counts.rtcp += 1;
                let key = (udp.src, udp.dst);
                let flow = rtcp.entry(key).or_insert_with(|| {
                    rtcp_order.push(key);
                    RtcpFlowReport {
                        src: udp.src,
                        dst: udp.dst,
                        packets: 0,
                        first_packet_types: BTreeMap::new(),
                        ssrcs: Vec::new(),
                    }
                });
                flow.packets += 1;
                if let Some(&pt) = payload.get(1) {
                    *flow.first_packet_types.entry(pt).or_insert(0) += 1;
                }
                if let Some(s) = payload.get(4..8) {
                    let ssrc = u32::from_be_bytes([s[0], s[1], s[2], s[3]]);
                    if !flow.ssrcs.contains(&ssrc) {
                        flow.ssrcs.push(ssrc);
                    }
                }
            }
            Some(false) => {
                let Some(h) = payload.get(..12) else {
                    counts.other_udp += 1;
                    continue;
                };
                let ssrc = u32::from_be_bytes([h[8], h[9], h[10], h[11]]);
                let pkt = Pkt {
                    t: frame.timestamp,
                    seq: u16::from_be_bytes([h[2], h[3]]),
                    ts: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
                    pt: h[1] & 0x7f,
                    marker: h[1] & 0x80 != 0,
                    len: payload.len(),
                };
                let key = (udp.src, udp.dst, ssrc);
                streams
                    .entry(key)
                    .or_insert_with(|| {
                        order.push(key);
                        Vec::new()
                    })
                    .push(pkt);
            }
            None => counts.other_udp += 1,
        }
    }
    let mut rtp_streams = Vec::new();
    for key in order {
        let Some(pkts) = streams.get(&key) else {
            continue;
        };
        if !looks_like_stream(pkts, opts.ports.is_empty()) {
            counts.other_udp += pkts.len() as u64;
            continue;
        }
        counts.rtp += pkts.len() as u64;
        rtp_streams.push(analyze_stream(key, pkts, opts));
    }
    let rtcp_flows = rtcp_order
        .into_iter()
        .filter_map(|k| rtcp.remove(&k))
        .collect();
    Ok(Report {
        counts,
        rtp_streams,
        rtcp_flows,
        read_error,
    })
}

fn looks_like_stream(pkts: &[Pkt], heuristic: bool) -> bool {
    if pkts.len() < 2 {
        return false;
    }
    if !heuristic {
        return true;
    }
    pkts.windows(2).any(|w| {
        let d = w[1].seq.wrapping_sub(w[0].seq);
        (1..MAX_DROPOUT).contains(&d)
    })
}

const COMMON_RATES: [u32; 7] = [8000, 16_000, 24_000, 32_000, 44_100, 48_000, 90_000];

/// Estimates a clock rate from timestamps against arrival times, snapped to a common
/// rate; `None` for streams shorter than 200 ms or without timestamp advance.
pub fn estimate_clock_rate(samples: &[(Duration, u32)]) -> Option<u32> {
    let (first, last) = (samples.first()?, samples.last()?);
    let span = last.0.checked_sub(first.0)?.as_secs_f64();
    if span < 0.2 {
        return None;
    }
    let mut ext = RtpTimestampExtender::new();
    let first_ext = ext.extend(first.1);
    for (_, ts) in samples.iter().skip(1) {
        ext.extend(*ts);
    }
    let last_ext = ext.last()?;
    let advance = (last_ext - first_ext) as f64;
    if advance <= 0.0 {
        return None;
    }
    let rate = advance / span;
    COMMON_RATES.into_iter().min_by(|a, b| {
        let da = (rate / f64::from(*a)).ln().abs();
        let db = (rate / f64::from(*b)).ln().abs();
        da.total_cmp(&db)
    })
}

fn clock_rate_for(pkts: &[Pkt], opts: &AnalysisOptions) -> (u32, ClockRateSource) {
    // The most frequent payload type decides.
    let mut freq: BTreeMap<u8, usize> = BTreeMap::new();
    for p in pkts {
        *freq.entry(p.pt).or_insert(0) += 1;
    }
    let pt = freq
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(pt, _)| *pt)
        .unwrap_or(0);
    if let Some(r) = opts.clock_rates.get(&pt) {
        return (*r, ClockRateSource::User);
    }
    if let Some(r) = static_clock_rate(pt) {
        return (r, ClockRateSource::Static);
    }
    let samples: Vec<(Duration, u32)> = pkts
        .iter()
        .filter(|p| p.pt == pt)
        .map(|p| (p.t, p.ts))
        .collect();
    match estimate_clock_rate(&samples) {
        Some(r) => (r, ClockRateSource::Estimated),
        None => (8000, ClockRateSource::Default),
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn analyze_stream(key: StreamKey, pkts: &[Pkt], opts: &AnalysisOptions) -> StreamReport {
    let (src, dst, ssrc) = key;
    let (clock_rate, clock_rate_source) = clock_rate_for(pkts, opts);
    let mut seq = SeqTracker::with_probation(0);
    let mut jitter = JitterEstimator::new();
    let mut bg = BurstGapTracker::default();
    let mut expected_before_restart = 0u64;
    let mut sequence_errors = 0u64;
    let mut max_jitter = 0.0f64;
    let mut sum_jitter = 0.0f64;
    let mut n_jitter = 0u64;
    let mut max_delta = Duration::ZERO;
    let mut pts = BTreeSet::new();
    let mut markers = 0;
    let mut bytes = 0u64;
    let to_ms = |units: f64| units * 1000.0 / f64::from(clock_rate.max(1));
    for (i, p) in pkts.iter().enumerate() {
        let prev_expected = seq.expected();
        let outcome = seq.update(p.seq);
        match outcome {
            SeqOutcome::Validated { .. } | SeqOutcome::Accepted { gap: 0, .. } => {}
            SeqOutcome::Restarted { .. } => {
                expected_before_restart += prev_expected;
                sequence_errors += 1;
                jitter.reset_reference();
            }
            _ => sequence_errors += 1,
        }
        bg.on_outcome(outcome);
        if outcome != SeqOutcome::BadSeq {
            jitter.update(p.t, p.ts, clock_rate);
        }
        if i > 0 {
            let j = to_ms(jitter.jitter());
            max_jitter = max_jitter.max(j);
            sum_jitter += j;
            n_jitter += 1;
            if let Some(d) = p.t.checked_sub(pkts[i - 1].t) {
                max_delta = max_delta.max(d);
            }
        }
        pts.insert(p.pt);
        markers += u64::from(p.marker);
        bytes += p.len as u64;
    }
    let packets = pkts.len() as u64;
    let expected = expected_before_restart + seq.expected();
    let lost = expected as i64 - packets as i64;
    let counts = bg.counts();
    let first = pkts.first().copied();
    let last = pkts.last().copied();
    let lost_percent = if expected == 0 {
        0.0
    } else {
        lost as f64 * 100.0 / expected as f64
    };
    let g711 = !pts.is_empty() && pts.iter().all(|pt| *pt == 0 || *pt == 8);
    let emodel = g711.then(|| {
        let r = r_factor(Codec::G711Plc, 0.0, lost_percent.max(0.0), 1.0);
        EModelReport {
            r,
            mos: mos_from_r(r),
        }
    });
    StreamReport {
        ssrc,
        ssrc_hex: format!("0x{ssrc:08X}"),
        src,
        dst,
        payload_types: pts.iter().copied().collect(),
        clock_rate,
        clock_rate_source,
        packets,
        expected,
        lost,
        lost_percent,
        duplicates: seq.duplicates(),
        out_of_order: seq.out_of_order(),
        bad_seq: seq.bad_seq_count(),
        restarts: seq.restarts(),
        sequence_errors,
        first_seq: first.map_or(0, |p| p.seq),
        last_seq: last.map_or(0, |p| p.seq),
        ext_highest_seq: seq.ext_highest_seq().unwrap_or(0),
        first_timestamp: first.map_or(0, |p| p.ts),
        last_timestamp: last.map_or(0, |p| p.ts),
        markers,
        start_time: first.map_or(0.0, |p| secs(p.t)),
        end_time: last.map_or(0.0, |p| secs(p.t)),
        max_delta_ms: max_delta.as_secs_f64() * 1000.0,
        max_jitter_ms: max_jitter,
        mean_jitter_ms: if n_jitter == 0 {
            0.0
        } else {
            sum_jitter / n_jitter as f64
        },
        jitter_units: jitter.jitter_units(),
        bytes,
        burst_gap: BurstGapReport {
            burst_density: bg.metrics(1.0).burst_density,
            gap_density: bg.metrics(1.0).gap_density,
            bursts: counts.bursts,
            mean_burst_packets: bg.metrics(1.0).burst_duration_ms,
        },
        emodel,
    }
}

/// Renders the report as a human-readable table.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let c = &r.counts;
    let _ = writeln!(
        s,
        "frames {}  udp {}  rtp {}  rtcp {}  other udp {}  not udp {}",
        c.frames, c.udp, c.rtp, c.rtcp, c.other_udp, c.not_udp
    );
    if let Some(e) = &r.read_error {
        let _ = writeln!(s, "warning: capture ended early: {e}");
    }
    let _ = writeln!(s, "RTP streams: {}", r.rtp_streams.len());
    for st in &r.rtp_streams {
        let _ = writeln!(
            s,
            "  {} {} -> {}  pt {:?} @ {} Hz ({:?})",
            st.ssrc_hex, st.src, st.dst, st.payload_types, st.clock_rate, st.clock_rate_source
        );
        let _ = writeln!(
            s,
            "    packets {}  expected {}  lost {} ({:.2}%)  duplicates {}  out-of-order {}  seq errors {}  bad seq {}  restarts {}",
            st.packets,
            st.expected,
            st.lost,
            st.lost_percent,
            st.duplicates,
            st.out_of_order,
            st.sequence_errors,
            st.bad_seq,
            st.restarts
        );
        let _ = writeln!(
            s,
            "    seq {}..{}  ts {}..{}  max delta {:.3} ms  jitter max {:.3} ms mean {:.3} ms  burst density {:.3} gap density {:.3}",
            st.first_seq,
            st.last_seq,
            st.first_timestamp,
            st.last_timestamp,
            st.max_delta_ms,
            st.max_jitter_ms,
            st.mean_jitter_ms,
            st.burst_gap.burst_density,
            st.burst_gap.gap_density
        );
        if let Some(e) = st.emodel {
            let _ = writeln!(
                s,
                "    E-model (G.711 PLC, no delay, random loss): R {:.1}  MOS {:.2}",
                e.r, e.mos
            );
        }
    }
    let _ = writeln!(s, "RTCP flows: {}", r.rtcp_flows.len());
    for f in &r.rtcp_flows {
        let ssrcs: Vec<String> = f.ssrcs.iter().map(|x| format!("0x{x:08X}")).collect();
        let _ = writeln!(
            s,
            "  {} -> {}  packets {}  first types {:?}  ssrc {}",
            f.src,
            f.dst,
            f.packets,
            f.first_packet_types,
            ssrcs.join(",")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::capture::CaptureWriter;
    use crate::pcap::net::{build_ip_udp, linktype};
    use std::io::Cursor;

    fn rtp(seq: u16, ts: u32, ssrc: u32, pt: u8) -> Vec<u8> {
        let mut v = vec![0x80, pt];
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&ts.to_be_bytes());
        v.extend_from_slice(&ssrc.to_be_bytes());
        v.extend_from_slice(&[0u8; 160]);
        v
    }

    fn capture(datagrams: &[(Duration, Vec<u8>)]) -> Vec<u8> {
        let a: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let mut w = CaptureWriter::new(Vec::new(), linktype::RAW).unwrap();
        for (t, d) in datagrams {
            w.write_raw(*t, &build_ip_udp(a, b, d).unwrap()).unwrap();
        }
        w.finish().unwrap()
    }

    #[test]
    fn loss_reorder_duplicate_and_rtcp() {
        // PCMU 20 ms, seq 100..=119 sent; 105 lost, 110/111 swapped, 115 duplicated.
        let mut seqs: Vec<u16> = (100..120).filter(|s| *s != 105).collect();
        let i = seqs.iter().position(|s| *s == 110).unwrap();
        seqs.swap(i, i + 1);
        let j = seqs.iter().position(|s| *s == 115).unwrap();
        seqs.insert(j + 1, 115);
        let mut d: Vec<(Duration, Vec<u8>)> = seqs
            .iter()
            .enumerate()
            .map(|(k, s)| {
                (
                    Duration::from_millis(1000 + 20 * k as u64),
                    rtp(*s, u32::from(*s - 100) * 160, 0xdead_beef, 0),
                )
            })
            .collect();
        let mut sr = vec![0x80, 200, 0, 6];
        sr.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        sr.extend_from_slice(&[0u8; 20]);
        d.push((Duration::from_secs(2), sr));
        d.push((Duration::from_secs(2), b"not rtp".to_vec()));
        let r = analyze(
            CaptureReader::new(Cursor::new(capture(&d))).unwrap(),
            &AnalysisOptions::default(),
        )
        .unwrap();
        assert_eq!(r.rtp_streams.len(), 1);
        let s = &r.rtp_streams[0];
        assert_eq!(s.ssrc_hex, "0xDEADBEEF");
        assert_eq!(s.packets, 20); // 19 distinct + 1 duplicate
        assert_eq!(s.expected, 20);
        assert_eq!(s.lost, 0); // 1 lost, hidden by 1 duplicate, as Wireshark counts
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.out_of_order, 1);
        // 106 (after the gap), 111 (skips 110), 110 (late), 115 (dup) -> 4.
        assert_eq!(s.sequence_errors, 4);
        assert_eq!(s.clock_rate, 8000);
        assert_eq!(s.clock_rate_source, ClockRateSource::Static);
        assert_eq!((s.first_seq, s.last_seq), (100, 119));
        // lost 0 -> R 93.2, MOS 4.409 (see rtp_core::stats tests for the hand figures)
        let e = s.emodel.unwrap();
        assert!((e.r - 93.2).abs() < 1e-9 && (e.mos - 4.409).abs() < 1e-3);
        assert_eq!(r.rtcp_flows.len(), 1);
        assert_eq!(r.rtcp_flows[0].first_packet_types.get(&200), Some(&1));
        assert_eq!(r.counts.other_udp, 1);
        // Jitter: arrivals every 20 ms but the timestamps skip 160 at the loss and
        // swap at 110/111, so jitter is non-zero; with perfect pacing it would be 0.
        assert!(s.max_jitter_ms > 0.0);
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"ssrc\":3735928559"));
    }

    #[test]
    fn dynamic_pt_rate_is_estimated() {
        // PT 111 at 48 kHz, 20 ms packets (960 units) over 1 s.
        let d: Vec<(Duration, Vec<u8>)> = (0..50u16)
            .map(|k| {
                (
                    Duration::from_millis(20 * u64::from(k)),
                    rtp(k, u32::from(k) * 960, 7, 111),
                )
            })
            .collect();
        let bytes = capture(&d);
        let r = analyze(
            CaptureReader::new(Cursor::new(bytes.clone())).unwrap(),
            &AnalysisOptions::default(),
        )
        .unwrap();
        let s = &r.rtp_streams[0];
        assert_eq!(
            (s.clock_rate, s.clock_rate_source),
            (48_000, ClockRateSource::Estimated)
        );
        assert!(s.max_jitter_ms < 1e-6);
        let mut opts = AnalysisOptions::default();
        opts.clock_rates.insert(111, 90_000);
        let r = analyze(CaptureReader::new(Cursor::new(bytes)).unwrap(), &opts).unwrap();
        assert_eq!(r.rtp_streams[0].clock_rate_source, ClockRateSource::User);
        // Port filter that matches nothing.
        let opts = AnalysisOptions {
            ports: vec![9],
            ..Default::default()
        };
        let r = analyze(CaptureReader::new(Cursor::new(capture(&d))).unwrap(), &opts).unwrap();
        assert!(r.rtp_streams.is_empty());
    }
}
