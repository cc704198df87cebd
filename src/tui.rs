//! The terminal runtime: set the terminal up (and always put it back), start the engine
//! thread, and run the event loop — input and engine events in, effects out, one frame per
//! batch of messages.

use crate::app::{keymap::Keymap, App, Effect, Msg};
use crate::engine::{Alpha, ColumnsMode, GenerationParams, LoadOptions};
use crate::session::{ColumnHandle, ColumnId, CurveJob, EngineEvent, Job, Session};
use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// A terminal event and the moment the input thread read it.
pub type Input = (Instant, std::io::Result<Event>);

/// What the UI is opened on.
pub struct TuiConfig {
    pub a: String,
    pub b: String,
    pub alphas: Vec<Alpha>,
    pub prompt: String,
    pub params: GenerationParams,
    pub load: LoadOptions,
    pub range: crate::engine::AlphaRange,
    pub columns: ColumnsMode,
    /// Texts that stop a column.
    pub stop: Vec<String>,
    /// Start in score mode on this text.
    pub score_text: Option<String>,
    /// Draw one screen off-terminal into an SVG file instead of running interactively.
    pub screenshot: Option<Screenshot>,
}

/// A picture of the UI: the screen once every column has finished (after `press`, a key at a
/// time, each followed by the work it starts), drawn on a headless terminal of `size`.
pub struct Screenshot {
    pub path: PathBuf,
    pub size: (u16, u16),
    pub press: String,
}

/// The real app, engine and renderer on a headless terminal, with the default keymap and
/// colours; writes the final screen as SVG.
fn screenshot(cfg: TuiConfig) -> Result<()> {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    let Some(shot) = &cfg.screenshot else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let svg = rt.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let session = spawn_session(&cfg, move |e| {
            let _ = tx.send(e);
        });
        if std::env::var_os("LERPSCOPE_TEST_JOB_PANIC").is_some() {
            // Lets the end-to-end test check that a job's panic is reported and survived.
            session.inject_panic();
        }
        let mut app = new_app(&cfg, Keymap::default());
        app.size = shot.size;
        let backend = ratatui::backend::TestBackend::new(shot.size.0, shot.size.1);
        let mut terminal = Terminal::new(backend)?;
        let mut columns = SessionColumns::new(&session);
        let mut keys = shot.press.chars();
        loop {
            terminal.draw(|f| crate::ui::view(&app, f))?;
            if let crate::app::PairState::Failed(e) = &app.pair {
                anyhow::bail!("{e}");
            }
            // An animation runs until a key: the shot takes its first step (to the range's
            // low end), then stops it (a key while it runs does nothing else).
            if app.settled() && app.animating.is_some() {
                let stop = KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE);
                apply(&mut app, Msg::Key(stop), &mut columns);
                continue;
            }
            // A finished column's meters follow it from the engine: the shot waits a
            // moment for them (a meter that fails sends nothing).
            let unmetered = app.columns.iter().any(|c| {
                matches!(c.state, crate::app::ColumnState::Done(s) if s != crate::engine::StopReason::Cancelled)
                    && c.meters.is_none()
            });
            if app.settled() && unmetered && !app.score_mode {
                let wait = std::time::Duration::from_secs(5);
                if let Ok(Some(e)) = tokio::time::timeout(wait, rx.recv()).await {
                    apply(&mut app, Msg::Engine(e), &mut columns);
                    continue;
                }
            }
            if app.settled() {
                let Some(c) = keys.next() else { break };
                let key = KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE);
                apply(&mut app, Msg::Key(key), &mut columns);
                continue;
            }
            match rx.recv().await {
                Some(e) => {
                    apply(&mut app, Msg::Engine(e), &mut columns);
                }
                None => anyhow::bail!("the engine stopped before the columns finished"),
            }
        }
        terminal.draw(|f| crate::ui::view(&app, f))?;
        anyhow::Ok(crate::ui::svg::render(terminal.backend().buffer()))
    })?;
    std::fs::write(&shot.path, svg)
        .with_context(|| format!("--screenshot {}: cannot write", shot.path.display()))
}

/// The engine thread for `cfg`'s pair, sending its events to `send`.
fn spawn_session(cfg: &TuiConfig, send: impl Fn(EngineEvent) + Send + Sync + 'static) -> Session {
    let (a, b, load, columns) = (cfg.a.clone(), cfg.b.clone(), cfg.load.clone(), cfg.columns);
    let stop = cfg.stop.clone();
    Session::spawn_with(
        move || {
            let mut engine = crate::engine::Engine::load(&a, &b, &load)?;
            engine.set_columns_mode(columns)?;
            engine.set_stop_texts(stop);
            Ok(engine)
        },
        send,
    )
}

