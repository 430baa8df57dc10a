//! STUN messages (RFC 8489, RFC 5389): a zero-copy view that checks the header
//! and every attribute's bounds before any accessor can run, MESSAGE-INTEGRITY
//! (short-term credentials, HMAC-SHA1) and FINGERPRINT (CRC-32) checks, and a
//! writer that serialises requests, indications and responses into a caller's
//! buffer. Enough of STUN for ICE connectivity checks (RFC 8445 section 7):
//! USERNAME, PRIORITY, USE-CANDIDATE, ICE-CONTROLLING / ICE-CONTROLLED,
//! XOR-MAPPED-ADDRESS and ERROR-CODE have typed accessors and writers; any
//! other attribute is reachable by type as raw bytes.
//!
//! Not here: long-term credentials (REALM / NONCE, MESSAGE-INTEGRITY-SHA256),
//! TURN, and the transaction layer (retransmissions belong to whoever sends).
//!
//! ```
//! use rtp_core::stun::{BindingRequest, IceRole, StunMessage};
//!
//! let tid = [7u8; 12];
//! let mut buf = [0u8; 200];
//! let req = BindingRequest {
//!     username: Some("local:remote"),
//!     priority: Some(0x6e00_01ff),
//!     use_candidate: true,
//!     role: Some(IceRole::Controlling(42)),
//! };
//! let n = req.emit(&mut buf, &tid, Some(b"the password")).unwrap();
//! let msg = StunMessage::new_checked(&buf[..n]).unwrap();
//! msg.check_fingerprint().unwrap();
//! msg.check_integrity(b"the password").unwrap();
//! assert_eq!(msg.username(), Some(&b"local:remote"[..]));
//! assert!(msg.use_candidate());
//! ```

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hmac::{Hmac, Mac};
use sha1::Sha1;

/// Bytes in the fixed header.
pub const HEADER_LEN: usize = 20;
/// The magic cookie of every RFC 5389 / 8489 message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// XORed into the CRC-32 of a FINGERPRINT attribute ("STUN").
const FINGERPRINT_XOR: u32 = 0x5354_554e;
/// Length of a MESSAGE-INTEGRITY value (HMAC-SHA1).
const MI_LEN: usize = 20;

/// The Binding method, the only one ICE uses.
pub const BINDING: u16 = 0x001;

/// The 96-bit transaction id.
pub type TransactionId = [u8; 12];

/// Attribute types (RFC 8489 section 18.3, RFC 8445 section 16.1).
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// MESSAGE-INTEGRITY-SHA256.
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    /// PASSWORD-ALGORITHM.
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    /// USERHASH.
    pub const USERHASH: u16 = 0x001E;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// PRIORITY (ICE).
    pub const PRIORITY: u16 = 0x0024;
    /// USE-CANDIDATE (ICE).
    pub const USE_CANDIDATE: u16 = 0x0025;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// ALTERNATE-SERVER.
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
    /// ICE-CONTROLLED (ICE).
    pub const ICE_CONTROLLED: u16 = 0x8029;
    /// ICE-CONTROLLING (ICE).
    pub const ICE_CONTROLLING: u16 = 0x802A;

    /// Comprehension-required attributes (0x0000-0x7FFF) this module knows;
    /// a request carrying any other one is to be refused with 420
    /// (RFC 8489 section 6.3.1).
    pub fn is_known_required(t: u16) -> bool {
        matches!(
            t,
            MAPPED_ADDRESS
                | USERNAME
                | MESSAGE_INTEGRITY
                | ERROR_CODE
                | UNKNOWN_ATTRIBUTES
                | REALM
                | NONCE
                | MESSAGE_INTEGRITY_SHA256
                | PASSWORD_ALGORITHM
                | USERHASH
                | XOR_MAPPED_ADDRESS
                | PRIORITY
                | USE_CANDIDATE
        )
    }

    /// Whether an attribute type is comprehension-required (RFC 8489 section 14).
    pub fn is_required(t: u16) -> bool {
        t < 0x8000
    }
}

/// Why bytes are not a usable STUN message, or a check or write failed.
///
/// Small and `Copy`; a view never panics, whatever the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StunError {
    /// Shorter than the 20-byte header, or than the header's length field says.
    Truncated,
    /// The top two bits of the first byte are not zero: not STUN.
    NotStun,
    /// The magic cookie is not 0x2112A442 (an RFC 3489 message or not STUN).
    BadCookie,
    /// The length field is not a multiple of 4, or bytes follow the message.
    BadLength,
    /// An attribute's header or value (with its padding) runs past the message.
    AttributeOverrun,
    /// An attribute follows FINGERPRINT, which must be the last one.
    AfterFingerprint,
    /// An attribute's value has the wrong size or format (its type).
    BadAttribute(u16),
    /// No MESSAGE-INTEGRITY attribute.
    NoIntegrity,
    /// MESSAGE-INTEGRITY does not match the key.
    BadIntegrity,
    /// No FINGERPRINT attribute.
    NoFingerprint,
    /// FINGERPRINT does not match the message's CRC-32.
    BadFingerprint,
    /// The output buffer is too small for what is being written.
    BufferTooSmall,
    /// A value does not fit its field (an error code outside 300..=699, an
    /// attribute longer than 65535 bytes, a message longer than 65535).
    InvalidValue,
}

