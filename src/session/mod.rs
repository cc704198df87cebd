//! The session layer: the engine on its own thread, behind message enums. Drivers (the UI,
//! benchmarks, tests) get a [`ColumnHandle`] per column and receive [`EngineEvent`]s; only this
//! thread touches tensors.
//!
//! Scheduling: one pending job per column, the latest submission wins (rapid α moves coalesce);
//! a running job stops between tokens as soon as its column has a newer job or is dropped; the
//! job marked urgent (the focused column) runs first. A column is produced by re-blending to its
//! α; several columns waiting with one prompt run as one batch, each row at its own α, when the
//! engine measures that to be faster.

mod curve;

use crate::engine::{Alpha, Engine, GenerationParams, LoadOptions, PairInfo, StopReason};
pub use curve::CurveJob;
use curve::CurveState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A column's identity for as long as it exists: positions change, ids do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnId(pub u64);

/// One submission of a column; a newer one supersedes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// No job has this id: a column whose latest id is this has been dropped.
const DROPPED: u64 = u64::MAX;

#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub alpha: Alpha,
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
        column: ColumnId,
        job: JobId,
        blend_ms: Option<f64>,
    },
    Text {
        column: ColumnId,
        job: JobId,
        piece: String,
    },
    Done {
        column: ColumnId,
        job: JobId,
        tokens: usize,
        tokens_per_s: f64,
        stop: StopReason,
    },
    /// Meters of a finished column: VADER compound of its text, and the perplexity of the
    /// continuation under the blend that wrote it.
    Scored {
        column: ColumnId,
        job: JobId,
        vader: f64,
        perplexity: f64,
    },
    Failed {
        column: ColumnId,
        job: JobId,
        error: String,
    },
    /// One α of a curve job is complete: the mean VADER compound of its samples.
    CurvePoint {
        id: u64,
        alpha: Alpha,
        vader: f64,
    },
    /// An export is being written: bytes done of the total.
    ExportProgress {
        done: u64,
        total: u64,
    },
    /// An export is complete (its path), or failed (the error).
    Exported(Result<std::path::PathBuf, String>),
}

/// Where events go; shared with the pool thread that runs each job.
type Emit = dyn Fn(EngineEvent) + Send + Sync;

enum Request {
    Submit(ColumnId, Arc<AtomicU64>, Job),
    Curve(CurveJob),
    Export(ExportJob),
    Remove(ColumnId),
    Shutdown,
}

/// Bake the model at α into a file: the engine copies the weights out at α (a moment), and
/// another thread writes them while the engine goes back to generating.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    pub alpha: Alpha,
    pub out: std::path::PathBuf,
    pub format: crate::engine::export::Format,
}

/// The driver's side of the engine thread; the thread stops when this is dropped.
pub struct Session {
    tx: Sender<Request>,
    /// The latest job id of every column handed out, so dropping the session stops them all.
    columns: std::sync::Mutex<Vec<std::sync::Weak<AtomicU64>>>,
    thread: Option<JoinHandle<()>>,
}

/// One column of the session. Submitting replaces its pending job and stops its running one;
/// dropping it cancels whatever it has queued or running. Other columns are never touched.
pub struct ColumnHandle {
    id: ColumnId,
    latest: Arc<AtomicU64>,
    tx: Sender<Request>,
}

impl Session {
    /// Start the engine thread; it loads the pair and reports `Loaded` or `LoadFailed`
    /// through `on_event`, which it calls for every event from then on.
    pub fn spawn(
        a: String,
        b: String,
        opts: LoadOptions,
        on_event: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Self {
        Self::spawn_with(move || Ok(Engine::load(&a, &b, &opts)?), on_event)
    }

    /// Like `spawn`, with any way of making the engine.
    pub fn spawn_with(
        load: impl FnOnce() -> anyhow::Result<Engine> + Send + 'static,
        on_event: impl Fn(EngineEvent) + Send + Sync + 'static,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let on_event: Arc<Emit> = Arc::new(on_event);
        let thread = std::thread::Builder::new()
            .name("lerpscope-engine".into())
            .spawn(move || match load() {
                Ok(engine) => {
                    on_event(EngineEvent::Loaded(engine.info.clone()));
                    serve(engine, rx, on_event);
                }
                Err(e) => on_event(EngineEvent::LoadFailed(crate::one_line(&*e))),
            })
            .expect("spawn engine thread");
        Self {
            tx,
            columns: Default::default(),
            thread: Some(thread),
        }
    }

    /// A handle for the column `id` (the caller keeps ids unique among its live columns).
    pub fn column(&self, id: ColumnId) -> ColumnHandle {
        let latest = Arc::new(AtomicU64::new(0));
        let mut columns = self.columns.lock().expect("columns lock");
        columns.retain(|c| c.strong_count() > 0);
        columns.push(Arc::downgrade(&latest));
        ColumnHandle {
            id,
            latest,
            tx: self.tx.clone(),
        }
    }

    /// Start a background quick sweep, replacing any earlier one.
    pub fn curve(&self, job: CurveJob) {
        let _ = self.tx.send(Request::Curve(job));
    }

    /// Export the model at `job.alpha`; progress and the result come back as events.
    pub fn export(&self, job: ExportJob) {
        let _ = self.tx.send(Request::Export(job));
    }
}

impl ColumnHandle {
    pub fn id(&self) -> ColumnId {
        self.id
    }

