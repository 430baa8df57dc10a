//! RTCP reporting on the control thread: per leg a [`Reporter`], a [`Schedule`]
//! (RFC 3550 intervals) with its entry in one [`TimerWheel`], an
//! [`RtcpReception`] for what arrives, and quality figures with alarms.
//!
//! Inputs are the statistics snapshots the control thread collects every check
//! interval (1 s by default) and the RTCP copies of terminated calls. A report is
//! built from the latest snapshot: packet and octet counts and reception figures
//! are up to one check interval old, and the SR's RTP timestamp is the last sent
//! timestamp extrapolated to the report's NTP time at the nominal clock rate.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rtp_dataplane::{LegSnapshot, SessionSnapshot};

use crate::engine::CallId;
use crate::rtcp::quality::estimate_mos;
use crate::rtcp::report::MAX_REPORT;
use crate::rtcp::{
    Expiry, IntervalConfig, QualityAlert, QualityFigures, QualityMonitor, QualityThresholds, Rand,
    ReceptionState, RemoteSr, ReportInputs, Reporter, ReporterConfig, RtcpReception,
    RtcpRxCounters, Schedule, SenderState, TimerId, TimerWheel, XrConfig,
};
use rtp_core::stats::Codec;

/// How a call's RTCP is handled: the dataplane's mode. `Forward` relays RTCP end
/// to end (SSRCs inside mapped when media SSRCs are rewritten) and the engine still
/// derives per-leg quality from its own receive statistics; `Terminate` has the
/// engine parse what each peer sends and send its own reports (SR/RR, SDES,
/// optional XR, BYE at the end), relaying only feedback (NACK, PLI, FIR, REMB).
pub use rtp_dataplane::RtcpMode;

/// RTCP settings of a leg.
#[derive(Debug, Clone, PartialEq)]
pub struct RtcpConfig {
    /// Pass-through or terminate. A call terminates RTCP when either leg asks for it.
    pub mode: RtcpMode,
    /// SDES CNAME of our reports (default: a random one per leg, RFC 7022).
    pub cname: Option<String>,
    /// SDES NAME, if any.
    pub name: Option<String>,
    /// SDES TOOL (default `rtp-core`; `None` leaves it out).
    pub tool: Option<String>,
    /// XR blocks in our reports.
    pub xr: XrConfig,
    /// Interval parameters (session bandwidth, reduced minimum, AVPF).
    pub interval: IntervalConfig,
    /// Codec of the media this leg receives, for the MOS estimate.
    pub codec: Codec,
    /// Media per packet in ms (burst/gap durations, jitter buffer floor).
    pub packet_ms: f64,
}

impl Default for RtcpConfig {
    fn default() -> Self {
        RtcpConfig {
            mode: RtcpMode::Forward,
            cname: None,
            name: None,
            tool: Some("rtp-core".into()),
            xr: XrConfig::default(),
            interval: IntervalConfig::default(),
            codec: Codec::G711Plc,
            packet_ms: 20.0,
        }
    }
}

/// RTCP numbers and quality of one leg, as the engine reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct LegRtcpStats {
    /// The call's mode.
    pub mode: RtcpMode,
    /// Quality figures (loss, jitter, RTT, MOS, bitrate, what the peer reports).
    pub quality: QualityFigures,
    /// Reports we sent (terminated calls).
    pub reports_sent: u64,
    /// Counters of the RTCP received and parsed (terminated calls).
    pub received: RtcpRxCounters,
    /// The last SR from the peer.
    pub remote_sr: Option<RemoteSr>,
    /// The peer's CNAME.
    pub remote_cname: Option<String>,
    /// The SSRC our receiver reports use (SRs use the SSRC of the media sent).
    pub ssrc: u32,
    /// MOS averaged over the call's statistics intervals with media.
    pub mos_average: Option<f64>,
    /// Lowest MOS of those intervals.
    pub mos_lowest: Option<f64>,
}

/// Upper bounds of the MOS histogram buckets ([`RtcpWorkerStats::mos_buckets`]).
pub const MOS_BUCKETS: [f64; 7] = [1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5];

