//! The merged-adapter pass: a weight rewritten as its source plus the endpoints' low-rank
//! updates at their weights,
//!
//!   out[i, :] = src[i, :] + Σ_r u[i, r]·c_r·d[r, :],   c_r = the weight of rank r's endpoint
//!
//! (on the line 1 − α for A's ranks and α for B's; on a plane 1 − α − β, α and β for A's, B's
//! and C's; with D, γ for D's and 1 − α − β − γ for A's), in f32 with no temporary the size of
//! the weight, `u` `[rows, R]` and `d` `[R, cols]` holding the adapters' factors side by side
//! (A's first, then B's, C's and D's).
//! Beside it, the slow twin it is held to.
//!
//! The f32 kernel (AVX2 + FMA) works on blocks of 4 rows × 16 columns held in registers across
//! all R ranks, so each `d` vector loaded serves four rows and nothing but the result is
//! stored: the pass costs about one read of the source and one write of the output.

use crate::weights::blend::Element;
use rayon::prelude::*;

/// How the ranks of concatenated updates divide among the endpoints: the first `a` are A's,
/// the next `b` B's, then `c` C's (a plane's third endpoint; 0 on a line) and `d` D's (a
/// fourth endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RankSides {
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub d: usize,
}

impl RankSides {
    pub fn total(self) -> usize {
        self.a + self.b + self.c + self.d
    }

    /// Each rank's coefficient, from the endpoints' weights `[w_A, w_B, w_C, w_D]`.
    pub fn spread(self, w: [f32; 4]) -> impl Iterator<Item = f32> {
        let n = [self.a, self.b, self.c, self.d];
        (0..4).flat_map(move |s| std::iter::repeat_n(w[s], n[s]))
    }
}

/// A weight's updates in its stored orientation, concatenated.
#[derive(Debug, Clone)]
pub struct StoredUpdate {
    /// `[rows, rank]`.
    pub u: Vec<f32>,
    /// `[rank, cols]`.
    pub d: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub rank: usize,
    /// Which columns of `u` (rows of `d`) belong to which endpoint.
    pub sides: RankSides,
}

impl StoredUpdate {
    /// The coefficient of each rank from the endpoints' weights (see
    /// [`crate::Alpha::point_weights_f32`]).
    pub fn coefficients(&self, weights: [f32; 4]) -> Vec<f32> {
        self.sides.spread(weights).collect()
    }
}

/// Rows per parallel task at least (a multiple of the kernel's row block).
const MIN_ROWS_PER_TASK: usize = 16;

/// `out = src + u·diag(c)·d`, in parallel over rows; `src = None` updates `out` in place.
pub fn merge<T: Element>(out: &mut [T], src: Option<&[T]>, upd: &StoredUpdate, c: &[f32]) {
    let (rows, cols, rank) = (upd.rows, upd.cols, upd.rank);
    assert_eq!(out.len(), rows * cols, "out is [rows, cols]");
    assert!(src.is_none_or(|s| s.len() == out.len()));
    assert!(upd.u.len() == rows * rank && upd.d.len() == rank * cols && c.len() == rank);
    let per_task = (rows / rayon::current_num_threads().max(1))
        .next_multiple_of(4)
        .max(MIN_ROWS_PER_TASK);
    // The coefficients of every row: u·diag(c).
    let coef: Vec<f32> = upd
        .u
        .chunks(rank.max(1))
        .flat_map(|row| row.iter().zip(c).map(|(u, c)| u * c))
        .collect();
    #[cfg(simd_kernels)]
    if let Some(out) = T::as_f32_mut(out) {
        let src = src.map(|s| T::as_f32(s).expect("same element type as out"));
        out.par_chunks_mut(per_task * cols)
            .enumerate()
            .for_each(|(chunk, out)| {
                let first = chunk * per_task;
                let n = out.len() / cols.max(1);
                let coef = &coef[first * rank..(first + n) * rank];
                let src = src.map(|s| &s[first * cols..(first + n) * cols]);
                // SAFETY: the build targets AVX2 and FMA (cfg simd_kernels, held to the CPU at
                // start-up); the slices have the sizes the kernel reads (n rows of cols, n
                // rows of rank coefficients, rank rows of d).
                unsafe { simd::merge_f32(out, src, coef, &upd.d, n, cols, rank) }
            });
        return;
    }
    out.par_chunks_mut(per_task * cols)
        .enumerate()
        .for_each(|(chunk, out)| {
            let mut acc = vec![0f32; cols];
            for (j, out_row) in out.chunks_mut(cols).enumerate() {
                let i = chunk * per_task + j;
                match src {
                    Some(s) => load(&mut acc, &s[i * cols..(i + 1) * cols]),
                    None => load(&mut acc, out_row),
                }
                for (r, &k) in coef[i * rank..(i + 1) * rank].iter().enumerate() {
                    add_scaled(&mut acc, &upd.d[r * cols..(r + 1) * cols], k);
                }
                for (o, &a) in out_row.iter_mut().zip(&acc) {
                    *o = T::from_f32(a);
                }
            }
        });
}

