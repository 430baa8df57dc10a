//! Sans-IO DTLS 1.2 (RFC 6347) with the DTLS-SRTP extension (RFC 5764).
//!
//! [`DtlsEndpoint`] is a client or server state machine: the owner feeds it
//! datagrams ([`DtlsEndpoint::handle_datagram`]) and the current time, sends what
//! [`DtlsEndpoint::poll_transmit`] returns, calls [`DtlsEndpoint::handle_timeout`]
//! at [`DtlsEndpoint::poll_timeout`], and reads [`DtlsEvent`]s. Once connected the
//! endpoint hands out [`DtlsKeys`], from which [`DtlsKeys::srtp_configs`] builds the
//! SRTP contexts.
//!
//! Only the full handshake with ECDHE (X25519, P-256, P-384) and AEAD suites is
//! implemented: no resumption, tickets or renegotiation. Our own certificates are
//! ECDSA P-256; peers may present ECDSA (P-256, P-384) or RSA certificates.
//!
//! [`CookieKeys`] is the optional stateless front door for servers (HelloVerifyRequest).
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Instant;
//! use rtp_control::dtls::{Certificate, DtlsConfig, DtlsEndpoint, DtlsEvent};
//!
//! let config = Arc::new(DtlsConfig::default());
//! let (a, b) = (Arc::new(Certificate::generate()?), Arc::new(Certificate::generate()?));
//! let now = Instant::now();
//! // The expected fingerprints come from SDP (`a=fingerprint`).
//! let mut client = DtlsEndpoint::client(config.clone(), a.clone(), Some(b.fingerprint()), now);
//! let mut server = DtlsEndpoint::server(config, b, Some(a.fingerprint()), now);
//! // A lossless in-memory "network"; a real owner sends to a socket and calls
//! // handle_timeout at poll_timeout.
//! while !(client.is_connected() && server.is_connected()) {
//!     while let Some(d) = client.poll_transmit() {
//!         server.handle_datagram(&d, now);
//!     }
//!     while let Some(d) = server.poll_transmit() {
//!         client.handle_datagram(&d, now);
//!     }
//! }
//! let Some(DtlsEvent::Connected(keys)) = client.poll_event() else { unreachable!() };
//! let (outbound, inbound) = keys.srtp_configs()?; // SrtpConfig for SrtpContext::new
//! # let _ = (outbound, inbound);
//! # Ok::<(), rtp_control::dtls::DtlsError>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use rtp_core::srtp::{SrtpConfig, SrtpProfile};

mod cert;
mod codec;
mod cookie;
mod crypto;
mod ecdhe;
mod endpoint;
mod flight;
mod fragment;
mod messages;
mod record;

pub use cert::{Certificate, Fingerprint, FingerprintAlgorithm};
pub use cookie::{CookieKeys, CookieVerdict, COOKIE_ROTATION};
pub use endpoint::DtlsEndpoint;

#[doc(hidden)]
pub use crypto::prf_sha256;
#[doc(hidden)]
pub use messages::fuzz_parse_handshake;
#[doc(hidden)]
pub use record::fuzz_parse_records;

/// Which side of the handshake an endpoint plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sends the ClientHello (SDP `a=setup:active`).
    Client,
    /// Answers the ClientHello (SDP `a=setup:passive`).
    Server,
}

/// The DTLS 1.2 cipher suites this implementation negotiates (all ECDHE + AEAD).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CipherSuite {
    /// TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 (0xC02B).
    EcdheEcdsaAes128GcmSha256,
    /// TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 (0xC02C).
    EcdheEcdsaAes256GcmSha384,
    /// TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 (0xCCA9).
    EcdheEcdsaChacha20Poly1305Sha256,
    /// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 (0xC02F).
    EcdheRsaAes128GcmSha256,
    /// TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 (0xC030).
    EcdheRsaAes256GcmSha384,
    /// TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 (0xCCA8).
    EcdheRsaChacha20Poly1305Sha256,
}

/// The bulk cipher of a suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BulkCipher {
    Aes128Gcm,
    Aes256Gcm,
    Chacha20Poly1305,
}

