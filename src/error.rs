//! The error type of the wire layer (RTP views and writers, demultiplexing).

use core::fmt;

/// Why a datagram could not be read or written as RTP.
///
/// Small and `Copy`: returned on the per-packet path, never allocated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WireError {
    /// The buffer is shorter than the fixed part of the header.
    Truncated,
    /// The version field is not 2.
    BadVersion(u8),
    /// The CSRC list runs past the end of the buffer.
    CsrcOverrun,
    /// The header extension (its 4-byte header or its body) runs past the end.
    ExtensionOverrun,
    /// The padding count is zero or larger than the payload it pads.
    BadPadding,
    /// A header-extension element is malformed (id 15 in one-byte form, an element
    /// whose length runs past the extension block, ...).
    BadExtension,
    /// The payload type (72..=76) collides with RTCP packet types (RFC 3550 A.1,
    /// RFC 5761 section 4).
    RtcpPayloadType(u8),
    /// The caller's buffer is too small for what is being written.
    BufferTooSmall,
    /// A value does not fit its field (extension id out of range, data too long,
    /// more than 15 CSRCs, ...).
    InvalidValue,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("packet shorter than its fixed header"),
            WireError::BadVersion(v) => write!(f, "RTP version {v}, expected 2"),
            WireError::CsrcOverrun => f.write_str("CSRC list runs past the end of the packet"),
            WireError::ExtensionOverrun => {
                f.write_str("header extension runs past the end of the packet")
            }
            WireError::BadPadding => f.write_str("padding count is zero or exceeds the payload"),
            WireError::BadExtension => f.write_str("malformed header-extension element"),
            WireError::RtcpPayloadType(pt) => {
                write!(f, "payload type {pt} collides with RTCP packet types")
            }
            WireError::BufferTooSmall => f.write_str("output buffer too small"),
            WireError::InvalidValue => f.write_str("value does not fit its field"),
        }
    }
}

impl std::error::Error for WireError {}
