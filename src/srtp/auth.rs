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
use sha1_lanes::{Lanes, Sha1x16};

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

    /// HMAC-SHA1 of `msg || suffix` (`suffix` at most 56 bytes: SRTP's ROC).
    pub(super) fn mac(&self, msg: &[u8], suffix: &[u8]) -> [u8; 20] {
        let mut run = MacRun::new(self, msg, suffix);
        while run.step() {}
        run.digest()
    }

    /// HMAC-SHA1 of `msg || suffix`, calling `beside` between its compressions
    /// until both are done: independent work (AES-CM keystream for the same
    /// packet) then runs in the shadow of the SHA-1 chain's latency.
    pub(super) fn mac_beside(
        &self,
        msg: &[u8],
        suffix: &[u8],
        mut beside: impl FnMut() -> bool,
    ) -> [u8; 20] {
        let mut run = MacRun::new(self, msg, suffix);
        loop {
            let more_mac = run.step();
            let more_beside = beside();
            if !more_mac && !more_beside {
                break;
            }
        }
        run.digest()
    }

    /// HMAC-SHA1 of two messages at once: their SHA-1 compressions alternate, so
    /// that the CPU overlaps two independent dependency chains (SHA-NI's rounds
    /// have a latency several times their throughput; on an AMD EPYC two chains
    /// take 85 ns per 160-byte packet instead of 160).
    pub(super) fn mac_pair(
        a: (&Self, &[u8], &[u8]),
        b: (&Self, &[u8], &[u8]),
    ) -> ([u8; 20], [u8; 20]) {
        let mut x = MacRun::new(a.0, a.1, a.2);
        let mut y = MacRun::new(b.0, b.1, b.2);
        loop {
            let more_x = x.step();
            let more_y = y.step();
            if !more_x && !more_y {
                break;
            }
        }
        (x.digest(), y.digest())
    }

    /// Whether two keys are the same (not constant time: the caller compares keys
    /// of its own contexts, not secrets against input).
    pub(super) fn same(&self, other: &Self) -> bool {
        self.inner == other.inner && self.outer == other.outer
    }
}

/// Messages a [`MacBatch`] computes together.
pub(super) const BATCH: usize = 16;

/// Fewer messages than this go through SHA-NI one or two at a time: sixteen
/// lanes cost about as much as four messages through SHA-NI.
const MIN_LANES: usize = 5;

/// Up to [`BATCH`] HMAC-SHA1 computations gathered to be computed together:
/// with AVX-512, in the sixteen lanes of `sha1_lanes` (about a quarter of
/// SHA-NI's time per message on the Intel hosts this is measured on); without
/// it, or for a few messages, through SHA-NI in pairs.
pub(super) struct MacBatch<'a> {
    jobs: [Option<MacJob<'a>>; BATCH],
    len: usize,
}

/// One MAC of a batch: the key, the message and the ROC after it.
type MacJob<'a> = (&'a HmacSha1Key, &'a [u8], [u8; 4]);

impl<'a> MacBatch<'a> {
    pub(super) fn new() -> Self {
        MacBatch {
            jobs: [None; BATCH],
            len: 0,
        }
    }

    /// Adds HMAC-SHA1 of `msg || suffix` under `key`; the caller computes the
    /// batch before it holds more than [`BATCH`].
    pub(super) fn push(&mut self, key: &'a HmacSha1Key, msg: &'a [u8], suffix: [u8; 4]) {
        self.jobs[self.len] = Some((key, msg, suffix));
        self.len += 1;
    }

    /// The MACs of the messages pushed, in order, into `out` as SHA-1's
    /// big-endian words (byte `i` of a MAC is byte `i % 4` of word `i / 4`, most
    /// significant first); empties the batch.
    pub(super) fn compute(&mut self, out: &mut [[u32; 5]; BATCH]) {
        let n = std::mem::replace(&mut self.len, 0);
        let jobs = std::mem::replace(&mut self.jobs, [None; BATCH]);
        if n >= MIN_LANES {
            if let Some(k) = lanes() {
                mac16(k, &jobs, out);
                return;
            }
        }
        let mut i = 0;
        while let Some((ka, ma, sa)) = jobs.get(i).copied().flatten() {
            if let Some((kb, mb, sb)) = jobs.get(i + 1).copied().flatten() {
                let (x, y) = HmacSha1Key::mac_pair((ka, ma, &sa), (kb, mb, &sb));
                (out[i], out[i + 1]) = (words(&x), words(&y));
                i += 2;
            } else {
                out[i] = words(&ka.mac(ma, &sa));
                i += 1;
            }
        }
    }
}

