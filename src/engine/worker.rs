//! The engine on its own thread, behind message enums. The UI (or any other driver) submits
//! jobs and receives events; only this thread touches tensors.
//!
//! Scheduling: one pending job per column, the latest submission wins (rapid α moves coalesce);
//! a running job stops between tokens as soon as its column has a newer job; the job marked
//! urgent (the focused column) runs first. A column is produced by re-blending to its α;
//! several columns waiting with one prompt run as one batch, each row at its own α, when the
//! engine measures that to be faster.

use super::{Engine, GenerationParams, LoadOptions, PairInfo, StopReason};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub column: usize,
    /// Increases with every submission for a column; events carry it so stale ones can be
    /// ignored.
    pub id: u64,
    pub alpha: f64,
    pub prompt: String,
    pub params: GenerationParams,
    /// Run before non-urgent jobs (the focused column).
    pub urgent: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Loaded(PairInfo),
    LoadFailed(String),
    /// The job's α is blended in (taking `blend_ms`; None when the column runs in a batch
    /// and needs no blend); text follows.
    Started {
        column: usize,
        id: u64,
        blend_ms: Option<f64>,
    },
    Text {
        column: usize,
        id: u64,
        piece: String,
    },
    Done {
        column: usize,
        id: u64,
        tokens: usize,
        tokens_per_s: f64,
        stop: StopReason,
    },
    /// Meters of a finished column: VADER compound of its text, and the perplexity of the
    /// continuation under the blend that wrote it.
    Scored {
        column: usize,
        id: u64,
        vader: f64,
        perplexity: f64,
    },
    Failed {
        column: usize,
        id: u64,
        error: String,
    },
    /// One α of a curve job is complete: the mean VADER compound of its samples.
    CurvePoint {
        id: u64,
        alpha: f64,
        vader: f64,
    },
}

/// A quick sweep for the UI's attribute-vs-α panel: `samples` continuations of `prompt` at
/// each α, scored with VADER. Runs only while no column job is waiting, one sample at a time.
#[derive(Debug, Clone, PartialEq)]
pub struct CurveJob {
    pub id: u64,
    pub alphas: Vec<f64>,
    pub prompt: String,
    pub samples: usize,
    pub params: GenerationParams,
}

/// Where events go; shared with the pool thread that runs each job.
type Emit = dyn Fn(EngineEvent) + Sync;

enum Request {
    Submit(Job),
    Curve(CurveJob),
    Forget(usize),
    Shutdown,
}

/// The UI's side: submit jobs, and the thread stops when this is dropped.
pub struct EngineHandle {
    tx: Sender<Request>,
    latest: Arc<Latest>,
    thread: Option<JoinHandle<()>>,
}

/// The newest job id of every column, shared so the running job can see it is stale.
#[derive(Default)]
struct Latest(std::sync::Mutex<Vec<Arc<AtomicU64>>>);

impl Latest {
    fn slot(&self, column: usize) -> Arc<AtomicU64> {
        let mut v = self.0.lock().expect("latest lock");
        while v.len() <= column {
            v.push(Arc::new(AtomicU64::new(0)));
        }
        v[column].clone()
    }
}

