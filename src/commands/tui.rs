//! `lerpscope` / `lerpscope tui`: the terminal UI.

use crate::cli::{default_alphas, Demo, TuiArgs};
use crate::tui::TuiConfig;
use anyhow::{Context, Result};

/// Terminal width from which a demo shows its five columns.
const WIDE: u16 = 100;

pub fn run(args: TuiArgs) -> Result<()> {
    let (a, b) = args.pair.endpoints();
    let defaults = args.pair.demo().unwrap_or(Demo::Tiny).defaults();
    let width = match &args.screenshot {
        Some(_) => Some(args.size.0),
        None => crossterm::terminal::size().ok().map(|(w, _)| w),
    };
    let wide = width.is_some_and(|w| w >= WIDE);
    let alphas = match &args.alphas {
        Some(a) => a.0.clone(),
        None if wide => default_alphas(defaults.alphas_wide),
        None => default_alphas(defaults.alphas),
    };
    crate::tui::run(TuiConfig {
        a,
        b,
        alphas,
        prompt: args.prompt.clone().unwrap_or(defaults.prompt.to_string()),
        params: args.sampling.params(defaults.params)?,
        load: args.pair.options()?,
        range: args.range,
        columns: args.columns,
        stop: args.sampling.stop.clone(),
        score_text: match &args.text {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("--text {}: cannot read", path.display()))?,
            ),
            None => None,
        },
        screenshot: args.screenshot.clone().map(|path| crate::tui::Screenshot {
            path,
            size: args.size,
            press: args.press.clone(),
        }),
    })
}
