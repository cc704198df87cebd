//! The engine against Hugging Face transformers: tiny random pairs made and run by
//! tests/fixtures/make_fixtures.py, whose logits and greedy tokens at several alphas (the
//! blend done on torch state dicts) are checked in as tests/fixtures/expected.json. The pairs
//! cover untied and tied (SmolLM2-style) Llama, Llama 3.1, linear and dynamic RoPE scaling, and
//! GPT-2; every greedy reference uses several distinct tokens.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn check_arch(arch: &str) {
    let exp = expected();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let mut engine = Engine::load(
        &fixture(&format!("tiny-{arch}-a")),
        &fixture(&format!("tiny-{arch}-b")),
        &opts,
    )
    .unwrap();
    let prompts: Vec<String> = serde_json::from_value(exp["prompts"].clone()).unwrap();
    let new_tokens = exp["new_tokens"].as_u64().unwrap() as usize;
    let models = exp["models"][arch].as_object().unwrap();
    for (alpha, runs) in models {
        engine.set_alpha(alpha.parse::<f64>().unwrap()).unwrap();
        for (prompt, run) in prompts.iter().zip(runs.as_array().unwrap()) {
            let ids: Vec<u32> = serde_json::from_value(run["prompt_ids"].clone()).unwrap();
            assert_eq!(
                engine.encode(prompt).unwrap(),
                ids,
                "tokenisation of {prompt:?}"
            );
            let want: Vec<f32> = serde_json::from_value(run["logits"].clone()).unwrap();
            let got = engine.logits(&ids).unwrap();
            assert_eq!(
                got.len(),
                want.len(),
                "{arch}: logits over the whole vocabulary"
            );
            let worst = want
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-4,
                "{arch} α={alpha} {prompt:?}: max |Δlogit| = {worst}"
            );

            let greedy: Vec<u32> = serde_json::from_value(run["greedy"].clone()).unwrap();
            assert_eq!(greedy.len(), new_tokens);
            let mut generator = engine.generator();
            generator.eos = &[]; // transformers ran without an EOS stop
            let params = GenerationParams {
                max_tokens: new_tokens,
                sampling: SamplingParams {
                    temperature: 0.0,
                    repeat_penalty: 1.0,
                    ..Default::default()
                },
                ignore_eos: false,
                token_info: false,
            };
            let g = generator
                .run(prompt, &params, &AtomicBool::new(false), &mut |_| {})
                .unwrap();
            assert_eq!(
                g.token_ids, greedy,
                "{arch} α={alpha} {prompt:?}: greedy tokens"
            );
        }
    }
}

#[test]
fn llama_matches_transformers_at_every_alpha() {
    check_arch("llama");
}

#[test]
fn gpt2_matches_transformers_at_every_alpha() {
    check_arch("gpt2");
}

#[test]
fn tied_gqa_llama_like_smollm2_matches_transformers() {
    check_arch("llama-tied");
}

#[test]
fn llama3_rope_scaling_matches_transformers() {
    check_arch("llama3-rope");
}

#[test]
fn linear_rope_scaling_matches_transformers() {
    check_arch("llama-linear");
}

#[test]
fn dynamic_rope_scaling_matches_transformers_past_the_original_context() {
    check_arch("llama-dynamic");
}

#[test]
fn every_fixture_pair_is_checked() {
    let exp = expected();
    let archs: Vec<&String> = exp["models"].as_object().unwrap().keys().collect();
    assert_eq!(archs.len(), 6, "{archs:?}: add a test for each pair");
}
