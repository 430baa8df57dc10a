//! RFC 8285 header extensions: element parsing, a borrowing iterator, and in-place
//! add / replace / remove on a packet held in a caller buffer with headroom.
//!
//! Two element forms exist. The one-byte form (profile `0xBEDE`) packs a 4-bit id
//! and a 4-bit `length - 1` in one byte, so ids are 1..=14 and data is 1..=16 bytes;
//! id 15 ends processing of the block. The two-byte form (profile `0x100X`, the low
//! four bits are "appbits") uses one byte of id (1..=255) and one byte of length
//! (0..=255). In both forms a zero byte between elements is padding.

use super::RtpPacket;
use crate::error::WireError;

/// The "defined by profile" value of a one-byte-form extension block.
pub const ONE_BYTE_PROFILE: u16 = 0xBEDE;
/// The "defined by profile" value of a two-byte-form block, with appbits 0.
pub const TWO_BYTE_PROFILE: u16 = 0x1000;

/// Which RFC 8285 element form an extension block uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtensionForm {
    /// `0xBEDE`: ids 1..=14, data 1..=16 bytes.
    OneByte,
    /// `0x100X`: ids 1..=255, data 0..=255 bytes; `app_bits` is the low nibble X.
    TwoByte {
        /// The four application-defined bits of the profile field.
        app_bits: u8,
    },
}

impl ExtensionForm {
    /// The form named by a "defined by profile" value, or `None` when the block is
    /// not an RFC 8285 block.
    #[inline]
    pub fn from_profile(profile: u16) -> Option<Self> {
        if profile == ONE_BYTE_PROFILE {
            Some(ExtensionForm::OneByte)
        } else if profile & 0xfff0 == TWO_BYTE_PROFILE {
            Some(ExtensionForm::TwoByte {
                app_bits: (profile & 0x0f) as u8,
            })
        } else {
            None
        }
    }

    /// The "defined by profile" value that announces this form.
    #[inline]
    pub fn profile(self) -> u16 {
        match self {
            ExtensionForm::OneByte => ONE_BYTE_PROFILE,
            ExtensionForm::TwoByte { app_bits } => TWO_BYTE_PROFILE | u16::from(app_bits & 0x0f),
        }
    }

    /// Bytes of element header before the data (1 or 2).
    #[inline]
    pub fn element_header_len(self) -> usize {
        match self {
            ExtensionForm::OneByte => 1,
            ExtensionForm::TwoByte { .. } => 2,
        }
    }

    /// Whether an element `(id, len)` can be written in this form.
    #[inline]
    pub fn fits(self, id: u8, len: usize) -> bool {
        match self {
            ExtensionForm::OneByte => (1..=14).contains(&id) && (1..=16).contains(&len),
            ExtensionForm::TwoByte { .. } => id != 0 && len <= 255,
        }
    }
}

/// The smallest form that can carry element `(id, len)`, or `None` if none can
/// (id 0, or more than 255 bytes of data).
#[inline]
pub fn form_for(id: u8, len: usize) -> Option<ExtensionForm> {
    if ExtensionForm::OneByte.fits(id, len) {
        Some(ExtensionForm::OneByte)
    } else if id != 0 && len <= 255 {
        Some(ExtensionForm::TwoByte { app_bits: 0 })
    } else {
        None
    }
}

/// One step of the element walk, as byte offsets inside the block body.
#[derive(Debug, Clone, Copy)]
struct RawElement {
    /// 0 for a padding byte.
    id: u8,
    start: usize,
    data_start: usize,
    end: usize,
}

/// Reads the element at `pos` of `body`. `Ok(None)` at the end of the block (or at
/// id 15 in the one-byte form); `Err(BadExtension)` when the element is malformed.
#[inline]
fn step(form: ExtensionForm, body: &[u8], pos: usize) -> Result<Option<RawElement>, WireError> {
    let Some(&first) = body.get(pos) else {
        return Ok(None);
    };
    if first == 0 {
        return Ok(Some(RawElement {
            id: 0,
            start: pos,
            data_start: pos + 1,
            end: pos + 1,
        }));
    }
    let (id, data_start, len) = match form {
        ExtensionForm::OneByte => {
            let id = first >> 4;
            if id == 15 {
                // RFC 8285 section 4.2: stop processing, keep what came before.
                return Ok(None);
            }
            if id == 0 {
                // Id 0 is padding and must then be the single byte 0x00.
                return Err(WireError::BadExtension);
            }
            (id, pos + 1, usize::from(first & 0x0f) + 1)
        }
        ExtensionForm::TwoByte { .. } => {
            let len = *body.get(pos + 1).ok_or(WireError::BadExtension)?;
            (first, pos + 2, usize::from(len))
        }
    };
    let end = data_start + len;
    if end > body.len() {
        return Err(WireError::BadExtension);
    }
    Ok(Some(RawElement {
        id,
        start: pos,
        data_start,
        end,
    }))
}

