//! One unit per decoder family: how its config.json reads (the older flat keys and the form
//! transformers 5 writes), which options of the shared block ([`crate::model::decoder`]) it
//! sets, and which of its options nothing here implements (refused by name, never defaulted).
//!
//! Adding a family: a file here with its `read` (and its GGUF names in `crate::formats::gguf`), a row in
//! [`UNITS`], a variant of [`Family`], and its tiny pair in tests/fixtures/make_families.py.

mod cohere;
mod cohere2;
mod ernie4_5;
mod exaone4;
mod gemma;
mod gemma2;
mod gemma3;
pub mod gguf;
mod glm4;
mod gpt_neox;
mod granite;
mod llama;
mod mistral;
mod olmo2;
mod olmo3;
mod phi;
mod phi3;
mod qwen2;
mod qwen3;
mod seed_oss;
mod smollm3;
mod stablelm;
mod starcoder2;
pub mod tensors;

use crate::error::{bail, err, Context, Result};
use crate::formats::config::{
    Activation, DecoderConfig, Family, LayerType, ModelConfig, NormPlacement, Rope, RopeScaling,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::path::Path;

/// A family's unit: its names, its config.json both ways, its GGUF metadata both ways.
pub(crate) struct Unit {
    pub family: Family,
    /// The transformers class its config.json's `architectures` names.
    pub class: &'static str,
    /// Its `model_type` (for configs without `architectures`).
    pub model_type: &'static str,
    /// llama.cpp's `general.architecture` for it.
    pub gguf_arch: &'static str,
    /// config.json (parsed) to the block's config.
    pub read: fn(&Value) -> Result<DecoderConfig>,
    /// The config.json keys of its own, beyond those every family writes ([`config_json`]).
    pub write: fn(&DecoderConfig, &mut Map<String, Value>) -> Result<()>,
    /// Its GGUF keys (and what llama.cpp derives instead of storing), onto the shared ones
    /// [`gguf::config`] read.
    pub from_gguf: fn(&gguf::Meta, &mut DecoderConfig) -> Result<()>,
    /// Its GGUF keys, after the shared ones [`gguf::metadata`] wrote; an error where llama.cpp
    /// would run the model differently from the config.
    pub to_gguf: fn(&DecoderConfig, &mut gguf::Keys) -> Result<()>,
}

pub(crate) const UNITS: [Unit; 22] = [
    llama::UNIT,
    mistral::UNIT,
    qwen2::UNIT,
    qwen3::UNIT,
    gemma2::UNIT,
    gemma3::UNIT,
    phi3::UNIT,
    smollm3::UNIT,
    granite::UNIT,
    gemma::UNIT,
    // OLMo 2's first: llama.cpp's `olmo2` files are read by its unit.
    olmo2::UNIT,
    olmo3::UNIT,
    exaone4::UNIT,
    phi::UNIT,
    gpt_neox::UNIT,
    stablelm::UNIT,
    starcoder2::UNIT,
    glm4::UNIT,
    cohere::UNIT,
    cohere2::UNIT,
    ernie4_5::UNIT,
    seed_oss::UNIT,
];

/// The family a config names, by its class or (without one) its model_type.
pub(crate) fn find(class: &str, model_type: Option<&str>) -> Option<&'static Unit> {
    UNITS
        .iter()
        .find(|u| u.class == class || (class.is_empty() && model_type == Some(u.model_type)))
}

pub(crate) fn unit(family: Family) -> &'static Unit {
    UNITS
        .iter()
        .find(|u| u.family == family)
        .expect("every family has a unit")
}

/// The classes lerpscope reads, for messages.
pub(crate) fn supported_classes() -> String {
    let mut v: Vec<&str> = UNITS.iter().map(|u| u.class).collect();
    v.push("GPT2LMHeadModel");
    v.join(", ")
}

impl ModelConfig {
    /// Read a config.json.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read", path.display()))?;
        Self::parse(&text).with_context(|| format!("{}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct Head {
            architectures: Option<Vec<String>>,
            model_type: Option<String>,
        }
        let value: serde_json::Value =
            serde_json::from_str(text).context("malformed JSON in config")?;
        let head: Head = serde_json::from_value(value.clone()).context("malformed config")?;
        let arch = head
            .architectures
            .and_then(|a| a.into_iter().next())
            .unwrap_or_default();
        let model_type = head.model_type.as_deref();
        if arch == "Gemma3ForConditionalGeneration"
            || model_type == Some("gemma3")
            || value.get("text_config").is_some() && value.get("vision_config").is_some()
        {
            bail!(
                Unsupported,
                "unsupported architecture {arch:?} (model_type {:?}): multimodal models are not supported; a text model (Gemma3ForCausalLM, gemma3_text) is",
                model_type.unwrap_or("none")
            );
        }
        let cfg = if arch == "GPT2LMHeadModel" || arch.is_empty() && model_type == Some("gpt2") {
            gpt2_options(&value)?;
            ModelConfig::Gpt2(serde_json::from_value(value).context("invalid GPT-2 config")?)
        } else {
            match find(&arch, model_type) {
                Some(unit) => ModelConfig::Decoder(
                    (unit.read)(&value).with_context(|| format!("{} config", unit.class))?,
                ),
                None => bail!(
                    Unsupported,
                    "unsupported architecture {:?} (model_type {:?}); supported: {}",
                    arch,
                    model_type.unwrap_or("none"),
                    supported_classes()
                ),
            }
        };
        cfg.check_values()?;
        Ok(cfg)
    }

    pub fn architecture(&self) -> &'static str {
        match self {
            ModelConfig::Decoder(c) => unit(c.family).class,
            ModelConfig::Gpt2(_) => "GPT2LMHeadModel",
        }
    }

    /// The architecture whose forward pass this config runs: Mistral with no sliding window is
    /// Llama's block (llama.cpp writes it as `llama`), so the two blend.
    pub fn computes_as(&self) -> &'static str {
        match self {
            ModelConfig::Decoder(c)
                if c.family == Family::Mistral && c.sliding_window.is_none() =>
            {
                unit(Family::Llama).class
            }
            _ => self.architecture(),
        }
    }
}

/// GPT-2 options that change what the forward pass computes, where a config sets them to what
/// the GPT-2 block here does not do: each is refused by name rather than ignored.
fn gpt2_options(v: &Value) -> Result<()> {
    let act = &v["activation_function"];
    if !(act.is_null() || matches!(act.as_str(), Some("gelu_new" | "gelu_pytorch_tanh"))) {
        bail!(
            Unsupported,
            "GPT-2 with activation_function {act} is not supported (gelu_new is)"
        );
    }
    // The block's head is `wte`: an untied checkpoint's `lm_head.weight` would go unread.
    for (key, supported) in [
        ("scale_attn_weights", true),
        ("scale_attn_by_inverse_layer_idx", false),
        ("tie_word_embeddings", true),
    ] {
        let set = &v[key];
        if !(set.is_null() || set.as_bool() == Some(supported)) {
            bail!(
                Unsupported,
                "GPT-2 with {key} {set} is not supported ({supported} is)"
            );
        }
    }
    Ok(())
}

/// config.json for a config: what an export from a GGUF writes, and the tiny models of
/// [`crate::shapes`]. Reading it back gives the same config.
pub fn config_json(c: &ModelConfig) -> Result<Value> {
    let c = match c {
        ModelConfig::Decoder(c) => c,
        ModelConfig::Gpt2(c) => {
            return Ok(json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "n_embd": c.n_embd,
                "n_layer": c.n_layer,
                "n_head": c.n_head,
                "n_positions": c.n_positions,
                "n_inner": c.n_inner,
                "vocab_size": c.vocab_size,
                "layer_norm_epsilon": c.layer_norm_epsilon,
                "activation_function": "gelu_new",
                "bos_token_id": c.bos_token_id,
                "eos_token_id": eos_json(&c.eos_token_id),
            }))
        }
    };
    let u = unit(c.family);
    if c.rope_factors.is_some() {
        bail!(
            Unsupported,
            "config.json has no form for RoPE factors given as a tensor (rope_freqs.weight) that are not Llama 3's; use --format gguf"
        );
    }
    let mut v = json!({
        "architectures": [u.class],
        "model_type": u.model_type,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.kv_heads(),
        "head_dim": c.head_dim(),
        "vocab_size": c.vocab_size,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": eos_json(&c.eos_token_id),
        // Unknown here, and some families' defaults lie outside a small vocabulary.
        "pad_token_id": null,
        "hidden_act": activation_name(c.opts.activation),
    });
    let map = v.as_object_mut().expect("an object");
    // The LayerNorm families' configs name their eps so (PhiConfig, GPTNeoXConfig,
    // StableLmConfig, CohereConfig).
    if c.opts.norm_kind.is_layer() {
        map.remove("rms_norm_eps");
        map.insert("layer_norm_eps".into(), c.rms_norm_eps.into());
    }
    if let Some(s) = &c.rope_scaling {
        map.insert("rope_scaling".into(), scaling_json(s));
    }
    (u.write)(c, map)?;
    Ok(v)
}

