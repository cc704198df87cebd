//! The session layer: the engine on its own thread, behind message enums. Drivers (the UI,
//! benchmarks, tests) get a [`ColumnHandle`] per column and receive [`EngineEvent`]s; only this
//! thread touches tensors.
//!
//! Scheduling: one pending job per column, the latest submission wins (rapid α moves coalesce);
//! a running job stops between tokens as soon as its column has a newer job or is dropped; the
//! job marked urgent (the focused column) runs first. A column is produced by re-blending to its
//! α (on a plane, its point (α, β)); several columns waiting with one prompt run as one batch,
//! each row at its own point, when the engine measures that to be faster.

mod curve;
pub mod scrub;

use crate::engine::{
    Alpha, Engine, GenerationParams, LoadOptions, PairInfo, StopReason, TextScore, TokenInfo,
};
pub use curve::{CurveJob, FindJob, FindReport};
use curve::{CurveState, FindState};
pub use scrub::ScrubJob;
use scrub::{ScrubCost, ScrubState};
use std::panic::AssertUnwindSafe;
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
    /// On a plane with a β of its own, the column's β (None: β as the engine has it).
    pub beta: Option<Alpha>,
    /// The prompt, or for a score job the text to score.
    pub prompt: String,
    pub params: GenerationParams,
    /// Run before non-urgent jobs (the focused column).
    pub urgent: bool,
    pub kind: JobKind,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub enum JobKind {
    #[default]
    Generate,
    /// Generate on from these tokens after the prompt (a fork at a chosen alternative).
    Fork(Vec<u32>),
    /// Score the text instead of generating.
    Score,
}

/// An error as it crosses from the engine thread to a driver: what kind it is, so the driver
/// can react (a memory error gets a suggestion), and its one line, flattened once here.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// One of the engine's errors.
    Engine(crate::engine::ErrorKind),
    /// A panic, caught.
    Internal,
    /// Anything else (a file the driver could not write, say).
    Other,
}

impl Failure {
    pub fn engine(e: &crate::engine::Error) -> Self {
        Self {
            kind: FailureKind::Engine(e.kind()),
            message: crate::one_line(e),
        }
    }

    /// From an error that may carry one of the engine's (its kind is kept).
    pub fn from_anyhow(e: &anyhow::Error) -> Self {
        let kind = e
            .chain()
            .find_map(|c| c.downcast_ref::<crate::engine::Error>())
            .map_or(FailureKind::Other, |e| FailureKind::Engine(e.kind()));
        Self {
            kind,
            message: crate::one_line(&**e),
        }
    }

    pub fn internal(message: String) -> Self {
        Self {
            kind: FailureKind::Internal,
            message,
        }
    }

    pub fn other(message: impl Into<String>) -> Self {
        Self {
            kind: FailureKind::Other,
            message: message.into(),
        }
    }

    pub fn is_memory(&self) -> bool {
        self.kind == FailureKind::Engine(crate::engine::ErrorKind::Memory)
    }
}

/// A failure of no particular kind, from its line.
impl From<&str> for Failure {
    fn from(message: &str) -> Self {
        Self::other(message)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How a column's text is made: the two ways can round differently (a batch of adapter
/// columns takes the factored path; in half precision a batch rounds unlike a column alone).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ColumnRun {
    /// Alone, at weights blended to its point; the blend took `ms`.
    Blended { ms: f64 },
    /// A row of a batch of `rows`, each row at its own point, with no blend.
    Batch { rows: usize },
}

impl ColumnRun {
    /// "alone at its blend" or "a row of a batch of 4".
    pub fn describe(&self) -> String {
        match self {
            Self::Blended { .. } => "alone at its blend".to_string(),
            Self::Batch { rows } => format!("a row of a batch of {rows}"),
        }
    }
}

/// One token of a column's text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Token {
    pub id: u32,
    /// Written tokens carry it when the job asked for token info; given ones do not.
    pub info: Option<TokenInfo>,
}

