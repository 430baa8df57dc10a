//! ICE-lite (RFC 8445 section 2.5, RFC 7675 consent) for legs that face a full
//! ICE agent (browsers, WebRTC stacks): the engine answers the peer's STUN
//! connectivity checks on the leg's ports with its short-term credentials and
//! sends media to the candidate the peer nominates. A lite agent gathers only
//! host candidates (the leg's own address and ports) and never sends checks.

use rand::Rng;

/// ICE short-term credentials (`a=ice-ufrag` / `a=ice-pwd`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceCredentials {
    /// Username fragment (4 to 256 ice-chars).
    pub ufrag: String,
    /// Password (22 to 256 ice-chars).
    pub pwd: String,
}

/// The `ice-char` set of RFC 8839: letters, digits, `+` and `/`.
const ICE_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl IceCredentials {
    /// Fresh random credentials: an 8-character ufrag and a 24-character
    /// password (144 bits), from the operating system's generator.
    pub fn random() -> Self {
        let mut rng = rand::rngs::OsRng;
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| char::from(ICE_CHARS[rng.gen_range(0..ICE_CHARS.len())]))
                .collect()
        };
        IceCredentials {
            ufrag: pick(8),
            pwd: pick(24),
        }
    }
}

/// ICE on one leg: our credentials, and the peer's once its SDP gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IceLegParams {
    /// Ours, advertised in the SDP sent to the peer.
    pub local: IceCredentials,
    /// The peer's (from its SDP); `None` until known. Checks must then carry a
    /// USERNAME of `local.ufrag:remote.ufrag`.
    pub remote: Option<IceCredentials>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_credentials_use_ice_chars_and_differ() {
        let a = IceCredentials::random();
        let b = IceCredentials::random();
        assert_eq!((a.ufrag.len(), a.pwd.len()), (8, 24));
        assert!(a
            .ufrag
            .bytes()
            .chain(a.pwd.bytes())
            .all(|c| ICE_CHARS.contains(&c)));
        assert_ne!(a, b);
    }
}
