//! `lerpscope export`: the blend at α written as a Hugging Face folder or a GGUF file, held to
//! transformers running the same blend made in torch from the endpoints' state dicts
//! (tests/fixtures/export_expected.json, made by tests/fixtures/make_export.py without
//! lerpscope), to the engine that wrote it, and to itself across formats; and every way an
//! export can fail leaves nothing behind.

use lerpscope::engine::{Checkpoint, TensorFiles};
use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lerpscope(args: &[&str], dir: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run lerpscope")
}

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

fn export(a: &str, b: &str, alpha: &str, out: &Path, format: &str) {
    let o = try_export(a, b, alpha, out, format);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn try_export(a: &str, b: &str, alpha: &str, out: &Path, format: &str) -> std::process::Output {
    lerpscope(
        &[
            "export",
            "--a",
            a,
            "--b",
            b,
            "--alpha",
            alpha,
            "--out",
            out.to_str().unwrap(),
            "--format",
            format,
            "--device",
            "cpu",
        ],
        &root(),
    )
}

/// A Python that has `modules`, to run tests/fixtures/check_export.py with
/// (`LERPSCOPE_PYTHON`, else python3); None (the test skips, saying so) where there is none.
fn python_with(modules: &str, required_by: &str) -> Option<String> {
    let python = std::env::var("LERPSCOPE_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        lerpscope::shapes::skip(
            &format!("{python} cannot import {modules} (set LERPSCOPE_PYTHON)"),
            required_by,
        );
    }
    ok.then_some(python)
}

fn check_export(python: &str, args: &[&str]) -> Value {
    let o = Command::new(python)
        .arg(root().join("tests/fixtures/check_export.py"))
        .args(args)
        .output()
        .expect("run check_export.py");
    assert!(
        o.status.success(),
        "check_export.py {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Gemma's norm gains are stored plus one in GGUF: back from it they are within an f32
/// rounding of what they were, not bit for bit.
fn gguf_is_exact(name: &str) -> bool {
    !name.contains("gemma")
}

fn max_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

/// Mutation tried: the snapshot blended at 1 − α (fails: the logits are another model's).
#[test]
fn exports_load_in_transformers_and_back_in_lerpscope() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/export_expected.json")).unwrap(),
    )
    .unwrap();
    let prompts: Vec<Vec<u32>> = serde_json::from_value(exp["prompt_ids"].clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for (name, blend) in exp["blends"].as_object().unwrap() {
        let (a, b, alpha) = (
            blend["a"].as_str().unwrap(),
            blend["b"].as_str().unwrap(),
            blend["alpha"].as_str().unwrap(),
        );
        let hf = tmp.path().join(name);
        let gg = tmp.path().join(format!("{name}.gguf"));
        export(a, b, alpha, &hf, "hf");
        // What llama.cpp would run differently has no GGUF form, and the export says so in one
        // line: the tiny Gemmas of families/ have a query scale llama.cpp would not derive, the
        // tiny Qwen3s an output-projection bias its qwen3 does not load (make_families.py).
        let why = match name.as_str() {
            "gemma2" | "gemma3" => Some("query_pre_attn_scalar"),
            "qwen3" | "gguf-qwen3" => Some("attn_output.bias"),
            _ => None,
        };
        let refused = why.is_some();
        let o = try_export(a, b, alpha, &gg, "gguf");
        if let Some(why) = why {
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success() && !gg.exists(), "{name}: {err}");
            assert!(
                err.trim().lines().count() == 1 && err.contains(why),
                "{name}: {err}"
            );
        } else {
            assert!(
                o.status.success(),
                "{name}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
        }
        let (hf_s, gg_s) = (hf.display().to_string(), gg.display().to_string());
        // The column of the dequantised path: an export holds the exact dequantised blend (a
        // pair of quantized GGUFs kept quantized also rounds its activations to Q8).
        let dequantised = LoadOptions {
            dequantize: true,
            ..cpu()
        };
        let mut source = Engine::load(
            &root().join(a).display().to_string(),
            &root().join(b).display().to_string(),
            &dequantised,
        )
        .unwrap();
        source.set_alpha(alpha.parse::<f64>().unwrap()).unwrap();
        // The export alone (A = B = export; α is then irrelevant).
        let exported = Engine::load(&hf_s, &hf_s, &cpu()).unwrap();
        let from_gguf = (!refused).then(|| Engine::load(&gg_s, &gg_s, &cpu()).unwrap());
        for (ids, want) in prompts.iter().zip(blend["logits"].as_array().unwrap()) {
            let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
            let got = exported.logits(ids).unwrap();
            let d = max_diff(&got, &want);
            assert!(
                d <= 1e-5,
                "{name}: transformers on the export: max |Δlogit| = {d}"
            );
            assert_eq!(
                got,
                source.logits(ids).unwrap(),
                "{name}: the export is the column"
            );
            if let Some(g) = &from_gguf {
                let back = g.logits(ids).unwrap();
                if gguf_is_exact(name) {
                    assert_eq!(got, back, "{name}: GGUF export");
                } else {
                    let d = max_diff(&got, &back);
                    assert!(d <= 1e-5, "{name}: GGUF export: max |Δlogit| = {d}");
                }
            }
        }
        // Greedy text at α = 0 of (export, anything) is the column it came from.
        let params = GenerationParams {
            max_tokens: 12,
            sampling: SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            ignore_eos: false,
            token_info: false,
        };
        let b_path = root().join(b).display().to_string();
        // (A GGUF pair's B may hold F16 tensors where the export holds F32: not one pair.)
        if !b.contains("adapters") && !b.ends_with(".gguf") {
            let mut pair = Engine::load(&hf_s, &b_path, &cpu()).unwrap();
            pair.set_alpha(0.0).unwrap();
            let never = AtomicBool::new(false);
            assert_eq!(
                pair.generate("The movie", &params, &never, &mut |_| {})
                    .unwrap()
                    .token_ids,
                source
                    .generate("The movie", &params, &never, &mut |_| {})
                    .unwrap()
                    .token_ids,
                "{name}"
            );
        }
        // The GGUF holds the folder's tensors (read back through lerpscope's reader, which
        // tests/gguf.rs holds to the gguf package bit for bit).
        let folder = TensorFiles::open(&[hf.join("model.safetensors")]).unwrap();
        if !refused {
            let back =
                Checkpoint::open(lerpscope::engine::source::local(&gg, "x").unwrap()).unwrap();
            for n in folder.tensors.keys() {
                let (f, g) = (
                    folder.read_f32(n).unwrap(),
                    back.weights.read_f32(n).unwrap(),
                );
                if gguf_is_exact(name) {
                    assert_eq!(f, g, "{name} {n}");
                } else {
                    assert!(max_diff(&f, &g) <= 1e-6, "{name} {n}");
                }
            }
        }
        // The recipe travels in the file.
        let header = std::fs::read(hf.join("model.safetensors")).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&header).unwrap();
        let m = meta.metadata().as_ref().unwrap();
        assert_eq!(m["lerpscope.alpha"], alpha);
        assert_eq!(m["lerpscope.b"].as_str(), b);
        assert_eq!(m["lerpscope.b.sha256"].len(), 64);
        assert!(std::fs::read_to_string(hf.join("README.md"))
            .unwrap()
            .contains(&format!("α = {alpha}")));
    }
}