/// RTCP and quality numbers of one worker's calls, for metrics: counters since
/// start (ended calls included) and aggregates over the current calls' legs
/// (bounded cardinality: per worker, never per call).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RtcpWorkerStats {
    /// Worker index.
    pub worker: usize,
    /// Reports (compounds) we sent.
    pub reports_sent: u64,
    /// Compounds received and parsed (terminated calls).
    pub compounds_received: u64,
    /// Packets that failed to parse.
    pub malformed: u64,
    /// Packets of unknown type.
    pub unknown_type: u64,
    /// Report blocks about SSRCs that are not ours.
    pub unknown_ssrc_blocks: u64,
    /// Report blocks with unusable LSR/DLSR.
    pub absurd_rtt: u64,
    /// RTT samples taken.
    pub rtt_samples: u64,
    /// Legs of current calls with a MOS estimate.
    pub legs: u64,
    /// Cumulative counts of those legs with MOS at most each of [`MOS_BUCKETS`].
    pub mos_buckets: [u64; 7],
    /// Sum of their MOS.
    pub mos_sum: f64,
    /// Legs with an RTT, and the sum of their RTTs in seconds.
    pub rtt_legs: u64,
    /// Sum of RTTs in seconds.
    pub rtt_sum_secs: f64,
    /// Sum of the legs' interval loss fractions.
    pub loss_sum: f64,
    /// Sum of the legs' jitter in seconds.
    pub jitter_sum_secs: f64,
}

/// A report to send.
#[derive(Debug)]
pub(crate) struct Outgoing {
    pub call: CallId,
    pub leg: usize,
    pub worker: usize,
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct LegRtcp {
    reporter: Reporter,
    schedule: Option<(Schedule, TimerId)>,
    reception: RtcpReception,
    sender: Option<SenderState>,
    rx: Option<ReceptionState>,
    prev: Option<(u64, u64, u64, Instant)>,
    figures: QualityFigures,
    monitor: QualityMonitor,
    codec: Codec,
    packet_ms: f64,
    /// Clock rate of what this leg receives.
    clock_rate: u32,
    /// Clock rate of what it sends: what the other leg receives (a relay does
    /// not transcode).
    tx_clock_rate: u32,
    reports_sent: u64,
    /// MOS sum, intervals, lowest.
    mos_acc: (f64, u64, f64),
    /// Packets expected from the peer as of the previous expiry (is it sending?).
    rx_expected_seen: u64,
}

#[derive(Debug)]
struct CallRtcp {
    worker: usize,
    mode: RtcpMode,
    legs: [LegRtcp; 2],
}

/// The control thread's RTCP state.
#[derive(Debug)]
pub(crate) struct Reporting {
    calls: HashMap<CallId, CallRtcp>,
    wheel: TimerWheel<(CallId, usize)>,
    origin: Instant,
    rng: Rand,
    thresholds: QualityThresholds,
    due: Vec<(CallId, usize)>,
    /// Counters per worker (grown on demand).
    totals: Vec<RtcpWorkerStats>,
}

/// Wall-clock time since the UNIX epoch (NTP timestamps of our SRs).
pub(crate) fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

impl Reporting {
    pub(crate) fn new(thresholds: QualityThresholds) -> Self {
        let origin = Instant::now();
        let seed = wall_now().as_nanos() as u64 ^ u64::from(std::process::id()) << 32;
        Reporting {
            calls: HashMap::new(),
            // 10 ms ticks, 4096 slots: a 41 s revolution.
            wheel: TimerWheel::new(Duration::from_millis(10), 4096),
            origin,
            rng: Rand::new(seed),
            thresholds,
            due: Vec::new(),
            totals: Vec::new(),
        }
    }

    fn t(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.origin)
    }