/// The sixteen-lane kernel, if this CPU runs it (detected once).
fn lanes() -> Option<Sha1x16> {
    static KERNEL: std::sync::OnceLock<Option<Sha1x16>> = std::sync::OnceLock::new();
    *KERNEL.get_or_init(Sha1x16::detect)
}

/// HMAC-SHA1 of every job in sixteen lanes: whole blocks straight from the
/// messages, then each lane's tail blocks, a lane sitting out (masked) once its
/// message is done, then all the outer hashes in one step.
fn mac16(k: Sha1x16, jobs: &[Option<MacJob<'_>>; BATCH], out: &mut [[u32; 5]; BATCH]) {
    const ZERO: [u8; BLOCK] = [0; BLOCK];
    let mut tails = [[0u8; 2 * BLOCK]; BATCH];
    let mut body = [0usize; BATCH];
    let mut blocks = [0usize; BATCH];
    let mut inner = [[0u32; 5]; BATCH];
    let mut outer = [[0u32; 5]; BATCH];
    for (i, (key, msg, suffix)) in jobs
        .iter()
        .enumerate()
        .filter_map(|(i, j)| Some((i, (*j)?)))
    {
        let whole = msg.len() / BLOCK;
        let n = write_tail(&mut tails[i], &msg[whole * BLOCK..], &suffix, msg.len());
        body[i] = whole;
        blocks[i] = whole + usize::from(n);
        inner[i] = key.inner;
        outer[i] = key.outer;
    }
    let steps = blocks.iter().copied().max().unwrap_or(0);
    let mut state = Lanes::from_states(&inner);
    for s in 0..steps {
        let mut active = 0u16;
        let rows: [&[u8; BLOCK]; BATCH] = core::array::from_fn(|i| {
            if s >= blocks[i] {
                return &ZERO;
            }
            active |= 1 << i;
            let block = match jobs[i] {
                Some((_, msg, _)) if s < body[i] => &msg[s * BLOCK..(s + 1) * BLOCK],
                _ => &tails[i][(s - body[i]) * BLOCK..(s - body[i] + 1) * BLOCK],
            };
            block.try_into().expect("one block")
        });
        k.compress(&mut state, active, &rows);
    }
    let mut mac = Lanes::from_states(&outer);
    k.compress_hmac_outer(&mut mac, &state);
    *out = mac.states();
}

/// One HMAC-SHA1 computation that advances one compression per `step`, so that
/// two of them can be interleaved.
struct MacRun<'a> {
    state: [u32; 5],
    outer: [u32; 5],
    /// Whole blocks of the message not compressed yet.
    body: &'a [u8],
    /// The message's last partial block, the suffix and SHA-1's padding: one or
    /// two blocks.
    tail: [u8; 2 * BLOCK],
    tail_next: u8,
    tail_blocks: u8,
    done: bool,
}

impl<'a> MacRun<'a> {
    fn new(key: &HmacSha1Key, msg: &'a [u8], suffix: &[u8]) -> Self {
        let whole = msg.len() / BLOCK * BLOCK;
        let (body, rest) = msg.split_at(whole);
        let (tail, tail_blocks) = tail_blocks(rest, suffix, msg.len());
        MacRun {
            state: key.inner,
            outer: key.outer,
            body,
            tail,
            tail_next: 0,
            tail_blocks,
            done: false,
        }
    }

    /// Compresses the next block; false once the outer hash is complete.
    #[inline(always)]
    fn step(&mut self) -> bool {
        if self.body.len() >= BLOCK {
            let (block, rest) = self.body.split_at(BLOCK);
            compress(&mut self.state, block);
            self.body = rest;
            return true;
        }
        if self.tail_next < self.tail_blocks {
            let at = usize::from(self.tail_next) * BLOCK;
            compress(&mut self.state, &self.tail[at..at + BLOCK]);
            self.tail_next += 1;
            return true;
        }
        if self.done {
            return false;
        }
        outer_hash(&mut self.outer, &self.state);
        self.done = true;
        false
    }

