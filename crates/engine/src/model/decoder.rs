//! The decoder block every family in `arch/` runs: Llama's (pre-norm attention with RoPE and
//! grouped key/value heads, a gated feed-forward), with the options the families differ in
//! ([`BlockOptions`]): biases, q/k norms, (1 + w) gains, sandwich, post-only or parallel norms,
//! LayerNorms, scaled embeddings, GeGLU or an ungated feed-forward, soft-capping, a query
//! scalar, sliding windows with their own RoPE, fused projections. Tied or untied heads, with
//! or without a bias. Tensor names are the family's ([`Names`]).

use super::attention::{attend, AttentionOptions};
use super::param::{affine2, Loader, Mix, Param};
use super::rope::Rotary;
use super::{check_context, Cache, Kernels};
use crate::arch::tensors::Names;
use crate::formats::config::{
    Activation, AttentionBias, BlockOptions, DecoderConfig, LayerType, NormKind, NormPlacement,
    QkNorm, Rope,
};
use candle_core::{DType, Device, Result, Tensor, D};

/// q, k and v: three weights, or one `qkv_proj` whose output rows are q's, k's, then v's,
/// or one whose rows go head by head (GPT-NeoX's `query_key_value`, with its one bias).
enum Qkv {
    Separate { q: Param, k: Param, v: Param },
    Fused(Param),
    ByHead { w: Param, b: Option<Param> },
}

/// Gate and up: two weights, or one `gate_up_proj` whose output rows are the gate's, then
/// up's; or an ungated feed-forward's one input projection and its bias (Phi-2's `fc1`).
enum GateUp {
    Separate { gate: Param, up: Param },
    Fused(Param),
    Plain { up: Param, bias: Param },
}

/// A norm's gains, and its bias where the family's norms are LayerNorms (boxed, as the head's
/// bias: most families have neither).
struct Norm {
    w: Param,
    b: Option<Box<Param>>,
}

struct Block {
    /// Before attention (none in OLMo 2's post-norm block; before both in Phi-2's).
    attn_norm: Option<Norm>,
    qkv: Qkv,
    /// Biases of q, k and v, where the family has them.
    qkv_bias: Option<[Param; 3]>,
    /// RMSNorm gains of q and k ([`QkNorm`]).
    qk_norm: Option<[Param; 2]>,
    o: Param,
    o_bias: Option<Param>,
    /// After attention, before the residual add (Gemma, OLMo 2).
    post_attn_norm: Option<Norm>,
    /// Before the feed-forward (none in OLMo 2's block or Phi-2's).
    mlp_norm: Option<Norm>,
    gate_up: GateUp,
    down: Param,
    /// Down's bias, in an ungated feed-forward.
    down_bias: Option<Param>,
    /// After the feed-forward, before the residual add (Gemma, OLMo 2).
    post_mlp_norm: Option<Norm>,
    /// This layer's sliding window, if it has one.
    window: Option<usize>,
    /// Which of the decoder's RoPEs this layer uses, if any.
    rope: Option<usize>,
}

pub struct Decoder {
    embed: Param,
    blocks: Vec<Block>,
    norm: Norm,
    eps: f64,
    kernels: Kernels,
    lm_head: Param,
    lm_head_bias: Option<Box<Param>>,
    opts: BlockOptions,
    /// What the family multiplies its embeddings by: √hidden_size (Gemma) or a given
    /// multiplier (Granite).
    embed_scale: Option<f64>,
    /// The RoPEs of the full layers (first) and, where they differ, of the sliding ones. The
    /// angles of the positions a forward pass needs are made on the spot: a table for every
    /// position the config allows would be sized by a number in a file (and 10⁹ positions is
    /// one JSON edit away).
    rotary: Rotary,
    /// The activations' dtype ([`compute_dtype`](super::compute_dtype)).
    act: DType,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    max_pos: usize,
    /// The α passes run at when given no [`Mix`]: for adapters on a base kept quantized, whose
    /// one-column path is the factored one at the current α (nothing is merged).
    default_mix: Option<Box<Mix>>,
    /// The fused GPU pass over the same weights, made when first asked for and where it
    /// applies ([`super::fused`]); the candle path is its twin.
    #[cfg(feature = "cuda")]
    fused: Option<Box<super::fused::FusedLlama>>,
    /// The config, for the fused pass's shapes.
    #[cfg(feature = "cuda")]
    config: Box<DecoderConfig>,
}

