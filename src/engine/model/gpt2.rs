//! GPT2LMHeadModel. Conv1D weights are stored `[in, out]` and used as they are (a transpose at
//! load time would copy them out of the blended buffer); `c_attn` is the fused QKV projection;
//! the LM head is tied to `wte`.

use super::{attention, check_context, conv1d, last_position, linear_t, Cache};
use crate::engine::config::Gpt2Config;
use candle_core::{Device, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

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

fn layer_norm(vb: &VarBuilder, n: usize, eps: f64) -> Result<LayerNorm> {
    Ok(LayerNorm::new(vb.get(n, "weight")?, vb.get(n, "bias")?, eps))
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
    heads: usize,
    max_pos: usize,
}

impl Gpt2 {
    pub fn load(c: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
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
                    ln_1: layer_norm(&l.pp("ln_1"), d, eps)?,
                    c_attn: Conv1D::load(&l.pp("attn.c_attn"), d, 3 * d)?,
                    attn_proj: Conv1D::load(&l.pp("attn.c_proj"), d, d)?,
                    ln_2: layer_norm(&l.pp("ln_2"), d, eps)?,
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
            ln_f: layer_norm(&t.pp("ln_f"), d, eps)?,
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

    /// `ids [b, t]` → logits of the last position `[b, vocab]`.
    pub fn forward(&self, ids: &Tensor, cache: &mut Cache) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let pos = cache.pos;
        check_context(pos, t, self.max_pos)?;
        let d = self.wte_w.dim(1)?;
        let hd = d / self.heads;
        let mut x = self
            .wte
            .forward(ids)?
            .broadcast_add(&self.wpe.narrow(0, pos, t)?)?;
        for (block, kv) in self.blocks.iter().zip(cache.layers.iter_mut()) {
            let qkv = block.c_attn.forward(&block.ln_1.forward(&x)?)?;
            let head = |i: usize| -> Result<Tensor> {
                qkv.narrow(2, i * d, d)?
                    .reshape((b, t, self.heads, hd))?
                    .transpose(1, 2)?
                    .contiguous()
            };
            let (q, k, v) = (head(0)?, head(1)?, head(2)?);
            let (k, v) = kv.append(&k, &v)?;
            let y = attention(&q, &k.contiguous()?, &v)?
                .transpose(1, 2)?
                .reshape((b, t, d))?;
            x = (x + block.attn_proj.forward(&y)?)?;
            let h = block.c_fc.forward(&block.ln_2.forward(&x)?)?.gelu()?;
            x = (x + block.mlp_proj.forward(&h)?)?;
        }
        let x = self.ln_f.forward(&last_position(&x)?)?;
        linear_t(&x, &self.wte_w)?.squeeze(1)
    }
}
