//! RFC 3550 6.3 / A.7 transmission intervals over simulated time: mean, spread,
//! minimums, the 5 % share and its sender/receiver split, small and large
//! sessions, timer and reverse reconsideration, BYE reconsideration, AVPF.

use std::time::Duration;

use rtp_control::rtcp::interval::{deterministic_interval, COMPENSATION, UDP_IP_OVERHEAD};
use rtp_control::rtcp::{Avpf, Expiry, IntervalConfig, Rand, Schedule};

/// Runs one participant's schedule for `reports` reports of `size` bytes and
/// returns the intervals between transmissions (seconds). The timer fires exactly
/// when due.
fn run(
    cfg: IntervalConfig,
    members: u32,
    senders: u32,
    we_sent: bool,
    size: usize,
    reports: usize,
    seed: u64,
) -> Vec<f64> {
    let mut rng = Rand::new(seed);
    let avg = (size + UDP_IP_OVERHEAD) as f64;
    let mut s = Schedule::new(cfg, Duration::ZERO, avg, &mut rng);
    s.set_members(Duration::ZERO, members, senders);
    s.set_we_sent(we_sent);
    let mut out = Vec::new();
    let mut last = None::<Duration>;
    while out.len() < reports {
        let now = s.next();
        match s.on_expire(now, &mut rng) {
            Expiry::Send => {
                if let Some(l) = last {
                    out.push((now - l).as_secs_f64());
                }
                last = Some(now);
                s.on_sent(now, size, &mut rng);
            }
            Expiry::Reschedule(at) => assert!(at > now, "reschedule must move forward"),
        }
    }
    out
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)))
}

