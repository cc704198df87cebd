//! Qwen2ForCausalLM (Qwen2, Qwen2.5): Llama's block with biases on q, k and v (never on o),
//! and sliding windows only where `use_sliding_window` turns them on (no released config does).
//! In GGUF (`qwen2`): q/k as transformers stores them, the biases as `attn_{q,k,v}.bias`.

use super::gguf::Meta;
use super::{activation, qwen_windows, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Qwen2,
    class: "Qwen2ForCausalLM",
    model_type: "qwen2",
    gguf_arch: "qwen2",
    read,
    write,
    from_gguf,
    to_gguf: super::qwen_to_gguf,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 32_768)?;
    c.family = Family::Qwen2;
    c.opts.attention_bias = AttentionBias::Qkv;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for Qwen2ForCausalLM");
    }
    qwen_windows(v, &mut c)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias != AttentionBias::Qkv {
        bail!(
            Unsupported,
            "Qwen2ForCausalLM has biases on q, k and v; this model has {:?}",
            c.opts.attention_bias
        );
    }
    super::qwen_windows_json(c, map);
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    if c.opts.attention_bias != AttentionBias::Qkv {
        bail!(
            Format,
            "{}: a qwen2 model has biases on q, k and v (tensors blk.N.attn_{{q,k,v}}.bias), and only there",
            m.path()
        );
    }
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)
}