    /// Queue `job`, replacing this column's pending job and stopping its running one.
    pub fn submit(&self, job: Job) {
        self.latest.store(job.id.0, Ordering::SeqCst);
        let _ = self
            .tx
            .send(Request::Submit(self.id, self.latest.clone(), job));
    }
}

impl Drop for ColumnHandle {
    fn drop(&mut self) {
        self.latest.store(DROPPED, Ordering::SeqCst);
        let _ = self.tx.send(Request::Remove(self.id));
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for c in self.columns.lock().expect("columns lock").iter() {
            if let Some(latest) = c.upgrade() {
                latest.store(DROPPED, Ordering::SeqCst);
            }
        }
        let _ = self.tx.send(Request::Shutdown);
        // Not joined: a load of a large pair may still be running, and quitting must not wait
        // for it. The thread ends on its own at its next check, or with the process.
        drop(self.thread.take());
    }
}

/// A job waiting to run, with what the running job needs to see whether it is still wanted.
struct Pending {
    column: ColumnId,
    latest: Arc<AtomicU64>,
    job: Job,
}

impl Pending {
    fn stale(&self) -> bool {
        self.latest.load(Ordering::SeqCst) != self.job.id.0
    }
}

fn serve(mut engine: Engine, rx: Receiver<Request>, emit_arc: Arc<Emit>) {
    let emit: &Emit = &*emit_arc;
    let mut exports: Vec<ExportJob> = Vec::new();
    // Submission order; at most one entry per column.
    let mut pending: Vec<Pending> = Vec::new();
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
                Request::Submit(column, latest, job) => {
                    pending.retain(|p| p.column != column);
                    pending.push(Pending {
                        column,
                        latest,
                        job,
                    });
                }
                Request::Curve(job) => curve = Some(CurveState::new(job)),
                Request::Export(job) => exports.push(job),
                Request::Remove(c) => pending.retain(|p| p.column != c),
                Request::Shutdown => return,
            }
        }
        pending.retain(|p| !p.stale());
        // Exports first: copying the weights out takes a moment, writing happens elsewhere.
        for job in exports.drain(..) {
            let snapshot = crate::engine::on_pool(|| {
                let dtype = engine.weights().dtype();
                engine.snapshot(job.alpha, dtype)
            });
            let emit = emit_arc.clone();
            let writer = move || {
                let snapshot = snapshot.map_err(|e| e.to_string())?;
                let progress = |done, total| emit(EngineEvent::ExportProgress { done, total });
                crate::engine::export::write(&snapshot, job.format, &job.out, false, &progress)
                    .map_err(|e| e.to_string())
            };
            let emit = emit_arc.clone();
            let _ = std::thread::Builder::new()
                .name("lerpscope-export".into())
                .spawn(move || emit(EngineEvent::Exported(writer())));
        }
        // Each piece of work runs on a thread of rayon's pool (see `engine::on_pool`); this
        // thread only waits for requests.
        if let Some(batch) = batchable(&mut engine, &pending) {
            let (jobs, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(|p| batch.contains(&p.column));
            pending = rest;
            crate::engine::on_pool(|| run_batch(&mut engine, &jobs, emit));
        } else if let Some(next) = pick(&pending) {
            let p = pending.remove(next);
            crate::engine::on_pool(|| run_job(&mut engine, &p, emit));
        } else if let Some(c) = curve.as_mut() {
            // One sample per turn, so a column job submitted meanwhile waits one sample at most.
            let (stepped, done) = crate::engine::on_pool(|| (c.step(&mut engine, emit), c.done()));
            if stepped.is_err() || done {
                curve = None;
            }
        }
    }
}

