//! Loading a pair: validating its endpoints together, choosing how each is held (blended
//! buffers, factored adapters, a base kept quantized), and assembling the engine.

use super::text_spec::{adapter_text_spec, pair_text_spec};
use super::{
    dtype_name, path_note, AdaptedTensors, ColumnsMode, Engine, ExtraEndpoint, LoadOptions, Origin,
    PairInfo, TextBeyondModel,
};
use crate::error::{bail, Context, Error, Result};
use crate::formats::adapter::Adapter;
use crate::formats::checkpoint::{native_dtype, Checkpoint};
use crate::formats::config::ModelConfig;
use crate::formats::pair;
use crate::formats::source::{self, Endpoint, ModelFiles};
use crate::generate::TextSpec;
use crate::memory::{check_fits, device_memory, device_name};
use crate::model::param::Mix;
use crate::model::Model;
use crate::weights::adapters::AdapterWeights;
use crate::weights::full::{BlendedWeights, Buffer};
use crate::weights::layers::LayerAlphas;
use crate::weights::quantized_base::QuantizedAdapters;
use crate::weights::quantized_pair::QuantizedPair;
use crate::weights::slerp::Method;
use crate::weights::Weights;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::Tokenizer;

impl Engine {
    /// Load a pair from two sources (directories or Hub ids): two full models, or two PEFT
    /// adapters (or `base` and an adapter) on one base.
    pub fn load(a: &str, b: &str, opts: &LoadOptions) -> Result<Self> {
        let loaded = Self::load_endpoints(a, b, opts).map(|mut engine| {
            engine.info.layers_fixed = engine.layers_fixed();
            engine
        });
        let Some(file) = &opts.recipe else {
            return loaded;
        };
        // "--a X: …" reads "merge.yaml: model X: …" where X came from the recipe.
        let sources = [Some(a), Some(b)]
            .into_iter()
            .chain([&opts.third, &opts.fourth].map(|x| x.as_ref().map(|x| x.source.as_str())));
        let named: Vec<(String, String)> = ["--a", "--b", "--c", "--d"]
            .into_iter()
            .zip(sources)
            .filter_map(|(flag, s)| Some((flag, s?)))
            .flat_map(|(flag, s)| {
                let model = format!("{file}: model {s}");
                // A Hub id at @main is labelled without it: match that form too, after the
                // full one (which contains it).
                let bare = s
                    .strip_suffix("@main")
                    .map(|b| (format!("{flag} {b}"), model.clone()));
                std::iter::once((format!("{flag} {s}"), model)).chain(bare)
            })
            .collect();
        loaded
            .map(|mut engine| {
                engine.recipe = Some(file.clone());
                engine.recipe_sha256 =
                    source::sha256(&[std::path::PathBuf::from(file)]).unwrap_or_default();
                engine.info.layers_fixed = engine.layers_fixed();
                engine.info.others.push(("recipe".into(), file.clone()));
                engine
            })
            .map_err(|e| {
                let e = e.map_messages(&|m: &str| {
                    named
                        .iter()
                        .fold(m.to_string(), |m, (flag, model)| m.replace(flag, model))
                });
                // Every line about the recipe's models says which recipe named them.
                if e.to_string().contains(file.as_str()) {
                    e
                } else {
                    Error::Context {
                        context: file.clone(),
                        source: Box::new(e),
                    }
                }
            })
    }

    fn load_endpoints(a: &str, b: &str, opts: &LoadOptions) -> Result<Self> {
        // The user's own file, named as given (not as a model folder missing its tokenizer).
        if let Some(t) = opts.tokenizer.as_ref().filter(|t| !t.is_file()) {
            let what = if t.is_dir() {
                "a folder, not a file"
            } else {
                "no such file"
            };
            bail!(NotFound, "--tokenizer {}: {what}", t.display());
        }
        let tokenizer = |e: Endpoint| match (e, &opts.tokenizer) {
            (Endpoint::Model(mut f), Some(t)) => {
                f.tokenizer = t.clone();
                Endpoint::Model(f)
            }
            (e, _) => e,
        };
        let (ea, eb) = (
            tokenizer(source::resolve_endpoint(a)?),
            tokenizer(source::resolve_endpoint(b)?),
        );
        match (ea, eb) {
            (Endpoint::Model(fa), Endpoint::Model(fb)) => {
                if let Some(base) = &opts.base {
                    bail!(
                        Invalid,
                        "--base {base}: --a and --b are full models; --base names the model two adapters apply to"
                    );
                }
                Self::load_files(fa, fb, opts)
            }
            (ea, eb) => Self::load_adapters(ea, eb, opts),
        }
    }

