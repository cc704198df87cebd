//! SmolLM3ForCausalLM (SmolLM3-3B and its fine-tunes): Llama's block with no RoPE on some
//! layers (`no_rope_layers`, one 0/1 per layer, or every `no_rope_layer_interval`-th layer:
//! the fourth by default), a sliding window on the layers `layer_types` names (by default the
//! NoPE layers, when `use_sliding_window`), a tied head and θ = 2·10⁶ unless given.
//!
//! In GGUF (`smollm3`): Llama's tensors, Q and K rows interleaved as for `llama`. llama.cpp
//! skips RoPE on every fourth layer whatever the file says, so only that pattern is written
//! or read.

use super::gguf::{Keys, Meta};
use super::{activation, count, flag, get, layer_types, read_base, refuse_true, Unit};
use crate::error::{bail, err, Result};
use crate::formats::config::{Activation, AttentionBias, DecoderConfig, Family, LayerType};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::SmolLm3,
    class: "SmolLM3ForCausalLM",
    model_type: "smollm3",
    gguf_arch: "smollm3",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// SmolLM3Config's default θ.
const THETA: f32 = 2e6;

/// llama.cpp's fixed NoPE interval for `smollm3`, and SmolLM3Config's default.
const INTERVAL: usize = 4;

/// Every `interval`-th layer without RoPE, as SmolLM3Config derives `no_rope_layers`.
fn every(interval: usize, layers: usize) -> Vec<bool> {
    (0..layers).map(|i| (i + 1) % interval == 0).collect()
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-6, THETA, 32_768)?;
    c.family = Family::SmolLm3;
    refuse_true(v, "mlp_bias", "SmolLM3")?;
    if flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for SmolLM3ForCausalLM"
        );
    }
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    let n = c.num_hidden_layers;
    c.nope_layers = match get(v, "no_rope_layers") {
        Some(list) => {
            let list = list.as_array().filter(|l| l.len() == n).ok_or_else(|| {
                err!(
                    Format,
                    "no_rope_layers must list a 0 or 1 for each of the {n} layers"
                )
            })?;
            list.iter()
                .map(|x| match (x.as_u64(), x.as_bool()) {
                    // 1 (or true): the layer rotates.
                    (Some(1), _) | (_, Some(true)) => Ok(false),
                    (Some(0), _) | (_, Some(false)) => Ok(true),
                    _ => bail!(Format, "no_rope_layers entries must be 0 or 1, got {x}"),
                })
                .collect::<Result<_>>()?
        }
        None => every(count(v, "no_rope_layer_interval")?.unwrap_or(INTERVAL), n),
    };
    // A layer slides where layer_types says so (transformers builds the mask from it alone);
    // without layer_types, the NoPE layers do when use_sliding_window is on.
    let window = count(v, "sliding_window")?;
    let types = match layer_types(v, n)? {
        Some(t) => t,
        None => (0..n)
            .map(
                |i| match c.nope_layers[i] && flag(v, "use_sliding_window") {
                    true => LayerType::Sliding,
                    false => LayerType::Full,
                },
            )
            .collect(),
    };
    c.sliding_window = window;
    if c.sliding_window.is_some() && types.contains(&LayerType::Sliding) {
        c.layer_types = types;
    } else {
        c.sliding_window = None;
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "SmolLM3ForCausalLM has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    map.insert("mlp_bias".into(), false.into());
    let rotates: Vec<u8> = (0..c.num_hidden_layers)
        .map(|i| u8::from(c.rotates(i)))
        .collect();
    map.insert("no_rope_layers".into(), rotates.into());
    let sliding = (0..c.num_hidden_layers).any(|i| c.layer_type(i) == LayerType::Sliding);
    map.insert("use_sliding_window".into(), sliding.into());
    map.insert(
        "sliding_window".into(),
        c.sliding_window.filter(|_| sliding).into(),
    );
    map.insert("layer_types".into(), super::layer_types_json(c));
    Ok(())
}

/// llama.cpp's fixed pattern, and Llama's Q/K layout.
fn from_gguf(_: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.nope_layers = every(INTERVAL, c.num_hidden_layers);
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let n = c.num_hidden_layers;
    if (0..n).map(|i| !c.rotates(i)).ne(every(INTERVAL, n)) {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's smollm3 skips RoPE on every fourth layer; this model's no_rope_layers differ; use --format hf"
        );
    }
    if (0..n).any(|i| c.layer_type(i) == LayerType::Sliding) {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's smollm3 has no sliding window; this model slides some layers; use --format hf"
        );
    }
    let a = UNIT.gguf_arch;
    k.u32(&format!("{a}.rope.dimension_count"), c.head_dim());
    k.u32(&format!("{a}.vocab_size"), c.vocab_size);
    Ok(())
}
