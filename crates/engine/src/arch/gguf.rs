//! GGUF (llama.cpp's format) as each family lays it out: one table of tensor names read both
//! ways (the GGUF reader maps llama.cpp's names to Hugging Face's, the GGUF export the other
//! way), each name with its [`Layout`]; the metadata keys every family shares; and the family
//! units' own keys ([`super::Unit::from_gguf`], [`super::Unit::to_gguf`]).
//!
//! What differs by family: only llama.cpp's `llama` architecture (Llama, Mistral) stores Q and
//! K rows interleaved for its RoPE; the others store them as transformers does. Gemma's norm
//! gains are stored with the 1 of its (1 + w) already added. Gemma's query scale, layer
//! pattern and local RoPE base are not stored: llama.cpp derives them, and so does the reader.

use super::tensors::parameters;
use crate::error::{bail, err, Context, Result};
use crate::formats::config::{
    AttentionBias, DecoderConfig, Family, Gpt2Config, LayerType, ModelConfig, NormPlacement,
    RopeScaling, TokenIds, Yarn,
};
use crate::formats::gguf::{Header, Value};
use crate::formats::layout::Layout;
use std::collections::BTreeMap;

/// How a row of the table lays its tensor out, resolved against a config by [`layout`].
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    AsIs,
    /// An RMSNorm gain: stored plus one where the family applies (1 + w).
    Norm,
    /// Q's weight or bias: interleaved for `llama`'s RoPE.
    RopeQ,
    /// K's weight or bias.
    RopeK,
    /// GPT-2's Conv1D weights.
    Conv,
    /// GPT-NeoX's fused q, k, v weight or bias: grouped by kind in GGUF.
    QkvByHead,
}

/// Which configs a row applies to (where one name means two things: transformers'
/// `post_attention_layernorm` is the norm before the feed-forward in Llama's block, and the one
/// after attention in Gemma's and OLMo 2's).
#[derive(Debug, Clone, Copy, PartialEq)]
enum When {
    Always,
    /// `post_attention_layernorm` is the norm before the feed-forward (Llama's, GLM-4's).
    PreNorms,
    /// `post_attention_layernorm` follows attention (Gemma's sandwich, OLMo 2's post-norms).
    NormAfterAttention,
}

