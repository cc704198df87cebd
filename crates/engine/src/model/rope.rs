//! RoPE as the decoder runs it: each RoPE's inverse frequencies (HF's rotate-half layout),
//! how they change once a sequence outgrows the pre-training context (dynamic NTK, LongRoPE's
//! long factors), the attention factor that scales cos and sin (YaRN, LongRoPE), and the
//! leading part of each head that rotates (partial rotary). Computed as transformers computes
//! them, in f32 where it uses f32.

use super::Kernels;
use crate::formats::config::{LongRope, Rope, RopeScaling, Yarn};
use candle_core::{DType, Device, Result, Tensor};

/// One RoPE's frequencies.
struct Frequencies {
    /// `[1, rotary_dim / 2]` (f32) at the start of a sequence.
    inv_freq: Tensor,
    /// cos and sin are multiplied by it; 1 for most scalings.
    attention_factor: f32,
    growth: Option<Growth>,
}

/// How frequencies change for a forward pass that reaches past `original` positions. Keys
/// already cached keep theirs, as in transformers.
enum Growth {
    /// Dynamic NTK: the base grows with the sequence's length.
    Dynamic {
        theta: f32,
        factor: f32,
        original: usize,
    },
    /// LongRoPE: the long factors' frequencies replace the short ones'.
    Long { inv_freq: Tensor, original: usize },
}

/// The decoder's RoPEs: the full layers' first and, where they differ, the sliding ones'.
pub(super) struct Rotary {
    ropes: Vec<Frequencies>,
    /// Leading dimensions of each head that rotate (all of them but with partial rotary).
    dim: usize,
    head_dim: usize,
    /// Pairs (2i, 2i + 1) turn together rather than (i, i + dim/2).
    interleaved: bool,
}

impl Rotary {
    /// `factors`: the per-frequency divisors a GGUF gave for the full layers' RoPE.
    /// `max_positions`: the model's context, against which YaRN and LongRoPE scale.
    pub(super) fn new(
        ropes: &[&Rope],
        factors: Option<&[f32]>,
        head_dim: usize,
        rotary_dim: usize,
        interleaved: bool,
        max_positions: usize,
        device: &Device,
    ) -> Result<Self> {
        let ropes = ropes
            .iter()
            .enumerate()
            .map(|(i, rope)| {
                let factors = if i == 0 { factors } else { None };
                frequencies(rope, factors, rotary_dim, max_positions, device)
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            ropes,
            dim: rotary_dim,
            head_dim,
            interleaved,
        })
    }

    /// How many RoPEs there are (a layer names one by its index).
    pub(super) fn len(&self) -> usize {
        self.ropes.len()
    }

    /// Whether this is Llama's plain RoPE over whole heads (with dynamic scaling at most): what
    /// the fused GPU pass implements.
    #[cfg(feature = "cuda")]
    pub(super) fn plain(&self) -> bool {
        self.ropes.len() == 1
            && self.dim == self.head_dim
            && !self.interleaved
            && self.ropes[0].attention_factor == 1.0
            && !matches!(self.ropes[0].growth, Some(Growth::Long { .. }))
    }

    /// The first RoPE's starting frequencies and whether they grow dynamically.
    #[cfg(feature = "cuda")]
    pub(super) fn first(&self) -> (&Tensor, bool) {
        let r = &self.ropes[0];
        (
            &r.inv_freq,
            matches!(r.growth, Some(Growth::Dynamic { .. })),
        )
    }

