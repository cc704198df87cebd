//! The meters: VADER against the reference Python implementation, perplexity against an
//! independent computation, and sweep resumption.

use lerpscope::engine::{
    Alpha, ColumnsMode, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
};
use lerpscope::eval::sweep::{AlphaMode, PplRef, Sweep, SweepConfig};
use lerpscope::eval::{Scorer, Vader};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::path::{Path, PathBuf};

fn cpu() -> LoadOptions {
    LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    }
}

#[test]
fn vader_matches_the_python_reference_to_three_decimals() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vader/expected.json");
    let expected: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let v = Vader;
    let mut bad = Vec::new();
    for e in expected {
        let text = e["text"].as_str().unwrap();
        let want = e["compound"].as_f64().unwrap();
        let got = v.score(text).unwrap();
        if (got - want).abs() >= 5e-4 {
            bad.push(format!("{text:?}: {got:.4} vs {want}"));
        }
    }
    assert!(
        bad.is_empty(),
        "differs from vaderSentiment 3.3.2:\n{}",
        bad.join("\n")
    );
}

/// transformers' goldens (tests/fixtures/expected.json, make_fixtures.py).
fn goldens() -> serde_json::Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/expected.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn fixture_pair(arch: &str) -> (String, String) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let side = |s: &str| dir.join(format!("tiny-{arch}-{s}")).display().to_string();
    (side("a"), side("b"))
}

/// `nll` and `perplexity()` (and the conditional `continuation_nll`) against transformers'
/// log-probabilities of the same tokens of a fixed text, at every α of the goldens, for both
/// architectures. Mutations tried: perplexity over n + 1 tokens (the count off by one) and the
/// first token scored too; both fail.
#[test]
fn perplexity_equals_transformers_on_the_same_tokens() {
    let g = goldens();
    for arch in ["llama", "gpt2"] {
        let (a, b) = fixture_pair(arch);
        let mut e = Engine::load(&a, &b, &cpu()).unwrap();
        for (alpha, score) in g["scores"][arch].as_object().unwrap() {
            e.set_alpha(alpha.parse::<f64>().unwrap()).unwrap();
            let ids: Vec<u32> = serde_json::from_value(score["token_ids"].clone()).unwrap();
            let lp: Vec<f64> = score["logprobs"].as_array().unwrap()[1..]
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect();
            let want = (-lp.iter().sum::<f64>() / lp.len() as f64).exp();
            let (nll, n) = e.generator().nll(&ids).unwrap();
            let got = lerpscope::engine::perplexity(nll, n);
            assert!(
                (got - want).abs() <= 1e-4 * want,
                "{arch} α {alpha}: perplexity {got} vs transformers {want}"
            );
            let (c, m) = e
                .generator()
                .continuation_nll(&ids[..3], &ids[3..])
                .unwrap();
            let want_c = -lp[2..].iter().sum::<f64>();
            assert_eq!(m, ids.len() - 3);
            assert!(
                (c - want_c).abs() <= 1e-4 * want_c.abs(),
                "{arch} α {alpha}: continuation NLL {c} vs transformers {want_c}"
            );
        }
    }
}

/// A judge whose context is shorter than prompt + sample reads them in overlapping windows
/// of its context, each sample token with at least half a context before it: the NLL is the
/// sum over sample tokens of log p(token | the window's tokens before it), every token once.
/// (It scored only the last context's worth, silently.)
#[test]
fn a_short_judge_reads_prompt_and_sample_in_windows() {
    let g = goldens();
    let (a, b) = fixture_pair("llama");
    let e = Engine::load(&a, &b, &cpu()).unwrap();
    let (_, score) = g["scores"]["llama"]
        .as_object()
        .unwrap()
        .iter()
        .next()
        .unwrap();
    let ids: Vec<u32> = serde_json::from_value(score["token_ids"].clone()).unwrap();
    let mut judge = e.generator();
    let whole = judge.continuation_nll(&ids[..3], &ids[3..]).unwrap();
    judge.max_positions = ids.len();
    assert_eq!(judge.continuation_nll(&ids[..3], &ids[3..]).unwrap(), whole);
    for context in [2, 5, 6] {
        assert!(ids.len() > context + 3, "the text must outrun the context");
        judge.max_positions = context;
        let (nll, n) = judge.continuation_nll(&ids[..3], &ids[3..]).unwrap();
        assert_eq!(n, ids.len() - 3);
        let half = context / 2;
        let mut want = 0.0;
        for t in 3..ids.len() {
            // Target t is scored in the window whose new tokens (half a context) include it.
            let end = (3 + ((t - 3) / half + 1) * half).min(ids.len());
            let start = end.saturating_sub(context);
            assert!(t - start >= half, "{t}: context {}", t - start);
            let info = judge.token_details(&ids[start..end]).unwrap();
            want -= info[t - start - 1].logprob as f64;
        }
        assert!(
            (nll - want).abs() <= 1e-5 * want.abs(),
            "context {context}: {nll} vs {want}"
        );
    }
}

