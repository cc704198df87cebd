//! The engine: a validated pair, its blended weights, one model reading them, a tokenizer, and
//! generation. It knows nothing of terminals; the CLI, the UI's worker thread and the
//! benchmarks drive this one API.

use crate::alpha::{alphas_of, Alpha, IntoAlpha, MAX_ABS_ALPHA};
use crate::error::{bail, err, Context, Error, Result};
use crate::formats::adapter::Adapter;
use crate::formats::checkpoint::{native_dtype, Checkpoint};
use crate::formats::config::ModelConfig;
use crate::formats::pair;
use crate::formats::source::{self, Endpoint, ModelFiles};
use crate::generate::{Cancel, Generation, GenerationParams, Generator, Step, TextSpec};
use crate::memory::{check_fits, device_memory, device_name};
use crate::model::param::Mix;
use crate::model::Model;
use crate::weights::adapters::AdapterWeights;
use crate::weights::full::{BlendedWeights, Buffer};
use crate::weights::layers::{LayerAlphas, LayerStrip};
use crate::weights::quantized_base::QuantizedAdapters;
use crate::weights::quantized_pair::QuantizedPair;
use crate::weights::slerp::Method;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::Serialize;
use std::time::Duration;
use tokenizers::Tokenizer;

/// `--device`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl ColumnsMode {
    pub const ALL: [ColumnsMode; 3] = [
        ColumnsMode::Auto,
        ColumnsMode::Batched,
        ColumnsMode::Reblend,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ColumnsMode::Auto => "auto",
            ColumnsMode::Batched => "batched",
            ColumnsMode::Reblend => "reblend",
        }
    }
}

impl std::str::FromStr for DeviceChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "auto" => DeviceChoice::Auto,
            "cpu" => DeviceChoice::Cpu,
            "cuda" => DeviceChoice::Cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => DeviceChoice::Cuda(n),
                _ => bail!(
                    Invalid,
                    "--device: expected auto, cpu, cuda or cuda:N, got {s:?}"
                ),
            },
        })
    }
}

impl DeviceChoice {
    pub fn open(&self) -> Result<Device> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(n) => Device::new_cuda(*n).with_context(|| {
                if candle_core::utils::cuda_is_available() {
                    format!("--device cuda:{n}: cannot open this GPU")
                } else {
                    "--device cuda: this build has no CUDA support (rebuild with --features cuda)"
                        .to_string()
                }
            }),
            DeviceChoice::Auto => {
                if candle_core::utils::cuda_is_available() {
                    if let Ok(d) = Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(Device::Cpu)
            }
        }
    }
}

/// `--dtype`: the dtype the working set is held and computed in.
pub fn parse_dtype(s: &str) -> Result<Option<DType>> {
    Ok(match s {
        "auto" => None,
        "f32" => Some(DType::F32),
        "f16" => Some(DType::F16),
        "bf16" => Some(DType::BF16),
        _ => bail!(
            Invalid,
            "--dtype: expected auto, f32, f16 or bf16, got {s:?}"
        ),
    })
}

pub fn dtype_name(d: DType) -> &'static str {
    match d {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::BF16 => "bf16",
        _ => "other",
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: DeviceChoice,
    /// None (`auto`): the checkpoint's own dtype on a GPU; on the CPU, a half-precision
    /// checkpoint's own where that measures faster here, else f32 ([`crate::dtype_choice`]).
    pub dtype: Option<DType>,
    pub allow_tokenizer_mismatch: bool,
    /// The model two adapters apply to (a directory or Hub id); None: the base the adapters
    /// name (`base_model_name_or_path`).
    pub base: Option<String>,
    /// A tokenizer.json used for every endpoint instead of its own (chiefly for GGUF files
    /// whose tokenizer metadata cannot be rebuilt).
    pub tokenizer: Option<std::path::PathBuf>,
    /// Put plain prompts through the model's chat template, when it has one.
    pub chat_template: bool,
    /// How the weights move with α: the line, or slerp (two full models, on the CPU).
    pub method: Method,
    /// Each tensor at α times a factor of its own (on the CPU; full models or adapters).
    pub layers: Option<LayerAlphas>,
    /// A third endpoint C: the plane A + α·(B − A) + β·(C − A) (on the CPU).
    pub third: Option<ExtraEndpoint>,
    /// A fourth endpoint D beside C: + γ·(D − A) (on the CPU).
    pub fourth: Option<ExtraEndpoint>,
    /// Dequantize a quantized GGUF base for adapters even where `auto` would keep it
    /// quantized (`--dequantize`).
    pub dequantize: bool,
    /// The recipe file the endpoints come from (`--recipe`): messages about an endpoint then
    /// name it as the recipe's model, not as a flag the user did not type.
    pub recipe: Option<String>,
}

/// An endpoint beyond A and B (C of a plane, or D), and how far towards it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtraEndpoint {
    /// A directory, Hub id or GGUF file, as `--a` and `--b` take.
    pub source: String,
    /// Its weight (β for C, γ for D), fixed; None: it scales with α as B's does (a recipe's
    /// direction).
    pub weight: Option<f64>,
    /// Per-tensor factors on its weight (a recipe's gradient for it).
    pub factors: Option<LayerAlphas>,
}

impl ExtraEndpoint {
    /// An endpoint at a fixed weight, with no per-tensor factors (`--c C --beta B`).
    pub fn fixed(source: impl Into<String>, weight: f64) -> Self {
        Self {
            source: source.into(),
            weight: Some(weight),
            factors: None,
        }
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            dtype: None,
            allow_tokenizer_mismatch: false,
            base: None,
            tokenizer: None,
            chat_template: true,
            method: Method::Linear,
            layers: None,
            third: None,
            fourth: None,
            dequantize: false,
            recipe: None,
        }
    }
}

/// How several columns waiting with one prompt are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnsMode {
    /// Whichever measures faster for the number of columns on this machine and model.
    #[default]
    Auto,
    /// One batch, each row at its own α, read from both endpoints (for adapters: the factored
    /// path, W0 read once and the low-rank updates per row).
    Batched,
    /// Re-blend (adapters: re-merge) the working weights to each column's α in turn.
    Reblend,
}

/// What the UI header and the JSON output say about the loaded pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairInfo {
    pub a: String,
    pub b: String,
    /// What was loaded, for the header: "A ↔ B", or "base X + LoRA r8 ×7 modules ↔ …".
    pub description: String,
    pub architecture: String,
    pub params: usize,
    pub dtype: String,
    pub device: String,
    /// Bytes of one of the three flat buffers.
    pub buffer_bytes: usize,
    /// On a GPU after loading: bytes in use and in total on the device.
    pub gpu_memory: Option<(u64, u64)>,
    /// Whether plain-text prompts go through the model's chat template (they then start a
    /// user turn, and what is generated is the assistant's reply).
    #[serde(default)]
    pub chat_template: bool,
    /// The turn markers the chat template opens its prompts with: a prompt that opens with
    /// one is already formatted, and goes to the model as it stands.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_markers: Vec<String>,
    /// How the weights move with α.
    #[serde(default)]
    pub method: Method,
    /// With α per layer: its rules (`--layer-alphas` syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<String>,
    /// With a plane whose β is set apart from α (`--c` with `--beta`): β at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta: Option<f64>,
    /// With a fourth endpoint at a weight of its own (`--d` with `--gamma`): γ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Why α per layer cannot be edited live here (a recipe's rules, another method, a
    /// GPU), where it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers_fixed: Option<String>,
    /// With α per layer: each module kind's factor on α at every layer (the layer strip).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_strip: Vec<LayerStrip>,
    /// Sources beyond A and B, as given: a plane's C, a fourth endpoint D, the adapters' base,
    /// the mergekit recipe that named them (role "c", "d", "base" or "recipe", and the
    /// source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<(String, String)>,
}

/// Where a pair came from, for exports: the model whose config and tokenizer files describe the
/// blend (A, or the base), and every source as given with the files that identify it.
#[derive(Debug, Clone)]
pub struct Origin {
    pub model: ModelFiles,
    /// (role: "a", "b" or "base"; the source as given; its files).
    pub sources: Vec<(String, String, Vec<std::path::PathBuf>)>,
    /// (role, the GGUF quantization types it was stored in: "Q4_1 + Q8_0"), for quantized
    /// sources.
    pub quantization: Vec<(String, String)>,
    /// What the pair's text follows beyond `model`'s own files, for an export to carry.
    pub beyond_model: TextBeyondModel,
}

/// Text settings a pair takes from beyond A's model: other endpoints' (full models), or an
/// adapter's own folder.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextBeyondModel {
    /// The chat template, where it is not A's model's own: A has none and a later endpoint
    /// has, or an adapter carries its own beside it.
    pub chat_template: Option<String>,
    /// Every endpoint's end tokens, where they go beyond A's.
    pub end_tokens: Option<Vec<u32>>,
}

pub struct Engine {
    pub info: PairInfo,
    pub origin: Origin,
    config: ModelConfig,
    weights: Weights,
    model: Model,
    /// Views of both endpoints (no extra memory; for adapters, the base and the factors), for
    /// columns generated as one batch.
    pair_model: Model,
    /// Per-token step times measured on first use, by batch size (1: the working model).
    step_times: std::collections::HashMap<(usize, bool), Duration>,
    columns_mode: ColumnsMode,
    /// The recipe file the pair came from, for messages in its words rather than flags.
    recipe: Option<String>,
    /// SHA-256 of the recipe file as it was read.
    recipe_sha256: String,
    text: TextSpec,
    /// With α per layer: the rules each tensor's factor came from.
    layers: Option<LayerAlphas>,
    /// With a third endpoint: where it came from and how far towards it.
    third: Option<ExtraEndpoint>,
    /// With a fourth endpoint: where it came from and how far towards it.
    fourth: Option<ExtraEndpoint>,
    /// Over adapters: what α per layer edited live moves.
    adapted: Option<AdaptedTensors>,
}

/// Over adapters, what α per layer edited live needs: the low-rank pairs the factored models
/// share (their factors move in place) and the base's layout (filters are checked against it,
/// as at load).
struct AdaptedTensors {
    low_rank: std::collections::HashMap<String, std::sync::Arc<crate::model::param::LowRankPair>>,
    layout: crate::weights::flat::FlatLayout,
}