impl fmt::Display for StunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StunError::Truncated => f.write_str("STUN message truncated"),
            StunError::NotStun => f.write_str("not STUN: top two bits of the type are set"),
            StunError::BadCookie => f.write_str("STUN magic cookie missing"),
            StunError::BadLength => {
                f.write_str("STUN length not a multiple of 4 or not the datagram's")
            }
            StunError::AttributeOverrun => f.write_str("STUN attribute runs past the message"),
            StunError::AfterFingerprint => f.write_str("STUN attribute after FINGERPRINT"),
            StunError::BadAttribute(t) => write!(f, "malformed STUN attribute 0x{t:04x}"),
            StunError::NoIntegrity => f.write_str("no MESSAGE-INTEGRITY"),
            StunError::BadIntegrity => f.write_str("MESSAGE-INTEGRITY does not match"),
            StunError::NoFingerprint => f.write_str("no FINGERPRINT"),
            StunError::BadFingerprint => f.write_str("FINGERPRINT does not match"),
            StunError::BufferTooSmall => f.write_str("output buffer too small"),
            StunError::InvalidValue => f.write_str("value does not fit its STUN field"),
        }
    }
}

impl std::error::Error for StunError {}

/// The class of a message (RFC 8489 section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// A request: expects a response.
    Request,
    /// An indication: no response.
    Indication,
    /// A success response.
    Success,
    /// An error response.
    Error,
}

impl Class {
    fn bits(self) -> u16 {
        match self {
            Class::Request => 0x000,
            Class::Indication => 0x010,
            Class::Success => 0x100,
            Class::Error => 0x110,
        }
    }
}

/// The 14-bit message type of a method and a class: the class bits C1 C0 sit
/// at bits 8 and 4, between the method's bits.
pub fn message_type(class: Class, method: u16) -> u16 {
    let m = method & 0x0fff;
    (m & 0x000f) | ((m & 0x0070) << 1) | ((m & 0x0f80) << 2) | class.bits()
}

/// The ICE role a request claims, with its tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IceRole {
    /// ICE-CONTROLLING.
    Controlling(u64),
    /// ICE-CONTROLLED.
    Controlled(u64),
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    /// Its type.
    pub kind: u16,
    /// Its value, without padding.
    pub value: &'a [u8],
    /// Offset of its 4-byte header in the message.
    pub offset: usize,
}

/// The attributes of a message, in order (a view checked them all).
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Attribute<'a>;

    fn next(&mut self) -> Option<Attribute<'a>> {
        let b = self.buf;
        if self.pos + 4 > b.len() {
            return None;
        }
        let kind = be16(b, self.pos);
        let len = usize::from(be16(b, self.pos + 2));
        let value = b.get(self.pos + 4..self.pos + 4 + len)?;
        let offset = self.pos;
        self.pos += 4 + padded(len);
        Some(Attribute {
            kind,
            value,
            offset,
        })
    }
}

/// A STUN message over a buffer. [`StunMessage::new_checked`] checks the
/// header and walks every attribute, so no accessor can panic.
#[derive(Debug, Clone, Copy)]
pub struct StunMessage<T: AsRef<[u8]>> {
    buf: T,
}

impl<T: AsRef<[u8]>> StunMessage<T> {
    /// Checks that `buf` is exactly one STUN message: header (top bits, cookie,
    /// a length that is a multiple of 4 and that of the datagram), every
    /// attribute inside the message, MESSAGE-INTEGRITY and FINGERPRINT of their
    /// fixed sizes, nothing after FINGERPRINT.
    pub fn new_checked(buf: T) -> Result<Self, StunError> {
        let b = buf.as_ref();
        if b.len() < HEADER_LEN {
            return Err(StunError::Truncated);
        }
        if b[0] & 0xc0 != 0 {
            return Err(StunError::NotStun);
        }
        if be32(b, 4) != MAGIC_COOKIE {
            return Err(StunError::BadCookie);
        }
        let len = usize::from(be16(b, 2));
        if len % 4 != 0 {
            return Err(StunError::BadLength);
        }
        let end = HEADER_LEN + len;
        if end > b.len() {
            return Err(StunError::Truncated);
        }
        if end < b.len() {
            return Err(StunError::BadLength);
        }
        let mut pos = HEADER_LEN;
        let mut fingerprint = false;
        while pos < end {
            if fingerprint {
                return Err(StunError::AfterFingerprint);
            }
            if pos + 4 > end {
                return Err(StunError::AttributeOverrun);
            }
            let kind = be16(b, pos);
            let alen = usize::from(be16(b, pos + 2));
            if pos + 4 + padded(alen) > end {
                return Err(StunError::AttributeOverrun);
            }
            match kind {
                attr::MESSAGE_INTEGRITY if alen != MI_LEN => {
                    return Err(StunError::BadAttribute(kind))
                }
                attr::FINGERPRINT if alen != 4 => return Err(StunError::BadAttribute(kind)),
                attr::FINGERPRINT => fingerprint = true,
                _ => {}
            }
            pos += 4 + padded(alen);
        }
        Ok(StunMessage { buf })
    }

    /// The underlying buffer.
    pub fn into_inner(self) -> T {
        self.buf
    }

    fn bytes(&self) -> &[u8] {
        self.buf.as_ref()
    }

    /// The 14-bit message type.
    pub fn message_type(&self) -> u16 {
        be16(self.bytes(), 0) & 0x3fff
    }

    /// The class.
    pub fn class(&self) -> Class {
        match self.message_type() & 0x110 {
            0x000 => Class::Request,
            0x010 => Class::Indication,
            0x100 => Class::Success,
            _ => Class::Error,
        }
    }