/// Checks every element of an extension block body.
pub fn check_elements(form: ExtensionForm, body: &[u8]) -> Result<(), WireError> {
    let mut pos = 0;
    while let Some(e) = step(form, body, pos)? {
        pos = e.end;
    }
    Ok(())
}

/// The byte range inside `body` of the data of the first element with `id`.
pub(crate) fn find_data_range(
    form: ExtensionForm,
    body: &[u8],
    id: u8,
) -> Option<core::ops::Range<usize>> {
    if id == 0 {
        return None;
    }
    let mut pos = 0;
    while let Ok(Some(e)) = step(form, body, pos) {
        if e.id == id {
            return Some(e.data_start..e.end);
        }
        pos = e.end;
    }
    None
}

/// Iterator over the elements of an RFC 8285 block, yielding borrowed
/// `(id, data)`. Padding bytes are skipped. Iteration ends at the end of the block,
/// at id 15 in the one-byte form, or at the first malformed element (use
/// [`RtpPacket::check_extensions`] to get that error).
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    form: ExtensionForm,
    body: &'a [u8],
    pos: usize,
}

impl<'a> Extensions<'a> {
    /// Iterates over `body` (the bytes after the 4-byte extension header).
    pub fn new(form: ExtensionForm, body: &'a [u8]) -> Self {
        Extensions { form, body, pos: 0 }
    }

    /// An iterator that yields nothing.
    pub fn empty() -> Self {
        Extensions {
            form: ExtensionForm::OneByte,
            body: &[],
            pos: 0,
        }
    }

