//! Baking a blend into a model file others can load: θ(α) written as a Hugging Face folder
//! (config, tokenizer files, safetensors sharded above 5 GB, a model card) or as one GGUF file
//! (llama.cpp's names and layout, its tokenizer metadata), with the recipe (α, both endpoints and
//! the base as given and their SHA-256, dtype, version) in the file's own metadata.
//!
//! Nothing half-written is ever left behind: everything goes to a temporary sibling of the
//! destination, renamed into place at the end, and removed on any error.

use crate::config::ModelConfig;
use crate::engine::{dtype_name, Engine};
use crate::error::{bail, err, Context, Result};
use crate::Alpha;
use candle_core::{DType, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// transformers' default shard size.
const SHARD_BYTES: usize = 5_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A Hugging Face model folder.
    Hf,
    /// One GGUF file.
    Gguf,
}

/// What an export is of, and how it came to be.
#[derive(Debug, Clone)]
pub struct Recipe {
    pub alpha: Alpha,
    /// (role, source as given, SHA-256 of its files).
    pub sources: Vec<(String, String, String)>,
    pub dtype: DType,
}

impl Recipe {
    /// The recipe as string pairs, for safetensors' `__metadata__` and GGUF's keys.
    pub fn entries(&self) -> Vec<(String, String)> {
        let mut e = vec![
            ("lerpscope.alpha".to_string(), self.alpha.to_string()),
            (
                "lerpscope.dtype".to_string(),
                dtype_name(self.dtype).to_string(),
            ),
            (
                "lerpscope.version".to_string(),
                env!("CARGO_PKG_VERSION").to_string(),
            ),
            (
                "lerpscope.formula".to_string(),
                "theta(alpha) = theta_a + alpha * (theta_b - theta_a)".to_string(),
            ),
        ];
        for (role, spec, sha) in &self.sources {
            e.push((format!("lerpscope.{role}"), spec.clone()));
            if !sha.is_empty() {
                e.push((format!("lerpscope.{role}.sha256"), sha.clone()));
            }
        }
        e
    }
}

/// The model at one α, copied out of the engine: what the writers need, with no tie to it (so
/// an export can be written on another thread while the engine goes on).
pub struct Snapshot {
    pub config: ModelConfig,
    /// The source's own files describing the model (config.json, tokenizer files...), or a
    /// GGUF file whose metadata does.
    pub model_files: crate::source::ModelFiles,
    pub tokenizer: tokenizers::Tokenizer,
    /// (HF name, shape, little-endian bytes in `recipe.dtype`), in name order.
    pub tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    pub recipe: Recipe,
}

