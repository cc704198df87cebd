//! Baking a blend into a model file others can load: θ(α) written as a Hugging Face folder
//! (config, tokenizer files, safetensors sharded above 5 GB, a model card) or as one GGUF file
//! (llama.cpp's names and layout, its tokenizer metadata), with the recipe (α, both endpoints and
//! the base as given and their SHA-256, dtype, version) in the file's own metadata.
//!
//! Nothing half-written is ever left behind: everything goes to a temporary sibling of the
//! destination, renamed into place at the end, and removed on any error.

use crate::engine::{dtype_name, Engine};
use crate::error::{bail, err, Context, Result};
use crate::formats::config::ModelConfig;
use crate::Alpha;
use candle_core::{DType, Tensor};
use std::path::{Path, PathBuf};

pub(crate) mod gguf;
mod hf;
use gguf::write_gguf;
use hf::write_hf;

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
    pub method: crate::Method,
    /// With α per layer: each tensor at α times its factor from these rules.
    pub layers: Option<crate::LayerAlphas>,
    /// With a plane: endpoint C and β.
    pub third: Option<crate::ExtraEndpoint>,
    /// With a fourth endpoint: D and γ.
    pub fourth: Option<crate::ExtraEndpoint>,
    /// (role, the GGUF quantization types it was stored in), for quantized sources: the export
    /// holds their exact dequantisation.
    pub quantization: Vec<(String, String)>,
    /// The mergekit recipe the pair was loaded from: (the file as given, SHA-256 of it). At α
    /// the export is that recipe with its weights (or t) scaled by α.
    pub recipe_file: Option<(String, String)>,
}

