//! Stateless HelloVerifyRequest cookies (RFC 6347 4.2.1).
//!
//! `cookie = HMAC-SHA256(secret, peer address || client_random || session_id)`.
//! Only the ClientHello prefix up to the cookie is needed, so a fragmented
//! ClientHello (browsers with post-quantum key shares) is checked from its first
//! fragment alone.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use super::codec::Reader;
use super::messages::{
    encode_hello_verify_request, parse_fragments, parse_hello_prefix, put_hs_header,
    HT_CLIENT_HELLO, HT_HELLO_VERIFY_REQUEST,
};
use super::record::{parse_records, write_record, CT_HANDSHAKE, DTLS10};

/// How often the secret changes; the previous one stays valid for one more period.
pub const COOKIE_ROTATION: Duration = Duration::from_secs(60);

/// The verdict on a datagram from an address without an endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieVerdict {
    /// Send this HelloVerifyRequest datagram back; keep no state.
    Respond(Vec<u8>),
    /// The ClientHello carries a valid cookie: create `DtlsEndpoint::server` and
    /// feed it this datagram.
    Accept,
    /// Not a ClientHello (or not parseable): ignore.
    Drop,
}

/// The cookie secrets of a server.
///
/// ```
/// use std::net::SocketAddr;
/// use std::sync::Arc;
/// use std::time::Instant;
/// use rtp_control::dtls::{Certificate, CookieKeys, CookieVerdict, DtlsConfig, DtlsEndpoint};
///
/// let (config, now) = (Arc::new(DtlsConfig::default()), Instant::now());
/// let cert = Arc::new(Certificate::generate()?);
/// let mut cookies = CookieKeys::new(now);
/// let peer: SocketAddr = "192.0.2.7:5000".parse().unwrap();
/// let mut client = DtlsEndpoint::client(config.clone(), cert.clone(), None, now);
/// let mut server = None;
/// // The owner's loop, for datagrams from an address that has no endpoint yet:
/// for _ in 0..2 {
///     let datagram = client.poll_transmit().unwrap();
///     cookies.rotate_if_due(now);
///     match cookies.check(peer, &datagram) {
///         CookieVerdict::Respond(hvr) => client.handle_datagram(&hvr, now), // send to peer
///         CookieVerdict::Accept => {
///             let mut ep = DtlsEndpoint::server(config.clone(), cert.clone(), None, now);
///             ep.handle_datagram(&datagram, now);
///             server = Some(ep);
///         }
///         CookieVerdict::Drop => {}
///     }
/// }
/// assert!(server.unwrap().poll_transmit().is_some(), "ServerHello flight");
/// # Ok::<(), rtp_control::dtls::DtlsError>(())
/// ```
pub struct CookieKeys {
    current: [u8; 32],
    previous: [u8; 32],
    rotated_at: Instant,
}

impl fmt::Debug for CookieKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CookieKeys")
            .field("rotated_at", &self.rotated_at)
            .finish_non_exhaustive()
    }
}

fn random_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    OsRng.fill_bytes(&mut s);
    s
}

impl CookieKeys {
    /// Fresh random secrets.
    pub fn new(now: Instant) -> Self {
        CookieKeys {
            current: random_secret(),
            previous: random_secret(),
            rotated_at: now,
        }
    }

    /// Replaces the secret every [`COOKIE_ROTATION`]; cookies made with the
    /// previous secret stay valid until the next rotation.
    pub fn rotate_if_due(&mut self, now: Instant) {
        if now.saturating_duration_since(self.rotated_at) >= COOKIE_ROTATION {
            self.previous = self.current;
            self.current = random_secret();
            self.rotated_at = now;
        }
    }

    fn cookie(secret: &[u8; 32], peer: SocketAddr, random: &[u8], session_id: &[u8]) -> [u8; 32] {
        let Ok(mut m) = <Hmac<Sha256> as Mac>::new_from_slice(secret) else {
            return [0; 32];
        };
        match peer {
            SocketAddr::V4(a) => {
                m.update(&[4]);
                m.update(&a.ip().octets());
            }
            SocketAddr::V6(a) => {
                m.update(&[6]);
                m.update(&a.ip().octets());
            }
        }
        m.update(&peer.port().to_be_bytes());
        m.update(random);
        m.update(&[session_id.len() as u8]);
        m.update(session_id);
        m.finalize().into_bytes().into()
    }

    /// Checks the first datagram from `peer`. Pure: allocates only the answer.
    pub fn check(&self, peer: SocketAddr, datagram: &[u8]) -> CookieVerdict {
        let (records, _) = parse_records(datagram);
        let Some(rec) = records.first() else {
            return CookieVerdict::Drop;
        };
        if rec.content_type != CT_HANDSHAKE || rec.epoch != 0 {
            return CookieVerdict::Drop;
        }
        let Ok(frags) = parse_fragments(rec.body) else {
            return CookieVerdict::Drop;
        };
        let Some(f) = frags.first() else {
            return CookieVerdict::Drop;
        };
        if f.msg_type != HT_CLIENT_HELLO || f.offset != 0 {
            return CookieVerdict::Drop;
        }
        let mut r = Reader::new(f.body, "ClientHello");
        let Ok(p) = parse_hello_prefix(&mut r) else {
            return CookieVerdict::Drop;
        };
        if !p.cookie.is_empty() {
            use subtle::ConstantTimeEq;
            for secret in [&self.current, &self.previous] {
                let want = Self::cookie(secret, peer, p.random, p.session_id);
                if bool::from(want.ct_eq(p.cookie)) {
                    return CookieVerdict::Accept;
                }
            }
        }
        let cookie = Self::cookie(&self.current, peer, p.random, p.session_id);
        let body = encode_hello_verify_request(&cookie);
        let mut hs = Vec::with_capacity(12 + body.len());
        put_hs_header(
            &mut hs,
            HT_HELLO_VERIFY_REQUEST,
            body.len(),
            f.message_seq,
            0,
            body.len(),
        );
        hs.extend_from_slice(&body);
        let mut out = Vec::with_capacity(13 + hs.len());
        // RFC 6347 4.2.1: the HelloVerifyRequest reuses the ClientHello's record
        // sequence number and says DTLS 1.0.
        write_record(&mut out, CT_HANDSHAKE, DTLS10, 0, rec.seq, &hs);
        CookieVerdict::Respond(out)
    }
}
