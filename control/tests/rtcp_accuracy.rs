//! Reports over a simulated link with seeded loss, jitter and delay: the fraction
//! lost, cumulative loss, jitter and RTT we report and measure match what was
//! injected. The peer is modelled with rtp-core's own `ReceiverStats` (the RFC 3550
//! A.3/A.8 code the dataplane also runs), our side with the control plane's
//! `Reporter`/`RtcpReception`, driven by the RFC 3550 `Schedule`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use rtp_control::rtcp::{
    Expiry, IntervalConfig, Rand, ReceptionState, ReportInputs, Reporter, ReporterConfig,
    RtcpReception, SenderState, XrConfig,
};
use rtp_core::rtcp::{Compound, RrRepr, RtcpPacket, RtcpWrite, SrRepr, XrBlock};
use rtp_core::seq::SeqTracker;
use rtp_core::stats::{BurstGapTracker, Codec, ReceiverStats};
use rtp_core::time::{compact_to_duration, NtpTime};

const EPOCH: Duration = Duration::from_secs(1_700_000_000);
const PEER_SSRC: u32 = 0x1111_2222;
const OUR_SSRC: u32 = 0x3333_4444;
const RELAYED_SSRC: u32 = 0x5555_6666;

#[derive(Debug)]
enum Msg {
    /// Peer's RTP to us: seq, ts.
    Rtp(u16, u32),
    /// Our RTP to the peer: seq, ts.
    OurRtp(u16, u32),
    /// RTCP from the peer to us, with its one-way delay (ground truth).
    PeerRtcp(Vec<u8>, Duration),
    /// RTCP from us to the peer, with its one-way delay.
    OurRtcp(Vec<u8>, Duration),
}

struct Link {
    rng: Rand,
    delay: Duration,
    jitter: Duration,
    loss: f64,
}

impl Link {
    fn one_way(&mut self) -> Duration {
        self.delay + self.jitter.mul_f64(self.rng.uniform())
    }
    fn lost(&mut self) -> bool {
        self.rng.uniform() < self.loss
    }
}

struct Outcome {
    /// (reported fraction/256, true interval fraction) per report.
    fractions: Vec<(f64, f64)>,
    cumulative_reported: i32,
    cumulative_true: i64,
    jitter_reported_ms: Vec<f64>,
    rtt_samples: Vec<(Duration, Duration)>,
    peer_rtts: Vec<(Duration, Duration)>,
    reports: usize,
    mos: f64,
}

