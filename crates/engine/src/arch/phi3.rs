//! Phi3ForCausalLM (Phi-3, Phi-3.5, Phi-4-mini): Llama's block with q, k and v in one
//! `qkv_proj` and gate and up in one `gate_up_proj` (read fused: the block splits their
//! outputs), and a sliding window on every layer when `sliding_window` is set. LongRoPE
//! (`longrope`, or `su` and `yarn` as Phi-3's configs name it: Phi-3.5 and the 128k models)
//! and partial rotary (Phi-4-mini) as transformers reads them.
//!
//! In GGUF (`phi3`): `attn_qkv` and `ffn_up` (gate rows first) stored fused as transformers
//! has them. llama.cpp reads the window and does not apply it; lerpscope applies it, as
//! transformers does (the two differ only past it: 2047 tokens on Phi-3-mini).

use super::gguf::{Keys, Meta};
use super::{activation, count, partial_rotary, partial_rotary_json, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, DecoderConfig, Family, LayerType, LongRope, RopeScaling, DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Phi3,
    class: "Phi3ForCausalLM",
    model_type: "phi3",
    gguf_arch: "phi3",
    read,
    write,
    from_gguf,
    to_gguf,
};

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut v = v.clone();
    as_transformers_reads(&mut v);
    let v = &v;
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 4096)?;
    c.family = Family::Phi3;
    c.opts.fused_qkv = true;
    c.opts.fused_gate_up = true;
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for Phi3ForCausalLM");
    }
    partial_rotary(v, &mut c, 1.0)?;
    c.sliding_window = count(v, "sliding_window")?;
    if c.sliding_window.is_some() {
        c.layer_types = vec![LayerType::Sliding; c.num_hidden_layers];
    }
    Ok(c)
}

/// Phi3's config as transformers' `Phi3Config` reads it: `su` and `yarn` are LongRoPE, whose
/// pre-training context is the flat `original_max_position_embeddings` (4096 unless given).
fn as_transformers_reads(v: &mut Value) {
    let Some(obj) = v.as_object_mut() else {
        return;
    };
    let mut longrope = false;
    for key in ["rope_scaling", "rope_parameters"] {
        let Some(Value::Object(r)) = obj.get_mut(key) else {
            continue;
        };
        let kind = ["rope_type", "type"]
            .iter()
            .find_map(|k| r.get(*k).and_then(Value::as_str));
        if let Some("su" | "yarn" | "longrope") = kind {
            r.insert("rope_type".into(), "longrope".into());
            r.remove("type");
            longrope = true;
        }
    }
    let original = "original_max_position_embeddings";
    if longrope && obj.get(original).is_none_or(Value::is_null) {
        obj.insert(original.into(), ORIGINAL_CONTEXT.into());
    }
}

/// `Phi3Config`'s default pre-training context.
const ORIGINAL_CONTEXT: usize = 4096;

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.rotary_dim.is_some() {
        partial_rotary_json(c, map);
    }
    // Phi3Config reads the flat key over the RoPE object's.
    if let Some(RopeScaling::LongRope(l)) = &c.rope_scaling {
        let original = l
            .original_max_position_embeddings
            .unwrap_or(c.max_position_embeddings);
        map.insert("original_max_position_embeddings".into(), original.into());
    }
    super::uniform_window_json(c, map)
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.opts.fused_qkv = true;
    c.opts.fused_gate_up = true;
    if let Some(l) = longrope_from_gguf(m, c)? {
        if c.rope_scaling.is_some() {
            bail!(
                Unsupported,
                "{}: both {}.rope.scaling.type and LongRoPE's factor tensors; one RoPE scaling is supported",
                m.path(),
                m.arch
            );
        }
        c.rope_scaling = Some(RopeScaling::LongRope(Box::new(l)));
    }
    super::gguf::read_windows(m, c, None, super::gguf::all_sliding)
}

/// LongRoPE as llama.cpp's converter stores it: the factor lists as tensors, the attention
/// factor and the pre-training context as keys (llama.cpp's defaults where absent: 1 and the
/// context).
fn longrope_from_gguf(m: &Meta, c: &DecoderConfig) -> Result<Option<LongRope>> {
    let (long, short) = ("rope_factors_long.weight", "rope_factors_short.weight");
    let read = |t: &str| -> Result<Vec<f32>> {
        let f = m.h.read_f32(t)?;
        let rotary = c.opts.rotary_dim.unwrap_or(c.head_dim());
        if f.len() != rotary / 2 || f.iter().any(|x| !(x.is_finite() && *x > 0.0)) {
            bail!(
                Format,
                "{}: tensor {t} must hold {} positive factors ({rotary} rotary dimensions), got {} values",
                m.path(),
                rotary / 2,
                f.len()
            );
        }
        Ok(f)
    };
    match (m.has_tensor(long), m.has_tensor(short)) {
        (false, false) => Ok(None),
        (true, true) => Ok(Some(LongRope {
            long_factor: read(long)?,
            short_factor: read(short)?,
            factor: None,
            original_max_position_embeddings: Some(m.count_or(
                "rope.scaling.original_context_length",
                c.max_position_embeddings,
            )?),
            attention_factor: Some(m.number_or("rope.scaling.attn_factor", 1.0)? as f32),
        })),
        (has_long, _) => bail!(
            Format,
            "{}: tensor {} without {}: LongRoPE needs both",
            m.path(),
            if has_long { long } else { short },
            if has_long { short } else { long }
        ),
    }
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.u32(
        &format!("{a}.rope.dimension_count"),
        c.opts.rotary_dim.unwrap_or(c.head_dim()),
    );
    // llama.cpp requires it; a 4k Phi-3's is its context.
    let max = c.max_position_embeddings;
    let original = match &c.rope_scaling {
        Some(RopeScaling::LongRope(l)) => {
            k.f32(
                &format!("{a}.rope.scaling.attn_factor"),
                l.attention_factor(max),
            );
            l.original(max)
        }
        _ => max,
    };
    k.u32(
        &format!("{a}.rope.scaling.original_context_length"),
        original,
    );
    // Written as llama.cpp's converter writes it, 0 for none.
    let a_window = format!("{a}.attention.sliding_window");
    k.u32(&a_window, c.sliding_window.unwrap_or(0));
    if c.sliding_window.is_some()
        && (0..c.num_hidden_layers).any(|i| c.layer_type(i) == LayerType::Full)
    {
        bail!(
            Unsupported,
            "--format gguf: Phi-3 slides every layer or none; this model slides only some"
        );
    }
    Ok(())
}
