//! SRTP and SRTCP (RFC 3711, RFC 6188, RFC 7714) in place.
//!
//! A [`SrtpContext`] holds the session keys of one direction (derived once from the
//! master key, with AES key schedules and HMAC states precomputed) and per-SSRC
//! state in a hash map: rollover counter, highest sequence number, replay windows (a
//! sender's: the indices it sent, so that none is protected twice) and the SRTCP
//! index. `protect_*` encrypts in place and writes the tag into the
//! caller's tailroom; `unprotect_*` authenticates before touching the buffer, so a
//! packet that fails leaves the buffer exactly as it was.
//!
//! Profiles are dispatched through an `enum`, never a trait object. AES-CM and
//! HMAC-SHA1 come from RustCrypto (`aes`, `sha1`'s compression function); the GCM
//! profiles use ring's assembly, which is 2-4x faster than `aes-gcm` here.
//!
//! Cryptex (RFC 9335, [`SrtpConfig::with_cryptex`]) extends the encrypted part of
//! RTP packets to the CSRC list and the RFC 8285 header extensions.

use core::fmt;
use core::ops::Range;

use aes::{Aes128, Aes128Enc, Aes256, Aes256Enc};
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use cipher::{BlockEncrypt, KeyInit};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey};
use rustc_hash::FxHashMap;
use subtle::ConstantTimeEq;

use auth::{Absorb, HmacSha1Key};

mod auth;
mod cryptex;
pub mod sdes;

/// An SRTP protection profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpProfile {
    /// AES-128 counter mode, HMAC-SHA1 80-bit tag.
    AesCm128HmacSha1_80,
    /// AES-128 counter mode, HMAC-SHA1 32-bit tag (SRTCP keeps 80 bits).
    AesCm128HmacSha1_32,
    /// AES-256 counter mode (RFC 6188), 80-bit tag.
    AesCm256HmacSha1_80,
    /// AES-256 counter mode (RFC 6188), 32-bit tag.
    AesCm256HmacSha1_32,
    /// AES-128-GCM (RFC 7714), 16-byte tag.
    AeadAes128Gcm,
    /// AES-256-GCM (RFC 7714), 16-byte tag.
    AeadAes256Gcm,
    /// No encryption, HMAC-SHA1 80-bit tag (debugging).
    NullHmacSha1_80,
    /// No encryption, HMAC-SHA1 32-bit tag (debugging).
    NullHmacSha1_32,
}

impl SrtpProfile {
    /// Every profile.
    pub const ALL: [SrtpProfile; 8] = [
        SrtpProfile::AesCm128HmacSha1_80,
        SrtpProfile::AesCm128HmacSha1_32,
        SrtpProfile::AesCm256HmacSha1_80,
        SrtpProfile::AesCm256HmacSha1_32,
        SrtpProfile::AeadAes128Gcm,
        SrtpProfile::AeadAes256Gcm,
        SrtpProfile::NullHmacSha1_80,
        SrtpProfile::NullHmacSha1_32,
    ];

    /// Master key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            SrtpProfile::AesCm256HmacSha1_80
            | SrtpProfile::AesCm256HmacSha1_32
            | SrtpProfile::AeadAes256Gcm => 32,
            _ => 16,
        }
    }

    /// Master salt length in bytes.
    pub fn salt_len(self) -> usize {
        if self.is_aead() {
            12
        } else {
            14
        }
    }

    /// True for the GCM profiles.
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm
        )
    }

    /// Authentication tag length of SRTP packets.
    pub fn rtp_tag_len(self) -> usize {
        match self {
            SrtpProfile::AesCm128HmacSha1_32
            | SrtpProfile::AesCm256HmacSha1_32
            | SrtpProfile::NullHmacSha1_32 => 4,
            SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm => 16,
            _ => 10,
        }
    }

    /// Authentication tag length of SRTCP packets (80 bits for every HMAC profile).
    pub fn rtcp_tag_len(self) -> usize {
        if self.is_aead() {
            16
        } else {
            10
        }
    }

    /// The most bytes protect can add to a packet (SRTCP: tag + E||index).
    pub fn max_overhead(self) -> usize {
        self.rtcp_tag_len().max(self.rtp_tag_len()) + 4
    }

    /// The name in SDES `a=crypto` lines (RFC 4568, RFC 6188, RFC 7714).
    pub fn sdes_name(self) -> &'static str {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => "AES_CM_128_HMAC_SHA1_80",
            SrtpProfile::AesCm128HmacSha1_32 => "AES_CM_128_HMAC_SHA1_32",
            SrtpProfile::AesCm256HmacSha1_80 => "AES_256_CM_HMAC_SHA1_80",
            SrtpProfile::AesCm256HmacSha1_32 => "AES_256_CM_HMAC_SHA1_32",
            SrtpProfile::AeadAes128Gcm => "AEAD_AES_128_GCM",
            SrtpProfile::AeadAes256Gcm => "AEAD_AES_256_GCM",
            SrtpProfile::NullHmacSha1_80 => "NULL_HMAC_SHA1_80",
            SrtpProfile::NullHmacSha1_32 => "NULL_HMAC_SHA1_32",
        }
    }

    /// Looks a profile up by its SDES name.
    pub fn from_sdes_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.sdes_name() == name)
    }

    /// The DTLS-SRTP protection profile id (RFC 5764, RFC 7714), if any.
    pub fn dtls_id(self) -> Option<u16> {
        match self {
            SrtpProfile::AesCm128HmacSha1_80 => Some(0x0001),
            SrtpProfile::AesCm128HmacSha1_32 => Some(0x0002),
            SrtpProfile::NullHmacSha1_80 => Some(0x0005),
            SrtpProfile::NullHmacSha1_32 => Some(0x0006),
            SrtpProfile::AeadAes128Gcm => Some(0x0007),
            SrtpProfile::AeadAes256Gcm => Some(0x0008),
            _ => None,
        }
    }

    /// The profile for a DTLS-SRTP protection profile id.
    pub fn from_dtls_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.dtls_id() == Some(id))
    }
}

/// Why SRTP/SRTCP processing failed. The packet is left unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SrtpError {
    /// Shorter than header plus tag (or not a parseable RTP/RTCP header).
    Truncated,
    /// Master key or salt has the wrong length for the profile.
    BadKeyLength,
    /// A configuration value is out of range (replay window size, ...).
    BadConfig,
    /// The authentication tag does not match.
    AuthFailed,
    /// The packet index was seen before.
    Replayed,
    /// Protect: this SSRC has already sent a packet with this index (ROC and
    /// sequence number); protecting it again would reuse AES-CM keystream or a
    /// GCM nonce. See [`SrtpConfig::with_allow_repeat_tx`].
    IndexReused,
    /// The packet index is older than the replay window.
    TooOld,
    /// The SSRC is unknown and the context is strict.
    UnknownSsrc,
    /// The packet's MKI is not the configured one.
    MkiMismatch,
    /// An SDES MKI this library cannot use: longer than 4 bytes, or a value that
    /// does not fit its length.
    BadMki,
    /// The SRTP index (2^48) or SRTCP index (2^31) is exhausted; re-key.
    IndexExhausted,
    /// The buffer has no room for the tag.
    BufferTooSmall,
    /// The packet is malformed (bad version, lengths that do not add up, longer
    /// than [`MAX_PACKET`] once protected).
    Malformed,
    /// Cryptex is on and the packet's header extension is not an RFC 8285 one-byte
    /// (0xBEDE) or two-byte (0x1000, appbits zero) block, so its CSRCs and
    /// extension cannot be encrypted (RFC 9335 4).
    CryptexUnsupported,
}

/// The longest SRTP or SRTCP packet accepted (the largest UDP payload): protect
/// refuses a packet whose protected length would exceed it, unprotect a longer
/// one, so that every packet we protect our unprotect takes. AES-CM's
/// keystream for one packet must stay under 2^16 blocks (RFC 3711 4.1.1), which
/// this keeps far away.
pub const MAX_PACKET: usize = 65_535;

/// `Malformed` for a packet longer than [`MAX_PACKET`].
fn within_max_packet(len: usize) -> Result<(), SrtpError> {
    if len > MAX_PACKET {
        return Err(SrtpError::Malformed);
    }
    Ok(())
}

impl fmt::Display for SrtpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrtpError::Truncated => "packet shorter than header and tag",
            SrtpError::BadKeyLength => "master key or salt length does not match the profile",
            SrtpError::BadConfig => "invalid SRTP configuration value",
            SrtpError::AuthFailed => "authentication failed",
            SrtpError::Replayed => "replayed packet",
            SrtpError::IndexReused => {
                "packet index already protected for this SSRC (keystream reuse refused)"
            }
            SrtpError::TooOld => "packet index older than the replay window",
            SrtpError::UnknownSsrc => "unknown SSRC",
            SrtpError::MkiMismatch => "MKI does not match the configured key",
            SrtpError::BadMki => "MKI longer than 4 bytes or its value does not fit its length",
            SrtpError::IndexExhausted => "packet index exhausted, re-key needed",
            SrtpError::BufferTooSmall => "no tailroom for the authentication tag",
            SrtpError::Malformed => "malformed RTP/RTCP packet",
            SrtpError::CryptexUnsupported => {
                "cryptex needs an RFC 8285 one-byte or two-byte header extension"
            }
        })
    }
}

impl std::error::Error for SrtpError {}

/// Keys and options of one SRTP context.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpConfig {
    profile: SrtpProfile,
    key: [u8; 32],
    salt: [u8; 14],
    // Packed into 56 bytes: one per context, four per relayed SRTP call.
    /// log2 of the SRTP replay window in packets (6..=15).
    replay_log2: u8,
    /// log2 of the key derivation rate plus one; 0 for a rate of zero.
    kdr_log2p1: u8,
    mki: [u8; 4],
    mki_len: u8,
    /// `STRICT_SSRC | CRYPTEX | COMPACT | ALLOW_REPEAT_TX`.
    flags: u8,
}

const STRICT_SSRC: u8 = 1;
const CRYPTEX: u8 = 2;
const COMPACT: u8 = 4;
const ALLOW_REPEAT_TX: u8 = 8;

impl fmt::Debug for SrtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SrtpConfig")
            .field("profile", &self.profile)
            .field("replay_window", &(64 * self.replay_words()))
            .field("strict_ssrc", &self.strict())
            .field("kdr", &self.kdr())
            .field("mki_len", &self.mki_len)
            .field("cryptex", &self.cryptex())
            .field("compact", &self.compact())
            .field("allow_repeat_tx", &self.allow_repeat_tx())
            .finish_non_exhaustive()
    }
}

impl SrtpConfig {
    /// Default replay window, in packets.
    pub const DEFAULT_REPLAY_WINDOW: usize = 1024;

    /// A configuration from a master key and salt of the profile's lengths.
    pub fn new(profile: SrtpProfile, key: &[u8], salt: &[u8]) -> Result<Self, SrtpError> {
        if key.len() != profile.key_len() || salt.len() != profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let mut k = [0u8; 32];
        k[..key.len()].copy_from_slice(key);
        let mut s = [0u8; 14];
        s[..salt.len()].copy_from_slice(salt);
        Ok(SrtpConfig {
            profile,
            key: k,
            salt: s,
            replay_log2: Self::DEFAULT_REPLAY_WINDOW.trailing_zeros() as u8,
            kdr_log2p1: 0,
            mki: [0; 4],
            mki_len: 0,
            flags: 0,
        })
    }

