//! The shipped demo pair: it loads like any pair, and α moves its sentiment the right way.

use lerpscope::engine::{
    Alpha, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
};
use lerpscope::eval::sweep::{PplRef, Sweep, SweepConfig};
use std::path::PathBuf;

fn demo(side: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/demo")
        .join(side)
        .display()
        .to_string()
}

#[test]
fn the_demo_pair_loads_and_alpha_moves_sentiment() {
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let mut engine = Engine::load(&demo("negative"), &demo("positive"), &opts).unwrap();
    assert_eq!(engine.info.architecture, "LlamaForCausalLM");
    assert!(engine.info.params > 2_000_000 && engine.info.params < 10_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let prompts: Vec<String> = include_str!("../assets/prompts.txt")
        .lines()
        .map(String::from)
        .collect();
    let sweep = Sweep {
        config: SweepConfig {
            recipe: None,
            a: demo("negative"),
            b: demo("positive"),
            alphas: vec![Alpha::A, Alpha::B],
            prompts,
            samples: 2,
            params: GenerationParams {
                max_tokens: 24,
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 0.9,
                    top_k: 0,
                    repeat_penalty: 1.0,
                    seed: 7,
                },
                ignore_eos: false,
                token_info: false,
            },
            ppl_ref: PplRef::Blend,
            classifier: None,
            method: Default::default(),
            layers: None,
            plane: None,
            alpha_mode: Default::default(),
            held: None,
            seeds: lerpscope::eval::grid::Seeds::Mixed,
            prompt_tokens: None,
            judges: None,
            endpoints: None,
        },
        mode: lerpscope::engine::ColumnsMode::Auto,
        out: tmp.path().join("sweep"),
        progress: false,
        tokens_per_s: Default::default(),
    };
    let s = sweep.run(&mut engine).unwrap();
    assert!(
        s[0].vader.mean < s[1].vader.mean,
        "sentiment at α = 0 ({}) should be below α = 1 ({})",
        s[0].vader.mean,
        s[1].vader.mean
    );
    assert!(s[0].vader.mean < 0.0 && s[1].vader.mean > 0.0, "{s:?}");
}
