//! `lerpscope sweep`: N samples per prompt per α (common random numbers across α), scored for
//! the attribute (VADER) and fluency (perplexity under a reference), summarised with 95%
//! intervals, plotted. Results are appended to samples.jsonl as they are made, so an
//! interrupted sweep rerun with the same --out resumes where it stopped.

use super::grid::{Cell, SampleGrid};
use super::stats::{estimate, Estimate};
use super::{distinct_n, Scorer, Vader};
use crate::engine::tokens::{plain, without_specials};
use crate::engine::{perplexity, Alpha, ColumnsMode, Engine, GenerationParams};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which model judges fluency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PplRef {
    /// Endpoint A alone (α = 0).
    A,
    /// Endpoint B alone (α = 1).
    B,
    /// The blend that wrote the text.
    Blend,
    /// Another model directory or Hub id; a sample is tokenized again where its tokenizer
    /// differs.
    Model(String),
}

impl std::str::FromStr for PplRef {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "a" => PplRef::A,
            "b" => PplRef::B,
            "blend" => PplRef::Blend,
            other => PplRef::Model(other.to_string()),
        })
    }
}

/// Where two sweeps' settings part, for a refused resume: "samples 8 there, 4 now; params.seed
/// …" (the first few, values cut short).
fn settings_apart(there: &SweepConfig, now: &SweepConfig) -> String {
    fn walk(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let mut seen = std::collections::HashSet::new();
                for k in x.keys().chain(y.keys()).filter(|k| seen.insert(*k)) {
                    let name = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    let none = Value::Null;
                    walk(
                        &name,
                        x.get(k).unwrap_or(&none),
                        y.get(k).unwrap_or(&none),
                        out,
                    );
                }
            }
            _ if a != b => {
                let (a, b) = (a.to_string(), b.to_string());
                // Around where the two part: long texts (the held pair) share long openings.
                let from = a
                    .chars()
                    .zip(b.chars())
                    .take_while(|(x, y)| x == y)
                    .count()
                    .saturating_sub(12);
                let short = |t: &str| {
                    let lead = if from > 0 { "…" } else { "" };
                    let rest: Vec<char> = t.chars().skip(from).collect();
                    let kept: String = rest.iter().take(40).collect();
                    let tail = if rest.len() > 40 { "…" } else { "" };
                    format!("{lead}{kept}{tail}")
                };
                out.push(format!("{path} {} there, {} now", short(&a), short(&b)));
            }
            _ => {}
        }
    }
    let (Ok(a), Ok(b)) = (serde_json::to_value(there), serde_json::to_value(now)) else {
        return "settings".into();
    };
    let mut apart = Vec::new();
    walk("", &a, &b, &mut apart);
    let more = apart.len().saturating_sub(3);
    apart.truncate(3);
    match more {
        0 => apart.join("; "),
        n => format!("{}; and {n} more", apart.join("; ")),
    }
}

/// What defines a sweep; a rerun into the same directory must match it to resume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepConfig {
    pub a: String,
    pub b: String,
    pub alphas: Vec<Alpha>,
    pub prompts: Vec<String>,
    pub samples: usize,
    pub params: GenerationParams,
    pub ppl_ref: PplRef,
    /// An optional classifier scorer: (model directory or Hub id, label).
    #[serde(default)]
    pub classifier: Option<(String, String)>,
    /// How the weights move with α (sweeps written before this was recorded were linear).
    #[serde(default)]
    pub method: crate::engine::Method,
    /// The mergekit recipe that named the endpoints and their path (`--recipe`), as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// With α per layer: its rules (`--layer-alphas` syntax), absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<String>,
    /// With a plane: endpoint C and β ("C, β 0.5"; β α: a recipe's direction), and with a
    /// fourth endpoint D and γ after it ("C, β 0.5; D, γ 0.3"), absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plane: Option<String>,
    /// How the alphas were generated. [`Sweep::run`] settles it when the sweep starts (from
    /// [`Sweep::mode`]) and keeps it for every resume; what a caller puts here is replaced.
    #[serde(default)]
    pub alpha_mode: AlphaMode,
    /// How the loaded pair holds and reads its weights, and what ends a sample: its
    /// description (the base, the types kept quantized), dtype, chat template and stop
    /// texts. [`Sweep::run`] records it from the engine, and a resume must find the same
    /// (sweeps written before it was recorded resume unchecked); what a caller puts here is
    /// replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// How each sample's seed comes from `params`' seed (what a caller puts here is
    /// replaced by the earlier sweep's on a resume).
    #[serde(default = "super::grid::Seeds::unrecorded")]
    pub seeds: super::grid::Seeds,
    /// A digest of every prompt's token ids as they reach the model (through the chat
    /// template, where one is on): a resume must find the same, or its samples would answer
    /// other prompts (another tokenizer, or a template rendered otherwise by another version).
    /// [`Sweep::run`] records it; sweeps written before it was recorded resume unchecked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens: Option<String>,
    /// SHA-256 of the files of the models that score samples apart from the pair (the
    /// classifier, a fluency judge of its own), which their paths alone do not pin down: a
    /// resume must find the same files, by whatever path. [`Sweep::run`] records it; sweeps
    /// written before it was recorded resume on the paths as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judges: Option<String>,
    /// A digest of where the endpoints given as local paths are (`--a`, `--b`, C and D:
    /// their canonical paths) and of their files' names, sizes and modification times: a
    /// resume, which names them as the sweep did, must find the same files, not a model
    /// retrained in place or another one under the same relative path. Hub ids count as
    /// named. [`Sweep::run`] records it; sweeps written before it was recorded resume on the
    /// paths alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoints: Option<String>,
}