/// The decoder block's rows: (GGUF name, Hugging Face name, kind, when). Per-layer names are
/// without their `blk.N.` and `model.layers.N.` prefixes.
const DECODER_GLOBAL: &[(&str, &str, Kind, When)] = &[
    (
        "token_embd.weight",
        "model.embed_tokens.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "output_norm.weight",
        "model.norm.weight",
        Kind::Norm,
        When::Always,
    ),
    ("output.weight", "lm_head.weight", Kind::AsIs, When::Always),
    // Phi-2's LayerNorm and head bias.
    (
        "output_norm.weight",
        "model.final_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "output_norm.bias",
        "model.final_layernorm.bias",
        Kind::AsIs,
        When::Always,
    ),
    ("output.bias", "lm_head.bias", Kind::AsIs, When::Always),
    // StableLM's final LayerNorm.
    (
        "output_norm.bias",
        "model.norm.bias",
        Kind::AsIs,
        When::Always,
    ),
    // GPT-NeoX's.
    (
        "token_embd.weight",
        "gpt_neox.embed_in.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "output_norm.weight",
        "gpt_neox.final_layer_norm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "output_norm.bias",
        "gpt_neox.final_layer_norm.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "output.weight",
        "embed_out.weight",
        Kind::AsIs,
        When::Always,
    ),
];
const DECODER_LAYER: &[(&str, &str, Kind, When)] = &[
    (
        "attn_norm.weight",
        "input_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "attn_norm.bias",
        "input_layernorm.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_q.weight",
        "self_attn.q_proj.weight",
        Kind::RopeQ,
        When::Always,
    ),
    (
        "attn_q.bias",
        "self_attn.q_proj.bias",
        Kind::RopeQ,
        When::Always,
    ),
    (
        "attn_k.weight",
        "self_attn.k_proj.weight",
        Kind::RopeK,
        When::Always,
    ),
    (
        "attn_k.bias",
        "self_attn.k_proj.bias",
        Kind::RopeK,
        When::Always,
    ),
    (
        "attn_v.weight",
        "self_attn.v_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_v.bias",
        "self_attn.v_proj.bias",
        Kind::AsIs,
        When::Always,
    ),
    // Phi-3's fused projections are stored fused: rows Q, K, V; and gate then up in ffn_up.
    (
        "attn_qkv.weight",
        "self_attn.qkv_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_q_norm.weight",
        "self_attn.q_norm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "attn_k_norm.weight",
        "self_attn.k_norm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "attn_output.weight",
        "self_attn.o_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_output.bias",
        "self_attn.o_proj.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_norm.weight",
        "post_attention_layernorm.weight",
        Kind::Norm,
        When::PreNorms,
    ),
    (
        "post_attention_norm.weight",
        "post_attention_layernorm.weight",
        Kind::Norm,
        When::NormAfterAttention,
    ),
    (
        "ffn_norm.weight",
        "pre_feedforward_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "post_ffw_norm.weight",
        "post_feedforward_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "ffn_gate.weight",
        "mlp.gate_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_up.weight",
        "mlp.up_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_up.weight",
        "mlp.gate_up_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_down.weight",
        "mlp.down_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    // Phi-2's names for the output projection and its ungated feed-forward.
    (
        "attn_output.weight",
        "self_attn.dense.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_output.bias",
        "self_attn.dense.bias",
        Kind::AsIs,
        When::Always,
    ),
    ("ffn_up.weight", "mlp.fc1.weight", Kind::AsIs, When::Always),
    ("ffn_up.bias", "mlp.fc1.bias", Kind::AsIs, When::Always),
    (
        "ffn_down.weight",
        "mlp.fc2.weight",
        Kind::AsIs,
        When::Always,
    ),
    ("ffn_down.bias", "mlp.fc2.bias", Kind::AsIs, When::Always),
    // GLM-4's norms after attention and after the feed-forward.
    (
        "post_attention_norm.weight",
        "post_self_attn_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    (
        "post_ffw_norm.weight",
        "post_mlp_layernorm.weight",
        Kind::Norm,
        When::Always,
    ),
    // StarCoder2's ungated feed-forward.
    ("ffn_up.weight", "mlp.c_fc.weight", Kind::AsIs, When::Always),
    ("ffn_up.bias", "mlp.c_fc.bias", Kind::AsIs, When::Always),
    (
        "ffn_down.weight",
        "mlp.c_proj.weight",
        Kind::AsIs,
        When::Always,
    ),
    ("ffn_down.bias", "mlp.c_proj.bias", Kind::AsIs, When::Always),
    // GPT-NeoX's, its q, k and v fused head by head.
    (
        "ffn_norm.bias",
        "post_attention_layernorm.bias",
        Kind::AsIs,
        When::PreNorms,
    ),
    (
        "attn_qkv.weight",
        "attention.query_key_value.weight",
        Kind::QkvByHead,
        When::Always,
    ),
    (
        "attn_qkv.bias",
        "attention.query_key_value.bias",
        Kind::QkvByHead,
        When::Always,
    ),
    (
        "attn_output.weight",
        "attention.dense.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_output.bias",
        "attention.dense.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_up.weight",
        "mlp.dense_h_to_4h.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_up.bias",
        "mlp.dense_h_to_4h.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_down.weight",
        "mlp.dense_4h_to_h.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "ffn_down.bias",
        "mlp.dense_4h_to_h.bias",
        Kind::AsIs,
        When::Always,
    ),
];
const GPT2_GLOBAL: &[(&str, &str, Kind, When)] = &[
    (
        "token_embd.weight",
        "transformer.wte.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "position_embd.weight",
        "transformer.wpe.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "output_norm.weight",
        "transformer.ln_f.weight",
        Kind::AsIs,
        When::Always,
    ),
    (
        "output_norm.bias",
        "transformer.ln_f.bias",
        Kind::AsIs,
        When::Always,
    ),
];
const GPT2_LAYER: &[(&str, &str, Kind, When)] = &[
    ("attn_norm.weight", "ln_1.weight", Kind::AsIs, When::Always),
    ("attn_norm.bias", "ln_1.bias", Kind::AsIs, When::Always),
    (
        "attn_qkv.weight",
        "attn.c_attn.weight",
        Kind::Conv,
        When::Always,
    ),
    (
        "attn_qkv.bias",
        "attn.c_attn.bias",
        Kind::AsIs,
        When::Always,
    ),
    (
        "attn_output.weight",
        "attn.c_proj.weight",
        Kind::Conv,
        When::Always,
    ),
    (
        "attn_output.bias",
        "attn.c_proj.bias",
        Kind::AsIs,
        When::Always,
    ),
    ("ffn_norm.weight", "ln_2.weight", Kind::AsIs, When::Always),
    ("ffn_norm.bias", "ln_2.bias", Kind::AsIs, When::Always),
    ("ffn_up.weight", "mlp.c_fc.weight", Kind::Conv, When::Always),
    ("ffn_up.bias", "mlp.c_fc.bias", Kind::AsIs, When::Always),
    (
        "ffn_down.weight",
        "mlp.c_proj.weight",
        Kind::Conv,
        When::Always,
    ),
    ("ffn_down.bias", "mlp.c_proj.bias", Kind::AsIs, When::Always),
];

/// Tensors a GGUF may hold that are not parameters: RoPE's divisors, read into the config
/// (Phi-3's LongRoPE lists by `phi3` only: llama.cpp refuses them elsewhere).
pub(crate) const NOT_PARAMETERS: &[&str] = &[
    "rope_freqs.weight",
    "rope_factors_long.weight",
    "rope_factors_short.weight",
];

/// llama.cpp's architecture name for a config.
pub fn gguf_arch(c: &ModelConfig) -> &'static str {
    match c {
        ModelConfig::Decoder(d) => super::unit(d.family).gguf_arch,
        ModelConfig::Gpt2(_) => "gpt2",
    }
}

