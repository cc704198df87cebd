//! The batched-columns mode (every row at its own α, weights read from both endpoints) held
//! to the in-place re-blend it replaces, for both architectures.

use lerpscope::engine::{DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::sync::atomic::AtomicBool;

const ALPHAS: [f64; 6] = [-0.5, 0.0, 0.3, 0.5, 1.0, 1.7];
const PROMPT_IDS: [u32; 6] = [5, 17, 42, 8, 99, 3];

fn engine(arch: Arch) -> (tempfile::TempDir, Engine) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, arch).unwrap();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        dtype: None,
        allow_tokenizer_mismatch: false,
        ..Default::default()
    };
    let e = Engine::load(&a.display().to_string(), &b.display().to_string(), &opts).unwrap();
    (tmp, e)
}

fn max_abs_diff(x: &[f32], y: &[f32]) -> f32 {
    assert_eq!(x.len(), y.len());
    x.iter()
        .zip(y)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn logits_agree(arch: Arch) {
    let (_tmp, mut e) = engine(arch);
    let batched = e.logits_columns(&PROMPT_IDS, &ALPHAS).unwrap();
    assert_eq!(batched.len(), ALPHAS.len());
    for (alpha, row) in ALPHAS.iter().zip(&batched) {
        e.set_alpha(*alpha).unwrap();
        let reblended = e.logits(&PROMPT_IDS).unwrap();
        let d = max_abs_diff(row, &reblended);
        assert!(d <= 1e-4, "{arch:?} α = {alpha}: max |Δlogit| = {d}");
    }
}

#[test]
fn llama_logits_match_reblending_at_every_alpha() {
    logits_agree(Arch::Llama);
}

#[test]
fn gpt2_logits_match_reblending_at_every_alpha() {
    logits_agree(Arch::Gpt2);
}

/// Whole generations, greedy and sampled: each batch row writes what a sequential run at its
/// α writes (same seed, so the same random numbers), token for token.
fn generations_agree(arch: Arch, temperature: f32) {
    let (_tmp, mut e) = engine(arch);
    let params = GenerationParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature,
            top_k: 0,
            top_p: 0.9,
            repeat_penalty: 1.1,
            seed: 7,
        },
        ignore_eos: false,
        token_info: false,
    };
    let prompt = "The movie was";
    let mut streamed = vec![String::new(); ALPHAS.len()];
    let rows = e
        .generate_columns(prompt, &ALPHAS, &params, &|_| false, &mut |i, piece| {
            streamed[i].push_str(piece)
        })
        .unwrap();
    let never = AtomicBool::new(false);
    for ((alpha, row), text) in ALPHAS.iter().zip(&rows).zip(&streamed) {
        e.set_alpha(*alpha).unwrap();
        let single = e.generate(prompt, &params, &never, &mut |_| {}).unwrap();
        assert_eq!(row.token_ids, single.token_ids, "{arch:?} α = {alpha}");
        assert_eq!(row.stop, single.stop, "{arch:?} α = {alpha}");
        assert_eq!(&row.text, text, "streamed pieces add up to the text");
        assert_eq!(row.text, single.text);
    }
}

#[test]
fn llama_batched_generation_matches_sequential() {
    generations_agree(Arch::Llama, 0.0);
    generations_agree(Arch::Llama, 0.9);
}

#[test]
fn gpt2_batched_generation_matches_sequential() {
    generations_agree(Arch::Gpt2, 0.0);
    generations_agree(Arch::Gpt2, 0.9);
}

#[test]
fn one_cancelled_row_stops_alone() {
    let (_tmp, e) = engine(Arch::Llama);
    let params = GenerationParams {
        max_tokens: 16,
        sampling: SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        },
        ignore_eos: false,
        token_info: false,
    };
    let rows = e
        .generate_columns(
            "The movie",
            &[0.0, 1.0],
            &params,
            &|i| i == 0,
            &mut |_, _| {},
        )
        .unwrap();
    assert_eq!(rows[0].stop, lerpscope::engine::StopReason::Cancelled);
    assert!(rows[0].token_ids.is_empty());
    assert_ne!(rows[1].stop, lerpscope::engine::StopReason::Cancelled);
}

