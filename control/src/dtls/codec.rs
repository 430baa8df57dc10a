//! A bounds-checked cursor over untrusted bytes and length-prefixed writers.

use super::DtlsError;

/// Reads big-endian fields; every accessor fails instead of panicking.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    fn short(&self) -> DtlsError {
        DtlsError::Decode(format!("{} truncated", self.what))
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DtlsError> {
        if self.buf.len() < n {
            return Err(self.short());
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DtlsError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DtlsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u24(&mut self) -> Result<usize, DtlsError> {
        let b = self.take(3)?;
        Ok(((b[0] as usize) << 16) | ((b[1] as usize) << 8) | b[2] as usize)
    }

    pub(crate) fn u48(&mut self) -> Result<u64, DtlsError> {
        let b = self.take(6)?;
        Ok(b.iter().fold(0u64, |a, &x| (a << 8) | x as u64))
    }

    /// A vector with a 1-byte length prefix.
    pub(crate) fn vec8(&mut self) -> Result<&'a [u8], DtlsError> {
        let n = self.u8()? as usize;
        self.take(n)
    }

    /// A vector with a 2-byte length prefix.
    pub(crate) fn vec16(&mut self) -> Result<&'a [u8], DtlsError> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    /// A vector with a 3-byte length prefix.
    pub(crate) fn vec24(&mut self) -> Result<&'a [u8], DtlsError> {
        let n = self.u24()?;
        self.take(n)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails if bytes are left over.
    pub(crate) fn finish(&self) -> Result<(), DtlsError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DtlsError::Decode(format!("{}: trailing bytes", self.what)))
        }
    }
}

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_u24(out: &mut Vec<u8>, v: usize) {
    out.extend_from_slice(&(v as u32).to_be_bytes()[1..]);
}

pub(crate) fn put_u48(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes()[2..]);
}

/// Writes `body` with a length prefix of `width` bytes (1, 2 or 3).
pub(crate) fn put_vec(out: &mut Vec<u8>, width: usize, body: &[u8]) {
    match width {
        1 => out.push(body.len() as u8),
        2 => put_u16(out, body.len() as u16),
        _ => put_u24(out, body.len()),
    }
    out.extend_from_slice(body);
}