/// Every family's exports, as the reference tools read them: transformers loads the folder
/// (its config.json written by the family's unit where the source was a GGUF) and computes
/// lerpscope's logits within 1e-5; llama.cpp's `gguf` package reads the GGUF, every tensor
/// under one of the architecture's llama.cpp names.
#[test]
fn every_familys_exports_read_in_transformers_and_the_gguf_package() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/export_expected.json")).unwrap(),
    )
    .unwrap();
    let torch = python_with("torch, transformers", "LERPSCOPE_REQUIRE_TRANSFORMERS");
    let gguf = python_with("gguf", "LERPSCOPE_REQUIRE_GGUF_PY");
    if torch.is_none() && gguf.is_none() {
        return;
    }
    let ids = serde_json::to_string(&exp["prompt_ids"]).unwrap();
    let prompts: Vec<Vec<u32>> = serde_json::from_value(exp["prompt_ids"].clone()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (name, blend) in exp["blends"].as_object().unwrap() {
        let (a, b, alpha) = (
            blend["a"].as_str().unwrap(),
            blend["b"].as_str().unwrap(),
            blend["alpha"].as_str().unwrap(),
        );
        let hf = tmp.path().join(name);
        export(a, b, alpha, &hf, "hf");
        if let Some(python) = &torch {
            let out = check_export(python, &["logits", hf.to_str().unwrap(), &ids]);
            let engine =
                Engine::load(&hf.display().to_string(), &hf.display().to_string(), &cpu()).unwrap();
            assert_eq!(out["class"], engine.info.architecture, "{name}");
            for (p, want) in prompts.iter().zip(out["logits"].as_array().unwrap()) {
                let want: Vec<f32> = serde_json::from_value(want.clone()).unwrap();
                let d = max_diff(&engine.logits(p).unwrap(), &want);
                assert!(d <= 1e-5, "{name}: transformers on the export: {d}");
            }
        }
        let gg = tmp.path().join(format!("{name}.gguf"));
        if let (Some(python), true) = (&gguf, try_export(a, b, alpha, &gg, "gguf").status.success())
        {
            let out = check_export(python, &["gguf", gg.to_str().unwrap()]);
            assert_eq!(out["unknown"], serde_json::json!([]), "{name}: {out}");
            checked += 1;
        }
    }
    if gguf.is_some() {
        assert!(checked >= 10, "GGUF exports checked: {checked}");
    }
}

fn no_leftovers(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn failed_exports_leave_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (
        root()
            .join("tests/fixtures/tiny-llama-a")
            .display()
            .to_string(),
        root()
            .join("tests/fixtures/tiny-llama-b")
            .display()
            .to_string(),
    );
    // An --out that exists: refused, then replaced with --force.
    let out = tmp.path().join("taken");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let args = [
        "export", "--a", &a, "--b", &b, "--alpha", "0.5", "--out", "taken", "--device", "cpu",
    ];
    let o = lerpscope(&args, tmp.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("--out") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(out.join("keep.txt").exists());
    // --force replaces a model folder, not a folder of other things...
    let mut forced = args.to_vec();
    forced.push("--force");
    let o = lerpscope(&forced, tmp.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not a model folder"),
        "{err}"
    );
    assert!(out.join("keep.txt").exists());
    // ...nor the folder an endpoint is read from (the blend would replace its source).
    let own = tmp.path().join("b-copy");
    std::fs::create_dir_all(&own).unwrap();
    for f in std::fs::read_dir(&b).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, own.join(f.file_name().unwrap())).unwrap();
    }
    let before = std::fs::read(own.join("model.safetensors")).unwrap();
    let o = lerpscope(
        &[
            "export", "--a", &a, "--b", "b-copy", "--alpha", "0.5", "--out", "b-copy", "--force",
            "--device", "cpu",
        ],
        tmp.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the b endpoint is read from there"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(own.join("model.safetensors")).unwrap(),
        before
    );
    // ...nor a file that is not a GGUF file (a recipe given as --out), nor a folder holding
    // the recipe the export reads.
    std::fs::write(tmp.path().join("notes.txt"), "mine").unwrap();
    let mut onto_file = args.to_vec();
    onto_file[8] = "notes.txt";
    onto_file.push("--force");
    let o = lerpscope(&onto_file, tmp.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("not a GGUF file"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("notes.txt")).unwrap(),
        "mine"
    );
    let recipe = own.join("merge.yaml");
    std::fs::write(
        &recipe,
        format!(
            "models:\n  - {{model: {a}, parameters: {{weight: 1}}}}\n  - {{model: {b}, parameters: {{weight: 1}}}}\nmerge_method: linear\n"
        ),
    )
    .unwrap();
    let o = lerpscope(
        &[
            "export",
            "--recipe",
            "b-copy/merge.yaml",
            "--alpha",
            "1",
            "--out",
            "b-copy",
            "--force",
            "--device",
            "cpu",
        ],
        tmp.path(),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("the recipe b-copy/merge.yaml is read from there"),
        "{err}"
    );
    assert!(recipe.is_file());
    // A config.json beside other things (notes, a subfolder) is not a model folder either.
    std::fs::write(out.join("config.json"), "{}").unwrap();
    std::fs::create_dir(out.join("src")).unwrap();
    std::fs::write(out.join("eval_results.json"), "{}").unwrap();
    for _ in 0..3 {
        let o = lerpscope(&forced, tmp.path());
        let err = String::from_utf8_lossy(&o.stderr);
        let named = ["keep.txt", "src", "eval_results.json"]
            .into_iter()
            .find(|h| err.contains(&format!("holds {h}, which is not a model's file")));
        assert!(!o.status.success(), "{err}");
        let held = out.join(named.unwrap_or_else(|| panic!("{err}")));
        assert!(held.exists());
        remove_any(&held);
    }
    // What a killed run left of a model file is part of the model folder; a running one's
    // partial file is not (its writer is still at work there).
    let live = out.join(format!(".model.safetensors.partial-{}", std::process::id()));
    std::fs::write(&live, "writing").unwrap();
    let o = lerpscope(&forced, tmp.path());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("which a running process"),
        "{err}"
    );
    std::fs::remove_file(&live).unwrap();
    std::fs::write(out.join(".model.safetensors.partial-4999999"), "killed").unwrap();
    std::fs::write(out.join(".config.json.partial-4999998"), "killed").unwrap();
    assert!(lerpscope(&forced, tmp.path()).status.success());
    assert!(out.join("model.safetensors").exists());
    assert!(!out.join(".model.safetensors.partial-4999999").exists());
    // An --out named .gguf is a GGUF file without --format.
    let o = lerpscope(
        &[
            "export",
            "--a",
            &a,
            "--b",
            &b,
            "--alpha",
            "0.5",
            "--out",
            "blend.gguf",
            "--device",
            "cpu",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(tmp.path().join("blend.gguf").is_file());
    no_leftovers(tmp.path());
    // The weights are as readable as the folder's other files (they were private: 0600).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode();
        assert_eq!(mode("model.safetensors"), mode("config.json"));
    }
    // A full disk: the file size limit makes writes fail (EFBIG) part way.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 64; exec '{}' export --a '{a}' --b '{b}' --alpha 0.5 --out full --device cpu",
            env!("CARGO_BIN_EXE_lerpscope")
        ))
        .current_dir(tmp.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("full") && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!tmp.path().join("full").exists());
    no_leftovers(tmp.path());
}

