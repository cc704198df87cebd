//! α per layer: each tensor moves by α times a factor of its own, read from gradients over the
//! layers with filters on tensor names, in mergekit's convention (so a mergekit recipe's `t` or
//! `weight` means here what it means there):
//! - a gradient is a list of anchor values spread evenly over the layers; layer i of n sits at
//!   t = i/(n − 1) (t = 1 when n = 1) and takes the linear interpolation between its two
//!   nearest anchors;
//! - tensors outside the layers (embeddings, the final norm, the head) sit at t = 0, as
//!   mergekit 0.1.5 plans them;
//! - a rule's filter is a substring of the tensor name, the first matching rule wins, and a rule
//!   without a filter matches every tensor. A tensor no rule matches moves with α (factor 1).

use crate::error::{bail, Result};
use crate::weights::flat::FlatLayout;
use crate::MAX_ABS_ALPHA;

/// One rule: the tensors whose names contain `filter` (every tensor, without one) take the
/// gradient `values`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub filter: Option<String>,
    pub values: Vec<f64>,
}

/// Per-tensor factors on α, as rules over tensor names and layers.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerAlphas {
    rules: Vec<Rule>,
    /// Every factor times this (task_arithmetic's λ).
    scale: f64,
    /// With partners' rules, the factor is this one's share of them all, v/(Σ partners + v)
    /// (normalised weights: linear's, task_arithmetic's with `normalize`).
    share: Vec<LayerAlphas>,
    /// Whether a sum of weights within 1e-8 of zero divides by 1 instead (task_arithmetic's
    /// normalize does; linear divides by it).
    zero_sum_is_one: bool,
    /// Whether a tensor no rule matches is an error (mergekit's required parameters) rather
    /// than factor 1.
    required: bool,
    /// The layers the rules were written for, [start, end) (a mergekit slice's
    /// `layer_range`); they must be the model's.
    layer_range: Option<(usize, usize)>,
    /// Where the rules came from (a flag, a file's key), for errors.
    what: String,
}

impl LayerAlphas {
    /// Rules in order of precedence; each needs at least one value, every value finite and
    /// within α's bounds, and no rule may follow one without a filter (it could never match).
    /// `what` names the flag or file key in errors.
    pub fn new(rules: Vec<Rule>, what: &str) -> Result<Self> {
        if rules.is_empty() {
            bail!(Invalid, "{what}: no rules");
        }
        for (i, r) in rules.iter().enumerate() {
            let name = r.filter.as_deref().unwrap_or("(every tensor)");
            if r.values.is_empty() {
                bail!(Invalid, "{what}: rule {name:?} has no values");
            }
            if let Some(v) = r
                .values
                .iter()
                .find(|v| !v.is_finite() || v.abs() > MAX_ABS_ALPHA)
            {
                bail!(
                    Invalid,
                    "{what}: rule {name:?} has the value {}; values must be finite, at most {MAX_ABS_ALPHA} in size",
                    crate::alpha::shown(*v)
                );
            }
            if matches!(r.filter.as_deref(), Some("")) {
                bail!(Invalid, "{what}: rule {} has an empty filter", i + 1);
            }
            if r.filter.is_none() && i + 1 < rules.len() {
                bail!(
                    Invalid,
                    "{what}: the rule without a filter matches every tensor, so the {} after it would never apply; put it last",
                    rules.len() - i - 1
                );
            }
        }
        Ok(Self {
            rules,
            scale: 1.0,
            share: Vec::new(),
            zero_sum_is_one: false,
            required: false,
            layer_range: None,
            what: what.to_string(),
        })
    }

    /// The flag's syntax: rules separated by `;`, each `FILTER=V0,V1,…` or a bare `V0,V1,…` for
    /// every tensor (last). `self_attn=0,0.5,1;mlp=1,0.5,0;0.5` is mergekit's classic slerp
    /// gradient.
    pub fn parse(spec: &str) -> Result<Self> {
        const WHAT: &str = "--layer-alphas";
        let rules = spec
            .split(';')
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(|r| {
                let (filter, values) = match r.split_once('=') {
                    Some((f, v)) => (Some(f.trim().to_string()), v),
                    None => (None, r),
                };
                let values = values
                    .split(',')
                    .map(|v| {
                        v.trim().parse::<f64>().map_err(|_| {
                            crate::error::err!(
                                Invalid,
                                "{WHAT}: {:?} in rule {r:?} is not a number (rules are FILTER=V0,V1,… separated by ';')",
                                v.trim()
                            )
                        })
                    })
                    .collect::<Result<Vec<f64>>>()?;
                Ok(Rule { filter, values })
            })
            .collect::<Result<Vec<Rule>>>()?;
        // Filters match by substring (`*` every name), first match winning: a rule whose
        // filter holds an earlier one's, or that follows a `*`, matches nothing that one has
        // not taken.
        for (i, r) in rules.iter().enumerate() {
            let f = r.filter.as_deref();
            if let Some(e) = rules[..i]
                .iter()
                .filter_map(|e| e.filter.as_deref())
                .find(|&e| e == "*" || f.is_some_and(|f| !e.is_empty() && f.contains(e)))
            {
                let rule = f.map_or("without a filter".into(), |f| format!("{f:?}"));
                bail!(
                    Invalid,
                    "{WHAT}: rule {rule} would never apply: every tensor it matches matches {e:?} first"
                );
            }
        }
        Self::new(rules, WHAT)
    }

