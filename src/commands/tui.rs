//! `lerpscope` / `lerpscope tui`: the terminal UI.

use crate::cli::{parse_alphas, parse_range, TuiArgs};
use crate::tui::TuiConfig;
use anyhow::Result;
use std::path::PathBuf;

pub fn run(args: TuiArgs) -> Result<()> {
    let (a, b) = match (args.a, args.b) {
        (Some(a), Some(b)) => (a, b),
        _ => demo_pair(),
    };
    crate::tui::run(TuiConfig {
        a,
        b,
        alphas: parse_alphas(&args.alphas, "--alphas")?,
        prompt: args.prompt,
        params: args.sampling.params()?,
        load: args.load.options()?,
        range: parse_range(&args.range)?,
    })
}

/// The demo pair in assets/, found from the working directory or the source tree.
pub fn demo_pair() -> (String, String) {
    let local = PathBuf::from("assets/demo");
    let root = if local.join("negative").is_dir() {
        local
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/demo")
    };
    (
        root.join("negative").display().to_string(),
        root.join("positive").display().to_string(),
    )
}