    /// Compact session keys: keep only the session keys' bytes and expand the AES
    /// key schedule for each packet on the stack, instead of keeping it expanded
    /// (704 bytes per AES-128 key with the `aes` crate, 960 for AES-256, 736 for
    /// AES-128-GCM). For gateways that hold many sessions: it saves about 0.7 KB
    /// per context (more once SRTCP flows) for some tens of nanoseconds per packet
    /// (an AES-NI key expansion). With the 128-bit profiles the SRTCP session keys
    /// are not kept either: each SRTCP packet derives them (about half a
    /// microsecond; RTCP comes every few seconds per stream). Off by default.
    pub fn with_compact_keys(mut self, on: bool) -> Self {
        self.set_flag(COMPACT, on);
        self
    }

    /// A configuration from concatenated key||salt (as in SDES `inline:`).
    pub fn from_key_salt(profile: SrtpProfile, key_salt: &[u8]) -> Result<Self, SrtpError> {
        if key_salt.len() != profile.key_len() + profile.salt_len() {
            return Err(SrtpError::BadKeyLength);
        }
        let (k, s) = key_salt.split_at(profile.key_len());
        Self::new(profile, k, s)
    }

    /// SRTP replay window size in packets, 64..=32768 (rounded up to a power of
    /// two, so that finding a packet's bit is a mask, not a division). The SRTCP
    /// replay window is 128 packets whatever this is, as in libsrtp.
    pub fn with_replay_window(mut self, packets: usize) -> Result<Self, SrtpError> {
        if !(64..=32768).contains(&packets) {
            return Err(SrtpError::BadConfig);
        }
        self.replay_log2 = packets.next_power_of_two().trailing_zeros() as u8;
        Ok(self)
    }

    /// Key derivation rate (RFC 3711 4.3.1): 0 (derive once) or a power of two up
    /// to 2^24; session keys are re-derived every `kdr` packets of a stream.
    pub fn with_kdr(mut self, kdr: u64) -> Result<Self, SrtpError> {
        if kdr != 0 && (!kdr.is_power_of_two() || kdr > 1 << 24) {
            return Err(SrtpError::BadConfig);
        }
        self.kdr_log2p1 = if kdr == 0 {
            0
        } else {
            kdr.trailing_zeros() as u8 + 1
        };
        Ok(self)
    }

    /// Master key identifier (1 to 4 bytes): protect appends it, unprotect requires
    /// it to match (RFC 3711 3.1).
    pub fn with_mki(mut self, mki: &[u8]) -> Result<Self, SrtpError> {
        if mki.is_empty() || mki.len() > 4 {
            return Err(SrtpError::BadConfig);
        }
        self.mki[..mki.len()].copy_from_slice(mki);
        self.mki_len = mki.len() as u8;
        Ok(self)
    }

    /// The most bytes protect adds to an RTP packet: tag and MKI, and with Cryptex
    /// the 4-byte extension header inserted into packets that have CSRCs but no
    /// header extension.
    pub fn rtp_overhead(&self) -> usize {
        self.profile.rtp_tag_len() + usize::from(self.mki_len) + if self.cryptex() { 4 } else { 0 }
    }

    /// Bytes protect adds to an RTCP packet (tag, E||index and MKI).
    pub fn rtcp_overhead(&self) -> usize {
        self.profile.rtcp_tag_len() + 4 + usize::from(self.mki_len)
    }

    /// Rejects packets of SSRCs not added with [`SrtpContext::add_ssrc`].
    pub fn with_strict_ssrc(mut self, strict: bool) -> Self {
        self.set_flag(STRICT_SSRC, strict);
        self
    }

    /// Cryptex (RFC 9335): also encrypt the CSRCs and the header extensions of RTP
    /// packets. Off by default; turn it on only once the peer has signalled
    /// `a=cryptex`. The same key works for every profile.
    ///
    /// Protect, when it is on:
    /// - a packet with a one-byte (0xBEDE) or two-byte (0x1000) header extension
    ///   goes out marked 0xC0DE / 0xC2DE with its CSRCs, extension body and payload
    ///   encrypted (the 4-byte extension header stays in clear);
    /// - a packet with CSRCs but no extension gets an empty 0xC0DE extension
    ///   inserted after the CSRCs, as RFC 9335 requires: the payload moves 4 bytes
    ///   towards the tailroom, so such a packet needs 4 more bytes of room
    ///   ([`SrtpConfig::rtp_overhead`] counts them) and the returned length is 4
    ///   more than for plain SRTP;
    /// - a packet with neither goes out as plain SRTP;
    /// - a packet with any other extension profile is refused with
    ///   [`SrtpError::CryptexUnsupported`], rather than sending its CSRCs in clear.
    ///
    /// Unprotect, when it is on, decrypts packets marked 0xC0DE / 0xC2DE and gives
    /// the extension back its 0xBEDE / 0x1000 profile (an inserted empty block stays,
    /// as an empty 0xBEDE extension); every other packet is plain SRTP, since a
    /// sender may mix the two ([`Unprotected::cryptex`] tells which it was). When it
    /// is off, a 0xC0DE packet is plain SRTP with an opaque extension: with the
    /// HMAC profiles it authenticates, but its CSRCs and extension stay encrypted
    /// and its payload does not decrypt to the original; with GCM it fails
    /// authentication (the AAD differs) and is left unchanged.
    pub fn with_cryptex(mut self, on: bool) -> Self {
        self.set_flag(CRYPTEX, on);
        self
    }

    /// Lets protect send a packet index (ROC and sequence number) of an SSRC
    /// again, as libsrtp's `allow_repeat_tx` does. Off by default: protect keeps
    /// the last 64 indices each SSRC sent, refuses one sent already with
    /// [`SrtpError::IndexReused`] (the same index with other bytes would reuse
    /// AES-CM keystream or a GCM nonce, which gives away the XOR of the two
    /// plaintexts and, with GCM, the authentication key), and one more than 64
    /// behind the highest with [`SrtpError::TooOld`]; reordered packets within
    /// the 64 go out. On, none of these checks is made (for a sender that must
    /// retransmit an identical packet, or forwards packets reordered further).
    pub fn with_allow_repeat_tx(mut self, on: bool) -> Self {
        self.set_flag(ALLOW_REPEAT_TX, on);
        self
    }

    fn allow_repeat_tx(&self) -> bool {
        self.flags & ALLOW_REPEAT_TX != 0
    }

    /// Whether Cryptex is on.
    pub fn cryptex(&self) -> bool {
        self.flags & CRYPTEX != 0
    }

    fn strict(&self) -> bool {
        self.flags & STRICT_SSRC != 0
    }

    fn compact(&self) -> bool {
        self.flags & COMPACT != 0
    }

    fn set_flag(&mut self, flag: u8, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }

    /// The SRTP replay window in 64-bit words.
    fn replay_words(&self) -> u32 {
        1 << (self.replay_log2 - 6)
    }

    /// The key derivation rate (0: derive once).
    fn kdr(&self) -> u64 {
        match self.kdr_log2p1 {
            0 => 0,
            n => 1 << (n - 1),
        }
    }

    /// The profile.
    pub fn profile(&self) -> SrtpProfile {
        self.profile
    }

    fn key(&self) -> &[u8] {
        &self.key[..self.profile.key_len()]
    }

    fn salt(&self) -> &[u8] {
        &self.salt[..self.profile.salt_len()]
    }
}

/// The RFC 5764 4.2 split of DTLS-exported keying material
/// (`client_key | server_key | client_salt | server_salt`) into the client's and the
/// server's write configurations.
pub fn dtls_srtp_keys(
    profile: SrtpProfile,
    material: &[u8],
) -> Result<(SrtpConfig, SrtpConfig), SrtpError> {
    let (k, s) = (profile.key_len(), profile.salt_len());
    if material.len() != 2 * (k + s) {
        return Err(SrtpError::BadKeyLength);
    }
    let client = SrtpConfig::new(profile, &material[..k], &material[2 * k..2 * k + s])?;
    let server = SrtpConfig::new(profile, &material[k..2 * k], &material[2 * k + s..])?;
    Ok((client, server))
}

// ------------------------------------------------------------------ key derivation

/// The RFC 3711 4.3.1 PRF (AES-CM keyed with the master key) for a label, with a key
/// derivation rate of zero: `out = AES-CM(master_key, (salt ^ label<<48) * 2^16)`.
#[cfg(test)]
fn kdf(master_key: &[u8], master_salt: &[u8], label: u8, out: &mut [u8]) {
    kdf_r(master_key, master_salt, label, 0, out);
}

/// The PRF with `r = index DIV key_derivation_rate` (RFC 3711 4.3.1): the key id
/// `label || r` (8 + 48 bits) is XORed into the salt.
fn kdf_r(master_key: &[u8], master_salt: &[u8], label: u8, r: u64, out: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..master_salt.len()].copy_from_slice(master_salt);
    iv[7] ^= label;
    for (d, s) in iv[8..14].iter_mut().zip(&r.to_be_bytes()[2..]) {
        *d ^= s;
    }
    out.fill(0);
    match master_key.len() {
        16 => cm_xor(&Aes128::new(master_key.into()), &iv, out),
        _ => cm_xor(&Aes256::new(master_key.into()), &iv, out),
    }
}

/// The counter blocks iv + first, iv + first + 1, ... into `blocks`. SRTP's AES-CM
/// IVs are multiples of 2^16 (RFC 3711 4.1.1: the low 16 bits count the blocks,
/// and a packet, at most [`MAX_PACKET`] bytes, or a derived key has fewer than
/// 2^16 of them), so the counter is the IV's last two bytes, with no carry.
#[inline(always)]
fn counter_blocks(iv: &[u8; 16], first: usize, blocks: &mut [aes::Block]) {
    debug_assert!(iv[14] == 0 && iv[15] == 0 && first + blocks.len() <= 1 << 16);
    let base = u128::from_ne_bytes(*iv);
    for (i, b) in blocks.iter_mut().enumerate() {
        let mut ctr = [0u8; 16];
        ctr[14..].copy_from_slice(&((first + i) as u16).to_be_bytes());
        *b = (base | u128::from_ne_bytes(ctr)).to_ne_bytes().into();
    }
}

/// A producer of the AES-CM keystream blocks E(iv), E(iv + 1), ... into `ks`,
/// eight blocks per call; false once `ks` is full.
fn keystream<'k, C: BlockEncrypt + cipher::BlockSizeUser<BlockSize = cipher::consts::U16>>(
    c: &'k C,
    iv: &[u8; 16],
    ks: &'k mut [aes::Block],
) -> impl FnMut() -> bool + 'k {
    let iv = *iv;
    let mut at = 0;
    move || {
        if at >= ks.len() {
            return false;
        }
        let end = (at + 8).min(ks.len());
        counter_blocks(&iv, at, &mut ks[at..end]);
        c.encrypt_blocks(&mut ks[at..end]);
        at = end;
        at < ks.len()
    }
}

/// The largest payload whose keystream unprotect computes between the MAC's
/// compressions. Above it the gain vanished in measurements (1,200-byte payloads:
/// the same time within noise), while the stack buffer to zero and the keystream
/// to store and load again grow.
const SHADOW_MAX: usize = 256;

