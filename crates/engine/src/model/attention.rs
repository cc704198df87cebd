//! Scaled dot-product attention, causal, with grouped key/value heads.
//!
//! [`attend`] is what the models call. For a few query rows on the CPU (decode steps, batched
//! columns) it reads keys and values in place from the cache's strided views and maps each
//! query head to its key/value head, in one pass per row and group of query heads that share
//! a key/value head (each key and value row is read once for the group). The general path
//! ([`attention`], also the twin the tests hold the direct one to) first repeats grouped heads
//! and copies the caches contiguous, then runs about ten tensor ops: per layer and token that
//! is copies of the whole cache and op overheads that cost more than the arithmetic at decode
//! sizes.

use super::Kernels;
use candle_core::{CpuStorage, DType, Device, Layout, Result, Storage, Tensor};
use rayon::prelude::*;

/// Query rows at most for the direct path; prompts go through the general one (matrix
/// products there reuse each key across many queries).
const DIRECT_MAX_ROWS: usize = 16;

/// Multiply-adds below which the direct path stays on the calling thread. Decode steps keep
/// the pool's workers spinning ([`crate::threads::BusyWorkers`]), so a split costs a steal
/// rather than a wake-up: from 2^18 down to 2^14, four batched columns' steps on SmolLM2 Q4_1
/// took 9.5–9.7 instead of 10.6–10.9 ms (`bench step --k 4 --prompt-tokens 16`).
const SERIAL_BELOW: usize = 1 << 14;

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

/// Every (batch, query row, key/value head)'s group of query heads, written as `[b, t,
/// heads·d]` (a group's heads are adjacent there). A group shares its keys and values, so each
/// key row is read once for all its heads. Where that leaves too few tasks to spread over the
/// threads (one row's three groups on two threads), a task takes one head; each head's
/// arithmetic is the same either way, so the split does not change the bits.
fn attend_rows(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    b: usize,
    s: &Shape,
    opts: &AttentionOptions,
) -> Vec<f32> {
    let (d, t, heads, group) = (s.d, s.t, s.heads, s.group);
    let mut y = vec![0f32; b * t * heads * d];
    let serial = b * t * heads * s.total * d < SERIAL_BELOW;
    let per_task = if serial || b * t * (heads / group) >= 4 * rayon::current_num_threads() {
        group
    } else {
        1
    };
    let tasks_per_row = heads / per_task;
    let one = |(i, out): (usize, &mut [f32])| {
        let (bi, ti) = (i / (t * tasks_per_row), i / tasks_per_row % t);
        let h = i % tasks_per_row * per_task;
        let (first, end) = opts.visible(s.total - t + ti);
        let kv = bi * s.stride[0] + h / group * s.stride[1] + first * s.stride[2];
        // q is `[b, heads, t, d]`: the task's heads are t·d apart.
        let q = &q[((bi * heads + h) * t + ti) * d..];
        let keys = Keys {
            k: &k[kv..],
            v: &v[kv..],
            step: s.stride[2],
            visible: end - first,
            d,
        };
        attend_group(q, t * d, &keys, opts, out);
    };
    if serial {
        y.chunks_mut(per_task * d).enumerate().for_each(one);
    } else {
        y.par_chunks_mut(per_task * d).enumerate().for_each(one);
    }
    y
}

/// The keys and values one query row sees: `visible` rows of `d` values, `step` apart.
struct Keys<'a> {
    k: &'a [f32],
    v: &'a [f32],
    step: usize,
    visible: usize,
    d: usize,
}

/// The query heads of one group (rows `q_stride` apart in `q`) against their keys; `out` holds
/// the heads' outputs one after another.
fn attend_group(q: &[f32], q_stride: usize, keys: &Keys, opts: &AttentionOptions, out: &mut [f32]) {
    let (d, visible) = (keys.d, keys.visible);
    let group = out.len() / d;
    let scale = opts.scale as f32;
    let mut scores = vec![0f32; group * visible];
    group_scores(q, q_stride, keys, scale, &mut scores);
    for (s, out) in scores.chunks_mut(visible.max(1)).zip(out.chunks_mut(d)) {
        if let Some(cap) = opts.softcap {
            s.iter_mut().for_each(|s| *s = cap * (*s / cap).tanh());
        }
        let sum = softmax_weights(s);
        weighted_rows(s, keys.v, keys.step, out);
        out.iter_mut().for_each(|o| *o /= sum);
    }
}