/// Ctrl-C (or a kill) in the middle of an export takes its hidden partial copy with it, and
/// the process then ends by that signal (a script stops there); a signal it was started
/// ignoring (`nohup`) stays ignored.
#[test]
fn an_interrupted_export_removes_its_partial_copy() {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    let paused = |format: &str, out: &str, ignore: Option<i32>| {
        let mut c = paused_export(&a, &b, out, format, tmp.path());
        if let Some(signal) = ignore {
            // SAFETY: signal(2) in the child before exec, as nohup does.
            unsafe {
                c.pre_exec(move || {
                    libc::signal(signal, libc::SIG_IGN);
                    Ok(())
                });
            }
        }
        let child = c.spawn().unwrap();
        wait_for_partial(tmp.path(), format);
        child
    };
    for (format, out, signal) in [
        ("hf", "cut", libc::SIGINT),
        ("gguf", "cut.gguf", libc::SIGTERM),
    ] {
        let mut child = paused(format, out, None);
        // SAFETY: a signal to our own child.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let status = child.wait().unwrap();
        assert_eq!(status.signal(), Some(signal), "{format}: {status:?}");
        no_leftovers(tmp.path());
        assert!(!tmp.path().join(out).exists(), "{format}");
    }
    let mut child = paused("hf", "nohup", Some(libc::SIGHUP));
    // SAFETY: signals to our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGHUP) }, 0);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        child.try_wait().unwrap().is_none(),
        "an ignored SIGHUP ended it"
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What comes to --out while an export is written (the user's files, another export that
/// finished first) is not replaced without --force: the export that finds it there at the end
/// is refused and leaves it as it is. It used to be replaced, whatever it was.
#[test]
fn what_comes_to_out_during_an_export_is_not_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    for (format, out, theirs) in [
        ("hf", "late", "late/notes.txt"),
        ("gguf", "late.gguf", "late.gguf"),
    ] {
        let child = paused_export(&a, &b, out, format, tmp.path())
            .env("LERPSCOPE_TEST_PAUSE_SECS", "2")
            .spawn()
            .unwrap();
        wait_for_partial(tmp.path(), format);
        let theirs = tmp.path().join(theirs);
        std::fs::create_dir_all(theirs.parent().unwrap()).unwrap();
        std::fs::write(&theirs, "mine").unwrap();
        let done = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&done.stderr);
        assert!(!done.status.success(), "{format}: {err}");
        assert!(
            err.contains("already exists (it appeared while the export was written)"),
            "{format}: {err}"
        );
        assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "mine");
        no_leftovers(tmp.path());
    }
}

/// An export killed at each of its writes in turn (LERPSCOPE_TEST_KILL_AT_WRITE: the process
/// ends on the spot, nothing cleaned up) never leaves a model at --out, and the next export to
/// the same place removes what it left; one whose k-th write fails instead
/// (LERPSCOPE_TEST_FAIL_WRITE, a full disk) says so in one line and leaves nothing. Both
/// formats, every write point. Mutations tried: the next export not clearing the partial
/// folder (leftovers found), the failed export not removing its partial output (leftovers).
#[test]
fn an_export_stopped_at_any_write_leaves_no_half_written_model() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    for (format, out) in [("hf", "cut"), ("gguf", "cut.gguf")] {
        let export = |hook: Option<(&str, usize)>| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_lerpscope"));
            c.args([
                "export", "--a", &a, "--b", &b, "--alpha", "0.5", "--out", out,
            ])
            .args(["--format", format, "--device", "cpu"])
            .current_dir(tmp.path());
            if let Some((var, k)) = hook {
                c.env(var, k.to_string());
            }
            c.output().unwrap()
        };
        let mut writes = 0;
        for k in 1..=200 {
            let killed = export(Some(("LERPSCOPE_TEST_KILL_AT_WRITE", k)));
            if killed.status.success() {
                break; // k is past the export's last write
            }
            writes = k;
            assert!(
                !tmp.path().join(out).exists(),
                "{format}: killed at write {k}, yet {out} exists"
            );
            let failed = export(Some(("LERPSCOPE_TEST_FAIL_WRITE", k)));
            let err = String::from_utf8_lossy(&failed.stderr);
            assert!(
                !failed.status.success(),
                "{format}: write {k} failed unnoticed"
            );
            assert!(
                err.contains("injected failure") && err.contains("nothing was written"),
                "{format}, write {k}: {err}"
            );
            assert_eq!(err.trim().lines().count(), 1, "{format}, write {k}: {err}");
            assert!(!tmp.path().join(out).exists());
            no_leftovers(tmp.path());
            // Killed again, then an export with no hook: it clears what the kill left.
            export(Some(("LERPSCOPE_TEST_KILL_AT_WRITE", k)));
            let whole = export(None);
            assert!(
                whole.status.success(),
                "{}",
                String::from_utf8_lossy(&whole.stderr)
            );
            no_leftovers(tmp.path());
            let o = tmp.path().join(out);
            if o.is_dir() {
                std::fs::remove_dir_all(&o).unwrap();
            } else {
                std::fs::remove_file(&o).unwrap();
            }
        }
        assert!(writes >= 3, "{format}: only {writes} write points");
    }
}