// `Loaded` is the large one, sent once per load: boxing it would save ~200 bytes a token
// event in a channel that holds a handful.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum EngineEvent {
    Loaded(PairInfo),
    /// Each token id's text, for naming alternatives (follows `Loaded`).
    Vocabulary(Arc<Vec<String>>),
    LoadFailed(Failure),
    /// The job runs (alone at its blend, or as a row of a batch); text follows.
    Started {
        column: ColumnId,
        job: JobId,
        run: ColumnRun,
    },
    /// Text for the column: a token and the text it completed (possibly none yet), or (no
    /// token) text left over at the end.
    Text {
        column: ColumnId,
        job: JobId,
        piece: String,
        token: Option<Token>,
    },
    /// A score job's result: the text's tokens and their probabilities, with each token's
    /// byte range in the text.
    TextScored {
        column: ColumnId,
        job: JobId,
        score: TextScore,
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
        error: Failure,
    },
    /// One point of a curve job is complete: the mean VADER compound of its samples, with its
    /// 95% interval (`beta` on a plane's grid).
    CurvePoint {
        id: u64,
        alpha: Alpha,
        beta: Option<Alpha>,
        vader: crate::eval::stats::Estimate,
    },
    /// A find job measured a point, or finished.
    Find {
        id: u64,
        report: FindReport,
    },
    FindFailed {
        id: u64,
        error: Failure,
    },
    /// Points of an α-scrub: p(token | prefix) at each α; `complete` on the last batch.
    ScrubPoints {
        id: u64,
        points: Vec<(Alpha, f32)>,
        complete: bool,
    },
    ScrubFailed {
        id: u64,
        error: Failure,
    },
    /// α per layer was edited: the pair as it now is (its rules and strip), or why the edit
    /// was refused (nothing changed then).
    LayersChanged(Result<Box<PairInfo>, Failure>),
    /// D's γ was moved: the pair as it now is, or why not (nothing changed then).
    GammaChanged(Result<Box<PairInfo>, Failure>),
    /// An export is being written: bytes done of the total.
    ExportProgress {
        done: u64,
        total: u64,
    },
    /// An export is complete (its path), or failed (the error).
    Exported(Result<std::path::PathBuf, Failure>),
    /// A job panicked and was stopped (its column also gets `Failed`); the weights are
    /// re-blended from the endpoints before the next job, and the engine serves on.
    Recovered(Failure),
    /// The engine cannot be trusted any more (a panic it could not contain, or a re-blend that
    /// failed after one) and has stopped; the driver should say so and quit.
    Broken(Failure),
}

/// Where events go; shared with the pool thread that runs each job.
type Emit = dyn Fn(EngineEvent) + Send + Sync;

enum Request {
    Submit(ColumnId, Arc<AtomicU64>, Job),
    Curve(CurveJob),
    Find(FindJob),
    /// Stop the find job with this id (if it is still running).
    CancelFind(u64),
    /// Stop the quick sweep with this id (if it is still running).
    CancelCurve(u64),
    Scrub(ScrubJob),
    Export(ExportJob),
    Remove(ColumnId),
    /// Edit α per layer (`--layer-alphas` syntax; empty: off).
    SetLayers(String),
    /// Move a fourth endpoint's γ.
    SetGamma(f64),
    /// Test hook: the next column job scribbles over the working weights and panics.
    InjectPanic,
    Shutdown,
}

