//! The terminal runtime: set the terminal up (and always put it back), start the engine
//! thread, and run the event loop — input and engine events in, effects out, one frame per
//! batch of messages.

use crate::app::{keymap::Keymap, App, Effect, Msg, Session};
use crate::engine::worker::{CurveJob, EngineEvent, EngineHandle, Job};
use crate::engine::{GenerationParams, LoadOptions};
use anyhow::{Context, Result};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture, Event,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use ratatui::backend::Backend;
use ratatui::Terminal;
use std::path::PathBuf;
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

/// What the UI is opened on.
pub struct TuiConfig {
    pub a: String,
    pub b: String,
    pub alphas: Vec<f64>,
    pub prompt: String,
    pub params: GenerationParams,
    pub load: LoadOptions,
    pub range: (f64, f64),
    pub columns: crate::engine::ColumnsMode,
}

/// Where engine jobs go: the engine thread, or a recorder in tests.
pub trait JobSink {
    fn submit(&self, job: Job);
    fn forget(&self, column: usize, id: u64);
    fn curve(&self, job: CurveJob);
}

impl JobSink for EngineHandle {
    fn submit(&self, job: Job) {
        EngineHandle::submit(self, job)
    }
    fn curve(&self, job: CurveJob) {
        EngineHandle::curve(self, job)
    }
    fn forget(&self, column: usize, id: u64) {
        EngineHandle::forget(self, column, id)
    }
}

/// Restores the terminal when dropped — on return, on error and on unwinding panic.
struct TerminalGuard;

impl TerminalGuard {
    fn enter() -> Result<Self> {
        terminal::enable_raw_mode().context("cannot switch the terminal to raw mode")?;
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

/// Put the terminal back before a panic message is printed, so it is readable and the shell
/// is usable.
fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore_terminal();
        previous(info);
    }));
}

pub fn run(cfg: TuiConfig) -> Result<()> {
    use std::io::IsTerminal;
    let keymap = Keymap::load_user()?;
    if !std::io::stdout().is_terminal() {
        anyhow::bail!("the UI needs a terminal; use `lerpscope generate` for scripts");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        install_panic_hook();
        let _guard = TerminalGuard::enter()?;
        if std::env::var_os("LERPSCOPE_TEST_PANIC").is_some() {
            // Lets the end-to-end test check that a panic leaves a usable terminal.
            panic!("panic requested by LERPSCOPE_TEST_PANIC");
        }
        let mut terminal =
            ratatui::Terminal::new(ratatui::backend::CrosstermBackend::new(std::io::stdout()))?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let (a, b, load, columns) = (cfg.a.clone(), cfg.b.clone(), cfg.load.clone(), cfg.columns);
        let engine = EngineHandle::spawn_with(
            move || {
                let mut engine = crate::engine::Engine::load(&a, &b, &load)?;
                engine.set_columns_mode(columns);
                Ok(engine)
            },
            move |e| {
                let _ = tx.send(e);
            },
        );
        let mut app = App::new(cfg.a, cfg.b, &cfg.prompt, &cfg.alphas, cfg.params, keymap);
        app.range = cfg.range;
        let size = terminal.size()?;
        app.size = (size.width, size.height);
        let input = spawn_input_reader();
        let latencies = event_loop(&mut terminal, &mut app, input, rx, &engine).await?;
        drop(engine);
        if let Some(path) = std::env::var_os("LERPSCOPE_LATENCY_LOG").map(PathBuf::from) {
            let text: String = latencies.iter().map(|l| format!("{l:.3}\n")).collect();
            std::fs::write(&path, text)
                .with_context(|| format!("{}: cannot write", path.display()))?;
        }
        Ok(())
    })
}

/// Terminal input read on its own thread into a channel (a blocking read is simpler and more
/// robust than polling from the async loop).
fn spawn_input_reader() -> UnboundedReceiver<std::io::Result<Event>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("lerpscope-input".into())
        .spawn(move || loop {
            let e = crossterm::event::read();
            let failed = e.is_err();
            if tx.send(e).is_err() || failed {
                break;
            }
        })
        .expect("spawn input thread");
    rx
}

/// Input and engine events in, effects out, one frame per batch. Generic over the backend, and
/// input comes through a channel, so tests and `bench ui` can drive it with a `TestBackend`
/// and synthetic events. Returns each input event's latency in ms: from its arrival to the end
/// of the draw that shows its effect.
pub async fn event_loop<B>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    mut input: UnboundedReceiver<std::io::Result<Event>>,
    mut engine_rx: UnboundedReceiver<EngineEvent>,
    engine: &dyn JobSink,
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
    while !quit && (input_open || engine_open) {
        terminal.draw(|f| crate::ui::view(app, f))?;
        let drawn = Instant::now();
        latencies.extend(waiting.drain(..).map(|t| (drawn - t).as_secs_f64() * 1e3));
        // Wait for something to happen.
        let mut batch: Vec<(Msg, Option<Instant>)> = Vec::new();
        tokio::select! {
            ev = input.recv(), if input_open => match ev {
                Some(Ok(e)) => batch.extend(to_msg(e).map(|m| (m, Some(Instant::now())))),
                Some(Err(e)) => return Err(e).context("reading terminal input"),
                None => input_open = false,
            },
            ev = engine_rx.recv(), if engine_open => match ev {
                Some(e) => batch.push((Msg::Engine(e), None)),
                // The engine thread is gone (a failed load): keep serving keys.
                None => engine_open = false,
            },
        }
        // Take everything else that is already waiting, so a burst of tokens or keys costs
        // one frame, not one frame each.
        loop {
            let mut got = false;
            while let Ok(e) = input.try_recv() {
                let e = e.context("reading terminal input")?;
                batch.extend(to_msg(e).map(|m| (m, Some(Instant::now()))));
                got = true;
            }
            while let Ok(e) = engine_rx.try_recv() {
                batch.push((Msg::Engine(e), None));
                got = true;
                if batch.len() > 4096 {
                    break;
                }
            }
            if !got {
                break;
            }
        }
        for (msg, t) in batch {
            waiting.extend(t);
            for effect in app.update(msg) {
                match effect {
                    Effect::Submit(job) => engine.submit(job),
                    Effect::Curve(job) => engine.curve(job),
                    Effect::Forget { column, id } => engine.forget(column, id),
                    Effect::Save(session) => {
                        let r = save_session(&session).map_err(|e| crate::one_line(&e));
                        app.update(Msg::Saved(r));
                    }
                    Effect::Quit => quit = true,
                }
            }
        }
    }
    Ok(latencies)
}

fn to_msg(e: Event) -> Option<Msg> {
    match e {
        Event::Key(k) => Some(Msg::Key(k)),
        Event::Mouse(m) => Some(Msg::Mouse(m)),
        Event::Paste(s) => Some(Msg::Paste(s)),
        Event::Resize(w, h) => Some(Msg::Resize(w, h)),
        _ => None,
    }
}

/// Write the session as Markdown and JSON in the current directory; returns the Markdown path
/// (the JSON sits beside it).
pub fn save_session(s: &Session) -> Result<String> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = std::env::current_dir()?.join(format!("lerpscope-session-{stamp}"));
    let md = base.with_extension("md");
    let json = base.with_extension("json");
    std::fs::write(&md, s.to_markdown())
        .with_context(|| format!("{}: cannot write", md.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(s)?)
        .with_context(|| format!("{}: cannot write", json.display()))?;
    Ok(format!("{} and .json", md.display()))
}
