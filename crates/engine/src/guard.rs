//! Third-party parsers that panic on malformed input (the tokenizers library does, on some
//! tokenizer.json files) are run under [`catch`], which turns the panic into an error naming
//! the file. Panic hooks can ask [`in_guard`] to stay quiet about such panics, so that a bad
//! file never prints a backtrace or tears down a terminal UI.

use crate::error::{Error, Result};
use std::cell::Cell;
use std::fmt::Display;
use std::panic::AssertUnwindSafe;

thread_local! {
    static GUARDED: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside [`catch`] (for panic hooks).
pub fn in_guard() -> bool {
    GUARDED.with(Cell::get)
}

/// Run `f`; a panic inside it becomes `Error::Format("{what}: …")`.
pub fn catch<T>(what: impl Display, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let before = GUARDED.with(|g| g.replace(true));
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(f));
    GUARDED.with(|g| g.set(before));
    outcome.unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "malformed input".to_string());
        Err(Error::Format(format!("{what}: {why}")))
    })
}

/// Install a panic hook that is silent for panics [`catch`] turns into errors and defers to
/// the previous hook otherwise. Call once, early in `main`.
pub fn quiet_caught_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !in_guard() {
            previous(info);
        }
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_an_error_and_the_guard_is_left() {
        let e = catch("x.json", || -> Result<()> { panic!("Helper") }).unwrap_err();
        assert_eq!(e.to_string(), "x.json: Helper");
        assert!(!in_guard());
        assert_eq!(catch("y", || Ok(3)).unwrap(), 3);
    }
}
