//! The session layer with a real engine: columns are handles with stable ids, and removing
//! one never disturbs another.

use lerpscope::engine::{
    Alpha, ColumnsMode, DeviceChoice, Engine, GenerationParams, LoadOptions, SamplingParams,
    StopReason,
};
use lerpscope::session::{ColumnId, EngineEvent, Job, JobId, Session};
use lerpscope::shapes::{write_tiny_pair, Arch};
use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

/// Long enough, and past the end token, that the middle column is still generating when its
/// removal arrives, however late the test reads the events.
const TOKENS: usize = 160;

/// Three columns generating; the middle one is dropped once every column has produced text.
/// The other two must run to completion on their first job: one `Started` each, no text ever
/// taken back, every token there.
fn remove_the_middle(mode: ColumnsMode) {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (a, b) = (a.display().to_string(), b.display().to_string());
    let (tx, rx) = mpsc::channel();
    let session = Session::spawn_with(
        move || {
            let opts = LoadOptions {
                device: DeviceChoice::Cpu,
                ..Default::default()
            };
            let mut e = Engine::load(&a, &b, &opts)?;
            e.set_columns_mode(mode)?;
            Ok(e)
        },
        move |e| {
            let _ = tx.send(e);
        },
    );
    let mut columns: Vec<_> = (0..3).map(|i| Some(session.column(ColumnId(i)))).collect();
    let params = GenerationParams {
        max_tokens: TOKENS,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 1.0,
            repeat_penalty: 1.0,
            ..Default::default()
        },
        ignore_eos: true,
        token_info: false,
    };
    for (i, c) in columns.iter().enumerate() {
        c.as_ref().unwrap().submit(Job {
            id: JobId(1),
            alpha: Alpha::new(i as f64 * 0.5).unwrap(),
            beta: None,
            prompt: "The movie was".into(),
            params,
            urgent: i == 0,
            kind: Default::default(),
        });
    }
    let mut started: BTreeMap<ColumnId, usize> = BTreeMap::new();
    let mut text: BTreeMap<ColumnId, usize> = BTreeMap::new();
    let mut done: BTreeMap<ColumnId, StopReason> = BTreeMap::new();
    let mut removed = false;
    let survivors = [ColumnId(0), ColumnId(2)];
    while !survivors.iter().all(|c| done.contains_key(c)) {
        match rx.recv_timeout(Duration::from_secs(120)).expect("an event") {
            EngineEvent::Started { column, .. } => *started.entry(column).or_default() += 1,
            EngineEvent::Text { column, .. } => {
                *text.entry(column).or_default() += 1;
                // Remove the middle column as soon as it is producing text (in re-blend mode
                // the first column is then finished and the third still waiting).
                if column == ColumnId(1) && !removed {
                    columns[1] = None;
                    removed = true;
                }
            }
            EngineEvent::Done { column, stop, .. } => {
                done.insert(column, stop);
            }
            EngineEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    assert!(
        removed,
        "the middle column produced text before it was removed"
    );
    for c in survivors {
        assert_eq!(started[&c], 1, "{c:?} started once: no job was resubmitted");
        assert_ne!(
            done[&c],
            StopReason::Cancelled,
            "{c:?} finished its generation"
        );
        assert!(text[&c] > 0);
    }
    // The removed column stopped between tokens.
    assert!(done
        .get(&ColumnId(1))
        .is_none_or(|&s| s == StopReason::Cancelled));
}

#[test]
fn removing_a_column_leaves_the_others_generating_when_reblending() {
    remove_the_middle(ColumnsMode::Reblend);
}

#[test]
fn removing_a_column_leaves_the_others_generating_in_one_batch() {
    remove_the_middle(ColumnsMode::Batched);
}

/// Baking in the UI: the session copies the weights out and writes them on another thread;
/// the folder appears whole, and columns keep working.
#[test]
fn the_session_bakes_a_column_into_a_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Gpt2).unwrap();
    let (tx, rx) = mpsc::channel();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let session = Session::spawn(
        a.display().to_string(),
        b.display().to_string(),
        opts,
        move |e| {
            let _ = tx.send(e);
        },
    );
    let out = tmp.path().join("baked");
    session.export(lerpscope::session::ExportJob {
        alpha: Alpha::new(0.25).unwrap(),
        beta: None,
        out: out.clone(),
        format: lerpscope::engine::export::Format::Hf,
    });
    let column = session.column(ColumnId(0));
    column.submit(Job {
        id: JobId(1),
        alpha: Alpha::B,
        beta: None,
        prompt: "The movie".into(),
        params: GenerationParams {
            max_tokens: 4,
            ..Default::default()
        },
        urgent: true,
        kind: Default::default(),
    });
    let (mut baked, mut done) = (None, false);
    while baked.is_none() || !done {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            EngineEvent::Exported(r) => baked = Some(r.expect("exported")),
            EngineEvent::Done { .. } => done = true,
            EngineEvent::Failed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    assert_eq!(baked.unwrap(), out);
    assert!(out.join("model.safetensors").exists() && out.join("config.json").exists());
}

