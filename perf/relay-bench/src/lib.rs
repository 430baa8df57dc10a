//! Relay benchmark support (the benchmarks are under `benches/`, the perf lab is
//! `src/bin/perf-lab.rs`): the minimal relay that every figure is compared with.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use rtp_dataplane::ports::udp_socket;
use rtp_dataplane::sys::{MmsgBatch, RecvSlot, SendMsg};

/// The minimal relay as a reflector: a thread pinned to `core` busy-polls
/// recvmmsg on one socket and sends every datagram back to its source with
/// sendmmsg, doing nothing else. What this kernel's loopback UDP allows.
#[derive(Debug)]
pub struct MinimalRelay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MinimalRelay {
    /// Binds a loopback port and starts.
    pub fn start(core: usize) -> Self {
        let sock = udp_socket(
            "127.0.0.1:0".parse().expect("literal"),
            false,
            Some(8 << 20),
        )
        .expect("bind");
        let addr = sock.local_addr().expect("bound");
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            core_affinity::set_for_current(core_affinity::CoreId { id: core });
            let mut bufs = vec![[0u8; 2048]; 32];
            let (mut rx, mut tx) = (MmsgBatch::new(32), MmsgBatch::new(32));
            let (mut got, mut msgs) = (Vec::with_capacity(32), Vec::with_capacity(32));
            while !s.load(Ordering::Relaxed) {
                let slots: [RecvSlot; 32] = std::array::from_fn(|i| RecvSlot {
                    ptr: bufs[i].as_mut_ptr(),
                    cap: 2048,
                });
                got.clear();
                let n = rx.recv(sock.as_raw_fd(), &slots, &mut got).unwrap_or(0);
                msgs.clear();
                for (i, r) in got.iter().enumerate().take(n) {
                    if let Some(src) = r.src {
                        tx.set_iov(msgs.len(), bufs[i].as_ptr(), r.len);
                        msgs.push(SendMsg {
                            dst: src,
                            first_iov: msgs.len(),
                            iov_count: 1,
                            segment: 0,
                        });
                    }
                }
                let mut done = 0;
                while done < msgs.len() {
                    match tx.send(sock.as_raw_fd(), &msgs[done..]) {
                        Ok(k) if k > 0 => done += k,
                        _ => break,
                    }
                }
            }
        });
        MinimalRelay {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MinimalRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The median of `v` (the upper one for an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What ended a rate ramp: the figure is the relay's own limit only when it is
/// `Relay`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bound {
    /// A step was overloaded twice in a row: the relay's limit.
    Relay,
    /// The generator could not offer a step (sent under 95% of it): the relay
    /// kept up with everything the generator could send.
    Generator,
    /// The ramp's last step passed.
    Ramp,
}

impl Bound {
    /// How a table names it.
    pub fn name(self) -> &'static str {
        match self {
            Bound::Relay => "relay",
            Bound::Generator => "generator",
            Bound::Ramp => "ramp's top",
        }
    }
}

/// The rate after `rate` in a ramp: `step` at a time until 10% of the rate is
/// more, then 10% steps (so the resolution stays about a tenth of the figure).
pub fn next_rate(rate: f64, step: f64) -> f64 {
    rate + (rate * 0.1).max(step)
}

/// One step of a rate ramp: whether the relay was overloaded, the rate the
/// generator actually offered, and whatever else the bench keeps of it.
#[derive(Debug)]
pub struct Step<T> {
    /// Loss, or a standing queue, by the bench's own criterion.
    pub overloaded: bool,
    /// Packets/s the generator actually offered.
    pub offered: f64,
    /// What the bench keeps of the step.
    pub data: T,
}

