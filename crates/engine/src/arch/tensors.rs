//! Every parameter of a model as Hugging Face names and shapes it: what a checkpoint of the
//! config holds, what the tiny models of `shapes` are written from, and the list the GGUF name
//! map ([`super::gguf`]) is built on.

use crate::formats::config::{
    AttentionBias, DecoderConfig, Family, Gpt2Config, ModelConfig, NormPlacement, QkNorm,
};

/// What a family calls the block's parts where it does not use Llama's names (the rest are
/// shared): `<model>.<embed>`, `<model>.layers.N.<attn>.<o>`, `<attn>.<qkv>` where q, k and
/// v are fused, `mlp.<up>`, `mlp.<down>`, `<model>.<final_norm>`, `<head>`; where norms follow
/// attention or sit around the feed-forward (Gemma's sandwich, OLMo 2's post-norms), their
/// names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    pub model: &'static str,
    pub embed: &'static str,
    pub attn: &'static str,
    pub qkv: &'static str,
    pub o: &'static str,
    /// The ungated feed-forward's input projection (a gated one has `gate_proj` and
    /// `up_proj`, or `gate_up_proj`).
    pub up: &'static str,
    pub down: &'static str,
    pub final_norm: &'static str,
    pub head: &'static str,
    pub after_attn_norm: &'static str,
    pub before_mlp_norm: &'static str,
    pub after_mlp_norm: &'static str,
}

const LLAMA: Names = Names {
    model: "model",
    embed: "embed_tokens",
    attn: "self_attn",
    qkv: "qkv_proj",
    o: "o_proj",
    up: "up_proj",
    down: "down_proj",
    final_norm: "norm",
    head: "lm_head",
    after_attn_norm: "post_attention_layernorm",
    before_mlp_norm: "pre_feedforward_layernorm",
    after_mlp_norm: "post_feedforward_layernorm",
};

impl Names {
    pub fn of(c: &DecoderConfig) -> Self {
        match c.family {
            Family::Phi => Names {
                o: "dense",
                up: "fc1",
                down: "fc2",
                final_norm: "final_layernorm",
                ..LLAMA
            },
            Family::GptNeoX => Names {
                model: "gpt_neox",
                embed: "embed_in",
                attn: "attention",
                qkv: "query_key_value",
                o: "dense",
                up: "dense_h_to_4h",
                down: "dense_4h_to_h",
                final_norm: "final_layer_norm",
                head: "embed_out",
                ..LLAMA
            },
            Family::StarCoder2 => Names {
                up: "c_fc",
                down: "c_proj",
                ..LLAMA
            },
            // Its post_attention_layernorm is the norm before the feed-forward, as Llama's.
            Family::Glm4 => Names {
                after_attn_norm: "post_self_attn_layernorm",
                before_mlp_norm: "post_attention_layernorm",
                after_mlp_norm: "post_mlp_layernorm",
                ..LLAMA
            },
            _ => LLAMA,
        }
    }
}

/// A parameter's name and shape (candle order).
pub type Parameter = (String, Vec<usize>);

/// The parameters of a model of config `c`.
pub fn parameters(c: &ModelConfig) -> Vec<Parameter> {
    match c {
        ModelConfig::Decoder(c) => decoder_parameters(c),
        ModelConfig::Gpt2(c) => gpt2_parameters(c),
    }
}