/// Score jobs, forks and the α-scrub through a real engine thread.
#[test]
fn score_fork_and_scrub_jobs_answer_with_their_events() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (tx, rx) = mpsc::channel();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let session = Session::spawn(
        a.display().to_string(),
        b.display().to_string(),
        opts,
        move |e| {
            let _ = tx.send(e);
        },
    );
    let next = || loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            EngineEvent::Failed { error, .. } => panic!("{error}"),
            EngineEvent::Loaded(_) | EngineEvent::Vocabulary(_) | EngineEvent::Started { .. } => {}
            e => return e,
        }
    };
    let params = GenerationParams {
        max_tokens: 6,
        token_info: true,
        ignore_eos: true,
        ..Default::default()
    };
    let column = session.column(ColumnId(0));
    column.submit(Job {
        id: JobId(1),
        alpha: Alpha::new(0.3).unwrap(),
        beta: None,
        prompt: "The movie was good".into(),
        params,
        urgent: true,
        kind: lerpscope::session::JobKind::Score,
    });
    let EngineEvent::TextScored { score, .. } = next() else {
        panic!("expected the score")
    };
    assert_eq!(score.alpha, Alpha::new(0.3).unwrap());
    assert_eq!(score.tokens.len() + 1, score.token_ids.len());
    assert_eq!(score.offsets.len(), score.token_ids.len());
    assert!(score.perplexity.is_finite() && score.nll > 0.0);

    // A fork: the given tokens come back first, without data, then written ones with it.
    column.submit(Job {
        id: JobId(2),
        alpha: Alpha::A,
        beta: None,
        prompt: "The movie".into(),
        params,
        urgent: true,
        kind: lerpscope::session::JobKind::Fork(vec![7, 9]),
    });
    let mut tokens = Vec::new();
    loop {
        match next() {
            EngineEvent::Text { token: Some(t), .. } => tokens.push(t),
            EngineEvent::Text { .. } => {}
            EngineEvent::Done { .. } => break,
            e => panic!("{e:?}"),
        }
    }
    assert_eq!(tokens.len(), 6);
    assert_eq!((tokens[0].id, tokens[1].id), (7, 9));
    assert!(tokens[..2].iter().all(|t| t.info.is_none()));
    assert!(tokens[2..].iter().all(|t| t.info.is_some()));
    while !matches!(next(), EngineEvent::Scored { .. }) {}

    session.scrub(lerpscope::session::ScrubJob {
        id: 5,
        prompt: Some("The movie".into()),
        before: vec![7],
        token: 9,
        alphas: (0..25)
            .map(|i| Alpha::new(i as f64 / 24.0).unwrap())
            .collect(),
        beta: None,
    });
    let mut points = Vec::new();
    loop {
        let EngineEvent::ScrubPoints {
            id,
            points: p,
            complete,
        } = next()
        else {
            panic!("expected scrub points")
        };
        assert_eq!(id, 5);
        points.extend(p);
        if complete {
            break;
        }
    }
    assert_eq!(points.len(), 25);
    assert!(points.iter().all(|&(_, p)| (0.0..=1.0).contains(&p)));
    // The coarse pass came first: before any scrub has been timed, four points spread
    // evenly, both ends included.
    let first: Vec<f64> = points[..4].iter().map(|p| p.0.value() * 24.0).collect();
    assert_eq!(
        first.iter().map(|x| x.round() as u32).collect::<Vec<_>>(),
        [0, 8, 16, 24]
    );
}

