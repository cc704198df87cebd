//! config.json of the supported architectures.

use crate::error::{bail, err, Result};
use serde::Deserialize;

// A handful of configs live at once: their size does not matter, and a box would only add
// noise to every match on them.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ModelConfig {
    Decoder(DecoderConfig),
    Gpt2(Gpt2Config),
}

/// `eos_token_id` is an integer or a list of them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

impl TokenIds {
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            TokenIds::One(t) => vec![*t],
            TokenIds::Many(v) => v.clone(),
        }
    }
}

/// How RoPE's frequencies are stretched for longer contexts (`rope_scaling`, or
/// `rope_parameters` in transformers ≥ 5, by its `rope_type`).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (every frequency scaled down alike).
    Linear { factor: f32 },
    /// NTK-aware: past `max_position_embeddings`, the base grows with the sequence length.
    Dynamic { factor: f32 },
    /// Llama 3.1's: low frequencies scaled by `factor`, high ones kept, a smooth ramp between.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// YaRN: low frequencies interpolated by `factor`, high ones kept, a linear ramp between
    /// (from `beta_fast` to `beta_slow` rotations over the pre-training context), cos and sin
    /// scaled by an attention factor. Options left out here take transformers' defaults.
    Yarn(Box<Yarn>),
    /// LongRoPE (Phi-3.5, Phi-4-mini): a divisor per frequency, the short list up to the
    /// pre-training context and the long one past it, cos and sin scaled by an attention
    /// factor.
    LongRope(Box<LongRope>),
}

/// YaRN's parameters as a config gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Yarn {
    /// None: the context over the pre-training context.
    pub factor: Option<f32>,
    /// None: `max_position_embeddings`.
    pub original_max_position_embeddings: Option<usize>,
    pub beta_fast: Option<f32>,
    pub beta_slow: Option<f32>,
    pub attention_factor: Option<f32>,
    pub mscale: Option<f32>,
    pub mscale_all_dim: Option<f32>,
    /// Whether the ramp's ends are rounded outwards to whole dimensions (true by default).
    pub truncate: bool,
}

/// LongRoPE's parameters as a config gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct LongRope {
    pub short_factor: Vec<f32>,
    pub long_factor: Vec<f32>,
    /// None: the context over the pre-training context.
    pub factor: Option<f32>,
    /// None: `max_position_embeddings`.
    pub original_max_position_embeddings: Option<usize>,
    pub attention_factor: Option<f32>,
}

/// Transformers' defaults: every option left out, the ramp's ends rounded.
impl Default for Yarn {
    fn default() -> Self {
        Yarn {
            factor: None,
            original_max_position_embeddings: None,
            beta_fast: None,
            beta_slow: None,
            attention_factor: None,
            mscale: None,
            mscale_all_dim: None,
            truncate: true,
        }
    }
}

impl Yarn {
    /// The pre-training context, for a model of `max_positions`.
    pub fn original(&self, max_positions: usize) -> usize {
        self.original_max_position_embeddings
            .unwrap_or(max_positions)
    }

    /// The factor, or the context over the pre-training context.
    pub fn factor(&self, max_positions: usize) -> f64 {
        self.factor.map_or(
            max_positions as f64 / self.original(max_positions) as f64,
            f64::from,
        )
    }

    /// The attention factor transformers derives where none is given: 1 + 0.1·ln factor.
    pub fn default_attention_factor(factor: f64) -> f64 {
        if factor > 1.0 {
            0.1 * factor.ln() + 1.0
        } else {
            1.0
        }
    }