/// Unprotect's HMAC check and AES-CM decryption with the keystream computed
/// between the MAC's compressions into a stack buffer: the tag is checked before
/// anything in `buf` changes.
fn check_then_decrypt(
    keys: &SessionKeys,
    buf: &mut [u8],
    (hlen, len, tag_at): (usize, usize, usize),
    (ssrc, roc, seq): (u32, u32, u16),
) -> Result<(), SrtpError> {
    let index = (u64::from(roc) << 16) | u64::from(seq);
    let mut ks = [aes::Block::default(); SHADOW_MAX / 16];
    let ks = &mut ks[..(len - hlen).div_ceil(16)];
    let mac = keys.mac_and_keystream(&buf[..len], &roc.to_be_bytes(), ssrc, index, ks);
    if !tag_matches(&mac[..usize::from(keys.tag_len)], &buf[tag_at..]) {
        return Err(SrtpError::AuthFailed);
    }
    xor_blocks(&mut buf[hlen..len], ks);
    Ok(())
}

/// `chunk ^= keystream blocks` (the last block may be partial).
#[inline(always)]
fn xor_blocks(chunk: &mut [u8], blocks: &[aes::Block]) {
    let whole = chunk.len() / 16;
    let (head, tail) = chunk.split_at_mut(whole * 16);
    for (d, k) in head.chunks_exact_mut(16).zip(blocks) {
        let Ok(d16) = <&mut [u8; 16]>::try_from(d) else {
            continue;
        };
        // A whole block: XOR 16 bytes at once.
        *d16 = (u128::from_ne_bytes(*d16) ^ u128::from_ne_bytes((*k).into())).to_ne_bytes();
    }
    if let Some(k) = blocks.get(whole) {
        for (b, kb) in tail.iter_mut().zip(k.iter()) {
            *b ^= kb;
        }
    }
}

/// AES-CM encryption of `pkt[clear..]` in place, then the HMAC of `pkt || suffix`,
/// pipelined: while the rounds of one batch of eight blocks run, the ciphertext of
/// the batches before it is hashed (AES-NI and SHA-NI are separate units, and the
/// SHA-1 chain mostly waits on its own latency).
fn encrypt_then_mac<C: BlockEncrypt + cipher::BlockSizeUser<BlockSize = cipher::consts::U16>>(
    c: &C,
    iv: &[u8; 16],
    auth: &HmacSha1Key,
    pkt: &mut [u8],
    clear: usize,
    suffix: &[u8],
) -> [u8; 20] {
    let mut mac = Absorb::new(auth);
    let mut blocks = [aes::Block::default(); 8];
    let mut at = clear;
    // The first batch ends with the first SHA-1 block, so that hashing starts
    // as early as it can.
    let mut batch = if clear < 64 {
        (64 - clear).div_ceil(16)
    } else {
        8
    };
    while at < pkt.len() {
        let end = (at + 16 * batch).min(pkt.len());
        let n = (end - at).div_ceil(16);
        counter_blocks(iv, (at - clear) / 16, &mut blocks[..n]);
        c.encrypt_blocks(&mut blocks[..n]);
        mac.absorb(&pkt[..at]);
        xor_blocks(&mut pkt[at..end], &blocks[..n]);
        at = end;
        batch = 8;
    }
    mac.finish(auth, pkt, suffix)
}

/// AES counter mode: XORs `data` with E(iv), E(iv + 1), ... (8 blocks per batch so
/// the AES backend can pipeline them).
fn cm_xor<C: BlockEncrypt + cipher::BlockSizeUser<BlockSize = cipher::consts::U16>>(
    c: &C,
    iv: &[u8; 16],
    data: &mut [u8],
) {
    let mut blocks = [aes::Block::default(); 8];
    for (i, chunk) in data.chunks_mut(16 * 8).enumerate() {
        let n = chunk.len().div_ceil(16);
        counter_blocks(iv, 8 * i, &mut blocks[..n]);
        c.encrypt_blocks(&mut blocks[..n]);
        xor_blocks(chunk, &blocks[..n]);
    }
}

// One per context and direction, never per packet. The expanded schedules are
// boxed so that a compact context (`SrtpConfig::with_compact_keys`) is not sized
// by them (the `aes` crate's schedules hold its software fallback: 704 bytes for
// AES-128, 960 for AES-256).
#[derive(Clone)]
enum Cipher {
    Cm128(Box<Aes128>),
    Cm256(Box<Aes256>),
    Gcm(Box<GcmKey>),
    /// Compact: the session key only, expanded per packet (AES-256 keys boxed,
    /// so that the enum is sized by a 16-byte key: 24 bytes).
    Cm128Key([u8; 16]),
    Cm256Key(Box<[u8; 32]>),
    Gcm128Key([u8; 16]),
    Gcm256Key(Box<[u8; 32]>),
    Null,
}

/// Session keys of one kind of traffic (RTP or RTCP).
#[derive(Clone)]
struct SessionKeys {
    cipher: Cipher,
    salt: [u8; 14],
    /// HMAC-SHA1 states (unused, zero, with the GCM profiles).
    auth: HmacSha1Key,
    tag_len: u8,
}

impl SessionKeys {
    fn derive(cfg: &SrtpConfig, rtcp: bool, r: u64) -> Self {
        let p = cfg.profile;
        let base = if rtcp { 3 } else { 0 };
        let (mk, ms) = (cfg.key(), cfg.salt());
        let mut key = [0u8; 32];
        let key = &mut key[..p.key_len()];
        kdf_r(mk, ms, base, r, key);
        let mut salt = [0u8; 14];
        kdf_r(mk, ms, base + 2, r, &mut salt[..p.salt_len()]);
        let key = &*key;
        let k16 = || <[u8; 16]>::try_from(key).unwrap_or_default();
        let k32 = || <[u8; 32]>::try_from(key).unwrap_or_default();
        let cipher = match (p, cfg.compact()) {
            (SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32, false) => {
                Cipher::Cm128(Box::new(Aes128::new(key.into())))
            }
            (SrtpProfile::AesCm128HmacSha1_80 | SrtpProfile::AesCm128HmacSha1_32, true) => {
                Cipher::Cm128Key(k16())
            }
            (SrtpProfile::AesCm256HmacSha1_80 | SrtpProfile::AesCm256HmacSha1_32, false) => {
                Cipher::Cm256(Box::new(Aes256::new(key.into())))
            }
            (SrtpProfile::AesCm256HmacSha1_80 | SrtpProfile::AesCm256HmacSha1_32, true) => {
                Cipher::Cm256Key(Box::new(k32()))
            }
            (SrtpProfile::AeadAes128Gcm | SrtpProfile::AeadAes256Gcm, false) => {
                Cipher::Gcm(Box::new(GcmKey::new(key)))
            }
            (SrtpProfile::AeadAes128Gcm, true) => Cipher::Gcm128Key(k16()),
            (SrtpProfile::AeadAes256Gcm, true) => Cipher::Gcm256Key(Box::new(k32())),
            (SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32, _) => Cipher::Null,
        };
        let auth = if p.is_aead() {
            HmacSha1Key::unused()
        } else {
            let mut ak = [0u8; 20];
            kdf_r(mk, ms, base + 1, r, &mut ak);
            HmacSha1Key::new(&ak)
        };
        let tag_len = if rtcp {
            p.rtcp_tag_len()
        } else {
            p.rtp_tag_len()
        } as u8;
        SessionKeys {
            cipher,
            salt,
            auth,
            tag_len,
        }
    }

    /// AES-CM IV = salt ^ (ssrc << 64) ^ (index << 16).
    fn cm_iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut salt = [0u8; 16];
        salt[..14].copy_from_slice(&self.salt);
        let iv = u128::from_be_bytes(salt)
            ^ (u128::from(ssrc) << 64)
            ^ (u128::from(index & 0xffff_ffff_ffff) << 16);
        iv.to_be_bytes()
    }

    /// HMAC-SHA1 of `msg || suffix` and, between its compressions, the AES-CM
    /// keystream that `ctr_xor(ssrc, index, ..)` would XOR into `ks.len()` bytes,
    /// written to `ks` (zeros for the NULL cipher).
    fn mac_and_keystream(
        &self,
        msg: &[u8],
        suffix: &[u8],
        ssrc: u32,
        index: u64,
        ks: &mut [aes::Block],
    ) -> [u8; 20] {
        let iv = self.cm_iv(ssrc, index);
        let auth = &self.auth;
        match &self.cipher {
            Cipher::Cm128(c) => auth.mac_beside(msg, suffix, keystream(&**c, &iv, ks)),
            Cipher::Cm256(c) => auth.mac_beside(msg, suffix, keystream(&**c, &iv, ks)),
            Cipher::Cm128Key(k) => {
                let c = Aes128Enc::new(k.into());
                auth.mac_beside(msg, suffix, keystream(&c, &iv, ks))
            }
            Cipher::Cm256Key(k) => {
                let c = Aes256Enc::new((&**k).into());
                auth.mac_beside(msg, suffix, keystream(&c, &iv, ks))
            }
            _ => {
                ks.fill(aes::Block::default());
                auth.mac(msg, suffix)
            }
        }
    }

    /// AES-CM encryption of `pkt[clear..]` in place, then the HMAC of
    /// `pkt || suffix`, pipelined (see [`encrypt_then_mac`]).
    fn encrypt_then_mac(
        &self,
        ssrc: u32,
        index: u64,
        pkt: &mut [u8],
        clear: usize,
        suffix: &[u8],
    ) -> [u8; 20] {
        let iv = self.cm_iv(ssrc, index);
        let auth = &self.auth;
        match &self.cipher {
            Cipher::Cm128(c) => encrypt_then_mac(&**c, &iv, auth, pkt, clear, suffix),
            Cipher::Cm256(c) => encrypt_then_mac(&**c, &iv, auth, pkt, clear, suffix),
            Cipher::Cm128Key(k) => {
                let c = Aes128Enc::new(k.into());
                encrypt_then_mac(&c, &iv, auth, pkt, clear, suffix)
            }
            Cipher::Cm256Key(k) => {
                let c = Aes256Enc::new((&**k).into());
                encrypt_then_mac(&c, &iv, auth, pkt, clear, suffix)
            }
            _ => auth.mac(pkt, suffix),
        }
    }

    /// AES-CM keystream XOR with IV = salt ^ (ssrc << 64) ^ (index << 16).
    fn ctr_xor(&self, ssrc: u32, index: u64, data: &mut [u8]) {
        let iv = self.cm_iv(ssrc, index);
        match &self.cipher {
            Cipher::Cm128(c) => cm_xor(&**c, &iv, data),
            Cipher::Cm256(c) => cm_xor(&**c, &iv, data),
            Cipher::Cm128Key(k) => cm_xor(&Aes128Enc::new(k.into()), &iv, data),
            Cipher::Cm256Key(k) => cm_xor(&Aes256Enc::new((&**k).into()), &iv, data),
            _ => {}
        }
    }

    /// HMAC-SHA1 over `msg || suffix`.
    fn mac(&self, msg: &[u8], suffix: &[u8]) -> [u8; 20] {
        self.auth.mac(msg, suffix)
    }

    /// GCM IV (RFC 7714 8.1 / 9.1): 12 bytes of salt XOR (0 || ssrc || a || b).
    fn gcm_iv(&self, ssrc: u32, hi: u32, lo: u16) -> [u8; 12] {
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&hi.to_be_bytes());
        iv[10..12].copy_from_slice(&lo.to_be_bytes());
        for (d, s) in iv.iter_mut().zip(&self.salt[..12]) {
            *d ^= s;
        }
        iv
    }

    /// SRTCP with GCM (RFC 7714 9.1-9.2): AAD = first 8 bytes || E||index, and the
    /// IV built from the SSRC and the 31-bit index.
    fn srtcp_gcm_params(&self, head: &[u8], ssrc: u32, e_index: u32) -> ([u8; 12], [u8; 12]) {
        let mut aad = [0u8; 12];
        aad[..8].copy_from_slice(head);
        aad[8..].copy_from_slice(&e_index.to_be_bytes());
        let index = e_index & 0x7fff_ffff;
        (aad, self.gcm_iv(ssrc, index >> 16, index as u16))
    }

    /// The ring key for this packet: the kept one, or one made from compact key
    /// bytes into `scratch`.
    fn gcm_key<'k>(&'k self, scratch: &'k mut Option<GcmKey>) -> &'k GcmKey {
        match &self.cipher {
            Cipher::Gcm(k) => k,
            Cipher::Gcm128Key(k) => scratch.insert(GcmKey::new(k)),
            Cipher::Gcm256Key(k) => scratch.insert(GcmKey::new(&**k)),
            _ => unreachable!("GCM keys for a GCM profile"),
        }
    }

    fn gcm_seal(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8]) -> [u8; 16] {
        let mut scratch = None;
        let k = self.gcm_key(&mut scratch);
        // ring refuses only inputs over 2^36 bytes, which no datagram is.
        k.ring
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(*iv), Aad::from(aad), data)
            .ok()
            .and_then(|t| t.as_ref().try_into().ok())
            .unwrap_or([0; 16])
    }

    /// Verifies the tag and decrypts `data` in place; on failure `data` is left as
    /// it was. ring checks the tag after decrypting (and then zeroes the output),
    /// so the ciphertext is backed up on the stack first; a packet too large for
    /// the backup (over 4 KiB of payload, which a datagram on an Ethernet path
    /// never is) goes through `aes-gcm`, which verifies before it decrypts.
    fn gcm_open(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let mut scratch = None;
        let k = self.gcm_key(&mut scratch);
        let Ok(t) = ring::aead::Tag::try_from(tag) else {
            return false;
        };
        let open = |data: &mut [u8]| {
            k.ring
                .open_in_place_separate_tag(
                    Nonce::assume_unique_for_key(*iv),
                    Aad::from(aad),
                    t,
                    data,
                    0..,
                )
                .is_ok()
        };
        match data.len() {
            0..=256 => open_restoring::<256>(data, open),
            257..=1536 => open_restoring::<1536>(data, open),
            1537..=4096 => open_restoring::<4096>(data, open),
            _ => k.open_verified_first(iv, aad, data, tag),
        }
    }
}

