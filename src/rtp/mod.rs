//! RTP (RFC 3550) packets as zero-copy views.
//!
//! [`RtpPacket`] wraps any `T: AsRef<[u8]>`. Construction with
//! [`RtpPacket::new_checked`] validates every length field once, so no accessor can
//! panic or read past the buffer afterwards.

use crate::error::WireError;

pub mod ext;
pub mod header;

pub use ext::{remove_extension, set_extension, ExtensionForm, Extensions};
pub use header::{HeaderExtension, RtpBuilder, RtpHeader, MAX_CSRCS};

/// Byte offsets of the fixed header fields.
mod field {
    pub const FIXED_LEN: usize = 12;
    pub const SEQ: core::ops::Range<usize> = 2..4;
    pub const TIMESTAMP: core::ops::Range<usize> = 4..8;
    pub const SSRC: core::ops::Range<usize> = 8..12;
}

/// Length of the fixed RTP header.
pub const FIXED_HEADER_LEN: usize = field::FIXED_LEN;

/// A read-only or mutable view of an RTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// Wraps a buffer without checking it. Accessors may then return garbage or
    /// panic; use [`RtpPacket::new_checked`] on untrusted bytes.
    pub const fn new_unchecked(buffer: T) -> Self {
        RtpPacket { buffer }
    }

    /// Wraps a buffer after checking that the version is 2 and that the CSRC list,
    /// the header extension and the padding all fit inside it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let packet = RtpPacket { buffer };
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the length fields (see [`RtpPacket::new_checked`]).
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < field::FIXED_LEN {
            return Err(WireError::Truncated);
        }
        let version = b[0] >> 6;
        if version != 2 {
            return Err(WireError::BadVersion(version));
        }
        let csrc_end = field::FIXED_LEN + 4 * usize::from(b[0] & 0x0f);
        if b.len() < csrc_end {
            return Err(WireError::CsrcOverrun);
        }
        let mut header_len = csrc_end;
        if b[0] & 0x10 != 0 {
            if b.len() < csrc_end + 4 {
                return Err(WireError::ExtensionOverrun);
            }
            let words = usize::from(u16::from_be_bytes([b[csrc_end + 2], b[csrc_end + 3]]));
            header_len = csrc_end + 4 + 4 * words;
            if b.len() < header_len {
                return Err(WireError::ExtensionOverrun);
            }
        }
        if b[0] & 0x20 != 0 {
            let pad = usize::from(b[b.len() - 1]);
            if pad == 0 || header_len + pad > b.len() {
                return Err(WireError::BadPadding);
            }
        }
        Ok(())
    }

    /// Consumes the view and returns the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole packet.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// RTP version (always 2 for a checked packet).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[0] >> 6
    }

    /// The P bit: the packet ends with padding.
    pub fn has_padding(&self) -> bool {
        self.buffer.as_ref()[0] & 0x20 != 0
    }

    /// The X bit: a header extension follows the CSRC list.
    pub fn has_extension(&self) -> bool {
        self.buffer.as_ref()[0] & 0x10 != 0
    }

    /// Number of CSRC identifiers (0..=15).
    pub fn csrc_count(&self) -> u8 {
        self.buffer.as_ref()[0] & 0x0f
    }

    /// The marker bit.
    pub fn marker(&self) -> bool {
        self.buffer.as_ref()[1] & 0x80 != 0
    }

    /// Payload type (0..=127).
    pub fn payload_type(&self) -> u8 {
        self.buffer.as_ref()[1] & 0x7f
    }

    /// Sequence number.
    pub fn sequence_number(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::SEQ.start], b[field::SEQ.start + 1]])
    }

    /// RTP timestamp.
    pub fn timestamp(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::TIMESTAMP.start)
    }

    /// Synchronisation source.
    pub fn ssrc(&self) -> u32 {
        read_u32(self.buffer.as_ref(), field::SSRC.start)
    }

    /// The CSRC at `index`, or `None` past the list.
    pub fn csrc(&self, index: usize) -> Option<u32> {
        if index >= usize::from(self.csrc_count()) {
            return None;
        }
        Some(read_u32(self.buffer.as_ref(), field::FIXED_LEN + 4 * index))
    }

    /// The CSRCs in order.
    pub fn csrcs(&self) -> impl Iterator<Item = u32> + '_ {
        (0..usize::from(self.csrc_count())).filter_map(move |i| self.csrc(i))
    }

    /// Offset of the header extension (end of the CSRC list).
    pub fn csrc_end(&self) -> usize {
        field::FIXED_LEN + 4 * usize::from(self.csrc_count())
    }

    /// Length of the header: fixed part, CSRCs and the header extension.
    pub fn header_len(&self) -> usize {
        let b = self.buffer.as_ref();
        let csrc_end = self.csrc_end();
        if self.has_extension() {
            let words = usize::from(u16::from_be_bytes([b[csrc_end + 2], b[csrc_end + 3]]));
            csrc_end + 4 + 4 * words
        } else {
            csrc_end
        }
    }

    /// The 16-bit "defined by profile" field of the header extension
    /// (0xBEDE for one-byte, 0x100x for two-byte RFC 8285 elements).
    pub fn extension_profile(&self) -> Option<u16> {
        if !self.has_extension() {
            return None;
        }
        let b = self.buffer.as_ref();
        let at = self.csrc_end();
        Some(u16::from_be_bytes([b[at], b[at + 1]]))
    }

    /// The body of the header extension (after its 4-byte header).
    pub fn extension_data(&self) -> Option<&[u8]> {
        if !self.has_extension() {
            return None;
        }
        Some(&self.buffer.as_ref()[self.csrc_end() + 4..self.header_len()])
    }

    /// Number of padding bytes at the end (0 when the P bit is clear).
    pub fn padding_len(&self) -> usize {
        if self.has_padding() {
            let b = self.buffer.as_ref();
            usize::from(b[b.len() - 1])
        } else {
            0
        }
    }

    /// The byte range of the payload, excluding padding. Never out of bounds,
    /// even after a setter has flipped the P bit of a checked packet.
    pub fn payload_range(&self) -> core::ops::Range<usize> {
        let start = self.header_len();
        let end = self
            .buffer
            .as_ref()
            .len()
            .saturating_sub(self.padding_len())
            .max(start);
        start..end
    }

    /// The payload, excluding padding.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.payload_range()]
    }
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    /// The RFC 8285 form of the header extension, or `None` when there is no
    /// extension or its profile is not `0xBEDE` / `0x100X`.
    pub fn extension_form(&self) -> Option<ExtensionForm> {
        self.extension_profile()
            .and_then(ExtensionForm::from_profile)
    }

    /// The RFC 8285 elements as borrowed `(id, data)` (empty when there is no
    /// RFC 8285 block). Stops at the first malformed element.
    pub fn extensions(&self) -> Extensions<'_> {
        match (self.extension_form(), self.extension_data()) {
            (Some(form), Some(body)) => Extensions::new(form, body),
            _ => Extensions::empty(),
        }
    }

    /// The data of the first element with `id`.
    pub fn extension(&self, id: u8) -> Option<&[u8]> {
        if id == 0 {
            return None;
        }
        self.extensions().find(|&(i, _)| i == id).map(|(_, d)| d)
    }

    /// Checks every RFC 8285 element: `BadExtension` when one is malformed (id 0
    /// with a length in the one-byte form, an element running past the block).
    /// A block with another profile is not inspected.
    pub fn check_extensions(&self) -> Result<(), WireError> {
        match (self.extension_form(), self.extension_data()) {
            (Some(form), Some(body)) => ext::check_elements(form, body),
            _ => Ok(()),
        }
    }

    /// RFC 3550 appendix A.1 header validity: version 2 and consistent lengths
    /// (already guaranteed by `new_checked`), a payload type that cannot be
    /// confused with RTCP SR/RR and friends (72..=76 are rejected, as the marker
    /// bit plus these values gives RTCP packet types 200..=204), and well-formed
    /// RFC 8285 elements.
    pub fn validate(&self) -> Result<(), WireError> {
        self.check_len()?;
        let pt = self.payload_type();
        if (72..=76).contains(&pt) {
            return Err(WireError::RtcpPayloadType(pt));
        }
        self.check_extensions()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RtpPacket<T> {
    /// Sets the version field (low two bits of `version`).
    pub fn set_version(&mut self, version: u8) {
        let b = self.buffer.as_mut();
        b[0] = (b[0] & 0x3f) | ((version & 0x03) << 6);
    }

    /// Sets the P bit. Only the flag changes: the caller owns the padding bytes.
    pub fn set_padding(&mut self, padding: bool) {
        let b = self.buffer.as_mut();
        b[0] = (b[0] & !0x20) | if padding { 0x20 } else { 0 };
    }

    /// Sets the marker bit.
    pub fn set_marker(&mut self, marker: bool) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0x7f) | if marker { 0x80 } else { 0 };
    }

    /// Sets the payload type (low seven bits of `pt`).
    pub fn set_payload_type(&mut self, pt: u8) {
        let b = self.buffer.as_mut();
        b[1] = (b[1] & 0x80) | (pt & 0x7f);
    }

    /// Sets the sequence number.
    pub fn set_sequence_number(&mut self, seq: u16) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&seq.to_be_bytes());
    }

    /// Sets the timestamp.
    pub fn set_timestamp(&mut self, ts: u32) {
        self.buffer.as_mut()[field::TIMESTAMP].copy_from_slice(&ts.to_be_bytes());
    }

    /// Sets the SSRC.
    pub fn set_ssrc(&mut self, ssrc: u32) {
        self.buffer.as_mut()[field::SSRC].copy_from_slice(&ssrc.to_be_bytes());
    }

    /// Overwrites the CSRC at `index`; `InvalidValue` past the list.
    pub fn set_csrc(&mut self, index: usize, csrc: u32) -> Result<(), WireError> {
        if index >= usize::from(self.csrc_count()) {
            return Err(WireError::InvalidValue);
        }
        let at = field::FIXED_LEN + 4 * index;
        self.buffer.as_mut()[at..at + 4].copy_from_slice(&csrc.to_be_bytes());
        Ok(())
    }

    /// The payload, mutable (padding excluded).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.payload_range();
        &mut self.buffer.as_mut()[range]
    }

    /// The data of the first element with `id`, mutable, for same-length rewrites
    /// (use [`set_extension`] to change its length).
    pub fn extension_mut(&mut self, id: u8) -> Option<&mut [u8]> {
        let (form, start, end) = (
            self.extension_form()?,
            self.csrc_end() + 4,
            self.header_len(),
        );
        let range = {
            let body = self.buffer.as_ref().get(start..end)?;
            let r = ext::find_data_range(form, body, id)?;
            start + r.start..start + r.end
        };
        self.buffer.as_mut().get_mut(range)
    }
}