/// [`SweepConfig::endpoints`] of the pair `engine` loaded from `a` and `b`.
fn endpoints_digest(a: &str, b: &str, engine: &Engine) -> Result<String> {
    let extra = [engine.third(), engine.fourth()];
    let sources = [a, b]
        .into_iter()
        .chain(extra.iter().flatten().map(|e| e.source.as_str()));
    let mut text = String::new();
    for src in sources {
        let path = Path::new(src);
        if !path.exists() {
            text.push_str(&format!("{src}\n"));
            continue;
        }
        let path = path
            .canonicalize()
            .with_context(|| format!("{src}: cannot resolve"))?;
        let mut files = vec![path.clone()];
        if path.is_dir() {
            files = std::fs::read_dir(&path)
                .with_context(|| format!("{}: cannot read", path.display()))?
                .flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            text.push_str(&format!("{}\n", path.display()));
        }
        for f in files {
            let m =
                std::fs::metadata(&f).with_context(|| format!("{}: cannot read", f.display()))?;
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            text.push_str(&format!("{} {} {modified}\n", f.display(), m.len()));
        }
    }
    Ok(format!("{:016x}", fnv1a(text.as_bytes())))
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike the standard library's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// [`SweepConfig::judges`] of `c`: None where the pair alone scores.
fn judges_digest(c: &SweepConfig) -> Result<Option<String>> {
    let mut files = Vec::new();
    let sources = c
        .classifier
        .iter()
        .map(|(src, _)| src)
        .chain(match &c.ppl_ref {
            PplRef::Model(src) => Some(src),
            _ => None,
        });
    for src in sources {
        let f = crate::engine::source::resolve(src)?;
        files.extend([f.config, f.tokenizer].into_iter().chain(f.weights));
    }
    if files.is_empty() {
        return Ok(None);
    }
    files.dedup();
    Ok(Some(crate::engine::source::sha256(&files)?))
}

/// `asked` with the classifier's and the judge's paths as `old` names them, where both name
/// one (their files are compared instead); the label, and which kind of judge, still count.
fn same_judge_paths(mut asked: SweepConfig, old: &SweepConfig) -> SweepConfig {
    if let (Some((path, _)), Some((theirs, _))) = (&mut asked.classifier, &old.classifier) {
        path.clone_from(theirs);
    }
    if let (PplRef::Model(path), PplRef::Model(theirs)) = (&mut asked.ppl_ref, &old.ppl_ref) {
        path.clone_from(theirs);
    }
    asked
}

/// `asked` with its classifier label written as `old` wrote it, where the two differ only in
/// case: the classifier reads a label in any case, so the sweep is the same.
fn same_label_case(mut asked: SweepConfig, old: &SweepConfig) -> SweepConfig {
    if let (Some((_, label)), Some((_, theirs))) = (&mut asked.classifier, &old.classifier) {
        if label.to_lowercase() == theirs.to_lowercase() {
            label.clone_from(theirs);
        }
    }
    asked
}

/// [`SweepConfig::prompt_tokens`] of `prompts` under `engine`: FNV-1a over every prompt's ids.
fn prompt_tokens(engine: &Engine, prompts: &[String]) -> Result<String> {
    let mut bytes = Vec::new();
    for p in prompts {
        let ids = engine.encode(p)?;
        for word in ids.iter().copied().chain([u32::MAX]) {
            bytes.extend(word.to_le_bytes());
        }
    }
    Ok(format!("{:016x}", fnv1a(&bytes)))
}

/// [`SweepConfig::held`] of `engine`.
fn held(engine: &Engine) -> String {
    let i = &engine.info;
    format!(
        "{} · {} · chat template {} · stop {:?}",
        i.description,
        i.dtype,
        if i.chat_template { "on" } else { "off" },
        engine.stop_texts()
    )
}

/// How a sweep's alphas are generated. The two round differently (a re-blended weight against
/// `(1 − α)·A·x + α·B·x`), so a sweep keeps one mode from start to finish: a resumed sweep
/// writes what an uninterrupted one would.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlphaMode {
    /// The weights re-blended to each α in turn; a prompt's samples at that α as one batch.
    /// (Sweeps written before the mode was recorded were made this way.)
    #[default]
    Reblend,
    /// Several alphas' samples of a prompt as one batch, each row at its own α: both
    /// endpoints read per step (adapters: the base once, the low-rank updates per row).
    Batched,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub alpha: Alpha,
    pub prompt_index: usize,
    pub sample: usize,
    pub seed: u64,
    pub prompt: String,
    pub text: String,
    pub tokens: usize,
    pub vader: f64,
    /// Absent (`null`) for an empty sample: perplexity over no tokens is undefined. (Also for
    /// one whose perplexity is not finite, which JSON cannot hold.)
    pub perplexity: Option<f64>,
    /// The classifier's probability of the chosen label, when one is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AlphaSummary {
    pub alpha: Alpha,
    /// Samples with no tokens (an end token first): no meter scores them, and none of the
    /// estimates below counts them.
    pub empty: usize,
    pub vader: Estimate,
    pub perplexity: Estimate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classifier: Option<Estimate>,
    pub distinct_1: f64,
    pub distinct_2: f64,
    pub distinct_3: f64,
}

