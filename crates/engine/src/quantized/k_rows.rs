//! Q4_K and Q6_K against Q8_K activations, several activation rows per weight row: candle's
//! AVX2 kernels (`vec_dot_q4k_q8k`, `vec_dot_q6k_q8k`, themselves llama.cpp's) with each
//! weight super-block decoded once (scales out of their packing, quants out of their nibbles
//! and high bits) for up to four rows of a batch (a prefill, K columns, a sweep's samples) and
//! kept in registers. Each activation row runs candle's own operations in candle's order, so
//! every row equals candle's dot product bit for bit, whatever the batch (held by a test);
//! that is also their plain twin's check, through candle's against the dequantized reference.

/// The k-quant types with kernels here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Q4K,
    Q6K,
}

impl Kind {
    /// Activation rows a decoded super-block serves at once: as many as leave the registers
    /// for it (Q6_K's decoded block takes eight, so two rows; measured, four spill).
    const fn rows(self) -> usize {
        match self {
            Kind::Q4K => 4,
            Kind::Q6K => 2,
        }
    }

    /// Bytes of one super-block.
    pub const fn block_bytes(self) -> usize {
        match self {
            Kind::Q4K => Q4K_BYTES,
            Kind::Q6K => Q6K_BYTES,
        }
    }
}

/// Bytes of one Q4_K super-block: d, dmin (f16), 12 bytes of packed scales and mins, 128 of
/// nibbles.
pub const Q4K_BYTES: usize = 144;
/// Bytes of one Q6_K super-block: 128 of low nibbles, 64 of high bits, 16 scales (i8), d.
pub const Q6K_BYTES: usize = 210;
/// Bytes of one Q8_K activation block: d (f32), 256 quants, 16 sums of 16.
pub const X_BYTES: usize = 292;

/// The dot products of one row of weight super-blocks with each activation row: `out[r]` for
/// `xs[r]`. One row goes straight to candle's kernel.
pub fn dot_rows(kind: Kind, w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
    debug_assert_eq!(xs.len(), out.len());
    debug_assert!(xs
        .iter()
        .all(|x| x.len() / X_BYTES == w.len() / kind.block_bytes()));
    #[cfg(simd_kernels)]
    if xs.len() > 1 {
        // SAFETY: the build targets AVX2, FMA and F16C (cfg simd_kernels, held to the CPU at
        // start-up); every activation row has as many blocks as w.
        unsafe {
            for (xs, out) in xs.chunks(kind.rows()).zip(out.chunks_mut(kind.rows())) {
                match (kind, xs.len()) {
                    (Kind::Q4K, 4) => simd::q4k::<4>(w, xs, out),
                    (Kind::Q4K, 3) => simd::q4k::<3>(w, xs, out),
                    (Kind::Q4K, 2) => simd::q4k::<2>(w, xs, out),
                    (Kind::Q4K, _) => simd::q4k::<1>(w, xs, out),
                    (Kind::Q6K, 2) => simd::q6k::<2>(w, xs, out),
                    (Kind::Q6K, _) => simd::q6k::<1>(w, xs, out),
                }
            }
        }
        return;
    }
    for (x, o) in xs.iter().zip(out) {
        *o = candle_dot(kind, w, x);
    }
}

/// candle's dot product of one row.
pub fn candle_dot(kind: Kind, w: &[u8], x: &[u8]) -> f32 {
    use candle_core::quantized::k_quants::{BlockQ4K, BlockQ6K, GgmlType};
    fn dot<T: GgmlType>(w: &[u8], x: &[u8]) -> f32 {
        let w = super::blocks_of::<T>(w);
        T::vec_dot(w.len() * T::BLCK_SIZE, w, super::blocks_of(x))
    }
    match kind {
        Kind::Q4K => dot::<BlockQ4K>(w, x),
        Kind::Q6K => dot::<BlockQ6K>(w, x),
    }
}

#[cfg(simd_kernels)]
mod simd {
    use super::{Q4K_BYTES, Q6K_BYTES, X_BYTES};
    use std::arch::x86_64::*;

    /// candle's `get_scale_shuffle_k4`: row i broadcasts the i-th pair of scale bytes.
    static SCALE_SHUFFLE: [[u8; 32]; 8] = {
        let mut t = [[0u8; 32]; 8];
        let mut i = 0;
        while i < 8 {
            let mut k = 0;
            while k < 32 {
                t[i][k] = (2 * i + k % 2) as u8;
                k += 1;
            }
            i += 1;
        }
        t
    };

    #[inline(always)]
    unsafe fn scale_shuffle(i: usize) -> __m256i {
        _mm256_loadu_si256(SCALE_SHUFFLE[i].as_ptr() as *const __m256i)
    }

