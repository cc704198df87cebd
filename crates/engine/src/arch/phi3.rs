//! Phi3ForCausalLM (Phi-3-mini-4k): Llama's block with q, k and v in one `qkv_proj` and gate
//! and up in one `gate_up_proj` (read fused: the block splits their outputs), and a sliding
//! window on every layer when `sliding_window` is set. Long-context RoPE (`longrope`, `su`,
//! `yarn`: Phi-3.5 and the 128k models) and partial rotary are refused by name.

use super::{activation, count, number, read_base, Unit};
use crate::config::{Activation, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Phi3,
    class: "Phi3ForCausalLM",
    model_type: "phi3",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA)?;
    c.family = Family::Phi3;
    c.opts.fused_projections = true;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for Phi3ForCausalLM");
    }
    let partial = match v.get("rope_parameters").filter(|r| r.is_object()) {
        Some(r) => number(r, "partial_rotary_factor")?,
        None => None,
    }
    .or(number(v, "partial_rotary_factor")?);
    if partial.is_some_and(|p| p != 1.0) {
        bail!(
            Unsupported,
            "partial_rotary_factor {} is not supported for Phi3ForCausalLM (1.0 is: Phi-3-mini)",
            partial.unwrap_or_default()
        );
    }
    c.sliding_window = count(v, "sliding_window")?;
    if c.sliding_window.is_some() {
        c.layer_types = vec![LayerType::Sliding; c.num_hidden_layers];
    }
    Ok(c)
}