/// SHA-256 of a source's files, in order, as one digest (hex).
pub fn sha256(files: &[PathBuf]) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    if files.is_empty() {
        return Ok(String::new());
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    for f in files {
        let mut file =
            std::fs::File::open(f).with_context(|| format!("{}: cannot read", f.display()))?;
        loop {
            let n = file
                .read(&mut buf)
                .with_context(|| format!("{}: cannot read", f.display()))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn bytes_of(t: &Tensor, dtype: DType) -> Result<Vec<u8>> {
    let t = t
        .to_dtype(dtype)?
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?;
    Ok(match dtype {
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F16 => t
            .to_vec1::<half::f16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::BF16 => t
            .to_vec1::<half::bf16>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => bail!(
            Unsupported,
            "--dtype {other:?}: export writes f32, f16 or bf16"
        ),
    })
}

impl Engine {
    /// The model at α in `dtype`, copied out (the engine's working weights are left at α).
    pub fn snapshot(&mut self, alpha: Alpha, dtype: DType) -> Result<Snapshot> {
        self.set_alpha(alpha)?;
        let views = self.weights().merged_views()?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = views
            .into_iter()
            .map(|(name, t)| Ok((name, t.dims().to_vec(), bytes_of(&t, dtype)?)))
            .collect::<Result<_>>()?;
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        let sources = self
            .origin
            .sources
            .iter()
            .map(|(role, spec, files)| Ok((role.clone(), spec.clone(), sha256(files)?)))
            .collect::<Result<_>>()?;
        Ok(Snapshot {
            config: self.config().clone(),
            model_files: self.origin.model.clone(),
            tokenizer: self.tokenizer().clone(),
            tensors,
            recipe: Recipe {
                alpha,
                sources,
                dtype,
            },
        })
    }
}

/// Where an export goes when `--out` is not given: `<name of B>-alpha<X>` (beside nothing; the
/// working directory).
pub fn default_name(b: &str, alpha: Alpha) -> String {
    let name = Path::new(b.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| b.to_string());
    let name = name.trim_end_matches(".gguf").replace(['/', '@'], "-");
    format!("{name}-alpha{alpha}")
}

/// Write `snap` to `out` as `format`. `out` must not exist, or be empty, or `force` be set.
/// Returns the path written. `progress(done, total)` is called as bytes are written.
pub fn write(
    snap: &Snapshot,
    format: Format,
    out: &Path,
    force: bool,
    progress: &dyn Fn(u64, u64),
) -> Result<PathBuf> {
    let exists_non_empty = match format {
        Format::Hf => {
            out.is_dir()
                && std::fs::read_dir(out)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
        }
        Format::Gguf => out.exists(),
    };
    if (exists_non_empty || (out.exists() && !out.is_dir() && format == Format::Hf)) && !force {
        bail!(
            Invalid,
            "--out {}: already exists; choose another --out or pass --force to replace it",
            out.display()
        );
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)
        .with_context(|| format!("--out {}: cannot create", parent.display()))?;
    let name = out.file_name().ok_or_else(|| {
        err!(
            Invalid,
            "--out {}: not a file or folder name",
            out.display()
        )
    })?;
    let stem = format!(".{}.partial-", name.to_string_lossy());
    // What an interrupted export to the same place left behind.
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&stem) {
                let _ = std::fs::remove_dir_all(e.path());
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let tmp = parent.join(format!("{stem}{}", std::process::id()));
    let result = match format {
        Format::Hf => write_hf(snap, &tmp, progress),
        Format::Gguf => write_gguf(snap, &tmp, progress),
    };
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| {
            format!(
                "--out {}: export failed, nothing was written",
                out.display()
            )
        });
    }
    if out.exists() {
        let removed = if out.is_dir() {
            std::fs::remove_dir_all(out)
        } else {
            std::fs::remove_file(out)
        };
        removed.with_context(|| format!("--out {}: cannot replace", out.display()))?;
    }
    std::fs::rename(&tmp, out)
        .with_context(|| format!("--out {}: cannot move the export into place", out.display()))?;
    Ok(out.to_path_buf())
}

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.with_context(|| format!("{}: cannot write", path.display()))
}

/// Test hook, called before every write of an export: `LERPSCOPE_TEST_FAIL_WRITE=k` makes the
/// k-th write fail (as a full disk would), `LERPSCOPE_TEST_KILL_AT_WRITE=k` ends the process
/// there on the spot (as a kill would, nothing cleaned up). Writes are counted per process.
fn write_point(path: &Path) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    static AT: OnceLock<(Option<usize>, Option<usize>)> = OnceLock::new();
    let (fail, kill) = *AT.get_or_init(|| {
        let at = |v: &str| std::env::var(v).ok().and_then(|k| k.parse().ok());
        (
            at("LERPSCOPE_TEST_FAIL_WRITE"),
            at("LERPSCOPE_TEST_KILL_AT_WRITE"),
        )
    });
    if fail.is_none() && kill.is_none() {
        return Ok(());
    }
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if kill == Some(n) {
        std::process::abort();
    }
    if fail == Some(n) {
        let e = std::io::Error::other("injected failure (LERPSCOPE_TEST_FAIL_WRITE)");
        return io(Err(e), path);
    }
    Ok(())
}

