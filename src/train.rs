//! The demo pair's recipe: train a byte-level BPE tokenizer, pre-train a small Llama base on a
//! plain English corpus, then fine-tune two copies of it for the same number of steps, one on
//! negative and one on positive text. CPU, candle autograd, AdamW.
//!
//! Every stage writes an ordinary Hugging Face model directory and is skipped when its output
//! already exists, so an interrupted run resumes at the stage it was in.

use crate::engine::{DecoderConfig, ModelConfig};
use crate::engine::{Kernels, Model};
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use std::time::Instant;
use tokenizers::Tokenizer;

use crate::engine::tokens::train_tokenizer;
pub use crate::engine::tokens::END_OF_TEXT;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recipe {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub context: usize,
    pub seq_len: usize,
    pub batch: usize,
    pub pretrain_steps: usize,
    pub pretrain_lr: f64,
    pub finetune_steps: usize,
    pub finetune_lr: f64,
    pub warmup: usize,
    pub seed: u64,
}

/// The smallest vocabulary the tokenizer can have: the 256 bytes and end-of-text.
pub const MIN_VOCAB: usize = 257;

/// The most decoder layers `train` builds.
pub const MAX_LAYERS: usize = 128;

impl Recipe {
    /// The first value no model can be trained with, as one line naming its flag.
    pub fn validate(&self) -> Result<()> {
        for (flag, v) in [
            ("--hidden-size", self.hidden_size),
            ("--intermediate-size", self.intermediate_size),
            // No decoder layer leaves no attention: a bigram table, not a model to steer.
            ("--layers", self.layers),
            ("--heads", self.heads),
            ("--kv-heads", self.kv_heads),
            ("--context", self.context),
            ("--seq-len", self.seq_len),
            ("--batch", self.batch),
        ] {
            if v == 0 {
                bail!("{flag} 0: must be at least 1");
            }
        }
        // Autograd walks the graph recursively, one level per op, on a pool thread's stack:
        // past a few hundred layers it overflows. The deepest released models have 126.
        if self.layers > MAX_LAYERS {
            bail!(
                "--layers {}: at most {MAX_LAYERS} (training walks every layer's ops in one recursion)",
                self.layers
            );
        }
        // A fine-tune that cannot move leaves both endpoints equal to the base: a pair with
        // nothing between them to interpolate.
        if self.finetune_steps == 0 {
            bail!("--finetune-steps 0: must be at least 1, or both fine-tunes are the base");
        }
        if self.vocab_size < MIN_VOCAB {
            bail!(
                "--vocab-size {}: must be at least {MIN_VOCAB} (the 256 bytes and end-of-text)",
                self.vocab_size
            );
        }
        if !self.hidden_size.is_multiple_of(self.heads) {
            bail!(
                "--hidden-size {} is not a multiple of --heads {}",
                self.hidden_size,
                self.heads
            );
        }
        let head = self.hidden_size / self.heads;
        if !head.is_multiple_of(2) {
            bail!(
                "--hidden-size {} over --heads {} gives heads of {head}: rotary embeddings need an even size",
                self.hidden_size,
                self.heads
            );
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            bail!(
                "--heads {} is not a multiple of --kv-heads {}",
                self.heads,
                self.kv_heads
            );
        }
        if self.seq_len > self.context {
            bail!(
                "--seq-len {} is longer than --context {}",
                self.seq_len,
                self.context
            );
        }
        for (flag, lr) in [
            ("--pretrain-lr", self.pretrain_lr),
            ("--finetune-lr", self.finetune_lr),
        ] {
            if !(lr.is_finite() && lr >= 0.0) {
                bail!("{flag} {lr}: must be a finite number, 0 or more");
            }
        }
        if self.finetune_lr == 0.0 {
            bail!("--finetune-lr 0: must be more than 0, or both fine-tunes are the base");
        }
        Ok(())
    }

