//! PEFT LoRA adapters as endpoints: `adapter_config.json` + `adapter_model.safetensors`, read
//! with PEFT's conventions and checked against the base they are applied to.
//!
//! - Keys are `base_model.model.<module>.lora_A.weight` (`[r, in]`) and `….lora_B.weight`
//!   (`[out, r]`); embeddings use `….lora_embedding_A` (`[r, vocab]`) and `….lora_embedding_B`
//!   (`[dim, r]`). Keys without a LoRA part are `modules_to_save` (whole replacement tensors);
//!   `<module>.base_layer.weight` is the base weight PEFT saved beside an embedding LoRA.
//! - The update of a module is ΔW = s·B·A with s = alpha / r (or alpha / √r with rslora), r
//!   and alpha from `rank_pattern` / `alpha_pattern` when a pattern matches the module.
//! - GPT-2's Conv1D stores its weight `[in, out]`: ΔW is added transposed.
//! - DoRA, LoRA biases and other PEFT methods are refused by name.

use crate::error::{bail, err, Context, Result};
use crate::formats::checkpoint::{Checkpoint, TensorFiles};
use crate::formats::config::ModelConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// An adapter's files, wherever they came from.
#[derive(Debug, Clone)]
pub struct AdapterFiles {
    /// How the user named it (a path or a Hub id).
    pub label: String,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub weights: PathBuf,
}

/// Which modules a config targets (for checking them against the base).
#[derive(Debug, Clone, PartialEq)]
pub enum Targets {
    /// Names matched as whole names or as the last components of a module's name.
    List(Vec<String>),
    /// A regex matched against the whole module name.
    Regex(String),
    /// Every linear layer but the output head.
    AllLinear,
}

#[derive(Debug, Clone)]
pub struct AdapterConfig {
    pub r: usize,
    pub lora_alpha: f64,
    pub use_rslora: bool,
    /// (pattern, rank) and (pattern, alpha), in the file's order.
    pub rank_pattern: Vec<(String, usize)>,
    pub alpha_pattern: Vec<(String, f64)>,
    pub targets: Option<Targets>,
    pub modules_to_save: Vec<String>,
    pub base_model: Option<String>,
    /// The base's revision on the Hub (PEFT's `revision`), where one is named.
    pub base_revision: Option<String>,
    /// The layers PEFT put factors on (`layers_to_transform`); None for every layer.
    pub layers: Option<Vec<usize>>,
}

fn unsupported_true(v: &serde_json::Value, key: &str) -> bool {
    v.get(key).and_then(|x| x.as_bool()).unwrap_or(false)
}