fn simulate(seed: u64, loss: f64, delay_ms: u64, jitter_ms: u64, secs: u64) -> Outcome {
    let mut link = Link {
        rng: Rand::new(seed),
        delay: Duration::from_millis(delay_ms),
        jitter: Duration::from_millis(jitter_ms),
        loss,
    };
    let mut q: BinaryHeap<Reverse<(Duration, u64, usize)>> = BinaryHeap::new();
    let mut msgs: Vec<Option<Msg>> = Vec::new();
    let mut n = 0u64;
    let mut push = |q: &mut BinaryHeap<_>, msgs: &mut Vec<Option<Msg>>, at: Duration, m: Msg| {
        msgs.push(Some(m));
        n += 1;
        q.push(Reverse((at, n, msgs.len() - 1)));
    };
    // Media both ways: 20 ms PCMU for `secs` seconds. Which of the peer's packets
    // are lost is decided now (ground truth).
    let mut lost_seq = vec![false; (secs * 50) as usize];
    for i in 0..secs * 50 {
        let t = EPOCH + Duration::from_millis(20 * i);
        let (seq, ts) = (i as u16, (i * 160) as u32);
        if link.lost() {
            lost_seq[i as usize] = true;
        } else {
            let d = link.one_way();
            push(&mut q, &mut msgs, t + d, Msg::Rtp(seq, ts));
        }
        let d = link.one_way();
        push(&mut q, &mut msgs, t + d, Msg::OurRtp(seq, ts));
    }
    // Our side.
    let mut ours = ReceiverStats::with_tracker(PEER_SSRC, 8000, SeqTracker::with_probation(0));
    let mut burst = BurstGapTracker::default();
    let mut reporter = Reporter::new(ReporterConfig {
        ssrc: OUR_SSRC,
        cname: "gw@test".into(),
        name: None,
        tool: None,
        xr: XrConfig {
            voip_metrics: true,
            stats_summary: false,
        },
        codec: Codec::G711Plc,
        packet_ms: 20.0,
    });
    let mut reception = RtcpReception::new();
    let mut rng = Rand::new(seed ^ 0xabcdef);
    let mut sched =
        rtp_control::rtcp::Schedule::new(IntervalConfig::default(), EPOCH, 128.0, &mut rng);
    // The peer.
    let mut peer = ReceiverStats::with_tracker(RELAYED_SSRC, 8000, SeqTracker::with_probation(0));
    let mut peer_sr_sent: Vec<(u32, Duration)> = Vec::new();
    let mut next_peer_sr = EPOCH + Duration::from_millis(2500);

    let mut out = Outcome {
        fractions: Vec::new(),
        cumulative_reported: 0,
        cumulative_true: 0,
        jitter_reported_ms: Vec::new(),
        rtt_samples: Vec::new(),
        peer_rtts: Vec::new(),
        reports: 0,
        mos: 0.0,
    };
    let mut sent_packets = 0u64;
    let mut last_sent = (0u32, EPOCH);
    let mut prior_expected = 0u64;
    let mut prior_lost_true = 0i64;
    let end = EPOCH + Duration::from_secs(secs);
    let mut buf = [0u8; 1500];
    loop {
        let t_msg = q.peek().map(|r| r.0 .0).unwrap_or(end);
        let t_ours = sched.next();
        let t = t_msg.min(t_ours).min(next_peer_sr);
        if t >= end {
            break;
        }
        if t == next_peer_sr {
            // The peer sends an SR (it sends media too) with an RR block about what
            // we send it.
            let ntp = NtpTime::from_unix(t);
            let rb = peer.report_block(t - EPOCH);
            let i = ((t - EPOCH).as_millis() / 20) as u32;
            let sr = SrRepr {
                ssrc: PEER_SSRC,
                ntp_time: ntp.0,
                rtp_timestamp: i * 160,
                packet_count: i,
                octet_count: i * 160,
                reports: if rb.ext_highest_seq > 0 {
                    std::slice::from_ref(&rb)
                } else {
                    &[]
                },
            };
            let len = sr.emit(&mut buf).unwrap();
            peer_sr_sent.push((ntp.to_compact(), t));
            let d = link.one_way();
            push(
                &mut q,
                &mut msgs,
                t + d,
                Msg::PeerRtcp(buf[..len].to_vec(), d),
            );
            next_peer_sr = t + Duration::from_secs(5);
            continue;
        }
        if t == t_ours && t_ours <= t_msg {
            match sched.on_expire(t, &mut rng) {
                Expiry::Reschedule(_) => continue,
                Expiry::Send => {}
            }
            let rx = ReceptionState {
                ssrc: PEER_SSRC,
                expected: ours.seq().expected(),
                lost: ours.seq().lost(),
                ext_highest_seq: ours.seq().ext_highest_seq().unwrap_or(0),
                jitter_secs: ours.jitter().jitter() / 8000.0,
                clock_rate: 8000,
                burst: burst.counts(),
            };
            let sender = SenderState {
                ssrc: RELAYED_SSRC,
                packets: sent_packets,
                octets: sent_packets * 160,
                last_rtp_ts: last_sent.0,
                last_sent_wall: last_sent.1,
                clock_rate: 8000,
            };
            let inputs = ReportInputs {
                last_sr: reception.lsr_input(),
                rtt: reception.rtt(),
            };
            let s = reporter
                .build(t, Some(&sender), Some(&rx), &inputs, false, &mut buf)
                .unwrap();
            // Ground truth for this interval.
            let highest = rx.ext_highest_seq as usize;
            // Losses before the first packet received are invisible (RFC 3550 A.3
            // counts from the first sequence number seen).
            let first = lost_seq.iter().position(|l| !l).unwrap_or(0);
            let lost_true = lost_seq[first..=highest].iter().filter(|&&l| l).count() as i64;
            let exp_delta = rx.expected - prior_expected;
            let lost_delta = lost_true - prior_lost_true;
            if let Some(b) = s.block {
                out.fractions.push((
                    f64::from(b.fraction_lost) / 256.0,
                    lost_delta as f64 / exp_delta as f64,
                ));
                out.cumulative_reported = b.cumulative_lost;
                out.cumulative_true = lost_true;
                out.jitter_reported_ms.push(f64::from(b.jitter) / 8.0);
                // LSR echoes the peer's last SR; DLSR the time since it arrived.
                if b.lsr != 0 {
                    assert!(
                        peer_sr_sent.iter().any(|(c, _)| *c == b.lsr),
                        "LSR must be one of the peer's SRs"
                    );
                }
            }
            prior_expected = rx.expected;
            prior_lost_true = lost_true;
            let data = buf[..s.len].to_vec();
            // XR VoIP metrics present and sane.
            let mut saw_xr = false;
            for p in Compound::new(&data) {
                if let Ok(RtcpPacket::Xr(x)) = p {
                    for b in x.blocks() {
                        if let XrBlock::VoipMetrics(v) = b {
                            saw_xr = true;
                            assert!((10..=45).contains(&v.mos_lq) && (10..=45).contains(&v.mos_cq));
                            assert!(v.r_factor <= 100);
                            out.mos = f64::from(v.mos_cq) / 10.0;
                        }
                    }
                }
            }
            assert!(saw_xr || s.block.is_none());
            sched.on_sent(t, s.len, &mut rng);
            out.reports += 1;
            let d = link.one_way();
            push(&mut q, &mut msgs, t + d, Msg::OurRtcp(data, d));
            continue;
        }
        let Reverse((at, _, idx)) = q.pop().unwrap();
        match msgs[idx].take().unwrap() {
            Msg::Rtp(seq, ts) => {
                let o = ours.on_rtp(seq, ts, at - EPOCH);
                burst.on_outcome(o);
            }
            Msg::OurRtp(seq, ts) => {
                // We "sent" it at its nominal time; the peer receives it now.
                let sent_at = EPOCH + Duration::from_millis(20 * u64::from(seq));
                sent_packets = sent_packets.max(u64::from(seq) + 1);
                last_sent = (ts, sent_at);
                peer.on_rtp(seq, ts, at - EPOCH);
            }
            Msg::PeerRtcp(data, d_in) => {
                sched.on_received(data.len());
                let s = reception.on_compound(&data, at, &[RELAYED_SSRC, OUR_SSRC], |l| {
                    reporter.is_our_sr(l)
                });
                if let Some(rtt) = s.rtt {
                    // Ground truth: our SR's one-way delay + the peer's hold + d_in is
                    // what `arrival - LSR - DLSR` measures; hold is removed by DLSR,
                    // so the truth is d_out(of the SR echoed) + d_in.
                    out.rtt_samples.push((rtt, d_in));
                }
            }
            Msg::OurRtcp(data, d_out) => {
                // The peer parses our report: SR -> its LSR; our RR block -> its RTT.
                for p in Compound::new(&data) {
                    match p.unwrap() {
                        RtcpPacket::Sr(sr) => {
                            peer.on_sender_report(NtpTime(sr.ntp_time()), at - EPOCH);
                            for b in sr.report_blocks() {
                                if b.lsr != 0 {
                                    let arrival = NtpTime::from_unix(at).to_compact();
                                    let rtt = rtp_core::stats::rtt(arrival, b.lsr, b.dlsr).unwrap();
                                    out.peer_rtts.push((rtt, d_out));
                                }
                            }
                        }
                        RtcpPacket::Rr(rr) => assert_eq!(rr.ssrc(), OUR_SSRC),
                        _ => {}
                    }
                }
            }
        }
    }
    let _ = RrRepr::default();
    let _ = compact_to_duration(0);
    out
}

