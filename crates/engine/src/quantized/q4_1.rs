//! Q4_1 weights against Q8_1 activations: the dot product SmolLM2's GGUF needs. candle 0.11
//! has only scalar code for it on x86, so this is llama.cpp's AVX2 kernel
//! (`ggml_vec_dot_q4_1_q8_1`), with its scalar formula beside it as the twin.
//!
//! Per block of 32: `d_w·d_x·Σ q_w·q_x + m_w·s_x`, where a weight is `d_w·q_w + m_w`
//! (q_w in 0..16) and `s_x = d_x·Σ q_x`.

use half::f16;

/// Bytes of one Q4_1 block: f16 scale, f16 minimum, 16 bytes of nibbles (value j in the low
/// nibble of byte j, value j + 16 in its high nibble).
pub const BLOCK_BYTES: usize = 20;
const Q8_1_BYTES: usize = super::activations::Q8_1_BYTES;

fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The plain twin: the same formula, block by block, in scalar code.
#[cfg_attr(simd_kernels, allow(dead_code))]
pub fn dot_reference(w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    for (w, x) in w.chunks_exact(BLOCK_BYTES).zip(x.chunks_exact(Q8_1_BYTES)) {
        let mut sumi = 0i32;
        for j in 0..16 {
            let (lo, hi) = ((w[4 + j] & 0x0f) as i32, (w[4 + j] >> 4) as i32);
            sumi += lo * x[4 + j] as i8 as i32 + hi * x[4 + j + 16] as i8 as i32;
        }
        sum += half_at(w, 0) * half_at(x, 0) * sumi as f32 + half_at(w, 2) * half_at(x, 2);
    }
    sum
}

/// The dot product of one row of Q4_1 blocks with as many Q8_1 blocks.
pub fn dot(w: &[u8], x: &[u8]) -> f32 {
    debug_assert_eq!(w.len() / BLOCK_BYTES, x.len() / Q8_1_BYTES);
    #[cfg(simd_kernels)]
    // SAFETY: the build targets AVX2, FMA and F16C (cfg simd_kernels, held to the CPU at
    // start-up); the kernel reads w.len() / 20 blocks of each, which both slices hold.
    unsafe {
        simd::dot(w, x)
    }
    #[cfg(not(simd_kernels))]
    dot_reference(w, x)
}

#[cfg(simd_kernels)]
mod simd {
    use super::{BLOCK_BYTES, Q8_1_BYTES};
    use std::arch::x86_64::*;

    /// One block: its `d_w·d_x·Σ q_w·q_x` added to `acc`, and `[d_w·d_x, m_w·s_x, ..]`.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; `w` and `x` point at whole blocks.
    #[inline(always)]
    unsafe fn block(w: *const u8, x: *const u8, acc: __m256) -> (__m256, __m128) {
        // The four f16 scales at once: [d_w, m_w, d_x, s_x] → [d_w·d_x, m_w·s_x, ..].
        let halves = _mm_set_epi32(
            0,
            0,
            (x as *const i32).read_unaligned(),
            (w as *const i32).read_unaligned(),
        );
        let s = _mm_cvtph_ps(halves);
        let prods = _mm_mul_ps(s, _mm_shuffle_ps(s, s, 0b01_00_11_10));
        let nibbles = _mm_loadu_si128(w.add(4) as *const __m128i);
        // Low nibbles are values 0..16, high nibbles 16..32: the order of x's bytes.
        let qw = _mm256_and_si256(
            _mm256_set_m128i(_mm_srli_epi16(nibbles, 4), nibbles),
            _mm256_set1_epi8(0x0f),
        );
        let qx = _mm256_loadu_si256(x.add(4) as *const __m256i);
        // u8 × i8 pairs summed to i16 (at most 2·15·128, no saturation), then to i32.
        let pairs = _mm256_maddubs_epi16(qw, qx);
        let sums = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
        (
            _mm256_fmadd_ps(_mm256_broadcastss_ps(prods), sums, acc),
            prods,
        )
    }

    /// # Safety
    /// AVX2, FMA and F16C must be present; `x` holds at least as many Q8_1 blocks as `w` has
    /// Q4_1.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot(w: &[u8], x: &[u8]) -> f32 {
        let n = w.len() / BLOCK_BYTES;
        assert!(x.len() >= n * Q8_1_BYTES, "as many activation blocks");
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        // Two chains of accumulators, so consecutive blocks do not wait on each other.
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut mins = 0f32;
        let mut i = 0;
        while i + 2 <= n {
            let (a0, p0) = block(wp.add(i * BLOCK_BYTES), xp.add(i * Q8_1_BYTES), acc0);
            let (a1, p1) = block(
                wp.add((i + 1) * BLOCK_BYTES),
                xp.add((i + 1) * Q8_1_BYTES),
                acc1,
            );
            (acc0, acc1) = (a0, a1);
            // The minimum terms in the twin's order: block by block.
            mins += _mm_cvtss_f32(_mm_movehdup_ps(p0));
            mins += _mm_cvtss_f32(_mm_movehdup_ps(p1));
            i += 2;
        }
        if i < n {
            let (a0, p0) = block(wp.add(i * BLOCK_BYTES), xp.add(i * Q8_1_BYTES), acc0);
            acc0 = a0;
            mins += _mm_cvtss_f32(_mm_movehdup_ps(p0));
        }
        let acc = _mm256_add_ps(acc0, acc1);
        let half = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let quad = _mm_add_ps(half, _mm_movehl_ps(half, half));
        let one = _mm_add_ss(quad, _mm_movehdup_ps(quad));
        _mm_cvtss_f32(one) + mins
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::activations::{as_bytes, q8_1};
    use candle_core::quantized::k_quants::{BlockQ4_1, GgmlType};

    fn q4_1_bytes(w: &[f32]) -> Vec<u8> {
        let mut blocks = vec![BlockQ4_1::zeros(); w.len() / 32];
        BlockQ4_1::from_float(w, &mut blocks);
        // SAFETY: repr(C) blocks of 20 bytes with no padding, read as bytes.
        unsafe { std::slice::from_raw_parts(blocks.as_ptr() as *const u8, blocks.len() * 20) }
            .to_vec()
    }

    #[test]
    fn the_kernel_matches_its_scalar_twin_and_candles_formula() {
        for n in [32usize, 64, 576, 1536] {
            let w: Vec<f32> = (0..n)
                .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 40.0)
                .collect();
            let x: Vec<f32> = (0..n)
                .map(|i| ((i * 104729 % 97) as f32 - 48.0) / 9.0)
                .collect();
            let (wq, xq) = (q4_1_bytes(&w), q8_1(&x));
            let (fast, slow) = (dot(&wq, as_bytes(&xq)), dot_reference(&wq, as_bytes(&xq)));
            // Only the order of f32 sums differs: a few ulps of the sum of magnitudes.
            let scale: f32 = w.iter().zip(&x).map(|(a, b)| (a * b).abs()).sum();
            assert!(
                (fast - slow).abs() <= scale * 1e-5,
                "n {n}: {fast} vs {slow}"
            );
            // And the whole chain stays near the exact product of the unquantized values.
            let exact: f32 = w.iter().zip(&x).map(|(a, b)| a * b).sum();
            assert!(
                (fast - exact).abs() <= scale * 0.1,
                "n {n}: {fast} vs {exact}"
            );
        }
    }
}