    /// The 12-bit method ([`BINDING`] for ICE).
    pub fn method(&self) -> u16 {
        let t = self.message_type();
        (t & 0x000f) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0f80)
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0u8; 12];
        id.copy_from_slice(&self.bytes()[8..HEADER_LEN]);
        id
    }

    /// Every attribute, in order, including those after MESSAGE-INTEGRITY.
    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            buf: self.bytes(),
            pos: HEADER_LEN,
        }
    }

    /// The value of the first attribute of type `kind` that precedes
    /// MESSAGE-INTEGRITY (attributes after it, FINGERPRINT aside, are not
    /// covered by it and are ignored, RFC 8489 section 14.5).
    pub fn attribute(&self, kind: u16) -> Option<&[u8]> {
        for a in self.attributes() {
            if a.kind == kind {
                return Some(a.value);
            }
            if a.kind == attr::MESSAGE_INTEGRITY && kind != attr::FINGERPRINT {
                return None;
            }
        }
        None
    }

    /// Types of the comprehension-required attributes this module does not
    /// know (for a 420 answer), at most `N`, and how many there were.
    pub fn unknown_required<const N: usize>(&self) -> ([u16; N], usize) {
        let mut out = [0u16; N];
        let mut n = 0;
        for a in self.attributes() {
            if a.kind == attr::MESSAGE_INTEGRITY {
                break;
            }
            if attr::is_required(a.kind) && !attr::is_known_required(a.kind) {
                if n < N {
                    out[n] = a.kind;
                }
                n += 1;
            }
        }
        (out, n)
    }

    /// USERNAME, as bytes.
    pub fn username(&self) -> Option<&[u8]> {
        self.attribute(attr::USERNAME)
    }

    /// PRIORITY.
    pub fn priority(&self) -> Result<Option<u32>, StunError> {
        match self.attribute(attr::PRIORITY) {
            None => Ok(None),
            Some(&[a, b, c, d]) => Ok(Some(u32::from_be_bytes([a, b, c, d]))),
            Some(_) => Err(StunError::BadAttribute(attr::PRIORITY)),
        }
    }

    /// Whether USE-CANDIDATE is present.
    pub fn use_candidate(&self) -> bool {
        self.attribute(attr::USE_CANDIDATE).is_some()
    }

    fn u64_attr(&self, kind: u16) -> Result<Option<u64>, StunError> {
        match self.attribute(kind) {
            None => Ok(None),
            Some(v) => <[u8; 8]>::try_from(v)
                .map(|a| Some(u64::from_be_bytes(a)))
                .map_err(|_| StunError::BadAttribute(kind)),
        }
    }

    /// ICE-CONTROLLING's tie-breaker.
    pub fn ice_controlling(&self) -> Result<Option<u64>, StunError> {
        self.u64_attr(attr::ICE_CONTROLLING)
    }

    /// ICE-CONTROLLED's tie-breaker.
    pub fn ice_controlled(&self) -> Result<Option<u64>, StunError> {
        self.u64_attr(attr::ICE_CONTROLLED)
    }

    /// The role the sender claims: ICE-CONTROLLING or ICE-CONTROLLED (a
    /// message carrying both is malformed).
    pub fn ice_role(&self) -> Result<Option<IceRole>, StunError> {
        match (self.ice_controlling()?, self.ice_controlled()?) {
            (Some(t), None) => Ok(Some(IceRole::Controlling(t))),
            (None, Some(t)) => Ok(Some(IceRole::Controlled(t))),
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(StunError::BadAttribute(attr::ICE_CONTROLLED)),
        }
    }

    /// XOR-MAPPED-ADDRESS, decoded.
    pub fn xor_mapped_address(&self) -> Result<Option<SocketAddr>, StunError> {
        let Some(v) = self.attribute(attr::XOR_MAPPED_ADDRESS) else {
            return Ok(None);
        };
        let bad = StunError::BadAttribute(attr::XOR_MAPPED_ADDRESS);
        let b = self.bytes();
        if v.len() < 4 {
            return Err(bad);
        }
        let port = be16(v, 2) ^ (MAGIC_COOKIE >> 16) as u16;
        let ip = match (v[1], v.len()) {
            (1, 8) => IpAddr::V4(Ipv4Addr::from(be32(v, 4) ^ MAGIC_COOKIE)),
            (2, 20) => {
                // XORed with the cookie and the transaction id: bytes 4..20 of
                // the header.
                let mut a = [0u8; 16];
                for (i, x) in a.iter_mut().enumerate() {
                    *x = v[4 + i] ^ b[4 + i];
                }
                IpAddr::V6(Ipv6Addr::from(a))
            }
            _ => return Err(bad),
        };
        Ok(Some(SocketAddr::new(ip, port)))
    }

    /// ERROR-CODE: the code (300..=699) and the reason phrase.
    pub fn error_code(&self) -> Result<Option<(u16, &[u8])>, StunError> {
        let Some(v) = self.attribute(attr::ERROR_CODE) else {
            return Ok(None);
        };
        if v.len() < 4 || !(3..=6).contains(&(v[2] & 0x07)) || v[3] > 99 {
            return Err(StunError::BadAttribute(attr::ERROR_CODE));
        }
        Ok(Some((
            u16::from(v[2] & 0x07) * 100 + u16::from(v[3]),
            &v[4..],
        )))
    }

    /// Whether FINGERPRINT is present.
    pub fn has_fingerprint(&self) -> bool {
        self.attribute(attr::FINGERPRINT).is_some()
    }

    /// Checks FINGERPRINT (which the view already knows is last): the CRC-32 of
    /// the message before it, XOR 0x5354554e.
    pub fn check_fingerprint(&self) -> Result<(), StunError> {
        let Some(a) = self.attributes().find(|a| a.kind == attr::FINGERPRINT) else {
            return Err(StunError::NoFingerprint);
        };
        let want = crc32(&self.bytes()[..a.offset]) ^ FINGERPRINT_XOR;
        if be32(a.value, 0) == want {
            Ok(())
        } else {
            Err(StunError::BadFingerprint)
        }
    }

    /// Checks MESSAGE-INTEGRITY with `key` (for short-term credentials the
    /// password's bytes): HMAC-SHA1 over the message up to the attribute, with
    /// the header's length counting up to the attribute's end. The comparison
    /// takes constant time.
    pub fn check_integrity(&self, key: &[u8]) -> Result<(), StunError> {
        let Some(a) = self
            .attributes()
            .find(|a| a.kind == attr::MESSAGE_INTEGRITY)
        else {
            return Err(StunError::NoIntegrity);
        };
        let b = self.bytes();
        let mut mac = hmac_at(b, a.offset, key)?;
        mac.update(&b[4..a.offset]);
        mac.verify_slice(a.value)
            .map_err(|_| StunError::BadIntegrity)
    }
}