/// `scores[h·visible + j] = (q_h · k_j)·scale` for the group's heads `h` (rows `q_stride` apart
/// in `q`) and the visible keys `j`.
fn group_scores(q: &[f32], q_stride: usize, keys: &Keys, scale: f32, scores: &mut [f32]) {
    let (d, visible) = (keys.d, keys.visible);
    if visible == 0 {
        return;
    }
    let group = scores.len() / visible;
    assert!(
        (group - 1) * q_stride + d <= q.len() && (visible - 1) * keys.step + d <= keys.k.len(),
        "queries or keys out of range"
    );
    #[cfg(simd_kernels)]
    if d.is_multiple_of(16) && crate::weights::few_rows::has_avx512() {
        // SAFETY: the CPU has AVX-512 F; every row read holds d values (above).
        unsafe { simd512::group_scores(q, q_stride, keys, scale, scores) };
        return;
    }
    group_scores_by_key(q, q_stride, keys, scale, scores);
}

/// [`group_scores`] one key and one head at a time: the twin the blocked kernel is held to.
fn group_scores_by_key(q: &[f32], q_stride: usize, keys: &Keys, scale: f32, scores: &mut [f32]) {
    let (d, visible) = (keys.d, keys.visible);
    let group = scores.len() / visible.max(1);
    for j in 0..visible {
        let key = &keys.k[j * keys.step..][..d];
        for h in 0..group {
            scores[h * visible + j] = dot(&q[h * q_stride..][..d], key) * scale;
        }
    }
}

/// `s[j] = exp(s[j] − max s)`; returns their sum.
fn softmax_weights(s: &mut [f32]) -> f32 {
    #[cfg(simd_kernels)]
    // SAFETY: AVX2 and FMA are the build's target.
    unsafe {
        simd::softmax_weights(s)
    }
    #[cfg(not(simd_kernels))]
    {
        let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for s in s.iter_mut() {
            *s = (*s - max).exp();
            sum += *s;
        }
        sum
    }
}

/// `out = Σ_j p[j]·v[j·step..][..d]`.
fn weighted_rows(p: &[f32], v: &[f32], step: usize, out: &mut [f32]) {
    weighted_rows_on(p, v, step, out, true);
}

/// [`weighted_rows`], on 512-bit registers where `wide` and the CPU has them.
fn weighted_rows_on(p: &[f32], v: &[f32], step: usize, out: &mut [f32], wide: bool) {
    #[cfg(simd_kernels)]
    let wide = wide && crate::weights::few_rows::has_avx512();
    #[cfg(not(simd_kernels))]
    let _ = wide;
    let d = out.len();
    assert!(
        p.is_empty() || (p.len() - 1) * step + d <= v.len(),
        "values out of range"
    );
    #[allow(unused_mut)]
    let mut c = 0;
    #[cfg(simd_kernels)]
    if wide {
        // SAFETY: the CPU has AVX-512 F; every row read holds d values (above).
        unsafe {
            while c + 64 <= d {
                simd512::weighted::<4>(p, v, step, c, out);
                c += 64;
            }
            while c + 16 <= d {
                simd512::weighted::<1>(p, v, step, c, out);
                c += 16;
            }
        }
    }
    #[cfg(simd_kernels)]
    // SAFETY: AVX2 and FMA are the build's target; every row read holds d values (above).
    unsafe {
        while c + 32 <= d {
            simd::weighted::<4>(p, v, step, c, out);
            c += 32;
        }
        while c + 8 <= d {
            simd::weighted::<1>(p, v, step, c, out);
            c += 8;
        }
    }
    for (i, o) in out.iter_mut().enumerate().skip(c) {
        *o = p
            .iter()
            .enumerate()
            .fold(0.0, |s, (j, p)| p.mul_add(v[j * step + i], s));
    }
}

/// `Σ a[i]·b[i]`.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(simd_kernels)]
    // SAFETY: AVX2 and FMA are the build's target.
    unsafe {
        simd::dot(a, b)
    }
    #[cfg(not(simd_kernels))]
    a.iter().zip(b).fold(0.0, |s, (x, y)| x.mul_add(*y, s))
}

/// The direct path's inner loops in AVX2 registers. Written out, since the compiler kept the
/// sums of the same loops in plain Rust on the stack.
#[cfg(simd_kernels)]
mod simd {
    use crate::model::vector_exp::exp;
    use std::arch::x86_64::*;