/// A tensor the config never reads (here a bias on o_proj where the config turns biases off)
/// is left alone when loading; a GGUF export has no name for it and says why, in one line.
#[test]
fn a_tensor_the_config_does_not_use_is_named_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let mut sides = Vec::new();
    for side in ["a", "b"] {
        let dir = tmp.path().join(side);
        std::fs::create_dir_all(&dir).unwrap();
        let src = root().join(format!("tests/fixtures/tiny-llama-{side}"));
        for f in ["config.json", "generation_config.json", "tokenizer.json"] {
            std::fs::copy(src.join(f), dir.join(f)).unwrap();
        }
        let file = src.join("model.safetensors");
        let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu).unwrap();
        let o = &tensors["model.layers.0.self_attn.o_proj.weight"];
        let bias = candle_core::Tensor::zeros(o.dim(0).unwrap(), o.dtype(), o.device()).unwrap();
        tensors.insert("model.layers.0.self_attn.o_proj.bias".into(), bias);
        candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
        sides.push(dir.display().to_string());
    }
    let out = tmp.path().join("x.gguf");
    let o = try_export(&sides[0], &sides[1], "0.5", &out, "gguf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && !out.exists(), "{err}");
    assert!(
        err.trim().lines().count() == 1
            && err.contains("o_proj.bias")
            && err.contains("does not use it"),
        "{err}"
    );
}

fn remove_any(p: &std::path::Path) {
    if p.is_dir() {
        std::fs::remove_dir_all(p).unwrap()
    } else {
        std::fs::remove_file(p).unwrap()
    }
}

/// One export twice is one file twice, byte for byte: the safetensors metadata (the recipe's
/// `lerpscope.*` keys) is written in order, not in a hash map's.
#[test]
fn an_export_is_byte_for_byte_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = |n: &str| root().join("tests/fixtures").join(n).display().to_string();
    let (a, b) = (fixture("tiny-llama-a"), fixture("tiny-llama-b"));
    let outs = [tmp.path().join("one"), tmp.path().join("two")];
    for out in &outs {
        export(&a, &b, "0.3", out, "hf");
    }
    let [one, two] = outs.map(|o| std::fs::read(o.join("model.safetensors")).unwrap());
    assert!(one == two, "two exports of one blend differ");
    // Still a safetensors file that says what it is.
    let st = safetensors::SafeTensors::read_metadata(&one).unwrap().1;
    let meta = st.metadata().as_ref().unwrap();
    assert_eq!(meta.get("format").map(String::as_str), Some("pt"));
    assert_eq!(meta.get("lerpscope.alpha").map(String::as_str), Some("0.3"));
}

/// An export killed between stepping --out's old model aside and moving the new one in left
/// only `.NAME.partial-old-PID`: the next export puts it back first, so it is neither
/// cleared away nor replaced without --force.
#[test]
fn a_model_stepped_aside_by_a_killed_export_comes_back() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = |n: &str| root().join("tests/fixtures").join(n).display().to_string();
    let (a, b) = (fixture("tiny-llama-a"), fixture("tiny-llama-b"));
    let old = tmp.path().join("old");
    export(&a, &b, "0.2", &old, "hf");
    // No process has this id (above any pid_max).
    let aside = tmp.path().join(".cut.partial-old-999999999");
    std::fs::rename(&old, &aside).unwrap();
    let cut = tmp.path().join("cut");
    let o = try_export(&a, &b, "0.7", &cut, "hf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("already exists (put back from"),
        "{err}"
    );
    assert!(cut.join("model.safetensors").is_file() && !aside.exists());
    let card = std::fs::read_to_string(cut.join("README.md")).unwrap();
    assert!(card.contains("0.2"), "{card}");
    // A live export's (here this process's) is its own to move in: left alone.
    let live = tmp
        .path()
        .join(format!(".cut.partial-old-{}", std::process::id()));
    std::fs::rename(&cut, &live).unwrap();
    let o = try_export(&a, &b, "0.7", &cut, "hf");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let card = std::fs::read_to_string(cut.join("README.md")).unwrap();
    assert!(card.contains("0.7") && live.exists(), "{card}");
}

/// The model at `gguf` prompts "cat" through the template `<|user|>…<|assistant|>`.
fn prompted_through_the_template(gguf: &Path) {
    let g = gguf.to_str().unwrap();
    let e = Engine::load(g, g, &cpu()).unwrap();
    assert_eq!(
        e.encode("cat").unwrap(),
        e.encode_text("<|user|>cat<|assistant|>").unwrap()
    );
}

/// A chat template in a file of its own (chat_template.jinja) goes with the export, in both
/// formats.
#[test]
fn an_export_keeps_a_chat_template_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    let template = "<|user|>{{ messages[0]['content'] }}<|assistant|>";
    std::fs::write(a.join("chat_template.jinja"), template).unwrap();
    let (hf, gguf) = (tmp.path().join("hf"), tmp.path().join("m.gguf"));
    let (sa, sb) = (a.to_str().unwrap(), b.to_str().unwrap());
    export(sa, sb, "0.5", &hf, "hf");
    assert_eq!(
        std::fs::read_to_string(hf.join("chat_template.jinja")).unwrap(),
        template
    );
    export(sa, sb, "0.5", &gguf, "gguf");
    prompted_through_the_template(&gguf);
    // B's template and end token, where A has none of its own: the export is prompted and
    // stops as the pair was.
    std::fs::remove_file(a.join("chat_template.jinja")).unwrap();
    std::fs::write(
        b.join("tokenizer_config.json"),
        serde_json::json!({ "chat_template": template }).to_string(),
    )
    .unwrap();
    std::fs::write(b.join("generation_config.json"), r#"{"eos_token_id": 5}"#).unwrap();
    let pair = Engine::load(sa, sb, &cpu()).unwrap();
    let (hf, gguf) = (tmp.path().join("hf-b"), tmp.path().join("b.gguf"));
    export(sa, sb, "0.5", &hf, "hf");
    assert_eq!(
        std::fs::read_to_string(hf.join("chat_template.jinja")).unwrap(),
        template
    );
    let gen: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("generation_config.json")).unwrap())
            .unwrap();
    let ids: Vec<u32> = serde_json::from_value(gen["eos_token_id"].clone()).unwrap();
    assert_eq!(ids, pair.end_tokens(), "{gen}");
    assert!(ids.contains(&5), "{ids:?}");
    let h = hf.to_str().unwrap();
    assert_eq!(
        Engine::load(h, h, &cpu()).unwrap().end_tokens(),
        pair.end_tokens()
    );
    export(sa, sb, "0.5", &gguf, "gguf");
    prompted_through_the_template(&gguf);
    // A GGUF's template that writes the BOS itself gets the BOS's text (token 0 here).
    let with_bos = format!("{{{{ bos_token }}}}{template}");
    std::fs::write(b.join("chat_template.jinja"), &with_bos).unwrap();
    let gguf = tmp.path().join("bos.gguf");
    export(sa, sb, "0.5", &gguf, "gguf");
    let g = gguf.to_str().unwrap();
    let e = Engine::load(g, g, &cpu()).unwrap();
    let ids = e.encode("cat").unwrap();
    assert_eq!(ids[0], 0, "{ids:?}");
    assert_eq!(
        ids,
        e.encode_text("<|endoftext|><|user|>cat<|assistant|>")
            .unwrap()
    );
}

