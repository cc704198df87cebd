//! Starcoder2ForCausalLM (StarCoder2 3B, 7B and 15B, StarCoder2-Instruct and their
//! fine-tunes): Llama's order of blocks with LayerNorms (each with a bias, the final one too,
//! eps `norm_epsilon`), biases on q, k, v and o and on an ungated feed-forward (`c_fc`,
//! `c_proj`, GELU-tanh), all under `use_bias` (true unless given; no released model sets it
//! false, and false is refused); grouped key/value heads (2 unless given, as Starcoder2Config
//! has it); a sliding window on every layer where `sliding_window` is set (the released
//! configs' 4096); a tied head unless `tie_word_embeddings` is false.
//!
//! In GGUF (`starcoder2`): the LayerNorms' and projections' biases as `.bias` tensors, q and k
//! as transformers stores them (llama.cpp rotates them NeoX-style), the eps as
//! `attention.layer_norm_epsilon`; the head `output.weight` where it is not tied. llama.cpp's
//! converter writes no window and llama.cpp applies none; a file that gives
//! `attention.sliding_window` is read with it, as lerpscope writes it.

use super::gguf::{Keys, Meta};
use super::{activation, count, get, read_base, with_default, Unit};
use crate::error::{bail, err, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, LayerType, NormKind, NormPlacement,
    DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::StarCoder2,
    class: "Starcoder2ForCausalLM",
    model_type: "starcoder2",
    gguf_arch: "starcoder2",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every StarCoder2 block has, whichever file it comes from.
fn block(c: &mut DecoderConfig) {
    c.family = Family::StarCoder2;
    let o = &mut c.opts;
    o.norms = NormPlacement::Pre;
    o.norm_kind = NormKind::Layer;
    o.plain_mlp = true;
    o.attention_bias = AttentionBias::QkvO;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut v = with_default(v, "num_key_value_heads", 2.into());
    let obj = v
        .as_object_mut()
        .ok_or_else(|| err!(Format, "config is not a JSON object"))?;
    // Its eps is `norm_epsilon`; any other norm key is not read by Starcoder2Config.
    obj.remove("rms_norm_eps");
    if let Some(e) = obj.get("norm_epsilon").filter(|e| !e.is_null()).cloned() {
        obj.insert("rms_norm_eps".into(), e);
    }
    let v = &v;
    if let Some(b) = get(v, "use_bias") {
        match b.as_bool() {
            Some(true) => {}
            Some(false) => bail!(
                Unsupported,
                "use_bias: false is not supported for Starcoder2ForCausalLM (every released StarCoder2 has biases)"
            ),
            None => bail!(Format, "use_bias must be true or false, got {b}"),
        }
    }
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 4096)?;
    block(&mut c);
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    c.opts.activation = activation(v, "hidden_act", Activation::GeluTanh)?;
    // Starcoder2Config has no window unless given; null is none.
    c.sliding_window = count(v, "sliding_window")?;
    if c.sliding_window.is_some() {
        c.layer_types = vec![LayerType::Sliding; c.num_hidden_layers];
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias != AttentionBias::QkvO {
        bail!(
            Unsupported,
            "Starcoder2ForCausalLM has biases on q, k, v and o; this model has not"
        );
    }
    if let Some(eps) = map.remove("layer_norm_eps") {
        map.insert("norm_epsilon".into(), eps);
    }
    map.insert("use_bias".into(), true.into());
    super::uniform_window_json(c, map)
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c);
    c.opts.activation = Activation::GeluTanh;
    c.rms_norm_eps = m.number_or("attention.layer_norm_epsilon", 1e-5)?;
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    if c.opts.activation != Activation::GeluTanh {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's starcoder2 runs GELU (tanh); this model's hidden_act is {}; use --format hf",
            super::activation_name(c.opts.activation)
        );
    }
    super::gguf::write_windows(c, k, super::gguf::all_sliding);
    Ok(())
}
