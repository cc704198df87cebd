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

/// How the scores are formed and which keys a query sees, beyond causality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct AttentionOptions {
    /// Scores are q·k times this (head_dim^-½ unless the family says otherwise).
    pub scale: f64,
    /// Scores soft-capped as cap·tanh(s / cap), before the mask.
    pub softcap: Option<f32>,
    /// A query at position i sees keys i − window < j ≤ i (itself included).
    pub window: Option<usize>,
}

impl AttentionOptions {
    /// Plain causal attention for heads of `head_dim`.
    pub fn plain(head_dim: usize) -> Self {
        Self {
            scale: 1.0 / (head_dim as f64).sqrt(),
            softcap: None,
            window: None,
        }
    }

    /// Keys a query sees: from `first` (inclusive) to `end` (exclusive), for the query at
    /// position `pos` (0-based, the last key it may see).
    fn visible(&self, pos: usize) -> (usize, usize) {
        let end = pos + 1;
        (self.window.map_or(0, |w| end.saturating_sub(w)), end)
    }
}

/// Attention of q `[b, heads, t, d]` over k/v `[b, kv_heads, total, d]` (any strides; the
/// query block ends at the last key), as `[b, t, heads·d]`. Softmax in f32.
pub(crate) fn attend(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kernels: Kernels,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    if kernels == Kernels::Fast {
        if let Some(y) = direct(q, k, v, opts)? {
            return Ok(y);
        }
    }
    let rep = heads / k.dim(1)?;
    let k = candle_transformers::utils::repeat_kv(k.contiguous()?, rep)?;
    let v = candle_transformers::utils::repeat_kv(v.contiguous()?, rep)?;
    attention(q, &k, &v, kernels, opts)?
        .transpose(1, 2)?
        .reshape((b, t, heads * d))
}

/// Scaled dot-product attention over heads: q `[b, h, t, d]`, k/v `[b, h, T, d]`, causal with
/// the query block ending at the last key. Softmax in f32.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    kernels: Kernels,
    opts: &AttentionOptions,
) -> Result<Tensor> {
    let t = q.dim(2)?;
    let total = k.dim(2)?;
    let dtype = q.dtype();
    let mut scores = (q.matmul(&k.t()?)? * opts.scale)?.to_dtype(DType::F32)?;
    if let Some(cap) = opts.softcap {
        scores = super::decoder::softcap(&scores, cap)?;
    }
    let scores = if t > 1 || opts.window.is_some_and(|w| w < total) {
        let mask = mask(t, total, opts, q.device())?;
        scores.broadcast_add(&mask)?
    } else {
        scores
    };
    let probs = kernels.softmax_last_dim(&scores)?.to_dtype(dtype)?;
    probs.matmul(&v.contiguous()?)
}

/// `[t, total]`: 0 where query i (the block ending at the last key) sees key j, −∞ elsewhere.
fn mask(t: usize, total: usize, opts: &AttentionOptions, device: &Device) -> Result<Tensor> {
    let past = total - t;
    let mask: Vec<f32> = (0..t)
        .flat_map(|i| {
            let (first, end) = opts.visible(past + i);
            (0..total).map(move |j| {
                if (first..end).contains(&j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
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
fn direct(q: &Tensor, k: &Tensor, v: &Tensor, opts: &AttentionOptions) -> Result<Option<Tensor>> {
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
                attend_rows(q, k, v, b, &shape, opts)
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
fn attend_rows(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    b: usize,
    s: &Shape,
    opts: &AttentionOptions,
) -> Vec<f32> {
    let (d, t, heads) = (s.d, s.t, s.heads);
    let mut y = vec![0f32; b * t * heads * d];
    let one = |(i, out): (usize, &mut [f32])| {
        let (bi, ti, h) = (i / (t * heads), i / heads % t, i % heads);
        let (first, end) = opts.visible(s.total - t + ti);
        let kv = bi * s.stride[0] + h / s.group * s.stride[1] + first * s.stride[2];
        let qrow = &q[((bi * heads + h) * t + ti) * d..][..d];
        attend_row(
            qrow,
            &k[kv..],
            &v[kv..],
            s.stride[2],
            end - first,
            opts,
            out,
        );
    };
    if b * t * heads * s.total * d < SERIAL_BELOW {
        y.chunks_mut(d).enumerate().for_each(one);
    } else {
        y.par_chunks_mut(d).enumerate().for_each(one);
    }
    y
}

/// One query row against the first `visible` keys (rows `step` apart from `k` and `v`).
fn attend_row(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    step: usize,
    visible: usize,
    opts: &AttentionOptions,
    out: &mut [f32],
) {
    let d = q.len();
    let scale = opts.scale as f32;
    let mut scores: Vec<f32> = (0..visible)
        .map(|j| dot(q, &k[j * step..][..d]) * scale)
        .collect();
    if let Some(cap) = opts.softcap {
        scores.iter_mut().for_each(|s| *s = cap * (*s / cap).tanh());
    }
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
    /// grouped and plain heads, one and several query rows, one and two sequences, with and
    /// without a scale, soft-capping and sliding windows (a window of 1 sees itself only).
    #[test]
    fn direct_attention_matches_the_general_path() -> Result<()> {
        let dev = Device::Cpu;
        let plain = AttentionOptions::plain(16);
        let options = [
            plain,
            AttentionOptions {
                scale: 0.2,
                softcap: Some(1.5),
                ..plain
            },
            AttentionOptions {
                window: Some(3),
                ..plain
            },
            AttentionOptions {
                window: Some(1),
                softcap: Some(3.0),
                ..plain
            },
        ];
        for (&(b, heads, kv_heads, d), opts) in [(1, 9, 3, 64), (2, 4, 4, 16), (3, 6, 2, 24)]
            .iter()
            .flat_map(|shape| options.iter().map(move |o| (shape, *o)))
        {
            let mut cache = KvCache::new(2, 64);
            let mut past = 0;
            for t in [5usize, 1, 1, 3, 1] {
                let rand = |h: usize| Tensor::randn(0f32, 1.0, (b, h, t, d), &dev);
                let q = rand(heads)?;
                let (k, v) = cache.append(&rand(kv_heads)?, &rand(kv_heads)?)?;
                past += t;
                assert_eq!(k.dim(2)?, past);
                let got = direct(&q, &k, &v, &opts)?.expect("applies");
                let rep = heads / kv_heads;
                let (kr, vr) = (
                    candle_transformers::utils::repeat_kv(k.contiguous()?, rep)?,
                    candle_transformers::utils::repeat_kv(v.contiguous()?, rep)?,
                );
                let want = attention(&q, &kr, &vr, Kernels::Differentiable, &opts)?
                    .transpose(1, 2)?
                    .reshape((b, t, heads * d))?;
                let diff = (got - want)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(
                    diff < 1e-5,
                    "b {b} heads {heads}/{kv_heads} t {t} {opts:?}: {diff}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn long_prompts_and_other_dtypes_take_the_general_path() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 2, DIRECT_MAX_ROWS + 1, 8), DType::F32, &dev)?;
        let plain = AttentionOptions::plain(8);
        assert!(direct(&x, &x, &x, &plain)?.is_none());
        let h = Tensor::zeros((1, 2, 1, 8), DType::BF16, &dev)?;
        assert!(direct(&h, &h, &h, &plain)?.is_none());
        Ok(())
    }
}