/// A greedy sweep records, for each sample, the perplexity transformers gives the same
/// continuation under the blend that wrote it (the goldens' greedy_perplexity), from the
/// log-probabilities recorded as it generated (--ppl-ref blend). Mutation tried: the sweep's perplexity over one token more than it scored (fails).
#[test]
fn a_sweeps_perplexities_equal_transformers() {
    let g = goldens();
    let prompts: Vec<String> = serde_json::from_value(g["prompts"].clone()).unwrap();
    let n = g["new_tokens"].as_u64().unwrap() as usize;
    for arch in ["llama", "gpt2"] {
        let (a, b) = fixture_pair(arch);
        let mut e = Engine::load(&a, &b, &cpu()).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("sweep");
        let alphas = [0.0, 0.3, 1.0];
        let mut s = sweep(Path::new(&a), Path::new(&b), &out);
        s.config.alphas = alphas.map(|a| Alpha::new(a).unwrap()).to_vec();
        s.config.prompts = prompts.clone();
        s.config.samples = 1;
        s.config.params.max_tokens = n;
        s.config.params.ignore_eos = true;
        s.config.params.sampling.temperature = 0.0;
        s.config.params.sampling.repeat_penalty = 1.0;
        s.config.ppl_ref = PplRef::Blend;
        s.run(&mut e).unwrap();
        let records = lerpscope::eval::sweep::read_records(&out.join("samples.jsonl")).unwrap();
        assert_eq!(records.len(), alphas.len() * prompts.len());
        for r in &records {
            // The goldens are keyed by Python's str(α): "0.0", "0.3", "1.0".
            let golden = &g["models"][arch][format!("{:?}", r.alpha.value())][r.prompt_index];
            let want = golden["greedy_perplexity"].as_f64().unwrap();
            let got = r.perplexity.expect("a sample of n tokens has a perplexity");
            let greedy: Vec<u32> = serde_json::from_value(golden["greedy"].clone()).unwrap();
            let text = e.tokenizer().decode(&greedy, false).unwrap();
            assert_eq!((r.tokens, &r.text), (n, &text), "{arch} α {}", r.alpha);
            assert!(
                (got - want).abs() <= 1e-4 * want,
                "{arch} α {} prompt {}: perplexity {got} vs transformers {want}",
                r.alpha,
                r.prompt_index
            );
        }
    }
}

/// A tiny random pair of `arch` in a temporary directory, loaded on the CPU.
fn tiny_pair(arch: Arch) -> (tempfile::TempDir, PathBuf, PathBuf, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let e = Engine::load(&a.display().to_string(), &b.display().to_string(), &cpu()).unwrap();
    (tmp, a, b, e)
}

fn sweep(a: &Path, b: &Path, out: &Path) -> Sweep {
    Sweep {
        config: SweepConfig {
            recipe: None,
            a: a.display().to_string(),
            b: b.display().to_string(),
            alphas: [0.0, 0.5, 1.0].map(|a| Alpha::new(a).unwrap()).to_vec(),
            prompts: vec!["The movie".into(), "I think".into()],
            samples: 3,
            params: GenerationParams {
                max_tokens: 8,
                sampling: SamplingParams {
                    temperature: 1.0,
                    top_p: 0.9,
                    seed: 5,
                    ..Default::default()
                },
                ignore_eos: false,
                token_info: false,
            },
            ppl_ref: PplRef::A,
            classifier: None,
            method: Default::default(),
            layers: None,
            plane: None,
            alpha_mode: Default::default(),
            held: None,
            seeds: lerpscope::eval::grid::Seeds::Mixed,
            prompt_tokens: None,
            judges: None,
            endpoints: None,
        },
        mode: ColumnsMode::Auto,
        out: out.to_path_buf(),
        progress: false,
        tokens_per_s: Default::default(),
    }
}

