//! mergekit's YAML merge configs, read as recipes: `linear`, `slerp` and `task_arithmetic`
//! over two to four models, with their parameters as scalars, gradients and filtered rules.
//! Each becomes endpoints A and B (and C, D), a method, and per-tensor factors on α
//! ([`LayerAlphas`]) whose value at α = 1 is the config's own merge:
//! - `slerp`: A is `base_model`, B the other model; each tensor at slerp(α·t).
//! - `task_arithmetic`: A is `base_model`, B, C and D the one to three others;
//!   A + α·λ·Σ wᵢ·(Xᵢ − A) (with `normalize: true`, each wᵢ over the weights' sum).
//! - `linear`: A, B, C and D the two to four models in order; A + α·Σ (wᵢ/Σw)·(Xᵢ − A) over
//!   the models after A, which at α = 1 is mergekit's Σ wᵢ·Xᵢ/Σ w. `normalize: false` leaves
//!   the affine span of the models and is refused.
//!
//! Everything else (other methods, more models, `modules`, tokenizer surgery) is refused by
//! name, never ignored in a way that changes the weights.

use crate::error::{bail, err, Context, Result};
use crate::weights::layers::{LayerAlphas, Rule};
use crate::Method;
use candle_core::DType;
use serde_yaml_ng::{Mapping, Value};
use std::path::Path;

/// A mergekit config as a pair and its path through weight space.
#[derive(Debug, Clone, PartialEq)]
pub struct MergeRecipe {
    /// The file, for messages.
    pub file: String,
    pub merge_method: String,
    /// Endpoint A (α = 0) and B, as the config names them (paths or Hub ids).
    pub a: String,
    pub b: String,
    pub method: Method,
    /// Each tensor's factor on α; the config's merge at α = 1.
    pub layers: LayerAlphas,
    /// A third model (task_arithmetic's second besides the base, linear's third) and its
    /// factors: the working weights are then A + α·(k_B·(B − A) + k_C·(C − A)).
    pub c: Option<(String, LayerAlphas)>,
    /// A fourth model and its factors, beside C: + α·k_D·(D − A).
    pub d: Option<(String, LayerAlphas)>,
    /// The config's `dtype`, when it names one lerpscope computes in.
    pub dtype: Option<DType>,
}

const METHODS: &str = "linear, slerp and task_arithmetic";

impl MergeRecipe {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--recipe {}: cannot read", path.display()))?;
        let recipe = Self::parse(&text, &path.display().to_string())?;
        // A model that is neither here nor a Hub id is named with the recipe that names it.
        let models = [&recipe.a, &recipe.b]
            .into_iter()
            .chain(recipe.c.iter().chain(&recipe.d).map(|(m, _)| m));
        for m in models {
            if m != crate::formats::source::BASE
                && !Path::new(m).exists()
                && crate::formats::source::HubId::parse(m).is_none()
            {
                bail!(
                    Invalid,
                    "{}: model '{m}' is neither an existing path nor a Hub id of the form \
                     org/name[@revision]",
                    path.display()
                );
            }
        }
        Ok(recipe)
    }

    pub fn parse(text: &str, file: &str) -> Result<Self> {
        let doc: Value =
            serde_yaml_ng::from_str(text).map_err(|e| err!(Format, "{file}: not YAML: {e}"))?;
        let top = doc
            .as_mapping()
            .ok_or_else(|| err!(Format, "{file}: expected a mapping of mergekit keys"))?;
        Reader { file, top }.read()
    }
}

/// A mergekit config that merges what lerpscope has at α between `a` and `b` (sources as
/// given): the line and α per layer as `task_arithmetic` (A the base, B's weight α times each
/// factor), slerp with t = α times each factor. None where mergekit has no such config: a
/// linear recipe's normalised shares (and task_arithmetic's with `normalize`), whose factors
/// are ratios rather than gradients.
pub fn to_yaml(
    a: &str,
    b: &str,
    method: Method,
    layers: Option<&LayerAlphas>,
    extras: &[(&str, Option<f64>, Option<&LayerAlphas>)],
    alpha: f64,
    dtype: DType,
) -> Option<String> {
    let b_setting = weight_setting(alpha, layers)?;
    // C and D, each at its weight (or α) times its factors.
    let extra_models = extras
        .iter()
        .map(|&(x, w, factors)| Some((x, weight_setting(w.unwrap_or(alpha), factors)?)))
        .collect::<Option<Vec<_>>>()?;
    let (merge_method, key) = match method {
        Method::Linear => ("task_arithmetic", "weight"),
        Method::Slerp => ("slerp", "t"),
    };
    let model = |name: &str, params: Option<Mapping>| {
        let mut m = Mapping::new();
        m.insert("model".into(), Value::String(name.to_string()));
        if let Some(p) = params {
            m.insert("parameters".into(), Value::Mapping(p));
        }
        Value::Mapping(m)
    };
    let one = |setting: Value| {
        let mut m = Mapping::new();
        m.insert(key.into(), setting);
        m
    };
    let (b_params, shared) = match method {
        Method::Linear => (Some(one(b_setting)), None),
        Method::Slerp => (None, Some(one(b_setting))),
    };
    let mut models = vec![model(a, None), model(b, b_params)];
    for (x, setting) in extra_models {
        models.push(model(x, Some(one(setting))));
    }
    let mut top = Mapping::new();
    top.insert("merge_method".into(), Value::String(merge_method.into()));
    top.insert("base_model".into(), Value::String(a.to_string()));
    top.insert("models".into(), Value::Sequence(models));
    if let Some(p) = shared {
        top.insert("parameters".into(), Value::Mapping(p));
    }
    let dtype = match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    };
    top.insert("dtype".into(), Value::String(dtype.into()));
    serde_yaml_ng::to_string(&Value::Mapping(top)).ok()
}

