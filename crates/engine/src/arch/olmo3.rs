//! Olmo3ForCausalLM (OLMo 3 and its Instruct and Think fine-tunes): OLMo 2's block
//! ([`super::olmo2`]) with sliding windows (4096 by default) on three layers of every four,
//! θ = 5·10⁵ unless given, and the sliding layers on the plain RoPE where the full layers'
//! is scaled (OLMo 3's long-context YaRN). The RoPEs come as flat keys (`rope_theta`,
//! `rope_scaling`: the full layers') or as `rope_parameters` keyed by layer type.
//!
//! In GGUF: llama.cpp's `olmo2` with a window and its pattern, read by OLMo 2's unit.

use super::gguf::pattern;
use super::{count, layer_types, read_base, rope_of, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{DecoderConfig, Family, LayerType, Rope};
use serde_json::{json, Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Olmo3,
    class: "Olmo3ForCausalLM",
    model_type: "olmo3",
    gguf_arch: "olmo2",
    read,
    write,
    from_gguf: super::olmo2::from_gguf,
    to_gguf: super::olmo2::to_gguf,
};

/// Olmo3Config's default θ.
const THETA: f32 = 5e5;

/// Olmo3Config's layers, and llama.cpp's for `olmo2` with a window: every fourth full.
pub(super) fn default_layers(n: usize) -> Vec<LayerType> {
    pattern(n, 4)
}

fn read(v: &Value) -> Result<DecoderConfig> {
    // The RoPEs are read here; the shared reader must not take the nested object for one.
    let mut flat = v.clone();
    let nested = flat
        .as_object_mut()
        .and_then(|o| o.remove("rope_parameters"))
        .filter(|r| !r.is_null())
        .filter(|r| r.get("full_attention").is_some() || r.get("sliding_attention").is_some());
    if nested.is_none() {
        if let (Some(o), Some(r)) = (flat.as_object_mut(), v.get("rope_parameters")) {
            o.insert("rope_parameters".into(), r.clone());
        }
    }
    let mut c = read_base(&flat, 1e-5, THETA, 2048)?;
    c.family = Family::Olmo3;
    super::olmo2::block(v, &mut c, UNIT.class)?;
    let (global, local) = match nested {
        Some(r) => {
            let (Some(full), Some(sliding)) = (r.get("full_attention"), r.get("sliding_attention"))
            else {
                bail!(
                    Unsupported,
                    "rope_parameters must be keyed by both layer types (full_attention, sliding_attention) for Olmo3ForCausalLM"
                );
            };
            (rope_of(full, THETA)?, rope_of(sliding, THETA)?)
        }
        // Flat keys: the full layers', and the sliding layers on the same base, unscaled.
        None => {
            let global = Rope {
                theta: c.rope_theta,
                scaling: c.rope_scaling.clone(),
            };
            let local = Rope {
                theta: c.rope_theta,
                scaling: None,
            };
            (global, local)
        }
    };
    c.rope_theta = global.theta;
    c.rope_scaling = global.scaling.clone();
    c.local_rope = (local != global).then_some(local);
    let n = c.num_hidden_layers;
    // As transformers reads it: 4096 when the key is absent, no window when it is null.
    c.sliding_window = match v.get("sliding_window") {
        None => Some(4096),
        Some(_) => count(v, "sliding_window")?,
    };
    c.layer_types = match layer_types(v, n)? {
        Some(t) => t,
        None => default_layers(n),
    };
    if c.sliding_window.is_none() {
        // A sliding layer without a window attends to everything.
        c.layer_types = vec![LayerType::Full; n];
    }
    Ok(c)
}

fn rope_json(r: &Rope) -> Value {
    let mut v = match &r.scaling {
        Some(s) => super::scaling_json(s),
        None => json!({"rope_type": "default"}),
    };
    v["rope_theta"] = r.theta.into();
    v
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::olmo2::bias_json(c, map, UNIT.class)?;
    let global = Rope {
        theta: c.rope_theta,
        scaling: c.rope_scaling.clone(),
    };
    let local = c.local_rope.clone().unwrap_or_else(|| global.clone());
    // The form transformers 5 writes; its reading of flat keys gives the sliding layers
    // Olmo3Config's default θ rather than `rope_theta`.
    map.remove("rope_theta");
    map.remove("rope_scaling");
    map.insert(
        "rope_parameters".into(),
        json!({"full_attention": rope_json(&global), "sliding_attention": rope_json(&local)}),
    );
    map.insert("sliding_window".into(), c.sliding_window.into());
    map.insert("layer_types".into(), super::layer_types_json(c));
    Ok(())
}
