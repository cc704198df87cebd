//! Command-line definitions.

use crate::engine::{DeviceChoice, GenerationParams, LoadOptions, SamplingParams};
use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lerpscope",
    version,
    about = "Steer a language model by interpolating the weights of two fine-tunes: θ(α) = θ_A + α·(θ_B − θ_A)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the terminal UI on a pair (with no command: on the demo pair in assets/).
    Tui(TuiArgs),
    /// Generate text from a prompt at several alphas.
    Generate(GenerateArgs),
    /// Measure the engine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Train a demo pair: tokenizer, base model, negative and positive fine-tunes.
    Train(TrainArgs),
    /// Perplexity of a text file under θ(α) for each α.
    Perplexity(PerplexityArgs),
    /// Sample on a grid of α, score attribute and fluency, write CSV/JSON and plots.
    Sweep(SweepArgs),
}

/// The defaults are the demo pair's recipe (assets/demo/recipe.json).
#[derive(Args, Debug)]
pub struct TrainArgs {
    /// Directory with base.txt, negative.txt and positive.txt (tools/demo/prepare_corpus.py).
    #[arg(long)]
    pub corpus: std::path::PathBuf,
    /// Output directory; stages whose output exists are skipped.
    #[arg(long)]
    pub out: std::path::PathBuf,
    #[arg(long, default_value_t = 4096)]
    pub vocab_size: usize,
    #[arg(long, default_value_t = 192)]
    pub hidden_size: usize,
    #[arg(long, default_value_t = 512)]
    pub intermediate_size: usize,
    #[arg(long, default_value_t = 4)]
    pub layers: usize,
    #[arg(long, default_value_t = 6)]
    pub heads: usize,
    #[arg(long, default_value_t = 2)]
    pub kv_heads: usize,
    #[arg(long, default_value_t = 256)]
    pub context: usize,
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 2400)]
    pub pretrain_steps: usize,
    #[arg(long, default_value_t = 2e-3)]
    pub pretrain_lr: f64,
    #[arg(long, default_value_t = 600)]
    pub finetune_steps: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub finetune_lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl TrainArgs {
    pub fn recipe(&self) -> crate::train::Recipe {
        crate::train::Recipe {
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            layers: self.layers,
            heads: self.heads,
            kv_heads: self.kv_heads,
            context: self.context,
            seq_len: self.seq_len,
            batch: self.batch,
            pretrain_steps: self.pretrain_steps,
            pretrain_lr: self.pretrain_lr,
            finetune_steps: self.finetune_steps,
            finetune_lr: self.finetune_lr,
            warmup: self.warmup,
            seed: self.seed,
        }
    }
}

