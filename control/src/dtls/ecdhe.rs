//! Ephemeral ECDH on X25519 and P-256.

use rand_core::OsRng;

use super::{DtlsError, NamedGroup};

/// Our ephemeral key pair for one handshake.
pub(crate) enum EphemeralKey {
    X25519(x25519_dalek::EphemeralSecret, [u8; 32]),
    P256(p256::ecdh::EphemeralSecret, Vec<u8>),
    P384(p384::ecdh::EphemeralSecret, Vec<u8>),
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EphemeralKey::X25519(..) => "EphemeralKey::X25519",
            EphemeralKey::P256(..) => "EphemeralKey::P256",
            EphemeralKey::P384(..) => "EphemeralKey::P384",
        })
    }
}

impl EphemeralKey {
    pub(crate) fn generate(group: NamedGroup) -> Self {
        match group {
            NamedGroup::X25519 => {
                let s = x25519_dalek::EphemeralSecret::random_from_rng(OsRng);
                let p = x25519_dalek::PublicKey::from(&s).to_bytes();
                EphemeralKey::X25519(s, p)
            }
            NamedGroup::Secp256r1 => {
                let s = p256::ecdh::EphemeralSecret::random(&mut OsRng);
                let p = p256::EncodedPoint::from(s.public_key()).as_bytes().to_vec();
                EphemeralKey::P256(s, p)
            }
            NamedGroup::Secp384r1 => {
                let s = p384::ecdh::EphemeralSecret::random(&mut OsRng);
                let p = p384::EncodedPoint::from(s.public_key()).as_bytes().to_vec();
                EphemeralKey::P384(s, p)
            }
        }
    }

    /// Our public value as sent on the wire (32 bytes, or an uncompressed point).
    pub(crate) fn public(&self) -> &[u8] {
        match self {
            EphemeralKey::X25519(_, p) => p,
            EphemeralKey::P256(_, p) => p,
            EphemeralKey::P384(_, p) => p,
        }
    }

    /// The pre-master secret with the peer's public value.
    pub(crate) fn agree(self, peer: &[u8]) -> Result<Vec<u8>, DtlsError> {
        let bad = || DtlsError::HandshakeFailure("invalid ECDHE public value".into());
        match self {
            EphemeralKey::X25519(s, _) => {
                let p: [u8; 32] = peer.try_into().map_err(|_| bad())?;
                let shared = s.diffie_hellman(&x25519_dalek::PublicKey::from(p));
                if !shared.was_contributory() {
                    return Err(bad());
                }
                Ok(shared.as_bytes().to_vec())
            }
            EphemeralKey::P256(s, _) => {
                // RFC 8422 5.1.2: uncompressed points only.
                if peer.len() != 65 || peer[0] != 4 {
                    return Err(bad());
                }
                let pk = p256::PublicKey::from_sec1_bytes(peer).map_err(|_| bad())?;
                Ok(s.diffie_hellman(&pk).raw_secret_bytes().to_vec())
            }
            EphemeralKey::P384(s, _) => {
                if peer.len() != 97 || peer[0] != 4 {
                    return Err(bad());
                }
                let pk = p384::PublicKey::from_sec1_bytes(peer).map_err(|_| bad())?;
                Ok(s.diffie_hellman(&pk).raw_secret_bytes().to_vec())
            }
        }
    }
}