    /// Whether llama.cpp's YaRN computes it, in a model of `max_positions`: its keys give the
    /// factor and the pre-training context, and it takes transformers' defaults for the rest
    /// (it reads no β keys for the families here). An attention factor given as that default
    /// (as OLMo 3's configs give it) is the default.
    pub fn is_llamacpps(&self, max_positions: usize) -> bool {
        let Yarn {
            beta_fast,
            beta_slow,
            attention_factor,
            mscale,
            mscale_all_dim,
            truncate,
            ..
        } = self;
        let default = Self::default_attention_factor(self.factor(max_positions));
        beta_fast.is_none_or(|b| b == 32.0)
            && beta_slow.is_none_or(|b| b == 1.0)
            && attention_factor.is_none_or(|a| (a as f64 - default).abs() <= 1e-6 * default)
            // transformers uses the two only together.
            && (mscale.is_none() || mscale_all_dim.is_none())
            && *truncate
    }
}

impl LongRope {
    /// The pre-training context, for a model of `max_positions`.
    pub fn original(&self, max_positions: usize) -> usize {
        self.original_max_position_embeddings
            .unwrap_or(max_positions)
    }

    /// The factor cos and sin are scaled by: given, or √(1 + ln s / ln original) for the
    /// context's ratio s to the pre-training context (1 where s ≤ 1).
    pub fn attention_factor(&self, max_positions: usize) -> f64 {
        let original = self.original(max_positions) as f64;
        let factor = self
            .factor
            .map_or(max_positions as f64 / original, f64::from);
        match self.attention_factor {
            Some(a) => a as f64,
            None if factor <= 1.0 => 1.0,
            None => (1.0 + factor.ln() / original.ln()).sqrt(),
        }
    }
}

impl RopeScaling {
    /// The `rope_type` transformers names it by.
    pub fn name(&self) -> &'static str {
        match self {
            RopeScaling::Linear { .. } => "linear",
            RopeScaling::Dynamic { .. } => "dynamic",
            RopeScaling::Llama3 { .. } => "llama3",
            RopeScaling::Yarn(_) => "yarn",
            RopeScaling::LongRope(_) => "longrope",
        }
    }

    /// The scaling a config asks for: None for the default; an error names any other type.
    pub(crate) fn from_json(v: &serde_json::Value) -> Result<Option<Self>> {
        let kind = v
            .get("rope_type")
            .or_else(|| v.get("type"))
            .and_then(|t| t.as_str())
            .unwrap_or("default");
        let num = |key: &str| -> Result<f32> {
            let x = v.get(key).and_then(|x| x.as_f64()).ok_or_else(|| {
                err!(Format, "rope_scaling of type {kind:?} needs a number {key}")
            })?;
            if !(x.is_finite() && x > 0.0 && x < 1e9) {
                bail!(
                    Format,
                    "rope_scaling {key} must be a positive number, got {x}"
                );
            }
            Ok(x as f32)
        };
        let optional = |key: &str| -> Result<Option<f32>> {
            match v.get(key).filter(|x| !x.is_null()) {
                Some(_) => num(key).map(Some),
                None => Ok(None),
            }
        };
        let factors = |key: &str| -> Result<Vec<f32>> {
            let list = v.get(key).and_then(|x| x.as_array()).ok_or_else(|| {
                err!(
                    Format,
                    "rope_scaling of type {kind:?} needs a list of numbers {key}"
                )
            })?;
            list.iter()
                .map(|x| match x.as_f64() {
                    Some(x) if x.is_finite() && x > 0.0 && x < 1e9 => Ok(x as f32),
                    _ => bail!(
                        Format,
                        "rope_scaling {key} must hold positive numbers, got {x}"
                    ),
                })
                .collect()
        };
        // transformers reads these with `or`: a 0 takes the default too.
        let zero_is_default = |key: &str| -> Result<Option<f32>> {
            match v.get(key).and_then(|x| x.as_f64()) {
                Some(0.0) => Ok(None),
                _ => optional(key),
            }
        };
        let original = || -> Result<Option<usize>> {
            Ok(optional("original_max_position_embeddings")?.map(|x| x as usize))
        };
        Ok(match kind {
            "default" => None,
            "linear" => Some(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "dynamic" => Some(RopeScaling::Dynamic {
                factor: num("factor")?,
            }),
            "llama3" => {
                let (low, high) = (num("low_freq_factor")?, num("high_freq_factor")?);
                if low >= high {
                    bail!(
                        Format,
                        "rope_scaling low_freq_factor {low} must be below high_freq_factor {high}"
                    );
                }
                Some(RopeScaling::Llama3 {
                    factor: num("factor")?,
                    low_freq_factor: low,
                    high_freq_factor: high,
                    original_max_position_embeddings: num("original_max_position_embeddings")?
                        as usize,
                })
            }
            "yarn" => Some(RopeScaling::Yarn(Box::new(Yarn {
                factor: optional("factor")?,
                original_max_position_embeddings: original()?,
                beta_fast: zero_is_default("beta_fast")?,
                beta_slow: zero_is_default("beta_slow")?,
                attention_factor: optional("attention_factor")?,
                mscale: optional("mscale")?,
                mscale_all_dim: optional("mscale_all_dim")?,
                truncate: match v.get("truncate").filter(|x| !x.is_null()) {
                    None => true,
                    Some(t) => t.as_bool().ok_or_else(|| {
                        err!(Format, "rope_scaling truncate must be true or false, got {t}")
                    })?,
                },
            }))),
            "longrope" => Some(RopeScaling::LongRope(Box::new(LongRope {
                short_factor: factors("short_factor")?,
                long_factor: factors("long_factor")?,
                factor: optional("factor")?,
                original_max_position_embeddings: original()?,
                attention_factor: optional("attention_factor")?,
            }))),
            other => bail!(
                Unsupported,
                "rope_type {other:?} is not supported (supported: default, linear, dynamic, llama3, yarn, longrope)"
            ),
        })
    }
}