/// A resume checks the classifier by its files, not its path: the same folder by another
/// path resumes, and other files at the same path are refused (their scores would mix with
/// the first model's, as if α had moved them).
#[test]
fn a_resume_checks_the_classifier_by_its_files() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let classifier = tmp.path().join("cls");
    std::fs::create_dir(&classifier).unwrap();
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture.join("tiny-bert").join(f), classifier.join(f)).unwrap();
    }
    let out = tmp.path().join("out");
    let with = |path: &Path| {
        let mut s = sweep(&a, &b, &out);
        s.config.classifier = Some((path.display().to_string(), "positive".into()));
        s
    };
    with(&classifier).run(&mut e).unwrap();
    let samples = std::fs::read(out.join("samples.jsonl")).unwrap();
    with(&classifier.join(".")).run(&mut e).unwrap();
    assert_eq!(std::fs::read(out.join("samples.jsonl")).unwrap(), samples);
    // A label is named in any case, as the classifier reads it: the same sweep.
    let mut shouted = with(&classifier);
    shouted.config.classifier.as_mut().unwrap().1 = "POSITIVE".into();
    shouted.run(&mut e).unwrap();
    assert_eq!(std::fs::read(out.join("samples.jsonl")).unwrap(), samples);
    // Another model of the same shape would load; one more key in its config stands in.
    let config = classifier.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    v["retrained"] = true.into();
    std::fs::write(&config, v.to_string()).unwrap();
    let err = format!("{:#}", with(&classifier).run(&mut e).unwrap_err());
    assert!(
        err.contains("classifier or fluency judge") && err.contains("other files"),
        "{err}"
    );
    // The label is still a setting of its own.
    let mut other = with(&classifier.join("."));
    other.config.classifier.as_mut().unwrap().1 = "negative".into();
    let err = format!("{:#}", other.run(&mut e).unwrap_err());
    assert!(err.contains("other settings"), "{err}");
}

/// A sweep's endpoints are pinned by their files as well as their paths: a model retrained
/// in place (same size, newer files) is refused rather than mixed into the old samples.
#[test]
fn a_resume_checks_the_endpoints_by_their_files() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let out = tmp.path().join("out");
    sweep(&a, &b, &out).run(&mut e).unwrap();
    let samples = std::fs::read(out.join("samples.jsonl")).unwrap();
    let config = std::fs::read(out.join("sweep.json")).unwrap();
    sweep(&a, &b, &out).run(&mut e).unwrap();
    assert_eq!(std::fs::read(out.join("samples.jsonl")).unwrap(), samples);
    assert_eq!(std::fs::read(out.join("sweep.json")).unwrap(), config);
    let weights = std::fs::read_dir(&a)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let err = sweep(&a, &b, &out).run(&mut e).unwrap_err().to_string();
    assert!(
        err.contains("the endpoints (--a, --b and any C or D) are other files"),
        "{err}"
    );
    assert_eq!(std::fs::read(out.join("samples.jsonl")).unwrap(), samples);
}

/// A sweep cut off after any record (and with half of the next line torn), resumed, writes
/// every file byte for byte as the uninterrupted sweep did, in both alpha modes. A third of
/// the vocabulary ends the text, so some samples are empty (an end token first): they are
/// records too, read back like any other. Mutations tried: the perplexity back as an `f64`
/// (an empty sample's NaN is written `null`, which then fails to read: the reported bug), and
/// the torn half line left in place instead of cut; each makes it fail.
#[test]
fn an_interrupted_sweep_resumes_byte_for_byte_with_empty_samples() {
    for mode in [ColumnsMode::Reblend, ColumnsMode::Batched] {
        interrupted_sweep_resumes(mode);
    }
}

