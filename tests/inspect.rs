//! Per-token data: the probabilities the token loop records, text scoring against Hugging Face
//! transformers, forks from a given token, and the α-scrub, each held to a plain computation.

use lerpscope::engine::tokens::{log_softmax, reference_info as reference};
use lerpscope::engine::{
    Alpha, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
};
use lerpscope::shapes::{write_tiny_pair, Arch};
use serde_json::Value;
use std::path::PathBuf;

fn engine(arch: Arch) -> (tempfile::TempDir, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let e = Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap();
    (tmp, e)
}

fn sampled(max_tokens: usize, token_info: bool) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.9,
            repeat_penalty: 1.3,
            seed: 11,
            ..Default::default()
        },
        ignore_eos: true,
        token_info,
    }
}

const PROMPT: [u32; 4] = [5, 17, 42, 8];

/// Every recorded token against the log-softmax of a fresh forward pass over its prefix, with
/// the penalty and the nucleus on (the record is of the model, not of the sampler).
fn token_info_matches_a_fresh_pass(arch: Arch) {
    let (_tmp, mut e) = engine(arch);
    e.set_alpha(0.4).unwrap();
    let g = &e
        .generate_steps(
            &PROMPT,
            &[],
            None,
            &sampled(16, true),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap()[0];
    assert_eq!(g.tokens.len(), g.token_ids.len());
    let plain = &e
        .generate_steps(
            &PROMPT,
            &[],
            None,
            &sampled(16, false),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap()[0];
    assert_eq!(plain.token_ids, g.token_ids, "recording changes nothing");
    assert!(plain.tokens.is_empty());
    let mut prefix = PROMPT.to_vec();
    for (info, &id) in g.tokens.iter().zip(&g.token_ids) {
        let want = reference(&e.logits(&prefix).unwrap(), id);
        assert_eq!(info.id, id);
        assert!((info.logprob - want.logprob).abs() < 1e-4, "{arch:?}");
        assert!((info.entropy - want.entropy).abs() < 1e-4, "{arch:?}");
        let ids = |t: &lerpscope::engine::TokenInfo| t.top.map(|a| a.id);
        assert_eq!(ids(info), ids(&want), "{arch:?}: alternatives");
        prefix.push(id);
    }
}

#[test]
fn llama_token_info_matches_a_fresh_pass() {
    token_info_matches_a_fresh_pass(Arch::Llama);
}

#[test]
fn gpt2_token_info_matches_a_fresh_pass() {
    token_info_matches_a_fresh_pass(Arch::Gpt2);
}

#[test]
fn batched_rows_record_what_sequential_runs_record() {
    let (_tmp, mut e) = engine(Arch::Llama);
    let alphas = [Alpha::new(-0.3).unwrap(), Alpha::new(0.6).unwrap()];
    let rows = e
        .generate_steps(
            &PROMPT,
            &[],
            Some(&alphas),
            &sampled(12, true),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap();
    for (alpha, row) in alphas.iter().zip(&rows) {
        e.set_alpha(*alpha).unwrap();
        let one = &e
            .generate_steps(
                &PROMPT,
                &[],
                None,
                &sampled(12, true),
                &|_| false,
                &mut |_, _| {},
            )
            .unwrap()[0];
        assert_eq!(row.token_ids, one.token_ids);
        for (x, y) in row.tokens.iter().zip(&one.tokens) {
            assert!((x.logprob - y.logprob).abs() < 1e-4);
        }
    }
}

/// A fork from given tokens goes on as the full run did: the same random stream, the same
/// penalty history, steps reported for the given tokens without probabilities.
#[test]
fn a_fork_from_given_tokens_continues_the_same_stream() {
    let (_tmp, mut e) = engine(Arch::Llama);
    e.set_alpha(0.5).unwrap();
    let whole = &e
        .generate_steps(
            &PROMPT,
            &[],
            None,
            &sampled(14, true),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap()[0];
    let given = &whole.token_ids[..5];
    let mut steps = Vec::new();
    let fork = &e
        .generate_steps(
            &PROMPT,
            given,
            None,
            &sampled(14, true),
            &|_| false,
            &mut |_, s| steps.push((s.id, s.info.is_some())),
        )
        .unwrap()[0];
    assert_eq!(fork.token_ids, whole.token_ids);
    assert_eq!(fork.tokens, whole.tokens[5..]);
    assert!(steps[..5].iter().all(|&(id, info)| id.is_some() && !info));
    assert!(steps[5..14].iter().all(|&(_, info)| info));
}

#[test]
fn the_scrub_equals_a_softmax_at_each_alpha() {
    let (_tmp, mut e) = engine(Arch::Gpt2);
    let alphas: Vec<Alpha> = (0..25)
        .map(|i| Alpha::new(-1.0 + 3.0 * i as f64 / 24.0).unwrap())
        .collect();
    let token = 77;
    let got = e.scrub(&PROMPT, token, &alphas).unwrap();
    for (alpha, p) in alphas.iter().zip(got) {
        e.set_alpha(*alpha).unwrap();
        let want = log_softmax(&e.logits(&PROMPT).unwrap())[token as usize].exp();
        assert!((p as f64 - want).abs() < 1e-5, "α {alpha}: {p} vs {want}");
    }
    let err = e.scrub(&[], token, &alphas).unwrap_err().to_string();
    assert!(err.contains("prefix"), "{err}");
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `score`'s numbers against transformers' log-softmax at every position, for every golden
/// pair (both architectures, every RoPE variant) at α = 0, 0.3 and 1.
#[test]
fn text_log_probabilities_equal_transformers() {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let text = exp["score_text"].as_str().unwrap();
    let scores = exp["scores"].as_object().unwrap();
    assert_eq!(scores.len(), 6);
    for (arch, by_alpha) in scores {
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let mut e = Engine::load(
            &fixture(&format!("tiny-{arch}-a")),
            &fixture(&format!("tiny-{arch}-b")),
            &opts,
        )
        .unwrap();
        for alpha in ["0.0", "0.3", "1.0"] {
            let want = &by_alpha[alpha];
            e.set_alpha(alpha.parse::<f64>().unwrap()).unwrap();
            let ids = e.encode_text(text).unwrap();
            let want_ids: Vec<u32> = serde_json::from_value(want["token_ids"].clone()).unwrap();
            assert_eq!(ids, want_ids, "{arch}: tokens");
            let got = e.token_logprobs(&ids).unwrap();
            let want: Vec<Option<f64>> = serde_json::from_value(want["logprobs"].clone()).unwrap();
            assert_eq!(want[0], None);
            assert_eq!(got.len(), want.len() - 1);
            for (i, (g, w)) in got.iter().zip(&want[1..]).enumerate() {
                let w = w.unwrap();
                assert!(
                    (*g as f64 - w).abs() < 1e-3,
                    "{arch} α={alpha} token {}: {g} vs {w}",
                    i + 1
                );
            }
        }
    }
}

#[test]
fn a_text_longer_than_the_context_is_refused() {
    let (_tmp, e) = engine(Arch::Llama);
    let ids = vec![3u32; e.config().max_positions() + 1];
    let err = e.token_logprobs(&ids).unwrap_err().to_string();
    assert!(err.contains("context is"), "{err}");
}

fn lerpscope(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(args)
        .output()
        .expect("run lerpscope")
}

fn json_lines(out: &std::process::Output) -> Vec<Value> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `lerpscope score --json` on a golden pair: the schema of the issue, and transformers'
/// numbers.
#[test]
fn score_json_follows_the_schema_and_equals_transformers() {
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, exp["score_text"].as_str().unwrap()).unwrap();
    let (a, b) = (fixture("tiny-gpt2-a"), fixture("tiny-gpt2-b"));
    let out = lerpscope(
        &[
            "score", "--a", &a, "--b", &b, "--alphas", "0,0.3,1", "--device", "cpu", "--json",
            "--text",
        ]
        .into_iter()
        .chain([text.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    for (line, alpha) in lines.iter().zip(["0.0", "0.3", "1.0"]) {
        let want = &exp["scores"]["gpt2"][alpha];
        assert_eq!(line["token_ids"], want["token_ids"]);
        let n = want["token_ids"].as_array().unwrap().len();
        assert_eq!(line["tokens"].as_array().unwrap().len(), n);
        assert!(line["tokens"][0].is_string());
        let (got, want) = (
            line["logprobs"].as_array().unwrap(),
            want["logprobs"].as_array().unwrap(),
        );
        assert!(got[0].is_null());
        let mut nll = 0.0;
        for (g, w) in got[1..].iter().zip(&want[1..]) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() < 1e-3, "α {alpha}: {g} vs {w}");
            nll -= g;
        }
        assert!((line["nll"].as_f64().unwrap() - nll).abs() < 1e-3);
        let ppl = (nll / (n - 1) as f64).exp();
        assert!((line["perplexity"].as_f64().unwrap() / ppl - 1.0).abs() < 1e-4);
    }
    // The plain output names the most contested tokens.
    let out = lerpscope(&[
        "score",
        "--a",
        &a,
        "--b",
        &b,
        "--alphas",
        "0,1",
        "--device",
        "cpu",
        "--text",
        text.to_str().unwrap(),
    ]);
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(
        plain.contains("perplexity") && plain.contains("disagree most"),
        "{plain}"
    );
    // On a plane each line gives β too (and γ with a fourth endpoint): the whole point.
    let args = [
        "--a", &a, "--b", &b, "--c", &a, "--beta", "0.25", "--d", &b, "--gamma", "-0.5",
        "--alphas", "0.5", "--device", "cpu",
    ];
    let text = text.to_str().unwrap();
    let scored = json_lines(&lerpscope(
        &[&["score", "--json", "--text", text][..], &args].concat(),
    ));
    let fluent = json_lines(&lerpscope(
        &[&["perplexity", "--json", "--file", text][..], &args].concat(),
    ));
    for line in [&scored[0], &fluent[0]] {
        assert_eq!(
            (line["beta"].as_f64(), line["gamma"].as_f64()),
            (Some(0.25), Some(-0.5))
        );
    }
    let out = lerpscope(&[&["score", "--text", text][..], &args].concat());
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(
        plain.contains("α =    0.5 (β = 0.25, γ = -0.5): NLL"),
        "{plain}"
    );
}

#[test]
fn score_refuses_a_missing_file_and_an_overlong_text_in_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("missing.txt");
    let out = lerpscope(&["score", "--text", missing.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--text") && err.contains("missing.txt"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let long = tmp.path().join("long.txt");
    std::fs::write(&long, "word ".repeat(5000)).unwrap();
    let out = lerpscope(&["score", "--text", long.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("context is"), "{err}");
    // The length does not depend on α, so no α is named.
    assert!(!err.contains("α ="), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}

#[test]
fn generate_logprobs_adds_the_per_token_arrays() {
    let out = lerpscope(&[
        "generate",
        "--alphas",
        "0,1",
        "--max-tokens",
        "6",
        "--json",
        "--logprobs",
        "--ignore-eos",
    ]);
    for line in json_lines(&out) {
        let n = line["token_ids"].as_array().unwrap().len();
        assert_eq!(n, 6);
        for key in ["tokens", "logprobs", "entropy", "top"] {
            assert_eq!(line[key].as_array().unwrap().len(), n, "{key}");
        }
        let top = line["top"][0].as_array().unwrap();
        assert_eq!(top.len(), 5);
        assert!(top[0]["token"].is_string() && top[0]["logprob"].is_f64());
        assert!(line["logprobs"][0].as_f64().unwrap() <= 0.0);
    }
    let plain = lerpscope(&["generate", "--alphas", "0", "--max-tokens", "3", "--json"]);
    for line in json_lines(&plain) {
        assert!(line.get("logprobs").is_none() && line.get("top").is_none());
    }
}
