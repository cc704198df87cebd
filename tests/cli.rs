//! The real binary: `generate --json` and `bench blend --json` on tiny pairs.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use lerpscope::fixtures::{write_tiny_pair, Arch};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn lerpscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(args)
        .output()
        .expect("run lerpscope")
}

fn greedy_alone(path: &str, prompt: &str, n: usize) -> String {
    // The same pair loaded with A = B = path: α is irrelevant, so this is the model alone.
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let e = Engine::load(path, path, &opts).unwrap();
    let params = GenerationParams {
        max_tokens: n,
        sampling: SamplingParams {
            temperature: 0.0,
            ..Default::default()
        },
    };
    e.generate(prompt, &params, &AtomicBool::new(false), &mut |_| {})
        .unwrap()
        .text
}

#[test]
fn generate_json_follows_the_schema_for_both_architectures() {
    for arch in [Arch::Llama, Arch::Gpt2] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_tiny_pair(&a, &b, arch).unwrap();
        let (a, b) = (a.display().to_string(), b.display().to_string());
        let out = lerpscope(&[
            "generate",
            "--a",
            &a,
            "--b",
            &b,
            "--alphas",
            "0,0.5,1",
            "--prompt",
            "The movie",
            "--max-tokens",
            "10",
            "--temperature",
            "0",
            "--device",
            "cpu",
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<Value> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3);
        for (line, alpha) in lines.iter().zip([0.0, 0.5, 1.0]) {
            assert_eq!(line["alpha"].as_f64(), Some(alpha));
            assert_eq!(line["prompt"], "The movie");
            assert!(line["text"].is_string());
            assert!(line["token_ids"]
                .as_array()
                .unwrap()
                .iter()
                .all(Value::is_u64));
            assert!(line["tokens_per_s"].as_f64().unwrap() >= 0.0);
            assert!(line["blend_ms"].as_f64().unwrap() >= 0.0);
        }
        assert_eq!(
            lines[0]["text"],
            greedy_alone(&a, "The movie", 10),
            "{arch:?} α=0 vs A alone"
        );
        assert_eq!(
            lines[2]["text"],
            greedy_alone(&b, "The movie", 10),
            "{arch:?} α=1 vs B alone"
        );
    }
}

#[test]
fn bad_flags_fail_with_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for (flag, value, needle) in [
        ("--alphas", "0,1e12", "absurd"),
        ("--device", "tpu", "--device"),
        ("--dtype", "f8", "--dtype"),
        ("--top-p", "1.5", "--top-p"),
    ] {
        let out = lerpscope(&[
            "generate", "--a", &a, "--b", &b, "--prompt", "x", flag, value,
        ]);
        assert!(!out.status.success());
        let err = String::from_utf8(out.stderr).unwrap();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{flag}: {err}");
    }
}

#[test]
fn bench_blend_reports_both_bandwidths() {
    let out = lerpscope(&[
        "bench", "blend", "--params", "1000003", "--iters", "3", "--json", "--device", "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["params"], 1000003);
    for k in ["blend_gb_s", "copy_gb_s", "ratio", "blend_ms", "copy_ms"] {
        assert!(v[k].as_f64().unwrap() > 0.0, "{k}");
    }
}
