//! Ernie4_5ForCausalLM (ERNIE-4.5-0.3B and its fine-tunes): Llama's block with RoPE turning
//! adjacent pairs of each head, and Ernie4_5Config's defaults where a key is missing (a
//! head_dim of 128, two key/value heads, a tied head, a RoPE base of 5·10⁵). `use_bias`
//! (biases on every projection, the gated feed-forward's too; no released model has them) is
//! refused.
//!
//! In GGUF (`ernie4_5`): q and k as transformers stores them (llama.cpp turns adjacent pairs
//! too).

use super::gguf::{Keys, Meta};
use super::{activation, get, read_base, refuse_true, with_default, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{Activation, AttentionBias, DecoderConfig, Family};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Ernie45,
    class: "Ernie4_5ForCausalLM",
    model_type: "ernie4_5",
    gguf_arch: "ernie4_5",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Ernie4_5Config's RoPE base.
const DEFAULT_THETA: f32 = 500_000.0;

fn block(c: &mut DecoderConfig) {
    c.family = Family::Ernie45;
    c.opts.rope_interleaved = true;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let v = &with_default(v, "num_key_value_heads", 2.into());
    refuse_true(v, "use_bias", UNIT.class)?;
    let mut c = read_base(v, 1e-5, DEFAULT_THETA, 131_072)?;
    block(&mut c);
    c.head_dim = Some(c.head_dim.unwrap_or(128));
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for Ernie4_5ForCausalLM"
        );
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias != AttentionBias::None {
        bail!(
            Unsupported,
            "Ernie4_5ForCausalLM has biases on every projection or on none; this model has them on attention only"
        );
    }
    map.insert("use_bias".into(), false.into());
    Ok(())
}

fn from_gguf(_: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c);
    Ok(())
}

fn to_gguf(_: &DecoderConfig, _: &mut Keys) -> Result<()> {
    Ok(())
}