/// A job that panics (the test hook scribbles zeros over the working weights first, as a bug
/// mid-blend would) fails with the panic's line and a `Recovered` event; the engine serves on,
/// re-blends from the endpoints, and the next jobs write what a fresh engine writes at their
/// α. Both ways columns run: one re-blended alone, and two as a batch.
#[test]
fn a_panicking_job_is_reported_and_the_next_job_is_right() {
    for (mode, alphas) in [
        (ColumnsMode::Reblend, vec![0.3]),
        (ColumnsMode::Batched, vec![0.3, 0.8]),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        write_tiny_pair(&a, &b, Arch::Llama).unwrap();
        let (a, b) = (a.display().to_string(), b.display().to_string());
        let opts = LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        };
        let params = GenerationParams {
            max_tokens: 12,
            sampling: SamplingParams {
                temperature: 0.0,
                ..Default::default()
            },
            ignore_eos: true,
            token_info: false,
        };
        // What a fresh engine writes the same way: re-blended, or as one batch.
        let mut fresh = Engine::load(&a, &b, &opts).unwrap();
        let want: Vec<String> = if mode == ColumnsMode::Batched {
            fresh
                .generate_columns(
                    "The movie was",
                    &alphas,
                    &params,
                    &|_| false,
                    &mut |_, _| {},
                )
                .unwrap()
                .into_iter()
                .map(|g| g.text)
                .collect()
        } else {
            alphas
                .iter()
                .map(|&alpha| {
                    fresh.set_alpha(alpha).unwrap();
                    let stop = std::sync::atomic::AtomicBool::new(false);
                    fresh
                        .generate("The movie was", &params, &stop, &mut |_| {})
                        .unwrap()
                        .text
                })
                .collect()
        };

        let (tx, rx) = mpsc::channel();
        let session = Session::spawn_with(
            move || {
                let mut e = Engine::load(&a, &b, &opts)?;
                e.set_columns_mode(mode)?;
                Ok(e)
            },
            move |e| {
                let _ = tx.send(e);
            },
        );
        let columns: Vec<_> = (0..alphas.len())
            .map(|i| session.column(ColumnId(i as u64)))
            .collect();
        let submit = |id| {
            for (c, &alpha) in columns.iter().zip(&alphas) {
                c.submit(Job {
                    id: JobId(id),
                    alpha: Alpha::new(alpha).unwrap(),
                    beta: None,
                    prompt: "The movie was".into(),
                    params,
                    urgent: false,
                    kind: Default::default(),
                });
            }
        };
        session.inject_panic();
        submit(1);
        let mut failed = Vec::new();
        let mut recovered = None;
        let mut text: BTreeMap<ColumnId, String> = BTreeMap::new();
        let mut done = 0;
        while done < alphas.len() {
            match rx.recv_timeout(Duration::from_secs(120)).expect("an event") {
                EngineEvent::Failed { job, error, .. } => {
                    assert_eq!(job, JobId(1), "{mode:?}");
                    failed.push(error);
                }
                EngineEvent::Recovered(e) => {
                    recovered = Some(e);
                    submit(2);
                }
                EngineEvent::Text {
                    column,
                    job: JobId(2),
                    piece,
                    ..
                } => text.entry(column).or_default().push_str(&piece),
                EngineEvent::Done { job: JobId(2), .. } => done += 1,
                EngineEvent::Broken(e) => panic!("{mode:?}: the engine gave up: {e}"),
                _ => {}
            }
        }
        assert!(!failed.is_empty(), "{mode:?}: the injected job failed");
        for f in &failed {
            assert!(f.message.contains("injected"), "{mode:?}: {f}");
            assert_eq!(f.kind, lerpscope::session::FailureKind::Internal);
        }
        assert!(recovered.unwrap().message.contains("injected"), "{mode:?}");
        for (i, want) in want.iter().enumerate() {
            assert_eq!(
                &text[&ColumnId(i as u64)],
                want,
                "{mode:?}: after recovering, the text at α {}",
                alphas[i]
            );
        }
    }
}