/// A GGUF's chat template stays its own when `--tokenizer` gives the tokenizer apart (the
/// template is read from the GGUF where the tokenizer.json has none beside it).
#[test]
fn a_gguf_keeps_its_template_under_a_tokenizer_given_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    std::fs::write(
        a.join("chat_template.jinja"),
        "the {{ messages[0]['content'] }} sat",
    )
    .unwrap();
    let o = lerpscope(
        &[
            "export",
            "--a",
            "a",
            "--b",
            "b",
            "--alpha",
            "0.5",
            "--out",
            "blend.gguf",
            "--device",
            "cpu",
        ],
        tmp.path(),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let apart = tmp.path().join("tokenizer-only");
    std::fs::create_dir(&apart).unwrap();
    std::fs::copy(a.join("tokenizer.json"), apart.join("tokenizer.json")).unwrap();
    let file = tmp.path().join("blend.gguf").display().to_string();
    let e = Engine::load(
        &file,
        &file,
        &LoadOptions {
            tokenizer: Some(apart.join("tokenizer.json")),
            ..cpu()
        },
    )
    .unwrap();
    assert!(e.has_chat_template());
    assert_eq!(
        e.encode("cat").unwrap(),
        e.encode_text("the cat sat").unwrap()
    );
}

/// An export whose values overflow the dtype asked (f16 past ±65504, far out on the line) is
/// refused by tensor, with nothing written: it used to write infinities that no tool runs.
#[test]
fn an_export_past_f16s_range_is_refused_by_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    // B far from A: every weight of B a hundred times its own.
    let weights = b.join("model.safetensors");
    let big: std::collections::HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, (t * 100.0).unwrap()))
            .collect();
    candle_core::safetensors::save(&big, &weights).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    for format in ["hf", "gguf"] {
        let out = tmp.path().join(format!("far-{format}"));
        let o = try_export_dtype(a, b, "1000", &out, format, "f16");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{format}: {err}");
        assert!(
            err.contains("tensor ")
                && err.contains("not finite in f16")
                && err.contains("--dtype bf16"),
            "{format}: {err}"
        );
        assert!(!out.exists(), "{format}");
        no_leftovers(tmp.path());
        // In f32 the same point is written.
        let o = try_export_dtype(a, b, "1000", &out, format, "f32");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
}

fn try_export_dtype(
    a: &str,
    b: &str,
    alpha: &str,
    out: &Path,
    format: &str,
    dtype: &str,
) -> std::process::Output {
    let out = out.to_str().unwrap();
    lerpscope(
        &[
            "export", "--a", a, "--b", b, "--alpha", alpha, "--out", out, "--format", format,
            "--dtype", dtype, "--device", "cpu",
        ],
        &root(),
    )
}

/// A failed export takes away the folders it made for --out ("nothing was written" left
/// them), and an --out under a file names both.
#[test]
fn a_failed_export_leaves_no_folder_it_made() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    lerpscope::shapes::write_tiny_pair(&a, &b, lerpscope::shapes::Arch::Llama).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let out = tmp.path().join("nd/deeper/x.gguf");
    let o = Command::new(env!("CARGO_BIN_EXE_lerpscope"))
        .args([
            "export", "--a", a, "--b", b, "--alpha", "0.5", "--device", "cpu",
        ])
        .args(["--out", out.to_str().unwrap(), "--format", "gguf"])
        .env("LERPSCOPE_TEST_FAIL_WRITE", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!tmp.path().join("nd").exists(), "{err}");
    let file = tmp.path().join("f1");
    std::fs::write(&file, "x").unwrap();
    let o = try_export(a, b, "0.5", &file.join("sub"), "hf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("f1/sub: cannot create its folder") && err.contains("f1"),
        "{err}"
    );
}

/// An export of the tiny pair at `a` and `b` to `out` in `dir`, paused at its second write
/// (LERPSCOPE_TEST_PAUSE_AT_WRITE) for something to happen from outside.
fn paused_export(a: &Path, b: &Path, out: &str, format: &str, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lerpscope"));
    c.args([
        "export",
        "--a",
        a.to_str().unwrap(),
        "--b",
        b.to_str().unwrap(),
    ])
    .args([
        "--alpha", "0.5", "--out", out, "--format", format, "--device", "cpu",
    ])
    .env("LERPSCOPE_TEST_PAUSE_AT_WRITE", "2")
    .current_dir(dir)
    .stderr(std::process::Stdio::piped());
    c
}

