//! lerpscope: interpolate the weights of two fine-tunes of one model and watch the text change.
//!
//! The engine (tensors, models, generation) is its own crate, `lerpscope-engine`, re-exported
//! here as [`engine`]; this crate holds everything around it: the command line, the session
//! layer that runs the engine on its own thread, evaluation, and the terminal UI.

pub use lerpscope_engine as engine;
pub use lerpscope_engine::shapes;

pub mod app;
pub mod cli;
pub mod commands;
pub mod cpu;
pub mod eval;
pub mod files;
pub mod session;
pub mod signals;
pub mod train;
pub mod tui;
pub mod ui;

/// An error and its causes as one line: "outer: inner: root". Takes the engine's errors as
/// they are and anyhow's as `&*e`.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let chain = std::iter::successors(Some(e), |e| e.source());
    for cause in chain {
        let s = match cause.downcast_ref::<candle_core::Error>() {
            Some(c) => engine::candle_text(c),
            None => cause.to_string(),
        }
        .replace('\n', " ");
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// Keep freed large buffers in the process instead of returning them to the kernel on every
/// free. candle allocates and frees activation-sized buffers at every op; with glibc's
/// defaults each one is a fresh mmap, page-faulted in and zeroed again (in training this was
/// half the time, as system time).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}

#[cfg(test)]
mod tests {
    /// A candle error carrying a backtrace (RUST_BACKTRACE set) still reads as one short
    /// line: its message and context, no frames.
    #[test]
    fn a_backtrace_stays_out_of_the_one_line() {
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("shape mismatch in q_proj".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        }
        .context("layer 3");
        let e = anyhow::Error::from(e).context("model.safetensors");
        let line = super::one_line(&*e);
        assert_eq!(line, "model.safetensors: layer 3: shape mismatch in q_proj");
    }
}