/// A find job on the demo pair reports each point as it is measured and ends with α* (the demo
/// pair's sentiment crosses 0 between A and B); a cancelled one goes quiet.
#[test]
fn a_find_job_reports_its_points_and_its_answer_and_stops_when_cancelled() {
    use lerpscope::eval::find::Verdict;
    use lerpscope::session::{FindJob, FindReport};
    let demo = |side: &str| {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("assets/demo")
            .join(side)
            .display()
            .to_string()
    };
    let (tx, rx) = mpsc::channel();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        ..Default::default()
    };
    let session = Session::spawn(demo("negative"), demo("positive"), opts, move |e| {
        let _ = tx.send(e);
    });
    let params = GenerationParams {
        max_tokens: 24,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            seed: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let job = |id| FindJob {
        id,
        target: 0.0,
        range: "-1:2".parse().unwrap(),
        beta: None,
        prompt: "The food at this place".into(),
        samples: 16,
        params,
    };
    session.find(job(1));
    let (mut points, mut done) = (Vec::new(), None);
    while done.is_none() {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            EngineEvent::Find { id: 1, report } => match report {
                FindReport::Point { alpha, .. } => points.push(alpha),
                FindReport::Done {
                    outcome, points: n, ..
                } => done = Some((outcome, n)),
            },
            EngineEvent::FindFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    let (outcome, n) = done.unwrap();
    assert_eq!(n, points.len());
    assert_eq!(&points[..2], &[Alpha::A, Alpha::B]);
    assert!(n <= 8, "{points:?}");
    assert_eq!(outcome.verdict, Verdict::Found, "{outcome:?}");
    assert!((0.0..1.0).contains(&outcome.alpha.value()), "{outcome:?}");
    // Cancelled at once: at most the point already under way is reported, never an answer.
    session.find(job(2));
    session.cancel_find(2);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut reports = 0;
    while let Ok(e) = rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
    {
        match e {
            EngineEvent::Find { id: 2, report } => {
                assert!(matches!(report, FindReport::Point { .. }), "{report:?}");
                reports += 1;
            }
            EngineEvent::FindFailed { error, .. } => panic!("{error}"),
            _ => {}
        }
    }
    assert!(reports <= 1, "{reports} points after the cancel");
}

/// `g` on a plane: a curve job with βs measures the grid row by row, each point at its own
/// (α, β) however the engine moved in between (a column job at another point runs meanwhile),
/// and equal to measuring that point alone. With C = B the plane is A + (α + β)·(B − A), so β
/// visibly moves the meter.
#[test]
fn a_curve_over_a_plane_measures_each_point_of_its_grid() {
    use lerpscope::engine::ExtraEndpoint;
    use lerpscope::eval::points::{measure, Fluency, Plan};
    use lerpscope::eval::sweep::PplRef;
    use lerpscope::session::CurveJob;
    let (a, b) = lerpscope::cli::demo_pair();
    let opts = LoadOptions {
        device: DeviceChoice::Cpu,
        third: Some(ExtraEndpoint::fixed(b.clone(), 0.0)),
        ..Default::default()
    };
    let (tx, rx) = mpsc::channel();
    let (a2, b2, opts2) = (a.clone(), b.clone(), opts.clone());
    let session = Session::spawn_with(
        move || Ok(Engine::load(&a2, &b2, &opts2)?),
        move |e| {
            let _ = tx.send(e);
        },
    );
    let params = GenerationParams {
        max_tokens: 16,
        sampling: SamplingParams {
            temperature: 1.0,
            top_p: 0.95,
            seed: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    let at = |x: f64| Alpha::new(x).unwrap();
    let job = CurveJob {
        id: 9,
        alphas: vec![at(0.0), at(0.5)],
        betas: vec![at(0.0), at(0.75)],
        prompt: "The food at this place".into(),
        samples: 6,
        params,
    };
    session.curve(job.clone());
    let column = session.column(ColumnId(0));
    column.submit(Job {
        id: JobId(1),
        alpha: at(1.5),
        beta: Some(at(-0.5)),
        prompt: "The service".into(),
        params,
        urgent: true,
        kind: Default::default(),
    });
    let mut got = Vec::new();
    while got.len() < 4 {
        match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
            EngineEvent::CurvePoint {
                id,
                alpha,
                beta,
                vader,
            } => {
                assert_eq!(id, 9);
                got.push((alpha.value(), beta.map(Alpha::value), vader.mean, vader.n));
            }
            EngineEvent::LoadFailed(e) | EngineEvent::Failed { error: e, .. } => panic!("{e}"),
            _ => {}
        }
    }
    drop(column);
    drop(session);
    let mut alone = Engine::load(&a, &b, &opts).unwrap();
    let plan = Plan {
        prompts: vec![job.prompt.clone()],
        samples: job.samples,
        params,
    };
    let mut want = Vec::new();
    for &beta in &job.betas {
        for &alpha in &job.alphas {
            alone.set_point(alpha, Some(beta.value())).unwrap();
            let fluency = Fluency::new(PplRef::Blend, &alone).unwrap();
            let m = measure(&mut alone, &plan, alpha, &lerpscope::eval::Vader, &fluency)
                .unwrap()
                .meter();
            want.push((alpha.value(), Some(beta.value()), m.mean, m.n));
        }
    }
    assert_eq!(got, want);
    assert_ne!(got[0].2, got[2].2, "β moves the meter: {got:?}");
}

/// α per layer edited through the session: the engine answers with the pair as it now is, or
/// with a refusal in one line that changes nothing; columns submitted after run under it.
#[test]
fn layer_rules_set_through_the_session_answer_with_the_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_tiny_pair(&a, &b, Arch::Llama).unwrap();
    let (tx, rx) = mpsc::channel();
    let session = Session::spawn(
        a.display().to_string(),
        b.display().to_string(),
        LoadOptions {
            device: DeviceChoice::Cpu,
            ..Default::default()
        },
        move |e| {
            let _ = tx.send(e);
        },
    );
    let answer = || loop {
        match rx.recv_timeout(Duration::from_secs(60)).expect("an event") {
            EngineEvent::LayersChanged(r) => return r,
            EngineEvent::LoadFailed(e) => panic!("{e}"),
            _ => {}
        }
    };
    session.set_layer_alphas("mlp=0,1".into());
    let info = answer().expect("rules taken");
    assert_eq!(info.layers.as_deref(), Some("mlp=0,1"));
    // Every module kind gets a row; the rules move the MLPs, the rest stays at 1.
    let strip: Vec<(&str, &[f64])> = info
        .layer_strip
        .iter()
        .map(|s| (s.kind.as_str(), s.factors.as_slice()))
        .collect();
    assert_eq!(
        strip,
        [("mlp", &[0.0, 1.0][..]), ("self_attn", &[1.0, 1.0][..])]
    );
    session.set_layer_alphas("mlp=0,oops".into());
    let e = answer().expect_err("a bad rule");
    assert!(
        e.message.contains("--layer-alphas") && !e.message.contains('\n'),
        "{e}"
    );
    session.set_layer_alphas(String::new());
    assert_eq!(answer().expect("rules off").layers, None);
}