/// Bake the model at α into a file: the engine copies the weights out at α (a moment), and
/// another thread writes them while the engine goes back to generating.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    pub alpha: Alpha,
    /// On a plane with a β of its own, the point's β (None: β as the engine has it).
    pub beta: Option<Alpha>,
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
                    on_event(EngineEvent::Vocabulary(Arc::new(vocabulary(&engine))));
                    let emit = on_event.clone();
                    // serve contains a job's panic itself; one that escapes it (its own
                    // bookkeeping) still ends with an event, not a silent thread.
                    let served =
                        std::panic::catch_unwind(AssertUnwindSafe(|| serve(engine, rx, on_event)));
                    if let Err(payload) = served {
                        emit(EngineEvent::Broken(Failure::internal(panic_text(
                            &*payload,
                        ))));
                    }
                }
                Err(e) => on_event(EngineEvent::LoadFailed(Failure::from_anyhow(&e))),
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

    /// Start a search for the α of a target, replacing any earlier one.
    pub fn find(&self, job: FindJob) {
        let _ = self.tx.send(Request::Find(job));
    }

    /// Stop the search with this id, if it is still running.
    pub fn cancel_find(&self, id: u64) {
        let _ = self.tx.send(Request::CancelFind(id));
    }

    /// Start a background quick sweep, replacing any earlier one.
    pub fn curve(&self, job: CurveJob) {
        let _ = self.tx.send(Request::Curve(job));
    }

    /// Stop the quick sweep with this id, if it is still running.
    pub fn cancel_curve(&self, id: u64) {
        let _ = self.tx.send(Request::CancelCurve(id));
    }

    /// Start an α-scrub, replacing any earlier one.
    pub fn scrub(&self, job: ScrubJob) {
        let _ = self.tx.send(Request::Scrub(job));
    }

    /// Export the model at `job.alpha`; progress and the result come back as events.
    pub fn export(&self, job: ExportJob) {
        let _ = self.tx.send(Request::Export(job));
    }

    /// Edit α per layer live (`--layer-alphas` syntax; empty turns it off); `LayersChanged`
    /// answers. Columns submitted after the answer run under the new rules.
    pub fn set_layer_alphas(&self, spec: String) {
        let _ = self.tx.send(Request::SetLayers(spec));
    }

    /// Move a fourth endpoint's γ for every column; `GammaChanged` answers, and columns
    /// submitted after it run at the new γ.
    pub fn set_gamma(&self, gamma: f64) {
        let _ = self.tx.send(Request::SetGamma(gamma));
    }

    /// Test hook: the next column job writes zeros over the working weights and panics, as a
    /// bug in the middle of a blend would; the engine must report it and recover.
    pub fn inject_panic(&self) {
        let _ = self.tx.send(Request::InjectPanic);
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

/// The last panic off the UI thread, with where it happened, as a panic hook recorded it
/// ([`note_panic`]); read when a job's panic is reported.
static LAST_PANIC: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Record a panic (for a hook on a thread that cannot print: the UI owns the terminal).
pub fn note_panic(info: &std::panic::PanicHookInfo<'_>) {
    let what = payload_text(info.payload());
    let at = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) = Some(format!("{what}{at}"));
}

/// The last recorded panic, if any (taken).
pub fn last_panic() -> Option<String> {
    LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take()
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".to_string())
}

/// One line for a caught panic: the hook's record (with its location) when there is one.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let noted = last_panic();
    format!(
        "internal error: {}",
        noted.unwrap_or_else(|| payload_text(payload))
    )
}

/// Run `work` on the pool (see `engine::on_pool`) with a panic in it, on the pool thread or
/// any thread it fans out to, caught: `Err` carries its line.
fn contained<R: Send>(work: impl FnOnce() -> R + Send) -> Result<R, Failure> {
    std::panic::catch_unwind(AssertUnwindSafe(|| crate::engine::on_pool(work)))
        .map_err(|payload| Failure::internal(panic_text(&*payload)))
}

/// After a caught panic the working weights may be half-written: blend them again from the
/// endpoints at the current α (always exact, and cheap). `Err` when that fails too.
fn reblend(engine: &mut Engine) -> Result<(), Failure> {
    let alpha = engine.alpha();
    let failed = |e: &dyn std::fmt::Display, kind| Failure {
        kind,
        message: format!("re-blending after an internal error failed: {e}"),
    };
    match contained(|| engine.set_alpha(alpha)) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(failed(&e, FailureKind::Engine(e.kind()))),
        Err(e) => Err(failed(&e, FailureKind::Internal)),
    }
}

