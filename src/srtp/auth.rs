//! HMAC-SHA1 (RFC 2104) for SRTP authentication, keyed once per session key.
//!
//! The inner and outer hash states after the padded key block are computed when
//! the key is derived, so a packet costs only the compressions of its own bytes plus
//! one for the outer hash: four for a 160-byte payload. The `hmac` crate does the
//! same precomputation, but cloning its buffered state and finalising through the
//! generic buffer cost about a quarter of the MAC's time per packet; here whole
//! blocks are compressed straight from the packet and only the tail is copied.
//! The state is two SHA-1 chaining values (40 bytes) instead of the crate's ~200.

use sha1::digest::generic_array::GenericArray;

/// SHA-1's initial chaining value (FIPS 180-4 5.3.1).
const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];
const BLOCK: usize = 64;

fn compress(state: &mut [u32; 5], block: &[u8]) {
    sha1::compress(
        state,
        core::slice::from_ref(GenericArray::from_slice(block)),
    );
}

/// The keyed states of HMAC-SHA1 for one authentication key.
#[derive(Clone)]
pub(super) struct HmacSha1Key {
    inner: [u32; 5],
    outer: [u32; 5],
}

impl HmacSha1Key {
    /// Keys HMAC-SHA1 with `key` (SRTP authentication keys are 20 bytes; any
    /// length up to one block is accepted).
    pub(super) fn new(key: &[u8]) -> Self {
        debug_assert!(key.len() <= BLOCK, "SRTP auth keys fit one block");
        let pad = |byte: u8| {
            let mut block = [byte; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            let mut state = H0;
            compress(&mut state, &block);
            state
        };
        HmacSha1Key {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    /// Placeholder states for a profile that does not authenticate with HMAC
    /// (GCM): never used to compute a tag.
    pub(super) fn unused() -> Self {
        HmacSha1Key {
            inner: [0; 5],
            outer: [0; 5],
        }
    }

    /// HMAC-SHA1 of the concatenation of `parts`.
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; 20] {
        let mut state = self.inner;
        // The tail of the message that does not fill a block yet.
        let mut tail = [0u8; BLOCK];
        let mut fill = 0;
        let mut total = BLOCK as u64; // the key block already hashed
        for part in parts {
            total += part.len() as u64;
            let mut p = *part;
            if fill > 0 {
                let take = (BLOCK - fill).min(p.len());
                tail[fill..fill + take].copy_from_slice(&p[..take]);
                fill += take;
                p = &p[take..];
                if fill < BLOCK {
                    continue;
                }
                compress(&mut state, &tail);
            }
            let whole = p.len() / BLOCK * BLOCK;
            for block in p[..whole].chunks_exact(BLOCK) {
                compress(&mut state, block);
            }
            let rest = &p[whole..];
            tail[..rest.len()].copy_from_slice(rest);
            fill = rest.len();
        }
        finish(&mut state, &mut tail, fill, total);
        let mut block = [0u8; BLOCK];
        write_be(&state, &mut block[..20]);
        let mut outer = self.outer;
        finish(&mut outer, &mut block, 20, (BLOCK + 20) as u64);
        let mut out = [0u8; 20];
        write_be(&outer, &mut out);
        out
    }
}

/// SHA-1 padding (0x80, zeros, the bit length) after `fill` bytes in `tail`, and the
/// last one or two compressions.
fn finish(state: &mut [u32; 5], tail: &mut [u8; BLOCK], fill: usize, total: u64) {
    tail[fill] = 0x80;
    tail[fill + 1..].fill(0);
    if fill + 1 > BLOCK - 8 {
        compress(state, tail);
        tail.fill(0);
    }
    tail[BLOCK - 8..].copy_from_slice(&(total * 8).to_be_bytes());
    compress(state, tail);
}

fn write_be(state: &[u32; 5], out: &mut [u8]) {
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::HmacSha1Key;
    use hmac::{Hmac, Mac};
    use proptest::prelude::*;

    fn reference(key: &[u8], parts: &[&[u8]]) -> [u8; 20] {
        let mut h = <Hmac<sha1::Sha1> as Mac>::new_from_slice(key).unwrap();
        for p in parts {
            h.update(p);
        }
        h.finalize().into_bytes().into()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn rfc2202_vectors() {
        // Test cases 1, 3 and 6 of RFC 2202 section 3 (keys of one block or less).
        let k = HmacSha1Key::new(&[0x0b; 20]);
        assert_eq!(
            k.mac(&[b"Hi There"]).to_vec(),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        let k = HmacSha1Key::new(&[0xaa; 20]);
        assert_eq!(
            k.mac(&[&[0xdd; 50]]).to_vec(),
            hex("125d7342b9ac11cd91a39af48aa17b4f63f175d3")
        );
        let k = HmacSha1Key::new(b"Jefe");
        assert_eq!(
            k.mac(&[b"what do ya want ", b"for nothing?"]).to_vec(),
            hex("effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
        );
    }

    proptest! {
        #[test]
        fn matches_the_hmac_crate(
            key in proptest::collection::vec(any::<u8>(), 0..=64),
            msg in proptest::collection::vec(any::<u8>(), 0..400),
            cut in 0usize..400,
        ) {
            let cut = cut.min(msg.len());
            let (a, b) = msg.split_at(cut);
            let ours = HmacSha1Key::new(&key);
            prop_assert_eq!(ours.mac(&[a, b]), reference(&key, &[&msg]));
            prop_assert_eq!(ours.mac(&[&msg]), reference(&key, &[&msg]));
        }
    }

    #[test]
    fn every_length_around_the_padding_boundaries() {
        let key = [7u8; 20];
        let msg: Vec<u8> = (0..300u32).map(|i| (i * 31) as u8).collect();
        let ours = HmacSha1Key::new(&key);
        for n in 0..msg.len() {
            for cut in [0, n / 2, n.saturating_sub(4), n] {
                let (a, b) = msg[..n].split_at(cut.min(n));
                assert_eq!(ours.mac(&[a, b]), reference(&key, &[&msg[..n]]), "n={n}");
            }
        }
    }
}
