//! `xds-load`: starts a kuma-cp (or, with `--peers 3`, a Raft cluster of three), connects N
//! simulated Envoys (spread over the peers), changes the mesh through the API a few times (through
//! each peer in turn) and prints how fast every stream converged, each peer's memory per
//! dataplane and the CPU time spent per change.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kuma_chaos_tests::{KumaCpProcessConfig, Targets, XdsLoad, XdsLoadConfig};

#[derive(Parser, Debug)]
#[command(
    name = "xds-load",
    about = "Measures xDS convergence after an API change and kuma-cp memory per dataplane"
)]
struct Args {
    /// Dataplanes, each with its own ADS stream on its own connection.
    #[arg(long, default_value_t = 100)]
    n: usize,
    /// 1: one kuma-cp with the memory store; 3 (or more): a Raft cluster of that many peers,
    /// with the streams spread round robin over them.
    #[arg(long, default_value_t = 1)]
    peers: usize,
    /// Changes made through the API, each waited for until every stream has ACKed it.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Exit with status 1 when a target (p99 convergence, bytes per dataplane) is missed.
    #[arg(long)]
    check: bool,
    /// The kuma-cp binary; by default the one next to this program.
    #[arg(long)]
    kuma_cp: Option<PathBuf>,
    /// Log level of kuma-cp.
    #[arg(long, default_value = "info")]
    cp_log_level: String,
    /// Keep kuma-cp's log in this file (by default it is shown only when kuma-cp fails); one
    /// kuma-cp only.
    #[arg(long, conflicts_with = "cluster_dir")]
    cp_log: Option<PathBuf>,
    /// With --peers 3: keep the cluster's certificates, data and peer logs in this directory
    /// (by default a temporary one, removed at the end).
    #[arg(long)]
    cluster_dir: Option<PathBuf>,
    /// An environment variable for kuma-cp, e.g. `KUMA_STORE_TYPE=raft` (repeatable).
    #[arg(long = "cp-env", value_name = "KEY=VALUE", value_parser = parse_env)]
    cp_env: Vec<(String, String)>,
    /// Seconds a round may take before the run fails.
    #[arg(long, default_value_t = 30)]
    round_timeout: u64,
    /// Seconds every stream may take to get its first config ACKed.
    #[arg(long, default_value_t = 120)]
    setup_timeout: u64,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn default_kuma_cp() -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(PathBuf::from))
        .unwrap_or_default();
    dir.join("kuma-cp")
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = XdsLoadConfig {
        kuma_cp: KumaCpProcessConfig {
            binary: args.kuma_cp.unwrap_or_else(default_kuma_cp),
            log_level: args.cp_log_level,
            log: args.cp_log,
            env: args.cp_env,
        },
        peers: args.peers,
        dataplanes: args.n,
        rounds: args.rounds,
        round_deadline: Duration::from_secs(args.round_timeout),
        setup_deadline: Duration::from_secs(args.setup_timeout),
        cluster_dir: args.cluster_dir,
        targets: if args.peers > 1 { Targets::across_peers() } else { Targets::default() },
    };
    if config.cluster_dir.is_some() && config.peers == 1 {
        eprintln!("xds-load: --cluster-dir is for a cluster: add --peers 3, or use --cp-log FILE");
        return ExitCode::from(2);
    }
    if config.kuma_cp.log.is_some() && config.peers > 1 {
        eprintln!(
            "xds-load: --cp-log is for one kuma-cp: with --peers {} keep the peers' logs with \
             --cluster-dir DIR",
            config.peers
        );
        return ExitCode::from(2);
    }
    if let Err(e) = config.validate() {
        eprintln!("xds-load: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("xds-load: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let topology = match config.peers {
        1 => "one kuma-cp (memory store)".to_string(),
        peers => format!("a Raft cluster of {peers} kuma-cp peers"),
    };
    println!(
        "xds-load: {} dataplanes, {} rounds, {topology}, {}",
        config.dataplanes,
        config.rounds,
        config.kuma_cp.binary.display()
    );
    let report = match runtime.block_on(XdsLoad::new(config).run()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("xds-load: {e:#}");
            return ExitCode::from(2);
        }
    };
    for line in report.human_lines() {
        println!("  {line}");
    }
    println!("{}", report.machine_line());
    if args.check && !report.passed() {
        eprintln!("xds-load: a target was missed (--check)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
