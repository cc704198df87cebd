//! Olmo3ForCausalLM (OLMo 3 and its Instruct and Think fine-tunes): OLMo 2's block
//! ([`super::olmo2`]) with sliding windows (4096 by default) on three layers of every four,
//! θ = 5·10⁵ unless given, and the sliding layers on the plain RoPE where the full layers'
//! is scaled (OLMo 3's long-context YaRN). The RoPEs come as flat keys (`rope_theta`,
//! `rope_scaling`: the full layers'; read only at OLMo 3's θ, where transformers 4 and 5 agree)
//! or as `rope_parameters` keyed by layer type.
//!
//! In GGUF: llama.cpp's `olmo2` with a window and its pattern, read by OLMo 2's unit.

use super::gguf::pattern;
use super::{count, layer_types, read_base, rope_of, Unit};
use crate::error::{bail, err, Result};
use crate::formats::config::{DecoderConfig, Family, LayerType};
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
    // The RoPEs are read here, as Olmo3Config reads them; the shared reader takes neither.
    let mut flat = v.clone();
    let obj = flat
        .as_object_mut()
        .ok_or_else(|| err!(Format, "config is not a JSON object"))?;
    let nested = obj.remove("rope_parameters").filter(|r| !r.is_null());
    let flat_scaling = obj.remove("rope_scaling").filter(|r| !r.is_null());
    let flat_theta = super::number(v, "rope_theta")?;
    let mut c = read_base(&flat, 1e-5, THETA, 2048)?;
    c.family = Family::Olmo3;
    super::olmo2::block(v, &mut c, UNIT.class)?;
    let (mut full, sliding) = match nested {
        Some(r) => {
            let (Some(full), Some(sliding)) = (r.get("full_attention"), r.get("sliding_attention"))
            else {
                bail!(
                    Unsupported,
                    "rope_parameters must be keyed by both layer types (full_attention, sliding_attention) for Olmo3ForCausalLM"
                );
            };
            (full.clone(), sliding.clone())
        }
        // Flat keys: transformers 5 runs the sliding layers at Olmo3Config's θ whatever
        // `rope_theta` says, transformers 4 ran them at `rope_theta` (10⁴ when absent). Only a
        // config both read alike is read.
        None => {
            if flat_theta != Some(THETA as f64) {
                bail!(
                    Unsupported,
                    "rope_theta {} with flat keys: transformers 5 runs Olmo3ForCausalLM's sliding layers at 500000 and transformers 4 at rope_theta (10000 when absent); give rope_parameters keyed by layer type",
                    flat_theta.map_or("absent".to_string(), |t| t.to_string())
                );
            }
            (
                json!({"rope_type": "default"}),
                json!({"rope_type": "default"}),
            )
        }
    };
    // Olmo3Config's merging: a flat `rope_scaling` into the full layers' RoPE, and the flat
    // θ as its default; the sliding layers' default θ is the class's.
    if let (Some(Value::Object(s)), Some(f)) = (flat_scaling, full.as_object_mut()) {
        f.extend(s);
    }
    if let Some(f) = full.as_object_mut() {
        f.entry("rope_theta")
            .or_insert_with(|| flat_theta.unwrap_or(THETA as f64).into());
    }
    let (global, local) = (rope_of(&full, THETA)?, rope_of(&sliding, THETA)?);
    c.rope_theta = global.theta;
    c.rope_scaling = global.scaling.clone();
    c.local_rope = (local != global).then_some(local);
    let n = c.num_hidden_layers;
    // 4096 when the key is absent; transformers cannot run the class without a window.
    c.sliding_window = match v.get("sliding_window") {
        None => Some(4096),
        Some(_) => match count(v, "sliding_window")? {
            Some(w) => Some(w),
            None => bail!(
                Unsupported,
                "sliding_window null is not supported for Olmo3ForCausalLM (transformers cannot run it without a window; OLMo 2's class has none)"
            ),
        },
    };
    c.layer_types = match layer_types(v, n)? {
        Some(t) => t,
        None => default_layers(n),
    };
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::olmo2::bias_json(c, map, UNIT.class)?;
    if c.sliding_window.is_none() {
        bail!(
            Unsupported,
            "Olmo3ForCausalLM runs only with a window; this model has none"
        );
    }
    // The form transformers 5 writes; its reading of flat keys gives the sliding layers
    // Olmo3Config's default θ rather than `rope_theta`.
    super::ropes_by_layer_type_json(c, map);
    map.insert("sliding_window".into(), c.sliding_window.into());
    map.insert("layer_types".into(), super::layer_types_json(c));
    Ok(())
}
