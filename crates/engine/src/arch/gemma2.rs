//! Gemma2ForCausalLM: (1 + w) RMSNorm gains with sandwich norms, embeddings × √hidden,
//! GeGLU, scores scaled by `query_pre_attn_scalar`^-½ and soft-capped
//! (`attn_logit_softcapping`, 50 unless null), logits soft-capped (`final_logit_softcapping`,
//! 30 unless null), and layers alternating sliding (even) and full (odd). One RoPE.

use super::{gemma_common, gemma_layers, positive, read_base, Unit};
use crate::config::{DecoderConfig, Family, DEFAULT_ROPE_THETA};
use crate::error::Result;
use serde_json::Value;

pub(super) const UNIT: Unit = Unit {
    family: Family::Gemma2,
    class: "Gemma2ForCausalLM",
    model_type: "gemma2",
    read,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, DEFAULT_ROPE_THETA)?;
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
