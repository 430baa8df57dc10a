//! # sha1-lanes
//!
//! SHA-1 compression of sixteen independent messages at once with AVX-512, one
//! message per 32-bit lane (the "multi-buffer" layout), behind a safe API.
//!
//! rtp-core authenticates SRTP packets with HMAC-SHA1, four SHA-1 compressions
//! for a 160-byte payload. SHA-NI compresses one block at a time and, on the Intel
//! cores this project is measured on, its rounds and message instructions share
//! one execution port, so two messages interleaved take as long as two in a row.
//! Across sixteen lanes a SHA-1 round is a handful of vector instructions
//! (`vpternlogd` computes each round's boolean function in one, `vprold` each
//! rotation): a batch of packets pays about a quarter of SHA-NI's time per block.
//! The `sha1` crate hashes one message at a time, and no maintained crate hashes
//! many at once; this crate holds the only `unsafe` code of the SRTP path, so that
//! `rtp-core` keeps `#![forbid(unsafe_code)]`.
//!
//! [`Sha1x16::detect`] returns the kernel only on a CPU with AVX-512 F and BW;
//! everywhere else callers use the `sha1` crate. SHA-1 on its own is not
//! collision resistant; HMAC-SHA1, as SRTP uses it, is not affected.

#![deny(unsafe_code)]

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod x16;

/// Messages compressed together.
pub const LANES: usize = 16;

/// The chaining values of sixteen SHA-1 computations, stored word-major: word
/// `j` of lane `i` is `self.words()[j][i]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C, align(64))]
pub struct Lanes([[u32; LANES]; 5]);

impl Lanes {
    /// Sixteen chaining values, `states[i]` lane `i`'s.
    pub fn from_states(states: &[[u32; 5]; LANES]) -> Self {
        let mut words = [[0u32; LANES]; 5];
        for (lane, s) in states.iter().enumerate() {
            for (w, v) in words.iter_mut().zip(s) {
                w[lane] = *v;
            }
        }
        Lanes(words)
    }

    /// The chaining values, lane by lane.
    pub fn states(&self) -> [[u32; 5]; LANES] {
        let mut out = [[0u32; 5]; LANES];
        for (lane, s) in out.iter_mut().enumerate() {
            for (v, w) in s.iter_mut().zip(&self.0) {
                *v = w[lane];
            }
        }
        out
    }

    /// The five words of every lane (word-major).
    pub fn words(&self) -> &[[u32; LANES]; 5] {
        &self.0
    }
}

/// Proof that this CPU runs the sixteen-lane kernel; [`Sha1x16::detect`] makes it.
#[derive(Clone, Copy, Debug)]
pub struct Sha1x16(Avx512);

/// AVX-512 F and BW are present (uninhabited where they cannot be).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug)]
struct Avx512;
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
enum Avx512 {}