/// One tensor in both namings.
#[derive(Debug, Clone, PartialEq)]
pub struct Named {
    pub gguf: String,
    pub hf: String,
    /// Candle order, as Hugging Face has it.
    pub hf_shape: Vec<usize>,
    pub layout: Layout,
}

/// Every parameter of a model of config `c`, named both ways: the one table both the GGUF
/// reader and the GGUF export go through.
pub fn tensor_names(c: &ModelConfig) -> Vec<Named> {
    let (global, layer, prefix) = match c {
        ModelConfig::Decoder(d) => (
            DECODER_GLOBAL,
            DECODER_LAYER,
            format!("{}.layers.", super::tensors::Names::of(d).model),
        ),
        ModelConfig::Gpt2(_) => (GPT2_GLOBAL, GPT2_LAYER, "transformer.h.".into()),
    };
    // Llama's post_attention_layernorm is the norm before the feed-forward, and so are
    // GPT-NeoX's and GLM-4's.
    let pre_norms = match c {
        ModelConfig::Decoder(d) => match d.opts.norms {
            // llama.cpp's seed_oss stores its norm before the feed-forward as the norm after
            // attention (`post_attention_norm`).
            NormPlacement::Pre if d.family == Family::SeedOss => false,
            NormPlacement::Pre | NormPlacement::ParallelTwoNorms => true,
            NormPlacement::Sandwich => {
                super::tensors::Names::of(d).before_mlp_norm == "post_attention_layernorm"
            }
            NormPlacement::Post | NormPlacement::Parallel => false,
        },
        ModelConfig::Gpt2(_) => true,
    };
    let applies = |w: When| match w {
        When::Always => true,
        When::PreNorms => pre_norms,
        When::NormAfterAttention => !pre_norms,
    };
    parameters(c)
        .into_iter()
        .map(|(hf, hf_shape)| {
            let found = match hf.strip_prefix(&prefix).and_then(|r| r.split_once('.')) {
                Some((i, part)) => layer
                    .iter()
                    .find(|r| r.1 == part && applies(r.3))
                    .map(|r| (format!("blk.{i}.{}", r.0), r.2)),
                None => global
                    .iter()
                    .find(|r| r.1 == hf && applies(r.3))
                    .map(|r| (r.0.to_string(), r.2)),
            };
            let (gguf, kind) =
                found.unwrap_or_else(|| panic!("the GGUF table has no row for parameter {hf}"));
            Named {
                gguf,
                layout: layout(c, kind),
                hf,
                hf_shape,
            }
        })
        .collect()
}

fn layout(c: &ModelConfig, kind: Kind) -> Layout {
    let d = match c {
        ModelConfig::Decoder(d) => d,
        ModelConfig::Gpt2(_) => {
            return match kind {
                Kind::Conv => Layout::Transposed,
                _ => Layout::AsIs,
            }
        }
    };
    // llama.cpp's converter permutes them for `llama` and the architectures built on it.
    let interleaved = matches!(
        super::unit(d.family).gguf_arch,
        "llama" | "smollm3" | "granite"
    );
    match kind {
        Kind::Norm if d.opts.norm_plus_one => Layout::PlusOne,
        Kind::RopeQ if interleaved => Layout::RopeInterleaved {
            heads: d.num_attention_heads,
        },
        Kind::RopeK if interleaved => Layout::RopeInterleaved {
            heads: d.kv_heads(),
        },
        Kind::QkvByHead => Layout::QkvByHead {
            heads: d.num_attention_heads,
        },
        _ => Layout::AsIs,
    }
}

/// The parameters of a GGUF model under their Hugging Face names, each with its GGUF name,
/// checked: every tensor the file holds is one the config has, every parameter is there, and
/// each has the shape the config gives it.
pub fn hf_names(h: &Header, c: &ModelConfig) -> Result<BTreeMap<String, Named>> {
    let p = h.path.display();
    let arch = gguf_arch(c);
    let names = tensor_names(c);
    let by_gguf: BTreeMap<&str, &Named> = names.iter().map(|n| (n.gguf.as_str(), n)).collect();
    for name in h.tensors.keys() {
        let known = by_gguf.contains_key(name.as_str())
            || (NOT_PARAMETERS.contains(&name.as_str())
                && (arch == "phi3" || !name.starts_with("rope_factors_")))
            || (arch == "gpt2" && name == "output.weight");
        if !known {
            bail!(
                Unsupported,
                "{p}: tensor {name} is not part of a {arch} model of this config (general.architecture {arch})"
            );
        }
    }
    let mut out = BTreeMap::new();
    for n in names {
        let Some(info) = h.tensors.get(&n.gguf) else {
            bail!(
                Format,
                "{p}: tensor {} ({}) is missing; a {arch} model of this config has it",
                n.gguf,
                n.hf
            );
        };
        let stored: Vec<usize> = info.dims.iter().rev().map(|&d| d as usize).collect();
        if n.layout.hf_shape(&stored) != n.hf_shape {
            let fused = if n.gguf.ends_with("attn_qkv.weight") {
                " (q, k and v rows fused)"
            } else if n.hf.ends_with("gate_up_proj.weight") {
                " (gate and up rows fused)"
            } else {
                ""
            };
            bail!(
                Format,
                "{p}: tensor {} has shape {:?}, expected {:?} for this {arch} config{fused}",
                n.gguf,
                info.dims,
                n.layout
                    .hf_shape(&n.hf_shape)
                    .iter()
                    .rev()
                    .collect::<Vec<_>>()
            );
        }
        out.insert(n.hf.clone(), n);
    }
    Ok(out)
}

