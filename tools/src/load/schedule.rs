//! Pacing: when each packet of each stream leaves.
//!
//! Streams of one class share a packet time; their sends are spread evenly over it
//! (stream `s` of `n` is offset by `s / n` of the packet time), so a class is a
//! round-robin whose `j`-th packet is due at exactly `j * ptime / n` after the start.
//! Due times are computed from the start, never accumulated, so there is no drift
//! however long the run. Several classes are merged by always taking the earliest.

use std::time::Duration;

/// One class of identical streams.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamClass {
    /// Name in reports.
    pub name: String,
    /// Number of streams.
    pub streams: usize,
    /// Packet time.
    pub ptime: Duration,
    /// RTP payload bytes.
    pub payload: usize,
    /// RTP payload type.
    pub pt: u8,
    /// RTP clock rate.
    pub clock_rate: u32,
    /// Talk spurts: (on, off); `None` sends continuously.
    pub talk_spurt: Option<(Duration, Duration)>,
}

impl StreamClass {
    /// Packets per second of the whole class.
    pub fn rate(&self) -> f64 {
        self.streams as f64 / self.ptime.as_secs_f64()
    }

    /// RTP timestamp units per packet.
    pub fn samples_per_packet(&self) -> u32 {
        (u128::from(self.clock_rate) * self.ptime.as_nanos() / 1_000_000_000) as u32
    }

    /// Parses `NAME:STREAMS:PTIME_MS:PAYLOAD[:PT[:CLOCK_RATE]]`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let f: Vec<&str> = s.split(':').collect();
        if f.len() < 4 || f.len() > 6 {
            return Err(format!(
                "class {s:?}: expected NAME:STREAMS:PTIME_MS:PAYLOAD[:PT[:CLOCK_RATE]]"
            ));
        }
        // Each field in the range of its type: a value that does not fit is an
        // error, never truncated (PT 300 is not PT 44).
        fn num<T: TryFrom<u64>>(s: &str, f: &[&str], i: usize, what: &str) -> Result<T, String> {
            let v = f[i]
                .parse::<u64>()
                .map_err(|_| format!("class {s:?}: {what} {:?} is not a number", f[i]))?;
            T::try_from(v).map_err(|_| format!("class {s:?}: {what} {v} is out of range"))
        }
        let class = StreamClass {
            name: f[0].to_string(),
            streams: num(s, &f, 1, "streams")?,
            ptime: Duration::from_millis(num(s, &f, 2, "ptime")?),
            payload: num(s, &f, 3, "payload")?,
            pt: if f.len() > 4 {
                num(s, &f, 4, "payload type")?
            } else {
                0
            },
            clock_rate: if f.len() > 5 {
                num(s, &f, 5, "clock rate")?
            } else {
                8000
            },
            talk_spurt: None,
        };
        class.check()?;
        Ok(class)
    }

    /// Checks the values; the error says what to change.
    pub fn check(&self) -> Result<(), String> {
        if self.streams == 0 {
            return Err(format!("class {}: needs at least one stream", self.name));
        }
        if self.ptime.is_zero() {
            return Err(format!(
                "class {}: packet time must be above zero",
                self.name
            ));
        }
        if self.payload > 1400 {
            return Err(format!(
                "class {}: payload {} exceeds 1400 bytes",
                self.name, self.payload
            ));
        }
        if self.pt > 127 {
            return Err(format!(
                "class {}: payload type {} exceeds 127",
                self.name, self.pt
            ));
        }
        if self.clock_rate == 0 {
            return Err(format!(
                "class {}: clock rate must be above zero",
                self.name
            ));
        }
        if let Some((on, off)) = self.talk_spurt {
            if on.is_zero() || (on + off).is_zero() {
                return Err(format!(
                    "class {}: talk spurt on-time must be above zero",
                    self.name
                ));
            }
        }
        Ok(())
    }
}

/// A packet the pacer says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// When, in nanoseconds after the start.
    pub at_ns: u64,
    /// Global stream index (classes are numbered consecutively).
    pub stream: usize,
    /// Class index.
    pub class: usize,
    /// Packet number of this stream (0, 1, ...), counting silent slots too.
    pub k: u64,
    /// Whether the stream is talking in this slot (false: skip the send).
    pub talking: bool,
    /// First packet of a talk spurt (RTP marker bit).
    pub spurt_start: bool,
}