impl CipherSuite {
    /// Every suite, ECDSA ones first (the default preference order).
    pub const ALL: [CipherSuite; 6] = [
        CipherSuite::EcdheEcdsaAes128GcmSha256,
        CipherSuite::EcdheEcdsaAes256GcmSha384,
        CipherSuite::EcdheEcdsaChacha20Poly1305Sha256,
        CipherSuite::EcdheRsaAes128GcmSha256,
        CipherSuite::EcdheRsaAes256GcmSha384,
        CipherSuite::EcdheRsaChacha20Poly1305Sha256,
    ];

    /// The IANA id.
    pub fn id(self) -> u16 {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => 0xC02B,
            CipherSuite::EcdheEcdsaAes256GcmSha384 => 0xC02C,
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => 0xCCA9,
            CipherSuite::EcdheRsaAes128GcmSha256 => 0xC02F,
            CipherSuite::EcdheRsaAes256GcmSha384 => 0xC030,
            CipherSuite::EcdheRsaChacha20Poly1305Sha256 => 0xCCA8,
        }
    }

    /// The suite with this IANA id, if we implement it.
    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }

    /// The OpenSSL name, e.g. `ECDHE-ECDSA-AES128-GCM-SHA256`.
    pub fn openssl_name(self) -> &'static str {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
            CipherSuite::EcdheEcdsaAes256GcmSha384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
            CipherSuite::EcdheEcdsaChacha20Poly1305Sha256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
            CipherSuite::EcdheRsaAes128GcmSha256 => "ECDHE-RSA-AES128-GCM-SHA256",
            CipherSuite::EcdheRsaAes256GcmSha384 => "ECDHE-RSA-AES256-GCM-SHA384",
            CipherSuite::EcdheRsaChacha20Poly1305Sha256 => "ECDHE-RSA-CHACHA20-POLY1305",
        }
    }

    /// True for the suites authenticated with an ECDSA certificate.
    pub fn is_ecdsa(self) -> bool {
        matches!(
            self,
            CipherSuite::EcdheEcdsaAes128GcmSha256
                | CipherSuite::EcdheEcdsaAes256GcmSha384
                | CipherSuite::EcdheEcdsaChacha20Poly1305Sha256
        )
    }

    /// True when the PRF (and transcript hash) is SHA-384.
    pub(crate) fn uses_sha384(self) -> bool {
        matches!(
            self,
            CipherSuite::EcdheEcdsaAes256GcmSha384 | CipherSuite::EcdheRsaAes256GcmSha384
        )
    }

    pub(crate) fn bulk(self) -> BulkCipher {
        match self {
            CipherSuite::EcdheEcdsaAes128GcmSha256 | CipherSuite::EcdheRsaAes128GcmSha256 => {
                BulkCipher::Aes128Gcm
            }
            CipherSuite::EcdheEcdsaAes256GcmSha384 | CipherSuite::EcdheRsaAes256GcmSha384 => {
                BulkCipher::Aes256Gcm
            }
            _ => BulkCipher::Chacha20Poly1305,
        }
    }
}

impl fmt::Display for CipherSuite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.openssl_name())
    }
}

impl FromStr for CipherSuite {
    type Err = DtlsError;

    /// Accepts the OpenSSL names (case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.openssl_name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| DtlsError::Config(format!("unknown cipher suite {s:?}")))
    }
}

/// ECDHE groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NamedGroup {
    /// Curve25519 (RFC 8422 id 29).
    X25519,
    /// NIST P-256 (id 23).
    Secp256r1,
    /// NIST P-384 (id 24). Last in the default list: offering it lets a server
    /// with a P-384 ECDSA certificate talk to us (RFC 8422 5.1 ties the
    /// certificate's curve to the client's supported_groups).
    Secp384r1,
}

impl NamedGroup {
    /// The IANA id.
    pub fn id(self) -> u16 {
        match self {
            NamedGroup::X25519 => 29,
            NamedGroup::Secp256r1 => 23,
            NamedGroup::Secp384r1 => 24,
        }
    }