/// A weight or t of `k` times each factor of `layers` (mergekit's rules), or `k` itself; None
/// for a share of two weights, which has no such form.
fn weight_setting(k: f64, layers: Option<&LayerAlphas>) -> Option<Value> {
    let number = |v: f64| Value::Number(serde_yaml_ng::Number::from(v));
    match layers {
        None => Some(number(k)),
        Some(l) if l.is_share() => None,
        Some(l) => {
            let k = k * l.scale();
            let mut rules: Vec<Value> = l
                .rules()
                .iter()
                .map(|r| {
                    let mut m = Mapping::new();
                    if let Some(f) = &r.filter {
                        m.insert("filter".into(), Value::String(f.clone()));
                    }
                    let values = r.values.iter().map(|&v| number(k * v)).collect();
                    m.insert("value".into(), Value::Sequence(values));
                    Value::Mapping(m)
                })
                .collect();
            // Tensors no rule matches move with α (factor 1); mergekit needs that said.
            if l.rules().last().is_some_and(|r| r.filter.is_some()) {
                let mut m = Mapping::new();
                m.insert("value".into(), number(k));
                rules.push(Value::Mapping(m));
            }
            Some(Value::Sequence(rules))
        }
    }
}

struct Reader<'a> {
    file: &'a str,
    top: &'a Mapping,
}

/// One input model and its own parameters.
struct Input<'a> {
    model: String,
    parameters: Option<&'a Mapping>,
}

