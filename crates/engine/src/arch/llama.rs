//! LlamaForCausalLM (Llama 2/3, SmolLM/SmolLM2, TinyLlama): the block's defaults. In GGUF
//! (`llama`), Q and K rows are interleaved for llama.cpp's RoPE, and Llama 3.1's RoPE scaling
//! is a tensor of per-frequency divisors (`rope_freqs.weight`).

use super::gguf::{Keys, Meta};
use super::{activation, read_base, refuse_true, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, LayerType, RopeScaling, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Llama,
    class: "LlamaForCausalLM",
    model_type: "llama",
    gguf_arch: "llama",
    read,
    write,
    from_gguf,
    to_gguf,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 2048)?;
    c.family = Family::Llama;
    refuse_true(v, "mlp_bias", "Llama")?;
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for LlamaForCausalLM");
    }
    if let Some(t) = super::layer_types(v, c.num_hidden_layers)? {
        if t.contains(&LayerType::Sliding) {
            bail!(
                Unsupported,
                "layer_types: sliding_attention is not part of LlamaForCausalLM"
            );
        }
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "LlamaForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    Ok(())
}

/// A `llama` GGUF: Llama's block, or Mistral's where the file gives a window (which llama.cpp
/// does not apply, but lerpscope's export records), and Llama 3's RoPE scaling read back from
/// its divisors.
fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)?;
    if c.sliding_window.is_some() {
        c.family = Family::Mistral;
    }
    rope_freqs_from_gguf(m, c)
}

/// Llama 3's pre-training context beside its divisors (`rope_freqs.weight`), from which they
/// read back as the scaling they came from.
pub(super) fn llama3_context_key(c: &DecoderConfig, k: &mut Keys, arch: &str) {
    if let Some(RopeScaling::Llama3 {
        original_max_position_embeddings,
        ..
    }) = c.rope_scaling
    {
        k.u32(
            &format!("{arch}.rope.scaling.original_context_length"),
            original_max_position_embeddings,
        );
    }
}

/// Llama 3's RoPE scaling, from the divisors llama.cpp stores (`rope_freqs.weight`) where they
/// are the ones Llama 3.1 and 3.2 ship with; other divisors stay divisors.
pub(super) fn rope_freqs_from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    if m.has_tensor("rope_freqs.weight") {
        let factors = m.h.read_f32("rope_freqs.weight")?;
        if factors.len() != c.head_dim() / 2 {
            bail!(
                Format,
                "{}: tensor rope_freqs.weight has {} divisors for a head dimension of {}",
                m.path(),
                factors.len(),
                c.head_dim()
            );
        }
        // The parameters Llama 3.1 and 3.2 ship with; anything else stays divisors.
        let original = m.count_or("rope.scaling.original_context_length", 8192)?;
        let max = factors.iter().copied().fold(1.0f32, f32::max);
        let llama3 = RopeScaling::Llama3 {
            factor: max,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: original,
        };
        let mut as_llama3 = c.clone();
        as_llama3.rope_scaling = Some(llama3.clone());
        let same =
            super::gguf::rope_freqs(&crate::formats::config::ModelConfig::Decoder(as_llama3))
                .is_some_and(|f| {
                    f.iter()
                        .zip(&factors)
                        .all(|(a, b)| (a - b).abs() <= 1e-6 * b.abs())
                });
        if c.rope_scaling.is_some() {
            bail!(
                Unsupported,
                "{}: both rope.scaling keys and rope_freqs.weight; one RoPE scaling is supported",
                m.path()
            );
        }
        if same {
            c.rope_scaling = Some(llama3);
        } else {
            c.rope_factors = Some(factors);
        }
    }
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(&format!("{a}.rope.dimension_count"), c.head_dim());
    k.u32(&format!("{a}.vocab_size"), c.vocab_size);
    llama3_context_key(c, k, a);
    super::gguf::write_windows(c, k, super::gguf::all_sliding);
    Ok(())
}