    /// cos and sin `[t, rotary_dim / 2]` of RoPE `which` at positions `pos..pos + t`, in `act`.
    pub(super) fn angles(
        &self,
        which: usize,
        pos: usize,
        t: usize,
        act: DType,
    ) -> Result<(Tensor, Tensor)> {
        let r = &self.ropes[which];
        let device = r.inv_freq.device();
        let grown;
        let inv_freq = match &r.growth {
            Some(Growth::Dynamic {
                theta,
                factor,
                original,
            }) if pos + t > *original => {
                let f = dynamic_frequencies(*theta, self.dim, *factor, *original, pos + t);
                let n = f.len();
                grown = Tensor::from_vec(f, (1, n), device)?;
                &grown
            }
            Some(Growth::Long { inv_freq, original }) if pos + t > *original => inv_freq,
            _ => &r.inv_freq,
        };
        let positions = Tensor::arange(pos as u32, (pos + t) as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((t, 1))?;
        let freqs = positions.matmul(inv_freq)?;
        let (mut cos, mut sin) = (freqs.cos()?, freqs.sin()?);
        if r.attention_factor != 1.0 {
            cos = (cos * r.attention_factor as f64)?;
            sin = (sin * r.attention_factor as f64)?;
        }
        Ok((cos.to_dtype(act)?, sin.to_dtype(act)?))
    }

    /// `x [b, heads, t, head_dim]` (contiguous) rotated: its leading `rotary_dim` dimensions
    /// of each head, the rest as they are.
    pub(super) fn apply(
        &self,
        k: Kernels,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
    ) -> Result<Tensor> {
        if self.dim == self.head_dim {
            return k.rope(x, cos, sin, self.interleaved);
        }
        let part = x.narrow(3, 0, self.dim)?.contiguous()?;
        let rotated = k.rope(&part, cos, sin, self.interleaved)?;
        let kept = x.narrow(3, self.dim, self.head_dim - self.dim)?;
        Tensor::cat(&[&rotated, &kept], 3)?.contiguous()
    }
}

/// One RoPE's frequencies at the start of a sequence, with the divisors a GGUF gave and the
/// scaling applied.
fn frequencies(
    rope: &Rope,
    factors: Option<&[f32]>,
    dim: usize,
    max_positions: usize,
    device: &Device,
) -> Result<Frequencies> {
    let tensor = |f: Vec<f32>| {
        let n = f.len();
        Tensor::from_vec(f, (1, n), device)
    };
    let mut inv_freq = base_frequencies(rope.theta, dim);
    if let Some(factors) = factors {
        inv_freq.iter_mut().zip(factors).for_each(|(f, d)| *f /= d);
    }
    let (mut attention_factor, mut growth) = (1.0, None);
    match &rope.scaling {
        Some(RopeScaling::Linear { factor }) => inv_freq.iter_mut().for_each(|f| *f /= factor),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let original = *original_max_position_embeddings as f32;
            let low_wavelen = original / low_freq_factor;
            let high_wavelen = original / high_freq_factor;
            for f in inv_freq.iter_mut() {
                let wavelen = 2.0 * std::f32::consts::PI / *f;
                *f = if wavelen < high_wavelen {
                    *f
                } else if wavelen > low_wavelen {
                    *f / factor
                } else {
                    let smooth = (original / wavelen - low_freq_factor)
                        / (high_freq_factor - low_freq_factor);
                    (1.0 - smooth) * *f / factor + smooth * *f
                };
            }
        }
        Some(RopeScaling::Dynamic { factor }) => {
            growth = Some(Growth::Dynamic {
                theta: rope.theta,
                factor: *factor,
                original: max_positions,
            })
        }
        Some(RopeScaling::Yarn(y)) => {
            let (f, a) = yarn_frequencies(y, rope.theta, dim, max_positions);
            inv_freq = f;
            attention_factor = a;
        }
        Some(RopeScaling::LongRope(l)) => {
            let (short, long, a, original) =
                longrope_frequencies(l, rope.theta, dim, max_positions);
            inv_freq = short;
            attention_factor = a;
            growth = Some(Growth::Long {
                inv_freq: tensor(long)?,
                original,
            });
        }
        None => {}
    }
    Ok(Frequencies {
        inv_freq: tensor(inv_freq)?,
        attention_factor,
        growth,
    })
}

/// RoPE's inverse frequencies for HF's rotate-half layout: `1 / θ^(i / d)` for even i < d.
fn base_frequencies(theta: f32, dim: usize) -> Vec<f32> {
    (0..dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f32 / dim as f32))
        .collect()
}

/// Dynamic NTK scaling as transformers does it: once a sequence reaches `seq_len` positions
/// past `original`, the base becomes θ·(f·seq_len/original − (f − 1))^(d/(d−2)).
fn dynamic_frequencies(
    theta: f32,
    dim: usize,
    factor: f32,
    original: usize,
    seq_len: usize,
) -> Vec<f32> {
    let (f, d) = (factor as f64, dim as f64);
    let grown =
        theta as f64 * (f * seq_len as f64 / original as f64 - (f - 1.0)).powf(d / (d - 2.0));
    base_frequencies(grown as f32, dim)
}

