//! mergekit recipes and α per layer against mergekit itself: tests/fixtures/make_recipes.py
//! merged the tiny Llama pair with each config in tests/fixtures/recipes/ (slerp with a
//! filtered gradient on t, task_arithmetic with a filtered weight and λ, over three and four
//! models, linear with per-model filtered gradients over two and four models, linear with a
//! base_model its models leave out, which mergekit merges too), kept mergekit's
//! merged weights, and recorded transformers' logits and greedy tokens on them.

mod support;

use lerpscope::engine::{
    DeviceChoice, Engine, ExtraEndpoint, LayerAlphas, LoadOptions, MergeRecipe,
};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const RECIPES: [&str; 7] = [
    "slerp-gradient",
    "task-arithmetic",
    "task-arithmetic-plane",
    "task-arithmetic-four",
    "linear-gradient",
    "linear-four",
    "linear-base",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn recipe(name: &str) -> PathBuf {
    fixture(&format!("recipes/{name}.yaml"))
}

/// A safetensors file's f32 tensors by name.
fn tensors(path: &Path) -> HashMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let v = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect();
            (name, v)
        })
        .collect()
}

/// `lerpscope export` with `args` at α, in f32, read back.
fn export(args: &[&str], alpha: &str) -> HashMap<String, Vec<f32>> {
    let dir = tempfile::tempdir().unwrap();
    tensors(&export_dir(args, alpha, dir.path()).join("model.safetensors"))
}

/// Every tensor within 1e-6 of its own scale (NaN anywhere fails).
fn assert_close(what: &str, got: &HashMap<String, Vec<f32>>, want: &HashMap<String, Vec<f32>>) {
    assert_eq!(got.len(), want.len(), "{what}: tensor count");
    for (name, want) in want {
        let got = &got[name];
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let worst = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, |m, d| {
                if d.is_nan() || m.is_nan() {
                    f32::NAN
                } else {
                    m.max(d)
                }
            });
        assert!(
            worst <= 1e-6 * scale,
            "{what} {name}: max |Δ| {worst} against a scale of {scale}"
        );
    }
}

/// At α = 1 each recipe's export is mergekit's merge. (Mutations tried: the tensors outside
/// the layers at the gradient's t = 1 instead of mergekit's 0 fail slerp-gradient on the
/// embeddings; linear's weights unnormalised fail linear-gradient; λ dropped fails
/// task-arithmetic.)
#[test]
fn each_recipe_at_one_is_mergekits_merge() {
    for name in RECIPES {
        let r = recipe(name);
        let got = export(&["--recipe", r.to_str().unwrap()], "1");
        let want = tensors(&fixture(&format!("recipes/{name}.safetensors")));
        assert_close(name, &got, &want);
    }
}

/// `--layer-alphas` without a file is the same path: task_arithmetic's rules times its λ.
#[test]
fn the_flag_is_the_recipe_without_a_file() {
    let a = fixture("tiny-llama-a");
    let b = fixture("tiny-llama-b");
    let got = export(
        &[
            "--a",
            a.to_str().unwrap(),
            "--b",
            b.to_str().unwrap(),
            "--layer-alphas",
            "mlp=0.63,1.08;0.45",
        ],
        "1",
    );
    let want = tensors(&fixture("recipes/task-arithmetic.safetensors"));
    assert_close("--layer-alphas", &got, &want);
}

/// `--c C --beta 0.5` at α = 0.7 is task_arithmetic's base plus 0.7 and 0.5 of two task
/// vectors: the plane through three full models, as mergekit merges it.
#[test]
fn the_plane_through_three_models_is_mergekits_task_arithmetic() {
    let (a, b, c) = (
        fixture("tiny-llama-a"),
        fixture("tiny-llama-b"),
        fixture("recipes/c"),
    );
    let args = [
        "--a",
        a.to_str().unwrap(),
        "--b",
        b.to_str().unwrap(),
        "--c",
        c.to_str().unwrap(),
        "--beta",
        "0.5",
    ];
    let got = export(&args, "0.7");
    let want = tensors(&fixture("recipes/task-arithmetic-plane.safetensors"));
    assert_close("--c --beta", &got, &want);
    // α = 0, β = 0 is A bit for bit; --beta needs --c and --c needs --beta.
    let mut zero = args;
    zero[7] = "0";
    let got = export(&zero, "0");
    for (t, want) in tensors(&fixture("tiny-llama-a/model.safetensors")) {
        assert_eq!(got[&t], want, "{t}");
    }
    let (ok, err) = lerpscope(&["generate", "--a", args[1], "--b", args[3], "--c", args[5]]);
    assert!(!ok && err.contains("--beta"), "{err}");
}