#[test]
fn loss_jitter_and_rtt_match_what_was_injected() {
    // 5 % loss, 40 ms one way, 20 ms of uniform jitter, 120 s.
    let o = simulate(42, 0.05, 40, 20, 120);
    assert!(o.reports >= 20, "reports {}", o.reports);
    // Fraction lost per interval: exactly floor(256 x lost/expected) of that
    // interval, so within 1/256 of the true interval fraction.
    for (rep, truth) in &o.fractions {
        assert!(
            *rep <= *truth + 1e-9 && truth - rep < 1.0 / 256.0 + 1e-9,
            "reported {rep} true {truth}"
        );
    }
    // Cumulative lost: exact.
    assert_eq!(i64::from(o.cumulative_reported), o.cumulative_true);
    let total_frac = o.fractions.iter().map(|f| f.1).sum::<f64>() / o.fractions.len() as f64;
    assert!(
        (total_frac - 0.05).abs() < 0.02,
        "injected loss {total_frac}"
    );
    // Jitter: delays uniform on [0, J) make |D| average J/3 (6.67 ms); the RFC
    // estimator hovers around it. Mean of the reports after the first 10 s within 15 %.
    let js = &o.jitter_reported_ms[2..];
    let mj = js.iter().sum::<f64>() / js.len() as f64;
    assert!(
        (mj - 20.0 / 3.0).abs() < 20.0 / 3.0 * 0.15,
        "jitter {mj} ms"
    );
    // RTT measured by us from the peer's report blocks: 2 one-way delays, each
    // 40..60 ms; the compact NTP format resolves 15 us.
    assert!(
        o.rtt_samples.len() >= 10,
        "rtt samples {}",
        o.rtt_samples.len()
    );
    for (rtt, _) in &o.rtt_samples {
        let ms = rtt.as_secs_f64() * 1000.0;
        assert!((80.0 - 0.1..=120.0 + 0.1).contains(&ms), "rtt {ms}");
    }
    // The peer's RTT from our echo of its SR (our LSR/DLSR): same bounds, so our
    // LSR/DLSR are right.
    assert!(o.peer_rtts.len() >= 10);
    for (rtt, _) in &o.peer_rtts {
        let ms = rtt.as_secs_f64() * 1000.0;
        assert!((80.0 - 0.1..=120.0 + 0.1).contains(&ms), "peer rtt {ms}");
    }
    // MOS: G.711 with PLC, 5 % loss, ~100 ms one way: R about 93.2 - 2.4 - 15.5 -> MOS ~3.9.
    assert!(o.mos > 3.5 && o.mos < 4.3, "mos {}", o.mos);
}