    /// The group with this id, if we implement it.
    pub fn from_id(id: u16) -> Option<Self> {
        match id {
            29 => Some(NamedGroup::X25519),
            23 => Some(NamedGroup::Secp256r1),
            24 => Some(NamedGroup::Secp384r1),
            _ => None,
        }
    }
}

/// Endpoint configuration, shared (`Arc`) between endpoints.
#[derive(Debug, Clone)]
pub struct DtlsConfig {
    /// Largest datagram we emit (UDP payload), default 1200. Values below 64 are
    /// treated as 64 (the smallest that fits an encrypted handshake fragment).
    pub mtu: usize,
    /// First retransmission timeout (RFC 6347 4.2.4.1), default 1 s; doubles per retransmission.
    pub initial_timeout: Duration,
    /// Cap of the retransmission back-off, default 16 s.
    pub max_timeout: Duration,
    /// Total time allowed for the handshake; afterwards `Failed(Timeout)`. Default 30 s.
    pub handshake_timeout: Duration,
    /// SRTP protection profiles in preference order. Default:
    /// `AES128_CM_SHA1_80, AEAD_AES_128_GCM, AEAD_AES_256_GCM, AES128_CM_SHA1_32`
    /// (the 80-bit HMAC profile first because every WebRTC stack has it).
    pub srtp_profiles: Vec<SrtpProfile>,
    /// Cipher suites in preference order, default all six (ECDSA ones first).
    pub cipher_suites: Vec<CipherSuite>,
    /// ECDHE groups in preference order, default `[X25519, Secp256r1, Secp384r1]`.
    pub groups: Vec<NamedGroup>,
    /// Server: send a CertificateRequest and fail without a client certificate.
    /// Default true (DTLS-SRTP needs the peer's fingerprint).
    pub require_client_certificate: bool,
    /// Reassembly limit per handshake message, default 16 KiB.
    pub max_handshake_message: usize,
    /// Limit on buffered (incomplete or early) handshake bytes, default 64 KiB.
    pub max_buffered_fragments: usize,
}

impl Default for DtlsConfig {
    fn default() -> Self {
        DtlsConfig {
            mtu: 1200,
            initial_timeout: Duration::from_secs(1),
            max_timeout: Duration::from_secs(16),
            handshake_timeout: Duration::from_secs(30),
            srtp_profiles: vec![
                SrtpProfile::AesCm128HmacSha1_80,
                SrtpProfile::AeadAes128Gcm,
                SrtpProfile::AeadAes256Gcm,
                SrtpProfile::AesCm128HmacSha1_32,
            ],
            cipher_suites: CipherSuite::ALL.to_vec(),
            groups: vec![
                NamedGroup::X25519,
                NamedGroup::Secp256r1,
                NamedGroup::Secp384r1,
            ],
            require_client_certificate: true,
            max_handshake_message: 16 * 1024,
            max_buffered_fragments: 64 * 1024,
        }
    }
}

impl DtlsConfig {
    /// Checks the configuration: something to offer in every list, SRTP
    /// profiles that DTLS-SRTP can negotiate, non-zero timers and limits.
    /// Endpoints work with any value (they clamp or fail the handshake); this
    /// turns a mistake into an error message up front.
    pub fn validate(&self) -> Result<(), DtlsError> {
        let bad = |s: String| Err(DtlsError::Config(s));
        if self.cipher_suites.is_empty() {
            return bad("no cipher suites".into());
        }
        if self.groups.is_empty() {
            return bad("no ECDHE groups".into());
        }
        if self.srtp_profiles.is_empty() {
            return bad("no SRTP profiles".into());
        }
        if let Some(p) = self.srtp_profiles.iter().find(|p| p.dtls_id().is_none()) {
            return bad(format!(
                "SRTP profile {} cannot be negotiated with DTLS-SRTP",
                p.sdes_name()
            ));
        }
        if self.mtu < 64 {
            return bad(format!("mtu {} is below 64", self.mtu));
        }
        if self.initial_timeout.is_zero() || self.max_timeout < self.initial_timeout {
            return bad("initial_timeout must be > 0 and <= max_timeout".into());
        }
        if self.handshake_timeout.is_zero() {
            return bad("handshake_timeout must be > 0".into());
        }
        if self.max_handshake_message < 1024
            || self.max_buffered_fragments < self.max_handshake_message
        {
            return bad(
                "max_handshake_message must be >= 1024 and <= max_buffered_fragments".into(),
            );
        }
        Ok(())
    }
}

