//! Cohere2ForCausalLM (Command R7B, Command A and their fine-tunes): Cohere's block
//! ([`super::cohere`]) with windows on three layers of four (`sliding_window`, 4096 unless
//! given; `layer_types`, or a period `sliding_window_pattern`, 4 unless given) and RoPE on
//! the sliding layers only. Where the config has no window no layer rotates, as transformers
//! runs it.
//!
//! In GGUF (`cohere2`): Cohere's keys and the window as `attention.sliding_window`;
//! llama.cpp slides every layer but each fourth and reads no pattern, so a model with other
//! windows is exported to Hugging Face only.

use super::gguf::{Keys, Meta};
use super::{count, layer_norm_eps, layer_types, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Cohere2,
    class: "Cohere2ForCausalLM",
    model_type: "cohere2",
    gguf_arch: "cohere2",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Cohere2Config's window and period, and llama.cpp's period.
const WINDOW: usize = 4096;
const PERIOD: usize = 4;

/// Cohere's block, and RoPE on the layers with a window only.
fn block(c: &mut DecoderConfig) {
    super::cohere::block(c, Family::Cohere2);
    c.nope_layers = (0..c.num_hidden_layers)
        .map(|i| c.layer_type(i) == LayerType::Full || c.sliding_window.is_none())
        .collect();
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &layer_norm_eps(v);
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 8192)?;
    super::cohere::read_options(v, &mut c)?;
    let n = c.num_hidden_layers;
    // As transformers reads it: 4096 when the key is absent, no window when it is null.
    c.sliding_window = match v.get("sliding_window") {
        None => Some(WINDOW),
        Some(_) => count(v, "sliding_window")?,
    };
    c.layer_types = match layer_types(v, n)? {
        Some(t) => t,
        None => {
            let period = count(v, "sliding_window_pattern")?.unwrap_or(PERIOD);
            super::gguf::pattern(n, period)
        }
    };
    block(&mut c);
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::cohere::write_options(c, map)?;
    super::derived_windows_json(c, map, block, "turns RoPE on exactly its sliding layers")
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    super::cohere::options_from_gguf(m, c)?;
    // llama.cpp requires the window, and slides every layer but each fourth.
    c.sliding_window = Some(m.count("attention.sliding_window")?);
    c.layer_types = super::gguf::pattern(c.num_hidden_layers, PERIOD);
    block(c);
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    super::cohere::options_to_gguf(c, k, a)?;
    let n = c.num_hidden_layers;
    let types: Vec<LayerType> = (0..n).map(|i| c.layer_type(i)).collect();
    match c.sliding_window {
        Some(w) if types == super::gguf::pattern(n, PERIOD) => {
            k.u32(&format!("{a}.attention.sliding_window"), w);
            Ok(())
        }
        _ => bail!(
            Unsupported,
            "--format gguf: llama.cpp's cohere2 slides every layer but each fourth; this model's windows differ; use --format hf"
        ),
    }
}
