//! Cryptex (RFC 9335): SRTP that also encrypts the CSRC list and the RFC 8285
//! header extensions.
//!
//! The sender marks a protected extension block by replacing its "defined by
//! profile" value: 0xBEDE (one-byte extensions) becomes 0xC0DE and 0x1000 (two-byte
//! extensions) becomes 0xC2DE. The CSRCs, the extension body and the payload are
//! encrypted as one region; the 12-byte fixed header and the 4-byte extension header
//! (profile and length) stay in clear. HMAC authentication is unchanged (it covers
//! the packet as sent); with GCM the AAD is the fixed header followed by the
//! extension header.
//!
//! The two clear parts are not adjacent when the packet has CSRCs, so the region to
//! encrypt is made contiguous by rotating the extension header in front of the
//! CSRCs ([`hoist`]) and rotating it back afterwards ([`lower`]): after `hoist` the
//! AAD is `buf[..16]` and the encrypted region is `buf[16..len]`, which also puts
//! the AES-CM keystream where RFC 9335 wants it (keystream offset 0 at the first
//! CSRC, the four extension-header bytes consume none). The rotation moves at most
//! 64 bytes and needs no extra memory.

use super::SrtpError;

/// RFC 8285 one-byte header extensions.
const ONE_BYTE: u16 = 0xBEDE;
/// RFC 8285 two-byte header extensions (appbits zero: RFC 9335 forbids the others).
const TWO_BYTE: u16 = 0x1000;
/// RFC 9335 encrypted one-byte header extensions.
const ONE_BYTE_ENCRYPTED: u16 = 0xC0DE;
/// RFC 9335 encrypted two-byte header extensions.
const TWO_BYTE_ENCRYPTED: u16 = 0xC2DE;

/// Offset of the header extension (or of where one would go): after the CSRCs.
fn ext_offset(b0: u8) -> usize {
    12 + 4 * usize::from(b0 & 0x0f)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// How protect applies Cryptex to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SendPlan {
    /// Offset of the 4-byte extension header.
    pub(super) ext_at: usize,
    /// The packet has CSRCs but no extension: an empty 0xC0DE block is inserted.
    pub(super) insert: bool,
}

impl SendPlan {
    /// Bytes the packet grows by.
    pub(super) fn grow(self) -> usize {
        if self.insert {
            4
        } else {
            0
        }
    }
}

/// Decides, without touching the packet, how Cryptex protects the RTP packet `pkt`
/// (whose header was already checked by `rtp_header_len`):
/// - no CSRCs and no extension: `None`, plain SRTP (there is nothing to hide);
/// - a 0xBEDE or 0x1000 extension: its profile is rewritten in place;
/// - CSRCs without an extension: an empty 0xC0DE extension is inserted after the
///   CSRCs (the payload moves 4 bytes towards the tailroom);
/// - any other extension profile (including 0x1000 with appbits, and a packet
///   already marked 0xC0DE/0xC2DE): [`SrtpError::CryptexUnsupported`], so that
///   nothing the caller wanted hidden goes out in clear.
pub(super) fn plan_protect(pkt: &[u8]) -> Result<Option<SendPlan>, SrtpError> {
    let b0 = pkt[0];
    let ext_at = ext_offset(b0);
    if b0 & 0x10 == 0 {
        return Ok((b0 & 0x0f != 0).then_some(SendPlan {
            ext_at,
            insert: true,
        }));
    }
    match be16(pkt, ext_at) {
        ONE_BYTE | TWO_BYTE => Ok(Some(SendPlan {
            ext_at,
            insert: false,
        })),
        _ => Err(SrtpError::CryptexUnsupported),
    }
}

/// Applies `plan` to the packet `buf[..len]`: marks the extension as encrypted or
/// inserts the empty one (the caller checked there is room). Returns the new
/// length.
pub(super) fn apply(plan: SendPlan, buf: &mut [u8], len: usize) -> usize {
    let at = plan.ext_at;
    if plan.insert {
        buf.copy_within(at..len, at + 4);
        buf[at..at + 4].copy_from_slice(&[0xC0, 0xDE, 0, 0]);
        buf[0] |= 0x10;
        return len + 4;
    }
    let marked = if be16(buf, at) == ONE_BYTE {
        ONE_BYTE_ENCRYPTED
    } else {
        TWO_BYTE_ENCRYPTED
    };
    buf[at..at + 2].copy_from_slice(&marked.to_be_bytes());
    len
}

/// The extension offset of a received packet (header already checked) that carries
/// a Cryptex-encrypted extension, else `None` (the packet is plain SRTP, which RFC
/// 9335 lets a sender mix in).
pub(super) fn received(pkt: &[u8]) -> Option<usize> {
    let b0 = pkt[0];
    if b0 & 0x10 == 0 {
        return None;
    }
    let at = ext_offset(b0);
    matches!(be16(pkt, at), ONE_BYTE_ENCRYPTED | TWO_BYTE_ENCRYPTED).then_some(at)
}

/// After decryption: gives the extension at `ext_at` back its RFC 8285 profile.
pub(super) fn unmark(buf: &mut [u8], ext_at: usize) {
    let plain = if be16(buf, ext_at) == ONE_BYTE_ENCRYPTED {
        ONE_BYTE
    } else {
        TWO_BYTE
    };
    buf[ext_at..ext_at + 2].copy_from_slice(&plain.to_be_bytes());
}

/// Where the AAD ends and the encrypted region starts once [`hoist`]ed.
pub(super) const HOISTED_CLEAR_LEN: usize = 16;

/// Moves the extension header (at `ext_at`) in front of the CSRCs, making the clear
/// parts `buf[..16]` and the encrypted region `buf[16..]`.
pub(super) fn hoist(buf: &mut [u8], ext_at: usize) {
    buf[12..ext_at + 4].rotate_right(4);
}

/// Undoes [`hoist`].
pub(super) fn lower(buf: &mut [u8], ext_at: usize) {
    buf[12..ext_at + 4].rotate_left(4);
}
