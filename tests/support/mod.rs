//! Checks shared by the tests that hold lerpscope to fixtures recorded with transformers.

use lerpscope::engine::{Engine, GenerationParams, SamplingParams};
use serde_json::Value;
use std::sync::atomic::AtomicBool;

/// The engine, at its current α, against one recorded run per prompt (`prompt_ids`, last-position
/// `logits`, `greedy` tokens): the same token ids, logits within 1e-4, greedy tokens exactly.
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
