//! Tiny random models written as ordinary Hugging Face directories: for tests, benchmarks of a
//! given shape, and anyone who wants a pair to try the engine on without downloading one.

use crate::config::{DecoderConfig, Gpt2Config, TokenIds};
use crate::error::{err, Context, Result};
use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

/// The end-of-text token of the tokenizers trained here.
pub const EOS: &str = "<|endoftext|>";

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

/// Names and shapes of GPT-2's parameters, with the `transformer.` prefix HF writes.
pub fn gpt2_parameters(c: &Gpt2Config) -> Vec<(String, Vec<usize>)> {
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

pub fn gpt2_config_json(c: &Gpt2Config) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_positions": c.n_positions,
        "vocab_size": c.vocab_size,
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "activation_function": "gelu_new",
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id.as_ref().map(|e| e.to_vec()[0]),
    })
}

/// Names and shapes of every parameter of a Llama model, as Hugging Face names them.
pub fn llama_parameters(c: &DecoderConfig) -> Vec<(String, Vec<usize>)> {
    let (h, hd, f) = (c.hidden_size, c.head_dim(), c.intermediate_size);
    let (nh, nkv) = (c.num_attention_heads, c.kv_heads());
    let mut p = vec![(
        "model.embed_tokens.weight".to_string(),
        vec![c.vocab_size, h],
    )];
    for i in 0..c.num_hidden_layers {
        let l = format!("model.layers.{i}");
        p.extend([
            (format!("{l}.input_layernorm.weight"), vec![h]),
            (format!("{l}.self_attn.q_proj.weight"), vec![nh * hd, h]),
            (format!("{l}.self_attn.k_proj.weight"), vec![nkv * hd, h]),
            (format!("{l}.self_attn.v_proj.weight"), vec![nkv * hd, h]),
            (format!("{l}.self_attn.o_proj.weight"), vec![h, nh * hd]),
            (format!("{l}.post_attention_layernorm.weight"), vec![h]),
            (format!("{l}.mlp.gate_proj.weight"), vec![f, h]),
            (format!("{l}.mlp.up_proj.weight"), vec![f, h]),
            (format!("{l}.mlp.down_proj.weight"), vec![h, f]),
        ]);
    }
    p.push(("model.norm.weight".to_string(), vec![h]));
    if !c.tie_word_embeddings {
        p.push(("lm_head.weight".to_string(), vec![c.vocab_size, h]));
    }
    p
}

/// The config.json Hugging Face writes for such a model.
pub fn llama_config_json(c: &DecoderConfig) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.kv_heads(),
        "vocab_size": c.vocab_size,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "max_position_embeddings": c.max_position_embeddings,
        "tie_word_embeddings": c.tie_word_embeddings,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id.as_ref().map(|e| e.to_vec()[0]),
        "hidden_act": "silu",
        "torch_dtype": "float32",
    })
}

/// Train a byte-level BPE tokenizer (GPT-2 style: no prefix space, byte fallback through the
/// 256-symbol alphabet) with one special end-of-text token.
pub fn train_tokenizer(files: &[PathBuf], vocab_size: usize, out: &Path) -> Result<Tokenizer> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::normalizers::NormalizerWrapper;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{AddedToken, TokenizerBuilder};
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let byte_level = ByteLevel::new(false, true, true);
    let mut tok =
        TokenizerBuilder::<BPE, NormalizerWrapper, ByteLevel, ByteLevel, ByteLevel>::new()
            .with_model(BPE::default())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(byte_level))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level))
            .build()
            .map_err(|e| err!(Format, "tokenizer: {e}"))?;
    let files = files.iter().map(|p| p.display().to_string()).collect();
    tok.train_from_files(&mut trainer, files)
        .map_err(|e| err!(Format, "tokenizer training failed: {e}"))?;
    tok.save(out, false)
        .map_err(|e| err!(Format, "{}: cannot save tokenizer: {e}", out.display()))?;
    Tokenizer::from_file(out).map_err(|e| err!(Format, "{}: {e}", out.display()))
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
    let text = path.with_extension("txt");
    std::fs::write(&text, TOKENIZER_TEXT.repeat(4))?;
    let tok = train_tokenizer(std::slice::from_ref(&text), vocab, path);
    std::fs::remove_file(&text)?;
    tok
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
    std::fs::create_dir_all(dir)?;
    let tok_path = dir.join("tokenizer.json");
    let tok = if tok_path.exists() {
        crate::pair::load_tokenizer(&tok_path)?
    } else {
        write_tokenizer(&tok_path, 300)?
    };
    let vocab = tok.get_vocab_size(true);
    let (config, params) = match arch {
        Arch::Llama => {
            let c = tiny_llama_config(vocab);
            (llama_config_json(&c), llama_parameters(&c))
        }
        Arch::Gpt2 => {
            let c = tiny_gpt2_config(vocab);
            (gpt2_config_json(&c), gpt2_parameters(&c))
        }
    };
    std::fs::write(
        dir.join("config.json"),
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
    std::fs::create_dir_all(b)?;
    std::fs::copy(a.join("tokenizer.json"), b.join("tokenizer.json"))?;
    write_tiny_model(b, arch, 2)
}

