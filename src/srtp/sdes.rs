//! SDES key exchange: RFC 4568 `a=crypto` attributes.
//!
//! `a=crypto:<tag> <suite> inline:<base64 key||salt>[|<lifetime>][|<mki>:<length>]`

use core::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::{SrtpConfig, SrtpError, SrtpProfile};

/// Why an `a=crypto` line could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SdesError {
    /// Not of the form `tag suite key-params`.
    Syntax,
    /// The crypto suite is not one this library implements.
    UnknownSuite,
    /// The key parameter is not `inline:` or its base64 is invalid.
    BadKeyParam,
    /// The decoded key||salt length does not match the suite.
    BadKeyLength,
    /// The lifetime or MKI field is malformed.
    BadLifetimeOrMki,
}

impl fmt::Display for SdesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SdesError::Syntax => "a=crypto line is not `tag suite inline:...`",
            SdesError::UnknownSuite => "unknown crypto suite",
            SdesError::BadKeyParam => "key parameter is not valid `inline:` base64",
            SdesError::BadKeyLength => "key||salt length does not match the suite",
            SdesError::BadLifetimeOrMki => "malformed lifetime or MKI",
        })
    }
}

impl std::error::Error for SdesError {}

/// One parsed `a=crypto` attribute.
#[derive(Clone, PartialEq, Eq)]
pub struct CryptoAttribute {
    /// The tag.
    pub tag: u32,
    /// The suite.
    pub profile: SrtpProfile,
    /// Master key.
    pub key: Vec<u8>,
    /// Master salt.
    pub salt: Vec<u8>,
    /// Key lifetime in packets, if given.
    pub lifetime: Option<u64>,
    /// MKI value and its length in bytes, if given.
    pub mki: Option<(u32, u8)>,
}

impl fmt::Debug for CryptoAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CryptoAttribute")
            .field("tag", &self.tag)
            .field("profile", &self.profile)
            .field("lifetime", &self.lifetime)
            .field("mki", &self.mki)
            .finish_non_exhaustive()
    }
}

impl CryptoAttribute {
    /// Parses a line with or without the leading `a=crypto:`.
    pub fn parse(line: &str) -> Result<Self, SdesError> {
        let line = line.trim();
        let line = line
            .strip_prefix("a=crypto:")
            .or_else(|| line.strip_prefix("crypto:"))
            .unwrap_or(line);
        let mut parts = line.split_ascii_whitespace();
        let (Some(tag), Some(suite), Some(params)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(SdesError::Syntax);
        };
        let tag: u32 = tag.parse().map_err(|_| SdesError::Syntax)?;
        let profile = SrtpProfile::from_sdes_name(suite).ok_or(SdesError::UnknownSuite)?;
        // Only the first key parameter is used (several are allowed, separated by ';').
        let first = params.split(';').next().unwrap_or("");
        let inline = first
            .strip_prefix("inline:")
            .ok_or(SdesError::BadKeyParam)?;
        let mut fields = inline.split('|');
        let b64 = fields.next().unwrap_or("");
        let key_salt = STANDARD
            .decode(b64)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64))
            .map_err(|_| SdesError::BadKeyParam)?;
        if key_salt.len() != profile.key_len() + profile.salt_len() {
            return Err(SdesError::BadKeyLength);
        }
        let mut lifetime = None;
        let mut mki = None;
        for f in fields {
            if let Some((v, l)) = f.split_once(':') {
                let v: u32 = v.parse().map_err(|_| SdesError::BadLifetimeOrMki)?;
                let l: u8 = l.parse().map_err(|_| SdesError::BadLifetimeOrMki)?;
                if !(1..=128).contains(&l) {
                    return Err(SdesError::BadLifetimeOrMki);
                }
                mki = Some((v, l));
            } else if let Some(exp) = f.strip_prefix("2^") {
                let e: u32 = exp.parse().map_err(|_| SdesError::BadLifetimeOrMki)?;
                lifetime = Some(1u64.checked_shl(e).ok_or(SdesError::BadLifetimeOrMki)?);
            } else {
                lifetime = Some(f.parse().map_err(|_| SdesError::BadLifetimeOrMki)?);
            }
        }
        let (key, salt) = key_salt.split_at(profile.key_len());
        Ok(CryptoAttribute {
            tag,
            profile,
            key: key.to_vec(),
            salt: salt.to_vec(),
            lifetime,
            mki,
        })
    }

    /// The SRTP configuration for these keys, with the MKI if one is given (its
    /// value as a big-endian number of its length in bytes, RFC 4568 6.1). An MKI
    /// longer than the 4 bytes [`SrtpConfig::with_mki`] supports, or a value that
    /// does not fit its length, is [`SrtpError::BadMki`].
    pub fn to_config(&self) -> Result<SrtpConfig, SrtpError> {
        let cfg = SrtpConfig::new(self.profile, &self.key, &self.salt)?;
        match self.mki {
            None => Ok(cfg),
            Some((value, len)) => {
                let len = usize::from(len);
                if !(1..=4).contains(&len) || (len < 4 && value >> (8 * len) != 0) {
                    return Err(SrtpError::BadMki);
                }
                cfg.with_mki(&value.to_be_bytes()[4 - len..])
            }
        }
    }
}

impl fmt::Display for CryptoAttribute {
    /// Formats as `a=crypto:...`, the lifetime as `2^n` when it is a power of two.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ks = self.key.clone();
        ks.extend_from_slice(&self.salt);
        write!(
            f,
            "a=crypto:{} {} inline:{}",
            self.tag,
            self.profile.sdes_name(),
            STANDARD.encode(&ks)
        )?;
        if let Some(l) = self.lifetime {
            if l.is_power_of_two() {
                write!(f, "|2^{}", l.trailing_zeros())?;
            } else {
                write!(f, "|{l}")?;
            }
        }
        if let Some((v, l)) = self.mki {
            write!(f, "|{v}:{l}")?;
        }
        Ok(())
    }
}