/// `--d D --gamma −0.3` beside `--c C --beta 0.5`, at α = 0.7: task_arithmetic over a base and
/// three models, as mergekit merges it. γ = 0 is the plane bit for bit; --gamma needs --d.
#[test]
fn four_models_are_mergekits_task_arithmetic() {
    let (a, b, c, d) = (
        fixture("tiny-llama-a"),
        fixture("tiny-llama-b"),
        fixture("recipes/c"),
        fixture("recipes/d"),
    );
    let s = |p: &PathBuf| p.to_str().unwrap().to_string();
    let plane = [
        "--a".to_string(),
        s(&a),
        "--b".into(),
        s(&b),
        "--c".into(),
        s(&c),
        "--beta".into(),
        "0.5".into(),
    ];
    let four: Vec<String> = plane
        .iter()
        .cloned()
        .chain(["--d".into(), s(&d), "--gamma=-0.3".into()])
        .collect();
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let got = export(&args(&four), "0.7");
    let want = tensors(&fixture("recipes/task-arithmetic-four.safetensors"));
    assert_close("--d --gamma", &got, &want);
    let mut at_zero = four.clone();
    at_zero[10] = "--gamma=0".into();
    let bits = |m: HashMap<String, Vec<f32>>| -> Vec<(String, Vec<u32>)> {
        let mut v: Vec<_> = m
            .into_iter()
            .map(|(k, t)| (k, t.iter().map(|x| x.to_bits()).collect()))
            .collect();
        v.sort();
        v
    };
    assert!(bits(export(&args(&at_zero), "0.7")) == bits(export(&args(&plane), "0.7")));
    let mut no_d = plane.to_vec();
    no_d.extend(["--gamma".into(), "0.2".into()]);
    let (ok, err) = lerpscope(&[&["generate"], &args(&no_d)[..]].concat());
    assert!(!ok && err.contains("--gamma"), "{err}");
    let mut no_gamma = plane.to_vec();
    no_gamma.extend(["--d".into(), s(&d)]);
    let (ok, err) = lerpscope(&[&["generate"], &args(&no_gamma)[..]].concat());
    assert!(
        !ok && err.contains("--d") && err.contains("--gamma"),
        "{err}"
    );
    let mut absurd = four.clone();
    absurd[10] = "--gamma=5000".into();
    let (ok, err) = lerpscope(&[&["generate"], &args(&absurd)[..]].concat());
    assert!(!ok && err.contains("γ = 5000 is absurd"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

/// α = 0 is endpoint A bit for bit, whatever the recipe.
#[test]
fn alpha_zero_is_a_exactly() {
    let a = tensors(&fixture("tiny-llama-a/model.safetensors"));
    for name in RECIPES {
        let r = recipe(name);
        let got = export(&["--recipe", r.to_str().unwrap()], "0");
        for (t, want) in &a {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got[t]), bits(want), "{name} {t}");
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Engine {
    let r = MergeRecipe::load(&recipe(name)).unwrap();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: r.dtype,
        method: r.method,
        layers: Some(r.layers.clone()),
        third: r.c.as_ref().map(|(c, f)| ExtraEndpoint {
            source: root().join(c).display().to_string(),
            weight: None,
            factors: Some(f.clone()),
        }),
        fourth: r.d.as_ref().map(|(d, f)| ExtraEndpoint {
            source: root().join(d).display().to_string(),
            weight: None,
            factors: Some(f.clone()),
        }),
        ..Default::default()
    };
    let path = |p: &str| root().join(p).display().to_string();
    Engine::load(&path(&r.a), &path(&r.b), &opts).unwrap()
}

/// Generation at α = 1 matches transformers on mergekit's model: logits within 1e-4, greedy
/// tokens exactly.
#[test]
fn generation_matches_transformers_on_mergekits_models() {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("recipes/expected.json")).unwrap())
            .unwrap();
    let prompts = ["The movie was", "I think that the food"];
    for name in RECIPES {
        let mut engine = load(name);
        assert!(!engine.on_line(), "{name}");
        assert!(engine.info.description.contains("α per layer"), "{name}");
        if name.ends_with("plane") || name.ends_with("four") {
            let d = &engine.info.description;
            assert!(d.contains("+ α·") && d.contains("recipes/c − A)"), "{d}");
        }
        if name.ends_with("four") {
            let d = &engine.info.description;
            assert!(d.contains("recipes/d − A)"), "{d}");
        }
        engine.set_alpha(1.0).unwrap();
        support::assert_runs_match(&engine, &prompts, &exp[name], name);
    }
}

/// Rows at several alphas in one batch assume one α for every tensor: refused, and every
/// other path re-blends per α.
#[test]
fn batches_at_several_alphas_are_refused() {
    let engine = load("task-arithmetic");
    let Err(e) = engine.mix(&[0.2, 0.4]) else {
        panic!("α per layer in one batch")
    };
    let e = e.to_string();
    assert!(e.contains("α per layer") && e.contains("reblend"), "{e}");
}

fn lerpscope(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Bad recipes and flags get one line naming the file and key, or the flag.
#[test]
fn bad_recipes_name_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("ties.yaml");
    std::fs::write(
        &bad,
        "merge_method: ties\nbase_model: a\nmodels: [{model: a}, {model: b}]\n",
    )
    .unwrap();
    let (ok, err) = lerpscope(&["generate", "--recipe", bad.to_str().unwrap()]);
    assert!(
        !ok && err.contains("ties.yaml") && err.contains("\"ties\""),
        "{err}"
    );

    // A model that is neither a path nor a Hub id, named with the recipe that names it.
    let lost = dir.path().join("lost.yaml");
    std::fs::write(
        &lost,
        "merge_method: linear\nmodels: [{model: ./no/such/model, parameters: {weight: 1}}, \
         {model: ./other, parameters: {weight: 1}}]\n",
    )
    .unwrap();
    let (ok, err) = lerpscope(&["generate", "--recipe", lost.to_str().unwrap()]);
    assert!(
        !ok && err.contains("lost.yaml") && err.contains("'./no/such/model'"),
        "{err}"
    );

    // mergekit's base+LoRA form is named as such, with what to write instead.
    let plus = dir.path().join("plus.yaml");
    std::fs::write(
        &plus,
        "merge_method: linear\nmodels: [{model: base, parameters: {weight: 1}}, \
         {model: base+adapters/pos, parameters: {weight: 1}}]\n",
    )
    .unwrap();
    let (ok, err) = lerpscope(&["generate", "--recipe", plus.to_str().unwrap()]);
    assert!(
        !ok && err.contains("plus.yaml")
            && err.contains("base+LoRA form")
            && err.contains("adapter adapters/pos as the model")
            && err.lines().count() == 1,
        "{err}"
    );
    // The same form as base_model.
    std::fs::write(
        &plus,
        "merge_method: task_arithmetic\nbase_model: base+adapters/neg\n\
         models: [{model: adapters/pos, parameters: {weight: 1}}]\n",
    )
    .unwrap();
    let (ok, err) = lerpscope(&["generate", "--recipe", plus.to_str().unwrap()]);
    assert!(
        !ok && err.contains("base_model base+adapters/neg: mergekit's base+LoRA form"),
        "{err}"
    );

    // Three adapters on one base: a recipe moves two of them; the line says what does take
    // a third (it pointed to --beta, which is refused beside a recipe).
    let three = dir.path().join("three.yaml");
    std::fs::write(
        &three,
        format!(
            "merge_method: task_arithmetic\nbase_model: base\nmodels: [{}]\n",
            ["llama-plain-a", "llama-plain-b", "llama-saved-b"]
                .map(|a| format!(
                    "{{model: {}, parameters: {{weight: 0.5}}}}",
                    fixture(&format!("adapters/{a}")).display()
                ))
                .join(", ")
        ),
    )
    .unwrap();
    let base = fixture("adapters/base-llama-tied").display().to_string();
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        three.to_str().unwrap(),
        "--base",
        &base,
    ]);
    assert!(
        !ok && err.contains("three.yaml")
            && err.contains("a recipe over adapters moves one line, from its base_model")
            && err.lines().count() == 1,
        "{err}"
    );

    // Adapters on different bases: each base named with the recipe's model, not a flag.
    let (pa, sb) = (
        fixture("adapters/llama-plain-a"),
        fixture("adapters/llama-saved-b"),
    );
    let bases = dir.path().join("bases.yaml");
    std::fs::write(
        &bases,
        format!(
            "merge_method: linear\nmodels: [{{model: {}, parameters: {{weight: 1}}}}, \
             {{model: {}, parameters: {{weight: 1}}}}]\n",
            pa.display(),
            sb.display()
        ),
    )
    .unwrap();
    let (ok, err) = lerpscope(&["generate", "--recipe", bases.to_str().unwrap()]);
    assert!(
        !ok && err.contains("different bases")
            && err.contains(&format!("for {}: model {}", bases.display(), pa.display()))
            && !err.contains("for --"),
        "{err}"
    );

    let missing = dir.path().join("absent.yaml");
    let (ok, err) = lerpscope(&["generate", "--recipe", missing.to_str().unwrap()]);
    assert!(
        !ok && err.contains("absent.yaml") && err.contains("cannot read"),
        "{err}"
    );

    // A filter that matches no tensor of the model.
    let (ok, err) = lerpscope(&[
        "generate",
        "--layer-alphas",
        "mpl=0,1",
        "--device",
        "cpu",
        "--max-tokens",
        "1",
    ]);
    assert!(!ok && err.contains("\"mpl\" matches no tensor"), "{err}");

    // A recipe with its own pair cannot take another.
    let r = recipe("slerp-gradient");
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        r.to_str().unwrap(),
        "--a",
        "x",
        "--b",
        "y",
    ]);
    assert!(!ok && err.contains("--recipe"), "{err}");

    // A recipe's layer range must be the model's.
    let short = dir.path().join("short.yaml");
    let text = std::fs::read_to_string(&r)
        .unwrap()
        .replace("layer_range: [0, 2]", "layer_range: [0, 1]");
    std::fs::write(&short, text).unwrap();
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        short.to_str().unwrap(),
        "--device",
        "cpu",
        "--max-tokens",
        "1",
    ]);
    assert!(!ok && err.contains("layer_range [0, 1]"), "{err}");

    // A full model and an adapter cannot blend: the line names the recipe's model, not the
    // flag --a, which the user never typed.
    let mixed = dir.path().join("mixed.yaml");
    let (full, adapter) = (fixture("tiny-llama-a"), fixture("adapters/llama-plain-b"));
    std::fs::write(
        &mixed,
        format!(
            "merge_method: linear\nmodels:\n  - model: {}\n    parameters: {{weight: 0.5}}\n  - model: {}\n    parameters: {{weight: 0.5}}\ndtype: float32\n",
            full.display(),
            adapter.display()
        ),
    )
    .unwrap();
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        mixed.to_str().unwrap(),
        "--device",
        "cpu",
        "--max-tokens",
        "1",
    ]);
    let model = format!("mixed.yaml: model {} is a full model", full.display());
    assert!(!ok && err.contains(&model) && !err.contains("--a"), "{err}");

    // Models of two architectures: the line says which recipe named them.
    let families = dir.path().join("families.yaml");
    std::fs::write(
        &families,
        format!(
            "merge_method: linear\nmodels:\n  - model: {}\n    parameters: {{weight: 0.5}}\n  - model: {}\n    parameters: {{weight: 0.5}}\ndtype: float32\n",
            fixture("tiny-llama-a").display(),
            fixture("tiny-gpt2-b").display()
        ),
    )
    .unwrap();
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        families.to_str().unwrap(),
        "--device",
        "cpu",
        "--max-tokens",
        "1",
    ]);
    assert!(
        !ok && err.contains("families.yaml: ") && err.contains("architectures differ"),
        "{err}"
    );
}

