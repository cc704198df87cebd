//! Activations quantized to Q8 before each quantized dot product, as llama.cpp does: Q8_0 for
//! Q4_0, Q5_0 and Q8_0 weights, Q8_1 (with each block's scaled sum) for Q4_1 and Q5_1, Q8_K
//! (256 values, an f32 scale and sixteen sums) for the k-quants. Q4_0 and Q8_0 in tiles take
//! Q8_0 blocks that carry their integer sum (Q8_0S), which lets VNNI multiply unsigned weights,
//! and Q4_1 in tiles Q8_1F. The tiles' formats keep their fields in 32 bits (the f16 values
//! widened, so the same numbers): a kernel then reads each block's scale straight into a
//! broadcast, where an f16 costs a conversion and a shuffle per activation row and block.
//!
//! Q8_0 and Q8_1 follow llama.cpp's AVX2 quantizers rather than its scalar reference (and
//! candle's): the inverse scale is 127 / max|x| and values round half to even. Q8_K is
//! candle's (see [`q8k_into`]). That keeps a row's
//! quantized activations equal to llama.cpp's on this machine, so the two differ only in
//! the order of their f32 sums.

use half::f16;

/// Values per block.
pub const QK8: usize = 32;
/// Bytes of one Q8_0 block: f16 scale, 32 × i8.
pub const Q8_0_BYTES: usize = 34;
/// Bytes of one Q8_1 block: f16 scale, f16 scale × Σ q, 32 × i8.
pub const Q8_1_BYTES: usize = 36;
/// Bytes of one Q8_0 block with its sum, for the tiled Q4_0 and Q8_0 kernels: the f16 scale
/// as f32, Σ q as i32, 32 × i8.
pub const Q8_0S_BYTES: usize = 40;
/// Bytes of one Q8_1 block for the tiled Q4_1 kernels: its two f16 fields as f32, 32 × i8.
pub const Q8_1F_BYTES: usize = 40;
/// Where a wide block's values start.
pub const WIDE_QS: usize = 8;

/// One block of 32 values quantized into `q` (32 bytes): its scale and the sum of its values.
fn block(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    #[cfg(simd_kernels)]
    // SAFETY: the build targets AVX2 (held to the CPU at start-up); `x` holds 32 values and
    // `q` 32 bytes (checked there).
    unsafe {
        simd::block(x, q)
    }
    #[cfg(not(simd_kernels))]
    block_plain(x, q)
}

/// [`block`]'s plain twin.
fn block_plain(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (q, &v) in q.iter_mut().zip(x) {
        // |v·id| ≤ 127 up to rounding of id; the cast saturates in any case.
        let v = (v * id).round_ties_even() as i8;
        *q = v as u8;
        sum += v as i32;
    }
    (d, sum)
}

/// `x` (a multiple of 32 values) as Q8_0 blocks into `out`.
pub fn q8_0_into(x: &[f32], out: &mut [u8]) {
    for (b, x) in out.chunks_exact_mut(Q8_0_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, _) = block(x, &mut b[2..]);
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    }
}

/// `x` (a multiple of 32 values) as Q8_0 blocks with their sums into `out`.
pub fn q8_0s_into(x: &[f32], out: &mut [u8]) {
    for (b, x) in out.chunks_exact_mut(Q8_0S_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, sum) = block(x, &mut b[WIDE_QS..]);
        b[..4].copy_from_slice(&f16::from_f32(d).to_f32().to_le_bytes());
        b[4..8].copy_from_slice(&sum.to_le_bytes());
    }
}

/// `x` (a multiple of 32 values) as Q8_1 blocks into `out`.
pub fn q8_1_into(x: &[f32], out: &mut [u8]) {
    for (b, x) in out.chunks_exact_mut(Q8_1_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, sum) = block(x, &mut b[4..]);
        b[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
        b[2..4].copy_from_slice(&f16::from_f32(d * sum as f32).to_le_bytes());
    }
}