/// A rate ramp from `start` ([`next_rate`] with `step`, at most `max_steps`
/// steps): `trial` runs one step at a rate. A step ends the ramp as the relay's
/// limit only when it is overloaded twice in a row (one stall of this VM fails a
/// single step at random); a step whose offered rate fell 5% short ends it as
/// the generator's. Returns the last step that passed (its rate and data) and
/// what ended the ramp.
pub fn ramp<T>(
    start: f64,
    step: f64,
    max_steps: usize,
    mut trial: impl FnMut(f64) -> Step<T>,
) -> (Option<(f64, T)>, Bound) {
    let mut best = None;
    let mut rate = start;
    for _ in 0..max_steps {
        let mut r = trial(rate);
        if r.overloaded {
            r = trial(rate);
            if r.overloaded {
                return (best, Bound::Relay);
            }
        }
        let short = r.offered < 0.95 * rate;
        best = Some((rate, r.data));
        if short {
            return (best, Bound::Generator);
        }
        rate = next_rate(rate, step);
    }
    (best, Bound::Ramp)
}

/// A distribution-free confidence interval for the median of `v`: the order
/// statistics `(v[k], v[n-1-k])` with the largest `k` for which the median lies
/// outside them with probability at most `1 - conf` (each sample falls on
/// either side of the true median with probability 1/2, so the count below it
/// is binomial(n, 1/2)). Returns the bounds and the interval's actual coverage;
/// with too few samples for `conf`, the whole range and its coverage. Sorts `v`.
///
/// This is what lets a noisy VM decide a goal: a ratio is met when the upper
/// bound is within it, missed when the lower bound is past it, and undecided
/// otherwise, however one run happened to fall.
pub fn median_ci(v: &mut [f64], conf: f64) -> (f64, f64, f64) {
    assert!(!v.is_empty(), "no samples");
    v.sort_by(f64::total_cmp);
    let n = v.len();
    // tail[k] = P(X <= k) for X ~ binomial(n, 1/2): the chance that v[k] lies
    // above the true median (k or fewer samples fell below it).
    let mut tail = Vec::with_capacity(n / 2 + 1);
    let (mut term, mut below) = (0.5f64.powi(n as i32), 0.0);
    for i in 0..=(n - 1) / 2 {
        below += term;
        tail.push(below);
        term *= (n - i) as f64 / (i + 1) as f64;
    }
    let mut k = 0;
    while k + 1 < tail.len() && 2.0 * tail[k + 1] <= 1.0 - conf {
        k += 1;
    }
    (v[k], v[n - 1 - k], 1.0 - 2.0 * tail[k])
}

/// Below this coverage an interval decides nothing (too few rounds).
const MIN_COVERAGE: f64 = 0.9;

/// What a median's confidence interval (`lo`, `hi`, coverage `cov`, as
/// [`median_ci`] returns them) says about a goal of at most `goal`.
pub fn verdict_at_most(lo: f64, hi: f64, cov: f64, goal: f64) -> &'static str {
    if cov < MIN_COVERAGE {
        "too few rounds"
    } else if hi <= goal {
        "met"
    } else if lo > goal {
        "missed"
    } else {
        "undecided"
    }
}

/// What a median's confidence interval says about a goal of at least `goal`.
pub fn verdict_at_least(lo: f64, hi: f64, cov: f64, goal: f64) -> &'static str {
    if cov < MIN_COVERAGE {
        "too few rounds"
    } else if lo >= goal {
        "met"
    } else if hi < goal {
        "missed"
    } else {
        "undecided"
    }
}

