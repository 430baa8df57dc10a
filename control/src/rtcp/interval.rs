//! The RTCP transmission interval (RFC 3550 section 6.3 and appendix A.7) with the
//! AVPF changes of RFC 4585 section 3.
//!
//! [`Schedule`] is the per-session state of A.7: `tp`, `tn`, `pmembers`,
//! `members`, `senders`, `avg_rtcp_size`, `initial`, `we_sent`. It is sans-IO:
//! every call takes `now` (any fixed origin) and a random source, and answers
//! with the time of the next transmission.

use core::time::Duration;

/// `e - 3/2`: divides the randomised interval so that timer reconsideration does
/// not make the average interval too long (RFC 3550 A.7).
pub const COMPENSATION: f64 = core::f64::consts::E - 1.5;
/// The minimum interval of RFC 3550 6.2, in seconds.
pub const RTCP_MIN_TIME: f64 = 5.0;
/// Share of the RTCP bandwidth for senders when they are at most a quarter of the
/// members (RFC 3550 6.2).
pub const SENDER_BW_FRACTION: f64 = 0.25;
/// Share for receivers.
pub const RECEIVER_BW_FRACTION: f64 = 0.75;
/// Members above which a leaving participant applies BYE reconsideration
/// (RFC 3550 6.3.7).
pub const BYE_RECONSIDERATION_MEMBERS: u32 = 50;
/// IPv4 + UDP header bytes counted in the average RTCP packet size (RFC 3550 6.2
/// counts lower-layer headers).
pub const UDP_IP_OVERHEAD: usize = 28;

/// A small deterministic random source (SplitMix64). Seeded by the caller, so
/// simulations repeat exactly.
#[derive(Debug, Clone)]
pub struct Rand(u64);

impl Rand {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rand(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.uniform()
    }
}

/// AVPF (RFC 4585) timing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Avpf {
    /// `trr-int`: the minimum interval between regular (non-early) compound
    /// reports; zero means none (RFC 4585 3.6.3, 4.2).
    pub trr_int: Duration,
}

/// How a session's RTCP bandwidth and minimum interval are set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IntervalConfig {
    /// Session bandwidth in bits per second (the RTP bandwidth, e.g. 64 kbit/s of
    /// G.711 plus headers: about 80 kbit/s).
    pub session_bw_bps: f64,
    /// Fraction of the session bandwidth for RTCP (RFC 3550: 5 %).
    pub rtcp_fraction: f64,
    /// Use the reduced minimum of RFC 3550 6.2, `360 / session bandwidth in
    /// kbit/s` seconds, instead of 5 s (not for the initial interval).
    pub reduced_minimum: bool,
    /// AVPF timing, or `None` for plain AVP.
    pub avpf: Option<Avpf>,
}

impl Default for IntervalConfig {
    fn default() -> Self {
        IntervalConfig {
            session_bw_bps: 80_000.0,
            rtcp_fraction: 0.05,
            reduced_minimum: false,
            avpf: None,
        }
    }
}

impl IntervalConfig {
    /// The RTCP bandwidth in octets per second.
    pub fn rtcp_bw(&self) -> f64 {
        (self.session_bw_bps * self.rtcp_fraction / 8.0).max(1.0)
    }

    /// The minimum interval in seconds for a report that is (or is not) the first.
    pub fn min_interval(&self, initial: bool) -> f64 {
        if let Some(a) = self.avpf {
            // RFC 4585 3.5.1/3.5.3: Tmin is 1 s before the first report, then 0;
            // regular reports are further held apart by trr-int.
            let _ = a;
            return if initial { 1.0 } else { 0.0 };
        }
        if initial {
            RTCP_MIN_TIME / 2.0
        } else if self.reduced_minimum {
            (360.0 / (self.session_bw_bps / 1000.0).max(1e-3)).min(RTCP_MIN_TIME)
        } else {
            RTCP_MIN_TIME
        }
    }
}

/// The deterministic part of the interval of RFC 3550 A.7 (before randomisation
/// and compensation), in seconds.
pub fn deterministic_interval(
    cfg: &IntervalConfig,
    members: u32,
    senders: u32,
    we_sent: bool,
    avg_rtcp_size: f64,
    initial: bool,
) -> f64 {
    let mut bw = cfg.rtcp_bw();
    let mut n = f64::from(members.max(1));
    let senders_f = f64::from(senders);
    if senders_f <= n * SENDER_BW_FRACTION {
        if we_sent {
            bw *= SENDER_BW_FRACTION;
            n = senders_f.max(1.0);
        } else {
            bw *= RECEIVER_BW_FRACTION;
            n = (n - senders_f).max(1.0);
        }
    }
    let t = avg_rtcp_size * n / bw;
    t.max(cfg.min_interval(initial))
}