fn interrupted_sweep_resumes(mode: ColumnsMode) {
    let (tmp, a, b, _) = tiny_pair(Arch::Gpt2);
    // Every third token id ends a text.
    let ends: Vec<u32> = (0..300).step_by(3).collect();
    for dir in [&a, &b] {
        let config = serde_json::json!({ "eos_token_id": ends });
        std::fs::write(dir.join("generation_config.json"), config.to_string()).unwrap();
    }
    let mut e = Engine::load(&a.display().to_string(), &b.display().to_string(), &cpu()).unwrap();
    let whole = tmp.path().join("whole");
    let sweep = |out: &Path| Sweep {
        mode,
        ..sweep(&a, &b, out)
    };
    sweep(&whole).run(&mut e).unwrap();
    let files = [
        "samples.jsonl",
        "summary.csv",
        "summary.json",
        "plots/vader.svg",
        "plots/vader.png",
        "plots/perplexity.svg",
        "plots/perplexity.png",
    ];
    let read = |dir: &Path, f: &str| std::fs::read(dir.join(f)).unwrap();
    let want: Vec<Vec<u8>> = files.iter().map(|f| read(&whole, f)).collect();
    let text = String::from_utf8(want[0].clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 18);
    assert!(
        text.contains("\"tokens\":0,") && text.contains("\"perplexity\":null"),
        "{mode:?}: the sweep should hold an empty sample:\n{text}"
    );
    for cut in 0..lines.len() {
        let part = tmp.path().join(format!("part-{mode:?}-{cut}"));
        std::fs::create_dir_all(&part).unwrap();
        std::fs::copy(whole.join("sweep.json"), part.join("sweep.json")).unwrap();
        let mut kept: String = lines[..cut].iter().map(|l| format!("{l}\n")).collect();
        kept.push_str(&lines[cut][..lines[cut].len() / 2]);
        // A full disk may cut a write inside a character: the first byte of a two-byte one.
        let mut kept = kept.into_bytes();
        kept.push(0xC3);
        std::fs::write(part.join("samples.jsonl"), kept).unwrap();
        sweep(&part).run(&mut e).unwrap();
        for (f, want) in files.iter().zip(&want) {
            assert!(
                read(&part, f) == *want,
                "{mode:?}, cut after {cut} records: {f} differs from the uninterrupted sweep's"
            );
        }
    }
    // Other settings into the same directory are refused rather than mixed in.
    let mut other = sweep(&whole);
    other.config.samples = 4;
    let err = other.run(&mut e).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");
    // So are prompts that now reach the model as other tokens (another version's rendering).
    let config = whole.join("sweep.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let recorded = v["prompt_tokens"].as_str().expect("recorded").to_string();
    v["prompt_tokens"] = "0123456789abcdef".into();
    std::fs::write(&config, v.to_string()).unwrap();
    let err = sweep(&whole).run(&mut e).unwrap_err().to_string();
    assert!(err.contains("other tokens"), "{err}");
    v["prompt_tokens"] = recorded.into();
    std::fs::write(&config, v.to_string()).unwrap();
    sweep(&whole).run(&mut e).unwrap();
    // So are samples whose sweep.json is gone: nothing says what made them.
    std::fs::remove_file(whole.join("sweep.json")).unwrap();
    let err = sweep(&whole).run(&mut e).unwrap_err().to_string();
    assert!(err.contains("but no sweep.json"), "{err}");
    assert_eq!(read(&whole, "samples.jsonl"), want[0]);
    // A new sweep is not written over a folder of other files, nor over a file.
    let theirs = tmp.path().join("theirs");
    std::fs::create_dir_all(&theirs).unwrap();
    std::fs::write(theirs.join("summary.csv"), "mine\n").unwrap();
    let err = sweep(&theirs).run(&mut e).unwrap_err().to_string();
    assert!(
        err.contains("holds summary.csv") && err.contains("theirs"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(theirs.join("summary.csv")).unwrap(),
        "mine\n"
    );
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 1);
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = sweep(&file).run(&mut e).unwrap_err().to_string();
    assert!(err.contains("is not a folder"), "{err}");
    // What a sweep stopped before its first sample leaves is no one else's: it starts there.
    let stopped = tmp.path().join("stopped");
    std::fs::create_dir_all(&stopped).unwrap();
    std::fs::write(stopped.join("samples.jsonl"), "").unwrap();
    std::fs::write(stopped.join(".sweep.json.partial-4999999"), "{").unwrap();
    sweep(&stopped).run(&mut e).unwrap();
    assert_eq!(read(&stopped, "samples.jsonl"), want[0]);
    // The killed writer's partial copy went with the run that followed it.
    assert!(!stopped.join(".sweep.json.partial-4999999").exists());
    // One sweep at a time in a folder: a second, while the first holds its records, is
    // refused and writes nothing.
    let held = std::fs::OpenOptions::new()
        .append(true)
        .open(whole.join("samples.jsonl"))
        .unwrap();
    held.try_lock().unwrap();
    std::fs::copy(stopped.join("sweep.json"), whole.join("sweep.json")).unwrap();
    let err = sweep(&whole).run(&mut e).unwrap_err().to_string();
    assert!(err.contains("another sweep is writing there now"), "{err}");
    drop(held);
    assert_eq!(read(&whole, "samples.jsonl"), want[0]);
    let err = sweep(&tmp.path().join("busy-new")).run(&mut e);
    assert!(err.is_ok(), "a lock is only on its own folder: {err:?}");
    // A record given twice would be counted twice: it is named instead.
    let twice = format!("{text}{}\n", lines[3]);
    std::fs::write(whole.join("samples.jsonl"), twice).unwrap();
    let err = sweep(&whole).run(&mut e).unwrap_err().to_string();
    assert!(
        err.contains("line 19 repeats the sample of line 4"),
        "{err}"
    );
}

/// Two sweeps at neighbouring --seed values share no sample seed; a sweep whose sweep.json
/// predates the recorded scheme resumes with the seeds it was started with.
#[test]
fn sweeps_at_neighbouring_seeds_are_independent_and_old_ones_resume_as_made() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let seeds = |dir: &Path| -> Vec<u64> {
        lerpscope::eval::sweep::read_records(&dir.join("samples.jsonl"))
            .unwrap()
            .iter()
            .map(|r| r.seed)
            .collect()
    };
    let (s5, s6) = (tmp.path().join("s5"), tmp.path().join("s6"));
    sweep(&a, &b, &s5).run(&mut e).unwrap();
    let mut six = sweep(&a, &b, &s6);
    six.config.params.sampling.seed = 6;
    six.run(&mut e).unwrap();
    let (x, y) = (seeds(&s5), seeds(&s6));
    assert_eq!(x.len(), 18);
    assert!(
        x.iter().all(|s| !y.contains(s)),
        "{x:?} and {y:?} share seeds"
    );
    let config = std::fs::read_to_string(s5.join("sweep.json")).unwrap();
    assert!(config.contains("\"seeds\": \"mixed\""), "{config}");
    // The same sweep as an older version wrote it: no `seeds`, base + prompt·2^32 + sample.
    let old = tmp.path().join("old");
    std::fs::create_dir_all(&old).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&config).unwrap();
    v.as_object_mut().unwrap().remove("seeds");
    std::fs::write(old.join("sweep.json"), v.to_string()).unwrap();
    sweep(&a, &b, &old).run(&mut e).unwrap();
    let records = lerpscope::eval::sweep::read_records(&old.join("samples.jsonl")).unwrap();
    assert_eq!(records.len(), 18);
    for r in &records {
        assert_eq!(
            r.seed,
            5 + ((r.prompt_index as u64) << 32) + r.sample as u64
        );
    }
}

