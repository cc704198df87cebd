//! The merged-adapter pass: a weight rewritten as its source plus two low-rank updates at α,
//!
//!   out[i, :] = src[i, :] + Σ_r u[i, r]·c_r·d[r, :],   c_r = 1 − α for r < split, else α,
//!
//! one row at a time in f32 (no temporary the size of the weight), `u` `[rows, R]` and `d`
//! `[R, cols]` holding both adapters' factors side by side (A's first). Beside it, the slow
//! twin it is held to.

use crate::blend::Element;
use rayon::prelude::*;

/// A weight's two updates in its stored orientation, concatenated.
#[derive(Debug, Clone)]
pub struct StoredUpdate {
    /// `[rows, rank]`.
    pub u: Vec<f32>,
    /// `[rank, cols]`.
    pub d: Vec<f32>,
    pub rows: usize,
    pub cols: usize,
    pub rank: usize,
    /// Columns of `u` (rows of `d`) that belong to endpoint A.
    pub split: usize,
}

impl StoredUpdate {
    /// The coefficient of each rank at α: A's take 1 − α, B's take α (formed in f64 and
    /// narrowed once, like α).
    pub fn coefficients(&self, alpha: crate::Alpha) -> Vec<f32> {
        let (keep, take) = alpha.endpoint_weights_f32();
        (0..self.rank)
            .map(|r| if r < self.split { keep } else { take })
            .collect()
    }
}

/// Rows per parallel task at least.
const MIN_ROWS_PER_TASK: usize = 16;

/// `out = src + u·diag(c)·d`, row by row, in parallel; `src = None` updates `out` in place.
pub fn merge<T: Element>(out: &mut [T], src: Option<&[T]>, upd: &StoredUpdate, c: &[f32]) {
    let (rows, cols, rank) = (upd.rows, upd.cols, upd.rank);
    assert_eq!(out.len(), rows * cols, "out is [rows, cols]");
    assert!(src.is_none_or(|s| s.len() == out.len()));
    assert!(upd.u.len() == rows * rank && upd.d.len() == rank * cols && c.len() == rank);
    let per_task = (rows / rayon::current_num_threads().max(1)).max(MIN_ROWS_PER_TASK);
    out.par_chunks_mut(per_task * cols)
        .enumerate()
        .for_each(|(chunk, out)| {
            let mut acc = vec![0f32; cols];
            let mut coef = vec![0f32; rank];
            for (j, out_row) in out.chunks_mut(cols).enumerate() {
                let i = chunk * per_task + j;
                match src {
                    Some(s) => load(&mut acc, &s[i * cols..(i + 1) * cols]),
                    None => load(&mut acc, out_row),
                }
                for (r, k) in coef.iter_mut().enumerate() {
                    *k = upd.u[i * rank + r] * c[r];
                }
                for (r, &k) in coef.iter().enumerate() {
                    if k != 0.0 {
                        add_scaled(&mut acc, &upd.d[r * cols..(r + 1) * cols], k);
                    }
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

/// `acc += k·d` (vectorised by the compiler over the row).
#[inline]
fn add_scaled(acc: &mut [f32], d: &[f32], k: f32) {
    for (a, &x) in acc.iter_mut().zip(d) {
        *a += k * x;
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
        for &(rows, cols, rank, split) in &[
            (1, 1, 1, 0),
            (7, 13, 3, 1),
            (100, 37, 12, 4),
            (300, 64, 8, 8),
        ] {
            let upd = StoredUpdate {
                u: random(rows * rank, &mut rng),
                d: random(rank * cols, &mut rng),
                rows,
                cols,
                rank,
                split,
            };
            let src = random(rows * cols, &mut rng);
            for alpha in [-0.5, 0.0, 0.3, 1.0, 1.7] {
                let c = upd.coefficients(crate::Alpha::new(alpha).unwrap());
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
