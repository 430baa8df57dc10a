//! DTLS record layer framing (RFC 6347 4.1) and the anti-replay window.

use super::codec::{put_u16, put_u48, Reader};
use super::DtlsError;

pub(crate) const CT_CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const CT_ALERT: u8 = 21;
pub(crate) const CT_HANDSHAKE: u8 = 22;
pub(crate) const CT_APPLICATION_DATA: u8 = 23;

/// Record header length.
pub(crate) const HEADER_LEN: usize = 13;
/// DTLS 1.2 on the wire.
pub(crate) const DTLS12: u16 = 0xFEFD;
/// DTLS 1.0 on the wire (HelloVerifyRequest, some first ClientHellos).
pub(crate) const DTLS10: u16 = 0xFEFF;

/// One record of a datagram, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) content_type: u8,
    pub(crate) epoch: u16,
    pub(crate) seq: u64,
    pub(crate) body: &'a [u8],
}

impl Record<'_> {
    /// epoch(16) || seq(48), the nonce and AAD prefix.
    pub(crate) fn epoch_seq(&self) -> u64 {
        ((self.epoch as u64) << 48) | self.seq
    }
}

/// Splits a datagram into records. A malformed record ends the walk: what came
/// before is returned, with `true` if something was cut off.
pub(crate) fn parse_records(datagram: &[u8]) -> (Vec<Record<'_>>, bool) {
    let mut out = Vec::new();
    let mut r = Reader::new(datagram, "DTLS record");
    while !r.is_empty() {
        match parse_one(&mut r) {
            Ok(rec) => out.push(rec),
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

fn parse_one<'a>(r: &mut Reader<'a>) -> Result<Record<'a>, DtlsError> {
    let content_type = r.u8()?;
    let version = r.u16()?;
    let epoch = r.u16()?;
    let seq = r.u48()?;
    let body = r.vec16()?;
    if !(CT_CHANGE_CIPHER_SPEC..=CT_APPLICATION_DATA).contains(&content_type) {
        return Err(DtlsError::Decode(format!("record type {content_type}")));
    }
    if version >> 8 != 0xFE {
        return Err(DtlsError::Decode(format!("record version {version:#06x}")));
    }
    Ok(Record {
        content_type,
        epoch,
        seq,
        body,
    })
}

/// Parses every record of a datagram (fuzzing entry point); returns the count.
#[doc(hidden)]
pub fn fuzz_parse_records(datagram: &[u8]) -> usize {
    parse_records(datagram).0.len()
}

/// Appends a record header + body.
pub(crate) fn write_record(
    out: &mut Vec<u8>,
    content_type: u8,
    version: u16,
    epoch: u16,
    seq: u64,
    body: &[u8],
) {
    out.push(content_type);
    put_u16(out, version);
    put_u16(out, epoch);
    put_u48(out, seq);
    put_u16(out, body.len() as u16);
    out.extend_from_slice(body);
}

/// The RFC 6347 4.1.2.6 sliding window (64 records) of one epoch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted so far, if any.
    top: Option<u64>,
    /// Bit i set: `top - i` was seen.
    bits: u64,
}

impl ReplayWindow {
    /// True if `seq` is new and inside the window (does not record it).
    pub(crate) fn check(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let d = top - seq;
                d < 64 && self.bits & (1 << d) == 0
            }
        }
    }

    /// Like [`Self::check`], but a record below the window counts as new. For
    /// epoch 0, which is not authenticated: a spoofed record with a huge sequence
    /// number must not push the peer's real records out of the window.
    pub(crate) fn check_unauthenticated(&self, seq: u64) -> bool {
        match self.top {
            Some(top) if seq <= top && top - seq >= 64 => true,
            _ => self.check(seq),
        }
    }

    /// Records `seq` (call after the record authenticated).
    pub(crate) fn mark(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
            Some(top) if seq > top => {
                let d = seq - top;
                self.bits = if d >= 64 { 0 } else { self.bits << d };
                self.bits |= 1;
                self.top = Some(seq);
            }
            Some(top) => {
                let d = top - seq;
                if d < 64 {
                    self.bits |= 1 << d;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::default();
        assert!(w.check(5));
        w.mark(5);
        assert!(!w.check(5));
        assert!(w.check(4));
        w.mark(100);
        assert!(!w.check(5), "fell out of the window");
        assert!(w.check(99));
        w.mark(99);
        assert!(!w.check(99));
        assert!(w.check(37));
        assert!(!w.check(36));
        assert!(w.check(1000));
        // Epoch 0: a spoofed far-ahead record does not lock out the real ones.
        let mut w = ReplayWindow::default();
        w.mark(3);
        w.mark(1 << 40);
        assert!(!w.check(4));
        assert!(w.check_unauthenticated(4));
        assert!(!w.check_unauthenticated(1 << 40));
    }

    #[test]
    fn records_walk() {
        let mut d = Vec::new();
        write_record(&mut d, CT_HANDSHAKE, DTLS12, 0, 1, b"abc");
        write_record(&mut d, CT_ALERT, DTLS12, 1, 2, b"de");
        let (recs, cut) = parse_records(&d);
        assert!(!cut);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].epoch_seq(), (1 << 48) | 2);
        d.push(22);
        let (recs, cut) = parse_records(&d);
        assert!(cut);
        assert_eq!(recs.len(), 2);
    }
}