impl Recipe {
    /// The recipe as a mergekit config (`mergekit_config.yml`, the name mergekit gives its
    /// own), for two full models; None for adapters and where mergekit has no config for it.
    pub fn mergekit_yaml(&self) -> Option<String> {
        // A local folder as an absolute path, so the config reads the same from anywhere
        // (a Hub id stays as it is).
        let sources: Vec<(&str, String)> = self
            .sources
            .iter()
            .map(|(role, s, _)| {
                let path = std::path::Path::new(s);
                let s = match std::path::absolute(path) {
                    Ok(p) if path.exists() => p.display().to_string(),
                    _ => s.clone(),
                };
                (role.as_str(), s)
            })
            .collect();
        let source = |role: &str| sources.iter().find(|s| s.0 == role).map(|s| s.1.as_str());
        // mergekit merges full models in Hugging Face folders (or Hub ids) only.
        if source("base").is_some() || self.sources.iter().any(|s| s.1.ends_with(".gguf")) {
            return None;
        }
        crate::formats::mergekit::to_yaml(
            source("a")?,
            source("b")?,
            self.method,
            self.layers.as_ref(),
            &[("c", &self.third), ("d", &self.fourth)]
                .into_iter()
                .filter_map(|(role, x)| {
                    let x = x.as_ref()?;
                    Some((
                        source(role).unwrap_or(&x.source),
                        x.weight,
                        x.factors.as_ref(),
                    ))
                })
                .collect::<Vec<_>>(),
            self.alpha.value(),
            self.dtype,
        )
    }

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
                self.method.formula().to_string(),
            ),
        ];
        if self.method != crate::Method::Linear {
            e.push((
                "lerpscope.method".to_string(),
                self.method.name().to_string(),
            ));
        }
        if let Some(l) = &self.layers {
            // Each tensor's α is the exported α times its factor from these rules.
            e.push(("lerpscope.layer_alphas".to_string(), l.spec()));
        }
        if let Some(t) = &self.third {
            e[3].1 = "theta = theta_a + alpha * (theta_b - theta_a) + beta * (theta_c - theta_a)"
                .to_string();
            if self.fourth.is_some() {
                e[3].1.push_str(" + gamma * (theta_d - theta_a)");
            }
            let beyond = [("beta", "c", Some(t)), ("gamma", "d", self.fourth.as_ref())];
            for (name, role, x) in beyond {
                let Some(x) = x else { continue };
                let weight = x.weight.map_or("alpha".to_string(), |w| w.to_string());
                e.push((format!("lerpscope.{name}"), weight));
                if let Some(f) = &x.factors {
                    e.push((format!("lerpscope.{role}_factors"), f.spec()));
                }
            }
        }
        if let Some((file, sha)) = &self.recipe_file {
            e.push(("lerpscope.recipe".to_string(), file.clone()));
            if !sha.is_empty() {
                e.push(("lerpscope.recipe.sha256".to_string(), sha.clone()));
            }
        }
        for (role, spec, sha) in &self.sources {
            e.push((format!("lerpscope.{role}"), spec.clone()));
            if !sha.is_empty() {
                e.push((format!("lerpscope.{role}.sha256"), sha.clone()));
            }
            if let Some((_, q)) = self.quantization.iter().find(|(r, _)| r == role) {
                e.push((format!("lerpscope.{role}.quantization"), q.clone()));
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
    pub model_files: crate::formats::source::ModelFiles,
    pub tokenizer: tokenizers::Tokenizer,
    /// (HF name, shape, little-endian bytes in `recipe.dtype`), in name order.
    pub tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
    pub recipe: Recipe,
    /// Every file the endpoints were read from (a Hub id's included), which `--force` must
    /// not replace.
    pub source_files: Vec<PathBuf>,
    /// The chat template and end tokens the pair took beyond `model_files`' own.
    pub beyond_model: crate::engine::TextBeyondModel,
}

pub use crate::formats::source::sha256;

/// The tensor `name` in `dtype`, as little-endian bytes. A value that is not finite there is
/// refused: the model written would not run (f16 overflows past ±65504, far out on the line).
fn bytes_of(name: &str, t: &Tensor, dtype: DType) -> Result<Vec<u8>> {
    let t = t
        .to_dtype(dtype)?
        .to_device(&candle_core::Device::Cpu)?
        .flatten_all()?;
    // The values as they are written, each checked on the way (no second copy of the tensor).
    let (bytes, finite) = match dtype {
        DType::F32 => le_bytes(&t.to_vec1::<f32>()?, |x| x.is_finite(), |x| x.to_le_bytes()),
        DType::F16 => le_bytes(
            &t.to_vec1::<half::f16>()?,
            |x| x.is_finite(),
            |x| x.to_le_bytes(),
        ),
        DType::BF16 => le_bytes(
            &t.to_vec1::<half::bf16>()?,
            |x| x.is_finite(),
            |x| x.to_le_bytes(),
        ),
        other => bail!(
            Unsupported,
            "--dtype {other:?}: export writes f32, f16 or bf16"
        ),
    };
    if !finite {
        let hint = match dtype {
            DType::F16 => " (past f16's ±65504: export with --dtype bf16 or f32)",
            _ => " (try an α closer to [0, 1])",
        };
        bail!(
            Invalid,
            "tensor {name}: a value is not finite in {}{hint}; nothing was written",
            crate::dtype_name(dtype)
        );
    }
    Ok(bytes)
}

/// `values` as little-endian bytes, and whether every one is finite.
fn le_bytes<T: Copy, const N: usize>(
    values: &[T],
    finite: impl Fn(T) -> bool,
    to_le: impl Fn(T) -> [u8; N],
) -> (Vec<u8>, bool) {
    let mut bytes = Vec::with_capacity(values.len() * N);
    let mut all_finite = true;
    for &x in values {
        all_finite &= finite(x);
        bytes.extend_from_slice(&to_le(x));
    }
    (bytes, all_finite)
}

impl Engine {
    /// The model at α in `dtype`, copied out (the engine's working weights are left at α).
    pub fn snapshot(&mut self, alpha: Alpha, dtype: DType) -> Result<Snapshot> {
        self.set_alpha(alpha)?;
        let views = self.weights().merged_views()?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = views
            .into_iter()
            .map(|(name, t)| {
                let bytes = bytes_of(&name, &t, dtype)?;
                Ok((name, t.dims().to_vec(), bytes))
            })
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
                method: self.method(),
                layers: self.layer_alphas().cloned(),
                third: self.third().cloned(),
                fourth: self.fourth().cloned(),
                quantization: self.origin.quantization.clone(),
                // Digested as it was read: an edit since is not what the weights follow.
                recipe_file: self
                    .recipe_file()
                    .map(|(f, sha)| (f.to_string(), sha.to_string())),
            },
            source_files: self
                .origin
                .sources
                .iter()
                .flat_map(|(_, _, files)| files.iter().cloned())
                .collect(),
            beyond_model: self.origin.beyond_model.clone(),
        })
    }
}

