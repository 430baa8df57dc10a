//! Hostile RTCP: lying lengths, unknown types, report blocks for unknown SSRCs,
//! absurd LSR/DLSR. Each is ignored and counted; nothing panics, no statistic is
//! poisoned (no negative RTT, no NaN MOS).

use std::time::Duration;

use proptest::prelude::*;
use rtp_control::rtcp::quality::estimate_mos;
use rtp_control::rtcp::{
    QualityFigures, QualityMonitor, QualityThresholds, ReceptionState, ReportInputs, Reporter,
    ReporterConfig, RtcpReception, SenderState, XrConfig,
};
use rtp_core::rtcp::{ReportBlock, RrRepr, RtcpWrite, SrRepr};
use rtp_core::stats::Codec;
use rtp_core::time::{duration_to_compact, NtpTime};

const NOW: Duration = Duration::from_secs(1_700_000_100);
const OURS: u32 = 0xaaaa_0001;

fn rr(blocks: &[ReportBlock]) -> Vec<u8> {
    let mut b = [0u8; 1500];
    let n = RrRepr {
        ssrc: 0x77,
        reports: blocks,
    }
    .emit(&mut b)
    .unwrap();
    b[..n].to_vec()
}

fn block(ssrc: u32, lsr: u32, dlsr: u32) -> ReportBlock {
    ReportBlock {
        ssrc,
        fraction_lost: 10,
        cumulative_lost: 3,
        ext_highest_seq: 100,
        jitter: 5,
        lsr,
        dlsr,
    }
}

/// A reporter that sent one SR at `NOW - 1 s`, so that only that LSR is ours.
fn reporter_with_sr() -> (Reporter, u32) {
    let mut r = Reporter::new(ReporterConfig {
        ssrc: OURS,
        cname: "x".into(),
        name: None,
        tool: None,
        xr: XrConfig::default(),
        codec: Codec::G711Plc,
        packet_ms: 20.0,
    });
    let sender = SenderState {
        ssrc: OURS,
        packets: 10,
        octets: 1600,
        last_rtp_ts: 1600,
        last_sent_wall: NOW - Duration::from_secs(1),
        clock_rate: 8000,
    };
    let mut buf = [0u8; 512];
    let s = r
        .build(
            NOW - Duration::from_secs(1),
            Some(&sender),
            None,
            &ReportInputs::default(),
            false,
            &mut buf,
        )
        .unwrap();
    assert!(s.sender_report);
    (r, s.ntp.unwrap().to_compact())
}

#[test]
fn lying_lengths_and_unknown_types_are_counted() {
    let mut q = RtcpReception::new();
    // Length field past the end.
    let mut bad = rr(&[block(OURS, 0, 0)]);
    bad[3] = 40;
    // Unknown packet type 199 with a correct length, then a valid RR.
    let mut unknown = vec![0x80, 199, 0, 1, 0, 0, 0, 1];
    unknown.extend(rr(&[block(OURS, 0, 0)]));
    // Count field larger than the body (RR claiming 3 blocks with 1).
    let mut count = rr(&[block(OURS, 0, 0)]);
    count[0] = 0x83;
    // Version 1.
    let mut v1 = rr(&[]);
    v1[0] = 0x40;
    for d in [&bad, &unknown, &count, &v1, &vec![], &vec![0x80]] {
        let _ = q.on_compound(d, NOW, &[OURS], |_| false);
    }
    let c = *q.counters();
    assert_eq!(c.compounds, 6);
    assert_eq!(c.unknown_type, 1);
    // bad length, count mismatch, version, truncated 1-byte packet (the empty
    // datagram has no packet at all)
    assert_eq!(c.malformed, 4);
    // The valid RR after the unknown packet was still read.
    assert_eq!(c.rr, 1);
    assert!(q.remote_report().is_some());
    assert_eq!(q.rtt(), None);
}

#[test]
fn blocks_for_other_ssrcs_are_ignored() {
    let mut q = RtcpReception::new();
    q.on_compound(
        &rr(&[block(0xdead, 0x1234, 5), block(0xbeef, 0, 0)]),
        NOW,
        &[OURS],
        |_| true,
    );
    assert_eq!(q.counters().unknown_ssrc_blocks, 2);
    assert!(q.remote_report().is_none());
    assert_eq!(q.rtt(), None);
}

#[test]
fn absurd_lsr_dlsr_give_no_rtt() {
    let (rep, lsr) = reporter_with_sr();
    let mut q = RtcpReception::new();
    let now_c = NtpTime::from_unix(NOW).to_compact();
    let cases = [
        // LSR that is none of our SRs.
        block(OURS, lsr ^ 0x0101_0000, 0),
        // DLSR longer than the time since our SR: negative RTT.
        block(OURS, lsr, duration_to_compact(Duration::from_secs(5))),
        // LSR from far in the past (an RTT of hours): rejected by the LSR check and
        // by the 60 s bound.
        block(
            OURS,
            now_c.wrapping_sub(duration_to_compact(Duration::from_secs(4000))),
            0,
        ),
        // DLSR of all ones.
        block(OURS, lsr, u32::MAX),
    ];
    for b in cases {
        q.on_compound(&rr(&[b]), NOW, &[OURS], |l| rep.is_our_sr(l));
    }
    assert_eq!(q.counters().absurd_rtt, 4);
    assert_eq!(q.rtt(), None);
    assert_eq!(q.rtt_smoothed_ms(), None);
    // A sane one: 1 s since our SR, held 0.9 s -> 100 ms.
    let dlsr = duration_to_compact(Duration::from_millis(900));
    let s = q.on_compound(&rr(&[block(OURS, lsr, dlsr)]), NOW, &[OURS], |l| {
        rep.is_our_sr(l)
    });
    let rtt = s.rtt.unwrap();
    assert!((rtt.as_secs_f64() - 0.1).abs() < 1e-4, "{rtt:?}");
    // LSR = 0 means "no SR yet": no sample and not counted as absurd.
    q.on_compound(&rr(&[block(OURS, 0, 0)]), NOW, &[OURS], |_| true);
    assert_eq!(q.counters().absurd_rtt, 4);
    assert_eq!(q.counters().rtt_samples, 1);
}

