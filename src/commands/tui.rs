//! `lerpscope` / `lerpscope tui`: the terminal UI.

use crate::cli::{parse_alphas, parse_range, TuiArgs, INTERACTIVE};
use crate::tui::TuiConfig;
use anyhow::Result;

pub fn run(args: TuiArgs) -> Result<()> {
    let (a, b) = args.pair.endpoints();
    crate::tui::run(TuiConfig {
        a,
        b,
        alphas: parse_alphas(&args.alphas, "--alphas")?,
        prompt: args.prompt,
        params: args.sampling.params(INTERACTIVE)?,
        load: args.pair.load.options()?,
        range: parse_range(&args.range)?,
        columns: args.columns,
        stop: args.sampling.stop.clone(),
    })
}
