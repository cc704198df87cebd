//! The subcommands, each a thin driver of the engine.

/// `println!` that returns a closed pipe (`lerpscope bench … | head`) as an error, which `main`
/// ends on quietly, where `println!` would panic. For functions that return a `Result`.
macro_rules! say {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        )?
    };
}

mod bench;
mod export;
mod find;
mod generate;
mod perplexity;
mod score;
mod sweep;
mod tui;

use crate::cli::{BenchCommand, Cli, Command};
use anyhow::Result;

/// Headless commands run on a thread of rayon's pool (see [`crate::engine::on_pool`]); the UI keeps
/// the main thread and runs its engine on the pool from the engine thread.
pub fn run(cli: Cli) -> Result<()> {
    use crate::engine::on_pool;
    match cli.command {
        Some(Command::Generate(args)) => on_pool(|| generate::run(args)),
        Some(Command::Bench(BenchCommand::Blend(args))) => on_pool(|| bench::blend(args)),
        Some(Command::Bench(BenchCommand::Ui(args))) => bench::ui(args),
        Some(Command::Bench(BenchCommand::Generate(args))) => on_pool(|| bench::generate(args)),
        Some(Command::Bench(BenchCommand::Columns(args))) => on_pool(|| bench::columns(args)),
        Some(Command::Bench(BenchCommand::Inspect(args))) => on_pool(|| bench::inspect(args)),
        Some(Command::Bench(BenchCommand::Step(args))) => on_pool(|| bench::step(args)),
        Some(Command::Bench(BenchCommand::Kernels(args))) => bench::kernels(args),
        Some(Command::Perplexity(args)) => on_pool(|| perplexity::run(args)),
        Some(Command::Score(args)) => on_pool(|| score::run(args)),
        Some(Command::Sweep(args)) => on_pool(|| sweep::run(args)),
        Some(Command::Find(args)) => on_pool(|| find::run(args)),
        Some(Command::Export(args)) => on_pool(|| export::run(args)),
        Some(Command::Train(args)) => {
            on_pool(|| crate::train::run(&args.corpus, &args.out, &args.recipe()))
        }
        Some(Command::Tui(args)) => tui::run(args),
        None => tui::run(cli.tui),
    }
}

/// `--betas` paired with `--alphas`: the load options (at the first β) and each α's β (None
/// without `--betas`: β stays where --beta set it).
fn paired_betas(
    pair: &crate::cli::DemoOrPair,
    alphas: &[crate::engine::Alpha],
    betas: Option<&crate::cli::Alphas>,
) -> Result<(crate::engine::LoadOptions, Vec<Option<f64>>)> {
    let Some(betas) = betas else {
        return Ok((pair.options()?, vec![None; alphas.len()]));
    };
    // No plane first: without one, no count of β is right.
    if !pair.has_plane() {
        anyhow::bail!(
            "{}",
            pair.no_plane("--betas", crate::cli::BETAS_NEED_A_PLANE)
        );
    }
    if betas.0.len() != alphas.len() {
        anyhow::bail!(
            "--betas: {} values for {} alphas; give one β per α, paired in order",
            betas.0.len(),
            alphas.len()
        );
    }
    let each = betas.0.iter().map(|b| Some(b.value())).collect();
    Ok((pair.options_at_beta(betas.0[0])?, each))
}

/// A plane's β and a fourth endpoint's γ, where the pair has them, as JSON fields of a result
/// line: with α, every coordinate needed to reach the same point again.
fn add_point(engine: &crate::engine::Engine, line: &mut serde_json::Value) {
    if let Some(beta) = engine.beta() {
        line["beta"] = serde_json::json!(beta);
    }
    if let Some(gamma) = engine.gamma() {
        line["gamma"] = serde_json::json!(gamma);
    }
}