/// An HMAC-SHA1 fed with the header of `msg` whose length field counts up to
/// the end of a MESSAGE-INTEGRITY attribute at `offset` (the rest follows).
fn hmac_at(msg: &[u8], offset: usize, key: &[u8]) -> Result<Hmac<Sha1>, StunError> {
    let mut mac = Hmac::<Sha1>::new_from_slice(key).map_err(|_| StunError::InvalidValue)?;
    let len =
        u16::try_from(offset + 4 + MI_LEN - HEADER_LEN).map_err(|_| StunError::InvalidValue)?;
    mac.update(&msg[..2]);
    mac.update(&len.to_be_bytes());
    Ok(mac)
}

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC-32 (ISO-HDLC / IEEE 802.3, reflected polynomial 0xEDB88320), as
/// FINGERPRINT uses it. A 1 KB table, byte at a time: STUN messages are short
/// and handled off the media path, which is not worth a dependency.
pub fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Writes a STUN message into a caller's buffer, attribute by attribute; the
/// header's length follows each one. MESSAGE-INTEGRITY and FINGERPRINT, when
/// wanted, come last, in that order.
#[derive(Debug)]
pub struct MessageWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> MessageWriter<'a> {
    /// Starts a message: the header with no attributes.
    pub fn new(
        buf: &'a mut [u8],
        class: Class,
        method: u16,
        tid: &TransactionId,
    ) -> Result<Self, StunError> {
        if buf.len() < HEADER_LEN {
            return Err(StunError::BufferTooSmall);
        }
        if method > 0x0fff {
            return Err(StunError::InvalidValue);
        }
        buf[..2].copy_from_slice(&message_type(class, method).to_be_bytes());
        buf[2..4].fill(0);
        buf[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf[8..HEADER_LEN].copy_from_slice(tid);
        Ok(MessageWriter {
            buf,
            len: HEADER_LEN,
        })
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a message has at least its 20-byte header.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reserves an attribute of `value_len` bytes (zero padding), updates the
    /// header's length, and returns where its value starts.
    fn reserve(&mut self, kind: u16, value_len: usize) -> Result<usize, StunError> {
        let vlen = u16::try_from(value_len).map_err(|_| StunError::InvalidValue)?;
        let end = self.len + 4 + padded(value_len);
        let total = u16::try_from(end - HEADER_LEN).map_err(|_| StunError::InvalidValue)?;
        if end > self.buf.len() {
            return Err(StunError::BufferTooSmall);
        }
        let at = self.len;
        self.buf[at..at + 2].copy_from_slice(&kind.to_be_bytes());
        self.buf[at + 2..at + 4].copy_from_slice(&vlen.to_be_bytes());
        self.buf[at + 4..end].fill(0);
        self.buf[2..4].copy_from_slice(&total.to_be_bytes());
        self.len = end;
        Ok(at + 4)
    }

    /// Any attribute, as raw bytes.
    pub fn attribute(&mut self, kind: u16, value: &[u8]) -> Result<&mut Self, StunError> {
        let at = self.reserve(kind, value.len())?;
        self.buf[at..at + value.len()].copy_from_slice(value);
        Ok(self)
    }

    /// USERNAME.
    pub fn username(&mut self, name: &str) -> Result<&mut Self, StunError> {
        self.attribute(attr::USERNAME, name.as_bytes())
    }

    /// SOFTWARE.
    pub fn software(&mut self, s: &str) -> Result<&mut Self, StunError> {
        self.attribute(attr::SOFTWARE, s.as_bytes())
    }

    /// PRIORITY.
    pub fn priority(&mut self, p: u32) -> Result<&mut Self, StunError> {
        self.attribute(attr::PRIORITY, &p.to_be_bytes())
    }

    /// USE-CANDIDATE.
    pub fn use_candidate(&mut self) -> Result<&mut Self, StunError> {
        self.attribute(attr::USE_CANDIDATE, &[])
    }

    /// ICE-CONTROLLING or ICE-CONTROLLED with its tie-breaker.
    pub fn ice_role(&mut self, role: IceRole) -> Result<&mut Self, StunError> {
        match role {
            IceRole::Controlling(t) => self.attribute(attr::ICE_CONTROLLING, &t.to_be_bytes()),
            IceRole::Controlled(t) => self.attribute(attr::ICE_CONTROLLED, &t.to_be_bytes()),
        }
    }

    /// XOR-MAPPED-ADDRESS of `addr` (IPv4 or IPv6).
    pub fn xor_mapped_address(&mut self, addr: SocketAddr) -> Result<&mut Self, StunError> {
        let vlen = if addr.is_ipv4() { 8 } else { 20 };
        let at = self.reserve(attr::XOR_MAPPED_ADDRESS, vlen)?;
        let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
        let (head, rest) = self.buf.split_at_mut(at);
        let v = &mut rest[..vlen];
        v[0] = 0;
        v[2..4].copy_from_slice(&port.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => {
                v[1] = 1;
                v[4..8].copy_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v[1] = 2;
                for (i, o) in ip.octets().iter().enumerate() {
                    v[4 + i] = o ^ head[4 + i];
                }
            }
        }
        Ok(self)
    }

    /// ERROR-CODE: `code` in 300..=699 and a reason phrase.
    pub fn error_code(&mut self, code: u16, reason: &str) -> Result<&mut Self, StunError> {
        if !(300..=699).contains(&code) {
            return Err(StunError::InvalidValue);
        }
        let at = self.reserve(attr::ERROR_CODE, 4 + reason.len())?;
        self.buf[at + 2] = (code / 100) as u8;
        self.buf[at + 3] = (code % 100) as u8;
        self.buf[at + 4..at + 4 + reason.len()].copy_from_slice(reason.as_bytes());
        Ok(self)
    }

    /// UNKNOWN-ATTRIBUTES (for a 420 answer).
    pub fn unknown_attributes(&mut self, kinds: &[u16]) -> Result<&mut Self, StunError> {
        let at = self.reserve(attr::UNKNOWN_ATTRIBUTES, 2 * kinds.len())?;
        for (i, k) in kinds.iter().enumerate() {
            self.buf[at + 2 * i..at + 2 * i + 2].copy_from_slice(&k.to_be_bytes());
        }
        Ok(self)
    }

    /// MESSAGE-INTEGRITY with `key` (short-term: the password's bytes), over
    /// everything written so far.
    pub fn message_integrity(&mut self, key: &[u8]) -> Result<&mut Self, StunError> {
        let at = self.reserve(attr::MESSAGE_INTEGRITY, MI_LEN)?;
        let mut mac = hmac_at(self.buf, at - 4, key)?;
        mac.update(&self.buf[4..at - 4]);
        let tag = mac.finalize().into_bytes();
        self.buf[at..at + MI_LEN].copy_from_slice(&tag);
        Ok(self)
    }

    /// FINGERPRINT, over everything written so far.
    pub fn fingerprint(&mut self) -> Result<&mut Self, StunError> {
        let at = self.reserve(attr::FINGERPRINT, 4)?;
        let crc = crc32(&self.buf[..at - 4]) ^ FINGERPRINT_XOR;
        self.buf[at..at + 4].copy_from_slice(&crc.to_be_bytes());
        Ok(self)
    }

    /// The message's length in the buffer.
    pub fn finish(self) -> usize {
        self.len
    }
}

/// A Binding success response: XOR-MAPPED-ADDRESS = `mapped`,
/// MESSAGE-INTEGRITY with `key` (an ICE agent's own password), FINGERPRINT.
pub fn binding_success(
    buf: &mut [u8],
    tid: &TransactionId,
    mapped: SocketAddr,
    key: &[u8],
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(buf, Class::Success, BINDING, tid)?;
    w.xor_mapped_address(mapped)?
        .message_integrity(key)?
        .fingerprint()?;
    Ok(w.finish())
}

/// The reason phrase of the error codes ICE uses.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        400 => "Bad Request",
        401 => "Unauthorized",
        420 => "Unknown Attribute",
        487 => "Role Conflict",
        500 => "Server Error",
        _ => "Error",
    }
}

