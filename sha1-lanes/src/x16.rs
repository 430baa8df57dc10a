//! The AVX-512 kernels: every function requires AVX-512 F (and BW where it says
//! so), which [`crate::Sha1x16::detect`] checks once.

use crate::LANES;
use core::arch::x86_64::*;

/// Five chaining-value words of sixteen lanes.
type State = [__m512i; 5];

/// Sixteen 64-byte blocks, one per lane, as sixteen vectors of big-endian words:
/// vector `j` holds word `j` of every lane's block.
type Words = [__m512i; 16];

/// Loads sixteen 64-byte blocks (`rows[i]` is lane `i`'s) into [`Words`]: byte
/// swap each row, then transpose the 16x16 matrix of words.
///
/// # Safety
/// The CPU must have AVX-512 F and BW .
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn load_blocks(rows: &[&[u8; 64]; LANES]) -> Words {
    // Reverses the bytes of each 32-bit word.
    let swap = _mm512_set_epi8(
        60, 61, 62, 63, 56, 57, 58, 59, 52, 53, 54, 55, 48, 49, 50, 51, 44, 45, 46, 47, 40, 41, 42,
        43, 36, 37, 38, 39, 32, 33, 34, 35, 28, 29, 30, 31, 24, 25, 26, 27, 20, 21, 22, 23, 16, 17,
        18, 19, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    );
    let mut r = [_mm512_setzero_si512(); LANES];
    for (v, row) in r.iter_mut().zip(rows) {
        // SAFETY: each row is 64 readable bytes; the load is unaligned.
        *v = _mm512_shuffle_epi8(unsafe { _mm512_loadu_si512(row.as_ptr().cast()) }, swap);
    }
    transpose(&r)
}

/// Transposes a 16x16 matrix of 32-bit words held in sixteen vectors.
#[target_feature(enable = "avx512f")]
fn transpose(r: &[__m512i; 16]) -> [__m512i; 16] {
    // Within each 128-bit quarter: 2x2 blocks of words, then of word pairs, leave
    // every quarter holding a 4x4 sub-matrix transposed.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        let (a, b, c, d) = (r[4 * i], r[4 * i + 1], r[4 * i + 2], r[4 * i + 3]);
        let ab_lo = _mm512_unpacklo_epi32(a, b);
        let ab_hi = _mm512_unpackhi_epi32(a, b);
        let cd_lo = _mm512_unpacklo_epi32(c, d);
        let cd_hi = _mm512_unpackhi_epi32(c, d);
        t[4 * i] = _mm512_unpacklo_epi64(ab_lo, cd_lo);
        t[4 * i + 1] = _mm512_unpackhi_epi64(ab_lo, cd_lo);
        t[4 * i + 2] = _mm512_unpacklo_epi64(ab_hi, cd_hi);
        t[4 * i + 3] = _mm512_unpackhi_epi64(ab_hi, cd_hi);
    }
    // t[4i + k] quarter q holds words 4q + k of rows 4i..4i+4. Gather the
    // quarters: first pairs of row groups, then the four groups.
    let mut u = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        // Quarters 0 and 2 of groups 0 and 1 -> words k and 8 + k of rows 0..8.
        u[k] = _mm512_shuffle_i32x4::<0x88>(t[k], t[4 + k]);
        u[4 + k] = _mm512_shuffle_i32x4::<0xDD>(t[k], t[4 + k]);
        u[8 + k] = _mm512_shuffle_i32x4::<0x88>(t[8 + k], t[12 + k]);
        u[12 + k] = _mm512_shuffle_i32x4::<0xDD>(t[8 + k], t[12 + k]);
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for k in 0..4 {
        out[k] = _mm512_shuffle_i32x4::<0x88>(u[k], u[8 + k]);
        out[8 + k] = _mm512_shuffle_i32x4::<0xDD>(u[k], u[8 + k]);
        out[4 + k] = _mm512_shuffle_i32x4::<0x88>(u[4 + k], u[12 + k]);
        out[12 + k] = _mm512_shuffle_i32x4::<0xDD>(u[4 + k], u[12 + k]);
    }
    out
}

/// One SHA-1 round on every lane: `e += rotl5(a) + f(b, c, d) + k + w` and
/// `b = rotl30(b)`; the caller renames the registers for the next round.
macro_rules! round {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $k:expr, $w:expr) => {
        $e = _mm512_add_epi32(
            _mm512_add_epi32($e, _mm512_rol_epi32::<5>($a)),
            _mm512_add_epi32(
                _mm512_ternarylogic_epi32::<$f>($b, $c, $d),
                _mm512_add_epi32($k, $w),
            ),
        );
        $b = _mm512_rol_epi32::<30>($b);
    };
}