/// The header as the families' readers take it: tensors a converter stored in another form
/// than the one the table names, put in that form (Phi-2's fused q, k and v).
pub fn normalize(h: &mut Header) -> Result<()> {
    match h.get("general.architecture").and_then(Value::as_str) {
        Some("phi2") => super::phi::split_fused_qkv(h),
        _ => Ok(()),
    }
}

/// A GGUF's metadata under one architecture's prefix.
pub struct Meta<'a> {
    pub h: &'a Header,
    pub arch: &'a str,
}

impl Meta<'_> {
    fn key(&self, k: &str) -> String {
        format!("{}.{k}", self.arch)
    }
    pub fn get(&self, k: &str) -> Option<&Value> {
        self.h.get(&self.key(k))
    }
    pub fn count(&self, k: &str) -> Result<usize> {
        self.h.usize_or(&self.key(k), None)
    }
    pub fn count_or(&self, k: &str, default: usize) -> Result<usize> {
        self.h.usize_or(&self.key(k), Some(default as u64))
    }
    pub fn number_or(&self, k: &str, default: f64) -> Result<f64> {
        self.h.f64_or(&self.key(k), default)
    }
    pub fn has_tensor(&self, name: &str) -> bool {
        self.h.tensors.contains_key(name)
    }
    /// `{arch}.attention.sliding_window_pattern`, as a bool per layer (true: sliding), when the
    /// file carries it (as llama.cpp's converter writes it for a pattern it cannot derive).
    pub fn sliding_pattern(&self, layers: usize) -> Result<Option<Vec<LayerType>>> {
        let k = self.key("attention.sliding_window_pattern");
        let p = self.h.path.display();
        match self.h.get(&k) {
            None => Ok(None),
            Some(Value::Array(a)) if a.len() == layers => a
                .iter()
                .map(|v| match v {
                    Value::Bool(true) => Ok(LayerType::Sliding),
                    Value::Bool(false) => Ok(LayerType::Full),
                    _ => bail!(Format, "{p}: metadata {k} must hold booleans"),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(Value::Array(a)) => bail!(
                Format,
                "{p}: metadata {k} has {} entries for {layers} layers",
                a.len()
            ),
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => Ok(Some(pattern(layers, n as usize))),
                _ => bail!(
                    Format,
                    "{p}: metadata {k} must be a list of booleans or a period"
                ),
            },
        }
    }
    pub fn path(&self) -> String {
        self.h.path.display().to_string()
    }
}

/// llama.cpp's `set_swa_pattern(n)`: layer i slides unless `i % n == n − 1` (n = 1: none do).
pub fn pattern(layers: usize, n: usize) -> Vec<LayerType> {
    (0..layers)
        .map(|i| {
            if i % n < n - 1 {
                LayerType::Sliding
            } else {
                LayerType::Full
            }
        })
        .collect()
}

/// The model's config, from a GGUF's metadata: the keys every family shares here, the rest by
/// the family's unit.
pub fn config(h: &Header) -> Result<ModelConfig> {
    let p = h.path.display();
    let arch = h.architecture()?;
    let m = Meta { h, arch };
    // Every block has tensors: a count beyond the file's is corrupt (and would size per-layer
    // tables by it).
    let blocks = m.count_or("block_count", 0)?;
    if blocks > h.tensors.len() {
        bail!(
            Format,
            "{p}: {arch}.block_count is {blocks} but the file holds {} tensors",
            h.tensors.len()
        );
    }
    // A count given per layer has one entry a layer, as llama.cpp requires.
    for k in [
        "attention.head_count",
        "attention.head_count_kv",
        "feed_forward_length",
    ] {
        if let Some(Value::Array(items)) = m.get(k) {
            if items.len() != blocks {
                bail!(
                    Format,
                    "{p}: {arch}.{k} has {} entries for {blocks} layers (block_count)",
                    items.len()
                );
            }
        }
    }
    let config = if arch == "gpt2" {
        ModelConfig::Gpt2(gpt2_config(&m)?)
    } else {
        let Some(unit) = super::UNITS.iter().find(|u| u.gguf_arch == arch) else {
            let mut archs: Vec<&str> = super::UNITS.iter().map(|u| u.gguf_arch).collect();
            archs.push("gpt2");
            archs.dedup();
            bail!(
                Unsupported,
                "{p}: general.architecture {arch:?} is not supported (supported: {})",
                archs.join(", ")
            );
        };
        let mut c = decoder_base(&m)?;
        c.family = unit.family;
        (unit.from_gguf)(&m, &mut c)?;
        ModelConfig::Decoder(c)
    };
    config.check_values().with_context(|| p.to_string())?;
    Ok(config)
}