/// A Hugging Face folder at `dir`.
fn write_hf(snap: &Snapshot, dir: &Path, progress: &dyn Fn(u64, u64)) -> Result<()> {
    write_point(dir)?;
    io(std::fs::create_dir_all(dir), dir)?;
    let src = &snap.model_files;
    let from_gguf = crate::gguf::is_gguf(&src.config);
    // config.json: the source's own (with the dtype updated), or written from the config.
    let mut config = if from_gguf {
        config_json(&snap.config)
    } else {
        serde_json::from_str(
            &std::fs::read_to_string(&src.config)
                .with_context(|| format!("{}: cannot read", src.config.display()))?,
        )?
    };
    if let Some(o) = config.as_object_mut() {
        let d = match snap.recipe.dtype {
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
            _ => "float32",
        };
        o.insert("torch_dtype".into(), d.into());
        o.insert("dtype".into(), d.into());
    }
    let p = dir.join("config.json");
    write_point(&p)?;
    io(
        std::fs::write(&p, serde_json::to_string_pretty(&config)?),
        &p,
    )?;
    // Tokenizer and generation files: the source's, or rebuilt from the GGUF metadata.
    let src_dir = src
        .config
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if from_gguf {
        let p = dir.join("tokenizer.json");
        snap.tokenizer
            .save(&p, true)
            .map_err(|e| err!(Format, "{}: cannot write the tokenizer ({e})", p.display()))?;
        let h = crate::gguf::Header::read(&src.config)?;
        let token = |k: &str| {
            h.get(k)
                .and_then(crate::gguf::Value::as_u64)
                .and_then(|i| snap.tokenizer.id_to_token(i as u32))
        };
        let mut tc = serde_json::json!({"tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": snap.config.max_positions()});
        if let Some(t) = h
            .get("tokenizer.chat_template")
            .and_then(crate::gguf::Value::as_str)
        {
            tc["chat_template"] = t.into();
        }
        for (key, k) in [
            ("bos_token", "tokenizer.ggml.bos_token_id"),
            ("eos_token", "tokenizer.ggml.eos_token_id"),
        ] {
            if let Some(t) = token(k) {
                tc[key] = t.into();
            }
        }
        let p = dir.join("tokenizer_config.json");
        write_point(&p)?;
        io(std::fs::write(&p, serde_json::to_string_pretty(&tc)?), &p)?;
    } else {
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "special_tokens_map.json",
            "vocab.json",
            "merges.txt",
        ] {
            let from = if f == "tokenizer.json" {
                src.tokenizer.clone()
            } else {
                src_dir.join(f)
            };
            if from.is_file() {
                write_point(&dir.join(f))?;
                io(std::fs::copy(&from, dir.join(f)), &dir.join(f))?;
            }
        }
    }
    let gen = src_dir.join("generation_config.json");
    let p = dir.join("generation_config.json");
    if !from_gguf && gen.is_file() {
        write_point(&p)?;
        io(std::fs::copy(&gen, &p), &p)?;
    } else {
        let ids = snap.config.eos_ids();
        let g =
            serde_json::json!({"bos_token_id": bos_of(&snap.config), "eos_token_id": ids.first()});
        write_point(&p)?;
        io(std::fs::write(&p, serde_json::to_string_pretty(&g)?), &p)?;
    }
    // The weights, sharded as transformers shards them.
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0;
    for (i, (_, _, b)) in snap.tensors.iter().enumerate() {
        if size > 0 && size + b.len() > SHARD_BYTES {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += b.len();
    }
    let total: u64 = snap.tensors.iter().map(|t| t.2.len() as u64).sum();
    let mut done = 0u64;
    let mut metadata: std::collections::HashMap<String, String> =
        snap.recipe.entries().into_iter().collect();
    metadata.insert("format".into(), "pt".into());
    let dtype = match snap.recipe.dtype {
        DType::F16 => safetensors::Dtype::F16,
        DType::BF16 => safetensors::Dtype::BF16,
        _ => safetensors::Dtype::F32,
    };
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let views: Vec<(String, safetensors::tensor::TensorView)> = shard
            .iter()
            .map(|&i| {
                let (name, shape, bytes) = &snap.tensors[i];
                weight_map.insert(name.clone(), file.clone());
                Ok((
                    name.clone(),
                    safetensors::tensor::TensorView::new(dtype, shape.clone(), bytes)?,
                ))
            })
            .collect::<Result<_>>()?;
        let p = dir.join(&file);
        write_point(&p)?;
        safetensors::serialize_to_file(views, Some(metadata.clone()), &p)
            .map_err(|e| err!(Format, "{}: cannot write ({e})", p.display()))?;
        done += shard
            .iter()
            .map(|&i| snap.tensors[i].2.len() as u64)
            .sum::<u64>();
        progress(done, total);
    }
    if n > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let p = dir.join("model.safetensors.index.json");
        write_point(&p)?;
        io(
            std::fs::write(&p, serde_json::to_string_pretty(&index)?),
            &p,
        )?;
    }
    let p = dir.join("README.md");
    write_point(&p)?;
    io(std::fs::write(&p, model_card(snap)), &p)?;
    Ok(())
}

fn bos_of(c: &ModelConfig) -> Option<u32> {
    match c {
        ModelConfig::Decoder(c) => c.bos_token_id,
        ModelConfig::Gpt2(c) => c.bos_token_id,
    }
}

