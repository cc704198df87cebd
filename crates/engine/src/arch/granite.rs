//! GraniteForCausalLM (IBM Granite 3.x dense): Llama's block with four scalars, all 1 unless
//! given: embeddings times `embedding_multiplier`, attention scores scaled by
//! `attention_multiplier` (in place of head_dim^-½), each block's attention and feed-forward
//! outputs times `residual_multiplier` before the residual add, logits divided by
//! `logits_scaling`.
//!
//! In GGUF (`granite`): Llama's tensors, Q and K interleaved, and the scalars as
//! `embedding_scale`, `attention.scale` (absent: head_dim^-½, as llama.cpp reads it),
//! `residual_scale` and `logit_scale`.

use super::gguf::{Keys, Meta};
use super::{activation, number, read_base, refuse_true, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Granite,
    class: "GraniteForCausalLM",
    model_type: "granite",
    gguf_arch: "granite",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// The four scalars' config.json keys and GGUF keys.
const EMBEDDING: (&str, &str) = ("embedding_multiplier", "embedding_scale");
const ATTENTION: (&str, &str) = ("attention_multiplier", "attention.scale");
const RESIDUAL: (&str, &str) = ("residual_multiplier", "residual_scale");
const LOGITS: (&str, &str) = ("logits_scaling", "logit_scale");

/// A scalar given as a finite, nonzero number (a zero divisor or multiplier is no model).
fn scalar(name: &str, x: Option<f64>) -> Result<Option<f32>> {
    match x {
        Some(x) if !(x.is_finite() && x != 0.0) => {
            bail!(Format, "{name} must be a finite, nonzero number, got {x}")
        }
        x => Ok(x.map(|x| x as f32)),
    }
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 2048)?;
    c.family = Family::Granite;
    refuse_true(v, "mlp_bias", "Granite")?;
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for GraniteForCausalLM"
        );
    }
    if let Some(t) = super::layer_types(v, c.num_hidden_layers)? {
        if t.contains(&LayerType::Sliding) {
            bail!(
                Unsupported,
                "layer_types: sliding_attention is not part of GraniteForCausalLM"
            );
        }
    }
    let o = &mut c.opts;
    let key = |(k, _): (&str, &str)| -> Result<Option<f32>> { scalar(k, number(v, k)?) };
    o.embed_multiplier = key(EMBEDDING)?;
    // transformers' default is 1, not head_dim^-½.
    o.attention_scale = Some(key(ATTENTION)?.unwrap_or(1.0));
    o.residual_multiplier = key(RESIDUAL)?;
    o.logits_divisor = key(LOGITS)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "GraniteForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    let o = &c.opts;
    map.insert(
        "attention_bias".into(),
        (o.attention_bias == AttentionBias::QkvO).into(),
    );
    map.insert("mlp_bias".into(), false.into());
    for ((key, _), x) in scalars(c) {
        map.insert(key.into(), x.into());
    }
    Ok(())
}

/// The four scalars as the block runs them, each with its keys: both formats write all four
/// (llama.cpp requires them, and reads an absent attention scale as head_dim^-½).
fn scalars(c: &DecoderConfig) -> [((&'static str, &'static str), f32); 4] {
    let o = &c.opts;
    let attention = o
        .attention_scale
        .unwrap_or(1.0 / (c.head_dim() as f32).sqrt());
    [
        (EMBEDDING, o.embed_multiplier.unwrap_or(1.0)),
        (ATTENTION, attention),
        (RESIDUAL, o.residual_multiplier.unwrap_or(1.0)),
        (LOGITS, o.logits_divisor.unwrap_or(1.0)),
    ]
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    let key = |(name, gguf): (&str, &str)| -> Result<Option<f32>> {
        let x = match m.get(gguf) {
            Some(_) => Some(m.number_or(gguf, 0.0)?),
            None => None,
        };
        scalar(&format!("{}: {}.{gguf} ({name})", m.path(), m.arch), x)
    };
    let o = &mut c.opts;
    o.embed_multiplier = key(EMBEDDING)?;
    o.attention_scale = key(ATTENTION)?;
    o.residual_multiplier = key(RESIDUAL)?;
    o.logits_divisor = key(LOGITS)?;
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(&format!("{a}.rope.dimension_count"), c.head_dim());
    k.u32(&format!("{a}.vocab_size"), c.vocab_size);
    for ((_, gguf), x) in scalars(c) {
        k.f32(&format!("{a}.{gguf}"), x as f64);
    }
    Ok(())
}