/// Wait (30 s at most) until an export's partial copy is in `dir`.
fn wait_for_partial(dir: &Path, format: &str) {
    let start = std::time::Instant::now();
    let partial = || {
        std::fs::read_dir(dir)
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains("partial"))
    };
    while !partial() {
        assert!(start.elapsed().as_secs() < 30, "{format}: no partial copy");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// LongRoPE with partial rotary (Phi-3), YaRN (Qwen2), NoPE layers (SmolLM3), Granite's
/// scalars, Gemma 1's norms, OLMo 2's post-norms, OLMo 3's windows with YaRN on its full
/// layers, Phi-2's parallel LayerNorm blocks, GPT-NeoX's (q, k and v fused head by head),
/// StableLM's, StarCoder2's (its window too), GLM-4's, Cohere's, Cohere 2's, ERNIE 4.5's and
/// Seed-OSS's survive export in both formats: each
/// export, read back, computes transformers' logits for the torch blend at the same α
/// (tests/fixtures/families/variants.json, from make_variant_families.py). The GGUF carries Phi-3's
/// factor lists as tensors and its attention factor, as llama.cpp's converter writes them.
#[test]
fn long_context_ropes_export_to_both_formats() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/families/variants.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for family in [
        "phi3-longrope",
        "qwen2-yarn",
        "smollm3",
        "granite",
        "gemma",
        "olmo2",
        "olmo3",
        "exaone4",
        "exaone4-dense",
        "phi",
        "gptneox",
        "gptneox-sequential",
        "stablelm",
        "stablelm-parallel",
        "starcoder2",
        "starcoder2-window",
        "glm4",
        "cohere",
        "cohere2",
        "ernie4_5",
        "seed_oss",
    ] {
        let side = |s: &str| format!("tests/fixtures/families/{family}-{s}");
        // llama.cpp slides only a 64-layer EXAONE 4.0 (exaone4_windows_other_than_llamacpps_…).
        let formats: &[&str] = match family {
            "exaone4" => &["hf"],
            _ => &["hf", "gguf"],
        };
        for &format in formats {
            let out = tmp.path().join(format!("{family}.{format}"));
            export(&side("a"), &side("b"), "0.3", &out, format);
            let path = out.display().to_string();
            let engine = Engine::load(&path, &path, &cpu()).unwrap();
            for run in exp["families"][family]["0.3"].as_array().unwrap() {
                let ids: Vec<u32> = serde_json::from_value(run["prompt_ids"].clone()).unwrap();
                let want: Vec<f32> = serde_json::from_value(run["logits"].clone()).unwrap();
                let d = max_diff(&engine.logits(&ids).unwrap(), &want);
                assert!(d < 1e-4, "{family} as {format}: max |Δlogit| = {d}");
            }
        }
    }
}

/// llama.cpp's phi2 reads its own head and runs GELU: a Phi with a tied head, or with silu,
/// has no GGUF form. The export says so and writes nothing; to Hugging Face it keeps both.
#[test]
fn phi_with_a_tied_head_or_silu_is_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    // Tied for real: a head of its own beside a tied config would run untied.
    refused_for_gguf(
        tmp.path(),
        ("phi-a", "tie_word_embeddings", Value::Bool(true)),
        "ties it",
        |m| drop_tensor(m, "lm_head.weight"),
    );
    refused_for_gguf(
        tmp.path(),
        ("phi-a", "hidden_act", Value::from("silu")),
        "hidden_act is silu",
        |_| {},
    );
}

/// Fixture `family` with config `key` set to `value` (and `prepare` run on its folder): its
/// GGUF export is refused saying `says`, and writes nothing; its Hugging Face export keeps
/// the key.
fn refused_for_gguf(
    dir: &Path,
    (family, key, value): (&str, &str, Value),
    says: &str,
    prepare: impl Fn(&Path),
) {
    let dir = dir.join(format!("{family}-{key}"));
    std::fs::create_dir(&dir).unwrap();
    let model = edited_fixture(family, &dir, |c| c[key] = value.clone());
    prepare(&model);
    let m = model.to_str().unwrap();
    let gg = dir.join("out.gguf");
    let o = try_export(m, m, "0.5", &gg, "gguf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains(says), "{key}: {err}");
    assert!(!gg.exists(), "{key}");
    let hf = dir.join("out");
    export(m, m, "0.5", &hf, "hf");
    let back: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(back[key], value, "{key}");
}

/// A SmolLM3 whose NoPE layers are not every fourth has no GGUF form (llama.cpp fixes them):
/// the export says so and writes nothing; to Hugging Face it keeps its pattern.
#[test]
fn smollm3_with_other_nope_layers_is_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let model = edited_fixture("smollm3-a", tmp.path(), |c| {
        c["no_rope_layers"] = serde_json::json!([1, 0, 1, 0]);
    });
    let m = model.to_str().unwrap();
    let gg = tmp.path().join("out.gguf");
    let o = try_export(m, m, "0.5", &gg, "gguf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("every fourth layer"),
        "{err}"
    );
    assert!(!gg.exists());
    let hf = tmp.path().join("out");
    export(m, m, "0.5", &hf, "hf");
    let back: Value =
        serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap()).unwrap();
    assert_eq!(back["no_rope_layers"], serde_json::json!([1, 0, 1, 0]));
}

/// An OLMo 3 whose sliding layers scale their RoPE too, or rotate at a base of their own, has
/// no GGUF form (llama.cpp runs them on the plain RoPE of the full layers' base): the export
/// says so and writes nothing; to Hugging Face it keeps both RoPEs.
#[test]
fn olmo3_with_scaled_sliding_layers_is_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let scaled = |c: &mut Value| {
        let full = c["rope_parameters"]["full_attention"].clone();
        c["rope_parameters"]["sliding_attention"] = full;
    };
    let own_base = |c: &mut Value| {
        c["rope_parameters"]["sliding_attention"]["rope_theta"] = 10_000.into();
    };
    for (name, edit, says, sliding) in [
        (
            "scaled",
            &scaled as &dyn Fn(&mut Value),
            "sliding layers on an unscaled RoPE",
            ("yarn", 500_000.0),
        ),
        (
            "own-base",
            &own_base,
            "at the full layers' RoPE base",
            ("default", 10_000.0),
        ),
    ] {
        let dir = tmp.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let model = edited_fixture("olmo3-a", &dir, edit);
        let m = model.to_str().unwrap();
        let gg = dir.join("out.gguf");
        let o = try_export(m, m, "0.5", &gg, "gguf");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{name}: {err}");
        assert!(!gg.exists());
        let hf = dir.join("out");
        export(m, m, "0.5", &hf, "hf");
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        let rope = &back["rope_parameters"];
        assert_eq!(rope["sliding_attention"]["rope_type"], sliding.0, "{name}");
        assert_eq!(rope["sliding_attention"]["rope_theta"], sliding.1, "{name}");
        assert_eq!(rope["full_attention"]["rope_type"], "yarn", "{name}");
    }
}