/// The shared decoder block's parameters, with what the family's options add or fuse.
fn decoder_parameters(c: &DecoderConfig) -> Vec<Parameter> {
    let (h, hd, f) = (c.hidden_size, c.head_dim(), c.intermediate_size);
    let (q, kv) = (c.num_attention_heads * hd, c.kv_heads() * hd);
    let o = &c.opts;
    let n = Names::of(c);
    let (m, a) = (n.model, n.attn);
    let mut p = vec![(format!("{m}.{}.weight", n.embed), vec![c.vocab_size, h])];
    for i in 0..c.num_hidden_layers {
        let l = format!("{m}.layers.{i}");
        let mut add = |name: &str, shape: Vec<usize>| p.push((format!("{l}.{name}"), shape));
        let norm = |name: &str| norm_parameters(name, h, o.norm_kind.has_bias());
        if o.norms != NormPlacement::Post {
            norm("input_layernorm").for_each(|(n, s)| add(&n, s));
        }
        let biases = o.attention_bias != AttentionBias::None;
        if o.fused_qkv || o.qkv_by_head {
            add(&format!("{a}.{}.weight", n.qkv), vec![q + 2 * kv, h]);
            if biases && o.qkv_by_head {
                add(&format!("{a}.{}.bias", n.qkv), vec![q + 2 * kv]);
            }
        } else {
            add(&format!("{a}.q_proj.weight"), vec![q, h]);
            add(&format!("{a}.k_proj.weight"), vec![kv, h]);
            add(&format!("{a}.v_proj.weight"), vec![kv, h]);
        }
        if biases && !o.qkv_by_head {
            add(&format!("{a}.q_proj.bias"), vec![q]);
            add(&format!("{a}.k_proj.bias"), vec![kv]);
            add(&format!("{a}.v_proj.bias"), vec![kv]);
        }
        match o.qk_norm {
            QkNorm::None => {}
            QkNorm::PerHead => {
                add(&format!("{a}.q_norm.weight"), vec![hd]);
                add(&format!("{a}.k_norm.weight"), vec![hd]);
            }
            QkNorm::Whole => {
                add(&format!("{a}.q_norm.weight"), vec![q]);
                add(&format!("{a}.k_norm.weight"), vec![kv]);
            }
        }
        add(&format!("{a}.{}.weight", n.o), vec![h, q]);
        if o.attention_bias == AttentionBias::QkvO {
            add(&format!("{a}.{}.bias", n.o), vec![h]);
        }
        let norms = match o.norms {
            NormPlacement::Pre | NormPlacement::ParallelTwoNorms => {
                vec!["post_attention_layernorm"]
            }
            NormPlacement::Sandwich => vec![n.after_attn_norm, n.before_mlp_norm, n.after_mlp_norm],
            NormPlacement::Post => vec![n.after_attn_norm, n.after_mlp_norm],
            NormPlacement::Parallel => vec![],
        };
        norms
            .into_iter()
            .flat_map(norm)
            .for_each(|(n, s)| add(&n, s));
        if o.plain_mlp {
            add(&format!("mlp.{}.weight", n.up), vec![f, h]);
            add(&format!("mlp.{}.bias", n.up), vec![f]);
        } else if o.fused_gate_up {
            add("mlp.gate_up_proj.weight", vec![2 * f, h]);
        } else {
            add("mlp.gate_proj.weight", vec![f, h]);
            add("mlp.up_proj.weight", vec![f, h]);
        }
        add(&format!("mlp.{}.weight", n.down), vec![h, f]);
        if o.plain_mlp {
            add(&format!("mlp.{}.bias", n.down), vec![h]);
        }
    }
    p.extend(norm_parameters(
        &format!("{m}.{}", n.final_norm),
        h,
        o.norm_kind.has_bias(),
    ));
    if !c.tie_word_embeddings {
        p.push((format!("{}.weight", n.head), vec![c.vocab_size, h]));
    }
    if o.head_bias {
        p.push((format!("{}.bias", n.head), vec![c.vocab_size]));
    }
    p
}

/// A norm's parameters: its gains, and its bias where it has one.
fn norm_parameters(name: &str, h: usize, bias: bool) -> impl Iterator<Item = Parameter> {
    let bias = bias.then(|| (format!("{name}.bias"), vec![h]));
    std::iter::once((format!("{name}.weight"), vec![h])).chain(bias)
}

/// GPT-2's parameters, with the `transformer.` prefix HF writes (Conv1D weights `[in, out]`).
fn gpt2_parameters(c: &Gpt2Config) -> Vec<Parameter> {
    let (d, f) = (c.n_embd, c.inner());
    let mut p = vec![
        ("transformer.wte.weight".to_string(), vec![c.vocab_size, d]),
        ("transformer.wpe.weight".to_string(), vec![c.n_positions, d]),
    ];
    for i in 0..c.n_layer {
        let l = format!("transformer.h.{i}");
        p.extend([
            (format!("{l}.ln_1.weight"), vec![d]),
            (format!("{l}.ln_1.bias"), vec![d]),
            (format!("{l}.attn.c_attn.weight"), vec![d, 3 * d]),
            (format!("{l}.attn.c_attn.bias"), vec![3 * d]),
            (format!("{l}.attn.c_proj.weight"), vec![d, d]),
            (format!("{l}.attn.c_proj.bias"), vec![d]),
            (format!("{l}.ln_2.weight"), vec![d]),
            (format!("{l}.ln_2.bias"), vec![d]),
            (format!("{l}.mlp.c_fc.weight"), vec![d, f]),
            (format!("{l}.mlp.c_fc.bias"), vec![f]),
            (format!("{l}.mlp.c_proj.weight"), vec![f, d]),
            (format!("{l}.mlp.c_proj.bias"), vec![d]),
        ]);
    }
    p.extend([
        ("transformer.ln_f.weight".to_string(), vec![d]),
        ("transformer.ln_f.bias".to_string(), vec![d]),
    ]);
    p
}