    /// Starts tracking a call; terminated calls get a report schedule per leg.
    pub(crate) fn add_call(
        &mut self,
        call: CallId,
        worker: usize,
        cfg: [&RtcpConfig; 2],
        clock_rates: [u32; 2],
        now: Instant,
    ) {
        let mode = if cfg.iter().any(|c| c.mode == RtcpMode::Terminate) {
            RtcpMode::Terminate
        } else {
            RtcpMode::Forward
        };
        let t = self.t(now);
        let make = |i: usize, rng: &mut Rand, wheel: &mut TimerWheel<(CallId, usize)>| {
            let c = cfg[i];
            let ssrc = rng.next_u64() as u32;
            let cname = c
                .cname
                .clone()
                .unwrap_or_else(|| format!("{:016x}@rtp-core", rng.next_u64()));
            let schedule = (mode == RtcpMode::Terminate).then(|| {
                let s = Schedule::new(c.interval, t, 100.0, rng);
                let id = wheel.insert(s.next(), (call, i));
                (s, id)
            });
            LegRtcp {
                reporter: Reporter::new(ReporterConfig {
                    ssrc,
                    cname,
                    name: c.name.clone(),
                    tool: c.tool.clone(),
                    xr: c.xr,
                    codec: c.codec,
                    packet_ms: c.packet_ms,
                }),
                schedule,
                reception: RtcpReception::new(),
                sender: None,
                rx: None,
                prev: None,
                figures: QualityFigures::default(),
                monitor: QualityMonitor::default(),
                codec: c.codec,
                packet_ms: c.packet_ms,
                clock_rate: clock_rates[i].max(1),
                tx_clock_rate: clock_rates[1 - i].max(1),
                reports_sent: 0,
                mos_acc: (0.0, 0, f64::MAX),
                rx_expected_seen: 0,
            }
        };
        let l0 = make(0, &mut self.rng, &mut self.wheel);
        let l1 = make(1, &mut self.rng, &mut self.wheel);
        self.calls.insert(
            call,
            CallRtcp {
                worker,
                mode,
                legs: [l0, l1],
            },
        );
    }

    /// The call ends: stops its timers and returns the final compound (report +
    /// SDES + BYE) of each terminated leg.
    pub(crate) fn end_call(&mut self, call: CallId) -> Vec<Outgoing> {
        let Some(mut c) = self.calls.remove(&call) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let now = wall_now();
        for (i, l) in c.legs.iter_mut().enumerate() {
            let Some((_, id)) = l.schedule.take() else {
                continue;
            };
            self.wheel.cancel(id);
            // Point to point: no BYE reconsideration (RFC 3550 6.3.7 applies
            // above 50 members), the BYE goes out at once.
            if let Some(data) = l.build(now, true) {
                totals(&mut self.totals, c.worker).reports_sent += 1;
                out.push(Outgoing {
                    call,
                    leg: i,
                    worker: c.worker,
                    data,
                });
            }
        }
        out
    }

    /// Forgets a call without BYE (it is already gone from the dataplane).
    pub(crate) fn forget(&mut self, call: CallId) {
        if let Some(c) = self.calls.remove(&call) {
            for l in c.legs {
                if let Some((_, id)) = l.schedule {
                    self.wheel.cancel(id);
                }
            }
        }
    }

    /// A received RTCP compound (copy from the dataplane).
    pub(crate) fn on_rtcp(&mut self, call: CallId, leg: usize, data: &[u8], now: Instant) {
        let t = self.t(now);
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let worker = c.worker;
        let Some(l) = c.legs.get_mut(leg) else {
            return;
        };
        let before = *l.reception.counters();
        let ours = [
            l.reporter.config().ssrc,
            l.sender.map(|s| s.ssrc).unwrap_or(l.reporter.config().ssrc),
        ];
        let reporter = &l.reporter;
        let sum = l
            .reception
            .on_compound(data, wall_now(), &ours, |lsr| reporter.is_our_sr(lsr));
        if let Some((s, _)) = l.schedule.as_mut() {
            s.on_received(data.len());
            if sum.bye {
                s.on_bye_received(t);
            }
        }
        l.figures.rtt_ms = l.reception.rtt_smoothed_ms();
        if let Some(r) = l.reception.remote_report() {
            l.figures.remote_loss = Some(r.fraction_lost);
            l.figures.remote_jitter_ms =
                Some(f64::from(r.jitter) * 1000.0 / f64::from(l.tx_clock_rate));
        }
        let after = *l.reception.counters();
        let tot = totals(&mut self.totals, worker);
        tot.compounds_received += after.compounds - before.compounds;
        tot.malformed += after.malformed - before.malformed;
        tot.unknown_type += after.unknown_type - before.unknown_type;
        tot.unknown_ssrc_blocks += after.unknown_ssrc_blocks - before.unknown_ssrc_blocks;
        tot.absurd_rtt += after.absurd_rtt - before.absurd_rtt;
        tot.rtt_samples += after.rtt_samples - before.rtt_samples;
    }