/// llama.cpp's `exaone4` slides only a model of 64 layers: the 4-layer EXAONE 4.0 with
/// windows (and no RoPE on its full layer) has no GGUF form, said in one line with nothing
/// written; the same model without its window does.
#[test]
fn exaone4_windows_other_than_llamacpps_are_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let m = root().join("tests/fixtures/families/exaone4-a");
    let m = m.to_str().unwrap();
    let gg = tmp.path().join("out.gguf");
    let o = try_export(m, m, "0.5", &gg, "gguf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("slides a model of 64 layers, and no other"),
        "{err}"
    );
    assert!(!gg.exists());
    let windowless = edited_fixture("exaone4-a", tmp.path(), |c| {
        c["sliding_window"] = Value::Null;
        c["layer_types"] = serde_json::json!([
            "full_attention",
            "full_attention",
            "full_attention",
            "full_attention"
        ]);
    });
    let w = windowless.to_str().unwrap();
    export(w, w, "0.5", &gg, "gguf");
    let engine = Engine::load(gg.to_str().unwrap(), gg.to_str().unwrap(), &cpu()).unwrap();
    assert_eq!(engine.info.architecture, "Exaone4ForCausalLM");
}

/// EXAONE 4.0 32B's layout, 64 layers (the fixture's four repeated), windows on the sliding
/// layers and no RoPE on the full ones: the depth llama.cpp's `exaone4` slides. Exported to
/// GGUF, by default (every fourth layer full) and with other layer types (every second, which
/// goes out as `sliding_window_pattern`), it reads back with the same windows and RoPE-less
/// layers, and computes what the folder computes.
#[test]
fn exaone4_with_64_layers_keeps_its_windows_through_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/families/exaone4-a");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = Vec::new();
    for (name, view) in st.tensors() {
        match name.strip_prefix("model.layers.") {
            Some(rest) => {
                let (layer, part) = rest.split_once('.').unwrap();
                let layer: usize = layer.parse().unwrap();
                for i in (layer..64).step_by(4) {
                    tensors.push((format!("model.layers.{i}.{part}"), view.clone()));
                }
            }
            None => tensors.push((name, view)),
        }
    }
    let every_second: Vec<Value> = (0..64)
        .map(|i| match i % 2 {
            1 => "full_attention".into(),
            _ => "sliding_attention".into(),
        })
        .collect();
    for (name, period, layer_types) in [
        ("fourth", 4, None),
        ("second", 2, Some(Value::from(every_second))),
    ] {
        let model = tmp.path().join(name);
        std::fs::create_dir(&model).unwrap();
        std::fs::copy(src.join("tokenizer.json"), model.join("tokenizer.json")).unwrap();
        let mut config: Value =
            serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap())
                .unwrap();
        let obj = config.as_object_mut().unwrap();
        obj.insert("num_hidden_layers".into(), 64.into());
        match &layer_types {
            Some(t) => obj.insert("layer_types".into(), t.clone()),
            None => obj.remove("layer_types"),
        };
        std::fs::write(model.join("config.json"), config.to_string()).unwrap();
        safetensors::serialize_to_file(
            tensors.iter().map(|(n, v)| (n.clone(), v.clone())),
            None,
            &model.join("model.safetensors"),
        )
        .unwrap();
        let m = model.to_str().unwrap();
        let gg = tmp.path().join(format!("{name}.gguf"));
        export(m, m, "0.5", &gg, "gguf");
        let g = gg.to_str().unwrap();
        let (folder, gguf) = (
            Engine::load(m, m, &cpu()).unwrap(),
            Engine::load(g, g, &cpu()).unwrap(),
        );
        let ids = [5u32, 17, 42, 8, 99, 3, 61, 7, 12];
        let d = max_diff(&folder.logits(&ids).unwrap(), &gguf.logits(&ids).unwrap());
        assert!(d < 1e-5, "{name}: max |Δlogit| = {d}");
        let hf = tmp.path().join(format!("{name}-back"));
        export(g, g, "0.5", &hf, "hf");
        let back: Value =
            serde_json::from_str(&std::fs::read_to_string(hf.join("config.json")).unwrap())
                .unwrap();
        assert_eq!(back["sliding_window"], 4, "{name}");
        let types = back["layer_types"].as_array().unwrap();
        assert_eq!(types.len(), 64);
        assert!(
            types
                .iter()
                .enumerate()
                .all(|(i, t)| (t == "full_attention") == (i % period == period - 1)),
            "{name}: {types:?}"
        );
    }
}

/// A copy of fixture folder `name` with its config.json edited by `edit`, in `dir`.
type Tensors = Vec<(String, Vec<usize>, Vec<f32>)>;

/// The model folder `model` (one model.safetensors) with its tensors edited.
fn rewrite_tensors(model: &Path, edit: impl FnOnce(&mut Tensors)) {
    let path = model.join("model.safetensors");
    let files = TensorFiles::open(std::slice::from_ref(&path)).unwrap();
    let mut tensors: Tensors = files
        .tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), files.read_f32(n).unwrap()))
        .collect();
    drop(files);
    edit(&mut tensors);
    lerpscope::shapes::write_safetensors(&path, &tensors, safetensors::Dtype::F32).unwrap();
}

/// The model folder `model` without tensor `name`.
fn drop_tensor(model: &Path, name: &str) {
    rewrite_tensors(model, |t| {
        let n = t.len();
        t.retain(|(n, ..)| n != name);
        assert!(t.len() < n, "{name} is not in {model:?}");
    });
}

fn edited_fixture(name: &str, dir: &Path, edit: impl Fn(&mut Value)) -> PathBuf {
    let model = dir.join(name);
    std::fs::create_dir(&model).unwrap();
    for f in std::fs::read_dir(root().join("tests/fixtures/families").join(name)).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), model.join(f.file_name())).unwrap();
    }
    let config = model.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    edit(&mut c);
    std::fs::write(&config, c.to_string()).unwrap();
    model
}

/// llama.cpp's command-r reads the embeddings as its head, no attention biases and runs
/// SwiGLU: a Cohere with a head of its own, or GELU, has no GGUF form. The export says so and
/// writes nothing; to Hugging Face it keeps them.
#[test]
fn cohere_with_a_head_of_its_own_or_gelu_is_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    refused_for_gguf(
        tmp.path(),
        ("cohere-a", "tie_word_embeddings", Value::Bool(false)),
        "head of its own",
        |m| {
            rewrite_tensors(m, |t| {
                let e = t.iter().find(|(n, ..)| n == "model.embed_tokens.weight");
                let (_, shape, values) = e.unwrap().clone();
                let head = values.iter().map(|x| x * 0.5).collect();
                t.push(("lm_head.weight".into(), shape, head));
            })
        },
    );
    refused_for_gguf(
        tmp.path(),
        ("cohere-a", "hidden_act", Value::from("gelu_pytorch_tanh")),
        "hidden_act is gelu_pytorch_tanh",
        |_| {},
    );
}

