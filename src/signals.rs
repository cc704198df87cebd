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

/// The terminal's settings before the UI changed them (its fd and termios), for
/// [`restore_terminal_on_bus_error`]'s handler.
static COOKED: std::sync::OnceLock<(i32, libc::termios)> = std::sync::OnceLock::new();

/// Put the terminal back if the process dies of SIGBUS: a GGUF read in place that is truncated
/// or rewritten while the UI runs faults on its next page, and that kill runs no destructor.
/// Call before raw mode, from the thread that enters it. (SIGSEGV is left to Rust's handler,
/// which reports a stack overflow.)
pub fn restore_terminal_on_bus_error() {
    // SAFETY: isatty, open, tcgetattr and sigaction with valid arguments; the termios is a
    // plain struct the call fills.
    unsafe {
        let fd = match libc::isatty(libc::STDIN_FILENO) {
            1 => libc::STDIN_FILENO,
            _ => libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC),
        };
        let mut cooked: libc::termios = std::mem::zeroed();
        if fd < 0 || libc::tcgetattr(fd, &mut cooked) != 0 || COOKED.set((fd, cooked)).is_err() {
            return;
        }
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_bus_error as *const () as usize;
        action.sa_flags = libc::SA_ONSTACK;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
    }
}

/// Only async-signal-safe calls: write(2), tcsetattr(3), signal(2), raise(3).
extern "C" fn on_bus_error(signal: libc::c_int) {
    // What the UI turned on, off: bracketed paste, mouse capture (every mode crossterm sets),
    // the alternate screen; the cursor shown.
    const RESET: &[u8] =
        b"\x1b[?2004l\x1b[?1006l\x1b[?1015l\x1b[?1003l\x1b[?1002l\x1b[?1000l\x1b[?1049l\x1b[?25h";
    // SAFETY: see above; COOKED is set before this handler is installed.
    unsafe {
        libc::write(libc::STDOUT_FILENO, RESET.as_ptr().cast(), RESET.len());
        if let Some((fd, cooked)) = COOKED.get() {
            libc::tcsetattr(*fd, libc::TCSANOW, cooked);
        }
        // Dies by it once this returns: a fault runs its instruction again, a kill is pending.
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
}
