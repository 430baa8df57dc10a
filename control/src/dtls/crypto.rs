//! TLS 1.2 PRF (RFC 5246 5), key schedule, Finished and the record AEADs.

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes128Gcm, Aes256Gcm};
use chacha20poly1305::ChaCha20Poly1305;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha384};

use super::{BulkCipher, CipherSuite};

/// P_hash (RFC 5246 5) with HMAC `M`, filling `out`.
fn p_hash<M: Mac + KeyInit + Clone>(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let Ok(base) = <M as KeyInit>::new_from_slice(secret) else {
        return;
    };
    // A(1) = HMAC(secret, label + seed)
    let mut a = {
        let mut m = base.clone();
        m.update(label);
        m.update(seed);
        m.finalize().into_bytes()
    };
    let mut pos = 0;
    while pos < out.len() {
        let mut m = base.clone();
        m.update(&a);
        m.update(label);
        m.update(seed);
        let block = m.finalize().into_bytes();
        let n = block.len().min(out.len() - pos);
        out[pos..pos + n].copy_from_slice(&block[..n]);
        pos += n;
        let mut m = base.clone();
        m.update(&a);
        a = m.finalize().into_bytes();
    }
}

/// The TLS 1.2 PRF with SHA-256 or SHA-384.
pub(crate) fn prf(sha384: bool, secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    if sha384 {
        p_hash::<Hmac<Sha384>>(secret, label, seed, out)
    } else {
        p_hash::<Hmac<Sha256>>(secret, label, seed, out)
    }
}

/// The TLS 1.2 PRF with SHA-256 (exposed for known-answer tests).
#[doc(hidden)]
pub fn prf_sha256(secret: &[u8], label: &[u8], seed: &[u8], out: &mut [u8]) {
    prf(false, secret, label, seed, out)
}

/// The transcript hash of the suite.
pub(crate) fn transcript_hash(suite: CipherSuite, transcript: &[u8]) -> Vec<u8> {
    if suite.uses_sha384() {
        Sha384::digest(transcript).to_vec()
    } else {
        Sha256::digest(transcript).to_vec()
    }
}

/// Master secret, with the extended master secret (RFC 7627) when `ems` holds
/// the session hash.
pub(crate) fn master_secret(
    suite: CipherSuite,
    pre_master: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
    session_hash: Option<&[u8]>,
) -> Vec<u8> {
    let mut out = vec![0u8; 48];
    match session_hash {
        Some(h) => prf(
            suite.uses_sha384(),
            pre_master,
            b"extended master secret",
            h,
            &mut out,
        ),
        None => {
            let mut seed = client_random.to_vec();
            seed.extend_from_slice(server_random);
            prf(
                suite.uses_sha384(),
                pre_master,
                b"master secret",
                &seed,
                &mut out,
            )
        }
    }
    out
}

/// Finished verify_data (12 bytes).
pub(crate) fn verify_data(
    suite: CipherSuite,
    master: &[u8],
    client: bool,
    transcript: &[u8],
) -> [u8; 12] {
    let label: &[u8] = if client {
        b"client finished"
    } else {
        b"server finished"
    };
    let mut out = [0u8; 12];
    prf(
        suite.uses_sha384(),
        master,
        label,
        &transcript_hash(suite, transcript),
        &mut out,
    );
    out
}

/// One direction's record protection.
#[derive(Clone)]
pub(crate) enum RecordCipher {
    Aes128Gcm(Box<Aes128Gcm>, [u8; 4]),
    Aes256Gcm(Box<Aes256Gcm>, [u8; 4]),
    Chacha(Box<ChaCha20Poly1305>, [u8; 12]),
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordCipher::Aes128Gcm(..) => "RecordCipher::Aes128Gcm",
            RecordCipher::Aes256Gcm(..) => "RecordCipher::Aes256Gcm",
            RecordCipher::Chacha(..) => "RecordCipher::Chacha20Poly1305",
        })
    }
}

/// Authentication tag length of every suite.
pub(crate) const TAG_LEN: usize = 16;