/// YaRN's `mscale`: 0.1·m·ln(s) + 1, or 1 where s ≤ 1.
fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// YaRN's frequencies and attention factor (transformers' `_compute_yarn_parameters`).
pub(crate) fn yarn_frequencies(
    y: &Yarn,
    theta: f32,
    dim: usize,
    max_positions: usize,
) -> (Vec<f32>, f32) {
    let (original, factor) = (y.original(max_positions), y.factor(max_positions));
    let attention = match (y.attention_factor, y.mscale, y.mscale_all_dim) {
        (Some(a), _, _) => a as f64,
        (None, Some(m), Some(all)) => {
            yarn_mscale(factor, m as f64) / yarn_mscale(factor, all as f64)
        }
        _ => yarn_mscale(factor, 1.0),
    };
    let (beta_fast, beta_slow) = (
        y.beta_fast.map_or(32.0, f64::from),
        y.beta_slow.map_or(1.0, f64::from),
    );
    let (d, base) = (dim as f64, theta as f64);
    // The dimension at which a frequency turns `rotations` times over the original context.
    let correction = |rotations: f64| {
        d * (original as f64 / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
    };
    let (mut low, mut high) = (correction(beta_fast), correction(beta_slow));
    if y.truncate {
        (low, high) = (low.floor(), high.ceil());
    }
    let (low, mut high) = (low.max(0.0) as f32, high.min(d - 1.0) as f32);
    if low == high {
        high += 0.001;
    }
    let factor = factor as f32;
    let freqs = (0..dim / 2)
        .map(|i| {
            let pos_freq = theta.powf((2 * i) as f32 / dim as f32);
            let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
            let extrapolation = 1.0 - ramp;
            (1.0 / (factor * pos_freq)) * (1.0 - extrapolation) + (1.0 / pos_freq) * extrapolation
        })
        .collect();
    (freqs, attention as f32)
}

/// LongRoPE's short and long frequencies, attention factor and pre-training context
/// (transformers' `_compute_longrope_parameters`).
pub(crate) fn longrope_frequencies(
    l: &LongRope,
    theta: f32,
    dim: usize,
    max_positions: usize,
) -> (Vec<f32>, Vec<f32>, f32, usize) {
    let (original, attention) = (l.original(max_positions), l.attention_factor(max_positions));
    let with = |ext: &[f32]| {
        (0..dim / 2)
            .zip(ext)
            .map(|(i, e)| 1.0 / (e * theta.powf((2 * i) as f32 / dim as f32)))
            .collect()
    };
    (
        with(&l.short_factor),
        with(&l.long_factor),
        attention as f32,
        original,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GLM's partial interleaved RoPE, both kernels, against the formula written out: of each
    /// head's 8 dimensions the leading 4 turn in pairs (0, 1) and (2, 3) at θ = 100's two
    /// frequencies, the rest pass through.
    #[test]
    fn interleaved_partial_rope_turns_adjacent_pairs() {
        let (head_dim, dim, theta) = (8, 4, 100f32);
        let rope = Rope {
            theta,
            scaling: None,
        };
        let rotary = Rotary::new(&[&rope], None, head_dim, dim, true, 256, &Device::Cpu).unwrap();
        let (heads, t, pos) = (2, 3, 5);
        let xs: Vec<f32> = (0..heads * t * head_dim)
            .map(|i| ((i * 7919) % 97) as f32 / 48.5 - 1.0)
            .collect();
        let x = Tensor::from_vec(xs.clone(), (1, heads, t, head_dim), &Device::Cpu).unwrap();
        let (cos, sin) = rotary.angles(0, pos, t, DType::F32).unwrap();
        let mut want = xs.clone();
        for h in 0..heads {
            for p in 0..t {
                let row = (h * t + p) * head_dim;
                for j in 0..dim / 2 {
                    let angle =
                        (pos + p) as f64 * (theta as f64).powf(-2.0 * j as f64 / dim as f64);
                    let (c, s) = (angle.cos(), angle.sin());
                    let (a, b) = (xs[row + 2 * j] as f64, xs[row + 2 * j + 1] as f64);
                    want[row + 2 * j] = (a * c - b * s) as f32;
                    want[row + 2 * j + 1] = (b * c + a * s) as f32;
                }
            }
        }
        for k in [Kernels::Fast, Kernels::Differentiable] {
            let got: Vec<f32> = rotary
                .apply(k, &x, &cos, &sin)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let d = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0f32, f32::max);
            assert!(d < 1e-5, "{k:?}: {d}");
        }
    }

    fn yarn(factor: f32, original: usize) -> Yarn {
        Yarn {
            factor: Some(factor),
            original_max_position_embeddings: Some(original),
            ..Yarn::default()
        }
    }

    /// Qwen2.5's recommended YaRN (factor 4 over 32768, θ 10⁶, head 128) against what
    /// transformers 5.25's `_compute_yarn_parameters` gives: the highest frequencies kept, the
    /// lowest divided by 4, a ramp between, and an attention factor of 0.1·ln 4 + 1.
    #[test]
    fn yarn_matches_transformers() {
        let (f, a) = yarn_frequencies(&yarn(4.0, 32768), 1e6, 128, 131072);
        assert!((a - 1.138_629_4).abs() < 1e-6, "{a}");
        assert_eq!(f.len(), 64);
        let want = [
            (0, 1.0),
            (10, 0.115_478_2),
            (20, 0.013_335_215),
            (25, 0.004_131_738),
            (30, 0.001_064_361),
            (40, 4.445_698_5e-5),
            (63, 3.102_344_4e-7),
        ];
        for (i, w) in want {
            assert!(
                (f[i] - w).abs() <= 2e-6 * w,
                "frequency {i}: {} for {w}",
                f[i]
            );
        }
    }

    /// LongRoPE's attention factor from the context over the pre-training context (Phi-3.5:
    /// 131072 over 4096), and its factors divide the frequencies.
    #[test]
    fn longrope_divides_by_its_factors() {
        let l = LongRope {
            short_factor: vec![1.0, 2.0],
            long_factor: vec![4.0, 8.0],
            factor: None,
            original_max_position_embeddings: Some(4096),
            attention_factor: None,
        };
        let (short, long, a, original) = longrope_frequencies(&l, 10_000.0, 4, 131072);
        let base = base_frequencies(10_000.0, 4);
        assert_eq!(original, 4096);
        assert!((a - (1.0f64 + 32f64.ln() / 4096f64.ln()).sqrt() as f32).abs() < 1e-6);
        assert_eq!(short, vec![base[0], base[1] / 2.0]);
        assert_eq!(long, vec![base[0] / 4.0, base[1] / 8.0]);
    }
}