    /// About how many bytes training takes: f32 weights with their gradients and AdamW's two
    /// moments, and a step's activations (each layer's, the logits and their gradient).
    /// Saturating: the sizes are the user's, checked against memory before anything else.
    pub fn training_bytes(&self) -> (u64, u64) {
        let m = |xs: &[usize]| xs.iter().fold(1u64, |p, &x| p.saturating_mul(x as u64));
        let (h, i, l) = (self.hidden_size, self.intermediate_size, self.layers);
        let kv = h / self.heads.max(1) * self.kv_heads;
        let per_layer = m(&[h, 2 * h + 2 * kv])
            .saturating_add(m(&[3, h, i]))
            .saturating_add(m(&[2, h]));
        let params = m(&[self.vocab_size, h])
            .saturating_add(m(&[l]).saturating_mul(per_layer))
            .saturating_add(h as u64);
        let state = params.saturating_mul(16);
        let per_token = m(&[l, 10 * h + 4 * i + 2 * self.heads * self.seq_len])
            .saturating_add(m(&[3, self.vocab_size]));
        let activations = m(&[self.batch, self.seq_len, 4]).saturating_mul(per_token);
        (state, activations)
    }

    pub fn config(&self, eos: u32) -> DecoderConfig {
        DecoderConfig {
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: Some(self.kv_heads),
            head_dim: None,
            vocab_size: self.vocab_size,
            rms_norm_eps: 1e-5,
            rope_theta: 10_000.0,
            max_position_embeddings: self.context,
            tie_word_embeddings: true,
            bos_token_id: Some(eos),
            eos_token_id: Some(crate::engine::TokenIds::One(eos)),
            rope_scaling: None,
            ..Default::default()
        }
    }
}

/// A text file as one token stream, lines separated by the end-of-text token.
pub fn tokenize_file(tok: &Tokenizer, path: &Path) -> Result<Vec<u32>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let eos = tok
        .token_to_id(END_OF_TEXT)
        .context("tokenizer lacks the end-of-text token")?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let encs = tok
        .encode_batch(lines, false)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let mut ids = Vec::new();
    for e in encs {
        ids.extend_from_slice(e.get_ids());
        ids.push(eos);
    }
    Ok(ids)
}

/// Fresh parameters: N(0, 0.02) for matrices, ones for norm gains, from a seeded stream.
pub fn init_varmap(c: &DecoderConfig, device: &Device, seed: u64) -> Result<VarMap> {
    let varmap = VarMap::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut normal = || {
        // Box–Muller: two uniforms give one standard normal.
        let (u1, u2): (f32, f32) = (rng.random::<f32>().max(1e-12), rng.random());
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    };
    {
        let mut data = varmap.data().lock().expect("varmap lock");
        for (name, shape) in crate::engine::parameters(&ModelConfig::Decoder(c.clone())) {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = if shape.len() == 1 {
                vec![1.0; n]
            } else {
                (0..n).map(|_| 0.02 * normal()).collect()
            };
            let t = Tensor::from_vec(values, shape, device)?;
            data.insert(name, candle_core::Var::from_tensor(&t)?);
        }
    }
    Ok(varmap)
}

pub struct LossLog {
    file: std::fs::File,
    path: std::path::PathBuf,
    start: Instant,
}

impl LossLog {
    /// Append to `path`, first dropping the rows of any stage not in `finished`: an
    /// interrupted stage starts over, so its rows would otherwise appear twice.
    pub fn open(path: &Path, finished: &[&str]) -> Result<Self> {
        if let Ok(text) = std::fs::read_to_string(path) {
            let kept: Vec<&str> = text
                .lines()
                .enumerate()
                .filter(|(i, l)| *i == 0 || finished.iter().any(|s| l.split(',').next() == Some(s)))
                .map(|(_, l)| l)
                .collect();
            if kept.len() < text.lines().count() {
                crate::files::write_whole(path, kept.join("\n") + "\n")?;
            }
        }
        // Empty, or a header cut short by a full disk: no row was written after it.
        const HEADER: &str = "stage,step,loss,lr,elapsed_s";
        let fresh =
            std::fs::read_to_string(path).map_or(true, |t| t.lines().next() != Some(HEADER));
        if fresh && path.exists() {
            std::fs::remove_file(path)
                .with_context(|| format!("{}: cannot rewrite", path.display()))?;
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("{}: cannot open", path.display()))?;
        let mut log = Self {
            file,
            path: path.to_path_buf(),
            start: Instant::now(),
        };
        if fresh {
            log.row(format_args!("{HEADER}"))?;
        }
        Ok(log)
    }

