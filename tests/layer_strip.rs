//! α per layer edited live (the layer strip's `l`): the engine moved to new rules equals one
//! loaded with them, bit for bit, on every kind of pair that takes α per layer (two full
//! models, adapters merged and factored, adapters on a base kept quantized), and empty rules
//! are the line again. What cannot take them live is refused in one line, nothing changed.

use lerpscope::engine::{DeviceChoice, Engine, LayerAlphas, LoadOptions, Method};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::path::PathBuf;

const IDS: [u32; 5] = [3, 17, 40, 9, 77];

fn fixture(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(p)
        .display()
        .to_string()
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        chat_template: false,
        ..Default::default()
    }
}

/// Logits at α on the working weights and, for adapters, from the factored rows.
fn at(e: &mut Engine, alpha: f64) -> (Vec<f32>, Option<Vec<f32>>) {
    e.set_alpha(alpha).unwrap();
    let merged = e.logits(&IDS).unwrap();
    let factored = e
        .is_adapter_pair()
        .then(|| e.logits_columns(&IDS, &[alpha, 0.0]).unwrap().remove(0));
    (merged, factored)
}

/// Bit for bit, reporting only the largest gap when not.
fn same(x: (Vec<f32>, Option<Vec<f32>>), y: (Vec<f32>, Option<Vec<f32>>), what: &str) {
    let gap = |p: &[f32], q: &[f32]| {
        p.iter()
            .zip(q)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max)
    };
    assert!(x.0 == y.0, "{what} merged: max |Δ| = {}", gap(&x.0, &y.0));
    assert!(x.1 == y.1, "{what} factored: max |Δ| = {}", {
        let (p, q) = (x.1.unwrap_or_default(), y.1.unwrap_or_default());
        gap(&p, &q)
    });
}

/// Load (a, b) plainly, move it to `spec` live, and hold it to a load with `spec`; then back
/// to no rules, held to the plain load.
fn live_equals_loaded(a: &str, b: &str, opts: LoadOptions, spec: &str, what: &str) {
    let mut live = Engine::load(a, b, &opts).unwrap();
    let mut plain = Engine::load(a, b, &opts).unwrap();
    let with = LoadOptions {
        layers: Some(LayerAlphas::parse(spec).unwrap()),
        ..opts
    };
    let mut loaded = Engine::load(a, b, &with).unwrap();
    assert!(live.layer_strip().is_empty());
    live.set_layer_alphas(spec).unwrap();
    assert_eq!(live.info.layers, loaded.info.layers, "{what}");
    assert_eq!(live.info.description, loaded.info.description, "{what}");
    assert!(!live.info.layer_strip.is_empty(), "{what}");
    assert_eq!(live.info.layer_strip, loaded.info.layer_strip, "{what}");
    for alpha in [0.3, 1.0, 1.4] {
        same(
            at(&mut live, alpha),
            at(&mut loaded, alpha),
            &format!("{what}: α {alpha}"),
        );
    }
    // The rules do something: at α = 1.4 the line differs.
    assert!(at(&mut plain, 1.4).0 != at(&mut loaded, 1.4).0, "{what}");
    live.set_layer_alphas("").unwrap();
    assert_eq!(live.info.layers, None);
    assert_eq!(live.info.description, plain.info.description, "{what}");
    assert!(live.info.layer_strip.is_empty());
    for alpha in [0.3, 1.4] {
        same(
            at(&mut live, alpha),
            at(&mut plain, alpha),
            &format!("{what} off: α {alpha}"),
        );
    }
}

#[test]
fn two_full_models_take_new_rules_live() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    live_equals_loaded(&a, &b, cpu(), "self_attn=0,1;mlp=1,0.25;0.5", "full");
}

#[test]
fn adapters_take_new_rules_live_merged_and_factored() {
    let opts = LoadOptions {
        base: Some(fixture("adapters/base-llama-tied")),
        ..cpu()
    };
    let (a, b) = (
        fixture("adapters/llama-plain-a"),
        fixture("adapters/llama-plain-b"),
    );
    live_equals_loaded(&a, &b, opts, "self_attn=0,1;mlp=1,0.25;0.5", "adapters");
}

#[test]
fn adapters_on_a_base_kept_quantized_take_new_rules_live() {
    let opts = LoadOptions {
        base: Some(fixture("quantized/base-q4_1.gguf")),
        ..cpu()
    };
    let lora = fixture("quantized/lora");
    live_equals_loaded("base", &lora, opts, "self_attn=0,1;mlp=1,0.25", "quantized");
}

fn refused(e: &mut Engine, spec: &str, parts: &[&str]) {
    let before = (e.info.layers.clone(), e.logits(&IDS).unwrap());
    let err = e.set_layer_alphas(spec).unwrap_err().to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    for p in parts {
        assert!(err.contains(p), "{err:?} lacks {p:?}");
    }
    // Where the pair takes no rules at all, the UI reads the same reason before its entry
    // opens.
    if let Some(fixed) = &e.info.layers_fixed {
        assert!(err.ends_with(fixed.as_str()), "{err:?} / {fixed:?}");
    }
    assert_eq!(
        (e.info.layers.clone(), e.logits(&IDS).unwrap()),
        before,
        "nothing changed"
    );
}