/// The BOS id, and the ids that end generation: EOS and, as llama.cpp counts them, the
/// end-of-turn and end-of-message tokens.
fn token_ids(h: &Header) -> Result<(Option<u32>, Option<TokenIds>)> {
    let id = |k: &str| -> Result<Option<u32>> {
        match h.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|x| u32::try_from(x).ok())
                .map(Some)
                .ok_or_else(|| err!(Format, "{}: {k} is {v:?}, not a token id", h.path.display())),
        }
    };
    let mut ends = Vec::new();
    for k in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(i) = id(k)? {
            if !ends.contains(&i) {
                ends.push(i);
            }
        }
    }
    let eos = match ends.len() {
        0 => None,
        1 => Some(TokenIds::One(ends[0])),
        _ => Some(TokenIds::Many(ends)),
    };
    Ok((id("tokenizer.ggml.bos_token_id")?, eos))
}

/// The vocabulary's size: the embedding's rows (which llama.cpp's converter may trim to the
/// tokenizer), else the key, else the tokenizer's length.
fn vocab(m: &Meta) -> Result<usize> {
    let rows =
        m.h.tensors
            .get("token_embd.weight")
            .and_then(|t| t.dims.get(1).map(|&d| d as usize));
    let tokens = match m.h.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => Some(a.len()),
        _ => None,
    };
    rows.or(m
        .get("vocab_size")
        .and_then(Value::as_u64)
        .map(|v| v as usize))
        .or(tokens)
        .ok_or_else(|| err!(Format, "{}: no vocabulary size", m.path()))
}

fn gpt2_config(m: &Meta) -> Result<Gpt2Config> {
    let (bos, eos) = token_ids(m.h)?;
    Ok(Gpt2Config {
        n_embd: m.count("embedding_length")?,
        n_layer: m.count("block_count")?,
        n_head: m.count("attention.head_count")?,
        n_positions: m.count_or("context_length", 1024)?,
        vocab_size: vocab(m)?,
        n_inner: Some(m.count("feed_forward_length")?),
        layer_norm_epsilon: m.number_or("attention.layer_norm_epsilon", 1e-5)?,
        bos_token_id: bos,
        eos_token_id: eos,
    })
}

