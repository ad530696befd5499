//! `kuma-dp`: parse the command line, validate it, run the data-plane launcher, map the outcome to
//! an exit code (Envoy's own status, 1 for kuma-dp's errors, 2 for a bad command line).

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;
use kuma_dp::{Args, Command, KumaDp, LogLevel};

/// Exit code of a command line that cannot work, as clap uses it.
const USAGE: u8 = 2;

/// Parses the command line; a usage error is printed as one line, like every other kuma-dp error.
fn parse_args() -> Result<Args, ExitCode> {
    match Args::try_parse() {
        Ok(args) => Ok(args),
        Err(e)
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) =>
        {
            let _ = e.print();
            Err(ExitCode::from(e.exit_code() as u8))
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("Error: {first}; see kuma-dp run --help");
            Err(ExitCode::from(USAGE))
        }
    }
}

fn init_logging(level: LogLevel) {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level.as_filter()))
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match args.command {
        Command::Version { detailed } => {
            print!("{}", kuma_build_info::version_text(detailed));
            ExitCode::SUCCESS
        }
        Command::Run(run) => {
            let config = match run.into_config(args.log_level) {
                Ok(config) => config,
                Err(e) => {
                    eprintln!("Error: {e}");
                    return ExitCode::from(USAGE);
                }
            };
            init_logging(args.log_level);
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("Error: could not start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(KumaDp::new(config).run()) {
                Ok(code) => ExitCode::from(code),
                Err(e) => {
                    tracing::debug!(error = ?e, "kuma-dp failed");
                    eprintln!("Error: {}", e.with_causes());
                    ExitCode::from(e.exit_code())
                }
            }
        }
    }
}