#[test]
fn what_cannot_take_rules_live_is_refused_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let mut line = Engine::load(&a, &b, &cpu()).unwrap();
    line.set_alpha(0.7).unwrap();
    refused(&mut line, "mlp=0,x", &["--layer-alphas", "not a number"]);
    refused(
        &mut line,
        "no_such=0,1",
        &["--layer-alphas", "no_such", "matches no tensor"],
    );
    let slerp = LoadOptions {
        method: Method::Slerp,
        ..cpu()
    };
    assert!(line.info.layers_fixed.is_none());
    let mut e = Engine::load(&a, &b, &slerp).unwrap();
    assert!(e.info.layers_fixed.is_some());
    refused(&mut e, "mlp=0,1", &["--layer-alphas", "slerp"]);
    // Rules from a recipe are the recipe's.
    let from_recipe = LayerAlphas::new(
        LayerAlphas::parse("mlp=0,1").unwrap().rules().to_vec(),
        "merge.yaml: parameters.t",
    )
    .unwrap();
    let recipe = LoadOptions {
        layers: Some(from_recipe),
        ..cpu()
    };
    let mut e = Engine::load(&a, &b, &recipe).unwrap();
    assert!(e.info.layers_fixed.is_some());
    refused(&mut e, "mlp=1,0", &["merge.yaml", "recipe"]);
    // A slerp recipe is refused as the recipe, not as a --method the user did not type.
    let slerp_recipe = LoadOptions {
        method: Method::Slerp,
        recipe: Some("slerp.yaml".into()),
        ..cpu()
    };
    let mut e = Engine::load(&a, &b, &slerp_recipe).unwrap();
    assert!(e.info.layers_fixed.is_some());
    refused(
        &mut e,
        "mlp=1,0",
        &["the recipe slerp.yaml's weights are its own"],
    );
    let err = e.set_layer_alphas("mlp=1,0").unwrap_err().to_string();
    assert!(!err.contains("--method"), "{err}");
    // Tensors an adapter replaces whole.
    let saved = LoadOptions {
        base: Some(fixture("adapters/base-llama-tied")),
        ..cpu()
    };
    let mut e = Engine::load(
        &fixture("adapters/llama-plain-a"),
        &fixture("adapters/llama-saved-b"),
        &saved,
    )
    .unwrap();
    refused(&mut e, "mlp=0,1", &["--layer-alphas", "modules_to_save"]);
}

/// α per layer cannot carry a tensor past α's own bound: α times the largest factor is held
/// to |α| ≤ 1000 on every path (one α, rows of a batch, new rules at the current α), where
/// it used to give an empty text from a model blown past any meaning.
#[test]
fn alpha_times_a_layer_factor_stays_within_alphas_bound() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let opts = LoadOptions {
        layers: Some(LayerAlphas::parse("mlp=1000;1").unwrap()),
        ..cpu()
    };
    let mut e = Engine::load(&a, &b, &opts).unwrap();
    e.set_alpha(1.0).unwrap();
    e.set_alpha(-1.0).unwrap();
    let err = e.set_alpha(2.0).unwrap_err().to_string();
    assert!(err.contains("2000") && err.contains("1000"), "{err}");
    assert!(e.set_point(2.0, None).is_err());
    // Rows of a batch, over adapters.
    let adapters = LoadOptions {
        base: Some(fixture("adapters/base-llama-tied")),
        layers: Some(LayerAlphas::parse("mlp=1000;1").unwrap()),
        ..cpu()
    };
    let pair = Engine::load(
        &fixture("adapters/llama-plain-a"),
        &fixture("adapters/llama-plain-b"),
        &adapters,
    )
    .unwrap();
    pair.logits_columns(&IDS, &[0.5, 1.0]).unwrap();
    let err = pair
        .logits_columns(&IDS, &[0.5, 1.5])
        .unwrap_err()
        .to_string();
    assert!(err.contains("1500"), "{err}");
    // New rules are taken whatever α the engine last blended (the UI's columns hold their
    // own); a column then runs or is refused at its own α.
    let mut line = Engine::load(&a, &b, &cpu()).unwrap();
    line.set_alpha(1.5).unwrap();
    line.set_layer_alphas("mlp=1000").unwrap();
    assert!(line
        .set_alpha(1.5)
        .unwrap_err()
        .to_string()
        .contains("1500"));
    line.set_alpha(0.5).unwrap();
    // A recipe's C moves with α at its own weight, and is held to the same bound.
    let c = tmp.path().join("c");
    write_tiny_pair(&c, &tmp.path().join("d"), Arch::Llama).unwrap();
    let recipe = LoadOptions {
        third: Some(lerpscope::engine::ExtraEndpoint {
            source: c.display().to_string(),
            weight: None,
            factors: Some(LayerAlphas::parse("1000").unwrap()),
        }),
        ..cpu()
    };
    let mut e = Engine::load(&a, &b, &recipe).unwrap();
    e.set_alpha(1.0).unwrap();
    assert!(e.set_alpha(2.0).unwrap_err().to_string().contains("2000"));
}
