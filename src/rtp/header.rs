//! An owned (allocation-free) RTP header representation and the packet writer.

use super::ext::{form_for, ExtensionForm};
use super::{RtpPacket, FIXED_HEADER_LEN};
use crate::error::WireError;

/// The most CSRCs an RTP header can carry (the CC field is 4 bits).
pub const MAX_CSRCS: usize = 15;

/// The header extension of an [`RtpHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HeaderExtension<'a> {
    /// No extension (X bit clear).
    #[default]
    None,
    /// RFC 8285 elements `(id, data)`, written in order. The one-byte form is used
    /// when every element fits it (id 1..=14, 1..=16 bytes), else the two-byte form.
    /// An empty list writes no extension.
    Elements(&'a [(u8, &'a [u8])]),
    /// A raw block: its profile field and body (length a multiple of 4), as found
    /// by [`RtpHeader::parse`].
    Raw {
        /// The 16-bit "defined by profile" field.
        profile: u16,
        /// The block body after the 4-byte extension header.
        body: &'a [u8],
    },
}

/// The fields of an RTP header, without references into a packet except for the
/// extension data. Holds CSRCs in a fixed array, so parsing never allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RtpHeader<'a> {
    /// Marker bit.
    pub marker: bool,
    /// Payload type (0..=127).
    pub payload_type: u8,
    /// Sequence number.
    pub sequence_number: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Synchronisation source.
    pub ssrc: u32,
    /// Number of valid entries in `csrcs` (0..=15).
    pub csrc_count: u8,
    /// Contributing sources; only the first `csrc_count` are meaningful.
    pub csrcs: [u32; MAX_CSRCS],
    /// The header extension.
    pub extension: HeaderExtension<'a>,
}

impl<'a> RtpHeader<'a> {
    /// Reads the header of a checked packet. The extension is kept as a raw block,
    /// so [`RtpHeader::emit`] reproduces the original header bytes exactly.
    pub fn parse<T: AsRef<[u8]>>(packet: &'a RtpPacket<T>) -> Self {
        let mut csrcs = [0u32; MAX_CSRCS];
        for (slot, c) in csrcs.iter_mut().zip(packet.csrcs()) {
            *slot = c;
        }
        let extension = match (packet.extension_profile(), packet.extension_data()) {
            (Some(profile), Some(body)) => HeaderExtension::Raw { profile, body },
            _ => HeaderExtension::None,
        };
        RtpHeader {
            marker: packet.marker(),
            payload_type: packet.payload_type(),
            sequence_number: packet.sequence_number(),
            timestamp: packet.timestamp(),
            ssrc: packet.ssrc(),
            csrc_count: packet.csrc_count(),
            csrcs,
            extension,
        }
    }

    /// The CSRCs in use.
    pub fn csrc_list(&self) -> &[u32] {
        let n = usize::from(self.csrc_count).min(MAX_CSRCS);
        &self.csrcs[..n]
    }

    /// Sets the CSRC list; `InvalidValue` for more than 15.
    pub fn set_csrcs(&mut self, list: &[u32]) -> Result<(), WireError> {
        if list.len() > MAX_CSRCS {
            return Err(WireError::InvalidValue);
        }
        self.csrcs = [0; MAX_CSRCS];
        self.csrcs[..list.len()].copy_from_slice(list);
        self.csrc_count = list.len() as u8;
        Ok(())
    }

    /// Size of the extension block including its 4-byte header (0 for none), and
    /// the element form for `Elements`.
    fn extension_layout(&self) -> Result<(usize, Option<ExtensionForm>), WireError> {
        match self.extension {
            HeaderExtension::None => Ok((0, None)),
            HeaderExtension::Elements([]) => Ok((0, None)),
            HeaderExtension::Elements(list) => {
                let mut form = ExtensionForm::OneByte;
                let mut bytes = 0usize;
                for &(id, data) in list {
                    match form_for(id, data.len()).ok_or(WireError::InvalidValue)? {
                        ExtensionForm::OneByte => {}
                        two => form = two,
                    }
                    bytes += data.len();
                }
                bytes += list.len() * form.element_header_len();
                let padded = bytes.div_ceil(4) * 4;
                if padded / 4 > usize::from(u16::MAX) {
                    return Err(WireError::InvalidValue);
                }
                Ok((4 + padded, Some(form)))
            }
            HeaderExtension::Raw { body, .. } => {
                if body.len() % 4 != 0 || body.len() / 4 > usize::from(u16::MAX) {
                    return Err(WireError::InvalidValue);
                }
                Ok((4 + body.len(), None))
            }
        }
    }

