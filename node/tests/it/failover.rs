//! Dataplane failover between control-plane peers: kuma-dp is given every peer's bootstrap URL,
//! its Envoy keeps passing traffic while the peer it is connected to is killed, reconnects to
//! another, and applies a change made after the kill.

use std::collections::BTreeSet;
use std::time::Duration;

use kuma_test_support::{
    free_port, http_request, tcp_roundtrip, try_poll_until, EchoServer, KumaCpCluster,
};
use serde_json::Value;

use crate::support::{dataplane, must_create_backend_and_redis, must_spawn_sidecar, put};

const CONVERGE: Duration = Duration::from_secs(30);

/// The xDS port of the peer the dataplane's open subscription is with.
fn connected_xds_port(api_port: u16, name: &str) -> Result<u16, String> {
    let reply =
        http_request(api_port, "GET", &format!("/meshes/default/dataplanes+insights/{name}"), None)
            .map_err(|e| e.to_string())?;
    let body: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
    body["dataplaneInsight"]["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["disconnectTime"].is_null() && !s["connectTime"].is_null())
        .max_by_key(|s| s["connectTime"].as_str().unwrap_or("").to_string())
        .and_then(|s| s["controlPlaneInstanceId"].as_str())
        .and_then(|id| id.rsplit_once(':'))
        .and_then(|(_, port)| port.parse().ok())
        .ok_or_else(|| format!("no open subscription in {body}"))
}

fn replies(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| tcp_roundtrip(port, b"ping").ok())
        .map(|r| String::from_utf8_lossy(&r).trim_end_matches("ping").to_string())
        .collect()
}

#[test]
fn envoy_keeps_traffic_through_a_peer_kill_reconnects_and_takes_later_changes() {
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    let leader = cluster.must_wait_for_leader(Duration::from_secs(15));
    let api = cluster.peers[leader].api_port;
    let (first, second) = (EchoServer::start("a:"), EchoServer::start("b:"));
    let outbound = must_create_backend_and_redis(api, &first);

    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&cluster, leader, "backend-1", dir.path());
    try_poll_until(CONVERGE, || match tcp_roundtrip(outbound, b"ping") {
        Ok(reply) if reply == b"a:ping" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no traffic through the sidecar ({e}):\n{}", sidecar.log()));

    let xds_port = try_poll_until(CONVERGE, || connected_xds_port(api, "backend-1"))
        .expect("the dataplane's subscription is recorded");
    let victim =
        cluster.peers.iter().position(|p| p.xds_port == xds_port).expect("a peer's xDS port");
    cluster.peers[victim].signal("KILL");

    // Envoy keeps its config: traffic goes on while it has no control plane.
    for _ in 0..20 {
        assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"a:ping", "traffic during failover");
    }

    let survivor = cluster.peers[(victim + 1) % 3].api_port;
    let moved_to = try_poll_until(CONVERGE, || match connected_xds_port(survivor, "backend-1") {
        Ok(port) if port != xds_port => Ok(port),
        other => Err(format!("{other:?}")),
    })
    .expect("Envoy reconnects to another peer");
    assert_ne!(moved_to, xds_port);

    // A change made after the kill reaches the Envoy through its new peer.
    put(
        survivor,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", &format!("127.0.0.1:{}:6379", second.port), "redis", None),
    );
    try_poll_until(CONVERGE, || match replies(outbound, 10) {
        seen if seen.len() == 2 => Ok(()),
        seen => Err(seen),
    })
    .expect("traffic reaches the instance added after the failover");

    // The leader closes the subscription the dead peer left open, so no dataplane shows as
    // connected to a peer that is gone.
    try_poll_until(Duration::from_secs(30), || {
        let reply =
            http_request(survivor, "GET", "/meshes/default/dataplanes+insights/backend-1", None)
                .map_err(|e| e.to_string())?;
        let body: Value = serde_json::from_str(&reply.body).map_err(|e| e.to_string())?;
        let dangling = body["dataplaneInsight"]["subscriptions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["disconnectTime"].is_null())
            .filter(|s| {
                s["controlPlaneInstanceId"]
                    .as_str()
                    .is_some_and(|i| i.ends_with(&format!(":{xds_port}")))
            })
            .count();
        if dangling == 0 {
            Ok(())
        } else {
            Err(body.to_string())
        }
    })
    .expect("the dead peer's subscription is closed");
}

/// Regression: a peer stopped while its dataplanes' last status was being written, with the other
/// peers stopping at the same moment (no leader left), waited out two 5 s write timeouts.
#[test]
fn every_peer_stopped_at_once_with_a_dataplane_connected_exits_within_seconds() {
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    let leader = cluster.must_wait_for_leader(Duration::from_secs(15));
    let api = cluster.peers[leader].api_port;
    let echo = EchoServer::start("a:");
    put(
        api,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", &format!("127.0.0.1:{}:{}", free_port(), echo.port), "redis", None),
    );
    let dir = tempfile::tempdir().unwrap();
    let _sidecar = must_spawn_sidecar(&cluster, leader, "redis-1", dir.path());
    try_poll_until(CONVERGE, || connected_xds_port(api, "redis-1"))
        .expect("the dataplane is connected");

    let started = std::time::Instant::now();
    for peer in &cluster.peers {
        peer.signal("TERM");
    }
    for peer in &mut cluster.peers {
        try_poll_until(Duration::from_secs(8), || if peer.is_running() { Err(()) } else { Ok(()) })
            .unwrap_or_else(|_| panic!("a peer still runs after SIGTERM:\n{}", peer.log()));
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "stopping every peer took {took:?}");
}
