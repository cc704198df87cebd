//! GPTNeoXForCausalLM (Pythia, GPT-NeoX-20B, Dolly v2, RedPajama-INCITE and their
//! fine-tunes): LayerNorms with biases; attention and the feed-forward side by side, each with
//! its own norm of the same input (`use_parallel_residual`, true unless given; false is
//! Llama's order); q, k and v as one `query_key_value` whose rows go head by head; biases on
//! q, k, v and `dense` (`attention_bias`, true unless given) and always on the ungated
//! feed-forward (`dense_h_to_4h`, `dense_4h_to_h`, exact GELU unless `hidden_act` says
//! otherwise); partial rotary (`rotary_pct`, 0.25 unless given, at base `rotary_emb_base`); the
//! head `embed_out`, untied unless `tie_word_embeddings`.
//!
//! In GGUF (`gptneox`): q, k and v rows regrouped by kind (all q, then k, then v) as llama.cpp's
//! converter writes them; `use_parallel_residual`, the LayerNorms' eps and the rotated
//! dimensions as keys. A file names no activation: it is read as exact GELU, the model's own
//! (llama.cpp runs the tanh approximation for it).

use super::gguf::{Keys, Meta};
use super::{
    activation, get, layer_norm_eps, number, partial_rotary, read_base, rotary_factor, Unit,
};
use crate::error::{bail, err, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, NormKind, NormPlacement, DEFAULT_ROPE_THETA,
};
use crate::formats::gguf::Value as GgufValue;
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::GptNeoX,
    class: "GPTNeoXForCausalLM",
    model_type: "gpt_neox",
    gguf_arch: "gptneox",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// What every GPT-NeoX block has, whichever file it comes from.
fn block(c: &mut DecoderConfig, parallel: bool) {
    c.family = Family::GptNeoX;
    let o = &mut c.opts;
    o.norms = match parallel {
        true => NormPlacement::ParallelTwoNorms,
        false => NormPlacement::Pre,
    };
    o.norm_kind = NormKind::Layer;
    o.plain_mlp = true;
    o.qkv_by_head = true;
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut v = layer_norm_eps(v);
    let obj = v
        .as_object_mut()
        .ok_or_else(|| err!(Format, "config is not a JSON object"))?;
    // As GPTNeoXConfig reads the RoPE: the RoPE object's base and factor, else
    // `rotary_emb_base` and `rotary_pct`, else 10⁴ and 0.25. It reads no flat `rope_theta` or
    // `partial_rotary_factor`: one that says otherwise is refused rather than dropped.
    let snapshot = Value::Object(obj.clone());
    let rope = ["rope_scaling", "rope_parameters"]
        .iter()
        .find_map(|k| get(&snapshot, k).filter(|r| r.as_object().is_some_and(|o| !o.is_empty())));
    let from_rope = |key: &str| match rope {
        Some(r) => number(r, key),
        None => Ok(None),
    };
    let theta = from_rope("rope_theta")?
        .or(number(&snapshot, "rotary_emb_base")?)
        .unwrap_or(DEFAULT_ROPE_THETA as f64);
    let factor = from_rope("partial_rotary_factor")?
        .or(number(&snapshot, "rotary_pct")?)
        .unwrap_or(0.25);
    for (key, read, from) in [
        ("rope_theta", theta, "rotary_emb_base"),
        ("partial_rotary_factor", factor, "rotary_pct"),
    ] {
        if let Some(flat) = number(&snapshot, key)? {
            if flat != read {
                bail!(
                    Unsupported,
                    "{key} {flat} is not read by GPTNeoXForCausalLM, which runs {read} ({from} or the RoPE object's); give it there"
                );
            }
        }
        obj.insert(key.into(), read.into());
    }
    let v = &v;
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 2048)?;
    let parallel = get(v, "use_parallel_residual")
        .map(|p| {
            p.as_bool().ok_or_else(|| {
                err!(
                    Format,
                    "use_parallel_residual must be true or false, got {p}"
                )
            })
        })
        .transpose()?
        .unwrap_or(true);
    block(&mut c, parallel);
    if get(v, "attention_bias").and_then(Value::as_bool) != Some(false) {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    c.opts.activation = activation(v, "hidden_act", Activation::Gelu)?;
    partial_rotary(v, &mut c, 0.25)?;
    // Its heads are hidden_size / num_attention_heads, each with its own keys and values.
    let heads = c.num_attention_heads;
    if c.kv_heads() != heads {
        bail!(
            Unsupported,
            "num_key_value_heads {} is not part of GPTNeoXForCausalLM (every head has its own keys and values: {heads})",
            c.kv_heads()
        );
    }
    if c.head_dim() * heads != c.hidden_size {
        bail!(
            Unsupported,
            "head_dim {} is not part of GPTNeoXForCausalLM (its heads split hidden_size {} evenly)",
            c.head_dim(),
            c.hidden_size
        );
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    // Every head has its own keys and values; GPTNeoXConfig has no key for it.
    map.remove("num_key_value_heads");
    // Its own keys for the RoPE (which transformers 4 and 5 both read), not the flat ones.
    map.remove("rope_theta");
    map.insert("rotary_emb_base".into(), c.rope_theta.into());
    map.insert("rotary_pct".into(), rotary_factor(c).into());
    map.insert(
        "use_parallel_residual".into(),
        (c.opts.norms == NormPlacement::ParallelTwoNorms).into(),
    );
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "GPTNeoXForCausalLM has biases on q, k, v and dense or on none; this model has them on q, k and v only"
        );
    }
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    Ok(())
}

fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    let parallel = match m.get("use_parallel_residual") {
        None => true,
        Some(GgufValue::Bool(b)) => *b,
        Some(other) => bail!(
            Format,
            "{}: {}.use_parallel_residual is {other:?}, not a boolean",
            m.path(),
            m.arch
        ),
    };
    block(c, parallel);
    c.opts.attention_bias = match m.has_tensor("blk.0.attn_qkv.bias") {
        true => AttentionBias::QkvO,
        false => AttentionBias::None,
    };
    c.opts.activation = Activation::Gelu;
    c.rms_norm_eps = m.number_or("attention.layer_norm_epsilon", 1e-5)?;
    Ok(())
}

fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let a = UNIT.gguf_arch;
    k.bool(
        &format!("{a}.use_parallel_residual"),
        c.opts.norms == NormPlacement::ParallelTwoNorms,
    );
    if c.opts.attention_bias != AttentionBias::QkvO {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's gptneox needs biases on q, k, v and dense; this model has none; use --format hf"
        );
    }
    // Either GELU: llama.cpp runs the tanh form for both.
    let gelus = [Activation::Gelu, Activation::GeluTanh];
    super::layer_norm_to_gguf(c, k, a, &gelus, "GELU")
}
