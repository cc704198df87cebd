//! lerpscope: interpolate the weights of two fine-tunes of one model and watch the text change.

pub mod app;
pub mod cli;
pub mod commands;
pub mod engine;
pub mod eval;
pub mod fixtures;
pub mod train;
pub mod tui;
pub mod ui;

/// An error and its causes as one line: "outer: inner: root".
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string().replace('\n', " ");
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
/// Fix the thread count candle's CPU kernels use. Unset, candle works it out again on every
/// matrix product (reading CPU masks, and /proc/cpuinfo where those are absent): measurable
/// per-token overhead. Called first thing in `main`, before any thread starts.
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let n = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", n.to_string());
    }
}

/// Run `f` on a thread of rayon's pool, so the parallel kernels it calls split their work
/// there instead of handing it over and sleeping until it is done (two context switches per
/// op, which small models pay on every op of every token).
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    let mut out = None;
    rayon::scope(|s| s.spawn(|_| out = Some(f())));
    out.expect("the scope ran the job")
}

pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator thresholds; called before other threads start.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 256 << 20);
    }
}