/// What an endpoint reports to its owner.
#[derive(Debug, Clone)]
pub enum DtlsEvent {
    /// The handshake completed; the keys for SRTP.
    Connected(Box<DtlsKeys>),
    /// Decrypted application data from the peer.
    ApplicationData(Vec<u8>),
    /// The peer sent close_notify (or we closed); the endpoint can be dropped.
    Closed,
    /// The handshake or connection failed; the endpoint can be dropped.
    Failed(DtlsError),
}

/// The result of a completed handshake.
#[derive(Clone)]
pub struct DtlsKeys {
    /// Our role.
    pub role: Role,
    /// The negotiated suite.
    pub cipher_suite: CipherSuite,
    /// The ECDHE group.
    pub group: NamedGroup,
    /// The negotiated SRTP protection profile.
    pub srtp_profile: SrtpProfile,
    /// Whether the extended master secret (RFC 7627) was used.
    pub extended_master_secret: bool,
    /// `EXTRACTOR-dtls_srtp` output, `2 * (key_len + salt_len)` bytes of the profile
    /// (60 for the AES-CM profiles, 56 for AEAD_AES_128_GCM, 88 for AEAD_AES_256_GCM).
    pub keying_material: Vec<u8>,
    /// SHA-256 fingerprint of the peer's leaf certificate.
    pub peer_fingerprint: Fingerprint,
    /// The peer's leaf certificate (DER). Empty only on a server configured with
    /// `require_client_certificate: false` (then `peer_fingerprint` is the hash of
    /// nothing and identifies no one).
    pub peer_certificate: Vec<u8>,
    /// Master secret, kept for [`DtlsKeys::export`].
    pub(crate) master_secret: Vec<u8>,
    pub(crate) randoms: Vec<u8>,
}

impl fmt::Debug for DtlsKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DtlsKeys")
            .field("role", &self.role)
            .field("cipher_suite", &self.cipher_suite)
            .field("group", &self.group)
            .field("srtp_profile", &self.srtp_profile)
            .field("extended_master_secret", &self.extended_master_secret)
            .field(
                "keying_material",
                &format_args!("<{} bytes>", self.keying_material.len()),
            )
            .field("peer_fingerprint", &self.peer_fingerprint)
            .field(
                "peer_certificate",
                &format_args!("<{} bytes DER>", self.peer_certificate.len()),
            )
            .finish()
    }
}

impl DtlsKeys {
    /// `(outbound, inbound)` SRTP configurations for this side: a client writes
    /// with the client key and reads with the server key (RFC 5764 4.2).
    pub fn srtp_configs(&self) -> Result<(SrtpConfig, SrtpConfig), DtlsError> {
        let (client, server) =
            rtp_core::srtp::dtls_srtp_keys(self.srtp_profile, &self.keying_material)
                .map_err(DtlsError::Srtp)?;
        Ok(match self.role {
            Role::Client => (client, server),
            Role::Server => (server, client),
        })
    }

    /// RFC 5705 exporter without context: `len` bytes for `label`.
    pub fn export(&self, label: &str, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        crypto::prf(
            self.cipher_suite.uses_sha384(),
            &self.master_secret,
            label.as_bytes(),
            &self.randoms,
            &mut out,
        );
        out
    }
}