impl RecordCipher {
    fn new(bulk: BulkCipher, key: &[u8], iv: &[u8]) -> Self {
        match bulk {
            BulkCipher::Aes128Gcm => RecordCipher::Aes128Gcm(
                Box::new(Aes128Gcm::new(key.into())),
                iv.try_into().unwrap_or_default(),
            ),
            BulkCipher::Aes256Gcm => RecordCipher::Aes256Gcm(
                Box::new(Aes256Gcm::new(key.into())),
                iv.try_into().unwrap_or_default(),
            ),
            BulkCipher::Chacha20Poly1305 => RecordCipher::Chacha(
                Box::new(ChaCha20Poly1305::new(key.into())),
                iv.try_into().unwrap_or_default(),
            ),
        }
    }

    /// Bytes a protected record adds to its plaintext.
    pub(crate) fn overhead(&self) -> usize {
        match self {
            RecordCipher::Chacha(..) => TAG_LEN,
            _ => 8 + TAG_LEN,
        }
    }

    fn nonce(&self, epoch_seq: u64, explicit: Option<&[u8]>) -> [u8; 12] {
        let mut n = [0u8; 12];
        match self {
            RecordCipher::Aes128Gcm(_, salt) | RecordCipher::Aes256Gcm(_, salt) => {
                n[..4].copy_from_slice(salt);
                match explicit {
                    Some(e) => n[4..].copy_from_slice(e),
                    None => n[4..].copy_from_slice(&epoch_seq.to_be_bytes()),
                }
            }
            RecordCipher::Chacha(_, iv) => {
                n = *iv;
                for (d, s) in n[4..].iter_mut().zip(epoch_seq.to_be_bytes()) {
                    *d ^= s;
                }
            }
        }
        n
    }

    /// Encrypts a record fragment. `epoch_seq` is epoch(16) || seq(48); returns the
    /// record body (explicit nonce || ciphertext || tag).
    pub(crate) fn seal(&self, epoch_seq: u64, content_type: u8, plaintext: &[u8]) -> Vec<u8> {
        let aad = aad(epoch_seq, content_type, plaintext.len());
        let nonce = self.nonce(epoch_seq, None);
        let mut out = Vec::with_capacity(plaintext.len() + self.overhead());
        if !matches!(self, RecordCipher::Chacha(..)) {
            out.extend_from_slice(&epoch_seq.to_be_bytes());
        }
        let start = out.len();
        out.extend_from_slice(plaintext);
        let body = &mut out[start..];
        let tag = match self {
            RecordCipher::Aes128Gcm(c, _) => {
                c.encrypt_in_place_detached((&nonce).into(), &aad, body)
            }
            RecordCipher::Aes256Gcm(c, _) => {
                c.encrypt_in_place_detached((&nonce).into(), &aad, body)
            }
            RecordCipher::Chacha(c, _) => c.encrypt_in_place_detached((&nonce).into(), &aad, body),
        };
        // Encryption fails only for plaintexts beyond 2^36 bytes.
        if let Ok(tag) = tag {
            out.extend_from_slice(&tag);
        }
        out
    }

    /// Decrypts a record body; `None` if it does not authenticate.
    pub(crate) fn open(&self, epoch_seq: u64, content_type: u8, body: &[u8]) -> Option<Vec<u8>> {
        let explicit_len = self.overhead() - TAG_LEN;
        if body.len() < self.overhead() {
            return None;
        }
        let (explicit, rest) = body.split_at(explicit_len);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let nonce = self.nonce(
            epoch_seq,
            if explicit_len > 0 {
                Some(explicit)
            } else {
                None
            },
        );
        let aad = aad(epoch_seq, content_type, ct.len());
        let mut buf = ct.to_vec();
        let r = match self {
            RecordCipher::Aes128Gcm(c, _) => {
                c.decrypt_in_place_detached((&nonce).into(), &aad, &mut buf, tag.into())
            }
            RecordCipher::Aes256Gcm(c, _) => {
                c.decrypt_in_place_detached((&nonce).into(), &aad, &mut buf, tag.into())
            }
            RecordCipher::Chacha(c, _) => {
                c.decrypt_in_place_detached((&nonce).into(), &aad, &mut buf, tag.into())
            }
        };
        r.ok().map(|_| buf)
    }
}

fn aad(epoch_seq: u64, content_type: u8, len: usize) -> [u8; 13] {
    let mut a = [0u8; 13];
    a[..8].copy_from_slice(&epoch_seq.to_be_bytes());
    a[8] = content_type;
    a[9] = 0xFE;
    a[10] = 0xFD;
    a[11..].copy_from_slice(&(len as u16).to_be_bytes());
    a
}