fn serve(mut engine: Engine, rx: Receiver<Request>, emit_arc: Arc<Emit>) {
    let emit: &Emit = &*emit_arc;
    let mut exports: Vec<ExportJob> = Vec::new();
    // Submission order; at most one entry per column.
    let mut pending: Vec<Pending> = Vec::new();
    let mut curve: Option<CurveState> = None;
    let mut find: Option<FindState> = None;
    let mut scrub: Option<ScrubState> = None;
    let mut scrub_cost = ScrubCost::default();
    let mut inject = false;
    // A panic was caught: the weights are re-blended before anything else runs.
    let mut dirty = false;
    loop {
        // Block only when idle; otherwise take whatever arrived and get back to work.
        let first = if pending.is_empty() && curve.is_none() && find.is_none() && scrub.is_none() {
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
                Request::Find(job) => find = Some(FindState::new(job)),
                Request::CancelFind(id) => {
                    if find.as_ref().is_some_and(|f| f.id() == id) {
                        find = None;
                    }
                }
                Request::CancelCurve(id) => {
                    if curve.as_ref().is_some_and(|c| c.id() == id) {
                        curve = None;
                    }
                }
                Request::Scrub(job) => scrub = Some(ScrubState::new(job)),
                Request::Export(job) => exports.push(job),
                Request::Remove(c) => pending.retain(|p| p.column != c),
                Request::SetLayers(spec) => match contained(|| engine.set_layer_alphas(&spec)) {
                    Ok(Ok(_)) => emit(EngineEvent::LayersChanged(Ok(Box::new(
                        engine.info.clone(),
                    )))),
                    Ok(Err(e)) => emit(EngineEvent::LayersChanged(Err(Failure::engine(&e)))),
                    Err(error) => {
                        emit(EngineEvent::LayersChanged(Err(error.clone())));
                        emit(EngineEvent::Recovered(error));
                        dirty = true;
                    }
                },
                Request::SetGamma(gamma) => match contained(|| engine.set_gamma(gamma)) {
                    Ok(Ok(_)) => emit(EngineEvent::GammaChanged(Ok(Box::new(engine.info.clone())))),
                    Ok(Err(e)) => emit(EngineEvent::GammaChanged(Err(Failure::engine(&e)))),
                    Err(error) => {
                        emit(EngineEvent::GammaChanged(Err(error.clone())));
                        emit(EngineEvent::Recovered(error));
                        dirty = true;
                    }
                },
                Request::InjectPanic => inject = true,
                Request::Shutdown => return,
            }
        }
        pending.retain(|p| !p.stale());
        if std::mem::take(&mut dirty) {
            if let Err(e) = reblend(&mut engine) {
                emit(EngineEvent::Broken(e));
                return;
            }
        }
        // Exports first: copying the weights out takes a moment, writing happens elsewhere.
        for job in exports.drain(..) {
            let snapshot = contained(|| {
                let dtype = engine.weights().dtype();
                to_point(&mut engine, job.alpha, job.beta)
                    .and_then(|_| engine.snapshot(job.alpha, dtype))
                    .map_err(|e| Failure::engine(&e))
            });
            if snapshot.is_err() {
                dirty = true;
            }
            let emit = emit_arc.clone();
            let writer = move || {
                let snapshot = snapshot.and_then(|s| s)?;
                // Lets the end-to-end test quit in the middle of a bake of a tiny pair.
                let pause = std::env::var("LERPSCOPE_TEST_SLOW_EXPORT_MS")
                    .ok()
                    .and_then(|ms| ms.parse().ok())
                    .map(std::time::Duration::from_millis);
                let progress = |done, total| {
                    if let Some(pause) = pause {
                        std::thread::sleep(pause);
                    }
                    emit(EngineEvent::ExportProgress { done, total })
                };
                crate::engine::export::write(&snapshot, job.format, &job.out, false, &progress)
                    .map_err(|e| Failure::engine(&e))
            };
            let emit = emit_arc.clone();
            let _ = std::thread::Builder::new()
                .name("lerpscope-export".into())
                .spawn(move || emit(EngineEvent::Exported(writer())));
        }
        // Each piece of work runs on a thread of rayon's pool (see `engine::on_pool`); this
        // thread only waits for requests. A scrub answers the user's cursor: it goes first,
        // one batch of points per turn.
        // A panic in any of them is caught here: the work it was doing fails with the panic's
        // line, and the weights are re-blended before the next.
        if let Some(s) = scrub.as_mut() {
            let id = s.id();
            match contained(|| s.step(&mut engine, emit, &mut scrub_cost)) {
                Ok(false) => {}
                Ok(true) => scrub = None,
                Err(error) => {
                    emit(EngineEvent::ScrubFailed { id, error });
                    (scrub, dirty) = (None, true);
                }
            }
        } else if let Some(batch) = batchable(&mut engine, &pending, &mut dirty, emit) {
            let (jobs, rest): (Vec<Pending>, Vec<Pending>) = std::mem::take(&mut pending)
                .into_iter()
                .partition(|p| batch.contains(&p.column));
            pending = rest;
            let injected = std::mem::take(&mut inject);
            if let Err(error) = contained(|| run_batch(&mut engine, &jobs, injected, emit)) {
                fail_all(&jobs, &error, emit);
                dirty = true;
            }
        } else if let Some(next) = pick(&pending) {
            let p = pending.remove(next);
            let injected = std::mem::take(&mut inject);
            if let Err(error) = contained(|| run_job(&mut engine, &p, injected, emit)) {
                fail_all(std::slice::from_ref(&p), &error, emit);
                dirty = true;
            }
        } else if let Some(f) = find.as_mut() {
            // One batch of a point per turn, like the curve; the user waits on it: it goes first.
            let id = f.id();
            match contained(|| f.step(&mut engine, emit)) {
                Ok(Ok(false)) => {}
                Ok(Ok(true)) => find = None,
                Ok(Err(e)) => {
                    emit(EngineEvent::FindFailed {
                        id,
                        error: Failure::from_anyhow(&e),
                    });
                    find = None;
                }
                Err(error) => {
                    emit(EngineEvent::FindFailed {
                        id,
                        error: error.clone(),
                    });
                    emit(EngineEvent::Recovered(error));
                    (find, dirty) = (None, true);
                }
            }
        } else if let Some(c) = curve.as_mut() {
            // One batch of a point per turn, so a column job submitted meanwhile waits that long.
            match contained(|| (c.step(&mut engine, emit), c.done())) {
                Ok((stepped, done)) => {
                    if stepped.is_err() || done {
                        curve = None;
                    }
                }
                Err(error) => {
                    emit(EngineEvent::Recovered(error));
                    (curve, dirty) = (None, true);
                }
            }
        }
    }
}