/// The app as `cfg` opens it.
fn new_app(cfg: &TuiConfig, keymap: Keymap) -> App {
    let mut app = App::new(
        cfg.a.clone(),
        cfg.b.clone(),
        &cfg.prompt,
        &cfg.alphas,
        cfg.params,
        keymap,
    );
    app.range = cfg.range;
    app.columns_mode = cfg.columns;
    app.stop = cfg.stop.clone();
    if let Some(text) = &cfg.score_text {
        app.start_in_score_mode(text);
    }
    app
}

/// Where the app's column work goes: a session, or a recorder in tests.
pub trait JobSink {
    fn submit(&mut self, column: ColumnId, job: Job);
    fn remove(&mut self, column: ColumnId);
    fn curve(&mut self, job: CurveJob);
    /// Stop the quick sweep with this id (its panel was closed).
    fn cancel_curve(&mut self, id: u64);
    fn find(&mut self, job: crate::session::FindJob);
    fn cancel_find(&mut self, id: u64);
    fn scrub(&mut self, job: crate::session::ScrubJob);
    fn export(&mut self, job: crate::session::ExportJob);
    /// Edit α per layer (`--layer-alphas` syntax; empty: off).
    fn set_layer_alphas(&mut self, spec: String);
    /// Move a fourth endpoint's γ.
    fn set_gamma(&mut self, gamma: f64);
}

/// The session's handles for the app's live columns: a column's handle is made at its first
/// job and dropped (cancelling its work) when the column is removed.
pub struct SessionColumns<'s> {
    session: &'s Session,
    handles: HashMap<ColumnId, ColumnHandle>,
}

impl<'s> SessionColumns<'s> {
    pub fn new(session: &'s Session) -> Self {
        Self {
            session,
            handles: HashMap::new(),
        }
    }
}

impl JobSink for SessionColumns<'_> {
    fn submit(&mut self, column: ColumnId, job: Job) {
        self.handles
            .entry(column)
            .or_insert_with(|| self.session.column(column))
            .submit(job);
    }
    fn remove(&mut self, column: ColumnId) {
        self.handles.remove(&column);
    }
    fn curve(&mut self, job: CurveJob) {
        self.session.curve(job);
    }
    fn cancel_curve(&mut self, id: u64) {
        self.session.cancel_curve(id);
    }
    fn find(&mut self, job: crate::session::FindJob) {
        self.session.find(job);
    }
    fn cancel_find(&mut self, id: u64) {
        self.session.cancel_find(id);
    }
    fn scrub(&mut self, job: crate::session::ScrubJob) {
        self.session.scrub(job);
    }
    fn export(&mut self, job: crate::session::ExportJob) {
        self.session.export(job);
    }
    fn set_layer_alphas(&mut self, spec: String) {
        self.session.set_layer_alphas(spec);
    }
    fn set_gamma(&mut self, gamma: f64) {
        self.session.set_gamma(gamma);
    }
}

/// Restores the terminal when dropped — on return, on error and on unwinding panic.
struct TerminalGuard;

/// Whether the terminal is in the UI's modes, so it is put back exactly once (a panic's hook
/// and then the guard's drop both try; leaving the alternate screen twice would move the
/// cursor back over the panic's message).
static ENTERED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl TerminalGuard {
    fn enter() -> Result<Self> {
        crate::signals::restore_terminal_on_bus_error();
        terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
        ENTERED.store(true, std::sync::atomic::Ordering::SeqCst);
        let guard = TerminalGuard;
        crossterm::execute!(
            std::io::stdout(),
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste
        )?;
        Ok(guard)
    }
}