/// A Binding error response: ERROR-CODE `code` with its usual reason phrase,
/// UNKNOWN-ATTRIBUTES when `unknown` is not empty (420), MESSAGE-INTEGRITY
/// when `key` is given, FINGERPRINT. RFC 8489 section 9.1.3: 400 and 401
/// answers carry no MESSAGE-INTEGRITY (the request's credentials are missing
/// or wrong); answers to an authenticated request (420, 487) carry it.
pub fn binding_error(
    buf: &mut [u8],
    tid: &TransactionId,
    code: u16,
    unknown: &[u16],
    key: Option<&[u8]>,
) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(buf, Class::Error, BINDING, tid)?;
    w.error_code(code, reason_phrase(code))?;
    if !unknown.is_empty() {
        w.unknown_attributes(unknown)?;
    }
    if let Some(k) = key {
        w.message_integrity(k)?;
    }
    w.fingerprint()?;
    Ok(w.finish())
}

/// A Binding request as an ICE agent sends it (RFC 8445 section 7.1):
/// USERNAME `peer-ufrag:own-ufrag`, PRIORITY, USE-CANDIDATE, the role;
/// MESSAGE-INTEGRITY with the peer's password and FINGERPRINT on emit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindingRequest<'a> {
    /// USERNAME.
    pub username: Option<&'a str>,
    /// PRIORITY.
    pub priority: Option<u32>,
    /// USE-CANDIDATE.
    pub use_candidate: bool,
    /// ICE-CONTROLLING / ICE-CONTROLLED.
    pub role: Option<IceRole>,
}

