//! GemmaForCausalLM (Gemma 1: 2B, 7B, CodeGemma): (1 + w) RMSNorms before attention and the
//! feed-forward only, √hidden-scaled embeddings, GeGLU (`hidden_act`, whose legacy "gelu"
//! transformers reads as the tanh approximation), a head_dim of 256 unless given, a tied head,
//! scores scaled by head_dim^-½.
//! In GGUF (`gemma`): norms stored plus one, no head of its own.

use super::gguf::{Keys, Meta};
use super::{activation, flag, get, read_base, refuse_true, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, LayerType, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Gemma,
    class: "GemmaForCausalLM",
    model_type: "gemma",
    gguf_arch: "gemma",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every Gemma 1 has, from config.json or GGUF.
fn gemma_block(c: &mut DecoderConfig) {
    c.opts.norm_plus_one = true;
    c.opts.embed_scale = true;
    c.opts.activation = Activation::GeluTanh;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 8192)?;
    c.family = Family::Gemma;
    refuse_true(v, "use_bidirectional_attention", "Gemma")?;
    gemma_block(&mut c);
    if get(v, "hidden_act").and_then(Value::as_str) != Some("gelu") {
        c.opts.activation = activation(v, "hidden_act", Activation::GeluTanh)?;
    }
    if c.opts.activation != Activation::GeluTanh {
        bail!(
            Unsupported,
            "hidden_act must be gelu_pytorch_tanh (or gelu) for GemmaForCausalLM"
        );
    }
    c.head_dim = Some(c.head_dim.unwrap_or(256));
    if flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    if let Some(t) = super::layer_types(v, c.num_hidden_layers)? {
        if t.contains(&LayerType::Sliding) {
            bail!(
                Unsupported,
                "layer_types: sliding_attention is not part of GemmaForCausalLM"
            );
        }
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "GemmaForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    Ok(())
}

fn from_gguf(_: &Meta, c: &mut DecoderConfig) -> Result<()> {
    gemma_block(c);
    Ok(())
}

fn to_gguf(c: &DecoderConfig, _: &mut Keys) -> Result<()> {
    // llama.cpp's gemma reads its head from the embedding, always.
    if !c.tie_word_embeddings {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's gemma ties its head to the embedding; this model has a head of its own; use --format hf"
        );
    }
    // llama.cpp's gemma loads no projection biases.
    if c.opts.attention_bias != AttentionBias::None {
        bail!(
            Unsupported,
            "--format gguf: this Gemma has attention_bias, whose biases llama.cpp's gemma does not load; use --format hf"
        );
    }
    Ok(())
}