#[test]
fn common_random_numbers_tie_samples_across_alpha() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    // With A = B every α is the same model: one seed must give one text at every α.
    let p = a.display().to_string();
    let mut e = Engine::load(&p, &p, &cpu()).unwrap();
    let out = tmp.path().join("crn");
    let mut s = sweep(&a, &a, &out);
    s.config.b = p.clone();
    s.run(&mut e).unwrap();
    let recs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &recs {
        let twin = recs
            .iter()
            .find(|q| {
                q["alpha"] == 0.0
                    && q["prompt_index"] == r["prompt_index"]
                    && q["sample"] == r["sample"]
            })
            .unwrap();
        assert_eq!(r["text"], twin["text"]);
    }
}

#[test]
fn classifiers_match_transformers_and_look_labels_up_by_name() {
    use lerpscope::eval::classifier::Classifier;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("expected.json")).unwrap())
            .unwrap();
    for name in ["tiny-bert", "tiny-distilbert", "tiny-roberta"] {
        let dir = root.join(name).display().to_string();
        let c = Classifier::load(&dir, "POSITIVE").unwrap();
        assert_eq!(c.labels(), ["negative", "positive"]);
        assert_eq!(c.name(), "classifier:positive");
        for e in expected[name].as_array().unwrap() {
            let text = e["text"].as_str().unwrap();
            let ids: Vec<u32> = serde_json::from_value(e["ids"].clone()).unwrap();
            assert_eq!(c.token_ids(text).unwrap().0, ids, "{name} {text:?}");
            let want: Vec<f32> = serde_json::from_value(e["probs"].clone()).unwrap();
            let got = c.probabilities(text).unwrap();
            assert!((got.iter().sum::<f32>() - 1.0).abs() < 1e-5);
            assert_eq!(got.len(), want.len(), "{name}: one probability per label");
            // 1e-5: DistilBERT's GELU by the tanh approximation was 9e-5 off here.
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "{name} {text:?}: {got:?} vs {want:?}");
            }
            assert!((c.score(text).unwrap() - want[1] as f64).abs() < 1e-5);
        }
        let err = Classifier::load(&dir, "joy").err().unwrap().to_string();
        assert!(
            err.contains("--label \"joy\"") && err.contains("negative, positive"),
            "{err}"
        );
    }
    // A config without id2label has transformers' default names; a label matches in any
    // script's case.
    let tmp = tempfile::tempdir().unwrap();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(root.join("tiny-bert").join(f), tmp.path().join(f)).unwrap();
    }
    let config = tmp.path().join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    o.remove("id2label");
    o.remove("label2id");
    std::fs::write(&config, v.to_string()).unwrap();
    let dir = tmp.path().display().to_string();
    assert_eq!(
        Classifier::load(&dir, "label_1").unwrap().labels(),
        ["LABEL_0", "LABEL_1"]
    );
    v["id2label"] = serde_json::json!({"0": "Négatif", "1": "Été"});
    std::fs::write(&config, v.to_string()).unwrap();
    assert_eq!(
        Classifier::load(&dir, "ÉTÉ").unwrap().name(),
        "classifier:Été"
    );
    // transformers' names of the tanh GELU load; another activation is named in one line.
    v["hidden_act"] = "gelu_new".into();
    std::fs::write(&config, v.to_string()).unwrap();
    Classifier::load(&dir, "ÉTÉ").unwrap();
    v["hidden_act"] = "silu".into();
    std::fs::write(&config, v.to_string()).unwrap();
    let err = format!("{:#}", Classifier::load(&dir, "ÉTÉ").err().unwrap());
    assert!(
        err.contains("hidden_act \"silu\" is not supported"),
        "{err}"
    );
    v["hidden_act"] = "gelu".into();
    // Labels that differ only in case: the one as written, and no guess between them.
    v["id2label"] = serde_json::json!({"0": "pos", "1": "POS"});
    std::fs::write(&config, v.to_string()).unwrap();
    assert_eq!(
        Classifier::load(&dir, "POS").unwrap().name(),
        "classifier:POS"
    );
    let err = Classifier::load(&dir, "Pos").err().unwrap().to_string();
    assert!(
        err.contains("matches 2 labels") && err.contains("pos, POS"),
        "{err}"
    );
    // A tokenizer_config.json's model_max_length below the positions cuts there, [SEP] kept.
    std::fs::write(
        tmp.path().join("tokenizer_config.json"),
        r#"{"model_max_length": 8}"#,
    )
    .unwrap();
    let c = Classifier::load(&dir, "POS").unwrap();
    let (ids, _) = c
        .token_ids(&"the food was great and the film was awful ".repeat(4))
        .unwrap();
    let full = Classifier::load(&root.join("tiny-bert").display().to_string(), "positive")
        .unwrap()
        .token_ids("the food was great")
        .unwrap()
        .0;
    assert_eq!(ids.len(), 8);
    assert_eq!(ids.last(), full.last(), "the closing [SEP]");
    // A causal LM is not a classifier: one clear line.
    let lm = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama-a");
    let err = Classifier::load(&lm.display().to_string(), "positive")
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("LlamaForCausalLM") || err.contains("id2label"),
        "{err}"
    );
}