pub fn restore_terminal() {
    if !ENTERED.swap(false, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
    let _ = terminal::disable_raw_mode();
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// On the UI thread: put the terminal back before a panic message is printed, so it is
/// readable and the shell is usable. Elsewhere (the engine thread, the pool's workers) the
/// panic is recorded instead of printed over the screen: the session catches it, reports it
/// as the job's error and re-blends, or, if it cannot, the UI says so in one line and quits
/// ([`event_loop`]).
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    let ui = std::thread::current().id();
    std::panic::set_hook(Box::new(move |info| {
        // A bad file's parser panicking inside the engine is an error, not the end of the UI.
        if crate::engine::guard::in_guard() {
            return;
        }
        if std::thread::current().id() != ui {
            crate::session::note_panic(info);
            return;
        }
        restore_terminal();
        previous(info);
    }));
}

pub fn run(cfg: TuiConfig) -> Result<()> {
    use std::io::IsTerminal;
    if cfg.screenshot.is_some() {
        return screenshot(cfg);
    }
    let keymap = Keymap::load_user()?;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("the UI needs a terminal; use `lerpscope generate` for scripts");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        install_panic_hook();
        // Listening before the terminal changes, so no kill finds it changed and unheard.
        let quit = crate::signals::quit_signal();
        let _guard = TerminalGuard::enter()?;
        if std::env::var_os("LERPSCOPE_TEST_PANIC").is_some() {
            // Lets the end-to-end test check that a panic leaves a usable terminal.
            panic!("panic requested by LERPSCOPE_TEST_PANIC");
        }
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let session = spawn_session(&cfg, move |e| {
            let _ = tx.send(e);
        });
        if std::env::var_os("LERPSCOPE_TEST_JOB_PANIC").is_some() {
            // Lets the end-to-end test check that a job's panic is reported and survived.
            session.inject_panic();
        }
        let mut app = new_app(&cfg, keymap);
        app.monochrome = monochrome();
        let size = terminal.size()?;
        app.size = (size.width, size.height);
        let input = spawn_input_reader();
        let mut columns = SessionColumns::new(&session);
        // A kill (SIGTERM, SIGINT from outside: Ctrl-C is a key in raw mode, SIGHUP) ends the
        // loop like `q`, so the terminal is put back before the process exits.
        let ended = tokio::select! {
            r = event_loop(&mut terminal, &mut app, input, rx, &mut columns) => Ok(r),
            signal = quit => Err(signal),
        };
        drop(columns);
        drop(session);
        let latencies = match ended {
            Ok(r) => r?,
            Err(signal) => {
                restore_terminal();
                // A save or export the UI was writing.
                crate::engine::export::remove_partial();
                crate::signals::die_by(signal);
            }
        };
        // A bake still being written when the user quit ends with the process: its partial
        // copy (hidden, maybe gigabytes) goes with it, and the shell is told.
        if crate::engine::export::remove_partial() {
            restore_terminal();
            eprintln!("quit while baking: the bake was stopped and its partial copy removed");
        }
        // A pair that never loaded: its error stays on the shell, and the exit status says so.
        if let crate::app::PairState::Failed(e) = &app.pair {
            anyhow::bail!("{e}");
        }
        if let Some(path) = std::env::var_os("LERPSCOPE_LATENCY_LOG").map(PathBuf::from) {
            let text: String = latencies.iter().map(|l| format!("{l:.3}\n")).collect();
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    })
}

/// Terminal input read on its own thread into a channel (a blocking read is simpler and more
/// robust than polling from the async loop), each event stamped as it is read so latency counts
/// the time it waits behind a draw.
fn spawn_input_reader() -> UnboundedReceiver<Input> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    // The terminal crossterm reads (standard input where it is one, else the controlling
    // terminal), watched apart: crossterm spins on a hung-up terminal's end of file (a
    // terminal closed while SIGHUP is ignored), so it is asked only once the terminal has
    // input or was resized.
    let tty = Watched::open();
    let resized = resize_pipe();
    std::thread::Builder::new()
        .name("lerpscope-input".into())
        .spawn(move || {
            // Right after an event crossterm may hold more from the same read: it is asked
            // before the terminal is waited on. So it is on the first pass too, which makes its
            // event source (and the pipe it hears a resize through) before any resize comes.
            let mut more = true;
            loop {
                if let Some(tty) = &tty {
                    // Not hung up, and an event queued, input readable or a resize: read it.
                    // crossterm is given 10 ms: its poll(2) source looks at nothing when given
                    // no time at all, and returns at once when it has an event.
                    let asked = terminal_ready(tty.fd(), 0)
                        .and_then(|_| match more {
                            true => Ok(Wake::Input),
                            false => input_or_resize(tty.fd(), resized.as_ref(), 100),
                        })
                        .and_then(|woke| match woke {
                            Wake::Nothing => Ok((woke, false)),
                            _ => crossterm::event::poll(std::time::Duration::from_millis(10))
                                .map(|event| (woke, event)),
                        });
                    match asked {
                        Ok((_, true)) => {}
                        Ok((woke, false)) => {
                            more = false;
                            // A resize crossterm did not hear of (it read its pipe first, or had
                            // none yet): the new size, sent from here.
                            if woke == Wake::Resized {
                                if let Ok((w, h)) = crossterm::terminal::size() {
                                    let _ = tx.send((Instant::now(), Ok(Event::Resize(w, h))));
                                }
                            }
                            continue;
                        }
                        Err(e) => {
                            let _ = tx.send((Instant::now(), Err(e)));
                            break;
                        }
                    }
                }
                let e = crossterm::event::read();
                more = true;
                let failed = e.is_err();
                if tx.send((Instant::now(), e)).is_err() || failed {
                    break;
                }
            }
        })
        .expect("spawn input thread");
    rx
}