    /// Every factor times `scale`.
    pub fn scaled(self, scale: f64) -> Self {
        Self { scale, ..self }
    }

    /// The factor as this one's share of it and its `partners`': v/(Σ partners + v).
    pub fn shared_among(self, partners: Vec<LayerAlphas>) -> Self {
        Self {
            share: partners,
            ..self
        }
    }

    /// A share whose sum of weights divides by 1 where it is within 1e-8 of zero, as mergekit's
    /// task arithmetic normalises.
    pub fn zero_sum_as_one(self) -> Self {
        Self {
            zero_sum_is_one: true,
            ..self
        }
    }

    /// A tensor no rule matches is an error.
    pub fn required(self) -> Self {
        Self {
            required: true,
            ..self
        }
    }

    /// The rules hold for the layers [start, end), which must be every layer of the model.
    pub fn for_layers(self, range: Option<(usize, usize)>) -> Self {
        Self {
            layer_range: range,
            ..self
        }
    }

    /// The scale on every factor.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Whether the factor is a share of several weights (not a gradient of its own).
    pub fn is_share(&self) -> bool {
        !self.share.is_empty()
    }

    /// Where the rules came from.
    pub fn source(&self) -> &str {
        &self.what
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rules in the flag's syntax (for headers and an export's metadata); a share and a
    /// scale are written around them.
    pub fn spec(&self) -> String {
        let own = self.rules_spec();
        let shared = match self.share.is_empty() {
            true => own,
            false => {
                let partners: Vec<String> = self.share.iter().map(|p| p.rules_spec()).collect();
                format!("share {own} of {} + {own}", partners.join(" + "))
            }
        };
        if self.scale == 1.0 {
            shared
        } else {
            format!("{} × ({shared})", self.scale)
        }
    }

