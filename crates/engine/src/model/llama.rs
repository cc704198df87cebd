//! LlamaForCausalLM (Llama 2/3, SmolLM/SmolLM2, TinyLlama), tied or untied embeddings.

use super::attention::attend;
use super::param::{Loader, Mix, Param};
use super::{check_context, Cache, Kernels};
use crate::config::{LlamaConfig, RopeScaling};
use candle_core::{DType, Device, Result, Tensor};

struct Block {
    attn_norm: Param,
    q: Param,
    k: Param,
    v: Param,
    o: Param,
    mlp_norm: Param,
    gate: Param,
    up: Param,
    down: Param,
}

pub struct Llama {
    embed: Param,
    blocks: Vec<Block>,
    norm: Param,
    eps: f64,
    kernels: Kernels,
    lm_head: Param,
    /// RoPE's inverse frequencies `[1, head_dim / 2]` (f32). The angles of the positions a
    /// forward pass needs are made from them on the spot: a table for every position the config
    /// allows would be sized by a number in a file (and 10⁹ positions is one JSON edit away).
    inv_freq: Tensor,
    /// (θ, factor, positions before scaling starts) for dynamic scaling.
    dynamic: Option<(f32, f32, usize)>,
    /// The activations' dtype ([`compute_dtype`](super::compute_dtype)).
    act: DType,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    max_pos: usize,
    /// The fused GPU pass over the same weights, made when first asked for and where it
    /// applies ([`super::fused`]); the candle path is its twin.
    #[cfg(feature = "cuda")]
    fused: Option<Box<super::fused::FusedLlama>>,
    /// The config, for the fused pass's shapes.
    #[cfg(feature = "cuda")]
    config: LlamaConfig,
}

impl Llama {
    pub fn load(c: &LlamaConfig, vb: Loader, kernels: Kernels) -> Result<Self> {
        let (h, hd) = (c.hidden_size, c.head_dim());
        let (nh, nkv) = (c.num_attention_heads, c.kv_heads());
        let eps = c.rms_norm_eps;
        let m = vb.pp("model");
        let embed_w = m.get((c.vocab_size, h), "embed_tokens.weight")?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp("self_attn");
            let f = l.pp("mlp");
            blocks.push(Block {
                attn_norm: l.get(h, "input_layernorm.weight")?,
                q: a.get((nh * hd, h), "q_proj.weight")?,
                k: a.get((nkv * hd, h), "k_proj.weight")?,
                v: a.get((nkv * hd, h), "v_proj.weight")?,
                o: a.get((h, nh * hd), "o_proj.weight")?,
                mlp_norm: l.get(h, "post_attention_layernorm.weight")?,
                gate: f.get((c.intermediate_size, h), "gate_proj.weight")?,
                up: f.get((c.intermediate_size, h), "up_proj.weight")?,
                down: f.get((h, c.intermediate_size), "down_proj.weight")?,
            });
        }
        let norm = m.get(h, "norm.weight")?;
        let lm_head = if c.tie_word_embeddings {
            embed_w.clone()
        } else {
            vb.get((c.vocab_size, h), "lm_head.weight")?
        };
        let inv_freq = inverse_frequencies(c, vb.device())?;
        #[allow(unused_mut)]
        let mut model = Self {
            embed: embed_w,
            blocks,
            norm,
            eps,
            kernels,
            lm_head,
            inv_freq,
            dynamic: match c.rope_scaling {
                Some(RopeScaling::Dynamic { factor }) => {
                    Some((c.rope_theta, factor, c.max_position_embeddings))
                }
                _ => None,
            },
            act: super::compute_dtype(vb.dtype(), vb.device()),
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            max_pos: c.context(),
            #[cfg(feature = "cuda")]
            fused: None,
            #[cfg(feature = "cuda")]
            config: c.clone(),
        };
        #[cfg(feature = "cuda")]
        model.set_fused(super::fused_requested())?;
        Ok(model)
    }

    /// The params and shape the fused GPU pass reads.
    #[cfg(feature = "cuda")]
    fn fused_parts(&self) -> super::fused::Parts<'_> {
        let c = &self.config;
        use super::fused::{BlockParts, Parts};
        Parts {
            embed: &self.embed,
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockParts {
                    attn_norm: &b.attn_norm,
                    q: &b.q,
                    k: &b.k,
                    v: &b.v,
                    o: &b.o,
                    mlp_norm: &b.mlp_norm,
                    gate: &b.gate,
                    up: &b.up,
                    down: &b.down,
                })
                .collect(),
            norm: &self.norm,
            lm_head: &self.lm_head,
            inv_freq: &self.inv_freq,
            eps: self.eps,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            vocab: c.vocab_size,
        }
    }

    /// The fused GPU pass, where it is on.
    #[cfg(feature = "cuda")]
    pub(crate) fn fused(&self) -> Option<&super::fused::FusedLlama> {
        self.fused.as_deref()
    }

    /// Whether forward passes take the fused GPU pass (where it applies: inference kernels,
    /// on a GPU) or candle's ops.
    #[cfg(feature = "cuda")]
    pub(crate) fn set_fused(&mut self, on: bool) -> Result<()> {
        self.fused = match (on, self.fused.take()) {
            (false, _) => None,
            (true, Some(f)) => Some(f),
            (true, None) if self.kernels == Kernels::Fast => {
                super::fused::FusedLlama::new(&self.fused_parts(), self.dynamic.is_some())?
                    .map(Box::new)
            }
            (true, None) => None,
        };
        Ok(())
    }

    /// The longest sequence the model runs.
    #[cfg(feature = "cuda")]
    pub(crate) fn context(&self) -> usize {
        self.max_pos
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn device(&self) -> &Device {
        self.lm_head.tensor().device()
    }

    /// Hidden states `[b, t, hidden]` of `ids [b, t]` before the final norm, from
    /// `cache.pos` (appending to the cache), or from position 0 without a cache. With a `mix`,
    /// row i runs at α = `mix.alphas()[i]`.
    pub fn hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut Cache>,
        mix: Option<&Mix>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = cache.as_ref().map_or(0, |c| c.pos);
        check_context(pos, t, self.max_pos)?;
        let k_ = self.kernels;
        let (cos, sin) = self.rope_angles(pos, t)?;
        let norm = |x: &Tensor, g: &Param| g.apply(mix, |g| k_.rms_norm(x, g, self.eps));
        let linear = |x: &Tensor, w: &Param| w.linear(x, mix, k_);
        let mut x = self.embed.embed(ids, mix)?.to_dtype(self.act)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let r = x.clone();
            let h = norm(&x, &block.attn_norm)?;
            let split = |w: &Param, n: usize| -> Result<Tensor> {
                linear(&h, w)?
                    .reshape((b, t, n, self.head_dim))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let q = k_.rope(&split(&block.q, self.heads)?, &cos, &sin)?;
            let k = k_.rope(&split(&block.k, self.kv_heads)?, &cos, &sin)?;
            let v = split(&block.v, self.kv_heads)?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.layers[i].append(&k, &v)?,
                None => (k, v),
            };
            let y = attend(&q, &k, &v, k_)?;
            x = (linear(&y, &block.o)? + r)?;
            let r = x.clone();
            let h = norm(&x, &block.mlp_norm)?;
            let g = candle_nn::ops::silu(&linear(&h, &block.gate)?)?;
            let u = linear(&h, &block.up)?;
            x = (linear(&(g * u)?, &block.down)? + r)?;
        }
        Ok(x)
    }

    /// cos and sin `[t, head_dim / 2]` of positions `pos..pos + t`, in the activations' dtype.
    /// With dynamic scaling a call that reaches past the original context uses frequencies
    /// for its length; keys already cached keep theirs, as in transformers.
    fn rope_angles(&self, pos: usize, t: usize) -> Result<(Tensor, Tensor)> {
        let device = self.inv_freq.device();
        let grown;
        let inv_freq = match self.dynamic {
            Some((theta, factor, original)) if pos + t > original => {
                let f = dynamic_frequencies(theta, self.head_dim, factor, original, pos + t);
                let n = f.len();
                grown = Tensor::from_vec(f, (1, n), device)?;
                &grown
            }
            _ => &self.inv_freq,
        };
        let positions = Tensor::arange(pos as u32, (pos + t) as u32, device)?
            .to_dtype(DType::F32)?
            .reshape((t, 1))?;
        let freqs = positions.matmul(inv_freq)?;
        Ok((
            freqs.cos()?.to_dtype(self.act)?,
            freqs.sin()?.to_dtype(self.act)?,
        ))
    }

    /// Final norm and LM head: `[b, t, hidden]` → `[b, t, vocab]`.
    pub fn head(&self, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let x = self
            .norm
            .apply(mix, |g| self.kernels.rms_norm(x, g, self.eps))?;
        self.lm_head.linear(&x, mix, self.kernels)
    }
}