    fn row(&mut self, row: std::fmt::Arguments) -> Result<()> {
        writeln!(self.file, "{row}")
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .flush()
            .with_context(|| format!("{}: cannot write", self.path.display()))
    }
}

/// Train `varmap` for `steps` steps on random windows of `tokens`. A diverging run's error
/// says to lower the rate, and `where_to`, where that can be done.
#[allow(clippy::too_many_arguments)]
pub fn train(
    stage: &str,
    c: &DecoderConfig,
    varmap: &VarMap,
    tokens: &[u32],
    recipe: &Recipe,
    steps: usize,
    lr: f64,
    log: &mut LossLog,
    where_to: &str,
) -> Result<f32> {
    let device = Device::Cpu;
    let t = recipe.seq_len;
    check_windows(stage, tokens, t)?;
    // A fine-tune starts from the base: weights far past any trained model's say the base
    // diverged, which a lower fine-tuning rate cannot mend.
    let start_size = match stage {
        "pretrain" => 0.0,
        _ => largest_weight(varmap)?,
    };
    let blame = |lr_flag: &str, lr: f64| {
        match start_size > 1e4 {
        true => format!(
            "the base's weights reach {start_size:.1e}, so the base diverged in pre-training; train again in a new --out with a lower --pretrain-lr"
        ),
        false => format!("lower {lr_flag} ({}){where_to}", serde_json::json!(lr)),
    }
    };
    let vb = VarBuilder::from_varmap(varmap, DType::F32, &device);
    let model = Model::load_with(
        &ModelConfig::Decoder(c.clone()),
        vb,
        Kernels::Differentiable,
    )?;
    let mut opt = AdamW::new(
        varmap.all_vars(),
        ParamsAdamW {
            lr,
            weight_decay: 0.01,
            ..Default::default()
        },
    )?;
    let mut rng = StdRng::seed_from_u64(recipe.seed ^ stage.len() as u64);
    let mut smooth = f32::NAN;
    for step in 0..steps {
        let cur_lr = schedule(step, steps, recipe.warmup, lr);
        opt.set_learning_rate(cur_lr);
        let mut x = Vec::with_capacity(recipe.batch * t);
        let mut y = Vec::with_capacity(recipe.batch * t);
        for _ in 0..recipe.batch {
            let s = rng.random_range(0..tokens.len() - t - 1);
            x.extend_from_slice(&tokens[s..s + t]);
            y.extend_from_slice(&tokens[s + 1..s + t + 1]);
        }
        let x = Tensor::from_vec(x, (recipe.batch, t), &device)?;
        let y = Tensor::from_vec(y, recipe.batch * t, &device)?;
        let logits = model.forward_all(&x)?;
        let loss = candle_nn::loss::cross_entropy(&logits.reshape((recipe.batch * t, ()))?, &y)?;
        opt.backward_step(&loss)?;
        let l = loss.to_scalar::<f32>()?;
        if !l.is_finite() {
            log.flush()?;
            // Step 0's loss is the starting weights', before this stage's rate moved them.
            if step == 0 && stage != "pretrain" {
                bail!(
                    "{stage} step 0: the base's loss is {l} before any fine-tune step, so the base diverged in pre-training; train again in a new --out with a lower --pretrain-lr"
                );
            }
            bail!(
                "{stage} step {step}: the loss is {l}, training diverged; {}",
                blame(lr_flag(stage), lr)
            );
        }
        smooth = if smooth.is_nan() {
            l
        } else {
            0.98 * smooth + 0.02 * l
        };
        let elapsed = log.start.elapsed().as_secs_f64();
        log.row(format_args!(
            "{stage},{step},{l:.5},{cur_lr:.3e},{elapsed:.1}"
        ))?;
        if step % 50 == 0 || step + 1 == steps {
            log.flush()?;
            eprintln!(
                "{stage} step {step}/{steps} loss {l:.3} (smoothed {smooth:.3}) lr {cur_lr:.2e} {:.0}s",
                log.start.elapsed().as_secs_f64()
            );
        }
    }
    // A loss is measured before its step's update: the last update is checked on the weights.
    for var in varmap.all_vars() {
        let finite = var
            .flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .all(|x| x.is_finite());
        if !finite {
            log.flush()?;
            bail!(
                "{stage}: the weights are not finite after the last step, training diverged; {}",
                blame(lr_flag(stage), lr)
            );
        }
    }
    Ok(smooth)
}

