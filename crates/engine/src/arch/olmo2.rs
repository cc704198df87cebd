//! Olmo2ForCausalLM (OLMo 2 and its fine-tunes, such as Tülu 3 on OLMo 2): norms after
//! attention and after the feed-forward only, each output normed before its residual add; q
//! and k normed over the whole projection (a gain per dimension of all heads) before RoPE;
//! biases on q, k, v and o with `attention_bias`; an untied head.
//!
//! In GGUF (`olmo2`, which llama.cpp also runs OLMo 3 as): the post-norms as
//! `post_attention_norm` and `post_ffw_norm`, the q/k norms as `attn_{q,k}_norm`, Q and K rows
//! as transformers stores them. A file with a sliding window is OLMo 3's
//! ([`super::olmo3`]).

use super::gguf::{Keys, Meta};
use super::{activation, layer_types, read_base, Unit};
use crate::error::{bail, Result};
use crate::formats::config::{
    Activation, AttentionBias, DecoderConfig, Family, LayerType, NormPlacement, QkNorm, Rope,
    DEFAULT_ROPE_THETA,
};
use serde_json::{Map, Value};

pub(super) const UNIT: Unit = Unit {
    family: Family::Olmo2,
    class: "Olmo2ForCausalLM",
    model_type: "olmo2",
    gguf_arch: "olmo2",
    read,
    write,
    from_gguf,
    to_gguf,
};

/// OLMo 2's block on what `read_base` read: what OLMo 2 and 3 share.
pub(super) fn block(v: &Value, c: &mut DecoderConfig, class: &str) -> Result<()> {
    c.opts.norms = NormPlacement::Post;
    c.opts.qk_norm = QkNorm::Whole;
    if super::flag(v, "attention_bias") {
        c.opts.attention_bias = AttentionBias::QkvO;
    }
    if activation(v, "hidden_act", Activation::Silu)? != Activation::Silu {
        bail!(Unsupported, "hidden_act must be silu for {class}");
    }
    Ok(())
}

/// The `attention_bias` key, which covers q, k, v and o alike.
pub(super) fn bias_json(
    c: &DecoderConfig,
    map: &mut Map<String, Value>,
    class: &str,
) -> Result<()> {
    if c.opts.attention_bias == AttentionBias::Qkv {
        bail!(
            Unsupported,
            "{class} has biases on q, k, v and o or on none; this model has them on q, k and v only"
        );
    }
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias == AttentionBias::QkvO).into(),
    );
    Ok(())
}

fn read(v: &Value) -> Result<DecoderConfig> {
    let mut c = read_base(v, 1e-5, DEFAULT_ROPE_THETA, 2048)?;
    c.family = Family::Olmo2;
    block(v, &mut c, UNIT.class)?;
    if let Some(t) = layer_types(v, c.num_hidden_layers)? {
        if t.contains(&LayerType::Sliding) {
            bail!(
                Unsupported,
                "layer_types: sliding_attention is not part of Olmo2ForCausalLM (it is of Olmo3ForCausalLM)"
            );
        }
    }
    Ok(c)
}

fn write(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    if c.layer_types.contains(&LayerType::Sliding) && c.sliding_window.is_some() {
        bail!(
            Unsupported,
            "Olmo2ForCausalLM has no sliding window; this model slides some layers"
        );
    }
    bias_json(c, map, UNIT.class)
}

/// llama.cpp's `olmo2`: OLMo 2, or OLMo 3 where the file gives a window (its sliding layers
/// on the plain RoPE of the same base, as llama.cpp runs them).
pub(super) fn from_gguf(m: &Meta, c: &mut DecoderConfig) -> Result<()> {
    c.opts.norms = NormPlacement::Post;
    c.opts.qk_norm = QkNorm::Whole;
    super::gguf::read_windows(m, c, None, super::olmo3::default_layers)?;
    // llama.cpp's olmo2 rotates the sliding layers at `rope.freq_base`, whatever
    // `rope.freq_base_swa` says: a file that gives another would run otherwise here.
    let swa = m.number_or("rope.freq_base_swa", c.rope_theta as f64)? as f32;
    if swa != c.rope_theta {
        bail!(
            Unsupported,
            "{}: olmo2.rope.freq_base_swa {swa} differs from rope.freq_base {}; llama.cpp's olmo2 does not read it",
            m.path(),
            c.rope_theta
        );
    }
    if c.sliding_window.is_some() {
        c.family = Family::Olmo3;
        if c.rope_scaling.is_some() {
            c.local_rope = Some(Rope {
                theta: c.rope_theta,
                scaling: None,
            });
        }
    }
    Ok(())
}

/// What llama.cpp's `olmo2` can run: heads that split the hidden width, no biases, a head of
/// its own; and, for OLMo 3, sliding layers on an unscaled RoPE of the full layers' base.
pub(super) fn to_gguf(c: &DecoderConfig, k: &mut Keys) -> Result<()> {
    let class = super::unit(c.family).class;
    if c.head_dim() * c.num_attention_heads != c.hidden_size {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's olmo2 needs head_dim × heads = hidden_size; this {class} has {} × {} ≠ {}; use --format hf",
            c.head_dim(),
            c.num_attention_heads,
            c.hidden_size
        );
    }
    if c.opts.attention_bias != AttentionBias::None {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's olmo2 loads no attention biases; this {class} has attention_bias; use --format hf"
        );
    }
    if c.tie_word_embeddings {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's olmo2 needs a head of its own (output.weight); this {class} ties it to the embeddings; use --format hf"
        );
    }
    super::gguf::write_windows(c, k, super::olmo3::default_layers);
    let slides = (0..c.num_hidden_layers).any(|i| c.layer_type(i) == LayerType::Sliding)
        && c.sliding_window.is_some();
    if slides {
        // Without a RoPE of their own, the sliding layers take the full layers' (scaled or not).
        let (theta, scaled) = match &c.local_rope {
            Some(r) => (r.theta, r.scaling.is_some()),
            None => (c.rope_theta, c.rope_scaling.is_some()),
        };
        if scaled {
            bail!(
                Unsupported,
                "--format gguf: llama.cpp runs {class}'s sliding layers on an unscaled RoPE; this model scales theirs; use --format hf"
            );
        }
        if theta != c.rope_theta {
            bail!(
                Unsupported,
                "--format gguf: llama.cpp runs {class}'s sliding layers at the full layers' RoPE base; this model's are at {theta} and {}; use --format hf",
                c.rope_theta
            );
        }
    }
    Ok(())
}