impl EngineHandle {
    /// Start the engine thread; it loads the pair and reports `Loaded` or `LoadFailed`
    /// through `on_event`, which it calls for every event from then on.
    pub fn spawn(
        a: String,
        b: String,
        opts: LoadOptions,
        on_event: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Self {
        Self::spawn_with(move || Engine::load(&a, &b, &opts), on_event)
    }

    /// Like `spawn`, with any way of making the engine.
    pub fn spawn_with(
        load: impl FnOnce() -> anyhow::Result<Engine> + Send + 'static,
        on_event: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let latest = Arc::new(Latest::default());
        let l2 = latest.clone();
        let thread = std::thread::Builder::new()
            .name("lerpscope-engine".into())
            .spawn(move || match load() {
                Ok(engine) => {
                    on_event(EngineEvent::Loaded(engine.info.clone()));
                    serve(engine, rx, &l2, &on_event);
                }
                Err(e) => on_event(EngineEvent::LoadFailed(crate::one_line(&e))),
            })
            .expect("spawn engine thread");
        Self {
            tx,
            latest,
            thread: Some(thread),
        }
    }

    /// Queue `job`, replacing any pending job of its column and stopping its running one.
    pub fn submit(&self, job: Job) {
        self.latest.slot(job.column).store(job.id, Ordering::SeqCst);
        let _ = self.tx.send(Request::Submit(job));
    }

    /// Start a background quick sweep, replacing any earlier one.
    pub fn curve(&self, job: CurveJob) {
        let _ = self.tx.send(Request::Curve(job));
    }

    /// Drop a column's pending job and stop its running one (the column was removed).
    pub fn forget(&self, column: usize, id: u64) {
        self.latest.slot(column).store(id, Ordering::SeqCst);
        let _ = self.tx.send(Request::Forget(column));
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        for slot in self.latest.0.lock().expect("latest lock").iter() {
            slot.store(u64::MAX, Ordering::SeqCst);
        }
        let _ = self.tx.send(Request::Shutdown);
        // Not joined: a load of a large pair may still be running, and quitting must not wait
        // for it. The thread ends on its own at its next check, or with the process.
        drop(self.thread.take());
    }
}

fn serve(mut engine: Engine, rx: Receiver<Request>, latest: &Latest, emit: &Emit) {
    let mut pending: Vec<Job> = Vec::new();
    let mut curve: Option<CurveState> = None;
    loop {
        // Block only when idle; otherwise take whatever arrived and get back to work.
        let first = if pending.is_empty() && curve.is_none() {
            match rx.recv() {
                Ok(r) => Some(r),
                Err(_) => return,
            }
        } else {
            match rx.recv_timeout(Duration::ZERO) {
                Ok(r) => Some(r),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        for req in first.into_iter().chain(rx.try_iter()) {
            match req {
                Request::Submit(job) => {
                    pending.retain(|j| j.column != job.column);
                    pending.push(job);
                }
                Request::Curve(job) => curve = Some(CurveState::new(job)),
                Request::Forget(c) => pending.retain(|j| j.column != c),
                Request::Shutdown => return,
            }
        }
        // Each piece of work runs on a thread of rayon's pool (see `crate::on_pool`); this
        // thread only waits for requests.
        if let Some(batch) = batchable(&mut engine, &pending) {
            // Remove from the back so the earlier indices stay valid; keep submission order.
            let mut jobs: Vec<Job> = batch.iter().rev().map(|&i| pending.remove(i)).collect();
            jobs.reverse();
            crate::on_pool(|| run_batch(&mut engine, &jobs, latest, emit));
        } else if let Some(next) = pick(&pending) {
            let job = pending.remove(next);
            crate::on_pool(|| run_job(&mut engine, &job, &latest.slot(job.column), emit));
        } else if let Some(c) = curve.as_mut() {
            // One sample per turn, so a column job submitted meanwhile waits one sample at most.
            let (stepped, done) = crate::on_pool(|| (c.step(&mut engine, emit), c.done()));
            if stepped.is_err() || done {
                curve = None;
            }
        }
    }
}

struct CurveState {
    job: CurveJob,
    alpha_index: usize,
    sample: usize,
    scores: Vec<f64>,
}

impl CurveState {
    fn new(job: CurveJob) -> Self {
        Self {
            job,
            alpha_index: 0,
            sample: 0,
            scores: Vec::new(),
        }
    }

    fn done(&self) -> bool {
        self.alpha_index >= self.job.alphas.len()
    }

    fn step(&mut self, engine: &mut Engine, emit: &Emit) -> anyhow::Result<()> {
        use crate::eval::Scorer;
        let alpha = self.job.alphas[self.alpha_index];
        if engine.alpha() != alpha {
            engine.set_alpha(alpha)?;
        }
        let mut params = self.job.params;
        params.sampling.seed = params.sampling.seed.wrapping_add(self.sample as u64);
        let never = std::sync::atomic::AtomicBool::new(false);
        let g = engine.generate(&self.job.prompt, &params, &never, &mut |_| {})?;
        self.scores.push(crate::eval::Vader.score(&g.text)?);
        self.sample += 1;
        if self.sample >= self.job.samples {
            let mean = self.scores.iter().sum::<f64>() / self.scores.len() as f64;
            emit(EngineEvent::CurvePoint {
                id: self.job.id,
                alpha,
                vader: mean,
            });
            self.scores.clear();
            self.sample = 0;
            self.alpha_index += 1;
        }
        Ok(())
    }
}

/// Urgent first, then in submission order.
fn pick(pending: &[Job]) -> Option<usize> {
    pending
        .iter()
        .position(|j| j.urgent)
        .or((!pending.is_empty()).then_some(0))
}

/// Indices (ascending) of the pending jobs that share the next job's prompt and settings,
/// when there are several and one batch is faster for them than re-blending for each.
fn batchable(engine: &mut Engine, pending: &[Job]) -> Option<Vec<usize>> {
    let first = &pending[pick(pending)?];
    let group: Vec<usize> = (0..pending.len())
        .filter(|&i| pending[i].prompt == first.prompt && pending[i].params == first.params)
        .collect();
    // Deciding may time a few forward passes (once per group size): on the pool, like a job.
    let faster = group.len() >= 2
        && crate::on_pool(|| engine.prefer_batch(group.len(), first.params.max_tokens))
            .unwrap_or(false);
    faster.then_some(group)
}

/// Several columns as one batch: the same events as [`run_job`] for each, with text
/// interleaved as the rows advance together.
fn run_batch(engine: &mut Engine, jobs: &[Job], latest: &Latest, emit: &Emit) {
    let slots: Vec<_> = jobs.iter().map(|j| latest.slot(j.column)).collect();
    let stale = |i: usize| slots[i].load(Ordering::SeqCst) != jobs[i].id;
    for job in jobs {
        emit(EngineEvent::Started {
            column: job.column,
            id: job.id,
            blend_ms: None,
        });
    }
    let alphas: Vec<f64> = jobs.iter().map(|j| j.alpha).collect();
    let (prompt, params) = (&jobs[0].prompt, &jobs[0].params);
    let result = engine.generate_columns(prompt, &alphas, params, &stale, &mut |i, piece| {
        emit(EngineEvent::Text {
            column: jobs[i].column,
            id: jobs[i].id,
            piece: piece.to_string(),
        })
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            for job in jobs {
                emit(EngineEvent::Failed {
                    column: job.column,
                    id: job.id,
                    error: crate::one_line(&e),
                });
            }
            return;
        }
    };
    for (job, g) in jobs.iter().zip(&rows) {
        emit(EngineEvent::Done {
            column: job.column,
            id: job.id,
            tokens: g.token_ids.len(),
            tokens_per_s: g.tokens_per_s(),
            stop: g.stop,
        });
    }
    // The meters score each text under the blend that wrote it.
    for (i, (job, g)) in jobs.iter().zip(&rows).enumerate() {
        if g.stop != StopReason::Cancelled && !stale(i) && engine.set_alpha(job.alpha).is_ok() {
            if let Ok(scored) = score(engine, job, g) {
                emit(scored);
            }
        }
    }
}

fn run_job(engine: &mut Engine, job: &Job, latest: &AtomicU64, emit: &Emit) {
    let stale = || latest.load(Ordering::SeqCst) != job.id;
    if stale() {
        return;
    }
    let (column, id) = (job.column, job.id);
    let blend = match engine.set_alpha(job.alpha) {
        Ok(t) => t,
        Err(e) => {
            emit(EngineEvent::Failed {
                column,
                id,
                error: crate::one_line(&e),
            });
            return;
        }
    };
    emit(EngineEvent::Started {
        column,
        id,
        blend_ms: Some(blend.as_secs_f64() * 1e3),
    });
    let result = engine.generate(&job.prompt, &job.params, &stale, &mut |piece| {
        emit(EngineEvent::Text {
            column,
            id,
            piece: piece.to_string(),
        })
    });
    match result {
        Ok(g) => {
            emit(EngineEvent::Done {
                column,
                id,
                tokens: g.token_ids.len(),
                tokens_per_s: g.tokens_per_s(),
                stop: g.stop,
            });
            if g.stop != StopReason::Cancelled && !stale() {
                if let Ok(scored) = score(engine, job, &g) {
                    emit(scored);
                }
            }
        }
        Err(e) => emit(EngineEvent::Failed {
            column,
            id,
            error: crate::one_line(&e),
        }),
    }
}

fn score(engine: &Engine, job: &Job, g: &crate::engine::Generation) -> anyhow::Result<EngineEvent> {
    use crate::eval::Scorer;
    let prompt = engine.encode(&job.prompt)?;
    let (nll, n) = engine.generator().continuation_nll(&prompt, &g.token_ids)?;
    Ok(EngineEvent::Scored {
        column: job.column,
        id: job.id,
        vader: crate::eval::Vader.score(&g.text)?,
        perplexity: if n > 0 {
            (nll / n as f64).exp()
        } else {
            f64::NAN
        },
    })
}