fn eos_json(ids: &Option<crate::formats::config::TokenIds>) -> Value {
    match ids.as_ref().map(|e| e.to_vec()) {
        Some(v) if v.len() == 1 => v[0].into(),
        Some(v) => v.into(),
        None => Value::Null,
    }
}

/// A RoPE scaling as transformers writes it.
fn scaling_json(s: &RopeScaling) -> Value {
    // An optional parameter is written where the config gave it.
    let put = |v: &mut Value, key: &str, x: Option<f32>| {
        if let Some(x) = x {
            v[key] = x.into();
        }
    };
    match s {
        RopeScaling::Linear { factor } => json!({"rope_type": "linear", "factor": factor}),
        RopeScaling::Dynamic { factor } => json!({"rope_type": "dynamic", "factor": factor}),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        } => json!({"rope_type": "llama3", "factor": factor, "low_freq_factor": low_freq_factor,
            "high_freq_factor": high_freq_factor,
            "original_max_position_embeddings": original_max_position_embeddings}),
        RopeScaling::Yarn(y) => {
            let mut v = json!({"rope_type": "yarn"});
            put(&mut v, "factor", y.factor);
            if let Some(o) = y.original_max_position_embeddings {
                v["original_max_position_embeddings"] = o.into();
            }
            put(&mut v, "beta_fast", y.beta_fast);
            put(&mut v, "beta_slow", y.beta_slow);
            put(&mut v, "attention_factor", y.attention_factor);
            put(&mut v, "mscale", y.mscale);
            put(&mut v, "mscale_all_dim", y.mscale_all_dim);
            if !y.truncate {
                v["truncate"] = false.into();
            }
            v
        }
        RopeScaling::LongRope(l) => {
            let mut v = json!({"rope_type": "longrope", "short_factor": l.short_factor,
                "long_factor": l.long_factor});
            put(&mut v, "factor", l.factor);
            if let Some(o) = l.original_max_position_embeddings {
                v["original_max_position_embeddings"] = o.into();
            }
            put(&mut v, "attention_factor", l.attention_factor);
            v
        }
    }
}

/// The full and sliding layers' RoPEs as transformers 5 writes them for Gemma 3 and OLMo 3:
/// `rope_parameters` keyed by layer type, each with its θ, in place of the flat keys.
fn ropes_by_layer_type_json(c: &DecoderConfig, map: &mut Map<String, Value>) {
    let global = Rope {
        theta: c.rope_theta,
        scaling: c.rope_scaling.clone(),
    };
    let local = c.local_rope.as_ref().unwrap_or(&global);
    let rope_json = |r: &Rope| {
        let mut v = match &r.scaling {
            Some(s) => scaling_json(s),
            None => json!({"rope_type": "default"}),
        };
        v["rope_theta"] = r.theta.into();
        v
    };
    map.remove("rope_theta");
    map.remove("rope_scaling");
    map.insert(
        "rope_parameters".into(),
        json!({"full_attention": rope_json(&global), "sliding_attention": rope_json(local)}),
    );
}

/// Each layer's type as `layer_types` lists them.
fn layer_types_json(c: &DecoderConfig) -> Value {
    (0..c.num_hidden_layers)
        .map(|i| match c.layer_type(i) {
            LayerType::Full => "full_attention",
            LayerType::Sliding => "sliding_attention",
        })
        .collect::<Vec<_>>()
        .into()
}

/// config.json's window and layer types for a family whose RoPE-less layers follow from them
/// (`derive` sets them, as the family's reader does; `rule` says how): refused where this
/// model's are others.
fn derived_windows_json(
    c: &DecoderConfig,
    map: &mut Map<String, Value>,
    derive: fn(&mut DecoderConfig),
    rule: &str,
) -> Result<()> {
    let mut derived = c.clone();
    derive(&mut derived);
    if derived.nope_layers != c.nope_layers {
        bail!(
            Unsupported,
            "{} {rule}; this model's RoPE-less layers are others",
            unit(c.family).class
        );
    }
    map.insert("sliding_window".into(), c.sliding_window.into());
    map.insert("layer_types".into(), layer_types_json(c));
    Ok(())
}

/// A window on every layer or none, as Mistral and Phi-3 configs give it (`sliding_window`,
/// null for none); any other pattern has no such form.
fn uniform_window_json(c: &DecoderConfig, map: &mut Map<String, Value>) -> Result<()> {
    let sliding = (0..c.num_hidden_layers).filter(|&i| c.layer_type(i) == LayerType::Sliding);
    let window = match sliding.count() {
        0 => Value::Null,
        n if n == c.num_hidden_layers => c.sliding_window.into(),
        _ => bail!(
            Unsupported,
            "{} applies its window to every layer or none; this config slides only some",
            unit(c.family).class
        ),
    };
    map.insert("sliding_window".into(), window);
    Ok(())
}

/// The Gemma keys Gemma 2 and 3 share.
fn gemma_json(c: &DecoderConfig, map: &mut Map<String, Value>) {
    map.insert("hidden_activation".into(), map["hidden_act"].clone());
    // transformers types it as an integer; configs write it so where it is whole.
    let scalar = c.opts.query_scalar.map(|q| match q.fract() == 0.0 {
        true => Value::from(q as u64),
        false => Value::from(q),
    });
    map.insert("query_pre_attn_scalar".into(), scalar.into());
    map.insert("sliding_window".into(), c.sliding_window.into());
    map.insert("layer_types".into(), layer_types_json(c));
    map.insert(
        "attention_bias".into(),
        (c.opts.attention_bias != crate::formats::config::AttentionBias::None).into(),
    );
    map.insert(
        "final_logit_softcapping".into(),
        c.opts.final_softcap.into(),
    );
}

/// Qwen's windows as its configs give them: `use_sliding_window`, the window, the first
/// sliding layer, and each layer's type.
fn qwen_windows_json(c: &DecoderConfig, map: &mut Map<String, Value>) {
    let n = c.num_hidden_layers;
    let first = (0..n).find(|&i| c.layer_type(i) == LayerType::Sliding);
    map.insert("use_sliding_window".into(), first.is_some().into());
    map.insert(
        "sliding_window".into(),
        c.sliding_window.filter(|_| first.is_some()).into(),
    );
    map.insert("max_window_layers".into(), first.unwrap_or(n).into());
    map.insert("layer_types".into(), layer_types_json(c));
}

/// Qwen2's and Qwen3's GGUF keys beyond the shared ones: windows only (llama.cpp applies none).
fn qwen_to_gguf(c: &DecoderConfig, k: &mut gguf::Keys) -> Result<()> {
    gguf::write_windows(c, k, gguf::all_sliding);
    Ok(())
}

/// What every family shares: sizes, ids, eps, and RoPE given as flat keys (`rope_theta`,
/// `rope_scaling`) or as one `rope_parameters` object (transformers ≥ 5). `rms_eps`, `theta`
/// and `context` (`max_position_embeddings`, from which YaRN and LongRoPE scale) are the
/// family's defaults, as its transformers class has them.
fn read_base(value: &Value, rms_eps: f64, theta: f32, context: usize) -> Result<DecoderConfig> {
    let mut value = value.clone();
    if let Some(obj) = value.as_object_mut() {
        let key = "max_position_embeddings";
        if obj.get(key).is_none_or(Value::is_null) {
            obj.insert(key.into(), context.into());
        }
    }
    // As transformers reads a config holding both, and either beside flat keys: a non-empty
    // `rope_scaling` wins over `rope_parameters`, and the RoPE object's own `rope_theta` over
    // a flat one.
    let mut rope = ["rope_scaling", "rope_parameters"].iter().find_map(|k| {
        value
            .get(*k)
            .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
            .cloned()
    });
    if let Some(Value::Object(r)) = rope.as_mut() {
        // The pre-training context of the types that scale past it: a flat key wins (the
        // rotary embedding transformers builds reads it first), then the RoPE object's, then
        // the model's context.
        let kind = r.get("rope_type").or_else(|| r.get("type"));
        if matches!(
            kind.and_then(Value::as_str),
            Some("llama3" | "yarn" | "longrope")
        ) {
            let key = "original_max_position_embeddings";
            match value
                .get(key)
                .or_else(|| value.get("max_position_embeddings"))
            {
                Some(top) if value.get(key).is_some() || !r.contains_key(key) => {
                    r.insert(key.into(), top.clone());
                }
                _ => {}
            }
        }
    }
    let rope_scaling = match &rope {
        Some(r) => RopeScaling::from_json(r)?,
        None => None,
    };
    let obj = value
        .as_object_mut()
        .ok_or_else(|| err!(Format, "config is not a JSON object"))?;
    obj.remove("rope_scaling");
    obj.remove("rope_parameters");
    if let Some(theta) = rope.as_ref().and_then(|r| r.get("rope_theta")) {
        obj.insert("rope_theta".into(), theta.clone());
    }
    if !obj.contains_key("rope_theta") {
        obj.insert("rope_theta".into(), theta.into());
    }
    if !obj.contains_key("rms_norm_eps") {
        obj.insert("rms_norm_eps".into(), rms_eps.into());
    }
    let mut c: DecoderConfig = serde_json::from_value(value).context("invalid config")?;
    c.rope_scaling = rope_scaling;
    // The families size per-layer tables by it next.
    if c.num_hidden_layers > crate::formats::config::MAX_LAYERS {
        bail!(
            Format,
            "num_hidden_layers {} is absurd (lerpscope reads models of up to {})",
            c.num_hidden_layers,
            crate::formats::config::MAX_LAYERS
        );
    }
    Ok(c)
}