/// Runs `open` on `data` (at most `N` bytes) and puts the bytes back if it fails.
fn open_restoring<const N: usize>(data: &mut [u8], open: impl FnOnce(&mut [u8]) -> bool) -> bool {
    let mut backup = [0u8; N];
    let backup = &mut backup[..data.len()];
    backup.copy_from_slice(data);
    if open(data) {
        true
    } else {
        data.copy_from_slice(backup);
        false
    }
}

/// An AEAD_AES_128_GCM or AEAD_AES_256_GCM session key: ring's expanded key, and
/// the key bytes for the rare packet that [`SessionKeys::gcm_open`] cannot back up.
struct GcmKey {
    ring: LessSafeKey,
    raw: [u8; 32],
}

impl GcmKey {
    fn new(key: &[u8]) -> Self {
        let alg = if key.len() == 16 {
            &ring::aead::AES_128_GCM
        } else {
            &ring::aead::AES_256_GCM
        };
        let ring = UnboundKey::new(alg, key).expect("SRTP session keys are 16 or 32 bytes");
        let mut raw = [0u8; 32];
        raw[..key.len()].copy_from_slice(key);
        GcmKey {
            ring: LessSafeKey::new(ring),
            raw,
        }
    }

    /// Opens with `aes-gcm`, which checks the tag before decrypting anything.
    fn open_verified_first(&self, iv: &[u8; 12], aad: &[u8], data: &mut [u8], tag: &[u8]) -> bool {
        let tag = aes_gcm::Tag::from_slice(tag);
        let r =
            if self.ring.algorithm() == &ring::aead::AES_128_GCM {
                <Aes128Gcm as aes_gcm::KeyInit>::new(self.raw[..16].into())
                    .decrypt_in_place_detached(iv.into(), aad, data, tag)
            } else {
                <Aes256Gcm as aes_gcm::KeyInit>::new((&self.raw).into()).decrypt_in_place_detached(
                    iv.into(),
                    aad,
                    data,
                    tag,
                )
            };
        r.is_ok()
    }
}

impl Clone for GcmKey {
    fn clone(&self) -> Self {
        let len = self.ring.algorithm().key_len();
        GcmKey::new(&self.raw[..len])
    }
}

// ------------------------------------------------------------------ replay window

/// "No packet accepted yet" in a window's highest index (SRTP indices are 48-bit,
/// SRTCP indices 31-bit, so this never is one).
const NO_MAX: u64 = u64::MAX;

/// Replay check of `idx` against a ring bitmap whose highest accepted index is `max`.
fn window_check(bits: &[u64], max: u64, idx: u64) -> Result<(), SrtpError> {
    if max == NO_MAX || idx > max {
        return Ok(());
    }
    let size = bits.len() as u64 * 64;
    if max - idx >= size {
        return Err(SrtpError::TooOld);
    }
    let (w, m) = window_bit(size, idx);
    if bits[w] & m != 0 {
        Err(SrtpError::Replayed)
    } else {
        Ok(())
    }
}

/// Records `idx` (already checked) in a ring bitmap, sliding it when `idx` is new.
fn window_accept(bits: &mut [u64], max: &mut u64, idx: u64) {
    let size = bits.len() as u64 * 64;
    if *max == NO_MAX {
        *max = idx;
    } else if idx > *max {
        if idx - *max >= size {
            bits.fill(0);
        } else {
            for i in *max + 1..=idx {
                let (w, m) = window_bit(size, i);
                bits[w] &= !m;
            }
        }
        *max = idx;
    }
    let (w, m) = window_bit(size, idx);
    bits[w] |= m;
}

fn window_bit(size: u64, idx: u64) -> (usize, u64) {
    // The size is a power of two (see `SrtpConfig::with_replay_window`).
    let pos = idx & (size - 1);
    ((pos / 64) as usize, 1u64 << (pos % 64))
}

/// A receiving stream's replay state, allocated by its first accepted packet (a
/// sending context's streams never need it): the highest accepted SRTP index, the
/// SRTCP window, and the SRTP window's ring bitmap of the configured size, in one
/// allocation.
struct RxWindows<B: ?Sized = [u64]> {
    max: u64,
    rtcp: SrtcpWindow,
    bits: B,
}

/// Replay state whose SRTP bitmap has `words` 64-bit words (a power of two from 1
/// to 512: windows of 64 to 32,768 packets).
fn rx_windows(words: u32) -> Box<RxWindows> {
    fn make<const N: usize>() -> Box<RxWindows> {
        Box::new(RxWindows {
            max: NO_MAX,
            rtcp: SrtcpWindow::new(),
            bits: [0u64; N],
        })
    }
    debug_assert!(words.is_power_of_two() && words <= 512);
    match words {
        1 => make::<1>(),
        2 => make::<2>(),
        4 => make::<4>(),
        8 => make::<8>(),
        16 => make::<16>(),
        32 => make::<32>(),
        64 => make::<64>(),
        128 => make::<128>(),
        256 => make::<256>(),
        _ => make::<512>(),
    }
}

/// The SRTCP replay window of one stream: 128 packets, as libsrtp keeps (RTCP
/// comes every few seconds, so 128 packets are minutes of history, and a second
/// bitmap of the RTP window's size would add 128 bytes per receiving stream).
#[derive(Debug, Clone)]
struct SrtcpWindow {
    bits: [u64; SRTCP_WINDOW / 64],
    max: u64,
}

/// Packets the SRTCP replay window covers.
const SRTCP_WINDOW: usize = 128;

impl SrtcpWindow {
    fn new() -> Self {
        SrtcpWindow {
            bits: [0; SRTCP_WINDOW / 64],
            max: NO_MAX,
        }
    }
    fn check(&self, idx: u64) -> Result<(), SrtpError> {
        window_check(&self.bits, self.max, idx)
    }
    fn accept(&mut self, idx: u64) {
        window_accept(&mut self.bits, &mut self.max, idx);
    }
}

// ------------------------------------------------------------------ per-SSRC state

/// Session keys of a stream under a non-zero key derivation rate: (r, keys) of
/// RTP and of RTCP, each re-derived when `index / kdr` changes.
#[derive(Clone, Default)]
struct KdrKeys {
    rtp: Option<(u64, SessionKeys)>,
    rtcp: Option<(u64, SessionKeys)>,
}

/// What few contexts need, in one box allocated on first use: the SRTCP session
/// keys of a context with expanded keys (a compact one derives them for each SRTCP
/// packet), and the per-SSRC keys under a non-zero key derivation rate.
#[derive(Default)]
struct Extra {
    rtcp: Option<SessionKeys>,
    kdr: FxHashMap<u32, KdrKeys>,
}

/// The state of one SSRC: 32 bytes, plus the replay windows of a receiving one.
struct Stream {
    ssrc: u32,
    roc: u32,
    s_l: Option<u16>,
    rtcp_next: u32,
    seen: Seen,
}

/// The indices a stream has seen: the send window of a sending one, or the replay
/// windows of a receiving one, allocated by its first accepted packet. 16 bytes
/// either way: the send window lies where the box's length would be.
enum Seen {
    /// Bit k set when index `(roc, s_l) - k` has been protected (see
    /// [`SrtpConfig::with_allow_repeat_tx`]).
    Sent(u64),
    Rx(Box<RxWindows>),
}

/// Indices the send window covers.
const SEND_WINDOW: u64 = 64;

impl Stream {
    fn new(ssrc: u32) -> Self {
        Stream {
            ssrc,
            roc: 0,
            s_l: None,
            rtcp_next: 0,
            seen: Seen::Sent(0),
        }
    }

    /// RFC 3711 3.3.1 / Appendix A: the guessed ROC for `seq`.
    fn estimate(&self, seq: u16) -> Result<u32, SrtpError> {
        let Some(s_l) = self.s_l else {
            return Ok(self.roc);
        };
        let roc = i64::from(self.roc);
        let v = if s_l < 0x8000 {
            if i64::from(seq) - i64::from(s_l) > 0x8000 {
                roc - 1
            } else {
                roc
            }
        } else if i64::from(s_l) - 0x8000 > i64::from(seq) {
            roc + 1
        } else {
            roc
        };
        if v < 0 {
            return Err(SrtpError::TooOld);
        }
        u32::try_from(v).map_err(|_| SrtpError::IndexExhausted)
    }