/// A pipe that SIGWINCH writes to (crossterm hears a resize through a pipe of its own, which it
/// reads only while polled): the input thread's wait wakes for a resize as for a key.
fn resize_pipe() -> Option<std::os::unix::net::UnixStream> {
    let (read, write) = std::os::unix::net::UnixStream::pair().ok()?;
    read.set_nonblocking(true).ok()?;
    write.set_nonblocking(true).ok()?;
    signal_hook::low_level::pipe::register(libc::SIGWINCH, write).ok()?;
    Some(read)
}

/// What ended the input thread's wait.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Wake {
    Nothing,
    Input,
    Resized,
}

/// Whether the terminal has input or was resized, waiting up to `timeout_ms`; an error once
/// the terminal has hung up. Without a resize pipe every wait ends as if resized, so that
/// crossterm is asked about one.
fn input_or_resize(
    tty: std::os::fd::RawFd,
    resized: Option<&std::os::unix::net::UnixStream>,
    timeout_ms: i32,
) -> std::io::Result<Wake> {
    use std::os::fd::AsRawFd;
    let Some(pipe) = resized else {
        return terminal_ready(tty, timeout_ms).map(|input| match input {
            true => Wake::Input,
            false => Wake::Resized,
        });
    };
    let mut fds = [tty, pipe.as_raw_fd()].map(|fd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    });
    poll_terminal(&mut fds, timeout_ms)?;
    if fds[0].revents & libc::POLLIN != 0 {
        return Ok(Wake::Input);
    }
    if fds[1].revents & libc::POLLIN != 0 {
        // Emptied: crossterm's own pipe holds the resize for it too.
        let mut buf = [0u8; 64];
        while std::io::Read::read(&mut &*pipe, &mut buf).is_ok_and(|n| n > 0) {}
        return Ok(Wake::Resized);
    }
    Ok(Wake::Nothing)
}

/// The terminal input comes from: standard input, or the controlling terminal opened.
enum Watched {
    Stdin,
    Tty(std::fs::File),
}

impl Watched {
    fn open() -> Option<Self> {
        use std::io::IsTerminal;
        match std::io::stdin().is_terminal() {
            true => Some(Self::Stdin),
            false => std::fs::File::open("/dev/tty").ok().map(Self::Tty),
        }
    }

    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Self::Stdin => std::io::stdin().as_raw_fd(),
            Self::Tty(f) => f.as_raw_fd(),
        }
    }
}

/// Whether the terminal has input, waiting up to `timeout_ms`; an error once it has hung up.
fn terminal_ready(fd: std::os::fd::RawFd, timeout_ms: i32) -> std::io::Result<bool> {
    let mut p = [libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }];
    poll_terminal(&mut p, timeout_ms)?;
    Ok(p[0].revents & libc::POLLIN != 0)
}

/// poll(2) on `fds`, the terminal first, for up to `timeout_ms`: an error once the terminal
/// has hung up; a signal's interruption reads as nothing ready.
fn poll_terminal(fds: &mut [libc::pollfd], timeout_ms: i32) -> std::io::Result<()> {
    // SAFETY: valid pollfds, for the length given.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return match e.kind() {
            std::io::ErrorKind::Interrupted => {
                fds.iter_mut().for_each(|p| p.revents = 0);
                Ok(())
            }
            _ => Err(e),
        };
    }
    if fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "the terminal hung up",
        ));
    }
    Ok(())
}

