//! `kuma-tcp-echo -port N`: parse the flag, bind, announce the port, echo until killed.

use std::io::Write;
use std::process::ExitCode;

use kuma_dp::{TcpEcho, TcpEchoArgs, TcpEchoArgsError};

fn main() -> ExitCode {
    let args = match TcpEchoArgs::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(TcpEchoArgsError::Help) => {
            print!("{}", TcpEchoArgs::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("Error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let server = TcpEcho::bind(args.port).await.map_err(|e| {
            format!("could not listen on port {}: {e}; pick another -port", args.port)
        })?;
        let port = server.port().map_err(|e| format!("could not read the bound port: {e}"))?;
        let mut stdout = std::io::stdout().lock();
        let _ = writeln!(stdout, "Kuma TCP Echo - Listening to connections on port {port}");
        let _ = stdout.flush();
        drop(stdout);
        server.serve().await.map_err(|e| format!("the server stopped: {e}"))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("Error: {message}");
            ExitCode::FAILURE
        }
    }
}