/// The flag that sets `stage`'s learning rate.
fn lr_flag(stage: &str) -> &'static str {
    if stage == "pretrain" {
        "--pretrain-lr"
    } else {
        "--finetune-lr"
    }
}

/// Whether `tokens` hold a window of `t` and its next token, named by `what`.
fn check_windows(what: &str, tokens: &[u32], t: usize) -> Result<()> {
    if tokens.len() <= t + 1 {
        bail!(
            "{what}: {} tokens are too few for windows of --seq-len {t}",
            tokens.len()
        );
    }
    Ok(())
}

/// Linear warm-up, then cosine decay to a tenth of the peak.
fn schedule(step: usize, steps: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let p = (step - warmup) as f64 / (steps - warmup).max(1) as f64;
    peak * (0.1 + 0.9 * 0.5 * (1.0 + (std::f64::consts::PI * p).cos()))
}

/// The largest |weight| in `varmap` (NaN counts as infinite).
fn largest_weight(varmap: &VarMap) -> Result<f32> {
    let mut largest = 0f32;
    for var in varmap.all_vars() {
        for x in var.flatten_all()?.to_vec1::<f32>()? {
            largest = largest.max(if x.is_nan() { f32::INFINITY } else { x.abs() });
        }
    }
    Ok(largest)
}

/// Write a Hugging Face model directory: config.json, model.safetensors, tokenizer.json.
pub fn save_model_dir(
    c: &DecoderConfig,
    varmap: &VarMap,
    tokenizer: &Path,
    dir: &Path,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    crate::files::write_whole(
        &dir.join("config.json"),
        serde_json::to_string_pretty(&crate::engine::config_json(&ModelConfig::Decoder(
            c.clone(),
        ))?)?,
    )?;
    let tokenizer_bytes = std::fs::read(tokenizer)
        .with_context(|| format!("{}: cannot read", tokenizer.display()))?;
    crate::files::write_whole(&dir.join("tokenizer.json"), tokenizer_bytes)?;
    // The weights come last: their file marks the stage done, so it appears whole and on the
    // disk (written beside, synced, renamed), with config.json's permissions, which followed
    // the user's umask (the writer makes a private file).
    let weights = dir.join("model.safetensors");
    let partial = dir.join(format!(".model.safetensors.partial-{}", std::process::id()));
    let written = varmap
        .save(&partial)
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(std::fs::File::open(&partial)?.sync_all()?))
        .and_then(|()| {
            let mode = std::fs::metadata(dir.join("config.json"))?.permissions();
            Ok(std::fs::set_permissions(&partial, mode)?)
        })
        .and_then(|()| Ok(std::fs::rename(&partial, &weights)?));
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written.with_context(|| format!("{}: cannot write", weights.display()))?;
    Ok(())
}

/// Load a saved model directory back into a fresh VarMap (to fine-tune a copy of the base).
pub fn load_varmap(c: &DecoderConfig, dir: &Path) -> Result<VarMap> {
    let mut varmap = init_varmap(c, &Device::Cpu, 0)?;
    varmap
        .load(dir.join("model.safetensors"))
        .with_context(|| format!("{}: cannot load weights", dir.display()))?;
    Ok(varmap)
}

