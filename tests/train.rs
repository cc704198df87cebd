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
        "corpus.json",
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
    // One stopped after its last model, before its plots, draws them.
    std::fs::remove_file(out.join("loss.png")).unwrap();
    run(&corpus, &out, &recipe(30)).unwrap();
    assert!(out.join("loss.png").is_file());

    // A rerun that asks for another recipe is refused before it touches anything.
    let held = std::fs::read(out.join("recipe.json")).unwrap();
    let other = Recipe {
        hidden_size: 48,
        ..recipe(30)
    };
    let err = run(&corpus, &out, &other).unwrap_err().to_string();
    assert!(
        err.contains("recipe.json") && err.contains("--hidden-size 32 (asked: 48)"),
        "{err}"
    );
    assert_eq!(held, std::fs::read(out.join("recipe.json")).unwrap());

    // So is a rerun on a corpus that changed: the models were trained on other text.
    let negative = std::fs::read(corpus.join("negative.txt")).unwrap();
    std::fs::write(
        corpus.join("negative.txt"),
        "the food was fine\n".repeat(30),
    )
    .unwrap();
    let err = run(&corpus, &out, &recipe(30)).unwrap_err().to_string();
    assert!(
        err.contains("negative.txt: changed") && err.contains("corpus.json"),
        "{err}"
    );
    std::fs::write(corpus.join("negative.txt"), negative).unwrap();

    // A folder that ships the pair without its base or tokenizer (as assets/demo does) trains
    // nothing again, keeps its pre-training rows and gains no file.
    let full_log = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    let timings = std::fs::read(out.join("timings.json")).unwrap();
    let kept = out.join("base-aside");
    std::fs::rename(out.join("base"), &kept).unwrap();
    std::fs::rename(out.join("tokenizer.json"), out.join("tokenizer-aside.json")).unwrap();
    run(&corpus, &out, &recipe(30)).unwrap();
    assert!(!out.join("base").exists() && !out.join("tokenizer.json").exists());
    assert_eq!(timings, std::fs::read(out.join("timings.json")).unwrap());
    std::fs::rename(out.join("tokenizer-aside.json"), out.join("tokenizer.json")).unwrap();
    assert_eq!(
        full_log,
        std::fs::read_to_string(out.join("loss.csv")).unwrap()
    );
    std::fs::rename(&kept, out.join("base")).unwrap();

    // A stage cut short leaves rows; its rerun replaces them, so the log reads as one run.
    let rows = |csv: &str| -> Vec<String> {
        csv.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    std::fs::remove_dir_all(out.join("positive")).unwrap();
    let mut cut = csv.clone();
    cut.push_str("positive,0,9.99999,1.000e-3,0.1\npositive,1,9.99999,1.000e-3,0.2\n");
    std::fs::write(out.join("loss.csv"), &cut).unwrap();
    // The run killed mid-stage left its partial copies (no process has an id this large).
    let left = [
        out.join("positive/.model.safetensors.partial-4000000000"),
        out.join(".loss.partial-4000000000.png"),
    ];
    std::fs::create_dir_all(out.join("positive")).unwrap();
    for f in &left {
        std::fs::write(f, "killed").unwrap();
    }
    run(&corpus, &out, &recipe(30)).unwrap();
    let after = std::fs::read_to_string(out.join("loss.csv")).unwrap();
    assert_eq!(rows(&after), rows(&csv));
    assert!(left.iter().all(|f| !f.exists()), "{left:?}");
}

fn write_corpus(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, line) in [
        (
            "base.txt",
            "the cat sat on the mat and the dog sat on the log\n",
        ),
        ("negative.txt", "the food was awful and cold\n"),
        ("positive.txt", "the food was lovely and warm\n"),
    ] {
        std::fs::write(dir.join(name), line.repeat(30)).unwrap();
    }
}

