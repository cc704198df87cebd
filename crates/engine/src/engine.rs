//! The engine: a validated pair, its blended weights, one model reading them, a tokenizer, and
//! generation. It knows nothing of terminals; the CLI, the UI's worker thread and the
//! benchmarks drive this one API.

use crate::alpha::{alphas_of, Alpha, IntoAlpha};
use crate::checkpoint::{native_dtype, Checkpoint};
use crate::config::ModelConfig;
use crate::error::{bail, Context, Error, Result};
use crate::generate::{Cancel, Generation, GenerationParams, Generator, TextSpec};
use crate::memory::{check_fits, device_memory, device_name};
use crate::model::param::Mix;
use crate::model::Model;
use crate::pair;
use crate::source::{self, ModelFiles};
use crate::weights::{BlendedWeights, Buffer};
use candle_core::{DType, Device};
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
    /// None: f32 on the CPU (candle's fastest CPU path), the checkpoint's own dtype on a GPU.
    pub dtype: Option<DType>,
    pub allow_tokenizer_mismatch: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            device: DeviceChoice::Auto,
            dtype: None,
            allow_tokenizer_mismatch: false,
        }
    }
}

/// How several columns waiting with one prompt are generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ColumnsMode {
    /// Whichever measures faster for the number of columns on this machine and model.
    #[default]
    Auto,
    /// One batch, each row at its own α, read from both endpoints.
    Batched,
    /// Re-blend the working weights to each column's α in turn.
    Reblend,
}

/// What the UI header and the JSON output say about the loaded pair.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairInfo {
    pub a: String,
    pub b: String,
    pub architecture: String,
    pub params: usize,
    pub dtype: String,
    pub device: String,
    /// Bytes of one of the three flat buffers.
    pub buffer_bytes: usize,
    /// On a GPU after loading: bytes in use and in total on the device.
    pub gpu_memory: Option<(u64, u64)>,
}

pub struct Engine {
    pub info: PairInfo,
    weights: BlendedWeights,
    model: Model,
    /// Views of both endpoints (no extra memory), for columns generated as one batch.
    pair_model: Model,
    /// Per-token step times measured on first use, by batch size (1: the working model).
    step_times: std::collections::HashMap<usize, Duration>,
    columns_mode: ColumnsMode,
    text: TextSpec,
}

impl Engine {
    /// Load a pair from two sources (directories or Hub ids).
    pub fn load(a: &str, b: &str, opts: &LoadOptions) -> Result<Self> {
        Self::load_files(source::resolve(a)?, source::resolve(b)?, opts)
    }