impl AdapterConfig {
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let p = path.display();
        let v: serde_json::Value =
            serde_json::from_str(text).with_context(|| format!("{p}: malformed JSON"))?;
        if !v.is_object() {
            bail!(Format, "{p}: not a JSON object");
        }
        let kind = v
            .get("peft_type")
            .and_then(|t| t.as_str())
            .unwrap_or("LORA");
        if kind != "LORA" {
            bail!(
                Unsupported,
                "{p}: peft_type {kind:?} is not supported (lerpscope reads LoRA adapters)"
            );
        }
        if unsupported_true(&v, "use_dora") {
            bail!(
                Unsupported,
                "{p}: use_dora: DoRA adapters (lora_magnitude_vector) are not supported"
            );
        }
        let bias = v.get("bias").and_then(|b| b.as_str()).unwrap_or("none");
        if bias != "none" {
            bail!(
                Unsupported,
                "{p}: bias {bias:?}: adapters with trained biases are not supported (bias must be \"none\")"
            );
        }
        // Each changes what the adapter computes beyond W + s·B·A on every token.
        for key in ["lora_bias", "use_qalora"] {
            if unsupported_true(&v, key) {
                bail!(Unsupported, "{p}: {key} true is not supported");
            }
        }
        for key in [
            "target_parameters",
            "trainable_token_indices",
            "layer_replication",
            "alora_invocation_tokens",
            "arrow_config",
        ] {
            if v.get(key).is_some_and(|x| !x.is_null()) {
                bail!(Unsupported, "{p}: {key} is not supported");
            }
        }
        let layers = match v.get("layers_to_transform") {
            None | Some(serde_json::Value::Null) => None,
            Some(x) => {
                let list = match x.as_array() {
                    Some(a) => a.iter().map(serde_json::Value::as_u64).collect(),
                    None => x.as_u64().map(|n| vec![n]),
                };
                let list = list.ok_or_else(|| {
                    err!(
                        Format,
                        "{p}: layers_to_transform must be a layer number or a list of them"
                    )
                })?;
                Some(list.into_iter().map(|n| n as usize).collect())
            }
        };
        let positive = |key: &str| -> Result<f64> {
            let x = v
                .get(key)
                .and_then(|x| x.as_f64())
                .ok_or_else(|| err!(Format, "{p}: {key} must be a number"))?;
            if !(x.is_finite() && x > 0.0) {
                bail!(Format, "{p}: {key} must be positive, got {x}");
            }
            Ok(x)
        };
        let rank = |x: f64, key: &str| -> Result<usize> {
            if x.fract() != 0.0 || x > 1e6 {
                bail!(
                    Format,
                    "{p}: {key} must be a whole number of ranks, got {x}"
                );
            }
            Ok(x as usize)
        };
        let r = rank(positive("r")?, "r")?;
        let lora_alpha = positive("lora_alpha")?;
        let map = |key: &str| -> Result<Vec<(String, f64)>> {
            match v.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Object(o)) => o
                    .iter()
                    .map(|(k, x)| match x.as_f64() {
                        Some(x) if x.is_finite() && x > 0.0 => Ok((k.clone(), x)),
                        _ => bail!(Format, "{p}: {key}[{k:?}] must be a positive number"),
                    })
                    .collect(),
                Some(_) => bail!(Format, "{p}: {key} must be an object"),
            }
        };
        let rank_pattern = map("rank_pattern")?
            .into_iter()
            .map(|(k, x)| Ok((k, rank(x, "rank_pattern")?)))
            .collect::<Result<_>>()?;
        let alpha_pattern = map("alpha_pattern")?;
        let strings = |x: &serde_json::Value, key: &str| -> Result<Vec<String>> {
            x.as_array()
                .ok_or_else(|| err!(Format, "{p}: {key} must be a list or a string"))?
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(String::from)
                        .ok_or_else(|| err!(Format, "{p}: {key} must hold strings"))
                })
                .collect()
        };
        let targets = match v.get("target_modules") {
            None | Some(serde_json::Value::Null) => None,
            // PEFT takes the shorthand in any case.
            Some(serde_json::Value::String(s)) if s.eq_ignore_ascii_case("all-linear") => {
                Some(Targets::AllLinear)
            }
            Some(serde_json::Value::String(s)) => Some(Targets::Regex(s.clone())),
            Some(x) => Some(Targets::List(strings(x, "target_modules")?)),
        };
        let modules_to_save = match v.get("modules_to_save") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(x) => strings(x, "modules_to_save")?,
        };
        let base_model = v
            .get("base_model_name_or_path")
            .and_then(|b| b.as_str())
            .filter(|b| !b.is_empty())
            .map(String::from);
        let base_revision = v
            .get("revision")
            .and_then(|b| b.as_str())
            .filter(|b| !b.is_empty())
            .map(String::from);
        Ok(Self {
            r,
            lora_alpha,
            use_rslora: unsupported_true(&v, "use_rslora"),
            rank_pattern,
            alpha_pattern,
            targets,
            modules_to_save,
            base_model,
            base_revision,
            layers,
        })
    }

    /// Whether `module` (a name with its layer number as one of its parts, like
    /// `model.layers.3.mlp.up_proj`) is in a layer the adapter transforms.
    pub fn transforms_layer_of(&self, module: &str) -> bool {
        let Some(layers) = &self.layers else {
            return true;
        };
        let layer = module
            .split('.')
            .find_map(|part| part.parse::<usize>().ok());
        layer.is_none_or(|l| layers.contains(&l))
    }

    /// Rank and scale of `module`, PEFT's way: the first pattern whose regex matches the end of
    /// the module's name (at a `.` boundary) wins.
    pub fn rank_and_scale(&self, module: &str, path: &Path) -> Result<(usize, f32)> {
        let r = match find_pattern(self.rank_pattern.iter().map(|(k, r)| (k, *r)), module, path)? {
            Some(r) => r,
            None => self.r,
        };
        let alpha = find_pattern(
            self.alpha_pattern.iter().map(|(k, a)| (k, *a)),
            module,
            path,
        )?
        .unwrap_or(self.lora_alpha);
        let scale = if self.use_rslora {
            alpha / (r as f64).sqrt()
        } else {
            alpha / r as f64
        };
        Ok((r, scale as f32))
    }
}

