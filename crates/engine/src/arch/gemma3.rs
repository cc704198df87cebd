//! Gemma3ForCausalLM (text): Gemma 2's block with (1 + w) RMSNorm of each head's q and k
//! before RoPE, no attention soft-capping (transformers stores `attn_logit_softcapping` and
//! never applies it), logits soft-capped only where `final_logit_softcapping` is set, five
//! sliding layers to one full (`sliding_window_pattern`, or `layer_types`), and a RoPE per
//! layer type: the full layers' (`rope_theta`, 10⁶ by default, with `rope_scaling`), the
//! sliding layers' (`rope_local_base_freq`, 10⁴, unscaled). transformers 5 writes both under
//! `rope_parameters`, keyed by layer type. The multimodal Gemma3ForConditionalGeneration is
//! refused where the config is read.

use super::{count, gemma_common, gemma_layers, positive, read_base, rope_of, Unit};
use crate::config::{DecoderConfig, Family, Rope};
use crate::error::{bail, Result};
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Gemma3,
    class: "Gemma3ForCausalLM",
    model_type: "gemma3_text",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    // The RoPEs are read here; the shared reader must not take the nested object for one.
    let mut flat = v.clone();
    let nested = flat
        .as_object_mut()
        .and_then(|o| o.remove("rope_parameters"))
        .filter(|r| !r.is_null());
    let legacy_scaling = flat.as_object_mut().and_then(|o| o.remove("rope_scaling"));
    let mut c = read_base(&flat, 1e-6, 1e6)?;
    c.family = Family::Gemma3;
    gemma_common(v, &mut c)?;
    c.opts.qk_norm = true;
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
            (rope_of(full, 1e6)?, rope_of(sliding, 1e4)?)
        }
        None => {
            let mut g = Rope {
                theta: c.rope_theta,
                scaling: None,
            };
            if let Some(s) = legacy_scaling.filter(|s| !s.is_null()) {
                g.scaling = crate::config::RopeScaling::from_json(&s)?;
            }
            let theta = super::number(v, "rope_local_base_freq")?.unwrap_or(1e4) as f32;
            (
                g,
                Rope {
                    theta,
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
