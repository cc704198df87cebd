//! lerpscope: interpolate the weights of two fine-tunes of one model and watch the text change.

pub mod app;
pub mod cli;
pub mod commands;
pub mod engine;
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
