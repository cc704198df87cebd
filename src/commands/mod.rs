//! The subcommands, each a thin driver of the engine.

mod bench;
mod generate;
mod perplexity;
mod sweep;
mod tui;

use crate::cli::{BenchCommand, Cli, Command};
use anyhow::Result;

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Bench(BenchCommand::Blend(args))) => bench::blend(args),
        Some(Command::Bench(BenchCommand::Ui(args))) => bench::ui(args),
        Some(Command::Bench(BenchCommand::Generate(args))) => bench::generate(args),
        Some(Command::Bench(BenchCommand::Columns(args))) => bench::columns(args),
        Some(Command::Perplexity(args)) => perplexity::run(args),
        Some(Command::Sweep(args)) => sweep::run(args),
        Some(Command::Train(args)) => crate::train::run(&args.corpus, &args.out, &args.recipe()),
        Some(Command::Tui(args)) => tui::run(args),
        None => tui::run(crate::cli::TuiArgs::defaults()),
    }
}
