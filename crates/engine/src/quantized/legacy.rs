//! Dot products of the 32-value block types against Q8 activations, several activation rows
//! per weight row: Q4_0 and Q8_0 against Q8_0, Q4_1 against Q8_1 (candle 0.11 has only scalar
//! code for Q4_1 on x86, the type of SmolLM2's GGUF). These are llama.cpp's AVX2 kernels
//! (`ggml_vec_dot_q4_0_q8_0`, `…_q4_1_q8_1`, `…_q8_0_q8_0`) with each weight block unpacked
//! once for every row of a batch, and their scalar formula beside them as the twin.
//!
//! Per block of 32: `d_w·d_x·Σ q_w·q_x`, plus `m_w·s_x` for Q4_1, whose weights are
//! `d_w·q_w + m_w` (q_w in 0..16; `s_x = d_x·Σ q_x` is stored with the activations). Q4_0's
//! weights are `d_w·(q_w − 8)`, Q8_0's `d_w·q_w`. A row's result never depends on how many
//! rows share the call: every row adds its blocks in the same order.

use super::activations::{Q8_0_BYTES, Q8_1_BYTES};
use half::f16;

/// The block types with kernels here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4_0,
    Q4_1,
    Q8_0,
}

impl Kind {
    /// Bytes of one weight block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4_0 => 18,
            Kind::Q4_1 => 20,
            Kind::Q8_0 => 34,
        }
    }

    /// Bytes of one activation block (Q8_1 for Q4_1, else Q8_0).
    const fn act_bytes(self) -> usize {
        match self {
            Kind::Q4_1 => Q8_1_BYTES,
            _ => Q8_0_BYTES,
        }
    }
}

#[cfg_attr(simd_kernels, allow(dead_code))]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// The plain twin: one row's dot product, block by block, in scalar code.
#[cfg_attr(simd_kernels, allow(dead_code))]
pub fn dot_reference(kind: Kind, w: &[u8], x: &[u8]) -> f32 {
    let mut sum = 0f32;
    let blocks = w
        .chunks_exact(kind.block_bytes())
        .zip(x.chunks_exact(kind.act_bytes()));
    for (w, x) in blocks {
        let qx = |j: usize| x[kind.act_bytes() - 32 + j] as i8 as i32;
        let qw = |j: usize| match kind {
            Kind::Q4_0 | Kind::Q4_1 => {
                let byte = w[w.len() - 16 + j % 16];
                let q = if j < 16 { byte & 0x0f } else { byte >> 4 } as i32;
                if kind == Kind::Q4_0 {
                    q - 8
                } else {
                    q
                }
            }
            Kind::Q8_0 => w[2 + j] as i8 as i32,
        };
        let sumi: i32 = (0..32).map(|j| qw(j) * qx(j)).sum();
        sum += half_at(w, 0) * half_at(x, 0) * sumi as f32;
        if kind == Kind::Q4_1 {
            sum += half_at(w, 2) * half_at(x, 2);
        }
    }
    sum
}

/// `out[r]` = the dot product of one row of weight blocks `w` with activation row `xs[r]`.
pub fn dot_rows(kind: Kind, w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
    debug_assert_eq!(xs.len(), out.len());
    debug_assert!(xs
        .iter()
        .all(|x| x.len() / kind.act_bytes() == w.len() / kind.block_bytes()));
    #[cfg(simd_kernels)]
    // SAFETY: the build targets AVX2, FMA and F16C (cfg simd_kernels, held to the CPU at
    // start-up); every row holds as many activation blocks as w has weight blocks.
    unsafe {
        for (xs, out) in xs.chunks(4).zip(out.chunks_mut(4)) {
            match kind {
                Kind::Q4_0 => simd::rows_of::<{ simd::Q4_0 }>(w, xs, out),
                Kind::Q4_1 => simd::rows_of::<{ simd::Q4_1 }>(w, xs, out),
                Kind::Q8_0 => simd::rows_of::<{ simd::Q8_0 }>(w, xs, out),
            }
        }
    }
    #[cfg(not(simd_kernels))]
    for (x, o) in xs.iter().zip(out) {
        *o = dot_reference(kind, w, x);
    }
}

#[cfg(simd_kernels)]
mod simd {
    use super::Kind;
    use std::arch::x86_64::*;