/// Where an export goes when `--out` is not given: `<name of B>-alpha<X>` (beside nothing; the
/// working directory).
impl Snapshot {
    /// What a GGUF of this model runs differently in llama.cpp, which applies no sliding
    /// window to Mistral, Qwen or Phi-3: past the window the two part.
    pub fn gguf_note(&self) -> Option<String> {
        use crate::formats::config::{Family, LayerType};
        let ModelConfig::Decoder(c) = &self.config else {
            return None;
        };
        let window = c.sliding_window?;
        let windowed = matches!(
            c.family,
            Family::Mistral | Family::Qwen2 | Family::Qwen3 | Family::Phi3 | Family::StarCoder2
        ) && (0..c.num_hidden_layers).any(|i| c.layer_type(i) == LayerType::Sliding)
            && window < c.max_position_embeddings;
        windowed.then(|| {
            format!(
                "note: llama.cpp runs this model without its sliding window of {window} tokens, so past {window} tokens of context its output parts from transformers' (the window is kept in attention.sliding_window)"
            )
        })
    }
}

pub fn default_name(b: &str, alpha: Alpha) -> String {
    // A Hub id's revision may hold slashes (`org/name@refs/pr/1`): the name is the path's
    // last part before it, the revision joined on.
    let (path, revision) = match b.split_once('@') {
        Some((p, r)) if !Path::new(b).exists() => (p, Some(r)),
        _ => (b, None),
    };
    // `.` and `..` are named by the folder they are.
    let trimmed = Path::new(path.trim_end_matches('/'));
    let name = match trimmed.file_name() {
        Some(n) => n.to_string_lossy().to_string(),
        None => std::fs::canonicalize(trimmed)
            .ok()
            .and_then(|p| Some(p.file_name()?.to_string_lossy().to_string()))
            .unwrap_or_else(|| "model".to_string()),
    };
    let name = name.trim_end_matches(".gguf");
    let name = match revision {
        Some(r) => format!("{name}-{r}"),
        None => name.to_string(),
    };
    format!("{}-alpha{alpha}", name.replace(['/', '@'], "-"))
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
    let restored = restore_stepped_aside(out);
    let note = restored.map_or(String::new(), |p| {
        format!(
            " (put back from {}, where an interrupted export had stepped it aside)",
            p.display()
        )
    });
    check_out(snap, format, out, force, &note)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    // The folders made for --out go again if nothing is written into them (innermost first).
    let made: Vec<PathBuf> = parent
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .map(Path::to_path_buf)
        .collect();
    let unmake = || {
        for dir in &made {
            let _ = std::fs::remove_dir(dir);
        }
    };
    std::fs::create_dir_all(&parent).with_context(|| {
        format!(
            "--out {}: cannot create its folder {}",
            out.display(),
            parent.display()
        )
    })?;
    let name = out.file_name().ok_or_else(|| {
        err!(
            Invalid,
            "--out {}: not a file or folder name",
            out.display()
        )
    })?;
    let stem = format!(".{}.partial-", name.to_string_lossy());
    // What an interrupted export to the same place left behind (not a running one's).
    if let Ok(entries) = std::fs::read_dir(&parent) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let pid = name
                .strip_prefix(&stem)
                .map(|p| p.trim_start_matches("old-"));
            if pid.is_some_and(process_gone) {
                let _ = remove_any(&e.path());
            }
        }
    }
    let tmp = parent.join(format!("{stem}{}", std::process::id()));
    let _writing = Writing::start(&tmp);
    let result = match format {
        Format::Hf => write_hf(snap, &tmp, progress),
        Format::Gguf => write_gguf(snap, &tmp, progress),
    }
    .and_then(|()| sync_all(&tmp));
    if let Err(e) = result {
        let _ = remove_any(&tmp);
        unmake();
        return Err(e).with_context(|| {
            format!(
                "--out {}: export failed, nothing was written",
                out.display()
            )
        });
    }
    // The copy is whole: a signal from here waits until it is in place (or what --out held is
    // put back) rather than removing it halfway through.
    let _commit = COMMIT.lock().unwrap_or_else(|e| e.into_inner());
    drop(_writing);
    // What came to --out while the copy was written (another export, the user's files) is
    // replaced only as it could have been at the start.
    if let Err(e) = check_out(
        snap,
        format,
        out,
        force,
        " (it appeared while the export was written)",
    ) {
        let _ = remove_any(&tmp);
        return Err(e);
    }
    // What --out held steps aside until the export is in place, and comes back if it cannot
    // be (the name it steps aside to is one the next export clears).
    let aside = parent.join(format!("{stem}old-{}", std::process::id()));
    let held = out.exists();
    if held {
        std::fs::rename(out, &aside).with_context(|| {
            let _ = remove_any(&tmp);
            format!("--out {}: cannot replace", out.display())
        })?;
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        let _ = remove_any(&tmp);
        if held {
            let _ = std::fs::rename(&aside, out);
        }
        return Err(e).with_context(|| {
            format!(
                "--out {}: cannot move the export into place, nothing was replaced",
                out.display()
            )
        });
    }
    if held {
        remove_any(&aside)
            .with_context(|| format!("{}: cannot remove the replaced export", aside.display()))?;
    }
    Ok(out.to_path_buf())
}