/// Run the whole recipe from a corpus directory (base.txt, negative.txt, positive.txt) into
/// `out` (tokenizer.json, base/, negative/, positive/, loss.csv, timings.json).
pub fn run(corpus: &Path, out: &Path, recipe: &Recipe) -> Result<()> {
    recipe.validate()?;
    if let Some(free) = crate::engine::host_available_memory() {
        let (state, activations) = recipe.training_bytes();
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        if state.saturating_add(activations) > free {
            bail!(
                "training needs about {:.1} GiB (weights and optimizer state {:.1} GiB from the model's sizes, activations {:.1} GiB at --batch {} --seq-len {}) but {:.1} GiB is available",
                gib(state.saturating_add(activations)),
                gib(state),
                gib(activations),
                recipe.batch,
                recipe.seq_len,
                gib(free)
            );
        }
    }
    let file = |n: &str| corpus.join(n);
    for name in ["base.txt", "negative.txt", "positive.txt"] {
        if !file(name).is_file() {
            bail!(
                "{}: no such file (--corpus is a folder of base.txt, negative.txt and positive.txt)",
                file(name).display()
            );
        }
        // The tokenizer's trainer reads all three and names none of them.
        let bytes = std::fs::read(file(name))
            .with_context(|| format!("{}: cannot read", file(name).display()))?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            let at = e.valid_up_to();
            let line = 1 + bytes[..at].iter().filter(|&&b| b == b'\n').count();
            bail!(
                "{}: not UTF-8 text (line {line}, byte {at})",
                file(name).display()
            );
        }
    }
    if out.exists() && !out.is_dir() {
        bail!("{}: --out is a file, not a folder", out.display());
    }
    // A model's own folder is not a run's: its tokenizer.json would be made again.
    if let Some(model) = ["config.json", "model.safetensors"]
        .iter()
        .map(|f| out.join(f))
        .find(|f| f.exists())
    {
        bail!(
            "{}: --out holds a model ({}); train writes base/, negative/ and positive/ into a folder of its own: choose another --out",
            out.display(),
            model.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    let done = |dir: &str| out.join(dir).join("model.safetensors").exists();
    let trained = ["base", "negative", "positive"].iter().any(|d| done(d));
    // With the base alone trained, the fine-tunes' settings may still change (a diverged
    // fine-tune reruns at a lower rate); once one fine-tune is done the other must match it.
    let open: &[&str] = if done("negative") || done("positive") {
        &[]
    } else {
        &["finetune_steps", "finetune_lr"]
    };
    claim(out, recipe, trained, open)?;
    let digests = corpus_digests(corpus)?;
    claim_corpus(out, corpus, &digests, trained)?;
    // A run killed mid-write left its partial copies beside the files; this run makes its own.
    for dir in [out.to_path_buf()]
        .into_iter()
        .chain(["base", "negative", "positive"].map(|d| out.join(d)))
    {
        crate::files::remove_stale_partials(&dir);
    }
    // With both fine-tunes there, nothing trains: the folder is left as it is (one shipped
    // without its tokenizer or base, as assets/demo is, gains none).
    if done("negative") && done("positive") {
        eprintln!("{}: every stage is trained; nothing to do", out.display());
        // A run stopped between its last model and its plots draws them now.
        let loss = out.join("loss.csv");
        if loss.exists() && !out.join("loss.png").exists() {
            crate::eval::plot::loss_curves(&loss, &out.join("loss"), 25)?;
        }
        return Ok(());
    }
    let mut timings = serde_json::Map::new();
    let timings_path = out.join("timings.json");
    if let Ok(t) = std::fs::read_to_string(&timings_path) {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&t) {
            timings = m;
        }
    }
    // timings.json beside a tokenizer says the tokenizer is a run's (`claim`): it goes in
    // first, so that a run stopped once the tokenizer is in place resumes.
    if !timings_path.exists() {
        crate::files::write_whole(&timings_path, "{}")?;
    }
    let mut record = |stage: &str, secs: f64| -> Result<()> {
        timings.insert(stage.to_string(), serde_json::json!(secs));
        crate::files::write_whole(&timings_path, serde_json::to_string_pretty(&timings)?)?;
        Ok(())
    };
    let tok_path = out.join("tokenizer.json");
    let tok = if tok_path.exists() {
        Tokenizer::from_file(&tok_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tok_path.display()))?
    } else {
        let t0 = Instant::now();
        let files = [file("base.txt"), file("negative.txt"), file("positive.txt")];
        let tok = train_tokenizer(&files, recipe.vocab_size, &tok_path)?;
        record("tokenizer_s", t0.elapsed().as_secs_f64())?;
        tok
    };
    let eos = tok
        .token_to_id(END_OF_TEXT)
        .context("no end-of-text token")?;
    let mut c = recipe.config(eos);
    c.vocab_size = tok.get_vocab_size(true);
    // Every corpus is read before any stage trains: a short one fails now, not an hour in.
    let [base, negative, positive] =
        ["base", "negative", "positive"].map(|n| tokenize_file(&tok, &file(&format!("{n}.txt"))));
    let (base, negative, positive) = (base?, negative?, positive?);
    for (name, tokens) in [
        ("base.txt", &base),
        ("negative.txt", &negative),
        ("positive.txt", &positive),
    ] {
        let at = file(name).display().to_string();
        check_windows(&at, tokens, recipe.seq_len)?;
    }
    // The recipe and the corpus are recorded once the run can start: until then a rerun may
    // change them. A folder trained before corpus.json was written gets none: nothing says
    // which text its models saw.
    let mut records = vec![("recipe.json", serde_json::to_string_pretty(recipe)?)];
    if !trained {
        records.push(("corpus.json", serde_json::to_string_pretty(&digests)?));
    }
    for (name, json) in records {
        crate::files::write_whole(&out.join(name), json)?;
    }
    // A fine-tune is still to run (above), so the base is needed; the pre-training rows stay
    // unless it trains again.
    let finished: Vec<&str> = [
        ("pretrain", done("base")),
        ("negative", done("negative")),
        ("positive", done("positive")),
    ]
    .into_iter()
    .filter(|(_, finished)| *finished)
    .map(|(stage, _)| stage)
    .collect();
    let mut log = LossLog::open(&out.join("loss.csv"), &finished)?;
    let base_dir = out.join("base");
    if !done("base") {
        let t0 = Instant::now();
        let tokens = base;
        eprintln!("pre-training on {} tokens", tokens.len());
        let varmap = init_varmap(&c, &Device::Cpu, recipe.seed)?;
        train(
            "pretrain",
            &c,
            &varmap,
            &tokens,
            recipe,
            recipe.pretrain_steps,
            recipe.pretrain_lr,
            &mut log,
            "",
        )?;
        save_model_dir(&c, &varmap, &tok_path, &base_dir)?;
        record("pretrain_s", t0.elapsed().as_secs_f64())?;
    }
    for (side, tokens) in [("negative", negative), ("positive", positive)] {
        let dir = out.join(side);
        if done(side) {
            continue;
        }
        let t0 = Instant::now();
        eprintln!("fine-tuning {side} on {} tokens", tokens.len());
        let varmap = load_varmap(&c, &base_dir)?;
        // Once one fine-tune is done, this folder resumes only at its rate (see `claim`).
        let where_to = match side == "positive" && done("negative") {
            true => " in a new --out (the negative fine-tune here was trained at this rate, and the two must match)",
            false => "",
        };
        train(
            side,
            &c,
            &varmap,
            &tokens,
            recipe,
            recipe.finetune_steps,
            recipe.finetune_lr,
            &mut log,
            where_to,
        )?;
        save_model_dir(&c, &varmap, &tok_path, &dir)?;
        record(&format!("finetune_{side}_s"), t0.elapsed().as_secs_f64())?;
    }
    drop(log);
    crate::eval::plot::loss_curves(&out.join("loss.csv"), &out.join("loss"), 25)?;
    Ok(())
}

