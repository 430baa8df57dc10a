//! RTP sequence-number tracking (RFC 3550 appendix A.1).
//!
//! [`SeqTracker`] follows the algorithm of RFC 3550 A.1: a new source is on probation
//! until [`MIN_SEQUENTIAL`] packets arrived in sequence, small forward jumps (below
//! [`MAX_DROPOUT`]) are accepted as loss, packets at most [`MAX_MISORDER`] behind the
//! highest sequence number are late or duplicate, and anything else is a bad sequence
//! number, which restarts the tracking when the next packet follows it in sequence
//! (the sender restarted, or its sequence number jumped).
//!
//! On top of A.1 it tells late packets from duplicates with a bitmap of the last 128
//! extended sequence numbers, and keeps lifetime counters for them.

/// Packets in sequence needed before a new source is valid (RFC 3550 A.1).
pub const MIN_SEQUENTIAL: u16 = 2;
/// Largest forward jump still treated as loss rather than a restart (RFC 3550 A.1).
pub const MAX_DROPOUT: u16 = 3000;
/// Largest backward distance still treated as reordering (RFC 3550 A.1).
pub const MAX_MISORDER: u16 = 100;

const SEQ_MOD: u32 = 1 << 16;
/// Width of the duplicate-detection window, in packets behind the highest.
const WINDOW: u64 = 128;

/// What [`SeqTracker::update`] made of one packet's sequence number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqOutcome {
    /// The source is still on probation; the packet is not counted.
    Probation,
    /// This packet ended the probation: the source is valid and tracking starts here.
    Validated {
        /// Extended sequence number of this packet.
        ext_seq: u64,
    },
    /// A new highest sequence number (`gap` packets were skipped before it).
    Accepted {
        /// Extended sequence number of this packet.
        ext_seq: u64,
        /// How many sequence numbers were skipped (0 when exactly in order).
        gap: u64,
    },
    /// Older than the highest sequence number and not seen before (reordered).
    Late {
        /// Extended sequence number of this packet.
        ext_seq: u64,
    },
    /// A sequence number already received (within the last 128).
    Duplicate {
        /// Extended sequence number of this packet.
        ext_seq: u64,
    },
    /// A large jump: the packet is not counted; if the next one follows it in
    /// sequence, tracking restarts there.
    BadSeq,
    /// The second packet in sequence after a bad sequence number: the source restarted
    /// and tracking restarts at this packet (counters of RFC 3550 A.3 restart too).
    Restarted {
        /// Extended sequence number of this packet (a new base).
        ext_seq: u64,
    },
}

impl SeqOutcome {
    /// Whether RFC 3550 A.1 counts this packet as received.
    pub fn is_counted(self) -> bool {
        !matches!(self, SeqOutcome::Probation | SeqOutcome::BadSeq)
    }
}