    // The kinds as const parameters, so each kernel is compiled for one block type.
    pub const Q4_0: u8 = 0;
    pub const Q4_1: u8 = 1;
    pub const Q8_0: u8 = 2;

    const fn kind(k: u8) -> Kind {
        match k {
            Q4_0 => Kind::Q4_0,
            Q4_1 => Kind::Q4_1,
            _ => Kind::Q8_0,
        }
    }

    /// Up to four rows (`xs.len()`) into `out`.
    ///
    /// # Safety
    /// As [`rows`].
    #[inline(always)]
    pub unsafe fn rows_of<const K: u8>(w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
        match xs.len() {
            4 => out.copy_from_slice(&rows::<4, K>(w, xs)),
            3 => out.copy_from_slice(&rows::<3, K>(w, xs)),
            2 => out.copy_from_slice(&rows::<2, K>(w, xs)),
            _ => out.copy_from_slice(&rows::<1, K>(w, xs)),
        }
    }

    /// Two f16 at `p` as f32.
    #[inline(always)]
    unsafe fn halves(p: *const u8) -> (f32, f32) {
        let v = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
        (_mm_cvtss_f32(v), _mm_cvtss_f32(_mm_movehdup_ps(v)))
    }

    /// A weight block as the unsigned operand of `maddubs` and, for signed types, the signs to
    /// move onto the activations (llama.cpp's `mul_sum_i8_pairs`); its scale and minimum.
    #[inline(always)]
    unsafe fn weights(kind: Kind, w: *const u8) -> (__m256i, Option<__m256i>, f32, f32) {
        let (d, m) = halves(w);
        let nibbles = |at: usize| {
            let b = _mm_loadu_si128(w.add(at) as *const __m128i);
            // Low nibbles are values 0..16, high nibbles 16..32: the activations' order.
            _mm256_and_si256(
                _mm256_set_m128i(_mm_srli_epi16(b, 4), b),
                _mm256_set1_epi8(0x0f),
            )
        };
        match kind {
            Kind::Q4_1 => (nibbles(4), None, d, m),
            Kind::Q4_0 => {
                let q = _mm256_sub_epi8(nibbles(2), _mm256_set1_epi8(8));
                (_mm256_sign_epi8(q, q), Some(q), d, 0.0)
            }
            Kind::Q8_0 => {
                let q = _mm256_loadu_si256(w.add(2) as *const __m256i);
                (_mm256_sign_epi8(q, q), Some(q), d, 0.0)
            }
        }
    }