/// `x` (a multiple of 32 values) as Q8_1F blocks into `out`: Q8_1's fields, widened.
pub fn q8_1f_into(x: &[f32], out: &mut [u8]) {
    for (b, x) in out.chunks_exact_mut(Q8_1F_BYTES).zip(x.chunks_exact(QK8)) {
        let (d, sum) = block(x, &mut b[WIDE_QS..]);
        b[..4].copy_from_slice(&f16::from_f32(d).to_f32().to_le_bytes());
        b[4..8].copy_from_slice(&f16::from_f32(d * sum as f32).to_f32().to_le_bytes());
    }
}

/// Values per Q8_K block.
pub const QK_K: usize = 256;
/// Bytes of one Q8_K block (candle's and llama.cpp's `block_q8_K`): f32 scale, 256 × i8, the
/// sums of each 16 of them as i16.
pub const Q8K_BYTES: usize = 4 + QK_K + QK_K / 16 * 2;

/// `x` (a multiple of 256 values) as Q8_K blocks into `out`.
pub fn q8k_into(x: &[f32], out: &mut [u8]) {
    for (b, x) in out.chunks_exact_mut(Q8K_BYTES).zip(x.chunks_exact(QK_K)) {
        #[cfg(simd_kernels)]
        // SAFETY: the build targets AVX2 (held to the CPU at start-up); `x` holds 256 values
        // and `b` one block's bytes (checked there).
        unsafe {
            simd::q8k_block(x, b)
        }
        #[cfg(not(simd_kernels))]
        q8k_block_plain(x, b)
    }
}

/// One Q8_K block by candle's `BlockQ8K::from_float` (the twin of the fast block, and its
/// fallback): the value of largest magnitude (the first, on a tie) maps to −127, products
/// round half away from zero. That rounding, not llama.cpp's half to even, is the one the
/// recorded llama.cpp logits agree with (a tie flips the Q2_K fixture's step by 0.17).
fn q8k_block_plain(x: &[f32], out: &mut [u8]) {
    use candle_core::quantized::{k_quants::BlockQ8K, GgmlType};
    const _: () = assert!(std::mem::size_of::<BlockQ8K>() == Q8K_BYTES);
    let mut block = [BlockQ8K::zeros()];
    BlockQ8K::from_float(&x[..QK_K], &mut block);
    out[..Q8K_BYTES].copy_from_slice(super::bytes_of(&block));
}

/// `x` (a multiple of 32 values) as Q8_0 blocks, in words so that the blocks' f16 fields are
/// aligned for candle's block types.
#[cfg(test)]
pub fn q8_0(x: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; x.len() / QK8 * Q8_0_BYTES / 2];
    q8_0_into(x, as_bytes_mut(&mut out));
    out
}

/// `x` as Q8_1 blocks (see [`q8_0`]).
#[cfg(test)]
pub fn q8_1(x: &[f32]) -> Vec<u16> {
    let mut out = vec![0u16; x.len() / QK8 * Q8_1_BYTES / 2];
    q8_1_into(x, as_bytes_mut(&mut out));
    out
}

#[cfg(simd_kernels)]
mod simd {
    use std::arch::x86_64::*;

