//! MistralForCausalLM: Llama's block with a sliding window on every layer when
//! `sliding_window` is set (4096 when the key is absent, none when it is null: v0.1 against
//! v0.2 and later). Its projections have no biases whatever the config says.

use super::{activation, count, read_base, Unit};
use crate::config::{Activation, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Mistral,
    class: "MistralForCausalLM",
    model_type: "mistral",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA)?;
    c.family = Family::Mistral;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for MistralForCausalLM"
        );
    }
    if v.get("layer_types").is_some_and(|t| !t.is_null()) {
        bail!(
            Unsupported,
            "layer_types is not read by MistralForCausalLM (a Ministral config?)"
        );
    }
    c.sliding_window = match v.get("sliding_window") {
        None => Some(4096),
        Some(_) => count(v, "sliding_window")?,
    };
    if c.sliding_window.is_some() {
        c.layer_types = vec![LayerType::Sliding; c.num_hidden_layers];
    }
    Ok(c)
}