/// Urgent first, then in submission order.
fn pick(pending: &[Pending]) -> Option<usize> {
    pending
        .iter()
        .position(|p| p.job.urgent)
        .or((!pending.is_empty()).then_some(0))
}

/// The columns (in submission order) of the pending jobs that share the next job's prompt and
/// settings, when one batch is faster for them than re-blending for each.
fn batchable(engine: &mut Engine, pending: &[Pending]) -> Option<Vec<ColumnId>> {
    let first = &pending[pick(pending)?].job;
    let group: Vec<ColumnId> = pending
        .iter()
        .filter(|p| p.job.prompt == first.prompt && p.job.params == first.params)
        .map(|p| p.column)
        .collect();
    // Deciding may time a few forward passes (once per group size): on the pool, like a job.
    // (For adapters even one column may run as a batch: the factored path needs no merge.)
    let faster =
        crate::engine::on_pool(|| engine.prefer_batch(group.len(), first.params.max_tokens))
            .unwrap_or(false);
    faster.then_some(group)
}

/// Several columns as one batch: the same events as [`run_job`] for each, with text
/// interleaved as the rows advance together.
fn run_batch(engine: &mut Engine, jobs: &[Pending], emit: &Emit) {
    for p in jobs {
        emit(EngineEvent::Started {
            column: p.column,
            job: p.job.id,
            blend_ms: None,
        });
    }
    let stale = |i: usize| jobs[i].stale();
    let alphas: Vec<Alpha> = jobs.iter().map(|p| p.job.alpha).collect();
    let (prompt, params) = (&jobs[0].job.prompt, &jobs[0].job.params);
    let result = engine.generate_columns(prompt, &alphas, params, &stale, &mut |i, piece| {
        emit(EngineEvent::Text {
            column: jobs[i].column,
            job: jobs[i].job.id,
            piece: piece.to_string(),
        })
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            for p in jobs {
                emit(EngineEvent::Failed {
                    column: p.column,
                    job: p.job.id,
                    error: e.to_string(),
                });
            }
            return;
        }
    };
    for (p, g) in jobs.iter().zip(&rows) {
        emit(EngineEvent::Done {
            column: p.column,
            job: p.job.id,
            tokens: g.token_ids.len(),
            tokens_per_s: g.tokens_per_s(),
            stop: g.stop,
        });
    }
    // The meters score each text under the blend that wrote it.
    for (p, g) in jobs.iter().zip(&rows) {
        if g.stop != StopReason::Cancelled && !p.stale() && engine.set_alpha(p.job.alpha).is_ok() {
            if let Ok(scored) = score(engine, p, g) {
                emit(scored);
            }
        }
    }
}

fn run_job(engine: &mut Engine, p: &Pending, emit: &Emit) {
    let stale = || p.stale();
    if stale() {
        return;
    }
    let (column, job) = (p.column, p.job.id);
    let blend = match engine.set_alpha(p.job.alpha) {
        Ok(t) => t,
        Err(e) => {
            emit(EngineEvent::Failed {
                column,
                job,
                error: e.to_string(),
            });
            return;
        }
    };
    emit(EngineEvent::Started {
        column,
        job,
        blend_ms: Some(blend.as_secs_f64() * 1e3),
    });
    let result = engine.generate(&p.job.prompt, &p.job.params, &stale, &mut |piece| {
        emit(EngineEvent::Text {
            column,
            job,
            piece: piece.to_string(),
        })
    });
    match result {
        Ok(g) => {
            emit(EngineEvent::Done {
                column,
                job,
                tokens: g.token_ids.len(),
                tokens_per_s: g.tokens_per_s(),
                stop: g.stop,
            });
            if g.stop != StopReason::Cancelled && !stale() {
                if let Ok(scored) = score(engine, p, &g) {
                    emit(scored);
                }
            }
        }
        Err(e) => emit(EngineEvent::Failed {
            column,
            job,
            error: e.to_string(),
        }),
    }
}

fn score(
    engine: &Engine,
    p: &Pending,
    g: &crate::engine::Generation,
) -> anyhow::Result<EngineEvent> {
    use crate::eval::Scorer;
    let prompt = engine.encode(&p.job.prompt)?;
    let (nll, n) = engine.generator().continuation_nll(&prompt, &g.token_ids)?;
    Ok(EngineEvent::Scored {
        column: p.column,
        job: p.job.id,
        vader: crate::eval::Vader.score(&crate::engine::token_stream::without_specials(&g.text))?,
        perplexity: crate::engine::perplexity(nll, n),
    })
}