impl Reader<'_> {
    fn read(&self) -> Result<MergeRecipe> {
        let file = self.file;
        for (k, _) in self.top {
            let k = key(k);
            match k.as_str() {
                "merge_method" | "base_model" | "models" | "slices" | "parameters" | "dtype"
                | "out_dtype" | "chat_template" | "name" => {}
                "tokenizer_source" => match self.top.get("tokenizer_source") {
                    None | Some(Value::Null) => {}
                    Some(Value::String(s)) if s == "base" => {}
                    Some(other) => bail!(
                        Unsupported,
                        "{file}: tokenizer_source {other:?} rebuilds the vocabulary; only the endpoints' own tokenizer (tokenizer_source: base) is supported"
                    ),
                },
                other => bail!(
                    Unsupported,
                    "{file}: key {other:?} is not supported (read: merge_method, models or one slice, base_model, parameters, dtype)"
                ),
            }
        }
        // mergekit computes in `dtype` and saves in `out_dtype`: a different one rounds the
        // result, which this preview would not show.
        if let (Some(out), dtype) = (self.str("out_dtype")?, self.str("dtype")?) {
            if dtype.as_deref() != Some(out.as_str()) {
                bail!(
                    Unsupported,
                    "{file}: out_dtype {out:?} differs from dtype {:?}; lerpscope computes and exports in one dtype (drop out_dtype, or export with --dtype)",
                    dtype.unwrap_or_default()
                );
            }
        }
        let merge_method = self
            .str("merge_method")?
            .ok_or_else(|| err!(Format, "{file}: no merge_method"))?;
        let dtype = match self.str("dtype")?.as_deref() {
            None => None,
            Some("float32") => Some(DType::F32),
            Some("float16") => Some(DType::F16),
            Some("bfloat16") => Some(DType::BF16),
            Some(other) => bail!(
                Unsupported,
                "{file}: dtype {other:?}: lerpscope computes in float32, float16 or bfloat16"
            ),
        };
        let (inputs, layer_range, slice_params) = self.inputs()?;
        // mergekit keys its models by name: a second entry of one model is not a second model.
        for (i, x) in inputs.iter().enumerate() {
            if let Some(first) = inputs[..i].iter().position(|y| y.model == x.model) {
                bail!(
                    Invalid,
                    "{file}: {} is listed twice (entries {} and {}); give each model once",
                    x.model,
                    first + 1,
                    i + 1
                );
            }
        }
        let base = self.str("base_model")?;
        if let Some(b) = &base {
            no_lora_form(file, "base_model", b)?;
        }
        let global = self.mapping("parameters")?;
        // mergekit's precedence for shared parameters: the slice's, then the config's.
        let shared = [slice_params, global];
        let what = |name: &str| format!("{file}: parameters.{name}");
        let (a, b, method, layers, [c, d]) = match merge_method.as_str() {
            "slerp" => {
                only_parameters(file, &shared, &["t"])?;
                let (a, mut others) =
                    base_and_others(file, &merge_method, base.as_deref(), &inputs, 1)?;
                let b = others.remove(0);
                if b.parameters.is_some() || a.parameters.is_some() {
                    bail!(
                        Unsupported,
                        "{file}: slerp takes t from parameters shared by both models, not from one model's"
                    );
                }
                let t = setting(file, &shared, &[], "t")?
                    .ok_or_else(|| err!(Format, "{file}: slerp needs parameters.t"))?;
                let layers = LayerAlphas::new(t, &what("t"))?.required();
                (a.model, b.model, Method::Slerp, layers, [None, None])
            }
            "task_arithmetic" => {
                only_parameters(file, &shared, &["lambda", "normalize", "weight"])?;
                let (a, others) =
                    base_and_others(file, &merge_method, base.as_deref(), &inputs, 3)?;
                let lambda = scalar(file, &shared, "lambda")?.unwrap_or(1.0);
                if !(lambda.is_finite() && lambda.abs() <= crate::alpha::MAX_ABS_ALPHA) {
                    bail!(
                        Invalid,
                        "{file}: parameters.lambda: {} is not a finite number of at most {} \
                         in size",
                        crate::alpha::shown(lambda),
                        crate::alpha::MAX_ABS_ALPHA
                    );
                }
                let normalize = flag(file, &shared, "normalize")?.unwrap_or(false);
                let weights = others
                    .iter()
                    .map(|o| {
                        only_parameters(file, &[o.parameters], &["weight"])?;
                        let w = setting(file, &shared, &[o.parameters], "weight")?.ok_or_else(
                            || {
                                err!(
                                    Format,
                                    "{file}: task_arithmetic needs a weight for {}",
                                    o.model
                                )
                            },
                        )?;
                        LayerAlphas::new(w, &format!("{} for {}", what("weight"), o.model))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // normalize divides the weighted deltas by the weights' sum: each model's
                // factor is its share of it (one model: 1).
                let factor = |i: usize| -> Result<LayerAlphas> {
                    let own = weights[i].clone();
                    let f = match (normalize, weights.len()) {
                        (false, _) => own,
                        // Alone, a weight over itself: 1, or the weight where it is within
                        // 1e-8 of zero (mergekit's guard divides by 1 there).
                        (true, 1) => own
                            .shared_among(vec![LayerAlphas::new(
                                vec![Rule {
                                    filter: None,
                                    values: vec![0.0],
                                }],
                                &what("weight"),
                            )?])
                            .zero_sum_as_one(),
                        (true, _) => own.shared_among(others_of(&weights, i)).zero_sum_as_one(),
                    };
                    Ok(f.scaled(lambda).required())
                };
                let layers = factor(0)?;
                let extra = |i: usize| -> Result<Option<(String, LayerAlphas)>> {
                    match others.get(i) {
                        Some(o) => Ok(Some((o.model.clone(), factor(i)?.for_layers(layer_range)))),
                        None => Ok(None),
                    }
                };
                let cd = [extra(1)?, extra(2)?];
                let b = others.into_iter().next().expect("one model at least");
                (a.model, b.model, Method::Linear, layers, cd)
            }
            "linear" => {
                only_parameters(file, &shared, &["normalize", "weight"])?;
                if flag(file, &shared, "normalize")? == Some(false) {
                    bail!(
                        Unsupported,
                        "{file}: linear with normalize: false (weights that need not sum to 1) is not read; use task_arithmetic for A + Σ wᵢ·(Xᵢ − A)"
                    );
                }
                // mergekit merges a base_model that the `models:` form does not list as one
                // more model, at the shared weight (the `slices:` form leaves it out). Here it
                // is A, as every method's base_model is.
                let mut inputs = inputs;
                if let Some(b) = base.as_deref() {
                    if self.top.contains_key("models") && !inputs.iter().any(|i| i.model == b) {
                        inputs.insert(
                            0,
                            Input {
                                model: b.to_string(),
                                parameters: None,
                            },
                        );
                    }
                }
                let n = inputs.len();
                if !(2..=4).contains(&n) {
                    bail!(
                        Unsupported,
                        "{file}: {merge_method} over {n} model{}; lerpscope takes two to four",
                        if n == 1 { "" } else { "s" }
                    );
                }
                let weights = inputs
                    .iter()
                    .map(|i| {
                        only_parameters(file, &[i.parameters], &["weight"])?;
                        let w = setting(file, &shared, &[i.parameters], "weight")?.ok_or_else(
                            || err!(Format, "{file}: linear needs a weight for {}", i.model),
                        )?;
                        LayerAlphas::new(w, &format!("{} for {}", what("weight"), i.model))
                    })
                    .collect::<Result<Vec<_>>>()?;
                // Each model after A at its share of all the weights.
                let share = |i: usize| {
                    weights[i]
                        .clone()
                        .shared_among(others_of(&weights, i))
                        .required()
                };
                let extra = |i: usize| {
                    inputs
                        .get(i)
                        .map(|x| (x.model.clone(), share(i).for_layers(layer_range)))
                };
                let cd = [extra(2), extra(3)];
                let mut models = inputs.into_iter().map(|i| i.model);
                let (a, b) = (models.next().expect("two"), models.next().expect("two"));
                (a, b, Method::Linear, share(1), cd)
            }
            other => bail!(
                Unsupported,
                "{file}: merge_method {other:?} is not supported; lerpscope previews {METHODS}"
            ),
        };
        Ok(MergeRecipe {
            file: file.to_string(),
            merge_method,
            a,
            b,
            method,
            layers: layers.for_layers(layer_range),
            c,
            d,
            dtype,
        })
    }

    fn str(&self, k: &str) -> Result<Option<String>> {
        match self.top.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => bail!(Format, "{}: {k} must be a string", self.file),
        }
    }

    fn mapping(&self, k: &str) -> Result<Option<&Mapping>> {
        match self.top.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(_) => bail!(Format, "{}: {k} must be a mapping", self.file),
        }
    }

    /// The input models, from `models:` or the one slice of `slices:` (with its layer range
    /// and its own parameters).
    #[allow(clippy::type_complexity)]
    fn inputs(&self) -> Result<(Vec<Input<'_>>, Option<(usize, usize)>, Option<&Mapping>)> {
        let file = self.file;
        match (self.top.get("models"), self.top.get("slices")) {
            (Some(Value::Sequence(models)), None) => {
                let inputs = models
                    .iter()
                    .enumerate()
                    .map(|(i, m)| input(file, &format!("models[{i}]"), m, &["model", "parameters"]))
                    .collect::<Result<Vec<_>>>()?;
                Ok((inputs, None, None))
            }
            (None, Some(Value::Sequence(slices))) => {
                let [slice] = slices.as_slice() else {
                    bail!(
                        Unsupported,
                        "{file}: {} slices; one slice over every layer is supported",
                        slices.len()
                    );
                };
                let slice = slice
                    .as_mapping()
                    .ok_or_else(|| err!(Format, "{file}: slices[0] must be a mapping"))?;
                for (k, _) in slice {
                    let k = key(k);
                    if !matches!(k.as_str(), "sources" | "parameters") {
                        bail!(
                            Unsupported,
                            "{file}: slices[0].{k} is not supported (read: sources, parameters)"
                        );
                    }
                }
                let Some(Value::Sequence(sources)) = slice.get("sources") else {
                    bail!(Format, "{file}: slices[0].sources must be a list");
                };
                let mut range = None;
                let mut inputs = Vec::new();
                for (i, s) in sources.iter().enumerate() {
                    let at = format!("slices[0].sources[{i}]");
                    let r = s
                        .get("layer_range")
                        .and_then(Value::as_sequence)
                        .and_then(|r| match r.as_slice() {
                            [a, b] => Some((a.as_u64()? as usize, b.as_u64()? as usize)),
                            _ => None,
                        })
                        .ok_or_else(|| {
                            err!(Format, "{file}: {at}.layer_range must be [start, end]")
                        })?;
                    if range.is_some_and(|x| x != r) {
                        bail!(
                            Unsupported,
                            "{file}: {at}.layer_range differs from the first source's; every source must cover the same layers"
                        );
                    }
                    range = Some(r);
                    inputs.push(input(
                        file,
                        &at,
                        s,
                        &["model", "layer_range", "parameters"],
                    )?);
                }
                let params = match slice.get("parameters") {
                    None => None,
                    Some(Value::Mapping(m)) => Some(m),
                    Some(_) => bail!(Format, "{file}: slices[0].parameters must be a mapping"),
                };
                Ok((inputs, range, params))
            }
            (Some(_), Some(_)) => bail!(Format, "{file}: both models and slices; give one"),
            (None, None) => bail!(Format, "{file}: no models (or slices) to merge"),
            _ => bail!(Format, "{file}: models and slices must be lists"),
        }
    }
}

