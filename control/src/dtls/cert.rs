//! Our certificate (ECDSA P-256), SDP fingerprints, and peer public keys.

use std::fmt;
use std::str::FromStr;

use p256::ecdsa::signature::Signer;
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey};
use sha2::Digest;

use super::DtlsError;

/// Hash algorithm of an SDP `a=fingerprint` (RFC 8122).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FingerprintAlgorithm {
    /// `sha-1`
    Sha1,
    /// `sha-256`
    Sha256,
    /// `sha-384`
    Sha384,
    /// `sha-512`
    Sha512,
}

impl FingerprintAlgorithm {
    /// The SDP name (`sha-256`).
    pub fn name(self) -> &'static str {
        match self {
            FingerprintAlgorithm::Sha1 => "sha-1",
            FingerprintAlgorithm::Sha256 => "sha-256",
            FingerprintAlgorithm::Sha384 => "sha-384",
            FingerprintAlgorithm::Sha512 => "sha-512",
        }
    }

    fn len(self) -> usize {
        match self {
            FingerprintAlgorithm::Sha1 => 20,
            FingerprintAlgorithm::Sha256 => 32,
            FingerprintAlgorithm::Sha384 => 48,
            FingerprintAlgorithm::Sha512 => 64,
        }
    }
}

/// A certificate fingerprint as used in SDP: `sha-256 AB:CD:...`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    /// The hash algorithm.
    pub algorithm: FingerprintAlgorithm,
    /// The digest of the DER certificate.
    pub bytes: Vec<u8>,
}

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of_der(algorithm: FingerprintAlgorithm, der: &[u8]) -> Self {
        let bytes = match algorithm {
            FingerprintAlgorithm::Sha1 => {
                // SHA-1 is only accepted for comparison with legacy SDP.
                sha1_digest(der)
            }
            FingerprintAlgorithm::Sha256 => sha2::Sha256::digest(der).to_vec(),
            FingerprintAlgorithm::Sha384 => sha2::Sha384::digest(der).to_vec(),
            FingerprintAlgorithm::Sha512 => sha2::Sha512::digest(der).to_vec(),
        };
        Fingerprint { algorithm, bytes }
    }
}

fn sha1_digest(data: &[u8]) -> Vec<u8> {
    use sha1::Digest as _;
    sha1::Sha1::digest(data).to_vec()
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm.name())?;
        f.write_str(" ")?;
        for (i, b) in self.bytes.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = DtlsError;

    /// Parses the SDP form `sha-256 AB:CD:..` (algorithm and hex case-insensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| DtlsError::Config(format!("bad fingerprint {s:?}: {why}"));
        let mut parts = s.split_ascii_whitespace();
        let (alg, hex) = match (parts.next(), parts.next(), parts.next()) {
            (Some(a), Some(h), None) => (a, h),
            _ => return Err(bad("expected \"<hash> <hex>\"")),
        };
        let algorithm = match alg.to_ascii_lowercase().as_str() {
            "sha-1" => FingerprintAlgorithm::Sha1,
            "sha-256" => FingerprintAlgorithm::Sha256,
            "sha-384" => FingerprintAlgorithm::Sha384,
            "sha-512" => FingerprintAlgorithm::Sha512,
            _ => return Err(bad("unknown hash")),
        };
        let mut bytes = Vec::with_capacity(algorithm.len());
        for pair in hex.split(':') {
            if pair.len() != 2 {
                return Err(bad("each byte must be two hex digits"));
            }
            bytes.push(u8::from_str_radix(pair, 16).map_err(|_| bad("not hex"))?);
        }
        if bytes.len() != algorithm.len() {
            return Err(bad("wrong length for the hash"));
        }
        Ok(Fingerprint { algorithm, bytes })
    }
}

