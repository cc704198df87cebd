//! LlamaForCausalLM (Llama 2/3, SmolLM/SmolLM2, TinyLlama), tied or untied embeddings.

use super::param::{embed, Loader, Mix, Param};
use super::{attention, check_context, Cache, Kernels};
use crate::config::LlamaConfig;
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
    cos: Tensor,
    sin: Tensor,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    max_pos: usize,
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
        let (cos, sin) = rope_tables(c, vb.dtype(), vb.device())?;
        Ok(Self {
            embed: embed_w,
            blocks,
            norm,
            eps,
            kernels,
            lm_head,
            cos,
            sin,
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            max_pos: c.max_position_embeddings,
        })
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
        let cos = self.cos.narrow(0, pos, t)?;
        let sin = self.sin.narrow(0, pos, t)?;
        let norm = |x: &Tensor, g: &Param| g.apply(mix, |g| k_.rms_norm(x, g, self.eps));
        let linear = |x: &Tensor, w: &Param| w.linear(x, mix, k_);
        let mut x = self.embed.apply(mix, |w| embed(w, ids))?;
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
            let rep = self.heads / self.kv_heads;
            let k = candle_transformers::utils::repeat_kv(k.contiguous()?, rep)?;
            let v = candle_transformers::utils::repeat_kv(v.contiguous()?, rep)?;
            let y = attention(&q, &k, &v, k_)?.transpose(1, 2)?.reshape((
                b,
                t,
                self.heads * self.head_dim,
            ))?;
            x = (linear(&y, &block.o)? + r)?;
            let r = x.clone();
            let h = norm(&x, &block.mlp_norm)?;
            let g = candle_nn::ops::silu(&linear(&h, &block.gate)?)?;
            let u = linear(&h, &block.up)?;
            x = (linear(&(g * u)?, &block.down)? + r)?;
        }
        Ok(x)
    }

    /// Final norm and LM head: `[b, t, hidden]` → `[b, t, vocab]`.
    pub fn head(&self, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let x = self
            .norm
            .apply(mix, |g| self.kernels.rms_norm(x, g, self.eps))?;
        self.lm_head.linear(&x, mix, self.kernels)
    }
}

/// cos/sin tables `[max_pos, head_dim / 2]` for HF's rotate-half layout, with Llama 3's
/// frequency scaling when the config asks for it.
fn rope_tables(c: &LlamaConfig, dtype: DType, device: &Device) -> Result<(Tensor, Tensor)> {
    let hd = c.head_dim();
    let mut inv_freq: Vec<f32> = (0..hd)
        .step_by(2)
        .map(|i| 1.0 / c.rope_theta.powf(i as f32 / hd as f32))
        .collect();
    if let Some(s) = c.rope_scaling.as_ref().filter(|s| s.rope_type == "llama3") {
        let low_wavelen = s.original_max_position_embeddings as f32 / s.low_freq_factor;
        let high_wavelen = s.original_max_position_embeddings as f32 / s.high_freq_factor;
        for f in inv_freq.iter_mut() {
            let wavelen = 2.0 * std::f32::consts::PI / *f;
            *f = if wavelen < high_wavelen {
                *f
            } else if wavelen > low_wavelen {
                *f / s.factor
            } else {
                let smooth = (s.original_max_position_embeddings as f32 / wavelen
                    - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * *f / s.factor + smooth * *f
            };
        }
    }
    let n = inv_freq.len();
    let inv = Tensor::from_vec(inv_freq, (1, n), device)?;
    let pos = Tensor::arange(0u32, c.max_position_embeddings as u32, device)?
        .to_dtype(DType::F32)?
        .reshape((c.max_position_embeddings, 1))?;
    let freqs = pos.matmul(&inv)?;
    Ok((freqs.cos()?.to_dtype(dtype)?, freqs.sin()?.to_dtype(dtype)?))
}