/// Over adapters the factors apply too (tests/adapter_plane.rs holds them to the full pair);
/// a filter that matches no tensor of the base is refused by name.
#[test]
fn adapters_take_alpha_per_layer_and_refuse_a_filter_that_matches_nothing() {
    let opts = |spec: &str| LoadOptions {
        device: DeviceChoice::Cpu,
        layers: Some(LayerAlphas::parse(spec).unwrap()),
        base: Some(fixture("adapters/base-llama-tied").display().to_string()),
        ..Default::default()
    };
    let a = fixture("adapters/llama-plain-a");
    let b = fixture("adapters/llama-plain-b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let e = Engine::load(a, b, &opts("mlp=0,1")).unwrap();
    assert_eq!(e.info.layers.as_deref(), Some("mlp=0,1"));
    let Err(e) = Engine::load(a, b, &opts("no_such=0,1")) else {
        panic!("a filter that matches nothing")
    };
    let e = e.to_string();
    assert!(
        e.contains("no_such") && e.contains("matches no tensor"),
        "{e}"
    );
}

/// `lerpscope export` to a fresh folder; the folder.
fn export_dir(args: &[&str], alpha: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("at-{alpha}"));
    let run = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("export")
        .args(args)
        .args([
            "--alpha", alpha, "--dtype", "f32", "--device", "cpu", "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

/// An export writes the mergekit config that makes the same model, and that config read back
/// as a recipe at α = 1 gives the same weights: slerp with a gradient, α per layer from the
/// flag, the plain line.
#[test]
fn an_export_writes_its_own_mergekit_config() {
    let dir = tempfile::tempdir().unwrap();
    let r = recipe("slerp-gradient");
    let a = fixture("tiny-llama-a");
    let b = fixture("tiny-llama-b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let c = fixture("recipes/c");
    let c = c.to_str().unwrap();
    let d = fixture("recipes/d");
    let d = d.to_str().unwrap();
    let four = recipe("task-arithmetic-four");
    let cases: [(&str, Vec<&str>); 6] = [
        ("slerp", vec!["--recipe", r.to_str().unwrap()]),
        (
            "layers",
            vec!["--a", a, "--b", b, "--layer-alphas", "mlp=0,2"],
        ),
        ("line", vec!["--a", a, "--b", b]),
        (
            "plane",
            vec!["--a", a, "--b", b, "--c", c, "--beta", "-0.3"],
        ),
        (
            "four",
            vec![
                "--a", a, "--b", b, "--c", c, "--beta", "-0.3", "--d", d, "--gamma", "0.6",
            ],
        ),
        ("four-recipe", vec!["--recipe", four.to_str().unwrap()]),
    ];
    for (what, args) in cases {
        let case = dir.path().join(what);
        let out = export_dir(&args, "0.4", &case);
        let config = out.join("mergekit_config.yml");
        assert!(config.is_file(), "{what}: no mergekit_config.yml");
        let again = export_dir(&["--recipe", config.to_str().unwrap()], "1", &case);
        assert_close(
            what,
            &tensors(&again.join("model.safetensors")),
            &tensors(&out.join("model.safetensors")),
        );
    }
    // Folders given relative to where the export ran are written absolute, so the config
    // reads the same from anywhere.
    let rel = dir.path().join("relative");
    let out = export_dir(
        &[
            "--a",
            "tests/fixtures/tiny-llama-a",
            "--b",
            "tests/fixtures/tiny-llama-b",
        ],
        "0.4",
        &rel,
    );
    let config = std::fs::read_to_string(out.join("mergekit_config.yml")).unwrap();
    assert!(config.contains(&format!("model: {a}")), "{config}");
    // A linear recipe's normalised shares have no mergekit config away from its own α.
    let lin = recipe("linear-gradient");
    let out = export_dir(&["--recipe", lin.to_str().unwrap()], "0.4", dir.path());
    assert!(!out.join("mergekit_config.yml").exists());
    // The recipe it came from is named all the same, with its digest (metadata and card).
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        card.contains("mergekit recipe") && card.contains(lin.to_str().unwrap()),
        "{card}"
    );
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8_lossy(&bytes[8..8 + n]).to_string();
    assert!(header.contains("\"lerpscope.recipe.sha256\""), "{header}");
}

/// mergekit itself, run on the config an export wrote, merges the export's weights (where a
/// Python with mergekit is at hand: `LERPSCOPE_PYTHON`).
#[test]
fn mergekit_merges_what_the_export_wrote() {
    let python = std::env::var("LERPSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let has = Command::new(&python)
        .args(["-c", "import mergekit.scripts.run_yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        lerpscope::shapes::skip(
            &format!("{python} cannot import mergekit (set LERPSCOPE_PYTHON)"),
            "LERPSCOPE_REQUIRE_MERGEKIT",
        );
        return;
    }
    for name in ["slerp-gradient", "task-arithmetic-four"] {
        let dir = tempfile::tempdir().unwrap();
        let r = recipe(name);
        let out = export_dir(&["--recipe", r.to_str().unwrap()], "0.4", dir.path());
        let merged = dir.path().join("by-mergekit");
        let run = Command::new(&python)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-m", "mergekit.scripts.run_yaml"])
            .arg(out.join("mergekit_config.yml"))
            .arg(&merged)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "mergekit: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        assert_close(
            &format!("mergekit on the config exported from {name}"),
            &tensors(&out.join("model.safetensors")),
            &tensors(&merged.join("model.safetensors")),
        );
    }
}

/// A sweep records α per layer in sweep.json and resumes only with the same rules.
#[test]
fn a_sweep_keeps_its_layer_alphas() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sweep");
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "The food\n").unwrap();
    let sweep = |rules: &str| {
        lerpscope(&[
            "sweep",
            "--device",
            "cpu",
            "--alphas",
            "0,1",
            "--samples",
            "1",
            "--max-tokens",
            "3",
            "--prompts",
            prompts.to_str().unwrap(),
            "--layer-alphas",
            rules,
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let (ok, err) = sweep("mlp=0,1");
    assert!(ok, "{err}");
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(config["layers"], "mlp=0,1");
    assert!(sweep("mlp=0,1").0, "the same rules resume");
    let (ok, err) = sweep("mlp=1,0");
    assert!(!ok && err.contains("other settings"), "{err}");
}

/// A third endpoint that does not fit gets one line naming it: another architecture, an absurd
/// β, adapters, and `--c` beside a recipe.
#[test]
fn a_bad_third_endpoint_gets_one_line() {
    let (a, b) = (fixture("tiny-llama-a"), fixture("tiny-llama-b"));
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let gpt2 = fixture("tiny-gpt2-a");
    let cpu = ["--device", "cpu", "--max-tokens", "1"];
    let run = |c: &str, beta: &str| {
        let mut args = vec!["generate", "--a", a, "--b", b, "--c", c, "--beta", beta];
        args.extend(cpu);
        lerpscope(&args)
    };
    let (ok, err) = run(gpt2.to_str().unwrap(), "0.5");
    assert!(
        !ok && err.contains("tiny-gpt2-a") && err.lines().count() == 1,
        "{err}"
    );
    let c = fixture("recipes/c");
    let (ok, err) = run(c.to_str().unwrap(), "1e9");
    assert!(
        !ok && err.contains("--beta") && err.contains("absurd"),
        "{err}"
    );
    let r = recipe("task-arithmetic");
    let (ok, err) = lerpscope(&[
        "generate",
        "--recipe",
        r.to_str().unwrap(),
        "--c",
        c.to_str().unwrap(),
        "--beta",
        "0.5",
    ]);
    assert!(!ok && err.contains("--recipe"), "{err}");
    // `bench blend` times a loaded pair's path, never random buffers' line in its place.
    let (ok, err) = lerpscope(&["bench", "blend", "--c", "x", "--beta", "0.5"]);
    assert!(!ok && err.contains("--shape"), "{err}");
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        base: Some(fixture("adapters/base-llama-tied").display().to_string()),
        third: Some(ExtraEndpoint {
            source: c.display().to_string(),
            weight: Some(0.5),
            factors: None,
        }),
        ..Default::default()
    };
    let Err(e) = Engine::load(
        fixture("adapters/llama-plain-a").to_str().unwrap(),
        fixture("adapters/llama-plain-b").to_str().unwrap(),
        &opts,
    ) else {
        panic!("a plane over adapters")
    };
    assert!(e.to_string().contains("--c"), "{e}");
}

/// Moving β on a loaded plane gives the weights a plane loaded at that β has, bit for bit.
#[test]
fn moving_beta_is_loading_at_it() {
    let opts = |beta: f64| LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: Some(candle_core::DType::F32),
        third: Some(ExtraEndpoint {
            source: fixture("recipes/c").display().to_string(),
            weight: Some(beta),
            factors: None,
        }),
        ..Default::default()
    };
    let (a, b) = (fixture("tiny-llama-a"), fixture("tiny-llama-b"));
    let load = |beta| Engine::load(a.to_str().unwrap(), b.to_str().unwrap(), &opts(beta)).unwrap();
    let bits = |e: &Engine| -> Vec<u32> {
        let v = e.weights().working().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    };
    let mut moved = load(0.5);
    moved.set_alpha(0.3).unwrap();
    moved.set_beta(-0.25).unwrap();
    let mut fresh = load(-0.25);
    fresh.set_alpha(0.3).unwrap();
    assert_eq!(bits(&moved), bits(&fresh));
    assert_eq!(moved.info.beta, Some(-0.25));
    // So is moving a fourth endpoint's γ.
    let with_d = |gamma: f64| LoadOptions {
        fourth: Some(ExtraEndpoint::fixed(
            fixture("recipes/d").display().to_string(),
            gamma,
        )),
        ..opts(-0.25)
    };
    let load_d = |g| Engine::load(a.to_str().unwrap(), b.to_str().unwrap(), &with_d(g)).unwrap();
    let mut moved = load_d(0.1);
    moved.set_alpha(0.3).unwrap();
    moved.set_gamma(0.6).unwrap();
    let mut fresh = load_d(0.6);
    fresh.set_alpha(0.3).unwrap();
    assert_eq!(bits(&moved), bits(&fresh));
    assert_eq!(moved.info.gamma, Some(0.6));
    // A pair without a plane refuses β in one line.
    let mut line = Engine::load(
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        &LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    let e = line.set_beta(0.5).unwrap_err().to_string();
    assert!(e.contains("no third endpoint"), "{e}");
}

/// `sweep --c C --betas` sweeps the (α, β) grid: a sweep per β in its own folder, grid.csv
/// with a row per cell, heat maps. At β = 0 the plane is the line (the same operations below
/// α = ½, copies at the vertices), so its samples are the plain sweep's (re-blended too), byte
/// for byte.
#[test]
fn a_beta_grid_sweeps_the_plane() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, "The food\nThe movie\n").unwrap();
    let (a, b, c) = (
        fixture("tiny-llama-a"),
        fixture("tiny-llama-b"),
        fixture("recipes/c"),
    );
    let try_sweep = |extra: &[&str], out: &Path| {
        let mut args = vec![
            "sweep",
            "--a",
            a.to_str().unwrap(),
            "--b",
            b.to_str().unwrap(),
            "--device",
            "cpu",
            "--alphas",
            "0,0.25,1",
            "--alpha-mode",
            "reblend",
            "--samples",
            "2",
            "--max-tokens",
            "6",
            "--prompts",
            prompts.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(extra);
        lerpscope(&args)
    };
    let sweep = |extra: &[&str], out: &Path| {
        let (ok, err) = try_sweep(extra, out);
        assert!(ok, "{err}");
    };
    let grid = dir.path().join("grid");
    sweep(&["--c", c.to_str().unwrap(), "--betas", "0,0.5"], &grid);
    let line = dir.path().join("line");
    sweep(&[], &line);
    // One β without --betas: one sweep in --out, its table and plots naming the β it held.
    let single = dir.path().join("single");
    let o = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args([
            "sweep",
            "--a",
            a.to_str().unwrap(),
            "--b",
            b.to_str().unwrap(),
        ])
        .args([
            "--c",
            c.to_str().unwrap(),
            "--beta",
            "0.5",
            "--device",
            "cpu",
        ])
        .args(["--alphas", "0,1", "--samples", "1", "--max-tokens", "4"])
        .args(["--prompts", prompts.to_str().unwrap(), "--out"])
        .arg(&single)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(said.contains("── β = 0.5 ──"), "{said}");
    let plot = std::fs::read_to_string(single.join("plots/vader.svg")).unwrap();
    assert!(
        plot.contains("Sentiment vs α (β = 0.5)"),
        "the title names β"
    );
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
    assert_eq!(
        read(grid.join("beta0/samples.jsonl")),
        read(line.join("samples.jsonl"))
    );
    assert_ne!(
        read(grid.join("beta0.5/samples.jsonl")),
        read(line.join("samples.jsonl"))
    );
    let csv = read(grid.join("grid.csv"));
    assert_eq!(csv.lines().count(), 1 + 2 * 3, "{csv}");
    assert!(csv.lines().nth(4).unwrap().starts_with("0.5,0,"), "{csv}");
    for f in ["grid-vader.png", "grid-vader.svg", "grid-perplexity.png"] {
        assert!(grid.join("plots").join(f).is_file(), "{f}");
    }
    // A rerun resumes every β's sweep.
    sweep(&["--c", c.to_str().unwrap(), "--betas", "0,0.5"], &grid);
    assert_eq!(read(grid.join("grid.csv")), csv);
    // A fourth endpoint held at γ: recorded with the plane, and a resume at another γ refused.
    let d = fixture("recipes/d");
    let four = dir.path().join("four");
    let with_d = |gamma: &'static str| {
        let (c, d) = (c.to_str().unwrap(), d.to_str().unwrap());
        vec!["--c", c, "--betas", "0", "--d", d, "--gamma", gamma]
    };
    sweep(&with_d("0.4"), &four);
    let config = read(four.join("beta0/sweep.json"));
    assert!(config.contains("γ 0.4"), "{config}");
    let csv = read(four.join("grid.csv"));
    let rows: Vec<&str> = csv.lines().collect();
    assert!(
        rows[0].ends_with(",empty,gamma") && rows[1..].iter().all(|r| r.ends_with(",0.4")),
        "{csv}"
    );
    assert_ne!(
        read(four.join("beta0/samples.jsonl")),
        read(line.join("samples.jsonl"))
    );
    let (ok, err) = try_sweep(&with_d("0.5"), &four);
    assert!(!ok && err.contains("other settings"), "{err}");
}

/// The pair's description (the header, and a saved session's path) gives each extra model's
/// weight: a recipe's C and D at their own factors, not as bare α.
#[test]
fn a_recipes_description_gives_every_models_weight() {
    use lerpscope::engine::{DeviceChoice, Engine, ExtraEndpoint, LoadOptions, MergeRecipe};
    let r = MergeRecipe::load(&recipe("task-arithmetic-four")).unwrap();
    let extra = |x: &Option<(String, lerpscope::engine::LayerAlphas)>| {
        x.as_ref().map(|(source, f)| ExtraEndpoint {
            source: source.clone(),
            weight: None,
            factors: Some(f.clone()),
        })
    };
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        method: r.method,
        layers: Some(r.layers.clone()),
        third: extra(&r.c),
        fourth: extra(&r.d),
        ..Default::default()
    };
    let e = Engine::load(&r.a, &r.b, &opts).unwrap();
    let d = &e.info.description;
    assert!(
        d.contains(" + α·0.5·(tests/fixtures/recipes/c − A)")
            && d.contains(" + α·-0.3·(tests/fixtures/recipes/d − A)"),
        "{d}"
    );
}