    /// [`super::block_plain`] eight values at a time, as llama.cpp's AVX2 quantizer: the same
    /// largest magnitude (a max is exact in any order), the same products rounded half to
    /// even, and the bytes packed back into order. Blocks where that could differ (a NaN, or
    /// a scale so small that its inverse overflows) go to the plain twin.
    #[target_feature(enable = "avx2")]
    pub unsafe fn block(x: &[f32], q: &mut [u8]) -> (f32, i32) {
        assert!(x.len() >= 32 && q.len() >= 32);
        let p = x.as_ptr();
        let v = [0, 8, 16, 24].map(|i| _mm256_loadu_ps(p.add(i)));
        let sign = _mm256_set1_ps(-0.0);
        let abs = v.map(|v| _mm256_andnot_ps(sign, v));
        let nan = v.iter().fold(0, |m, &v| {
            m | _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v))
        });
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        if nan != 0 || !id.is_finite() {
            return super::block_plain(x, q);
        }
        let vid = _mm256_set1_ps(id);
        let i = v.map(|v| {
            _mm256_cvtps_epi32(_mm256_round_ps::<
                { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
            >(_mm256_mul_ps(v, vid)))
        });
        // Within ±127 (|v·id| ≤ 127 up to id's rounding), so the sum is the bytes'.
        let s = _mm256_add_epi32(_mm256_add_epi32(i[0], i[1]), _mm256_add_epi32(i[2], i[3]));
        let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let sum = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
        let bytes = _mm256_packs_epi16(
            _mm256_packs_epi32(i[0], i[1]),
            _mm256_packs_epi32(i[2], i[3]),
        );
        // The packs work within 128-bit halves: put the 4-byte groups back in order.
        let bytes = _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256(q.as_mut_ptr() as *mut __m256i, bytes);
        (d, sum)
    }

    /// [`super::q8k_block_plain`] eight values at a time: the first value of largest
    /// magnitude found by a max and then a search, products rounded half away from zero (a
    /// truncation, plus a signed one where the part cut off is at least a half: both exact),
    /// each 16 values packed and summed together. A NaN, or a scale whose inverse overflows,
    /// goes to the plain twin.
    #[target_feature(enable = "avx2")]
    pub unsafe fn q8k_block(x: &[f32], out: &mut [u8]) {
        use super::{Q8K_BYTES, QK_K};
        assert!(x.len() >= QK_K && out.len() >= Q8K_BYTES);
        let p = x.as_ptr();
        let sign = _mm256_set1_ps(-0.0);
        let mut m = _mm256_setzero_ps();
        let mut nan = 0;
        for i in (0..QK_K).step_by(8) {
            let v = _mm256_loadu_ps(p.add(i));
            nan |= _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_UNORD_Q>(v, v));
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v));
        }
        let h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        let amax = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
        if nan != 0 || amax == 0.0 {
            return super::q8k_block_plain(x, out);
        }
        let wanted = _mm256_set1_ps(amax);
        let max = (0..QK_K)
            .step_by(8)
            .find_map(|i| {
                let v = _mm256_loadu_ps(p.add(i));
                let hit = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_EQ_OQ>(
                    _mm256_andnot_ps(sign, v),
                    wanted,
                ));
                (hit != 0).then(|| x[i + hit.trailing_zeros() as usize])
            })
            .expect("the largest magnitude is one of the values");
        let iscale = -127.0 / max;
        if !iscale.is_finite() {
            return super::q8k_block_plain(x, out);
        }
        let vs = _mm256_set1_ps(iscale);
        let (half, one) = (_mm256_set1_ps(0.5), _mm256_set1_ps(1.0));
        let ones = _mm256_set1_epi16(1);
        let q = out.as_mut_ptr().add(4);
        let sums = out.as_mut_ptr().add(4 + QK_K);
        for c in 0..QK_K / 32 {
            let i = [0, 8, 16, 24].map(|j| {
                let v = _mm256_mul_ps(_mm256_loadu_ps(p.add(32 * c + j)), vs);
                let t = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(v);
                let up =
                    _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(sign, _mm256_sub_ps(v, t)), half);
                let step = _mm256_and_ps(up, _mm256_or_ps(_mm256_and_ps(v, sign), one));
                _mm256_cvtps_epi32(_mm256_add_ps(t, step))
            });
            // Each pack holds one 16-value group (out of order within it, which a sum
            // ignores); the values are within ±127, so the sums are the bytes'.
            let words = [
                _mm256_packs_epi32(i[0], i[1]),
                _mm256_packs_epi32(i[2], i[3]),
            ];
            for (g, w) in words.iter().enumerate() {
                let s = _mm256_madd_epi16(*w, ones);
                let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
                let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
                let s = _mm_cvtsi128_si32(_mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)));
                std::ptr::copy_nonoverlapping(
                    (s as i16).to_le_bytes().as_ptr(),
                    sums.add(4 * c + 2 * g),
                    2,
                );
            }
            let bytes = _mm256_packs_epi16(words[0], words[1]);
            let bytes =
                _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(q.add(32 * c) as *mut __m256i, bytes);
        }
        out[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}