/// What every decoder family's GGUF says alike: sizes, eps, RoPE base and scaling, biases
/// and head by which tensors are there.
fn decoder_base(m: &Meta) -> Result<DecoderConfig> {
    let p = m.path();
    let heads = m.count("attention.head_count")?;
    let hidden = m.count("embedding_length")?;
    let key_length = m.count_or("attention.key_length", 0)?;
    let rope_dim = m.count_or("rope.dimension_count", 0)?;
    // As llama.cpp sizes heads: the key length, or the width over the heads.
    let head_dim = match key_length {
        0 => hidden / heads.max(1),
        k => k,
    };
    // Fewer rotated dimensions than the head has: partial rotary, which Phi-4-mini and Phi-2
    // have (in the rotate-half layout; llama.cpp refuses it for `llama`).
    let rotary_dim = match rope_dim {
        0 => None,
        r if r == head_dim => None,
        r if matches!(m.arch, "phi3" | "phi2" | "gptneox" | "stablelm" | "glm4") && r < head_dim => {
            Some(r)
        }
        r => bail!(
            Unsupported,
            "{p}: {}.rope.dimension_count {r} is not the head dimension {head_dim}: partial rotary embeddings are supported for glm4, gptneox, phi2, phi3 and stablelm only",
            m.arch
        ),
    };
    let scaling_key = format!("{}.rope.scaling.type", m.arch);
    let rope_scaling = match m.get("rope.scaling.type").and_then(Value::as_str) {
        None | Some("none") => None,
        Some("linear") => Some(RopeScaling::Linear {
            factor: m.number_or("rope.scaling.factor", 1.0)? as f32,
        }),
        Some("yarn") => Some(yarn(m)?),
        Some(other) => bail!(
            Unsupported,
            "{p}: {scaling_key} {other:?} is not supported (supported: none, linear, yarn)"
        ),
    };
    let (bos, eos) = token_ids(m.h)?;
    let bias = |t: &str| m.has_tensor(&format!("blk.0.{t}.bias"));
    let mut c = DecoderConfig {
        hidden_size: hidden,
        intermediate_size: m.count("feed_forward_length")?,
        num_hidden_layers: m.count("block_count")?,
        num_attention_heads: heads,
        num_key_value_heads: Some(m.count_or("attention.head_count_kv", heads)?),
        head_dim: Some(head_dim),
        vocab_size: vocab(m)?,
        rms_norm_eps: m.number_or("attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: m.number_or("rope.freq_base", 10_000.0)? as f32,
        max_position_embeddings: m.count_or("context_length", 2048)?,
        tie_word_embeddings: !m.has_tensor("output.weight"),
        bos_token_id: bos,
        eos_token_id: eos,
        rope_scaling,
        ..Default::default()
    };
    c.opts.rotary_dim = rotary_dim;
    c.opts.attention_bias = match (bias("attn_q"), bias("attn_output")) {
        (false, _) => AttentionBias::None,
        (true, false) => AttentionBias::Qkv,
        (true, true) => AttentionBias::QkvO,
    };
    Ok(c)
}

/// YaRN as llama.cpp reads it: a factor over `original_context_length` (the context where
/// not given), its ramp from 32 to 1 rotations rounded outwards, cos and sin scaled by
/// 1 + 0.1·ln factor. The keys llama.cpp's families here do not read (the ramp's ends, other
/// than their defaults) or read differently from transformers (the attention factor's) are
/// refused by name: the file would run as one thing there and another here.
///
/// One exception: an attention factor equal to that default, as llama.cpp's converter copies
/// OLMo 3's `attention_factor` into `rope.scaling.attn_factor`. It says what the model was
/// trained with, and runs so here; llama.cpp multiplies it into its own default, squaring it.
fn yarn(m: &Meta) -> Result<RopeScaling> {
    let a = m.arch;
    let factor = m.number_or("rope.scaling.factor", 0.0)?;
    if !(factor.is_finite() && factor > 0.0) {
        bail!(
            Format,
            "{}: YaRN needs a positive {a}.rope.scaling.factor, got {factor}",
            m.path()
        );
    }
    if m.get("rope.scaling.attn_factor").is_some() {
        let given = m.number_or("rope.scaling.attn_factor", 0.0)?;
        let default = Yarn::default_attention_factor(factor);
        if (given - default).abs() > 1e-6 * default {
            bail!(
                Unsupported,
                "{}: {a}.rope.scaling.attn_factor {given} is not supported with YaRN: llama.cpp multiplies it into its own attention factor ({default}, 1 + 0.1·ln factor), transformers takes it alone; only that default is read",
                m.path()
            );
        }
    }
    for key in [
        "rope.scaling.yarn_ext_factor",
        "rope.scaling.yarn_attn_factor",
        "rope.scaling.yarn_log_multiplier",
    ] {
        if m.get(key).is_some() {
            bail!(
                Unsupported,
                "{}: {a}.{key} is not supported with YaRN (its factor and original_context_length are)",
                m.path()
            );
        }
    }
    // Written by converters with the defaults too, which are what llama.cpp runs.
    let beta = |key: &str, default: f64| -> Result<()> {
        let full = format!("rope.scaling.{key}");
        match m.get(&full) {
            None => Ok(()),
            Some(_) => match m.number_or(&full, 0.0)? {
                b if b == default => Ok(()),
                b => bail!(
                    Unsupported,
                    "{}: {a}.{full} {b} is not read by llama.cpp's {a} (it ramps YaRN from 32 to 1 rotations); lerpscope would run the file otherwise",
                    m.path()
                ),
            },
        }
    };
    let original = match m.count_or("rope.scaling.original_context_length", 0)? {
        0 => None,
        n => Some(n),
    };
    beta("yarn_beta_fast", 32.0)?;
    beta("yarn_beta_slow", 1.0)?;
    Ok(RopeScaling::Yarn(Box::new(Yarn {
        factor: Some(factor as f32),
        original_max_position_embeddings: original,
        ..Yarn::default()
    })))
}

/// GGUF metadata to write, in order.
#[derive(Default)]
pub struct Keys(pub Vec<(String, Value)>);

impl Keys {
    pub fn u32(&mut self, k: &str, v: usize) {
        self.0.push((k.into(), Value::UInt(v as u64)));
    }
    pub fn f32(&mut self, k: &str, v: f64) {
        self.0.push((k.into(), Value::Float(v)));
    }
    pub fn bool(&mut self, k: &str, v: bool) {
        self.0.push((k.into(), Value::Bool(v)));
    }
    pub fn string(&mut self, k: &str, v: &str) {
        self.0.push((k.into(), Value::Str(v.into())));
    }
    pub fn bools(&mut self, k: &str, v: impl IntoIterator<Item = bool>) {
        let a = v.into_iter().map(Value::Bool).collect();
        self.0.push((k.into(), Value::Array(a)));
    }
}

/// The architecture's metadata for config `c`: the shared keys, then the family's.
pub fn metadata(c: &ModelConfig) -> Result<Keys> {
    let mut k = Keys::default();
    let a = gguf_arch(c);
    k.string("general.architecture", a);
    match c {
        ModelConfig::Gpt2(c) => {
            k.u32("gpt2.context_length", c.n_positions);
            k.u32("gpt2.embedding_length", c.n_embd);
            k.u32("gpt2.feed_forward_length", c.inner());
            k.u32("gpt2.block_count", c.n_layer);
            k.u32("gpt2.attention.head_count", c.n_head);
            k.f32("gpt2.attention.layer_norm_epsilon", c.layer_norm_epsilon);
        }
        ModelConfig::Decoder(c) => {
            k.u32(&format!("{a}.context_length"), c.max_position_embeddings);
            k.u32(&format!("{a}.embedding_length"), c.hidden_size);
            k.u32(&format!("{a}.feed_forward_length"), c.intermediate_size);
            k.u32(&format!("{a}.block_count"), c.num_hidden_layers);
            k.u32(&format!("{a}.attention.head_count"), c.num_attention_heads);
            k.u32(&format!("{a}.attention.head_count_kv"), c.kv_heads());
            k.u32(&format!("{a}.attention.key_length"), c.head_dim());
            k.u32(&format!("{a}.attention.value_length"), c.head_dim());
            k.f32(&format!("{a}.rope.freq_base"), c.rope_theta as f64);
            let eps = match c.opts.norm_kind.is_layer() {
                true => "layer_norm_epsilon",
                false => "layer_norm_rms_epsilon",
            };
            k.f32(&format!("{a}.attention.{eps}"), c.rms_norm_eps);
            match &c.rope_scaling {
                None => {}
                Some(RopeScaling::Linear { factor }) => {
                    k.string(&format!("{a}.rope.scaling.type"), "linear");
                    k.f32(&format!("{a}.rope.scaling.factor"), *factor as f64);
                }
                // Llama 3's becomes the rope_freqs.weight tensor (see `rope_tensors`).
                Some(RopeScaling::Llama3 { .. }) if matches!(a, "llama" | "exaone4") => {}
                // Phi-3's are two tensors and its own keys (see `rope_tensors`).
                Some(RopeScaling::LongRope(_)) if a == "phi3" => {}
                Some(RopeScaling::Yarn(y)) if y.is_llamacpps(c.max_position_embeddings) => {
                    let max = c.max_position_embeddings;
                    k.string(&format!("{a}.rope.scaling.type"), "yarn");
                    k.f32(&format!("{a}.rope.scaling.factor"), y.factor(max));
                    k.u32(
                        &format!("{a}.rope.scaling.original_context_length"),
                        y.original(max),
                    );
                }
                Some(other) => bail!(
                    Unsupported,
                    "--format gguf: RoPE scaling {:?} has no GGUF form for {a} here; use --format hf",
                    other.name()
                ),
            }
            (super::unit(c.family).to_gguf)(c, &mut k)?;
        }
    }
    Ok(k)
}

/// The RoPE divisors llama.cpp stores as tensors: Llama 3's (`rope_freqs.weight`, computed as
/// its converter does, or as a GGUF gave them) and Phi-3's LongRoPE lists
/// (`rope_factors_long.weight`, `rope_factors_short.weight`).
pub fn rope_tensors(c: &ModelConfig) -> Vec<(&'static str, Vec<f32>)> {
    if let ModelConfig::Decoder(DecoderConfig {
        rope_scaling: Some(RopeScaling::LongRope(l)),
        ..
    }) = c
    {
        return vec![
            ("rope_factors_long.weight", l.long_factor.clone()),
            ("rope_factors_short.weight", l.short_factor.clone()),
        ];
    }
    rope_freqs(c)
        .map(|f| vec![("rope_freqs.weight", f)])
        .unwrap_or_default()
}

/// Llama 3's RoPE scaling as llama.cpp stores it: one divisor per frequency
/// (`rope_freqs.weight`), computed as its converter does. None for any other RoPE.
pub(super) fn rope_freqs(c: &ModelConfig) -> Option<Vec<f32>> {
    let ModelConfig::Decoder(c) = c else {
        return None;
    };
    if let Some(f) = &c.rope_factors {
        return Some(f.clone());
    }
    let Some(RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    }) = c.rope_scaling
    else {
        return None;
    };
    let (d, base) = (c.head_dim() as f64, c.rope_theta as f64);
    let (factor, low, high) = (
        factor as f64,
        low_freq_factor as f64,
        high_freq_factor as f64,
    );
    let old = original_max_position_embeddings as f64;
    let (low_wavelen, high_wavelen) = (old / low, old / high);
    Some(
        (0..c.head_dim() / 2)
            .map(|i| {
                let freq = 1.0 / base.powf(2.0 * i as f64 / d);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                let f = if wavelen < high_wavelen {
                    1.0
                } else if wavelen > low_wavelen {
                    factor
                } else {
                    let smooth = (old / wavelen - low) / (high - low);
                    1.0 / ((1.0 - smooth) / factor + smooth)
                };
                f as f32
            })
            .collect(),
    )
}

