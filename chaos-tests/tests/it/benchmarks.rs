//! The benchmark programs at a tiny size against debug kuma-cp peers: they assert the shape of
//! what is reported (every peer, every stream, every figure), never a time. The measurements are
//! `make bench`.

use std::path::PathBuf;
use std::time::Duration;

use kuma_chaos_tests::chaos::kuma_cp_beside_this_program;
use kuma_chaos_tests::{
    KumaCpProcessConfig, LargeState, LargeStateConfig, Targets, XdsLoad, XdsLoadConfig,
};

fn must_find_kuma_cp() -> PathBuf {
    let kuma_cp = kuma_cp_beside_this_program();
    assert!(
        kuma_cp.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins)",
        kuma_cp.display()
    );
    kuma_cp
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xds_load_across_three_peers_reports_every_peer_and_every_stream_of_every_round() {
    let config = XdsLoadConfig {
        kuma_cp: KumaCpProcessConfig {
            binary: must_find_kuma_cp(),
            log_level: "info".to_string(),
            log: None,
            env: Vec::new(),
        },
        peers: 3,
        dataplanes: 7,
        rounds: 2,
        round_deadline: Duration::from_secs(60),
        setup_deadline: Duration::from_secs(120),
        cluster_dir: None,
        targets: Targets::across_peers(),
    };

    let report = XdsLoad::new(config).run().await.unwrap_or_else(|e| panic!("{e:#}"));

    assert_eq!(report.convergence.len(), 7 * 2, "one sample per stream and round");
    let streams: Vec<usize> = report.peers.iter().map(|p| p.streams).collect();
    assert_eq!(streams, [3, 2, 2], "round robin over the peers");
    for peer in &report.peers {
        assert_eq!(peer.convergence.len(), peer.streams * 2, "{peer:?}");
        assert!(peer.pid > 0 && peer.rss_connected > 0, "{peer:?}");
    }
    // kuma-cp's own delivery histogram saw every stream's EDS update of every round.
    let reported = report.reported_delivery.as_ref().unwrap_or_else(|e| panic!("{e}"));
    assert!(reported.count() >= 7 * 2, "{reported:?}");
    assert!(report.human_lines().iter().any(|l| l.contains("kuma-cp's own xds_delivery for EDS")));
    let line = report.machine_line();
    for field in
        ["peers=3 n=7 rounds=2", "peer3_streams=2", "cpu_ms_per_change=", "client_rss_mib="]
    {
        assert!(line.contains(field), "{field} missing from {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_state_restarts_a_follower_adds_a_peer_and_pages_through_every_dataplane() {
    let config = LargeStateConfig {
        kuma_cp: must_find_kuma_cp(),
        kumactl: None,
        resources: 500,
        writers: 16,
        log_level: "info".to_string(),
        env: Vec::new(),
        dir: None,
    };

    let report = LargeState::new(config).run().await.unwrap_or_else(|e| panic!("{e:#}"));

    assert_eq!(report.writes.len(), 500, "{report:?}");
    assert_eq!(report.list_items, 400, "four in five resources are Dataplanes: {report:?}");
    assert_eq!(report.list_pages, 1, "{report:?}");
    assert_eq!(report.bytes_per_resource().len(), 3, "{report:?}");
    assert!(report.snapshot_bytes > 0, "{report:?}");
    assert!(report.restart_ready <= report.restart_caught_up, "{report:?}");
    assert!(report.restart_caught_up <= report.restart_read, "{report:?}");
    assert!(report.add_peer > Duration::ZERO, "{report:?}");
    assert!(report.machine_line().starts_with("large-state resources=500 meshes=100"));
}
