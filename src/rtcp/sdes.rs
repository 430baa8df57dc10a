//! SDES, BYE and APP (RFC 3550 6.5-6.7).

use super::{be32, emit_packet, pt, RtcpError, RtcpWrite};

/// SDES item types.
pub mod item {
    /// End of the item list.
    pub const END: u8 = 0;
    /// Canonical name.
    pub const CNAME: u8 = 1;
    /// User name.
    pub const NAME: u8 = 2;
    /// E-mail address.
    pub const EMAIL: u8 = 3;
    /// Phone number.
    pub const PHONE: u8 = 4;
    /// Geographic location.
    pub const LOC: u8 = 5;
    /// Application or tool name.
    pub const TOOL: u8 = 6;
    /// Notice/status.
    pub const NOTE: u8 = 7;
    /// Private extension.
    pub const PRIV: u8 = 8;
}

/// One SDES item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesItem<'a> {
    /// Item type (see [`item`]).
    pub kind: u8,
    /// Item text (for PRIV: prefix length, prefix, value).
    pub value: &'a [u8],
}

impl<'a> SdesItem<'a> {
    /// For a PRIV item: (prefix, value).
    pub fn priv_parts(&self) -> Option<(&'a [u8], &'a [u8])> {
        if self.kind != item::PRIV {
            return None;
        }
        let (&n, rest) = self.value.split_first()?;
        let n = usize::from(n);
        (n <= rest.len()).then(|| rest.split_at(n))
    }
}

/// One SDES chunk (a source and its items).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SdesChunk<'a> {
    /// The source.
    pub ssrc: u32,
    items: &'a [u8],
}

impl<'a> SdesChunk<'a> {
    /// The items of the chunk.
    pub fn items(&self) -> SdesItems<'a> {
        SdesItems { rest: self.items }
    }
    /// The first item of type `kind`.
    pub fn find(&self, kind: u8) -> Option<&'a [u8]> {
        self.items().find(|i| i.kind == kind).map(|i| i.value)
    }
}

/// Iterator over SDES items of a checked chunk.
#[derive(Debug, Clone)]
pub struct SdesItems<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for SdesItems<'a> {
    type Item = SdesItem<'a>;
    fn next(&mut self) -> Option<SdesItem<'a>> {
        let (&kind, rest) = self.rest.split_first()?;
        if kind == item::END {
            return None;
        }
        let (&len, rest) = rest.split_first()?;
        let value = rest.get(..usize::from(len))?;
        self.rest = &rest[usize::from(len)..];
        Some(SdesItem { kind, value })
    }
}

/// Checks one chunk at the start of `b`; returns (chunk, bytes consumed).
fn parse_chunk(b: &[u8]) -> Result<(SdesChunk<'_>, usize), RtcpError> {
    if b.len() < 8 {
        return Err(RtcpError::Truncated);
    }
    let mut at = 4;
    loop {
        match b.get(at) {
            None => return Err(RtcpError::BadItem),
            Some(&item::END) => {
                let end = (at + 4) & !3; // next multiple of 4 after the END byte
                if end > b.len() || b[at..end].iter().any(|&x| x != 0) {
                    return Err(RtcpError::BadItem);
                }
                let chunk = SdesChunk {
                    ssrc: be32(b, 0),
                    items: &b[4..at],
                };
                return Ok((chunk, end));
            }
            Some(_) => {
                let len = usize::from(*b.get(at + 1).ok_or(RtcpError::BadItem)?);
                at += 2 + len;
                if at > b.len() {
                    return Err(RtcpError::BadItem);
                }
            }
        }
    }
}

/// An SDES packet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sdes<'a> {
    count: u8,
    body: &'a [u8],
}

impl<'a> Sdes<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let mut rest = body;
        for _ in 0..count {
            let (_, used) = parse_chunk(rest)?;
            rest = &rest[used..];
        }
        if !rest.is_empty() {
            return Err(RtcpError::CountMismatch);
        }
        Ok(Sdes { count, body })
    }
    /// The chunks.
    pub fn chunks(&self) -> SdesChunks<'a> {
        SdesChunks {
            left: self.count,
            rest: self.body,
        }
    }
}

/// Iterator over SDES chunks.
#[derive(Debug, Clone)]
pub struct SdesChunks<'a> {
    left: u8,
    rest: &'a [u8],
}

