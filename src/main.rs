use clap::Parser;
use lerpscope::cli::Cli;

fn main() -> std::process::ExitCode {
    lerpscope::engine::pin_thread_count();
    lerpscope::engine::guard::quiet_caught_panics();
    lerpscope::tune_allocator();
    let cli = Cli::parse();
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