/// The window and layer types a GGUF gives (`attention.sliding_window`, 0 for none;
/// `attention.sliding_window_pattern`), with the family's defaults where it gives none.
pub fn read_windows(
    m: &Meta,
    c: &mut DecoderConfig,
    default_window: Option<usize>,
    default_layers: fn(usize) -> Vec<LayerType>,
) -> Result<()> {
    let window = match m.get("attention.sliding_window") {
        None => default_window,
        Some(_) => Some(m.count("attention.sliding_window")?).filter(|&w| w > 0),
    };
    let n = c.num_hidden_layers;
    c.sliding_window = window;
    c.layer_types = match window {
        None => Vec::new(),
        Some(_) => match m.sliding_pattern(n)? {
            Some(t) => t,
            None => default_layers(n),
        },
    };
    Ok(())
}

/// The window and, where they are not the family's default, the layer types.
pub fn write_windows(c: &DecoderConfig, k: &mut Keys, default_layers: fn(usize) -> Vec<LayerType>) {
    let a = super::unit(c.family).gguf_arch;
    let n = c.num_hidden_layers;
    let types: Vec<LayerType> = (0..n).map(|i| c.layer_type(i)).collect();
    let Some(w) = c
        .sliding_window
        .filter(|_| types.contains(&LayerType::Sliding))
    else {
        return;
    };
    k.u32(&format!("{a}.attention.sliding_window"), w);
    if types != default_layers(n) {
        k.bools(
            &format!("{a}.attention.sliding_window_pattern"),
            types.iter().map(|&t| t == LayerType::Sliding),
        );
    }
}