    fn rules_spec(&self) -> String {
        self.rules
            .iter()
            .map(|r| {
                let values: Vec<String> = r.values.iter().map(|v| v.to_string()).collect();
                match &r.filter {
                    Some(f) => format!("{f}={}", values.join(",")),
                    None => values.join(","),
                }
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The factor of the tensor `name` at position `t`; None where no rule matches.
    pub fn value(&self, name: &str, t: f64) -> Option<f64> {
        let v = self.own(name, t)?;
        let v = match self.share.split_first() {
            Some((first, rest)) => {
                let mut sum = first.own(name, t)?;
                for p in rest {
                    sum += p.own(name, t)?;
                }
                let total = sum + v;
                if self.zero_sum_is_one && total.abs() < 1e-8 {
                    v
                } else {
                    v / total
                }
            }
            None => v,
        };
        Some(self.scale * v)
    }

    fn own(&self, name: &str, t: f64) -> Option<f64> {
        let rule = self.rules.iter().find(|r| match &r.filter {
            None => true,
            Some(f) => f == "*" || name.contains(f.as_str()),
        })?;
        Some(gradient(&rule.values, t))
    }

    /// Every slot's factor on a model of `layers` layers. A filter that matches no tensor is
    /// refused (a typo would otherwise do nothing).
    pub fn factors(&self, layout: &FlatLayout, layers: usize) -> Result<Vec<f64>> {
        let what = &self.what;
        if let Some((start, end)) = self.layer_range.filter(|&r| r != (0, layers)) {
            bail!(
                Unsupported,
                "{what}: layer_range [{start}, {end}] must cover the model's {layers} layers exactly ([0, {layers}]); slices that cut or stack layers are not supported"
            );
        }
        let partner = self.share.iter().flat_map(|p| p.rules.iter());
        for r in self.rules.iter().chain(partner) {
            if let Some(f) = r.filter.as_deref().filter(|f| *f != "*") {
                if !layout.slots.iter().any(|s| s.name.contains(f)) {
                    bail!(
                        Invalid,
                        "{what}: the filter {f:?} matches no tensor of the model (tensors are named like {:?})",
                        layout.slots.iter().map(|s| s.name.as_str()).find(|n| layer_of(n).is_some()).unwrap_or("")
                    );
                }
            }
        }
        layout
            .slots
            .iter()
            .map(|s| match self.value(&s.name, position(&s.name, layers)) {
                Some(v) if v.is_finite() => Ok(v),
                Some(v) => bail!(
                    Invalid,
                    "{what}: tensor {} gets the factor {v} (weights that sum to zero?)",
                    s.name
                ),
                None if self.required => bail!(
                    Invalid,
                    "{what}: no rule gives a value for tensor {} (add a rule without a filter)",
                    s.name
                ),
                None => Ok(1.0),
            })
            .collect()
    }
}

/// One row of the layer strip: a module kind ("self_attn", "mlp") and its factor on α at each
/// layer.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LayerStrip {
    pub kind: String,
    pub factors: Vec<f64>,
}

/// The strip of `layers` over tensors `names` on a model of `n_layers` layers: a row per
/// module kind inside the layers (norms left out: they are not what a gradient aims at), in
/// order of first appearance, each layer's factor taken from its first tensor of that kind
/// (1 where it has none).
pub fn strips(layers: &LayerAlphas, names: &[&str], n_layers: usize) -> Vec<LayerStrip> {
    let mut rows: Vec<(String, Vec<Option<f64>>)> = Vec::new();
    for name in names {
        let (Some(i), Some(kind)) = (layer_of(name), kind_of(name)) else {
            continue;
        };
        if i >= n_layers {
            continue;
        }
        let row = match rows.iter().position(|(k, _)| k == kind) {
            Some(r) => r,
            None => {
                rows.push((kind.to_string(), vec![None; n_layers]));
                rows.len() - 1
            }
        };
        let slot = &mut rows[row].1[i];
        if slot.is_none() {
            *slot = Some(layers.value(name, position(name, n_layers)).unwrap_or(1.0));
        }
    }
    rows.into_iter()
        .map(|(kind, f)| LayerStrip {
            kind,
            factors: f.into_iter().map(|v| v.unwrap_or(1.0)).collect(),
        })
        .collect()
}

/// The largest factor in size that `layers` gives any of the tensors `names` (1 where no rule
/// matches): α times it is how far the most moved tensor goes.
pub fn largest_factor(layers: &LayerAlphas, names: &[&str], n_layers: usize) -> f64 {
    names
        .iter()
        .map(|name| {
            layers
                .value(name, position(name, n_layers))
                .unwrap_or(1.0)
                .abs()
        })
        .fold(1.0, f64::max)
}

/// The module a layer's tensor belongs to: the part of its name after the layer index
/// (`model.layers.3.self_attn.q_proj.weight` → `self_attn`), None for norms.
fn kind_of(name: &str) -> Option<&str> {
    let parts: Vec<&str> = name.split('.').collect();
    let at = parts
        .windows(2)
        .position(|w| matches!(w[0], "layers" | "h") && w[1].parse::<usize>().is_ok())?;
    let kind = *parts.get(at + 2)?;
    let norm = kind.contains("norm") || kind.starts_with("ln_");
    (!norm && parts.len() > at + 3).then_some(kind)
}

/// mergekit's numeric gradient at t ∈ [0, 1]: anchors spread evenly, linear in between.
pub fn gradient(values: &[f64], t: f64) -> f64 {
    let scaled = t * (values.len() - 1) as f64;
    let i0 = scaled as usize;
    let i1 = (i0 + 1).min(values.len() - 1);
    let frac = scaled - i0 as f64;
    (1.0 - frac) * values[i0] + frac * values[i1]
}

/// The layer a tensor belongs to, from its Hugging Face name (`model.layers.7.…`,
/// `transformer.h.7.…`).
pub fn layer_of(name: &str) -> Option<usize> {
    let parts: Vec<&str> = name.split('.').collect();
    parts
        .windows(2)
        .find(|w| matches!(w[0], "layers" | "h") && w[1].parse::<usize>().is_ok())
        .and_then(|w| w[1].parse().ok())
}

/// Where a tensor sits on the gradient: its layer's i/(n − 1), or 0 outside the layers.
pub fn position(name: &str, layers: usize) -> f64 {
    match layer_of(name) {
        Some(_) if layers <= 1 => 1.0,
        Some(i) => i as f64 / (layers - 1) as f64,
        None => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gradients_interpolate_as_mergekit_does() {
        let v = [0.0, 0.5, 0.3, 0.7, 1.0];
        assert_eq!(gradient(&v, 0.0), 0.0);
        assert_eq!(gradient(&v, 1.0), 1.0);
        assert!((gradient(&v, 0.25) - 0.5).abs() < 1e-15);
        assert!((gradient(&v, 0.375) - 0.4).abs() < 1e-12);
        assert_eq!(gradient(&[0.4], 0.6), 0.4);
    }

    #[test]
    fn the_strip_has_a_row_per_module_kind() {
        let l = LayerAlphas::parse("mlp=0,1;q_proj=2;0.5").unwrap();
        let names = [
            "model.embed_tokens.weight",
            "model.layers.0.input_layernorm.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.weight",
            "model.layers.0.mlp.up_proj.weight",
            "model.layers.1.self_attn.k_proj.weight",
            "model.layers.1.mlp.up_proj.weight",
            "model.layers.2.mlp.down_proj.weight",
            "transformer.h.1.ln_1.weight",
        ];
        let rows = strips(&l, &names, 3);
        let want = [
            ("self_attn", vec![2.0, 0.5, 1.0]),
            ("mlp", vec![0.0, 0.5, 1.0]),
        ];
        assert_eq!(rows.len(), 2, "{rows:?}");
        for (row, (kind, f)) in rows.iter().zip(want) {
            assert_eq!((row.kind.as_str(), &row.factors), (kind, &f));
        }
        assert_eq!(kind_of("transformer.h.4.attn.c_attn.weight"), Some("attn"));
        assert_eq!(kind_of("transformer.h.4.ln_2.weight"), None);
        assert_eq!(kind_of("lm_head.weight"), None);
    }

    #[test]
    fn positions_follow_the_layers() {
        assert_eq!(layer_of("model.layers.12.mlp.up_proj.weight"), Some(12));
        assert_eq!(layer_of("transformer.h.3.attn.c_attn.bias"), Some(3));
        assert_eq!(layer_of("model.embed_tokens.weight"), None);
        assert_eq!(position("model.layers.3.mlp.up_proj.weight", 4), 1.0);
        assert_eq!(position("model.layers.1.mlp.up_proj.weight", 5), 0.25);
        assert_eq!(position("lm_head.weight", 5), 0.0);
        assert_eq!(position("model.layers.0.mlp.up_proj.weight", 1), 1.0);
    }

    #[test]
    fn the_first_matching_rule_wins() {
        let l = LayerAlphas::parse("self_attn=0,1; mlp=1,0 ; 0.5").unwrap();
        assert_eq!(l.spec(), "self_attn=0,1;mlp=1,0;0.5");
        assert_eq!(
            l.value("model.layers.2.self_attn.q_proj.weight", 0.25),
            Some(0.25)
        );
        assert_eq!(
            l.value("model.layers.2.mlp.up_proj.weight", 0.25),
            Some(0.75)
        );
        assert_eq!(l.value("model.norm.weight", 0.0), Some(0.5));
        let only = LayerAlphas::parse("mlp=0,2").unwrap();
        assert_eq!(only.value("model.norm.weight", 0.0), None);
    }

    #[test]
    fn bad_specs_are_refused_by_name() {
        for (spec, says) in [
            ("mlp=0,x", "\"x\" in rule"),
            ("", "no rules"),
            ("0.5;mlp=1", "put it last"),
            ("mlp=", "\"\" in rule"),
            ("=1,2", "empty filter"),
            ("mlp=1e9", "at most"),
            ("mlp=nan", "finite"),
            ("mlp=1;mlp=0", "\"mlp\" would never apply"),
            ("mlp=1;mlp.up_proj=0", "\"mlp.up_proj\" would never apply"),
            ("*=1;mlp=0", "\"mlp\" would never apply"),
            ("*=1;0.5", "rule without a filter would never apply"),
        ] {
            let e = LayerAlphas::parse(spec).unwrap_err().to_string();
            assert!(
                e.contains("--layer-alphas") && e.contains(says),
                "{spec:?}: {e}"
            );
        }
    }

    #[test]
    fn a_filter_that_matches_nothing_is_refused() {
        let layout = FlatLayout::new(
            [
                ("model.embed_tokens.weight".to_string(), vec![4]),
                ("model.layers.0.mlp.up_proj.weight".to_string(), vec![4]),
                ("model.layers.1.mlp.up_proj.weight".to_string(), vec![4]),
            ],
            candle_core::DType::F32,
        );
        let ok = LayerAlphas::parse("mlp=0,1").unwrap();
        assert_eq!(ok.factors(&layout, 2).unwrap(), vec![1.0, 0.0, 1.0]);
        let typo = LayerAlphas::parse("mpl=0,1").unwrap();
        let e = typo.factors(&layout, 2).unwrap_err().to_string();
        assert!(e.contains("\"mpl\" matches no tensor"), "{e}");
    }
}
