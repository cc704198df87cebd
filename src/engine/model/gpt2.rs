//! GPT2LMHeadModel. Conv1D weights are stored `[in, out]` and used as they are (a transpose at
//! load time would copy them out of the blended buffer); `c_attn` is the fused QKV projection;
//! the LM head is tied to `wte`.

use super::{attention, check_context, conv1d, linear_t, Cache, Kernels};
use crate::engine::config::Gpt2Config;
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, VarBuilder};

struct Conv1D {
    w: Tensor,
    b: Tensor,
}

impl Conv1D {
    fn load(vb: &VarBuilder, inp: usize, out: usize) -> Result<Self> {
        Ok(Self {
            w: vb.get((inp, out), "weight")?,
            b: vb.get(out, "bias")?,
        })
    }
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        conv1d(x, &self.w, &self.b)
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
}

fn layer_norm(vb: &VarBuilder, n: usize) -> Result<LayerNorm> {
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
    wte: Embedding,
    wte_w: Tensor,
    wpe: Tensor,
    blocks: Vec<Block>,
    ln_f: LayerNorm,
    eps: f64,
    kernels: Kernels,
    heads: usize,
    max_pos: usize,
}

impl Gpt2 {
    pub fn load(c: &Gpt2Config, vb: VarBuilder, kernels: Kernels) -> Result<Self> {
        // Hub checkpoints come both with and without the `transformer.` prefix.
        let t = if vb.contains_tensor("transformer.wte.weight") {
            vb.pp("transformer")
        } else {
            vb
        };
        let (d, eps) = (c.n_embd, c.layer_norm_epsilon);
        let wte_w = t.get((c.vocab_size, d), "wte.weight")?;
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
            wte: Embedding::new(wte_w.clone(), d),
            wte_w,
            wpe,
            blocks,
            ln_f: layer_norm(&t.pp("ln_f"), d)?,
            eps,
            kernels,
            heads: c.n_head,
            max_pos: c.n_positions,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    pub fn device(&self) -> &Device {
        self.wte_w.device()
    }

    fn norm(&self, ln: &LayerNorm, x: &Tensor) -> Result<Tensor> {
        self.kernels.layer_norm(x, &ln.w, &ln.b, self.eps)
    }

    /// Hidden states `[b, t, d]` of `ids [b, t]` before the final norm, from `cache.pos`
    /// (appending to the cache), or from position 0 without a cache.
    pub fn hidden(&self, ids: &Tensor, mut cache: Option<&mut Cache>) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = cache.as_ref().map_or(0, |c| c.pos);
        check_context(pos, t, self.max_pos)?;
        let d = self.wte_w.dim(1)?;
        let hd = d / self.heads;
        let mut x = self
            .wte
            .forward(ids)?
            .broadcast_add(&self.wpe.narrow(0, pos, t)?)?;
        for (i, block) in self.blocks.iter().enumerate() {
            let qkv = block.c_attn.forward(&self.norm(&block.ln_1, &x)?)?;
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
            let y = attention(&q, &k.contiguous()?, &v, self.kernels)?
                .transpose(1, 2)?
                .reshape((b, t, d))?;
            x = (x + block.attn_proj.forward(&y)?)?;
            let h = block.c_fc.forward(&self.norm(&block.ln_2, &x)?)?.gelu()?;
            x = (x + block.mlp_proj.forward(&h)?)?;
        }
        Ok(x)
    }

    /// Final norm and tied LM head: `[b, t, d]` → `[b, t, vocab]`.
    pub fn head(&self, x: &Tensor) -> Result<Tensor> {
        linear_t(&self.norm(&self.ln_f, x)?, &self.wte_w)
    }
}
