//! A plane over adapters on one base, A + α·(B − A) + β·(C − A), that is
//! W0 + (1 − α − β)·ΔA + α·ΔB + β·ΔC, against PEFT itself: tests/fixtures/make_adapter_plane.py
//! combined three adapters (and two, with the base as A) with PEFT's
//! `add_weighted_adapter(combination_type="cat")` at those weights, merged, and recorded logits
//! and greedy tokens (tests/fixtures/adapter-plane/expected.json). Both paths must match them:
//! merged (the working copy re-merged at α and β) and factored (each batch row at its own α).
//! A fourth adapter D at γ (`--d D --gamma G`) is held to PEFT's `cat` of all four the same way.

mod support;

use lerpscope::engine::{Alpha, DeviceChoice, Engine, ExtraEndpoint, LoadOptions};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use support::{greedy, max_diff};

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapter-plane")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(here().join("expected.json")).unwrap()).unwrap()
}

fn path(exp: &Value, side: &str) -> String {
    here()
        .join(exp[side].as_str().unwrap())
        .display()
        .to_string()
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn with_c(c: &str, beta: f64) -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        third: Some(ExtraEndpoint {
            source: c.to_string(),
            weight: Some(beta),
            factors: None,
        }),
        ..Default::default()
    }
}

fn floats(v: &Value) -> Vec<f32> {
    serde_json::from_value(v.clone()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    serde_json::from_value(v.clone()).unwrap()
}

/// Greedy tokens of each row of `mix` from the factored batch, the end token ignored.
fn factored_greedy(
    e: &Engine,
    prompt_ids: &[u32],
    mix: &lerpscope::engine::layers::Mix,
    n: usize,
) -> Vec<lerpscope::engine::Generation> {
    let pair_g = lerpscope::engine::Generator {
        eos: &[],
        ..e.pair_generator()
    };
    pair_g
        .run_rows(
            prompt_ids,
            &[],
            Some(mix),
            &greedy(n),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap()
}

/// The engine at its current point (α = `at`) against PEFT's recorded `point`: merged and
/// factored logits within 1e-4, greedy tokens equal on both paths.
fn check_point(e: &Engine, at: Alpha, point: &Value, what: &str) {
    let exp = expected();
    let prompts: Vec<String> = serde_json::from_value(exp["prompts"].clone()).unwrap();
    let n = exp["new_tokens"].as_u64().unwrap() as usize;
    for (pi, prompt) in prompts.iter().enumerate() {
        let run = &point["runs"][pi];
        let prompt_ids = ids(&run["prompt_ids"]);
        let want = floats(&run["logits"]);
        let what = format!("{what} {prompt:?}");
        let d = max_diff(&e.logits(&prompt_ids).unwrap(), &want);
        assert!(d <= 1e-4, "{what} merged: max |Δlogit| = {d}");
        let factored = e.logits_columns(&prompt_ids, &[at]).unwrap();
        let d = max_diff(&factored[0], &want);
        assert!(d <= 1e-4, "{what} factored: max |Δlogit| = {d}");
        let mut g = e.generator();
        g.eos = &[];
        let tokens = g
            .run(prompt, &greedy(n), &AtomicBool::new(false), &mut |_| {})
            .unwrap()
            .token_ids;
        assert_eq!(tokens, ids(&run["greedy"]), "{what} merged greedy");
        let rows = factored_greedy(e, &prompt_ids, &e.mix(&[at]).unwrap(), n);
        assert_eq!(
            rows[0].token_ids,
            ids(&run["greedy"]),
            "{what} factored greedy"
        );
    }
}

/// `points` as the rows of one factored batch, each at its own (α, β): every row's logits and
/// greedy tokens are its point's.
fn check_batch(e: &Engine, points: &[&Value], what: &str) {
    let exp = expected();
    let prompts: Vec<String> = serde_json::from_value(exp["prompts"].clone()).unwrap();
    let n = exp["new_tokens"].as_u64().unwrap() as usize;
    let at = |key: &str| -> Vec<Alpha> {
        points
            .iter()
            .map(|p| Alpha::new(p[key].as_f64().unwrap()).unwrap())
            .collect()
    };
    let mix = e.mix_at(&at("alpha"), Some(&at("beta"))).unwrap();
    for (pi, prompt) in prompts.iter().enumerate() {
        let prompt_ids = ids(&points[0]["runs"][pi]["prompt_ids"]);
        let rows = e.logits_mixed(&prompt_ids, &mix).unwrap();
        let greedy_rows = factored_greedy(e, &prompt_ids, &mix, n);
        for (k, point) in points.iter().enumerate() {
            let run = &point["runs"][pi];
            let what = format!("{what}, row {k} of one batch, {prompt:?}");
            let d = max_diff(&rows[k], &floats(&run["logits"]));
            assert!(d <= 1e-4, "{what}: max |Δlogit| = {d}");
            assert_eq!(greedy_rows[k].token_ids, ids(&run["greedy"]), "{what}");
        }
    }
}

/// Every point of `plane` (from one engine moved by `set_point`): merged and factored logits
/// within 1e-4 of PEFT's, greedy tokens equal. Then every point at once, a row each in one
/// factored batch: the same logits and tokens.
fn check_plane(a: &str, plane: &str) {
    let exp = expected();
    let points = exp["planes"][plane].as_array().unwrap();
    let first_beta = points[0]["beta"].as_f64().unwrap();
    let mut e = Engine::load(a, &path(&exp, "b"), &with_c(&path(&exp, "c"), first_beta))
        .unwrap_or_else(|err| panic!("{plane}: {err}"));
    assert!(e.is_adapter_pair());
    assert!(
        e.info.description.contains(" + β·("),
        "{}",
        e.info.description
    );
    // The pair names C and the base beside A and B (saved sessions record them).
    let roles: Vec<&str> = e.info.others.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(roles, ["c", "base"], "{:?}", e.info.others);
    assert_eq!(e.info.others[0].1, path(&exp, "c"));
    for point in points {
        let (alpha, beta) = (
            point["alpha"].as_f64().unwrap(),
            point["beta"].as_f64().unwrap(),
        );
        let at = Alpha::new(alpha).unwrap();
        e.set_point(at, Some(beta)).unwrap();
        assert_eq!(e.info.beta, Some(beta));
        check_point(
            &e,
            at,
            point,
            &format!("{plane} (α, β) = ({alpha}, {beta})"),
        );
    }
    check_batch(&e, &points.iter().collect::<Vec<_>>(), plane);
}

fn with_c_and_d(c: &str, beta: f64, d: &str, gamma: f64) -> LoadOptions {
    LoadOptions {
        fourth: Some(ExtraEndpoint::fixed(d, gamma)),
        ..with_c(c, beta)
    }
}

/// Every point (α, β, γ) of `set`: an engine loaded at its γ, moved to (α, β), gives PEFT's
/// logits (within 1e-4) merged and factored, and its greedy tokens; the points at one γ as
/// rows of one factored batch give the same.
fn check_space(a: &str, set: &str) {
    let exp = expected();
    let points = exp["spaces"][set].as_array().unwrap();
    let num = |p: &Value, k: &str| p[k].as_f64().unwrap();
    let (b, c, d) = (path(&exp, "b"), path(&exp, "c"), path(&exp, "d"));
    let mut gammas: Vec<f64> = points.iter().map(|p| num(p, "gamma")).collect();
    gammas.dedup();
    for gamma in gammas {
        let at_gamma: Vec<&Value> = points.iter().filter(|p| num(p, "gamma") == gamma).collect();
        let opts = with_c_and_d(&c, num(at_gamma[0], "beta"), &d, gamma);
        let mut e = Engine::load(a, &b, &opts).unwrap_or_else(|err| panic!("{set}: {err}"));
        assert!(
            e.info.description.contains(" + γ·("),
            "{}",
            e.info.description
        );
        assert_eq!(e.gamma(), Some(gamma));
        for point in &at_gamma {
            let (alpha, beta) = (num(point, "alpha"), num(point, "beta"));
            let at = Alpha::new(alpha).unwrap();
            e.set_point(at, Some(beta)).unwrap();
            check_point(
                &e,
                at,
                point,
                &format!("{set} (α, β, γ) = ({alpha}, {beta}, {gamma})"),
            );
        }
        check_batch(&e, &at_gamma, &format!("{set} γ = {gamma}"));
    }
}

#[test]
fn four_adapters_are_peft_cat_at_their_weights() {
    let exp = expected();
    check_space(&path(&exp, "a"), "adapters");
}

#[test]
fn with_the_base_as_a_three_adapters_take_independent_strengths() {
    check_space("base", "base");
}

/// γ = 0 is the plane through A, B and C, bit for bit; D needs C and a γ of its own, and a
/// D of another kind is refused by flag.
#[test]
fn a_fourth_endpoint_at_zero_is_the_plane_and_bad_ones_are_refused() {
    let exp = expected();
    let (a, b, c, d) = (
        path(&exp, "a"),
        path(&exp, "b"),
        path(&exp, "c"),
        path(&exp, "d"),
    );
    let ids = [3u32, 17, 40, 9];
    let mut plane = Engine::load(&a, &b, &with_c(&c, 0.4)).unwrap();
    let mut space = Engine::load(&a, &b, &with_c_and_d(&c, 0.4, &d, 0.0)).unwrap();
    for alpha in [0.0, 0.6, 1.0] {
        plane.set_alpha(alpha).unwrap();
        space.set_alpha(alpha).unwrap();
        assert_eq!(
            plane.logits(&ids).unwrap(),
            space.logits(&ids).unwrap(),
            "α {alpha}"
        );
    }
    // Moving γ is loading at it, merged and factored; a plane without D has no γ to move.
    space.set_gamma(-0.7).unwrap();
    assert_eq!(space.gamma(), Some(-0.7));
    let mut fresh = Engine::load(&a, &b, &with_c_and_d(&c, 0.4, &d, -0.7)).unwrap();
    fresh.set_alpha(1.0).unwrap();
    assert_eq!(space.logits(&ids).unwrap(), fresh.logits(&ids).unwrap());
    let at = [Alpha::new(0.3).unwrap()];
    assert_eq!(
        space.logits_columns(&ids, &at).unwrap(),
        fresh.logits_columns(&ids, &at).unwrap()
    );
    let e = plane.set_gamma(0.5).unwrap_err().to_string();
    assert!(e.contains("no fourth endpoint"), "{e}");
    let e = space.set_gamma(f64::NAN).unwrap_err().to_string();
    assert!(e.starts_with("γ:"), "{e}");
    let refused = |opts: LoadOptions, says: &str| {
        let e = Engine::load(&a, &b, &opts).err().expect(says).to_string();
        assert!(e.contains(says), "{e}");
    };
    let no_c = LoadOptions {
        fourth: Some(ExtraEndpoint::fixed(d.clone(), 0.5)),
        ..cpu()
    };
    refused(no_c, "--d");
    let follows = LoadOptions {
        fourth: Some(ExtraEndpoint {
            source: d.clone(),
            weight: None,
            factors: None,
        }),
        ..with_c(&c, 0.2)
    };
    refused(follows, "(--gamma)");
    let full = here().join("../tiny-llama-a").display().to_string();
    refused(with_c_and_d(&c, 0.2, &full, 0.5), "--d");
}

#[test]
fn a_plane_over_three_adapters_is_peft_cat_at_their_weights() {
    let exp = expected();
    check_plane(&path(&exp, "a"), "adapters");
}

#[test]
fn with_the_base_as_a_the_plane_sets_two_adapters_strengths_independently() {
    check_plane("base", "base");
}

/// Moving β re-merges to the same bits as loading there; columns at several alphas share one
/// batch at the plane's β and give what re-merging to each α gives.
#[test]
fn set_beta_is_loading_at_that_beta_and_columns_batch_on_the_plane() {
    let exp = expected();
    let (a, b, c) = (path(&exp, "a"), path(&exp, "b"), path(&exp, "c"));
    let ids = [3u32, 17, 40, 9];
    let mut moved = Engine::load(&a, &b, &with_c(&c, 0.0)).unwrap();
    moved.set_beta(0.6).unwrap();
    moved.set_alpha(0.25).unwrap();
    let mut fresh = Engine::load(&a, &b, &with_c(&c, 0.6)).unwrap();
    fresh.set_alpha(0.25).unwrap();
    assert_eq!(moved.logits(&ids).unwrap(), fresh.logits(&ids).unwrap());
    // Scoring a text at a point moves there in one call.
    let text = "The movie was fine";
    let at = moved.score_text_at(text, 0.7, Some(-0.2)).unwrap();
    let mut there = Engine::load(&a, &b, &with_c(&c, -0.2)).unwrap();
    assert_eq!(at.nll, there.score_text(text, 0.7).unwrap().nll);
    moved.set_point(0.25, Some(0.6)).unwrap();
    // β = 0 is the line through A and B, bit for bit.
    let mut line = Engine::load(&a, &b, &cpu()).unwrap();
    moved.set_beta(0.0).unwrap();
    for alpha in [0.0, 0.4, 1.0] {
        moved.set_alpha(alpha).unwrap();
        line.set_alpha(alpha).unwrap();
        assert_eq!(
            moved.logits(&ids).unwrap(),
            line.logits(&ids).unwrap(),
            "α = {alpha}"
        );
    }

    support::assert_batched_columns_equal_each_alone(
        &mut fresh,
        &[-0.5, 0.0, 0.3, 1.0, 1.5],
        "at β = 0.6",
    );
}

/// γ moved through the session: the engine answers with the pair as it now is, or with why
/// not (an absurd γ), and nothing else changes then.
#[test]
fn the_session_moves_gamma_and_says_when_it_cannot() {
    use lerpscope::session::{EngineEvent, Session};
    let exp = expected();
    let (a, b, c, d) = (
        path(&exp, "a"),
        path(&exp, "b"),
        path(&exp, "c"),
        path(&exp, "d"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let session = Session::spawn_with(
        move || Ok(Engine::load(&a, &b, &with_c_and_d(&c, 0.4, &d, 0.2))?),
        move |e| {
            let _ = tx.send(e);
        },
    );
    let next_gamma = || loop {
        match rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap() {
            EngineEvent::GammaChanged(r) => return r,
            EngineEvent::LoadFailed(e) => panic!("{e}"),
            _ => {}
        }
    };
    session.set_gamma(-0.3);
    assert_eq!(next_gamma().unwrap().gamma, Some(-0.3));
    session.set_gamma(5e3);
    let e = next_gamma().unwrap_err();
    assert!(e.message.contains("γ"), "{e:?}");
}

/// Columns at points of their own through the session (each job carries its β), in whatever
/// batches the scheduler makes: each column's text is its point's alone, re-merged there.
#[test]
fn session_columns_each_run_at_their_own_point() {
    use lerpscope::engine::{ColumnsMode, GenerationParams, SamplingParams};
    use lerpscope::session::{ColumnId, EngineEvent, Job, JobId, Session};
    let exp = expected();
    let (a, b, c) = (path(&exp, "a"), path(&exp, "b"), path(&exp, "c"));
    let points = [(0.0, 0.0), (0.3, 0.6), (1.0, -0.4), (0.5, 1.2)];
    let params = GenerationParams {
        max_tokens: 12,
        sampling: SamplingParams {
            seed: 5,
            ..Default::default()
        },
        ignore_eos: true,
        token_info: false,
    };
    for mode in [ColumnsMode::Batched, ColumnsMode::Reblend] {
        let (tx, rx) = std::sync::mpsc::channel();
        let (a2, b2, c2) = (a.clone(), b.clone(), c.clone());
        let session = Session::spawn_with(
            move || {
                let mut e = Engine::load(&a2, &b2, &with_c(&c2, 0.5))?;
                e.set_columns_mode(mode)?;
                Ok(e)
            },
            move |e| {
                let _ = tx.send(e);
            },
        );
        let handles: Vec<_> = (0..points.len())
            .map(|i| session.column(ColumnId(i as u64)))
            .collect();
        for (h, &(alpha, beta)) in handles.iter().zip(&points) {
            h.submit(Job {
                id: JobId(1),
                alpha: Alpha::new(alpha).unwrap(),
                beta: Some(Alpha::new(beta).unwrap()),
                prompt: "The movie was".into(),
                params,
                urgent: false,
                kind: Default::default(),
            });
        }
        // A bake at its own point, asked for while the columns move the engine elsewhere.
        let tmp = tempfile::tempdir().unwrap();
        let baked = tmp.path().join("baked");
        session.export(lerpscope::session::ExportJob {
            alpha: Alpha::new(0.7).unwrap(),
            beta: Some(Alpha::new(-0.3).unwrap()),
            out: baked.clone(),
            format: lerpscope::engine::export::Format::Hf,
        });
        let mut texts = vec![String::new(); points.len()];
        let (mut done, mut exported) = (0, false);
        while done < points.len() || !exported {
            match rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap() {
                EngineEvent::Text { column, piece, .. } => {
                    texts[column.0 as usize].push_str(&piece)
                }
                EngineEvent::Done { .. } => done += 1,
                EngineEvent::Exported(r) => exported = r.map(|_| true).unwrap(),
                EngineEvent::Failed { error, .. } | EngineEvent::LoadFailed(error) => {
                    panic!("{error}")
                }
                _ => {}
            }
        }
        drop(handles);
        drop(session);
        let mut alone = Engine::load(&a, &b, &with_c(&c, 0.0)).unwrap();
        for (i, &(alpha, beta)) in points.iter().enumerate() {
            alone.set_point(alpha, Some(beta)).unwrap();
            let one = alone
                .generate(
                    "The movie was",
                    &params,
                    &AtomicBool::new(false),
                    &mut |_| {},
                )
                .unwrap();
            assert_eq!(texts[i], one.text, "{mode:?}: (α, β) = ({alpha}, {beta})");
        }
        alone.set_point(0.7, Some(-0.3)).unwrap();
        let baked = baked.display().to_string();
        let model = Engine::load(&baked, &baked, &with_c(&baked, 0.0)).unwrap();
        let ids = [3u32, 17, 40, 9];
        let d = max_diff(&model.logits(&ids).unwrap(), &alone.logits(&ids).unwrap());
        assert!(
            d <= 1e-5,
            "{mode:?}: the bake is its point: max |Δlogit| = {d}"
        );
    }
}

fn load_err(a: &str, b: &str, opts: &LoadOptions) -> String {
    match Engine::load(a, b, opts) {
        Ok(_) => panic!("{a} ↔ {b} loaded"),
        Err(e) => e.to_string(),
    }
}

fn has(e: &str, parts: &[&str]) {
    assert!(!e.contains('\n'), "one line: {e}");
    for p in parts {
        assert!(e.contains(p), "{e:?} lacks {p:?}");
    }
}

#[test]
fn a_plane_over_adapters_refuses_what_it_cannot_blend_in_one_line() {
    let exp = expected();
    let (a, b, c) = (path(&exp, "a"), path(&exp, "b"), path(&exp, "c"));
    let adapters = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-a");
    let full = full.display().to_string();
    // A full model as C beside adapters.
    has(
        &load_err(&a, &b, &with_c(&full, 0.5)),
        &["--c", "tiny-llama-a", "full model"],
    );
    // An adapter as C beside full models.
    has(
        &load_err(&full, &full, &with_c(&c, 0.5)),
        &["--c", "not a full model"],
    );
    // C's weight following α (a recipe's direction) needs full models.
    let mut follows = with_c(&c, 0.5);
    follows.third.as_mut().unwrap().weight = None;
    has(&load_err(&a, &b, &follows), &["--c", "--beta"]);
    // A tensor replaced whole (modules_to_save) in any of the three (llama-saved-b replaces
    // the final norm, which the tied base has too).
    let saved = adapters.join("llama-saved-b").display().to_string();
    let mut on_tied = with_c(&saved, 0.5);
    on_tied.base = Some(adapters.join("base-llama-tied").display().to_string());
    has(
        &load_err(&a, &b, &on_tied),
        &["--c", "llama-saved-b", "modules_to_save", "plane"],
    );
    // … also when C is the base itself and B replaces a tensor.
    let mut base_c = with_c("base", 0.5);
    base_c.base = on_tied.base.clone();
    has(
        &load_err(&a, &saved, &base_c),
        &["--b", "llama-saved-b", "modules_to_save", "plane"],
    );
    // C on another base.
    let gpt2 = adapters.join("gpt2-a").display().to_string();
    has(
        &load_err(&a, &b, &with_c(&gpt2, 0.5)),
        &["different bases", "--c"],
    );
    // β on a pair without C.
    let mut line = Engine::load(&a, &b, &cpu()).unwrap();
    has(&line.set_beta(0.5).unwrap_err().to_string(), &["β", "--c"]);
    // An absurd β says so.
    let mut plane = Engine::load(&a, &b, &with_c(&c, 0.5)).unwrap();
    has(&plane.set_beta(f64::NAN).unwrap_err().to_string(), &["β"]);
    assert_eq!(plane.info.beta, Some(0.5));
}

/// `export` bakes the plane over adapters: the exported model is PEFT's at that point, and its
/// metadata names C and β.
#[test]
fn an_export_on_the_plane_is_peft_cat_merged() {
    let exp = expected();
    let point = &exp["planes"]["adapters"][0];
    let (alpha, beta) = (
        point["alpha"].as_f64().unwrap(),
        point["beta"].as_f64().unwrap(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("plane");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(["export", "--device", "cpu", "--a", &path(&exp, "a"), "--b"])
        .arg(path(&exp, "b"))
        .args(["--c", &path(&exp, "c"), "--beta", &beta.to_string()])
        .args(["--alpha", &alpha.to_string(), "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Its closing line names the point, β with α.
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        said.contains(&format!("α = {alpha}, β = {beta},")),
        "{said}"
    );
    let dir = out.display().to_string();
    let e = Engine::load(&dir, &dir, &cpu()).unwrap();
    let run = &point["runs"][0];
    let d = max_diff(
        &e.logits(&ids(&run["prompt_ids"])).unwrap(),
        &floats(&run["logits"]),
    );
    assert!(d <= 1e-4, "exported plane: max |Δlogit| = {d}");
    let meta = metadata(&out.join("model.safetensors"));
    assert_eq!(meta["lerpscope.beta"], beta.to_string());
    assert!(meta["lerpscope.c"].ends_with("c"), "{meta:?}");
    assert!(meta["lerpscope.formula"].contains("beta"), "{meta:?}");
    // The model card says the same: the plane's formula, β, and C as C (not as the base).
    let card = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(card.contains(&meta["lerpscope.formula"]), "{card}");
    assert!(card.contains(&format!("- β: `{beta}`")), "{card}");
    assert!(
        card.lines()
            .any(|l| l.starts_with("| C |") && l.contains(&path(&exp, "c"))),
        "{card}"
    );
    assert!(
        !out.join("mergekit_config.yml").exists(),
        "no mergekit form for adapters"
    );
    // Without --out, the folder's name carries β too: exports at two βs do not collide.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .current_dir(tmp.path())
        .args(["export", "--device", "cpu", "--a", &path(&exp, "a"), "--b"])
        .arg(path(&exp, "b"))
        .args(["--c", &path(&exp, "c"), "--beta", &beta.to_string()])
        .args(["--alpha", &alpha.to_string()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let b_name = Path::new(&path(&exp, "b"))
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let named = tmp.path().join(format!("{b_name}-alpha{alpha}-beta{beta}"));
    assert!(
        named.join("model.safetensors").exists(),
        "{}",
        named.display()
    );
}

fn metadata(file: &Path) -> std::collections::HashMap<String, String> {
    let bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    serde_json::from_value(header["__metadata__"].clone()).unwrap()
}

/// `lerpscope export` of a pair at α, to `out`.
fn export(a: &str, b: &str, alpha: &str, out: &Path) {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(["export", "--device", "cpu", "--a", a, "--b", b])
        .args(["--alpha", alpha, "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// α per layer over adapters is α per layer over the two models they make: W0 + ΔA and
/// W0 + ΔB, each exported whole (the full pair's path is held to mergekit in recipes.rs),
/// merged and factored, also on a plane; modules_to_save is refused with it.
#[test]
fn alpha_per_layer_over_adapters_is_alpha_per_layer_over_their_models() {
    let exp = expected();
    let (a, b, c) = (path(&exp, "a"), path(&exp, "b"), path(&exp, "c"));
    let tmp = tempfile::tempdir().unwrap();
    let (fa, fb) = (tmp.path().join("a"), tmp.path().join("b"));
    export(&a, &b, "0", &fa);
    export(&a, &b, "1", &fb);
    let layers = lerpscope::engine::LayerAlphas::parse("self_attn=0,1;mlp=1,0.25;0.5").unwrap();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        layers: Some(layers.clone()),
        ..Default::default()
    };
    let mut full =
        Engine::load(&fa.display().to_string(), &fb.display().to_string(), &opts).unwrap();
    let mut adapters = Engine::load(&a, &b, &opts).unwrap();
    assert_eq!(
        adapters.info.layers.as_deref(),
        Some(layers.spec().as_str())
    );
    let ids = [3u32, 17, 40, 9, 77];
    for alpha in [0.3, 1.0, 1.4] {
        full.set_alpha(alpha).unwrap();
        adapters.set_alpha(alpha).unwrap();
        let want = full.logits(&ids).unwrap();
        let d = max_diff(&adapters.logits(&ids).unwrap(), &want);
        assert!(d <= 1e-4, "α {alpha} merged: {d}");
        let rows = adapters.logits_columns(&ids, &[alpha, 0.0]).unwrap();
        let d = max_diff(&rows[0], &want);
        assert!(d <= 1e-4, "α {alpha} factored: {d}");
    }
    // Without the rules the adapters differ from it (the rules do something).
    let plain = Engine::load(&a, &b, &with_c(&c, 0.0)).unwrap();
    let mut plain = plain;
    plain.set_alpha(1.4).unwrap();
    assert!(max_diff(&plain.logits(&ids).unwrap(), &full.logits(&ids).unwrap()) > 1e-3);
    // modules_to_save with α per layer: refused by name.
    let adapters_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    let saved = adapters_dir.join("llama-saved-b").display().to_string();
    let mut on_tied = opts.clone();
    on_tied.base = Some(adapters_dir.join("base-llama-tied").display().to_string());
    has(
        &load_err(&a, &saved, &on_tied),
        &["--b", "llama-saved-b", "modules_to_save", "α per layer"],
    );
}

/// `generate --betas` pairs one β with each α: each continuation is PEFT's at its own point;
/// a list of another length, or no third endpoint, is refused in one line.
#[test]
fn generate_takes_one_beta_per_alpha() {
    let exp = expected();
    let points = exp["planes"]["adapters"].as_array().unwrap();
    let prompt = exp["prompts"][0].as_str().unwrap();
    let n = exp["new_tokens"].to_string();
    let (alphas, betas): (Vec<String>, Vec<String>) = points
        .iter()
        .map(|p| (p["alpha"].to_string(), p["beta"].to_string()))
        .unzip();
    let run = |extra: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args([
                "generate",
                "--device",
                "cpu",
                "--a",
                &path(&exp, "a"),
                "--b",
            ])
            .arg(path(&exp, "b"))
            .args([
                "--c",
                &path(&exp, "c"),
                "--prompt",
                prompt,
                "--max-tokens",
                &n,
            ])
            .args([
                "--temperature",
                "0",
                "--repeat-penalty",
                "1",
                "--ignore-eos",
                "--json",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = run(&["--alphas", &alphas.join(","), "--betas", &betas.join(",")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), points.len());
    for (line, point) in lines.iter().zip(points) {
        assert_eq!(line["beta"], point["beta"]);
        assert_eq!(
            ids(&line["token_ids"]),
            ids(&point["runs"][0]["greedy"]),
            "({}, {})",
            point["alpha"],
            point["beta"]
        );
    }
    let o = run(&["--alphas", "0,1", "--betas", "0.5"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--betas: 1 values for 2 alphas"),
        "{err}"
    );
    // β's errors speak of β, which moves toward C.
    let o = run(&["--alphas", "0", "--betas", "5000"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("β = 5000") && err.contains("1 is C"),
        "{err}"
    );
}

/// `score --betas` and `perplexity --betas` pair one β with each α as generate does: each
/// line equals the same command at that point alone (`--beta`), and names its β.
#[test]
fn score_and_perplexity_take_one_beta_per_alpha() {
    let exp = expected();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("text.txt");
    std::fs::write(
        &file,
        "The food at this place was cold and the staff were rude.",
    )
    .unwrap();
    let file = file.display().to_string();
    let run = |cmd: &str, extra: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_lerpscope"))
            .args([cmd, "--device", "cpu", "--a", &path(&exp, "a"), "--b"])
            .arg(path(&exp, "b"))
            .args(["--c", &path(&exp, "c"), "--json"])
            .args([if cmd == "score" { "--text" } else { "--file" }, &file])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .collect::<Vec<_>>()
    };
    let points = [("0.3", "0.6"), ("1", "-0.25")];
    for (cmd, key) in [("score", "nll"), ("perplexity", "perplexity")] {
        let paired = run(cmd, &["--alphas", "0.3,1", "--betas", "0.6,-0.25"]);
        assert_eq!(paired.len(), 2);
        for (line, (alpha, beta)) in paired.iter().zip(points) {
            let alone = &run(cmd, &["--alphas", alpha, "--beta", beta])[0];
            assert_eq!(line["beta"].as_f64(), beta.parse().ok(), "{cmd}: {line}");
            assert_eq!(line[key], alone[key], "{cmd} at ({alpha}, {beta})");
        }
        assert_ne!(
            paired[0][key], paired[1][key],
            "{cmd}: two points, two values"
        );
        // Both name the text's NLL, whose mean over its tokens is the perplexity's log.
        for line in &paired {
            let (nll, ppl) = (
                line["nll"].as_f64().unwrap(),
                line["perplexity"].as_f64().unwrap(),
            );
            let n = line["tokens"]
                .as_f64()
                .unwrap_or_else(|| line["token_ids"].as_array().unwrap().len() as f64 - 1.0);
            assert!((nll / n - ppl.ln()).abs() < 1e-6, "{cmd}: {line}");
        }
    }
}

/// slerp over adapters is slerp over the two models they make, W0 + ΔA and W0 + ΔB, each
/// exported whole (the full pair's slerp is held to mergekit in tests/recipes.rs): each
/// tensor's angle between them, and the base at the sum of the two coefficients, which is not
/// 1 on an arc. Columns re-merge (an arc is no batch row's line); a plane, a base kept
/// quantized and modules_to_save are refused in one line.
#[test]
fn slerp_over_adapters_is_slerp_over_their_models() {
    use lerpscope::engine::Method;
    let exp = expected();
    let (a, b, c) = (path(&exp, "a"), path(&exp, "b"), path(&exp, "c"));
    let tmp = tempfile::tempdir().unwrap();
    let (fa, fb) = (tmp.path().join("a"), tmp.path().join("b"));
    export(&a, &b, "0", &fa);
    export(&a, &b, "1", &fb);
    let slerp = LoadOptions {
        device: DeviceChoice::Cpu,
        method: Method::Slerp,
        ..Default::default()
    };
    let (fa, fb) = (fa.display().to_string(), fb.display().to_string());
    let mut full = Engine::load(&fa, &fb, &slerp).unwrap();
    let mut adapters = Engine::load(&a, &b, &slerp).unwrap();
    assert_eq!(adapters.method(), Method::Slerp);
    assert_eq!(adapters.info.method, Method::Slerp);
    assert!(!adapters.on_line());
    let ids = [3u32, 17, 40, 9, 77];
    for alpha in [0.0, 0.3, 0.7, 1.0, 1.3] {
        full.set_alpha(alpha).unwrap();
        adapters.set_alpha(alpha).unwrap();
        let d = max_diff(&adapters.logits(&ids).unwrap(), &full.logits(&ids).unwrap());
        assert!(d <= 1e-4, "α {alpha}: max |Δlogit| = {d}");
    }
    // The arc is not the line on these adapters.
    let mut line = Engine::load(&a, &b, &with_c(&c, 0.0)).unwrap();
    line.set_alpha(0.5).unwrap();
    adapters.set_alpha(0.5).unwrap();
    let gap = max_diff(&line.logits(&ids).unwrap(), &adapters.logits(&ids).unwrap());
    assert!(gap > 1e-3, "slerp should leave the line here: {gap}");
    let Err(e) = adapters.mix(&[0.5]) else {
        panic!("rows in one batch on slerp's arc")
    };
    has(&e.to_string(), &["slerp"]);
    // Refused in one line each.
    let on_plane = LoadOptions {
        method: Method::Slerp,
        ..with_c(&c, 0.5)
    };
    has(&load_err(&a, &b, &on_plane), &["--method slerp", "--c"]);
    let quantized = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/quantized");
    let on_q4 = LoadOptions {
        base: Some(quantized.join("base-q4_1.gguf").display().to_string()),
        chat_template: false,
        ..slerp.clone()
    };
    let lora = quantized.join("lora").display().to_string();
    has(&load_err("base", &lora, &on_q4), &["slerp", "--dequantize"]);
    let adapters_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    let on_tied = LoadOptions {
        base: Some(adapters_dir.join("base-llama-tied").display().to_string()),
        ..slerp
    };
    has(
        &load_err(
            &adapters_dir.join("llama-plain-a").display().to_string(),
            &adapters_dir.join("llama-saved-b").display().to_string(),
            &on_tied,
        ),
        &["slerp", "modules_to_save"],
    );
}