/// llama.cpp's cohere2 slides every layer but each fourth, whatever a file says: a Cohere 2
/// with other windows has no GGUF form (refused in one line, nothing written); to Hugging
/// Face it keeps them.
#[test]
fn cohere2_with_other_windows_is_refused_for_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let types = ["sliding_attention", "full_attention"].repeat(2);
    refused_for_gguf(
        tmp.path(),
        ("cohere2-a", "layer_types", Value::from(types)),
        "slides every layer but each fourth",
        |_| {},
    );
}

/// A fine-tune with a head of its own blends with a base whose head is tied: the base's head
/// is its embeddings, so the pair computes what it computes with the base's embeddings copied
/// into a head of its own, bit for bit, in either order, and at α = 1 the base alone.
#[test]
fn a_head_of_its_own_blends_with_a_tied_head() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = |name: &str| {
        let d = tmp.path().join(name);
        std::fs::create_dir(&d).unwrap();
        d
    };
    let tied = edited_fixture("glm4-b", &dir("tied"), |c| {
        c["tie_word_embeddings"] = Value::Bool(true)
    });
    drop_tensor(&tied, "lm_head.weight");
    let copied = edited_fixture("glm4-b", &dir("copied"), |_| {});
    rewrite_tensors(&copied, |t| {
        let e = t.iter().find(|(n, ..)| n == "model.embed_tokens.weight");
        let embed = e.unwrap().2.clone();
        let head = t.iter_mut().find(|(n, ..)| n == "lm_head.weight").unwrap();
        head.2 = embed;
    });
    let own = root().join("tests/fixtures/families/glm4-a");
    let (own, tied, copied) = (
        own.to_str().unwrap(),
        tied.to_str().unwrap(),
        copied.to_str().unwrap(),
    );
    let ids = [5u32, 17, 42, 8, 99, 3];
    let logits = |a: &str, b: &str, alpha: f64| {
        let mut e = Engine::load(a, b, &cpu()).unwrap();
        e.set_alpha(alpha).unwrap();
        e.logits(&ids).unwrap()
    };
    for alpha in [0.3, 1.0] {
        assert_eq!(
            logits(own, tied, alpha),
            logits(own, copied, alpha),
            "α {alpha}"
        );
        assert_eq!(
            logits(tied, own, 1.0 - alpha),
            logits(copied, own, 1.0 - alpha),
            "α {alpha}"
        );
    }
    assert_eq!(logits(own, tied, 1.0), logits(tied, tied, 0.0));
    // As a third endpoint beside a tied A and B it is refused, saying which is which; as A
    // beside a tied C it blends.
    let plane = |a: &str, c: &str| {
        let out = tmp.path().join("plane");
        let args = [
            "export", "--a", a, "--b", a, "--c", c, "--beta", "0.5", "--alpha", "0.3", "--out",
        ];
        let mut args: Vec<&str> = args.to_vec();
        let out = out.to_str().unwrap().to_string();
        args.extend([out.as_str(), "--force", "--device", "cpu"]);
        lerpscope(&args, &root())
    };
    let refused = plane(tied, own);
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && err.contains("has a head of its own")
            && err.contains("give the one with a head of its own as A or B"),
        "{err}"
    );
    let blended = plane(own, tied);
    assert!(
        blended.status.success(),
        "{}",
        String::from_utf8_lossy(&blended.stderr)
    );
}

/// A config that ties the head beside a checkpoint holding a head of its own (a fine-tune that
/// trained it apart and kept the base's config): lerpscope runs the checkpoint's head, as
/// transformers 5 does, giving the untied pair's goldens, and its export says so in its
/// config, so transformers reads back what lerpscope ran (a head equal to the embeddings stays
/// tied: `formats::checkpoint`'s unit tests).
#[test]
fn a_tied_config_beside_a_head_of_its_own_runs_that_head() {
    let exp: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("tests/fixtures/families/variants.json")).unwrap(),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let a = edited_fixture("glm4-a", tmp.path(), |c| {
        c["tie_word_embeddings"] = Value::Bool(true)
    });
    let a = a.to_str().unwrap();
    let engine = Engine::load(a, a, &cpu()).unwrap();
    for run in exp["families"]["glm4"]["0.0"].as_array().unwrap() {
        let ids: Vec<u32> = serde_json::from_value(run["prompt_ids"].clone()).unwrap();
        let want: Vec<f32> = serde_json::from_value(run["logits"].clone()).unwrap();
        let d = max_diff(&engine.logits(&ids).unwrap(), &want);
        assert!(d < 1e-4, "max |Δlogit| = {d}");
    }
    let out = tmp.path().join("out");
    export(a, a, "0.5", &out, "hf");
    let back: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(back["tie_word_embeddings"], Value::Bool(false));
    let files = TensorFiles::open(&[out.join("model.safetensors")]).unwrap();
    assert!(!files
        .same_values("lm_head.weight", "model.embed_tokens.weight")
        .unwrap());
}

/// What llama.cpp reads of these families' GGUFs, written whole: a Granite whose config leaves
/// its scalars at transformers' defaults still gets all four keys (llama.cpp requires them,
/// and an absent attention scale would read as head_dim^-½), so the GGUF computes what the
/// folder does; a YaRN ramp other than llama.cpp's has no GGUF form.
#[test]
fn gguf_exports_carry_what_llamacpp_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let granite = edited_fixture("granite-a", tmp.path(), |c| {
        for key in [
            "embedding_multiplier",
            "attention_multiplier",
            "residual_multiplier",
            "logits_scaling",
        ] {
            c.as_object_mut().unwrap().remove(key);
        }
    });
    let g = granite.to_str().unwrap();
    let gg = tmp.path().join("granite.gguf");
    export(g, g, "0", &gg, "gguf");
    let (folder, file) = (
        Engine::load(g, g, &cpu()).unwrap(),
        Engine::load(gg.to_str().unwrap(), gg.to_str().unwrap(), &cpu()).unwrap(),
    );
    let ids = [5, 17, 40, 22, 9];
    let d = max_diff(&folder.logits(&ids).unwrap(), &file.logits(&ids).unwrap());
    assert!(d < 1e-5, "granite with default scalars, as GGUF: {d}");
    let yarn = edited_fixture("qwen2-yarn-a", tmp.path(), |c| {
        c["rope_parameters"]["beta_fast"] = 8.into();
    });
    let y = yarn.to_str().unwrap();
    let out = tmp.path().join("yarn.gguf");
    let o = try_export(y, y, "0", &out, "gguf");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("\"yarn\" has no GGUF form"),
        "{err}"
    );
    assert!(!out.exists());
}
