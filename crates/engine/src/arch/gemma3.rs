//! Gemma3ForCausalLM (text): Gemma 2's block with (1 + w) RMSNorm of each head's q and k
//! before RoPE, no attention soft-capping (transformers stores `attn_logit_softcapping` and
//! never applies it), logits soft-capped only where `final_logit_softcapping` is set, five
//! sliding layers to one full (`sliding_window_pattern`, or `layer_types`), and a RoPE per
//! layer type: the full layers' (`rope_theta`, 10⁶ by default, with `rope_scaling`), the
//! sliding layers' (`rope_local_base_freq`, 10⁴, unscaled). transformers 5 writes both under
//! `rope_parameters`, keyed by layer type. The multimodal Gemma3ForConditionalGeneration is
//! refused where the config is read.
//!
//! In GGUF (`gemma3`): every norm stored plus one (q/k norms too), a window only where
//! `sliding_window` is stored (then llama.cpp's pattern of six unless the file gives one),
//! the local base `rope.freq_base_swa` (10⁴ in files without it), the query scale derived.

use super::gguf::{gemma_check, gemma_from_gguf, pattern, Keys, Meta};
use super::{count, gemma_common, gemma_layers, positive, read_base, rope_of, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{DecoderConfig, Family, LayerType, QkNorm, Rope};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Gemma3,
    class: "Gemma3ForCausalLM",
    model_type: "gemma3_text",
    gguf_arch: "gemma3",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Layers of the 27B model, whose query scale llama.cpp takes from hidden / heads.
const LAYERS_27B: usize = 62;
/// The sliding layers' RoPE base, where a GGUF does not store it.
const LOCAL_THETA: f32 = 10_000.0;

fn read(v: &Value) -> Result<DecoderConfig> {
    // The RoPEs are read here; the shared reader must not take the nested object for one.
    let mut flat = v.clone();
    let nested = flat
        .as_object_mut()
        .and_then(|o| o.remove("rope_parameters"))
        .filter(|r| !r.is_null());
    let legacy_scaling = flat.as_object_mut().and_then(|o| o.remove("rope_scaling"));
    let mut c = read_base(&flat, 1e-6, 1e6, 131_072)?;
    c.family = Family::Gemma3;
    gemma_common(v, &mut c)?;
    c.opts.qk_norm = QkNorm::PerHead;
    c.opts.final_softcap = positive(v, "final_logit_softcapping")?;
    let (global, local) = match nested {
        Some(r) => {
            let (Some(full), Some(sliding)) = (r.get("full_attention"), r.get("sliding_attention"))
            else {
                bail!(
                    Unsupported,
                    "rope_parameters must be keyed by layer type (full_attention, sliding_attention) for Gemma3ForCausalLM"
                );
            };
            (rope_of(full, 1e6)?, rope_of(sliding, LOCAL_THETA)?)
        }
        None => {
            let mut g = Rope {
                theta: c.rope_theta,
                scaling: None,
            };
            if let Some(s) = legacy_scaling.filter(|s| !s.is_null()) {
                g.scaling = crate::formats::config::RopeScaling::from_json(&s)?;
            }
            let theta = super::number(v, "rope_local_base_freq")?.unwrap_or(LOCAL_THETA as f64);
            (
                g,
                Rope {
                    theta: theta as f32,
                    scaling: None,
                },
            )
        }
    };
    c.rope_theta = global.theta;
    c.rope_scaling = global.scaling;
    c.local_rope = Some(local);
    let pattern = count(v, "sliding_window_pattern")?.unwrap_or(6);
    gemma_layers(v, &mut c, pattern)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attn_softcap.is_some() {
        bail!(
            Unsupported,
            "Gemma3ForCausalLM does not soft-cap attention; this model does"
        );
    }
    super::gemma_json(c, map);
    super::ropes_by_layer_type_json(c, map);
    Ok(())
}

fn six(n: usize) -> Vec<LayerType> {
    pattern(n, 6)
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    gemma_from_gguf(c, LAYERS_27B);
    c.opts.qk_norm = QkNorm::PerHead;
    c.opts.final_softcap =
        Some(m.number_or("final_logit_softcapping", 0.0)? as f32).filter(|&x| x > 0.0);
    super::gguf::read_windows(m, c, None, six)?;
    c.local_rope = Some(Rope {
        theta: m.number_or("rope.freq_base_swa", LOCAL_THETA as f64)? as f32,
        scaling: None,
    });
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    gemma_check(c, LAYERS_27B)?;
    let a = UNIT.gguf_arch;
    if let Some(cap) = c.opts.final_softcap {
        k.f32(&format!("{a}.final_logit_softcapping"), cap as f64);
    }
    let local = c.local_rope.clone().unwrap_or(Rope {
        theta: LOCAL_THETA,
        scaling: None,
    });
    if local.scaling.is_some() {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp never scales Gemma 3's sliding layers' RoPE; this model does; use --format hf"
        );
    }
    k.f32(&format!("{a}.rope.freq_base_swa"), local.theta as f64);
    super::gguf::write_windows(c, k, six);
    Ok(())
}