/// config.json for a config that came without one (a GGUF source).
fn config_json(c: &ModelConfig) -> serde_json::Value {
    match c {
        ModelConfig::Decoder(l) => {
            let mut v = crate::fixtures::llama_config_json(l);
            v["head_dim"] = l.head_dim().into();
            if let Some(crate::config::RopeScaling::Linear { factor }) = l.rope_scaling {
                v["rope_scaling"] = serde_json::json!({"rope_type": "linear", "factor": factor});
            }
            v
        }
        ModelConfig::Gpt2(g) => crate::fixtures::gpt2_config_json(g),
    }
}

fn model_card(snap: &Snapshot) -> String {
    let r = &snap.recipe;
    let mut s = format!(
        "---\nlibrary_name: transformers\ntags:\n- lerpscope\n- merge\n---\n\n# A blend at α = {}\n\nThis model is θ(α) = θ_A + α·(θ_B − θ_A) at α = {}, written by lerpscope {} in {}.\n\n| role | source | SHA-256 of its files |\n|---|---|---|\n",
        r.alpha,
        r.alpha,
        env!("CARGO_PKG_VERSION"),
        dtype_name(r.dtype)
    );
    for (role, spec, sha) in &r.sources {
        let role = match role.as_str() {
            "a" => "A (α = 0)",
            "b" => "B (α = 1)",
            _ => "base",
        };
        s.push_str(&format!(
            "| {role} | `{spec}` | `{}` |\n",
            if sha.is_empty() {
                "(the base itself)"
            } else {
                sha
            }
        ));
    }
    s.push_str("\nThe same recipe is in the safetensors header's metadata (`lerpscope.*`).\n");
    s
}

// -- GGUF ------------------------------------------------------------------------------------

/// A little-endian GGUF writer (version 3).
struct Gguf {
    kv: Vec<u8>,
    n_kv: u64,
}