impl Engine {
    /// Load a pair from two sources (directories or Hub ids): two full models, or two PEFT
    /// adapters (or `base` and an adapter) on one base.
    pub fn load(a: &str, b: &str, opts: &LoadOptions) -> Result<Self> {
        let loaded = Self::load_endpoints(a, b, opts).map(|mut engine| {
            engine.info.layers_fixed = engine.layers_fixed();
            engine
        });
        let Some(file) = &opts.recipe else {
            return loaded;
        };
        // "--a X: …" reads "merge.yaml: model X: …" where X came from the recipe.
        let sources = [Some(a), Some(b)]
            .into_iter()
            .chain([&opts.third, &opts.fourth].map(|x| x.as_ref().map(|x| x.source.as_str())));
        let named: Vec<(String, String)> = ["--a", "--b", "--c", "--d"]
            .into_iter()
            .zip(sources)
            .filter_map(|(flag, s)| Some((flag, s?)))
            .flat_map(|(flag, s)| {
                let model = format!("{file}: model {s}");
                // A Hub id at @main is labelled without it: match that form too, after the
                // full one (which contains it).
                let bare = s
                    .strip_suffix("@main")
                    .map(|b| (format!("{flag} {b}"), model.clone()));
                std::iter::once((format!("{flag} {s}"), model)).chain(bare)
            })
            .collect();
        loaded
            .map(|mut engine| {
                engine.recipe = Some(file.clone());
                engine.recipe_sha256 =
                    source::sha256(&[std::path::PathBuf::from(file)]).unwrap_or_default();
                engine.info.layers_fixed = engine.layers_fixed();
                engine.info.others.push(("recipe".into(), file.clone()));
                engine
            })
            .map_err(|e| {
                let e = e.map_messages(&|m: &str| {
                    named
                        .iter()
                        .fold(m.to_string(), |m, (flag, model)| m.replace(flag, model))
                });
                // Every line about the recipe's models says which recipe named them.
                if e.to_string().contains(file.as_str()) {
                    e
                } else {
                    Error::Context {
                        context: file.clone(),
                        source: Box::new(e),
                    }
                }
            })
    }

    fn load_endpoints(a: &str, b: &str, opts: &LoadOptions) -> Result<Self> {
        let tokenizer = |e: Endpoint| match (e, &opts.tokenizer) {
            (Endpoint::Model(mut f), Some(t)) => {
                f.tokenizer = t.clone();
                Endpoint::Model(f)
            }
            (e, _) => e,
        };
        let (ea, eb) = (
            tokenizer(source::resolve_endpoint(a)?),
            tokenizer(source::resolve_endpoint(b)?),
        );
        match (ea, eb) {
            (Endpoint::Model(fa), Endpoint::Model(fb)) => {
                if let Some(base) = &opts.base {
                    bail!(
                        Invalid,
                        "--base {base}: --a and --b are full models; --base names the model two adapters apply to"
                    );
                }
                Self::load_files(fa, fb, opts)
            }
            (ea, eb) => Self::load_adapters(ea, eb, opts),
        }
    }