/// Per-source sequence-number state of RFC 3550 A.1, with duplicate detection.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    started: bool,
    max_seq: u16,
    /// Sequence-number cycles, shifted left by 16 (as `cycles` in A.1).
    cycles: u64,
    base_seq: u64,
    /// `seq + 1` of the last bad packet; `SEQ_MOD + 1` (never matches) when none.
    bad_seq: u32,
    probation: u16,
    initial_probation: u16,
    received: u64,
    /// Bit `i` set: extended sequence number `highest - i` was received.
    seen: [u64; 2],
    duplicates: u64,
    late: u64,
    bad: u64,
    restarts: u64,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    /// A tracker that puts a new source on probation for [`MIN_SEQUENTIAL`] packets.
    pub fn new() -> Self {
        Self::with_probation(MIN_SEQUENTIAL)
    }

    /// A tracker that needs `probation` packets in sequence before the source is valid.
    /// `0` or `1` accept the first packet at once (useful when the source is already
    /// known to be valid, e.g. in capture analysis, so that it is counted too).
    pub fn with_probation(probation: u16) -> Self {
        SeqTracker {
            started: false,
            max_seq: 0,
            cycles: 0,
            base_seq: 0,
            bad_seq: SEQ_MOD + 1,
            probation: 0,
            initial_probation: probation,
            received: 0,
            seen: [0; 2],
            duplicates: 0,
            late: 0,
            bad: 0,
            restarts: 0,
        }
    }

    // The window of seen packets as two words: a `u128` field would align the
    // tracker (and every statistics struct holding it) to 16 bytes.
    fn seen(&self) -> u128 {
        u128::from(self.seen[0]) | (u128::from(self.seen[1]) << 64)
    }

    fn set_seen(&mut self, v: u128) {
        self.seen = [v as u64, (v >> 64) as u64];
    }

    /// A.1 `init_seq`: restart the tracking at `seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u64::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.set_seen(1);
    }

    /// Feed the sequence number of the next packet (in arrival order).
    pub fn update(&mut self, seq: u16) -> SeqOutcome {
        if !self.started {
            self.started = true;
            if self.initial_probation <= 1 {
                self.init_seq(seq);
                self.received = 1;
                return SeqOutcome::Validated {
                    ext_seq: u64::from(seq),
                };
            }
            self.init_seq(seq);
            self.max_seq = seq.wrapping_sub(1);
            self.probation = self.initial_probation;
        }
        let udelta = seq.wrapping_sub(self.max_seq);
        if self.probation > 0 {
            if seq == self.max_seq.wrapping_add(1) {
                self.probation -= 1;
                self.max_seq = seq;
                if self.probation == 0 {
                    self.init_seq(seq);
                    self.received = 1;
                    return SeqOutcome::Validated {
                        ext_seq: u64::from(seq),
                    };
                }
            } else {
                self.probation = self.initial_probation - 1;
                self.max_seq = seq;
            }
            return SeqOutcome::Probation;
        }
        let outcome = if udelta == 0 {
            self.duplicates += 1;
            SeqOutcome::Duplicate {
                ext_seq: self.highest_ext(),
            }
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                self.cycles += u64::from(SEQ_MOD);
            }
            self.max_seq = seq;
            let d = u64::from(udelta);
            self.set_seen(if d >= WINDOW { 0 } else { self.seen() << d } | 1);
            SeqOutcome::Accepted {
                ext_seq: self.highest_ext(),
                gap: d - 1,
            }
        } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets after a jump: assume the source restarted.
                self.init_seq(seq);
                self.restarts += 1;
                self.received = 1;
                return SeqOutcome::Restarted {
                    ext_seq: u64::from(seq),
                };
            }
            self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
            self.bad += 1;
            return SeqOutcome::BadSeq;
        } else {
            // Behind the highest by at most MAX_MISORDER: reordered or duplicated.
            let back = u64::from(self.max_seq.wrapping_sub(seq));
            let ext_seq = self.highest_ext().saturating_sub(back);
            let bit = 1u128 << back;
            if self.seen() & bit != 0 {
                self.duplicates += 1;
                SeqOutcome::Duplicate { ext_seq }
            } else {
                self.set_seen(self.seen() | bit);
                self.late += 1;
                SeqOutcome::Late { ext_seq }
            }
        };
        self.received += 1;
        outcome
    }

    fn highest_ext(&self) -> u64 {
        self.cycles + u64::from(self.max_seq)
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// The extended highest sequence number received (cycles in the upper bits),
    /// `None` before the source is valid.
    pub fn ext_highest_seq(&self) -> Option<u64> {
        self.is_valid().then(|| self.highest_ext())
    }

    /// The extended sequence number tracking (re)started at.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// Packets counted as received since tracking (re)started (A.1 `received`,
    /// duplicates included, bad sequence numbers excluded).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Packets expected since tracking (re)started: highest - base + 1 (A.3).
    pub fn expected(&self) -> u64 {
        if self.is_valid() {
            self.highest_ext() + 1 - self.base_seq
        } else {
            0
        }
    }

    /// Cumulative number of packets lost (A.3, not clamped): expected - received.
    /// Negative when duplicates outnumber the losses.
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.received as i64
    }

    /// Duplicates seen (lifetime of the tracker).
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Late (reordered) packets seen (lifetime of the tracker).
    pub fn out_of_order(&self) -> u64 {
        self.late
    }

    /// Packets rejected as bad sequence numbers (lifetime of the tracker).
    pub fn bad_seq_count(&self) -> u64 {
        self.bad
    }

    /// How many times tracking restarted after a jump (lifetime of the tracker).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probation_needs_two_sequential() {
        let mut t = SeqTracker::new();
        assert_eq!(t.update(100), SeqOutcome::Probation);
        assert!(!t.is_valid());
        assert_eq!(t.ext_highest_seq(), None);
        // Out of sequence during probation: probation starts over from 200.
        assert_eq!(t.update(200), SeqOutcome::Probation);
        assert_eq!(t.update(201), SeqOutcome::Validated { ext_seq: 201 });
        assert!(t.is_valid());
        // The probation packets are not counted: base is 201, one received.
        assert_eq!(t.base_seq(), 201);
        assert_eq!(t.received(), 1);
        assert_eq!(t.expected(), 1);
        assert_eq!(
            t.update(202),
            SeqOutcome::Accepted {
                ext_seq: 202,
                gap: 0
            }
        );
        assert_eq!(t.received(), 2);
    }

    #[test]
    fn without_probation_counts_first_packet() {
        let mut t = SeqTracker::with_probation(0);
        assert_eq!(t.update(7), SeqOutcome::Validated { ext_seq: 7 });
        assert_eq!(t.expected(), 1);
        assert_eq!(t.received(), 1);
    }

    #[test]
    fn loss_reorder_duplicate() {
        let mut t = SeqTracker::with_probation(0);
        t.update(10);
        // 11 and 12 missing
        assert_eq!(
            t.update(13),
            SeqOutcome::Accepted {
                ext_seq: 13,
                gap: 2
            }
        );
        assert_eq!(t.expected(), 4);
        assert_eq!(t.lost(), 2);
        assert_eq!(t.update(12), SeqOutcome::Late { ext_seq: 12 });
        assert_eq!(t.update(12), SeqOutcome::Duplicate { ext_seq: 12 });
        assert_eq!(t.update(13), SeqOutcome::Duplicate { ext_seq: 13 });
        assert_eq!(t.update(10), SeqOutcome::Duplicate { ext_seq: 10 });
        // received counts duplicates (A.1): 10, 13, 12, 12, 13, 10 = 6 > expected 4
        assert_eq!(t.received(), 6);
        assert_eq!(t.lost(), -2);
        assert_eq!(t.duplicates(), 3);
        assert_eq!(t.out_of_order(), 1);
    }

    #[test]
    fn wrap_counts_cycles() {
        let mut t = SeqTracker::with_probation(0);
        t.update(65534);
        t.update(65535);
        assert_eq!(
            t.update(0),
            SeqOutcome::Accepted {
                ext_seq: 65536,
                gap: 0
            }
        );
        // A late packet from before the wrap keeps the previous cycle.
        assert_eq!(
            t.update(2),
            SeqOutcome::Accepted {
                ext_seq: 65538,
                gap: 1
            }
        );
        assert_eq!(t.update(1), SeqOutcome::Late { ext_seq: 65537 });
        assert_eq!(t.update(65535), SeqOutcome::Duplicate { ext_seq: 65535 });
        assert_eq!(t.ext_highest_seq(), Some(65538));
        // 65534..=65538 = 5 expected, 6 received (one duplicate).
        assert_eq!(t.expected(), 5);
        assert_eq!(t.received(), 6);
    }

    #[test]
    fn jump_then_restart() {
        let mut t = SeqTracker::with_probation(0);
        t.update(1000);
        t.update(1001);
        // 1001 + 3000 is beyond MAX_DROPOUT: bad, not counted.
        assert_eq!(t.update(4001), SeqOutcome::BadSeq);
        assert_eq!(t.received(), 2);
        // A different jump: still bad (not the one after 4001).
        assert_eq!(t.update(9000), SeqOutcome::BadSeq);
        // The packet after the last bad one: restart there.
        assert_eq!(t.update(9001), SeqOutcome::Restarted { ext_seq: 9001 });
        assert_eq!(t.base_seq(), 9001);
        assert_eq!(t.received(), 1);
        assert_eq!(t.expected(), 1);
        assert_eq!(t.bad_seq_count(), 2);
        assert_eq!(t.restarts(), 1);
        assert_eq!(
            t.update(9002),
            SeqOutcome::Accepted {
                ext_seq: 9002,
                gap: 0
            }
        );
    }

    #[test]
    fn dropout_boundaries() {
        // udelta = MAX_DROPOUT - 1 is accepted as loss, MAX_DROPOUT is bad.
        let mut t = SeqTracker::with_probation(0);
        t.update(0);
        assert_eq!(
            t.update(MAX_DROPOUT - 1),
            SeqOutcome::Accepted {
                ext_seq: u64::from(MAX_DROPOUT - 1),
                gap: u64::from(MAX_DROPOUT - 2)
            }
        );
        let mut t = SeqTracker::with_probation(0);
        t.update(0);
        assert_eq!(t.update(MAX_DROPOUT), SeqOutcome::BadSeq);
        // MAX_MISORDER behind is still "late" (udelta = 65536 - 100 is in the bad range
        // by A.1's `<=`, so exactly 100 behind is bad; 99 behind is late).
        let mut t = SeqTracker::with_probation(0);
        t.update(500);
        assert_eq!(t.update(401), SeqOutcome::Late { ext_seq: 401 });
        assert_eq!(t.update(400), SeqOutcome::BadSeq);
    }
}