impl Decoder {
    pub fn load(c: &DecoderConfig, vb: Loader, kernels: Kernels) -> Result<Self> {
        let (h, hd, f) = (c.hidden_size, c.head_dim(), c.intermediate_size);
        let (nh, nkv) = (c.num_attention_heads, c.kv_heads());
        let o = c.opts;
        let names = Names::of(c);
        let m = vb.pp(names.model);
        // `name.weight`, and `name.bias` where the norms have one.
        let norm = |vb: &Loader, name: &str| -> Result<Norm> {
            Ok(Norm {
                w: vb.get(h, &format!("{name}.weight"))?,
                b: match o.norm_kind.has_bias() {
                    true => Some(Box::new(vb.get(h, &format!("{name}.bias"))?)),
                    false => None,
                },
            })
        };
        let embed_w = m.get((c.vocab_size, h), &format!("{}.weight", names.embed))?;
        let mut blocks = Vec::with_capacity(c.num_hidden_layers);
        for i in 0..c.num_hidden_layers {
            let l = m.pp(format!("layers.{i}"));
            let a = l.pp(names.attn);
            let mlp = l.pp("mlp");
            let qkv_rows = (nh + 2 * nkv) * hd;
            let qkv = if o.qkv_by_head {
                Qkv::ByHead {
                    w: a.get((qkv_rows, h), &format!("{}.weight", names.qkv))?,
                    b: match o.attention_bias {
                        AttentionBias::None => None,
                        _ => Some(a.get(qkv_rows, &format!("{}.bias", names.qkv))?),
                    },
                }
            } else if o.fused_qkv {
                Qkv::Fused(a.get((qkv_rows, h), &format!("{}.weight", names.qkv))?)
            } else {
                Qkv::Separate {
                    q: a.get((nh * hd, h), "q_proj.weight")?,
                    k: a.get((nkv * hd, h), "k_proj.weight")?,
                    v: a.get((nkv * hd, h), "v_proj.weight")?,
                }
            };
            let qkv_bias = match o.attention_bias {
                AttentionBias::None => None,
                _ if o.qkv_by_head => None,
                AttentionBias::Qkv | AttentionBias::QkvO => Some([
                    a.get(nh * hd, "q_proj.bias")?,
                    a.get(nkv * hd, "k_proj.bias")?,
                    a.get(nkv * hd, "v_proj.bias")?,
                ]),
            };
            let gate_up = if o.plain_mlp {
                GateUp::Plain {
                    up: mlp.get((f, h), &format!("{}.weight", names.up))?,
                    bias: mlp.get(f, &format!("{}.bias", names.up))?,
                }
            } else if o.fused_gate_up {
                GateUp::Fused(mlp.get((2 * f, h), "gate_up_proj.weight")?)
            } else {
                GateUp::Separate {
                    gate: mlp.get((f, h), "gate_proj.weight")?,
                    up: mlp.get((f, h), "up_proj.weight")?,
                }
            };
            // Llama's post_attention_layernorm is the norm before the feed-forward; Gemma's
            // and OLMo 2's follows attention.
            let (attn_norm, post_attn_norm, mlp_norm, post_mlp_norm) = match o.norms {
                NormPlacement::Pre => (
                    Some(norm(&l, "input_layernorm")?),
                    None,
                    Some(norm(&l, "post_attention_layernorm")?),
                    None,
                ),
                NormPlacement::Sandwich => (
                    Some(norm(&l, "input_layernorm")?),
                    Some(norm(&l, names.after_attn_norm)?),
                    Some(norm(&l, names.before_mlp_norm)?),
                    Some(norm(&l, names.after_mlp_norm)?),
                ),
                NormPlacement::Post => (
                    None,
                    Some(norm(&l, names.after_attn_norm)?),
                    None,
                    Some(norm(&l, names.after_mlp_norm)?),
                ),
                NormPlacement::Parallel => (Some(norm(&l, "input_layernorm")?), None, None, None),
                NormPlacement::ParallelTwoNorms => (
                    Some(norm(&l, "input_layernorm")?),
                    None,
                    Some(norm(&l, "post_attention_layernorm")?),
                    None,
                ),
            };
            let sliding = c.layer_type(i) == LayerType::Sliding;
            blocks.push(Block {
                attn_norm,
                qkv,
                qkv_bias,
                qk_norm: match o.qk_norm {
                    QkNorm::None => None,
                    QkNorm::PerHead => {
                        Some([a.get(hd, "q_norm.weight")?, a.get(hd, "k_norm.weight")?])
                    }
                    QkNorm::Whole => Some([
                        a.get(nh * hd, "q_norm.weight")?,
                        a.get(nkv * hd, "k_norm.weight")?,
                    ]),
                },
                o: a.get((h, nh * hd), &format!("{}.weight", names.o))?,
                o_bias: match o.attention_bias {
                    AttentionBias::QkvO => Some(a.get(h, &format!("{}.bias", names.o))?),
                    _ => None,
                },
                post_attn_norm,
                mlp_norm,
                gate_up,
                down: mlp.get((h, f), &format!("{}.weight", names.down))?,
                down_bias: match o.plain_mlp {
                    true => Some(mlp.get(h, &format!("{}.bias", names.down))?),
                    false => None,
                },
                post_mlp_norm,
                window: if sliding { c.sliding_window } else { None },
                rope: c
                    .rotates(i)
                    .then_some(usize::from(sliding && c.local_rope.is_some())),
            });
        }
        let final_norm = norm(&m, names.final_norm)?;
        let lm_head = if c.tie_word_embeddings {
            embed_w.clone()
        } else {
            vb.get((c.vocab_size, h), &format!("{}.weight", names.head))?
        };
        let lm_head_bias = match o.head_bias {
            true => Some(Box::new(
                vb.get(c.vocab_size, &format!("{}.bias", names.head))?,
            )),
            false => None,
        };
        let global = Rope {
            theta: c.rope_theta,
            scaling: c.rope_scaling.clone(),
        };
        let ropes: Vec<&Rope> = std::iter::once(&global).chain(&c.local_rope).collect();
        let rotary = Rotary::new(
            &ropes,
            c.rope_factors.as_deref(),
            hd,
            o.rotary_dim.unwrap_or(hd),
            o.rope_interleaved,
            c.max_position_embeddings,
            vb.device(),
        )?;
        #[allow(unused_mut)]
        let mut model = Self {
            embed: embed_w,
            blocks,
            norm: final_norm,
            eps: c.rms_norm_eps,
            kernels,
            lm_head,
            lm_head_bias,
            opts: o,
            embed_scale: match o.embed_multiplier {
                Some(m) => Some(m as f64),
                None => o.embed_scale.then(|| (h as f64).sqrt()),
            },
            rotary,
            act: super::compute_dtype(vb.dtype(), vb.device()),
            heads: nh,
            kv_heads: nkv,
            head_dim: hd,
            max_pos: c.context(),
            default_mix: None,
            #[cfg(feature = "cuda")]
            fused: None,
            #[cfg(feature = "cuda")]
            config: Box::new(c.clone()),
        };
        #[cfg(feature = "cuda")]
        model.set_fused(super::fused_requested())?;
        Ok(model)
    }