    /// R rows against one weight row. Two accumulators per row (even and odd blocks) keep
    /// consecutive blocks off one dependency chain; every R adds in the same order.
    ///
    /// # Safety
    /// AVX2, FMA and F16C; each of `xs` holds as many activation blocks as `w` weight blocks.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn rows<const R: usize, const K: u8>(w: &[u8], xs: &[&[u8]]) -> [f32; R] {
        let kind = kind(K);
        let (wb, xb) = (kind.block_bytes(), kind.act_bytes());
        let n = w.len() / wb;
        let x: [*const u8; R] = std::array::from_fn(|r| xs[r].as_ptr());
        let ones = _mm256_set1_epi16(1);
        let (mut even, mut odd) = ([_mm256_setzero_ps(); R], [_mm256_setzero_ps(); R]);
        // Q4_1's minimum terms, also in two chains.
        let (mut mins_even, mut mins_odd) = ([0f32; R], [0f32; R]);
        // Block i into `acc` (static indices, so the accumulators stay in registers).
        macro_rules! block {
            ($i:expr, $acc:ident, $mins:ident) => {{
                let i = $i;
                let (qw, signs, dw, mw) = weights(kind, w.as_ptr().add(i * wb));
                for r in 0..R {
                    let xp = x[r].add(i * xb);
                    let (dx, sx) = halves(xp);
                    let qx = _mm256_loadu_si256(xp.add(xb - 32) as *const __m256i);
                    let qx = match signs {
                        Some(s) => _mm256_sign_epi8(qx, s),
                        None => qx,
                    };
                    // u8 × i8 pairs summed to i16 (at most 2·128·127 < 2^15), then to i32.
                    let sums =
                        _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(qw, qx), ones));
                    $acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx), sums, $acc[r]);
                    if kind == Kind::Q4_1 {
                        $mins[r] += mw * sx;
                    }
                }
            }};
        }
        let mut i = 0;
        while i + 2 <= n {
            block!(i, even, mins_even);
            block!(i + 1, odd, mins_odd);
            i += 2;
        }
        if i < n {
            block!(i, even, mins_even);
        }
        std::array::from_fn(|r| {
            let v = _mm256_add_ps(even[r], odd[r]);
            let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
            let q = _mm_add_ps(h, _mm_movehl_ps(h, h));
            _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q))) + (mins_even[r] + mins_odd[r])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::activations::{as_bytes, q8_0, q8_1};
    use candle_core::quantized::k_quants::{BlockQ4_0, BlockQ4_1, BlockQ8_0, GgmlType};

    fn blocks<T: GgmlType>(w: &[f32]) -> Vec<u8> {
        let mut b = vec![T::zeros(); w.len() / 32];
        T::from_float(w, &mut b);
        let n = std::mem::size_of_val(&b[..]);
        // SAFETY: repr(C) blocks without padding, read as bytes.
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const u8, n) }.to_vec()
    }

    #[test]
    fn kernels_match_their_twin_and_candles_formula_and_rows_do_not_depend_on_their_batch() {
        for kind in [Kind::Q4_0, Kind::Q4_1, Kind::Q8_0] {
            for n in [32usize, 64, 96, 576] {
                let w: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919 % 113) as f32 - 56.0) / 40.0)
                    .collect();
                let wq = match kind {
                    Kind::Q4_0 => blocks::<BlockQ4_0>(&w),
                    Kind::Q4_1 => blocks::<BlockQ4_1>(&w),
                    Kind::Q8_0 => blocks::<BlockQ8_0>(&w),
                };
                let xs: Vec<Vec<u16>> = (0..5)
                    .map(|r| {
                        let x: Vec<f32> = (0..n)
                            .map(|i| ((i * 104729 + r * 31) % 97) as f32 / 9.0 - 5.0)
                            .collect();
                        if kind == Kind::Q4_1 {
                            q8_1(&x)
                        } else {
                            q8_0(&x)
                        }
                    })
                    .collect();
                let rows: Vec<&[u8]> = xs.iter().map(|x| as_bytes(x)).collect();
                let mut all = vec![0f32; rows.len()];
                dot_rows(kind, &wq, &rows, &mut all);
                for (r, x) in rows.iter().enumerate() {
                    let mut one = [0f32];
                    dot_rows(kind, &wq, &[x], &mut one);
                    assert_eq!(one[0].to_bits(), all[r].to_bits(), "{kind:?} n {n} row {r}");
                    let slow = dot_reference(kind, &wq, x);
                    let scale: f32 = w.iter().map(|a| a.abs() * 5.0).sum();
                    assert!(
                        (all[r] - slow).abs() <= scale * 1e-5,
                        "{kind:?} n {n}: {} vs {slow}",
                        all[r]
                    );
                }
                // candle's own dot product of the same blocks (its formula, scalar or AVX2; its
                // Q4_1 takes blocks in pairs).
                if !(n / 32).is_multiple_of(2) {
                    continue;
                }
                let candle = match kind {
                    Kind::Q4_0 => candle_dot::<BlockQ4_0>(&wq, rows[0]),
                    Kind::Q4_1 => candle_dot::<BlockQ4_1>(&wq, rows[0]),
                    Kind::Q8_0 => candle_dot::<BlockQ8_0>(&wq, rows[0]),
                };
                assert!(
                    (candle - all[0]).abs() <= 1e-3 * candle.abs().max(1.0),
                    "{kind:?}"
                );
            }
        }
    }

    fn candle_dot<T: GgmlType>(w: &[u8], x: &[u8]) -> f32 {
        // SAFETY: whole, 2-aligned blocks (a fresh Vec<u8> from a Vec of blocks is 8-aligned in
        // practice; checked).
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        assert!((wp as usize).is_multiple_of(2) && (xp as usize).is_multiple_of(2));
        let wb = unsafe {
            std::slice::from_raw_parts(wp as *const T, w.len() / std::mem::size_of::<T>())
        };
        let xb = unsafe {
            std::slice::from_raw_parts(
                xp as *const T::VecDotType,
                x.len() / std::mem::size_of::<T::VecDotType>(),
            )
        };
        T::vec_dot(wb.len() * 32, wb, xb)
    }
}
