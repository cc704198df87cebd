//! Threads: candle's CPU kernels and the blend share rayon's pool.

/// Fix the thread count candle's CPU kernels use. Unset, candle works it out again on every
/// matrix product (reading CPU masks, and /proc/cpuinfo where those are absent): measurable
/// per-token overhead. Call first thing in `main`, before any thread starts.
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
