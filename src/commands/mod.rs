//! The subcommands, each a thin driver of the engine.

mod bench;
mod generate;

use crate::cli::{BenchCommand, Cli, Command};
use anyhow::{bail, Result};

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Generate(args)) => generate::run(args),
        Some(Command::Bench(BenchCommand::Blend(args))) => bench::blend(args),
        Some(Command::Train(args)) => crate::train::run(&args.corpus, &args.out, &args.recipe()),
        None => bail!("no command given; try `lerpscope --help`"),
    }
}
