//! `chaos`: a 3-peer kuma-cp cluster on 127.0.0.1 under a recorded workload while the leader is
//! killed, peers are paused, cut off and all restarted, a peer's disk fills up, a peer's fsyncs
//! are slowed, a peer's data directory is wiped and the leadership is transferred; prints the
//! counts, the checks' verdicts and the failover times. Exit status 1 when a check failed, 2 when
//! the run could not finish. The disk and fsync faults need root (pass 0 to leave them out).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kuma_chaos_tests::chaos::{
    kuma_cp_beside_this_program, run_chaos, run_wipe_two, ChaosConfig, WipeTwoConfig,
};

#[derive(Parser, Debug)]
#[command(name = "chaos", about = "Chaos test of a 3-peer kuma-cp Raft cluster")]
struct Args {
    /// kill -9 of the leader, each followed by its restart.
    #[arg(long, default_value_t = 10)]
    kills: usize,
    /// SIGSTOP/SIGCONT rounds of a random peer; by default one per 10 kills (at least 1).
    #[arg(long)]
    pauses: Option<usize>,
    /// Partitions, alternately of the leader and of a follower; by default one per 10 kills
    /// (at least 2).
    #[arg(long)]
    partitions: Option<usize>,
    /// Restarts of every peer at once; by default one per 50 kills (at least 1).
    #[arg(long)]
    restarts: Option<usize>,
    /// Rounds of a full disk (a tmpfs of its own on one peer, filled then emptied), alternately
    /// while the peer follows and while it leads; by default one per 25 kills (at least 2).
    #[arg(long)]
    disk_fulls: Option<usize>,
    /// Seconds a full disk stays full.
    #[arg(long, default_value_t = 3.0)]
    disk_full_for: f64,
    /// Rounds of slow fsyncs (one peer's disk writes capped through a cgroup), alternately of a
    /// follower and of the leader; by default one per 25 kills (at least 2).
    #[arg(long)]
    slow_fsyncs: Option<usize>,
    /// Disk writes per second a slowed peer may do.
    #[arg(long, default_value_t = 20)]
    slow_fsync_iops: u32,
    /// Peers whose data directory is wiped (kill -9, delete, start again with the old id: must
    /// be refused; then with KUMA_STORE_RAFT_JOIN=true), alternately a follower and the leader;
    /// by default one per 25 kills (at least 2).
    #[arg(long)]
    wipes: Option<usize>,
    /// Leader transfers to a random follower; by default one per 10 kills (at least 2).
    #[arg(long)]
    transfers: Option<usize>,
    /// Instead of the run above: this many runs of wiping two peers of three, the leader among
    /// them (each wiped peer must refuse to start, then rejoin with KUMA_STORE_RAFT_JOIN=true),
    /// checking that no peer ends with fewer registers than before.
    #[arg(long)]
    wipe_two: Option<usize>,
    /// Concurrent workload clients.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Seconds of undisturbed workload between faults.
    #[arg(long, default_value_t = 1.0)]
    settle: f64,
    /// Seeds every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The kuma-cp binary; by default the one next to this program.
    #[arg(long)]
    kuma_cp: Option<PathBuf>,
    /// Keep certificates, data and peer logs here (by default a temp dir, removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// kuma-cp's `--log-level`, e.g. `info,kuma_raft=debug`.
    #[arg(long, default_value = "info")]
    cp_log_level: String,
    /// Write the history here, one JSON object per operation.
    #[arg(long)]
    history: Option<PathBuf>,
    /// Exit with status 1 when the failover median is over this many seconds (or the max over
    /// twice this).
    #[arg(long)]
    failover_target: Option<f64>,
    /// Read with `?consistency=stale` (not linearizable): shows that the checks catch it.
    #[arg(long)]
    stale_reads: bool,
    /// Print only the summary, not each fault as it happens.
    #[arg(long)]
    quiet: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut config = ChaosConfig::bounded(args.kuma_cp.unwrap_or_else(kuma_cp_beside_this_program));
    config.cluster.dir = args.dir;
    config.cluster.log_level = args.cp_log_level;
    config.seed = args.seed;
    config.verbose = !args.quiet;
    config.history_file = args.history;
    config.workload.clients = args.clients;
    config.workload.stale_reads = args.stale_reads;
    config.nemesis.kills = args.kills;
    config.nemesis.pauses = args.pauses.unwrap_or((args.kills / 10).max(1));
    config.nemesis.partitions = args.partitions.unwrap_or((args.kills / 10).max(2));
    config.nemesis.restarts = args.restarts.unwrap_or((args.kills / 50).max(1));
    config.nemesis.disk_fulls = args.disk_fulls.unwrap_or((args.kills / 25).max(2));
    config.nemesis.disk_full_for = Duration::from_secs_f64(args.disk_full_for.max(0.0));
    config.nemesis.slow_fsyncs = args.slow_fsyncs.unwrap_or((args.kills / 25).max(2));
    config.nemesis.slow_fsync_iops = args.slow_fsync_iops.max(1);
    config.nemesis.wipes = args.wipes.unwrap_or((args.kills / 25).max(2));
    config.nemesis.transfers = args.transfers.unwrap_or((args.kills / 10).max(2));
    config.nemesis.settle = Duration::from_secs_f64(args.settle.max(0.0));
    config.check_budget = Duration::from_secs(600);

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(runs) = args.wipe_two {
        let wipe = WipeTwoConfig { runs, seed: args.seed, ..WipeTwoConfig::default() };
        return match runtime.block_on(run_wipe_two(&config.cluster, &wipe, !args.quiet)) {
            Ok(report) => {
                println!("{report}");
                if report.passed() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("Error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let report = match runtime.block_on(run_chaos(config)) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("Error: {e:#}");
            return ExitCode::from(2);
        }
    };
    println!("{report}");
    let failovers = report.failovers();
    let slow = args.failover_target.is_some_and(|target| {
        failovers.at(50.0).as_secs_f64() > target || failovers.max().as_secs_f64() > 2.0 * target
    });
    if slow {
        println!("failover target missed: median or max over the target");
    }
    if report.passed() && !slow {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