fn load<T: Element>(acc: &mut [f32], row: &[T]) {
    for (a, &x) in acc.iter_mut().zip(row) {
        *a = x.to_f32();
    }
}

/// `acc += k·d`, one fused multiply-add per element like the SIMD kernel.
#[inline]
fn add_scaled(acc: &mut [f32], d: &[f32], k: f32) {
    for (a, &x) in acc.iter_mut().zip(d) {
        *a = k.mul_add(x, *a);
    }
}

#[cfg(simd_kernels)]
mod simd {
    use std::arch::x86_64::*;

    /// Rows per block, and columns per block (two 8-lane vectors).
    const BR: usize = 4;
    const BC: usize = 16;

    /// `out[i] = src[i] (or out[i]) + Σ_r coef[i, r]·d[r]` for `rows` rows.
    ///
    /// # Safety
    /// AVX2 and FMA must be present; `out` (and `src`) hold `rows × cols`, `coef` `rows × rank`,
    /// `d` `rank × cols`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn merge_f32(
        out: &mut [f32],
        src: Option<&[f32]>,
        coef: &[f32],
        d: &[f32],
        rows: usize,
        cols: usize,
        rank: usize,
    ) {
        let op = out.as_mut_ptr();
        let sp = src.map_or(op as *const f32, |s| s.as_ptr());
        let (cp, dp) = (coef.as_ptr(), d.as_ptr());
        let body = cols / BC * BC;
        // The output is written once and not read again before the next forward pass:
        // non-temporal stores skip the read-for-ownership, as the blend's do. They need
        // 16-byte alignment, which every row has when the first one does and cols is a
        // multiple of 4.
        let stream = (op as usize).is_multiple_of(16) && cols.is_multiple_of(4);
        let mut i = 0;
        while i < rows {
            let nr = BR.min(rows - i);
            let mut j = 0;
            if nr == BR {
                // Four full rows: sixteen columns of each in eight registers across all ranks.
                let (c0, c1, c2, c3) = (
                    cp.add(i * rank),
                    cp.add((i + 1) * rank),
                    cp.add((i + 2) * rank),
                    cp.add((i + 3) * rank),
                );
                while j < body {
                    let s = |k: usize, h: usize| _mm256_loadu_ps(sp.add((i + k) * cols + j + h));
                    let (mut a0, mut b0) = (s(0, 0), s(0, 8));
                    let (mut a1, mut b1) = (s(1, 0), s(1, 8));
                    let (mut a2, mut b2) = (s(2, 0), s(2, 8));
                    let (mut a3, mut b3) = (s(3, 0), s(3, 8));
                    for r in 0..rank {
                        let dv0 = _mm256_loadu_ps(dp.add(r * cols + j));
                        let dv1 = _mm256_loadu_ps(dp.add(r * cols + j + 8));
                        let k0 = _mm256_broadcast_ss(&*c0.add(r));
                        a0 = _mm256_fmadd_ps(k0, dv0, a0);
                        b0 = _mm256_fmadd_ps(k0, dv1, b0);
                        let k1 = _mm256_broadcast_ss(&*c1.add(r));
                        a1 = _mm256_fmadd_ps(k1, dv0, a1);
                        b1 = _mm256_fmadd_ps(k1, dv1, b1);
                        let k2 = _mm256_broadcast_ss(&*c2.add(r));
                        a2 = _mm256_fmadd_ps(k2, dv0, a2);
                        b2 = _mm256_fmadd_ps(k2, dv1, b2);
                        let k3 = _mm256_broadcast_ss(&*c3.add(r));
                        a3 = _mm256_fmadd_ps(k3, dv0, a3);
                        b3 = _mm256_fmadd_ps(k3, dv1, b3);
                    }
                    for (k, (a, b)) in [(a0, b0), (a1, b1), (a2, b2), (a3, b3)]
                        .into_iter()
                        .enumerate()
                    {
                        let o = op.add((i + k) * cols + j);
                        store(o, a, stream);
                        store(o.add(8), b, stream);
                    }
                    j += BC;
                }
            }
            // Fewer rows at the end: the same, for the rows there are.
            while j < body {
                let mut acc = [[_mm256_setzero_ps(); 2]; BR];
                for (k, a) in acc.iter_mut().enumerate().take(nr) {
                    let s = sp.add((i + k) * cols + j);
                    a[0] = _mm256_loadu_ps(s);
                    a[1] = _mm256_loadu_ps(s.add(8));
                }
                for r in 0..rank {
                    let dv0 = _mm256_loadu_ps(dp.add(r * cols + j));
                    let dv1 = _mm256_loadu_ps(dp.add(r * cols + j + 8));
                    for (k, a) in acc.iter_mut().enumerate().take(nr) {
                        let c = _mm256_broadcast_ss(&*cp.add((i + k) * rank + r));
                        a[0] = _mm256_fmadd_ps(c, dv0, a[0]);
                        a[1] = _mm256_fmadd_ps(c, dv1, a[1]);
                    }
                }
                for (k, a) in acc.iter().enumerate().take(nr) {
                    let o = op.add((i + k) * cols + j);
                    store(o, a[0], stream);
                    store(o.add(8), a[1], stream);
                }
                j += BC;
            }
            // The last columns, one at a time, in the same order of operations.
            for k in 0..nr {
                for j in body..cols {
                    let mut a = *sp.add((i + k) * cols + j);
                    for r in 0..rank {
                        a = (*cp.add((i + k) * rank + r)).mul_add(*dp.add(r * cols + j), a);
                    }
                    *op.add((i + k) * cols + j) = a;
                }
            }
            i += BR;
        }
        if stream {
            _mm_sfence();
        }
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256, stream: bool) {
        if stream {
            _mm_stream_ps(p, _mm256_castps256_ps128(v));
            _mm_stream_ps(p.add(4), _mm256_extractf128_ps(v, 1));
        } else {
            _mm256_storeu_ps(p, v);
        }
    }
}