    /// Up to four activation rows (`xs.len()`) against the Q4_K weight row `w`, each
    /// super-block decoded once for all of them and kept in registers.
    ///
    /// # Safety
    /// AVX2, FMA and F16C must be available; every `xs[r]` holds one Q8_K block per
    /// super-block of `w`.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q4k<const R: usize>(w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
        const KMASK1: u32 = 0x3f3f3f3f;
        const KMASK2: u32 = 0x0f0f0f0f;
        const KMASK3: u32 = 0x03030303;
        let m4 = _mm256_set1_epi8(0xF);
        let mut acc = [_mm256_setzero_ps(); R];
        let mut acc_m = [_mm_setzero_ps(); R];
        for (bi, b) in w.chunks_exact(Q4K_BYTES).enumerate() {
            let p = b.as_ptr();
            let dm = _mm_cvtph_ps(_mm_cvtsi32_si128((p as *const i32).read_unaligned()));
            let (xd, xdmin) = (_mm_cvtss_f32(dm), _mm_cvtss_f32(_mm_movehdup_ps(dm)));
            let word = |i: usize| (p.add(4 + 4 * i) as *const u32).read_unaligned();
            let mut utmp = [word(0), word(1), word(2), 0];
            utmp[3] = ((utmp[2] >> 4) & KMASK2) | (((utmp[1] >> 6) & KMASK3) << 4);
            let uaux = utmp[1] & KMASK1;
            utmp[1] = (utmp[2] & KMASK2) | (((utmp[0] >> 6) & KMASK3) << 4);
            utmp[2] = uaux;
            utmp[0] &= KMASK1;
            let mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(
                utmp[3] as i32,
                utmp[2] as i32,
                utmp[1] as i32,
                utmp[0] as i32,
            ));
            let mins = _mm256_extracti128_si256(mins_and_scales, 1);
            let sc128 = _mm256_extracti128_si256(mins_and_scales, 0);
            let scales = _mm256_insertf128_si256(_mm256_castsi128_si256(sc128), sc128, 1);
            let ys: [*const u8; R] = std::array::from_fn(|r| xs[r].as_ptr().add(bi * X_BYTES));
            for r in 0..R {
                let y = ys[r];
                let yd = (y as *const f32).read_unaligned();
                let dmin = -yd * xdmin;
                let q8sums = _mm256_loadu_si256(y.add(260) as *const __m256i);
                let q8s = _mm_hadd_epi16(
                    _mm256_extracti128_si256(q8sums, 0),
                    _mm256_extracti128_si256(q8sums, 1),
                );
                let prod = _mm_madd_epi16(mins, q8s);
                acc_m[r] = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc_m[r]);
            }
            let mut sumi = [_mm256_setzero_si256(); R];
            let q4 = p.add(16);
            for j in 0..4 {
                let scale_l = _mm256_shuffle_epi8(scales, scale_shuffle(2 * j));
                let scale_h = _mm256_shuffle_epi8(scales, scale_shuffle(2 * j + 1));
                let bits = _mm256_loadu_si256(q4.add(32 * j) as *const __m256i);
                let q4l = _mm256_and_si256(bits, m4);
                let q4h = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                for r in 0..R {
                    let q8 = ys[r].add(4 + 64 * j);
                    let q8l = _mm256_loadu_si256(q8 as *const __m256i);
                    let p16l = _mm256_madd_epi16(scale_l, _mm256_maddubs_epi16(q4l, q8l));
                    sumi[r] = _mm256_add_epi32(sumi[r], p16l);
                    let q8h = _mm256_loadu_si256(q8.add(32) as *const __m256i);
                    let p16h = _mm256_madd_epi16(scale_h, _mm256_maddubs_epi16(q4h, q8h));
                    sumi[r] = _mm256_add_epi32(sumi[r], p16h);
                }
            }
            for r in 0..R {
                let yd = (ys[r] as *const f32).read_unaligned();
                let d = yd * xd;
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        for r in 0..R {
            let m = _mm_add_ps(acc_m[r], _mm_movehl_ps(acc_m[r], acc_m[r]));
            let m = _mm_add_ss(m, _mm_movehdup_ps(m));
            out[r] = hsum(acc[r]) + _mm_cvtss_f32(m);
        }
    }

    /// Up to four activation rows (`xs.len()`) against the Q6_K weight row `w`, as
    /// [`q4k`]: candle's `vec_dot_q6k_q8k` with each super-block decoded once.
    ///
    /// # Safety
    /// As [`q4k`].
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn q6k<const R: usize>(w: &[u8], xs: &[&[u8]], out: &mut [f32]) {
        let m4 = _mm256_set1_epi8(0xF);
        let m2 = _mm256_set1_epi8(3);
        let m32s = _mm256_set1_epi8(32);
        let mut acc = [_mm256_setzero_ps(); R];
        for (bi, b) in w.chunks_exact(Q6K_BYTES).enumerate() {
            let p = b.as_ptr();
            let xd = _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(
                (p.add(208) as *const u16).read_unaligned() as i32,
            )));
            let ys: [*const u8; R] = std::array::from_fn(|r| xs[r].as_ptr().add(bi * X_BYTES));
            let scales = _mm_loadu_si128(p.add(192) as *const __m128i);
            let mut sumi = [_mm256_setzero_si256(); R];
            for j in 0..2 {
                let sc = |k: usize| {
                    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(
                        scales,
                        _mm_loadu_si128(SHUFFLE_Q6[4 * j + k].as_ptr() as *const __m128i),
                    ))
                };
                let (s0, s1, s2, s3) = (sc(0), sc(1), sc(2), sc(3));
                let ql = p.add(64 * j);
                let q4bits1 = _mm256_loadu_si256(ql as *const __m256i);
                let q4bits2 = _mm256_loadu_si256(ql.add(32) as *const __m256i);
                let q4bits_h = _mm256_loadu_si256(p.add(128 + 32 * j) as *const __m256i);
                let q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bits_h, m2), 4);
                let q4h_1 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 2), m2), 4);
                let q4h_2 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 4), m2), 4);
                let q4h_3 =
                    _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bits_h, 6), m2), 4);
                let q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0);
                let q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1);
                let q4_2 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2);
                let q4_3 =
                    _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3);
                for r in 0..R {
                    let q8 = ys[r].add(4 + 128 * j);
                    let part = |q4: __m256i, at: usize, scale: __m256i| {
                        let q8v = _mm256_loadu_si256(q8.add(at) as *const __m256i);
                        let p16 = _mm256_sub_epi16(
                            _mm256_maddubs_epi16(q4, q8v),
                            _mm256_maddubs_epi16(m32s, q8v),
                        );
                        _mm256_madd_epi16(scale, p16)
                    };
                    let (p0, p1) = (part(q4_0, 0, s0), part(q4_1, 32, s1));
                    let (p2, p3) = (part(q4_2, 64, s2), part(q4_3, 96, s3));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p0, p1));
                    sumi[r] = _mm256_add_epi32(sumi[r], _mm256_add_epi32(p2, p3));
                }
            }
            for r in 0..R {
                let yd = (ys[r] as *const f32).read_unaligned();
                let d = yd * xd;
                acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(sumi[r]), acc[r]);
            }
        }
        for r in 0..R {
            out[r] = hsum(acc[r]);
        }
    }

    /// candle's `hsum_float_8`.
    #[inline(always)]
    unsafe fn hsum(x: __m256) -> f32 {
        let res = _mm_add_ps(_mm256_extractf128_ps(x, 1), _mm256_castps256_ps128(x));
        let res = _mm_add_ps(res, _mm_movehl_ps(res, res));
        let res = _mm_add_ss(res, _mm_movehdup_ps(res));
        _mm_cvtss_f32(res)
    }

    /// candle's `get_scale_shuffle`: row i spreads scale bytes 2i and 2i + 1 over eight lanes
    /// each.
    static SHUFFLE_Q6: [[u8; 16]; 8] = {
        let mut t = [[0u8; 16]; 8];
        let mut i = 0;
        while i < 8 {
            let mut k = 0;
            while k < 16 {
                t[i][k] = (2 * i + k / 8) as u8;
                k += 1;
            }
            i += 1;
        }
        t
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quantized::{tests::matrix, QType};

    /// Every row of a batch is candle's own dot product of that row, bit for bit, whatever
    /// the batch's size (one row goes to candle's kernel itself).
    #[test]
    fn each_row_of_a_batch_is_candles_dot_product() {
        let (rows, cols) = (6, 1024);
        for (t, kind) in [(QType::Q4K, Kind::Q4K), (QType::Q6K, Kind::Q6K)] {
            let q = matrix(t, rows, cols);
            for m in 1..=6 {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i * 31 + m * 7) % 97) as f32 / 13.0 - 3.5)
                    .collect();
                let acts = q.quantize_rows(&x, m, t.activations());
                let xs: Vec<&[u8]> = (0..m).map(|r| acts.row(r)).collect();
                for i in 0..rows {
                    let mut out = vec![0f32; m];
                    dot_rows(kind, q.row(i), &xs, &mut out);
                    for (r, &o) in out.iter().enumerate() {
                        assert_eq!(
                            o.to_bits(),
                            candle_dot(kind, q.row(i), xs[r]).to_bits(),
                            "{kind:?} m {m} row {i} activation row {r}"
                        );
                    }
                }
            }
        }
    }
}