/// Whether `out` may take the export: it is new (or an empty folder), or --force replaces a
/// model there. `note` ends the refusal's first clause.
fn check_out(snap: &Snapshot, format: Format, out: &Path, force: bool, note: &str) -> Result<()> {
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
            "--out {}: already exists{note}; choose another --out or pass --force to replace it",
            out.display(),
        );
    }
    if out.exists() {
        check_replaceable(snap, out)?;
    }
    Ok(())
}

/// The partial copy an export in this process is writing now.
static WRITING: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);

/// Held while a whole copy replaces --out (the renames, and the removal of what it replaced).
static COMMIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Names the partial copy in [`WRITING`] while it lives.
struct Writing;

impl Writing {
    fn start(tmp: &Path) -> Self {
        if let Ok(mut w) = WRITING.lock() {
            *w = Some(tmp.to_path_buf());
        }
        Writing
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        if let Ok(mut w) = WRITING.lock() {
            *w = None;
        }
    }
}

/// Remove the partial copy an export in this process is writing, if any: for a handler of
/// Ctrl-C or a kill, on its way to ending the process. The copy is hidden (`.NAME.partial-PID`)
/// and may be gigabytes; only the next export to the same --out would clear it otherwise. An
/// export putting a whole copy in place is let finish first; none starts after this. Returns
/// whether there was a copy to remove (an export cut short).
pub fn remove_partial() -> bool {
    let commit = COMMIT.lock().unwrap_or_else(|e| e.into_inner());
    // Held until the process ends: no copy goes in place after its files are removed.
    std::mem::forget(commit);
    let partial = WRITING.lock().ok().and_then(|w| w.clone());
    if let Some(p) = &partial {
        // The writer may still be adding files as they go: a few tries.
        for _ in 0..3 {
            if remove_any(p).is_ok() || !p.exists() {
                break;
            }
        }
    }
    partial.is_some()
}

/// Every file at `path` (a file, or a folder's files and entries) on the disk, before the
/// rename that puts it in place of what `--out` held, so that the name never holds a model
/// whose files are empty after a power loss.
fn sync_all(path: &Path) -> Result<()> {
    if path.is_dir() {
        for entry in io(std::fs::read_dir(path), path)? {
            sync_all(&io(entry, path)?.path())?;
        }
    }
    io(std::fs::File::open(path).and_then(|f| f.sync_all()), path)
}

