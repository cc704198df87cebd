//! Scaled dot-product attention, causal, with grouped key/value heads.
//!
//! [`attend`] is what the models call. For a few query rows on the CPU (decode steps, batched
//! columns) it reads keys and values in place from the cache's strided views and maps each
//! query head to its key/value head, in one pass per row. The general path ([`attention`],
//! also the twin the tests hold the direct one to) first repeats grouped heads and copies the
//! caches contiguous, then runs about ten tensor ops: per layer and token that is copies of
//! the whole cache and op overheads that cost more than the arithmetic at decode sizes.

use super::Kernels;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Query rows at most for the direct path; prompts go through the general one (matrix
/// products there reuse each key across many queries).
const DIRECT_MAX_ROWS: usize = 16;

/// Multiply-adds below which the direct path stays on the calling thread.
const SERIAL_BELOW: usize = 1 << 18;

/// Attention of q `[b, heads, t, d]` over k/v `[b, kv_heads, total, d]` (any strides; the
/// query block ends at the last key), as `[b, t, heads·d]`. Softmax in f32.
pub(crate) fn attend(q: &Tensor, k: &Tensor, v: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    if kernels == Kernels::Fast {
        if let Some(y) = direct(q, k, v)? {
            return Ok(y);
        }
    }
    let rep = heads / k.dim(1)?;
    let k = candle_transformers::utils::repeat_kv(k.contiguous()?, rep)?;
    let v = candle_transformers::utils::repeat_kv(v.contiguous()?, rep)?;
    attention(q, &k, &v, kernels)?
        .transpose(1, 2)?
        .reshape((b, t, heads * d))
}

/// Scaled dot-product attention over heads: q `[b, h, t, d]`, k/v `[b, h, T, d]`, causal with
/// the query block ending at the last key. Softmax in f32.
pub(crate) fn attention(q: &Tensor, k: &Tensor, v: &Tensor, kernels: Kernels) -> Result<Tensor> {
    let (_, _, t, d) = q.dims4()?;
    let total = k.dim(2)?;
    let dtype = q.dtype();
    let scores = (q.matmul(&k.t()?)? / (d as f64).sqrt())?.to_dtype(DType::F32)?;
    let scores = if t > 1 {
        let mask = causal_mask(t, total, q.device())?;
        scores.broadcast_add(&mask)?
    } else {
        scores
    };
    let probs = kernels.softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}

/// `[t, total]` with −∞ above the diagonal that ends at the last key.
fn causal_mask(t: usize, total: usize, device: &Device) -> Result<Tensor> {
    let past = total - t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| (0..total).map(move |j| if j > past + i { f32::NEG_INFINITY } else { 0.0 }))
        .collect();
    Tensor::from_vec(mask, (t, total), device)
}

/// An f32 CPU tensor's elements from its start offset, with its layout.
fn cpu_f32<R>(x: &Tensor, f: impl FnOnce(&[f32], &Layout) -> R) -> Option<R> {
    let (storage, layout) = x.storage_and_layout();
    match &*storage {
        Storage::Cpu(CpuStorage::F32(data)) => Some(f(&data[layout.start_offset()..], layout)),
        _ => None,
    }
}

/// The direct path, where it applies: f32 on the CPU, a few query rows, unit stride along the
/// head dimension, query heads a multiple of key/value heads.
fn direct(q: &Tensor, k: &Tensor, v: &Tensor) -> Result<Option<Tensor>> {
    let (b, heads, t, d) = q.dims4()?;
    let (_, kv_heads, total, _) = k.dims4()?;
    let applies = q.device().is_cpu()
        && [q.dtype(), k.dtype(), v.dtype()] == [DType::F32; 3]
        && t <= DIRECT_MAX_ROWS
        && t <= total
        && kv_heads > 0
        && heads % kv_heads == 0
        && k.stride()[3] == 1
        && v.stride()[3] == 1
        && k.stride() == v.stride();
    if !applies {
        return Ok(None);
    }
    let q = q.contiguous()?;
    let stride = k.stride().to_vec();
    let out = cpu_f32(&q, |q, _| {
        cpu_f32(k, |k, _| {
            cpu_f32(v, |v, _| {
                let shape = Shape {
                    heads,
                    group: heads / kv_heads,
                    t,
                    total,
                    d,
                    stride: [stride[0], stride[1], stride[2]],
                };
                attend_rows(q, k, v, b, &shape)
            })
        })
    })
    .flatten()
    .flatten();
    out.map(|y| Tensor::from_vec(y, (b, t, heads * d), q.device()))
        .transpose()
}

