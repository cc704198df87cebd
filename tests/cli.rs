//! The real binary: `generate --json` and `bench blend --json` on tiny pairs.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use lerpscope::shapes::{write_tiny_pair, Arch};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn lerpscope(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(args)
        .output()
        .expect("run lerpscope")
}

/// `out` failed with one line on stderr that holds every needle.
fn refused_in_one_line(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{needles:?}: {err}");
    assert_eq!(err.trim().lines().count(), 1, "{needles:?}: {err}");
    assert!(
        needles.iter().all(|n| err.contains(n)),
        "{needles:?}: {err}"
    );
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
        ignore_eos: false,
        token_info: false,
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
            let n = line["token_ids"].as_array().unwrap().len();
            let stop = if n < 10 { "eos" } else { "max_tokens" };
            assert_eq!(line["stop"], stop, "{line}");
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
    // An α that a layer rule takes out of reach is refused before any α's output, by
    // generate, score and perplexity alike (score blamed --text, after printing).
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "the film was fine").unwrap();
    let text = text.display().to_string();
    for (command, input) in [
        ("generate", ["--prompt", "x"]),
        ("score", ["--text", text.as_str()]),
        ("perplexity", ["--file", text.as_str()]),
    ] {
        let out = lerpscope(
            &[
                &[command, "--a", &a, "--b", &b, "--json"][..],
                &["--layer-alphas", "mlp=500;1", "--alphas", "0.5,3"],
                &input,
            ]
            .concat(),
        );
        refused_in_one_line(&out, &["--alphas: α = 3 moves a tensor by 1500"]);
        assert!(out.stdout.is_empty(), "{command}: printed before refusing");
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

#[test]
fn bench_generate_and_columns_report_their_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let pair = [
        "--a", &a, "--b", &b, "--device", "cpu", "--iters", "2", "--tokens", "6",
    ];
    let json = |out: std::process::Output| -> Value {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let g = json(lerpscope(
        &[&["bench", "generate", "--json"], &pair[..]].concat(),
    ));
    assert_eq!(g["bench"], "generate");
    assert_eq!(g["tokens"], 6);
    assert_eq!(g["temperature"], 0.8, "as written, not an f32 widened");
    assert!(g["ttft_ms"].as_f64().unwrap() > g["blend_ms"].as_f64().unwrap());
    assert!(g["decode_tok_s"].as_f64().unwrap() > 0.0);
    assert!(g["peak_rss_bytes"].as_u64().unwrap() > g["model_bytes"].as_u64().unwrap());
    let c = json(lerpscope(
        &[&["bench", "columns", "--k", "3", "--json"], &pair[..]].concat(),
    ));
    assert_eq!(c["k"], 3);
    assert_eq!(c["alphas"], serde_json::json!([0.0, 0.5, 1.0]));
    for key in ["one_column_ms", "reblend_ms", "batched_ms"] {
        assert!(c[key].as_f64().unwrap() > 0.0, "{key}");
    }
    assert!(["batched", "re-blend"].contains(&c["faster"].as_str().unwrap()));
    // Two quantized endpoints are both read by each step between them.
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quantized");
    let (qa, qb) = (dir.join("base-q4_1.gguf"), dir.join("b-q4_1.gguf"));
    let q = json(lerpscope(&[
        "bench",
        "generate",
        "--json",
        "--a",
        qa.to_str().unwrap(),
        "--b",
        qb.to_str().unwrap(),
        "--iters",
        "1",
        "--tokens",
        "3",
    ]));
    assert_eq!(
        q["bytes_per_token"].as_u64().unwrap(),
        2 * q["model_bytes"].as_u64().unwrap(),
        "{q}"
    );
    // Adapters along slerp merge at every α: timed so, with no factored row (the bench used
    // to fail after its measurement, asking for a flag it does not have).
    let s = json(lerpscope(&[
        "bench",
        "generate",
        "--json",
        "--shape",
        "demo",
        "--lora-rank",
        "4",
        "--method",
        "slerp",
        "--iters",
        "1",
        "--tokens",
        "3",
    ]));
    assert!(s["decode_tok_s"].as_f64().unwrap() > 0.0, "{s}");
    assert!(s.get("factored_decode_tok_s").is_none(), "{s}");
}

/// Keys back to back (`--interval-ms 0`) are each timed to their frame: they used to reach the
/// app before it had taken the load in, with `q` behind them in the same batch.
#[test]
fn bench_ui_times_keys_sent_back_to_back() {
    let out = lerpscope(&["bench", "ui", "--keys", "3", "--interval-ms", "0", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["keys"], 3, "{v}");
}

/// `bench kernels` times every kernel this CPU has and the plain twin at each count of
/// activation rows; flags it cannot honour get one line naming them.
#[test]
fn bench_kernels_times_each_kernel_and_names_bad_flags() {
    let out = lerpscope(&[
        "bench",
        "kernels",
        "--quant",
        "q4_1",
        "--rows",
        "32",
        "--cols",
        "64",
        "--act-rows",
        "1,3",
        "--iters",
        "2",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let timings = v["timings"].as_array().unwrap();
    for m in [1, 3] {
        let kernels: Vec<&str> = timings
            .iter()
            .filter(|t| t["act_rows"] == m)
            .map(|t| t["kernel"].as_str().unwrap())
            .collect();
        assert_eq!(kernels[..2], ["plain", "avx2"], "{kernels:?}");
    }
    assert!(timings.iter().all(|t| t["us"].as_f64().unwrap() > 0.0));
    for (flags, needle) in [
        (&["--rows", "24"][..], "--rows 24"),
        (&["--rows", "0"][..], "--rows 0"),
        (&["--cols", "48", "--quant", "q4_k"][..], "--cols 48"),
        (&["--act-rows", "0"][..], "--act-rows"),
        (&["--act-rows", "1,4,1"][..], "--act-rows: 1 is given twice"),
        (&["--iters", "0"][..], "--iters"),
        (&["--quant", "q5_k"][..], "--quant"),
    ] {
        let out = lerpscope(&[&["bench", "kernels"], flags].concat());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
}

/// A reader that goes away before the report (`lerpscope bench kernels | head -1`, closed
/// early): the command ends quietly and successfully, no panic about a broken pipe.
#[test]
fn a_closed_pipe_on_stdout_ends_a_command_quietly() {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args([
            "bench", "kernels", "--quant", "q4_0", "--rows", "32", "--cols", "64", "--iters", "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run lerpscope");
    // Closing the read end before anything is written makes the first write fail.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(!err.contains("panicked"), "{err}");
}

/// `--quant`: a random GGUF of the shape, kept quantized when loaded (with the tokenizer
/// written beside it), and rank-R adapters on it; llama3-8b's full pair is refused by name.
#[test]
fn a_shape_is_written_once_as_a_quantized_file_and_adapters_on_it() {
    use lerpscope::shapes::{Quant, Shape};
    let tmp = tempfile::tempdir().unwrap();
    let file = Shape::Demo.quantized_in(tmp.path(), Quant::Q4_0).unwrap();
    let (a, b) = Shape::Demo
        .quantized_adapters_in(tmp.path(), Quant::Q4_0, 4)
        .unwrap();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        tokenizer: Some(file.with_file_name("tokenizer.json")),
        ..Default::default()
    };
    let f = file.display().to_string();
    let pair = Engine::load(&f, &f, &opts).unwrap();
    assert!(pair.kept_quantized());
    assert_eq!(pair.kept_quantization().as_deref(), Some("Q4_0"));
    let mut adapters =
        Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap();
    assert!(adapters.kept_quantized() && adapters.is_adapter_pair());
    adapters.set_alpha(0.5).unwrap();
    assert!(adapters
        .logits(&[1, 2, 3])
        .unwrap()
        .iter()
        .all(|x| x.is_finite()));
    let stamp = std::fs::metadata(&file).unwrap().modified().unwrap();
    Shape::Demo.quantized_in(tmp.path(), Quant::Q4_0).unwrap();
    assert_eq!(stamp, std::fs::metadata(&file).unwrap().modified().unwrap());
    let e = Shape::Llama3_8b
        .pair_in(tmp.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("--quant") && e.contains("llama3-8b"), "{e}");
}

#[test]
fn a_named_shape_is_written_once_as_a_loadable_pair() {
    use lerpscope::shapes::Shape;
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = Shape::Demo.pair_in(tmp.path()).unwrap();
    let stamp = std::fs::metadata(a.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let e = Engine::load(
        &a.display().to_string(),
        &b.display().to_string(),
        &LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(e.info.params, 2_361_024, "the demo pair's parameter count");
    let again = Shape::Demo.pair_in(tmp.path()).unwrap();
    assert_eq!(again.0, a);
    let stamp2 = std::fs::metadata(a.join("model.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(stamp, stamp2, "reused, not rewritten");
}

#[test]
fn bare_lerpscope_takes_the_ui_flags_and_commands_default_to_the_demo_pair() {
    use clap::Parser;
    use lerpscope::cli::{Cli, Command};
    let cli = Cli::try_parse_from(["lerpscope", "--max-tokens", "60", "--alphas=-0.5,1.5"])
        .expect("the UI's flags without `tui`");
    assert!(cli.command.is_none());
    assert_eq!(cli.tui.sampling.max_tokens, Some(60));
    let alphas = cli.tui.alphas.expect("--alphas").0;
    assert_eq!(
        alphas.iter().map(|a| a.value()).collect::<Vec<_>>(),
        [-0.5, 1.5]
    );
    let Some(Command::Generate(g)) = Cli::try_parse_from(["lerpscope", "generate"])
        .expect("generate without a pair")
        .command
    else {
        panic!("not generate")
    };
    assert!(g.pair.endpoints().0.ends_with("assets/demo/negative"));
    // `sweep` keeps its own sampling defaults; a flag given overrides one of them.
    let Some(Command::Sweep(s)) =
        Cli::try_parse_from(["lerpscope", "sweep", "--out", "x", "--top-p", "0.5"])
            .unwrap()
            .command
    else {
        panic!("not sweep")
    };
    let p = s.sampling.params(lerpscope::cli::SWEEP).unwrap();
    assert_eq!((p.sampling.temperature, p.sampling.top_p), (1.0, 0.5));
    assert_eq!(p.sampling.repeat_penalty, 1.0);
    assert_eq!(s.alpha_mode, lerpscope::engine::ColumnsMode::Auto);
    let Some(Command::Sweep(s)) = Cli::try_parse_from([
        "lerpscope",
        "sweep",
        "--out",
        "x",
        "--alpha-mode",
        "batched",
    ])
    .unwrap()
    .command
    else {
        panic!("not sweep")
    };
    assert_eq!(s.alpha_mode, lerpscope::engine::ColumnsMode::Batched);
    let err = Cli::try_parse_from(["lerpscope", "sweep", "--out", "x", "--alpha-mode", "fast"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--alpha-mode") && err.contains("reblend"),
        "{err}"
    );
    // A range given to score's --betas is sweep's --betas' form, said in β's words.
    let err = Cli::try_parse_from(["lerpscope", "score", "--text", "t", "--betas", "0:1:0.5"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("is for sweep's --betas"), "{err}");
}

#[test]
fn generate_runs_on_the_demo_pair_with_no_pair_given() {
    let out = lerpscope(&[
        "generate",
        "--max-tokens",
        "4",
        "--alphas",
        "0",
        "--json",
        "--device",
        "cpu",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["alpha"], 0.0);
}

#[test]
fn bench_flags_that_used_to_panic_or_truncate_are_answered_in_one_line() {
    // Counts below what a run needs were quietly raised, and the report described another run.
    // They are refused before any work: a pair that does not exist is never looked for.
    let missing = ["--a", "/nonexistent/a", "--b", "/nonexistent/b"];
    for (args, needle) in [
        (&["bench", "columns", "--k", "0"][..], "--k 0"),
        (&["bench", "columns", "--iters", "0"], "--iters 0"),
        (&["bench", "step", "--k", "0"], "--k 0"),
        (&["bench", "blend", "--iters", "0"], "--iters 0"),
        (&["bench", "generate", "--iters", "0"], "--iters 0"),
        (&["bench", "generate", "--tokens", "0"], "--tokens 0"),
        (&["bench", "columns", "--tokens", "0"], "--tokens 0"),
        (&["bench", "inspect", "--points", "1"], "--points 1"),
        // A decode rate needs a token after the first; a prompt of none was raised to one.
        (&["bench", "generate", "--tokens", "1"], "--tokens 1"),
        (&["bench", "columns", "--tokens", "1"], "--tokens 1"),
        (&["bench", "inspect", "--tokens", "1"], "--tokens 1"),
        (
            &["bench", "columns", "--prompt-tokens", "0"],
            "--prompt-tokens 0",
        ),
        (&["bench", "step", "--iters", "0"], "--iters 0"),
    ] {
        let out = lerpscope(&[args, &missing[..]].concat());
        refused_in_one_line(&out, &[needle]);
    }
    // Flags a run would ignore are refused: loading flags with random weights, and --params
    // beside a pair of --shape.
    let out = lerpscope(&["bench", "blend", "--tokenizer", "t.json", "--params", "10"]);
    refused_in_one_line(&out, &["--tokenizer is for loading a pair"]);
    let out = lerpscope(&["bench", "blend", "--base", "/nonexistent/base"]);
    refused_in_one_line(&out, &["--base is for loading a pair"]);
    let out = lerpscope(&["bench", "blend", "--shape", "demo", "--params", "10"]);
    refused_in_one_line(&out, &["--params", "--shape"]);
    // Generation stops at the context, so a report of N tokens past it made fewer: refused
    // (the demo pair's context is 256).
    // Generation feeds back all but its last token; `step` runs a forward pass per token.
    for (bench, tokens, needed) in [
        ("generate", "10", "259"),
        ("columns", "10", "259"),
        ("inspect", "10", "259"),
        ("step", "7", "257"),
    ] {
        let out = lerpscope(&["bench", bench, "--prompt-tokens", "250", "--tokens", tokens]);
        let needs = format!("--prompt-tokens 250 and --tokens {tokens} need {needed} positions");
        refused_in_one_line(&out, &[&needs, "context of 256"]);
    }
    let out = lerpscope(&[
        "bench",
        "generate",
        "--prompt-tokens",
        "250",
        "--tokens",
        "7",
        "--iters",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lerpscope(&["bench", "ui", "--keys", "0"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--keys 0") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // 2³² + 1 parameters stay 2³² + 1 (a real blend of that size needs 48 GB).
    use lerpscope::cli::parse_params;
    assert_eq!(parse_params("4294967297"), Ok(4_294_967_297));
    assert_eq!(parse_params("100_000_000"), Ok(100_000_000));
    assert!(parse_params("0").is_err());
    assert!(parse_params("-5").is_err());
    // Too many for this machine: refused before allocating, naming the flag.
    let out = lerpscope(&[
        "bench",
        "blend",
        "--params",
        "100000000000",
        "--device",
        "cpu",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--params 100000000000") && err.contains("GiB"),
        "{err}"
    );
}

#[test]
fn a_screenshot_draws_the_finished_columns_into_an_svg() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("ui.svg");
    let shot = |extra: &[&str]| {
        let args = [
            "tui",
            "--alphas",
            "0,1",
            "--max-tokens",
            "6",
            "--screenshot",
        ];
        let out = lerpscope(
            &[
                &args[..],
                &[svg.to_str().unwrap(), "--size", "90x24"],
                extra,
            ]
            .concat(),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::read_to_string(&svg).unwrap()
    };
    let text = shot(&["--press", "z"]);
    assert!(text.starts_with("<svg") && text.contains(r#"width="756" height="432""#));
    // Presenter mode, pressed once the columns were done: the big digits of the focused α.
    assert!(text.contains('█'), "{text}");
    // Both columns finished before the picture was taken.
    assert_eq!(text.matches('✓').count(), 2, "{text}");
    // Their meters too, as a live screen shows them once they arrive.
    let text = shot(&[]);
    assert_eq!(text.matches("VADER").count(), 2, "{text}");

    // The animation runs until a key: the shot takes its first step, stops it, and goes on
    // to the next key (it used to wait for the animation to settle, forever).
    let out = lerpscope(&[
        "tui",
        "--alphas",
        "0,1",
        "--max-tokens",
        "4",
        "--screenshot",
        svg.to_str().unwrap(),
        "--press",
        "vz",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains('█'),
        "presenter mode after the animation: {text}"
    );

    let bad = lerpscope(&["tui", "--screenshot", "x.svg", "--size", "90by24"]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("--size"), "{err}");
}

/// No budget is an empty continuation per α, in both output forms (it used to panic computing
/// the rate of a row that wrote nothing).
#[test]
fn generate_with_no_token_budget_writes_empty_continuations() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for json in [true, false] {
        let mut args = vec![
            "generate",
            "--a",
            &a,
            "--b",
            &b,
            "--alphas",
            "0,1",
            "--prompt",
            "The movie",
            "--max-tokens",
            "0",
            "--device",
            "cpu",
        ];
        if json {
            args.push("--json");
        }
        let out = lerpscope(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && !stderr.contains("panicked"),
            "{stderr}"
        );
        if json {
            let lines: Vec<Value> = String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), 2);
            for line in &lines {
                assert_eq!(line["text"], "");
                // No rate without two tokens to measure it over.
                assert!(line["tokens_per_s"].is_null(), "{line}");
            }
        }
    }
}

/// Two quantized endpoints pushed far past B overflow: each command that reads logits says so
/// in one line naming α, where a product of 8-bit activations used to read the NaNs as zeros
/// and report a uniform distribution as a score.
#[test]
fn an_alpha_that_overflows_is_refused_by_name() {
    let q = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quantized");
    let (a, b) = (format!("{q}/base-q4_1.gguf"), format!("{q}/b-q4_1.gguf"));
    let tmp = tempfile::tempdir().unwrap();
    let text = tmp.path().join("text.txt");
    std::fs::write(&text, "The movie was great and the food was fine.\n").unwrap();
    let text = text.display().to_string();
    for command in [
        &["perplexity", "--file", &text][..],
        &["score", "--text", &text],
        &["generate", "--prompt", "x", "--max-tokens", "3"],
    ] {
        let out = lerpscope(&[command, &["--a", &a, "--b", &b, "--alphas", "0,1000"]].concat());
        refused_in_one_line(&out, &["α = 1000", "non-finite"]);
    }
}

/// Settings that cannot do what they say are refused in one line naming the flag, before any
/// work: a sweep with no samples or no tokens (it used to write NaN tables), an empty stop
/// text (it cut every column at once), a grid step finer than α's precision (the same α over
/// and over) or with too many points, and batched columns off the line (they were re-blended silently).
#[test]
fn settings_that_cannot_work_are_refused_by_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep").display().to_string();
    let svg = tmp.path().join("x.svg").display().to_string();
    let sweep = |extra: &[&str]| {
        let mut args = vec![
            "sweep",
            "--out",
            &out,
            "--num-prompts",
            "1",
            "--alphas",
            "0,1",
        ];
        args.extend_from_slice(extra);
        lerpscope(&args)
    };
    let cases: Vec<(std::process::Output, &str)> = vec![
        (sweep(&["--samples", "0"]), "--samples 0"),
        (sweep(&["--max-tokens", "0"]), "--max-tokens 0"),
        (
            lerpscope(&["sweep", "--out", &out, "--num-prompts", "0"]),
            "--num-prompts 0: no prompts to sweep",
        ),
        (sweep(&["--stop", ""]), "--stop"),
        (
            lerpscope(&["generate", "--prompt", "x", "--stop", ""]),
            "--stop",
        ),
        (
            lerpscope(&["sweep", "--out", &out, "--alphas", "0:0.00001:1e-7"]),
            "finer than α's precision",
        ),
        (
            lerpscope(&["sweep", "--out", &out, "--alphas", "0:1000:0.1"]),
            "too many (a grid takes 1001 at most)",
        ),
        (
            lerpscope(&["sweep", "--out", &out, "--alphas", "0:1"]),
            "expected START:STOP:STEP",
        ),
        (
            lerpscope(&["sweep", "--out", &out, "--alphas", "0,0.5,0.5000001"]),
            "--alphas: 0.5 is given twice",
        ),
        (
            sweep(&["--samples", "100000000"]),
            "more than a sweep plans",
        ),
        (
            lerpscope(&["generate", "--prompt", "x", "--alphas", "0:1:0.5"]),
            "for sweep's --alphas",
        ),
        (
            lerpscope(&[
                "tui",
                "--screenshot",
                &svg,
                "--columns",
                "batched",
                "--method",
                "slerp",
            ]),
            "--columns batched",
        ),
        (
            lerpscope(&[
                "tui",
                "--screenshot",
                &svg,
                "--columns",
                "batched",
                "--layer-alphas",
                "mlp=0,1",
            ]),
            "--columns batched",
        ),
    ];
    for (out, needle) in cases {
        refused_in_one_line(&out, &[needle]);
    }
    assert!(!tmp.path().join("sweep").exists());
    assert!(!tmp.path().join("x.svg").exists());
    // An empty prompt, or one as long as the context, is refused before any column's header
    // is printed.
    let long = "the food was great ".repeat(200);
    for prompt in ["", long.as_str()] {
        let out = lerpscope(&["generate", "--prompt", prompt]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("--prompt"), "{err}");
        assert!(
            out.stdout.is_empty(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// A --max-tokens far past the context reserved memory for all of it (an abort that left the
/// UI's terminal raw): generation stops at the context, as with any count past it.
#[test]
fn a_huge_token_count_stops_at_the_context() {
    let out = lerpscope(&[
        "generate",
        "--prompt",
        "The food",
        "--alphas",
        "0",
        "--max-tokens",
        &usize::MAX.to_string(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = line["token_ids"].as_array().unwrap().len();
    assert!(n > 0 && n < 256, "{n} tokens");
}

/// The plain output's closing line counts its tokens in words a person would write, and gives
/// a rate only where there are two tokens to measure it between.
#[test]
fn the_closing_line_counts_tokens_and_rates_only_two_or_more() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for (n, want) in [
        ("0", "[0 tokens, blend"),
        ("1", "[1 token, blend"),
        ("3", "[3 tokens, "),
    ] {
        let out = lerpscope(&[
            "generate",
            "--a",
            &a,
            "--b",
            &b,
            "--alphas",
            "0.5",
            "--prompt",
            "The movie",
            "--max-tokens",
            n,
            "--temperature",
            "0",
            "--ignore-eos",
            "--device",
            "cpu",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains(want), "{n}: {text}");
        assert_eq!(text.contains("tok/s"), n == "3", "{n}: {text}");
    }
}

/// A bench on a device this build cannot open says so before it writes its --shape pair
/// (hundreds of megabytes to gigabytes) into the temporary folder.
#[cfg(not(feature = "cuda"))]
#[test]
fn a_bench_on_a_missing_device_writes_no_shape() {
    let tmp = tempfile::tempdir().unwrap();
    for args in [
        &[
            "bench", "step", "--shape", "demo", "--k", "1", "--device", "cuda",
        ][..],
        &["bench", "blend", "--shape", "demo", "--device", "cuda"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args(args)
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        refused_in_one_line(&out, &["--device cuda", "no CUDA support"]);
        assert!(!tmp.path().join("lerpscope-shapes").exists(), "{args:?}");
    }
    // The device is named as given, once, without candle's own words after it.
    let out = lerpscope(&["generate", "--prompt", "x", "--device", "cuda:1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "error: --device cuda:1: this build has no CUDA support (rebuild with --features cuda)"
    );
}

/// `perplexity --file -` and `score --text -` read standard input, and give what the same
/// text gives from a file.
#[test]
fn perplexity_and_score_read_standard_input() {
    use std::io::Write;
    use std::process::Stdio;
    let text = "The food was great and the staff were friendly.\nI would come back.\n";
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("text.txt");
    std::fs::write(&file, text).unwrap();
    for (command, flag) in [("perplexity", "--file"), ("score", "--text")] {
        let args = [command, "--alphas", "0,1", "--json", flag];
        let from_file = lerpscope(&[&args[..], &[file.to_str().unwrap()]].concat());
        assert!(from_file.status.success(), "{command}");
        let mut child = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args(args)
            .arg("-")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let from_stdin = child.wait_with_output().unwrap();
        assert!(
            from_stdin.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&from_stdin.stderr)
        );
        assert_eq!(from_stdin.stdout, from_file.stdout, "{command}");
    }
}

/// A grid of sweeps (--betas) writes grid.csv and plots/ into --out: a folder holding anything
/// a grid did not write is refused before any work, its files untouched.
#[test]
fn a_grid_is_not_written_over_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("gridout");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("grid.csv"), "my notes").unwrap();
    let args = [
        "sweep",
        "--a",
        "/nonexistent/a",
        "--b",
        "/nonexistent/b",
        "--c",
        "/nonexistent/c",
        "--betas",
        "0,0.5",
        "--out",
        out.to_str().unwrap(),
    ];
    refused_in_one_line(&lerpscope(&args), &["holds grid.csv", "gridout"]);
    assert_eq!(
        std::fs::read_to_string(out.join("grid.csv")).unwrap(),
        "my notes"
    );
    // grid.csv beside a β's sweep is a grid's own, and the run goes on (to the missing pair).
    std::fs::create_dir_all(out.join("beta0")).unwrap();
    std::fs::write(out.join("beta0/sweep.json"), "{}").unwrap();
    // So is the partial copy of grid.csv that a killed grid left (its process is gone).
    let partial = out.join(".grid.csv.partial-4999999");
    std::fs::write(&partial, "β,α").unwrap();
    let run = lerpscope(&args);
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !err.contains("holds grid.csv") && err.contains("/nonexistent/"),
        "{err}"
    );
    assert!(!partial.exists());
}

/// `generate --columns batched` writes every α as a row of one batch: greedy, the same tokens
/// as one α after another at its own blend, each line saying how it was made. Off the line
/// it is refused in one line; with no budget it writes empty continuations.
#[test]
fn generate_batches_its_alphas_where_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--a",
            &a,
            "--b",
            &b,
            "--alphas",
            "0,0.5,1.5",
            "--prompt",
            "The movie",
            "--temperature",
            "0",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--max-tokens") {
            args.extend_from_slice(&["--max-tokens", "6"]);
        }
        lerpscope(&args)
    };
    let lines = |out: std::process::Output| -> Vec<Value> {
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let apart = lines(run(&["--json"]));
    let batched = lines(run(&["--json", "--columns", "batched"]));
    assert_eq!(apart.len(), 3);
    for (x, y) in apart.iter().zip(&batched) {
        assert_eq!(x["alpha"], y["alpha"]);
        assert_eq!(x["token_ids"], y["token_ids"]);
        assert_eq!(x["run"], "alone at its blend");
        assert!(x["blend_ms"].is_number());
        assert_eq!(y["run"], "a row of a batch of 3");
        assert!(y["blend_ms"].is_null());
    }
    let text = run(&["--columns", "batched"]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(text.matches("a row of a batch of 3]").count(), 3, "{text}");
    for row in lines(run(&[
        "--json",
        "--columns",
        "batched",
        "--max-tokens",
        "0",
    ])) {
        assert_eq!(row["text"], "");
    }
    let plane = run(&["--columns", "batched", "--c", &a, "--beta", "0.5"]);
    refused_in_one_line(&plane, &["--columns batched", "--c (a plane)"]);
}

/// A bad flag value is one line that says what to write instead: the values the flag takes,
/// and for a negative number read as a flag, how to give it.
#[test]
fn a_bad_flag_value_says_what_to_write_instead() {
    refused_in_one_line(
        &lerpscope(&["bench", "generate", "--shape", "unknown"]),
        &[
            "'unknown'",
            "--shape",
            "possible values: demo, smollm2-135m",
        ],
    );
    refused_in_one_line(
        &lerpscope(&["generate", "--temperature", "-1"]),
        &["'-1'", "with its flag and `=`"],
    );
    refused_in_one_line(
        &lerpscope(&["generate", "--columns", "x"]),
        &["possible values: auto, batched, reblend"],
    );
}

/// A bench refused for its device, rank or context writes no random files first (a llama3-8b
/// Q4_K is 4.5 GB): the checks need only the shape.
#[test]
fn a_refused_bench_writes_no_shape_files() {
    let tmp = tempfile::tempdir().unwrap();
    for extra in [
        &["--quant", "q8_0", "--lora-rank", "100000"][..],
        &["--quant", "q4_0", "--prompt-tokens", "100000"],
        &["--lora-rank", "4", "--prompt-tokens", "100000"],
        &["--quant", "q8_0", "--device", "cuda"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args(["bench", "generate", "--shape", "demo", "--tokens", "4"])
            .args(extra)
            .env("TMPDIR", tmp.path())
            .output()
            .unwrap();
        refused_in_one_line(&out, &[]);
        let written: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert!(written.is_empty(), "{extra:?}: {written:?}");
    }
}

/// A text the model's context cut short says so, in JSON as in text: its length is the
/// context's, not --max-tokens.
#[test]
fn generate_says_when_the_context_ended_the_text() {
    let demo = |side: &str| format!("{}/assets/demo/{side}", env!("CARGO_MANIFEST_DIR"));
    let (a, b) = (demo("negative"), demo("positive"));
    let args = [
        "generate",
        "--a",
        &a,
        "--b",
        &b,
        "--alphas",
        "0",
        "--prompt",
        "Hi",
        "--max-tokens",
        "100000",
        "--ignore-eos",
        "--device",
        "cpu",
    ];
    let out = lerpscope(&[&args[..], &["--json"]].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["stop"], "context", "{line}");
    assert!(line["token_ids"].as_array().unwrap().len() < 1000);
    let out = lerpscope(&args);
    assert!(String::from_utf8_lossy(&out.stdout).contains("stopped at the model's context"));
}

/// llama.cpp runs Mistral and StarCoder2 without their sliding windows: a GGUF export of one
/// says where the two part; an HF export, which transformers runs with the window, says
/// nothing.
#[test]
fn a_gguf_export_of_a_windowed_mistral_says_llama_cpp_runs_it_without() {
    let tmp = tempfile::tempdir().unwrap();
    for (family, out, noted) in [
        ("mistral", "m.gguf", true),
        ("mistral", "m-hf", false),
        ("starcoder2-window", "s.gguf", true),
    ] {
        let fam = |side: &str| {
            format!(
                "{}/tests/fixtures/families/{family}-{side}",
                env!("CARGO_MANIFEST_DIR")
            )
        };
        let (a, b) = (fam("a"), fam("b"));
        let out = tmp.path().join(out).display().to_string();
        let run = lerpscope(&[
            "export", "--a", &a, "--b", &b, "--alpha", "0.5", "--out", &out, "--device", "cpu",
        ]);
        let err = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{err}");
        assert_eq!(
            err.contains("llama.cpp runs this model without its sliding window of 4 tokens"),
            noted,
            "{out}: {err}"
        );
    }
}