/// What `--force` may replace: never a source's own files (or a folder holding them), and of
/// folders only a model folder (a config.json and a model's files only, or empty), so a
/// mistyped `--out` cannot delete a folder of other things.
fn check_replaceable(snap: &Snapshot, out: &Path) -> Result<()> {
    let Ok(target) = std::fs::canonicalize(out) else {
        return Ok(());
    };
    let files = &snap.model_files;
    let given = snap
        .recipe
        .sources
        .iter()
        .map(|(role, s, _)| (format!("the {role} endpoint"), PathBuf::from(s)));
    let read = [&files.config, &files.tokenizer]
        .into_iter()
        .chain(&files.weights)
        .chain(&snap.source_files)
        .map(|p| ("a source".to_string(), p.clone()));
    for (what, p) in given.chain(read) {
        // Where the path itself lies as well as what it links to: a Hub snapshot's files are
        // links into its blobs/, and replacing the snapshot would change the endpoint.
        let lexical = p
            .parent()
            .and_then(|d| std::fs::canonicalize(d).ok())
            .zip(p.file_name())
            .map(|(d, f)| d.join(f));
        for p in [std::fs::canonicalize(&p).ok(), lexical]
            .into_iter()
            .flatten()
        {
            if p.starts_with(&target) && p.exists() {
                bail!(
                    Invalid,
                    "--out {}: {what} is read from there ({}); write the export elsewhere",
                    out.display(),
                    p.display()
                );
            }
        }
    }
    let empty = || std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_none());
    if out.is_dir() && !out.join("config.json").is_file() && !empty() {
        bail!(
            Invalid,
            "--out {}: a folder that is not a model folder (no config.json); --force replaces only a model folder or a GGUF file",
            out.display()
        );
    }
    // A model folder holds a model's files only: anything else (a subfolder, notes, code)
    // says it is more than that, and --force would delete it.
    if out.is_dir() {
        let entries = std::fs::read_dir(out)
            .with_context(|| format!("--out {}: cannot read", out.display()))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if let Some(pid) = partial_of_model_file(&name).filter(|pid| !process_gone(pid)) {
                bail!(
                    Invalid,
                    "--out {}: holds {name}, which a running process ({pid}) is writing; let it finish first",
                    out.display()
                );
            }
            if !entry.path().is_file() || !(is_model_file(&name) || is_dead_partial(&name)) {
                bail!(
                    Invalid,
                    "--out {}: holds {name}, which is not a model's file; --force replaces only a folder of a model's files (config.json, weights, tokenizer) or a GGUF file",
                    out.display()
                );
            }
        }
    }
    if out.is_file() && !crate::formats::gguf::has_gguf_magic(out) {
        bail!(
            Invalid,
            "--out {}: a file that is not a GGUF file; --force replaces only a model folder or a GGUF file",
            out.display()
        );
    }
    Ok(())
}

/// An export killed between stepping --out's old content aside and moving the new one in left
/// `.NAME.partial-old-PID` and no NAME: put it back before anything else, so that it is
/// neither lost to the next export's clean-up nor replaced without --force.
fn restore_stepped_aside(out: &Path) -> Option<PathBuf> {
    if out.exists() {
        return None;
    }
    let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
        return None;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let aside = format!(".{}.partial-old-", name.to_string_lossy());
    // Only a dead export's: a live one is about to move its own export in.
    let found = std::fs::read_dir(parent).ok()?.flatten().find(|e| {
        let n = e.file_name().to_string_lossy().to_string();
        n.strip_prefix(&aside).is_some_and(process_gone)
    })?;
    std::fs::rename(found.path(), out).ok()?;
    Some(found.path())
}

/// Whether the process a partial file is named for (its id, as text) has ended, so that what
/// it left is no longer its own. Where that cannot be told (no /proc), it has not.
pub fn process_gone(pid: &str) -> bool {
    let proc = Path::new("/proc");
    proc.join("self").exists()
        && pid
            .parse::<u32>()
            .is_ok_and(|pid| !proc.join(pid.to_string()).exists())
}