#[test]
fn non_finite_alpha_is_refused() {
    let (_tmp, e) = engine(Arch::Gpt2);
    let err = e
        .generate_columns(
            "x",
            &[0.5, f64::NAN],
            &GenerationParams::default(),
            &|_| false,
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(err.to_string().contains("finite"), "{err}");
}

/// The engine thread: columns waiting with one prompt run as one batch (forced here) and
/// produce the same events and text as re-blending for each.
#[test]
fn worker_batches_waiting_columns_with_the_same_results() {
    use lerpscope::engine::{Alpha, ColumnsMode};
    use lerpscope::session::{ColumnId, ColumnRun, EngineEvent, Job, JobId, Session};
    use std::collections::BTreeMap;
    use std::sync::mpsc;

    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let run = |mode: ColumnsMode| -> (BTreeMap<ColumnId, String>, Vec<ColumnRun>) {
        let (a, b) = (a.display().to_string(), b.display().to_string());
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (tx, rx) = mpsc::channel();
        let session = Session::spawn_with(
            move || {
                go_rx.recv().unwrap(); // hold the engine until every job is queued
                let mut e = Engine::load(
                    &a,
                    &b,
                    &LoadOptions {
                        device: DeviceChoice::Cpu,
                        dtype: None,
                        allow_tokenizer_mismatch: false,
                        ..Default::default()
                    },
                )?;
                e.set_columns_mode(mode).unwrap();
                Ok(e)
            },
            move |e| tx.send(e).unwrap(),
        );
        let columns: Vec<_> = (0..3).map(|i| session.column(ColumnId(i))).collect();
        for (column, alpha) in columns.iter().zip([0.0, 0.5, 1.0]) {
            column.submit(Job {
                id: JobId(1),
                alpha: Alpha::new(alpha).unwrap(),
                beta: None,
                prompt: "The movie was".into(),
                params: GenerationParams {
                    max_tokens: 12,
                    sampling: SamplingParams::default(),
                    ignore_eos: false,
                    token_info: false,
                },
                urgent: column.id() == ColumnId(1),
                kind: Default::default(),
            });
        }
        go_tx.send(()).unwrap();
        let (mut texts, mut blends, mut scored) = (BTreeMap::new(), Vec::new(), 0);
        while scored < 3 {
            match rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap() {
                EngineEvent::Started { run, .. } => blends.push(run),
                EngineEvent::Text { column, piece, .. } => texts
                    .entry(column)
                    .or_insert_with(String::new)
                    .push_str(&piece),
                EngineEvent::Scored { .. } => scored += 1,
                EngineEvent::Failed { error, .. } => panic!("{error}"),
                _ => {}
            }
        }
        (texts, blends)
    };
    let (batched, batched_blends) = run(ColumnsMode::Batched);
    let (reblended, reblend_blends) = run(ColumnsMode::Reblend);
    assert_eq!(batched.len(), 3);
    assert_eq!(batched, reblended);
    assert!(
        batched_blends
            .iter()
            .all(|r| *r == ColumnRun::Batch { rows: 3 }),
        "one batch of three, no blends: {batched_blends:?}"
    );
    assert!(
        reblend_blends
            .iter()
            .all(|r| matches!(r, ColumnRun::Blended { .. })),
        "a blend per column: {reblend_blends:?}"
    );
}

/// A sweep's batch of samples (one prompt, one α, a seed per row): each row writes what a
/// run alone with its seed writes, whatever its neighbours' seeds.
#[test]
fn a_batch_of_samples_matches_each_seed_alone() {
    for arch in [Arch::Llama, Arch::Gpt2] {
        let (_tmp, mut e) = engine(arch);
        e.set_alpha(0.3).unwrap();
        let mut params = GenerationParams {
            max_tokens: 16,
            sampling: SamplingParams {
                temperature: 1.0,
                top_p: 0.9,
                ..Default::default()
            },
            ignore_eos: false,
            token_info: true,
        };
        let ids = e.encode("The movie was").unwrap();
        let g = e.generator();
        let seeds = [3u64, 11, 12, 40];
        let rows = g
            .run_samples(&ids, &seeds, None, &params, &mut |_, _| {})
            .unwrap();
        let others = g
            .run_samples(&ids, &[3, 99, 12, 7], None, &params, &mut |_, _| {})
            .unwrap();
        assert_eq!(rows[0].token_ids, others[0].token_ids, "{arch:?}");
        assert_eq!(rows[2].token_ids, others[2].token_ids, "{arch:?}");
        let never = AtomicBool::new(false);
        let mut distinct = std::collections::HashSet::new();
        for (seed, row) in seeds.iter().zip(&rows) {
            params.sampling.seed = *seed;
            let alone = e
                .generate("The movie was", &params, &never, &mut |_| {})
                .unwrap();
            assert_eq!(row.token_ids, alone.token_ids, "{arch:?} seed {seed}");
            assert_eq!(row.tokens.len(), row.token_ids.len());
            for (a, b) in row.tokens.iter().zip(&alone.tokens) {
                assert!((a.logprob - b.logprob).abs() < 1e-4, "{arch:?} seed {seed}");
            }
            // What the sweep takes as the blend's perplexity: the recorded log-probabilities,
            // against a separate scoring pass over the text.
            let (nll, n) = e
                .generator()
                .continuation_nll(&ids, &row.token_ids)
                .unwrap();
            let recorded: f64 = -row.tokens.iter().map(|t| t.logprob as f64).sum::<f64>();
            assert_eq!(n, row.tokens.len());
            assert!(
                (nll - recorded).abs() < 1e-3 * n as f64,
                "{arch:?}: {nll} vs {recorded}"
            );
            distinct.insert(row.token_ids.clone());
        }
        assert!(
            distinct.len() > 1,
            "{arch:?}: every seed wrote the same text"
        );
    }
}

/// Rows of one batch stopped before their first token, at it, and after several, with the
/// whole batch at no budget too: every row's timings are ordered and its rate finite and not
/// negative (a row stopped before it sampled anything used to panic computing its rate).
#[test]
fn rows_cancelled_around_their_first_token_have_sane_rates() {
    use std::cell::RefCell;
    let (_tmp, e) = engine(Arch::Llama);
    let alphas = [0.0, 0.4, 0.8, 1.0];
    let mix = e.mix(&alphas).unwrap();
    let g = lerpscope::engine::Generator {
        eos: &[],
        ..e.pair_generator()
    };
    // Row i is cancelled once it has written `stop_after[i]` tokens (0: before its first).
    let stop_after = [0usize, 1, 5, usize::MAX];
    for max_tokens in [0, 12] {
        let params = GenerationParams {
            max_tokens,
            ..Default::default()
        };
        let written = RefCell::new([0usize; 4]);
        let rows = g
            .run_rows(
                &PROMPT_IDS,
                &[],
                Some(&mix),
                &params,
                &|i| written.borrow()[i] >= stop_after[i],
                &mut |i, step| {
                    if step.id.is_some() {
                        written.borrow_mut()[i] += 1;
                    }
                },
            )
            .unwrap();
        for (i, row) in rows.iter().enumerate() {
            let rate = row.tokens_per_s();
            assert!(
                row.first_token <= row.elapsed && rate.is_finite() && rate >= 0.0,
                "budget {max_tokens}, row {i}: first {:?}, elapsed {:?}, rate {rate}",
                row.first_token,
                row.elapsed
            );
            let expect = if max_tokens == 0 {
                0
            } else {
                stop_after[i].min(max_tokens)
            };
            assert_eq!(row.token_ids.len(), expect, "budget {max_tokens}, row {i}");
        }
    }
}

/// A batch of few rows on rayon's pool keeps the other workers spinning between ops
/// (`threads::BusyWorkers`); the logits are the same bits as off the pool, where it does not.
#[test]
fn busy_workers_leave_the_logits_unchanged() {
    let (_tmp, e) = engine(Arch::Llama);
    let alphas = [0.25, 0.75];
    let off = e.logits_columns(&PROMPT_IDS, &alphas).unwrap();
    let on = lerpscope::engine::on_pool(|| e.logits_columns(&PROMPT_IDS, &alphas).unwrap());
    assert_eq!(on, off);
}

/// A batch larger than the memory can hold is refused in one line before it allocates its
/// rows (a hundred thousand columns of the demo pair ran the process out of memory).
#[test]
fn a_batch_the_memory_cannot_hold_is_refused() {
    let (_tmp, e) = engine(Arch::Llama);
    let ids = e.encode("The movie was").unwrap();
    // A row of this model holds over 10 kB: a row per kB of what the host has free is ten
    // times too many, whatever the machine (the seeds themselves take 8 bytes a row).
    let free = lerpscope::engine::host_available_memory().expect("a Linux host");
    let rows = (free / 1000).max(1_000_000) as usize;
    let seeds: Vec<u64> = (0..rows as u64).collect();
    let params = GenerationParams {
        max_tokens: 16,
        ..Default::default()
    };
    let err = e
        .generator()
        .run_samples(&ids, &seeds, None, &params, &mut |_, _| {})
        .unwrap_err();
    let line = lerpscope::one_line(&err);
    assert!(
        line.contains(&format!("{rows} rows at once need about")) && line.contains("fewer columns"),
        "{line}"
    );
}
