//! The gated MLP's `silu(gate)·up` in one pass over f32 host buffers, its exponential eight
//! lanes at a time. candle's `silu` calls libm's scalar `expf` for each value and a second op
//! multiplies by `up`: together about 3% of the CPU samples of four batched columns' decode
//! steps on SmolLM2, and 15 of a 64-row prompt's 79 ms.
//! [`Kernels::silu_mul`](super::Kernels::silu_mul) falls back to those two ops, the twin.

use candle_core::{Result, Tensor};

/// Values per task where an input is large (prompts); a decode step's few rows stay on the
/// calling thread.
#[cfg(simd_kernels)]
const CHUNK: usize = 1 << 14;

/// `silu(g)·u` for f32 tensors of one shape on the CPU whose rows are contiguous (whole
/// tensors, or the halves of a fused gate-and-up product); `None` elsewhere.
#[cfg(simd_kernels)]
pub(crate) fn silu_mul(g: &Tensor, u: &Tensor) -> Result<Option<Tensor>> {
    use candle_core::{CpuStorage, DType, Storage};
    use rayon::prelude::*;
    let applies =
        g.device().is_cpu() && [g.dtype(), u.dtype()] == [DType::F32; 2] && g.shape() == u.shape();
    if !applies {
        return Ok(None);
    }
    let (gs, gl) = g.storage_and_layout();
    let (us, ul) = u.storage_and_layout();
    let (Storage::Cpu(CpuStorage::F32(gd)), Storage::Cpu(CpuStorage::F32(ud))) = (&*gs, &*us)
    else {
        return Ok(None);
    };
    let (Some((g_starts, len)), Some((u_starts, u_len))) = (runs(gl), runs(ul)) else {
        return Ok(None);
    };
    if len != u_len || g_starts.len() != u_starts.len() {
        return Ok(None);
    }
    // Pieces of at most CHUNK values, each a stretch of one run of g, of u and of the output.
    let out_len = g.elem_count();
    let mut out = vec![0f32; out_len];
    let mut pieces = Vec::new();
    let mut rest = out.as_mut_slice();
    for (gs, us) in g_starts.into_iter().zip(u_starts) {
        for off in (0..len).step_by(CHUNK) {
            let n = CHUNK.min(len - off);
            let (piece, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            pieces.push((&gd[gs + off..][..n], &ud[us + off..][..n], piece));
        }
    }
    // SAFETY (both calls): AVX2 and FMA are the build's target; each piece's slices have one
    // length.
    if out_len <= CHUNK {
        for (g, u, out) in pieces {
            unsafe { simd::silu_mul(g, u, out) };
        }
    } else {
        pieces
            .into_par_iter()
            .for_each(|(g, u, out)| unsafe { simd::silu_mul(g, u, out) });
    }
    Ok(Some(Tensor::from_vec(out, g.shape(), g.device())?))
}

/// A layout's runs of consecutive values, in order: their starts, and their one length (the
/// whole tensor where it is contiguous, else its rows). `None` where the last dimension is
/// not consecutive or its rows are shorter than a register (a transposed view), which the
/// twin handles.
#[cfg(simd_kernels)]
fn runs(l: &candle_core::Layout) -> Option<(Vec<usize>, usize)> {
    let n = l.shape().elem_count();
    if l.is_contiguous() {
        return Some((vec![l.start_offset()], n));
    }
    let (dims, stride) = (l.dims(), l.stride());
    let (&len, lead) = dims.split_last()?;
    if stride.last() != Some(&1) || len < 8 {
        return None;
    }
    let starts = (0..n / len)
        .map(|mut row| {
            let mut at = l.start_offset();
            for (d, s) in lead.iter().zip(stride).rev() {
                at += row % d * s;
                row /= d;
            }
            at
        })
        .collect();
    Some((starts, len))
}

/// Without the SIMD kernels there is no fast path.
#[cfg(not(simd_kernels))]
pub(crate) fn silu_mul(_: &Tensor, _: &Tensor) -> Result<Option<Tensor>> {
    Ok(None)
}

#[cfg(simd_kernels)]
mod simd {
    use crate::model::vector_exp::exp;
    use std::arch::x86_64::*;

    /// `out = g / (1 + e^−g) · u` (candle's `silu`, then the product), eight values at a
    /// time; the last few through a padded register.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; `g`, `u` and `out` have one length.
    pub unsafe fn silu_mul(g: &[f32], u: &[f32], out: &mut [f32]) {
        let n = out.len();
        assert!(g.len() == n && u.len() == n, "lengths differ");
        let one = _mm256_set1_ps(1.0);
        let lanes = |g: __m256, u: __m256| {
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
            _mm256_mul_ps(_mm256_div_ps(g, _mm256_add_ps(one, e)), u)
        };
        let body = n / 8 * 8;
        for i in (0..body).step_by(8) {
            let y = lanes(
                _mm256_loadu_ps(g.as_ptr().add(i)),
                _mm256_loadu_ps(u.as_ptr().add(i)),
            );
            _mm256_storeu_ps(out.as_mut_ptr().add(i), y);
        }
        if body < n {
            let (mut gt, mut ut, mut yt) = ([0f32; 8], [0f32; 8], [0f32; 8]);
            gt[..n - body].copy_from_slice(&g[body..]);
            ut[..n - body].copy_from_slice(&u[body..]);
            let y = lanes(_mm256_loadu_ps(gt.as_ptr()), _mm256_loadu_ps(ut.as_ptr()));
            _mm256_storeu_ps(yt.as_mut_ptr(), y);
            out[body..].copy_from_slice(&yt[..n - body]);
        }
    }
}

#[cfg(all(test, simd_kernels))]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The fast path against candle's `silu` then the product (libm's `expf`): within 8 ulp
    /// relative (the exponential's 2 ulp carried through the add, the division and the
    /// product), or 1e-30 absolute where the true value is about 0, over gates from −100 to
    /// 100, lengths with and without a tail, and a length that splits into tasks. NaN stays
    /// NaN.
    #[test]
    fn silu_mul_matches_candles_two_ops() -> Result<()> {
        let dev = Device::Cpu;
        for n in [1, 7, 8, 13, 1536 * 4, 3 * CHUNK + 5] {
            let g: Vec<f32> = (0..n)
                .map(|i| -100.0 + 200.0 * ((i * 7919) % n) as f32 / n as f32)
                .collect();
            let u: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) * 0.37).collect();
            let (g, u) = (Tensor::new(g, &dev)?, Tensor::new(u, &dev)?);
            let got = silu_mul(&g, &u)?.expect("applies").to_vec1::<f32>()?;
            let want = (candle_nn::ops::silu(&g)? * &u)?.to_vec1::<f32>()?;
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let tol = (8.0 * f32::EPSILON * b.abs()).max(1e-30);
                assert!((a - b).abs() <= tol, "n = {n}, value {i}: {a} against {b}");
            }
        }
        let nan = Tensor::new(&[f32::NAN, 1.0], &dev)?;
        let y = silu_mul(&nan, &nan.ones_like()?)?.expect("applies");
        assert!(y.to_vec1::<f32>()?[0].is_nan());
        Ok(())
    }

    /// The halves of a fused gate-and-up product (`[b, t, 2f]` narrowed), whose rows are
    /// contiguous but not the whole: the same as candle's ops on them.
    #[test]
    fn fused_halves_take_the_fast_path() -> Result<()> {
        let dev = Device::Cpu;
        for (b, t, f) in [(2, 3, 1536), (1, 1, 20), (3, 16, 2 * CHUNK + 3)] {
            let y = Tensor::randn(0f32, 3.0, (b, t, 2 * f), &dev)?;
            let (g, u) = (y.narrow(2, 0, f)?, y.narrow(2, f, f)?);
            let got = silu_mul(&g, &u)?
                .expect("applies")
                .flatten_all()?
                .to_vec1::<f32>()?;
            let want = (candle_nn::ops::silu(&g)? * &u)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            for (i, (a, b)) in got.iter().zip(&want).enumerate() {
                let tol = (8.0 * f32::EPSILON * b.abs()).max(1e-30);
                assert!((a - b).abs() <= tol, "f = {f}, value {i}: {a} against {b}");
            }
        }
        Ok(())
    }

    #[test]
    fn other_dtypes_and_strided_inputs_take_the_twin() -> Result<()> {
        let dev = Device::Cpu;
        let g = Tensor::ones((2, 4), candle_core::DType::F32, &dev)?;
        assert!(silu_mul(&g.t()?, &g.t()?)?.is_none(), "strided");
        let h = g.to_dtype(candle_core::DType::BF16)?;
        assert!(silu_mul(&h, &h)?.is_none(), "bf16");
        assert!(
            silu_mul(&g, &g.narrow(1, 0, 2)?)?.is_none(),
            "shapes differ"
        );
        Ok(())
    }
}
