//! The engine: a validated pair, its blended weights, one model reading them, a tokenizer, and
//! generation. It knows nothing of terminals; the CLI, the UI's worker thread and the
//! benchmarks drive this one API.

use crate::alpha::{alphas_of, Alpha, IntoAlpha, MAX_ABS_ALPHA};
use crate::error::{bail, err, Context, Error, Result};
use crate::formats::config::ModelConfig;
use crate::formats::source::ModelFiles;
use crate::generate::{Cancel, Generation, GenerationParams, Generator, Step, TextSpec};
use crate::model::param::Mix;
use crate::model::Model;
use crate::weights::layers::{LayerAlphas, LayerStrip};
use crate::weights::slerp::Method;
use crate::weights::Weights;
use candle_core::{DType, Device};
use serde::Serialize;
use std::time::Duration;
use tokenizers::Tokenizer;

mod load;
mod standalone;
mod text_spec;

pub use load::build_model;
pub use standalone::Standalone;

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
            DeviceChoice::Cuda(n) => {
                let flag = match n {
                    0 => "--device cuda".to_string(),
                    n => format!("--device cuda:{n}"),
                };
                if !candle_core::utils::cuda_is_available() {
                    // candle's own words would only repeat it.
                    bail!(
                        Unsupported,
                        "{flag}: this build has no CUDA support (rebuild with --features cuda)"
                    );
                }
                Device::new_cuda(*n).with_context(|| format!("{flag}: cannot open this GPU"))
            }
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
    /// C's and D's weights over adapters (0 on the line, and for full models, whose plane
    /// never shares a batch).
    fn adapter_beyond(&self) -> [f64; 2] {
        match &self.weights {
            Weights::Adapters(w) => [w.beta(), w.gamma()],
            Weights::Quantized(w) => [w.beta(), w.gamma()],
            Weights::Full(_) | Weights::QuantizedPair(_) => [0.0, 0.0],
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
                    "α = {alpha} moves a tensor by {} (its largest factor on α, from α per layer or a recipe's weights, is {}); α × factor must be at most {MAX_ABS_ALPHA} in size",
                    crate::alpha::shown(moved),
                    crate::alpha::shown(reach)
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
        // Before the blend, and with no α named: neither depends on the point.
        if token_ids.len() < 2 {
            let n = token_ids.len();
            bail!(
                Invalid,
                "too short to score: {n} token{} (a BOS the tokenizer adds included); scoring needs at least 2",
                if n == 1 { "" } else { "s" }
            );
        }
        let context = self.generator().max_positions;
        if token_ids.len() > context {
            bail!(
                Invalid,
                "the text has {} tokens; the model's context is {context}",
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

/// p(token) from a row of logits (softmax in f64).
fn probability(logits: &[f32], token: u32) -> Result<f32> {
    let at = *logits
        .get(token as usize)
        .ok_or_else(|| err!(Invalid, "token id {token} is outside the vocabulary"))?;
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let z: f64 = logits.iter().map(|&x| ((x - max) as f64).exp()).sum();
    Ok((((at - max) as f64).exp() / z) as f32)
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
