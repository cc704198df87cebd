//! Tiny random models written as ordinary Hugging Face directories: for tests, benchmarks of a
//! given shape, and anyone who wants a pair to try the engine on without downloading one.

use crate::arch::tensors::parameters;
use crate::error::{bail, err, Context, Result};
use crate::formats::config::{DecoderConfig, Gpt2Config, ModelConfig, TokenIds};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A few lines to train the fixtures' byte-level BPE tokenizer on.
const TOKENIZER_TEXT: &str = "The movie was great and the food was good. I think that the film \
was bad. It was a terrible day, but the evening was lovely. What a wonderful story! I hated the \
ending, it was awful. The weather is nice today and the people are kind.";

pub fn tiny_llama_config(vocab: usize) -> DecoderConfig {
    DecoderConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: Some(2),
        head_dim: None,
        vocab_size: vocab,
        rms_norm_eps: 1e-5,
        rope_theta: 10_000.0,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        bos_token_id: Some(0),
        eos_token_id: Some(TokenIds::One(0)),
        rope_scaling: None,
        ..Default::default()
    }
}

pub fn tiny_gpt2_config(vocab: usize) -> Gpt2Config {
    Gpt2Config {
        n_embd: 32,
        n_layer: 2,
        n_head: 4,
        n_positions: 128,
        vocab_size: vocab,
        n_inner: None,
        layer_norm_epsilon: 1e-5,
        bos_token_id: Some(0),
        eos_token_id: Some(TokenIds::One(0)),
    }
}

/// Random values for each parameter: norm gains near 1, everything else N(0, scale).
pub fn random_weights(
    params: &[(String, Vec<usize>)],
    seed: u64,
    scale: f32,
) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut rng = StdRng::seed_from_u64(seed);
    params
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let gain = name.contains("norm") || name.contains("ln_");
            let values = (0..n)
                .map(|_| {
                    let u: f32 = rng.random::<f32>() * 2.0 - 1.0;
                    if gain && name.ends_with("weight") {
                        1.0 + 0.1 * u
                    } else {
                        scale * u * 1.7
                    }
                })
                .collect();
            (name.clone(), shape.clone(), values)
        })
        .collect()
}

/// Write tensors to a safetensors file in the given dtype ("F32", "F16" or "BF16").
pub fn write_safetensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: safetensors::Dtype,
) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| match dtype {
            safetensors::Dtype::F16 => v
                .iter()
                .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                .collect(),
            safetensors::Dtype::BF16 => v
                .iter()
                .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                .collect(),
            _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            Ok((
                name.clone(),
                safetensors::tensor::TensorView::new(dtype, shape.clone(), b)?,
            ))
        })
        .collect::<Result<_>>()?;
    let meta: Option<HashMap<String, String>> =
        Some([("format".to_string(), "pt".to_string())].into());
    safetensors::serialize_to_file(views, meta, path)
        .with_context(|| format!("{}: cannot write", path.display()))
}

/// Train the fixtures' tokenizer into `path` (a byte-level BPE of about `vocab` tokens).
pub fn write_tokenizer(path: &Path, vocab: usize) -> Result<tokenizers::Tokenizer> {
    // The training text under a name of this process's own, made new: two runs writing one
    // shape at once each have theirs, and no link planted at the name is written through.
    let text = path.with_extension(format!("txt.{}", crate::formats::files::own_suffix()));
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&text)
        .and_then(|mut f| std::io::Write::write_all(&mut f, TOKENIZER_TEXT.repeat(4).as_bytes()));
    made.with_context(|| format!("{}: cannot write", text.display()))?;
    let tok = crate::formats::tokenizer::train_tokenizer(std::slice::from_ref(&text), vocab, path);
    let _ = std::fs::remove_file(&text);
    tok
}