    /// The receive windows, if this stream has accepted a packet.
    fn rx_windows(&self) -> Option<&RxWindows> {
        match &self.seen {
            Seen::Rx(w) => Some(w),
            Seen::Sent(_) => None,
        }
    }

    /// Replay check of SRTP index `idx`.
    fn check(&self, idx: u64) -> Result<(), SrtpError> {
        match self.rx_windows() {
            Some(w) => window_check(&w.bits, w.max, idx),
            None => Ok(()),
        }
    }

    /// Replay check of SRTCP index `idx`.
    fn check_rtcp(&self, idx: u64) -> Result<(), SrtpError> {
        match self.rx_windows() {
            Some(w) => w.rtcp.check(idx),
            None => Ok(()),
        }
    }

    /// The replay state, allocated with an SRTP window of `words` 64-bit words
    /// (a stream that also sent loses its send window: a context is meant for one
    /// direction, and the receive window then guards its sends, see
    /// [`Stream::check_send`]).
    fn rx(&mut self, words: u32) -> &mut RxWindows {
        if let Seen::Sent(_) = self.seen {
            self.seen = Seen::Rx(rx_windows(words));
        }
        match &mut self.seen {
            Seen::Rx(w) => w,
            Seen::Sent(_) => unreachable!("allocated above"),
        }
    }

    /// Records an authenticated packet (receiver: ROC, highest sequence, window
    /// of `words` 64-bit words).
    fn update(&mut self, roc: u32, seq: u16, words: u32) {
        self.advance(roc, seq);
        let w = self.rx(words);
        window_accept(
            &mut w.bits,
            &mut w.max,
            (u64::from(roc) << 16) | u64::from(seq),
        );
    }

    /// Records an authenticated SRTCP packet.
    fn update_rtcp(&mut self, index: u32, words: u32) {
        self.rx(words).rtcp.accept(u64::from(index));
    }

    /// Whether protect may use index `(roc, seq)`: not if this stream has sent it
    /// already ([`SrtpError::IndexReused`]), nor if it is more than the send
    /// window behind the highest, where that cannot be told
    /// ([`SrtpError::TooOld`]). A stream that has received checks its receive
    /// window instead.
    fn check_send(&self, roc: u32, seq: u16) -> Result<(), SrtpError> {
        let idx = (u64::from(roc) << 16) | u64::from(seq);
        let (sent, s_l) = match (&self.seen, self.s_l) {
            (_, None) => return Ok(()),
            (Seen::Rx(w), _) => {
                return match window_check(&w.bits, w.max, idx) {
                    Err(SrtpError::Replayed) => Err(SrtpError::IndexReused),
                    r => r,
                };
            }
            (Seen::Sent(sent), Some(s_l)) => (*sent, s_l),
        };
        let max = (u64::from(self.roc) << 16) | u64::from(s_l);
        if idx > max {
            return Ok(());
        }
        let behind = max - idx;
        if behind >= SEND_WINDOW {
            Err(SrtpError::TooOld)
        } else if sent >> behind & 1 != 0 {
            Err(SrtpError::IndexReused)
        } else {
            Ok(())
        }
    }

    /// Records a protected packet: ROC, highest sequence and the send window
    /// (the receive window for a stream that has received; a sending stream never
    /// allocates one).
    fn sent(&mut self, roc: u32, seq: u16) {
        self.advance(roc, seq);
        if let Seen::Rx(w) = &mut self.seen {
            window_accept(
                &mut w.bits,
                &mut w.max,
                (u64::from(roc) << 16) | u64::from(seq),
            );
        }
    }

    /// Moves the ROC and highest sequence to `(roc, seq)` if that is newer, and
    /// records it in the send window of a sending stream.
    fn advance(&mut self, roc: u32, seq: u16) {
        let idx = (u64::from(roc) << 16) | u64::from(seq);
        let max = match self.s_l {
            Some(s_l) => (u64::from(self.roc) << 16) | u64::from(s_l),
            None => {
                self.roc = roc;
                self.s_l = Some(seq);
                if let Seen::Sent(bits) = &mut self.seen {
                    *bits = 1;
                }
                return;
            }
        };
        if idx > max {
            self.roc = roc;
            self.s_l = Some(seq);
        }
        if let Seen::Sent(bits) = &mut self.seen {
            if idx > max {
                let ahead = idx - max;
                *bits = if ahead >= SEND_WINDOW {
                    1
                } else {
                    *bits << ahead | 1
                };
            } else if max - idx < SEND_WINDOW {
                *bits |= 1 << (max - idx);
            }
        }
    }
}

/// The result of a successful unprotect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unprotected {
    /// Length of the plaintext RTP/RTCP packet at the start of the buffer.
    pub len: usize,
    /// Where the payload lies (RTP: after the header; RTCP: after the first 8 bytes).
    pub payload: Range<usize>,
    /// The packet was protected with Cryptex (RFC 9335): its CSRCs and header
    /// extension were encrypted, and the extension profile has been restored.
    pub cryptex: bool,
}

/// An RTP packet that [`SrtpContext::protect_rtp_deferred`] encrypted and whose
/// HMAC-SHA1 tag is still to be written: phase two of the split protect. Tags of
/// two packets, of any contexts, computed together with [`PendingTag::write_pair`]
/// cost about half as much each as one at a time, because their SHA-1 compressions
/// overlap in the CPU. The packet must not change before its tag is written.
#[must_use = "the packet has no authentication tag until it is written"]
pub struct PendingTag {
    auth: HmacSha1Key,
    len: u32,
    roc: u32,
    tag_at: u32,
    tag_len: u8,
}

impl PendingTag {
    /// The authenticated bytes and the tag's place, if `buf` holds them.
    fn parts<'b>(&self, buf: &'b mut [u8]) -> Option<(&'b [u8], &'b mut [u8])> {
        let (len, at) = (self.len as usize, self.tag_at as usize);
        let end = at + usize::from(self.tag_len);
        if buf.len() < end || at < len {
            return None;
        }
        let (msg, rest) = buf.split_at_mut(len);
        Some((msg, &mut rest[at - len..end - len]))
    }

    /// Writes the tag into `buf`, the buffer given to `protect_rtp_deferred`.
    pub fn write(self, buf: &mut [u8]) -> Result<(), SrtpError> {
        let (msg, tag) = self.parts(buf).ok_or(SrtpError::BufferTooSmall)?;
        let mac = self.auth.mac(msg, &self.roc.to_be_bytes());
        tag.copy_from_slice(&mac[..tag.len()]);
        Ok(())
    }

    /// Writes the tags of two packets, computing them together.
    pub fn write_pair(
        a: PendingTag,
        buf_a: &mut [u8],
        b: PendingTag,
        buf_b: &mut [u8],
    ) -> [Result<(), SrtpError>; 2] {
        match (a.parts(buf_a), b.parts(buf_b)) {
            (Some((ma, ta)), Some((mb, tb))) => {
                let (x, y) = HmacSha1Key::mac_pair(
                    (&a.auth, ma, &a.roc.to_be_bytes()),
                    (&b.auth, mb, &b.roc.to_be_bytes()),
                );
                ta.copy_from_slice(&x[..ta.len()]);
                tb.copy_from_slice(&y[..tb.len()]);
                [Ok(()), Ok(())]
            }
            _ => [a.write(buf_a), b.write(buf_b)],
        }
    }
}

/// What [`SrtpContext::unprotect_rtp_deferred`] did with a packet.
#[derive(Debug)]
pub enum Opening {
    /// Authenticated and decrypted already (AEAD profiles, whose tag check is
    /// part of the decryption).
    Done(Unprotected),
    /// Checked up to its HMAC-SHA1 tag: compute the tag with
    /// [`PendingCheck::compute`] or [`PendingCheck::compute_pair`], then
    /// [`SrtpContext::unprotect_rtp_finish`] compares it, decrypts and updates the
    /// stream. The buffer is unchanged until then.
    Pending(PendingCheck),
}

/// An RTP packet waiting for its HMAC-SHA1 tag to be computed and checked: phase
/// two of the split unprotect (see [`Opening::Pending`]).
#[must_use = "the packet is neither accepted nor rejected until it is finished"]
pub struct PendingCheck {
    auth: HmacSha1Key,
    len: u32,
    roc: u32,
    /// Where the packet's tag is, and its length.
    tag_at: u32,
    tag_len: u8,
    /// Whether the tag computed with `roc` matched the packet's (compared in
    /// constant time as soon as it is computed: carrying the 20-byte MAC to the
    /// comparison cost store-forwarding stalls).
    verdict: Option<bool>,
}

impl PendingCheck {
    /// Computes the tag of the packet in `buf`, the buffer given to
    /// `unprotect_rtp_deferred` (a buffer too short leaves it uncomputed, and
    /// `unprotect_rtp_finish` then reports the packet truncated).
    pub fn compute(&mut self, buf: &[u8]) {
        if let Some((msg, tag)) = self.parts(buf) {
            let mac = self.auth.mac(msg, &self.roc.to_be_bytes());
            self.verdict = Some(tag_matches(&mac[..tag.len()], tag));
        }
    }

    /// The authenticated bytes and the tag, if `buf` holds them.
    fn parts<'b>(&self, buf: &'b [u8]) -> Option<(&'b [u8], &'b [u8])> {
        let at = self.tag_at as usize;
        Some((
            buf.get(..self.len as usize)?,
            buf.get(at..at + usize::from(self.tag_len))?,
        ))
    }

    /// Computes the tags of two packets together.
    pub fn compute_pair(a: &mut PendingCheck, buf_a: &[u8], b: &mut PendingCheck, buf_b: &[u8]) {
        match (a.parts(buf_a), b.parts(buf_b)) {
            (Some((ma, ta)), Some((mb, tb))) => {
                let (x, y) = HmacSha1Key::mac_pair(
                    (&a.auth, ma, &a.roc.to_be_bytes()),
                    (&b.auth, mb, &b.roc.to_be_bytes()),
                );
                a.verdict = Some(tag_matches(&x[..ta.len()], ta));
                b.verdict = Some(tag_matches(&y[..tb.len()], tb));
            }
            _ => {
                a.compute(buf_a);
                b.compute(buf_b);
            }
        }
    }
}

/// What [`TagBatch`] and [`CheckBatch`] share: up to `auth::BATCH` items and a
/// `flush` that computes them, run at the latest when the batch is dropped.
macro_rules! batch_common {
    ($name:ident, $finish:literal) => {
        impl $name<'_> {
            /// Packets computed together.
            pub const CAPACITY: usize = auth::BATCH;

            /// An empty batch.
            pub fn new() -> Self {
                $name {
                    items: [const { None }; auth::BATCH],
                    len: 0,
                }
            }

            /// Packets waiting for their tags.
            pub fn len(&self) -> usize {
                self.len
            }

            /// Whether no packet waits.
            pub fn is_empty(&self) -> bool {
                self.len == 0
            }

            #[doc = $finish]
            pub fn finish(mut self) {
                self.flush();
            }
        }

        impl Default for $name<'_> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl Drop for $name<'_> {
            fn drop(&mut self) {
                if self.len > 0 {
                    self.flush();
                }
            }
        }

        impl fmt::Debug for $name<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("len", &self.len)
                    .finish()
            }
        }
    };
}