/// PEFT's `get_pattern_key`: `re.match(rf"(.*\.)?({key})$", module)`.
fn find_pattern<'a, T>(
    patterns: impl Iterator<Item = (&'a String, T)>,
    module: &str,
    path: &Path,
) -> Result<Option<T>> {
    for (key, value) in patterns {
        if pattern_matches(&format!(r"^(.*\.)?({key})$"), module, key, path)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

fn pattern_matches(regex: &str, name: &str, as_written: &str, path: &Path) -> Result<bool> {
    let re = regex::Regex::new(regex).map_err(|e| {
        err!(
            Unsupported,
            "{}: pattern {as_written:?} is not a regex lerpscope can read ({e})",
            path.display()
        )
    })?;
    Ok(re.is_match(name))
}

/// How a module uses its weight, which decides how ΔW is laid out in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleKind {
    /// nn.Linear, weight `[out, in]`.
    Linear,
    /// GPT-2's Conv1D, weight `[in, out]`.
    Conv1D,
    /// nn.Embedding, weight `[vocab, dim]`.
    Embedding,
}

/// One module's update ΔW = up·down in the forward's orientation (`[out, in]` for linear
/// layers and Conv1D alike, `[vocab, dim]` for an embedding), the scale folded into `up`.
#[derive(Debug, Clone)]
pub struct LowRank {
    pub kind: ModuleKind,
    pub rank: usize,
    /// `[out, rank]`.
    pub up: Vec<f32>,
    /// `[rank, in]`.
    pub down: Vec<f32>,
    pub out: usize,
    pub inp: usize,
}

/// An adapter read and checked against its base.
pub struct Adapter {
    pub files: AdapterFiles,
    pub config: AdapterConfig,
    /// Base tensor name (`….weight`) → its update.
    pub updates: BTreeMap<String, LowRank>,
    /// Base tensor name → the values that replace it (`modules_to_save`, or a saved base layer
    /// that differs from the base's).
    pub replacements: BTreeMap<String, Vec<f32>>,
}

const PREFIX: &str = "base_model.model.";

/// GPT-2's Conv1D modules.
fn is_conv1d(config: &ModelConfig, module: &str) -> bool {
    matches!(config, ModelConfig::Gpt2(_))
        && [".c_attn", ".c_proj", ".c_fc"]
            .iter()
            .any(|m| module.ends_with(m))
}

fn is_embedding(config: &ModelConfig, module: &str) -> bool {
    match config {
        ModelConfig::Decoder(_) => module.ends_with("embed_tokens"),
        ModelConfig::Gpt2(_) => {
            module.ends_with(".wte")
                || module.ends_with(".wpe")
                || module == "wte"
                || module == "wpe"
        }
    }
}

impl Adapter {
    pub fn load(files: AdapterFiles, base: &Checkpoint) -> Result<Self> {
        let text = std::fs::read_to_string(&files.config)
            .with_context(|| format!("{}: cannot read", files.config.display()))?;
        let config = AdapterConfig::parse(&text, &files.config)?;
        let store = TensorFiles::open(std::slice::from_ref(&files.weights))?;
        let wpath = files.weights.display().to_string();
        let base_label = base.label().to_string();
        // Group the keys by module: (lora_A key, lora_B key, embedding?).
        let mut pairs: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
        let mut embedding: BTreeMap<String, [Option<String>; 2]> = BTreeMap::new();
        let mut replacements = BTreeMap::new();
        for key in store.tensors.keys() {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                bail!(
                    Format,
                    "{wpath}: key {key:?} does not start with {PREFIX:?} (not a PEFT adapter?)"
                );
            };
            // PEFT strips the adapter's name on saving; a file that kept it is read alike.
            let rest = rest
                .replace(".lora_A.default.", ".lora_A.")
                .replace(".lora_B.default.", ".lora_B.");
            let rest = rest.trim_end_matches(".default").to_string();
            if rest.contains("lora_magnitude_vector") {
                bail!(
                    Unsupported,
                    "{wpath}: {key}: DoRA adapters (lora_magnitude_vector) are not supported"
                );
            }
            if !config.transforms_layer_of(&rest) {
                bail!(
                    Format,
                    "{wpath}: {key} is for a layer outside layers_to_transform {:?} in {}",
                    config.layers.as_deref().unwrap_or_default(),
                    files.config.display()
                );
            }
            if let Some(m) = rest.strip_suffix(".lora_A.weight") {
                pairs.entry(m.to_string()).or_default()[0] = Some(key.clone());
            } else if let Some(m) = rest.strip_suffix(".lora_B.weight") {
                pairs.entry(m.to_string()).or_default()[1] = Some(key.clone());
            } else if let Some(m) = rest.strip_suffix(".lora_embedding_A") {
                embedding.entry(m.to_string()).or_default()[0] = Some(key.clone());
            } else if let Some(m) = rest.strip_suffix(".lora_embedding_B") {
                embedding.entry(m.to_string()).or_default()[1] = Some(key.clone());
            } else if rest.contains(".lora_") || rest.starts_with("lora_") {
                bail!(
                    Unsupported,
                    "{wpath}: {key}: only LoRA factors (lora_A, lora_B, lora_embedding_A/B) are supported"
                );
            } else {
                // A whole tensor: modules_to_save, or the base layer saved beside an
                // embedding LoRA.
                let name = match rest.strip_suffix(".base_layer.weight") {
                    Some(m) => format!("{m}.weight"),
                    None => rest.clone(),
                };
                // On a tied base PEFT replaces the embedding alone (the head stays the base's
                // embedding, untied) unless the adapter asks to keep them tied: the head
                // following the replacement is only right in that case, so neither is taken.
                let tied = match &base.config {
                    ModelConfig::Decoder(c) => c.tie_word_embeddings,
                    ModelConfig::Gpt2(_) => true,
                };
                let embedding = ["model.embed_tokens.weight", "transformer.wte.weight"];
                let head_or_embedding =
                    embedding.contains(&name.as_str()) || name == "lm_head.weight";
                if tied && head_or_embedding && !rest.ends_with(".base_layer.weight") {
                    bail!(
                        Unsupported,
                        "{wpath}: {key} replaces {name} whole (modules_to_save), but the base {base_label} ties its head to its embedding; replacing one of a tied pair is not supported (PEFT runs them apart unless ensure_weight_tying)"
                    );
                }
                let meta = base.weights.tensors.get(&name).ok_or_else(|| {
                    err!(
                        Mismatch,
                        "{wpath}: {key} replaces {name}, which is not in the base {base_label}"
                    )
                })?;
                let shape = &store.tensors[key].shape;
                if *shape != meta.shape {
                    bail!(
                        Mismatch,
                        "{wpath}: {key} is {shape:?} but the base's {name} is {:?}; was this adapter made for another base?",
                        meta.shape
                    );
                }
                let values = store.read_f32(key)?;
                if rest.ends_with(".base_layer.weight") && values == base.weights.read_f32(&name)? {
                    continue; // the base's own values
                }
                replacements.insert(name, values);
            }
        }
        let mut updates = BTreeMap::new();
        let missing = |m: &str, which: &str| {
            err!(
                Format,
                "{wpath}: module {m} has no {which} (a LoRA needs both factors)"
            )
        };
        for (module, [a, b]) in &pairs {
            let (a, b) = (
                a.as_ref().ok_or_else(|| missing(module, "lora_A"))?,
                b.as_ref().ok_or_else(|| missing(module, "lora_B"))?,
            );
            let kind = if is_conv1d(&base.config, module) {
                ModuleKind::Conv1D
            } else {
                ModuleKind::Linear
            };
            updates.insert(
                format!("{module}.weight"),
                factors(&store, &config, base, &files, module, kind, a, b)?,
            );
        }
        for (module, [a, b]) in &embedding {
            let (a, b) = (
                a.as_ref()
                    .ok_or_else(|| missing(module, "lora_embedding_A"))?,
                b.as_ref()
                    .ok_or_else(|| missing(module, "lora_embedding_B"))?,
            );
            if !is_embedding(&base.config, module) {
                bail!(
                    Mismatch,
                    "{wpath}: {module} has an embedding LoRA but is not an embedding of the base"
                );
            }
            updates.insert(
                format!("{module}.weight"),
                factors(
                    &store,
                    &config,
                    base,
                    &files,
                    module,
                    ModuleKind::Embedding,
                    a,
                    b,
                )?,
            );
        }
        if updates.is_empty() && replacements.is_empty() {
            bail!(
                Format,
                "{wpath}: no LoRA factors and no saved modules: nothing to apply"
            );
        }
        check_targets(&config, base, &files.config)?;
        for (module, update) in &updates {
            let module = module.strip_suffix(".weight").unwrap_or(module);
            if !targeted(&config, module, update.kind, &files.config)? {
                let why = match config.targets {
                    Some(Targets::AllLinear) => {
                        "\"all-linear\" leaves out (PEFT skips the output head and embeddings there)"
                    }
                    _ => "does not name (PEFT would leave them out)",
                };
                bail!(
                    Format,
                    "{wpath}: holds LoRA factors for {module}, which target_modules in {} {why}",
                    files.config.display()
                );
            }
        }
        Ok(Self {
            files,
            config,
            updates,
            replacements,
        })
    }

    /// "LoRA r8 ×7 modules" (and what else it carries).
    pub fn describe(&self) -> String {
        let mut ranks: Vec<usize> = self.updates.values().map(|u| u.rank).collect();
        ranks.sort();
        ranks.dedup();
        let r = match ranks.as_slice() {
            [] => String::new(),
            [r] => format!(" r{r}"),
            [lo, .., hi] => format!(" r{lo}–{hi}"),
        };
        let mut s = format!("LoRA{r} ×{} modules", self.updates.len());
        if !self.replacements.is_empty() {
            s.push_str(&format!(" + {} saved tensors", self.replacements.len()));
        }
        s
    }
}