/// The settings of an earlier sweep (its sweep.json).
pub fn read_config(path: &Path) -> Result<SweepConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: malformed", path.display()))
}

/// Read the finished records of an earlier run. A torn last line (the run was killed while
/// writing it) is cut off so appending continues cleanly; a damaged complete line is an error
/// naming it, so that no record after it is silently dropped.
pub fn read_records(path: &Path) -> Result<Vec<SampleRecord>> {
    // Bytes, not text: a write cut short (a full disk) may end inside a character.
    let text = match std::fs::read(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let mut records = Vec::new();
    let mut lines = std::collections::HashMap::new();
    let mut good = 0;
    for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        if !line.ends_with(b"\n") {
            break; // torn: cut below
        }
        let r = serde_json::from_slice::<SampleRecord>(line).with_context(|| {
            format!(
                "{}: line {} is not a sample record; fix or remove it to resume",
                path.display(),
                i + 1
            )
        })?;
        // A sample counted twice would narrow every interval it is in.
        let key = (r.alpha.value().to_bits(), r.prompt_index, r.sample);
        if let Some(first) = lines.insert(key, i + 1) {
            bail!(
                "{}: line {} repeats the sample of line {first} (α {}, prompt {}, sample {}); remove one to resume",
                path.display(),
                i + 1,
                r.alpha,
                r.prompt_index,
                r.sample
            );
        }
        records.push(r);
        good += line.len();
    }
    if good < text.len() {
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(good as u64))
            .with_context(|| {
                format!(
                    "{}: cannot cut off its torn last line to resume",
                    path.display()
                )
            })?;
    }
    Ok(records)
}

/// Samples of one prompt generated together as one batch, at most.
pub const SAMPLE_BATCH: usize = 16;

/// Batches of one α a re-blended stage generates before it scores and writes them: at most
/// 512 samples held at once, and one more re-blend (to the judge's α and back) per stretch.
const STAGE_BATCHES: usize = 32;

/// Samples one sweep plans, at most (α × prompt × sample): its plan is held whole.
pub const MOST_SAMPLES: usize = 10_000_000;

/// Rows of one batch in [`AlphaMode::Batched`], at most: as many whole alphas' sample groups
/// as fit (at least one).
pub const ALPHA_BATCH_ROWS: usize = 64;