/// The HMAC-SHA1 tags of up to [`TagBatch::CAPACITY`] packets from
/// [`SrtpContext::protect_rtp_deferred`] (of any contexts), computed together.
/// With AVX-512 they run in sixteen SIMD lanes: for 160-byte payloads, about a
/// quarter of SHA-NI's time per tag on the Intel hosts of `perf/RESULTS.md`.
/// Without it, or for fewer than five packets, they are computed in pairs.
///
/// A push to a full batch computes the batch first; [`TagBatch::finish`] (or
/// dropping the batch) writes the tags still pending. The buffers stay borrowed
/// until then, so no packet can be sent before its tag is written.
#[must_use = "tags are written when the batch is finished or dropped"]
pub struct TagBatch<'b> {
    items: [Option<(PendingTag, &'b mut [u8])>; auth::BATCH],
    len: usize,
}

batch_common!(TagBatch, "Writes every tag still pending.");

impl<'b> TagBatch<'b> {
    /// Adds a packet, `buf` being the buffer given to `protect_rtp_deferred`.
    /// A buffer without the tag's room is refused at once (the packet then has
    /// no tag and must not be sent).
    pub fn push(&mut self, tag: PendingTag, buf: &'b mut [u8]) -> Result<(), SrtpError> {
        tag.parts(buf).ok_or(SrtpError::BufferTooSmall)?;
        if self.len == auth::BATCH {
            self.flush();
        }
        self.items[self.len] = Some((tag, buf));
        self.len += 1;
        Ok(())
    }

    /// Computes and writes the pending tags.
    fn flush(&mut self) {
        let mut macs = [[0u32; 5]; auth::BATCH];
        let mut slots: [Option<&mut [u8]>; auth::BATCH] = [const { None }; auth::BATCH];
        let mut batch = auth::MacBatch::new();
        for (item, slot) in self.items.iter_mut().zip(&mut slots) {
            let Some((tag, buf)) = item else { break };
            let Some((msg, at)) = tag.parts(buf) else {
                continue; // checked by `push`
            };
            batch.push(&tag.auth, msg, tag.roc.to_be_bytes());
            *slot = Some(at);
        }
        batch.compute(&mut macs);
        for (slot, mac) in slots.iter_mut().flatten().zip(&macs) {
            for (i, t) in slot.iter_mut().enumerate() {
                *t = mac_byte(mac, i);
            }
        }
        self.items = [const { None }; auth::BATCH];
        self.len = 0;
    }
}

/// The HMAC-SHA1 tags of up to [`CheckBatch::CAPACITY`] packets from
/// [`SrtpContext::unprotect_rtp_deferred`], computed together (as
/// [`TagBatch`] does for protect). [`SrtpContext::unprotect_rtp_finish`] then
/// compares each and decrypts. A push to a full batch computes the batch first;
/// [`CheckBatch::finish`] (or dropping the batch) computes the rest.
#[must_use = "tags are computed when the batch is finished or dropped"]
pub struct CheckBatch<'a> {
    items: [Option<(&'a mut PendingCheck, &'a [u8])>; auth::BATCH],
    len: usize,
}

batch_common!(CheckBatch, "Computes every tag still pending.");

impl<'a> CheckBatch<'a> {
    /// Adds a packet, `buf` being the buffer given to `unprotect_rtp_deferred`.
    /// A buffer too short is left out, and `unprotect_rtp_finish` then reports
    /// the packet truncated.
    pub fn push(&mut self, check: &'a mut PendingCheck, buf: &'a [u8]) {
        if check.parts(buf).is_none() {
            return;
        }
        if self.len == auth::BATCH {
            self.flush();
        }
        self.items[self.len] = Some((check, buf));
        self.len += 1;
    }

    /// Computes the pending tags.
    fn flush(&mut self) {
        let mut macs = [[0u32; 5]; auth::BATCH];
        let mut batch = auth::MacBatch::new();
        for (check, buf) in self.items.iter().flatten() {
            if let Some((msg, _)) = check.parts(buf) {
                batch.push(&check.auth, msg, check.roc.to_be_bytes());
            }
        }
        batch.compute(&mut macs);
        for ((check, buf), mac) in self.items.iter_mut().flatten().zip(&macs) {
            if let Some((_, tag)) = check.parts(buf) {
                check.verdict = Some(tag_matches_words(mac, tag));
            }
        }
        self.items = [const { None }; auth::BATCH];
        self.len = 0;
    }
}

// The keyed states stay out of debug output.
impl fmt::Debug for PendingTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingTag")
            .field("len", &self.len)
            .field("roc", &self.roc)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for PendingCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingCheck")
            .field("len", &self.len)
            .field("roc", &self.roc)
            .field("computed", &self.verdict.is_some())
            .finish_non_exhaustive()
    }
}

/// How far `unprotect_rtp_as` goes.
#[derive(Clone, Copy)]
enum Phase<'j> {
    /// The whole unprotect.
    Whole,
    /// Up to the HMAC tag: returns `Opening::Pending`.
    Defer,
    /// From the HMAC tag on, with whether the tag computed for this packet (with
    /// the check's ROC) matched.
    Finish(&'j PendingCheck, bool),
}

/// SRTP/SRTCP state of one direction under one master key.
pub struct SrtpContext {
    cfg: SrtpConfig,
    rtp: SessionKeys,
    streams: Streams,
    /// SRTCP keys (derived by the first SRTCP packet: many contexts never carry
    /// RTCP) and key-derivation-rate keys.
    extra: Option<Box<Extra>>,
}

impl fmt::Debug for SrtpContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtpContext")
            .field("cfg", &self.cfg)
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

/// Length of an RTP header (fixed part, CSRCs, extension), checked against `buf`.
fn rtp_header_len(buf: &[u8]) -> Result<usize, SrtpError> {
    let [b0, ..] = *buf else {
        return Err(SrtpError::Truncated);
    };
    if buf.len() < 12 {
        return Err(SrtpError::Truncated);
    }
    if b0 >> 6 != 2 {
        return Err(SrtpError::Malformed);
    }
    let mut len = 12 + 4 * usize::from(b0 & 0x0f);
    if b0 & 0x10 != 0 {
        let words = buf.get(len + 2..len + 4).ok_or(SrtpError::Truncated)?;
        len += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
    }
    if len > buf.len() {
        return Err(SrtpError::Truncated);
    }
    Ok(len)
}

/// Whether `tag` equals `want` (SRTP tags: 4 or 10 bytes), in constant time: both
/// in one 128-bit word compared by `subtle` once (its slice comparison pays an
/// optimisation barrier per byte).
fn tag_matches(want: &[u8], tag: &[u8]) -> bool {
    let n = tag.len();
    if n != want.len() || n > 16 {
        return false;
    }
    // No early exit. (Copying both into 16-byte buffers to compare them as
    // u128s stalled on store forwarding: the wide loads right after the narrow
    // stores cost more than the comparison.)
    let diff = want.iter().zip(tag).fold(0u8, |d, (x, y)| d | (x ^ y));
    bool::from(diff.ct_eq(&0))
}

/// [`tag_matches`] against a MAC kept as SHA-1's big-endian words.
fn tag_matches_words(want: &[u32; 5], tag: &[u8]) -> bool {
    if tag.len() > 20 {
        return false;
    }
    let diff = tag
        .iter()
        .enumerate()
        .fold(0u8, |d, (i, t)| d | (mac_byte(want, i) ^ t));
    bool::from(diff.ct_eq(&0))
}

