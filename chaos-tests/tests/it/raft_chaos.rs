//! The bounded chaos scenario CI runs: a 3-peer cluster of debug kuma-cp binaries under a
//! recorded workload, with 10 kills of the leader, a SIGSTOP/SIGCONT round, a partition of the
//! leader and one of a follower, and a restart of every peer. The long run is `make chaos`.

use std::time::Duration;

use kuma_chaos_tests::chaos::{kuma_cp_beside_this_program, run_chaos, ChaosConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_under_kills_pauses_partitions_and_restarts_loses_no_acknowledged_write_and_stays_linearizable(
) {
    let kuma_cp = kuma_cp_beside_this_program();
    assert!(
        kuma_cp.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        kuma_cp.display()
    );
    let mut config = ChaosConfig::bounded(kuma_cp);
    config.nemesis.kills = 10;
    config.nemesis.pauses = 1;
    config.nemesis.partitions = 2;
    config.nemesis.restarts = 1;
    config.verbose = true;

    let report =
        run_chaos(config).await.unwrap_or_else(|e| panic!("the run did not finish: {e:#}"));
    println!("{report}");

    assert!(report.passed(), "checks failed:\n{report}");
    assert_eq!(report.nemesis.failovers.len(), 10, "{report}");
    assert_eq!(report.nemesis.partitions.len(), 2, "{report}");
    assert_eq!(report.nemesis.pauses, 1, "{report}");
    assert_eq!(report.nemesis.restart_recoveries.len(), 1, "{report}");
    // A loaded 2-core machine with debug binaries acknowledges 80 to 400 writes in this run.
    assert!(report.writes().ok >= 30, "too few acknowledged writes to mean anything:\n{report}");
    assert!(report.minority_writes > 0, "no write reached a cut-off peer:\n{report}");
    // DESIGN's target: a median under 1 s and a max under 2 s, asserted as is. Elections follow a
    // pre-vote (raft/src/election.rs); measured 2026-11-22 on 2 cores under a concurrent build:
    // this test, median 0.58 s, max 0.77 s; release, 100 kills: median 0.56 s, max 1.30 s.
    let failovers = report.failovers();
    assert!(
        failovers.at(50.0) < Duration::from_secs(1) && failovers.max() < Duration::from_secs(2),
        "failover over target (median < 1 s, max < 2 s):\n{report}"
    );
}
