//! Qwen2ForCausalLM (Qwen2, Qwen2.5): Llama's block with biases on q, k and v (never on o),
//! and sliding windows only where `use_sliding_window` turns them on (no released config does).

use super::{activation, qwen_windows, read_base, Unit};
use crate::config::{Activation, AttentionBias, DecoderConfig, Family, DEFAULT_ROPE_THETA};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Qwen2,
    class: "Qwen2ForCausalLM",
    model_type: "qwen2",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA)?;
    c.family = Family::Qwen2;
    c.opts.attention_bias = AttentionBias::Qkv;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for Qwen2ForCausalLM");
    }
    qwen_windows(v, &mut c)?;
    Ok(c)
}