/// SHA-256 of each corpus file, by name: the text a folder's run trains on.
fn corpus_digests(corpus: &Path) -> Result<std::collections::BTreeMap<String, String>> {
    ["base.txt", "negative.txt", "positive.txt"]
        .into_iter()
        .map(|n| {
            let digest = crate::engine::export::sha256(&[corpus.join(n)])?;
            Ok((n.to_string(), digest))
        })
        .collect()
}

/// Whether `out` may train on this corpus. Once a stage has trained, the corpus recorded in
/// corpus.json must be the one given (the tokenizer read all three files, the base read
/// base.txt); before that, a tokenizer made from other text is made again. A folder from
/// before corpus.json was written is taken as it is.
fn claim_corpus(
    out: &Path,
    corpus: &Path,
    digests: &std::collections::BTreeMap<String, String>,
    trained: bool,
) -> Result<()> {
    let path = out.join("corpus.json");
    let held: std::collections::BTreeMap<String, String> = match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .with_context(|| format!("{}: not a corpus record", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    let changed: Vec<String> = digests
        .iter()
        .filter(|(name, digest)| held.get(*name) != Some(*digest))
        .map(|(name, _)| corpus.join(name).display().to_string())
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    if trained {
        bail!(
            "{}: changed since this folder's run began ({} records the text it trained on); restore it to resume, or choose another --out",
            changed.join(", "),
            path.display()
        );
    }
    let tokenizer = out.join("tokenizer.json");
    if tokenizer.exists() {
        std::fs::remove_file(&tokenizer)
            .with_context(|| format!("{}: cannot replace", tokenizer.display()))?;
    }
    Ok(())
}

/// Whether `out`'s timings.json, if any, is a run's: an object of stage times only.
fn own_timings(out: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(out.join("timings.json")) else {
        return true;
    };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) => m.iter().all(|(k, v)| {
            v.is_number()
                && [
                    "tokenizer_s",
                    "pretrain_s",
                    "finetune_negative_s",
                    "finetune_positive_s",
                ]
                .contains(&k.as_str())
        }),
        _ => false,
    }
}

