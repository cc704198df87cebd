//! The signals that end a run from outside (SIGTERM, SIGINT, SIGHUP): heard, so that what the
//! run holds is put right first (the terminal, a partial export), then obeyed as the signal
//! itself would have been.

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The number of the first of SIGTERM, SIGINT and SIGHUP to arrive. A signal the process was
/// started ignoring stays ignored: that is how `nohup` and a script's background jobs ask to
/// outlive a hangup or Ctrl-C. The handlers are installed on the call, not on the first poll.
pub fn quit_signal() -> impl std::future::Future<Output = i32> {
    let listen = |kind: SignalKind| {
        let ignored = disposition_is_ignore(kind.as_raw_value());
        (!ignored).then(|| signal(kind).ok()).flatten()
    };
    let kinds = [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ];
    let [mut t, mut i, mut h] = kinds.map(listen);
    async move {
        tokio::select! {
            _ = next(&mut t) => kinds[0].as_raw_value(),
            _ = next(&mut i) => kinds[1].as_raw_value(),
            _ = next(&mut h) => kinds[2].as_raw_value(),
        }
    }
}

/// The stream's next signal; never, where nothing listens.
async fn next(s: &mut Option<Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// End the process as `signal` would have: by the signal itself, its default action put
/// back, so that a shell sees a child killed by it (a script stops at Ctrl-C rather than going
/// on to its next command); with status 128 + its number where that fails.
pub fn die_by(signal: i32) -> ! {
    // SAFETY: signal(2) and raise(3) with a valid signal number; no memory is involved.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

fn disposition_is_ignore(signal: i32) -> bool {
    // SAFETY: sigaction(2) only reads the current action into `old`, a zeroed plain struct.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(signal, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}