#[test]
fn a_finished_sweep_rerun_leaves_every_file_byte_identical() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let out = tmp.path().join("out");
    sweep(&a, &b, &out).run(&mut e).unwrap();
    let files = [
        "sweep.json",
        "samples.jsonl",
        "summary.csv",
        "summary.json",
        "plots/vader.png",
        "plots/vader.svg",
        "plots/perplexity.png",
        "plots/perplexity.svg",
    ];
    let read = |f: &str| std::fs::read(out.join(f)).unwrap();
    let before: Vec<Vec<u8>> = files.iter().map(|f| read(f)).collect();
    // The rerun reads every record back from samples.jsonl (17-digit floats included).
    sweep(&a, &b, &out).run(&mut e).unwrap();
    for (f, old) in files.iter().zip(&before) {
        assert!(read(f) == *old, "{f} changed on a resumed, finished sweep");
    }
}

#[test]
fn a_classifier_with_no_room_for_a_token_is_refused() {
    use lerpscope::eval::classifier::Classifier;
    let src =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/classifier/tiny-roberta");
    let tmp = tempfile::tempdir().unwrap();
    for f in std::fs::read_dir(&src).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, tmp.path().join(f.file_name().unwrap())).unwrap();
    }
    let config = tmp.path().join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    // Positions are numbered from the padding index + 1: with pad 1, two are reserved.
    c["pad_token_id"] = 1.into();
    for n in [0, 1, 2] {
        c["max_position_embeddings"] = n.into();
        std::fs::write(&config, c.to_string()).unwrap();
        let err = Classifier::load(&tmp.path().display().to_string(), "positive")
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("max_position_embeddings"), "{n}: {err}");
    }
}

/// Both modes write the same samples: the same tokens, and perplexities that differ only by
/// rounding (a re-blended weight against `(1 − α)·A·x + α·B·x`; for adapters, a re-merged
/// weight against the factored path), for either fluency judge.
#[test]
fn a_batched_sweep_writes_what_the_reblended_one_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let adapters = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/adapters");
    let pairs = [
        (a, b),
        (
            adapters.join("llama-plain-a"),
            adapters.join("llama-plain-b"),
        ),
    ];
    for ((a, b), judge) in pairs
        .iter()
        .flat_map(|p| [(p.clone(), PplRef::A), (p.clone(), PplRef::Blend)])
    {
        let mut e =
            Engine::load(&a.display().to_string(), &b.display().to_string(), &cpu()).unwrap();
        let records = |mode: ColumnsMode, e: &mut Engine| {
            let out = tmp.path().join(format!(
                "{}-{judge:?}-{mode:?}",
                a.file_name().unwrap().to_string_lossy()
            ));
            let mut s = sweep(&a, &b, &out);
            s.mode = mode;
            s.config.ppl_ref = judge.clone();
            s.config.samples = 20; // two sample groups per prompt
            s.run(e).unwrap();
            let written: SweepConfig =
                serde_json::from_str(&std::fs::read_to_string(out.join("sweep.json")).unwrap())
                    .unwrap();
            let mut rs: Vec<serde_json::Value> = std::fs::read_to_string(out.join("samples.jsonl"))
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            rs.sort_by_key(|r| {
                (
                    r["alpha"].as_f64().unwrap().to_bits(),
                    r["prompt_index"].as_u64(),
                    r["sample"].as_u64(),
                )
            });
            (written.alpha_mode, rs)
        };
        let (m1, reblended) = records(ColumnsMode::Reblend, &mut e);
        let (m2, batched) = records(ColumnsMode::Batched, &mut e);
        assert_eq!((m1, m2), (AlphaMode::Reblend, AlphaMode::Batched));
        assert_eq!(reblended.len(), 3 * 2 * 20);
        assert_eq!(reblended.len(), batched.len());
        let mut texts = std::collections::HashSet::new();
        for (r, q) in reblended.iter().zip(&batched) {
            for key in ["alpha", "prompt_index", "sample", "seed", "text", "tokens"] {
                assert_eq!(r[key], q[key], "{a:?} {judge:?} {key}: {r} vs {q}");
            }
            // No tokens (an end token first) has no perplexity: null in both.
            match (r["perplexity"].as_f64(), q["perplexity"].as_f64()) {
                (Some(p), Some(pb)) => {
                    assert!((p - pb).abs() <= 1e-4 * p, "{a:?} {judge:?}: {r} vs {q}")
                }
                (p, pb) => assert!(
                    p.is_none() && pb.is_none() && r["tokens"] == 0,
                    "{a:?} {judge:?}: {r} vs {q}"
                ),
            }
            texts.insert(r["text"].as_str().unwrap().to_string());
        }
        assert!(
            texts.len() > 10,
            "{a:?}: the samples should differ: {texts:?}"
        );
    }
}