/// `streams` PCMU-like streams (160-byte payloads, PT 0, 8 kHz) whose packet time
/// makes them offer `rate` packets/s together.
pub fn audio_class(streams: usize, rate: f64) -> rtp_tools::load::StreamClass {
    rtp_tools::load::StreamClass {
        name: "audio".into(),
        streams,
        ptime: std::time::Duration::from_nanos((streams as f64 / rate * 1e9) as u64),
        payload: 160,
        pt: 0,
        clock_rate: 8000,
        talk_spurt: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_intervals_use_the_binomial_order_statistics() {
        // n = 9: P(X <= 1) = 10/512, so [v(2), v(8)] (1-based) covers 96.1%.
        let mut v: Vec<f64> = (1..=9).rev().map(f64::from).collect();
        let (lo, hi, cov) = median_ci(&mut v, 0.95);
        assert_eq!((lo, hi), (2.0, 8.0));
        assert!((cov - (1.0 - 20.0 / 512.0)).abs() < 1e-12, "{cov}");
        // n = 15: P(X <= 3) = 576/32768, so [v(4), v(12)] covers 96.5%.
        let mut v: Vec<f64> = (1..=15).map(f64::from).collect();
        let (lo, hi, cov) = median_ci(&mut v, 0.95);
        assert_eq!((lo, hi), (4.0, 12.0));
        assert!((cov - (1.0 - 2.0 * 576.0 / 32768.0)).abs() < 1e-12, "{cov}");
        // Too few samples for 95%: the whole range, with its own coverage.
        let mut v = vec![3.0, 1.0, 2.0];
        let (lo, hi, cov) = median_ci(&mut v, 0.95);
        assert_eq!((lo, hi), (1.0, 3.0));
        assert!((cov - 0.75).abs() < 1e-12, "{cov}");
        let mut one = vec![5.0];
        assert_eq!(median_ci(&mut one, 0.95), (5.0, 5.0, 0.0));
    }

    #[test]
    fn ramps_step_by_the_larger_of_the_step_and_a_tenth() {
        assert_eq!(next_rate(40_000.0, 20_000.0), 60_000.0);
        assert_eq!(next_rate(300_000.0, 20_000.0), 330_000.0);
        assert_eq!(next_rate(10_000.0, 10_000.0), 20_000.0);
    }

    #[test]
    fn a_ramp_ends_where_a_step_fails_twice_or_the_generator_falls_short() {
        let step = |overloaded: bool, offered: f64| Step {
            overloaded,
            offered,
            data: offered,
        };
        // Overloaded from 60k on: the best is 40k, the relay's limit.
        let (best, end) = ramp(20_000.0, 20_000.0, 10, |r| step(r >= 60_000.0, r));
        assert_eq!((best, end), (Some((40_000.0, 40_000.0)), Bound::Relay));
        // One failure at 40k that passes when repeated does not end it.
        let mut tries = 0;
        let (best, end) = ramp(20_000.0, 20_000.0, 3, |r| {
            tries += 1;
            step(r == 40_000.0 && tries == 2, r)
        });
        assert_eq!((best.map(|b| b.0), end), (Some(60_000.0), Bound::Ramp));
        // A generator that offers only 70k of 80k ends it there, as its limit.
        let (best, end) = ramp(20_000.0, 20_000.0, 10, |r| step(false, r.min(70_000.0)));
        assert_eq!((best.map(|b| b.0), end), (Some(80_000.0), Bound::Generator));
        // Overloaded from the start: nothing passed.
        let (best, end) = ramp(20_000.0, 20_000.0, 10, |r| step(true, r));
        assert_eq!((best.is_none(), end), (true, Bound::Relay));
    }

    #[test]
    fn verdicts_follow_the_interval() {
        assert_eq!(verdict_at_most(0.9, 1.4, 0.96, 1.5), "met");
        assert_eq!(verdict_at_most(0.9, 1.6, 0.96, 1.5), "undecided");
        assert_eq!(verdict_at_most(1.6, 2.0, 0.96, 1.5), "missed");
        assert_eq!(verdict_at_least(0.92, 1.1, 0.96, 0.9), "met");
        assert_eq!(verdict_at_least(0.85, 1.1, 0.96, 0.9), "undecided");
        assert_eq!(verdict_at_least(0.7, 0.85, 0.96, 0.9), "missed");
        // One round (coverage 0) or three (75%) decide nothing.
        assert_eq!(verdict_at_most(0.3, 0.3, 0.0, 0.5), "too few rounds");
        assert_eq!(verdict_at_least(1.0, 1.2, 0.75, 0.9), "too few rounds");
    }
}