    /// Two 8-lane sums, sixteen values at a time (consecutive chunks do not wait on each
    /// other's adds), then the rest one at a time.
    #[inline(always)]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let d = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        while i + 16 <= d {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                s1,
            );
            i += 16;
        }
        if i + 8 <= d {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let mut sum = hsum(_mm256_add_ps(s0, s1));
        while i < d {
            sum = a[i].mul_add(b[i], sum);
            i += 1;
        }
        sum
    }

    /// The sum of a register's eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        _mm_cvtss_f32(_mm_add_ss(h, _mm_shuffle_ps(h, h, 1)))
    }

    /// [`super::softmax_weights`] eight scores at a time: the maximum, each exponential and
    /// the sum in vector registers (one score at a time, each step waited on the last one's
    /// compare or add, and libm's `expf` took half of a long context's attention).
    #[inline(always)]
    pub unsafe fn softmax_weights(s: &mut [f32]) -> f32 {
        let n = s.len();
        let body = n / 8 * 8;
        let p = s.as_mut_ptr();
        let mut max = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..body).step_by(8) {
            max = _mm256_max_ps(max, _mm256_loadu_ps(p.add(i)));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(max), _mm256_extractf128_ps(max, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
        let max = s[body..].iter().fold(_mm_cvtss_f32(m), |a, &b| a.max(b));
        let shift = _mm256_set1_ps(max);
        let mut sum = _mm256_setzero_ps();
        for i in (0..body).step_by(8) {
            let e = exp(_mm256_sub_ps(_mm256_loadu_ps(p.add(i)), shift));
            _mm256_storeu_ps(p.add(i), e);
            sum = _mm256_add_ps(sum, e);
        }
        let mut total = hsum(sum);
        if body < n {
            // The last few through the same exponential, in a padded register.
            let mut tail = [0f32; 8];
            tail[..n - body].copy_from_slice(&s[body..]);
            let mut e = [0f32; 8];
            _mm256_storeu_ps(
                e.as_mut_ptr(),
                exp(_mm256_sub_ps(_mm256_loadu_ps(tail.as_ptr()), shift)),
            );
            s[body..].copy_from_slice(&e[..n - body]);
            total += e[..n - body].iter().sum::<f32>();
        }
        total
    }

    /// `out[c..c + 8·N] = Σ_j p[j]·v[j·step + c..][..8·N]`, even and odd keys in separate
    /// sums: two independent chains per lane, each key's adds not waiting on the last one's.
    #[inline(always)]
    pub unsafe fn weighted<const N: usize>(
        p: &[f32],
        v: &[f32],
        step: usize,
        c: usize,
        out: &mut [f32],
    ) {
        let (mut even, mut odd) = ([_mm256_setzero_ps(); N], [_mm256_setzero_ps(); N]);
        let row = |j: usize| v.as_ptr().add(j * step + c);
        let add = |acc: &mut [__m256; N], pj: f32, r: *const f32| {
            let w = _mm256_set1_ps(pj);
            for (n, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(r.add(8 * n)), *a);
            }
        };
        let mut pairs = p.chunks_exact(2);
        let mut j = 0;
        for pair in pairs.by_ref() {
            add(&mut even, pair[0], row(j));
            add(&mut odd, pair[1], row(j + 1));
            j += 2;
        }
        if let [last] = pairs.remainder() {
            add(&mut even, *last, row(j));
        }
        for n in 0..N {
            let sum = _mm256_add_ps(even[n], odd[n]);
            _mm256_storeu_ps(out.as_mut_ptr().add(c + 8 * n), sum);
        }
    }
}

/// The direct path's two hot loops on 512-bit registers, for CPUs that have them. Each lane does
/// the arithmetic of the AVX2 loops above in the same order, so the bits are theirs (held by
/// tests): a 16-lane sum of a dot is the AVX2 loop's two 8-lane sums side by side, and the
/// reduction keeps their tree.
#[cfg(simd_kernels)]
mod simd512 {
    use super::Keys;
    use std::arch::x86_64::*;

    /// Keys scored together: each loaded chunk of a key serves every head of the pass, and each
    /// head's chunk every key of the block.
    const KEYS: usize = 4;