/// Our certificate and its ECDSA P-256 signing key.
#[derive(Clone)]
pub struct Certificate {
    der: Vec<u8>,
    key: p256::ecdsa::SigningKey,
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl Certificate {
    /// A fresh self-signed ECDSA P-256 certificate (CN `rtp-core`, rcgen's default
    /// validity). WebRTC peers check only the fingerprint.
    pub fn generate() -> Result<Self, DtlsError> {
        let err = |e: rcgen::Error| DtlsError::Certificate(e.to_string());
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(err)?;
        let mut params =
            rcgen::CertificateParams::new(vec!["rtp-core".to_string()]).map_err(err)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rtp-core");
        let cert = params.self_signed(&kp).map_err(err)?;
        let key = p256::ecdsa::SigningKey::from_pkcs8_der(&kp.serialize_der())
            .map_err(|e| DtlsError::Certificate(format!("generated key: {e}")))?;
        Ok(Certificate {
            der: cert.der().to_vec(),
            key,
        })
    }

    /// Loads a PEM certificate and its ECDSA P-256 key (PKCS#8 `PRIVATE KEY` or
    /// SEC1 `EC PRIVATE KEY`). Fails if the key does not belong to the certificate.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, DtlsError> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| DtlsError::Certificate(format!("certificate PEM: {e}")))?;
        if pem.label != "CERTIFICATE" {
            return Err(DtlsError::Certificate(format!(
                "expected a CERTIFICATE PEM block, got {}",
                pem.label
            )));
        }
        const SEC1_BEGIN: &str = "-----BEGIN EC PRIVATE KEY-----";
        const SEC1_END: &str = "-----END EC PRIVATE KEY-----";
        let secret = if let Some(start) = key_pem.find(SEC1_BEGIN) {
            // `openssl ecparam -genkey` puts an EC PARAMETERS block first: take
            // only the key block.
            let end = key_pem[start..]
                .find(SEC1_END)
                .map(|e| start + e + SEC1_END.len())
                .ok_or_else(|| DtlsError::Certificate("unterminated EC PRIVATE KEY".into()))?;
            p256::SecretKey::from_sec1_pem(&key_pem[start..end])
                .map_err(|e| DtlsError::Certificate(format!("SEC1 EC key: {e}")))?
        } else {
            p256::SecretKey::from_pkcs8_pem(key_pem)
                .map_err(|e| DtlsError::Certificate(format!("PKCS#8 P-256 key: {e}")))?
        };
        let key = p256::ecdsa::SigningKey::from(secret);
        let der = pem.contents;
        match PeerKey::from_certificate(&der)? {
            PeerKey::P256(pk) if pk == *key.verifying_key() => {}
            _ => {
                return Err(DtlsError::Certificate(
                    "the private key does not match the certificate".into(),
                ))
            }
        }
        Ok(Certificate { der, key })
    }

    /// The DER certificate.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The SHA-256 fingerprint (for SDP `a=fingerprint`).
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_der(FingerprintAlgorithm::Sha256, &self.der)
    }

    /// ECDSA-SHA256 signature (DER) over `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = self.key.sign(msg);
        sig.to_der().as_bytes().to_vec()
    }
}

/// TLS 1.2 SignatureAndHashAlgorithm values we accept.
pub(crate) const ECDSA_P256_SHA256: u16 = 0x0403;
pub(crate) const SIG_ALGS: [u16; 8] = [
    0x0403, // ecdsa_secp256r1_sha256
    0x0503, // ecdsa_secp384r1_sha384
    0x0804, // rsa_pss_rsae_sha256
    0x0805, // rsa_pss_rsae_sha384
    0x0806, // rsa_pss_rsae_sha512
    0x0401, // rsa_pkcs1_sha256
    0x0501, // rsa_pkcs1_sha384
    0x0601, // rsa_pkcs1_sha512
];

/// The public key of a peer's certificate.
#[derive(Debug, Clone)]
pub(crate) enum PeerKey {
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Rsa(rsa::RsaPublicKey),
}