/// The factors of one module, checked against the base's weight and the config's rank, in
/// the forward's orientation with the scale folded in.
#[allow(clippy::too_many_arguments)]
fn factors(
    store: &TensorFiles,
    config: &AdapterConfig,
    base: &Checkpoint,
    files: &AdapterFiles,
    module: &str,
    kind: ModuleKind,
    key_a: &str,
    key_b: &str,
) -> Result<LowRank> {
    let wpath = files.weights.display();
    let name = format!("{module}.weight");
    let meta = base.weights.tensors.get(&name).ok_or_else(|| {
        // A tied head is the embedding's tensor: a LoRA on it alone would untie the two.
        let tied = module == "lm_head"
            && ["model.embed_tokens.weight", "transformer.wte.weight", "wte.weight"]
                .iter()
                .any(|e| base.weights.tensors.contains_key(*e));
        match tied {
            true => err!(
                Unsupported,
                "{wpath}: a LoRA on lm_head of the base {}, whose head is tied to its embeddings (tie_word_embeddings), is not supported: it would change the head alone",
                base.label()
            ),
            false => err!(
                Mismatch,
                "{wpath}: module {module} is not in the base {} (no tensor {name})",
                base.label()
            ),
        }
    })?;
    let (sa, sb) = (&store.tensors[key_a].shape, &store.tensors[key_b].shape);
    if meta.shape.len() != 2 || sa.len() != 2 || sb.len() != 2 {
        bail!(
            Mismatch,
            "{wpath}: {module}: factors {sa:?} and {sb:?} do not fit the base's {name} {:?}",
            meta.shape
        );
    }
    // (rank, in, out) as PEFT's shapes say, and (in, out) as the base's weight says.
    let (rank, inp, out) = match kind {
        ModuleKind::Embedding => (sa[0], sa[1], sb[0]), // A [r, vocab], B [dim, r]
        _ => (sa[0], sa[1], sb[0]),                     // A [r, in], B [out, r]
    };
    let (base_in, base_out) = match kind {
        ModuleKind::Linear => (meta.shape[1], meta.shape[0]),
        ModuleKind::Conv1D => (meta.shape[0], meta.shape[1]),
        ModuleKind::Embedding => (meta.shape[0], meta.shape[1]), // [vocab, dim]
    };
    if sb[1] != rank || inp != base_in || out != base_out {
        bail!(
            Mismatch,
            "{wpath}: {module}: lora factors {sa:?} and {sb:?} do not fit the base's {name} {:?}; was this adapter made for another base?",
            meta.shape
        );
    }
    let (want, scale) = config.rank_and_scale(module, &files.config)?;
    if rank != want {
        bail!(
            Format,
            "{wpath}: {module} has rank {rank} but {} gives r = {want}",
            files.config.display()
        );
    }
    let a = store.read_f32(key_a)?;
    let b = store.read_f32(key_b)?;
    Ok(match kind {
        // ΔW [out, in] = s·B·A: up = s·B [out, r], down = A [r, in].
        ModuleKind::Linear | ModuleKind::Conv1D => LowRank {
            kind,
            rank,
            up: b.iter().map(|x| x * scale).collect(),
            down: a,
            out: base_out,
            inp: base_in,
        },
        // ΔE [vocab, dim] = s·(B·A)ᵀ = s·Aᵀ·Bᵀ: up = s·Aᵀ [vocab, r], down = Bᵀ [r, dim].
        ModuleKind::Embedding => LowRank {
            kind,
            rank,
            up: crate::formats::layout::transpose(&a, rank, inp)
                .iter()
                .map(|x| x * scale)
                .collect(),
            down: crate::formats::layout::transpose(&b, out, rank),
            out: inp,
            inp: out,
        },
    })
}