#[derive(Debug, Clone)]
struct ClassState {
    first_stream: usize,
    streams: u64,
    ptime_ns: u64,
    spurt: Option<(u64, u64)>,
    /// Packets of the class taken so far (the round-robin's position).
    j: u64,
    /// `j % streams` and `j / streams`, kept up to date with `j` (a division per
    /// packet is a noticeable share of a fast sender's time).
    local: u64,
    k: u64,
    /// Due time of packet `j`, computed once when `j` moves.
    due: u64,
}

impl ClassState {
    /// Due time of the class's `j`-th packet: `j * ptime / streams`, from the start.
    fn due_of(&self, j: u64) -> u64 {
        match j.checked_mul(self.ptime_ns) {
            Some(t) => t / self.streams,
            None => (u128::from(j) * u128::from(self.ptime_ns) / u128::from(self.streams)) as u64,
        }
    }

    /// Puts the round-robin at packet `j`.
    fn seek(&mut self, j: u64) {
        self.j = j;
        self.local = j % self.streams;
        self.k = j / self.streams;
        self.due = self.due_of(j);
    }

    /// Moves on to the next packet.
    fn advance(&mut self) {
        self.j += 1;
        self.local += 1;
        if self.local == self.streams {
            self.local = 0;
            self.k += 1;
        }
        self.due = self.due_of(self.j);
    }
}

/// Merges the round-robins of all classes.
#[derive(Debug, Clone)]
pub struct Pacer {
    classes: Vec<ClassState>,
}

/// A stream's talk-spurt phase, spread so streams do not all pause together.
fn phase(stream: usize, cycle: u64) -> u64 {
    (stream as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) % cycle.max(1)
}

impl Pacer {
    /// A pacer for `classes` starting at time zero.
    pub fn new(classes: &[StreamClass]) -> Self {
        let mut first = 0;
        let classes = classes
            .iter()
            .map(|c| {
                let mut s = ClassState {
                    first_stream: first,
                    streams: c.streams as u64,
                    ptime_ns: c.ptime.as_nanos() as u64,
                    spurt: c
                        .talk_spurt
                        .map(|(on, off)| (on.as_nanos() as u64, off.as_nanos() as u64)),
                    j: 0,
                    local: 0,
                    k: 0,
                    due: 0,
                };
                s.seek(0);
                first += c.streams;
                s
            })
            .collect();
        Pacer { classes }
    }

    /// When the next packet is due.
    pub fn next_due_ns(&self) -> u64 {
        self.classes.iter().map(|c| c.due).min().unwrap_or(u64::MAX)
    }

    /// Takes the next packet.
    pub fn take(&mut self) -> Due {
        let (ci, c) = self
            .classes
            .iter_mut()
            .enumerate()
            .min_by_key(|(_, c)| c.due)
            .expect("at least one class");
        let at_ns = c.due;
        let k = c.k;
        let stream = c.first_stream + c.local as usize;
        let (talking, spurt_start) = match c.spurt {
            None => (true, k == 0),
            Some((on, off)) => {
                let cycle = on + off;
                let p = phase(stream, cycle);
                let pos = |k: u64| (k * c.ptime_ns + p) % cycle;
                let now_on = pos(k) < on;
                let before_on = k > 0 && pos(k - 1) < on;
                (now_on, now_on && !before_on)
            }
        };
        c.advance();
        Due {
            at_ns,
            stream,
            class: ci,
            k,
            talking,
            spurt_start,
        }
    }
}

/// The sending clock's decisions, free of I/O: which packets are due at `now`
/// and how long to wait for the next one. The load loop feeds it the real
/// clock, tests a simulated one. Due times come from the schedule, never from
/// when the loop happened to run, so a late loop sends its backlog at once and
/// then keeps to the schedule (no drift).
#[derive(Debug, Clone)]
pub struct Release {
    pacer: Pacer,
    end_ns: u64,
}