    /// Counters and current aggregates per worker (`workers` entries).
    pub(crate) fn worker_stats(&self, workers: usize) -> Vec<RtcpWorkerStats> {
        let mut v: Vec<RtcpWorkerStats> = (0..workers)
            .map(|w| RtcpWorkerStats {
                worker: w,
                ..self.totals.get(w).cloned().unwrap_or_default()
            })
            .collect();
        for c in self.calls.values() {
            let Some(a) = v.get_mut(c.worker) else {
                continue;
            };
            for l in &c.legs {
                let f = &l.figures;
                let Some(mos) = f.mos else { continue };
                a.legs += 1;
                a.mos_sum += mos;
                for (b, &le) in a.mos_buckets.iter_mut().zip(&MOS_BUCKETS) {
                    if mos <= le {
                        *b += 1;
                    }
                }
                if let Some(r) = f.rtt_ms {
                    a.rtt_legs += 1;
                    a.rtt_sum_secs += r / 1000.0;
                }
                a.loss_sum += f.loss;
                a.jitter_sum_secs += f.jitter_ms / 1000.0;
            }
        }
        v
    }

    /// A statistics snapshot of a call: updates the report inputs and quality
    /// figures; returns alarms raised or cleared.
    pub(crate) fn on_snapshot(
        &mut self,
        s: &SessionSnapshot,
        now: Instant,
        out: &mut Vec<(usize, QualityAlert)>,
    ) {
        let thresholds = self.thresholds;
        let Some(c) = self.calls.get_mut(&s.id) else {
            return;
        };
        let wall = wall_now();
        for (i, (l, snap)) in c.legs.iter_mut().zip(&s.legs).enumerate() {
            let mut alerts = Vec::new();
            l.update(snap, now, wall, &thresholds, &mut alerts);
            out.extend(alerts.into_iter().map(|a| (i, a)));
        }
    }

    /// Advances the timers to `now`; reports due are built and appended to `out`.
    pub(crate) fn poll(&mut self, now: Instant, out: &mut Vec<Outgoing>) {
        let t = self.t(now);
        let mut due = std::mem::take(&mut self.due);
        self.wheel.advance(t, &mut due);
        let wall = wall_now();
        for (call, leg) in due.drain(..) {
            let Some(c) = self.calls.get_mut(&call) else {
                continue;
            };
            let worker = c.worker;
            let l = &mut c.legs[leg];
            let Some((mut sched, _)) = l.schedule.take() else {
                continue;
            };
            // Point to point: us and the peer; each counts as a sender when it
            // sent RTP lately.
            let we_sent = l.reporter.is_sender(l.sender.as_ref());
            let expected = l.rx.map_or(0, |r| r.expected);
            let peer_sent = expected > l.rx_expected_seen;
            l.rx_expected_seen = expected;
            sched.set_we_sent(we_sent);
            sched.set_members(t, 2, u32::from(we_sent) + u32::from(peer_sent));
            let next = match sched.on_expire(t, &mut self.rng) {
                Expiry::Reschedule(at) => at,
                Expiry::Send => {
                    if let Some(data) = l.build(wall, false) {
                        totals(&mut self.totals, worker).reports_sent += 1;
                        sched.on_sent(t, data.len(), &mut self.rng);
                        out.push(Outgoing {
                            call,
                            leg,
                            worker,
                            data,
                        });
                    } else {
                        sched.on_sent(t, 0, &mut self.rng);
                    }
                    sched.next()
                }
            };
            let id = self.wheel.insert(next, (call, leg));
            l.schedule = Some((sched, id));
        }
        self.due = due;
    }

