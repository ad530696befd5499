//! `kuma-prometheus-sd run`: parse, check, follow; errors are one line and a non-zero exit.

use std::process::ExitCode;

use clap::Parser;
use kuma_prometheus_sd::{run, Args, Command, Config};

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
            eprintln!("kuma-prometheus-sd: {first} (see kuma-prometheus-sd run --help)");
            return ExitCode::from(2);
        }
    };
    let Command::Run(run_args) = args.command;
    let config = match Config::from_args(run_args) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kuma-prometheus-sd: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kuma-prometheus-sd: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    tracing::info!(version = kuma_build_info::VERSION, addresses = ?config.urls.iter().map(|u| u.to_string()).collect::<Vec<_>>(), file = %config.output_file.display(), "kuma-prometheus-sd starting");
    match runtime.block_on(run(config, stop_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kuma-prometheus-sd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// SIGTERM or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
