//! StableLmForCausalLM (StableLM 2 1.6B and its Zephyr, StableLM 3B 4E1T, StableLM Zephyr 3B):
//! Llama's block with LayerNorms (each with a bias, the final one too), biases on q, k and v
//! with `use_qkv_bias`, partial rotary (`partial_rotary_factor`, 0.25 unless given); with
//! `use_parallel_residual` one norm feeds attention and the feed-forward side by side.
//! `qk_layernorm` (StableLM 2 12B's LayerNorm per head, each head its own gains) is refused.
//!
//! In GGUF (`stablelm`): the LayerNorms' eps as `attention.layer_norm_epsilon`, the rotated
//! dimensions as `rope.dimension_count`; a block is parallel where it has no `ffn_norm`, as
//! llama.cpp decides it.

use super::gguf::{Keys, Meta};
use super::{
    activation, flag, layer_norm_eps, partial_rotary, partial_rotary_json, read_base, refuse_true,
    Unit,
};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, NormKind, NormPlacement, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::StableLm,
    class: "StableLmForCausalLM",
    model_type: "stablelm",
    gguf_arch: "stablelm",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every StableLM block has, whichever file it comes from.
fn block(c: &mut DecoderConfig, parallel: bool) {
    c.family = Family::StableLm;
    c.opts.norm_kind = NormKind::Layer;
    c.opts.norms = match parallel {
        true => NormPlacement::Parallel,
        false => NormPlacement::Pre,
    };
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &layer_norm_eps(v);
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 4096)?;
    block(&mut c, flag(v, "use_parallel_residual"));
    if flag(v, "use_qkv_bias") {
        c.opts.attention_bias = AttentionBias::Qkv;
    }
    c.opts.activation = activation(v, "hidden_act", Activation::Silu)?;
    partial_rotary(v, &mut c, 0.25)?;
    refuse_true(v, "qk_layernorm", UNIT.class)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    partial_rotary_json(c, map);
    map.insert(
        "use_parallel_residual".into(),
        (c.opts.norms == NormPlacement::Parallel).into(),
    );
    if c.opts.attention_bias == AttentionBias::QkvO {
        bail!(
            Unsupported,
            "StableLmForCausalLM has biases on q, k and v or on none; this model has one on o too"
        );
    }
    map.insert(
        "use_qkv_bias".into(),
        (c.opts.attention_bias == AttentionBias::Qkv).into(),
    );
    map.insert("qk_layernorm".into(), false.into());
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c, !m.has_tensor("blk.0.ffn_norm.weight"));
    c.rms_norm_eps = m.number_or("attention.layer_norm_epsilon", 1e-5)?;
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.bool(
        &format!("{a}.use_parallel_residual"),
        c.opts.norms == NormPlacement::Parallel,
    );
    super::layer_norm_to_gguf(c, k, a, &[Activation::Silu], "SiLU")
}