#[test]
fn rtt_is_exact_without_jitter() {
    // Fixed 25 ms each way: every RTT sample is 50 ms within the compact-NTP
    // resolution (2 x 15.3 us rounding).
    let o = simulate(7, 0.0, 25, 0, 40);
    assert!(o.rtt_samples.len() >= 3);
    for (rtt, _) in o.rtt_samples.iter().chain(&o.peer_rtts) {
        let err = (rtt.as_secs_f64() - 0.050).abs();
        assert!(err < 50e-6, "rtt {rtt:?}");
    }
    assert!(o.fractions.iter().all(|f| f.0 == 0.0));
    assert_eq!(o.cumulative_reported, 0);
    assert!(o.jitter_reported_ms.iter().all(|&j| j == 0.0));
}

#[test]
fn heavy_loss_is_reported_and_seeded_runs_repeat() {
    let a = simulate(99, 0.30, 10, 5, 60);
    let b = simulate(99, 0.30, 10, 5, 60);
    assert_eq!(a.fractions, b.fractions, "same seed, same reports");
    let mean = a.fractions.iter().map(|f| f.0).sum::<f64>() / a.fractions.len() as f64;
    assert!((mean - 0.30).abs() < 0.05, "{mean}");
    assert_eq!(i64::from(a.cumulative_reported), a.cumulative_true);
}