impl Sha1x16 {
    /// The kernel, if this CPU has AVX-512 F and BW (checked by CPUID once and
    /// cached by the standard library).
    pub fn detect() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512bw") {
            return Some(Sha1x16(Avx512));
        }
        None
    }

    /// Compresses `blocks[i]` into lane `i` for every lane whose bit is set in
    /// `active`; the other lanes keep their value (their block is read but not
    /// used).
    pub fn compress(self, lanes: &mut Lanes, active: u16, blocks: &[&[u8; 64]; LANES]) {
        #[cfg(target_arch = "x86_64")]
        {
            let Sha1x16(Avx512) = self;
            #[allow(unsafe_code)]
            // SAFETY: a `Sha1x16` exists only when `detect` found AVX-512 F and BW.
            unsafe {
                x16::compress_lanes(&mut lanes.0, active, blocks)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.0 {}
    }

    /// The outer hash of HMAC-SHA1 for every lane: compresses into `outer` (the
    /// keyed outer states) the one block made of the inner digest in `inner`,
    /// SHA-1's padding and the length of a key block plus a digest (672 bits).
    pub fn compress_hmac_outer(self, outer: &mut Lanes, inner: &Lanes) {
        #[cfg(target_arch = "x86_64")]
        {
            let Sha1x16(Avx512) = self;
            #[allow(unsafe_code)]
            // SAFETY: a `Sha1x16` exists only when `detect` found AVX-512 F and BW.
            unsafe {
                x16::compress_outer(&mut outer.0, &inner.0)
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        match self.0 {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use sha1::digest::generic_array::GenericArray;

    fn reference(state: &mut [u32; 5], block: &[u8; 64]) {
        sha1::compress(
            state,
            core::slice::from_ref(GenericArray::from_slice(block)),
        );
    }

    /// The kernel, or `None` with a note on a CPU without AVX-512 (whose
    /// callers never reach this crate's code).
    fn kernel() -> Option<Sha1x16> {
        let k = Sha1x16::detect();
        if k.is_none() {
            eprintln!("sha1-lanes: no AVX-512 F+BW on this CPU, kernel not tested");
        }
        k
    }

    #[test]
    fn lanes_round_trip() {
        let states: [[u32; 5]; LANES] =
            core::array::from_fn(|i| core::array::from_fn(|j| (i * 5 + j) as u32));
        let lanes = Lanes::from_states(&states);
        assert_eq!(lanes.words()[2][7], 7 * 5 + 2);
        assert_eq!(lanes.states(), states);
    }

    #[test]
    fn fips_180_abc() {
        // FIPS 180 "abc": one padded block.
        let Some(k) = kernel() else { return };
        let mut block = [0u8; 64];
        block[..3].copy_from_slice(b"abc");
        block[3] = 0x80;
        block[63] = 24;
        let h0 = [
            0x6745_2301,
            0xEFCD_AB89,
            0x98BA_DCFE,
            0x1032_5476,
            0xC3D2_E1F0,
        ];
        let mut lanes = Lanes::from_states(&[h0; LANES]);
        k.compress(&mut lanes, 1 << 9, &[&block; LANES]);
        let s = lanes.states();
        assert_eq!(
            s[9],
            [
                0xA999_3E36,
                0x4706_816A,
                0xBA3E_2571,
                0x7850_C26C,
                0x9CD0_D89D
            ]
        );
        assert_eq!(s[8], h0, "inactive lanes keep their state");
    }

    proptest! {
        #[test]
        fn every_lane_matches_the_sha1_crate(
            seed in any::<[u32; 5]>(),
            blocks in proptest::collection::vec(any::<[u8; 32]>(), 2 * LANES),
            active in any::<u16>(),
            rounds in 1usize..4,
        ) {
            let Some(k) = kernel() else { return Ok(()) };
            // Distinct blocks and states per lane (the 32-byte strategy pairs up).
            let blocks: Vec<[u8; 64]> = blocks.chunks(2).map(|p| {
                let mut b = [0u8; 64];
                b[..32].copy_from_slice(&p[0]);
                b[32..].copy_from_slice(&p[1]);
                b
            }).collect();
            let mut states: [[u32; 5]; LANES] = core::array::from_fn(|i| seed.map(|w| w.rotate_left(i as u32)));
            let mut lanes = Lanes::from_states(&states);
            for r in 0..rounds {
                let rows: [&[u8; 64]; LANES] = core::array::from_fn(|i| &blocks[(i + r) % LANES]);
                k.compress(&mut lanes, active, &rows);
                for (i, s) in states.iter_mut().enumerate() {
                    if active & (1 << i) != 0 {
                        reference(s, rows[i]);
                    }
                }
            }
            prop_assert_eq!(lanes.states(), states);
        }

        #[test]
        fn the_hmac_outer_block(inner in any::<[[u32; 5]; LANES]>(), outer in any::<[[u32; 5]; LANES]>()) {
            let Some(k) = kernel() else { return Ok(()) };
            let mut lanes = Lanes::from_states(&outer);
            k.compress_hmac_outer(&mut lanes, &Lanes::from_states(&inner));
            let mut want = outer;
            for (o, i) in want.iter_mut().zip(&inner) {
                let mut block = [0u8; 64];
                for (b, w) in block.chunks_exact_mut(4).zip(i) {
                    b.copy_from_slice(&w.to_be_bytes());
                }
                block[20] = 0x80;
                block[62..].copy_from_slice(&672u16.to_be_bytes());
                reference(o, &block);
            }
            prop_assert_eq!(lanes.states(), want);
        }
    }
}