#[cfg(test)]
pub fn as_bytes_mut(w: &mut [u16]) -> &mut [u8] {
    // SAFETY: u16 has no padding and any byte pattern is a valid u16; the length is in bytes.
    unsafe { std::slice::from_raw_parts_mut(w.as_mut_ptr() as *mut u8, w.len() * 2) }
}

#[cfg(test)]
pub fn as_bytes(w: &[u16]) -> &[u8] {
    // SAFETY: as above, read-only.
    unsafe { std::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 2) }
}

/// The values Q8 blocks stand for (for the plain twin): `d·q` in f32.
pub fn dequantize_q8(bytes: &[u8], block_bytes: usize) -> Vec<f32> {
    let skip = block_bytes - QK8;
    bytes
        .chunks_exact(block_bytes)
        .flat_map(|b| {
            let d = f16::from_le_bytes([b[0], b[1]]).to_f32();
            b[skip..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

/// The values wide blocks (Q8_0S, Q8_1F) stand for: `d·q` in f32.
pub fn dequantize_wide(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(Q8_0S_BYTES)
        .flat_map(|b| {
            let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            b[WIDE_QS..].iter().map(move |&q| d * (q as i8) as f32)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        for (words, size) in [(q8_0(&x), Q8_0_BYTES), (q8_1(&x), Q8_1_BYTES)] {
            let back = dequantize_q8(as_bytes(&words), size);
            for (b, xs) in back.chunks(QK8).zip(x.chunks(QK8)) {
                let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
                // Half a step of the f16-rounded scale, plus that scale's own rounding.
                let step = amax / 127.0;
                for (b, x) in b.iter().zip(xs) {
                    assert!((b - x).abs() <= 0.5 * step + amax * 1e-3, "{b} vs {x}");
                }
            }
        }
    }

    /// The fast block is its plain twin bit for bit: signs, ties, zero blocks, huge and
    /// tiny scales, NaN.
    #[test]
    fn a_block_is_its_plain_twin() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(4);
        for case in 0..2000 {
            let scale = [1.0f32, 1e-3, 1e30, 1e-40, 0.0][case % 5];
            let mut x: Vec<f32> = (0..32)
                .map(|i| match (case / 5 + i) % 9 {
                    0 => 0.5 * scale,
                    1 => -0.0,
                    2 => (rng.random::<f32>() - 0.5) * scale,
                    _ => ((rng.random::<f32>() * 254.0).round() - 127.0) / 2.0 * scale,
                })
                .collect();
            if case % 97 == 0 {
                x[case % 32] = f32::NAN;
            }
            let (mut fast, mut plain) = ([0u8; 32], [0u8; 32]);
            let a = block(&x, &mut fast);
            let b = block_plain(&x, &mut plain);
            assert_eq!(
                (a.0.to_bits(), a.1, fast),
                (b.0.to_bits(), b.1, plain),
                "case {case}"
            );
        }
    }

    /// The fast Q8_K block is candle's bit for bit: ties, a tie for the largest magnitude
    /// between signs, zero blocks, huge and tiny scales, NaN.
    #[test]
    fn a_q8k_block_is_its_plain_twin() {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(5);
        for case in 0..600 {
            let scale = [1.0f32, 1e-3, 1e30, 1e-40, 0.0][case % 5];
            let mut x: Vec<f32> = (0..QK_K)
                .map(|i| match (case / 5 + i) % 7 {
                    0 => -0.0,
                    1 => (rng.random::<f32>() - 0.5) * scale,
                    // Halves of a unit step when the largest magnitude is 127.
                    _ => ((rng.random::<f32>() * 252.0).round() - 126.0) / 2.0 * scale,
                })
                .collect();
            match case % 4 {
                0 => x[case % QK_K] = -127.0 * scale,
                1 => {
                    x[case % 200] = 127.0 * scale;
                    x[case % 200 + 7] = -127.0 * scale;
                }
                _ => {}
            }
            if case % 61 == 0 {
                x[case % QK_K] = f32::NAN;
            }
            let (mut fast, mut plain) = ([0u8; Q8K_BYTES], [0u8; Q8K_BYTES]);
            q8k_into(&x, &mut fast);
            q8k_block_plain(&x, &mut plain);
            assert_eq!(fast, plain, "case {case}");
        }
        // The layout candle's k-quant dot products read: the values come back within half
        // a step.
        use candle_core::quantized::{k_quants::BlockQ8K, GgmlType};
        assert_eq!(std::mem::size_of::<BlockQ8K>(), Q8K_BYTES);
        let x: Vec<f32> = (0..2 * QK_K).map(|i| (i as f32 * 0.37).sin()).collect();
        let mut blocks = vec![BlockQ8K::zeros(); 2];
        // SAFETY: the blocks are plain data of exactly these bytes (sizes asserted above).
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(blocks.as_mut_ptr() as *mut u8, 2 * Q8K_BYTES)
        };
        q8k_into(&x, bytes);
        let mut back = vec![0f32; 2 * QK_K];
        BlockQ8K::to_float(&blocks, &mut back);
        for (b, v) in back.iter().zip(&x) {
            assert!((b - v).abs() <= 0.5 / 127.0 + 1e-6, "{b} vs {v}");
        }
    }

    /// The tiles' wide blocks hold the narrow ones' fields as they are, widened, and the
    /// same quants.
    #[test]
    fn wide_blocks_are_the_narrow_ones_widened() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .chain([0.0; 32])
            .collect();
        let (narrow0, narrow1) = (q8_0(&x), q8_1(&x));
        let mut wide0 = vec![0u8; x.len() / QK8 * Q8_0S_BYTES];
        let mut wide1 = vec![0u8; x.len() / QK8 * Q8_1F_BYTES];
        q8_0s_into(&x, &mut wide0);
        q8_1f_into(&x, &mut wide1);
        let f32_at = |b: &[u8], at: usize| f32::from_le_bytes(b[at..at + 4].try_into().unwrap());
        let f16_at = |b: &[u8], at: usize| f16::from_le_bytes([b[at], b[at + 1]]).to_f32();
        let blocks = as_bytes(&narrow0)
            .chunks_exact(Q8_0_BYTES)
            .zip(as_bytes(&narrow1).chunks_exact(Q8_1_BYTES))
            .zip(
                wide0
                    .chunks_exact(Q8_0S_BYTES)
                    .zip(wide1.chunks_exact(Q8_1F_BYTES)),
            );
        for ((n0, n1), (w0, w1)) in blocks {
            assert_eq!(&n0[2..], &w0[WIDE_QS..]);
            assert_eq!(&n1[4..], &w1[WIDE_QS..]);
            assert_eq!(f32_at(w0, 0).to_bits(), f16_at(n0, 0).to_bits());
            assert_eq!(f32_at(w1, 0).to_bits(), f16_at(n1, 0).to_bits());
            assert_eq!(f32_at(w1, 4).to_bits(), f16_at(n1, 2).to_bits());
            let sum: i32 = n0[2..].iter().map(|&q| q as i8 as i32).sum();
            assert_eq!(i32::from_le_bytes(w0[4..8].try_into().unwrap()), sum);
        }
        assert_eq!(
            dequantize_wide(&wide0),
            dequantize_q8(as_bytes(&narrow0), Q8_0_BYTES)
        );
    }

    #[test]
    fn q8_1_carries_the_scaled_sum_and_zero_blocks_stay_zero() {
        let mut x = vec![0f32; 64];
        x[32..]
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = i as f32);
        let words = q8_1(&x);
        let b = as_bytes(&words);
        assert!(b[..Q8_1_BYTES].iter().all(|&v| v == 0), "an all-zero block");
        let blk = &b[Q8_1_BYTES..];
        let d = f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let s = f16::from_le_bytes([blk[2], blk[3]]).to_f32();
        let sum: i32 = blk[4..].iter().map(|&q| q as i8 as i32).sum();
        assert_eq!(s, f16::from_f32(d * sum as f32).to_f32());
        assert_eq!(
            blk[4 + 31] as i8,
            127,
            "the largest value takes the full range"
        );
    }
}
