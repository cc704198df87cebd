//! PEFT LoRA adapters as endpoints, against PEFT itself: tests/fixtures/make_adapters.py made
//! tiny bases and adapter pairs with PEFT and recorded, at five alphas, the logits and greedy
//! tokens of the blend of PEFT's merged models (tests/fixtures/adapters/expected.json). Both
//! execution paths must match them: merged (the working copy re-merged at each α) and factored
//! (W0 and the low-rank updates, each batch row at its own α).

mod support;

use lerpscope::engine::{Alpha, DeviceChoice, Engine, LoadOptions};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use support::{greedy, max_diff};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

/// The pair `name` as the fixture names it: `base` or an adapter directory on each side.
fn load(name: &str, exp: &Value) -> Engine {
    let pair = &exp["pairs"][name];
    let side = |k: &str| match pair[k].as_str() {
        Some(d) => fixtures().join(d).display().to_string(),
        None => "base".to_string(),
    };
    Engine::load(&side("a"), &side("b"), &cpu()).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn check(name: &str) {
    let exp = expected();
    let prompts: Vec<String> = serde_json::from_value(exp["prompts"].clone()).unwrap();
    let n = exp["new_tokens"].as_u64().unwrap() as usize;
    let mut e = load(name, &exp);
    assert!(e.is_adapter_pair());
    let runs = exp["pairs"][name]["runs"].as_object().unwrap();
    let alphas: Vec<Alpha> = runs.keys().map(|a| a.parse().unwrap()).collect();
    for (pi, prompt) in prompts.iter().enumerate() {
        let ids: Vec<u32> = serde_json::from_value(runs["0.0"][pi]["prompt_ids"].clone()).unwrap();
        assert_eq!(e.encode(prompt).unwrap(), ids, "tokenisation");
        // Factored: every α in one batch.
        let factored = e.logits_columns(&ids, &alphas).unwrap();
        assert_eq!(factored.len(), alphas.len());
        let pair_g = lerpscope::engine::Generator {
            eos: &[],
            ..e.pair_generator()
        };
        let mix = e.mix(&alphas).unwrap();
        let batch = pair_g
            .run_rows(
                &ids,
                &[],
                Some(&mix),
                &greedy(n),
                &|_| false,
                &mut |_, _| {},
            )
            .unwrap();
        for (i, (alpha, run)) in runs.iter().enumerate() {
            let want: Vec<f32> = serde_json::from_value(run[pi]["logits"].clone()).unwrap();
            let want_tokens: Vec<u32> = serde_json::from_value(run[pi]["greedy"].clone()).unwrap();
            // At the endpoints the reference is PEFT's merge_and_unload itself.
            let tol = if alpha == "0.0" || alpha == "1.0" {
                1e-5
            } else {
                1e-4
            };
            // Merged.
            e.set_alpha(alphas[i]).unwrap();
            let merged = e.logits(&ids).unwrap();
            let d = max_diff(&merged, &want);
            assert!(
                d <= tol,
                "{name} α={alpha} {prompt:?} merged: max |Δlogit| = {d}"
            );
            let d = max_diff(&factored[i], &want);
            assert!(
                d <= tol,
                "{name} α={alpha} {prompt:?} factored: max |Δlogit| = {d}"
            );
            let mut g = e.generator();
            g.eos = &[];
            let tokens = g
                .run(prompt, &greedy(n), &AtomicBool::new(false), &mut |_| {})
                .unwrap()
                .token_ids;
            assert_eq!(
                tokens, want_tokens,
                "{name} α={alpha} {prompt:?} merged greedy"
            );
            assert_eq!(
                batch[i].token_ids, want_tokens,
                "{name} α={alpha} {prompt:?} factored greedy"
            );
        }
    }
}

#[test]
fn differing_ranks_and_targets_match_peft() {
    check("llama-plain");
}

#[test]
fn rslora_rank_and_alpha_patterns_and_a_regex_target_match_peft() {
    check("llama-patterns");
}

#[test]
fn embedding_lora_on_a_tied_embedding_moves_the_head_too() {
    check("llama-embedding");
}

#[test]
fn modules_to_save_are_blended_like_full_endpoints() {
    check("llama-saved");
}

#[test]
fn the_base_as_one_side_scales_the_other_adapter() {
    check("llama-base");
}

#[test]
fn f16_adapters_compute_in_the_working_dtype() {
    check("llama-f16");
}

#[test]
fn gpt2_conv1d_adapters_match_peft() {
    check("gpt2");
}

#[test]
fn every_fixture_pair_is_checked() {
    assert_eq!(expected()["pairs"].as_object().unwrap().len(), 7);
}

/// The batched mode of the session runs adapters through the factored path, and gives what
/// re-merging gives.
#[test]
fn factored_and_merged_generation_agree_with_sampling() {
    let exp = expected();
    let mut e = load("llama-plain", &exp);
    support::assert_batched_columns_equal_each_alone(
        &mut e,
        &[-0.5, 0.0, 0.3, 0.5, 1.0, 1.5],
        "llama-plain",
    );
}

/// A copy of fixture adapter `name` in a temporary directory (its base path made absolute), to
/// damage.
fn copy_adapter(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(fixtures().join(name)).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let base = fixtures().join("base-llama-tied").display().to_string();
    edit_config(&dir, |c| c["base_model_name_or_path"] = base.into());
    (tmp, dir)
}

fn edit_config(dir: &std::path::Path, f: impl FnOnce(&mut Value)) {
    let p = dir.join("adapter_config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
}

fn load_err(a: &str, b: &str, base: Option<&str>) -> String {
    let opts = LoadOptions {
        base: base.map(String::from),
        ..cpu()
    };
    let e = match Engine::load(a, b, &opts) {
        Ok(_) => panic!("{a} + {b} should be refused"),
        Err(e) => lerpscope::one_line(&e),
    };
    assert!(!e.contains('\n'), "not one line: {e}");
    e
}

fn has(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "{e:?} lacks {p:?}");
    }
}