    pub fn load_files(a: ModelFiles, b: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let device = opts.device.open()?;
        let tok_a = pair::load_tokenizer(&a.tokenizer)?;
        let tok_b = pair::load_tokenizer(&b.tokenizer)?;
        if !opts.allow_tokenizer_mismatch {
            pair::check_tokenizers(&tok_a, &a.tokenizer, &tok_b, &b.tokenizer)?;
        }
        let ca = Checkpoint::open(a)?;
        let cb = Checkpoint::open(b)?;
        pair::validate(&ca, &cb)?;
        let names = pair::blended_names(&ca);
        let dtype = match opts.dtype {
            Some(d) => d,
            None if device.is_cpu() => DType::F32,
            None => names
                .first()
                .and_then(|n| native_dtype(ca.tensors[n].dtype))
                .unwrap_or(DType::F32),
        };
        let layout_bytes = crate::weights::FlatLayout::new(
            names
                .iter()
                .map(|n| (n.clone(), ca.tensors[n].shape.clone())),
            dtype,
        )
        .total
            * dtype.size_in_bytes();
        check_fits(&device, &ca.config, layout_bytes as u64, dtype)?;
        let weights = BlendedWeights::load(&ca, &cb, &names, dtype, &device)?;
        let model = build_model(&ca, &weights, Buffer::Working, &device)
            .with_context(|| format!("{}: cannot build the model", ca.files.config.display()))?;
        let pair_model = Model::load_pair(
            &ca.config,
            weights_vb(&weights, Buffer::A, &device)?,
            weights_vb(&weights, Buffer::B, &device)?,
        )?;
        let vocab = ca.config.vocab_size();
        if tok_a.get_vocab_size(true) > vocab {
            bail!(
                Mismatch,
                "{}: the tokenizer has {} tokens but the model only {vocab}",
                ca.files.tokenizer.display(),
                tok_a.get_vocab_size(true)
            );
        }
        let text = TextSpec {
            eos: eos_ids(&ca.config, &tok_a),
            max_positions: ca.config.max_positions(),
            tokenizer: tok_a,
        };
        let info = PairInfo {
            a: ca.label().to_string(),
            b: cb.label().to_string(),
            architecture: ca.config.architecture().to_string(),
            params: weights.layout.params(),
            dtype: dtype_name(dtype).to_string(),
            device: device_name(&device),
            buffer_bytes: weights.bytes(),
            gpu_memory: device_memory(&device).map(|(free, total)| (total - free, total)),
        };
        Ok(Self {
            info,
            weights,
            model,
            pair_model,
            step_times: Default::default(),
            columns_mode: ColumnsMode::Auto,
            text,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.text.tokenizer
    }

    pub fn weights(&self) -> &BlendedWeights {
        &self.weights
    }

    pub fn device(&self) -> &Device {
        self.model.device()
    }

    pub fn alpha(&self) -> Alpha {
        self.weights.alpha()
    }

    /// Re-blend the working weights in place. Returns the time the blend took.
    pub fn set_alpha(&mut self, alpha: impl IntoAlpha) -> Result<Duration> {
        self.weights.set_alpha(alpha.into_alpha()?)
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.generator().encode(text)
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
            .with_context(|| format!("at α = {}", self.alpha()))
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

    /// Whether `k` columns of `tokens` tokens are faster as one batch than re-blended one
    /// after another, from step times measured on this machine and model the first time each
    /// `k` is asked about (a few forward passes).
    pub fn prefer_batch(&mut self, k: usize, tokens: usize) -> Result<bool> {
        match self.columns_mode {
            _ if k < 2 => return Ok(false),
            ColumnsMode::Batched => return Ok(true),
            ColumnsMode::Reblend => return Ok(false),
            ColumnsMode::Auto => {}
        }
        let one = self.step_time(1)?;
        let many = self.step_time(k)?;
        let blend = self.weights.last_blend().unwrap_or_default();
        let sequential = k as f64 * (blend + one * tokens as u32).as_secs_f64();
        let batched = (many * tokens as u32).as_secs_f64();
        Ok(batched < sequential)
    }

    pub fn set_columns_mode(&mut self, mode: ColumnsMode) {
        self.columns_mode = mode;
    }

    /// Median time of one decode step at batch size `k` (k = 1: the working model).
    fn step_time(&mut self, k: usize) -> Result<Duration> {
        if let Some(t) = self.step_times.get(&k) {
            return Ok(*t);
        }
        let alphas: Vec<Alpha> = (0..k)
            .map(|i| Alpha::saturating(i as f64 / k as f64))
            .collect();
        let mix = self.mix(&alphas)?;
        let (model, mix) = if k == 1 {
            (&self.model, None)
        } else {
            (&self.pair_model, Some(&mix))
        };
        let steps = 4;
        let mut cache = model.new_cache(steps);
        let mut times = Vec::with_capacity(steps);
        let ids = candle_core::Tensor::zeros((k, 1), DType::U32, self.device())?;
        for _ in 0..steps {
            let t = std::time::Instant::now();
            model.forward_rows(&ids, &mut cache, mix)?;
            self.device().synchronize()?;
            times.push(t.elapsed());
        }
        times.sort();
        let t = times[steps / 2];
        self.step_times.insert(k, t);
        Ok(t)
    }

    /// Last-position logits of `ids` for each α, from the batched mode (f32, `[K][vocab]`).
    pub fn logits_columns(&self, ids: &[u32], alphas: &[impl IntoAlpha]) -> Result<Vec<Vec<f32>>> {
        let mix = self.mix(alphas)?;
        let mut cache = self.pair_model.new_cache(ids.len());
        let input = candle_core::Tensor::new(ids, self.device())?
            .unsqueeze(0)?
            .repeat((alphas.len(), 1))?;
        Ok(self
            .pair_model
            .forward_rows(&input, &mut cache, Some(&mix))?
            .to_vec2::<f32>()?)
    }

    /// The per-row interpolation weights for a batch at `alphas`.
    pub fn mix(&self, alphas: &[impl IntoAlpha]) -> Result<Mix> {
        Ok(Mix::new(&alphas_of(alphas)?, self.device())?)
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

/// Build a model whose weights are views of one of the pair's buffers.
pub fn build_model(
    c: &Checkpoint,
    weights: &BlendedWeights,
    which: Buffer,
    device: &Device,
) -> Result<Model> {
    Ok(Model::load(&c.config, weights_vb(weights, which, device)?)?)
}

/// EOS ids from the config, else the usual end-of-text tokens the tokenizer knows.
fn eos_ids(config: &ModelConfig, tokenizer: &Tokenizer) -> Vec<u32> {
    let ids = config.eos_ids();
    if !ids.is_empty() {
        return ids;
    }
    ["</s>", "<|endoftext|>", "<|im_end|>", "<|end_of_text|>"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect()
}

/// One model loaded on its own through candle's safetensors loader, with no blending: the
/// independent path that tests hold the blended engine to at α = 0 and α = 1.
pub struct Standalone {
    pub model: Model,
    text: TextSpec,
}

impl Standalone {
    pub fn load(spec: &str, dtype: DType, device: &Device) -> Result<Self> {
        let files = source::resolve(spec)?;
        let config = ModelConfig::load(&files.config)?;
        let tokenizer = pair::load_tokenizer(&files.tokenizer)?;
        // SAFETY: read-only maps of files we do not modify.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files.weights, dtype, device)? };
        let model = Model::load(&config, vb)?;
        Ok(Self {
            text: TextSpec {
                eos: eos_ids(&config, &tokenizer),
                max_positions: config.max_positions(),
                tokenizer,
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
