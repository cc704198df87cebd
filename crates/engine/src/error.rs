//! The engine's error type. Every message is one line that names what it is about (a file, a
//! tensor, a flag's value); the kind lets a caller react without parsing the text.

use std::fmt::Display;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An α that is not a finite number within the allowed range.
    #[error(transparent)]
    Alpha(#[from] crate::alpha::AlphaError),
    /// A file that cannot be read or written (the context names it).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A file or value whose contents are malformed, truncated or inconsistent.
    #[error("{0}")]
    Format(String),
    /// Something that is well-formed but not supported (an architecture, a dtype, a method).
    #[error("{0}")]
    Unsupported(String),
    /// Two endpoints (or an endpoint and its base) that cannot be blended together.
    #[error("{0}")]
    Mismatch(String),
    /// A model, file or tensor that cannot be found where it was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The working set does not fit in the memory of the device.
    #[error("{0}")]
    Memory(String),
    /// A request the engine cannot carry out as asked (sampling settings, an empty prompt…).
    #[error("{0}")]
    Invalid(String),
    /// A tensor operation failed.
    #[error("{}", candle_text(.0))]
    Candle(#[from] candle_core::Error),
    /// An error with what was being done when it happened.
    #[error("{context}: {source}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
}

/// A candle error's message without the backtrace candle attaches when RUST_BACKTRACE is set
/// (dozens of lines that would swamp a one-line error), through its own wrappers.
pub fn candle_text(e: &candle_core::Error) -> String {
    use candle_core::Error as C;
    match e {
        C::WithBacktrace { inner, .. } => candle_text(inner),
        C::Context { inner, context } => format!("{context}: {}", candle_text(inner)),
        C::WithPath { inner, path } => format!("{}: {}", path.display(), candle_text(inner)),
        other => other.to_string(),
    }
}

impl Error {
    /// The same error, its messages and contexts rewritten by `f` (an I/O, α or candle error's
    /// own text is kept).
    pub fn map_messages(self, f: &dyn Fn(&str) -> String) -> Error {
        match self {
            Error::Format(m) => Error::Format(f(&m)),
            Error::Unsupported(m) => Error::Unsupported(f(&m)),
            Error::Mismatch(m) => Error::Mismatch(f(&m)),
            Error::NotFound(m) => Error::NotFound(f(&m)),
            Error::Memory(m) => Error::Memory(f(&m)),
            Error::Invalid(m) => Error::Invalid(f(&m)),
            Error::Context { context, source } => Error::Context {
                context: f(&context),
                source: Box::new(source.map_messages(f)),
            },
            e => e,
        }
    }

    /// The innermost error, past every added context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Context { source, .. } => source.root(),
            e => e,
        }
    }

    /// What kind of error this is (its root's), for a caller that reacts to it.
    pub fn kind(&self) -> ErrorKind {
        match self.root() {
            Error::Alpha(_) => ErrorKind::Alpha,
            Error::Io(_) => ErrorKind::Io,
            Error::Format(_) => ErrorKind::Format,
            Error::Unsupported(_) => ErrorKind::Unsupported,
            Error::Mismatch(_) => ErrorKind::Mismatch,
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::Memory(_) => ErrorKind::Memory,
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::Candle(_) => ErrorKind::Tensor,
            Error::Context { .. } => unreachable!("root() passes every context"),
        }
    }
}

/// The kinds of [`Error`], without their payloads: a value that can be copied across threads
/// and compared (the UI suggests a smaller dtype for `Memory`, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    Alpha,
    Io,
    Format,
    Unsupported,
    Mismatch,
    NotFound,
    Memory,
    Invalid,
    Tensor,
}

impl From<safetensors::SafeTensorError> for Error {
    fn from(e: safetensors::SafeTensorError) -> Self {
        Error::Format(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Error::Format(e.to_string())
    }
}

/// Adds what was being done to an error, like anyhow's `Context`.
pub trait Context<T> {
    fn context(self, context: impl Display) -> Result<T>;
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, context: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: context.to_string(),
            source: Box::new(e.into()),
        })
    }
    fn with_context<C: Display>(self, f: impl FnOnce() -> C) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: f().to_string(),
            source: Box::new(e.into()),
        })
    }
}

/// `bail!(Kind, "format", args…)`: return `Err(Error::Kind(format!(…)))`.
macro_rules! bail {
    ($kind:ident, $($arg:tt)+) => {
        return Err($crate::error::Error::$kind(format!($($arg)+)))
    };
}
pub(crate) use bail;

/// `err!(Kind, "format", args…)`: `Error::Kind(format!(…))`.
macro_rules! err {
    ($kind:ident, $($arg:tt)+) => {
        $crate::error::Error::$kind(format!($($arg)+))
    };
}
pub(crate) use err;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_keeps_the_kind_and_reads_as_one_line() {
        let r: Result<()> = Err(err!(Mismatch, "tensor x differs"));
        let e = r.context("loading a.safetensors").unwrap_err();
        assert_eq!(e.to_string(), "loading a.safetensors: tensor x differs");
        assert!(matches!(e.root(), Error::Mismatch(_)));
    }
}

#[cfg(test)]
mod candle_tests {
    use super::*;

    /// A backtrace stays out of the engine's own errors too, however candle wrapped it.
    #[test]
    fn a_candle_backtrace_stays_out_of_the_message() {
        let traced = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("no tensor q_proj".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        let e = Error::Context {
            context: "model.safetensors".into(),
            source: Box::new(Error::Candle(traced.with_path("/m"))),
        };
        assert_eq!(e.to_string(), "model.safetensors: /m: no tensor q_proj");
    }
}
