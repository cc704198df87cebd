//! GPT2LMHeadModel. Conv1D weights are stored `[in, out]` and used as they are (a transpose at
//! load time would copy them out of the blended buffer); `c_attn` is the fused QKV projection;
//! the LM head is tied to `wte`.

use super::attention::{attend, AttentionOptions};
use super::param::{affine2, Loader, Mix, Param};
use super::{check_context, conv1d, conv1d_mixed, Cache, Kernels};
use crate::formats::config::Gpt2Config;
use candle_core::{Device, Result, Tensor};

/// Weight and bias are loaded as one pair of params; the batched mode mixes the affine op's
/// output, which is linear in both together.
struct Conv1D {
    w: Param,
    b: Param,
}

impl Conv1D {
    fn load(vb: &Loader, inp: usize, out: usize) -> Result<Self> {
        Ok(Self {
            w: vb.get((inp, out), "weight")?,
            b: vb.get(out, "bias")?,
        })
    }
    fn forward(&self, x: &Tensor, mix: Option<&Mix>, kernels: Kernels) -> Result<Tensor> {
        // Batched columns over two full endpoints: both weights in one pass, the biases mixed
        // per row (the same affine identity as `affine2`).
        if let (Some(m), Some(wb), Kernels::Fast) = (mix, self.w.endpoint_b(), kernels) {
            if let Some(y) = conv1d_mixed(x, self.w.tensor(), wb, m)? {
                let n = y.dim(candle_core::D::Minus1)?;
                let k = m.alphas().len();
                let row_bias = |b: &Tensor| {
                    b.to_dtype(y.dtype())?
                        .reshape((1, 1, n))?
                        .broadcast_as((k, 1, n))?
                        .contiguous()
                };
                let bias = m.combine(
                    &row_bias(self.b.tensor())?,
                    &row_bias(self.b.endpoint_b().unwrap_or(self.b.tensor()))?,
                )?;
                return self.w.add_delta(y.broadcast_add(&bias)?, x, mix);
            }
        }
        let y = affine2(&self.w, &self.b, mix, |w, b| conv1d(x, w, b, kernels))?;
        self.w.add_delta(y, x, mix)
    }
}

struct LayerNorm {
    w: Param,
    b: Param,
}

fn layer_norm(vb: &Loader, n: usize) -> Result<LayerNorm> {
    Ok(LayerNorm {
        w: vb.get(n, "weight")?,
        b: vb.get(n, "bias")?,
    })
}

struct Block {
    ln_1: LayerNorm,
    c_attn: Conv1D,
    attn_proj: Conv1D,
    ln_2: LayerNorm,
    c_fc: Conv1D,
    mlp_proj: Conv1D,
}

pub struct Gpt2 {
    wte: Param,
    wpe: Param,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    eps: f64,
    kernels: Kernels,
    heads: usize,
    max_pos: usize,
    /// The activations' dtype ([`compute_dtype`](super::compute_dtype)).
    act: candle_core::DType,
}

impl Gpt2 {
    pub fn load(c: &Gpt2Config, vb: Loader, kernels: Kernels) -> Result<Self> {
        // Hub checkpoints come both with and without the `transformer.` prefix.
        let t = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let (d, eps) = (c.n_embd, c.layer_norm_epsilon);
        let wte = t.get((c.vocab_size, d), "wte.weight")?;
        let wpe = t.get((c.n_positions, d), "wpe.weight")?;
        let blocks = (0..c.n_layer)
            .map(|i| {
                let l = t.pp(format!("h.{i}"));
                Ok(Block {
                    ln_1: layer_norm(&l.pp("ln_1"), d)?,
                    c_attn: Conv1D::load(&l.pp("attn.c_attn"), d, 3 * d)?,
                    attn_proj: Conv1D::load(&l.pp("attn.c_proj"), d, d)?,
                    ln_2: layer_norm(&l.pp("ln_2"), d)?,
                    c_fc: Conv1D::load(&l.pp("mlp.c_fc"), d, c.inner())?,
                    mlp_proj: Conv1D::load(&l.pp("mlp.c_proj"), c.inner(), d)?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            wte,
            wpe,
            blocks,
            ln_f: layer_norm(&t.pp("ln_f"), d)?,
            eps,
            kernels,
            heads: c.n_head,
            max_pos: c.n_positions,
            act: super::compute_dtype(t.dtype(), t.device()),
        })
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn device(&self) -> &Device {
        self.wte.tensor().device()
    }

    fn norm(&self, ln: &LayerNorm, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        affine2(&ln.w, &ln.b, mix, |w, b| {
            self.kernels.layer_norm(x, w, b, self.eps)
        })
    }

    /// Hidden states `[b, t, d]` of `ids [b, t]` before the final norm, from `cache.pos`
    /// (appending to the cache), or from position 0 without a cache. With a `mix`, row i runs
    /// at α = `mix.alphas()[i]`.
    pub fn hidden(
        &self,
        ids: &Tensor,
        mut cache: Option<&mut Cache>,
        mix: Option<&Mix>,
    ) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = cache.as_ref().map_or(0, |c| c.pos);
        check_context(pos, t, self.max_pos)?;
        let d = self.wte.tensor().dim(1)?;
        let hd = d / self.heads;
        let tok = self.wte.embed(ids, mix)?.to_dtype(self.act)?;
        let at = self
            .wpe
            .apply(mix, |w| w.narrow(0, pos, t)?.unsqueeze(0))?
            .to_dtype(self.act)?;
        let mut x = tok.broadcast_add(&at)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let qkv = block
                .c_attn
                .forward(&self.norm(&block.ln_1, &x, mix)?, mix, self.kernels)?;
            let head = |i: usize| -> Result<Tensor> {
                qkv.narrow(2, i * d, d)?
                    .reshape((b, t, self.heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (head(0)?, head(1)?, head(2)?);
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.layers[i].append(&k, &v)?,
                None => (k, v),
            };
            let y = attend(&q, &k, &v, self.kernels, &AttentionOptions::plain(hd))?;
            x = (x + block.attn_proj.forward(&y, mix, self.kernels)?)?;
            let h = block
                .c_fc
                .forward(&self.norm(&block.ln_2, &x, mix)?, mix, self.kernels)?
                .gelu()?;
            x = (x + block.mlp_proj.forward(&h, mix, self.kernels)?)?;
        }
        Ok(x)
    }

    /// Final norm and tied LM head: `[b, t, d]` → `[b, t, vocab]`.
    pub fn head(&self, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let x = self.norm(&self.ln_f, x, mix)?;
        self.wte.linear(&x, mix, self.kernels)
    }
}