fn key(k: &Value) -> String {
    k.as_str().map_or_else(|| format!("{k:?}"), str::to_string)
}

fn input<'a>(file: &str, at: &str, v: &'a Value, allowed: &[&str]) -> Result<Input<'a>> {
    let m = v
        .as_mapping()
        .ok_or_else(|| err!(Format, "{file}: {at} must be a mapping with a model"))?;
    for (k, _) in m {
        let k = key(k);
        if !allowed.contains(&k.as_str()) {
            bail!(Unsupported, "{file}: {at}.{k} is not supported");
        }
    }
    let model = match m.get("model") {
        Some(Value::String(s)) => s.clone(),
        _ => bail!(Format, "{file}: {at}.model must be a path or Hub id"),
    };
    no_lora_form(file, &format!("{at}.model"), &model)?;
    let parameters = match m.get("parameters") {
        None | Some(Value::Null) => None,
        Some(Value::Mapping(p)) => Some(p),
        Some(_) => bail!(Format, "{file}: {at}.parameters must be a mapping"),
    };
    Ok(Input { model, parameters })
}

/// mergekit's `base+lora` form merges an adapter into its base first; it is refused with what
/// to write instead. No Hub id holds a '+', so one in a path that does not exist is that form.
fn no_lora_form(file: &str, key: &str, model: &str) -> Result<()> {
    if let Some((base, lora)) = model.split_once('+') {
        if !std::path::Path::new(model).exists() {
            bail!(
                Unsupported,
                "{file}: {key} {model}: mergekit's base+LoRA form is not read here; name the adapter {lora} as the model and its base {base} with --base (or in the adapter's own config), with every other model an adapter too, or `base` for the base itself"
            );
        }
    }
    Ok(())
}

