//! MistralForCausalLM (Mistral 7B v0.1–v0.3, and fine-tunes of it): Llama's block with a
//! sliding window on every layer (`sliding_window`: 4096 when absent, none when null). In GGUF
//! it is llama.cpp's `llama` (read back as Llama; see `llama::from_gguf` for the window).

use super::gguf::Keys;
use super::{activation, count, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{Activation, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Mistral,
    class: "MistralForCausalLM",
    model_type: "mistral",
    gguf_arch: "llama",
    read,
    write,
    // A `llama` GGUF is read by the Llama unit, which comes first in `UNITS`.
    from_gguf: |_, _| Ok(()),
    to_gguf,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = super::read_base(v, 1e-6, DEFAULT_ROPE_THETA, 131_072)?;
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

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::uniform_window_json(c, map)
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(&format!("{a}.rope.dimension_count"), c.head_dim());
    k.u32(&format!("{a}.vocab_size"), c.vocab_size);
    super::gguf::write_windows(c, k, super::gguf::all_sliding);
    Ok(())
}
