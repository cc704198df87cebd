//! Checks shared by the tests that hold lerpscope to fixtures recorded with transformers.

use lerpscope::engine::{Engine, GenerationParams, SamplingParams};
use serde_json::Value;
use std::sync::atomic::AtomicBool;

/// The engine, at its current α, against one recorded run per prompt (`prompt_ids`, last-position
/// `logits`, `greedy` tokens): the same token ids, logits within 1e-4, greedy tokens exactly.
#[allow(dead_code)]
pub fn assert_runs_match(engine: &Engine, prompts: &[&str], runs: &Value, what: &str) {
    for (prompt, run) in prompts.iter().zip(runs.as_array().expect("runs")) {
        let ids: Vec<u32> = serde_json::from_value(run["prompt_ids"].clone()).unwrap();
        assert_eq!(engine.encode(prompt).unwrap(), ids, "{what}: {prompt:?}");
        let want: Vec<f32> = serde_json::from_value(run["logits"].clone()).unwrap();
        let got = engine.logits(&ids).unwrap();
        let worst = want
            .iter()
            .zip(&got)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 1e-4, "{what}: max |Δlogit| {worst}");
        let greedy: Vec<u32> = serde_json::from_value(run["greedy"].clone()).unwrap();
        let mut generator = engine.generator();
        generator.eos = &[];
        let params = GenerationParams {
            max_tokens: greedy.len(),
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
        assert_eq!(g.token_ids, greedy, "{what}: greedy tokens");
    }
}

/// The largest gap between two rows of logits over the whole vocabulary.
#[allow(dead_code)]
pub fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len(), "logits over the whole vocabulary");
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Greedy decoding of `n` tokens with no repetition penalty.
#[allow(dead_code)]
pub fn greedy(n: usize) -> GenerationParams {
    GenerationParams {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
        ignore_eos: false,
        token_info: false,
    }
}

/// Columns at `alphas` as one batch (seeded sampling) equal generating at each α alone,
/// token for token (`engine` is left batched, at the last α).
#[allow(dead_code)]
pub fn assert_batched_columns_equal_each_alone(engine: &mut Engine, alphas: &[f64], what: &str) {
    use lerpscope::engine::{Alpha, ColumnsMode};
    engine.set_columns_mode(ColumnsMode::Batched).unwrap();
    let alphas: Vec<Alpha> = alphas.iter().map(|&a| Alpha::new(a).unwrap()).collect();
    let params = GenerationParams {
        max_tokens: 16,
        sampling: SamplingParams {
            seed: 3,
            ..Default::default()
        },
        ignore_eos: false,
        token_info: false,
    };
    let prompt = "The movie was";
    let rows = engine
        .generate_columns(prompt, &alphas, &params, &|_| false, &mut |_, _| {})
        .unwrap();
    for (alpha, row) in alphas.iter().zip(&rows) {
        engine.set_alpha(*alpha).unwrap();
        let one = engine
            .generate(prompt, &params, &AtomicBool::new(false), &mut |_| {})
            .unwrap();
        assert_eq!(row.token_ids, one.token_ids, "{what}: α = {alpha}");
    }
}