    fn digest(&self) -> [u8; 20] {
        debug_assert!(self.done);
        let mut out = [0u8; 20];
        write_be(&self.outer, &mut out);
        out
    }
}

/// The message's last partial block `rest`, the suffix and SHA-1's padding for a
/// message of `msg_len` bytes (plus the key block): one or two blocks.
fn tail_blocks(rest: &[u8], suffix: &[u8], msg_len: usize) -> ([u8; 2 * BLOCK], u8) {
    let mut tail = [0u8; 2 * BLOCK];
    let n = write_tail(&mut tail, rest, suffix, msg_len);
    (tail, n)
}

/// [`tail_blocks`] written into `tail`, which must be zeroed; returns the number
/// of blocks. (Built in place: a copy of the 128 bytes just after these narrow
/// stores would stall on store forwarding.)
fn write_tail(tail: &mut [u8; 2 * BLOCK], rest: &[u8], suffix: &[u8], msg_len: usize) -> u8 {
    debug_assert!(
        rest.len() < BLOCK && suffix.len() <= BLOCK - 8,
        "suffixes are a ROC at most"
    );
    let fill = rest.len() + suffix.len();
    tail[..rest.len()].copy_from_slice(rest);
    tail[rest.len()..fill].copy_from_slice(suffix);
    tail[fill] = 0x80;
    let blocks = if fill + 1 > BLOCK - 8 { 2 } else { 1 };
    let end = usize::from(blocks) * BLOCK;
    // The bit length counts the key block already in the inner state.
    let bits = (BLOCK + msg_len + suffix.len()) as u64 * 8;
    tail[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    blocks
}

/// The outer hash: the inner digest, padding, and the length of key block plus
/// digest, compressed into `outer`.
fn outer_hash(outer: &mut [u32; 5], inner: &[u32; 5]) {
    let mut block = [0u8; BLOCK];
    write_be(inner, &mut block[..20]);
    block[20] = 0x80;
    block[BLOCK - 8..].copy_from_slice(&(((BLOCK + 20) * 8) as u64).to_be_bytes());
    compress(outer, &block);
}

/// HMAC-SHA1 fed a message as it is being written: each `absorb` compresses the
/// whole blocks of a longer prefix that are not compressed yet, so that the
/// blocks of ciphertext already encrypted are hashed while the next ones are.
pub(super) struct Absorb {
    state: [u32; 5],
    done: usize,
}

impl Absorb {
    pub(super) fn new(key: &HmacSha1Key) -> Self {
        Absorb {
            state: key.inner,
            done: 0,
        }
    }

    /// Compresses the whole blocks of `prefix` (a prefix of the message, no
    /// shorter than the last one) not compressed yet.
    #[inline(always)]
    pub(super) fn absorb(&mut self, prefix: &[u8]) {
        while let Some(block) = prefix.get(self.done..self.done + BLOCK) {
            compress(&mut self.state, block);
            self.done += BLOCK;
        }
    }

    /// The MAC of `msg || suffix` (`msg` the whole message, of which the blocks
    /// absorbed are a prefix).
    pub(super) fn finish(mut self, key: &HmacSha1Key, msg: &[u8], suffix: &[u8]) -> [u8; 20] {
        self.absorb(msg);
        let (tail, n) = tail_blocks(&msg[self.done..], suffix, msg.len());
        for block in tail[..usize::from(n) * BLOCK].chunks_exact(BLOCK) {
            compress(&mut self.state, block);
        }
        let mut outer = key.outer;
        outer_hash(&mut outer, &self.state);
        let mut out = [0u8; 20];
        write_be(&outer, &mut out);
        out
    }
}

/// A MAC as SHA-1's big-endian words.
fn words(mac: &[u8; 20]) -> [u32; 5] {
    core::array::from_fn(|i| {
        u32::from_be_bytes([mac[4 * i], mac[4 * i + 1], mac[4 * i + 2], mac[4 * i + 3]])
    })
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
            k.mac(b"Hi There", &[]).to_vec(),
            hex("b617318655057264e28bc0b6fb378c8ef146be00")
        );
        let k = HmacSha1Key::new(&[0xaa; 20]);
        assert_eq!(
            k.mac(&[0xdd; 50], &[]).to_vec(),
            hex("125d7342b9ac11cd91a39af48aa17b4f63f175d3")
        );
        let k = HmacSha1Key::new(b"Jefe");
        assert_eq!(
            k.mac(b"what do ya want for nothing?", &[]).to_vec(),
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
            // A suffix of up to 56 bytes (SRTP's is the 4-byte ROC).
            let cut = cut.min(msg.len()).max(msg.len().saturating_sub(56));
            let (a, b) = msg.split_at(cut);
            let ours = HmacSha1Key::new(&key);
            prop_assert_eq!(ours.mac(a, b), reference(&key, &[&msg]));
            prop_assert_eq!(ours.mac(&msg, &[]), reference(&key, &[&msg]));
        }
    }

    #[test]
    fn every_length_around_the_padding_boundaries() {
        let key = [7u8; 20];
        let msg: Vec<u8> = (0..300u32).map(|i| (i * 31) as u8).collect();
        let ours = HmacSha1Key::new(&key);
        for n in 0..msg.len() {
            for cut in [n.saturating_sub(56), n.saturating_sub(4), n] {
                let (a, b) = msg[..n].split_at(cut);
                assert_eq!(ours.mac(a, b), reference(&key, &[&msg[..n]]), "n={n}");
            }
        }
    }

    proptest! {
        #[test]
        fn a_pair_is_two_single_macs(
            ka in proptest::collection::vec(any::<u8>(), 0..=64),
            kb in proptest::collection::vec(any::<u8>(), 0..=64),
            a in proptest::collection::vec(any::<u8>(), 0..400),
            b in proptest::collection::vec(any::<u8>(), 0..400),
            roc in any::<[u8; 4]>(),
        ) {
            // Messages of different lengths run out of blocks at different steps.
            let (x, y) = (HmacSha1Key::new(&ka), HmacSha1Key::new(&kb));
            let (ma, mb) = HmacSha1Key::mac_pair((&x, &a, &roc), (&y, &b, &[]));
            prop_assert_eq!(ma, reference(&ka, &[&a, &roc]));
            prop_assert_eq!(mb, reference(&kb, &[&b]));
        }
    }

    proptest! {
        #[test]
        fn a_batch_is_that_many_single_macs(
            jobs in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 20), proptest::collection::vec(any::<u8>(), 0..400), any::<[u8; 4]>()),
                0..=super::BATCH,
            ),
        ) {
            // 0-4 messages go through SHA-NI, 5-16 through the lanes (with
            // AVX-512), of lengths that end at different steps.
            let keys: Vec<HmacSha1Key> = jobs.iter().map(|(k, _, _)| HmacSha1Key::new(k)).collect();
            let mut batch = super::MacBatch::new();
            for (key, (_, msg, roc)) in keys.iter().zip(&jobs) {
                batch.push(key, msg, *roc);
            }
            let mut out = [[0u32; 5]; super::BATCH];
            batch.compute(&mut out);
            for (i, (k, msg, roc)) in jobs.iter().enumerate() {
                let want = super::words(&reference(k, &[msg, roc]));
                prop_assert_eq!(out[i], want, "job {} of {}", i, jobs.len());
            }
        }
    }

    proptest! {
        #[test]
        fn absorbing_a_growing_prefix_is_the_same_mac(
            key in proptest::collection::vec(any::<u8>(), 0..=64),
            msg in proptest::collection::vec(any::<u8>(), 0..700),
            cuts in proptest::collection::vec(0usize..700, 0..8),
            roc in any::<[u8; 4]>(),
        ) {
            let k = HmacSha1Key::new(&key);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(msg.len())).collect();
            cuts.sort_unstable();
            let mut run = super::Absorb::new(&k);
            for c in cuts {
                run.absorb(&msg[..c]);
            }
            prop_assert_eq!(run.finish(&k, &msg, &roc), reference(&key, &[&msg, &roc]));
        }
    }
}
