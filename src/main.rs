use clap::error::ErrorKind;
use clap::Parser;
use lerpscope::cli::Cli;

fn main() -> std::process::ExitCode {
    // First of all: a CPU older than the build's target gets a sentence, not SIGILL.
    lerpscope::cpu::require_build_features();
    run()
}

/// Everything after the CPU check, kept out of `main` so that nothing of it (a large local
/// zeroed with AVX, say) can run before the check.
#[inline(never)]
fn run() -> std::process::ExitCode {
    lerpscope::engine::pin_thread_count();
    lerpscope::engine::guard::quiet_caught_panics();
    lerpscope::tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => exit_on_bad_flags(e),
    };
    match lerpscope::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The reader went away (`| head`): nothing left to say to it.
        Err(e) if closed_pipe(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", lerpscope::one_line(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Help and version as clap prints them; a bad flag or value as one line (clap's first, which
/// names the flag and the value), like every other error.
fn exit_on_bad_flags(e: clap::Error) -> ! {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
        _ => {
            let text = e.render().to_string();
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let mut first = lines.next().unwrap_or("error").trim_end().to_string();
            // "…were not provided:" lists the flags on the lines below: bring them up.
            if first.ends_with(':') {
                let listed: Vec<&str> = lines
                    .take_while(|l| l.starts_with(' '))
                    .map(str::trim)
                    .collect();
                first = format!("{first} {}", listed.join(", "));
            }
            // What to write instead, where clap says: the values a flag takes, its tip.
            for l in text.lines().map(str::trim) {
                if let Some(values) = l
                    .strip_prefix("[possible values: ")
                    .and_then(|v| v.strip_suffix(']'))
                {
                    first = format!("{first} (possible values: {values})");
                } else if let Some(tip) = l.strip_prefix("tip: ") {
                    first = format!("{first} ({tip})");
                }
            }
            // A negative number after a flag reads as a flag of its own.
            let negative = first
                .split("unexpected argument '-")
                .nth(1)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '.'));
            if negative {
                first.push_str(
                    " (a negative value is written with its flag and `=`, as --beta=-0.5)",
                );
            }
            eprintln!("{first}");
            std::process::exit(2)
        }
    }
}