/// Why a handshake or connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DtlsError {
    /// No answer from the peer within the handshake timeout.
    Timeout,
    /// The peer's certificate does not match the expected (SDP) fingerprint.
    FingerprintMismatch {
        /// What the signalling promised.
        expected: Fingerprint,
        /// The fingerprint of what the peer presented, same algorithm.
        got: Fingerprint,
    },
    /// The peer presented no certificate.
    NoCertificate,
    /// The peer's certificate could not be used (parse error, key type).
    BadCertificate(String),
    /// Generic negotiation failure, with the reason.
    HandshakeFailure(String),
    /// The peer sent a fatal alert.
    AlertReceived {
        /// Alert level (1 warning, 2 fatal).
        level: u8,
        /// Alert description (RFC 5246 7.2).
        description: u8,
    },
    /// A malformed message.
    Decode(String),
    /// A message that is not allowed in the current state.
    UnexpectedMessage(String),
    /// The peer does not speak DTLS 1.2.
    ProtocolVersion,
    /// No cipher suite in common.
    NoSharedCipherSuite,
    /// No SRTP protection profile in common (or no use_srtp extension).
    NoSharedSrtpProfile,
    /// No ECDHE group in common.
    NoSharedGroup,
    /// A ServerKeyExchange or CertificateVerify signature did not verify.
    BadSignature,
    /// The peer's Finished did not verify.
    BadFinished,
    /// The connection is closed (close_notify) or was never established.
    Closed,
    /// Application data before the handshake completed.
    NotConnected,
    /// Application data larger than one record can carry at the configured MTU.
    TooLarge,
    /// Certificate generation or loading failed.
    Certificate(String),
    /// An invalid configuration value.
    Config(String),
    /// The SRTP key split failed.
    Srtp(rtp_core::srtp::SrtpError),
}

impl fmt::Display for DtlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DtlsError::Timeout => f.write_str("DTLS handshake timed out (peer did not answer)"),
            DtlsError::FingerprintMismatch { expected, got } => write!(
                f,
                "peer certificate fingerprint {got} does not match the expected {expected}"
            ),
            DtlsError::NoCertificate => f.write_str("peer sent no certificate"),
            DtlsError::BadCertificate(s) => write!(f, "unusable peer certificate: {s}"),
            DtlsError::HandshakeFailure(s) => write!(f, "DTLS handshake failure: {s}"),
            DtlsError::AlertReceived { level, description } => write!(
                f,
                "peer sent {} alert {} ({description})",
                if *level == 2 { "fatal" } else { "warning" },
                alert_name(*description)
            ),
            DtlsError::Decode(s) => write!(f, "malformed DTLS message: {s}"),
            DtlsError::UnexpectedMessage(s) => write!(f, "unexpected DTLS message: {s}"),
            DtlsError::ProtocolVersion => f.write_str("peer does not offer DTLS 1.2"),
            DtlsError::NoSharedCipherSuite => f.write_str("no cipher suite in common"),
            DtlsError::NoSharedSrtpProfile => f.write_str("no SRTP protection profile in common"),
            DtlsError::NoSharedGroup => f.write_str("no ECDHE group in common"),
            DtlsError::BadSignature => f.write_str("peer signature does not verify"),
            DtlsError::BadFinished => f.write_str("peer Finished does not verify"),
            DtlsError::Closed => f.write_str("DTLS connection closed"),
            DtlsError::NotConnected => f.write_str("DTLS handshake not complete"),
            DtlsError::TooLarge => f.write_str("application data too large for one record"),
            DtlsError::Certificate(s) => write!(f, "certificate error: {s}"),
            DtlsError::Config(s) => write!(f, "invalid DTLS configuration: {s}"),
            DtlsError::Srtp(e) => write!(f, "SRTP key split failed: {e}"),
        }
    }
}

impl std::error::Error for DtlsError {}