/// The GGUF keys and refusals the LayerNorm families (Phi, GPT-NeoX, StableLM) share: the
/// rotated dimensions, and a refusal where llama.cpp's `arch` would run the model otherwise
/// (it reads a head of its own, and runs only the activations `runs`, named `runs_name`).
fn layer_norm_to_gguf(
    c: &DecoderConfig,
    k: &mut gguf::Keys,
    arch: &str,
    runs: &[Activation],
    runs_name: &str,
) -> Result<()> {
    k.u32(
        &format!("{arch}.rope.dimension_count"),
        c.opts.rotary_dim.unwrap_or(c.head_dim()),
    );
    if c.tie_word_embeddings {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's {arch} needs its own head (output.weight); this model ties it to the embeddings; use --format hf"
        );
    }
    if !runs.contains(&c.opts.activation) {
        bail!(
            Unsupported,
            "--format gguf: llama.cpp's {arch} runs {runs_name}; this model's hidden_act is {}; use --format hf",
            activation_name(c.opts.activation)
        );
    }
    Ok(())
}

/// A config whose norms' eps is `layer_norm_eps` (PhiConfig's, GPTNeoXConfig's), with that
/// value under the key [`read_base`] reads (and its default where it is not given).
fn layer_norm_eps(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("rms_norm_eps");
        if let Some(e) = o.get("layer_norm_eps").filter(|e| !e.is_null()).cloned() {
            o.insert("rms_norm_eps".into(), e);
        }
    }
    v
}

/// `partial_rotary_factor` as Phi3Config and PhiConfig read it (the RoPE object's, a
/// non-empty rope_scaling over rope_parameters, else the flat key, else `default`), sized as
/// transformers sizes it: int(head_dim · factor) leading dimensions rotate.
fn partial_rotary(v: &Value, c: &mut DecoderConfig, default: f64) -> Result<()> {
    let rope = ["rope_scaling", "rope_parameters"].iter().find_map(|k| {
        v.get(*k)
            .filter(|r| r.as_object().is_some_and(|o| !o.is_empty()))
    });
    let partial = match rope {
        Some(r) => number(r, "partial_rotary_factor")?,
        None => None,
    }
    .or(number(v, "partial_rotary_factor")?)
    .unwrap_or(default);
    if !(partial > 0.0 && partial <= 1.0) {
        bail!(
            Format,
            "partial_rotary_factor must be in (0, 1], got {partial}"
        );
    }
    // Odd or too few dimensions are refused with the other values (`check_values`).
    let rotary = (c.head_dim() as f64 * partial) as usize;
    c.opts.rotary_dim = (rotary < c.head_dim()).then_some(rotary);
    Ok(())
}

/// The rotary factor that int(head_dim · factor) reads back as the rotated dimensions: the
/// ratio itself where it rounds back (0.75 of 128), else one half a dimension above it (30 of
/// 44 is 0.6818…, which rounds down to 29).
fn rotary_factor(c: &DecoderConfig) -> f64 {
    let rotary = c.opts.rotary_dim.unwrap_or(c.head_dim());
    let head = c.head_dim() as f64;
    match rotary as f64 / head {
        f if (head * f) as usize == rotary => f,
        _ => (rotary as f64 + 0.5) / head,
    }
}

/// `partial_rotary_factor` as [`rotary_factor`] gives it.
fn partial_rotary_json(c: &DecoderConfig, map: &mut Map<String, Value>) {
    map.insert("partial_rotary_factor".into(), rotary_factor(c).into());
}

/// `v` with `key` set to `value` where the config leaves it out or null: a family's own default
/// for a key the shared reader defaults otherwise.
fn with_default(v: &Value, key: &str, value: Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        if o.get(key).is_none_or(Value::is_null) {
            o.insert(key.into(), value);
        }
    }
    v
}

/// A key's value, if it is present and not null.
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn flag(v: &Value, key: &str) -> bool {
    get(v, key).and_then(Value::as_bool).unwrap_or(false)
}

fn number(v: &Value, key: &str) -> Result<Option<f64>> {
    match get(v, key) {
        None => Ok(None),
        Some(x) => x
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| err!(Format, "{key} must be a number, got {x}")),
    }
}

fn count(v: &Value, key: &str) -> Result<Option<usize>> {
    match get(v, key) {
        None => Ok(None),
        Some(x) => x
            .as_u64()
            .filter(|&n| n > 0 && n < 1 << 32)
            .map(|n| Some(n as usize))
            .ok_or_else(|| err!(Format, "{key} must be a positive whole number, got {x}")),
    }
}

/// A boolean option nothing here implements, refused when true.
fn refuse_true(v: &Value, key: &str, family: &str) -> Result<()> {
    if flag(v, key) {
        bail!(Unsupported, "{key}: true is not supported for {family}");
    }
    Ok(())
}

/// An activation's `hidden_act` name.
fn activation_name(a: Activation) -> &'static str {
    match a {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
        Activation::Gelu => "gelu",
    }
}

/// The gate activation named by `key` (`hidden_act` or Gemma's `hidden_activation`), which
/// must be one the block has.
fn activation(v: &Value, key: &str, default: Activation) -> Result<Activation> {
    match get(v, key).map(|x| x.as_str().unwrap_or("")) {
        None => Ok(default),
        Some("silu") | Some("swish") => Ok(Activation::Silu),
        // gelu_new is the same tanh approximation (Phi-2's).
        Some("gelu_pytorch_tanh") | Some("gelu_tanh") | Some("gelu_new") => {
            Ok(Activation::GeluTanh)
        }
        Some("gelu") => Ok(Activation::Gelu),
        Some(other) => bail!(
            Unsupported,
            "{key} {other:?} is not supported (supported: silu, gelu_pytorch_tanh, gelu_new, gelu)"
        ),
    }
}