/// The most layers a config may give: far beyond any model, far below what would exhaust
/// memory in per-layer tables.
pub const MAX_LAYERS: usize = 1 << 16;

/// RoPE's base where a config gives none (Llama's, and most families').
pub const DEFAULT_ROPE_THETA: f32 = 10_000.0;

/// The decoder families: one block ([`crate::model::decoder`]), parameterised by
/// [`BlockOptions`]; each family's unit in `arch/` reads its configs and names its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    #[default]
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma2,
    Gemma3,
    Phi3,
    SmolLm3,
    Granite,
    Gemma,
    Olmo2,
    Olmo3,
    Exaone4,
    Phi,
    GptNeoX,
    StableLm,
    StarCoder2,
    Glm4,
    Cohere,
    Cohere2,
    Ernie45,
    SeedOss,
}

/// What a norm computes over the hidden width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormKind {
    /// RMSNorm, gains only (Llama).
    #[default]
    Rms,
    /// LayerNorm with gains and a bias (Phi-2, GPT-NeoX, StableLM, StarCoder2).
    Layer,
    /// LayerNorm with gains only (Cohere).
    LayerNoBias,
}

impl NormKind {
    /// Mean-centred: a LayerNorm of either form.
    pub fn is_layer(self) -> bool {
        self != NormKind::Rms
    }
    pub fn has_bias(self) -> bool {
        self == NormKind::Layer
    }
}

/// Which bias vectors the attention's projections have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttentionBias {
    #[default]
    None,
    /// q, k and v (Qwen2).
    Qkv,
    /// q, k, v and o (Llama's `attention_bias`).
    QkvO,
}

/// RMSNorm of the projected q and k, before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QkNorm {
    #[default]
    None,
    /// Each head's over the head dimension, one gain vector shared by the heads (Qwen3,
    /// Gemma 3).
    PerHead,
    /// The whole projection's over all its heads at once, a gain per dimension of it (OLMo 2).
    Whole,
}

