//! Qwen3ForCausalLM (dense): Qwen2's windows, RMSNorm of each head's q and k before RoPE,
//! biases on q, k, v and o only with `attention_bias`, and a head_dim of 128 unless given.
//! In GGUF (`qwen3`): the norms as `attn_{q,k}_norm` (not shifted), head_dim as `key_length`.

use super::gguf::Meta;
use super::{activation, qwen_windows, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, QkNorm, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Qwen3,
    class: "Qwen3ForCausalLM",
    model_type: "qwen3",
    gguf_arch: "qwen3",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Qwen2's keys, where llama.cpp would run the model: its `qwen3` loads biases on q, k and v
/// but none on the output projection, and refuses a file that has one.
fn to_gguf(c: &DecoderConfig, k: &mut super::gguf::Keys) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::QkvO {
        bail!(
            Unsupported,
            "--format gguf: this Qwen3 has attention_bias, whose output-projection bias (attn_output.bias) llama.cpp's qwen3 does not load; use --format hf"
        );
    }
    super::qwen_to_gguf(c, k)
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 32_768)?;
    c.family = Family::Qwen3;
    c.opts.qk_norm = QkNorm::PerHead;
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

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "Qwen3ForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    super::qwen_windows_json(c, map);
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.opts.qk_norm = QkNorm::PerHead;
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)
}