/// Five rounds with the register names back where they started.
macro_rules! five {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $k:expr, $w:ident, $t:expr) => {
        round!($a, $b, $c, $d, $e, $f, $k, next($w, $t));
        round!($e, $a, $b, $c, $d, $f, $k, next($w, $t + 1));
        round!($d, $e, $a, $b, $c, $f, $k, next($w, $t + 2));
        round!($c, $d, $e, $a, $b, $f, $k, next($w, $t + 3));
        round!($b, $c, $d, $e, $a, $f, $k, next($w, $t + 4));
    };
}

/// Twenty rounds from round `t` on, with one boolean function and constant.
macro_rules! twenty {
    ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $k:ident, $w:ident, $t:expr) => {
        five!($a, $b, $c, $d, $e, $f, $k, $w, $t);
        five!($a, $b, $c, $d, $e, $f, $k, $w, $t + 5);
        five!($a, $b, $c, $d, $e, $f, $k, $w, $t + 10);
        five!($a, $b, $c, $d, $e, $f, $k, $w, $t + 15);
    };
}

/// Word `t` of the message schedule, computed in place in the 16-word window.
#[inline]
#[target_feature(enable = "avx512f")]
fn next(w: &mut Words, t: usize) -> __m512i {
    if t >= 16 {
        let x =
            _mm512_ternarylogic_epi32::<0x96>(w[(t - 3) & 15], w[(t - 8) & 15], w[(t - 14) & 15]);
        w[t & 15] = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[t & 15]));
    }
    w[t & 15]
}

/// Compresses one block per lane into `state`, for the lanes set in `active`
/// (the others keep their state).
///
/// # Safety
/// The CPU must have AVX-512 F .
#[target_feature(enable = "avx512f")]
unsafe fn compress(state: &mut State, active: __mmask16, mut w: Words) {
    // vpternlogd truth tables for (b, c, d): Ch = b ? c : d, Parity = b ^ c ^ d,
    // Maj = majority.
    const CH: i32 = 0xCA;
    const PARITY: i32 = 0x96;
    const MAJ: i32 = 0xE8;
    let [mut a, mut b, mut c, mut d, mut e] = *state;
    let w = &mut w;
    let k = _mm512_set1_epi32(0x5A82_7999);
    twenty!(a, b, c, d, e, CH, k, w, 0);
    let k = _mm512_set1_epi32(0x6ED9_EBA1);
    twenty!(a, b, c, d, e, PARITY, k, w, 20);
    let k = _mm512_set1_epi32(0x8F1B_BCDCu32 as i32);
    twenty!(a, b, c, d, e, MAJ, k, w, 40);
    let k = _mm512_set1_epi32(0xCA62_C1D6u32 as i32);
    twenty!(a, b, c, d, e, PARITY, k, w, 60);
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = _mm512_mask_add_epi32(*s, active, *s, v);
    }
}

/// Loads five word vectors.
#[inline]
#[target_feature(enable = "avx512f")]
fn load(words: &[[u32; LANES]; 5]) -> State {
    // SAFETY: each row is 16 u32, 64 readable bytes; the load is unaligned.
    words.map(|w| unsafe { _mm512_loadu_si512(w.as_ptr().cast()) })
}

/// Stores five word vectors.
#[inline]
#[target_feature(enable = "avx512f")]
fn store(state: &State, words: &mut [[u32; LANES]; 5]) {
    for (w, v) in words.iter_mut().zip(state) {
        // SAFETY: each row is 16 u32, 64 writable bytes; the store is unaligned.
        unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), *v) };
    }
}

/// Compresses `blocks[i]` into lane `i` of `words` for the lanes set in `active`.
///
/// # Safety
/// The CPU must have AVX-512 F and BW.
#[target_feature(enable = "avx512f,avx512bw")]
pub(crate) unsafe fn compress_lanes(
    words: &mut [[u32; LANES]; 5],
    active: u16,
    blocks: &[&[u8; 64]; LANES],
) {
    let mut state = load(words);
    // SAFETY: AVX-512 F and BW, as this function requires.
    let w = unsafe { load_blocks(blocks) };
    // SAFETY: as above.
    unsafe { compress(&mut state, active, w) };
    store(&state, words);
}

/// Compresses into `outer` the one block of HMAC-SHA1's outer hash for the
/// inner digests in `inner`: the 20-byte digest, the 0x80 pad byte, and the bit
/// length of a key block plus the digest.
///
/// # Safety
/// The CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn compress_outer(outer: &mut [[u32; LANES]; 5], inner: &[[u32; LANES]; 5]) {
    let mut w = [_mm512_setzero_si512(); 16];
    w[..5].copy_from_slice(&load(inner));
    w[5] = _mm512_set1_epi32(0x8000_0000u32 as i32);
    w[15] = _mm512_set1_epi32((64 + 20) * 8);
    let mut state = load(outer);
    // SAFETY: AVX-512 F, as this function requires.
    unsafe { compress(&mut state, u16::MAX, w) };
    store(&state, outer);
}