/// RoPE's inverse frequencies for HF's rotate-half layout: `1 / θ^(i / d)` for even i < d.
fn base_frequencies(theta: f32, head_dim: usize) -> Vec<f32> {
    (0..head_dim)
        .step_by(2)
        .map(|i| 1.0 / theta.powf(i as f32 / head_dim as f32))
        .collect()
}

/// RoPE's inverse frequencies `[1, head_dim / 2]` at the start of a sequence, with the
/// config's scaling (dynamic scaling changes them later, see [`Llama::rope_angles`]).
fn inverse_frequencies(c: &LlamaConfig, device: &Device) -> Result<Tensor> {
    let mut inv_freq = base_frequencies(c.rope_theta, c.head_dim());
    match c.rope_scaling {
        Some(RopeScaling::Linear { factor }) => inv_freq.iter_mut().for_each(|f| *f /= factor),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let original = original_max_position_embeddings as f32;
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
        Some(RopeScaling::Dynamic { .. }) | None => {}
    }
    let n = inv_freq.len();
    Tensor::from_vec(inv_freq, (1, n), device)
}

/// Dynamic NTK scaling as transformers does it: once a sequence reaches `seq_len` positions
/// past `original`, the base becomes θ·(f·seq_len/original − (f − 1))^(d/(d−2)).
fn dynamic_frequencies(
    theta: f32,
    head_dim: usize,
    factor: f32,
    original: usize,
    seq_len: usize,
) -> Vec<f32> {
    let (f, d) = (factor as f64, head_dim as f64);
    let grown =
        theta as f64 * (f * seq_len as f64 / original as f64 - (f - 1.0)).powf(d / (d - 2.0));
    base_frequencies(grown as f32, head_dim)
}