#[test]
fn bad_adapters_get_one_line_naming_the_file_and_key() {
    let fx = |n: &str| fixtures().join(n).display().to_string();
    let other = fx("llama-plain-b");
    // Another PEFT method.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["peft_type"] = "IA3".into());
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["adapter_config.json", "IA3"],
    );
    // DoRA, by config and by key; trained biases.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["use_dora"] = true.into());
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["use_dora", "DoRA"],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["bias"] = "lora_only".into());
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["bias", "lora_only"],
    );
    // Factors on a layer the config says it leaves alone.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["layers_to_transform"] = serde_json::json!([1]));
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &[
            "adapter_model.safetensors",
            "layers.0.",
            "outside layers_to_transform [1]",
        ],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["layers_to_transform"] = serde_json::json!([0, 1]));
    Engine::load(d.to_str().unwrap(), &other, &cpu()).unwrap();
    let (_t, d) = copy_adapter("llama-plain-a");
    add_tensor(
        &d,
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
        vec![48],
    );
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &[
            "adapter_model.safetensors",
            "q_proj.lora_magnitude_vector",
            "DoRA",
        ],
    );
    // Factors for a module target_modules does not name (PEFT leaves them out), or no
    // target_modules at all (PEFT would take a default of its own).
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["target_modules"] = serde_json::json!(["q_proj"]));
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["adapter_model.safetensors", "v_proj", "target_modules"],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["target_modules"] = ".*q_proj".into());
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["v_proj", "target_modules"],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["target_modules"] = serde_json::Value::Null);
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["adapter_config.json", "target_modules is not given"],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["target_modules"] = ".*(q|v)_proj".into());
    Engine::load(d.to_str().unwrap(), &other, &cpu()).unwrap();
    // PEFT's all-linear takes every linear layer but the head: not an embedding.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["target_modules"] = "ALL-Linear".into());
    Engine::load(d.to_str().unwrap(), &other, &cpu()).unwrap();
    add_tensor(
        &d,
        "base_model.model.model.embed_tokens.lora_embedding_A",
        vec![4, 300],
    );
    add_tensor(
        &d,
        "base_model.model.model.embed_tokens.lora_embedding_B",
        vec![48, 4],
    );
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["model.embed_tokens", "\"all-linear\" leaves out"],
    );
    // Its weights without its config.
    let (_t, d) = copy_adapter("llama-plain-a");
    std::fs::remove_file(d.join("adapter_config.json")).unwrap();
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["adapter_model.safetensors but no adapter_config.json"],
    );
    // A LoRA on a head tied to the embeddings would change the head alone.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "v_proj", "lm_head"])
    });
    add_tensor(&d, "base_model.model.lm_head.lora_A.weight", vec![4, 48]);
    add_tensor(&d, "base_model.model.lm_head.lora_B.weight", vec![300, 4]);
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &[
            "adapter_model.safetensors",
            "lm_head",
            "tied",
            "not supported",
        ],
    );
    // So would an embedding replaced whole: PEFT runs the head apart from it (untied).
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| {
        c["modules_to_save"] = serde_json::json!(["embed_tokens"])
    });
    add_tensor(
        &d,
        "base_model.model.model.embed_tokens.weight",
        vec![300, 48],
    );
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &[
            "model.embed_tokens.weight whole (modules_to_save)",
            "ties its head",
            "not supported",
        ],
    );
    // Only the pickle format.
    let (_t, d) = copy_adapter("llama-plain-a");
    std::fs::rename(
        d.join("adapter_model.safetensors"),
        d.join("adapter_model.bin"),
    )
    .unwrap();
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["adapter_model.bin", "safetensors"],
    );
    // A target module the base lacks.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| {
        c["target_modules"] = serde_json::json!(["q_proj", "w_gate"])
    });
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["target module \"w_gate\"", "not in the base"],
    );
    // The config's rank against the factors'.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["r"] = 5.into());
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &["has rank 4", "r = 5"],
    );
    // Made for another base: the module and both shapes.
    let small = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-a");
    let e = load_err(&fx("llama-plain-a"), &other, Some(small.to_str().unwrap()));
    has(
        &e,
        &[
            "model.layers.0.self_attn.q_proj",
            "[4, 48]",
            "[32, 32]",
            "another base",
        ],
    );
    // Bases that disagree; none named.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| {
        c["base_model_name_or_path"] = "org/other-base".into()
    });
    // Each base is named with the adapter that names it, flag and path.
    has(
        &load_err(d.to_str().unwrap(), &other, None),
        &[
            "different bases",
            &format!("org/other-base for --a {}", d.display()),
            "--base",
        ],
    );
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| c["base_model_name_or_path"] = Value::Null);
    has(&load_err(d.to_str().unwrap(), "base", None), &["--base"]);
    // A base the adapter names that is not there: the message says where the name came from.
    let (_t, d) = copy_adapter("llama-plain-a");
    edit_config(&d, |c| {
        c["base_model_name_or_path"] = "/nonexistent/base".into()
    });
    has(
        &load_err(d.to_str().unwrap(), "base", None),
        &["base_model_name_or_path: /nonexistent/base", "pass --base"],
    );
    // Kinds that do not pair.
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-b");
    has(
        &load_err(small.to_str().unwrap(), &other, None),
        &["is a full model", "adapter"],
    );
    has(&load_err("base", "base", None), &["both `base`"]);
    has(
        &load_err(small.to_str().unwrap(), full.to_str().unwrap(), Some("x")),
        &["--base", "full models"],
    );
}

/// Add a tensor of zeros to an adapter's safetensors file.
fn add_tensor(dir: &std::path::Path, name: &str, shape: Vec<usize>) {
    use lerpscope::engine::TensorFiles;
    let path = dir.join("adapter_model.safetensors");
    let store = TensorFiles::open(std::slice::from_ref(&path)).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = store
        .tensors
        .iter()
        .map(|(n, m)| (n.clone(), m.shape.clone(), store.read_f32(n).unwrap()))
        .collect();
    drop(store);
    let n = shape.iter().product();
    tensors.push((name.to_string(), shape, vec![0.0; n]));
    lerpscope::shapes::write_safetensors(&path, &tensors, safetensors::Dtype::F32).unwrap();
}