    pub fn load_files(a: ModelFiles, b: ModelFiles, opts: &LoadOptions) -> Result<Self> {
        let device = opts.device.open()?;
        let (ta, tb) = (a.tokenizer.clone(), b.tokenizer.clone());
        // Configs and headers first: a file that is not a model says so before its tokenizer
        // is looked for.
        let mut ca = Checkpoint::open(a)?;
        let mut cb = Checkpoint::open(b)?;
        pair::match_heads(&mut ca, &mut cb);
        let tok_a = crate::formats::tokenizer::load_tokenizer(&ta)?;
        let tok_b = crate::formats::tokenizer::load_tokenizer(&tb)?;
        if !opts.allow_tokenizer_mismatch {
            crate::formats::tokenizer::check_tokenizers(&tok_a, &ta, &tok_b, &tb)?;
        }
        pair::validate(&ca, &cb)?;
        let names = pair::blended_names(&ca);
        if let (Some(d), None) = (&opts.fourth, &opts.third) {
            bail!(Invalid, "--d {}: needs --c, the third endpoint", d.source);
        }
        let dtype = held_dtype(opts.dtype, &[&ca, &cb], &names, &device);
        let layout_bytes = crate::weights::flat::FlatLayout::new(
            names
                .iter()
                .map(|n| (n.clone(), ca.weights.tensors[n].shape.clone())),
            dtype,
        )
        .total
            * dtype.size_in_bytes();
        // Off the line the blend is a table, on the CPU for now: refused before anything loads.
        if !device.is_cpu()
            && (opts.method != Method::Linear || opts.layers.is_some() || opts.third.is_some())
        {
            let what = match (&opts.third, &opts.layers) {
                _ if opts.recipe.is_some() => {
                    format!("the recipe {}", opts.recipe.as_deref().unwrap_or_default())
                }
                (Some(_), _) if opts.fourth.is_some() => "--c, --d: four endpoints".to_string(),
                (Some(_), _) => "--c: the plane".to_string(),
                (None, Some(l)) => format!("{}: α per layer", l.source()),
                (None, None) => format!("--method {}", opts.method.name()),
            };
            bail!(
                Unsupported,
                "{what} runs on the CPU for now; use --device cpu"
            );
        }
        let on_line =
            opts.method == Method::Linear && opts.layers.is_none() && opts.third.is_none();
        if on_line
            && keeps_quantized(opts, &ca, &names, &device)
            && keeps_quantized(opts, &cb, &names, &device)
        {
            return Self::load_quantized_pair(ca, cb, tok_a, &names, opts);
        }
        let extras = [&opts.third, &opts.fourth];
        let buffers = 3 + extras.iter().filter(|x| x.is_some()).count();
        check_fits(
            &device,
            &ca.config,
            layout_bytes as u64,
            buffers as u64,
            dtype,
        )?;
        let mut weights = BlendedWeights::load(&ca, &cb, &names, dtype, &device)?;
        weights.use_method(opts.method)?;
        if let Some(layers) = &opts.layers {
            weights.use_layers(layers, ca.config.layers())?;
        }
        let mut beyond = Vec::new();
        for (flag, x) in ["--c", "--d"].into_iter().zip(extras) {
            let Some(x) = x else { continue };
            let mut cx = match source::resolve_endpoint(&x.source)? {
                Endpoint::Model(mut f) => {
                    if let Some(tok) = &opts.tokenizer {
                        f.tokenizer = tok.clone();
                    }
                    Checkpoint::open(f)?
                }
                _ => bail!(
                    Unsupported,
                    "{flag} {}: is not a full model; beside two full models every endpoint is one",
                    x.source
                ),
            };
            if !opts.allow_tokenizer_mismatch {
                let tok_x = crate::formats::tokenizer::load_tokenizer(&cx.files.tokenizer)?;
                crate::formats::tokenizer::check_tokenizers(
                    &tok_a,
                    &ta,
                    &tok_x,
                    &cx.files.tokenizer,
                )?;
            }
            // A and B are laid out already: a tied C or D meets their heads, not the reverse.
            if !ca.config.tie_word_embeddings() {
                cx.untie();
            }
            pair::validate(&ca, &cx)?;
            weights.add_endpoint(&cx, x.weight, x.factors.as_ref(), ca.config.layers())?;
            beyond.push(cx);
        }
        let model = build_model(&ca, &weights, Buffer::Working, &device)
            .with_context(|| format!("{}: cannot build the model", ca.files.config.display()))?;
        let pair_model = Model::load_pair(
            &ca.config,
            weights_vb(&weights, Buffer::A, &device)?,
            weights_vb(&weights, Buffer::B, &device)?,
        )?;
        let others: Vec<&Checkpoint> = std::iter::once(&cb).chain(&beyond).collect();
        let (text, beyond_model) = pair_text_spec(&ca, &others, tok_a, opts)?;
        let mut description = match path_note(opts.method, opts.layers.as_ref()) {
            None => format!("{} ↔ {}", ca.label(), cb.label()),
            Some(note) => format!("{} ↔ {} ({note})", ca.label(), cb.label()),
        };
        let given = extras.iter().filter_map(|x| x.as_ref());
        for ((x, cx), name) in given.zip(&beyond).zip(["β", "γ"]) {
            let weight = if x.weight.is_some() { name } else { "α" };
            // A recipe's factors on its weight, as a number or as its rules.
            let factor = match x.factors.as_ref().map(|f| f.spec()) {
                Some(k) if k.parse::<f64>().is_ok() => format!("{k}·"),
                Some(k) => format!("[{k}]·"),
                None => String::new(),
            };
            description.push_str(&format!(" + {weight}·{factor}({} − A)", cx.label()));
        }
        let files = source_files;
        let roles = ["a", "b", "c", "d"];
        let all: Vec<&Checkpoint> = [&ca, &cb].into_iter().chain(&beyond).collect();
        let origin = Origin {
            model: ca.files.clone(),
            sources: roles
                .iter()
                .zip(&all)
                .map(|(role, c)| (role.to_string(), c.label().to_string(), files(c)))
                .collect(),
            quantization: roles
                .iter()
                .zip(&all)
                .filter_map(|(role, c)| Some((role.to_string(), c.weights.quantization()?)))
                .collect(),
            beyond_model,
        };
        let mut engine = Self::assemble(
            origin,
            &ca,
            (ca.label().to_string(), cb.label().to_string(), description),
            Weights::Full(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.info.layers = opts.layers.as_ref().map(|l| l.spec());
        engine.layers = opts.layers.clone();
        engine.info.layer_strip = engine.layer_strip();
        engine.third = opts.third.clone();
        engine.fourth = opts.fourth.clone();
        engine.info.gamma = engine.weights.full().and_then(|w| w.gamma());
        Ok(engine)
    }

    /// Two adapters (or `base` and an adapter) on one base.
    fn load_adapters(a: Endpoint, b: Endpoint, opts: &LoadOptions) -> Result<Self> {
        let slerp = opts.method == Method::Slerp;
        let side = |e: Endpoint,
                    flag: &str|
         -> Result<Option<crate::formats::adapter::AdapterFiles>> {
            match e {
                Endpoint::Adapter(f) => Ok(Some(f)),
                Endpoint::Base => Ok(None),
                Endpoint::Model(m) => {
                    // A llama.cpp LoRA file reads as a GGUF model here: its header says what it is.
                    let gguf = m
                        .weights
                        .iter()
                        .find(|p| crate::formats::gguf::has_gguf_magic(p));
                    if let Some(g) = gguf {
                        crate::formats::gguf::Header::read(g)?;
                    }
                    bail!(
                        Mismatch,
                        "{flag} {} is a full model but the other side is an adapter or `base`: blend two full models, or two adapters (or `base` and an adapter) on one base",
                        m.label
                    )
                }
            }
        };
        let (fa, fb) = (side(a, "--a")?, side(b, "--b")?);
        if let (Some(d), None) = (&opts.fourth, &opts.third) {
            bail!(Invalid, "--d {}: needs --c, the third endpoint", d.source);
        }
        let extra = |x: &Option<ExtraEndpoint>, (flag, weight, name): (&str, &str, &str)| {
            let Some(x) = x else { return Ok((None, None)) };
            let Some(w) = x.weight else {
                // A recipe's weights all follow α; over adapters a third moves by β alone.
                if opts.recipe.is_some() {
                    bail!(
                        Unsupported,
                        "{flag} {}: a recipe over adapters moves one line, from its base_model (`base` or an adapter) to one other adapter; a further adapter moves by a β of its own, which a recipe's weights do not give: give the adapters as --a, --b and --c with --beta instead",
                        x.source
                    );
                }
                bail!(
                    Unsupported,
                    "{flag} {}: over adapters it needs its own {name} ({weight}); its weight cannot follow α",
                    x.source
                );
            };
            if x.factors.is_some() {
                bail!(
                    Unsupported,
                    "{flag} {}: per-tensor factors on it blend full models; over adapters it takes one {name}",
                    x.source
                );
            }
            Ok((side(source::resolve_endpoint(&x.source)?, flag)?, Some(w)))
        };
        let (fc, beta) = extra(&opts.third, ("--c", "--beta", "β"))?;
        let (fd, gamma) = extra(&opts.fourth, ("--d", "--gamma", "γ"))?;
        if fa.is_none() && fb.is_none() && fc.is_none() && fd.is_none() {
            bail!(
                Invalid,
                "--a and --b are both `base`: there is nothing to interpolate"
            );
        }
        let base_spec = choose_base(
            opts.base.as_deref(),
            [fa.as_ref(), fb.as_ref(), fc.as_ref(), fd.as_ref()],
        )?;
        let device = opts.device.open()?;
        if slerp && beta.is_some() {
            bail!(
                Unsupported,
                "--method slerp runs along A→B; over adapters a plane (--c) is refused with it"
            );
        }
        if slerp && !device.is_cpu() {
            bail!(
                Unsupported,
                "--method slerp over adapters runs on the CPU for now; use --device cpu"
            );
        }
        if beta.is_some() && !device.is_cpu() {
            bail!(
                Unsupported,
                "--c: the plane over adapters runs on the CPU for now; use --device cpu"
            );
        }
        if let (Some(layers), false) = (&opts.layers, device.is_cpu()) {
            bail!(
                Unsupported,
                "{}: α per layer over adapters runs on the CPU for now; use --device cpu",
                layers.source()
            );
        }
        let mut base_files = source::resolve(&base_spec).with_context(|| match opts.base {
            Some(_) => "--base".to_string(),
            None => format!(
                "the base the adapters name (base_model_name_or_path: {base_spec}); pass --base to give it"
            ),
        })?;
        if let Some(t) = &opts.tokenizer {
            base_files.tokenizer = t.clone();
        }
        // "the base X: X: …" says X twice: the file's own message names it already.
        let base = Checkpoint::open(base_files).map_err(|e| {
            let context = match e.to_string().starts_with(&format!("{base_spec}:")) {
                true => "the base".to_string(),
                false => format!("the base {base_spec}"),
            };
            Error::Context {
                context,
                source: Box::new(e),
            }
        })?;
        let tokenizer = crate::formats::tokenizer::load_tokenizer(&base.files.tokenizer)?;
        let load = |f: Option<crate::formats::adapter::AdapterFiles>| -> Result<Option<Adapter>> {
            f.map(|f| Adapter::load(f, &base)).transpose()
        };
        let sides = [load(fa)?, load(fb)?, load(fc)?, load(fd)?];
        let text = adapter_text_spec(&base, &sides, tokenizer, opts)?;
        if beta.is_some() {
            // C may be the base itself: A's and B's replacements are refused all the same.
            crate::weights::adapters::refuse_replacements(
                sides.each_ref().map(Option::as_ref),
                crate::weights::adapters::PLANE_MOVES_UPDATES,
            )?;
        }
        let names = pair::blended_names(&base);
        let factors = adapter_factors(opts.layers.as_ref(), &base, &names, &sides)?;
        if keeps_quantized(opts, &base, &names, &device) {
            if slerp {
                bail!(
                    Unsupported,
                    "--method slerp over adapters on a base kept quantized: the angles need the merged tensors; use --dequantize"
                );
            }
            return Self::load_on_quantized(base, base_spec, text, (sides, factors), &names, opts);
        }
        let [aa, ab, ac, ad] = &sides;
        let dtype = held_dtype(opts.dtype, &[&base], &names, &device);
        let shape = |n: &String| base.weights.tensors[n].shape.iter().product::<usize>() as u64;
        let base_bytes: u64 = names.iter().map(shape).sum::<u64>() * dtype.size_in_bytes() as u64;
        let changed: std::collections::BTreeSet<&String> = sides
            .iter()
            .flatten()
            .flat_map(|x| x.updates.keys().chain(x.replacements.keys()))
            .collect();
        let changed_bytes: u64 =
            changed.iter().map(|n| shape(n)).sum::<u64>() * dtype.size_in_bytes() as u64;
        crate::memory::check_adapters_fit(&device, &base.config, base_bytes, changed_bytes, dtype)?;
        let factor = |n: &str| crate::weights::quantized_base::factor_of(factors.as_ref(), n);
        // Merged once, at α = 0 on the plane and under the rules asked for.
        let mut weights = AdapterWeights::load(
            &base,
            &names,
            [aa.as_ref(), ab.as_ref(), ac.as_ref(), ad.as_ref()],
            (dtype, &device),
            (
                [beta.unwrap_or(0.0), gamma.unwrap_or(0.0)],
                factors.is_some().then_some(&factor as &dyn Fn(&str) -> f64),
            ),
        )?;
        if slerp {
            weights.use_slerp()?;
        }
        let vb = |views| VarBuilder::from_tensors(views, dtype, &device);
        let model = Model::load(&base.config, vb(weights.merged_views()?))
            .with_context(|| format!("{}: cannot build the model", base.files.config.display()))?;
        let (va, vbv) = weights.factored_views()?;
        let mut low_rank = std::collections::HashMap::new();
        for (name, f) in &weights.forward {
            let up = Tensor::from_slice(&f.up, (f.out, f.rank), &device)?.to_dtype(dtype)?;
            let down = Tensor::from_slice(&f.down, (f.rank, f.inp), &device)?.to_dtype(dtype)?;
            let pair =
                crate::model::param::LowRankPair::new(up, down, f.sides)?.with_factor(factor(name));
            low_rank.insert(name.clone(), std::sync::Arc::new(pair));
        }
        let adapted = AdaptedTensors {
            low_rank: low_rank.clone(),
            layout: base_layout(&base, &names),
        };
        let pair_model = Model::load_factored(&base.config, vb(va), vb(vbv), low_rank)?;
        let (text, beyond_model) = text;
        let plane = beta.map(|_| [ac, ad]);
        let (names, origin) =
            adapter_origin(&base, &base_spec, [aa, ab], plane, (None, beyond_model));
        let mut engine = Self::assemble(
            origin,
            &base,
            names,
            Weights::Adapters(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.adapted = Some(adapted);
        engine.use_adapter_path(opts, beta);
        Ok(engine)
    }

    /// A plane or α per layer over adapters: recorded where the header, sessions and exports
    /// look.
    fn use_adapter_path(&mut self, opts: &LoadOptions, beta: Option<f64>) {
        self.third = beta.and(opts.third.clone());
        self.fourth = beta.and(opts.fourth.clone());
        self.info.beta = beta;
        self.info.gamma = self.fourth.as_ref().and_then(|d| d.weight);
        if let Some(l) = &opts.layers {
            self.layers = Some(l.clone());
            self.info.layers = Some(l.spec());
            self.info.layer_strip = self.layer_strip();
        }
    }

    /// Two quantized GGUF endpoints kept as they are: both mapped, nothing blended at any α.
    fn load_quantized_pair(
        ca: Checkpoint,
        cb: Checkpoint,
        tokenizer: Tokenizer,
        names: &[String],
        opts: &LoadOptions,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let weights = QuantizedPair::load(&ca, &cb, names)?;
        let build = || {
            let vb = |v| VarBuilder::from_tensors(v, DType::F32, &device);
            Model::load_quantized_pair(
                &ca.config,
                (vb(weights.a.dense_views()?), vb(weights.b.dense_views()?)),
                weights.a.quantized_map(),
                weights.b.quantized_map(),
            )
            .with_context(|| format!("{}: cannot build the model", ca.label()))
        };
        let mut model = build()?;
        model.set_default_mix(Some(Mix::new(&[weights.alpha()], &device)?))?;
        let pair_model = build()?;
        let (text, beyond_model) = pair_text_spec(&ca, &[&cb], tokenizer, opts)?;
        let description = format!(
            "{} ↔ {} ({}, kept quantized)",
            ca.label(),
            cb.label(),
            weights.types()
        );
        let files = source_files;
        let origin = Origin {
            model: ca.files.clone(),
            sources: vec![
                ("a".into(), ca.label().to_string(), files(&ca)),
                ("b".into(), cb.label().to_string(), files(&cb)),
            ],
            quantization: [("a", &ca), ("b", &cb)]
                .into_iter()
                .filter_map(|(role, c)| Some((role.to_string(), c.weights.quantization()?)))
                .collect(),
            beyond_model,
        };
        Ok(Self::assemble(
            origin,
            &ca,
            (ca.label().to_string(), cb.label().to_string(), description),
            Weights::QuantizedPair(weights),
            (model, pair_model),
            text,
            &device,
        ))
    }

    /// Adapters on a quantized GGUF base kept as it is: the base's matrices read in place,
    /// both adapters' factors applied per row, nothing merged at any α.
    fn load_on_quantized(
        base: Checkpoint,
        base_spec: String,
        (text, beyond_model): (TextSpec, TextBeyondModel),
        (sides, factors): (
            [Option<Adapter>; 4],
            Option<std::collections::HashMap<String, f64>>,
        ),
        names: &[String],
        opts: &LoadOptions,
    ) -> Result<Self> {
        let device = Device::Cpu;
        let mut weights =
            QuantizedAdapters::load(&base, names, sides.each_ref().map(Option::as_ref))?;
        weights.factors = factors;
        let beta = opts.third.as_ref().and_then(|t| t.weight);
        if let Some(beta) = beta {
            weights.set_beta(beta);
        }
        if let Some(gamma) = opts.fourth.as_ref().and_then(|t| t.weight) {
            weights.set_gamma(gamma);
        }
        let mut low_rank = std::collections::HashMap::new();
        for (name, f) in &weights.forward {
            let pair = crate::model::param::LowRankPair::on_host(
                f.up.clone(),
                f.down.clone(),
                (f.out, f.inp),
                f.sides,
            )?
            .with_factor(weights.factor(name));
            low_rank.insert(name.clone(), std::sync::Arc::new(pair));
        }
        let adapted = AdaptedTensors {
            low_rank: low_rank.clone(),
            layout: base_layout(&base, names),
        };
        let quantized = weights.base.quantized_map();
        let build = || {
            let vb = |views| VarBuilder::from_tensors(views, DType::F32, &device);
            let dense = vb(weights.base.dense_views()?);
            let dense_b = weights.replaced_b_views()?.map(vb);
            Model::load_quantized(
                &base.config,
                (dense, dense_b),
                quantized.clone(),
                low_rank.clone(),
            )
            .with_context(|| format!("{}: cannot build the model", base.label()))
        };
        let mut model = build()?;
        let mix = Mix::on_plane(
            &[weights.alpha()],
            [weights.beta(), weights.gamma()],
            &device,
        )?;
        model.set_default_mix(Some(mix))?;
        let pair_model = build()?;
        let kept = format!("{}, kept quantized", weights.base.types());
        let [aa, ab, ac, ad] = &sides;
        let plane = beta.map(|_| [ac, ad]);
        let (names, origin) = adapter_origin(
            &base,
            &base_spec,
            [aa, ab],
            plane,
            (Some(&kept), beyond_model),
        );
        let mut engine = Self::assemble(
            origin,
            &base,
            names,
            Weights::Quantized(weights),
            (model, pair_model),
            text,
            &device,
        );
        engine.adapted = Some(adapted);
        engine.use_adapter_path(opts, beta);
        Ok(engine)
    }

    fn assemble(
        origin: Origin,
        c: &Checkpoint,
        (a, b, description): (String, String, String),
        weights: Weights,
        (model, pair_model): (Model, Model),
        mut text: TextSpec,
        device: &Device,
    ) -> Self {
        // Caches and activations are held in the dtype the forward pass computes in.
        let computes_in = crate::model::compute_dtype(weights.dtype(), device);
        text.memory = crate::generate::RowMemory::of(&c.config, computes_in);
        let info = PairInfo {
            a,
            b,
            description,
            architecture: c.config.architecture().to_string(),
            params: weights.params(),
            dtype: dtype_name(weights.dtype()).to_string(),
            device: device_name(device),
            buffer_bytes: weights.model_bytes(),
            gpu_memory: device_memory(device).map(|(free, total)| (total - free, total)),
            chat_template: text.chat.is_some(),
            turn_markers: text
                .chat
                .iter()
                .flat_map(|t| t.markers())
                .map(|m| m.to_string())
                .collect(),
            method: weights.method(),
            layers: None,
            beta: weights.full().and_then(|w| w.beta()),
            gamma: None,
            layers_fixed: None,
            layer_strip: Vec::new(),
            others: origin
                .sources
                .iter()
                .filter(|(role, _, _)| !matches!(role.as_str(), "a" | "b"))
                .map(|(role, source, _)| (role.clone(), source.clone()))
                .collect(),
        };
        Self {
            info,
            origin,
            config: c.config.clone(),
            weights,
            model,
            pair_model,
            step_times: Default::default(),
            layers: None,
            third: None,
            fourth: None,
            adapted: None,
            columns_mode: ColumnsMode::Auto,
            recipe: None,
            recipe_sha256: String::new(),
            text,
        }
    }
}

/// Whether `base` (of adapters, or either of two full endpoints) stays quantized: `--dtype
/// auto` (no dtype asked), no `--dequantize`, on the CPU (the quantized kernels are CPU
/// kernels), a decoder family, and at least one matrix of a type with a kernel. There the quantized path measures faster than
/// the dequantized one (README, "Quantized bases") and needs a fraction of the memory.
fn keeps_quantized(
    opts: &LoadOptions,
    base: &Checkpoint,
    names: &[String],
    device: &Device,
) -> bool {
    !opts.dequantize
        && opts.dtype.is_none()
        && device.is_cpu()
        && matches!(base.config, ModelConfig::Decoder(_))
        && names
            .iter()
            .any(|n| base.weights.quantized_type(n).is_some())
}

/// The labels, header line and origin of an adapter pair; `kept` says how the base is held
/// where it is not dequantized.
fn adapter_origin(
    base: &Checkpoint,
    base_spec: &str,
    [aa, ab]: [&Option<Adapter>; 2],
    plane: Option<[&Option<Adapter>; 2]>,
    (kept, beyond_model): (Option<&str>, TextBeyondModel),
) -> ((String, String, String), Origin) {
    let label = |x: &Option<Adapter>| match x {
        Some(x) => x.files.label.clone(),
        None => source::BASE.to_string(),
    };
    let what = |x: &Option<Adapter>| match x {
        Some(x) => x.describe(),
        None => "the base".to_string(),
    };
    let held = kept.map(|k| format!(" ({k})")).unwrap_or_default();
    let mut description = format!("base {}{held} + {} ↔ {}", base.label(), what(aa), what(ab));
    if let Some([ac, ad]) = plane {
        description.push_str(&format!(" + β·({} − A)", what(ac)));
        if let Some(d) = ad {
            description.push_str(&format!(" + γ·({} − A)", d.describe()));
        }
    }
    let adapter_files = |x: &Option<Adapter>| match x {
        Some(x) => vec![x.files.config.clone(), x.files.weights.clone()],
        None => Vec::new(),
    };
    let fourth = plane.and_then(|[_, ad]| ad.as_ref().map(|_| ad));
    let base_files = source_files(base);
    let origin = Origin {
        model: base.files.clone(),
        sources: [
            Some(("a".into(), label(aa), adapter_files(aa))),
            Some(("b".into(), label(ab), adapter_files(ab))),
            plane.map(|[ac, _]| ("c".into(), label(ac), adapter_files(ac))),
            fourth.map(|ad| ("d".into(), label(ad), adapter_files(ad))),
            Some(("base".into(), base_spec.to_string(), base_files)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        quantization: base
            .weights
            .quantization()
            .map(|q| vec![("base".to_string(), q)])
            .unwrap_or_default(),
        beyond_model,
    };
    ((label(aa), label(ab), description), origin)
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

/// The dtype the blended tensors `names` of `checkpoints` (each endpoint's, in which they
/// may be stored at different widths) are held in: `asked`, or
/// [`dtype_choice::auto`](crate::dtype_choice::auto) from all their stored dtypes and the
/// largest.
fn held_dtype(
    asked: Option<DType>,
    checkpoints: &[&Checkpoint],
    names: &[String],
    device: &Device,
) -> DType {
    asked.unwrap_or_else(|| {
        let largest = names
            .iter()
            .map(|n| {
                checkpoints[0].weights.tensors[n]
                    .shape
                    .iter()
                    .product::<usize>()
            })
            .max()
            .unwrap_or(0);
        let choices: Vec<DType> = checkpoints
            .iter()
            .map(|c| {
                let stored: Vec<_> = names
                    .iter()
                    .map(|n| native_dtype(c.weights.tensors[n].dtype))
                    .collect();
                crate::dtype_choice::auto(&stored, device, largest)
            })
            .collect();
        // Endpoints that would be held at different widths are held in f32, which rounds
        // neither (α = 1 is then B as B alone runs).
        match choices.split_first() {
            Some((first, rest)) if rest.iter().all(|d| d == first) => *first,
            _ => DType::F32,
        }
    })
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

/// The files that identify a model for an export's recipe: its config and weights (one GGUF
/// file is both).
fn source_files(c: &Checkpoint) -> Vec<std::path::PathBuf> {
    let mut f = vec![c.files.config.clone()];
    f.extend(c.files.weights.iter().cloned());
    f.dedup();
    f
}

/// α per layer over adapters: each base tensor's factor (mergekit's gradients over the
/// layers), by name. Tensors an adapter replaces whole (modules_to_save) are refused: the
/// batched rows blend them on the line.
fn adapter_factors(
    layers: Option<&LayerAlphas>,
    base: &Checkpoint,
    names: &[String],
    sides: &[Option<Adapter>; 4],
) -> Result<Option<std::collections::HashMap<String, f64>>> {
    let Some(layers) = layers else {
        return Ok(None);
    };
    crate::weights::adapters::refuse_replacements(
        sides.each_ref().map(Option::as_ref),
        "α per layer over adapters moves low-rank updates only",
    )?;
    let layout = base_layout(base, names);
    let f = layers.factors(&layout, base.config.layers())?;
    Ok(Some(
        layout.slots.iter().map(|s| s.name.clone()).zip(f).collect(),
    ))
}

/// The layout of the base's tensors `names` (names and shapes: what α per layer's filters are
/// checked against).
fn base_layout(base: &Checkpoint, names: &[String]) -> crate::weights::flat::FlatLayout {
    crate::weights::flat::FlatLayout::new(
        names
            .iter()
            .map(|n| (n.clone(), base.weights.tensors[n].shape.clone())),
        DType::F32,
    )
}

/// The base of an adapter pair: `--base`, else the base the adapters name.
fn choose_base(
    given: Option<&str>,
    sides: [Option<&crate::formats::adapter::AdapterFiles>; 4],
) -> Result<String> {
    if let Some(b) = given {
        return Ok(b.to_string());
    }
    // Each base with the adapter that names it, "--a X" (a recipe's load rewrites that as the
    // recipe's model X).
    let mut named: Vec<(String, String)> = Vec::new();
    for (flag, f) in ["--a", "--b", "--c", "--d"].into_iter().zip(sides) {
        let Some(f) = f else { continue };
        let text = std::fs::read_to_string(&f.config)
            .with_context(|| format!("{}: cannot read", f.config.display()))?;
        let config = crate::formats::adapter::AdapterConfig::parse(&text, &f.config)?;
        if let Some(base) = config.base_model {
            // A relative path is taken from the working directory, else from the adapter's.
            let p = std::path::Path::new(&base);
            let base = if p.is_relative() && !p.exists() && f.dir.join(p).exists() {
                f.dir.join(p).display().to_string()
            } else {
                base
            };
            named.push((
                format!("{flag} {}", f.label),
                with_revision(base, config.base_revision.as_deref()),
            ));
        }
    }
    match named.as_slice() {
        [] => bail!(
            Invalid,
            "the adapters do not name their base (base_model_name_or_path): pass --base"
        ),
        [(_, b), rest @ ..] => match rest.iter().find(|(_, y)| !same_place(b, y)) {
            None => Ok(b.clone()),
            Some((fy, y)) => bail!(
                Mismatch,
                "the adapters name different bases ({b} for {}, {y} for {fy}): pass --base to choose",
                named[0].0
            ),
        },
    }
}

/// A base named by Hub id at the revision PEFT recorded (its `revision`), as PEFT loads it: a
/// local path, or an id that names its own revision, stays as it is.
fn with_revision(base: String, revision: Option<&str>) -> String {
    // main is what an id without one is read at.
    match revision.filter(|r| *r != "main") {
        Some(rev)
            if !std::path::Path::new(&base).exists()
                && !base.contains('@')
                && crate::formats::source::HubId::parse(&base).is_some() =>
        {
            format!("{base}@{rev}")
        }
        _ => base,
    }
}

/// Two names of one base: equal, or the same directory reached two ways.
fn same_place(x: &str, y: &str) -> bool {
    x == y
        || matches!(
            (std::fs::canonicalize(x), std::fs::canonicalize(y)),
            (Ok(a), Ok(b)) if a == b
        )
}