    /// Length of the header this writes: 12 + 4 * CSRCs + extension block.
    pub fn header_len(&self) -> Result<usize, WireError> {
        if usize::from(self.csrc_count) > MAX_CSRCS {
            return Err(WireError::InvalidValue);
        }
        let (ext, _) = self.extension_layout()?;
        Ok(FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count) + ext)
    }

    /// Writes the header (P bit clear) to the start of `buf`; returns its length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        self.emit_inner(buf, false)
    }

    /// Writes a whole packet: header, `payload`, then `padding` bytes of RTP
    /// padding (0 for none; otherwise zeros ending in the count, P bit set).
    /// Returns the packet length.
    pub fn emit_packet(
        &self,
        payload: &[u8],
        padding: u8,
        buf: &mut [u8],
    ) -> Result<usize, WireError> {
        let hdr = self.header_len()?;
        let total = hdr + payload.len() + usize::from(padding);
        if total > buf.len() {
            return Err(WireError::BufferTooSmall);
        }
        self.emit_inner(buf, padding != 0)?;
        buf[hdr..hdr + payload.len()].copy_from_slice(payload);
        if padding != 0 {
            let pad = &mut buf[hdr + payload.len()..total];
            pad.fill(0);
            if let Some(last) = pad.last_mut() {
                *last = padding;
            }
        }
        Ok(total)
    }

    fn emit_inner(&self, buf: &mut [u8], padding: bool) -> Result<usize, WireError> {
        if self.payload_type > 127 || usize::from(self.csrc_count) > MAX_CSRCS {
            return Err(WireError::InvalidValue);
        }
        let (ext_len, form) = self.extension_layout()?;
        let csrc_end = FIXED_HEADER_LEN + 4 * usize::from(self.csrc_count);
        let total = csrc_end + ext_len;
        let out = buf.get_mut(..total).ok_or(WireError::BufferTooSmall)?;
        out[0] = 0x80
            | if padding { 0x20 } else { 0 }
            | if ext_len > 0 { 0x10 } else { 0 }
            | self.csrc_count;
        out[1] = if self.marker { 0x80 } else { 0 } | self.payload_type;
        out[2..4].copy_from_slice(&self.sequence_number.to_be_bytes());
        out[4..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.ssrc.to_be_bytes());
        for (chunk, c) in out[FIXED_HEADER_LEN..csrc_end]
            .chunks_exact_mut(4)
            .zip(self.csrc_list())
        {
            chunk.copy_from_slice(&c.to_be_bytes());
        }
        if ext_len == 0 {
            return Ok(total);
        }
        let words = ((ext_len - 4) / 4) as u16;
        let ext = &mut out[csrc_end..];
        ext[2..4].copy_from_slice(&words.to_be_bytes());
        match (self.extension, form) {
            (HeaderExtension::Raw { profile, body }, _) => {
                ext[0..2].copy_from_slice(&profile.to_be_bytes());
                ext[4..].copy_from_slice(body);
            }
            (HeaderExtension::Elements(list), Some(form)) => {
                ext[0..2].copy_from_slice(&form.profile().to_be_bytes());
                let body = &mut ext[4..];
                let mut w = 0;
                for &(id, data) in list {
                    match form {
                        ExtensionForm::OneByte => {
                            body[w] = (id << 4) | (data.len() as u8).wrapping_sub(1);
                            w += 1;
                        }
                        ExtensionForm::TwoByte { .. } => {
                            body[w] = id;
                            body[w + 1] = data.len() as u8;
                            w += 2;
                        }
                    }
                    body[w..w + data.len()].copy_from_slice(data);
                    w += data.len();
                }
                body[w..].fill(0);
            }
            _ => return Err(WireError::InvalidValue),
        }
        Ok(total)
    }
}

/// A chainable RTP packet writer over [`RtpHeader::emit_packet`].
///
/// ```
/// use rtp_core::rtp::RtpBuilder;
/// let mut buf = [0u8; 64];
/// let exts: [(u8, &[u8]); 1] = [(1, &[0xaa])];
/// let n = RtpBuilder::new()
///     .payload_type(96)
///     .sequence_number(7)
///     .ssrc(0x1234_5678)
///     .extensions(&exts)
///     .payload(b"hi")
///     .emit(&mut buf)
///     .unwrap();
/// assert_eq!(n, 12 + 8 + 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct RtpBuilder<'a> {
    header: RtpHeader<'a>,
    payload: &'a [u8],
    padding: u8,
    too_many_csrcs: bool,
}

impl<'a> RtpBuilder<'a> {
    /// A builder for an empty packet with all fields zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts from an existing header.
    pub fn from_header(header: RtpHeader<'a>) -> Self {
        RtpBuilder {
            header,
            ..Self::default()
        }
    }

    /// Payload type (0..=127; larger values make `emit` fail).
    pub fn payload_type(mut self, pt: u8) -> Self {
        self.header.payload_type = pt;
        self
    }

    /// Marker bit.
    pub fn marker(mut self, marker: bool) -> Self {
        self.header.marker = marker;
        self
    }

    /// Sequence number.
    pub fn sequence_number(mut self, seq: u16) -> Self {
        self.header.sequence_number = seq;
        self
    }

    /// Timestamp.
    pub fn timestamp(mut self, ts: u32) -> Self {
        self.header.timestamp = ts;
        self
    }

    /// SSRC.
    pub fn ssrc(mut self, ssrc: u32) -> Self {
        self.header.ssrc = ssrc;
        self
    }

    /// CSRC list (more than 15 makes `emit` fail with `InvalidValue`).
    pub fn csrcs(mut self, list: &[u32]) -> Self {
        self.too_many_csrcs = self.header.set_csrcs(list).is_err();
        self
    }

    /// RFC 8285 extension elements, written in order.
    pub fn extensions(mut self, list: &'a [(u8, &'a [u8])]) -> Self {
        self.header.extension = HeaderExtension::Elements(list);
        self
    }

    /// A raw extension block (body length a multiple of 4).
    pub fn raw_extension(mut self, profile: u16, body: &'a [u8]) -> Self {
        self.header.extension = HeaderExtension::Raw { profile, body };
        self
    }

    /// Payload bytes.
    pub fn payload(mut self, payload: &'a [u8]) -> Self {
        self.payload = payload;
        self
    }

    /// Bytes of RTP padding to append, count byte included (0 for none).
    pub fn padding(mut self, padding: u8) -> Self {
        self.padding = padding;
        self
    }

    /// The header as configured.
    pub fn header(&self) -> &RtpHeader<'a> {
        &self.header
    }

    /// Serialises into `buf`; returns the packet length.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        if self.too_many_csrcs {
            return Err(WireError::InvalidValue);
        }
        self.header.emit_packet(self.payload, self.padding, buf)
    }
}