/// The config's `layer_types`, if it lists them (`full_attention` or `sliding_attention` for
/// every layer).
fn layer_types(v: &Value, layers: usize) -> Result<Option<Vec<LayerType>>> {
    let Some(list) = get(v, "layer_types") else {
        return Ok(None);
    };
    let list = list
        .as_array()
        .ok_or_else(|| err!(Format, "layer_types must be a list"))?;
    if list.len() != layers {
        bail!(
            Format,
            "layer_types has {} entries for {layers} layers",
            list.len()
        );
    }
    list.iter()
        .map(|t| match t.as_str() {
            Some("full_attention") | Some("attention") => Ok(LayerType::Full),
            Some("sliding_attention") => Ok(LayerType::Sliding),
            _ => bail!(
                Unsupported,
                "layer_types entry {t} is not supported (supported: full_attention, sliding_attention)"
            ),
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Qwen's sliding windows: only with `use_sliding_window`, for layers from
/// `max_window_layers` on (or as `layer_types` lists them).
fn qwen_windows(v: &Value, c: &mut DecoderConfig) -> Result<()> {
    let on = flag(v, "use_sliding_window");
    // As transformers reads it: 4096 when the key is absent, no window when it is null.
    c.sliding_window = match v.get("sliding_window") {
        _ if !on => None,
        None => Some(4096),
        Some(_) => count(v, "sliding_window")?,
    };
    let n = c.num_hidden_layers;
    c.layer_types = match layer_types(v, n)? {
        Some(t) => t,
        None => {
            // 0 is every layer sliding.
            let from = match get(v, "max_window_layers") {
                Some(x) if x.as_u64() == Some(0) => 0,
                _ => count(v, "max_window_layers")?.unwrap_or(28),
            };
            (0..n)
                .map(|i| {
                    if on && i >= from {
                        LayerType::Sliding
                    } else {
                        LayerType::Full
                    }
                })
                .collect()
        }
    };
    if !on && c.layer_types.contains(&LayerType::Sliding) {
        bail!(
            Format,
            "layer_types has sliding_attention layers but use_sliding_window is false"
        );
    }
    if c.sliding_window.is_none() {
        // A sliding layer without a window attends to everything.
        c.layer_types = vec![LayerType::Full; n];
    }
    Ok(())
}

/// Gemma's alternating layers: every `pattern`-th layer full, the rest sliding (unless
/// `layer_types` lists them).
fn gemma_layers(v: &Value, c: &mut DecoderConfig, pattern: usize) -> Result<()> {
    let n = c.num_hidden_layers;
    c.layer_types = match layer_types(v, n)? {
        Some(t) => t,
        None => (0..n)
            .map(|i| {
                if (i + 1) % pattern != 0 {
                    LayerType::Sliding
                } else {
                    LayerType::Full
                }
            })
            .collect(),
    };
    c.sliding_window = Some(count(v, "sliding_window")?.unwrap_or(4096));
    Ok(())
}

/// The options every Gemma shares: (1 + w) gains, sandwich norms, √hidden embeddings, GeGLU,
/// `query_pre_attn_scalar`, a head_dim of 256 unless given.
fn gemma_common(v: &Value, c: &mut DecoderConfig) -> Result<()> {
    refuse_true(v, "use_bidirectional_attention", "Gemma")?;
    c.opts.norm_plus_one = true;
    c.opts.norms = NormPlacement::Sandwich;
    c.opts.embed_scale = true;
    // Gemma's key; the `hidden_act` its configs also carry is not read by transformers.
    c.opts.activation = activation(v, "hidden_activation", Activation::GeluTanh)?;
    c.opts.query_scalar = Some(number(v, "query_pre_attn_scalar")?.unwrap_or(256.0) as f32);
    c.head_dim = Some(c.head_dim.unwrap_or(256));
    if flag(v, "attention_bias") {
        c.opts.attention_bias = crate::formats::config::AttentionBias::QkvO;
    }
    if get(v, "tie_word_embeddings").is_none() {
        c.tie_word_embeddings = true;
    }
    Ok(())
}

/// A RoPE from one `rope_parameters` entry (or `{rope_theta, rope_scaling}` flat keys).
fn rope_of(entry: &Value, default_theta: f32) -> Result<Rope> {
    Ok(Rope {
        theta: number(entry, "rope_theta")?.map_or(default_theta, |t| t as f32),
        scaling: RopeScaling::from_json(entry)?,
    })
}

/// `{key: number}` in a config that must be a positive number when given.
fn positive(v: &Value, key: &str) -> Result<Option<f32>> {
    match number(v, key)? {
        Some(x) if x > 0.0 => Ok(Some(x as f32)),
        Some(x) => bail!(Format, "{key} must be positive, got {x}"),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use crate::error::Result;
    use crate::formats::config::{
        Activation, AttentionBias, DecoderConfig, Family, LayerType, ModelConfig, NormKind,
        NormPlacement, QkNorm, Rope, RopeScaling,
    };

    fn parse(class: &str, extra: &str) -> Result<DecoderConfig> {
        let text = format!(
            r#"{{"architectures":["{class}"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":4,"num_attention_heads":4,"num_key_value_heads":2,
            "vocab_size":100{extra}}}"#
        );
        match ModelConfig::parse(&text)? {
            ModelConfig::Decoder(c) => Ok(c),
            other => panic!("not a decoder: {other:?}"),
        }
    }

    /// A config with no key/value head count, so that the family's default applies.
    fn parse_bare(class: &str, heads: usize, extra: &str) -> Result<DecoderConfig> {
        let text = format!(
            r#"{{"architectures":["{class}"],"hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":4,"num_attention_heads":{heads},"vocab_size":100{extra}}}"#
        );
        match ModelConfig::parse(&text)? {
            ModelConfig::Decoder(c) => Ok(c),
            other => panic!("not a decoder: {other:?}"),
        }
    }

    /// The decoder config a written config.json reads back as.
    fn read_back(json: &serde_json::Value) -> DecoderConfig {
        match ModelConfig::parse(&json.to_string()).unwrap() {
            ModelConfig::Decoder(c) => c,
            other => panic!("{other:?}"),
        }
    }

    fn refused(class: &str, extra: &str, says: &[&str]) {
        let e = parse(class, extra).unwrap_err().to_string();
        for s in says {
            assert!(e.contains(s), "{class} {extra}: {e:?} should say {s:?}");
        }
    }

    /// Gemma 3's RoPEs and layers read alike from the older flat keys and from the form
    /// transformers 5 writes (rope_parameters keyed by layer type, layer_types).
    #[test]
    fn gemma3_reads_the_same_from_both_config_forms() {
        let legacy = parse(
            "Gemma3ForCausalLM",
            r#","rope_theta":1000000.0,"rope_local_base_freq":10000.0,
            "rope_scaling":{"rope_type":"linear","factor":8.0},"sliding_window_pattern":2,
            "sliding_window":4,"head_dim":16"#,
        )
        .unwrap();
        let v5 = parse(
            "Gemma3ForCausalLM",
            r#","rope_parameters":{"sliding_attention":{"rope_type":"default","rope_theta":10000.0},
            "full_attention":{"rope_type":"linear","factor":8.0,"rope_theta":1000000.0}},
            "layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"],
            "sliding_window":4,"head_dim":16"#,
        )
        .unwrap();
        assert_eq!(legacy, v5);
        assert_eq!(v5.family, Family::Gemma3);
        assert_eq!(v5.rope_theta, 1e6);
        assert_eq!(v5.rope_scaling, Some(RopeScaling::Linear { factor: 8.0 }));
        assert_eq!(
            v5.local_rope,
            Some(Rope {
                theta: 1e4,
                scaling: None
            })
        );
        assert_eq!(v5.layer_type(0), LayerType::Sliding);
        assert_eq!(v5.layer_type(1), LayerType::Full);
        assert_eq!(v5.opts.qk_norm, QkNorm::PerHead);
        assert!(v5.opts.norm_plus_one && v5.opts.norms == NormPlacement::Sandwich);
        assert_eq!(
            v5.opts.attn_softcap, None,
            "Gemma 3 never soft-caps attention"
        );
        // Defaults: five sliding layers to one full, windows of 4096, RoPE bases 10⁶ and 10⁴.
        let d = parse("Gemma3ForCausalLM", "").unwrap();
        assert_eq!(d.sliding_window, Some(4096));
        assert_eq!(
            (d.rope_theta, d.local_rope.as_ref().unwrap().theta),
            (1e6, 1e4)
        );
        assert_eq!(d.head_dim(), 256);
    }

    #[test]
    fn each_familys_defaults_and_keys() {
        // Mistral: no key means a window of 4096, null means none.
        assert_eq!(
            parse("MistralForCausalLM", "").unwrap().sliding_window,
            Some(4096)
        );
        let none = parse("MistralForCausalLM", r#","sliding_window":null"#).unwrap();
        assert_eq!(none.sliding_window, None);
        assert_eq!(none.layer_type(3), LayerType::Full);
        // Qwen2: use_sliding_window with a null window is no window (absent: 4096).
        let q = parse(
            "Qwen2ForCausalLM",
            r#","use_sliding_window":true,"sliding_window":null,"max_window_layers":0"#,
        )
        .unwrap();
        assert_eq!((q.sliding_window, q.layer_type(0)), (None, LayerType::Full));
        let q = parse("Qwen2ForCausalLM", r#","use_sliding_window":true"#).unwrap();
        assert_eq!(q.sliding_window, Some(4096));
        // Qwen2: a window only where use_sliding_window says, from max_window_layers on.
        let q = parse("Qwen2ForCausalLM", r#","sliding_window":4"#).unwrap();
        assert_eq!((q.sliding_window, q.layer_type(3)), (None, LayerType::Full));
        assert_eq!(q.opts.attention_bias, AttentionBias::Qkv);
        let q = parse(
            "Qwen2ForCausalLM",
            r#","use_sliding_window":true,"sliding_window":4,"max_window_layers":2"#,
        )
        .unwrap();
        assert_eq!(q.layer_type(1), LayerType::Full);
        assert_eq!(q.layer_type(2), LayerType::Sliding);
        // max_window_layers 0: every layer slides (transformers writes such configs).
        let q = parse(
            "Qwen2ForCausalLM",
            r#","use_sliding_window":true,"sliding_window":4,"max_window_layers":0"#,
        )
        .unwrap();
        assert_eq!(q.layer_type(0), LayerType::Sliding);
        // Qwen3: head_dim 128 unless given, q/k norms, biases everywhere with attention_bias.
        let q3 = parse("Qwen3ForCausalLM", r#","attention_bias":true"#).unwrap();
        assert_eq!(q3.head_dim(), 128);
        assert_eq!(q3.opts.qk_norm, QkNorm::PerHead);
        assert_eq!(q3.opts.attention_bias, AttentionBias::QkvO);
        // Gemma 2: both caps by default, null turns one off; even layers slide.
        let g2 = parse("Gemma2ForCausalLM", r#","final_logit_softcapping":null"#).unwrap();
        assert_eq!(
            (g2.opts.attn_softcap, g2.opts.final_softcap),
            (Some(50.0), None)
        );
        assert_eq!(g2.layer_type(0), LayerType::Sliding);
        assert_eq!(g2.layer_type(1), LayerType::Full);
        assert_eq!(g2.opts.query_scalar, Some(256.0));
        // Phi-3: fused projections, eps 1e-5, a window only when given.
        let p = parse("Phi3ForCausalLM", "").unwrap();
        assert!(p.opts.fused_qkv && p.opts.fused_gate_up);
        assert_eq!((p.rms_norm_eps, p.sliding_window), (1e-5, None));
        // Phi-3.5's `su` is LongRoPE over Phi3Config's default pre-training context (4096);
        // Phi-4-mini rotates int(0.75 · 16) = 12 of each head's dimensions.
        let factors = format!("[{}]", ["1.0"; 6].join(","));
        let p = parse(
            "Phi3ForCausalLM",
            &format!(
                r#","partial_rotary_factor":0.75,"rope_scaling":{{"type":"su","short_factor":{factors},"long_factor":{factors}}}"#
            ),
        )
        .unwrap();
        assert_eq!(p.opts.rotary_dim, Some(12));
        // Written back as a factor int(head_dim · factor) reads as the same dimensions, where
        // the plain ratio would not (30 / 44 · 44 is 29.999…).
        let odd = parse(
            "Phi3ForCausalLM",
            r#","head_dim":44,"partial_rotary_factor":0.69"#,
        )
        .unwrap();
        assert_eq!(odd.opts.rotary_dim, Some(30));
        let json = super::config_json(&ModelConfig::Decoder(odd)).unwrap();
        let back = ModelConfig::parse(&json.to_string()).unwrap();
        let ModelConfig::Decoder(back) = back else {
            panic!("not a decoder")
        };
        assert_eq!(back.opts.rotary_dim, Some(30), "{json}");
        // The factor inside the RoPE object counts too, as Phi3Config keeps it there.
        let inside = parse(
            "Phi3ForCausalLM",
            &format!(
                r#","rope_scaling":{{"type":"longrope","partial_rotary_factor":0.75,"short_factor":{factors},"long_factor":{factors}}}"#
            ),
        )
        .unwrap();
        assert_eq!(inside.opts.rotary_dim, Some(12));
        match &p.rope_scaling {
            Some(RopeScaling::LongRope(l)) => {
                assert_eq!(l.original_max_position_embeddings, Some(4096))
            }
            other => panic!("{other:?}"),
        }
        // SmolLM3: every fourth layer without RoPE by default, a tied head, θ 2·10⁶; a window
        // (with use_sliding_window) on the NoPE layers unless layer_types says otherwise.
        let s = parse("SmolLM3ForCausalLM", "").unwrap();
        let rotates = |c: &DecoderConfig| (0..4).map(|i| c.rotates(i)).collect::<Vec<_>>();
        assert_eq!(rotates(&s), [true, true, true, false]);
        assert_eq!((s.tie_word_embeddings, s.rope_theta), (true, 2e6));
        assert_eq!(s.sliding_window, None);
        let s = parse(
            "SmolLM3ForCausalLM",
            r#","no_rope_layer_interval":2,"use_sliding_window":true,"sliding_window":8"#,
        )
        .unwrap();
        assert_eq!(rotates(&s), [true, false, true, false]);
        assert_eq!(s.sliding_window, Some(8));
        assert_eq!(
            (0..4).map(|i| s.layer_type(i)).collect::<Vec<_>>(),
            [
                LayerType::Full,
                LayerType::Sliding,
                LayerType::Full,
                LayerType::Sliding
            ]
        );
        let s = parse(
            "SmolLM3ForCausalLM",
            r#","no_rope_layers":[0,1,1,1],"sliding_window":8"#,
        )
        .unwrap();
        assert_eq!(rotates(&s), [false, true, true, true]);
        assert_eq!(
            s.sliding_window, None,
            "no window without use_sliding_window"
        );
        // Given layer_types decide alone, as transformers' masks do; booleans are 0 and 1.
        let s = parse(
            "SmolLM3ForCausalLM",
            r#","no_rope_layers":[true,true,true,false],"sliding_window":8,
            "layer_types":["full_attention","sliding_attention","full_attention","full_attention"]"#,
        )
        .unwrap();
        assert_eq!(rotates(&s), [true, true, true, false]);
        assert_eq!(s.sliding_window, Some(8));
        assert_eq!(s.layer_type(1), LayerType::Sliding);
        // The context each class has when a config leaves it out (YaRN and LongRoPE scale
        // from it).
        for (class, context) in [
            ("LlamaForCausalLM", 2048),
            ("MistralForCausalLM", 131_072),
            ("Qwen2ForCausalLM", 32_768),
            ("Phi3ForCausalLM", 4096),
            ("GemmaForCausalLM", 8192),
        ] {
            assert_eq!(
                parse(class, "").unwrap().max_position_embeddings,
                context,
                "{class}"
            );
        }
        // Gemma 1: the legacy "gelu" is the tanh approximation; head_dim 256, a tied head.
        let g = parse("GemmaForCausalLM", r#","hidden_act":"gelu""#).unwrap();
        assert_eq!(g.opts.activation, Activation::GeluTanh);
        assert_eq!((g.head_dim(), g.tie_word_embeddings), (256, true));
        assert!(g.opts.norm_plus_one && g.opts.embed_scale && g.opts.norms == NormPlacement::Pre);
        // Granite: its scalars 1 unless given, the attention's too (not head_dim^-½).
        let g = parse("GraniteForCausalLM", "").unwrap();
        assert_eq!(g.opts.attention_scale, Some(1.0));
        assert_eq!(
            (
                g.opts.embed_multiplier,
                g.opts.residual_multiplier,
                g.opts.logits_divisor
            ),
            (None, None, None)
        );
        let g = parse(
            "GraniteForCausalLM",
            r#","embedding_multiplier":12,"residual_multiplier":0.22,"logits_scaling":8"#,
        )
        .unwrap();
        assert_eq!(
            (
                g.opts.embed_multiplier,
                g.opts.residual_multiplier,
                g.opts.logits_divisor
            ),
            (Some(12.0), Some(0.22), Some(8.0))
        );
        // Llama: attention_bias puts biases on q, k, v and o.
        let l = parse("LlamaForCausalLM", r#","attention_bias":true"#).unwrap();
        assert_eq!(l.opts.attention_bias, AttentionBias::QkvO);
        // model_type alone names the family too.
        let c = ModelConfig::parse(
            r#"{"model_type":"qwen3","hidden_size":64,"intermediate_size":128,
            "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100}"#,
        )
        .unwrap();
        assert_eq!(c.architecture(), "Qwen3ForCausalLM");
    }

    /// Phi's block from PhiConfig's keys and defaults (half of each head rotating, the eps
    /// as `layer_norm_eps`), in both RoPE forms; what it does not run, refused by name.
    #[test]
    fn phi_configs_read_as_transformers_reads_them() {
        let p = parse("PhiForCausalLM", r#","layer_norm_eps":1e-6"#).unwrap();
        assert_eq!(p.family, Family::Phi);
        let o = p.opts;
        assert_eq!(
            (
                o.norms,
                o.norm_kind,
                o.plain_mlp,
                o.head_bias,
                o.attention_bias
            ),
            (
                NormPlacement::Parallel,
                NormKind::Layer,
                true,
                true,
                AttentionBias::QkvO
            )
        );
        assert_eq!(
            (o.activation, o.rotary_dim),
            (Activation::GeluTanh, Some(8))
        );
        assert_eq!((p.rms_norm_eps, p.rope_theta), (1e-6, 10_000.0));
        assert_eq!(
            (p.max_position_embeddings, p.tie_word_embeddings),
            (2048, false)
        );
        // Flat, as microsoft/phi-2 ships it, and inside rope_parameters, as transformers 5
        // writes it (the object's wins over a flat key).
        let flat = parse("PhiForCausalLM", r#","partial_rotary_factor":0.25"#).unwrap();
        assert_eq!(flat.opts.rotary_dim, Some(4));
        let nested = parse(
            "PhiForCausalLM",
            r#","partial_rotary_factor":0.5,"rope_parameters":{"rope_type":"default","rope_theta":100.0,"partial_rotary_factor":0.25}"#,
        )
        .unwrap();
        assert_eq!(
            (nested.opts.rotary_dim, nested.rope_theta),
            (Some(4), 100.0)
        );
        let whole = parse("PhiForCausalLM", r#","partial_rotary_factor":1.0"#).unwrap();
        assert_eq!(whole.opts.rotary_dim, None);
        // Written and read back: the same block.
        let json = super::config_json(&ModelConfig::Decoder(flat.clone())).unwrap();
        assert_eq!(json["layer_norm_eps"], 1e-5);
        assert!(json.get("rms_norm_eps").is_none());
        match ModelConfig::parse(&json.to_string()).unwrap() {
            // head_dim is written out.
            ModelConfig::Decoder(back) => assert_eq!(
                back,
                DecoderConfig {
                    head_dim: Some(16),
                    ..flat
                }
            ),
            other => panic!("{other:?}"),
        }
        refused(
            "PhiForCausalLM",
            r#","qk_layernorm":true"#,
            &["qk_layernorm"],
        );
        refused(
            "PhiForCausalLM",
            r#","hidden_act":"relu""#,
            &["hidden_act", "\"relu\""],
        );
        refused(
            "PhiForCausalLM",
            r#","model_type":"phi-msft""#,
            &["phi-msft", "model_type \"phi\""],
        );
    }

    /// GPT-NeoX's block from GPTNeoXConfig's keys and defaults (a quarter of each head
    /// rotating, exact GELU, parallel residuals, biases), its RoPE from Pythia's keys or the
    /// RoPE object; flat keys it does not read refused where they say otherwise.
    #[test]
    fn gpt_neox_configs_read_as_transformers_reads_them() {
        let neox = |extra: &str| {
            ModelConfig::parse(&format!(
                r#"{{"architectures":["GPTNeoXForCausalLM"],"hidden_size":64,
                "intermediate_size":256,"num_hidden_layers":2,"num_attention_heads":4,
                "vocab_size":100{extra}}}"#
            ))
        };
        let c = match neox("").unwrap() {
            ModelConfig::Decoder(c) => c,
            other => panic!("{other:?}"),
        };
        let o = c.opts;
        assert_eq!(c.family, Family::GptNeoX);
        assert_eq!(
            (o.norms, o.norm_kind, o.plain_mlp, o.qkv_by_head),
            (NormPlacement::ParallelTwoNorms, NormKind::Layer, true, true)
        );
        assert_eq!(
            (o.attention_bias, o.activation, o.rotary_dim, o.head_bias),
            (AttentionBias::QkvO, Activation::Gelu, Some(4), false)
        );
        assert_eq!(
            (c.rope_theta, c.rms_norm_eps, c.max_position_embeddings),
            (10_000.0, 1e-5, 2048)
        );
        let read = |extra: &str| match neox(extra).unwrap() {
            ModelConfig::Decoder(c) => c,
            other => panic!("{other:?}"),
        };
        let pythia = read(
            r#","rotary_pct":0.5,"rotary_emb_base":100,"use_parallel_residual":false,"attention_bias":false,"layer_norm_eps":1e-6"#,
        );
        assert_eq!(
            (pythia.opts.rotary_dim, pythia.rope_theta),
            (Some(8), 100.0)
        );
        assert_eq!(pythia.opts.norms, NormPlacement::Pre);
        assert_eq!(
            (pythia.opts.attention_bias, pythia.rms_norm_eps),
            (AttentionBias::None, 1e-6)
        );
        // The RoPE object's over Pythia's keys, as GPTNeoXConfig reads them.
        let v5 = read(
            r#","rotary_pct":0.5,"rope_parameters":{"rope_type":"default","rope_theta":7.0,"partial_rotary_factor":1.0}"#,
        );
        assert_eq!((v5.opts.rotary_dim, v5.rope_theta), (None, 7.0));
        // Written and read back: the same block.
        let json = super::config_json(&ModelConfig::Decoder(pythia.clone())).unwrap();
        assert_eq!(
            (
                json["rotary_pct"].as_f64(),
                json["rotary_emb_base"].as_f64()
            ),
            (Some(0.5), Some(100.0))
        );
        assert!(json.get("rope_theta").is_none());
        assert_eq!(
            read_back(&json),
            DecoderConfig {
                head_dim: Some(16),
                ..pythia
            }
        );
        for (extra, says) in [
            (r#","rope_theta":500"#, "rope_theta 500 is not read"),
            (
                r#","partial_rotary_factor":0.5"#,
                "partial_rotary_factor 0.5 is not read",
            ),
            (r#","num_key_value_heads":2"#, "num_key_value_heads 2"),
            (r#","head_dim":8"#, "head_dim 8"),
            (r#","use_parallel_residual":"yes""#, "use_parallel_residual"),
        ] {
            let e = neox(extra).unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
        // The flat keys where they agree with what is read.
        read(r#","rope_theta":10000,"partial_rotary_factor":0.25"#);
    }

    /// StableLM's block from StableLmConfig's keys and defaults; StableLM 2 12B's per-head
    /// LayerNorms refused by name.
    #[test]
    fn stablelm_configs_read_as_transformers_reads_them() {
        let s = parse("StableLmForCausalLM", "").unwrap();
        assert_eq!(s.family, Family::StableLm);
        assert_eq!(
            (
                s.opts.norms,
                s.opts.norm_kind,
                s.opts.plain_mlp,
                s.opts.attention_bias
            ),
            (
                NormPlacement::Pre,
                NormKind::Layer,
                false,
                AttentionBias::None
            )
        );
        assert_eq!(
            (s.opts.rotary_dim, s.opts.activation),
            (Some(4), Activation::Silu)
        );
        assert_eq!((s.max_position_embeddings, s.rms_norm_eps), (4096, 1e-5));
        let p = parse(
            "StableLmForCausalLM",
            r#","use_parallel_residual":true,"use_qkv_bias":true,"partial_rotary_factor":0.5,"layer_norm_eps":1e-6"#,
        )
        .unwrap();
        assert_eq!(
            (
                p.opts.norms,
                p.opts.attention_bias,
                p.opts.rotary_dim,
                p.rms_norm_eps
            ),
            (NormPlacement::Parallel, AttentionBias::Qkv, Some(8), 1e-6)
        );
        let json = super::config_json(&ModelConfig::Decoder(p.clone())).unwrap();
        assert_eq!(
            read_back(&json),
            DecoderConfig {
                head_dim: Some(16),
                ..p
            }
        );
        refused(
            "StableLmForCausalLM",
            r#","qk_layernorm":true"#,
            &["qk_layernorm", "StableLmForCausalLM"],
        );
    }

    /// StarCoder2's block from Starcoder2Config's keys and defaults (two key/value heads, no
    /// window, `norm_epsilon`); `use_bias: false` refused by name; a config written back reads
    /// the same.
    #[test]
    fn starcoder2_configs_read_as_transformers_reads_them() {
        let s = parse_bare("Starcoder2ForCausalLM", 4, r#","rms_norm_eps":0.5"#).unwrap();
        assert_eq!(s.family, Family::StarCoder2);
        assert_eq!(
            (
                s.opts.norms,
                s.opts.norm_kind,
                s.opts.plain_mlp,
                s.opts.attention_bias,
                s.opts.activation
            ),
            (
                NormPlacement::Pre,
                NormKind::Layer,
                true,
                AttentionBias::QkvO,
                Activation::GeluTanh
            )
        );
        assert_eq!(
            (
                s.kv_heads(),
                s.sliding_window,
                s.rms_norm_eps,
                s.tie_word_embeddings
            ),
            (2, None, 1e-5, true)
        );
        assert_eq!(s.max_position_embeddings, 4096);
        let w = parse(
            "Starcoder2ForCausalLM",
            r#","sliding_window":8,"norm_epsilon":1e-6,"use_bias":true,"tie_word_embeddings":false"#,
        )
        .unwrap();
        assert_eq!((w.sliding_window, w.rms_norm_eps), (Some(8), 1e-6));
        assert!((0..4).all(|i| w.layer_type(i) == LayerType::Sliding));
        let json = super::config_json(&ModelConfig::Decoder(w.clone())).unwrap();
        assert_eq!(json["norm_epsilon"], 1e-6);
        assert!(json.get("layer_norm_eps").is_none());
        assert_eq!(
            read_back(&json),
            DecoderConfig {
                head_dim: Some(16),
                ..w
            }
        );
        refused(
            "Starcoder2ForCausalLM",
            r#","use_bias":false"#,
            &["use_bias", "Starcoder2ForCausalLM"],
        );
    }

    /// GLM-4's block from Glm4Config's keys and defaults (head_dim 128, two key/value heads,
    /// biases on q, k and v, half of each head turning in adjacent pairs); a config written
    /// back reads the same.
    #[test]
    fn glm4_configs_read_as_transformers_reads_them() {
        let g = parse_bare("Glm4ForCausalLM", 4, "").unwrap();
        assert_eq!(g.family, Family::Glm4);
        assert_eq!(
            (
                g.opts.norms,
                g.opts.fused_gate_up,
                g.opts.fused_qkv,
                g.opts.rope_interleaved,
                g.opts.attention_bias
            ),
            (
                NormPlacement::Sandwich,
                true,
                false,
                true,
                AttentionBias::Qkv
            )
        );
        assert_eq!(
            (
                g.head_dim(),
                g.kv_heads(),
                g.opts.rotary_dim,
                g.rms_norm_eps
            ),
            (128, 2, Some(64), 1.5625e-7)
        );
        assert!(!g.tie_word_embeddings);
        let p = parse(
            "Glm4ForCausalLM",
            r#","head_dim":16,"attention_bias":false,"partial_rotary_factor":1.0"#,
        )
        .unwrap();
        assert_eq!(
            (p.opts.rotary_dim, p.opts.attention_bias),
            (None, AttentionBias::None)
        );
        let json = super::config_json(&ModelConfig::Decoder(p.clone())).unwrap();
        assert_eq!(json["partial_rotary_factor"], 1.0);
        assert_eq!(read_back(&json), p);
    }

    /// Cohere's block from CohereConfig's keys and defaults (a tied head, logit scale 0.0625,
    /// transformers 5's RoPE base); Command R+'s q/k norms refused by name; a config written
    /// back reads the same.
    #[test]
    fn cohere_configs_read_as_transformers_reads_them() {
        let c = parse("CohereForCausalLM", "").unwrap();
        assert_eq!(c.family, Family::Cohere);
        assert_eq!(
            (
                c.opts.norms,
                c.opts.norm_kind,
                c.opts.rope_interleaved,
                c.opts.logit_scale,
                c.opts.attention_bias
            ),
            (
                NormPlacement::Parallel,
                NormKind::LayerNoBias,
                true,
                Some(0.0625),
                AttentionBias::None
            )
        );
        assert_eq!(
            (
                c.tie_word_embeddings,
                c.rope_theta,
                c.max_position_embeddings
            ),
            (true, 500_000.0, 8192)
        );
        let p = parse(
            "CohereForCausalLM",
            r#","logit_scale":0.125,"rope_theta":10000,"layer_norm_eps":1e-6,"attention_bias":true"#,
        )
        .unwrap();
        assert_eq!(
            (
                p.opts.logit_scale,
                p.rope_theta,
                p.rms_norm_eps,
                p.opts.attention_bias
            ),
            (Some(0.125), 10_000.0, 1e-6, AttentionBias::QkvO)
        );
        let json = super::config_json(&ModelConfig::Decoder(p.clone())).unwrap();
        assert_eq!(json["layer_norm_eps"], 1e-6);
        assert_eq!(
            read_back(&json),
            DecoderConfig {
                head_dim: Some(16),
                ..p
            }
        );
        refused(
            "CohereForCausalLM",
            r#","use_qk_norm":true"#,
            &["use_qk_norm", "CohereForCausalLM"],
        );
        refused("CohereForCausalLM", r#","logit_scale":0"#, &["logit_scale"]);
    }

    /// Cohere 2's windows and RoPE-less layers from Cohere2Config's keys and defaults (a
    /// window of 4096 on three layers of four), from `layer_types` or a period; no window, no
    /// RoPE at all.
    #[test]
    fn cohere2_configs_read_as_transformers_reads_them() {
        let c = parse("Cohere2ForCausalLM", "").unwrap();
        assert_eq!(c.family, Family::Cohere2);
        assert_eq!((c.sliding_window, c.head_dim()), (Some(4096), 16));
        let sliding = |c: &DecoderConfig| -> Vec<bool> {
            (0..4)
                .map(|i| c.layer_type(i) == LayerType::Sliding)
                .collect()
        };
        let rotates = |c: &DecoderConfig| -> Vec<bool> { (0..4).map(|i| c.rotates(i)).collect() };
        assert_eq!(sliding(&c), [true, true, true, false]);
        assert_eq!(rotates(&c), [true, true, true, false]);
        let p = parse(
            "Cohere2ForCausalLM",
            r#","sliding_window":8,"sliding_window_pattern":2"#,
        )
        .unwrap();
        assert_eq!(rotates(&p), [true, false, true, false]);
        let t = parse(
            "Cohere2ForCausalLM",
            r#","layer_types":["full_attention","sliding_attention","sliding_attention","sliding_attention"]"#,
        )
        .unwrap();
        assert_eq!(rotates(&t), [false, true, true, true]);
        let none = parse("Cohere2ForCausalLM", r#","sliding_window":null"#).unwrap();
        assert_eq!(rotates(&none), [false; 4]);
        let json = super::config_json(&ModelConfig::Decoder(t.clone())).unwrap();
        assert_eq!(
            read_back(&json),
            DecoderConfig {
                head_dim: Some(16),
                ..t
            }
        );
    }

    /// ERNIE 4.5's block from Ernie4_5Config's defaults (head_dim 128, two key/value heads, a
    /// tied head, RoPE over adjacent pairs at 5·10⁵); `use_bias` refused by name.
    #[test]
    fn ernie4_5_configs_read_as_transformers_reads_them() {
        let e = parse_bare("Ernie4_5ForCausalLM", 4, "").unwrap();
        assert_eq!(e.family, Family::Ernie45);
        assert_eq!(
            (
                e.head_dim(),
                e.kv_heads(),
                e.tie_word_embeddings,
                e.rope_theta,
                e.opts.rope_interleaved
            ),
            (128, 2, true, 500_000.0, true)
        );
        let json = super::config_json(&ModelConfig::Decoder(e.clone())).unwrap();
        assert_eq!(read_back(&json), e);
        refused(
            "Ernie4_5ForCausalLM",
            r#","use_bias":true"#,
            &["use_bias", "Ernie4_5ForCausalLM"],
        );
    }

    /// Seed-OSS's biases from SeedOssConfig's keys and defaults (q, k and v unless
    /// `attention_bias` is false; o with `attention_out_bias`), its head_dim and key/value
    /// heads; `mlp_bias` and a bias on o alone refused by name.
    #[test]
    fn seed_oss_configs_read_as_transformers_reads_them() {
        let s = parse_bare("SeedOssForCausalLM", 8, "").unwrap();
        assert_eq!(s.family, Family::SeedOss);
        assert_eq!(
            (
                s.head_dim(),
                s.kv_heads(),
                s.opts.attention_bias,
                s.rms_norm_eps
            ),
            (128, 8, AttentionBias::Qkv, 1e-6)
        );
        for (extra, bias) in [
            (r#","attention_out_bias":true"#, AttentionBias::QkvO),
            (r#","attention_bias":false"#, AttentionBias::None),
        ] {
            let c = parse("SeedOssForCausalLM", extra).unwrap();
            assert_eq!(c.opts.attention_bias, bias, "{extra}");
            let json = super::config_json(&ModelConfig::Decoder(c.clone())).unwrap();
            assert_eq!(read_back(&json), c);
        }
        refused("SeedOssForCausalLM", r#","mlp_bias":true"#, &["mlp_bias"]);
        refused(
            "SeedOssForCausalLM",
            r#","attention_bias":false,"attention_out_bias":true"#,
            &["attention_out_bias", "o alone"],
        );
    }

    /// OLMo 2's post-norm block and OLMo 3's windows and RoPEs, from each of its config forms.
    #[test]
    fn olmo_configs_read_as_transformers_reads_them() {
        let o = parse("Olmo2ForCausalLM", "").unwrap();
        assert_eq!(
            (o.opts.norms, o.opts.qk_norm),
            (NormPlacement::Post, QkNorm::Whole)
        );
        assert_eq!((o.rms_norm_eps, o.rope_theta), (1e-5, 10_000.0));
        assert_eq!(
            (o.max_position_embeddings, o.tie_word_embeddings),
            (2048, false)
        );
        assert!(o.layer_types.is_empty() && o.local_rope.is_none());
        let o = parse("Olmo2ForCausalLM", r#","attention_bias":true"#).unwrap();
        assert_eq!(o.opts.attention_bias, AttentionBias::QkvO);
        // OLMo 3's defaults: every fourth layer full, a window of 4096.
        let o = parse("Olmo3ForCausalLM", r#","rope_theta":500000"#).unwrap();
        assert_eq!(
            (o.opts.norms, o.opts.qk_norm),
            (NormPlacement::Post, QkNorm::Whole)
        );
        assert_eq!((o.sliding_window, o.rope_theta), (Some(4096), 5e5));
        let types: Vec<LayerType> = (0..4).map(|i| o.layer_type(i)).collect();
        use LayerType::{Full, Sliding};
        assert_eq!(types, [Sliding, Sliding, Sliding, Full]);
        assert!(o.local_rope.is_none(), "one RoPE where none is scaled");
        // As OLMo 3 ships its long-context configs: flat keys, YaRN for the full layers, the
        // sliding layers on the plain RoPE of the same base.
        let yarn = r#"{"rope_type":"yarn","factor":8.0,"original_max_position_embeddings":8192,
            "attention_factor":1.2079441541679836,"beta_fast":32,"beta_slow":1}"#;
        let flat = parse(
            "Olmo3ForCausalLM",
            &format!(
                r#","rope_theta":500000,"rope_scaling":{yarn},"max_position_embeddings":65536"#
            ),
        )
        .unwrap();
        assert_eq!(
            flat.rope_scaling.as_ref().map(RopeScaling::name),
            Some("yarn")
        );
        assert_eq!(
            flat.local_rope,
            Some(Rope {
                theta: 5e5,
                scaling: None
            })
        );
        // The same as transformers 5 writes it, keyed by layer type.
        let nested = parse(
            "Olmo3ForCausalLM",
            &format!(
                r#","max_position_embeddings":65536,"rope_parameters":{{
                "full_attention":{},
                "sliding_attention":{{"rope_type":"default","rope_theta":500000}}}}"#,
                yarn.replace('}', r#","rope_theta":500000}"#)
            ),
        )
        .unwrap();
        assert_eq!(nested, flat);
        // Keyed by layer type without θ inside: the full layers take a flat rope_theta, the
        // sliding ones the class's θ; a flat rope_scaling joins the full layers' RoPE.
        let o = parse(
            "Olmo3ForCausalLM",
            r#","rope_theta":10000,"rope_scaling":{"rope_type":"linear","factor":2.0},
            "rope_parameters":{"full_attention":{"rope_type":"default"},
            "sliding_attention":{"rope_type":"default"}}"#,
        )
        .unwrap();
        assert_eq!(o.rope_theta, 10_000.0);
        assert_eq!(
            o.rope_scaling.as_ref().map(RopeScaling::name),
            Some("linear")
        );
        assert_eq!(
            o.local_rope,
            Some(Rope {
                theta: 5e5,
                scaling: None
            })
        );
        // Where transformers 4 and 5 read the flat keys differently (the sliding layers' θ),
        // or cannot run the config at all.
        for extra in ["", r#","rope_theta":10000"#] {
            refused(
                "Olmo3ForCausalLM",
                extra,
                &["rope_theta", "keyed by layer type"],
            );
        }
        refused(
            "Olmo3ForCausalLM",
            r#","rope_theta":500000,"sliding_window":null"#,
            &["sliding_window null"],
        );
        refused(
            "Olmo3ForCausalLM",
            r#","rope_parameters":{"rope_type":"default","rope_theta":500000}"#,
            &["rope_parameters", "sliding_attention"],
        );
        refused(
            "Olmo2ForCausalLM",
            r#","layer_types":["sliding_attention","full_attention","full_attention","full_attention"]"#,
            &["sliding_attention", "Olmo3ForCausalLM"],
        );
        refused(
            "Olmo3ForCausalLM",
            r#","rope_parameters":{"full_attention":{"rope_type":"default"}}"#,
            &["rope_parameters", "sliding_attention"],
        );
        refused(
            "Olmo2ForCausalLM",
            r#","hidden_act":"relu""#,
            &["hidden_act"],
        );
    }

    /// EXAONE 4.0: windows by `sliding_window_pattern` or `layer_types`, and no RoPE on the
    /// full layers only where the config has a window.
    #[test]
    fn exaone4_configs_read_as_transformers_reads_them() {
        use LayerType::{Full, Sliding};
        let e = parse("Exaone4ForCausalLM", "").unwrap();
        assert_eq!(
            (e.opts.norms, e.opts.qk_norm),
            (NormPlacement::Post, QkNorm::PerHead)
        );
        assert_eq!(e.sliding_window, Some(4096));
        let types: Vec<LayerType> = (0..4).map(|i| e.layer_type(i)).collect();
        assert_eq!(types, [Sliding, Sliding, Sliding, Full]);
        let rotates: Vec<bool> = (0..4).map(|i| e.rotates(i)).collect();
        assert_eq!(rotates, [true, true, true, false]);
        let e = parse("Exaone4ForCausalLM", r#","sliding_window_pattern":2"#).unwrap();
        assert_eq!(e.layer_type(1), Full);
        assert!(!e.rotates(1) && e.rotates(2));
        // No window (the 1.2B): every layer full, and every layer rotates.
        let e = parse("Exaone4ForCausalLM", r#","sliding_window":null"#).unwrap();
        assert_eq!((e.sliding_window, e.layer_type(3)), (None, Full));
        assert!((0..4).all(|i| e.rotates(i)));
        for pattern in ["\"LLLG\"", "null"] {
            refused(
                "Exaone4ForCausalLM",
                &format!(r#","sliding_window_pattern":{pattern}"#),
                &["sliding_window_pattern", "layer_types"],
            );
        }
        refused(
            "Exaone4ForCausalLM",
            r#","sliding_window":null,"layer_types":["sliding_attention","full_attention","full_attention","full_attention"]"#,
            &["sliding_window is null"],
        );
    }

    /// A config with RoPE in two places is read as transformers reads it: a non-empty
    /// rope_scaling over rope_parameters, the RoPE object's rope_theta over a flat one, and
    /// llama3's pre-training context from a flat key first, then the object, then the model's.
    #[test]
    fn rope_given_twice_is_read_as_transformers_reads_it() {
        let c = parse(
            "LlamaForCausalLM",
            r#","rope_theta":10000.0,"rope_parameters":{"rope_type":"default","rope_theta":100.0}"#,
        )
        .unwrap();
        assert_eq!((c.rope_theta, c.rope_scaling), (100.0, None));
        let c = parse(
            "LlamaForCausalLM",
            r#","rope_parameters":{"rope_type":"default","rope_theta":10000.0},
            "rope_scaling":{"rope_type":"linear","factor":4.0}"#,
        )
        .unwrap();
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 4.0 }));
        // An empty rope_scaling (older exports) leaves rope_parameters in charge.
        let c = parse(
            "LlamaForCausalLM",
            r#","rope_scaling":{},"rope_parameters":{"rope_type":"linear","factor":2.0}"#,
        )
        .unwrap();
        assert_eq!(c.rope_scaling, Some(RopeScaling::Linear { factor: 2.0 }));
        let llama3 = |extra: &str| {
            let text = format!(
                r#","max_position_embeddings":128,"rope_parameters":{{"rope_type":"llama3",
                "factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0{extra}"#
            );
            match parse("LlamaForCausalLM", &text).unwrap().rope_scaling {
                Some(RopeScaling::Llama3 {
                    original_max_position_embeddings,
                    ..
                }) => original_max_position_embeddings,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(llama3(r#","original_max_position_embeddings":64}"#), 64);
        assert_eq!(
            llama3(
                r#","original_max_position_embeddings":64},"original_max_position_embeddings":16"#
            ),
            16
        );
        assert_eq!(llama3(r#"},"original_max_position_embeddings":16"#), 16);
        assert_eq!(llama3("}"), 128);
    }

    /// What the block does not implement is refused by name, never defaulted.
    #[test]
    fn what_nothing_implements_is_refused_by_name() {
        refused(
            "Gemma3ForConditionalGeneration",
            "",
            &["multimodal", "Gemma3ForCausalLM"],
        );
        refused(
            "Gemma3ForCausalLM",
            r#","rope_parameters":{"rope_theta":1e6}"#,
            &["rope_parameters", "layer type"],
        );
        refused(
            "Gemma2ForCausalLM",
            r#","use_bidirectional_attention":true"#,
            &["use_bidirectional_attention"],
        );
        refused(
            "Phi3ForCausalLM",
            r#","rope_scaling":{"type":"longrope","short_factor":[1.0],"long_factor":[2.0]}"#,
            &["short_factor", "1 entries", "need 8"],
        );
        refused(
            "Phi3ForCausalLM",
            r#","partial_rotary_factor":1.5"#,
            &["partial_rotary_factor", "1.5"],
        );
        refused(
            "Phi3ForCausalLM",
            r#","partial_rotary_factor":0.01"#,
            &["partial_rotary_factor", "0 of the head's 16"],
        );
        refused("LlamaForCausalLM", r#","mlp_bias":true"#, &["mlp_bias"]);
        refused("SmolLM3ForCausalLM", r#","mlp_bias":true"#, &["mlp_bias"]);
        refused("GraniteForCausalLM", r#","mlp_bias":true"#, &["mlp_bias"]);
        refused(
            "GemmaForCausalLM",
            r#","hidden_act":"silu""#,
            &["hidden_act", "GemmaForCausalLM"],
        );
        refused(
            "GraniteForCausalLM",
            r#","logits_scaling":0"#,
            &["logits_scaling", "nonzero", "0"],
        );
        refused(
            "SmolLM3ForCausalLM",
            r#","no_rope_layers":[1,1,0]"#,
            &["no_rope_layers", "each of the 4 layers"],
        );
        refused(
            "SmolLM3ForCausalLM",
            r#","no_rope_layers":[1,1,2,1]"#,
            &["no_rope_layers", "0 or 1", "2"],
        );
        refused(
            "SmolLM3ForCausalLM",
            r#","no_rope_layer_interval":0"#,
            &["no_rope_layer_interval"],
        );
        refused(
            "LlamaForCausalLM",
            r#","hidden_act":"relu""#,
            &["hidden_act", "relu"],
        );
        refused(
            "Qwen2ForCausalLM",
            r#","layer_types":["full_attention","sliding_attention","full_attention","full_attention"]"#,
            &["use_sliding_window"],
        );
        refused(
            "Qwen2ForCausalLM",
            r#","use_sliding_window":true,"layer_types":["full_attention"]"#,
            &["layer_types", "1 entries for 4 layers"],
        );
        refused(
            "MistralForCausalLM",
            r#","layer_types":["full_attention","full_attention","full_attention","full_attention"]"#,
            &["layer_types"],
        );
        refused(
            "MixtralForCausalLM",
            "",
            &["MixtralForCausalLM", "Qwen3ForCausalLM"],
        );
    }

    /// A Gemma with an output-projection bias has no GGUF form: llama.cpp's gemma2 and gemma3
    /// refuse the file ("wrong number of tensors"). Without it, the same config writes.
    #[test]
    fn a_gemma_with_an_output_bias_is_refused_for_gguf() {
        for class in ["Gemma2ForCausalLM", "Gemma3ForCausalLM"] {
            for bias in [true, false] {
                let mut c = parse(class, &format!(r#","attention_bias":{bias}"#)).unwrap();
                c.opts.query_scalar = Some(super::gguf::gemma_query_scalar(&c, 62));
                let checked = super::gguf::gemma_check(&c, 62);
                match bias {
                    true => {
                        let e = checked.unwrap_err().to_string();
                        assert!(e.contains("attn_output.bias"), "{class}: {e}");
                    }
                    false => checked.unwrap(),
                }
            }
        }
    }

    /// What llama.cpp's `olmo2` does not load has no GGUF form: biases, a tied head, heads that
    /// do not split the hidden width; each refused by name, and the plain block written.
    #[test]
    fn an_olmo_that_llamacpp_cannot_run_is_refused_for_gguf() {
        let gguf = |extra: &str| {
            let c = parse("Olmo2ForCausalLM", extra).unwrap();
            super::gguf::metadata(&ModelConfig::Decoder(c)).map(|_| ())
        };
        gguf("").unwrap();
        for (extra, says) in [
            (r#","attention_bias":true"#, "attention_bias"),
            (r#","tie_word_embeddings":true"#, "output.weight"),
            (r#","head_dim":8"#, "head_dim × heads = hidden_size"),
        ] {
            let e = gguf(extra).unwrap_err().to_string();
            assert!(e.contains(says), "{extra}: {e}");
        }
    }
}