/// Every weight but the `i`th, in order (the partners of its share).
fn others_of(weights: &[LayerAlphas], i: usize) -> Vec<LayerAlphas> {
    let mut v = weights.to_vec();
    v.remove(i);
    v
}

/// `base_model` as A and the other inputs in order (the base may be listed among the inputs or
/// not); at most `most` of them.
fn base_and_others<'a>(
    file: &str,
    method: &str,
    base: Option<&str>,
    inputs: &[Input<'a>],
    most: usize,
) -> Result<(Input<'a>, Vec<Input<'a>>)> {
    let base = base.ok_or_else(|| err!(Format, "{file}: {method} needs base_model"))?;
    let listed = inputs.iter().find(|i| i.model == base);
    let others: Vec<Input> = inputs
        .iter()
        .filter(|i| i.model != base)
        .map(|i| Input {
            model: i.model.clone(),
            parameters: i.parameters,
        })
        .collect();
    if others.is_empty() || others.len() > most {
        bail!(
            Unsupported,
            "{file}: {method} with {} models besides base_model; lerpscope takes {}",
            others.len(),
            if most == 1 {
                "one".to_string()
            } else {
                format!("one to {most}")
            }
        );
    }
    let a = Input {
        model: base.to_string(),
        parameters: listed.and_then(|i| i.parameters),
    };
    Ok((a, others))
}

/// Refuse parameters the method does not read (mergekit would reject or ignore them; either
/// way the preview would not be the merge the file describes).
fn only_parameters(file: &str, scopes: &[Option<&Mapping>], allowed: &[&str]) -> Result<()> {
    for m in scopes.iter().flatten() {
        for (k, _) in *m {
            let k = key(k);
            if !allowed.contains(&k.as_str()) {
                bail!(
                    Unsupported,
                    "{file}: parameter {k:?} is not read here (this method takes {})",
                    allowed.join(", ")
                );
            }
        }
    }
    Ok(())
}

/// A parameter's rules over every scope that sets it, the most specific first: the model's
/// own, then the shared ones in order. mergekit reads a tensor's value from the first scope
/// whose rules give one and moves on to the next where none matches, which is first match over
/// the scopes' rules one after another; a scope with a rule for every tensor ends the search.
fn setting(
    file: &str,
    shared: &[Option<&Mapping>],
    own: &[Option<&Mapping>],
    name: &str,
) -> Result<Option<Vec<Rule>>> {
    let mut all: Vec<Rule> = Vec::new();
    for v in own
        .iter()
        .chain(shared)
        .flatten()
        .filter_map(|m| m.get(name))
    {
        let scope = rules(v).map_err(|why| {
            err!(
                Format,
                "{file}: parameters.{name}: {why} (a number, a list of numbers, or a list of {{filter, value}})"
            )
        })?;
        let total = scope.iter().any(|r| r.filter.is_none());
        all.extend(scope);
        if total {
            break;
        }
    }
    Ok((!all.is_empty()).then_some(all))
}

