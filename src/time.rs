//! NTP and RTP time arithmetic (RFC 3550 sections 4, 5.1 and 6.4.1).
//!
//! Nothing here reads a clock: wall-clock times come in as a [`Duration`] since the
//! UNIX epoch, chosen by the caller.

use core::time::Duration;

/// Seconds from the NTP epoch (1900-01-01) to the UNIX epoch (1970-01-01).
pub const NTP_UNIX_OFFSET_SECS: u64 = 2_208_988_800;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A 64-bit NTP timestamp: seconds since 1900 in the upper 32 bits, the binary
/// fraction of a second in the lower 32 bits (RFC 3550 section 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTime(pub u64);

impl NtpTime {
    /// From seconds and fraction (units of 2^-32 s).
    pub const fn new(secs: u32, frac: u32) -> Self {
        NtpTime(((secs as u64) << 32) | frac as u64)
    }

    /// The seconds part.
    pub const fn secs(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The fraction part, in units of 2^-32 s.
    pub const fn frac(self) -> u32 {
        self.0 as u32
    }

    /// The NTP time of `since_unix` after the UNIX epoch. The seconds wrap modulo 2^32
    /// (NTP era 1 starts in February 2036); the fraction is rounded to nearest.
    pub fn from_unix(since_unix: Duration) -> Self {
        // Only the low 32 bits are kept, so a wrapping sum loses nothing.
        let secs = since_unix.as_secs().wrapping_add(NTP_UNIX_OFFSET_SECS);
        let frac = nanos_to_frac(since_unix.subsec_nanos());
        // A fraction that rounds up to a whole second carries into the seconds.
        NtpTime((secs << 32).wrapping_add(frac))
    }

    /// The time since the UNIX epoch. Seconds below the UNIX epoch's NTP value are taken
    /// to be in NTP era 1 (after 2036-02-07), as RFC 4330 section 3 suggests.
    pub fn to_unix(self) -> Duration {
        let secs = u64::from(self.secs());
        let secs = if secs >= NTP_UNIX_OFFSET_SECS {
            secs - NTP_UNIX_OFFSET_SECS
        } else {
            secs + (1u64 << 32) - NTP_UNIX_OFFSET_SECS
        };
        Duration::new(secs, frac_to_nanos(self.frac()))
    }

    /// The middle 32 bits (16.16 fixed point seconds), as used by LSR and DLSR.
    pub const fn to_compact(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// Converts a fraction of a second in units of 2^-32 s to nanoseconds (rounded).
fn frac_to_nanos(frac: u32) -> u32 {
    ((u128::from(frac) * NANOS_PER_SEC + (1 << 31)) >> 32) as u32
}

/// Converts nanoseconds (< 10^9) to units of 2^-32 s (rounded); may return 2^32.
fn nanos_to_frac(nanos: u32) -> u64 {
    (((u128::from(nanos) << 32) + NANOS_PER_SEC / 2) / NANOS_PER_SEC) as u64
}

/// A compact NTP value (16.16 fixed point seconds, e.g. DLSR or an RTT) as a duration.
pub fn compact_to_duration(compact: u32) -> Duration {
    let nanos = (u128::from(compact) * NANOS_PER_SEC + (1 << 15)) >> 16;
    Duration::from_nanos(nanos as u64)
}

/// A duration as a compact NTP value (16.16 fixed point, rounded), saturating at
/// 65535.99998 s.
pub fn duration_to_compact(d: Duration) -> u32 {
    let units = ((d.as_nanos() << 16) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    u32::try_from(units).unwrap_or(u32::MAX)
}

/// An RTP timestamp difference as a duration at `clock_rate` Hz (rounded to the
/// nanosecond). A clock rate of 0 gives zero.
pub fn rtp_ts_to_duration(delta_ts: u64, clock_rate: u32) -> Duration {
    if clock_rate == 0 {
        return Duration::ZERO;
    }
    let rate = u128::from(clock_rate);
    let nanos = (u128::from(delta_ts) * NANOS_PER_SEC + rate / 2) / rate;
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// A duration in RTP timestamp units at `clock_rate` Hz (rounded to nearest).
pub fn duration_to_rtp_ts(d: Duration, clock_rate: u32) -> u64 {
    let units = (d.as_nanos() * u128::from(clock_rate) + NANOS_PER_SEC / 2) / NANOS_PER_SEC;
    u64::try_from(units).unwrap_or(u64::MAX)
}

/// `a - b` for 32-bit RTP timestamps that may have wrapped: the difference of
/// smallest magnitude (in -2^31 ..= 2^31 - 1).
pub fn ts_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Unwraps 32-bit RTP timestamps into a 64-bit monotonic-ish timeline.
///
/// Each timestamp is placed at the smallest distance from the previous one (so a
/// step of more than 2^31 units backwards or forwards is misread, as with any
/// unwrapper). The first timestamp maps to itself; timestamps before it across a wrap
/// come out negative.
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpTimestampExtender {
    last: Option<(u32, i64)>,
}

impl RtpTimestampExtender {
    /// A fresh extender.
    pub fn new() -> Self {
        Self::default()
    }

    /// Extends `ts` relative to the previous timestamp given.
    pub fn extend(&mut self, ts: u32) -> i64 {
        let ext = match self.last {
            None => i64::from(ts),
            Some((last_ts, last_ext)) => last_ext + ts_diff(ts, last_ts),
        };
        self.last = Some((ts, ext));
        ext
    }

    /// The last extended timestamp returned, if any.
    pub fn last(&self) -> Option<i64> {
        self.last.map(|(_, e)| e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_of_unix_epoch_and_known_time() {
        assert_eq!(
            NtpTime::from_unix(Duration::ZERO),
            NtpTime::new(2_208_988_800, 0)
        );
        // 2000-01-01T00:00:00Z is 946684800 s after the UNIX epoch; NTP seconds
        // 946684800 + 2208988800 = 3155673600.
        let t = NtpTime::from_unix(Duration::from_secs(946_684_800));
        assert_eq!(t.secs(), 3_155_673_600);
        assert_eq!(t.frac(), 0);
        // Half a second is 2^31 in the fraction, a quarter 2^30.
        let t = NtpTime::from_unix(Duration::from_millis(1_500));
        assert_eq!((t.secs(), t.frac()), (2_208_988_801, 0x8000_0000));
        let t = NtpTime::from_unix(Duration::from_millis(250));
        assert_eq!(t.frac(), 0x4000_0000);
        // Round trip.
        let d = Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(NtpTime::from_unix(d).to_unix(), d);
    }

    #[test]
    fn ntp_era_one() {
        // 2036-02-07T06:28:16Z: NTP seconds wrap to 0 (2^32 - 2208988800 = 2085978496).
        let d = Duration::from_secs(2_085_978_496);
        let t = NtpTime::from_unix(d);
        assert_eq!(t.secs(), 0);
        assert_eq!(t.to_unix(), d);
    }

    #[test]
    fn from_unix_far_future_wraps_without_overflow() {
        // The seconds are taken modulo 2^32; a huge duration must not overflow the
        // 64-bit addition of the NTP offset (a panic in debug builds).
        let d = Duration::new(u64::MAX, 0);
        let want = (u64::MAX as u32).wrapping_add(NTP_UNIX_OFFSET_SECS as u32);
        assert_eq!(NtpTime::from_unix(d), NtpTime::new(want, 0));
    }

    #[test]
    fn fraction_rounding_carries() {
        // 999999999.9 ns rounds to a full second's fraction: carries into the seconds.
        let t = NtpTime::from_unix(Duration::new(0, 999_999_999));
        // 0.999999999 * 2^32 = 4294967291.7 -> 4294967292, no carry here
        assert_eq!(t.frac(), 4_294_967_292);
        assert_eq!(t.secs(), 2_208_988_800);
    }

    #[test]
    fn compact_middle_bits() {
        // RFC 3550 6.4.1 example: 46853.125 s is 0xb705:2000 in compact form.
        let t = NtpTime::new(0x0000_b705, 0x2000_0000);
        assert_eq!(t.to_compact(), 0xb705_2000);
        let t = NtpTime(0x1234_5678_9abc_def0);
        assert_eq!(t.to_compact(), 0x5678_9abc);
        assert_eq!(
            compact_to_duration(0x0005_4000),
            Duration::from_millis(5_250)
        );
        assert_eq!(
            duration_to_compact(Duration::from_millis(5_250)),
            0x0005_4000
        );
        // 1/65536 s = 15258.789 ns
        assert_eq!(compact_to_duration(1), Duration::from_nanos(15_259));
        assert_eq!(duration_to_compact(Duration::from_secs(70_000)), u32::MAX);
    }

    #[test]
    fn rtp_units() {
        assert_eq!(rtp_ts_to_duration(160, 8000), Duration::from_millis(20));
        assert_eq!(
            rtp_ts_to_duration(3000, 90_000),
            Duration::from_nanos(33_333_333)
        );
        assert_eq!(rtp_ts_to_duration(960, 48_000), Duration::from_millis(20));
        assert_eq!(rtp_ts_to_duration(5, 0), Duration::ZERO);
        assert_eq!(duration_to_rtp_ts(Duration::from_millis(20), 8000), 160);
        assert_eq!(duration_to_rtp_ts(Duration::from_secs(1), 90_000), 90_000);
        assert_eq!(
            duration_to_rtp_ts(Duration::from_nanos(33_333_333), 90_000),
            3000
        );
    }

    #[test]
    fn wrapping_diff() {
        assert_eq!(ts_diff(160, 0), 160);
        assert_eq!(ts_diff(0, 160), -160);
        assert_eq!(ts_diff(100, u32::MAX - 59), 160);
        assert_eq!(ts_diff(u32::MAX - 59, 100), -160);
        assert_eq!(ts_diff(0x8000_0000, 0), -(1i64 << 31));
    }

    #[test]
    fn extender_unwraps() {
        let mut e = RtpTimestampExtender::new();
        assert_eq!(e.extend(u32::MAX - 159), i64::from(u32::MAX - 159));
        assert_eq!(e.extend(0), 1i64 << 32);
        assert_eq!(e.extend(160), (1i64 << 32) + 160);
        // reordered old packet from before the wrap
        assert_eq!(e.extend(u32::MAX - 159), i64::from(u32::MAX - 159));
        assert_eq!(e.extend(320), (1i64 << 32) + 320);
        let mut e = RtpTimestampExtender::new();
        e.extend(10);
        assert_eq!(e.extend(u32::MAX), -1);
        assert_eq!(e.last(), Some(-1));
    }
}