/// A sweep keeps the mode it started in: auto resumes in it, the other mode asked for is
/// refused (the two round differently), and a sweep.json from before modes were recorded
/// resumes as a re-blended one.
#[test]
fn a_sweep_keeps_the_mode_it_started_in() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Gpt2);
    let out = tmp.path().join("out");
    let run = |mode: ColumnsMode, e: &mut Engine| {
        let mut s = sweep(&a, &b, &out);
        s.mode = mode;
        s.run(e)
    };
    run(ColumnsMode::Batched, &mut e).unwrap();
    let cfg = std::fs::read_to_string(out.join("sweep.json")).unwrap();
    assert!(cfg.contains("\"alpha_mode\": \"batched\""), "{cfg}");
    run(ColumnsMode::Auto, &mut e).unwrap();
    run(ColumnsMode::Batched, &mut e).unwrap();
    let err = run(ColumnsMode::Reblend, &mut e).unwrap_err().to_string();
    assert!(
        err.contains("--alpha-mode reblend") && err.contains("batched mode"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("sweep.json")).unwrap(),
        cfg
    );

    let mut old: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    old.as_object_mut().unwrap().remove("alpha_mode");
    std::fs::write(out.join("sweep.json"), old.to_string()).unwrap();
    std::fs::remove_file(out.join("samples.jsonl")).unwrap();
    let err = run(ColumnsMode::Batched, &mut e).unwrap_err().to_string();
    assert!(err.contains("reblend mode"), "{err}");
    run(ColumnsMode::Auto, &mut e).unwrap();
}

/// A mode the pair cannot take is refused before the sweep's folder is made: a batched
/// sweep off the line (here slerp) used to leave an empty `--out` (with `--betas`, an empty
/// `beta…` folder) behind its error.
#[test]
fn a_refused_mode_leaves_no_folder() {
    let (tmp, a, b, _) = tiny_pair(Arch::Gpt2);
    let opts = LoadOptions {
        method: lerpscope::engine::Method::Slerp,
        ..cpu()
    };
    let mut e = Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap();
    // The folder is made before the mode is settled (so a --out that cannot be made fails
    // first) and taken back, parents included; a folder that was there stays.
    let new = tmp.path().join("new");
    let existing = tmp.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    for out in [new.join("out"), existing.clone()] {
        let mut s = sweep(&a, &b, &out);
        s.config.method = lerpscope::engine::Method::Slerp;
        s.mode = ColumnsMode::Batched;
        let err = s.run(&mut e).unwrap_err().to_string();
        assert!(err.contains("--alpha-mode batched"), "{err}");
    }
    assert!(!new.exists(), "{} was made", new.display());
    assert!(existing.is_dir());
}

