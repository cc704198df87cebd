//! Glm4ForCausalLM (GLM-4-9B-0414, GLM-4-32B-0414, GLM-Z1 and their fine-tunes): RMSNorms
//! before and after both attention and the feed-forward (its own names: `post_self_attn_layernorm`
//! after attention, `post_attention_layernorm` before the feed-forward, `post_mlp_layernorm`
//! after it); biases on q, k and v (`attention_bias`, true unless given); gate and up as one
//! `gate_up_proj`; RoPE turning adjacent pairs of each head's leading half
//! (`partial_rotary_factor`, 0.5 unless given). Glm4Config's defaults where a key is missing:
//! a head_dim of 128, two key/value heads, an eps of 1.5625·10⁻⁷.
//!
//! In GGUF (`glm4`): q and k as transformers stores them (llama.cpp turns adjacent pairs
//! too), gate and up fused in `ffn_up`, the norms after attention and the feed-forward as
//! `post_attention_norm` and `post_ffw_norm`, the rotated dimensions as
//! `rope.dimension_count`.

use super::gguf::{Keys, Meta};
use super::{activation, get, partial_rotary, partial_rotary_json, read_base, with_default, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, NormPlacement, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Glm4,
    class: "Glm4ForCausalLM",
    model_type: "glm4",
    gguf_arch: "glm4",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every GLM-4 block has, whichever file it comes from.
fn block(c: &mut DecoderConfig) {
    c.family = Family::Glm4;
    let o = &mut c.opts;
    o.norms = NormPlacement::Sandwich;
    o.fused_gate_up = true;
    o.rope_interleaved = true;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &with_default(v, "num_key_value_heads", 2.into());
    let mut c = read_base(v, 1.5625e-7, DEFAULT_ROPE_THETA, 131_072)?;
    block(&mut c);
    c.head_dim = Some(c.head_dim.unwrap_or(128));
    c.opts.attention_bias = match get(v, "attention_bias").map(Value::as_bool) {
        None | Some(Some(true)) => AttentionBias::Qkv,
        Some(Some(false)) => AttentionBias::None,
        Some(None) => bail!(
            Format,
            "attention_bias must be true or false, got {}",
            v["attention_bias"]
        ),
    };
    c.opts.activation = activation(v, "hidden_act", Activation::Silu)?;
    partial_rotary(v, &mut c, 0.5)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    let bias = match c.opts.attention_bias {
        AttentionBias::None => false,
        AttentionBias::Qkv => true,
        AttentionBias::QkvO => bail!(
            Unsupported,
            "Glm4ForCausalLM has biases on q, k and v or on none; this model has one on o too"
        ),
    };
    map.insert("attention_bias".into(), bias.into());
    // Written even where every dimension turns: Glm4Config turns half unless told.
    partial_rotary_json(c, map);
    Ok(())
}

fn from_gguf(_: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c);
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(
        &format!("{a}.rope.dimension_count"),
        c.opts.rotary_dim.unwrap_or(c.head_dim()),
    );
    if c.opts.activation != Activation::Silu {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's glm4 runs SwiGLU; this model's hidden_act is {}; use --format hf",
            super::activation_name(c.opts.activation)
        );
    }
    if c.opts.attention_bias == AttentionBias::QkvO {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's glm4 has no bias on o; this model has one; use --format hf"
        );
    }
    Ok(())
}