fn rules(v: &Value) -> std::result::Result<Vec<Rule>, String> {
    let numbers = |v: &Value| -> std::result::Result<Vec<f64>, String> {
        match v {
            Value::Number(_) => Ok(vec![number(v)?]),
            Value::Sequence(s) => s.iter().map(number).collect(),
            other => Err(format!("expected numbers, got {other:?}")),
        }
    };
    match v {
        Value::Sequence(s) if s.iter().any(Value::is_mapping) => s
            .iter()
            .map(|c| {
                let m = c.as_mapping().ok_or("mixed numbers and rules")?;
                for (k, _) in m {
                    if !matches!(key(k).as_str(), "filter" | "value") {
                        return Err(format!("unknown key {:?} in a rule", key(k)));
                    }
                }
                let filter = match m.get("filter") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(f)) if f == "*" => None,
                    Some(Value::String(f)) => Some(f.clone()),
                    Some(_) => return Err("a filter must be a string".into()),
                };
                let value = m.get("value").ok_or("a rule without a value")?;
                Ok(Rule {
                    filter,
                    values: numbers(value)?,
                })
            })
            .collect(),
        _ => Ok(vec![Rule {
            filter: None,
            values: numbers(v)?,
        }]),
    }
}

fn number(v: &Value) -> std::result::Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n:?} is not a number")),
        // mergekit accepts numbers written as strings (YAML reads "1e-2" as a string).
        Value::String(s) => s.parse().map_err(|_| format!("{s:?} is not a number")),
        other => Err(format!("{other:?} is not a number")),
    }
}

/// A scalar shared parameter.
fn scalar(file: &str, shared: &[Option<&Mapping>], name: &str) -> Result<Option<f64>> {
    match shared.iter().flatten().find_map(|m| m.get(name)) {
        None => Ok(None),
        Some(Value::Sequence(_)) => bail!(
            Unsupported,
            "{file}: parameters.{name}: one number here (a gradient or filtered rules for {name} are not supported)"
        ),
        Some(v) => number(v)
            .map(Some)
            .map_err(|why| err!(Format, "{file}: parameters.{name}: {why}")),
    }
}

