//! Qwen3ForCausalLM (dense): Qwen2's windows, RMSNorm of each head's q and k before RoPE,
//! biases on q, k, v and o only with `attention_bias`, and a head_dim of 128 unless given.

use super::{activation, qwen_windows, read_base, Unit};
use crate::config::{Activation, AttentionBias, DecoderConfig, Family, DEFAULT_ROPE_THETA};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Qwen3,
    class: "Qwen3ForCausalLM",
    model_type: "qwen3",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA)?;
    c.family = Family::Qwen3;
    c.opts.qk_norm = true;
    c.head_dim = Some(c.head_dim.unwrap_or(128));
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for Qwen3ForCausalLM");
    }
    qwen_windows(v, &mut c)?;
    Ok(c)
}