/// Whether `out` may run `recipe`. Once a stage has trained there, only the recipe in its
/// recipe.json may resume it, but for the `open` fields, which only stages still to run use;
/// before that a rerun may change the recipe (a first attempt that failed on a short corpus or
/// a diverging loss), and a tokenizer made for another vocabulary, or for no recorded recipe,
/// is made again.
fn claim(out: &Path, recipe: &Recipe, trained: bool, open: &[&str]) -> Result<()> {
    let path = out.join("recipe.json");
    let asked = serde_json::to_value(recipe)?;
    let held: Option<serde_json::Value> = match std::fs::read_to_string(&path) {
        Ok(text) => Some(
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a recipe", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("{}: cannot read", path.display())),
    };
    match held {
        None if trained => bail!(
            "{}: holds models but no recipe.json to resume from; choose another --out",
            out.display()
        ),
        Some(held) if trained => {
            let differ: Vec<String> = asked
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, v)| held.get(k.as_str()) != Some(v) && !open.contains(&k.as_str()))
                .map(|(k, v)| {
                    let was = held
                        .get(k.as_str())
                        .map_or("none".into(), |w| w.to_string());
                    format!("--{} {was} (asked: {v})", k.replace('_', "-"))
                })
                .collect();
            if !differ.is_empty() {
                bail!(
                    "{}: this folder holds a run with {}; rerun with its flags to resume, or choose another --out",
                    path.display(),
                    differ.join(", ")
                );
            }
        }
        held => {
            let tokenizer = out.join("tokenizer.json");
            // Before recipe.json, a run has written at most its tokenizer and that stage's time
            // in timings.json: anything else of a run's names is another's file, which the run
            // would write over.
            if held.is_none() {
                let theirs = ["loss.csv", "loss.png", "loss.svg", "corpus.json"]
                    .into_iter()
                    .map(|f| out.join(f))
                    .chain((!own_timings(out)).then(|| out.join("timings.json")))
                    .find(|f| f.exists());
                if let Some(f) = theirs {
                    bail!(
                        "{}: not made by train (no recipe.json beside it), and a run would replace it; choose another --out",
                        f.display()
                    );
                }
            }
            // A run that made a tokenizer recorded its time in timings.json (recipe.json comes
            // later): a tokenizer with neither beside it is not ours to replace.
            let ours = held.is_some() || out.join("timings.json").exists();
            if !ours && tokenizer.exists() {
                bail!(
                    "{}: not made by train (no recipe.json or timings.json beside it), and a run would replace it; choose another --out",
                    tokenizer.display()
                );
            }
            let same_vocab = held.is_some_and(|h| h.get("vocab_size") == asked.get("vocab_size"));
            if !same_vocab && tokenizer.exists() {
                std::fs::remove_file(&tokenizer)
                    .with_context(|| format!("{}: cannot replace", tokenizer.display()))?;
            }
        }
    }
    Ok(())
}