/// Input and engine events in, effects out, one frame per batch. Generic over the backend, and
/// input comes through a channel, so tests and `bench ui` can drive it with a `TestBackend`
/// and synthetic events. Returns each input event's latency in ms: from when it was read to
/// the end of the draw that shows its effect.
pub async fn event_loop<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: UnboundedReceiver<Input>,
    mut engine_rx: UnboundedReceiver<EngineEvent>,
    engine: &mut dyn JobSink,
) -> Result<Vec<f64>>
where
    B: Backend,
    B::Error: Send + Sync + 'static,
{
    let mut latencies: Vec<f64> = Vec::new();
    let mut quit = false;
    let mut input_open = true;
    let mut engine_open = true;
    let mut waiting: Vec<Instant> = Vec::new();
    let mut dragging = false;
    let mut wake_at: Option<tokio::time::Instant> = None;
    let mut resized = false;
    while !quit && (input_open || engine_open) {
        // Every resize redraws whole: resizes that end at the size last drawn leave ratatui
        // nothing to compare against, and the terminal may have reflowed the old frame.
        if std::mem::take(&mut resized) {
            terminal.clear()?;
        }
        terminal.draw(|f| crate::ui::view(app, f))?;
        let drawn = Instant::now();
        latencies.extend(waiting.drain(..).map(|t| (drawn - t).as_secs_f64() * 1e3));
        // Wait for something to happen.
        let mut batch: Vec<Msg> = Vec::new();
        let mut inputs: Vec<Input> = Vec::new();
        tokio::select! {
            ev = input.recv(), if input_open => match ev {
                Some(e) => inputs.push(e),
                None => input_open = false,
            },
            ev = engine_rx.recv(), if engine_open => match ev {
                Some(e) => batch.push(Msg::Engine(e)),
                // The engine thread is gone. After a failed load the UI keeps serving keys
                // (the error is on screen); after a load it cannot go on.
                None if app.ready() => {
                    anyhow::bail!(
                        "the engine stopped unexpectedly{}",
                        crate::session::last_panic()
                            .map(|p| format!(": {p}"))
                            .unwrap_or_default()
                    )
                }
                None => engine_open = false,
            },
            _ = sleep_until(wake_at), if wake_at.is_some() => {
                wake_at = None;
                batch.push(Msg::Wake);
            }
        }
        // Take everything else that is already waiting, so a burst of tokens or keys costs
        // one frame, not one frame each.
        loop {
            let mut got = false;
            while let Ok(e) = input.try_recv() {
                inputs.push(e);
                got = true;
            }
            while let Ok(e) = engine_rx.try_recv() {
                batch.push(Msg::Engine(e));
                got = true;
                if batch.len() > 4096 {
                    break;
                }
            }
            if !got {
                break;
            }
        }
        // Input first (in the order read), so a key is never answered after a burst of tokens
        // that arrived later.
        let mut ordered = Vec::with_capacity(inputs.len() + batch.len());
        for (read, e) in inputs {
            let e = e.context("reading terminal input")?;
            resized |= matches!(e, Event::Resize(..));
            let msg = match e {
                Event::Mouse(m) => {
                    let area = ratatui::layout::Rect::new(0, 0, app.size.0, app.size.1);
                    let areas = crate::ui::layout(area, app);
                    crate::ui::pointer(app, &areas, &mut dragging, m).map(Msg::Pointer)
                }
                e => to_msg(e),
            };
            // Every input is answered by the next frame, mapped or not.
            waiting.push(read);
            ordered.extend(msg);
        }
        ordered.append(&mut batch);
        for msg in ordered {
            let applied = apply(app, msg, engine);
            quit |= applied.quit;
            if let Some(d) = applied.wake {
                wake_at = Some(tokio::time::Instant::now() + d);
            }
        }
        // A cursor whose panel has no room would take keys out of sight: closed, saying why.
        if app.cursor.is_some() {
            let area = ratatui::layout::Rect::new(0, 0, app.size.0, app.size.1);
            if crate::ui::layout(area, app).panel.is_none() {
                app.cursor = None;
                app.last_error =
                    Some("the token cursor needs a taller terminal: its panel has no room".into());
            }
        }
        if let Some(why) = &app.broken {
            anyhow::bail!("the engine stopped: {why}");
        }
    }
    Ok(latencies)
}

/// Sleep until `at` (forever where there is none; the branch is off then anyway).
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// What carrying out a message's effects asks of the loop.
#[derive(Default)]
struct Applied {
    quit: bool,
    /// Send `Msg::Wake` after this long.
    wake: Option<std::time::Duration>,
}