/// Where a layer's norms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NormPlacement {
    /// Before attention and before the feed-forward (Llama).
    #[default]
    Pre,
    /// Before and after each, the outputs normed before their residual add (Gemma 2 and 3).
    Sandwich,
    /// After each only: the inputs go in unnormed (OLMo 2).
    Post,
    /// One norm before both, which read its output side by side and join the residual
    /// together: x + attn(n(x)) + ffn(n(x)) (Phi-2, StableLM's `use_parallel_residual`).
    Parallel,
    /// Attention and the feed-forward side by side, each with its own norm of the same input:
    /// x + attn(n₁(x)) + ffn(n₂(x)) (GPT-NeoX's `use_parallel_residual`).
    ParallelTwoNorms,
}

/// The feed-forward's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Activation {
    /// SiLU (SwiGLU): Llama, Mistral, Qwen, Phi-3.
    #[default]
    Silu,
    /// GELU, tanh approximation: Gemma's GeGLU, Phi-2's plain feed-forward.
    GeluTanh,
    /// GELU, exact (erf): GPT-NeoX's (`hidden_act` "gelu").
    Gelu,
}

/// What the decoder families differ in, beyond sizes. The default is Llama's block.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BlockOptions {
    pub attention_bias: AttentionBias,
    /// RMSNorm of q and k before RoPE, where the family has it.
    pub qk_norm: QkNorm,
    /// RMSNorm gains stored as w and applied as (1 + w) (Gemma).
    pub norm_plus_one: bool,
    /// Where each layer's norms sit around attention and the feed-forward.
    pub norms: NormPlacement,
    /// Embeddings scaled by √hidden_size (Gemma).
    pub embed_scale: bool,
    pub activation: Activation,
    /// Attention scores soft-capped: cap · tanh(score / cap) (Gemma 2).
    pub attn_softcap: Option<f32>,
    /// Logits soft-capped the same way (Gemma 2).
    pub final_softcap: Option<f32>,
    /// Scores scaled by this^-½ instead of head_dim^-½ (Gemma's `query_pre_attn_scalar`).
    pub query_scalar: Option<f32>,
    /// q, k and v as one `qkv_proj`, rows q's, k's, then v's (Phi-3).
    pub fused_qkv: bool,
    /// Gate and up as one `gate_up_proj`, gate's rows first (Phi-3, GLM-4).
    pub fused_gate_up: bool,
    /// RoPE turns each head's dimensions in adjacent pairs (2i, 2i + 1), GLM's order, rather
    /// than i with i + d/2 (Llama's rotate-half).
    pub rope_interleaved: bool,
    /// How many leading dimensions of each head RoPE rotates, where not all of them do
    /// (`partial_rotary_factor`: Phi-4-mini); the rest pass through.
    pub rotary_dim: Option<usize>,
    /// Embeddings multiplied by it (Granite's `embedding_multiplier`).
    pub embed_multiplier: Option<f32>,
    /// Attention scores scaled by it in place of head_dim^-½ (Granite's
    /// `attention_multiplier`).
    pub attention_scale: Option<f32>,
    /// Attention and feed-forward outputs multiplied by it before each residual add
    /// (Granite's `residual_multiplier`).
    pub residual_multiplier: Option<f32>,
    /// Logits divided by it (Granite's `logits_scaling`).
    pub logits_divisor: Option<f32>,
    /// Logits multiplied by it (Cohere's `logit_scale`).
    pub logit_scale: Option<f32>,
    /// What each norm computes: an RMSNorm, or a LayerNorm with or without a bias.
    pub norm_kind: NormKind,
    /// The feed-forward is ungated: up (with a bias), the activation, down (with a bias)
    /// (Phi-2's fc1 and fc2).
    pub plain_mlp: bool,
    /// The LM head has a bias (Phi-2).
    pub head_bias: bool,
    /// q, k and v as one projection whose rows go head by head, each head's q, k and v in
    /// turn (GPT-NeoX's `query_key_value`), with one bias where there are biases.
    pub qkv_by_head: bool,
}

/// A layer's attention: over every earlier position, or the last `sliding_window` ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    Full,
    Sliding,
}