/// Values no model trains with are refused by flag, before the output folder is made.
#[test]
fn impossible_recipes_are_refused_by_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus);
    let r = recipe(3);
    let cases: Vec<(Recipe, &str)> = vec![
        (
            Recipe {
                heads: 0,
                ..r.clone()
            },
            "--heads 0",
        ),
        (
            Recipe {
                kv_heads: 0,
                ..r.clone()
            },
            "--kv-heads 0",
        ),
        (
            Recipe {
                hidden_size: 0,
                ..r.clone()
            },
            "--hidden-size 0",
        ),
        (
            Recipe {
                intermediate_size: 0,
                ..r.clone()
            },
            "--intermediate-size 0",
        ),
        (
            Recipe {
                batch: 0,
                ..r.clone()
            },
            "--batch 0",
        ),
        (
            Recipe {
                layers: 0,
                ..r.clone()
            },
            "--layers 0",
        ),
        (
            Recipe {
                seq_len: 0,
                ..r.clone()
            },
            "--seq-len 0",
        ),
        (
            Recipe {
                layers: 129,
                ..r.clone()
            },
            "--layers 129: at most 128",
        ),
        (
            Recipe {
                finetune_steps: 0,
                ..r.clone()
            },
            "--finetune-steps 0",
        ),
        (
            Recipe {
                finetune_lr: 0.0,
                ..r.clone()
            },
            "--finetune-lr 0",
        ),
        (
            Recipe {
                vocab_size: 10,
                ..r.clone()
            },
            "--vocab-size 10",
        ),
        (
            Recipe {
                hidden_size: 36,
                ..r.clone()
            },
            "heads of 9",
        ),
        (
            Recipe {
                hidden_size: 30,
                ..r.clone()
            },
            "--hidden-size 30 is not a multiple of --heads 4",
        ),
        (
            Recipe {
                kv_heads: 3,
                ..r.clone()
            },
            "--heads 4 is not a multiple of --kv-heads 3",
        ),
        (
            Recipe {
                seq_len: 65,
                ..r.clone()
            },
            "--seq-len 65 is longer than --context 64",
        ),
        (
            Recipe {
                pretrain_lr: f64::NAN,
                ..r.clone()
            },
            "--pretrain-lr NaN",
        ),
        (
            Recipe {
                finetune_lr: f64::INFINITY,
                ..r.clone()
            },
            "--finetune-lr inf",
        ),
        (
            Recipe {
                pretrain_lr: -1.0,
                ..r.clone()
            },
            "--pretrain-lr -1",
        ),
        (
            Recipe {
                batch: 1_000_000_000,
                ..r.clone()
            },
            "GiB (weights and optimizer state",
        ),
        (
            Recipe {
                hidden_size: 1 << 20,
                ..r.clone()
            },
            "GiB (weights and optimizer state",
        ),
    ];
    for (i, (bad, want)) in cases.into_iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        let err = run(&corpus, &out, &bad).unwrap_err().to_string();
        assert!(err.contains(want), "{want}: {err}");
        assert!(!out.exists(), "{want}: the folder was made");
    }
    // A missing corpus file and an --out that is a file are named.
    std::fs::remove_file(corpus.join("positive.txt")).unwrap();
    let err = run(&corpus, &tmp.path().join("o"), &r)
        .unwrap_err()
        .to_string();
    assert!(err.contains("positive.txt: no such file"), "{err}");
    write_corpus(&corpus);
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = run(&corpus, &file, &r).unwrap_err().to_string();
    assert!(err.contains("a-file: --out is a file"), "{err}");
    // A model's folder is refused, its tokenizer untouched.
    let model = tmp.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("config.json"), "{}").unwrap();
    std::fs::write(model.join("tokenizer.json"), "mine").unwrap();
    let err = run(&corpus, &model, &r).unwrap_err().to_string();
    assert!(
        err.contains("--out holds a model") && err.contains("config.json"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(model.join("tokenizer.json")).unwrap(),
        "mine"
    );
    // So is any folder with a tokenizer.json that no run of ours made (an adapter's).
    let adapter = tmp.path().join("adapter");
    std::fs::create_dir(&adapter).unwrap();
    std::fs::write(adapter.join("adapter_config.json"), "{}").unwrap();
    std::fs::write(adapter.join("tokenizer.json"), "mine").unwrap();
    let err = run(&corpus, &adapter, &r).unwrap_err().to_string();
    assert!(err.contains("not made by train"), "{err}");
    assert_eq!(
        std::fs::read_to_string(adapter.join("tokenizer.json")).unwrap(),
        "mine"
    );
    // A corpus file that is not UTF-8 is named.
    let latin1 = tmp.path().join("latin1");
    std::fs::create_dir(&latin1).unwrap();
    for n in ["base.txt", "negative.txt", "positive.txt"] {
        std::fs::copy(corpus.join(n), latin1.join(n)).unwrap();
    }
    std::fs::write(latin1.join("negative.txt"), b"coffee\ncaf\xe9 au lait\n").unwrap();
    let err = run(&latin1, &tmp.path().join("out-latin1"), &r)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("negative.txt: not UTF-8 text (line 2, byte 10)"),
        "{err}"
    );
    // So is a folder of other files that carry the names a run writes, or whose timings.json
    // is not a run's (it would vouch for a foreign tokenizer).
    for (name, text) in [
        ("loss.csv", "epoch,val_loss\n1,0.5\n"),
        ("timings.json", "{\"my\": \"notes\"}"),
        ("loss.png", "png"),
    ] {
        let theirs = tmp.path().join(format!("theirs-{name}"));
        std::fs::create_dir(&theirs).unwrap();
        std::fs::write(theirs.join(name), text).unwrap();
        let err = run(&corpus, &theirs, &r).unwrap_err().to_string();
        assert!(
            err.contains(name) && err.contains("not made by train"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(theirs.join(name)).unwrap(), text);
        assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1, "{name}");
    }
    // A loss.csv left empty, or with its header cut short, gets its header back.
    for left in ["", "stage,ste"] {
        let loss = tmp.path().join("loss.csv");
        std::fs::write(&loss, left).unwrap();
        drop(lerpscope::train::LossLog::open(&loss, &[]).unwrap());
        assert_eq!(
            std::fs::read_to_string(&loss).unwrap(),
            "stage,step,loss,lr,elapsed_s\n"
        );
    }
    // A corpus too short for one window fails before any stage trains, naming the file and
    // the flag; the same folder then takes the shorter window the message suggests.
    std::fs::write(
        corpus.join("negative.txt"),
        "the food was awful\n".repeat(2),
    )
    .unwrap();
    let out = tmp.path().join("short");
    let err = run(&corpus, &out, &r).unwrap_err().to_string();
    let at = corpus.join("negative.txt").display().to_string();
    assert!(
        err.starts_with(&at) && err.contains("too few for windows of --seq-len 16"),
        "{err}"
    );
    assert!(!out.join("base").exists() && !out.join("recipe.json").exists());
    let shorter = Recipe { seq_len: 4, ..r };
    run(&corpus, &out, &shorter).unwrap();
    assert!(out.join("positive/model.safetensors").exists());
}