fn flag(file: &str, shared: &[Option<&Mapping>], name: &str) -> Result<Option<bool>> {
    match shared.iter().flatten().find_map(|m| m.get(name)) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => bail!(Format, "{file}: parameters.{name} must be true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_classic_slerp_config_reads() {
        let r = MergeRecipe::parse(
            r#"
slices:
  - sources:
      - model: a
        layer_range: [0, 4]
      - model: b
        layer_range: [0, 4]
merge_method: slerp
base_model: a
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 0.3, 0.7, 1]
    - filter: mlp
      value: [1, 0.5, 0.7, 0.3, 0]
    - value: 0.5
dtype: bfloat16
"#,
            "m.yaml",
        )
        .unwrap();
        assert_eq!((r.a.as_str(), r.b.as_str()), ("a", "b"));
        assert_eq!(r.method, Method::Slerp);
        assert_eq!(r.dtype, Some(DType::BF16));
        assert_eq!(
            r.layers.spec(),
            "self_attn=0,0.5,0.3,0.7,1;mlp=1,0.5,0.7,0.3,0;0.5"
        );
        let layout = |n: usize| {
            crate::weights::flat::FlatLayout::new(
                (0..n).flat_map(|i| {
                    ["mlp.up_proj", "self_attn.q_proj"]
                        .map(|m| (format!("model.layers.{i}.{m}.weight"), vec![2]))
                }),
                DType::F32,
            )
        };
        // Layer 0: mlp at the gradient's start (1), self_attn at its start (0).
        assert_eq!(r.layers.factors(&layout(4), 4).unwrap()[..2], [1.0, 0.0]);
        let e = r.layers.factors(&layout(6), 6).unwrap_err().to_string();
        assert!(e.contains("layer_range [0, 4]"), "{e}");
    }

    #[test]
    fn linear_shares_and_task_arithmetic_scales() {
        let lin = MergeRecipe::parse(
            "models:\n  - model: x\n    parameters: {weight: 3}\n  - model: y\n    parameters: {weight: 1}\nmerge_method: linear\n",
            "l.yaml",
        )
        .unwrap();
        assert_eq!((lin.a.as_str(), lin.b.as_str()), ("x", "y"));
        assert_eq!(
            lin.layers.value("model.layers.0.mlp.up_proj.weight", 0.0),
            Some(0.25)
        );
        let ta = MergeRecipe::parse(
            "models:\n  - model: y\n    parameters:\n      weight: [0, 1]\nbase_model: x\nmerge_method: task_arithmetic\nparameters: {lambda: 0.5}\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!((ta.a.as_str(), ta.b.as_str()), ("x", "y"));
        assert_eq!(
            ta.layers.value("model.layers.3.mlp.up_proj.weight", 1.0),
            Some(0.5)
        );
    }

    /// lambda scales every weight: NaN, an infinity or an absurd size is refused by its own
    /// name (a NaN used to reach the factors and be blamed on parameters.weight).
    #[test]
    fn an_absurd_lambda_is_refused_by_name() {
        for lambda in [".nan", ".inf", "-.inf", "1e9", "1e308"] {
            let yaml = format!(
                "models:\n  - model: y\n    parameters: {{weight: 1}}\nbase_model: x\nmerge_method: task_arithmetic\nparameters: {{lambda: {lambda}}}\n"
            );
            let e = MergeRecipe::parse(&yaml, "t.yaml").unwrap_err().to_string();
            assert!(
                e.contains("t.yaml: parameters.lambda")
                    && e.contains("is not a finite number")
                    && e.len() < 200,
                "{lambda}: {e}"
            );
        }
    }

    /// Four models: linear's C and D take their shares of all four weights, task_arithmetic's
    /// (normalised) theirs of the three beside the base.
    #[test]
    fn four_models_give_c_and_d() {
        let at = |l: &LayerAlphas| l.value("model.layers.0.mlp.up_proj.weight", 0.0);
        let lin = MergeRecipe::parse(
            "models:\n  - {model: w, parameters: {weight: 1}}\n  - {model: x, parameters: {weight: 2}}\n  - {model: y, parameters: {weight: 3}}\n  - {model: z, parameters: {weight: 4}}\nmerge_method: linear\n",
            "l.yaml",
        )
        .unwrap();
        let (c, d) = (lin.c.as_ref().unwrap(), lin.d.as_ref().unwrap());
        assert_eq!(
            (lin.a.as_str(), lin.b.as_str(), c.0.as_str(), d.0.as_str()),
            ("w", "x", "y", "z")
        );
        assert_eq!(
            [at(&lin.layers), at(&c.1), at(&d.1)],
            [Some(0.2), Some(0.3), Some(0.4)]
        );
        let ta = MergeRecipe::parse(
            "models:\n  - {model: x, parameters: {weight: 1}}\n  - {model: y, parameters: {weight: 1}}\n  - {model: z, parameters: {weight: 2}}\nbase_model: w\nmerge_method: task_arithmetic\nparameters: {normalize: true}\n",
            "t.yaml",
        )
        .unwrap();
        let d = ta.d.as_ref().unwrap();
        assert_eq!((ta.a.as_str(), d.0.as_str()), ("w", "z"));
        assert_eq!([at(&ta.layers), at(&d.1)], [Some(0.25), Some(0.5)]);
    }

    /// Where a model's own rules give no value for a tensor, the slice's and then the
    /// config's are read (mergekit's ConfigReader), whichever method reads the parameter.
    #[test]
    fn a_scope_without_a_matching_rule_falls_back_to_the_next() {
        let at = |l: &LayerAlphas, n: &str| l.value(n, 0.0);
        let (attn, mlp) = (
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
        );
        let ta = MergeRecipe::parse(
            "models:\n  - model: y\n    parameters:\n      weight: [{filter: self_attn, value: 0.2}]\nbase_model: x\nmerge_method: task_arithmetic\nparameters: {weight: 0.5}\n",
            "t.yaml",
        )
        .unwrap();
        assert_eq!(
            [at(&ta.layers, attn), at(&ta.layers, mlp)],
            [Some(0.2), Some(0.5)]
        );
        let slerp = MergeRecipe::parse(
            "slices:\n  - sources:\n      - {model: a, layer_range: [0, 2]}\n      - {model: b, layer_range: [0, 2]}\n    parameters:\n      t: [{filter: mlp, value: 0.9}]\nmerge_method: slerp\nbase_model: a\nparameters: {t: 0.4}\n",
            "s.yaml",
        )
        .unwrap();
        assert_eq!(
            [at(&slerp.layers, attn), at(&slerp.layers, mlp)],
            [Some(0.4), Some(0.9)]
        );
        // A scope with a rule for every tensor ends the search: the config's is never read.
        let own = MergeRecipe::parse(
            "models:\n  - {model: x, parameters: {weight: [{filter: mlp, value: 1}, {value: 3}]}}\n  - {model: y, parameters: {weight: 1}}\nmerge_method: linear\nparameters: {weight: 7}\n",
            "l.yaml",
        )
        .unwrap();
        assert_eq!(at(&own.layers, attn), Some(0.25));
    }

    /// task_arithmetic's normalize divides by the weights' sum, and by 1 where that sum is
    /// within 1e-8 of zero (mergekit's guard); linear has no guard, and is refused there.
    #[test]
    fn weights_that_sum_to_zero_normalise_as_mergekit_does() {
        let n = "model.layers.0.mlp.up_proj.weight";
        // One model: its weight over itself, 1, but 0 where the weight is 0.
        let one = MergeRecipe::parse(
            "models:\n  - {model: y, parameters: {weight: [{filter: mlp, value: 0}, {value: 0.4}]}}\nbase_model: x\nmerge_method: task_arithmetic\nparameters: {normalize: true}\n",
            "t.yaml",
        )
        .unwrap();
        let attn = "model.layers.0.self_attn.q_proj.weight";
        assert_eq!(
            [one.layers.value(n, 0.0), one.layers.value(attn, 0.0)],
            [Some(0.0), Some(1.0)]
        );
        let ta = MergeRecipe::parse(
            "models:\n  - {model: y, parameters: {weight: 0.5}}\n  - {model: z, parameters: {weight: -0.5}}\nbase_model: x\nmerge_method: task_arithmetic\nparameters: {normalize: true}\n",
            "t.yaml",
        )
        .unwrap();
        let c = ta.c.as_ref().unwrap();
        assert_eq!(
            [ta.layers.value(n, 0.0), c.1.value(n, 0.0)],
            [Some(0.5), Some(-0.5)]
        );
        let lin = MergeRecipe::parse(
            "models:\n  - {model: y, parameters: {weight: 0.5}}\n  - {model: z, parameters: {weight: -0.5}}\nmerge_method: linear\n",
            "l.yaml",
        )
        .unwrap();
        assert!(!lin.layers.value(n, 0.0).unwrap().is_finite());
    }

    #[test]
    fn bad_configs_name_the_file_and_key() {
        for (yaml, says) in [
            ("merge_method: ties\nmodels: [{model: a}, {model: b}]\nbase_model: a\n", "merge_method \"ties\""),
            ("merge_method: slerp\nmodels: [{model: a}, {model: b}]\n", "needs base_model"),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\n", "needs parameters.t"),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}, {model: c}]\nparameters: {t: 0.5}\n", "2 models besides"),
            ("merge_method: task_arithmetic\nbase_model: a\nmodels: [{model: b}, {model: c}, {model: d}, {model: e}]\nparameters: {weight: 0.5}\n", "4 models besides"),
            ("merge_method: linear\nmodels: [{model: a}, {model: b}, {model: c}, {model: d}, {model: e}]\nparameters: {weight: 1}\n", "over 5 models"),
            ("merge_method: linear\nmodels: [{model: a}]\nparameters: {weight: 1}\n", "over 1 model;"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: b, parameters: {weight: 1}}]\nparameters: {normalize: false}\n", "normalize: false"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: b}]\n", "needs a weight for b"),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: [{filter: mlp, value: x}]}\n", "parameters.t"),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5, density: 0.3}\n", "\"density\""),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: .nan}\n", "finite"),
            ("merge_method: linear\nmodules: {}\n", "\"modules\""),
            ("merge_method: linear\ndtype: int8\nmodels: []\n", "dtype \"int8\""),
            ("- not a mapping\n", "mapping"),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5}\ndtype: float32\nout_dtype: bfloat16\n", "out_dtype \"bfloat16\""),
            ("merge_method: slerp\nbase_model: a\nmodels: [{model: a}, {model: b}]\nparameters: {t: 0.5}\ntokenizer_source: {kind: union}\n", "tokenizer_source"),
            ("merge_method: linear\nmodels: [{model: a, parameters: {weight: 1}}, {model: a, parameters: {weight: 3}}, {model: b, parameters: {weight: 1}}]\n", "a is listed twice (entries 1 and 2)"),
            ("merge_method: task_arithmetic\nbase_model: a\nmodels: [{model: b, parameters: {weight: 1}}]\nparameters: {lambda: [0.5, 1]}\n", "parameters.lambda: one number here"),
        ] {
            let e = MergeRecipe::parse(yaml, "r.yaml").unwrap_err().to_string();
            assert!(e.starts_with("r.yaml") && e.contains(says), "{yaml}\n→ {e}");
        }
        // One model and a base_model the list leaves out: mergekit merges the two.
        let r = MergeRecipe::parse(
            "merge_method: linear\nbase_model: a\nmodels: [{model: b}]\nparameters: {weight: 1}\n",
            "r.yaml",
        )
        .unwrap();
        assert_eq!((r.a.as_str(), r.b.as_str()), ("a", "b"));
    }
}