/// Whether a file of this name belongs in a model folder, as exports and the Hub write them:
/// configs, tokenizer files, weights, a model card, this tool's mergekit recipe. Named one by
/// one (not "any .json"): a folder with eval results or notes beside its config is more than
/// a model, and --force would delete them.
fn is_model_file(name: &str) -> bool {
    const NAMES: [&str; 16] = [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "vocab.txt",
        "tokenizer.model",
        "chat_template.jinja",
        "model.safetensors.index.json",
        "pytorch_model.bin.index.json",
        "mergekit_config.yml",
        "README.md",
        ".gitattributes",
    ];
    let weights = |ext: &str, stem: &str| name.ends_with(ext) && name.starts_with(stem);
    NAMES.contains(&name)
        || name.ends_with(".gguf")
        || weights(".safetensors", "model")
        || weights(".bin", "pytorch_model")
}

/// A model file's partial copy (`.NAME.partial-PID`, as whole-file writes and `train` name
/// them) whose writer has ended: what a killed run left of a model file, part of the folder.
fn is_dead_partial(name: &str) -> bool {
    partial_of_model_file(name).is_some_and(process_gone)
}

/// The writer's process id, where `name` is a model file's partial copy.
fn partial_of_model_file(name: &str) -> Option<&str> {
    name.strip_prefix('.')
        .and_then(|n| n.rsplit_once(".partial-"))
        .filter(|(file, _)| is_model_file(file))
        .map(|(_, pid)| pid)
}

/// Remove a file or a folder.
fn remove_any(p: &Path) -> std::io::Result<()> {
    if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    }
}

fn io<T>(r: std::io::Result<T>, path: &Path) -> Result<T> {
    r.with_context(|| format!("{}: cannot write", path.display()))
}

/// Test hook, called before every write of an export: `LERPSCOPE_TEST_FAIL_WRITE=k` makes the
/// k-th write fail (as a full disk would), `LERPSCOPE_TEST_KILL_AT_WRITE=k` ends the process
/// there on the spot (as a kill would, nothing cleaned up), `LERPSCOPE_TEST_PAUSE_AT_WRITE=k`
/// waits there a minute, or `LERPSCOPE_TEST_PAUSE_SECS` (for a signal, or a file, from
/// outside). Writes are counted per process.
fn write_point(path: &Path) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::OnceLock;
    static WRITES: AtomicUsize = AtomicUsize::new(0);
    type At = Option<usize>;
    static AT: OnceLock<(At, At, At)> = OnceLock::new();
    let (fail, kill, pause) = *AT.get_or_init(|| {
        let at = |v: &str| std::env::var(v).ok().and_then(|k| k.parse().ok());
        (
            at("LERPSCOPE_TEST_FAIL_WRITE"),
            at("LERPSCOPE_TEST_KILL_AT_WRITE"),
            at("LERPSCOPE_TEST_PAUSE_AT_WRITE"),
        )
    });
    if fail.is_none() && kill.is_none() && pause.is_none() {
        return Ok(());
    }
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    if kill == Some(n) {
        std::process::abort();
    }
    if pause == Some(n) {
        let secs = std::env::var("LERPSCOPE_TEST_PAUSE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60);
        std::thread::sleep(std::time::Duration::from_secs(secs));
    }
    if fail == Some(n) {
        let e = std::io::Error::other("injected failure (LERPSCOPE_TEST_FAIL_WRITE)");
        return io(Err(e), path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// B's name, its Hub revision kept whole (a revision may hold slashes).
    #[test]
    fn default_names_keep_the_name_and_the_revision() {
        let half = Alpha::new(0.5).unwrap();
        for (b, want) in [
            ("models/positive/", "positive-alpha0.5"),
            ("SmolLM2.Q4_1.gguf", "SmolLM2.Q4_1-alpha0.5"),
            ("org/two", "two-alpha0.5"),
            ("org/two@v1", "two-v1-alpha0.5"),
            ("org/two@refs/pr/1", "two-refs-pr-1-alpha0.5"),
        ] {
            assert_eq!(default_name(b, half), want, "{b}");
        }
        // `.` is the folder it is, not a hidden `.-alpha0.5` inside it.
        let here = std::env::current_dir().unwrap();
        let name = here.file_name().unwrap().to_string_lossy().to_string();
        for b in [".", "./"] {
            assert_eq!(default_name(b, half), format!("{name}-alpha0.5"), "{b}");
        }
    }
}