#[test]
fn small_session_has_the_5s_minimum_mean_and_spread() {
    // Two members (a gateway leg and its peer), 80 kbit/s: the bandwidth rule
    // gives well under 5 s, so the 5 s minimum rules.
    let cfg = IntervalConfig::default();
    let td = deterministic_interval(&cfg, 2, 1, true, 128.0, false);
    assert_eq!(td, 5.0);
    let v = run(cfg, 2, 1, true, 100, 4000, 1);
    let m = mean(&v);
    // With timer reconsideration and the e - 3/2 compensation, the mean interval
    // equals the deterministic one (simulated: 0.9994; tolerance 3 %).
    assert!((m - 5.0).abs() < 0.15, "mean {m}");
    // Spread: every interval within [0.5, 1.5] x td / (e - 3/2).
    let (lo, hi) = min_max(&v);
    assert!(lo >= 0.5 * 5.0 / COMPENSATION - 1e-9, "min {lo}");
    assert!(hi <= 1.5 * 5.0 / COMPENSATION + 1e-9, "max {hi}");
    // and it really is spread: both ends of the range are visited.
    assert!(lo < 2.3 && hi > 5.8, "range {lo}..{hi}");
    // Standard deviation well above zero (randomisation on).
    let sd = (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
    assert!(sd > 0.5 && sd < 1.5, "sd {sd}");
}

#[test]
fn initial_interval_is_half_the_minimum() {
    let cfg = IntervalConfig::default();
    let mut firsts = Vec::new();
    for seed in 0..2000 {
        let mut rng = Rand::new(seed);
        let s = Schedule::new(cfg, Duration::from_secs(100), 128.0, &mut rng);
        firsts.push(s.next().as_secs_f64() - 100.0);
    }
    let (lo, hi) = min_max(&firsts);
    assert!(lo >= 0.5 * 2.5 / COMPENSATION - 1e-9 && hi <= 1.5 * 2.5 / COMPENSATION + 1e-9);
    let m = mean(&firsts);
    assert!((m - 2.5 / COMPENSATION).abs() < 0.05, "mean first {m}");
}

#[test]
fn reduced_minimum_is_360_over_kbps() {
    let cfg = IntervalConfig {
        session_bw_bps: 720_000.0,
        reduced_minimum: true,
        ..IntervalConfig::default()
    };
    // 360 / 720 = 0.5 s, above the bandwidth-derived value for 2 members.
    assert!((cfg.min_interval(false) - 0.5).abs() < 1e-12);
    // The initial interval still uses half of 5 s.
    assert_eq!(cfg.min_interval(true), 2.5);
    let v = run(cfg, 2, 1, true, 100, 3000, 7);
    assert!((mean(&v) - 0.5).abs() < 0.02, "mean {}", mean(&v));
}

/// Large session: the aggregate RTCP rate of all members is 5 % of the session
/// bandwidth, 1/4 of it from the senders and 3/4 from the receivers.
#[test]
fn large_session_uses_five_percent_split_25_75() {
    let cfg = IntervalConfig {
        session_bw_bps: 100_000.0,
        ..IntervalConfig::default()
    };
    let (members, senders, size) = (2000u32, 10u32, 200usize);
    let avg = (size + UDP_IP_OVERHEAD) as f64;
    let rtcp_bw = cfg.rtcp_bw(); // octets per second
    assert!((rtcp_bw - 625.0).abs() < 1e-9);
    // Both deterministic intervals are above the 5 s minimum.
    let v_s = run(cfg, members, senders, true, size, 1500, 11);
    let v_r = run(cfg, members, senders, false, size, 1500, 12);
    let (ms, mr) = (mean(&v_s), mean(&v_r));
    // Deterministic values: senders avg*10/(0.25 bw), receivers avg*1990/(0.75 bw).
    let td_s = avg * f64::from(senders) / (0.25 * rtcp_bw);
    let td_r = avg * f64::from(members - senders) / (0.75 * rtcp_bw);
    assert!((ms / td_s - 1.0).abs() < 0.03, "sender mean {ms} vs {td_s}");
    assert!(
        (mr / td_r - 1.0).abs() < 0.03,
        "receiver mean {mr} vs {td_r}"
    );
    let sender_rate = f64::from(senders) * avg / ms;
    let receiver_rate = f64::from(members - senders) * avg / mr;
    let total = sender_rate + receiver_rate;
    let share = total * 8.0 / cfg.session_bw_bps;
    assert!((share - 0.05).abs() < 0.0015, "RTCP share {share}");
    assert!((sender_rate / total - 0.25).abs() < 0.01);
    // With many senders (more than a quarter) everyone shares the whole bandwidth.
    let td_all = deterministic_interval(&cfg, 100, 60, true, avg, false);
    assert!((td_all - (avg * 100.0 / rtcp_bw).max(5.0)).abs() < 1e-9);
}

#[test]
fn reconsideration_follows_member_changes() {
    let cfg = IntervalConfig {
        session_bw_bps: 64_000.0,
        ..IntervalConfig::default()
    };
    let mut rng = Rand::new(3);
    let mut s = Schedule::new(cfg, Duration::ZERO, 228.0, &mut rng);
    s.set_members(Duration::ZERO, 400, 1);
    // Timer reconsideration: the first timer was computed for 2 members; with 400
    // the recomputed interval is far longer, so the expiry reschedules.
    let first = s.next();
    match s.on_expire(first, &mut rng) {
        Expiry::Reschedule(at) => assert!(at > first + Duration::from_secs(10), "{at:?}"),
        Expiry::Send => panic!("400 members must push the report out"),
    }
    // Reverse reconsideration: half the members leave at t = 20 s; tn moves towards
    // now in proportion (tn' = tc + 200/400 (tn - tc)).
    let tc = Duration::from_secs(20);
    let tn = s.next().as_secs_f64();
    s.set_members(tc, 200, 1);
    let expect = 20.0 + 0.5 * (tn - 20.0);
    assert!((s.next().as_secs_f64() - expect).abs() < 1e-6);
    // A BYE takes away one more member.
    let tn = s.next().as_secs_f64();
    s.on_bye_received(tc);
    let expect = 20.0 + (199.0 / 200.0) * (tn - 20.0);
    assert!((s.next().as_secs_f64() - expect).abs() < 1e-6);
    assert_eq!(s.members().0, 199);
}

#[test]
fn bye_is_immediate_for_small_and_reconsidered_for_large_sessions() {
    let cfg = IntervalConfig::default();
    let mut rng = Rand::new(5);
    let mut s = Schedule::new(cfg, Duration::ZERO, 128.0, &mut rng);
    let now = Duration::from_secs(30);
    assert_eq!(s.leave(now, 40, &mut rng), now);
    let mut big = Schedule::new(cfg, Duration::ZERO, 128.0, &mut rng);
    big.set_members(Duration::ZERO, 51, 0);
    let at = big.leave(now, 40, &mut rng);
    // As if just joined with one member: the initial (2.5 s based) interval.
    let d = (at - now).as_secs_f64();
    assert!(
        (0.5 * 2.5 / COMPENSATION - 1e-9..=1.5 * 2.5 / COMPENSATION + 1e-9).contains(&d),
        "{d}"
    );
    assert_eq!(big.members(), (1, 0));
}

#[test]
fn avpf_trr_int_and_early_feedback() {
    let cfg = IntervalConfig {
        avpf: Some(Avpf {
            trr_int: Duration::from_millis(1000),
        }),
        ..IntervalConfig::default()
    };
    // First report after the 1 s initial minimum (randomised), then regular ones
    // not closer than trr-int x [0.5, 1.5).
    let v = run(cfg, 2, 1, true, 100, 2000, 9);
    let (lo, _) = min_max(&v);
    assert!(lo >= 0.5 - 1e-9, "min {lo}");
    let m = mean(&v);
    assert!(m > 0.9 && m < 1.2, "mean {m}");
    // Early feedback, point to point: allowed at once, then not again until the
    // next regular report, which moves out to tp + 2 T_rr.
    let mut rng = Rand::new(1);
    let mut s = Schedule::new(cfg, Duration::ZERO, 128.0, &mut rng);
    let mut t0 = s.next();
    while let Expiry::Reschedule(at) = s.on_expire(t0, &mut rng) {
        t0 = at;
    }
    s.on_sent(t0, 100, &mut rng);
    let t_rr = s.next() - s.last();
    let now = t0 + Duration::from_millis(10);
    assert_eq!(s.early_feedback(now, &mut rng), Some(now));
    s.on_early_sent(now, 60);
    assert_eq!(
        s.early_feedback(now + Duration::from_millis(5), &mut rng),
        None
    );
    let moved = s.next() - s.last();
    assert!((moved.as_secs_f64() - 2.0 * t_rr.as_secs_f64()).abs() < 1e-6);
    // Plain AVP never sends early.
    let mut p = Schedule::new(IntervalConfig::default(), Duration::ZERO, 128.0, &mut rng);
    assert_eq!(p.early_feedback(Duration::from_millis(1), &mut rng), None);
}