/// Each job's column fails with a caught panic's line; then the engine says it recovered.
fn fail_all(jobs: &[Pending], error: &Failure, emit: &Emit) {
    for p in jobs {
        emit(EngineEvent::Failed {
            column: p.column,
            job: p.job.id,
            error: error.clone(),
        });
    }
    emit(EngineEvent::Recovered(error.clone()));
}

/// The test hook's damage: zeros over the working weights, then a panic.
fn injected_panic(engine: &Engine) {
    let w = engine.weights().working();
    if let Ok(zeros) = w.zeros_like() {
        let _ = crate::engine::kernels::copy_tensor(w, &zeros);
    }
    panic!("a panic injected by the test hook, after scribbling over the weights");
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
fn batchable(
    engine: &mut Engine,
    pending: &[Pending],
    dirty: &mut bool,
    emit: &Emit,
) -> Option<Vec<ColumnId>> {
    let first = &pending[pick(pending)?].job;
    if first.kind != JobKind::Generate {
        return None;
    }
    let group: Vec<ColumnId> = pending
        .iter()
        .filter(|p| {
            p.job.kind == JobKind::Generate
                && p.job.prompt == first.prompt
                && p.job.params == first.params
        })
        .map(|p| p.column)
        .collect();
    // Deciding may time a few forward passes (once per group size): on the pool, like a job.
    // (For adapters even one column may run as a batch: the factored path needs no merge.)
    let faster = match contained(|| engine.prefer_batch(group.len(), first.params.max_tokens)) {
        Ok(faster) => faster.unwrap_or(false),
        Err(error) => {
            emit(EngineEvent::Recovered(error));
            *dirty = true;
            false
        }
    };
    faster.then_some(group)
}

/// Several columns as one batch: the same events as [`run_job`] for each, with text
/// interleaved as the rows advance together.
fn run_batch(engine: &mut Engine, jobs: &[Pending], inject: bool, emit: &Emit) {
    for p in jobs {
        emit(EngineEvent::Started {
            column: p.column,
            job: p.job.id,
            run: ColumnRun::Batch { rows: jobs.len() },
        });
    }
    if inject {
        injected_panic(engine);
    }
    let stale = |i: usize| jobs[i].stale();
    let alphas: Vec<Alpha> = jobs.iter().map(|p| p.job.alpha).collect();
    // Each row at its column's point (a β per row only when every job has one).
    let betas: Option<Vec<Alpha>> = jobs.iter().map(|p| p.job.beta).collect();
    let (prompt, params) = (&jobs[0].job.prompt, &jobs[0].job.params);
    let result = engine.mix_at(&alphas, betas.as_deref()).and_then(|mix| {
        let ids = engine.encode(prompt)?;
        engine.generate_steps_mixed(&ids, &[], Some(&mix), params, &stale, &mut |i, step| {
            emit(text_event(jobs[i].column, jobs[i].job.id, step))
        })
    });
    let rows = match result {
        Ok(rows) => rows,
        Err(e) => {
            for p in jobs {
                emit(EngineEvent::Failed {
                    column: p.column,
                    job: p.job.id,
                    error: Failure::engine(&e),
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
    // The meters score each text under the blend that wrote it (from the recorded
    // log-probabilities when there are some: no re-blend needed).
    for (p, g) in jobs.iter().zip(&rows) {
        if g.stop == StopReason::Cancelled || p.stale() {
            continue;
        }
        if recorded(g) || at_point(engine, &p.job).is_ok() {
            if let Ok(scored) = score(engine, p, g) {
                emit(scored);
            }
        }
    }
}

/// A step of the token loop as the column's event.
fn text_event(column: ColumnId, job: JobId, step: crate::engine::Step<'_>) -> EngineEvent {
    EngineEvent::Text {
        column,
        job,
        piece: step.piece.to_string(),
        token: step.id.map(|id| Token {
            id,
            info: step.info.copied(),
        }),
    }
}

fn run_job(engine: &mut Engine, p: &Pending, inject: bool, emit: &Emit) {
    let stale = || p.stale();
    if stale() {
        return;
    }
    let (column, job) = (p.column, p.job.id);
    if p.job.kind == JobKind::Score {
        let beta = p.job.beta.map(Alpha::value);
        emit(
            match engine.score_text_at(&p.job.prompt, p.job.alpha, beta) {
                Ok(score) => EngineEvent::TextScored { column, job, score },
                Err(e) => EngineEvent::Failed {
                    column,
                    job,
                    error: Failure::engine(&e),
                },
            },
        );
        return;
    }
    let blend = match at_point(engine, &p.job) {
        Ok(t) => t,
        Err(e) => {
            emit(EngineEvent::Failed {
                column,
                job,
                error: Failure::engine(&e),
            });
            return;
        }
    };
    emit(EngineEvent::Started {
        column,
        job,
        run: ColumnRun::Blended {
            ms: blend.as_secs_f64() * 1e3,
        },
    });
    if inject {
        injected_panic(engine);
    }
    let given: &[u32] = match &p.job.kind {
        JobKind::Fork(given) => given,
        _ => &[],
    };
    let result = engine.encode(&p.job.prompt).and_then(|ids| {
        engine.generate_steps(
            &ids,
            given,
            None,
            &p.job.params,
            &|_| stale(),
            &mut |_, step| emit(text_event(column, job, step)),
        )
    });
    match result.map(|mut rows| rows.remove(0)) {
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
            error: Failure::engine(&e),
        }),
    }
}

/// Move the engine to (α, β) where it is elsewhere, in one blend (β None: β as it is). A
/// curve, a search or a scrub runs at its own point between column jobs that move the engine.
fn to_point(engine: &mut Engine, alpha: Alpha, beta: Option<Alpha>) -> crate::engine::Result<()> {
    let beta = beta.map(Alpha::value);
    if engine.alpha() != alpha || (beta.is_some() && engine.beta() != beta) {
        engine.set_point(alpha, beta)?;
    }
    Ok(())
}

/// Blend the engine to the job's point.
fn at_point(engine: &mut Engine, job: &Job) -> crate::engine::Result<Duration> {
    engine.set_point(job.alpha, job.beta.map(Alpha::value))
}

fn score(
    engine: &Engine,
    p: &Pending,
    g: &crate::engine::Generation,
) -> anyhow::Result<EngineEvent> {
    use crate::eval::Scorer;
    // The continuation's perplexity: from the log-probabilities the loop recorded when it
    // did, else by one more pass at the engine's current α.
    let (nll, n) = if recorded(g) {
        let nll = -g.tokens.iter().map(|t| t.logprob as f64).sum::<f64>();
        (nll, g.tokens.len())
    } else {
        let prompt = engine.encode(&p.job.prompt)?;
        engine.generator().continuation_nll(&prompt, &g.token_ids)?
    };
    Ok(EngineEvent::Scored {
        column: p.column,
        job: p.job.id,
        vader: crate::eval::Vader.score(&crate::engine::tokens::without_specials(&g.text))?,
        perplexity: crate::engine::perplexity(nll, n),
    })
}

/// Whether the loop recorded every token's log-probability.
fn recorded(g: &crate::engine::Generation) -> bool {
    !g.tokens.is_empty() && g.tokens.len() == g.token_ids.len()
}

/// Each token id as text (special tokens included), in id order.
fn vocabulary(engine: &Engine) -> Vec<String> {
    let t = engine.tokenizer();
    (0..t.get_vocab_size(true) as u32)
        .map(|id| t.decode(&[id], false).unwrap_or_else(|_| format!("#{id}")))
        .collect()
}