impl Gguf {
    fn str_bytes(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    fn key(&mut self, k: &str, ty: u32) {
        Self::str_bytes(&mut self.kv, k);
        self.kv.extend(ty.to_le_bytes());
        self.n_kv += 1;
    }
    fn u32(&mut self, k: &str, v: u32) {
        self.key(k, 4);
        self.kv.extend(v.to_le_bytes());
    }
    fn f32(&mut self, k: &str, v: f32) {
        self.key(k, 6);
        self.kv.extend(v.to_le_bytes());
    }
    fn bool(&mut self, k: &str, v: bool) {
        self.key(k, 7);
        self.kv.push(v as u8);
    }
    fn string(&mut self, k: &str, v: &str) {
        self.key(k, 8);
        Self::str_bytes(&mut self.kv, v);
    }
    fn value(&mut self, k: &str, v: &crate::gguf::Value) {
        use crate::gguf::Value;
        match v {
            Value::UInt(x) if *x <= u32::MAX as u64 => self.u32(k, *x as u32),
            Value::UInt(x) => {
                self.key(k, 10);
                self.kv.extend(x.to_le_bytes());
            }
            Value::Int(x) => {
                self.key(k, 11);
                self.kv.extend(x.to_le_bytes());
            }
            Value::Float(x) => self.f32(k, *x as f32),
            Value::Bool(b) => self.bool(k, *b),
            Value::Str(s) => self.string(k, s),
            Value::Array(a) => self.array(k, a),
        }
    }
    fn array(&mut self, k: &str, a: &[crate::gguf::Value]) {
        use crate::gguf::Value;
        self.key(k, 9);
        let (ty, ok): (u32, fn(&Value) -> bool) = match a.first() {
            Some(Value::Str(_)) => (8, |v| matches!(v, Value::Str(_))),
            Some(Value::Float(_)) => (6, |v| matches!(v, Value::Float(_))),
            Some(Value::Int(_)) => (5, |v| matches!(v, Value::Int(_))),
            _ => (5, |v| matches!(v, Value::UInt(_) | Value::Int(_))),
        };
        self.kv.extend(ty.to_le_bytes());
        let items: Vec<&Value> = a.iter().filter(|v| ok(v)).collect();
        self.kv.extend((items.len() as u64).to_le_bytes());
        for v in items {
            match (ty, v) {
                (8, Value::Str(s)) => Self::str_bytes(&mut self.kv, s),
                (6, Value::Float(x)) => self.kv.extend((*x as f32).to_le_bytes()),
                (_, Value::Int(x)) => self.kv.extend((*x as i32).to_le_bytes()),
                (_, Value::UInt(x)) => self.kv.extend((*x as i32).to_le_bytes()),
                _ => {}
            }
        }
    }
}

/// The llama.cpp name of an HF tensor, and how it is stored there.
fn gguf_name(config: &ModelConfig, hf: &str) -> Option<(String, crate::gguf::Transform)> {
    use crate::gguf::Transform;
    let plain = |s: String| Some((s, Transform::None));
    match config {
        ModelConfig::Decoder(c) => {
            match hf {
                "model.embed_tokens.weight" => return plain("token_embd.weight".into()),
                "model.norm.weight" => return plain("output_norm.weight".into()),
                "lm_head.weight" => return plain("output.weight".into()),
                _ => {}
            }
            let rest = hf.strip_prefix("model.layers.")?;
            let (i, part) = rest.split_once('.')?;
            let (g, t) = match part {
                "input_layernorm.weight" => ("attn_norm.weight", Transform::None),
                "self_attn.q_proj.weight" => (
                    "attn_q.weight",
                    Transform::UnpermuteRope {
                        heads: c.num_attention_heads,
                    },
                ),
                "self_attn.k_proj.weight" => (
                    "attn_k.weight",
                    Transform::UnpermuteRope {
                        heads: c.kv_heads(),
                    },
                ),
                "self_attn.v_proj.weight" => ("attn_v.weight", Transform::None),
                "self_attn.o_proj.weight" => ("attn_output.weight", Transform::None),
                "post_attention_layernorm.weight" => ("ffn_norm.weight", Transform::None),
                "mlp.gate_proj.weight" => ("ffn_gate.weight", Transform::None),
                "mlp.up_proj.weight" => ("ffn_up.weight", Transform::None),
                "mlp.down_proj.weight" => ("ffn_down.weight", Transform::None),
                _ => return None,
            };
            Some((format!("blk.{i}.{g}"), t))
        }
        ModelConfig::Gpt2(_) => {
            match hf {
                "transformer.wte.weight" => return plain("token_embd.weight".into()),
                "transformer.wpe.weight" => return plain("position_embd.weight".into()),
                "transformer.ln_f.weight" => return plain("output_norm.weight".into()),
                "transformer.ln_f.bias" => return plain("output_norm.bias".into()),
                _ => {}
            }
            let rest = hf.strip_prefix("transformer.h.")?;
            let (i, part) = rest.split_once('.')?;
            let (module, kind) = part.rsplit_once('.')?;
            let (g, conv) = match module {
                "ln_1" => ("attn_norm", false),
                "attn.c_attn" => ("attn_qkv", true),
                "attn.c_proj" => ("attn_output", true),
                "ln_2" => ("ffn_norm", false),
                "mlp.c_fc" => ("ffn_up", true),
                "mlp.c_proj" => ("ffn_down", true),
                _ => return None,
            };
            let t = if conv && kind == "weight" {
                Transform::Transpose
            } else {
                Transform::None
            };
            Some((format!("blk.{i}.{g}.{kind}"), t))
        }
    }
}

/// Permute rows back into llama.cpp's interleaved RoPE order (the inverse of
/// [`crate::gguf::unpermute`]), element by element of `size` bytes.
fn permute(b: &[u8], heads: usize, rows: usize, cols: usize, size: usize) -> Vec<u8> {
    let d = rows / heads;
    let row = cols * size;
    let mut out = vec![0u8; b.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..d / 2 {
                let (hf, stored) = (h * d + j * (d / 2) + i, h * d + 2 * i + j);
                out[stored * row..(stored + 1) * row].copy_from_slice(&b[hf * row..(hf + 1) * row]);
            }
        }
    }
    out
}

fn transpose_bytes(b: &[u8], rows: usize, cols: usize, size: usize) -> Vec<u8> {
    let mut out = vec![0u8; b.len()];
    for r in 0..rows {
        for c in 0..cols {
            let (from, to) = ((r * cols + c) * size, (c * rows + r) * size);
            out[to..to + size].copy_from_slice(&b[from..from + size]);
        }
    }
    out
}

