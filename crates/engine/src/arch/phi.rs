//! PhiForCausalLM (Phi-1, Phi-1.5, Phi-2 and their fine-tunes): one LayerNorm per layer,
//! whose output attention and the feed-forward read side by side, both joining the residual at
//! once; biases on every projection and on the head; an ungated GELU feed-forward (`fc1`,
//! `fc2`); the output projection named `dense`, the final norm `final_layernorm`; partial
//! rotary (`partial_rotary_factor`, 0.5 unless given; Phi-2's is 0.4).
//!
//! In GGUF (`phi2`): q, k and v as transformers has them (llama.cpp's converter keeps them
//! apart and unpermuted), the LayerNorms' and the head's biases as `.bias` tensors, the rotated
//! dimensions as `rope.dimension_count`, the eps as `attention.layer_norm_epsilon`.

use super::gguf::{Keys, Meta};
use super::{
    activation, layer_norm_eps, partial_rotary, partial_rotary_json, read_base, refuse_true, Unit,
};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, NormKind, NormPlacement, DEFAULT_ROPE_THETA,
};
use crate::formats::gguf::{Header, TensorInfo};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Phi,
    class: "PhiForCausalLM",
    model_type: "phi",
    gguf_arch: "phi2",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every Phi block has, whichever file it comes from.
fn block(c: &mut DecoderConfig) {
    c.family = Family::Phi;
    let o = &mut c.opts;
    o.norms = NormPlacement::Parallel;
    o.norm_kind = NormKind::Layer;
    o.plain_mlp = true;
    o.head_bias = true;
    o.attention_bias = AttentionBias::QkvO;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    if v.get("model_type").and_then(Value::as_str) == Some("phi-msft") {
        bail!(
            Unsupported,
            "model_type \"phi-msft\" (the layout Phi-2 shipped in before transformers had it) is not supported; the transformers layout (model_type \"phi\", as microsoft/phi-2 ships it now) is"
        );
    }
    let v = &layer_norm_eps(v);
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 2048)?;
    block(&mut c);
    c.opts.activation = activation(v, "hidden_act", Activation::GeluTanh)?;
    partial_rotary(v, &mut c, 0.5)?;
    refuse_true(v, "qk_layernorm", UNIT.class)?;
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.opts.activation == Activation::GeluTanh {
        map.insert("hidden_act".into(), "gelu_new".into());
    }
    partial_rotary_json(c, map);
    map.insert("qk_layernorm".into(), false.into());
    Ok(())
}

/// Phi-2 files converted from the layout it shipped in before transformers had it hold q, k
/// and v as one `attn_qkv` (weight and bias), which llama.cpp runs as they are. Each is read
/// as the three tensors a phi2 file holds otherwise, views of its rows (q's, k's, then v's),
/// before anything else reads the header.
pub(super) fn split_fused_qkv(h: &mut Header) -> Result<()> {
    let fused: Vec<String> = h
        .tensors
        .keys()
        .filter(|n| n.starts_with("blk.") && n.contains(".attn_qkv."))
        .cloned()
        .collect();
    if fused.is_empty() {
        return Ok(());
    }
    let m = Meta { h, arch: "phi2" };
    let heads = m.count("attention.head_count")?;
    let head_dim = match m.count_or("attention.key_length", 0)? {
        0 => m.count("embedding_length")? / heads.max(1),
        k => k,
    };
    let (q, kv) = (
        heads * head_dim,
        m.count_or("attention.head_count_kv", heads)? * head_dim,
    );
    let p = h.path.display().to_string();
    for name in fused {
        let t = h.tensors.remove(&name).expect("listed above");
        let rows = *t.dims.last().unwrap_or(&0) as usize;
        let bytes = (t.range.end - t.range.start) as usize;
        // A bias's rows are its values: whole only in a type of one value per block.
        let whole = t.dims.len() == 2 || matches!(t.ggml_type, 0 | 1 | 30);
        if rows != q + 2 * kv || !whole || !bytes.is_multiple_of(rows) {
            bail!(
                Format,
                "{p}: tensor {name} has {rows} rows; q, k and v fused need {q} + 2·{kv} whole rows"
            );
        }
        let row = (bytes / rows) as u64;
        for (part, first, n) in [("attn_q", 0, q), ("attn_k", q, kv), ("attn_v", q + kv, kv)] {
            let mut dims = t.dims.clone();
            *dims.last_mut().expect("a dimension") = n as u64;
            let start = t.range.start + first as u64 * row;
            let info = TensorInfo {
                dims,
                ggml_type: t.ggml_type,
                range: start..start + n as u64 * row,
            };
            h.tensors.insert(name.replace("attn_qkv", part), info);
        }
    }
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    block(c);
    c.opts.activation = Activation::GeluTanh;
    c.rms_norm_eps = m.number_or("attention.layer_norm_epsilon", 1e-5)?;
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    super::layer_norm_to_gguf(c, k, UNIT.gguf_arch, &[Activation::GeluTanh], "GELU (tanh)")
}