/// Update the app with one message and carry out its effects.
fn apply(app: &mut App, msg: Msg, engine: &mut dyn JobSink) -> Applied {
    let mut out = Applied::default();
    for effect in app.update(msg) {
        match effect {
            Effect::Submit { column, job } => engine.submit(column, job),
            Effect::Curve(job) => engine.curve(job),
            Effect::CancelCurve(id) => engine.cancel_curve(id),
            Effect::Find(job) => engine.find(job),
            Effect::CancelFind(id) => engine.cancel_find(id),
            Effect::Scrub(job) => engine.scrub(job),
            Effect::Remove { column } => engine.remove(column),
            Effect::Export { alpha, beta, out } => engine.export(crate::session::ExportJob {
                alpha,
                beta,
                // The UI has no --force: a bake never replaces an earlier one.
                out: free_path(out),
                format: crate::engine::export::Format::Hf,
            }),
            Effect::Save(session) => {
                let r =
                    save_session(&session).map_err(|e| crate::session::Failure::from_anyhow(&e));
                app.update(Msg::Saved(r));
            }
            Effect::SetLayers(spec) => engine.set_layer_alphas(spec),
            Effect::SetGamma(gamma) => engine.set_gamma(gamma.value()),
            Effect::WakeAfter(d) => out.wake = Some(d),
            Effect::Quit => out.quit = true,
        }
    }
    out
}

fn to_msg(e: Event) -> Option<Msg> {
    match e {
        Event::Key(k) => Some(Msg::Key(k)),
        Event::Paste(s) => Some(Msg::Paste(s)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// Write the session as Markdown and JSON in the current directory; returns the Markdown path
/// (the JSON sits beside it).
pub fn save_session(s: &crate::app::Session) -> Result<String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let dir = std::env::current_dir()
        .context("cannot save the session: the working directory cannot be read")?;
    let [md, json, html] = session_files(&dir, stamp);
    // The first file is created new, so a save can never replace another's.
    let mut first = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&md)
        .with_context(|| format!("{}: cannot write", md.display()))?;
    let written = std::io::Write::write_all(&mut first, s.to_markdown().as_bytes())
        .with_context(|| format!("{}: cannot write", md.display()))
        .and_then(|()| Ok(serde_json::to_string_pretty(s)?))
        .and_then(|text| crate::files::write_whole(&json, text))
        .and_then(|()| crate::files::write_whole(&html, crate::app::html::render(s)));
    // A save that fails (a full disk) takes back what it wrote: no empty or torn file stays.
    if let Err(e) = written {
        for f in [&md, &json, &html] {
            let _ = std::fs::remove_file(f);
        }
        return Err(e);
    }
    Ok(format!("{} (.json, .html)", md.display()))
}

/// The session's three files in `dir`, named by the second it is saved in: the first names
/// none of whose files exist (two saves within a second get `-2`, `-3`, …).
fn session_files(dir: &std::path::Path, stamp: u64) -> [PathBuf; 3] {
    (1u32..)
        .map(|n| {
            let name = match n {
                1 => format!("lerpscope-session-{stamp}"),
                n => format!("lerpscope-session-{stamp}-{n}"),
            };
            ["md", "json", "html"].map(|ext| dir.join(format!("{name}.{ext}")))
        })
        .find(|files| files.iter().all(|f| !f.exists()))
        .expect("some name is free")
}

/// `path`, or the first of `path-2`, `path-3`, … that does not exist.
fn free_path(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    (2u32..)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            name.push(format!("-{n}"));
            PathBuf::from(name)
        })
        .find(|p| !p.exists())
        .expect("some name is free")
}

/// Whether to shade without colours: NO_COLOR (no-color.org) is set, or the terminal reports
/// fewer than eight colours.
fn monochrome() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || crossterm::style::available_color_count() < 8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two saves within a second keep both: the second takes the next free name.
    #[test]
    fn a_session_never_takes_the_name_of_one_saved_before() {
        let dir = tempfile::tempdir().unwrap();
        let names = || session_files(dir.path(), 7).map(|f| f.display().to_string());
        let first = names();
        assert!(first[0].ends_with("lerpscope-session-7.md"), "{first:?}");
        std::fs::write(&first[0], "").unwrap();
        let second = names();
        assert!(
            second[1].ends_with("lerpscope-session-7-2.json"),
            "{second:?}"
        );
        // Any one of a name's files takes the name.
        std::fs::write(&second[2], "").unwrap();
        assert!(names()[0].ends_with("lerpscope-session-7-3.md"));
    }

    /// A bake from the UI goes beside an earlier one of the same α rather than failing.
    #[test]
    fn a_bake_takes_a_free_folder_name() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("b-alpha0.5");
        assert_eq!(free_path(out.clone()), out);
        std::fs::create_dir(&out).unwrap();
        assert_eq!(free_path(out.clone()), dir.path().join("b-alpha0.5-2"));
    }
}
