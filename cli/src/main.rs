//! `kumactl`: parse the command line, run it, print any error as `Error: ...` (its message, then
//! each cause once) and exit non-zero.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = kumactl::Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: {}", kumactl::CliError::Runtime(e).with_causes());
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let mut stdin = std::io::stdin().lock();
    match runtime.block_on(kumactl::run_on(
        args,
        &mut stdout,
        &mut stdin,
        kumactl::Terminal::detect(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {}", e.with_causes());
            ExitCode::FAILURE
        }
    }
}
