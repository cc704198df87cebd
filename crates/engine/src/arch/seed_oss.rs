//! SeedOssForCausalLM (Seed-OSS-36B and its fine-tunes): Llama's block with biases on q, k
//! and v (`attention_bias`, true unless given) and on o with `attention_out_bias`, and
//! SeedOssConfig's defaults where a key is missing (a head_dim of 128, eight key/value heads,
//! an eps of 10⁻⁶). `mlp_bias` is refused, and so is a bias on o without q's, k's and v's.
//!
//! In GGUF (`seed_oss`): q and k as transformers stores them (llama.cpp rotates them
//! NeoX-style), head_dim as `attention.key_length`, the norm before the feed-forward as
//! `post_attention_norm` (as llama.cpp's converter names it). llama.cpp reads no bias on o:
//! a model with one is exported to Hugging Face only.

use super::gguf::{Keys, Meta};
use super::{activation, flag, get, read_base, refuse_true, with_default, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::SeedOss,
    class: "SeedOssForCausalLM",
    model_type: "seed_oss",
    gguf_arch: "seed_oss",
    read,
    write,
    from_gguf,
    to_gguf,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &with_default(v, "num_key_value_heads", 8.into());
    refuse_true(v, "mlp_bias", UNIT.class)?;
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 524_288)?;
    c.family = Family::SeedOss;
    c.head_dim = Some(c.head_dim.unwrap_or(128));
    let qkv = get(v, "attention_bias").and_then(Value::as_bool) != Some(false);
    c.opts.attention_bias = match (qkv, flag(v, "attention_out_bias")) {
        (true, true) => AttentionBias::QkvO,
        (true, false) => AttentionBias::Qkv,
        (false, false) => AttentionBias::None,
        (false, true) => bail!(
            Unsupported,
            "attention_out_bias without attention_bias is not supported for SeedOssForCausalLM (a bias on o alone)"
        ),
    };
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for SeedOssForCausalLM"
        );
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    let (qkv, o) = match c.opts.attention_bias {
        AttentionBias::None => (false, false),
        AttentionBias::Qkv => (true, false),
        AttentionBias::QkvO => (true, true),
    };
    map.insert("attention_bias".into(), qkv.into());
    map.insert("attention_out_bias".into(), o.into());
    map.insert("mlp_bias".into(), false.into());
    Ok(())
}

fn from_gguf(_: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.family = Family::SeedOss;
    Ok(())
}

fn to_gguf(c: &DecoderConfig, _: &mut Keys) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::QkvO {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's seed_oss reads no bias on o; this model has one; use --format hf"
        );
    }
    Ok(())
}