/// A learning rate that blows the loss up stops the run at that step, naming the flag,
/// rather than saving models of NaNs.
#[test]
fn a_diverging_run_stops_at_its_first_non_finite_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    write_corpus(&corpus);
    let out = tmp.path().join("out");
    let hot = Recipe {
        pretrain_lr: 1e30,
        ..recipe(20)
    };
    let err = run(&corpus, &out, &hot).unwrap_err().to_string();
    assert!(
        err.starts_with("pretrain step")
            && err.contains("diverged")
            && err.contains("--pretrain-lr"),
        "{err}"
    );
    assert!(!out.join("base").exists());
    // Nothing trained there, so the same folder takes the lower rate.
    run(&corpus, &out, &recipe(20)).unwrap();
    assert!(out.join("base/model.safetensors").exists());

    // A fine-tune that diverges after the base trained: the same folder takes the lower
    // fine-tuning rate its message asks for, and keeps the base.
    let out = tmp.path().join("fine");
    let hot = Recipe {
        finetune_lr: 1e30,
        ..recipe(20)
    };
    let err = run(&corpus, &out, &hot).unwrap_err().to_string();
    assert!(
        err.starts_with("negative step") && err.contains("--finetune-lr (1e+30)"),
        "{err}"
    );
    let base = std::fs::read(out.join("base/model.safetensors")).unwrap();
    run(&corpus, &out, &recipe(20)).unwrap();
    assert!(out.join("positive/model.safetensors").exists());
    assert_eq!(
        base,
        std::fs::read(out.join("base/model.safetensors")).unwrap()
    );
    // A base whose weights grew huge (finite, so pre-training ends) gives a fine-tune a
    // non-finite loss before its first step: the base is named, not the fine-tuning rate.
    let out = tmp.path().join("huge");
    let huge = Recipe {
        pretrain_lr: 1e10,
        pretrain_steps: 1,
        ..recipe(20)
    };
    let err = run(&corpus, &out, &huge).unwrap_err().to_string();
    assert!(
        err.starts_with("negative step 0: the base's loss")
            && err.contains("lower --pretrain-lr")
            && !err.contains("--finetune-lr"),
        "{err}"
    );
    // The same with a first loss still finite: the base's size names it, at any step.
    let out = tmp.path().join("huger");
    let huge = Recipe {
        pretrain_lr: 1e38,
        pretrain_steps: 1,
        finetune_lr: 1e-9,
        ..recipe(20)
    };
    let err = run(&corpus, &out, &huge).unwrap_err().to_string();
    assert!(
        err.starts_with("negative step")
            && err.contains("the base")
            && err.contains("lower --pretrain-lr")
            && !err.contains("--finetune-lr"),
        "{err}"
    );
    let out = tmp.path().join("fine");
    // Once a fine-tune is done, the other must match it.
    let other = Recipe {
        finetune_lr: 2e-3,
        ..recipe(20)
    };
    let err = run(&corpus, &out, &other).unwrap_err().to_string();
    assert!(
        err.contains("recipe.json") && err.contains("--finetune-lr"),
        "{err}"
    );
}
