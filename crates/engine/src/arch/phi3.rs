//! Phi3ForCausalLM (Phi-3-mini-4k): Llama's block with q, k and v in one `qkv_proj` and gate
//! and up in one `gate_up_proj` (read fused: the block splits their outputs), and a sliding
//! window on every layer when `sliding_window` is set. Long-context RoPE (`longrope`, `su`,
//! `yarn`: Phi-3.5 and the 128k models) and partial rotary are refused by name.
//!
//! In GGUF (`phi3`): `attn_qkv` and `ffn_up` (gate rows first) stored fused as transformers
//! has them. llama.cpp reads the window and does not apply it; lerpscope applies it, as
//! transformers does (the two differ only past it: 2047 tokens on Phi-3-mini).

use super::gguf::{Keys, Meta};
use super::{activation, count, number, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{Activation, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Phi3,
    class: "Phi3ForCausalLM",
    model_type: "phi3",
    gguf_arch: "phi3",
    read,
    write,
    from_gguf,
    to_gguf,
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

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::uniform_window_json(c, map)
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    for t in ["rope_factors_long.weight", "rope_factors_short.weight"] {
        if m.has_tensor(t) {
            bail!(
                Unsupported,
                "{}: tensor {t} (Phi-3's longrope, as in Phi-3.5 and the 128k models) is not supported; Phi-3-mini-4k is",
                m.path()
            );
        }
    }
    c.opts.fused_projections = true;
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(&format!("{a}.rope.dimension_count"), c.head_dim());
    // llama.cpp requires it; a 4k Phi-3's is its context.
    k.u32(
        &format!("{a}.rope.scaling.original_context_length"),
        c.max_position_embeddings,
    );
    // Written as llama.cpp's converter writes it, 0 for none.
    let a_window = format!("{a}.attention.sliding_window");
    k.u32(&a_window, c.sliding_window.unwrap_or(0));
    if c.sliding_window.is_some()
        && (0..c.num_hidden_layers).any(|i| c.layer_type(i) == LayerType::Full)
    {
        bail!(
            Unsupported,
            "--format gguf: Phi-3 slides every layer or none; this model slides only some"
        );
    }
    Ok(())
}