/// RFC 3550 appendix A.1 check of an untrusted datagram: returns the checked view
/// or the reason it is not a valid RTP packet (see [`RtpPacket::validate`]).
pub fn validate_rtp_header(buf: &[u8]) -> Result<RtpPacket<&[u8]>, WireError> {
    let packet = RtpPacket::new_checked(buf)?;
    packet.validate()?;
    Ok(packet)
}

pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fixed_header() {
        let pkt = [
            0x80, 0xe0, 0x12, 0x34, 0, 0, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3,
        ];
        let p = RtpPacket::new_checked(&pkt[..]).unwrap();
        assert_eq!(p.version(), 2);
        assert!(p.marker());
        assert_eq!(p.payload_type(), 0x60);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.timestamp(), 256);
        assert_eq!(p.ssrc(), 0xdeadbeef);
        assert_eq!(p.payload(), &[1, 2, 3]);
    }

    #[test]
    fn rejects_lying_lengths() {
        assert_eq!(
            RtpPacket::new_checked(&[0x80u8; 11][..]),
            Err(WireError::Truncated)
        );
        let mut pkt = [0u8; 12];
        pkt[0] = 0x40;
        assert_eq!(
            RtpPacket::new_checked(&pkt[..]),
            Err(WireError::BadVersion(1))
        );
        pkt[0] = 0x81;
        assert_eq!(
            RtpPacket::new_checked(&pkt[..]),
            Err(WireError::CsrcOverrun)
        );
        pkt[0] = 0x90;
        assert_eq!(
            RtpPacket::new_checked(&pkt[..]),
            Err(WireError::ExtensionOverrun)
        );
        pkt[0] = 0xa0;
        pkt[11] = 0;
        assert_eq!(RtpPacket::new_checked(&pkt[..]), Err(WireError::BadPadding));
    }
}

#[cfg(test)]
mod ext_tests;