/// The tokenizer as `tokenizer.ggml.*` metadata: the GGUF source's own keys, or a byte-level
/// BPE tokenizer.json converted.
fn tokenizer_metadata(snap: &Snapshot, w: &mut Gguf) -> Result<()> {
    use crate::gguf::Value;
    let src = &snap.model_files;
    if crate::gguf::is_gguf(&src.config) {
        let h = crate::gguf::Header::read(&src.config)?;
        for (k, v) in &h.metadata {
            if k.starts_with("tokenizer.") {
                w.value(k, v);
            }
        }
        return Ok(());
    }
    let p = src.tokenizer.display();
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&src.tokenizer).with_context(|| format!("{p}: cannot read"))?,
    )?;
    let model = &json["model"];
    if model["type"] != "BPE" || !json["decoder"].to_string().contains("ByteLevel") {
        bail!(
            Unsupported,
            "{p}: --format gguf writes byte-level BPE tokenizers (GPT-2, Llama 3, SmolLM); this one is not; use --format hf"
        );
    }
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| err!(Format, "{p}: no model.vocab"))?;
    let mut tokens = vec![String::new(); vocab.len()];
    for (t, id) in vocab {
        let i = id
            .as_u64()
            .filter(|&i| (i as usize) < tokens.len())
            .ok_or_else(|| err!(Format, "{p}: vocabulary ids are not 0..n"))?;
        tokens[i as usize] = t.clone();
    }
    let mut types = vec![1i64; tokens.len()];
    for a in json["added_tokens"].as_array().into_iter().flatten() {
        if let Some(i) = a["id"].as_u64().filter(|&i| (i as usize) < types.len()) {
            types[i as usize] = if a["special"].as_bool().unwrap_or(false) {
                3
            } else {
                4
            };
        }
    }
    let merges: Vec<String> = model["merges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| match m {
            serde_json::Value::String(s) => s.clone(),
            other => other
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default(),
        })
        .collect();
    let pre = json["pre_tokenizer"].to_string();
    let pre = if pre.contains("Digits") {
        "smollm"
    } else if pre.contains("Split") {
        "llama-bpe"
    } else {
        "gpt2"
    };
    w.string("tokenizer.ggml.model", "gpt2");
    w.string("tokenizer.ggml.pre", pre);
    w.array(
        "tokenizer.ggml.tokens",
        &tokens.into_iter().map(Value::Str).collect::<Vec<_>>(),
    );
    w.array(
        "tokenizer.ggml.token_type",
        &types.into_iter().map(Value::Int).collect::<Vec<_>>(),
    );
    w.array(
        "tokenizer.ggml.merges",
        &merges.into_iter().map(Value::Str).collect::<Vec<_>>(),
    );
    if let Some(b) = bos_of(&snap.config) {
        w.u32("tokenizer.ggml.bos_token_id", b);
    }
    if let Some(e) = snap.config.eos_ids().first() {
        w.u32("tokenizer.ggml.eos_token_id", *e);
    }
    w.bool(
        "tokenizer.ggml.add_bos_token",
        json["post_processor"]
            .to_string()
            .contains("TemplateProcessing"),
    );
    let tc = src.tokenizer.with_file_name("tokenizer_config.json");
    if let Ok(text) = std::fs::read_to_string(&tc) {
        if let Some(t) = serde_json::from_str::<serde_json::Value>(&text)?["chat_template"].as_str()
        {
            w.string("tokenizer.chat_template", t);
        }
    }
    Ok(())
}

