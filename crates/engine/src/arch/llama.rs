//! LlamaForCausalLM (Llama 2/3, SmolLM/SmolLM2, TinyLlama): the block's defaults.

use super::{activation, read_base, refuse_true, Unit};
use crate::config::{Activation, AttentionBias, DecoderConfig, Family, DEFAULT_ROPE_THETA};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Llama,
    class: "LlamaForCausalLM",
    model_type: "llama",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA)?;
    c.family = Family::Llama;
    refuse_true(v, "mlp_bias", "Llama")?;
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for LlamaForCausalLM");
    }
    if let Some(t) = super::layer_types(v, c.num_hidden_layers)? {
        if t.contains(&crate::config::LayerType::Sliding) {
            bail!(
                Unsupported,
                "layer_types: sliding_attention is not part of LlamaForCausalLM"
            );
        }
    }
    Ok(c)
}