/// Both directions' ciphers from the key block.
pub(crate) fn key_block(
    suite: CipherSuite,
    master: &[u8],
    client_random: &[u8; 32],
    server_random: &[u8; 32],
) -> (RecordCipher, RecordCipher) {
    let bulk = suite.bulk();
    let (klen, ivlen) = match bulk {
        BulkCipher::Aes128Gcm => (16, 4),
        BulkCipher::Aes256Gcm => (32, 4),
        BulkCipher::Chacha20Poly1305 => (32, 12),
    };
    let mut seed = server_random.to_vec();
    seed.extend_from_slice(client_random);
    let mut kb = vec![0u8; 2 * (klen + ivlen)];
    prf(
        suite.uses_sha384(),
        master,
        b"key expansion",
        &seed,
        &mut kb,
    );
    let (ck, rest) = kb.split_at(klen);
    let (sk, rest) = rest.split_at(klen);
    let (civ, siv) = rest.split_at(ivlen);
    (
        RecordCipher::new(bulk, ck, civ),
        RecordCipher::new(bulk, sk, siv),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The widely used TLS 1.2 PRF-SHA256 test vector (published on the IETF TLS
    /// list by Joseph Birr-Pixton): secret, seed and label "test label", 100 bytes.
    #[test]
    fn prf_sha256_known_answer() {
        let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
        let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
        let mut out = [0u8; 100];
        prf(false, &secret, b"test label", &seed, &mut out);
        let expected = hex(
            "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
             6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
             4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
             87 34 7b 66",
        );
        assert_eq!(out.to_vec(), expected);
    }

    /// The matching SHA-384 vector (same source), 148 bytes.
    #[test]
    fn prf_sha384_known_answer() {
        let secret = hex("b8 0b 73 3d 6c ee fc dc 71 56 6e a4 8e 55 67 df");
        let seed = hex("cd 66 5c f6 a8 44 7d d6 ff 8b 27 55 5e db 74 65");
        let mut out = [0u8; 148];
        prf(true, &secret, b"test label", &seed, &mut out);
        let expected = hex(
            "7b 0c 18 e9 ce d4 10 ed 18 04 f2 cf a3 4a 33 6a 1c 14 df fb 49 00 bb 5f d7 94 21 07 e8 1c 83 cd
             e9 ca 0f aa 60 be 9f e3 4f 82 b1 23 3c 91 46 a0 e5 34 cb 40 0f ed 27 00 88 4f 9d c2 36 f8 0e dd
             8b fa 96 11 44 c9 e8 d7 92 ec a7 22 a7 b3 2f c3 d4 16 d4 73 eb c2 c5 fd 4a bf da d0 5d 91 84 25
             9b 5b f8 cd 4d 90 fa 0d 31 e2 de c4 79 e4 f1 a2 60 66 f2 ee a9 a6 92 36 a3 e5 26 55 c9 e9 ae e6
             91 c8 f3 a2 68 54 30 8d 5e aa 3b e8 5e 09 90 70 3d 73 e5 6f",
        );
        assert_eq!(out.to_vec(), expected);
    }

    #[test]
    fn record_aead_round_trip_and_tamper() {
        for suite in CipherSuite::ALL {
            let (c, s) = key_block(suite, &[7u8; 48], &[1u8; 32], &[2u8; 32]);
            let es = (1u64 << 48) | 5;
            let sealed = c.seal(es, 23, b"hello dtls");
            assert_eq!(sealed.len(), 10 + c.overhead());
            assert_eq!(c.open(es, 23, &sealed).as_deref(), Some(&b"hello dtls"[..]));
            // The other direction's key does not open it.
            assert!(s.open(es, 23, &sealed).is_none());
            // Wrong sequence number, type, or a flipped bit: rejected.
            assert!(c.open(es + 1, 23, &sealed).is_none());
            assert!(c.open(es, 22, &sealed).is_none());
            for i in 0..sealed.len() {
                let mut t = sealed.clone();
                t[i] ^= 0x40;
                if c.overhead() == 24 && i < 8 {
                    // The explicit nonce is part of the nonce: still rejected.
                }
                assert!(c.open(es, 23, &t).is_none(), "{suite} byte {i}");
            }
            assert!(c.open(es, 23, &sealed[..10]).is_none());
        }
    }
}