    /// [`super::group_scores`] for `d` a multiple of 16: heads in passes of up to four.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn group_scores(
        q: &[f32],
        q_stride: usize,
        keys: &Keys,
        scale: f32,
        out: &mut [f32],
    ) {
        let group = out.len() / keys.visible;
        let mut h = 0;
        while h < group {
            let q = q.as_ptr().add(h * q_stride);
            let out = &mut out[h * keys.visible..];
            h += match group - h {
                1 => pass::<1>(q, q_stride, keys, scale, out),
                2 => pass::<2>(q, q_stride, keys, scale, out),
                3 => pass::<3>(q, q_stride, keys, scale, out),
                _ => pass::<4>(q, q_stride, keys, scale, out),
            };
        }
    }

    /// `H` heads against every visible key, [`KEYS`] keys at a time; returns `H`.
    #[inline(always)]
    unsafe fn pass<const H: usize>(
        q: *const f32,
        q_stride: usize,
        keys: &Keys,
        scale: f32,
        out: &mut [f32],
    ) -> usize {
        let (d, visible) = (keys.d, keys.visible);
        let key = |j: usize, c: usize| _mm512_loadu_ps(keys.k.as_ptr().add(j * keys.step + c));
        let mut j = 0;
        while j < visible {
            let n = (visible - j).min(KEYS);
            let mut acc = [[_mm512_setzero_ps(); KEYS]; H];
            for c in (0..d).step_by(16) {
                let k: [__m512; KEYS] = std::array::from_fn(|b| key(j + b.min(n - 1), c));
                for (h, acc) in acc.iter_mut().enumerate() {
                    let qh = _mm512_loadu_ps(q.add(h * q_stride + c));
                    for (a, k) in acc.iter_mut().zip(&k) {
                        *a = _mm512_fmadd_ps(qh, *k, *a);
                    }
                }
            }
            for (h, acc) in acc.iter().enumerate() {
                let sums = sum4(acc);
                for (b, s) in sums[..n].iter().enumerate() {
                    out[h * visible + j + b] = s * scale;
                }
            }
            j += n;
        }
        H
    }

    /// The sums of four registers' sixteen lanes, each in the AVX2 dot's order: the two 8-lane
    /// halves added, then their two 4-lane halves, then lanes (0 + 2) + (1 + 3).
    #[inline(always)]
    unsafe fn sum4(a: &[__m512; KEYS]) -> [f32; KEYS] {
        // [a0 lo256 + hi256 | a1 lo256 + hi256], and the same for a2, a3.
        let t01 = _mm512_add_ps(
            _mm512_shuffle_f32x4(a[0], a[1], 0x44),
            _mm512_shuffle_f32x4(a[0], a[1], 0xEE),
        );
        let t23 = _mm512_add_ps(
            _mm512_shuffle_f32x4(a[2], a[3], 0x44),
            _mm512_shuffle_f32x4(a[2], a[3], 0xEE),
        );
        // 128-bit lane i: register i's low 128 + high 128 of its 8-lane sum.
        let h = _mm512_add_ps(
            _mm512_shuffle_f32x4(t01, t23, 0x88),
            _mm512_shuffle_f32x4(t01, t23, 0xDD),
        );
        // Lanes (0 + 2, 1 + 3), then their sum in lane 0 of each 128 bits.
        let h = _mm512_add_ps(h, _mm512_permute_ps(h, 0xEE));
        let h = _mm512_add_ps(h, _mm512_permute_ps(h, 0x01));
        let mut lanes = [0f32; 16];
        _mm512_storeu_ps(lanes.as_mut_ptr(), h);
        [lanes[0], lanes[4], lanes[8], lanes[12]]
    }

    /// `out[c..c + 16·N]` as [`super::simd::weighted`] computes it, 16 columns a register.
    #[target_feature(enable = "avx2,fma,avx512f")]
    pub unsafe fn weighted<const N: usize>(
        p: &[f32],
        v: &[f32],
        step: usize,
        c: usize,
        out: &mut [f32],
    ) {
        let (mut even, mut odd) = ([_mm512_setzero_ps(); N], [_mm512_setzero_ps(); N]);
        let row = |j: usize| v.as_ptr().add(j * step + c);
        let add = |acc: &mut [__m512; N], pj: f32, r: *const f32| {
            let w = _mm512_set1_ps(pj);
            for (n, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(r.add(16 * n)), *a);
            }
        };
        let mut pairs = p.chunks_exact(2);
        let mut j = 0;
        for pair in pairs.by_ref() {
            add(&mut even, pair[0], row(j));
            add(&mut odd, pair[1], row(j + 1));
            j += 2;
        }
        if let [last] = pairs.remainder() {
            add(&mut even, *last, row(j));
        }
        for n in 0..N {
            let sum = _mm512_add_ps(even[n], odd[n]);
            _mm512_storeu_ps(out.as_mut_ptr().add(c + 16 * n), sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::kv_cache::KvCache;

    /// The direct path against the general one, reading from a cache's strided views, for
    /// grouped and plain heads, one and several query rows, one and two sequences, with and
    /// without a scale, soft-capping and sliding windows (a window of 1 sees itself only), and
    /// head sizes that are and are not whole vector registers.
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
        for (&(b, heads, kv_heads, d), opts) in
            [(1, 9, 3, 64), (2, 4, 4, 16), (3, 6, 2, 24), (1, 4, 2, 20)]
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

    /// A query row's output is the same bits alone as among other sequences and other rows
    /// of its block (batched columns and resumed sweeps rely on it). The cache is long enough
    /// that both run in parallel: the block a group of heads a task, a row alone (two groups)
    /// one head a task.
    #[test]
    fn a_rows_attention_does_not_depend_on_its_batch() -> Result<()> {
        let dev = Device::Cpu;
        let (b, heads, kv_heads, d, t) = (3, 6, 2, 72, 4);
        let opts = AttentionOptions::plain(d);
        let mut cache = KvCache::new(2, 1024);
        let rand = |h: usize, t: usize| Tensor::randn(0f32, 1.0, (b, h, t, d), &dev);
        cache.append(&rand(kv_heads, 700)?, &rand(kv_heads, 700)?)?;
        let q = rand(heads, t)?;
        let (k, v) = cache.append(&rand(kv_heads, t)?, &rand(kv_heads, t)?)?;
        let total = k.dim(2)?;
        let all = direct(&q, &k, &v, &opts)?.expect("applies");
        for bi in 0..b {
            for ti in 0..t {
                let seen = total - t + ti + 1;
                let one = |x: &Tensor| x.narrow(0, bi, 1);
                let (kr, vr) = (one(&k)?.narrow(2, 0, seen)?, one(&v)?.narrow(2, 0, seen)?);
                let alone = direct(&one(&q)?.narrow(2, ti, 1)?, &kr, &vr, &opts)?.expect("applies");
                let want = all.narrow(0, bi, 1)?.narrow(1, ti, 1)?;
                assert_eq!(
                    alone.flatten_all()?.to_vec1::<f32>()?,
                    want.flatten_all()?.to_vec1::<f32>()?,
                    "sequence {bi} row {ti}"
                );
            }
        }
        Ok(())
    }

    fn has_wide_registers() -> bool {
        #[cfg(simd_kernels)]
        return crate::weights::few_rows::has_avx512();
        #[cfg(not(simd_kernels))]
        false
    }

    /// The blocked scores and the 512-bit weighted sums are the one-key-at-a-time AVX2 loops'
    /// bits, for every group size, head size (whole 512-bit registers or not) and count of keys
    /// (whole blocks of four or not), on keys and heads that are rows of longer strides.
    #[test]
    fn wide_attention_loops_are_the_narrow_ones_bit_for_bit() {
        if !has_wide_registers() {
            // Both sides would be the narrow loops.
            crate::shapes::skip(
                "this CPU has no AVX-512 to compare the wide loops on",
                "LERPSCOPE_REQUIRE_AVX512",
            );
            return;
        }
        let mut seed = 7u64;
        let mut rand = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        };
        for d in [16, 24, 64, 80, 128] {
            for group in 1..=8 {
                for visible in [1, 2, 3, 4, 5, 7, 33] {
                    let (q_stride, step) = (d + 8, d + 16);
                    let q = rand(group * q_stride);
                    let (k, v) = (rand(visible * step), rand(visible * step));
                    let keys = Keys {
                        k: &k,
                        v: &v,
                        step,
                        visible,
                        d,
                    };
                    let (mut fast, mut twin) =
                        (vec![0f32; group * visible], vec![0f32; group * visible]);
                    group_scores(&q, q_stride, &keys, 0.125, &mut fast);
                    group_scores_by_key(&q, q_stride, &keys, 0.125, &mut twin);
                    let bits = |x: &[f32]| x.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&fast),
                        bits(&twin),
                        "scores d {d} group {group} keys {visible}"
                    );
                    let p = &fast[..visible];
                    let (mut wide, mut narrow) = (vec![0f32; d], vec![0f32; d]);
                    weighted_rows_on(p, &v, step, &mut wide, true);
                    weighted_rows_on(p, &v, step, &mut narrow, false);
                    assert_eq!(bits(&wide), bits(&narrow), "values d {d} keys {visible}");
                }
            }
        }
    }

    /// Prompts longer than the direct path takes, and dtypes other than f32, go the general way.
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
