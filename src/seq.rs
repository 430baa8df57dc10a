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
//!
//! A gateway holds one tracker per received stream, so the state is 32-bit where
//! A.1 itself is: `cycles`, `base_seq` and `received` are `u32` and wrap as in A.1,
//! so extended sequence numbers (and [`SeqTracker::expected`]) are modulo 2^32, as the
//! 32-bit field of a report block carries them. Every extended number the tracker
//! returns is the one a 64-bit tracker would return, modulo 2^32. The lifetime
//! counters (duplicates, late, bad, restarts) are `u32` too and saturate at
//! `u32::MAX`. The getters widen to the `u64`/`i64` of the API.

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
///
/// 56 bytes on 64-bit targets: one per received stream in a gateway.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    started: bool,
    /// `cycles` wrapped past 2^32 since tracking (re)started: from then on a late
    /// packet's extended number wraps below 0 too (before, it saturates at 0, as a
    /// 64-bit count would).
    wrapped: bool,
    max_seq: u16,
    probation: u16,
    initial_probation: u16,
    /// Sequence-number cycles, shifted left by 16 (as `cycles` in A.1: 32 bits,
    /// wrapping).
    cycles: u32,
    base_seq: u32,
    /// `seq + 1` of the last bad packet; `SEQ_MOD + 1` (never matches) when none.
    bad_seq: u32,
    /// A.1 `received` (32 bits, wrapping, as `expected` does).
    received: u32,
    /// Bit `i` set: extended sequence number `highest - i` was received.
    seen: [u64; 2],
    // Lifetime counters, saturating.
    duplicates: u32,
    late: u32,
    bad: u32,
    restarts: u32,
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
            wrapped: false,
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
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = SEQ_MOD + 1;
        self.cycles = 0;
        self.wrapped = false;
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
            self.duplicates = self.duplicates.saturating_add(1);
            SeqOutcome::Duplicate {
                ext_seq: self.highest_ext(),
            }
        } else if udelta < MAX_DROPOUT {
            if seq < self.max_seq {
                // A.1: `s->cycles += RTP_SEQ_MOD`, 32 bits.
                self.cycles = self.cycles.wrapping_add(SEQ_MOD);
                if self.cycles == 0 {
                    self.wrapped = true;
                }
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
                self.restarts = self.restarts.saturating_add(1);
                self.received = 1;
                return SeqOutcome::Restarted {
                    ext_seq: u64::from(seq),
                };
            }
            self.bad_seq = (u32::from(seq) + 1) & (SEQ_MOD - 1);
            self.bad = self.bad.saturating_add(1);
            return SeqOutcome::BadSeq;
        } else {
            // Behind the highest by at most MAX_MISORDER: reordered or duplicated.
            let back = self.max_seq.wrapping_sub(seq);
            let highest = self.highest_ext32();
            // Before the first 2^32 wrap, a packet from before extended number 0 is
            // numbered 0 (as with unbounded numbers); after it, it is in the
            // previous cycle modulo 2^32.
            let ext_seq = u64::from(if self.wrapped {
                highest.wrapping_sub(u32::from(back))
            } else {
                highest.saturating_sub(u32::from(back))
            });
            // `back` < MAX_MISORDER < 128: inside the window.
            let bit = 1u128 << back;
            if self.seen() & bit != 0 {
                self.duplicates = self.duplicates.saturating_add(1);
                SeqOutcome::Duplicate { ext_seq }
            } else {
                self.set_seen(self.seen() | bit);
                self.late = self.late.saturating_add(1);
                SeqOutcome::Late { ext_seq }
            }
        };
        self.received = self.received.wrapping_add(1);
        outcome
    }

    /// A.3 `extended_max`: cycles + max_seq, 32 bits.
    fn highest_ext32(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    fn highest_ext(&self) -> u64 {
        u64::from(self.highest_ext32())
    }

    /// A.3 `expected` in 32 bits (wrapping), 0 before the source is valid.
    pub(crate) fn expected_u32(&self) -> u32 {
        if self.is_valid() {
            self.highest_ext32()
                .wrapping_sub(self.base_seq)
                .wrapping_add(1)
        } else {
            0
        }
    }

    /// A.1 `received` in 32 bits (wrapping).
    pub(crate) fn received_u32(&self) -> u32 {
        self.received
    }

    /// Whether the source has passed probation.
    pub fn is_valid(&self) -> bool {
        self.started && self.probation == 0
    }

    /// The extended highest sequence number received (cycles in the upper bits, 32
    /// bits in all as in RFC 3550: it wraps to 0 after 2^32), `None` before the
    /// source is valid.
    pub fn ext_highest_seq(&self) -> Option<u64> {
        self.is_valid().then(|| self.highest_ext())
    }

    /// The extended sequence number tracking (re)started at.
    pub fn base_seq(&self) -> u64 {
        u64::from(self.base_seq)
    }

    /// Packets counted as received since tracking (re)started (A.1 `received`,
    /// duplicates included, bad sequence numbers excluded). 32 bits as in A.1:
    /// wraps to 0 after 2^32 packets, as [`expected`](Self::expected) does.
    pub fn received(&self) -> u64 {
        u64::from(self.received)
    }

    /// Packets expected since tracking (re)started: highest - base + 1 (A.3),
    /// modulo 2^32 as in A.3.
    pub fn expected(&self) -> u64 {
        u64::from(self.expected_u32())
    }

    /// Cumulative number of packets lost (A.3, not clamped): expected - received.
    /// Negative when duplicates outnumber the losses. Computed as A.3 does, the
    /// 32-bit difference read as signed, so it stays right when `expected` and
    /// `received` wrap (and is exact while it lies within ±2^31).
    pub fn lost(&self) -> i64 {
        i64::from(self.expected_u32().wrapping_sub(self.received) as i32)
    }

    /// Duplicates seen (lifetime of the tracker, saturates at `u32::MAX`).
    pub fn duplicates(&self) -> u64 {
        u64::from(self.duplicates)
    }

    /// Late (reordered) packets seen (lifetime of the tracker, saturates at
    /// `u32::MAX`).
    pub fn out_of_order(&self) -> u64 {
        u64::from(self.late)
    }

    /// Packets rejected as bad sequence numbers (lifetime of the tracker,
    /// saturates at `u32::MAX`).
    pub fn bad_seq_count(&self) -> u64 {
        u64::from(self.bad)
    }

    /// How many times tracking restarted after a jump (lifetime of the tracker,
    /// saturates at `u32::MAX`).
    pub fn restarts(&self) -> u64 {
        u64::from(self.restarts)
    }

    /// A tracker without probation that received one packet with extended
    /// sequence number `ext` (the base), to test the 32-bit wrap.
    #[cfg(test)]
    pub(crate) fn started_at(ext: u32) -> Self {
        let mut t = Self::with_probation(0);
        t.update(ext as u16);
        t.cycles = ext & !(SEQ_MOD - 1);
        t.base_seq = ext;
        t
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
    fn size() {
        // One per received stream in a gateway (was 88 bytes with 64-bit counters).
        assert!(std::mem::size_of::<SeqTracker>() <= 56);
    }

    #[test]
    fn extended_seq_wraps_at_32_bits() {
        // Base 0xffff_fff0, in cycle 0xffff; 0xfff0..=0xffff then 0..=0x10 across
        // the wrap, with 0xfffe and 1..=3 lost; 0xfffe and 2 arrive late, and
        // 0xffff, 2 and 4 twice.
        let mut t = SeqTracker::started_at(0xffff_fff0);
        assert_eq!(t.ext_highest_seq(), Some(0xffff_fff0));
        for seq in (0xfff1u16..=0xfffd).chain([0xffff]) {
            assert!(matches!(t.update(seq), SeqOutcome::Accepted { .. }));
        }
        assert_eq!(t.ext_highest_seq(), Some(0xffff_ffff));
        assert_eq!(t.expected(), 16);
        assert_eq!(t.received(), 15);
        assert_eq!(t.lost(), 1);
        // The cycle count wraps: extended numbers start over at 0 (A.1, 32 bits).
        assert_eq!(t.update(0), SeqOutcome::Accepted { ext_seq: 0, gap: 0 });
        assert_eq!(t.update(4), SeqOutcome::Accepted { ext_seq: 4, gap: 3 });
        assert_eq!(t.ext_highest_seq(), Some(4));
        assert_eq!(t.base_seq(), 0xffff_fff0);
        // 0xffff_fff0..=0x1_0000_0004 is 21 packets: expected is computed modulo 2^32.
        assert_eq!(t.expected(), 21);
        assert_eq!(t.received(), 17);
        assert_eq!(t.lost(), 4);
        // Late and duplicate packets from before the wrap are numbered in the
        // previous cycle (modulo 2^32), and the window still knows them.
        assert_eq!(
            t.update(0xfffe),
            SeqOutcome::Late {
                ext_seq: 0xffff_fffe
            }
        );
        assert_eq!(
            t.update(0xffff),
            SeqOutcome::Duplicate {
                ext_seq: 0xffff_ffff
            }
        );
        assert_eq!(t.update(2), SeqOutcome::Late { ext_seq: 2 });
        assert_eq!(t.update(2), SeqOutcome::Duplicate { ext_seq: 2 });
        assert_eq!(t.update(4), SeqOutcome::Duplicate { ext_seq: 4 });
        assert_eq!(t.received(), 22);
        assert_eq!(t.lost(), -1);
        assert_eq!((t.duplicates(), t.out_of_order()), (3, 2));
        for seq in 5u16..=0x10 {
            t.update(seq);
        }
        assert_eq!(t.ext_highest_seq(), Some(0x10));
        assert_eq!(t.expected(), 33);
        assert_eq!(t.received(), 34);
        assert_eq!(t.lost(), -1);
    }

    #[test]
    fn lost_survives_expected_and_received_wrap() {
        // Extended numbers 0 to 0xffff_fff0 expected, 5 of them lost: expected =
        // 0xffff_fff1, received = 0xffff_ffec. Then 0xfff1..=0x5 with three lost:
        // expected wraps past 2^32 and received does not yet; `lost` (their 32-bit
        // difference, as in A.3) stays right: 8.
        let mut t = SeqTracker::started_at(0xffff_fff0);
        t.base_seq = 0;
        t.received = 0xffff_ffec;
        assert_eq!(t.expected(), 0xffff_fff1);
        assert_eq!(t.lost(), 5);
        for seq in (0xfff1u16..=0xffff).chain(0..=5) {
            if ![0xfff5, 0xfffc, 0x2].contains(&seq) {
                t.update(seq);
            }
        }
        // 0x1_0000_0006 expected modulo 2^32.
        assert_eq!(t.expected(), 6);
        assert_eq!(t.received(), 0xffff_fffe);
        assert_eq!(t.lost(), 8);
        // A late one comes in after all, and then received wraps too.
        assert_eq!(
            t.update(0xfffc),
            SeqOutcome::Late {
                ext_seq: 0xffff_fffc
            }
        );
        assert_eq!(t.lost(), 7);
        for seq in 6u16..=9 {
            t.update(seq);
        }
        assert_eq!((t.expected(), t.received(), t.lost()), (10, 3, 7));
    }

    #[test]
    fn before_first_wrap_late_saturates_at_zero() {
        // As with unbounded extended numbers: a packet from before extended number 0
        // (never wrapped) is numbered 0, it does not wrap to 0xffff_ffxx.
        let mut t = SeqTracker::with_probation(0);
        t.update(5);
        assert_eq!(t.update(0xfffe), SeqOutcome::Late { ext_seq: 0 });
        assert_eq!(t.expected(), 1);
        assert_eq!(t.received(), 2);
        assert_eq!(t.lost(), -1);
    }

    #[test]
    fn lifetime_counters_saturate() {
        let mut t = SeqTracker::with_probation(0);
        t.update(1000);
        t.update(1001);
        t.duplicates = u32::MAX - 1;
        t.late = u32::MAX - 1;
        t.bad = u32::MAX - 1;
        t.restarts = u32::MAX - 1;
        t.update(1003);
        for _ in 0..2 {
            assert!(matches!(t.update(1003), SeqOutcome::Duplicate { .. }));
        }
        assert_eq!(t.update(1002), SeqOutcome::Late { ext_seq: 1002 });
        t.late = u32::MAX;
        assert_eq!(t.update(999), SeqOutcome::Late { ext_seq: 999 });
        for _ in 0..2 {
            assert_eq!(t.update(9000), SeqOutcome::BadSeq);
        }
        assert_eq!(t.update(9001), SeqOutcome::Restarted { ext_seq: 9001 });
        assert_eq!(t.update(20_000), SeqOutcome::BadSeq);
        assert_eq!(t.update(20_001), SeqOutcome::Restarted { ext_seq: 20_001 });
        let max = u64::from(u32::MAX);
        assert_eq!(t.duplicates(), max);
        assert_eq!(t.out_of_order(), max);
        assert_eq!(t.bad_seq_count(), max);
        assert_eq!(t.restarts(), max);
        // Tracking itself is unaffected.
        assert_eq!((t.expected(), t.received(), t.lost()), (1, 1, 0));
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

    /// The tracker as it was with 64-bit state (extended numbers never wrap), as
    /// the reference the 32-bit one must agree with modulo 2^32.
    struct Wide {
        started: bool,
        max_seq: u16,
        cycles: u64,
        base_seq: u64,
        bad_seq: u32,
        probation: u16,
        initial_probation: u16,
        received: u64,
        seen: u128,
        duplicates: u64,
        late: u64,
        bad: u64,
        restarts: u64,
    }

    impl Wide {
        fn new(probation: u16) -> Self {
            Wide {
                started: false,
                max_seq: 0,
                cycles: 0,
                base_seq: 0,
                bad_seq: SEQ_MOD + 1,
                probation: 0,
                initial_probation: probation,
                received: 0,
                seen: 0,
                duplicates: 0,
                late: 0,
                bad: 0,
                restarts: 0,
            }
        }

        fn init_seq(&mut self, seq: u16) {
            self.base_seq = u64::from(seq);
            self.max_seq = seq;
            self.bad_seq = SEQ_MOD + 1;
            self.cycles = 0;
            self.received = 0;
            self.seen = 1;
        }

        fn highest(&self) -> u64 {
            self.cycles + u64::from(self.max_seq)
        }

        fn expected(&self) -> u64 {
            if self.started && self.probation == 0 {
                self.highest() + 1 - self.base_seq
            } else {
                0
            }
        }

        fn update(&mut self, seq: u16) -> SeqOutcome {
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
                    ext_seq: self.highest(),
                }
            } else if udelta < MAX_DROPOUT {
                if seq < self.max_seq {
                    self.cycles += u64::from(SEQ_MOD);
                }
                self.max_seq = seq;
                let d = u64::from(udelta);
                self.seen = if d >= WINDOW { 0 } else { self.seen << d } | 1;
                SeqOutcome::Accepted {
                    ext_seq: self.highest(),
                    gap: d - 1,
                }
            } else if u32::from(udelta) <= SEQ_MOD - u32::from(MAX_MISORDER) {
                if u32::from(seq) == self.bad_seq {
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
                let back = u64::from(self.max_seq.wrapping_sub(seq));
                let ext_seq = self.highest().saturating_sub(back);
                let bit = 1u128 << back;
                if self.seen & bit != 0 {
                    self.duplicates += 1;
                    SeqOutcome::Duplicate { ext_seq }
                } else {
                    self.seen |= bit;
                    self.late += 1;
                    SeqOutcome::Late { ext_seq }
                }
            };
            self.received += 1;
            outcome
        }
    }

    fn mod32(o: SeqOutcome) -> SeqOutcome {
        let m = |x: u64| x & 0xffff_ffff;
        match o {
            SeqOutcome::Validated { ext_seq } => SeqOutcome::Validated {
                ext_seq: m(ext_seq),
            },
            SeqOutcome::Accepted { ext_seq, gap } => SeqOutcome::Accepted {
                ext_seq: m(ext_seq),
                gap,
            },
            SeqOutcome::Late { ext_seq } => SeqOutcome::Late {
                ext_seq: m(ext_seq),
            },
            SeqOutcome::Duplicate { ext_seq } => SeqOutcome::Duplicate {
                ext_seq: m(ext_seq),
            },
            SeqOutcome::Restarted { ext_seq } => SeqOutcome::Restarted {
                ext_seq: m(ext_seq),
            },
            other => other,
        }
    }

    /// What a random stream sends next, relative to the last packet sent forward
    /// (the cursor).
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// The cursor moves forward by this much (0: a duplicate) and is sent.
        Forward(u16),
        /// The packet this far behind the cursor is sent (late, duplicate or bad).
        Behind(u16),
        /// Any sequence number, the cursor stays (mostly a bad sequence number).
        Stray(u16),
        /// The cursor jumps by this much: the source restarts (bad sequence
        /// numbers until two follow each other).
        Jump(u16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            75 => (0u16..40).prop_map(Step::Forward),
            20 => (1u16..140).prop_map(Step::Behind),
            4 => any::<u16>().prop_map(Step::Stray),
            1 => any::<u16>().prop_map(Step::Jump),
        ]
    }

    proptest! {
        /// The 32-bit tracker agrees with the 64-bit one on every outcome and
        /// counter, modulo 2^32 for extended numbers, from a fresh tracker or from
        /// one moved (once valid) to the last cycle before the 2^32 wrap of the
        /// extended numbers, with any probation.
        #[test]
        fn agrees_with_64_bit_tracker(start in any::<u16>(), probation in 0u16..4,
                                      near_wrap in any::<bool>(),
                                      steps in prop::collection::vec(step(), 1..500)) {
            // Near the wrap, start less than 512 before the end of the cycle.
            let start = if near_wrap { 0xfe00 | (start & 0x1ff) } else { start };
            let mut t = SeqTracker::with_probation(probation);
            let mut w = Wide::new(probation);
            let mut moved = !near_wrap;
            // Once valid, move both to cycle 0xffff (as if that many extended
            // numbers had gone by since the base).
            let mut move_to_last_cycle = |t: &mut SeqTracker, w: &mut Wide| {
                if !moved && t.is_valid() {
                    moved = true;
                    t.cycles = 0xffff << 16;
                    t.base_seq |= t.cycles;
                    w.cycles = u64::from(t.cycles);
                    w.base_seq = u64::from(t.base_seq);
                }
            };
            prop_assert_eq!(t.update(start), w.update(start));
            move_to_last_cycle(&mut t, &mut w);
            let mut cursor = start;
            for step in steps {
                let seq = match step {
                    Step::Forward(k) | Step::Jump(k) => {
                        cursor = cursor.wrapping_add(k);
                        cursor
                    }
                    Step::Behind(k) => cursor.wrapping_sub(k),
                    Step::Stray(x) => x,
                };
                let (a, b) = (t.update(seq), w.update(seq));
                prop_assert_eq!(a, mod32(b), "seq {}", seq);
                move_to_last_cycle(&mut t, &mut w);
                prop_assert_eq!(t.ext_highest_seq(), t.is_valid().then(|| w.highest() & 0xffff_ffff));
                prop_assert_eq!(t.base_seq(), w.base_seq & 0xffff_ffff);
                prop_assert_eq!(t.expected(), w.expected() & 0xffff_ffff);
                prop_assert_eq!(t.received(), w.received);
                prop_assert_eq!(t.lost(), w.expected() as i64 - w.received as i64);
                prop_assert_eq!(t.duplicates(), w.duplicates);
                prop_assert_eq!(t.out_of_order(), w.late);
                prop_assert_eq!(t.bad_seq_count(), w.bad);
                prop_assert_eq!(t.restarts(), w.restarts);
            }
        }

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
