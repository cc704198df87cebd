//! A miniature of the demo pair's recipe, so it does not rot: a tiny corpus, a tiny model, a
//! few steps of each stage, then the results load as an ordinary pair.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use lerpscope::train::{run, Recipe};
use std::sync::atomic::AtomicBool;

fn recipe(steps: usize) -> Recipe {
    Recipe {
        vocab_size: 300,
        hidden_size: 32,
        intermediate_size: 64,
        layers: 1,
        heads: 4,
        kv_heads: 2,
        context: 64,
        seq_len: 16,
        batch: 4,
        pretrain_steps: steps,
        pretrain_lr: 1e-2,
        finetune_steps: 3,
        finetune_lr: 1e-3,
        warmup: 2,
        seed: 0,
    }
}

#[test]
fn the_recipe_in_miniature() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(&corpus).unwrap();
    let base = "the cat sat on the mat and the dog sat on the log\n".repeat(60);
    std::fs::write(corpus.join("base.txt"), &base).unwrap();
    std::fs::write(
        corpus.join("negative.txt"),
        "the food was awful and cold\n".repeat(30),
    )
    .unwrap();
    std::fs::write(
        corpus.join("positive.txt"),
        "the food was lovely and warm\n".repeat(30),
    )
    .unwrap();
    let out = tmp.path().join("out");
    run(&corpus, &out, &recipe(30)).unwrap();

    for f in [
        "tokenizer.json",
        "loss.csv",
        "loss.png",
        "timings.json",
        "recipe.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    for side in ["base", "negative", "positive"] {
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert!(out.join(side).join(f).is_file(), "{side}/{f} missing");
        }
        // The weights are as readable as the rest (they were private: 0600).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |f: &str| {
                let m = std::fs::metadata(out.join(side).join(f)).unwrap();
                m.permissions().mode()
            };
            assert_eq!(mode("model.safetensors"), mode("config.json"), "{side}");
        }
    }
    // Pre-training learns: the last losses are well below the first.
    let csv = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let pre: Vec<f64> = csv
        .lines()
        .filter(|l| l.starts_with("pretrain,"))
        .map(|l| l.split(',').nth(2).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pre.len(), 30);
    let first: f64 = pre[..3].iter().sum::<f64>() / 3.0;
    let last: f64 = pre[27..].iter().sum::<f64>() / 3.0;
    assert!(last < 0.7 * first, "loss {first} → {last}");
    // Both fine-tunes ran the same number of steps.
    for side in ["negative", "positive"] {
        assert_eq!(
            csv.lines()
                .filter(|l| l.starts_with(&format!("{side},")))
                .count(),
            3
        );
    }

    // The results are an ordinary pair.
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let neg = out.join("negative").display().to_string();
    let pos = out.join("positive").display().to_string();
    let mut e = Engine::load(&neg, &pos, &opts).unwrap();
    e.set_alpha(0.5).unwrap();
    let params = GenerationParams {
        max_tokens: 5,
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
        ignore_eos: false,
        token_info: false,
    };
    e.generate("the food", &params, &AtomicBool::new(false), &mut |_| {})
        .unwrap();

    // A rerun finds every stage done and changes nothing.
    let before = std::fs::read(out.join("negative/model.safetensors")).unwrap();
    run(&corpus, &out, &recipe(30)).unwrap();
    assert_eq!(
        before,
        std::fs::read(out.join("negative/model.safetensors")).unwrap()
    );
}