    /// RTCP statistics of a call's legs.
    pub(crate) fn stats(&self, call: CallId) -> Option<[LegRtcpStats; 2]> {
        let c = self.calls.get(&call)?;
        let one = |l: &LegRtcp| LegRtcpStats {
            mode: c.mode,
            quality: l.figures,
            reports_sent: l.reports_sent,
            received: *l.reception.counters(),
            remote_sr: l.reception.last_sr(),
            remote_cname: l.reception.cname().map(str::to_owned),
            ssrc: l.reporter.config().ssrc,
            mos_average: (l.mos_acc.1 > 0).then(|| l.mos_acc.0 / l.mos_acc.1 as f64),
            mos_lowest: (l.mos_acc.1 > 0).then_some(l.mos_acc.2),
        };
        Some([one(&c.legs[0]), one(&c.legs[1])])
    }
}

/// The counters of `worker`, growing the table on demand.
fn totals(t: &mut Vec<RtcpWorkerStats>, worker: usize) -> &mut RtcpWorkerStats {
    if t.len() <= worker {
        t.resize_with(worker + 1, RtcpWorkerStats::default);
    }
    &mut t[worker]
}

impl LegRtcp {
    fn build(&mut self, wall: Duration, bye: bool) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_REPORT];
        // LSR/DLSR only for the source the block reports on.
        let rx_ssrc = self.rx.map(|r| r.ssrc);
        let inputs = ReportInputs {
            last_sr: self
                .reception
                .last_sr()
                .filter(|sr| Some(sr.ssrc) == rx_ssrc)
                .map(|sr| (sr.lsr(), sr.arrival)),
            rtt: self.reception.rtt(),
        };
        let s = self
            .reporter
            .build(
                wall,
                self.sender.as_ref(),
                self.rx.as_ref(),
                &inputs,
                bye,
                &mut buf,
            )
            .ok()?;
        self.reports_sent += 1;
        Some(buf[..s.len].to_vec())
    }

    fn update(
        &mut self,
        snap: &LegSnapshot,
        now: Instant,
        wall: Duration,
        thresholds: &QualityThresholds,
        alerts: &mut Vec<QualityAlert>,
    ) {
        let tx = snap.sender;
        if tx.packets > 0 {
            let ago = tx.last_sent_ago.unwrap_or_default();
            self.sender = Some(SenderState {
                ssrc: tx.ssrc,
                packets: tx.packets,
                octets: tx.payload_octets,
                last_rtp_ts: tx.last_rtp_ts,
                last_sent_wall: wall.saturating_sub(ago),
                clock_rate: self.tx_clock_rate,
            });
        }
        let Some(q) = snap.quality else {
            return;
        };
        let rx = ReceptionState {
            ssrc: q.ssrc,
            expected: q.expected,
            lost: q.lost,
            ext_highest_seq: q.ext_highest_seq,
            jitter_secs: q.jitter,
            clock_rate: self.clock_rate,
            burst: q.burst,
        };
        self.rx = Some(rx);
        let received = rx.received();
        let bytes = snap.counters.rx_bytes;
        let f = &mut self.figures;
        f.jitter_ms = if q.jitter.is_finite() {
            q.jitter * 1000.0
        } else {
            0.0
        };
        f.loss_total = if q.expected > 0 {
            (q.lost.max(0) as f64 / q.expected as f64).min(1.0)
        } else {
            0.0
        };
        let mut fresh = false;
        if let Some((pe, pr, pb, at)) = self.prev {
            let de = q.expected.saturating_sub(pe);
            let dr = received.saturating_sub(pr);
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if de > 0 {
                f.loss = (de.saturating_sub(dr) as f64 / de as f64).min(1.0);
                fresh = true;
            }
            if dt > 0.0 {
                f.rx_bitrate = bytes.saturating_sub(pb) as f64 * 8.0 / dt;
            }
        } else if q.expected > 0 {
            f.loss = f.loss_total;
            fresh = true;
        }
        self.prev = Some((q.expected, received, bytes, now));
        let (mos, r) = estimate_mos(self.codec, f.loss, f.jitter_ms, f.rtt_ms, self.packet_ms);
        f.mos = Some(mos);
        f.r_factor = Some(r);
        if fresh {
            self.mos_acc.0 += mos;
            self.mos_acc.1 += 1;
            self.mos_acc.2 = self.mos_acc.2.min(mos);
            self.monitor.check(f, thresholds, alerts);
        }
    }
}