impl BindingRequest<'_> {
    /// Writes the request; MESSAGE-INTEGRITY with `key` when given, then
    /// FINGERPRINT.
    pub fn emit(
        &self,
        buf: &mut [u8],
        tid: &TransactionId,
        key: Option<&[u8]>,
    ) -> Result<usize, StunError> {
        let mut w = MessageWriter::new(buf, Class::Request, BINDING, tid)?;
        if let Some(u) = self.username {
            w.username(u)?;
        }
        if let Some(p) = self.priority {
            w.priority(p)?;
        }
        if self.use_candidate {
            w.use_candidate()?;
        }
        if let Some(r) = self.role {
            w.ice_role(r)?;
        }
        if let Some(k) = key {
            w.message_integrity(k)?;
        }
        w.fingerprint()?;
        Ok(w.finish())
    }
}

/// A Binding indication with FINGERPRINT (a keepalive, RFC 8445 section 11).
pub fn binding_indication(buf: &mut [u8], tid: &TransactionId) -> Result<usize, StunError> {
    let mut w = MessageWriter::new(buf, Class::Indication, BINDING, tid)?;
    w.fingerprint()?;
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const PWD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";
    const TID: TransactionId = [
        0xb7, 0xe7, 0xa7, 0x01, 0xbc, 0x34, 0xd6, 0x86, 0xfa, 0x87, 0xdf, 0xae,
    ];

    // RFC 5769 section 2.1.
    fn sample_request() -> Vec<u8> {
        hex("00 01 00 58 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 10 53 54 55 4e 20 74 65 73 74 20 63 6c 69 65 6e 74
             00 24 00 04 6e 00 01 ff
             80 29 00 08 93 2f f9 b1 51 26 3b 36
             00 06 00 09 65 76 74 6a 3a 68 36 76 59 20 20 20
             00 08 00 14 9a ea a7 0c bf d8 cb 56 78 1e f2 b5 b2 d3 f2 49 c1 b5 71 a2
             80 28 00 04 e5 7a 3b cf")
    }

    // RFC 5769 section 2.2.
    fn sample_ipv4_response() -> Vec<u8> {
        hex("01 01 00 3c 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 08 00 01 a1 47 e1 12 a6 43
             00 08 00 14 2b 91 f5 99 fd 9e 90 c3 8c 74 89 f9 2a f9 ba 53 f0 6b e7 d7
             80 28 00 04 c0 7d 4c 96")
    }

    // RFC 5769 section 2.3.
    fn sample_ipv6_response() -> Vec<u8> {
        hex("01 01 00 48 21 12 a4 42 b7 e7 a7 01 bc 34 d6 86 fa 87 df ae
             80 22 00 0b 74 65 73 74 20 76 65 63 74 6f 72 20
             00 20 00 14 00 02 a1 47 01 13 a9 fa a5 d3 f1 79 bc 25 f4 b5 be d2 b9 d9
             00 08 00 14 a3 82 95 4e 4b e6 7b f1 17 84 c9 7c 82 92 c2 75 bf e3 ed 41
             80 28 00 04 c8 fb 0b 4c")
    }

    fn v4() -> SocketAddr {
        "192.0.2.1:32853".parse().unwrap()
    }

    fn v6() -> SocketAddr {
        "[2001:db8:1234:5678:11:2233:4455:6677]:32853"
            .parse()
            .unwrap()
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn message_type_bits() {
        assert_eq!(message_type(Class::Request, BINDING), 0x0001);
        assert_eq!(message_type(Class::Indication, BINDING), 0x0011);
        assert_eq!(message_type(Class::Success, BINDING), 0x0101);
        assert_eq!(message_type(Class::Error, BINDING), 0x0111);
        // Every method and class round-trips through the interleaving.
        let mut buf = [0u8; 20];
        for method in [0x001, 0x003, 0x00f, 0x010, 0x07f, 0x080, 0xfff] {
            for class in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                let n = MessageWriter::new(&mut buf, class, method, &TID)
                    .unwrap()
                    .finish();
                let m = StunMessage::new_checked(&buf[..n]).unwrap();
                assert_eq!((m.method(), m.class()), (method, class));
            }
        }
    }

    #[test]
    fn rfc5769_sample_request() {
        let b = sample_request();
        let m = StunMessage::new_checked(&b[..]).unwrap();
        assert_eq!((m.class(), m.method()), (Class::Request, BINDING));
        assert_eq!(m.transaction_id(), TID);
        m.check_integrity(PWD).unwrap();
        m.check_fingerprint().unwrap();
        assert_eq!(m.username(), Some(&b"evtj:h6vY"[..]));
        assert_eq!(m.priority(), Ok(Some(0x6e00_01ff)));
        assert_eq!(
            m.ice_role(),
            Ok(Some(IceRole::Controlled(0x932f_f9b1_5126_3b36)))
        );
        assert!(!m.use_candidate());
        assert_eq!(m.attribute(attr::SOFTWARE), Some(&b"STUN test client"[..]));
        assert_eq!(
            m.check_integrity(b"VOkJxbRl1RmTxUk/WvJxBu"),
            Err(StunError::BadIntegrity)
        );

        // Our writer, same inputs: zero padding instead of the RFC's spaces, so
        // other bytes, but the same checks pass and the same values come out.
        let mut out = [0u8; 200];
        let mut w = MessageWriter::new(&mut out, Class::Request, BINDING, &TID).unwrap();
        w.software("STUN test client")
            .unwrap()
            .priority(0x6e00_01ff)
            .unwrap()
            .ice_role(IceRole::Controlled(0x932f_f9b1_5126_3b36))
            .unwrap()
            .username("evtj:h6vY")
            .unwrap()
            .message_integrity(PWD)
            .unwrap()
            .fingerprint()
            .unwrap();
        let n = w.finish();
        assert_eq!(n, b.len());
        let ours = StunMessage::new_checked(&out[..n]).unwrap();
        ours.check_integrity(PWD).unwrap();
        ours.check_fingerprint().unwrap();
        assert_eq!(ours.username(), m.username());
        assert_eq!(ours.priority(), m.priority());
        assert_eq!(ours.ice_role(), m.ice_role());
        // Byte for byte where the RFC pads with zeros would: header and every
        // attribute header.
        assert_eq!(out[..20], b[..20]);
        let heads = |x: &[u8]| {
            StunMessage::new_checked(x)
                .unwrap()
                .attributes()
                .map(|a| (a.kind, a.value.len(), a.offset))
                .collect::<Vec<_>>()
        };
        assert_eq!(heads(&out[..n]), heads(&b));
    }

    fn check_response(b: &[u8], mapped: SocketAddr) {
        let m = StunMessage::new_checked(b).unwrap();
        assert_eq!((m.class(), m.method()), (Class::Success, BINDING));
        assert_eq!(m.transaction_id(), TID);
        m.check_integrity(PWD).unwrap();
        m.check_fingerprint().unwrap();
        assert_eq!(m.xor_mapped_address(), Ok(Some(mapped)));
    }

    #[test]
    fn rfc5769_sample_responses() {
        for (b, mapped) in [
            (sample_ipv4_response(), v4()),
            (sample_ipv6_response(), v6()),
        ] {
            check_response(&b, mapped);
            assert_eq!(
                StunMessage::new_checked(&b[..])
                    .unwrap()
                    .attribute(attr::SOFTWARE),
                Some(&b"test vector"[..])
            );
            // Our writer for the same inputs.
            let mut out = [0u8; 200];
            let mut w = MessageWriter::new(&mut out, Class::Success, BINDING, &TID).unwrap();
            w.software("test vector")
                .unwrap()
                .xor_mapped_address(mapped)
                .unwrap()
                .message_integrity(PWD)
                .unwrap()
                .fingerprint()
                .unwrap();
            let n = w.finish();
            assert_eq!(n, b.len());
            check_response(&out[..n], mapped);
            // The XOR-MAPPED-ADDRESS bytes are the RFC's exactly.
            let xma = |x: &[u8]| {
                StunMessage::new_checked(x)
                    .unwrap()
                    .attribute(attr::XOR_MAPPED_ADDRESS)
                    .unwrap()
                    .to_vec()
            };
            assert_eq!(xma(&out[..n]), xma(&b));
            // And the short form, without SOFTWARE.
            let n = binding_success(&mut out, &TID, mapped, PWD).unwrap();
            check_response(&out[..n], mapped);
        }
    }

    #[test]
    fn a_flipped_byte_fails_integrity_or_fingerprint() {
        let b = sample_request();
        // Every byte covered by MESSAGE-INTEGRITY (header and attributes up to
        // its end; the padding bytes of USERNAME too).
        let mi_end = b.len() - 8;
        for i in 0..mi_end {
            let mut t = b.clone();
            t[i] ^= 0x01;
            let Ok(m) = StunMessage::new_checked(&t[..]) else {
                continue; // the header or a length no longer parses: also refused
            };
            assert!(m.check_integrity(PWD).is_err(), "byte {i}");
            assert_eq!(
                m.check_fingerprint(),
                Err(StunError::BadFingerprint),
                "byte {i}"
            );
        }
        let mut t = b.clone();
        let last = t.len() - 1;
        t[last] ^= 0x80;
        let m = StunMessage::new_checked(&t[..]).unwrap();
        assert_eq!(m.check_fingerprint(), Err(StunError::BadFingerprint));
        m.check_integrity(PWD).unwrap();
    }

    #[test]
    fn malformed_headers_and_attributes_are_typed_errors() {
        let b = sample_request();
        let check = |x: &[u8]| StunMessage::new_checked(x).map(|_| ());
        assert_eq!(check(&b[..19]), Err(StunError::Truncated));
        assert_eq!(check(&b[..b.len() - 4]), Err(StunError::Truncated));
        let mut t = b.clone();
        t.push(0);
        assert_eq!(check(&t), Err(StunError::BadLength));
        let mut t = b.clone();
        t[0] |= 0x40;
        assert_eq!(check(&t), Err(StunError::NotStun));
        let mut t = b.clone();
        t[4] = 0;
        assert_eq!(check(&t), Err(StunError::BadCookie));
        let mut t = b.clone();
        t[3] = 0x57;
        assert_eq!(check(&t), Err(StunError::BadLength));
        // SOFTWARE's length grown past the message.
        let mut t = b.clone();
        t[23] = 0xff;
        assert_eq!(check(&t), Err(StunError::AttributeOverrun));
        // An attribute after FINGERPRINT.
        let mut t = b.clone();
        t.extend_from_slice(&[0x80, 0x22, 0, 0]);
        t[3] += 4;
        assert_eq!(check(&t), Err(StunError::AfterFingerprint));
        // MESSAGE-INTEGRITY of the wrong size.
        let mut w = [0u8; 64];
        let mut m = MessageWriter::new(&mut w, Class::Request, BINDING, &TID).unwrap();
        m.attribute(attr::MESSAGE_INTEGRITY, &[0; 16]).unwrap();
        let n = m.finish();
        assert_eq!(
            check(&w[..n]),
            Err(StunError::BadAttribute(attr::MESSAGE_INTEGRITY))
        );
        // Missing integrity and fingerprint; bad values.
        let mut m = MessageWriter::new(&mut w, Class::Request, BINDING, &TID).unwrap();
        m.attribute(attr::PRIORITY, &[1, 2]).unwrap();
        m.attribute(attr::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4])
            .unwrap();
        m.attribute(attr::ICE_CONTROLLING, &[0; 8]).unwrap();
        m.attribute(attr::ICE_CONTROLLED, &[0; 8]).unwrap();
        let n = m.finish();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert_eq!(v.check_integrity(PWD), Err(StunError::NoIntegrity));
        assert_eq!(v.check_fingerprint(), Err(StunError::NoFingerprint));
        assert_eq!(v.priority(), Err(StunError::BadAttribute(attr::PRIORITY)));
        assert_eq!(
            v.xor_mapped_address(),
            Err(StunError::BadAttribute(attr::XOR_MAPPED_ADDRESS))
        );
        assert!(v.ice_role().is_err());
    }

    #[test]
    fn attributes_after_integrity_are_ignored_except_fingerprint() {
        let mut w = [0u8; 128];
        let mut m = MessageWriter::new(&mut w, Class::Request, BINDING, &TID).unwrap();
        m.username("a:b")
            .unwrap()
            .message_integrity(b"pwd")
            .unwrap()
            .use_candidate()
            .unwrap()
            .fingerprint()
            .unwrap();
        let n = m.finish();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert!(!v.use_candidate());
        assert!(v.has_fingerprint());
        v.check_fingerprint().unwrap();
        // The attribute after MI does not disturb it: MI's length field
        // counts up to MI's end only.
        v.check_integrity(b"pwd").unwrap();
    }

    #[test]
    fn error_responses_and_requests_round_trip() {
        let mut w = [0u8; 128];
        let n = binding_error(&mut w, &TID, 401, &[], None).unwrap();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert_eq!(v.class(), Class::Error);
        assert_eq!(v.error_code(), Ok(Some((401, &b"Unauthorized"[..]))));
        assert_eq!(v.check_integrity(b"k"), Err(StunError::NoIntegrity));
        v.check_fingerprint().unwrap();
        let n = binding_error(&mut w, &TID, 420, &[0x7777, 0x0042], Some(b"k")).unwrap();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert_eq!(v.error_code(), Ok(Some((420, &b"Unknown Attribute"[..]))));
        assert_eq!(
            v.attribute(attr::UNKNOWN_ATTRIBUTES),
            Some(&[0x77, 0x77, 0x00, 0x42][..])
        );
        v.check_integrity(b"k").unwrap();
        v.check_fingerprint().unwrap();
        assert_eq!(
            binding_error(&mut w, &TID, 200, &[], None),
            Err(StunError::InvalidValue)
        );
        assert_eq!(
            binding_error(&mut w[..30], &TID, 487, &[], Some(b"k")),
            Err(StunError::BufferTooSmall)
        );
        let n = binding_indication(&mut w, &TID).unwrap();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert_eq!(v.class(), Class::Indication);
        v.check_fingerprint().unwrap();
        // A request with an unknown comprehension-required attribute.
        let mut m = MessageWriter::new(&mut w, Class::Request, BINDING, &TID).unwrap();
        m.attribute(0x7777, b"?").unwrap().username("x:y").unwrap();
        let n = m.finish();
        let v = StunMessage::new_checked(&w[..n]).unwrap();
        assert_eq!(v.unknown_required::<4>(), ([0x7777, 0, 0, 0], 1));
    }

    fn exercise(b: &[u8]) {
        if let Ok(m) = StunMessage::new_checked(b) {
            let _ = (m.class(), m.method(), m.transaction_id());
            let _ = (m.username(), m.priority(), m.use_candidate(), m.ice_role());
            let _ = (
                m.xor_mapped_address(),
                m.error_code(),
                m.unknown_required::<2>(),
            );
            let _ = (m.check_integrity(b"k"), m.check_fingerprint());
            assert!(m.attributes().count() <= b.len() / 4);
        }
    }

    proptest! {
        #[test]
        fn parsing_random_bytes_never_panics(b in proptest::collection::vec(any::<u8>(), 0..160)) {
            exercise(&b);
        }

        #[test]
        fn parsing_random_attributes_never_panics(
            body in proptest::collection::vec(any::<u8>(), 0..40),
            words in 0usize..10,
        ) {
            // A valid header whose length matches, over random attribute bytes.
            let mut b = sample_request()[..20].to_vec();
            b.extend_from_slice(&body);
            b.resize(20 + 4 * words, 0);
            let len = (b.len() - 20) as u16;
            b[2..4].copy_from_slice(&len.to_be_bytes());
            exercise(&b);
        }

        #[test]
        fn written_addresses_decode(port in any::<u16>(), ip in any::<[u8; 16]>(), v6 in any::<bool>()) {
            let addr = if v6 {
                SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port)
            } else {
                SocketAddr::new(IpAddr::V4(Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3])), port)
            };
            let mut w = [0u8; 128];
            let n = binding_success(&mut w, &TID, addr, b"k").unwrap();
            let v = StunMessage::new_checked(&w[..n]).unwrap();
            prop_assert_eq!(v.xor_mapped_address(), Ok(Some(addr)));
            prop_assert!(v.check_integrity(b"k").is_ok());
        }
    }
}