#[cfg(test)]
mod proptests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// An in-order stream with some packets dropped (gaps below MAX_DROPOUT),
        /// starting anywhere (so often across the wrap): every counter is predictable.
        #[test]
        fn in_order_with_drops(start in any::<u16>(), steps in prop::collection::vec(1u16..50, 1..400)) {
            let mut t = SeqTracker::with_probation(0);
            t.update(start);
            let mut ext = u64::from(start);
            let mut dropped = 0u64;
            for s in &steps {
                ext += u64::from(*s);
                dropped += u64::from(*s - 1);
                let out = t.update(ext as u16);
                prop_assert_eq!(out, SeqOutcome::Accepted { ext_seq: ext, gap: u64::from(*s - 1) });
            }
            prop_assert_eq!(t.ext_highest_seq(), Some(ext));
            prop_assert_eq!(t.received(), steps.len() as u64 + 1);
            prop_assert_eq!(t.expected(), ext - u64::from(start) + 1);
            prop_assert_eq!(t.lost(), dropped as i64);
            prop_assert_eq!(t.duplicates() + t.out_of_order() + t.bad_seq_count(), 0);
        }

        /// Any permutation of a window of at most 50 packets (less than MAX_MISORDER)
        /// with duplicates: nothing is lost, each extra copy is a duplicate.
        #[test]
        fn reorder_and_duplicates(start in any::<u16>(), n in 2usize..50,
                                  swaps in prop::collection::vec((0usize..50, 0usize..50), 0..30),
                                  dups in prop::collection::vec(0usize..50, 0..10)) {
            let mut order: Vec<usize> = (0..n).collect();
            for (a, b) in swaps {
                order.swap(a % n, b % n);
            }
            // The first packet must come first (it is the base).
            let p0 = order.iter().position(|x| *x == 0).unwrap();
            order.swap(0, p0);
            for d in &dups {
                order.push(d % n);
            }
            let mut t = SeqTracker::with_probation(0);
            for i in &order {
                let out = t.update(start.wrapping_add(*i as u16));
                prop_assert!(out.is_counted());
            }
            prop_assert_eq!(t.expected(), n as u64);
            prop_assert_eq!(t.received(), order.len() as u64);
            prop_assert_eq!(t.duplicates(), dups.len() as u64);
            prop_assert_eq!(t.lost(), -(dups.len() as i64));
        }
    }
}