/// Sizes and the caches' strides (batch, head, position) for [`attend_rows`].
struct Shape {
    heads: usize,
    group: usize,
    t: usize,
    total: usize,
    d: usize,
    stride: [usize; 3],
}

/// Every (batch, query row, head)'s output, written as `[b, t, heads·d]`.
fn attend_rows(q: &[f32], k: &[f32], v: &[f32], b: usize, s: &Shape) -> Vec<f32> {
    let (d, t, heads) = (s.d, s.t, s.heads);
    let mut y = vec![0f32; b * t * heads * d];
    let one = |(i, out): (usize, &mut [f32])| {
        let (bi, ti, h) = (i / (t * heads), i / heads % t, i % heads);
        let kv = bi * s.stride[0] + h / s.group * s.stride[1];
        let visible = s.total - t + ti + 1;
        let qrow = &q[((bi * heads + h) * t + ti) * d..][..d];
        attend_row(qrow, &k[kv..], &v[kv..], s.stride[2], visible, out);
    };
    if b * t * heads * s.total * d < SERIAL_BELOW {
        y.chunks_mut(d).enumerate().for_each(one);
    } else {
        y.par_chunks_mut(d).enumerate().for_each(one);
    }
    y
}

/// One query row against the first `visible` keys (rows `step` apart from `k` and `v`).
fn attend_row(q: &[f32], k: &[f32], v: &[f32], step: usize, visible: usize, out: &mut [f32]) {
    let d = q.len();
    let scale = 1.0 / (d as f32).sqrt();
    let mut scores: Vec<f32> = (0..visible)
        .map(|j| dot(q, &k[j * step..][..d]) * scale)
        .collect();
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    out.fill(0.0);
    for (j, p) in scores.iter().enumerate() {
        let p = p / sum;
        for (o, x) in out.iter_mut().zip(&v[j * step..][..d]) {
            *o += p * x;
        }
    }
}

/// Eight partial sums, so the compiler vectorises it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::kv_cache::KvCache;

    /// The direct path against the general one, reading from a cache's strided views, for
    /// grouped and plain heads, one and several query rows, one and two sequences.
    #[test]
    fn direct_attention_matches_the_general_path() -> Result<()> {
        let dev = Device::Cpu;
        for &(b, heads, kv_heads, d) in &[(1, 9, 3, 64), (2, 4, 4, 16), (3, 6, 2, 24)] {
            let mut cache = KvCache::new(2, 64);
            let mut past = 0;
            for t in [5usize, 1, 1, 3, 1] {
                let rand = |h: usize| Tensor::randn(0f32, 1.0, (b, h, t, d), &dev);
                let q = rand(heads)?;
                let (k, v) = cache.append(&rand(kv_heads)?, &rand(kv_heads)?)?;
                past += t;
                assert_eq!(k.dim(2)?, past);
                let got = direct(&q, &k, &v)?.expect("applies");
                let rep = heads / kv_heads;
                let (kr, vr) = (
                    candle_transformers::utils::repeat_kv(k.contiguous()?, rep)?,
                    candle_transformers::utils::repeat_kv(v.contiguous()?, rep)?,
                );
                let want = attention(&q, &kr, &vr, Kernels::Differentiable)?
                    .transpose(1, 2)?
                    .reshape((b, t, heads * d))?;
                let diff = (got - want)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(diff < 1e-5, "b {b} heads {heads}/{kv_heads} t {t}: {diff}");
            }
        }
        Ok(())
    }

    #[test]
    fn long_prompts_and_other_dtypes_take_the_general_path() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, DIRECT_MAX_ROWS + 1, 8), DType::F32, &dev)?;
        assert!(direct(&x, &x, &x)?.is_none());
        let h = Tensor::zeros((1, 2, 1, 8), DType::BF16, &dev)?;
        assert!(direct(&h, &h, &h)?.is_none());
        Ok(())
    }
}
