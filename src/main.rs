use clap::Parser;
use lerpscope::cli::Cli;

fn main() -> std::process::ExitCode {
    lerpscope::engine::pin_thread_count();
    lerpscope::engine::guard::quiet_caught_panics();
    lerpscope::tune_allocator();
    let cli = Cli::parse();
    match lerpscope::commands::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", lerpscope::one_line(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}