/// Byte `i` of a MAC kept as SHA-1's big-endian words.
#[inline]
fn mac_byte(mac: &[u32; 5], i: usize) -> u8 {
    (mac[i / 4] >> (24 - 8 * (i % 4))) as u8
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl SrtpContext {
    /// Derives the session keys (once) and creates an empty context.
    pub fn new(cfg: SrtpConfig) -> Result<Self, SrtpError> {
        Ok(SrtpContext {
            rtp: SessionKeys::derive(&cfg, false, 0),
            cfg,
            streams: Streams::default(),
            extra: None,
        })
    }

    /// The profile.
    pub fn profile(&self) -> SrtpProfile {
        self.cfg.profile
    }

    /// Creates state for `ssrc` (required first in strict mode).
    pub fn add_ssrc(&mut self, ssrc: u32) {
        self.streams.entry(ssrc);
    }

    /// Forgets `ssrc`.
    pub fn remove_ssrc(&mut self, ssrc: u32) {
        self.streams.remove(ssrc);
        if let Some(e) = &mut self.extra {
            e.kdr.remove(&ssrc);
        }
    }

    /// Sets the rollover counter of `ssrc` (e.g. when joining a stream late).
    pub fn set_roc(&mut self, ssrc: u32, roc: u32) {
        self.add_ssrc(ssrc);
        if let Some(s) = self.streams.get_mut(ssrc) {
            s.roc = roc;
            // The send window is relative to the highest index, which moved.
            if let Seen::Sent(bits) = &mut s.seen {
                *bits = 0;
            }
        }
    }

    /// How many SSRCs have state (created by protect, by `add_ssrc`, or by a packet
    /// that authenticated).
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The rollover counter of `ssrc`.
    pub fn roc(&self, ssrc: u32) -> Option<u32> {
        self.streams.get(ssrc).map(|s| s.roc)
    }

    /// Protects the RTP packet in `buf[..len]`; the MKI (if configured) and the tag
    /// go into the tailroom after it. Returns the SRTP length (with Cryptex, 4 more
    /// for a packet that had CSRCs and no extension, see
    /// [`SrtpConfig::with_cryptex`]). A packet index its SSRC has sent already is
    /// refused, unless [`SrtpConfig::with_allow_repeat_tx`]. On error the buffer
    /// is unchanged.
    pub fn protect_rtp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        // Two copies of the code, so that the Cryptex checks cost plain SRTP
        // nothing but this branch.
        let done = if self.cfg.cryptex() {
            self.protect_rtp_as::<true>(buf, len, false)
        } else {
            self.protect_rtp_as::<false>(buf, len, false)
        };
        done.map(|(n, _)| n)
    }

    /// [`protect_rtp`](Self::protect_rtp) up to the HMAC-SHA1 tag, which the
    /// returned [`PendingTag`] writes later (phase two of the split protect, for
    /// computing the tags of several packets together). The stream state has
    /// advanced and the packet is encrypted, its MKI written. AEAD profiles finish
    /// here and return no pending tag. Returns the SRTP length, as `protect_rtp`.
    pub fn protect_rtp_deferred(
        &mut self,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(usize, Option<PendingTag>), SrtpError> {
        if self.cfg.cryptex() {
            self.protect_rtp_as::<true>(buf, len, true)
        } else {
            self.protect_rtp_as::<false>(buf, len, true)
        }
    }

    #[inline]
    fn protect_rtp_as<const CRYPTEX: bool>(
        &mut self,
        buf: &mut [u8],
        len: usize,
        defer: bool,
    ) -> Result<(usize, Option<PendingTag>), SrtpError> {
        let pkt = buf.get(..len).ok_or(SrtpError::Truncated)?;
        let hlen = rtp_header_len(pkt)?;
        // Decided before anything changes, so that an error leaves `buf` as it was.
        let plan = if CRYPTEX {
            cryptex::plan_protect(pkt)?
        } else {
            None
        };
        let len_in = len;
        let len = len + plan.map_or(0, cryptex::SendPlan::grow);
        let tag_len = usize::from(self.rtp.tag_len);
        let mki = &self.cfg.mki[..usize::from(self.cfg.mki_len)];
        let total = len + mki.len() + tag_len;
        // The protected length, so that whatever we protect our unprotect accepts.
        within_max_packet(total)?;
        if buf.len() < total {
            return Err(SrtpError::BufferTooSmall);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(buf, 8);
        let st = stream_entry(&mut self.streams, &self.cfg, ssrc)?;
        // The receiver's guess (RFC 3711 3.3.1), so that a packet from before a
        // wrap sent after it (a relay forwards what arrives reordered) keeps its
        // ROC, and both sides agree.
        let roc = st.estimate(seq)?;
        if !self.cfg.allow_repeat_tx() {
            st.check_send(roc, seq)?;
        }
        st.sent(roc, seq);
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let keys = match self.cfg.kdr() {
            0 => &self.rtp,
            _ => kdr_keys(&self.cfg, stream_kdr(&mut self.extra, ssrc), false, index),
        };
        // With Cryptex the clear part is the fixed header and the extension header,
        // hoisted together in front of the CSRCs while encrypting.
        let clear = match plan {
            Some(plan) => {
                cryptex::apply(plan, buf, len_in);
                cryptex::hoist(buf, plan.ext_at);
                cryptex::HOISTED_CLEAR_LEN
            }
            None => hlen,
        };
        if self.cfg.profile.is_aead() {
            // RFC 7714 8: header || ciphertext || tag || MKI.
            let iv = keys.gcm_iv(ssrc, roc, seq);
            let (head, rest) = buf.split_at_mut(clear);
            let tag = keys.gcm_seal(&iv, head, &mut rest[..len - clear]);
            if let Some(plan) = plan {
                cryptex::lower(buf, plan.ext_at);
            }
            buf[len..len + 16].copy_from_slice(&tag);
            buf[len + 16..total].copy_from_slice(mki);
        } else if !defer && plan.is_none() {
            // RFC 3711 3.1: header || ciphertext || MKI || tag; the tag covers the
            // header, the ciphertext and the ROC, not the MKI. Encryption and MAC
            // pipelined.
            let mac =
                keys.encrypt_then_mac(ssrc, index, &mut buf[..len], clear, &roc.to_be_bytes());
            buf[len..len + mki.len()].copy_from_slice(mki);
            buf[len + mki.len()..total].copy_from_slice(&mac[..tag_len]);
        } else {
            // As above, one after the other: Cryptex moves the extension back
            // after encrypting, and a deferred tag is computed later.
            keys.ctr_xor(ssrc, index, &mut buf[clear..len]);
            if let Some(plan) = plan {
                cryptex::lower(buf, plan.ext_at);
            }
            buf[len..len + mki.len()].copy_from_slice(mki);
            if defer {
                let job = PendingTag {
                    auth: keys.auth.clone(),
                    len: len as u32,
                    roc,
                    tag_at: (len + mki.len()) as u32,
                    tag_len: tag_len as u8,
                };
                return Ok((total, Some(job)));
            }
            let mac = keys.mac(&buf[..len], &roc.to_be_bytes());
            buf[len + mki.len()..total].copy_from_slice(&mac[..tag_len]);
        }
        Ok((total, None))
    }

    /// Authenticates and decrypts the SRTP packet that fills `buf`. On error the
    /// buffer is unchanged and the stream state is not advanced.
    pub fn unprotect_rtp(&mut self, buf: &mut [u8]) -> Result<Unprotected, SrtpError> {
        match self.unprotect_phase(buf, Phase::Whole)? {
            Opening::Done(u) => Ok(u),
            // The whole unprotect never stops at the tag.
            Opening::Pending(_) => Err(SrtpError::AuthFailed),
        }
    }

    /// [`unprotect_rtp`](Self::unprotect_rtp) up to the HMAC-SHA1 tag (phase one
    /// of the split unprotect, for computing the tags of several packets
    /// together): the checks that need no cryptography (length, MKI, replay with
    /// the estimated ROC, strict SSRC) are done and the buffer is unchanged. AEAD
    /// profiles are unprotected whole and return [`Opening::Done`].
    pub fn unprotect_rtp_deferred(&mut self, buf: &mut [u8]) -> Result<Opening, SrtpError> {
        self.unprotect_phase(buf, Phase::Defer)
    }

    /// Phase three of the split unprotect: compares the tag computed for `check`
    /// (computing it now if that was not done) with the packet's, then decrypts in
    /// place and updates the stream, as `unprotect_rtp` does. The ROC estimate and
    /// the replay check are made again, so that the outcome is that of a whole
    /// unprotect at this point: a duplicate accepted since phase one is rejected,
    /// and a ROC that a packet accepted since then moved gets its tag computed
    /// again. A check made by a context with other keys fails authentication. On
    /// error the buffer is unchanged.
    pub fn unprotect_rtp_finish(
        &mut self,
        buf: &mut [u8],
        mut check: PendingCheck,
    ) -> Result<Unprotected, SrtpError> {
        if check.verdict.is_none() {
            check.compute(buf);
        }
        let verdict = check.verdict.ok_or(SrtpError::Truncated)?;
        match self.unprotect_phase(buf, Phase::Finish(&check, verdict))? {
            Opening::Done(u) => Ok(u),
            Opening::Pending(_) => Err(SrtpError::AuthFailed),
        }
    }

    #[inline(always)]
    fn unprotect_phase(&mut self, buf: &mut [u8], phase: Phase<'_>) -> Result<Opening, SrtpError> {
        if self.cfg.cryptex() {
            self.unprotect_rtp_as::<true>(buf, phase)
        } else {
            self.unprotect_rtp_as::<false>(buf, phase)
        }
    }

    // Inlined into each caller, so that the result is built where the caller
    // returns it: copying the enum back out of memory right after its narrow
    // stores stalled on store forwarding.
    #[inline(always)]
    fn unprotect_rtp_as<const CRYPTEX: bool>(
        &mut self,
        buf: &mut [u8],
        phase: Phase<'_>,
    ) -> Result<Opening, SrtpError> {
        let tag_len = usize::from(self.rtp.tag_len);
        let mki_len = usize::from(self.cfg.mki_len);
        let len = buf
            .len()
            .checked_sub(tag_len + mki_len)
            .ok_or(SrtpError::Truncated)?;
        within_max_packet(buf.len())?;
        let hlen = rtp_header_len(&buf[..len])?;
        let ext_at = if CRYPTEX {
            cryptex::received(&buf[..len])
        } else {
            None
        };
        let aead = self.cfg.profile.is_aead();
        let mki_at = if aead { len + tag_len } else { len };
        if mki_len > 0 && buf[mki_at..mki_at + mki_len] != self.cfg.mki[..mki_len] {
            return Err(SrtpError::MkiMismatch);
        }
        let seq = u16::from_be_bytes([buf[2], buf[3]]);
        let ssrc = be32(buf, 8);
        // State for a new SSRC is created only once a packet authenticates, so a
        // flood of forged packets with random SSRCs cannot grow the table.
        let mut known = self.streams.get_mut(ssrc);
        let roc = match known.as_deref_mut() {
            Some(st) => {
                let roc = st.estimate(seq)?;
                st.check((u64::from(roc) << 16) | u64::from(seq))?;
                roc
            }
            None if self.cfg.strict() => return Err(SrtpError::UnknownSsrc),
            None => 0,
        };
        let index = (u64::from(roc) << 16) | u64::from(seq);
        let mut fresh = None;
        let keys = match self.cfg.kdr() {
            0 => &self.rtp,
            kdr => kept_or_fresh(&self.cfg, &self.extra, ssrc, false, index / kdr, &mut fresh),
        };
        if aead {
            let iv = keys.gcm_iv(ssrc, roc, seq);
            let clear = match ext_at {
                Some(at) => {
                    cryptex::hoist(buf, at);
                    cryptex::HOISTED_CLEAR_LEN
                }
                None => hlen,
            };
            let (head, rest) = buf.split_at_mut(clear);
            let (data, rest) = rest.split_at_mut(len - clear);
            // gcm_open decrypts only what authenticates, and the hoist is undone
            // either way: a failure leaves the buffer as it was.
            let ok = keys.gcm_open(&iv, head, data, &rest[..16]);
            if let Some(at) = ext_at {
                cryptex::lower(buf, at);
            }
            if !ok {
                return Err(SrtpError::AuthFailed);
            }
        } else if matches!(phase, Phase::Whole) && ext_at.is_none() && len - hlen <= SHADOW_MAX {
            // Audio-sized payloads: the keystream is computed in the MAC's shadow.
            check_then_decrypt(keys, buf, (hlen, len, len + mki_len), (ssrc, roc, seq))?;
        } else {
            let tag_ok = match phase {
                Phase::Whole => {
                    let mac = keys.mac(&buf[..len], &roc.to_be_bytes());
                    tag_matches(&mac[..tag_len], &buf[len + mki_len..])
                }
                Phase::Defer => {
                    return Ok(Opening::Pending(PendingCheck {
                        auth: keys.auth.clone(),
                        len: len as u32,
                        roc,
                        tag_at: (len + mki_len) as u32,
                        tag_len: tag_len as u8,
                        verdict: None,
                    }));
                }
                Phase::Finish(check, verdict) => {
                    if !check.auth.same(&keys.auth) || check.len as usize != len {
                        return Err(SrtpError::AuthFailed);
                    }
                    // A packet of the same stream accepted since phase one can move
                    // the ROC estimate (the first packets after a wrap): the tag is
                    // then computed again with the ROC estimated now, as a whole
                    // unprotect at this point would.
                    if check.roc == roc {
                        verdict
                    } else {
                        let mac = keys.mac(&buf[..len], &roc.to_be_bytes());
                        tag_matches(&mac[..tag_len], &buf[len + mki_len..])
                    }
                }
            };
            if !tag_ok {
                return Err(SrtpError::AuthFailed);
            }
            match ext_at {
                Some(at) => {
                    cryptex::hoist(buf, at);
                    keys.ctr_xor(ssrc, index, &mut buf[cryptex::HOISTED_CLEAR_LEN..len]);
                    cryptex::lower(buf, at);
                }
                None => keys.ctr_xor(ssrc, index, &mut buf[hlen..len]),
            }
        }
        if let Some(at) = ext_at {
            cryptex::unmark(buf, at);
        }
        if let Some(fresh) = fresh {
            keep_kdr(&mut self.extra, ssrc, false, fresh);
        }
        let words = self.cfg.replay_words();
        match known {
            Some(st) => st.update(roc, seq, words),
            None => stream_entry(&mut self.streams, &self.cfg, ssrc)?.update(roc, seq, words),
        }
        Ok(Opening::Done(Unprotected {
            len,
            payload: hlen..len,
            cryptex: ext_at.is_some(),
        }))
    }

    /// Protects the compound RTCP packet in `buf[..len]`, appending (per profile)
    /// the tag, the E flag with the SRTCP index, and the MKI. Returns the SRTCP
    /// length.
    pub fn protect_rtcp(&mut self, buf: &mut [u8], len: usize) -> Result<usize, SrtpError> {
        if len < 8 || buf.len() < len {
            return Err(SrtpError::Truncated);
        }
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let p = self.cfg.profile;
        let tag_len = p.rtcp_tag_len();
        let mki = &self.cfg.mki[..usize::from(self.cfg.mki_len)];
        let total = len + 4 + mki.len() + tag_len;
        within_max_packet(total)?;
        if buf.len() < total {
            return Err(SrtpError::BufferTooSmall);
        }
        let ssrc = be32(buf, 4);
        let aead = p.is_aead();
        let encrypt = !matches!(
            p,
            SrtpProfile::NullHmacSha1_80 | SrtpProfile::NullHmacSha1_32
        );
        let st = stream_entry(&mut self.streams, &self.cfg, ssrc)?;
        let index = st.rtcp_next;
        if index > 0x7fff_ffff {
            return Err(SrtpError::IndexExhausted);
        }
        st.rtcp_next += 1;
        let e_index = (u32::from(encrypt) << 31) | index;
        let mut derived = None;
        let keys = match self.cfg.kdr() {
            0 => rtcp_keys(&self.cfg, &mut self.extra, &mut derived),
            _ => kdr_keys(
                &self.cfg,
                stream_kdr(&mut self.extra, ssrc),
                true,
                u64::from(index),
            ),
        };
        if aead {
            // RFC 7714 9: header(8) || ciphertext || tag || E||index || MKI; the
            // AAD is the first 8 bytes followed by E||index.
            let (aad, iv) = keys.srtcp_gcm_params(&buf[..8], ssrc, e_index);
            let tag = keys.gcm_seal(&iv, &aad, &mut buf[8..len]);
            buf[len..len + 16].copy_from_slice(&tag);
            buf[len + 16..len + 20].copy_from_slice(&e_index.to_be_bytes());
            buf[len + 20..total].copy_from_slice(mki);
        } else {
            // RFC 3711 3.4: ... || E||index || MKI || tag.
            keys.ctr_xor(ssrc, u64::from(index), &mut buf[8..len]);
            buf[len..len + 4].copy_from_slice(&e_index.to_be_bytes());
            let mac = keys.mac(&buf[..len + 4], &[]);
            buf[len + 4..len + 4 + mki.len()].copy_from_slice(mki);
            buf[len + 4 + mki.len()..total].copy_from_slice(&mac[..tag_len]);
        }
        Ok(total)
    }

    /// Authenticates and decrypts the SRTCP packet that fills `buf`. On error the
    /// buffer is unchanged.
    pub fn unprotect_rtcp(&mut self, buf: &mut [u8]) -> Result<Unprotected, SrtpError> {
        let tag_len = self.cfg.profile.rtcp_tag_len();
        let mki_len = usize::from(self.cfg.mki_len);
        let total = buf.len();
        if total < 8 + 4 + tag_len + mki_len {
            return Err(SrtpError::Truncated);
        }
        within_max_packet(total)?;
        if buf[0] >> 6 != 2 {
            return Err(SrtpError::Malformed);
        }
        let aead = self.cfg.profile.is_aead();
        let len = total - 4 - tag_len - mki_len;
        // Where E||index and the MKI are.
        let (e_at, mki_at) = if aead {
            (len + tag_len, len + tag_len + 4)
        } else {
            (len, len + 4)
        };
        if mki_len > 0 && buf[mki_at..mki_at + mki_len] != self.cfg.mki[..mki_len] {
            return Err(SrtpError::MkiMismatch);
        }
        let e_index = be32(buf, e_at);
        let encrypted = e_index & 0x8000_0000 != 0;
        let index = e_index & 0x7fff_ffff;
        let ssrc = be32(buf, 4);
        match self.streams.get(ssrc) {
            Some(st) => st.check_rtcp(u64::from(index))?,
            None if self.cfg.strict() => return Err(SrtpError::UnknownSsrc),
            None => {}
        }
        let (mut derived, mut fresh) = (None, None);
        let keys = match self.cfg.kdr() {
            0 => rtcp_keys(&self.cfg, &mut self.extra, &mut derived),
            kdr => kept_or_fresh(
                &self.cfg,
                &self.extra,
                ssrc,
                true,
                u64::from(index) / kdr,
                &mut fresh,
            ),
        };
        if aead {
            let (aad, iv) = keys.srtcp_gcm_params(&buf[..8], ssrc, e_index);
            let ok = if encrypted {
                let (body, trailer) = buf[8..].split_at_mut(len - 8);
                keys.gcm_open(&iv, &aad, body, &trailer[..16])
            } else {
                // Authenticated only (RFC 7714 9.3, 17): the AAD is the whole packet
                // followed by E||index, and there is no ciphertext. E||index is moved
                // in front of the tag for the AAD to be one slice, then back.
                let mut tag = [0u8; 16];
                tag.copy_from_slice(&buf[len..len + 16]);
                buf[len..len + 20].rotate_left(16);
                let ok = keys.gcm_open(&iv, &buf[..len + 4], &mut [], &tag);
                buf[len..len + 20].rotate_right(16);
                ok
            };
            if !ok {
                return Err(SrtpError::AuthFailed);
            }
        } else {
            let mac = keys.mac(&buf[..len + 4], &[]);
            if !tag_matches(&mac[..tag_len], &buf[len + 4 + mki_len..]) {
                return Err(SrtpError::AuthFailed);
            }
            if encrypted {
                keys.ctr_xor(ssrc, u64::from(index), &mut buf[8..len]);
            }
        }
        let st = stream_entry(&mut self.streams, &self.cfg, ssrc)?;
        st.update_rtcp(index, self.cfg.replay_words());
        if let Some(fresh) = fresh {
            keep_kdr(&mut self.extra, ssrc, true, fresh);
        }
        Ok(Unprotected {
            len,
            payload: 8..len,
            cryptex: false,
        })
    }
}

/// The stream state of `ssrc`, created on first use unless the context is strict.
fn stream_entry<'m>(
    streams: &'m mut Streams,
    cfg: &SrtpConfig,
    ssrc: u32,
) -> Result<&'m mut Stream, SrtpError> {
    if cfg.strict() && streams.get(ssrc).is_none() {
        return Err(SrtpError::UnknownSsrc);
    }
    Ok(streams.entry(ssrc))
}