impl PeerKey {
    pub(crate) fn from_certificate(der: &[u8]) -> Result<Self, DtlsError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| DtlsError::BadCertificate(format!("X.509: {e}")))?;
        let spki = cert.tbs_certificate.subject_pki.raw;
        if let Ok(k) = p256::PublicKey::from_public_key_der(spki) {
            return Ok(PeerKey::P256(k.into()));
        }
        if let Ok(k) = p384::PublicKey::from_public_key_der(spki) {
            return Ok(PeerKey::P384(k.into()));
        }
        if let Ok(k) = rsa::RsaPublicKey::from_public_key_der(spki) {
            return Ok(PeerKey::Rsa(k));
        }
        Err(DtlsError::BadCertificate(
            "public key is neither ECDSA P-256/P-384 nor RSA".into(),
        ))
    }

    pub(crate) fn is_ecdsa(&self) -> bool {
        !matches!(self, PeerKey::Rsa(_))
    }

    /// Verifies a TLS 1.2 `digitally-signed` value.
    pub(crate) fn verify(&self, scheme: u16, msg: &[u8], sig: &[u8]) -> Result<(), DtlsError> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        use rsa::signature::Verifier;
        let hash = |h: u8| -> Option<Vec<u8>> {
            Some(match h {
                4 => sha2::Sha256::digest(msg).to_vec(),
                5 => sha2::Sha384::digest(msg).to_vec(),
                6 => sha2::Sha512::digest(msg).to_vec(),
                _ => return None,
            })
        };
        let ok =
            match (self, scheme) {
                (PeerKey::P256(k), 0x0403 | 0x0503 | 0x0603) => {
                    let h = hash((scheme >> 8) as u8).ok_or(DtlsError::BadSignature)?;
                    let s = p256::ecdsa::Signature::from_der(sig)
                        .map_err(|_| DtlsError::BadSignature)?;
                    k.verify_prehash(&h, &s).is_ok()
                }
                (PeerKey::P384(k), 0x0403 | 0x0503 | 0x0603) => {
                    let h = hash((scheme >> 8) as u8).ok_or(DtlsError::BadSignature)?;
                    let s = p384::ecdsa::Signature::from_der(sig)
                        .map_err(|_| DtlsError::BadSignature)?;
                    k.verify_prehash(&h, &s).is_ok()
                }
                (PeerKey::Rsa(k), 0x0401 | 0x0501 | 0x0601) => {
                    let s = rsa::pkcs1v15::Signature::try_from(sig)
                        .map_err(|_| DtlsError::BadSignature)?;
                    match scheme {
                        0x0401 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(k.clone())
                            .verify(msg, &s),
                        0x0501 => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(k.clone())
                            .verify(msg, &s),
                        _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(k.clone())
                            .verify(msg, &s),
                    }
                    .is_ok()
                }
                (PeerKey::Rsa(k), 0x0804..=0x0806) => {
                    let s =
                        rsa::pss::Signature::try_from(sig).map_err(|_| DtlsError::BadSignature)?;
                    match scheme {
                        0x0804 => {
                            rsa::pss::VerifyingKey::<sha2::Sha256>::new(k.clone()).verify(msg, &s)
                        }
                        0x0805 => {
                            rsa::pss::VerifyingKey::<sha2::Sha384>::new(k.clone()).verify(msg, &s)
                        }
                        _ => rsa::pss::VerifyingKey::<sha2::Sha512>::new(k.clone()).verify(msg, &s),
                    }
                    .is_ok()
                }
                _ => {
                    return Err(DtlsError::HandshakeFailure(format!(
                        "signature scheme {scheme:#06x} does not fit the peer's key"
                    )))
                }
            };
        if ok {
            Ok(())
        } else {
            Err(DtlsError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_format_and_parse() {
        let fp = Fingerprint {
            algorithm: FingerprintAlgorithm::Sha256,
            bytes: (0u8..32).collect(),
        };
        let s = fp.to_string();
        assert!(s.starts_with("sha-256 00:01:02:"));
        assert!(s.ends_with(":1E:1F"));
        assert_eq!(s.parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            s.to_lowercase()
                .replace("sha-256", "SHA-256")
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        assert!("sha-256 00:01".parse::<Fingerprint>().is_err());
        assert!("md5 00:01".parse::<Fingerprint>().is_err());
        assert!("sha-1 zz".parse::<Fingerprint>().is_err());
        let sha1 = format!("sha-1 {}", vec!["AB"; 20].join(":"));
        assert_eq!(sha1.parse::<Fingerprint>().unwrap().bytes, vec![0xAB; 20]);
    }

    #[test]
    fn generate_sign_verify() {
        let c = Certificate::generate().unwrap();
        let k = PeerKey::from_certificate(c.der()).unwrap();
        let sig = c.sign(b"hello");
        k.verify(ECDSA_P256_SHA256, b"hello", &sig).unwrap();
        assert_eq!(
            k.verify(ECDSA_P256_SHA256, b"hellO", &sig),
            Err(DtlsError::BadSignature)
        );
        assert_eq!(c.fingerprint().bytes.len(), 32);
    }
}