    /// The element form being iterated.
    pub fn form(&self) -> ExtensionForm {
        self.form
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = (u8, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        loop {
            match step(self.form, self.body, self.pos) {
                Ok(Some(e)) => {
                    self.pos = e.end;
                    if e.id != 0 {
                        return self.body.get(e.data_start..e.end).map(|data| (e.id, data));
                    }
                }
                _ => {
                    self.pos = self.body.len();
                    return None;
                }
            }
        }
    }
}

impl core::iter::FusedIterator for Extensions<'_> {}

/// Adds element `(id, data)` to the RTP packet in `buf[..len]`, replacing every
/// existing element with that id, and returns the new packet length.
///
/// The payload and RTP padding are shifted to make room (or to close a gap); `buf`
/// must hold the grown packet, else [`WireError::BufferTooSmall`] and nothing is
/// modified. The block is switched from the one-byte to the two-byte form when the
/// new element needs it (id > 14, or data empty or longer than 16 bytes); a
/// two-byte block stays two-byte. Padding bytes between existing elements are
/// dropped and the block is zero-padded to a multiple of 4, as are the bytes
/// after an id-15 element in the one-byte form (RFC 8285 says to ignore them).
/// The X bit and the length field are updated.
///
/// Errors: anything [`RtpPacket::new_checked`] reports for `buf[..len]`;
/// `InvalidValue` for id 0, data over 255 bytes or `len > buf.len()`;
/// `BadExtension` when the existing block is malformed or is not RFC 8285.
pub fn set_extension(buf: &mut [u8], len: usize, id: u8, data: &[u8]) -> Result<usize, WireError> {
    rewrite(buf, len, id, Some(data))
}

/// Removes every element with `id` from the RTP packet in `buf[..len]` and returns
/// the new length (unchanged when no such element exists). When no element is
/// left, the whole extension block is removed and the X bit cleared.
///
/// Errors as for [`set_extension`].
pub fn remove_extension(buf: &mut [u8], len: usize, id: u8) -> Result<usize, WireError> {
    rewrite(buf, len, id, None)
}

fn rewrite(buf: &mut [u8], len: usize, id: u8, new: Option<&[u8]>) -> Result<usize, WireError> {
    if len > buf.len() || id == 0 {
        return Err(WireError::InvalidValue);
    }
    if new.is_some_and(|d| d.len() > 255) {
        return Err(WireError::InvalidValue);
    }
    let (csrc_end, old_hdr_len, old_form) = {
        let pkt = RtpPacket::new_checked(&buf[..len])?;
        let form = match pkt.extension_profile() {
            None => None,
            Some(p) => Some(ExtensionForm::from_profile(p).ok_or(WireError::BadExtension)?),
        };
        (pkt.csrc_end(), pkt.header_len(), form)
    };
    let body_start = csrc_end + 4;

    // Survey (read-only): what stays, and whether `id` is present.
    let mut kept_bytes = 0usize;
    let mut kept_count = 0usize;
    let mut found = false;
    if let Some(form) = old_form {
        let body = buf.get(body_start..old_hdr_len).unwrap_or(&[]);
        let mut pos = 0;
        while let Some(e) = step(form, body, pos)? {
            if e.id == id {
                found = true;
            } else if e.id != 0 {
                kept_bytes += e.end - e.start;
                kept_count += 1;
            }
            pos = e.end;
        }
    }
    if new.is_none() && !found {
        return Ok(len);
    }

    let new_form = match (old_form, new) {
        (Some(f @ ExtensionForm::TwoByte { .. }), _) => f,
        (_, Some(d)) if !ExtensionForm::OneByte.fits(id, d.len()) => {
            ExtensionForm::TwoByte { app_bits: 0 }
        }
        _ => ExtensionForm::OneByte,
    };
    let convert = old_form == Some(ExtensionForm::OneByte) && new_form != ExtensionForm::OneByte;
    let converted = kept_bytes + if convert { kept_count } else { 0 };
    let elements = converted + new.map_or(0, |d| new_form.element_header_len() + d.len());
    let new_hdr_len = if elements == 0 {
        csrc_end
    } else {
        let padded = elements.div_ceil(4) * 4;
        if padded / 4 > usize::from(u16::MAX) {
            return Err(WireError::InvalidValue);
        }
        body_start + padded
    };
    let tail_len = len - old_hdr_len;
    let new_len = new_hdr_len + tail_len;
    if new_len > buf.len() {
        return Err(WireError::BufferTooSmall);
    }
    // From here on nothing can fail: every offset below was validated above.

    // Phase A: compact the kept elements (old encoding) to the start of the body.
    // The write cursor never passes the read cursor, so nothing unread is lost.
    if let Some(form) = old_form {
        let mut r = 0;
        let mut w = body_start;
        while let Ok(Some(e)) = step(form, &buf[body_start..old_hdr_len], r) {
            if e.id != 0 && e.id != id {
                buf.copy_within(body_start + e.start..body_start + e.end, w);
                w += e.end - e.start;
            }
            r = e.end;
        }
        debug_assert_eq!(w - body_start, kept_bytes);
    }

    // Move payload and RTP padding to their final place.
    buf.copy_within(old_hdr_len..len, new_hdr_len);

    if elements == 0 {
        buf[0] &= !0x10;
        return Ok(new_len);
    }

    // Phase B: widen one-byte elements to two-byte ones. The compacted block is
    // first moved right by `kept_count`, then rewritten left to right; each element
    // grows by one byte, so the writer stays behind the reader.
    if convert {
        let shift = kept_count;
        buf.copy_within(body_start..body_start + kept_bytes, body_start + shift);
        let mut r = body_start + shift;
        let mut w = body_start;
        let end = body_start + converted;
        while r < end {
            let b = buf[r];
            let l = usize::from(b & 0x0f) + 1;
            buf.copy_within(r + 1..r + 1 + l, w + 2);
            buf[w] = b >> 4;
            buf[w + 1] = l as u8;
            r += 1 + l;
            w += 2 + l;
        }
    }

    // Append the new element, then zero the block padding.
    let mut w = body_start + converted;
    if let Some(d) = new {
        match new_form {
            ExtensionForm::OneByte => {
                buf[w] = (id << 4) | (d.len() - 1) as u8;
                w += 1;
            }
            ExtensionForm::TwoByte { .. } => {
                buf[w] = id;
                buf[w + 1] = d.len() as u8;
                w += 2;
            }
        }
        buf[w..w + d.len()].copy_from_slice(d);
        w += d.len();
    }
    buf[w..new_hdr_len].fill(0);

    let words = ((new_hdr_len - body_start) / 4) as u16;
    buf[csrc_end..csrc_end + 2].copy_from_slice(&new_form.profile().to_be_bytes());
    buf[csrc_end + 2..csrc_end + 4].copy_from_slice(&words.to_be_bytes());
    buf[0] |= 0x10;
    Ok(new_len)
}