/// Write `bytes` to `path` through a file of this process's own beside it, renamed over
/// `path`: a link at `path` is replaced, not written through, and two writers do not collide.
fn put(path: &Path, bytes: impl AsRef<[u8]>) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let partial = path.with_file_name(format!(
        ".{name}.partial-{}",
        crate::formats::files::own_suffix()
    ));
    let written = std::fs::write(&partial, bytes).and_then(|()| std::fs::rename(&partial, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.with_context(|| format!("{}: cannot write", path.display()))
}

/// `create_dir_all`, its error naming the folder.
fn make_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))
}

/// A copy of `from` at `to`, as [`put`] writes.
fn copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("{}: cannot read", from.display()))?;
    put(to, bytes)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gpt2,
}

/// Write a tiny random model of `arch` into `dir` (config.json, model.safetensors,
/// tokenizer.json; a tokenizer.json already there is kept). The same seed gives the same
/// weights.
pub fn write_tiny_model(dir: &Path, arch: Arch, seed: u64) -> Result<()> {
    make_dir(dir)?;
    let tok_path = dir.join("tokenizer.json");
    let tok = if tok_path.exists() {
        crate::formats::tokenizer::load_tokenizer(&tok_path)?
    } else {
        write_tokenizer(&tok_path, 300)?
    };
    let vocab = tok.get_vocab_size(true);
    let config = match arch {
        Arch::Llama => ModelConfig::Decoder(tiny_llama_config(vocab)),
        Arch::Gpt2 => ModelConfig::Gpt2(tiny_gpt2_config(vocab)),
    };
    let params = parameters(&config);
    let config = crate::arch::config_json(&config)?;
    put(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&config)?,
    )?;
    write_safetensors(
        &dir.join("model.safetensors"),
        &random_weights(&params, seed, 0.2),
        safetensors::Dtype::F32,
    )
}

/// Two tiny random models of one architecture sharing one tokenizer: endpoints `a` and `b`.
pub fn write_tiny_pair(a: &Path, b: &Path, arch: Arch) -> Result<()> {
    write_tiny_model(a, arch, 1)?;
    make_dir(b)?;
    copy(&a.join("tokenizer.json"), &b.join("tokenizer.json"))?;
    write_tiny_model(b, arch, 2)
}

/// Model shapes the benchmarks run at, as random pairs: the demo pair's and common Hub
/// models' (same architecture, sizes and vocabulary; random weights, since timings do not
/// depend on the values). `phi3-mini-8l` is Phi-3-mini with 8 of its 32 layers: a full pair
/// of it (3 × 7.6 GB in bf16) does not fit this project's 24 GB machines; `phi-2-4l` is
/// Phi-2 with 4 of its 32 layers, for the same reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Demo,
    Smollm2_135m,
    Smollm2_1_7b,
    Qwen2_5_0_5b,
    Gemma3_270m,
    Phi3Mini8l,
    /// Pythia 160M (GPT-NeoX's block).
    Pythia160m,
    /// Phi-2 with 4 of its 32 layers (Phi's parallel LayerNorm block).
    Phi2_4l,
    Gpt2_124m,
    Gpt2_774m,
    /// Llama 3.2 1B (tied embeddings, 128k vocabulary).
    Llama3_2_1b,
    /// Llama 3 8B: for quantized files (`--quant`) only; a full pair is 32 GB in bf16.
    Llama3_8b,
}

/// The types a random quantized file of a shape is written in (`bench --quant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    Q4_0,
    Q4K,
    /// llama.cpp's Q4_K_M mix: Q4_K with Q6_K in some tensors.
    Q4KM,
    Q8_0,
}

impl std::str::FromStr for Quant {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "q4_0" => Quant::Q4_0,
            "q4_k" => Quant::Q4K,
            "q4_k_m" => Quant::Q4KM,
            "q8_0" => Quant::Q8_0,
            _ => {
                return Err(err!(
                    Invalid,
                    "unknown quantization {s:?} (q4_0, q4_k, q4_k_m, q8_0)"
                ))
            }
        })
    }
}