#[test]
fn mos_is_never_nan_and_alarms_ignore_garbage() {
    for (loss, jit, rtt) in [
        (f64::NAN, 1.0, Some(10.0)),
        (0.1, f64::INFINITY, None),
        (-1.0, -5.0, Some(f64::NAN)),
        (5.0, 1e300, Some(1e300)),
    ] {
        let (mos, r) = estimate_mos(Codec::G711Plc, loss, jit, rtt, 20.0);
        assert!(mos.is_finite() && (1.0..=4.5).contains(&mos), "{mos}");
        assert!(!r.is_nan());
    }
    let mut m = QualityMonitor::default();
    let mut out = Vec::new();
    let f = QualityFigures {
        loss: f64::NAN,
        jitter_ms: f64::NAN,
        mos: Some(f64::NAN),
        ..QualityFigures::default()
    };
    m.check(&f, &QualityThresholds::default(), &mut out);
    assert!(out.is_empty());
}

#[test]
fn hysteresis_raises_once_and_clears_below_the_margin() {
    let t = QualityThresholds::default(); // loss 5 %, clears below 4 %
    let mut m = QualityMonitor::default();
    let mut out = Vec::new();
    let fig = |loss: f64| QualityFigures {
        loss,
        mos: Some(4.2),
        ..QualityFigures::default()
    };
    for l in [0.01, 0.06, 0.07, 0.045, 0.055, 0.039, 0.02] {
        m.check(&fig(l), &t, &mut out);
    }
    let changes: Vec<(bool, f64)> = out.iter().map(|a| (a.raised, a.value)).collect();
    assert_eq!(changes, vec![(true, 0.06), (false, 0.039)]);
    // MOS drop below 3.5 raises; back above 3.7 clears.
    out.clear();
    for mos in [4.0, 3.4, 3.6, 3.8] {
        let f = QualityFigures {
            mos: Some(mos),
            ..QualityFigures::default()
        };
        m.check(&f, &t, &mut out);
    }
    let changes: Vec<(bool, f64)> = out.iter().map(|a| (a.raised, a.value)).collect();
    assert_eq!(changes, vec![(true, 3.4), (false, 3.8)]);
}

#[test]
fn reception_state_with_garbage_numbers_builds_a_sane_report() {
    let mut r = Reporter::new(ReporterConfig {
        ssrc: OURS,
        cname: "x".into(),
        name: Some("gw".into()),
        tool: Some("rtp-core".into()),
        xr: XrConfig {
            voip_metrics: true,
            stats_summary: true,
        },
        codec: Codec::G711Plc,
        packet_ms: 20.0,
    });
    let rx = ReceptionState {
        ssrc: 5,
        expected: 10,
        lost: -40_000_000, // many duplicates
        ext_highest_seq: 9,
        jitter_secs: f64::NAN,
        clock_rate: 8000,
        ..ReceptionState::default()
    };
    let mut buf = [0u8; 512];
    let s = r
        .build(
            NOW,
            None,
            Some(&rx),
            &ReportInputs::default(),
            true,
            &mut buf,
        )
        .unwrap();
    let b = s.block.unwrap();
    assert_eq!(b.cumulative_lost, -0x80_0000, "clamped to 24-bit signed");
    assert_eq!(b.jitter, 0);
    assert_eq!(b.fraction_lost, 0);
    assert_eq!(
        rtp_core::rtcp::validate_compound(&buf[..s.len], true),
        Ok(4)
    ); // RR SDES XR BYE
}

fn sr_bytes(ssrc: u32, ntp: u64) -> Vec<u8> {
    let mut b = [0u8; 64];
    let n = SrRepr {
        ssrc,
        ntp_time: ntp,
        ..SrRepr::default()
    }
    .emit(&mut b)
    .unwrap();
    b[..n].to_vec()
}

proptest! {
    /// Random bytes and random mutations of valid compounds never panic and never
    /// yield a negative or over-60 s RTT.
    #[test]
    fn random_rtcp_never_poisons(data in proptest::collection::vec(any::<u8>(), 0..300), flip in any::<(usize, u8)>()) {
        let mut q = RtcpReception::new();
        let mut d = sr_bytes(9, 0x1234_5678_9abc_def0);
        d.extend(rr(&[block(OURS, 0x5678_9abc, 7)]));
        d.extend_from_slice(&data);
        let i = flip.0 % d.len();
        d[i] ^= flip.1;
        q.on_compound(&d, NOW, &[OURS], |_| true);
        q.on_compound(&data, NOW, &[OURS], |_| true);
        if let Some(r) = q.rtt() {
            prop_assert!(r <= Duration::from_secs(60));
        }
        if let Some(s) = q.rtt_smoothed_ms() {
            prop_assert!(s.is_finite() && s >= 0.0);
        }
    }
}