/// Model shapes the benchmarks run at, as random pairs: the demo pair's and three common Hub
/// models' (same architecture, sizes and vocabulary; random weights, since timings do not
/// depend on the values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Demo,
    Smollm2_135m,
    Smollm2_1_7b,
    Gpt2_124m,
    Gpt2_774m,
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
    pub const ALL: [Shape; 5] = [
        Shape::Demo,
        Shape::Smollm2_135m,
        Shape::Smollm2_1_7b,
        Shape::Gpt2_124m,
        Shape::Gpt2_774m,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Shape::Demo => "demo",
            Shape::Smollm2_135m => "smollm2-135m",
            Shape::Smollm2_1_7b => "smollm2-1.7b",
            Shape::Gpt2_124m => "gpt2-124m",
            Shape::Gpt2_774m => "gpt2-774m",
        }
    }

    /// config.json and the parameter list of this shape.
    pub fn model(self) -> (serde_json::Value, Vec<(String, Vec<usize>)>) {
        let llama = |h, f, layers, heads, kv, vocab, pos, theta| DecoderConfig {
            hidden_size: h,
            intermediate_size: f,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: Some(kv),
            head_dim: None,
            vocab_size: vocab,
            rms_norm_eps: 1e-5,
            rope_theta: theta,
            max_position_embeddings: pos,
            tie_word_embeddings: true,
            bos_token_id: Some(0),
            eos_token_id: Some(TokenIds::One(0)),
            rope_scaling: None,
            ..Default::default()
        };
        let gpt2 = |d, layers, heads| Gpt2Config {
            n_embd: d,
            n_layer: layers,
            n_head: heads,
            n_positions: 1024,
            vocab_size: 50257,
            n_inner: None,
            layer_norm_epsilon: 1e-5,
            bos_token_id: Some(50256),
            eos_token_id: Some(TokenIds::One(50256)),
        };
        match self {
            Shape::Demo => {
                let c = llama(192, 512, 4, 6, 2, 4096, 256, 10_000.0);
                (llama_config_json(&c), llama_parameters(&c))
            }
            Shape::Smollm2_135m => {
                let c = llama(576, 1536, 30, 9, 3, 49152, 8192, 100_000.0);
                (llama_config_json(&c), llama_parameters(&c))
            }
            Shape::Smollm2_1_7b => {
                let c = llama(2048, 8192, 24, 32, 32, 49152, 8192, 130_000.0);
                (llama_config_json(&c), llama_parameters(&c))
            }
            Shape::Gpt2_124m => {
                let c = gpt2(768, 12, 12);
                (gpt2_config_json(&c), gpt2_parameters(&c))
            }
            Shape::Gpt2_774m => {
                let c = gpt2(1280, 36, 20);
                (gpt2_config_json(&c), gpt2_parameters(&c))
            }
        }
    }

    /// The dtype a random pair of this shape is written in: f32, except bf16 (what such models
    /// ship in) for the 1.7B shape, whose f32 pair would take 14 GB of disk.
    pub fn file_dtype(self) -> safetensors::Dtype {
        match self {
            Shape::Smollm2_1_7b => safetensors::Dtype::BF16,
            _ => safetensors::Dtype::F32,
        }
    }

    /// A random pair of this shape in [`Shape::file_dtype`], written once under `root` and
    /// reused: returns the directories of A and B.
    pub fn pair_in(self, root: &Path) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        let dir = root.join(self.name());
        let (a, b) = (dir.join("a"), dir.join("b"));
        let done = dir.join("complete");
        if done.exists() {
            return Ok((a, b));
        }
        let (config, params) = self.model();
        for (seed, d) in [(1, &a), (2, &b)] {
            std::fs::create_dir_all(d)?;
            std::fs::write(
                d.join("config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
            let tok = d.join("tokenizer.json");
            if seed == 1 {
                write_tokenizer(&tok, 300)?;
            } else {
                std::fs::copy(a.join("tokenizer.json"), &tok)?;
            }
            write_safetensors(
                &d.join("model.safetensors"),
                &random_weights(&params, seed, 0.02),
                self.file_dtype(),
            )?;
        }
        std::fs::write(&done, "")?;
        Ok((a, b))
    }

    /// The pair under the system's temporary directory.
    pub fn pair(self) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
        self.pair_in(&std::env::temp_dir().join("lerpscope-shapes"))
    }

    /// Two random rank-`rank` LoRA adapters on every linear layer of this shape's A model (the
    /// base, which they name by absolute path), written once under `root`: their directories.
    pub fn adapters_in(self, root: &Path, rank: usize) -> Result<(PathBuf, PathBuf)> {
        let (base, _) = self.pair_in(root)?;
        let dir = root.join(self.name()).join(format!("lora-r{rank}"));
        let (a, b) = (dir.join("a"), dir.join("b"));
        if dir.join("complete").exists() {
            return Ok((a, b));
        }
        let (_, params) = self.model();
        let targets = [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ]
        .iter()
        .chain(&["c_attn", "c_proj", "c_fc"]);
        let linear: Vec<&(String, Vec<usize>)> = params
            .iter()
            .filter(|(n, s)| {
                s.len() == 2
                    && targets
                        .clone()
                        .any(|t| n.ends_with(&format!(".{t}.weight")))
            })
            .collect();
        let gpt2 = matches!(self, Shape::Gpt2_124m | Shape::Gpt2_774m);
        let base_abs = std::fs::canonicalize(&base)?;
        for (seed, d) in [(11u64, &a), (12, &b)] {
            std::fs::create_dir_all(d)?;
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
            let names: Vec<&str> = targets
                .clone()
                .copied()
                .filter(|t| linear.iter().any(|(n, _)| n.contains(&format!(".{t}."))))
                .collect();
            let config = serde_json::json!({
                "peft_type": "LORA", "r": rank, "lora_alpha": 2 * rank, "bias": "none",
                "target_modules": names, "fan_in_fan_out": gpt2,
                "base_model_name_or_path": base_abs.display().to_string(),
            });
            std::fs::write(
                d.join("adapter_config.json"),
                serde_json::to_string_pretty(&config)?,
            )?;
        }
        std::fs::write(dir.join("complete"), "")?;
        Ok((a, b))
    }
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