impl Release {
    /// Releases the packets of `classes` due before `duration`.
    pub fn new(classes: &[StreamClass], duration: Duration) -> Self {
        Release {
            pacer: Pacer::new(classes),
            end_ns: u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Whether slots remain before the end.
    pub fn sending(&self) -> bool {
        self.pacer.next_due_ns() < self.end_ns
    }

    /// The next slot due at or before `now_ns`, if any (silent slots of a talk
    /// spurt included: `talking` is false).
    pub fn pop_due(&mut self, now_ns: u64) -> Option<Due> {
        let at = self.pacer.next_due_ns();
        (at <= now_ns && at < self.end_ns).then(|| self.pacer.take())
    }

    /// Nanoseconds from `now_ns` until the next slot is due (0: one is due
    /// now); `None` once sending is over.
    pub fn wait_ns(&self, now_ns: u64) -> Option<u64> {
        self.sending()
            .then(|| self.pacer.next_due_ns().saturating_sub(now_ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(streams: usize, ptime_ms: u64) -> StreamClass {
        StreamClass {
            name: "a".into(),
            streams,
            ptime: Duration::from_millis(ptime_ms),
            payload: 160,
            pt: 0,
            clock_rate: 8000,
            talk_spurt: None,
        }
    }

    #[test]
    fn spreads_streams_evenly_and_never_drifts() {
        let mut p = Pacer::new(&[class(3, 20)]);
        let d: Vec<Due> = (0..6).map(|_| p.take()).collect();
        let at: Vec<u64> = d.iter().map(|d| d.at_ns).collect();
        assert_eq!(
            at,
            vec![0, 6_666_666, 13_333_333, 20_000_000, 26_666_666, 33_333_333]
        );
        assert_eq!(
            d.iter().map(|d| d.stream).collect::<Vec<_>>(),
            vec![0, 1, 2, 0, 1, 2]
        );
        // After an hour of 50 packets/s x 1000 streams, the due time is exact.
        let mut p = Pacer::new(&[class(1000, 20)]);
        let n = 3600 * 50 * 1000u64;
        p.classes[0].seek(n);
        assert_eq!(p.next_due_ns(), 3600 * 1_000_000_000);
        assert_eq!((p.take().stream, p.take().stream), (0, 1));
        // Past u64's range for j * ptime, the due time is still exact.
        let mut p = Pacer::new(&[class(1000, 20)]);
        let j = u64::MAX / 20_000_000 + 1000;
        p.classes[0].seek(j);
        let want = (u128::from(j) * 20_000_000 / 1000) as u64;
        assert_eq!(p.take().at_ns, want);
    }

    #[test]
    fn merges_classes_by_due_time() {
        let mut p = Pacer::new(&[class(1, 20), class(1, 30)]);
        let seq: Vec<(u64, usize)> = (0..6)
            .map(|_| {
                let d = p.take();
                (d.at_ns / 1_000_000, d.class)
            })
            .collect();
        assert_eq!(
            seq,
            vec![(0, 0), (0, 1), (20, 0), (30, 1), (40, 0), (60, 0)]
        );
    }

    #[test]
    fn talk_spurts_alternate_with_the_configured_duty_cycle() {
        let mut c = class(10, 20);
        c.talk_spurt = Some((Duration::from_millis(1000), Duration::from_millis(1000)));
        let mut p = Pacer::new(&[c]);
        let (mut on, mut starts) = (0, 0);
        for _ in 0..10 * 500 {
            let d = p.take();
            on += u64::from(d.talking);
            starts += u64::from(d.spurt_start);
        }
        // 10 s per stream: half talking, about 5 spurts each.
        assert!((2400..=2600).contains(&on), "{on}");
        assert!((40..=60).contains(&starts), "{starts}");
    }

    #[test]
    fn parses_classes_and_rejects_nonsense() {
        let c = StreamClass::parse("video:10:33:1200:96:90000").unwrap();
        assert_eq!(
            (c.streams, c.ptime, c.payload, c.pt, c.clock_rate),
            (10, Duration::from_millis(33), 1200, 96, 90000)
        );
        assert_eq!(c.samples_per_packet(), 2970);
        for bad in [
            "a:0:20:160",
            "a:1:0:160",
            "a:1:20:9000",
            "a:x:20:160",
            "a:1:20",
            "a:1:20:160:200",
            "a:1:20:160:300",
            "a:1:20:160:0:4294967296",
            "a:1:20:160:0:0",
        ] {
            assert!(StreamClass::parse(bad).is_err(), "{bad}");
        }
    }
}