/// Refusals speak of what the recipe holds, not of flags the user never typed: a batched
/// sweep off the line names the recipe's method, third model or weights; --beta and --betas
/// say that a recipe's models all move with α.
#[test]
fn refusals_name_the_recipe_not_flags() {
    let tmp = tempfile::tempdir().unwrap();
    for (recipe, what) in [
        ("slerp-gradient", "merge_method slerp"),
        ("linear-four", "third model (a plane)"),
        ("task-arithmetic", "weights (α per layer"),
    ] {
        let file = format!("tests/fixtures/recipes/{recipe}.yaml");
        let out = tmp.path().join(recipe);
        let (ok, err) = lerpscope(&[
            "sweep",
            "--recipe",
            &file,
            "--alpha-mode",
            "batched",
            "--alphas",
            "0,1",
            "--max-tokens",
            "2",
            "--samples",
            "1",
            "--num-prompts",
            "1",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(
            !ok && err.contains(&format!("not the recipe {file}'s {what}"))
                && !err.contains("--method"),
            "{err}"
        );
        assert!(!out.exists());
    }
    let plane = "tests/fixtures/recipes/task-arithmetic-plane.yaml";
    for flags in [&["--beta", "0.9"][..], &["--alphas", "0", "--betas", "0.5"]] {
        let mut args = vec!["generate", "--recipe", plane, "--max-tokens", "1"];
        args.extend_from_slice(flags);
        let (ok, err) = lerpscope(&args);
        assert!(
            !ok && err.contains("every model of the recipe") && !err.contains("needs --c"),
            "{err}"
        );
    }
}