/// A RoPE: its base and scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Rope {
    pub theta: f32,
    pub scaling: Option<RopeScaling>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
pub struct DecoderConfig {
    /// Set by the family's unit, not read from the JSON as such.
    #[serde(skip)]
    pub family: Family,
    #[serde(skip)]
    pub opts: BlockOptions,
    /// One per layer, or none: every layer `Full` ([`DecoderConfig::layer_type`]).
    #[serde(skip)]
    pub layer_types: Vec<LayerType>,
    /// Keys a sliding layer sees (itself included).
    #[serde(skip)]
    pub sliding_window: Option<usize>,
    /// The RoPE of sliding layers where it differs from the full layers' (Gemma 3).
    #[serde(skip)]
    pub local_rope: Option<Rope>,
    /// One per layer, true where the layer applies no RoPE (SmolLM3's NoPE layers), or none:
    /// every layer rotates ([`DecoderConfig::rotates`]).
    #[serde(skip)]
    pub nope_layers: Vec<bool>,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub vocab_size: usize,
    /// The norms' eps (their LayerNorms' where the family has them: Phi's `layer_norm_eps`,
    /// which its unit reads into this).
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_max_pos")]
    pub max_position_embeddings: usize,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
    #[serde(skip)]
    pub rope_scaling: Option<RopeScaling>,
    /// A divisor per RoPE frequency, as a GGUF may give them (`rope_freqs.weight`) where they
    /// are not Llama 3's scaling; applied to the full layers' RoPE after `rope_scaling`.
    #[serde(skip)]
    pub rope_factors: Option<Vec<f32>>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_max_pos() -> usize {
    2048
}
fn default_ln_eps() -> f64 {
    1e-5
}

impl DecoderConfig {
    /// The longest sequence the model runs: `max_position_embeddings`, stretched by the factor
    /// under dynamic RoPE scaling (which exists to run past it).
    pub fn context(&self) -> usize {
        match self.rope_scaling {
            Some(RopeScaling::Dynamic { factor }) => {
                (self.max_position_embeddings as f64 * factor.max(1.0) as f64) as usize
            }
            _ => self.max_position_embeddings,
        }
    }

    pub fn kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// Layer `i`'s attention.
    pub fn layer_type(&self, i: usize) -> LayerType {
        self.layer_types.get(i).copied().unwrap_or(LayerType::Full)
    }

