//! PEFT LoRA adapters as endpoints, against PEFT itself: tests/fixtures/make_adapters.py made
//! tiny bases and adapter pairs with PEFT and recorded, at five alphas, the logits and greedy
//! tokens of the blend of PEFT's merged models (tests/fixtures/adapters/expected.json). Both
//! execution paths must match them: merged (the working copy re-merged at each α) and factored
//! (W0 and the low-rank updates, each batch row at its own α).

use lerpscope::engine::{
    Alpha, ColumnsMode, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

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

fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "logits over the whole vocabulary");
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn greedy(n: usize) -> GenerationParams {
    GenerationParams {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
    }
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
            .run_rows(&ids, Some(&mix), &greedy(n), &|_| false, &mut |_, _| {})
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
    let alphas: Vec<Alpha> = [-0.5, 0.0, 0.3, 0.5, 1.0, 1.5]
        .iter()
        .map(|&a| Alpha::new(a).unwrap())
        .collect();
    let params = GenerationParams {
        max_tokens: 16,
        sampling: SamplingParams {
            seed: 3,
            ..Default::default()
        },
    };
    e.set_columns_mode(ColumnsMode::Batched);
    let rows = e
        .generate_columns(
            "The movie was",
            &alphas,
            &params,
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap();
    for (alpha, row) in alphas.iter().zip(&rows) {
        e.set_alpha(*alpha).unwrap();
        let one = e
            .generate(
                "The movie was",
                &params,
                &AtomicBool::new(false),
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(row.token_ids, one.token_ids, "α = {alpha}");
    }
}