impl Quant {
    pub fn name(self) -> &'static str {
        match self {
            Quant::Q4_0 => "q4_0",
            Quant::Q4K => "q4_k",
            Quant::Q4KM => "q4_k_m",
            Quant::Q8_0 => "q8_0",
        }
    }

    fn scheme(self) -> crate::quantized::random::Scheme {
        use crate::quantized::{random::Scheme, QType};
        match self {
            Quant::Q4_0 => Scheme::One(QType::Q4_0),
            Quant::Q4K => Scheme::One(QType::Q4K),
            Quant::Q4KM => Scheme::Q4KM,
            Quant::Q8_0 => Scheme::One(QType::Q8_0),
        }
    }
}

impl std::str::FromStr for Shape {
    type Err = crate::Error;
    fn from_str(s: &str) -> Result<Self> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Shape::ALL.iter().map(|s| s.name()).collect();
                err!(
                    Invalid,
                    "unknown shape {s:?} (shapes: {})",
                    names.join(", ")
                )
            })
    }
}

impl Shape {
    pub const ALL: [Shape; 12] = [
        Shape::Demo,
        Shape::Smollm2_135m,
        Shape::Smollm2_1_7b,
        Shape::Qwen2_5_0_5b,
        Shape::Gemma3_270m,
        Shape::Phi3Mini8l,
        Shape::Pythia160m,
        Shape::Phi2_4l,
        Shape::Gpt2_124m,
        Shape::Gpt2_774m,
        Shape::Llama3_2_1b,
        Shape::Llama3_8b,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Demo => "demo",
            Shape::Smollm2_135m => "smollm2-135m",
            Shape::Smollm2_1_7b => "smollm2-1.7b",
            Shape::Qwen2_5_0_5b => "qwen2.5-0.5b",
            Shape::Gemma3_270m => "gemma3-270m",
            Shape::Phi3Mini8l => "phi3-mini-8l",
            Shape::Pythia160m => "pythia-160m",
            Shape::Phi2_4l => "phi-2-4l",
            Shape::Gpt2_124m => "gpt2-124m",
            Shape::Gpt2_774m => "gpt2-774m",
            Shape::Llama3_2_1b => "llama3.2-1b",
            Shape::Llama3_8b => "llama3-8b",
        }
    }

    /// This shape's config, read through its family's config.json reader.
    pub fn config(self) -> ModelConfig {
        let json = match self {
            Shape::Demo => llama_json(192, 512, 4, 6, 2, 4096, 256, 10_000.0),
            Shape::Smollm2_135m => llama_json(576, 1536, 30, 9, 3, 49152, 8192, 100_000.0),
            Shape::Smollm2_1_7b => llama_json(2048, 8192, 24, 32, 32, 49152, 8192, 130_000.0),
            Shape::Qwen2_5_0_5b => serde_json::json!({
                "architectures": ["Qwen2ForCausalLM"], "hidden_size": 896,
                "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768,
                "rope_theta": 1e6, "rms_norm_eps": 1e-6, "tie_word_embeddings": true,
                "use_sliding_window": false, "sliding_window": 32768, "max_window_layers": 21,
                "bos_token_id": 0, "eos_token_id": 0}),
            Shape::Gemma3_270m => serde_json::json!({
                "architectures": ["Gemma3ForCausalLM"], "hidden_size": 640,
                "intermediate_size": 2048, "num_hidden_layers": 18, "num_attention_heads": 4,
                "num_key_value_heads": 1, "head_dim": 256, "vocab_size": 262144,
                "max_position_embeddings": 32768, "rope_theta": 1e6,
                "rope_local_base_freq": 10000.0, "sliding_window": 512,
                "sliding_window_pattern": 6, "query_pre_attn_scalar": 256,
                "final_logit_softcapping": null, "bos_token_id": 0, "eos_token_id": 0}),
            Shape::Phi3Mini8l => serde_json::json!({
                "architectures": ["Phi3ForCausalLM"], "hidden_size": 3072,
                "intermediate_size": 8192, "num_hidden_layers": 8, "num_attention_heads": 32,
                "num_key_value_heads": 32, "vocab_size": 32064, "max_position_embeddings": 4096,
                "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "sliding_window": 2047,
                "tie_word_embeddings": false, "bos_token_id": 0, "eos_token_id": 0}),
            Shape::Pythia160m => serde_json::json!({
                "architectures": ["GPTNeoXForCausalLM"], "hidden_size": 768,
                "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12,
                "vocab_size": 50304, "max_position_embeddings": 2048, "rotary_pct": 0.25,
                "rotary_emb_base": 10000, "use_parallel_residual": true,
                "layer_norm_eps": 1e-5, "hidden_act": "gelu", "tie_word_embeddings": false,
                "bos_token_id": 0, "eos_token_id": 0}),
            Shape::Phi2_4l => serde_json::json!({
                "architectures": ["PhiForCausalLM"], "hidden_size": 2560,
                "intermediate_size": 10240, "num_hidden_layers": 4, "num_attention_heads": 32,
                "num_key_value_heads": 32, "vocab_size": 51200, "max_position_embeddings": 2048,
                "partial_rotary_factor": 0.4, "rope_theta": 10000.0, "layer_norm_eps": 1e-5,
                "hidden_act": "gelu_new", "tie_word_embeddings": false, "bos_token_id": 0,
                "eos_token_id": 0}),
            Shape::Llama3_2_1b => llama_json(2048, 8192, 16, 32, 8, 128256, 8192, 500_000.0),
            Shape::Llama3_8b => {
                let mut j = llama_json(4096, 14336, 32, 32, 8, 128256, 8192, 500_000.0);
                j["tie_word_embeddings"] = false.into();
                j
            }
            Shape::Gpt2_124m => gpt2_json(768, 12, 12),
            Shape::Gpt2_774m => gpt2_json(1280, 36, 20),
        };
        ModelConfig::parse(&json.to_string()).expect("every shape's config reads")
    }

    /// config.json and the parameter list of this shape.
    pub fn model(self) -> Result<(serde_json::Value, Vec<crate::arch::tensors::Parameter>)> {
        let c = self.config();
        Ok((crate::arch::config_json(&c)?, parameters(&c)))
    }

    /// The dtype a random pair of this shape is written in: bf16 (what such models ship in)
    /// for the shapes whose f32 pairs would take gigabytes of disk, f32 for the others.
    pub fn file_dtype(self) -> safetensors::Dtype {
        match self {
            Shape::Smollm2_1_7b
            | Shape::Qwen2_5_0_5b
            | Shape::Gemma3_270m
            | Shape::Phi3Mini8l
            | Shape::Phi2_4l
            | Shape::Llama3_2_1b
            | Shape::Llama3_8b => safetensors::Dtype::BF16,
            _ => safetensors::Dtype::F32,
        }
    }

    /// A random pair of this shape in [`Shape::file_dtype`], written once under `root` and
    /// reused: returns the directories of A and B.
    pub fn pair_in(self, root: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let dir = root.join(self.name());
        let (a, b) = (dir.join("a"), dir.join("b"));
        let files: Vec<PathBuf> = [&a, &b]
            .iter()
            .flat_map(|d| ["config.json", "tokenizer.json", "model.safetensors"].map(|f| d.join(f)))
            .collect();
        if written(&dir, &files) {
            return Ok((a, b));
        }
        if self == Shape::Llama3_8b {
            return Err(err!(
                Unsupported,
                "--shape llama3-8b: a full pair takes 32 GB in bf16; use it with --quant"
            ));
        }
        let (config, params) = self.model()?;
        for (seed, d) in [(1, &a), (2, &b)] {
            make_dir(d)?;
            put(
                &d.join("config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
            let tok = d.join("tokenizer.json");
            if seed == 1 {
                write_tokenizer(&tok, 300)?;
            } else {
                copy(&a.join("tokenizer.json"), &tok)?;
            }
            write_safetensors(
                &d.join("model.safetensors"),
                &random_weights(&params, seed, 0.02),
                self.file_dtype(),
            )?;
        }
        mark_written(&dir, &files)?;
        Ok((a, b))
    }

    /// The pair under the system's temporary directory.
    pub fn pair(self) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        self.pair_in(&std::env::temp_dir().join("lerpscope-shapes"))
    }

    /// A random GGUF of this shape in `quant` (see `quantized::random` for the per-tensor
    /// fallbacks) and a tokenizer.json beside it (the file has none), written once under
    /// `root`: the file.
    pub fn quantized_in(self, root: &Path, quant: Quant) -> Result<PathBuf> {
        let dir = root.join(self.name()).join(quant.name());
        let file = dir.join("model.gguf");
        let files = [file.clone(), dir.join("tokenizer.json")];
        if written(&dir, &files) {
            return Ok(file);
        }
        if matches!(self.config(), ModelConfig::Gpt2(_)) {
            return Err(err!(
                Unsupported,
                "--quant: random quantized files are written for Llama-family shapes"
            ));
        }
        make_dir(&dir)?;
        write_tokenizer(&dir.join("tokenizer.json"), 300)?;
        crate::quantized::random::write(&self.config(), quant.scheme(), &file, 1)?;
        mark_written(&dir, &files)?;
        Ok(file)
    }

    /// Two random rank-`rank` LoRA adapters on every linear layer of this shape's A model (the
    /// base, which they name by absolute path), written once under `root`: their directories.
    pub fn adapters_in(self, root: &Path, rank: usize) -> Result<(PathBuf, PathBuf)> {
        self.check_rank(rank)?;
        let (base, _) = self.pair_in(root)?;
        let dir = root.join(self.name()).join(format!("lora-r{rank}"));
        self.adapters_on(&base, &dir, rank)
    }

    /// [`Shape::adapters_in`] on this shape's random quantized file.
    pub fn quantized_adapters_in(
        self,
        root: &Path,
        quant: Quant,
        rank: usize,
    ) -> Result<(PathBuf, PathBuf)> {
        self.check_rank(rank)?;
        let base = self.quantized_in(root, quant)?;
        let dir = root
            .join(self.name())
            .join(quant.name())
            .join(format!("lora-r{rank}"));
        self.adapters_on(&base, &dir, rank)
    }

    /// Two random rank-`rank` LoRA adapters under `dir` on `base` (named by absolute path).
    fn adapters_on(self, base: &Path, dir: &Path, rank: usize) -> Result<(PathBuf, PathBuf)> {
        let (a, b) = (dir.join("a"), dir.join("b"));
        let files: Vec<PathBuf> = [&a, &b]
            .iter()
            .flat_map(|d| ["adapter_config.json", "adapter_model.safetensors"].map(|f| d.join(f)))
            .collect();
        if written(dir, &files) {
            return Ok((a, b));
        }
        let (_, params) = self.model()?;
        let linear = adapted(&params);
        let gpt2 = matches!(self, Shape::Gpt2_124m | Shape::Gpt2_774m);
        let base_abs = std::fs::canonicalize(base)?;
        for (seed, d) in [(11u64, &a), (12, &b)] {
            make_dir(d)?;
            let mut rng = StdRng::seed_from_u64(seed);
            let mut tensors = Vec::new();
            for (name, shape) in &linear {
                // nn.Linear is [out, in]; GPT-2's Conv1D is [in, out].
                let (out, inp) = if gpt2 {
                    (shape[1], shape[0])
                } else {
                    (shape[0], shape[1])
                };
                let module = name.trim_end_matches(".weight");
                let mut random = |n: usize, scale: f32| -> Vec<f32> {
                    (0..n)
                        .map(|_| scale * (rng.random::<f32>() * 2.0 - 1.0))
                        .collect()
                };
                tensors.push((
                    format!("base_model.model.{module}.lora_A.weight"),
                    vec![rank, inp],
                    random(rank * inp, 1.0 / (inp as f32).sqrt()),
                ));
                tensors.push((
                    format!("base_model.model.{module}.lora_B.weight"),
                    vec![out, rank],
                    random(out * rank, 0.02),
                ));
            }
            write_safetensors(
                &d.join("adapter_model.safetensors"),
                &tensors,
                safetensors::Dtype::F32,
            )?;
            let names: Vec<&str> = ADAPTED
                .into_iter()
                .filter(|t| linear.iter().any(|(n, _)| n.contains(&format!(".{t}."))))
                .collect();
            let config = serde_json::json!({
                "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none",
                "target_modules": names, "fan_in_fan_out": gpt2,
                "base_model_name_or_path": base_abs.display().to_string(),
            });
            put(
                &d.join("adapter_config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
        }
        mark_written(dir, &files)?;
        Ok((a, b))
    }
}

/// The module names random adapters target (Llama-family, then GPT-2's).
const ADAPTED: [&str; 12] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "qkv_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "gate_up_proj",
    "down_proj",
    "c_attn",
    "c_proj",
    "c_fc",
];

/// The matrices of `params` random adapters adapt.
fn adapted(params: &[(String, Vec<usize>)]) -> Vec<&(String, Vec<usize>)> {
    params
        .iter()
        .filter(|(n, s)| {
            s.len() == 2 && ADAPTED.iter().any(|t| n.ends_with(&format!(".{t}.weight")))
        })
        .collect()
}

impl Shape {
    /// A rank past every adapted matrix's smaller side adds nothing but bytes (gigabytes, at
    /// absurd ranks): refused before anything is written.
    pub fn check_rank(self, rank: usize) -> Result<()> {
        let (_, params) = self.model()?;
        let widest = adapted(&params)
            .iter()
            .map(|(_, s)| s[0].min(s[1]))
            .max()
            .unwrap_or(0);
        if rank > widest {
            bail!(
                Invalid,
                "--lora-rank {rank}: more than the {widest} that the widest adapted matrix of {} allows (a rank is at most a matrix's smaller side)",
                self.name()
            );
        }
        Ok(())
    }
}

/// Whether `dir`'s files were all written and are as they were then: its `complete` marker
/// records each file's size, so a file cut short since (a full disk, a truncation) is written
/// again rather than read as a broken model. A marker from before sizes were recorded is empty
/// and taken at its word.
fn written(dir: &Path, files: &[PathBuf]) -> bool {
    let Ok(marker) = std::fs::read_to_string(dir.join("complete")) else {
        return false;
    };
    marker.lines().all(|line| {
        let Some((size, name)) = line.split_once(' ') else {
            return false;
        };
        let Some(file) = files
            .iter()
            .find(|f| f.strip_prefix(dir).is_ok_and(|r| r == Path::new(name)))
        else {
            return false;
        };
        std::fs::metadata(file).is_ok_and(|m| size.parse() == Ok(m.len()))
    }) && (marker.is_empty() || marker.lines().count() == files.len())
}

/// Mark `dir`'s `files` as written, with their sizes (see [`written`]).
fn mark_written(dir: &Path, files: &[PathBuf]) -> Result<()> {
    let mut marker = String::new();
    for f in files {
        let name = f.strip_prefix(dir).unwrap_or(f);
        marker.push_str(&format!(
            "{} {}\n",
            std::fs::metadata(f)
                .with_context(|| format!("{}: cannot read", f.display()))?
                .len(),
            name.display()
        ));
    }
    put(&dir.join("complete"), marker)
}

#[allow(clippy::too_many_arguments)]
fn llama_json(
    h: usize,
    f: usize,
    layers: usize,
    heads: usize,
    kv: usize,
    vocab: usize,
    positions: usize,
    theta: f64,
) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"], "hidden_size": h, "intermediate_size": f,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "vocab_size": vocab, "max_position_embeddings": positions, "rope_theta": theta,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": true, "bos_token_id": 0,
        "eos_token_id": 0})
}