/// A judge with a tokenizer of its own reads each sample in its own tokens (the prompt as
/// text, then the sample's text), where the pair's ids used to index past its vocabulary; a
/// GGUF file or an adapter as judge is refused in one line before the sweep writes anything.
#[test]
fn a_judge_with_its_own_tokenizer_scores_the_text_in_its_tokens() {
    use lerpscope::engine::{perplexity, Standalone};
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let judge_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/demo/negative");
    let judge = Standalone::load(judge_dir, candle_core::DType::F32, e.device()).unwrap();
    assert_ne!(
        judge.tokenizer().get_vocab_size(true),
        e.tokenizer().get_vocab_size(true)
    );
    let out = tmp.path().join("judged");
    let mut s = sweep(&a, &b, &out);
    s.config.ppl_ref = PplRef::Model(judge_dir.into());
    // Past the end token too: the judge reads it as the saved text writes it (it read the
    // private-use marks that bracket special tokens in a generation's text).
    s.config.params.ignore_eos = true;
    s.config.params.max_tokens = 24;
    s.run(&mut e).unwrap();
    let mut scored = 0;
    let mut specials = 0;
    for line in std::fs::read_to_string(out.join("samples.jsonl"))
        .unwrap()
        .lines()
    {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = r["text"].as_str().unwrap();
        specials += text.matches("<|endoftext|>").count();
        let prompt = &s.config.prompts[r["prompt_index"].as_u64().unwrap() as usize];
        let g = judge.generator();
        // The judge reads the prompt as plain text, then the sample: the NLL of the whole text
        // in its tokens less that of the tokens that end within the prompt.
        let prompt_text = e
            .tokenizer()
            .decode(&e.generator().encode(prompt).unwrap(), true)
            .unwrap();
        let whole = judge
            .tokenizer()
            .encode(format!("{prompt_text}{text}"), true)
            .unwrap();
        let head = whole
            .get_offsets()
            .iter()
            .take_while(|&&(_, end)| end <= prompt_text.len())
            .count();
        let ids = whole.get_ids();
        let nll = g.nll(ids).unwrap().0 - g.nll(&ids[..head]).unwrap().0;
        let n = ids.len() - head;
        match r["perplexity"].as_f64() {
            Some(p) => {
                let want = perplexity(nll, n);
                assert!((p - want).abs() <= 1e-4 * want, "{text:?}: {p} vs {want}");
                scored += 1;
            }
            None => assert_eq!(n, 0, "{text:?}"),
        }
    }
    assert!(scored > 0);
    assert!(specials > 0, "no sample ran past an end token");
    for judge in [
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/quantized/base-q4_1.gguf"
        ),
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/assets/smollm2-sentiment/positive"
        ),
    ] {
        let out = tmp.path().join("refused");
        let mut s = sweep(&a, &b, &out);
        s.config.ppl_ref = PplRef::Model(judge.into());
        let err = format!("{:#}", s.run(&mut e).unwrap_err());
        assert!(
            err.starts_with("--ppl-ref: ") && err.contains(judge),
            "{err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!out.exists(), "{judge}");
    }
}

/// A sweep records how its pair is held and what ends a sample (stop texts, dtype, the
/// chat template, the base and what is kept quantized), and a resume that changes any of it
/// is refused: the samples after the cut would differ from the ones before. A sweep.json
/// written before this was recorded resumes as it did.
#[test]
fn a_resume_with_other_stop_texts_is_refused() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let out = tmp.path().join("sweep");
    let s = sweep(&a, &b, &out);
    s.run(&mut e).unwrap();
    let cfg = std::fs::read_to_string(out.join("sweep.json")).unwrap();
    assert!(cfg.contains("\"held\"") && cfg.contains("stop []"), "{cfg}");
    e.set_stop_texts(vec![" ".into()]);
    let err = s.run(&mut e).unwrap_err().to_string();
    assert!(err.contains("other settings"), "{err}");
    // It says which: the held line, as it was and as it is now, where the two part.
    assert!(
        err.contains("held …") && err.contains(r#"stop [\" \"]" now"#),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    let mut more = sweep(&a, &b, &out);
    more.config.samples += 1;
    let err = more.run(&mut e).unwrap_err().to_string();
    assert!(err.contains("samples 3 there, 4 now"), "{err}");
    // Other prompts are other settings, not the same prompts tokenized otherwise.
    let mut asked = sweep(&a, &b, &out);
    asked.config.prompts.push("Another prompt".into());
    let err = asked.run(&mut e).unwrap_err().to_string();
    assert!(
        err.contains("prompts ") && !err.contains("other tokens"),
        "{err}"
    );
    let mut old: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    old.as_object_mut().unwrap().remove("held");
    std::fs::write(out.join("sweep.json"), old.to_string()).unwrap();
    s.run(&mut e).unwrap();
}

/// sweep.json records the recipe a sweep came from, as named; a resume that names it
/// otherwise (from another working directory), or an older sweep.json without it, resumes.
#[test]
fn a_recipes_path_is_recorded_not_compared() {
    let (tmp, a, b, mut e) = tiny_pair(Arch::Llama);
    let out = tmp.path().join("sweep");
    let mut s = sweep(&a, &b, &out);
    s.config.recipe = Some("merge.yaml".into());
    s.run(&mut e).unwrap();
    s.config.recipe = Some("/elsewhere/merge.yaml".into());
    s.run(&mut e).unwrap();
    let cfg = out.join("sweep.json");
    let mut old: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
    assert_eq!(old["recipe"], "merge.yaml");
    old.as_object_mut().unwrap().remove("recipe");
    std::fs::write(&cfg, old.to_string()).unwrap();
    s.run(&mut e).unwrap();
}
