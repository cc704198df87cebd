//! Exaone4ForCausalLM (EXAONE 4.0 and its fine-tunes): OLMo 2's post-norms with each head's q
//! and k normed (as Qwen3 norms them), sliding windows on three layers of four by default
//! (`sliding_window_pattern`, or `layer_types`), and, where the config has a window, no RoPE
//! on the full layers (EXAONE 4.0 32B); without one (the 1.2B), every layer rotates.
//!
//! In GGUF (`exaone4`): Q and K rows as transformers stores them, Llama 3's RoPE scaling as
//! `rope_freqs.weight`. llama.cpp slides only a model of 64 layers (its window from
//! `attention.sliding_window`, 4096 unless given; its layers from
//! `attention.sliding_window_pattern`, every fourth full unless given) and no other, whatever
//! the file says; so a file is read so, and other windows have no GGUF form.

use super::gguf::{pattern, Keys, Meta};
use super::{activation, count, layer_types, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, DecoderConfig, Family, LayerType, NormPlacement, QkNorm, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Exaone4,
    class: "Exaone4ForCausalLM",
    model_type: "exaone4",
    gguf_arch: "exaone4",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// Exaone4Config's window and pattern, and llama.cpp's for a model of 64 layers.
const WINDOW: usize = 4096;
const PATTERN: usize = 4;
/// The only layer count llama.cpp's `exaone4` slides (EXAONE 4.0 32B).
const SLIDING_LAYERS: usize = 64;

/// The block's options, and no RoPE on the full layers where the model has a window.
fn block(c: &mut DecoderConfig) {
    c.family = Family::Exaone4;
    c.opts.norms = NormPlacement::Post;
    c.opts.qk_norm = QkNorm::PerHead;
    c.nope_layers = match c.sliding_window {
        Some(_) => (0..c.num_hidden_layers)
            .map(|i| c.layer_type(i) == LayerType::Full)
            .collect(),
        None => Vec::new(),
    };
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 2048)?;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(
            Unsupported,
            "hidden_act must be silu for Exaone4ForCausalLM"
        );
    }
    let n = c.num_hidden_layers;
    // As transformers reads it: 4096 when the key is absent, no window when it is null.
    c.sliding_window = match v.get("sliding_window") {
        None => Some(WINDOW),
        Some(_) => count(v, "sliding_window")?,
    };
    c.layer_types = match layer_types(v, n)? {
        Some(t) if c.sliding_window.is_none() && t.contains(&LayerType::Sliding) => bail!(
            Unsupported,
            "layer_types has sliding_attention layers but sliding_window is null (transformers cannot run that)"
        ),
        Some(t) => t,
        None if c.sliding_window.is_none() => vec![LayerType::Full; n],
        None => match v.get("sliding_window_pattern") {
            None => pattern(n, PATTERN),
            Some(p) => match p.as_u64() {
                Some(p) if p > 0 => pattern(n, p as usize),
                _ => bail!(
                    Unsupported,
                    "sliding_window_pattern {p} without layer_types is not supported for Exaone4ForCausalLM (a period, or layer_types, is)"
                ),
            },
        },
    };
    block(&mut c);
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    super::derived_windows_json(
        c,
        map,
        block,
        "skips RoPE on exactly the full layers of a model with a window",
    )
}

/// What llama.cpp runs of a config given a window and layer types (every fourth full where
/// none are given): windows at 64 layers only.
fn as_llamacpp_runs(
    c: &DecoderConfig,
    window: Option<usize>,
    types: Option<Vec<LayerType>>,
) -> DecoderConfig {
    let mut l = c.clone();
    let n = c.num_hidden_layers;
    (l.sliding_window, l.layer_types) = match n {
        SLIDING_LAYERS => (
            Some(window.unwrap_or(WINDOW)),
            types.unwrap_or_else(|| pattern(n, PATTERN)),
        ),
        _ => (None, Vec::new()),
    };
    block(&mut l);
    l
}

/// Each layer's window and whether it rotates.
fn layers(c: &DecoderConfig) -> Vec<(Option<usize>, bool)> {
    (0..c.num_hidden_layers)
        .map(|i| {
            let window = match c.layer_type(i) {
                LayerType::Sliding => c.sliding_window,
                LayerType::Full => None,
            };
            (window, c.rotates(i))
        })
        .collect()
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    let window = match m.get("attention.sliding_window") {
        None => None,
        Some(_) => Some(m.count("attention.sliding_window")?),
    };
    let types = m.sliding_pattern(c.num_hidden_layers)?;
    *c = as_llamacpp_runs(c, window, types);
    super::llama::rope_freqs_from_gguf(m, c)
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let n = c.num_hidden_layers;
    let types: Vec<LayerType> = (0..n).map(|i| c.layer_type(i)).collect();
    let runs = as_llamacpp_runs(c, c.sliding_window, Some(types.clone()));
    if layers(&runs) != layers(c) {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's exaone4 slides a model of {SLIDING_LAYERS} layers, and no other; this model's windows differ; use --format hf"
        );
    }
    let a = UNIT.gguf_arch;
    if let Some(w) = runs.sliding_window {
        k.u32(&format!("{a}.attention.sliding_window"), w);
        if types != pattern(n, PATTERN) {
            k.bools(
                &format!("{a}.attention.sliding_window_pattern"),
                types.iter().map(|&t| t == LayerType::Sliding),
            );
        }
    }
    super::llama::llama3_context_key(c, k, a);
    Ok(())
}