    pub fn load_files(a: ModelFiles, b: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let device = opts.device.open()?;
        let (ta, tb) = (a.tokenizer.clone(), b.tokenizer.clone());
        // Configs and headers first: a file that is not a model says so before its tokenizer
        // is looked for.
        let ca = Checkpoint::open(a)?;
        let cb = Checkpoint::open(b)?;
        let tok_a = crate::formats::tokenizer::load_tokenizer(&ta)?;
        let tok_b = crate::formats::tokenizer::load_tokenizer(&tb)?;
        if !opts.allow_tokenizer_mismatch {
            crate::formats::tokenizer::check_tokenizers(&tok_a, &ta, &tok_b, &tb)?;
        }
        pair::validate(&ca, &cb)?;
        let names = pair::blended_names(&ca);
        if let (Some(d), None) = (&opts.fourth, &opts.third) {
            bail!(Invalid, "--d {}: needs --c, the third endpoint", d.source);
        }
        let dtype = held_dtype(opts.dtype, &[&ca, &cb], &names, &device);
        let layout_bytes = crate::weights::flat::FlatLayout::new(
            names
                .iter()
                .map(|n| (n.clone(), ca.weights.tensors[n].shape.clone())),
            dtype,
        )
        .total
            * dtype.size_in_bytes();
        // Off the line the blend is a table, on the CPU for now: refused before anything loads.
        if !device.is_cpu()
            && (opts.method != Method::Linear || opts.layers.is_some() || opts.third.is_some())
        {
            let what = match (&opts.third, &opts.layers) {
                _ if opts.recipe.is_some() => {
                    format!("the recipe {}", opts.recipe.as_deref().unwrap_or_default())
                }
                (Some(_), _) if opts.fourth.is_some() => "--c, --d: four endpoints".to_string(),
                (Some(_), _) => "--c: the plane".to_string(),
                (None, Some(l)) => format!("{}: α per layer", l.source()),
                (None, None) => format!("--method {}", opts.method.name()),
            };
            bail!(
                Unsupported,
                "{what} runs on the CPU for now; use --device cpu"
            );
        }
        let on_line =
            opts.method == Method::Linear && opts.layers.is_none() && opts.third.is_none();
        if on_line
            && keeps_quantized(opts, &ca, &names, &device)
            && keeps_quantized(opts, &cb, &names, &device)
        {
            return Self::load_quantized_pair(ca, cb, tok_a, &names, opts);
        }
        let extras = [&opts.third, &opts.fourth];
        let buffers = 3 + extras.iter().filter(|x| x.is_some()).count();
        check_fits(
            &device,
            &ca.config,
            layout_bytes as u64,
            buffers as u64,
            dtype,
        )?;
        let mut weights = BlendedWeights::load(&ca, &cb, &names, dtype, &device)?;
        weights.use_method(opts.method)?;
        if let Some(layers) = &opts.layers {
            weights.use_layers(layers, ca.config.layers())?;
        }
        let mut beyond = Vec::new();
        for (flag, x) in ["--c", "--d"].into_iter().zip(extras) {
            let Some(x) = x else { continue };
            let cx = match source::resolve_endpoint(&x.source)? {
                Endpoint::Model(mut f) => {
                    if let Some(tok) = &opts.tokenizer {
                        f.tokenizer = tok.clone();
                    }
                    Checkpoint::open(f)?
                }
                _ => bail!(
                    Unsupported,
                    "{flag} {}: is not a full model; beside two full models every endpoint is one",
                    x.source
                ),
            };
            if !opts.allow_tokenizer_mismatch {
                let tok_x = crate::formats::tokenizer::load_tokenizer(&cx.files.tokenizer)?;
                crate::formats::tokenizer::check_tokenizers(
                    &tok_a,
                    &ta,
                    &tok_x,
                    &cx.files.tokenizer,
                )?;
            }
            pair::validate(&ca, &cx)?;
            weights.add_endpoint(&cx, x.weight, x.factors.as_ref(), ca.config.layers())?;
            beyond.push(cx);
        }
        let model = build_model(&ca, &weights, Buffer::Working, &device)
            .with_context(|| format!("{}: cannot build the model", ca.files.config.display()))?;
        let pair_model = Model::load_pair(
            &ca.config,
            weights_vb(&weights, Buffer::A, &device)?,
            weights_vb(&weights, Buffer::B, &device)?,
        )?;
        let others: Vec<&Checkpoint> = std::iter::once(&cb).chain(&beyond).collect();
        let (text, beyond_model) = pair_text_spec(&ca, &others, tok_a, opts)?;
        let mut description = match path_note(opts.method, opts.layers.as_ref()) {
            None => format!("{} ↔ {}", ca.label(), cb.label()),
            Some(note) => format!("{} ↔ {} ({note})", ca.label(), cb.label()),
        };
        let given = extras.iter().filter_map(|x| x.as_ref());
        for ((x, cx), name) in given.zip(&beyond).zip(["β", "γ"]) {
            let weight = if x.weight.is_some() { name } else { "α" };
            // A recipe's factors on its weight, as a number or as its rules.
            let factor = match x.factors.as_ref().map(|f| f.spec()) {
                Some(k) if k.parse::<f64>().is_ok() => format!("{k}·"),
                Some(k) => format!("[{k}]·"),
                None => String::new(),
            };
            description.push_str(&format!(" + {weight}·{factor}({} − A)", cx.label()));
        }
        let files = source_files;
        let roles = ["a", "b", "c", "d"];
        let all: Vec<&Checkpoint> = [&ca, &cb].into_iter().chain(&beyond).collect();
        let origin = Origin {
            model: ca.files.clone(),
            sources: roles
                .iter()
                .zip(&all)
                .map(|(role, c)| (role.to_string(), c.label().to_string(), files(c)))
                .collect(),
            quantization: roles
                .iter()
                .zip(&all)
                .filter_map(|(role, c)| Some((role.to_string(), c.weights.quantization()?)))
                .collect(),
            beyond_model,
        };
        let mut engine = Self::assemble(
            origin,
            &ca,
            (ca.label().to_string(), cb.label().to_string(), description),
            Weights::Full(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.info.layers = opts.layers.as_ref().map(|l| l.spec());
        engine.layers = opts.layers.clone();
        engine.info.layer_strip = engine.layer_strip();
        engine.third = opts.third.clone();
        engine.fourth = opts.fourth.clone();
        engine.info.gamma = engine.weights.full().and_then(|w| w.gamma());
        Ok(engine)
    }

    /// Two adapters (or `base` and an adapter) on one base.
    fn load_adapters(a: Endpoint, b: Endpoint, opts: &LoadOptions) -> Result<Self> {
        let slerp = opts.method == Method::Slerp;
        let side = |e: Endpoint,
                    flag: &str|
         -> Result<Option<crate::formats::adapter::AdapterFiles>> {
            match e {
                Endpoint::Adapter(f) => Ok(Some(f)),
                Endpoint::Base => Ok(None),
                Endpoint::Model(m) => {
                    // A llama.cpp LoRA file reads as a GGUF model here: its header says what it is.
                    let gguf = m
                        .weights
                        .iter()
                        .find(|p| crate::formats::gguf::has_gguf_magic(p));
                    if let Some(g) = gguf {
                        crate::formats::gguf::Header::read(g)?;
                    }
                    bail!(
                        Mismatch,
                        "{flag} {} is a full model but the other side is an adapter or `base`: blend two full models, or two adapters (or `base` and an adapter) on one base",
                        m.label
                    )
                }
            }
        };
        let (fa, fb) = (side(a, "--a")?, side(b, "--b")?);
        if let (Some(d), None) = (&opts.fourth, &opts.third) {
            bail!(Invalid, "--d {}: needs --c, the third endpoint", d.source);
        }
        let extra = |x: &Option<ExtraEndpoint>, (flag, weight, name): (&str, &str, &str)| {
            let Some(x) = x else { return Ok((None, None)) };
            let Some(w) = x.weight else {
                bail!(
                    Unsupported,
                    "{flag} {}: over adapters it needs its own {name} ({weight}); its weight cannot follow α",
                    x.source
                );
            };
            if x.factors.is_some() {
                bail!(
                    Unsupported,
                    "{flag} {}: per-tensor factors on it blend full models; over adapters it takes one {name}",
                    x.source
                );
            }
            Ok((side(source::resolve_endpoint(&x.source)?, flag)?, Some(w)))
        };
        let (fc, beta) = extra(&opts.third, ("--c", "--beta", "β"))?;
        let (fd, gamma) = extra(&opts.fourth, ("--d", "--gamma", "γ"))?;
        if fa.is_none() && fb.is_none() && fc.is_none() && fd.is_none() {
            bail!(
                Invalid,
                "--a and --b are both `base`: there is nothing to interpolate"
            );
        }
        let base_spec = choose_base(
            opts.base.as_deref(),
            [fa.as_ref(), fb.as_ref(), fc.as_ref(), fd.as_ref()],
        )?;
        let device = opts.device.open()?;
        if slerp && beta.is_some() {
            bail!(
                Unsupported,
                "--method slerp runs along A→B; over adapters a plane (--c) is refused with it"
            );
        }
        if slerp && !device.is_cpu() {
            bail!(
                Unsupported,
                "--method slerp over adapters runs on the CPU for now; use --device cpu"
            );
        }
        if beta.is_some() && !device.is_cpu() {
            bail!(
                Unsupported,
                "--c: the plane over adapters runs on the CPU for now; use --device cpu"
            );
        }
        if let (Some(layers), false) = (&opts.layers, device.is_cpu()) {
            bail!(
                Unsupported,
                "{}: α per layer over adapters runs on the CPU for now; use --device cpu",
                layers.source()
            );
        }
        let mut base_files = source::resolve(&base_spec).with_context(|| match opts.base {
            Some(_) => "--base".to_string(),
            None => format!(
                "the base the adapters name (base_model_name_or_path: {base_spec}); pass --base to give it"
            ),
        })?;
        if let Some(t) = &opts.tokenizer {
            base_files.tokenizer = t.clone();
        }
        // "the base X: X: …" says X twice: the file's own message names it already.
        let base = Checkpoint::open(base_files).map_err(|e| {
            let context = match e.to_string().starts_with(&format!("{base_spec}:")) {
                true => "the base".to_string(),
                false => format!("the base {base_spec}"),
            };
            Error::Context {
                context,
                source: Box::new(e),
            }
        })?;
        let tokenizer = crate::formats::tokenizer::load_tokenizer(&base.files.tokenizer)?;
        let load = |f: Option<crate::formats::adapter::AdapterFiles>| -> Result<Option<Adapter>> {
            f.map(|f| Adapter::load(f, &base)).transpose()
        };
        let sides = [load(fa)?, load(fb)?, load(fc)?, load(fd)?];
        let text = adapter_text_spec(&base, &sides, tokenizer, opts)?;
        if beta.is_some() {
            // C may be the base itself: A's and B's replacements are refused all the same.
            crate::weights::adapters::refuse_replacements(
                sides.each_ref().map(Option::as_ref),
                crate::weights::adapters::PLANE_MOVES_UPDATES,
            )?;
        }
        let names = pair::blended_names(&base);
        let factors = adapter_factors(opts.layers.as_ref(), &base, &names, &sides)?;
        if keeps_quantized(opts, &base, &names, &device) {
            if slerp {
                bail!(
                    Unsupported,
                    "--method slerp over adapters on a base kept quantized: the angles need the merged tensors; use --dequantize"
                );
            }
            return Self::load_on_quantized(base, base_spec, text, (sides, factors), &names, opts);
        }
        let [aa, ab, ac, ad] = &sides;
        let dtype = held_dtype(opts.dtype, &[&base], &names, &device);
        let shape = |n: &String| base.weights.tensors[n].shape.iter().product::<usize>() as u64;
        let base_bytes: u64 = names.iter().map(shape).sum::<u64>() * dtype.size_in_bytes() as u64;
        let changed: std::collections::BTreeSet<&String> = sides
            .iter()
            .flatten()
            .flat_map(|x| x.updates.keys().chain(x.replacements.keys()))
            .collect();
        let changed_bytes: u64 =
            changed.iter().map(|n| shape(n)).sum::<u64>() * dtype.size_in_bytes() as u64;
        crate::memory::check_adapters_fit(&device, &base.config, base_bytes, changed_bytes, dtype)?;
        let factor = |n: &str| crate::weights::quantized_base::factor_of(factors.as_ref(), n);
        // Merged once, at α = 0 on the plane and under the rules asked for.
        let mut weights = AdapterWeights::load(
            &base,
            &names,
            [aa.as_ref(), ab.as_ref(), ac.as_ref(), ad.as_ref()],
            (dtype, &device),
            (
                [beta.unwrap_or(0.0), gamma.unwrap_or(0.0)],
                factors.is_some().then_some(&factor as &dyn Fn(&str) -> f64),
            ),
        )?;
        if slerp {
            weights.use_slerp()?;
        }
        let vb = |views| VarBuilder::from_tensors(views, dtype, &device);
        let model = Model::load(&base.config, vb(weights.merged_views()?))
            .with_context(|| format!("{}: cannot build the model", base.files.config.display()))?;
        let (va, vbv) = weights.factored_views()?;
        let mut low_rank = std::collections::HashMap::new();
        for (name, f) in &weights.forward {
            let up = Tensor::from_slice(&f.up, (f.out, f.rank), &device)?.to_dtype(dtype)?;
            let down = Tensor::from_slice(&f.down, (f.rank, f.inp), &device)?.to_dtype(dtype)?;
            let pair =
                crate::model::param::LowRankPair::new(up, down, f.sides)?.with_factor(factor(name));
            low_rank.insert(name.clone(), std::sync::Arc::new(pair));
        }
        let adapted = AdaptedTensors {
            low_rank: low_rank.clone(),
            layout: base_layout(&base, &names),
        };
        let pair_model = Model::load_factored(&base.config, vb(va), vb(vbv), low_rank)?;
        let (text, beyond_model) = text;
        let plane = beta.map(|_| [ac, ad]);
        let (names, origin) =
            adapter_origin(&base, &base_spec, [aa, ab], plane, (None, beyond_model));
        let mut engine = Self::assemble(
            origin,
            &base,
            names,
            Weights::Adapters(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.adapted = Some(adapted);
        engine.use_adapter_path(opts, beta);
        Ok(engine)
    }

    /// A plane or α per layer over adapters: recorded where the header, sessions and exports
    /// look.
    fn use_adapter_path(&mut self, opts: &LoadOptions, beta: Option<f64>) {
        self.third = beta.and(opts.third.clone());
        self.fourth = beta.and(opts.fourth.clone());
        self.info.beta = beta;
        self.info.gamma = self.fourth.as_ref().and_then(|d| d.weight);
        if let Some(l) = &opts.layers {
            self.layers = Some(l.clone());
            self.info.layers = Some(l.spec());
            self.info.layer_strip = self.layer_strip();
        }
    }

    /// C's and D's weights over adapters (0 on the line, and for full models, whose plane
    /// never shares a batch).
    fn adapter_beyond(&self) -> [f64; 2] {
        match &self.weights {
            Weights::Adapters(w) => [w.beta(), w.gamma()],
            Weights::Quantized(w) => [w.beta(), w.gamma()],
            Weights::Full(_) | Weights::QuantizedPair(_) => [0.0, 0.0],
        }
    }

    /// Two quantized GGUF endpoints kept as they are: both mapped, nothing blended at any α.
    fn load_quantized_pair(
        ca: Checkpoint,
        cb: Checkpoint,
        tokenizer: Tokenizer,
        names: &[String],
        opts: &LoadOptions,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let weights = QuantizedPair::load(&ca, &cb, names)?;
        let build = || {
            let vb = |v| VarBuilder::from_tensors(v, DType::F32, &device);
            Model::load_quantized_pair(
                &ca.config,
                (vb(weights.a.dense_views()?), vb(weights.b.dense_views()?)),
                weights.a.quantized_map(),
                weights.b.quantized_map(),
            )
            .with_context(|| format!("{}: cannot build the model", ca.label()))
        };
        let mut model = build()?;
        model.set_default_mix(Some(Mix::new(&[weights.alpha()], &device)?))?;
        let pair_model = build()?;
        let (text, beyond_model) = pair_text_spec(&ca, &[&cb], tokenizer, opts)?;
        let description = format!(
            "{} ↔ {} ({}, kept quantized)",
            ca.label(),
            cb.label(),
            weights.types()
        );
        let files = source_files;
        let origin = Origin {
            model: ca.files.clone(),
            sources: vec![
                ("a".into(), ca.label().to_string(), files(&ca)),
                ("b".into(), cb.label().to_string(), files(&cb)),
            ],
            quantization: [("a", &ca), ("b", &cb)]
                .into_iter()
                .filter_map(|(role, c)| Some((role.to_string(), c.weights.quantization()?)))
                .collect(),
            beyond_model,
        };
        Ok(Self::assemble(
            origin,
            &ca,
            (ca.label().to_string(), cb.label().to_string(), description),
            Weights::QuantizedPair(weights),
            (model, pair_model),
            text,
            &device,
        ))
    }

    /// Adapters on a quantized GGUF base kept as it is: the base's matrices read in place,
    /// both adapters' factors applied per row, nothing merged at any α.
    fn load_on_quantized(
        base: Checkpoint,
        base_spec: String,
        (text, beyond_model): (TextSpec, TextBeyondModel),
        (sides, factors): (
            [Option<Adapter>; 4],
            Option<std::collections::HashMap<String, f64>>,
        ),
        names: &[String],
        opts: &LoadOptions,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let mut weights =
            QuantizedAdapters::load(&base, names, sides.each_ref().map(Option::as_ref))?;
        weights.factors = factors;
        let beta = opts.third.as_ref().and_then(|t| t.weight);
        if let Some(beta) = beta {
            weights.set_beta(beta);
        }
        if let Some(gamma) = opts.fourth.as_ref().and_then(|t| t.weight) {
            weights.set_gamma(gamma);
        }
        let mut low_rank = std::collections::HashMap::new();
        for (name, f) in &weights.forward {
            let pair = crate::model::param::LowRankPair::on_host(
                f.up.clone(),
                f.down.clone(),
                (f.out, f.inp),
                f.sides,
            )?
            .with_factor(weights.factor(name));
            low_rank.insert(name.clone(), std::sync::Arc::new(pair));
        }
        let adapted = AdaptedTensors {
            low_rank: low_rank.clone(),
            layout: base_layout(&base, names),
        };
        let quantized = weights.base.quantized_map();
        let build = || {
            let vb = |views| VarBuilder::from_tensors(views, DType::F32, &device);
            let dense = vb(weights.base.dense_views()?);
            let dense_b = weights.replaced_b_views()?.map(vb);
            Model::load_quantized(
                &base.config,
                (dense, dense_b),
                quantized.clone(),
                low_rank.clone(),
            )
            .with_context(|| format!("{}: cannot build the model", base.label()))
        };
        let mut model = build()?;
        let mix = Mix::on_plane(
            &[weights.alpha()],
            [weights.beta(), weights.gamma()],
            &device,
        )?;
        model.set_default_mix(Some(mix))?;
        let pair_model = build()?;
        let kept = format!("{}, kept quantized", weights.base.types());
        let [aa, ab, ac, ad] = &sides;
        let plane = beta.map(|_| [ac, ad]);
        let (names, origin) = adapter_origin(
            &base,
            &base_spec,
            [aa, ab],
            plane,
            (Some(&kept), beyond_model),
        );
        let mut engine = Self::assemble(
            origin,
            &base,
            names,
            Weights::Quantized(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.adapted = Some(adapted);
        engine.use_adapter_path(opts, beta);
        Ok(engine)
    }

    fn assemble(
        origin: Origin,
        c: &Checkpoint,
        (a, b, description): (String, String, String),
        weights: Weights,
        (model, pair_model): (Model, Model),
        mut text: TextSpec,
        device: &Device,
    ) -> Self {
        // Caches and activations are held in the dtype the forward pass computes in.
        let computes_in = crate::model::compute_dtype(weights.dtype(), device);
        text.memory = crate::generate::RowMemory::of(&c.config, computes_in);
        let info = PairInfo {
            a,
            b,
            description,
            architecture: c.config.architecture().to_string(),
            params: weights.params(),
            dtype: dtype_name(weights.dtype()).to_string(),
            device: device_name(device),
            buffer_bytes: weights.model_bytes(),
            gpu_memory: device_memory(device).map(|(free, total)| (total - free, total)),
            chat_template: text.chat.is_some(),
            turn_markers: text
                .chat
                .iter()
                .flat_map(|t| t.markers())
                .map(|m| m.to_string())
                .collect(),
            method: weights.method(),
            layers: None,
            beta: weights.full().and_then(|w| w.beta()),
            gamma: None,
            layers_fixed: None,
            layer_strip: Vec::new(),
            others: origin
                .sources
                .iter()
                .filter(|(role, _, _)| !matches!(role.as_str(), "a" | "b"))
                .map(|(role, source, _)| (role.clone(), source.clone()))
                .collect(),
        };
        Self {
            info,
            origin,
            config: c.config.clone(),
            weights,
            model,
            pair_model,
            step_times: Default::default(),
            layers: None,
            third: None,
            fourth: None,
            adapted: None,
            columns_mode: ColumnsMode::Auto,
            recipe: None,
            recipe_sha256: String::new(),
            text,
        }
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.text.tokenizer
    }

    /// Texts after which generation stops (besides the end tokens). An empty text would
    /// stop every row at its first token, and is left out (the command line refuses it).
    pub fn set_stop_texts(&mut self, mut stop: Vec<String>) {
        stop.retain(|s| !s.is_empty());
        self.text.stop = stop;
    }

    /// The texts after which generation stops.
    pub fn stop_texts(&self) -> &[String] {
        &self.text.stop
    }

    /// The tokens that end a generation.
    pub fn end_tokens(&self) -> &[u32] {
        &self.text.eos
    }

    /// The model's config (A's, or the base's).
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn weights(&self) -> &Weights {
        &self.weights
    }

    /// How the weights move with α.
    pub fn method(&self) -> Method {
        self.weights.method()
    }

    /// The mergekit recipe the pair was loaded from, as given, and the SHA-256 of the file as
    /// it was read (empty where it could not be read again).
    pub fn recipe_file(&self) -> Option<(&str, &str)> {
        self.recipe
            .as_deref()
            .map(|f| (f, self.recipe_sha256.as_str()))
    }

    /// With α per layer: its rules.
    pub fn layer_alphas(&self) -> Option<&LayerAlphas> {
        self.layers.as_ref()
    }

    /// With α per layer: each module kind's factor at every layer (empty otherwise).
    pub fn layer_strip(&self) -> Vec<LayerStrip> {
        let Some(layers) = &self.layers else {
            return Vec::new();
        };
        crate::weights::layers::strips(layers, &self.moving_tensors(), self.config.layers())
    }

    /// The tensors α per layer moves: every tensor of full models, the adapted ones over
    /// adapters (sorted by name).
    fn moving_tensors(&self) -> Vec<&str> {
        match (&self.weights, &self.adapted) {
            (Weights::Full(w), _) => w.layout.slots.iter().map(|s| s.name.as_str()).collect(),
            (_, Some(a)) => {
                let mut n: Vec<&str> = a.low_rank.keys().map(String::as_str).collect();
                n.sort_unstable();
                n
            }
            _ => Vec::new(),
        }
    }

    /// How far α moves the most moved tensor per unit of α: 1 on the line, the largest
    /// factor under α per layer, and a recipe's C or D (which move with α) at their weights.
    fn layer_reach(&self) -> f64 {
        let moves_with_alpha =
            |x: &Option<ExtraEndpoint>| x.as_ref().is_some_and(|x| x.weight.is_none());
        // The line (and a plane at a fixed β): no tensor list to walk on every α change.
        if self.layers.is_none()
            && !moves_with_alpha(&self.third)
            && !moves_with_alpha(&self.fourth)
        {
            return 1.0;
        }
        let names = self.moving_tensors();
        let n = self.config.layers();
        let largest = |l: &LayerAlphas| crate::weights::layers::largest_factor(l, &names, n);
        let beyond = [&self.third, &self.fourth]
            .into_iter()
            .flatten()
            .filter(|x| x.weight.is_none())
            .map(|x| x.factors.as_ref().map_or(1.0, largest));
        self.layers
            .iter()
            .map(largest)
            .chain(beyond)
            .fold(1.0, f64::max)
    }

    /// α where it stays within bounds under α per layer: each tensor moves by α times its
    /// factor, and that product is held to α's own bound, |α| ≤ 1000 (beyond it the blend is
    /// no model, and its text comes out empty rather than refused).
    pub fn check_reach(&self, alpha: Alpha) -> Result<()> {
        self.check_reach_all(&[alpha])
    }

    /// [`Engine::check_reach`] for every α of a batch, the factors read once.
    pub fn check_reach_all(&self, alphas: &[Alpha]) -> Result<()> {
        let reach = self.layer_reach();
        for &alpha in alphas {
            let moved = alpha.value() * reach;
            if moved.abs() > MAX_ABS_ALPHA {
                bail!(
                    Invalid,
                    "α = {alpha} moves a tensor by {moved} (its largest factor on α, from α per layer or a recipe's weights, is {reach}); α × factor must be at most {MAX_ABS_ALPHA} in size"
                );
            }
        }
        Ok(())
    }

    /// Why α per layer cannot be edited live on this pair, if it cannot: the rules are a
    /// recipe's, the method is not the line's, the weights are on a GPU, two quantized
    /// endpoints, or adapters that replace tensors whole.
    pub fn layers_fixed(&self) -> Option<String> {
        if let Some(file) = &self.recipe {
            return Some(format!(
                "the recipe {file}'s weights are its own; edit the recipe and load it again"
            ));
        }
        if self.method() != Method::Linear {
            return Some(format!(
                "edited live on the line only; this pair follows --method {}",
                self.method().name()
            ));
        }
        if let Some(l) = self
            .layers
            .as_ref()
            .filter(|l| l.source() != "--layer-alphas")
        {
            return Some(format!(
                "{}'s gradients are its own; edit the recipe and load it again",
                l.source()
            ));
        }
        if self.third.as_ref().is_some_and(|t| t.factors.is_some()) {
            return Some("the recipe's C has gradients of its own; edit the recipe".into());
        }
        if !self.device().is_cpu() {
            return Some("on the CPU only for now; use --device cpu".into());
        }
        match &self.weights {
            Weights::QuantizedPair(_) => Some(
                "two quantized endpoints mix rows on the line; load them with --dequantize for α per layer"
                    .into(),
            ),
            Weights::Adapters(w) if w.has_replacements() => Some(
                "an adapter replaces tensors whole (modules_to_save), and α per layer over adapters moves low-rank updates only"
                    .into(),
            ),
            _ => None,
        }
    }

    /// Edit α per layer live (the layer strip): `spec` in `--layer-alphas` syntax, empty for
    /// none. The working weights move to the current α under the new rules (adapters:
    /// re-merged, and the factored models' factors moved in place). Refused where the rules
    /// are a recipe's, off the line's method, on a GPU, and with tensors replaced whole.
    pub fn set_layer_alphas(&mut self, spec: &str) -> Result<Duration> {
        const FLAG: &str = "--layer-alphas";
        let layers = match spec.trim() {
            "" => None,
            s => Some(LayerAlphas::parse(s)?),
        };
        if let Some(why) = self.layers_fixed() {
            bail!(Unsupported, "{FLAG}: {why}");
        }
        // Columns whose α goes too far under the new rules are refused as each runs
        // (`check_reach`): which α they hold is the UI's, not the engine's.
        let n = self.config.layers();
        let t = std::time::Instant::now();
        match (&mut self.weights, &self.adapted) {
            (Weights::Full(w), _) => match &layers {
                Some(l) => w.use_layers(l, n)?,
                None => w.clear_layers()?,
            },
            (Weights::Adapters(_) | Weights::Quantized(_), Some(a)) => {
                let f: std::collections::HashMap<String, f64> = match &layers {
                    Some(l) => {
                        let f = l.factors(&a.layout, n)?;
                        a.layout.slots.iter().map(|s| s.name.clone()).zip(f).collect()
                    }
                    None => Default::default(),
                };
                let factor = |name: &str| f.get(name).copied().unwrap_or(1.0);
                match &mut self.weights {
                    Weights::Adapters(w) => {
                        if w.has_replacements() {
                            bail!(
                                Unsupported,
                                "{FLAG}: an adapter replaces tensors whole (modules_to_save), and α per layer over adapters moves low-rank updates only"
                            );
                        }
                        w.use_factors(&factor)?;
                    }
                    Weights::Quantized(w) => w.factors = layers.as_ref().map(|_| f.clone()),
                    _ => unreachable!("matched above"),
                }
                for (name, pair) in &a.low_rank {
                    pair.set_factor(factor(name));
                }
            }
            _ => bail!(
                Unsupported,
                "{FLAG}: two quantized endpoints mix rows on the line; load them with --dequantize for α per layer"
            ),
        }
        let took = t.elapsed();
        if matches!(self.weights, Weights::Full(_)) {
            let head = format!("{} ↔ {}", self.info.a, self.info.b);
            let note = |l: Option<&LayerAlphas>| {
                path_note(Method::Linear, l).map_or(String::new(), |n| format!(" ({n})"))
            };
            let old = format!("{head}{}", note(self.layers.as_ref()));
            if let Some(rest) = self.info.description.strip_prefix(&old) {
                self.info.description = format!("{head}{}{rest}", note(layers.as_ref()));
            }
        }
        self.info.layers = layers.as_ref().map(|l| l.spec());
        self.layers = layers;
        self.info.layer_strip = self.layer_strip();
        Ok(took)
    }

    /// With a plane: endpoint C and β.
    pub fn third(&self) -> Option<&ExtraEndpoint> {
        self.third.as_ref()
    }

    /// With a fourth endpoint: D and γ.
    pub fn fourth(&self) -> Option<&ExtraEndpoint> {
        self.fourth.as_ref()
    }

    /// D's weight, when a fourth endpoint has one of its own (`--d` with `--gamma`).
    pub fn gamma(&self) -> Option<f64> {
        self.info.gamma
    }

    /// Move the plane's β (a plane loaded with `--beta`) and re-blend (adapters: re-merge) at
    /// the current α; on a base kept quantized nothing is merged.
    pub fn set_beta(&mut self, beta: f64) -> Result<Duration> {
        self.set_point(self.alpha(), Some(beta))
    }

    /// The plane's β, when it has one of its own (`--c` with `--beta`).
    pub fn beta(&self) -> Option<f64> {
        self.info.beta
    }

    /// "at α = 0.5", with β and γ where the blend has them: an error's context, naming every
    /// weight that could be at fault.
    fn at_point(&self) -> String {
        let mut at = format!("at α = {}", self.alpha());
        for (name, w) in [("β", self.beta()), ("γ", self.gamma())] {
            if let Some(w) = w {
                at.push_str(&format!(", {name} = {w}"));
            }
        }
        at
    }

    /// Move to α and, on a plane with a β of its own, to β (None: β stays): one blend (one
    /// merge over adapters), however many of the two move.
    pub fn set_point(&mut self, alpha: impl IntoAlpha, beta: Option<f64>) -> Result<Duration> {
        let alpha = alpha.into_alpha()?;
        self.check_reach(alpha)?;
        let Some(beta) = beta else {
            return self.set_alpha(alpha);
        };
        let beta = Alpha::new(beta)
            .map_err(|e| err!(Invalid, "β: {e}"))?
            .value();
        match &self.third {
            Some(t) if t.weight.is_some() => {}
            Some(_) => bail!(
                Unsupported,
                "β: this plane is a recipe's direction, its β moving with α"
            ),
            None => bail!(
                Unsupported,
                "β: the pair has no third endpoint (--c C --beta B)"
            ),
        }
        let took = match &mut self.weights {
            Weights::Full(w) => w.set_point(alpha, beta)?,
            Weights::Adapters(w) => w.set_point(alpha, beta)?,
            Weights::Quantized(w) => {
                let mix = Mix::on_plane(&[alpha], [beta, w.gamma()], &Device::Cpu)?;
                self.model.set_default_mix(Some(mix))?;
                w.set_beta(beta);
                w.set_alpha(alpha);
                Duration::ZERO
            }
            Weights::QuantizedPair(_) => unreachable!("a quantized pair loads no plane"),
        };
        if let Some(t) = self.third.as_mut() {
            t.weight = Some(beta);
        }
        self.info.beta = Some(beta);
        Ok(took)
    }

    /// Move D's weight γ (a fourth endpoint loaded with `--gamma`) for every column: one blend
    /// (adapters: one merge; on a base kept quantized, none).
    pub fn set_gamma(&mut self, gamma: f64) -> Result<Duration> {
        let gamma = Alpha::new(gamma)
            .map_err(|e| err!(Invalid, "γ: {e}"))?
            .value();
        if self.info.gamma.is_none() {
            bail!(
                Unsupported,
                "γ: the pair has no fourth endpoint with a γ of its own (--d D --gamma G)"
            );
        }
        let alpha = self.alpha();
        let took = match &mut self.weights {
            Weights::Full(w) => w.set_gamma(gamma)?,
            Weights::Adapters(w) => w.set_gamma(gamma)?,
            Weights::Quantized(w) => {
                w.set_gamma(gamma);
                let mix = Mix::on_plane(&[alpha], [w.beta(), gamma], &Device::Cpu)?;
                self.model.set_default_mix(Some(mix))?;
                Duration::ZERO
            }
            Weights::QuantizedPair(_) => unreachable!("a quantized pair loads no fourth endpoint"),
        };
        if let Some(d) = self.fourth.as_mut() {
            d.weight = Some(gamma);
        }
        self.info.gamma = Some(gamma);
        Ok(took)
    }

    /// Whether every tensor moves along the line by the same α, which rows at several alphas
    /// in one batch assume (neither slerp nor α per layer does).
    pub fn on_line(&self) -> bool {
        self.weights.on_line()
    }

    /// Whether the endpoints are adapters on one base.
    pub fn is_adapter_pair(&self) -> bool {
        matches!(self.weights, Weights::Adapters(_) | Weights::Quantized(_))
    }

    /// Whether the base is kept quantized (adapters on a GGUF base, factored at every α), or
    /// both full endpoints are (two GGUFs, rows mixed at every α).
    pub fn kept_quantized(&self) -> bool {
        matches!(
            self.weights,
            Weights::Quantized(_) | Weights::QuantizedPair(_)
        )
    }

    /// The types a base kept quantized is held in ("Q4_1 + Q8_0").
    pub fn kept_quantization(&self) -> Option<String> {
        match &self.weights {
            Weights::Quantized(w) => Some(w.base.types()),
            Weights::QuantizedPair(w) => Some(w.types()),
            _ => None,
        }
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    pub fn alpha(&self) -> Alpha {
        self.weights.alpha()
    }

    /// Re-blend the working weights in place. Returns the time the blend took. (On a base
    /// kept quantized nothing is merged: the model runs at α from its next pass.)
    pub fn set_alpha(&mut self, alpha: impl IntoAlpha) -> Result<Duration> {
        let alpha = alpha.into_alpha()?;
        self.check_reach(alpha)?;
        if self.kept_quantized() {
            let mix = Mix::on_plane(&[alpha], self.adapter_beyond(), self.device())?;
            self.model.set_default_mix(Some(mix))?;
        }
        self.weights.set_alpha(alpha)
    }

    /// A prompt's ids (through the chat template when one applies).
    pub fn encode(&self, prompt: &str) -> Result<Vec<u32>> {
        self.generator().encode(prompt)
    }

    /// A text's ids as it stands, for scoring it.
    pub fn encode_text(&self, text: &str) -> Result<Vec<u32>> {
        self.generator().encode_text(text)
    }

    /// Whether plain prompts go through a chat template.
    pub fn has_chat_template(&self) -> bool {
        self.text.chat.is_some()
    }

    /// Logits after the whole of `ids`, at the current α (f32, `[vocab]`).
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut cache = self.model.new_cache(ids.len());
        Ok(self.model.forward(ids, &mut cache)?.to_vec1::<f32>()?)
    }

    /// Generate from `prompt` at the current α. `on_text` receives each stable piece of text;
    /// `cancel` is checked between tokens.
    pub fn generate(
        &self,
        prompt: &str,
        params: &GenerationParams,
        cancel: &dyn Cancel,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Generation> {
        self.generator()
            .run(prompt, params, cancel, on_text)
            .with_context(|| self.at_point())
    }

    /// Generate one continuation per α as one batch, every row at its own α, without
    /// touching the working weights (the batched-columns mode). Equal to re-blending and
    /// generating at each α in turn, up to rounding.
    pub fn generate_columns(
        &self,
        prompt: &str,
        alphas: &[impl IntoAlpha],
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_text: &mut dyn FnMut(usize, &str),
    ) -> Result<Vec<Generation>> {
        let mix = self.mix(alphas)?;
        self.pair_generator()
            .run_batch(prompt, &mix, params, cancel, on_text)
    }

    /// The token loop with everything it reports ([`Step`]): from prompt ids and `given`
    /// tokens, at the current α (`alphas` None) or one row per α in the batched mode.
    pub fn generate_steps(
        &self,
        prompt_ids: &[u32],
        given: &[u32],
        alphas: Option<&[Alpha]>,
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_step: &mut dyn FnMut(usize, Step<'_>),
    ) -> Result<Vec<Generation>> {
        let mix = alphas.map(|a| self.mix(a)).transpose()?;
        self.generate_steps_mixed(prompt_ids, given, mix.as_ref(), params, cancel, on_step)
    }

    /// [`Engine::generate_steps`] with the batch's rows given as a [`Mix`] (from
    /// [`Engine::mix`] or, a point per row, [`Engine::mix_at`]).
    pub fn generate_steps_mixed(
        &self,
        prompt_ids: &[u32],
        given: &[u32],
        mix: Option<&Mix>,
        params: &GenerationParams,
        cancel: &dyn Fn(usize) -> bool,
        on_step: &mut dyn FnMut(usize, Step<'_>),
    ) -> Result<Vec<Generation>> {
        match mix {
            None => self
                .generator()
                .run_rows(prompt_ids, given, None, params, cancel, on_step)
                .with_context(|| self.at_point()),
            Some(mix) => self.pair_generator().run_rows(
                prompt_ids,
                given,
                Some(mix),
                params,
                cancel,
                on_step,
            ),
        }
    }

    /// log p(ids[i] | ids[..i]) for i ≥ 1 at the current α (natural log).
    pub fn token_logprobs(&self, ids: &[u32]) -> Result<Vec<f32>> {
        Ok(self
            .generator()
            .token_details(ids)
            .with_context(|| self.at_point())?
            .iter()
            .map(|t| t.logprob)
            .collect())
    }

    /// A text's tokens and what the model at α thinks of each (the working weights move
    /// there). The text is taken as it stands: no chat template, BOS only where the
    /// tokenizer's own post-processor adds it.
    pub fn score_text(&mut self, text: &str, alpha: impl IntoAlpha) -> Result<TextScore> {
        self.score_text_at(text, alpha, None)
    }

    /// [`Engine::score_text`] at a point of a plane (β None: β as it is), in one blend.
    pub fn score_text_at(
        &mut self,
        text: &str,
        alpha: impl IntoAlpha,
        beta: Option<f64>,
    ) -> Result<TextScore> {
        let alpha = alpha.into_alpha()?;
        let enc = crate::guard::catch("cannot tokenise the text", || {
            crate::generate::encode_with_specials(&self.text.tokenizer, text)
                .map_err(|e| err!(Format, "cannot tokenise the text: {e}"))
        })?;
        let token_ids = enc.get_ids().to_vec();
        if token_ids.len() < 2 {
            bail!(
                Invalid,
                "the text has {} token(s); scoring needs at least 2",
                token_ids.len()
            );
        }
        self.set_point(alpha, beta)?;
        let tokens = self
            .generator()
            .token_details(&token_ids)
            .with_context(|| self.at_point())?;
        let nll = -tokens.iter().map(|t| t.logprob as f64).sum::<f64>();
        Ok(TextScore {
            alpha,
            text: text.to_string(),
            offsets: enc.get_offsets().to_vec(),
            perplexity: crate::generate::perplexity(nll, tokens.len()),
            token_ids,
            tokens,
            nll,
        })
    }

    /// p(token | prefix) at each α, from one batched pass over the prefix (the α-scrub).
    pub fn scrub(&self, prefix: &[u32], token: u32, alphas: &[Alpha]) -> Result<Vec<f32>> {
        if prefix.is_empty() || prefix.len() >= self.text.max_positions {
            bail!(
                Invalid,
                "a scrub needs a prefix of 1 to {} tokens, got {}",
                self.text.max_positions - 1,
                prefix.len()
            );
        }
        let rows = self.logits_columns(prefix, alphas)?;
        rows.iter().map(|l| probability(l, token)).collect()
    }

    /// The α-scrub on any path: one batched pass on the line; with another method (whose
    /// rows cannot share a batch) the weights re-blended to each α in turn, the prefix run at
    /// each. The engine is left at the last α.
    pub fn scrub_any(&mut self, prefix: &[u32], token: u32, alphas: &[Alpha]) -> Result<Vec<f32>> {
        if self.on_line() {
            return self.scrub(prefix, token, alphas);
        }
        if prefix.is_empty() || prefix.len() >= self.text.max_positions {
            return self.scrub(prefix, token, alphas); // the same refusal
        }
        alphas
            .iter()
            .map(|&alpha| {
                self.set_alpha(alpha)?;
                probability(&self.logits(prefix)?, token)
            })
            .collect()
    }

    /// Whether `k` columns of `tokens` tokens are faster as one batch than re-blended one
    /// after another, from step times measured on this machine and model the first time each
    /// `k` is asked about (a few forward passes). For adapters this covers one column too:
    /// the factored path needs no merge at all, which can beat merging and decoding.
    pub fn prefer_batch(&mut self, k: usize, tokens: usize) -> Result<bool> {
        let fewest = if self.is_adapter_pair() { 1 } else { 2 };
        if !self.on_line() {
            return Ok(false);
        }
        match self.columns_mode {
            _ if k < fewest => return Ok(false),
            ColumnsMode::Batched => return Ok(true),
            ColumnsMode::Reblend => return Ok(false),
            ColumnsMode::Auto => {}
        }
        let one = self.step_time(1, false)?;
        let many = self.step_time(k, true)?;
        let blend = self.weights.last_blend().unwrap_or_default();
        let sequential = k as f64 * (blend + one * tokens as u32).as_secs_f64();
        let batched = (many * tokens as u32).as_secs_f64();
        Ok(batched < sequential)
    }

    /// Whether `alphas` × `rows` rows decode faster as one batch, each row at its own α, than
    /// as `alphas` batches of `rows` at weights re-blended to each α in turn: per step, from
    /// times measured on this machine and model the first time each size is asked about.
    /// (A sweep re-blends once per α for all its prompts, so blends do not count here.)
    pub fn alphas_together_faster(&mut self, alphas: usize, rows: usize) -> Result<bool> {
        if alphas < 2 || rows == 0 || !self.on_line() {
            return Ok(false);
        }
        let apart = alphas as f64 * self.step_time(rows, false)?.as_secs_f64();
        let together = self.step_time(alphas * rows, true)?.as_secs_f64();
        Ok(together < apart)
    }

    /// How columns waiting with one prompt run. Re-merging is refused on a base kept
    /// quantized: merging into quantized blocks is not exact, so that base never merges.
    pub fn set_columns_mode(&mut self, mode: ColumnsMode) -> Result<()> {
        if mode == ColumnsMode::Reblend && self.kept_quantized() {
            bail!(Unsupported, "{}", REBLEND_ON_QUANTIZED);
        }
        if mode == ColumnsMode::Batched && !self.on_line() {
            bail!(
                Unsupported,
                "--columns batched: rows at several alphas in one batch follow the line only, \
                 not {}; use --columns reblend",
                self.off_line_path()
            );
        }
        self.columns_mode = mode;
        Ok(())
    }

    /// What takes the weights off the line, in the words of the flag or the recipe that did.
    pub fn off_line_path(&self) -> String {
        let method = path_note(self.method(), None);
        match (&self.recipe, self.third.is_some(), method) {
            (None, true, _) => "--c (a plane)".to_string(),
            (None, false, Some(m)) => format!("--method {m}"),
            (None, false, None) => "α per layer".to_string(),
            (Some(file), true, _) => format!("the recipe {file}'s third model (a plane)"),
            (Some(file), false, Some(m)) => format!("the recipe {file}'s merge_method {m}"),
            (Some(file), false, None) => {
                format!("the recipe {file}'s weights (α per layer, or a weight on B other than 1)")
            }
        }
    }

    /// Whether this pair on a GPU runs the fused kernels (the forward pass of model/fused.rs
    /// where it applies, the adapter merge in one launch) or the paths they are held to;
    /// [`crate::model::FUSED_SWITCH`] sets the default. Step times measured before are
    /// forgotten.
    pub fn set_fused(&mut self, on: bool) -> Result<()> {
        self.model.set_fused(on)?;
        self.pair_model.set_fused(on)?;
        self.weights.set_fused(on);
        self.step_times.clear();
        Ok(())
    }

    /// How forward passes run: `fused` (the GPU pass of model/fused.rs) or `candle`.
    pub fn forward_path(&self) -> &'static str {
        if self.model.is_fused() {
            "fused"
        } else {
            "candle"
        }
    }

    /// Median time of one decode step at batch size `k`, of the batch model or (k = 1) the
    /// working model.
    fn step_time(&mut self, k: usize, batched: bool) -> Result<Duration> {
        if let Some(t) = self.step_times.get(&(k, batched)) {
            return Ok(*t);
        }
        let alphas: Vec<Alpha> = (0..k)
            .map(|i| Alpha::saturating(i as f64 / k as f64))
            .collect();
        let mix = self.mix(&alphas)?;
        let (model, mix) = if batched {
            (&self.pair_model, Some(&mix))
        } else {
            (&self.model, None)
        };
        let steps = 4;
        let mut cache = model.new_cache(steps);
        let mut times = Vec::with_capacity(steps);
        let ids = vec![0u32; k];
        for _ in 0..steps {
            let t = std::time::Instant::now();
            model.forward_ids(&ids, k, &mut cache, mix)?;
            self.device().synchronize()?;
            times.push(t.elapsed());
        }
        times.sort();
        let t = times[steps / 2];
        self.step_times.insert((k, batched), t);
        Ok(t)
    }

    /// Last-position logits of `ids` for each α, from the batched mode (f32, `[K][vocab]`).
    pub fn logits_columns(&self, ids: &[u32], alphas: &[impl IntoAlpha]) -> Result<Vec<Vec<f32>>> {
        self.logits_mixed(ids, &self.mix(alphas)?)
    }

    /// Last-position logits of `ids` for each row of `mix` (f32, `[K][vocab]`).
    pub fn logits_mixed(&self, ids: &[u32], mix: &Mix) -> Result<Vec<Vec<f32>>> {
        let k = mix.alphas().len();
        let mut cache = self.pair_model.new_cache(ids.len());
        Ok(self
            .pair_model
            .forward_ids(&ids.repeat(k), k, &mut cache, Some(mix))?
            .to_vec2::<f32>()?)
    }

    /// The per-row interpolation weights for a batch at `alphas`.
    pub fn mix(&self, alphas: &[impl IntoAlpha]) -> Result<Mix> {
        self.mix_at(alphas, None)
    }

    /// [`Engine::mix`] with row k at β_k on a plane with a β of its own (None: every row at
    /// the engine's β).
    pub fn mix_at(&self, alphas: &[impl IntoAlpha], betas: Option<&[Alpha]>) -> Result<Mix> {
        if !self.on_line() {
            bail!(
                Unsupported,
                "{}: rows at several alphas in one batch follow the line only; each α is re-blended instead (--alpha-mode reblend)",
                self.off_line_path()
            );
        }
        let alphas = alphas_of(alphas)?;
        self.check_reach_all(&alphas)?;
        let [beta, gamma] = self.adapter_beyond();
        let betas: Vec<f64> = match betas {
            None => vec![beta; alphas.len()],
            Some(_) if self.beta().is_none() => bail!(
                Unsupported,
                "β: the pair has no third endpoint with a β of its own (--c C --beta B)"
            ),
            Some(betas) if betas.len() != alphas.len() => bail!(
                Invalid,
                "{} β(s) for {} α(s): one β per row",
                betas.len(),
                alphas.len()
            ),
            Some(betas) => betas.iter().map(|b| b.value()).collect(),
        };
        Ok(Mix::at_points(&alphas, &betas, gamma, self.device())?)
    }

    /// A generator on both endpoints, for [`Generator::run_rows`] with a [`Mix`].
    pub fn pair_generator(&self) -> Generator<'_> {
        Generator {
            model: &self.pair_model,
            ..self.generator()
        }
    }

    pub fn generator(&self) -> Generator<'_> {
        self.text.generator(&self.model)
    }
}

/// Why `--columns reblend` (and `sweep --alpha-mode reblend`) is refused on a base kept
/// quantized.
pub const REBLEND_ON_QUANTIZED: &str = "--columns reblend: the base is kept quantized, and merging adapters into quantized blocks is not exact, so it is never merged (every α runs factored); use --dequantize to merge into a dequantized copy";

/// Whether `base` (of adapters, or either of two full endpoints) stays quantized: `--dtype
/// auto` (no dtype asked), no `--dequantize`, on the CPU (the quantized kernels are CPU
/// kernels), a decoder family, and at least one matrix of a type with a kernel. There the quantized path measures faster than
/// the dequantized one (README, "Quantized bases") and needs a fraction of the memory.
fn keeps_quantized(
    opts: &LoadOptions,
    base: &Checkpoint,
    names: &[String],
    device: &Device,
) -> bool {
    !opts.dequantize
        && opts.dtype.is_none()
        && device.is_cpu()
        && matches!(base.config, ModelConfig::Decoder(_))
        && names
            .iter()
            .any(|n| base.weights.quantized_type(n).is_some())
}

/// The labels, header line and origin of an adapter pair; `kept` says how the base is held
/// where it is not dequantized.
fn adapter_origin(
    base: &Checkpoint,
    base_spec: &str,
    [aa, ab]: [&Option<Adapter>; 2],
    plane: Option<[&Option<Adapter>; 2]>,
    (kept, beyond_model): (Option<&str>, TextBeyondModel),
) -> ((String, String, String), Origin) {
    let label = |x: &Option<Adapter>| match x {
        Some(x) => x.files.label.clone(),
        None => source::BASE.to_string(),
    };
    let what = |x: &Option<Adapter>| match x {
        Some(x) => x.describe(),
        None => "the base".to_string(),
    };
    let held = kept.map(|k| format!(" ({k})")).unwrap_or_default();
    let mut description = format!("base {}{held} + {} ↔ {}", base.label(), what(aa), what(ab));
    if let Some([ac, ad]) = plane {
        description.push_str(&format!(" + β·({} − A)", what(ac)));
        if let Some(d) = ad {
            description.push_str(&format!(" + γ·({} − A)", d.describe()));
        }
    }
    let adapter_files = |x: &Option<Adapter>| match x {
        Some(x) => vec![x.files.config.clone(), x.files.weights.clone()],
        None => Vec::new(),
    };
    let fourth = plane.and_then(|[_, ad]| ad.as_ref().map(|_| ad));
    let base_files = source_files(base);
    let origin = Origin {
        model: base.files.clone(),
        sources: [
            Some(("a".into(), label(aa), adapter_files(aa))),
            Some(("b".into(), label(ab), adapter_files(ab))),
            plane.map(|[ac, _]| ("c".into(), label(ac), adapter_files(ac))),
            fourth.map(|ad| ("d".into(), label(ad), adapter_files(ad))),
            Some(("base".into(), base_spec.to_string(), base_files)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        quantization: base
            .weights
            .quantization()
            .map(|q| vec![("base".to_string(), q)])
            .unwrap_or_default(),
        beyond_model,
    };
    ((label(aa), label(ab), description), origin)
}

/// p(token) from a row of logits (softmax in f64).
/// What the header adds after "A ↔ B" for a path other than the line: the method, the
/// layers' rules.
fn path_note(method: Method, layers: Option<&LayerAlphas>) -> Option<String> {
    let mut parts = Vec::new();
    if method != Method::Linear {
        parts.push(method.name().to_string());
    }
    if let Some(l) = layers {
        parts.push(format!("α per layer {}", l.spec()));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn probability(logits: &[f32], token: u32) -> Result<f32> {
    let at = *logits
        .get(token as usize)
        .ok_or_else(|| err!(Invalid, "token id {token} is outside the vocabulary"))?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let z: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    Ok((((at - max) as f64).exp() / z) as f32)
}

fn weights_vb<'a>(
    weights: &BlendedWeights,
    which: Buffer,
    device: &Device,
) -> Result<VarBuilder<'a>> {
    Ok(VarBuilder::from_tensors(
        weights.views(which)?,
        weights.dtype,
        device,
    ))
}

/// The dtype the blended tensors `names` of `checkpoints` (each endpoint's, in which they
/// may be stored at different widths) are held in: `asked`, or
/// [`dtype_choice::auto`](crate::dtype_choice::auto) from all their stored dtypes and the
/// largest.
fn held_dtype(
    asked: Option<DType>,
    checkpoints: &[&Checkpoint],
    names: &[String],
    device: &Device,
) -> DType {
    asked.unwrap_or_else(|| {
        let largest = names
            .iter()
            .map(|n| {
                checkpoints[0].weights.tensors[n]
                    .shape
                    .iter()
                    .product::<usize>()
            })
            .max()
            .unwrap_or(0);
        let choices: Vec<DType> = checkpoints
            .iter()
            .map(|c| {
                let stored: Vec<_> = names
                    .iter()
                    .map(|n| native_dtype(c.weights.tensors[n].dtype))
                    .collect();
                crate::dtype_choice::auto(&stored, device, largest)
            })
            .collect();
        // Endpoints that would be held at different widths are held in f32, which rounds
        // neither (α = 1 is then B as B alone runs).
        match choices.split_first() {
            Some((first, rest)) if rest.iter().all(|d| d == first) => *first,
            _ => DType::F32,
        }
    })
}

/// Build a model whose weights are views of one of the pair's buffers.
pub fn build_model(
    c: &Checkpoint,
    weights: &BlendedWeights,
    which: Buffer,
    device: &Device,
) -> Result<Model> {
    Ok(Model::load(&c.config, weights_vb(weights, which, device)?)?)
}

/// The files that identify a model for an export's recipe: its config and weights (one GGUF
/// file is both).
fn source_files(c: &Checkpoint) -> Vec<std::path::PathBuf> {
    let mut f = vec![c.files.config.clone()];
    f.extend(c.files.weights.iter().cloned());
    f.dedup();
    f
}

/// α per layer over adapters: each base tensor's factor (mergekit's gradients over the
/// layers), by name. Tensors an adapter replaces whole (modules_to_save) are refused: the
/// batched rows blend them on the line.
fn adapter_factors(
    layers: Option<&LayerAlphas>,
    base: &Checkpoint,
    names: &[String],
    sides: &[Option<Adapter>; 4],
) -> Result<Option<std::collections::HashMap<String, f64>>> {
    let Some(layers) = layers else {
        return Ok(None);
    };
    crate::weights::adapters::refuse_replacements(
        sides.each_ref().map(Option::as_ref),
        "α per layer over adapters moves low-rank updates only",
    )?;
    let layout = base_layout(base, names);
    let f = layers.factors(&layout, base.config.layers())?;
    Ok(Some(
        layout.slots.iter().map(|s| s.name.clone()).zip(f).collect(),
    ))
}

/// The layout of the base's tensors `names` (names and shapes: what α per layer's filters are
/// checked against).
fn base_layout(base: &Checkpoint, names: &[String]) -> crate::weights::flat::FlatLayout {
    crate::weights::flat::FlatLayout::new(
        names
            .iter()
            .map(|n| (n.clone(), base.weights.tensors[n].shape.clone())),
        DType::F32,
    )
}

/// The base of an adapter pair: `--base`, else the base the adapters name.
fn choose_base(
    given: Option<&str>,
    sides: [Option<&crate::formats::adapter::AdapterFiles>; 4],
) -> Result<String> {
    if let Some(b) = given {
        return Ok(b.to_string());
    }
    // Each base with the adapter that names it, "--a X" (a recipe's load rewrites that as the
    // recipe's model X).
    let mut named: Vec<(String, String)> = Vec::new();
    for (flag, f) in ["--a", "--b", "--c", "--d"].into_iter().zip(sides) {
        let Some(f) = f else { continue };
        let text = std::fs::read_to_string(&f.config)
            .with_context(|| format!("{}: cannot read", f.config.display()))?;
        let config = crate::formats::adapter::AdapterConfig::parse(&text, &f.config)?;
        if let Some(base) = config.base_model {
            // A relative path is taken from the working directory, else from the adapter's.
            let p = std::path::Path::new(&base);
            let base = if p.is_relative() && !p.exists() && f.dir.join(p).exists() {
                f.dir.join(p).display().to_string()
            } else {
                base
            };
            named.push((
                format!("{flag} {}", f.label),
                with_revision(base, config.base_revision.as_deref()),
            ));
        }
    }
    match named.as_slice() {
        [] => bail!(
            Invalid,
            "the adapters do not name their base (base_model_name_or_path): pass --base"
        ),
        [(_, b), rest @ ..] => match rest.iter().find(|(_, y)| !same_place(b, y)) {
            None => Ok(b.clone()),
            Some((fy, y)) => bail!(
                Mismatch,
                "the adapters name different bases ({b} for {}, {y} for {fy}): pass --base to choose",
                named[0].0
            ),
        },
    }
}

/// A base named by Hub id at the revision PEFT recorded (its `revision`), as PEFT loads it: a
/// local path, or an id that names its own revision, stays as it is.
fn with_revision(base: String, revision: Option<&str>) -> String {
    // main is what an id without one is read at.
    match revision.filter(|r| *r != "main") {
        Some(rev)
            if !std::path::Path::new(&base).exists()
                && !base.contains('@')
                && crate::formats::source::HubId::parse(&base).is_some() =>
        {
            format!("{base}@{rev}")
        }
        _ => base,
    }
}

/// Two names of one base: equal, or the same directory reached two ways.
fn same_place(x: &str, y: &str) -> bool {
    x == y
        || matches!(
            (std::fs::canonicalize(x), std::fs::canonicalize(y)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The tokenizer, end-of-text ids and context of a checkpoint, checked against its vocabulary.
fn text_spec(c: &Checkpoint, tokenizer: Tokenizer) -> Result<TextSpec> {
    let vocab = c.config.vocab_size();
    if tokenizer.get_vocab_size(true) > vocab {
        bail!(
            Mismatch,
            "{}: the tokenizer has {} tokens but the model only {vocab}",
            c.files.tokenizer.display(),
            tokenizer.get_vocab_size(true)
        );
    }
    Ok(TextSpec {
        eos: eos_ids(&c.config, &tokenizer, &c.files.config),
        max_positions: c.config.max_positions(),
        memory: crate::generate::RowMemory::of(&c.config, DType::F32),
        tokenizer,
        stop: Vec::new(),
        chat: None,
    })
}

/// Two or more full models speak as all of them: A's tokenizer (the others' are checked
/// against it), every endpoint's end tokens (a blend may end a text as either endpoint would;
/// A's alone under `--allow-tokenizer-mismatch`, where the others' ids name other tokens), the
/// shortest context among them, and the chat template of the first endpoint that has one (A,
/// then B, …), so that with a base and its instruct model either way round every column is
/// prompted alike.
fn pair_text_spec(
    first: &Checkpoint,
    others: &[&Checkpoint],
    tokenizer: Tokenizer,
    opts: &LoadOptions,
) -> Result<(TextSpec, TextBeyondModel)> {
    let mut text = text_spec(first, tokenizer)?;
    let own_end_tokens = text.eos.clone();
    for c in others {
        if !opts.allow_tokenizer_mismatch {
            let ids = eos_ids(&c.config, &text.tokenizer, &c.files.config);
            text.eos.extend(ids);
        }
        text.max_positions = text.max_positions.min(c.config.max_positions());
    }
    text.eos.sort_unstable();
    text.eos.dedup();
    // Under --allow-tokenizer-mismatch another endpoint's template speaks its own tokens.
    let endpoints = match opts.allow_tokenizer_mismatch {
        true => &[][..],
        false => others,
    };
    let mut chat = None;
    for (i, c) in std::iter::once(first)
        .chain(endpoints.iter().copied())
        .enumerate()
    {
        if let Some(t) = template_read(|| model_template(c), opts)? {
            chat = Some((i, t));
            break;
        }
    }
    let (i, chat) = chat.unzip();
    let beyond = TextBeyondModel {
        chat_template: chat
            .as_ref()
            .filter(|_| i > Some(0))
            .map(|t| t.source().to_string()),
        end_tokens: (text.eos != own_end_tokens).then(|| text.eos.clone()),
    };
    if opts.chat_template {
        text.chat = chat;
    }
    Ok((text, beyond))
}

/// An adapter pair's text: the base's tokenizer, held to any tokenizer an adapter's folder
/// carries (training scripts save one beside the adapter; one that splits text otherwise
/// would feed the adapter ids it was not trained on), and the chat template of the first
/// endpoint that has one. An adapter's own template (beside it) is its endpoint's; an
/// endpoint without one speaks the base's. So: A's own, the base's, then B's, C's, D's own.
fn adapter_text_spec(
    base: &Checkpoint,
    sides: &[Option<Adapter>; 4],
    tokenizer: Tokenizer,
    opts: &LoadOptions,
) -> Result<(TextSpec, TextBeyondModel)> {
    use crate::generate::chat::ChatTemplate;
    let beside = |x: &Adapter| x.files.dir.join("tokenizer.json");
    // Under --allow-tokenizer-mismatch the base's tokenizer and template alone are used.
    let adapters: Vec<&Adapter> = match opts.allow_tokenizer_mismatch {
        true => Vec::new(),
        false => sides.iter().flatten().collect(),
    };
    for x in &adapters {
        let own = beside(x);
        if own.is_file() {
            let theirs = crate::formats::tokenizer::load_tokenizer(&own)?;
            crate::formats::tokenizer::check_tokenizers(
                &tokenizer,
                &base.files.tokenizer,
                &theirs,
                &own,
            )?;
        }
    }
    // An adapter's template takes the special tokens' texts from beside it, else the base's.
    let own_template = |x: &Option<Adapter>| -> Result<Option<(ChatTemplate, bool)>> {
        match x.as_ref().filter(|_| !opts.allow_tokenizer_mismatch) {
            Some(x) => Ok(template_read(|| ChatTemplate::of(&beside(x)), opts)?
                .map(|t| (t.with_tokens_of(&base.files.tokenizer), true))),
            None => Ok(None),
        }
    };
    let mut chat = own_template(&sides[0])?;
    if chat.is_none() {
        chat = template_read(|| model_template(base), opts)?.map(|t| (t, false));
    }
    for x in &sides[1..] {
        if chat.is_none() {
            chat = own_template(x)?;
        }
    }
    let mut text = text_spec(base, tokenizer)?;
    let beyond = TextBeyondModel {
        chat_template: chat
            .as_ref()
            .filter(|(_, theirs)| *theirs)
            .map(|(t, _)| t.source().to_string()),
        end_tokens: None,
    };
    if opts.chat_template {
        text.chat = chat.map(|(t, _)| t);
    }
    Ok((text, beyond))
}

/// A model's chat template: its tokenizer's, else its model file's (a GGUF read with a
/// tokenizer.json given apart).
fn model_template(c: &Checkpoint) -> Result<Option<crate::generate::chat::ChatTemplate>> {
    crate::generate::chat::ChatTemplate::of_model(&c.files.tokenizer, &c.files.config)
}

/// A template read for prompts (and for exports, which carry it even where prompts skip it):
/// one that cannot be read is an error, unless prompts skip templates (`--no-chat-template`),
/// where it is read as absent. Reading one runs nothing.
fn template_read<T>(
    read: impl FnOnce() -> Result<Option<T>>,
    opts: &LoadOptions,
) -> Result<Option<T>> {
    match (read(), opts.chat_template) {
        (Err(_), false) => Ok(None),
        (read, _) => read,
    }
}

/// Every token that ends a generation: the config's EOS, generation_config.json's beside it,
/// and the end-of-text and end-of-turn tokens the tokenizer holds as special (a chat model may
/// emit `<|endoftext|>` where its config names only `<|im_end|>`). A GGUF file holds its own
/// (a folder of GGUF files may hold another model's generation_config.json).
fn eos_ids(config: &ModelConfig, tokenizer: &Tokenizer, config_file: &std::path::Path) -> Vec<u32> {
    let mut ids = config.eos_ids();
    let dir = match crate::formats::gguf::is_gguf(config_file) {
        true => None,
        false => config_file.parent(),
    };
    if let Some(text) =
        dir.and_then(|d| std::fs::read_to_string(d.join("generation_config.json")).ok())
    {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            match &v["eos_token_id"] {
                serde_json::Value::Number(n) => ids.extend(n.as_u64().map(|x| x as u32)),
                serde_json::Value::Array(a) => {
                    ids.extend(a.iter().filter_map(|x| x.as_u64()).map(|x| x as u32))
                }
                _ => {}
            }
        }
    }
    let specials = tokenizer.get_added_tokens_decoder();
    for name in [
        "</s>",
        "<|endoftext|>",
        "<|im_end|>",
        "<|end_of_text|>",
        "<|eot_id|>",
        "<|end|>",
        "<end_of_turn>",
    ] {
        if let Some(id) = tokenizer.token_to_id(name) {
            if specials.get(&id).is_some_and(|t| t.special) {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// One model loaded on its own through candle's safetensors loader, with no blending: the
/// independent path that tests hold the blended engine to at α = 0 and α = 1.
pub struct Standalone {
    pub model: Model,
    text: TextSpec,
}

impl Standalone {
    pub fn load(spec: &str, dtype: DType, device: &Device) -> Result<Self> {
        let path = std::path::Path::new(spec);
        if crate::formats::gguf::is_gguf(path) {
            bail!(
                Invalid,
                "{spec}: a GGUF file cannot be a judge; give a Hugging Face model (a directory \
                 with config.json and safetensors, or a Hub id)"
            );
        }
        if source::is_adapter_dir(path) {
            bail!(
                Invalid,
                "{spec}: an adapter cannot be a judge on its own; give a full Hugging Face model \
                 (or judge with an endpoint: a or b)"
            );
        }
        let files = source::resolve(spec)?;
        let config = ModelConfig::load(&files.config)?;
        let tokenizer = crate::formats::tokenizer::load_tokenizer(&files.tokenizer)?;
        // SAFETY: read-only maps of files we do not modify.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device)? };
        let model = Model::load(&config, vb)?;
        Ok(Self {
            text: TextSpec {
                eos: eos_ids(&config, &tokenizer, &files.config),
                max_positions: config.max_positions(),
                memory: crate::generate::RowMemory::of(
                    &config,
                    crate::model::compute_dtype(dtype, device),
                ),
                tokenizer,
                stop: Vec::new(),
                chat: None,
            },
            model,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.text.tokenizer
    }

    pub fn generator(&self) -> Generator<'_> {
        self.text.generator(&self.model)
    }
}

/// A fixed text under the model at one α.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextScore {
    pub alpha: Alpha,
    pub text: String,
    pub token_ids: Vec<u32>,
    /// Each token's byte range in `text` (empty for tokens the tokenizer added).
    pub offsets: Vec<(usize, usize)>,
    /// Tokens 1.. under the model (token 0 has nothing before it): one fewer than the ids.
    pub tokens: Vec<crate::generate::token_info::TokenInfo>,
    /// −Σ log p over `tokens`.
    pub nll: f64,
    pub perplexity: f64,
}

impl TextScore {
    /// log p(token i | tokens before it) for i ≥ 1 (natural log).
    pub fn logprobs(&self) -> Vec<f32> {
        self.tokens.iter().map(|t| t.logprob).collect()
    }
}