/// One GGUF file at `path`: llama.cpp's metadata, names and layout.
fn write_gguf(snap: &Snapshot, path: &Path, progress: &dyn Fn(u64, u64)) -> Result<()> {
    use crate::gguf::Transform;
    use std::io::Write;
    let mut w = Gguf {
        kv: Vec::new(),
        n_kv: 0,
    };
    let arch = match snap.config {
        ModelConfig::Decoder(_) => "llama",
        ModelConfig::Gpt2(_) => "gpt2",
    };
    w.string("general.architecture", arch);
    w.string(
        "general.name",
        &format!("lerpscope blend at alpha {}", snap.recipe.alpha),
    );
    w.u32("general.alignment", 32);
    match &snap.config {
        ModelConfig::Decoder(c) => {
            w.u32("llama.context_length", c.max_position_embeddings as u32);
            w.u32("llama.embedding_length", c.hidden_size as u32);
            w.u32("llama.feed_forward_length", c.intermediate_size as u32);
            w.u32("llama.block_count", c.num_hidden_layers as u32);
            w.u32("llama.attention.head_count", c.num_attention_heads as u32);
            w.u32("llama.attention.head_count_kv", c.kv_heads() as u32);
            w.f32("llama.rope.freq_base", c.rope_theta);
            w.f32(
                "llama.attention.layer_norm_rms_epsilon",
                c.rms_norm_eps as f32,
            );
            w.u32("llama.rope.dimension_count", c.head_dim() as u32);
            w.u32("llama.vocab_size", c.vocab_size as u32);
            match c.rope_scaling {
                None => {}
                Some(crate::config::RopeScaling::Linear { factor }) => {
                    w.string("llama.rope.scaling.type", "linear");
                    w.f32("llama.rope.scaling.factor", factor);
                }
                Some(_) => bail!(
                    Unsupported,
                    "--format gguf: this model's RoPE scaling has no GGUF metadata lerpscope writes; use --format hf"
                ),
            }
        }
        ModelConfig::Gpt2(c) => {
            w.u32("gpt2.context_length", c.n_positions as u32);
            w.u32("gpt2.embedding_length", c.n_embd as u32);
            w.u32("gpt2.feed_forward_length", c.inner() as u32);
            w.u32("gpt2.block_count", c.n_layer as u32);
            w.u32("gpt2.attention.head_count", c.n_head as u32);
            w.f32(
                "gpt2.attention.layer_norm_epsilon",
                c.layer_norm_epsilon as f32,
            );
        }
    }
    tokenizer_metadata(snap, &mut w)?;
    for (k, v) in snap.recipe.entries() {
        w.string(&k, &v);
    }
    let (ty, size): (u32, usize) = match snap.recipe.dtype {
        DType::F16 => (1, 2),
        DType::BF16 => (30, 2),
        _ => (0, 4),
    };
    // The tensors in llama.cpp's names and layout (GPT-2's head written out again, as
    // llama.cpp's converter does).
    let mut tensors: Vec<(String, Vec<usize>, std::borrow::Cow<[u8]>)> = Vec::new();
    for (name, shape, bytes) in &snap.tensors {
        let (g, t) = gguf_name(&snap.config, name).ok_or_else(|| {
            err!(
                Unsupported,
                "--format gguf: tensor {name} has no llama.cpp name"
            )
        })?;
        let (data, shape) = match t {
            Transform::None => (std::borrow::Cow::Borrowed(bytes.as_slice()), shape.clone()),
            Transform::UnpermuteRope { heads } => (
                permute(bytes, heads, shape[0], shape[1], size).into(),
                shape.clone(),
            ),
            Transform::Transpose => (
                transpose_bytes(bytes, shape[0], shape[1], size).into(),
                vec![shape[1], shape[0]],
            ),
        };
        if g == "token_embd.weight" && arch == "gpt2" {
            tensors.push(("output.weight".into(), shape.clone(), data.clone()));
        }
        tensors.push((g, shape, data));
    }
    let f = std::fs::File::create(path)
        .with_context(|| format!("{}: cannot create", path.display()))?;
    let mut f = std::io::BufWriter::with_capacity(1 << 20, f);
    let mut head = Vec::new();
    head.extend(b"GGUF");
    head.extend(3u32.to_le_bytes());
    head.extend((tensors.len() as u64).to_le_bytes());
    head.extend(w.n_kv.to_le_bytes());
    head.extend(&w.kv);
    let mut offset = 0u64;
    for (name, shape, data) in &tensors {
        Gguf::str_bytes(&mut head, name);
        head.extend((shape.len() as u32).to_le_bytes());
        for d in shape.iter().rev() {
            head.extend((*d as u64).to_le_bytes());
        }
        head.extend(ty.to_le_bytes());
        head.extend(offset.to_le_bytes());
        offset += (data.len() as u64).div_ceil(32) * 32;
    }
    let pad = |n: usize| (n.div_ceil(32) * 32) - n;
    head.extend(std::iter::repeat_n(0u8, pad(head.len())));
    write_point(path)?;
    io(f.write_all(&head), path)?;
    let total: u64 = tensors.iter().map(|t| t.2.len() as u64).sum();
    let mut done = 0;
    for (_, _, data) in &tensors {
        write_point(path)?;
        io(f.write_all(data), path)?;
        io(f.write_all(&vec![0u8; pad(data.len())]), path)?;
        done += data.len() as u64;
        progress(done, total);
    }
    write_point(path)?;
    io(f.flush(), path)?;
    io(f.get_ref().sync_all(), path)?;
    Ok(())
}