impl<'a> Iterator for SdesChunks<'a> {
    type Item = SdesChunk<'a>;
    fn next(&mut self) -> Option<SdesChunk<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let (c, used) = parse_chunk(self.rest).ok()?;
        self.rest = &self.rest[used..];
        Some(c)
    }
}

/// The items of one SDES chunk for [`SdesRepr`]: (type, text) pairs.
pub type SdesItemList<'a> = &'a [(u8, &'a [u8])];

/// Writer of an SDES packet: chunks of (SSRC, items as (type, text)).
#[derive(Debug, Clone, Copy)]
pub struct SdesRepr<'a> {
    /// Up to 31 chunks.
    pub chunks: &'a [(u32, SdesItemList<'a>)],
}

impl RtcpWrite for SdesRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = u8::try_from(self.chunks.len()).map_err(|_| RtcpError::InvalidValue)?;
        emit_packet(buf, n, pt::SDES, |w| {
            for (ssrc, items) in self.chunks {
                w.u32(*ssrc)?;
                for (kind, text) in *items {
                    if *kind == item::END {
                        return Err(RtcpError::InvalidValue);
                    }
                    let len = u8::try_from(text.len()).map_err(|_| RtcpError::InvalidValue)?;
                    w.u8(*kind)?;
                    w.u8(len)?;
                    w.bytes(text)?;
                }
                // END plus zeros up to the next 32-bit boundary (at least one zero).
                w.u8(0)?;
                w.align4()?;
            }
            Ok(())
        })
    }
}

/// A BYE packet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bye<'a> {
    ssrcs: &'a [u8],
    reason: Option<&'a [u8]>,
}

impl<'a> Bye<'a> {
    pub(crate) fn parse(count: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let n = usize::from(count) * 4;
        if body.len() < n {
            return Err(RtcpError::CountMismatch);
        }
        let (ssrcs, rest) = body.split_at(n);
        let reason = match rest.split_first() {
            None => None,
            Some((&len, text)) => Some(text.get(..usize::from(len)).ok_or(RtcpError::BadItem)?),
        };
        Ok(Bye { ssrcs, reason })
    }
    /// The sources leaving.
    pub fn ssrcs(&self) -> impl Iterator<Item = u32> + 'a {
        self.ssrcs.chunks_exact(4).map(|c| be32(c, 0))
    }
    /// The reason for leaving, if given.
    pub fn reason(&self) -> Option<&'a [u8]> {
        self.reason
    }
}

/// Writer of a BYE packet.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByeRepr<'a> {
    /// Up to 31 sources.
    pub ssrcs: &'a [u32],
    /// Optional reason, at most 255 bytes.
    pub reason: Option<&'a [u8]>,
}

impl RtcpWrite for ByeRepr<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        let n = u8::try_from(self.ssrcs.len()).map_err(|_| RtcpError::InvalidValue)?;
        emit_packet(buf, n, pt::BYE, |w| {
            self.ssrcs.iter().try_for_each(|s| w.u32(*s))?;
            if let Some(r) = self.reason {
                w.u8(u8::try_from(r.len()).map_err(|_| RtcpError::InvalidValue)?)?;
                w.bytes(r)?;
                w.align4()?;
            }
            Ok(())
        })
    }
}

/// An APP packet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct App<'a> {
    /// Subtype (the count field).
    pub subtype: u8,
    /// Source.
    pub ssrc: u32,
    /// Four ASCII characters naming the application.
    pub name: [u8; 4],
    /// Application data.
    pub data: &'a [u8],
}

impl<'a> App<'a> {
    pub(crate) fn parse(subtype: u8, body: &'a [u8]) -> Result<Self, RtcpError> {
        let [a, b, c, d, n0, n1, n2, n3, ..] = *body else {
            return Err(RtcpError::Truncated);
        };
        Ok(App {
            subtype,
            ssrc: u32::from_be_bytes([a, b, c, d]),
            name: [n0, n1, n2, n3],
            data: &body[8..],
        })
    }
}

/// Writer of an APP packet (data is padded with zeros to 32 bits).
pub type AppRepr<'a> = App<'a>;

impl RtcpWrite for App<'_> {
    fn emit(&self, buf: &mut [u8]) -> Result<usize, RtcpError> {
        if !self.data.len().is_multiple_of(4) {
            return Err(RtcpError::InvalidValue);
        }
        emit_packet(buf, self.subtype, pt::APP, |w| {
            w.u32(self.ssrc)?;
            w.bytes(&self.name)?;
            w.bytes(self.data)
        })
    }
}