/// Per-SSRC state. Nearly every context carries one SSRC, so the first lives
/// inline and only further ones go to a map: a hash map's smallest table (four
/// slots of about 140 bytes) was a quarter of a relayed SRTP session's memory.
#[derive(Default)]
struct Streams {
    first: Option<Stream>,
    /// Allocated by the second SSRC.
    more: Option<Box<FxHashMap<u32, Stream>>>,
}

impl Streams {
    fn get(&self, ssrc: u32) -> Option<&Stream> {
        match &self.first {
            Some(st) if st.ssrc == ssrc => Some(st),
            _ => self.more.as_ref()?.get(&ssrc),
        }
    }

    fn get_mut(&mut self, ssrc: u32) -> Option<&mut Stream> {
        match &mut self.first {
            Some(st) if st.ssrc == ssrc => Some(st),
            _ => self.more.as_mut()?.get_mut(&ssrc),
        }
    }

    fn entry(&mut self, ssrc: u32) -> &mut Stream {
        if self.first.is_none() {
            return self.first.insert(Stream::new(ssrc));
        }
        match &mut self.first {
            Some(st) if st.ssrc == ssrc => st,
            _ => self
                .more
                .get_or_insert_with(Box::default)
                .entry(ssrc)
                .or_insert_with(|| Stream::new(ssrc)),
        }
    }

    fn remove(&mut self, ssrc: u32) {
        if self.first.as_ref().is_some_and(|st| st.ssrc == ssrc) {
            // Promote one of the others, if any, so that the inline slot stays
            // the one that is used.
            let more = self.more.as_mut();
            self.first = more.and_then(|m| {
                let k = *m.keys().next()?;
                m.remove(&k)
            });
        } else if let Some(m) = self.more.as_mut() {
            m.remove(&ssrc);
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.as_ref().map_or(0, |m| m.len())
    }
}

/// The key-derivation-rate keys of the stream `ssrc` (a context with a non-zero
/// rate).
fn stream_kdr(extra: &mut Option<Box<Extra>>, ssrc: u32) -> &mut KdrKeys {
    extra
        .get_or_insert_with(Box::default)
        .kdr
        .entry(ssrc)
        .or_default()
}

/// The session keys for packet `index` under a non-zero key derivation rate,
/// re-derived into `slot` when `index / kdr` changes.
fn kdr_keys<'s>(
    cfg: &SrtpConfig,
    slot: &'s mut KdrKeys,
    rtcp: bool,
    index: u64,
) -> &'s SessionKeys {
    let r = index / cfg.kdr();
    let slot = if rtcp { &mut slot.rtcp } else { &mut slot.rtp };
    if slot.as_ref().is_none_or(|(have, _)| *have != r) {
        *slot = Some((r, SessionKeys::derive(cfg, rtcp, r)));
    }
    &slot.as_ref().expect("derived above").1
}

/// Unprotect's session keys for `r = index DIV kdr`: the stream's kept ones if
/// they are for `r`, else keys derived into `fresh`, which [`keep_kdr`] keeps
/// once the packet has authenticated (so that a forged packet can neither replace
/// a stream's keys nor make a table entry).
fn kept_or_fresh<'a>(
    cfg: &SrtpConfig,
    extra: &'a Option<Box<Extra>>,
    ssrc: u32,
    rtcp: bool,
    r: u64,
    fresh: &'a mut Option<(u64, SessionKeys)>,
) -> &'a SessionKeys {
    let kept = extra.as_ref().and_then(|e| e.kdr.get(&ssrc)).and_then(|k| {
        if rtcp {
            k.rtcp.as_ref()
        } else {
            k.rtp.as_ref()
        }
    });
    match kept {
        Some((have, keys)) if *have == r => keys,
        _ => &fresh.insert((r, SessionKeys::derive(cfg, rtcp, r))).1,
    }
}

/// Keeps keys that [`kept_or_fresh`] derived, once their packet authenticated.
fn keep_kdr(extra: &mut Option<Box<Extra>>, ssrc: u32, rtcp: bool, fresh: (u64, SessionKeys)) {
    let slot = stream_kdr(extra, ssrc);
    *if rtcp { &mut slot.rtcp } else { &mut slot.rtp } = Some(fresh);
}

/// The SRTCP session keys of a context with a key derivation rate of zero:
/// derived once and kept in `extra`, or with compact 128-bit keys derived for this
/// packet into `derived` (SRTCP comes every few seconds per stream, and the keys
/// would be 80 bytes per context; compact 256-bit keys are boxed, so deriving them
/// per packet would allocate: those are kept).
fn rtcp_keys<'a>(
    cfg: &SrtpConfig,
    extra: &'a mut Option<Box<Extra>>,
    derived: &'a mut Option<SessionKeys>,
) -> &'a SessionKeys {
    if cfg.compact() && cfg.profile.key_len() == 16 {
        return derived.insert(SessionKeys::derive(cfg, true, 0));
    }
    extra
        .get_or_insert_with(Box::default)
        .rtcp
        .get_or_insert_with(|| SessionKeys::derive(cfg, true, 0))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod cryptex_tests;