pub struct Sweep {
    pub config: SweepConfig,
    /// The mode asked for: auto measures which is faster when the sweep starts. A resumed
    /// sweep keeps the mode it started with; asking for the other one is an error.
    pub mode: ColumnsMode,
    pub out: PathBuf,
    pub progress: bool,
    /// After a run: the generation rate over every row generated (None if nothing was).
    pub tokens_per_s: std::cell::Cell<Option<f64>>,
}

impl Sweep {
    pub fn run(&self, engine: &mut Engine) -> Result<Vec<AlphaSummary>> {
        let out = &self.out;
        // Every α within reach before any sample (α per layer, a recipe's weights).
        engine.check_reach_all(&self.config.alphas)?;
        // The judges first: one that does not load leaves no sweep behind.
        let fluency = super::points::Fluency::new(self.config.ppl_ref.clone(), engine)?;
        let classifier = match &self.config.classifier {
            Some((src, label)) => Some(super::classifier::Classifier::load(src, label)?),
            None => None,
        };
        let cfg_path = out.join("sweep.json");
        // The folder first, so that a --out that cannot be made fails before auto's timing;
        // a mode the pair cannot take then removes the folder it made, leaving nothing behind.
        // Samples without the settings they were made with cannot be matched to a new run's.
        let samples_path = out.join("samples.jsonl");
        if !cfg_path.exists() && samples_path.metadata().is_ok_and(|m| m.len() > 0) {
            bail!(
                "--out {}: holds {} but no sweep.json, so the settings its samples were made with are unknown; use another --out",
                out.display(),
                samples_path.display()
            );
        }
        // A new sweep writes its files over whatever holds their names: only into a folder
        // that is new, or holds no more than a sweep stopped before its first sample leaves
        // (an empty samples.jsonl, the partial copy of a record being written).
        if !cfg_path.exists() && out.exists() {
            if !out.is_dir() {
                bail!("--out {}: is not a folder", out.display());
            }
            let entries = std::fs::read_dir(out)
                .with_context(|| format!("--out {}: cannot read", out.display()))?;
            let theirs = entries.flatten().find(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let partial = name.starts_with('.') && name.contains(".partial-");
                !(partial || name == "samples.jsonl")
            });
            if let Some(e) = theirs {
                bail!(
                    "--out {}: holds {} and no sweep (sweep.json) to resume; a new sweep goes into a new or empty folder",
                    out.display(),
                    e.file_name().to_string_lossy()
                );
            }
        }
        let made: Vec<PathBuf> = out
            .ancestors()
            .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
            .map(Path::to_path_buf)
            .collect();
        std::fs::create_dir_all(out)
            .with_context(|| format!("--out {}: cannot create", out.display()))?;
        // One sweep at a time in a folder: two would both append to one record file, and
        // a later run would count their samples together. The records file is the lock,
        // held until this run is done; whatever this run decides below, it decides alone.
        let new_records = !samples_path.exists();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&samples_path)
            .with_context(|| format!("{}: cannot open", samples_path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "--out {}: another sweep is writing there now; wait for it, or use another --out",
                out.display()
            ),
            // A file system without locks (some network ones): the sweep runs unguarded.
            Err(std::fs::TryLockError::Error(_)) => {}
        }
        // What a killed sweep was writing is not a record; this run writes its own.
        crate::files::remove_stale_partials(out);
        let fresh_mode = match cfg_path.exists() {
            true => None,
            false => match self.settle_mode(engine) {
                Ok(mode) => Some(mode),
                Err(e) => {
                    if new_records {
                        let _ = std::fs::remove_file(&samples_path);
                    }
                    // Innermost first; each is still empty.
                    for dir in &made {
                        let _ = std::fs::remove_dir(dir);
                    }
                    return Err(e);
                }
            },
        };
        let tokens = prompt_tokens(engine, &self.config.prompts)?;
        let c = &match fresh_mode {
            None => {
                let old = read_config(&cfg_path)?;
                let asked = SweepConfig {
                    alpha_mode: old.alpha_mode,
                    seeds: old.seeds,
                    held: old.held.as_ref().map(|_| held(engine)),
                    prompt_tokens: old.prompt_tokens.clone(),
                    // A record of where the recipe was read, which may be named otherwise
                    // (another working directory) or not at all (older sweeps): what it says
                    // is checked as the rules and the plane it gave.
                    recipe: old.recipe.clone(),
                    judges: old.judges.clone(),
                    endpoints: old.endpoints.clone(),
                    ..self.config.clone()
                };
                // Recorded, the endpoints' files are checked too: the same path may name
                // a model retrained since, or another one (from another working folder).
                if let Some(digest) = &old.endpoints {
                    if endpoints_digest(&asked.a, &asked.b, engine)? != *digest {
                        bail!(
                            "--out {}: the endpoints (--a, --b and any C or D) are other files than when the sweep started (elsewhere, or changed since: their sizes or times differ); use another --out to start a new one",
                            out.display()
                        );
                    }
                }
                // With the judges' files recorded, they are checked by content, below.
                let asked = match old.judges {
                    Some(_) => same_judge_paths(asked, &old),
                    None => asked,
                };
                let asked = same_label_case(asked, &old);
                if asked != old {
                    bail!(
                        "--out {} holds a sweep with other settings ({}: {}); use another --out to start a new one",
                        out.display(),
                        cfg_path.display(),
                        settings_apart(&old, &asked)
                    );
                }
                // The same prompts, and settings, but other tokens.
                if old.prompt_tokens.as_ref().is_some_and(|t| *t != tokens) {
                    bail!(
                        "--out {}: its prompts now reach the model as other tokens than when the sweep started (another tokenizer, or its chat template rendered otherwise); use another --out to start a new one",
                        out.display()
                    );
                }
                if old.judges.is_some() && judges_digest(&self.config)? != old.judges {
                    bail!(
                        "--out {}: the classifier or fluency judge (--classifier, --ppl-ref) holds other files than when the sweep started; use another --out to start a new one",
                        out.display()
                    );
                }
                if AlphaMode::asked(self.mode).is_some_and(|m| m != old.alpha_mode) {
                    bail!(
                        "--alpha-mode {}: --out {} holds a sweep made in {} mode, which it keeps to resume exactly; use another --out for a new mode",
                        self.mode.name(),
                        out.display(),
                        old.alpha_mode.name()
                    );
                }
                old
            }
            Some(alpha_mode) => {
                let c = SweepConfig {
                    alpha_mode,
                    held: Some(held(engine)),
                    prompt_tokens: Some(tokens),
                    judges: judges_digest(&self.config)?,
                    endpoints: Some(endpoints_digest(&self.config.a, &self.config.b, engine)?),
                    ..self.config.clone()
                };
                crate::files::write_whole(&cfg_path, serde_json::to_string_pretty(&c)?)?;
                c
            }
        };
        let mut records = read_records(&samples_path)?;
        let done: HashSet<(u64, usize, usize)> = records
            .iter()
            .map(|r| (r.alpha.value().to_bits(), r.prompt_index, r.sample))
            .collect();
        let grid = SampleGrid {
            alphas: c.alphas.clone(),
            prompts: c.prompts.clone(),
            samples: c.samples,
            params: c.params,
            seeds: c.seeds,
        };
        let total = grid.len() as u64;
        let bar = if self.progress {
            indicatif::ProgressBar::new(total)
        } else {
            indicatif::ProgressBar::hidden()
        };
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} samples · {elapsed} · ETA {eta} · {msg}",
            )
            .expect("template"),
        );
        bar.set_position(done.len() as u64);
        let vader = Vader;
        let missing = |cell: &Cell| {
            !done.contains(&(
                grid.alpha(*cell).value().to_bits(),
                cell.prompt_index,
                cell.sample,
            ))
        };
        let started = std::time::Instant::now();
        let mut generated_tokens = 0usize;
        for stage in stages(&grid, c.alpha_mode) {
            // Generate this stage's missing samples, then score them (possibly at another α).
            // The unit of generation is one batch, fixed by the settings alone: a batch with
            // any sample missing is generated whole, so every sample always comes from the
            // same batch and a resumed sweep writes exactly the records an uninterrupted one
            // would.
            let mut fresh = Vec::new();
            for batch in &stage.batches {
                if !batch.iter().any(missing) {
                    continue;
                }
                let prompt_ids = engine.encode(&c.prompts[batch[0].prompt_index])?;
                let seeds: Vec<u64> = batch
                    .iter()
                    .map(|&cell| grid.params(cell).sampling.seed)
                    .collect();
                let mut params = c.params;
                // The blend's own log-probabilities of what it wrote are its perplexity.
                params.token_info = fluency.needs_token_info();
                let gens = match stage.alpha {
                    Some(alpha) => {
                        bar.set_message(format!("α = {alpha}"));
                        if engine.alpha() != alpha {
                            engine.set_alpha(alpha)?;
                        }
                        engine
                            .generator()
                            .run_samples(&prompt_ids, &seeds, None, &params, &mut |_, _| {})
                            .with_context(|| format!("at α = {alpha}"))?
                    }
                    None => {
                        let alphas: Vec<Alpha> =
                            batch.iter().map(|&cell| grid.alpha(cell)).collect();
                        let which =
                            format!("α = {} … {} together", alphas[0], alphas[alphas.len() - 1]);
                        bar.set_message(which.clone());
                        let mix = engine.mix(&alphas)?;
                        engine
                            .pair_generator()
                            .run_samples(&prompt_ids, &seeds, Some(&mix), &params, &mut |_, _| {})
                            .with_context(|| format!("at {which}"))?
                    }
                };
                for (&cell, g) in batch.iter().zip(gens) {
                    generated_tokens += g.token_ids.len();
                    if missing(&cell) {
                        fresh.push((cell, prompt_ids.clone(), g));
                        bar.inc(1);
                    }
                }
            }
            if fresh.is_empty() {
                continue;
            }
            if let Some(judge) = fluency.judge_alpha().filter(|&j| engine.alpha() != j) {
                engine.set_alpha(judge)?;
            }
            for (cell, prompt_ids, g) in fresh {
                let prompt = &c.prompts[cell.prompt_index];
                let (nll, n) = fluency.nll(engine, &prompt_ids, &g)?;
                let r = SampleRecord {
                    alpha: grid.alpha(cell),
                    prompt_index: cell.prompt_index,
                    sample: cell.sample,
                    seed: grid.params(cell).sampling.seed,
                    prompt: prompt.clone(),
                    vader: vader.score(&without_specials(&g.text))?,
                    classifier: match &classifier {
                        Some(k) => Some(k.score(&without_specials(&g.text))?),
                        None => None,
                    },
                    perplexity: Some(perplexity(nll, n)).filter(|p| n > 0 && p.is_finite()),
                    text: plain(&g.text),
                    tokens: g.token_ids.len(),
                };
                writeln!(file, "{}", serde_json::to_string(&r)?)
                    .with_context(|| format!("{}: cannot write", samples_path.display()))?;
                records.push(r);
            }
            file.flush()
                .with_context(|| format!("{}: cannot write", samples_path.display()))?;
        }
        self.tokens_per_s.set(
            (generated_tokens > 0)
                .then(|| generated_tokens as f64 / started.elapsed().as_secs_f64()),
        );
        bar.finish_and_clear();
        let summary = summarise(&c.alphas, &records);
        write_summary(out, &summary, &super::held_point(engine))?;
        Ok(summary)
    }

    /// The mode of a new sweep: as asked, or (auto) whichever decodes its batches faster here.
    fn settle_mode(&self, engine: &mut Engine) -> Result<AlphaMode> {
        let c = &self.config;
        let group = c.samples.min(SAMPLE_BATCH);
        if let Some(mode) = AlphaMode::asked(self.mode) {
            if mode == AlphaMode::Reblend && engine.kept_quantized() {
                bail!(
                    "{}",
                    crate::engine::REBLEND_ON_QUANTIZED.replace("--columns", "--alpha-mode")
                );
            }
            if mode == AlphaMode::Batched && !engine.on_line() {
                let path = engine.off_line_path();
                bail!(
                    "--alpha-mode batched: rows at several alphas in one batch follow the line only, not {path}; use --alpha-mode reblend"
                );
            }
            return Ok(mode);
        }
        let alphas = alphas_per_batch(group).min(c.alphas.len());
        Ok(if engine.alphas_together_faster(alphas, group)? {
            AlphaMode::Batched
        } else {
            AlphaMode::Reblend
        })
    }
}