/// The RFC 5246 name of an alert description.
pub fn alert_name(description: u8) -> &'static str {
    match description {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        22 => "record_overflow",
        40 => "handshake_failure",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        90 => "user_canceled",
        100 => "no_renegotiation",
        110 => "unsupported_extension",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_safety() {
        fn send<T: Send>() {}
        fn send_sync<T: Send + Sync>() {}
        send::<DtlsEndpoint>();
        send_sync::<Certificate>();
        send_sync::<CookieKeys>();
        send_sync::<DtlsKeys>();
        send_sync::<DtlsConfig>();
        send_sync::<DtlsError>();
    }

    #[test]
    fn cipher_suite_names_and_ids() {
        for s in CipherSuite::ALL {
            assert_eq!(CipherSuite::from_id(s.id()), Some(s));
            assert_eq!(s.to_string().parse::<CipherSuite>().unwrap(), s);
            assert_eq!(
                s.openssl_name()
                    .to_lowercase()
                    .parse::<CipherSuite>()
                    .unwrap(),
                s
            );
        }
        assert_eq!(
            "ECDHE-RSA-CHACHA20-POLY1305"
                .parse::<CipherSuite>()
                .unwrap()
                .id(),
            0xCCA8
        );
        assert!("AES128-SHA".parse::<CipherSuite>().is_err());
        assert_eq!(CipherSuite::from_id(0x002F), None);
        assert_eq!(NamedGroup::from_id(0x11EC), None);
        assert_eq!(NamedGroup::from_id(29), Some(NamedGroup::X25519));
    }

    #[test]
    fn config_validation() {
        DtlsConfig::default().validate().unwrap();
        let bad = [
            DtlsConfig {
                cipher_suites: vec![],
                ..Default::default()
            },
            DtlsConfig {
                groups: vec![],
                ..Default::default()
            },
            DtlsConfig {
                srtp_profiles: vec![],
                ..Default::default()
            },
            DtlsConfig {
                srtp_profiles: vec![SrtpProfile::AesCm256HmacSha1_80],
                ..Default::default()
            },
            DtlsConfig {
                mtu: 10,
                ..Default::default()
            },
            DtlsConfig {
                initial_timeout: Duration::ZERO,
                ..Default::default()
            },
            DtlsConfig {
                max_handshake_message: 10,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(matches!(c.validate(), Err(DtlsError::Config(_))), "{c:?}");
        }
    }

    #[test]
    fn keys_debug_hides_secrets() {
        let k = DtlsKeys {
            role: Role::Client,
            cipher_suite: CipherSuite::EcdheEcdsaAes128GcmSha256,
            group: NamedGroup::X25519,
            srtp_profile: SrtpProfile::AesCm128HmacSha1_80,
            extended_master_secret: true,
            keying_material: vec![0xAB; 60],
            peer_fingerprint: Fingerprint::of_der(FingerprintAlgorithm::Sha256, b"x"),
            peer_certificate: b"x".to_vec(),
            master_secret: vec![0xCD; 48],
            randoms: vec![0; 64],
        };
        let d = format!("{k:?}");
        assert!(d.contains("<60 bytes>"), "{d}");
        assert!(
            !d.contains("171") && !d.contains("AB, AB") && !d.contains("205"),
            "{d}"
        );
        let (out, inb) = k.srtp_configs().unwrap();
        assert_eq!(out.profile(), SrtpProfile::AesCm128HmacSha1_80);
        assert_eq!(inb.profile(), SrtpProfile::AesCm128HmacSha1_80);
        let bad = DtlsKeys {
            keying_material: vec![0; 10],
            ..k
        };
        assert!(matches!(bad.srtp_configs(), Err(DtlsError::Srtp(_))));
    }

    #[test]
    fn fingerprint_known_answer() {
        // FIPS 180-2 example: SHA-256("abc").
        assert_eq!(
            Fingerprint::of_der(FingerprintAlgorithm::Sha256, b"abc").to_string(),
            "sha-256 BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:\
             B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn fingerprint_algorithms() {
        for (alg, len) in [
            (FingerprintAlgorithm::Sha1, 20),
            (FingerprintAlgorithm::Sha256, 32),
            (FingerprintAlgorithm::Sha384, 48),
            (FingerprintAlgorithm::Sha512, 64),
        ] {
            let f = Fingerprint::of_der(alg, b"certificate");
            assert_eq!(f.bytes.len(), len);
            assert_eq!(f.to_string().parse::<Fingerprint>().unwrap(), f);
            assert!(f.to_string().starts_with(alg.name()));
        }
    }
}
