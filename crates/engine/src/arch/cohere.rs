//! CohereForCausalLM (Command R 35B, Aya 23 and Aya Expanse 8B and 32B, and their
//! fine-tunes): one LayerNorm per layer, gains only (`layer_norm_eps`), whose output attention
//! and the gated feed-forward read side by side; RoPE turning adjacent pairs of each head;
//! logits multiplied by `logit_scale` (0.0625 unless given); biases on q, k, v and o with
//! `attention_bias`; a tied head unless `tie_word_embeddings` is false. CohereConfig's
//! defaults of transformers 5 where a key is missing (a RoPE base of 5·10⁵). `use_qk_norm`
//! (Command R+'s per-head LayerNorms of q and k) is refused.
//!
//! In GGUF (`command-r`): q and k as transformers stores them (llama.cpp turns adjacent
//! pairs too), the eps as `attention.layer_norm_epsilon`, the scale as `logit_scale`. llama.cpp
//! reads no head of its own and no biases: a model with either is exported to Hugging Face
//! only.

use super::gguf::{Keys, Meta};
use super::{activation, get, layer_norm_eps, number, read_base, refuse_true, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, NormKind, NormPlacement,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Cohere,
    class: "CohereForCausalLM",
    model_type: "cohere",
    gguf_arch: "command-r",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// CohereConfig's RoPE base in transformers 5 (`default_theta`).
const DEFAULT_THETA: f32 = 500_000.0;
const DEFAULT_LOGIT_SCALE: f64 = 0.0625;

/// What every Cohere block has, whichever file it comes from (Cohere 2's too, `family` set
/// by its unit).
pub(super) fn block(c: &mut DecoderConfig, family: Family) {
    c.family = family;
    let o = &mut c.opts;
    o.norms = NormPlacement::Parallel;
    o.norm_kind = NormKind::LayerNoBias;
    o.rope_interleaved = true;
}

/// A logit scale given as a finite, nonzero number.
fn logit_scale(what: &str, x: f64) -> Result<f32> {
    if !(x.is_finite() && x != 0.0) {
        bail!(Format, "{what} must be a finite, nonzero number, got {x}");
    }
    Ok(x as f32)
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &layer_norm_eps(v);
    let mut c = read_base(v, 1e-5, DEFAULT_THETA, 8192)?;
    block(&mut c, Family::Cohere);
    read_options(v, &mut c)?;
    refuse_true(v, "use_qk_norm", UNIT.class)?;
    Ok(c)
}

/// The keys Cohere and Cohere 2 share: the head, attention biases, the activation and the
/// logit scale.
pub(super) fn read_options(v: &Value, c: &mut DecoderConfig) -> Result<()> {
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    c.opts.activation = activation(v, "hidden_act", Activation::Silu)?;
    let scale = number(v, "logit_scale")?.unwrap_or(DEFAULT_LOGIT_SCALE);
    c.opts.logit_scale = Some(logit_scale("logit_scale", scale)?);
    Ok(())
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    write_options(c, map)?;
    map.insert("use_qk_norm".into(), false.into());
    Ok(())
}

/// [`read_options`]' keys written back.
pub(super) fn write_options(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    let bias = match c.opts.attention_bias {
        AttentionBias::None => false,
        AttentionBias::QkvO => true,
        AttentionBias::Qkv => bail!(
            Unsupported,
            "CohereForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        ),
    };
    map.insert("attention_bias".into(), bias.into());
    map.insert(
        "logit_scale".into(),
        (c.opts.logit_scale.unwrap_or(1.0) as f64).into(),
    );
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c, Family::Cohere);
    options_from_gguf(m, c)
}

/// The eps and logit scale of a `command-r` or `cohere2` file.
pub(super) fn options_from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.rms_norm_eps = m.number_or("attention.layer_norm_epsilon", 1e-5)?;
    let what = format!("{}: {}.logit_scale", m.path(), m.arch);
    c.opts.logit_scale = Some(logit_scale(&what, m.number_or("logit_scale", 1.0)?)?);
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    options_to_gguf(c, k, UNIT.gguf_arch)
}

/// The logit scale, and the refusals where llama.cpp's `arch` (`command-r`, `cohere2`) would
/// run the model otherwise.
pub(super) fn options_to_gguf(c: &DecoderConfig, k: &mut Keys, a: &str) -> Result<()> {
    k.f32(
        &format!("{a}.logit_scale"),
        c.opts.logit_scale.unwrap_or(1.0) as f64,
    );
    let refuse = |what: &str| -> Result<()> {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's {a} {what}; use --format hf"
        )
    };
    if !c.tie_word_embeddings {
        refuse("reads the embeddings as its head; this model has a head of its own")?;
    }
    if c.opts.attention_bias != AttentionBias::None {
        refuse("reads no attention biases; this model has them")?;
    }
    if c.opts.activation != Activation::Silu {
        refuse(&format!(
            "runs SwiGLU; this model's hidden_act is {}",
            super::activation_name(c.opts.activation)
        ))?;
    }
    Ok(())
}