fn gpt2_json(d: usize, layers: usize, heads: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"], "n_embd": d, "n_layer": layers, "n_head": heads,
        "n_positions": 1024, "vocab_size": 50257, "layer_norm_epsilon": 1e-5,
        "bos_token_id": 50256, "eos_token_id": 50256})
}

/// A test that cannot run on this machine says why, where it will be seen: on stderr, and as
/// a line `TEST: skipped: REASON` appended to the file `LERPSCOPE_SKIP_LOG` names (CI prints
/// that file, since the test harness swallows a passing test's output). Where the variable
/// `required_by` is set the test may not skip: it fails with the reason instead.
pub fn skip(reason: &str, required_by: &str) {
    if std::env::var_os(required_by).is_some() {
        panic!("{reason}, and {required_by} is set: this test must run here");
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a test")
        .to_string();
    eprintln!("skipped: {reason}");
    if let Some(log) = std::env::var_os("LERPSCOPE_SKIP_LOG") {
        use std::io::Write;
        let line = format!("{test}: skipped: {reason} (set {required_by} to require it)\n");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_file_cut_short_is_written_again() {
        let root = tempfile::tempdir().unwrap();
        let file = Shape::Demo.quantized_in(root.path(), Quant::Q8_0).unwrap();
        let whole = std::fs::read(&file).unwrap();
        // Reused as it is...
        Shape::Demo.quantized_in(root.path(), Quant::Q8_0).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), whole);
        // ...and written again once cut short.
        std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
        Shape::Demo.quantized_in(root.path(), Quant::Q8_0).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), whole);
        // A marker from before sizes were recorded is taken at its word.
        let marker = file.with_file_name("complete");
        std::fs::write(&marker, "").unwrap();
        std::fs::write(&file, b"cut").unwrap();
        Shape::Demo.quantized_in(root.path(), Quant::Q8_0).unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"cut");
        // Adapters too.
        let (a, _) = Shape::Demo.adapters_in(root.path(), 4).unwrap();
        let weights = a.join("adapter_model.safetensors");
        let whole = std::fs::read(&weights).unwrap();
        std::fs::write(&weights, &whole[..10]).unwrap();
        Shape::Demo.adapters_in(root.path(), 4).unwrap();
        assert_eq!(std::fs::read(&weights).unwrap(), whole);
        // A rank past every matrix's smaller side is refused by name, before anything is
        // written (the base pair included).
        let fresh = tempfile::tempdir().unwrap();
        let err = Shape::Demo.adapters_in(fresh.path(), 100_000).unwrap_err();
        assert!(err.to_string().contains("--lora-rank 100000"), "{err}");
        let err = Shape::Demo
            .quantized_adapters_in(fresh.path(), Quant::Q8_0, 100_000)
            .unwrap_err();
        assert!(err.to_string().contains("--lora-rank 100000"), "{err}");
        assert_eq!(std::fs::read_dir(fresh.path()).unwrap().count(), 0);
    }

    /// Two writers of one shape at once both end with the pair (they shared scratch names,
    /// and one failed naming no file), and a link planted where a file goes is replaced, not
    /// written through (the folder's name is fixed, under a shared temporary directory).
    #[test]
    fn writers_at_once_and_planted_links_are_safe() {
        let root = tempfile::tempdir().unwrap();
        let victim = root.path().join("victim.txt");
        std::fs::write(&victim, "mine").unwrap();
        let a = root.path().join("demo/a");
        std::fs::create_dir_all(&a).unwrap();
        std::os::unix::fs::symlink(&victim, a.join("config.json")).unwrap();
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let root = root.path().to_path_buf();
                std::thread::spawn(move || Shape::Demo.pair_in(&root).map(|_| ()))
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine");
        assert!(!a.join("config.json").is_symlink());
        let (a, b) = Shape::Demo.pair_in(root.path()).unwrap();
        crate::formats::tokenizer::load_tokenizer(&b.join("tokenizer.json")).unwrap();
        assert!(a.join("model.safetensors").is_file());
        let stray: Vec<_> = std::fs::read_dir(&a)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial") || n.contains(".txt"))
            .collect();
        assert!(stray.is_empty(), "{stray:?}");
    }
}