/// The two endpoints and how to load them.
#[derive(Args, Debug, Clone)]
pub struct PairArgs {
    /// Endpoint A (α = 0): a model directory or a Hub id org/name[@revision].
    #[arg(long)]
    pub a: String,
    /// Endpoint B (α = 1): a model directory or a Hub id org/name[@revision].
    #[arg(long)]
    pub b: String,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// A pair that defaults to the demo pair in assets/.
#[derive(Args, Debug, Clone)]
pub struct DemoOrPair {
    /// Endpoint A (α = 0); the demo pair's negative model when omitted.
    #[arg(long, requires = "b")]
    pub a: Option<String>,
    /// Endpoint B (α = 1); the demo pair's positive model when omitted.
    #[arg(long, requires = "a")]
    pub b: Option<String>,
    #[command(flatten)]
    pub load: LoadArgs,
}

impl DemoOrPair {
    /// The two endpoints as given, or the demo pair's.
    pub fn endpoints(&self) -> (String, String) {
        match (&self.a, &self.b) {
            (Some(a), Some(b)) => (a.clone(), b.clone()),
            _ => demo_pair(),
        }
    }
}

/// The demo pair in assets/, found from the working directory or the source tree.
pub fn demo_pair() -> (String, String) {
    let local = std::path::PathBuf::from("assets/demo");
    let root = if local.join("negative").is_dir() {
        local
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
    };
    (
        root.join("negative").display().to_string(),
        root.join("positive").display().to_string(),
    )
}

#[derive(Args, Debug, Clone)]
pub struct LoadArgs {
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto, f32, f16 or bf16 (auto: f32 on the CPU, the checkpoint's dtype on a GPU).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Blend endpoints whose tokenizers differ (A's tokenizer is used).
    #[arg(long)]
    pub allow_tokenizer_mismatch: bool,
}

impl LoadArgs {
    pub fn options(&self) -> Result<LoadOptions> {
        Ok(LoadOptions {
            device: self.device.parse::<DeviceChoice>()?,
            dtype: crate::engine::parse_dtype(&self.dtype)?,
            allow_tokenizer_mismatch: self.allow_tokenizer_mismatch,
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct SamplingArgs {
    /// Tokens to generate per alpha.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// 0 for greedy decoding.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    /// Nucleus sampling mass (1 disables it).
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Keep only the K most likely tokens (0 disables it).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Penalty for tokens already seen (1 disables it).
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    /// Random seed; every alpha uses the same random stream.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl SamplingArgs {
    pub fn params(&self) -> Result<GenerationParams> {
        let sampling = SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
        };
        sampling.validate()?;
        Ok(GenerationParams {
            max_tokens: self.max_tokens,
            sampling,
        })
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// Comma-separated alphas, e.g. 0,0.5,1 (values outside [0, 1] extrapolate).
    #[arg(long, default_value = "0,0.5,1", allow_hyphen_values = true)]
    pub alphas: String,
    #[arg(long)]
    pub prompt: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// One JSON object per alpha per line.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct TuiArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// The columns' alphas.
    #[arg(long, default_value = "0,0.5,1", allow_hyphen_values = true)]
    pub alphas: String,
    #[arg(long, default_value = "The food at this place")]
    pub prompt: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The slider's visible range, LOW:HIGH.
    #[arg(long, default_value = "-1:2", allow_hyphen_values = true)]
    pub range: String,
    /// How columns that restart together are generated: one batch with a per-row α, one
    /// re-blend per column, or whichever measures faster here.
    #[arg(long, value_enum, default_value = "auto")]
    pub columns: crate::engine::ColumnsMode,
}

impl TuiArgs {
    /// The arguments of a bare `lerpscope`: every default.
    pub fn defaults() -> Self {
        match Cli::parse_from(["lerpscope", "tui"]).command {
            Some(Command::Tui(args)) => args,
            _ => unreachable!("`tui` parses as the tui command"),
        }
    }
}

pub fn parse_range(s: &str) -> Result<(f64, f64)> {
    let Some((lo, hi)) = s.split_once(':') else {
        bail!("--range: expected LOW:HIGH, got {s:?}");
    };
    let (lo, hi) = (parse_alpha(lo, "--range")?, parse_alpha(hi, "--range")?);
    if lo >= hi {
        bail!("--range: LOW must be below HIGH, got {s:?}");
    }
    Ok((lo, hi))
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    /// START:STOP:STEP (inclusive) or a comma-separated list.
    #[arg(long, default_value = "0:1:0.25", allow_hyphen_values = true)]
    pub alphas: String,
    /// A file with one prompt per line, or `builtin` (neutral prompts in assets/prompts.txt).
    #[arg(long, default_value = "builtin")]
    pub prompts: String,
    /// Use only the first K prompts.
    #[arg(long)]
    pub num_prompts: Option<usize>,
    /// Samples per prompt per α.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    /// Tokens per sample.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.9)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fluency judge: a (endpoint A), b, blend (the model that wrote the text), or a model.
    #[arg(long, default_value = "blend")]
    pub ppl_ref: String,
    /// Also score with a sequence classifier (BERT, DistilBERT, RoBERTa, XLM-R; directory or Hub id).
    #[arg(long)]
    pub classifier: Option<String>,
    /// The classifier label whose probability is the attribute.
    #[arg(long, default_value = "positive")]
    pub label: String,
    /// Output directory; rerunning into it resumes an interrupted sweep.
    #[arg(long)]
    pub out: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub pair: PairArgs,
    #[arg(long, default_value = "0,0.5,1", allow_hyphen_values = true)]
    pub alphas: String,
    /// The text to score.
    #[arg(long)]
    pub file: std::path::PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Time the in-place blend against a plain copy of the same buffers.
    Blend(BenchBlendArgs),
    /// Key-press-to-frame latency of the UI while its columns generate (headless terminal).
    Ui(BenchUiArgs),
    /// Time to first token after an α change, and decode tokens/s at one column.
    Generate(BenchGenerateArgs),
    /// Wall time to fill K columns at K alphas: re-blending per column, and as one batch,
    /// against one column.
    Columns(BenchColumnsArgs),
}

/// The pair a benchmark runs on: two endpoints, a random pair of a named shape, or (neither)
/// the demo pair.
#[derive(Args, Debug, Clone)]
pub struct BenchModelArgs {
    #[arg(long, requires = "b", conflicts_with = "shape")]
    pub a: Option<String>,
    #[arg(long, requires = "a")]
    pub b: Option<String>,
    /// A random pair of this shape (written once under the temporary directory).
    #[arg(long, value_enum)]
    pub shape: Option<crate::fixtures::Shape>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Prompt length in tokens (ids 1..=N, the same for every α and for the reference).
    #[arg(long, default_value_t = 16)]
    pub prompt_tokens: usize,
    /// Tokens to generate per column (end-of-text is ignored, so every run makes exactly N).
    #[arg(long, default_value_t = 32)]
    pub tokens: usize,
    /// Timed repetitions; medians are reported.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    #[arg(long)]
    pub json: bool,
}

impl BenchModelArgs {
    /// Endpoint sources and a label for the output.
    pub fn endpoints(&self) -> Result<(String, String, String)> {
        Ok(match (&self.a, &self.b, self.shape) {
            (Some(a), Some(b), _) => (a.clone(), b.clone(), format!("{a} ↔ {b}")),
            (_, _, Some(shape)) => {
                let (a, b) = shape.pair()?;
                let s = |p: std::path::PathBuf| p.display().to_string();
                (s(a), s(b), shape.name().to_string())
            }
            _ => {
                let (a, b) = demo_pair();
                (a, b, "demo pair".to_string())
            }
        })
    }
}

#[derive(Args, Debug)]
pub struct BenchGenerateArgs {
    #[command(flatten)]
    pub model: BenchModelArgs,
}

#[derive(Args, Debug)]
pub struct BenchColumnsArgs {
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Columns, at alphas spread evenly over [0, 1].
    #[arg(long, default_value_t = 4)]
    pub k: usize,
}

#[derive(Args, Debug)]
pub struct BenchUiArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// Key presses to send.
    #[arg(long, default_value_t = 200)]
    pub keys: usize,
    /// Milliseconds between key presses.
    #[arg(long, default_value_t = 25)]
    pub interval_ms: u64,
    /// Tokens per column.
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BenchBlendArgs {
    /// Endpoint A (omit both endpoints to use --params random weights).
    #[arg(long, requires = "b")]
    pub a: Option<String>,
    #[arg(long, requires = "a")]
    pub b: Option<String>,
    /// Parameters of a random working set, when no pair is given.
    #[arg(long, default_value_t = 100_000_000)]
    pub params: usize,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Timed repetitions of each operation.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long)]
    pub json: bool,
}

/// The largest |α| accepted: far beyond any useful extrapolation, small enough that a typo
/// (1e9 for 1e-9) is caught instead of silently producing a model of noise.
pub const MAX_ABS_ALPHA: f64 = 1000.0;

pub fn parse_alpha(s: &str, flag: &str) -> Result<f64> {
    let a: f64 = match s.trim().parse() {
        Ok(a) => a,
        Err(_) => bail!("{flag}: {s:?} is not a number"),
    };
    if !a.is_finite() {
        bail!("{flag}: α must be finite, got {s}");
    }
    if a.abs() > MAX_ABS_ALPHA {
        bail!("{flag}: α = {s} is absurd (|α| must be at most {MAX_ABS_ALPHA}); 0 is A, 1 is B");
    }
    Ok(a)
}

pub fn parse_alphas(list: &str, flag: &str) -> Result<Vec<f64>> {
    let v: Vec<f64> = list
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| parse_alpha(s, flag))
        .collect::<Result<_>>()?;
    if v.is_empty() {
        bail!("{flag}: give at least one α");
    }
    Ok(v)
}