    /// Whether layer `i` applies RoPE to its queries and keys.
    pub fn rotates(&self, i: usize) -> bool {
        !self.nope_layers.get(i).copied().unwrap_or(false)
    }
    pub fn head_dim(&self) -> usize {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Gpt2Config {
    pub n_embd: usize,
    pub n_layer: usize,
    pub n_head: usize,
    pub n_positions: usize,
    pub vocab_size: usize,
    pub n_inner: Option<usize>,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_epsilon: f64,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<TokenIds>,
}

impl Gpt2Config {
    pub fn inner(&self) -> usize {
        self.n_inner.unwrap_or(4 * self.n_embd)
    }
}

impl ModelConfig {
    /// Whether the head is the embeddings (GPT-2's always is).
    pub fn tie_word_embeddings(&self) -> bool {
        match self {
            ModelConfig::Decoder(c) => c.tie_word_embeddings,
            ModelConfig::Gpt2(_) => true,
        }
    }

    /// How many decoder layers the model has.
    pub fn layers(&self) -> usize {
        match self {
            ModelConfig::Decoder(c) => c.num_hidden_layers,
            ModelConfig::Gpt2(c) => c.n_layer,
        }
    }

    /// Sizes that make a model at all (from any source of configs).
    pub(crate) fn check_values(&self) -> Result<()> {
        let layers = self.layers();
        // Per-layer tables are sized by it before any tensor is read.
        if layers > MAX_LAYERS {
            bail!(
                Format,
                "{layers} layers is absurd (lerpscope reads models of up to {MAX_LAYERS})"
            );
        }
        // A text needs room for a token and the one it predicts.
        if self.max_positions() < 2 {
            let key = match self {
                ModelConfig::Decoder(_) => "max_position_embeddings",
                ModelConfig::Gpt2(_) => "n_positions",
            };
            bail!(
                Format,
                "{key} {} leaves no room for text (at least 2)",
                self.max_positions()
            );
        }
        match self {
            ModelConfig::Decoder(c) => {
                if c.num_attention_heads == 0
                    || c.hidden_size % c.num_attention_heads != 0 && c.head_dim.is_none()
                {
                    bail!(
                        Format,
                        "hidden_size {} is not divisible by num_attention_heads {}",
                        c.hidden_size,
                        c.num_attention_heads
                    );
                }
                if c.kv_heads() == 0 || c.num_attention_heads % c.kv_heads() != 0 {
                    bail!(
                        Format,
                        "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                        c.num_attention_heads,
                        c.kv_heads()
                    );
                }
                if c.head_dim() % 2 != 0 {
                    bail!(
                        Format,
                        "head dimension {} must be even for rotary embeddings",
                        c.head_dim()
                    );
                }
                let rotary = c.opts.rotary_dim.unwrap_or(c.head_dim());
                if rotary == 0 || rotary % 2 != 0 || rotary > c.head_dim() {
                    bail!(
                        Format,
                        "partial_rotary_factor leaves {rotary} of the head's {} dimensions to rotate; they must be even and at least 2",
                        c.head_dim()
                    );
                }
                let scalings = std::iter::once(&c.rope_scaling)
                    .chain(c.local_rope.as_ref().map(|r| &r.scaling));
                for scaling in scalings {
                    let Some(RopeScaling::LongRope(l)) = scaling else {
                        continue;
                    };
                    for (key, f) in [
                        ("short_factor", &l.short_factor),
                        ("long_factor", &l.long_factor),
                    ] {
                        if f.len() != rotary / 2 {
                            bail!(
                                Format,
                                "LongRoPE's {key} has {} entries; {rotary} rotary dimensions need {}",
                                f.len(),
                                rotary / 2
                            );
                        }
                    }
                }
            }
            ModelConfig::Gpt2(c) => {
                if c.n_head == 0 || c.n_embd % c.n_head != 0 {
                    bail!(
                        Format,
                        "n_embd {} is not divisible by n_head {}",
                        c.n_embd,
                        c.n_head
                    );
                }
            }
        }
        Ok(())
    }

    pub fn bos_token_id(&self) -> Option<u32> {
        match self {
            ModelConfig::Decoder(c) => c.bos_token_id,
            ModelConfig::Gpt2(c) => c.bos_token_id,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Decoder(c) => c.vocab_size,
            ModelConfig::Gpt2(c) => c.vocab_size,
        }
    }

    /// The residual stream's width and the MLP's inner width.
    pub fn widths(&self) -> (usize, usize) {
        match self {
            ModelConfig::Decoder(c) => (c.hidden_size, c.intermediate_size),
            ModelConfig::Gpt2(c) => (c.n_embd, c.inner()),
        }
    }

    /// Bytes of key/value cache per position per sequence, at `dtype_bytes` per element.
    pub fn kv_bytes_per_position(&self, dtype_bytes: usize) -> u64 {
        let (layers, width) = match self {
            ModelConfig::Decoder(c) => (
                c.num_hidden_layers,
                c.kv_heads().saturating_mul(c.head_dim()),
            ),
            ModelConfig::Gpt2(c) => (c.n_layer, c.n_embd),
        };
        // Saturating: a config is read before its sizes are checked against any tensor.
        [layers, width, dtype_bytes]
            .iter()
            .fold(2u64, |acc, &x| acc.saturating_mul(x as u64))
    }

    pub fn max_positions(&self) -> usize {
        match self {
            ModelConfig::Decoder(c) => c.context(),
            ModelConfig::Gpt2(c) => c.n_positions,
        }
    }

    pub fn eos_ids(&self) -> Vec<u32> {
        let ids = match self {
            ModelConfig::Decoder(c) => c.eos_token_id.as_ref(),
            ModelConfig::Gpt2(c) => c.eos_token_id.as_ref(),
        };
        ids.map(TokenIds::to_vec).unwrap_or_default()
    }

    /// The fields whose values decide tensor shapes, how tensors are read, or what the forward
    /// pass computes with them (the model is built from A's config): two endpoints must agree
    /// on all of them to be blended. The plain sizes come first, so a pair that differs in
    /// several is told of the one a person reads most easily. Floats are compared as the f32
    /// a GGUF file stores them in.
    pub fn shape_fields(&self) -> Vec<(&'static str, String)> {
        match self {
            ModelConfig::Decoder(c) => {
                let mut fields = vec![
                    ("hidden_size", c.hidden_size.to_string()),
                    ("intermediate_size", c.intermediate_size.to_string()),
                    ("num_hidden_layers", c.num_hidden_layers.to_string()),
                    ("num_attention_heads", c.num_attention_heads.to_string()),
                    ("num_key_value_heads", c.kv_heads().to_string()),
                    ("head_dim", c.head_dim().to_string()),
                    ("vocab_size", c.vocab_size.to_string()),
                    ("tie_word_embeddings", c.tie_word_embeddings.to_string()),
                    ("block options", format!("{:?}", c.opts)),
                    ("sliding_window", format!("{:?}", c.sliding_window)),
                    (
                        "layer_types",
                        format!(
                            "{:?}",
                            (0..c.num_hidden_layers)
                                .map(|i| c.layer_type(i))
                                .collect::<Vec<_>>()
                        ),
                    ),
                    ("rms_norm_eps", (c.rms_norm_eps as f32).to_string()),
                    ("rope_theta", c.rope_theta.to_string()),
                    ("rope_scaling", format!("{:?}", c.rope_scaling)),
                    ("rope_factors", format!("{:?}", c.rope_factors)),
                    ("local rope", format!("{:?}", c.local_rope)),
                    (
                        "no_rope_layers",
                        format!(
                            "{:?}",
                            (0..c.num_hidden_layers)
                                .map(|i| c.rotates(i))
                                .collect::<Vec<_>>()
                        ),
                    ),
                ];
                // Dynamic NTK scaling starts past this length: there it changes the rotation.
                // YaRN's and LongRoPE's factors default to its ratio to the original context.
                if matches!(
                    c.rope_scaling,
                    Some(
                        RopeScaling::Dynamic { .. }
                            | RopeScaling::Yarn(_)
                            | RopeScaling::LongRope(_)
                    )
                ) {
                    fields.push((
                        "max_position_embeddings",
                        c.max_position_embeddings.to_string(),
                    ));
                }
                // Last: where the block differs, the field that makes it so is named first.
                fields.push(("architectures", self.computes_as().to_string()));
                fields
            }
            ModelConfig::Gpt2(c) => vec![
                ("n_embd", c.n_embd.to_string()),
                ("n_layer", c.n_layer.to_string()),
                ("n_head", c.n_head.to_string()),
                ("n_inner", c.inner().to_string()),
                ("n_positions", c.n_positions.to_string()),
                ("vocab_size", c.vocab_size.to_string()),
                (
                    "layer_norm_epsilon",
                    (c.layer_norm_epsilon as f32).to_string(),
                ),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llama_and_gpt2() {
        let l = ModelConfig::parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"vocab_size":100,
            "eos_token_id":[1,2]}"#,
        )
        .unwrap();
        assert_eq!(l.eos_ids(), vec![1, 2]);
        let ModelConfig::Decoder(l) = ModelConfig::parse(
            r#"{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,
            "rope_parameters":{"rope_theta":500000.0,"rope_type":"default"}}"#,
        )
        .unwrap() else {
            panic!("not llama")
        };
        assert_eq!(l.rope_theta, 500000.0);
        let g = ModelConfig::parse(
            r#"{"model_type":"gpt2","n_embd":32,"n_layer":2,"n_head":4,"n_positions":64,"vocab_size":50,"eos_token_id":7}"#,
        )
        .unwrap();
        assert_eq!(g.architecture(), "GPT2LMHeadModel");
        assert_eq!(g.eos_ids(), vec![7]);
    }

    fn llama_with(extra: &str) -> Result<ModelConfig> {
        ModelConfig::parse(&format!(
            r#"{{"architectures":["LlamaForCausalLM"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,
            "max_position_embeddings":32{extra}}}"#
        ))
    }