/// Whether PEFT would put a LoRA on `module`: a name in the list that is the module's or
/// its last dotted part(s), a regex matching the whole name, or for `all-linear` any linear
/// layer but the output head (PEFT drops the model's output embeddings from that set, and an
/// embedding is not a linear layer).
fn targeted(config: &AdapterConfig, module: &str, kind: ModuleKind, path: &Path) -> Result<bool> {
    Ok(match &config.targets {
        Some(Targets::List(names)) => names
            .iter()
            .any(|t| module == t || module.ends_with(&format!(".{t}"))),
        Some(Targets::Regex(re)) => pattern_matches(&format!("^(?:{re})$"), module, re, path)?,
        Some(Targets::AllLinear) => kind != ModuleKind::Embedding && module != "lm_head",
        None => bail!(
            Format,
            "{}: target_modules is not given (PEFT would take its default for the model type); name the modules",
            path.display()
        ),
    })
}

/// Every module the config targets must exist in the base.
fn check_targets(config: &AdapterConfig, base: &Checkpoint, path: &Path) -> Result<()> {
    let modules: Vec<&str> = base
        .weights
        .tensors
        .keys()
        .filter_map(|n| n.strip_suffix(".weight"))
        .collect();
    let p = path.display();
    match &config.targets {
        Some(Targets::List(names)) => {
            for t in names {
                let found = modules
                    .iter()
                    .any(|m| *m == t || m.ends_with(&format!(".{t}")));
                if !found {
                    bail!(
                        Mismatch,
                        "{p}: target module {t:?} is not in the base {}",
                        base.label()
                    );
                }
            }
        }
        Some(Targets::Regex(re)) => {
            let mut found = false;
            for m in &modules {
                if pattern_matches(&format!("^(?:{re})$"), m, re, path)? {
                    found = true;
                    break;
                }
            }
            if !found {
                bail!(
                    Mismatch,
                    "{p}: target_modules {re:?} matches no module of the base {}",
                    base.label()
                );
            }
        }
        Some(Targets::AllLinear) | None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_peft_fields_and_refuses_the_unsupported_by_name() {
        let p = Path::new("adapter_config.json");
        let c = AdapterConfig::parse(
            r#"{"peft_type":"LORA","r":8,"lora_alpha":16,"use_rslora":true,
            "rank_pattern":{"v_proj":2},"alpha_pattern":{"layers\\.0\\..*q_proj":4},
            "target_modules":["q_proj","v_proj"],"base_model_name_or_path":"org/base"}"#,
            p,
        )
        .unwrap();
        assert_eq!(
            c.rank_and_scale("model.layers.3.self_attn.v_proj", p)
                .unwrap(),
            (2, 16.0 / 2f32.sqrt())
        );
        assert_eq!(
            c.rank_and_scale("model.layers.0.self_attn.q_proj", p)
                .unwrap(),
            (8, 4.0 / 8f32.sqrt())
        );
        assert_eq!(
            c.rank_and_scale("model.layers.1.self_attn.q_proj", p)
                .unwrap(),
            (8, 16.0 / 8f32.sqrt())
        );
        // "v_proj" must not match "xv_proj": the pattern ends at a dot boundary.
        assert_eq!(c.rank_and_scale("model.xv_proj", p).unwrap().0, 8);
        assert_eq!(c.base_model.as_deref(), Some("org/base"));
        for (json, part) in [
            (r#"{"peft_type":"IA3","r":8,"lora_alpha":8}"#, "IA3"),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"use_dora":true}"#,
                "use_dora",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"bias":"all"}"#,
                "bias",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"lora_bias":true}"#,
                "lora_bias true is not supported",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"use_qalora":true}"#,
                "use_qalora true is not supported",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"alora_invocation_tokens":[5]}"#,
                "alora_invocation_tokens is not supported",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"arrow_config":{"top_k":2}}"#,
                "arrow_config is not supported",
            ),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"layers_to_transform":"x"}"#,
                "layers_to_transform must be",
            ),
            (
                r#"{"peft_type":"LORA","r":0,"lora_alpha":8}"#,
                "r must be positive",
            ),
            (r#"{"peft_type":"LORA","r":8}"#, "lora_alpha"),
            (
                r#"{"peft_type":"LORA","r":8,"lora_alpha":8,"rank_pattern":{"(?<=x)q":2}}"#,
                "",
            ),
        ] {
            match AdapterConfig::parse(json, p) {
                Err(e) => assert!(e.to_string().contains(part), "{json}: {e}"),
                Ok(c) => {
                    // A pattern Rust's regex cannot read fails when it is used, naming it.
                    let e = c.rank_and_scale("q", p).unwrap_err();
                    assert!(e.to_string().contains("(?<=x)q"), "{e}");
                }
            }
        }
    }

    #[test]
    fn layers_to_transform_names_the_layers_with_factors() {
        let p = Path::new("adapter_config.json");
        let parse = |layers: &str| {
            AdapterConfig::parse(
                &format!(r#"{{"r":8,"lora_alpha":8,"layers_to_transform":{layers}}}"#),
                p,
            )
            .unwrap()
        };
        let c = parse("[1, 3]");
        assert!(c.transforms_layer_of("model.layers.3.mlp.up_proj"));
        assert!(!c.transforms_layer_of("model.layers.0.mlp.up_proj"));
        assert!(c.transforms_layer_of("lm_head"), "a module of no layer");
        let one = parse("2");
        assert!(one.transforms_layer_of("transformer.h.2.attn.c_attn"));
        assert!(!one.transforms_layer_of("transformer.h.1.attn.c_attn"));
        assert!(parse("null").transforms_layer_of("model.layers.0.mlp.up_proj"));
    }
}
