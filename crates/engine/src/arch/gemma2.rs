//! Gemma2ForCausalLM: (1 + w) RMSNorms before and after attention and the feed-forward,
//! √hidden-scaled embeddings, GeGLU, `query_pre_attn_scalar`, attention and final logits
//! soft-capped (50 and 30 unless given; null turns one off), even layers sliding.
//! In GGUF (`gemma2`): norms stored plus one, no head of its own; the query scale, layer
//! pattern and RoPE base are llama.cpp's (not stored), both caps always applied.

use super::gguf::{gemma_check, gemma_from_gguf, pattern, Keys, Meta};
use super::{gemma_common, gemma_layers, positive, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{DecoderConfig, Family, DEFAULT_ROPE_THETA};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Gemma2,
    class: "Gemma2ForCausalLM",
    model_type: "gemma2",
    gguf_arch: "gemma2",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Layers of the 27B model, whose query scale llama.cpp takes from hidden / heads.
const LAYERS_27B: usize = 46;

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA, 8192)?;
    c.family = Family::Gemma2;
    gemma_common(v, &mut c)?;
    // Absent means the default; null turns it off.
    let cap = |key: &str, default: f32| -> Result<Option<f32>> {
        match v.get(key) {
            None => Ok(Some(default)),
            Some(_) => positive(v, key),
        }
    };
    c.opts.attn_softcap = cap("attn_logit_softcapping", 50.0)?;
    c.opts.final_softcap = cap("final_logit_softcapping", 30.0)?;
    gemma_layers(v, &mut c, 2)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.local_rope.is_some() {
        bail!(
            Unsupported,
            "Gemma2ForCausalLM has one RoPE for every layer; this model's sliding layers have their own"
        );
    }
    super::gemma_json(c, map);
    map.insert("attn_logit_softcapping".into(), c.opts.attn_softcap.into());
    Ok(())
}

fn two(n: usize) -> Vec<crate::formats::config::LayerType> {
    pattern(n, 2)
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    gemma_from_gguf(c, LAYERS_27B);
    // llama.cpp's Gemma 2 has no head of its own.
    c.tie_word_embeddings = true;
    let cap = |key: &str, default: f64| -> Result<Option<f32>> {
        Ok(Some(m.number_or(key, default)? as f32).filter(|&x| x > 0.0))
    };
    c.opts.attn_softcap = cap("attn_logit_softcapping", 50.0)?;
    c.opts.final_softcap = cap("final_logit_softcapping", 30.0)?;
    super::gguf::read_windows(m, c, Some(4096), two)?;
    let swa_base = m.number_or("rope.freq_base_swa", c.rope_theta as f64)? as f32;
    if swa_base != c.rope_theta {
        c.local_rope = Some(crate::formats::config::Rope {
            theta: swa_base,
            scaling: None,
        });
    }
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    gemma_check(c, LAYERS_27B)?;
    let a = UNIT.gguf_arch;
    let (Some(attn), Some(last)) = (c.opts.attn_softcap, c.opts.final_softcap) else {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp always soft-caps Gemma 2's attention and logits; this model turns one off; use --format hf"
        );
    };
    if c.sliding_window.is_none() {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp always slides Gemma 2's even layers; this model has no window; use --format hf"
        );
    }
    k.f32(&format!("{a}.attn_logit_softcapping"), attn as f64);
    k.f32(&format!("{a}.final_logit_softcapping"), last as f64);
    super::gguf::write_windows(c, k, two);
    if let Some(local) = &c.local_rope {
        k.f32(&format!("{a}.rope.freq_base_swa"), local.theta as f64);
    }
    Ok(())
}