/// The slow twin: every element in f64, one at a time.
pub fn merge_reference(src: &[f32], upd: &StoredUpdate, c: &[f32]) -> Vec<f32> {
    let (rows, cols, rank) = (upd.rows, upd.cols, upd.rank);
    (0..rows * cols)
        .map(|e| {
            let (i, j) = (e / cols, e % cols);
            let delta: f64 = (0..rank)
                .map(|r| upd.u[i * rank + r] as f64 * c[r] as f64 * upd.d[r * cols + j] as f64)
                .sum();
            (src[e] as f64 + delta) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    fn random(n: usize, rng: &mut StdRng) -> Vec<f32> {
        (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect()
    }

    #[test]
    fn the_fast_merge_equals_its_reference() {
        let mut rng = StdRng::seed_from_u64(3);
        for &(rows, cols, (a, b, c, d)) in &[
            (1, 1, (0, 1, 0, 0)),
            (7, 13, (1, 2, 0, 0)),
            (100, 37, (4, 8, 0, 0)),
            (300, 64, (8, 0, 0, 0)),
            (50, 21, (2, 3, 4, 0)),
            (33, 19, (0, 3, 2, 5)),
        ] {
            let sides = RankSides { a, b, c, d };
            let rank = sides.total();
            let upd = StoredUpdate {
                u: random(rows * rank, &mut rng),
                d: random(rank * cols, &mut rng),
                rows,
                cols,
                rank,
                sides,
            };
            let src = random(rows * cols, &mut rng);
            for (alpha, beta, gamma) in [
                (-0.5, 0.0, 0.0),
                (0.0, 0.0, 0.0),
                (0.3, 0.4, 0.0),
                (1.0, -0.2, 0.0),
                (1.7, 0.0, 0.0),
                (0.2, 0.5, -0.7),
            ] {
                let w = crate::Alpha::new(alpha)
                    .unwrap()
                    .point_weights_f32(beta, gamma);
                let c = upd.coefficients(w);
                let want = merge_reference(&src, &upd, &c);
                let mut out = vec![0f32; rows * cols];
                merge(&mut out, Some(&src), &upd, &c);
                for (o, w) in out.iter().zip(&want) {
                    assert!(
                        (o - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{rows}×{cols} r{rank}: {o} vs {w}"
                    );
                }
                // In place, from the source already there.
                let mut inplace = src.clone();
                merge(&mut inplace, None, &upd, &c);
                assert_eq!(inplace, out);
                // Half precision: the f32 result, rounded once.
                let src16: Vec<bf16> = src.iter().map(|&x| bf16::from_f32(x)).collect();
                let mut out16 = vec![bf16::ZERO; rows * cols];
                merge(&mut out16, Some(&src16), &upd, &c);
                let src_back: Vec<f32> = src16.iter().map(|x| x.to_f32()).collect();
                let want16 = merge_reference(&src_back, &upd, &c);
                for (o, w) in out16.iter().zip(&want16) {
                    assert!((o.to_f32() - w).abs() <= 1e-2 * (1.0 + w.abs()));
                }
            }
        }
    }
}