    /// The params and shape the fused GPU pass reads: Llama's block only (no option of
    /// another family set, every layer full attention with the one RoPE).
    #[cfg(feature = "cuda")]
    fn fused_parts(&self) -> Option<super::fused::Parts<'_>> {
        use super::fused::{BlockParts, Parts};
        let c = &self.config;
        let plain = self.opts == BlockOptions::default() && self.rotary.plain();
        let blocks = self
            .blocks
            .iter()
            .map(|b| match (&b.qkv, &b.gate_up, b.window, b.rope) {
                (Qkv::Separate { q, k, v }, GateUp::Separate { gate, up }, None, Some(0)) => {
                    Some(BlockParts {
                        attn_norm: &b.attn_norm.as_ref()?.w,
                        q,
                        k,
                        v,
                        o: &b.o,
                        mlp_norm: &b.mlp_norm.as_ref()?.w,
                        gate,
                        up,
                        down: &b.down,
                    })
                }
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        plain.then(|| Parts {
            embed: &self.embed,
            blocks,
            norm: &self.norm.w,
            lm_head: &self.lm_head,
            inv_freq: self.rotary.first().0,
            eps: self.eps,
            heads: self.heads,
            kv_heads: self.kv_heads,
            head_dim: self.head_dim,
            hidden: c.hidden_size,
            intermediate: c.intermediate_size,
            vocab: c.vocab_size,
        })
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
            (true, None) if self.kernels == Kernels::Fast => match self.fused_parts() {
                Some(parts) => {
                    super::fused::FusedLlama::new(&parts, self.rotary.first().1)?.map(Box::new)
                }
                None => None,
            },
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
        // The final norm's gains: never kept quantized.
        self.norm.w.tensor().device()
    }

    /// Run passes given no [`Mix`] at this one (None: at the weights as they are).
    pub fn set_default_mix(&mut self, mix: Option<Mix>) {
        self.default_mix = mix.map(Box::new);
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
        let mix = mix.or(self.default_mix.as_deref());
        let (b, t) = ids.dims2()?;
        let pos = cache.as_ref().map_or(0, |c| c.pos);
        check_context(pos, t, self.max_pos)?;
        let k_ = self.kernels;
        let o = &self.opts;
        let angles = (0..self.rotary.len())
            .map(|i| self.rotary.angles(i, pos, t, self.act))
            .collect::<Result<Vec<_>>>()?;
        let linear = |x: &Tensor, w: &Param| w.linear(x, mix, k_);
        let biased = |y: Tensor, b: Option<&Param>| biased(y, b, mix);
        let mut x = self.embed.embed(ids, mix)?.to_dtype(self.act)?;
        if let Some(s) = self.embed_scale {
            x = (x * s)?;
        }
        let heads = |y: Tensor, n: usize| y.reshape((b, t, n, self.head_dim));
        for (i, block) in self.blocks.iter().enumerate() {
            let r = x.clone();
            let h = self.maybe_norm(&x, block.attn_norm.as_ref(), mix)?;
            let [qb, kb, vb] = match &block.qkv_bias {
                Some([q, k, v]) => [Some(q), Some(k), Some(v)],
                None => [None; 3],
            };
            let (q, k, v) = match &block.qkv {
                Qkv::Separate { q, k, v } => {
                    let [yq, yk, yv] = match grouped(&[q, k, v], &h, mix, k_)? {
                        Some(ys) => ys,
                        None => [linear(&h, q)?, linear(&h, k)?, linear(&h, v)?],
                    };
                    (biased(yq, qb)?, biased(yk, kb)?, biased(yv, vb)?)
                }
                Qkv::Fused(w) => {
                    let y = linear(&h, w)?;
                    let (nq, nk) = (self.heads * self.head_dim, self.kv_heads * self.head_dim);
                    (
                        y.narrow(2, 0, nq)?,
                        y.narrow(2, nq, nk)?,
                        y.narrow(2, nq + nk, nk)?,
                    )
                }
                Qkv::ByHead { w, b: bias } => {
                    // Each head's q, k and v in turn (as many key/value heads as heads).
                    let (n, d) = (self.heads, self.head_dim);
                    let y = biased(linear(&h, w)?, bias.as_ref())?.reshape((b, t, n, 3 * d))?;
                    let part = |j: usize| y.narrow(3, j * d, d)?.reshape((b, t, n * d));
                    (part(0)?, part(1)?, part(2)?)
                }
            };
            // A norm over the whole projection comes before the split into heads, a norm
            // per head after it.
            let (q, k) = match (&block.qk_norm, o.qk_norm) {
                (Some([qn, kn]), QkNorm::Whole) => (self.rms(&q, qn, mix)?, self.rms(&k, kn, mix)?),
                _ => (q, k),
            };
            let (mut q, mut k) = (heads(q, self.heads)?, heads(k, self.kv_heads)?);
            if let (Some([qn, kn]), QkNorm::PerHead) = (&block.qk_norm, o.qk_norm) {
                q = self.rms(&q, qn, mix)?;
                k = self.rms(&k, kn, mix)?;
            }
            let (q, k) = (
                q.transpose(1, 2)?.contiguous()?,
                k.transpose(1, 2)?.contiguous()?,
            );
            let (q, k) = match block.rope {
                Some(r) => {
                    let (cos, sin) = &angles[r];
                    (
                        self.rotary.apply(k_, &q, cos, sin)?,
                        self.rotary.apply(k_, &k, cos, sin)?,
                    )
                }
                None => (q, k),
            };
            let v = heads(v, self.kv_heads)?.transpose(1, 2)?.contiguous()?;
            let (k, v) = match cache.as_deref_mut() {
                Some(c) => c.layers[i].append(&k, &v)?,
                None => (k, v),
            };
            let att = AttentionOptions {
                scale: match (o.attention_scale, o.query_scalar) {
                    (Some(s), _) => s as f64,
                    (None, Some(s)) => 1.0 / (s as f64).sqrt(),
                    (None, None) => 1.0 / (self.head_dim as f64).sqrt(),
                },
                softcap: o.attn_softcap,
                window: block.window,
            };
            let y = attend(&q, &k, &v, k_, &att)?;
            let mut a = biased(linear(&y, &block.o)?, block.o_bias.as_ref())?;
            if let Some(n) = &block.post_attn_norm {
                a = self.norm(&a, n, mix)?;
            }
            if matches!(
                o.norms,
                NormPlacement::Parallel | NormPlacement::ParallelTwoNorms
            ) {
                // The feed-forward reads attention's input (through its own norm where it has
                // one); both join the residual at once, in Phi's and GPT-NeoX's order
                // (StableLM adds the residual first: a rounding apart).
                let h = match &block.mlp_norm {
                    Some(n) => self.norm(&r, n, mix)?,
                    None => h,
                };
                let m = self.feed_forward(block, &h, mix)?;
                x = ((self.residual(a)? + self.residual(m)?)? + r)?;
                continue;
            }
            x = (self.residual(a)? + r)?;
            let r = x.clone();
            let h = self.maybe_norm(&x, block.mlp_norm.as_ref(), mix)?;
            let mut m = self.feed_forward(block, &h, mix)?;
            if let Some(n) = &block.post_mlp_norm {
                m = self.norm(&m, n, mix)?;
            }
            x = (self.residual(m)? + r)?;
        }
        Ok(x)
    }

    /// A block's feed-forward of its normed input `h`, before any post-norm.
    fn feed_forward(&self, block: &Block, h: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let k_ = self.kernels;
        let linear = |x: &Tensor, w: &Param| w.linear(x, mix, k_);
        let (g, u) = match &block.gate_up {
            GateUp::Separate { gate, up } => match grouped(&[gate, up], h, mix, k_)? {
                Some([g, u]) => (g, u),
                None => (linear(h, gate)?, linear(h, up)?),
            },
            GateUp::Fused(w) => {
                let y = linear(h, w)?;
                let f = y.dim(2)? / 2;
                (y.narrow(2, 0, f)?, y.narrow(2, f, f)?)
            }
            GateUp::Plain { up, bias } => {
                let u = biased(linear(h, up)?, Some(bias), mix)?;
                let a = match self.opts.activation {
                    Activation::Silu => u.silu()?,
                    Activation::GeluTanh => u.gelu()?,
                    Activation::Gelu => u.gelu_erf()?,
                };
                return biased(linear(&a, &block.down)?, block.down_bias.as_ref(), mix);
            }
        };
        let gated = match self.opts.activation {
            Activation::Silu => k_.silu_mul(&g, &u)?,
            Activation::GeluTanh => (g.gelu()? * u)?,
            Activation::Gelu => (g.gelu_erf()? * u)?,
        };
        linear(&gated, &block.down)
    }

    /// A block's attention or feed-forward output as it joins the residual stream.
    fn residual(&self, y: Tensor) -> Result<Tensor> {
        match self.opts.residual_multiplier {
            Some(m) => y * m as f64,
            None => Ok(y),
        }
    }

    /// `x` normed by `n` where the block has that norm, else as it is.
    fn maybe_norm(&self, x: &Tensor, n: Option<&Norm>, mix: Option<&Mix>) -> Result<Tensor> {
        match n {
            Some(n) => self.norm(x, n, mix),
            None => Ok(x.clone()),
        }
    }

    /// `x` normed over its last dimension by `n` as the family's norms are: an RMS norm, or
    /// a LayerNorm with or without a bias; per row in the batched mode.
    fn norm(&self, x: &Tensor, n: &Norm, mix: Option<&Mix>) -> Result<Tensor> {
        match (&n.b, self.opts.norm_kind) {
            (Some(b), _) => affine2(&n.w, b, mix, |w, b| {
                self.kernels.layer_norm(x, w, b, self.eps)
            }),
            // A LayerNorm without a bias is the RMS norm of x less its mean: the variance is
            // the centred x's mean square.
            (None, NormKind::LayerNoBias) => {
                let mean = x.mean_keepdim(D::Minus1)?;
                self.rms(&x.broadcast_sub(&mean)?, &n.w, mix)
            }
            (None, _) => self.rms(x, &n.w, mix),
        }
    }

    /// RMS norm of `x` over its last dimension with `g`'s gains (as 1 + g where the family
    /// stores them so), per row in the batched mode.
    fn rms(&self, x: &Tensor, g: &Param, mix: Option<&Mix>) -> Result<Tensor> {
        g.apply(mix, |g| {
            if self.opts.norm_plus_one {
                self.kernels
                    .rms_norm(x, &(g.to_dtype(DType::F32)? + 1.0)?, self.eps)
            } else {
                self.kernels.rms_norm(x, g, self.eps)
            }
        })
    }

    /// Final norm and LM head: `[b, t, hidden]` → `[b, t, vocab]`, soft-capped where the
    /// family caps its logits.
    pub fn head(&self, x: &Tensor, mix: Option<&Mix>) -> Result<Tensor> {
        let mix = mix.or(self.default_mix.as_deref());
        let x = self.norm(x, &self.norm, mix)?;
        let logits = self.lm_head.linear(&x, mix, self.kernels)?;
        let mut logits = biased(logits, self.lm_head_bias.as_deref(), mix)?;
        if let Some(d) = self.opts.logits_divisor {
            logits = (logits / d as f64)?;
        }
        if let Some(s) = self.opts.logit_scale {
            logits = (logits * s as f64)?;
        }
        match self.opts.final_softcap {
            Some(cap) => softcap(&logits, cap),
            None => Ok(logits),
        }
    }
}

/// `y` plus bias `b` where there is one: (1 − α)·b_A + α·b_B per row in the batched mode.
fn biased(y: Tensor, b: Option<&Param>, mix: Option<&Mix>) -> Result<Tensor> {
    match b {
        Some(b) => b.apply(mix, |b| y.broadcast_add(&super::like(b, &y)?)),
        None => Ok(y),
    }
}

/// Products of one input (query, key and value; gate and up) as one pass where the weights
/// allow it ([`Param::linear_group`]): the same outputs, the small products beside the large.
fn grouped<const N: usize>(
    ws: &[&Param; N],
    x: &Tensor,
    mix: Option<&Mix>,
    kernels: Kernels,
) -> Result<Option<[Tensor; N]>> {
    if kernels != Kernels::Fast {
        return Ok(None);
    }
    Ok(Param::linear_group(ws, x, mix)?.map(|ys| {
        ys.try_into()
            .unwrap_or_else(|_| unreachable!("one output a weight"))
    }))
}

/// `cap · tanh(x / cap)`.
pub(crate) fn softcap(x: &Tensor, cap: f32) -> Result<Tensor> {
    (x / cap as f64)?.tanh()? * cap as f64
}