    #[test]
    fn every_rope_type_is_read_or_refused_by_name() {
        let scaling = |c: ModelConfig| match c {
            ModelConfig::Decoder(l) => l.rope_scaling,
            _ => panic!("not llama"),
        };
        let lin = llama_with(r#","rope_scaling":{"type":"linear","factor":4.0}"#).unwrap();
        assert_eq!(scaling(lin), Some(RopeScaling::Linear { factor: 4.0 }));
        let dy = llama_with(
            r#","rope_parameters":{"rope_type":"dynamic","factor":2.0,"rope_theta":1e5}"#,
        )
        .unwrap();
        assert_eq!(
            dy.max_positions(),
            64,
            "dynamic scaling runs past the original context"
        );
        assert_eq!(scaling(dy), Some(RopeScaling::Dynamic { factor: 2.0 }));
        let l3 = llama_with(
            r#","rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
            "high_freq_factor":4.0,"original_max_position_embeddings":8}"#,
        )
        .unwrap();
        assert!(matches!(scaling(l3), Some(RopeScaling::Llama3 { .. })));
        assert_eq!(
            scaling(llama_with(r#","rope_scaling":null"#).unwrap()),
            None
        );
        // Phi-3's own names for LongRoPE are its family's alone.
        for kind in ["su", "ntk"] {
            let e = llama_with(&format!(
                r#","rope_scaling":{{"rope_type":"{kind}","factor":4.0}}"#
            ))
            .unwrap_err();
            assert!(e.to_string().contains(kind), "{e}");
            assert!(matches!(e.root(), crate::Error::Unsupported(_)), "{e:?}");
        }
        // YaRN: transformers' defaults left as None, the flat pre-training context taken in.
        let yarn = llama_with(
            r#","original_max_position_embeddings":64,"rope_scaling":{"rope_type":"yarn","factor":4.0,"beta_fast":0}"#,
        )
        .unwrap();
        assert_eq!(
            scaling(yarn),
            Some(RopeScaling::Yarn(Box::new(Yarn {
                factor: Some(4.0),
                original_max_position_embeddings: Some(64),
                ..Yarn::default()
            })))
        );
        // LongRoPE needs both lists, one entry per rotated pair of dimensions.
        let e = llama_with(r#","rope_scaling":{"rope_type":"longrope","factor":4.0}"#).unwrap_err();
        assert!(e.to_string().contains("short_factor"), "{e}");
        let e = llama_with(
            r#","rope_scaling":{"rope_type":"longrope","short_factor":[1.0],"long_factor":[1.0]}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("short_factor has 1 entries"), "{e}");
        let e = llama_with(
            r#","rope_scaling":{"rope_type":"longrope","short_factor":[1.0,-2.0],"long_factor":[1.0]}"#,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("short_factor must hold positive"),
            "{e}"
        );
        let e = llama_with(r#","rope_scaling":{"type":"linear"}"#).unwrap_err();
        assert!(e.to_string().contains("factor"), "{e}");
    }

    #[test]
    fn rejects_unknown_architecture() {
        let e = ModelConfig::parse(r#"{"architectures":["BertModel"]}"#).unwrap_err();
        assert!(e.to_string().contains("BertModel"), "{e}");
    }
}