impl AlphaMode {
    /// The mode a `--alpha-mode` value names (None for auto, which is measured).
    fn asked(mode: ColumnsMode) -> Option<Self> {
        match mode {
            ColumnsMode::Auto => None,
            ColumnsMode::Batched => Some(Self::Batched),
            ColumnsMode::Reblend => Some(Self::Reblend),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Reblend => "reblend",
            Self::Batched => "batched",
        }
    }
}

/// Whole alphas' groups of `group` samples in one batched-mode batch.
fn alphas_per_batch(group: usize) -> usize {
    (ALPHA_BATCH_ROWS / group.max(1)).max(1)
}

/// Batches generated one after another, then scored: at one re-blended α (`alpha`), or each
/// row at its own α.
struct Stage {
    alpha: Option<Alpha>,
    batches: Vec<Vec<Cell>>,
}

/// A sweep's batches in the order they are generated. Re-blend: one stage per α (blended once),
/// each prompt's samples in groups of at most [`SAMPLE_BATCH`]. Batched: one stage per batch of
/// a prompt's sample group at as many alphas as fit in [`ALPHA_BATCH_ROWS`] rows.
fn stages(grid: &SampleGrid, mode: AlphaMode) -> Vec<Stage> {
    let groups = |prompt_index: usize| {
        (0..grid.samples).step_by(SAMPLE_BATCH).map(move |first| {
            (
                prompt_index,
                first..(first + SAMPLE_BATCH).min(grid.samples),
            )
        })
    };
    let cell = |alpha_index, prompt_index, sample| Cell {
        alpha_index,
        prompt_index,
        sample,
    };
    let prompts = 0..grid.prompts.len();
    match mode {
        AlphaMode::Reblend => (0..grid.alphas.len())
            .flat_map(|a| {
                let batches: Vec<Vec<Cell>> = prompts
                    .clone()
                    .flat_map(groups)
                    .map(|(p, samples)| samples.map(|s| cell(a, p, s)).collect())
                    .collect();
                // An α's batches in stretches, each scored and written as it ends: a stage
                // holds its generations until then.
                batches
                    .chunks(STAGE_BATCHES)
                    .map(|b| Stage {
                        alpha: Some(grid.alphas[a]),
                        batches: b.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect(),
        AlphaMode::Batched => {
            let per = alphas_per_batch(grid.samples.min(SAMPLE_BATCH));
            let alpha_chunks: Vec<Vec<usize>> = (0..grid.alphas.len())
                .collect::<Vec<_>>()
                .chunks(per)
                .map(<[usize]>::to_vec)
                .collect();
            prompts
                .flat_map(groups)
                .flat_map(|(p, samples)| {
                    alpha_chunks.iter().map(move |chunk| Stage {
                        alpha: None,
                        batches: vec![chunk
                            .iter()
                            .flat_map(|&a| samples.clone().map(move |s| cell(a, p, s)))
                            .collect()],
                    })
                })
                .collect()
        }
    }
}

pub fn summarise(alphas: &[Alpha], records: &[SampleRecord]) -> Vec<AlphaSummary> {
    let mut by_alpha: BTreeMap<u64, Vec<&SampleRecord>> = BTreeMap::new();
    for r in records {
        by_alpha
            .entry(r.alpha.value().to_bits())
            .or_default()
            .push(r);
    }
    // With a classifier every α has its row, one of no samples included.
    let classified = records.iter().any(|r| r.classifier.is_some());
    alphas
        .iter()
        .map(|&alpha| {
            let mut rs = by_alpha
                .remove(&alpha.value().to_bits())
                .unwrap_or_default();
            // Summaries must not depend on the order a resumed run wrote records in.
            rs.sort_by_key(|r| (r.prompt_index, r.sample));
            let all = rs.len();
            // An empty sample has no sentiment, fluency or diversity to measure.
            rs.retain(|r| r.tokens > 0);
            let vader: Vec<f64> = rs.iter().map(|r| r.vader).collect();
            let ppl: Vec<f64> = rs.iter().filter_map(|r| r.perplexity).collect();
            let texts = || rs.iter().map(|r| r.text.as_str());
            let classifier: Vec<f64> = rs.iter().filter_map(|r| r.classifier).collect();
            AlphaSummary {
                alpha,
                empty: all - rs.len(),
                vader: estimate(&vader).within(-1.0, 1.0),
                perplexity: estimate(&ppl).within(1.0, f64::INFINITY),
                classifier: classified.then(|| estimate(&classifier).within(0.0, 1.0)),
                distinct_1: distinct_n(texts(), 1),
                distinct_2: distinct_n(texts(), 2),
                distinct_3: distinct_n(texts(), 3),
            }
        })
        .collect()
}

/// The summary files and plots; `held` (" (β = 0.5)" on a plane) goes into the plots' titles.
fn write_summary(out: &Path, summary: &[AlphaSummary], held: &str) -> Result<()> {
    let mut csv = String::from("alpha,metric,mean,ci_low,ci_high,n\n");
    for s in summary {
        let metrics = [
            ("vader", Some(&s.vader)),
            ("perplexity", Some(&s.perplexity)),
            ("classifier", s.classifier.as_ref()),
        ];
        for (name, e) in metrics.iter().filter_map(|(n, e)| e.map(|e| (n, e))) {
            csv.push_str(&format!(
                "{},{name},{},{},{},{}\n",
                s.alpha, e.mean, e.ci_low, e.ci_high, e.n
            ));
        }
        for (name, v) in [
            ("distinct_1", s.distinct_1),
            ("distinct_2", s.distinct_2),
            ("distinct_3", s.distinct_3),
        ] {
            csv.push_str(&format!("{},{name},{v},{v},{v},{}\n", s.alpha, s.vader.n));
        }
        // How many samples were empty (and left out of every row above), of all at this α.
        let k = s.empty;
        csv.push_str(&format!(
            "{},empty,{k},{k},{k},{}\n",
            s.alpha,
            s.vader.n + k
        ));
    }
    crate::files::write_whole(&out.join("summary.csv"), csv)?;
    crate::files::write_whole(
        &out.join("summary.json"),
        serde_json::to_string_pretty(summary)?,
    )?;
    let plots = out.join("plots");
    std::fs::create_dir_all(&plots)
        .with_context(|| format!("{}: cannot create", plots.display()))?;
    let series = |f: fn(&AlphaSummary) -> Estimate| -> Vec<(f64, Estimate)> {
        summary.iter().map(|s| (s.alpha.value(), f(s))).collect()
    };
    super::plot::metric_vs_alpha(
        &plots.join("vader"),
        &format!("Sentiment vs α{held}"),
        "VADER compound (mean, 95% CI)",
        &series(|s| s.vader),
    )?;
    if summary.iter().any(|s| s.classifier.is_some()) {
        let points: Vec<(f64, Estimate)> = summary
            .iter()
            .filter_map(|s| s.classifier.map(|e| (s.alpha.value(), e)))
            .collect();
        super::plot::metric_vs_alpha(
            &plots.join("classifier"),
            &format!("Classifier vs α{held}"),
            "P(label) (mean, 95% CI)",
            &points,
        )?;
    }
    super::plot::metric_vs_alpha(
        &plots.join("perplexity"),
        &format!("Perplexity vs α{held}"),
        "perplexity (mean, 95% CI)",
        &series(|s| s.perplexity),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(sample: usize, vader: f64, perplexity: f64, classifier: f64) -> SampleRecord {
        SampleRecord {
            alpha: Alpha::new(0.5).unwrap(),
            prompt_index: 0,
            sample,
            seed: sample as u64,
            prompt: "p".into(),
            text: "some text".into(),
            tokens: 2,
            vader,
            perplexity: Some(perplexity),
            classifier: Some(classifier),
        }
    }

    /// Two samples far apart: Student's t at one degree of freedom reaches far past what the
    /// metrics can read (a perplexity below zero was reported), so each interval is cut to its
    /// metric's range; one sample has no interval.
    #[test]
    fn intervals_stay_within_what_each_metric_reads() {
        let alpha = [Alpha::new(0.5).unwrap()];
        let s = &summarise(
            &alpha,
            &[record(0, -0.9, 2.0, 0.05), record(1, 0.8, 100.0, 0.9)],
        )[0];
        assert_eq!((s.vader.ci_low, s.vader.ci_high), (-1.0, 1.0));
        assert_eq!(s.perplexity.ci_low, 1.0);
        assert!(s.perplexity.ci_high > 100.0);
        let c = s.classifier.unwrap();
        assert_eq!((c.ci_low, c.ci_high), (0.0, 1.0));
        let one = &summarise(&alpha, &[record(0, 0.3, 5.0, 0.5)])[0];
        assert_eq!(one.vader.mean, 0.3);
        assert!(one.vader.ci_low.is_nan() && one.perplexity.ci_high.is_nan());
    }

    /// An α whose samples are all empty keeps its classifier row (no samples, n 0), as it
    /// keeps its VADER and perplexity rows: it was left out of summary.csv and grid.csv.
    #[test]
    fn an_alpha_of_empty_samples_keeps_its_classifier_row() {
        let (half, one) = (Alpha::new(0.5).unwrap(), Alpha::B);
        let empty = SampleRecord {
            alpha: one,
            tokens: 0,
            text: String::new(),
            perplexity: None,
            classifier: None,
            ..record(0, 0.0, 1.0, 0.0)
        };
        let s = summarise(&[half, one], &[record(0, 0.3, 5.0, 0.5), empty]);
        let c = s[1].classifier.expect("a row at α = 1");
        assert_eq!((c.n, s[1].vader.n, s[1].empty), (0, 0, 1));
        assert!(c.mean.is_nan());
    }
}