/// The randomised, compensated interval of RFC 3550 A.7 in seconds: the
/// deterministic interval times a uniform factor in `[0.5, 1.5)`, divided by
/// `e - 3/2`.
pub fn rtcp_interval(
    cfg: &IntervalConfig,
    members: u32,
    senders: u32,
    we_sent: bool,
    avg_rtcp_size: f64,
    initial: bool,
    rng: &mut Rand,
) -> f64 {
    let td = deterministic_interval(cfg, members, senders, we_sent, avg_rtcp_size, initial);
    td * rng.range(0.5, 1.5) / COMPENSATION
}

/// What to do when the transmission timer fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expiry {
    /// Send a report now, then call [`Schedule::on_sent`].
    Send,
    /// Timer reconsideration moved the transmission: wait until this time.
    Reschedule(Duration),
}

/// Per-session RTCP timing state of RFC 3550 A.7 (plus RFC 4585 early feedback).
#[derive(Debug, Clone)]
pub struct Schedule {
    cfg: IntervalConfig,
    /// Last transmission.
    tp: f64,
    /// Next scheduled transmission.
    tn: f64,
    pmembers: u32,
    members: u32,
    senders: u32,
    avg_rtcp_size: f64,
    initial: bool,
    we_sent: bool,
    /// RFC 4585 `allow_early`.
    allow_early: bool,
    /// Last regular report (AVPF trr-int bookkeeping), seconds.
    last_regular: Option<f64>,
    sent: u64,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn dur(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl Schedule {
    /// A session joined at `now` with two members (us and the peer, the point to
    /// point case of a gateway leg) and `avg_rtcp_size` bytes as the first guess of
    /// the average compound size (including UDP/IP headers). The first report is
    /// due after the initial (half minimum) interval.
    pub fn new(cfg: IntervalConfig, now: Duration, avg_rtcp_size: f64, rng: &mut Rand) -> Self {
        let mut s = Schedule {
            cfg,
            tp: secs(now),
            tn: 0.0,
            pmembers: 2,
            members: 2,
            senders: 0,
            avg_rtcp_size: avg_rtcp_size.max(1.0),
            initial: true,
            we_sent: false,
            allow_early: true,
            last_regular: None,
            sent: 0,
        };
        s.tn = s.tp + s.interval(rng);
        s
    }

    /// The configuration.
    pub fn config(&self) -> &IntervalConfig {
        &self.cfg
    }

    fn interval(&self, rng: &mut Rand) -> f64 {
        rtcp_interval(
            &self.cfg,
            self.members,
            self.senders,
            self.we_sent,
            self.avg_rtcp_size,
            self.initial,
            rng,
        )
    }

    /// The time of the next transmission.
    pub fn next(&self) -> Duration {
        dur(self.tn)
    }

    /// The time of the last transmission (the join time before the first).
    pub fn last(&self) -> Duration {
        dur(self.tp)
    }

    /// Reports sent so far.
    pub fn reports_sent(&self) -> u64 {
        self.sent
    }

    /// The average compound RTCP size (bytes, with UDP/IP headers).
    pub fn avg_rtcp_size(&self) -> f64 {
        self.avg_rtcp_size
    }

    /// Whether we are a sender (sent RTP since the report before last).
    pub fn we_sent(&self) -> bool {
        self.we_sent
    }

    /// Members and senders as currently counted.
    pub fn members(&self) -> (u32, u32) {
        (self.members, self.senders)
    }

    /// Sets whether we count as a sender (RTP sent in the last two intervals).
    pub fn set_we_sent(&mut self, we_sent: bool) {
        self.we_sent = we_sent;
    }

    /// Sets the member and sender counts (us included). A drop in members applies
    /// reverse reconsideration (RFC 3550 6.3.4) at `now`.
    pub fn set_members(&mut self, now: Duration, members: u32, senders: u32) {
        let members = members.max(1);
        self.senders = senders.min(members);
        if members < self.pmembers {
            self.reverse_reconsider(secs(now), members);
        } else {
            // pmembers follows at the next expiry (A.7 OnExpire).
            self.members = members;
        }
    }

    fn reverse_reconsider(&mut self, tc: f64, members: u32) {
        let ratio = f64::from(members) / f64::from(self.pmembers.max(1));
        self.tn = tc + ratio * (self.tn - tc).max(0.0);
        self.tp = tc - ratio * (tc - self.tp).max(0.0);
        self.members = members;
        self.pmembers = members;
    }

    /// A BYE from a member arrived at `now`: it leaves and the schedule is pulled
    /// in (reverse reconsideration, RFC 3550 6.3.4 / A.7 OnReceive).
    pub fn on_bye_received(&mut self, now: Duration) {
        if self.members > 1 {
            let m = self.members - 1;
            self.senders = self.senders.min(m);
            self.reverse_reconsider(secs(now), m);
        }
    }

    /// An RTCP compound of `size` bytes (without UDP/IP headers) was received.
    pub fn on_received(&mut self, size: usize) {
        self.update_avg(size);
    }

    fn update_avg(&mut self, size: usize) {
        let s = (size + UDP_IP_OVERHEAD) as f64;
        self.avg_rtcp_size = s / 16.0 + self.avg_rtcp_size * 15.0 / 16.0;
    }

    /// The transmission timer fired at `now` (at or after [`next`](Self::next)):
    /// timer reconsideration (RFC 3550 6.3.6 / A.7 OnExpire). On [`Expiry::Send`]
    /// the caller sends a report and calls [`on_sent`](Self::on_sent).
    pub fn on_expire(&mut self, now: Duration, rng: &mut Rand) -> Expiry {
        let tc = secs(now);
        let t = self.interval(rng);
        let tn = self.tp + t;
        if tn <= tc {
            Expiry::Send
        } else {
            self.tn = tn;
            self.pmembers = self.members;
            Expiry::Reschedule(dur(tn))
        }
    }

    /// A regular compound of `size` bytes (without UDP/IP headers) was sent at
    /// `now`; schedules the next one.
    pub fn on_sent(&mut self, now: Duration, size: usize, rng: &mut Rand) {
        let tc = secs(now);
        self.tp = tc;
        self.update_avg(size);
        self.initial = false;
        self.sent += 1;
        let mut t = self.interval(rng);
        if let Some(a) = self.cfg.avpf {
            // RFC 4585 3.5.3 step 1: regular reports no closer than trr-int
            // (randomised between 0.5 and 1.5 of it).
            let trr = a.trr_int.as_secs_f64();
            if trr > 0.0 {
                t = t.max(trr * rng.range(0.5, 1.5));
            }
            self.last_regular = Some(tc);
            self.allow_early = true;
        }
        self.tn = tc + t;
        self.pmembers = self.members;
    }

    /// AVPF early feedback (RFC 4585 3.5.2) wanted at `now`: returns when to send
    /// it, or `None` when it must wait for (be piggy-backed on) the next regular
    /// report. Plain AVP sessions always answer `None`.
    ///
    /// Point to point (two members) the dither is 0 (immediate feedback mode
    /// when the timer allows it); otherwise `l * T_rr` with `l = 0.5`.
    pub fn early_feedback(&mut self, now: Duration, rng: &mut Rand) -> Option<Duration> {
        self.cfg.avpf?;
        if !self.allow_early {
            return None;
        }
        let tc = secs(now);
        let t_rr = (self.tn - self.tp).max(0.0);
        let dither = if self.members <= 2 {
            0.0
        } else {
            0.5 * t_rr * rng.uniform()
        };
        let at = tc + dither;
        if at >= self.tn {
            // The regular report comes first: piggy-back.
            return None;
        }
        Some(dur(at))
    }

    /// An early (feedback) packet was sent at `now`: no further early packet until
    /// the next regular report, which moves to `tp + 2 T_rr` (RFC 4585 3.5.2 step 5).
    pub fn on_early_sent(&mut self, now: Duration, size: usize) {
        let t_rr = (self.tn - self.tp).max(0.0);
        self.allow_early = false;
        self.update_avg(size);
        let _ = now;
        self.tn = self.tp + 2.0 * t_rr;
    }

    /// We leave at `now` (the leg ends): when to send the BYE. With more than 50
    /// members BYE reconsideration applies (RFC 3550 6.3.7): the state restarts as
    /// if just joined with one member and the BYE is due after that interval;
    /// otherwise it goes out at once.
    pub fn leave(&mut self, now: Duration, bye_size: usize, rng: &mut Rand) -> Duration {
        if self.members <= BYE_RECONSIDERATION_MEMBERS {
            return now;
        }
        let tc = secs(now);
        self.tp = tc;
        self.members = 1;
        self.pmembers = 1;
        self.senders = 0;
        self.initial = true;
        self.we_sent = false;
        self.avg_rtcp_size = (bye_size + UDP_IP_OVERHEAD) as f64;
        self.tn = tc + self.interval(rng);
        dur(self.tn)
    }

    /// While leaving, another BYE was received (RFC 3550 6.3.7: members counts
    /// BYEs).
    pub fn on_bye_while_leaving(&mut self, size: usize) {
        self.members += 1;
        self.update_avg(size);
    }
}