/// Every layer sliding (Mistral, Phi-3).
pub fn all_sliding(n: usize) -> Vec<LayerType> {
    vec![LayerType::Sliding; n]
}

/// The query scale llama.cpp derives for Gemma 2 and 3 (it stores none): hidden / heads for
/// the 27B models (`layers_27b` layers), the head dimension otherwise.
pub fn gemma_query_scalar(c: &DecoderConfig, layers_27b: usize) -> f32 {
    if c.num_hidden_layers == layers_27b {
        (c.hidden_size / c.num_attention_heads) as f32
    } else {
        c.head_dim() as f32
    }
}

/// The options every Gemma GGUF shares, as llama.cpp runs them.
pub fn gemma_from_gguf(c: &mut DecoderConfig, layers_27b: usize) {
    c.opts.norm_plus_one = true;
    c.opts.norms = NormPlacement::Sandwich;
    c.opts.embed_scale = true;
    c.opts.activation = crate::formats::config::Activation::GeluTanh;
    c.opts.query_scalar = Some(gemma_query_scalar(c, layers_27b));
}

/// What a Gemma GGUF cannot say: an output-projection bias, a query scale other than llama.cpp's.
pub fn gemma_check(c: &DecoderConfig, layers_27b: usize) -> Result<()> {
    let derived = gemma_query_scalar(c, layers_27b);
    if c.opts.query_scalar != Some(derived) {
        bail!(
            Unsupported,
            "--format gguf: query_pre_attn_scalar {:?} is not the {derived} llama.cpp derives for this model (GGUF has no key for it); use --format hf",
            c.opts.query_scalar.unwrap_or_default()
        );
    }
    // llama.cpp's gemma2 and gemma3 load no output-projection bias, and refuse a file with
    // one ("wrong number of tensors").
    if c.opts.attention_bias == crate::formats::config::AttentionBias::QkvO {
        bail!(
            Unsupported,
            "--format gguf: this Gemma has attention_bias, whose output-projection bias (attn_output.bias) llama.cpp's gemma does not load; use --format hf"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::formats::gguf::tests::{file, read, string, u32_kv, u32s};

    /// A count given per layer has one entry a layer, as llama.cpp requires.
    #[test]
    fn a_per_layer_count_of_another_length_is_refused() {
        let mut arch = Vec::new();
        string(&mut arch, "llama");
        let kv = [
            ("general.architecture", 8, arch),
            u32_kv("llama.block_count", 0),
            ("llama.attention.head_count", 9, u32s(&[4, 4])),
        ];
        let h = read(&file(&kv, &[], 0)).unwrap();
        let e = super::config(&h).unwrap_err().to_string();
        assert!(
            e.contains("llama.attention.head_count has 2 entries for 0 layers"),
            "{e}"
        );
    }

    /// llama.cpp's `olmo2` rotates the sliding layers at `rope.freq_base`: a file that gives
    /// them another base is refused by key; the same base reads.
    #[test]
    fn an_olmo3_gguf_with_its_own_sliding_base_is_refused() {
        use crate::formats::gguf::{Header, Value};
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/gguf/olmo3-a.gguf");
        let mut h = Header::read(&path).unwrap();
        let key = "olmo2.rope.freq_base_swa".to_string();
        h.metadata.insert(key.clone(), Value::Float(500_000.0));
        assert!(super::config(&h).is_ok());
        h.metadata.insert(key, Value::Float(10_000.0));
        let e = super::config(&h).unwrap_err().to_string();
        assert!(
            e.contains("olmo2.rope.freq_base_swa 10000 differs from rope.freq_base 500000"),
            "{e}"
        );
    }
}
