//! Real Envoy processes against the in-process xDS server: endpoints follow the store, a rejected
//! config leaves the previous one serving, and a restarted control plane causes no config churn.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::util::pack_any;
use kuma_model::ResourceType;
use kuma_test_support::{free_port, tcp_roundtrip, try_poll_until, EchoServer, Envoy};
use kuma_xds::{ConfigHook, XdsApiType, XdsType, COUNTERS_EVERY};
use prost::Message;

use crate::harness::{backend_dataplane, fast_config, redis_dataplane, Harness};

const LIVE: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(10);

/// Ports of the endpoints Envoy holds for `cluster`, from `/config_dump?include_eds`.
fn endpoint_ports(envoy: &Envoy, cluster: &str) -> Result<BTreeSet<u64>, String> {
    let dump = envoy.config_dump("dynamic_endpoint_configs", true).map_err(|e| e.to_string())?;
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    let assignment = configs
        .iter()
        .map(|c| &c["endpoint_config"])
        .find(|c| c["cluster_name"] == cluster)
        .ok_or_else(|| format!("no endpoints for {cluster} in {dump}"))?;
    let ports = assignment["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|locality| locality["lb_endpoints"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["endpoint"]["address"]["socket_address"]["port_value"].as_u64())
        .collect();
    Ok(ports)
}

/// Replies seen over `n` connections through `port`, by their prefix.
fn prefixes(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| tcp_roundtrip(port, b"ping").ok())
        .map(|reply| String::from_utf8_lossy(&reply).trim_end_matches("ping").to_string())
        .collect()
}

fn must_echo_through(port: u16, expected_prefix: &str) {
    try_poll_until(CONVERGE, || match tcp_roundtrip(port, b"ping") {
        Ok(reply) if reply.starts_with(expected_prefix.as_bytes()) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no echo through port {port}: {e}"));
}

async fn endpoints_follow_the_store(api: XdsApiType) {
    let h = Harness::start().await;
    let (a, b) = (EchoServer::start("a:"), EchoServer::start("b:"));
    // The redis dataplanes' inbound ports are the echo servers themselves, so only the backend's
    // Envoy is needed to see its outbound reach each instance.
    h.apply(&redis_dataplane("redis-1", a.port, 6379)).await;
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    h.apply(&backend_dataplane("default", outbound, inbound)).await;
    let envoy = Envoy::must_start(&h.bootstrap("default", "backend-1", admin, api), admin);
    envoy.must_be_live(LIVE);
    must_echo_through(outbound, "a:");
    assert_eq!(endpoint_ports(&envoy, "redis").unwrap(), BTreeSet::from([u64::from(a.port)]));

    h.apply(&redis_dataplane("redis-2", b.port, 6379)).await;
    let both = BTreeSet::from([u64::from(a.port), u64::from(b.port)]);
    try_poll_until(CONVERGE, || match endpoint_ports(&envoy, "redis") {
        Ok(ports) if ports == both => Ok(()),
        other => Err(other),
    })
    .expect("the second instance appears in /config_dump");
    let seen = try_poll_until(CONVERGE, || match prefixes(outbound, 10) {
        seen if seen.len() == 2 => Ok(seen),
        seen => Err(seen),
    })
    .expect("traffic reaches both instances");
    assert_eq!(seen, BTreeSet::from(["a:".to_string(), "b:".to_string()]));

    h.delete(ResourceType::Dataplane, "default", "redis-1").await;
    try_poll_until(CONVERGE, || match endpoint_ports(&envoy, "redis") {
        Ok(ports) if ports == BTreeSet::from([u64::from(b.port)]) => Ok(()),
        other => Err(other),
    })
    .expect("the deleted instance leaves /config_dump");
    assert_eq!(prefixes(outbound, 5), BTreeSet::from(["b:".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_store_over_sotw() {
    endpoints_follow_the_store(XdsApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_store_over_delta() {
    endpoints_follow_the_store(XdsApiType::DeltaGrpc).await;
}

/// A hook that, while `broken` is set, strips the address from backend-1's listeners: Envoy
/// rejects such a listener and keeps the one it has.
fn breaking_hook(broken: Arc<AtomicBool>) -> ConfigHook {
    Arc::new(move |proxy, resources| {
        if proxy.name == "backend-1" && broken.load(Ordering::SeqCst) {
            resources.modify(XdsType::Listener, |any| {
                let mut listener = Listener::decode(any.value.as_slice()).unwrap();
                listener.address = None;
                *any = pack_any(listener);
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_config_is_counted_not_resent_and_the_previous_one_keeps_serving() {
    let broken = Arc::new(AtomicBool::new(false));
    let h = Harness::start_with(fast_config(), Some(breaking_hook(broken.clone()))).await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_dataplane("redis-1", echo.port, 6379)).await;
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    h.apply(&backend_dataplane("default", outbound, inbound)).await;
    let bootstrap = h.bootstrap("default", "backend-1", admin, XdsApiType::Grpc);
    let envoy = Envoy::must_start(&bootstrap, admin);
    envoy.must_be_live(LIVE);
    must_echo_through(outbound, "r:");
    let accepted = stat_u64(&envoy, "listener_manager.lds.update_success");

    broken.store(true, Ordering::SeqCst);
    // A change of its own Dataplane regenerates backend-1's config, now with the broken
    // listeners.
    let retagged = |version: &str| {
        backend_dataplane("default", outbound, inbound)
            .replace("service: backend\n", &format!("service: backend\n      version: {version}\n"))
    };
    h.apply(&retagged("v2")).await;
    try_poll_until(CONVERGE, || match envoy.stat("listener_manager.lds.update_rejected") {
        Ok(n) if n == "1" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .expect("Envoy rejects the config");
    let insight = try_poll_until(CONVERGE, || {
        match futures::executor::block_on(h.insight("default", "backend-1")) {
            Some(i) if i.total_errors() == 1 => Ok(i),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the rejection is counted in the DataplaneInsight");
    let sent = insight.subscriptions[0].status.lds.responses_sent;

    // The old listeners keep serving; the rejected version is not sent again, backoff or not.
    must_echo_through(outbound, "r:");
    // Long enough for a re-send after the backoff, and for the counters it would have bumped to
    // be written (counters alone are written every COUNTERS_EVERY flushes).
    let config = fast_config();
    let counters_written = config.dataplane_status_flush_interval * (COUNTERS_EVERY + 2);
    std::thread::sleep((config.nack_backoff * 2).max(counters_written));
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected").unwrap(), "1");
    let later = futures::executor::block_on(h.insight("default", "backend-1")).unwrap();
    assert_eq!(later.subscriptions[0].status.lds.responses_sent, sent, "no re-send loop");
    assert_eq!(stat_u64(&envoy, "listener_manager.lds.update_success"), accepted);

    // Fixed: the next change is sent and accepted.
    broken.store(false, Ordering::SeqCst);
    h.apply(&retagged("v3")).await;
    try_poll_until(CONVERGE, || match stat_u64(&envoy, "listener_manager.lds.update_success") {
        n if n == accepted + 1 => Ok(()),
        n => Err(n),
    })
    .expect("the fixed config is accepted");
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected").unwrap(), "1");
    must_echo_through(outbound, "r:");
}

fn stat_u64(envoy: &Envoy, name: &str) -> u64 {
    envoy.stat(name).ok().and_then(|v| v.parse().ok()).unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_keeps_forwarding_while_the_control_plane_restarts_and_ends_on_the_same_version() {
    let mut h = Harness::start().await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_dataplane("redis-1", echo.port, 6379)).await;
    let (outbound, inbound, admin) = (free_port(), free_port(), free_port());
    h.apply(&backend_dataplane("default", outbound, inbound)).await;
    let envoy =
        Envoy::must_start(&h.bootstrap("default", "backend-1", admin, XdsApiType::Grpc), admin);
    envoy.must_be_live(LIVE);
    must_echo_through(outbound, "r:");
    let cds_version = envoy.stat("cluster_manager.cds.version_text").unwrap();
    let lds_version = envoy.stat("listener_manager.lds.version_text").unwrap();
    let lds_updates = stat_u64(&envoy, "listener_manager.lds.update_success");

    let store = h.store.clone();
    let port = h.xds_port;
    h.stop().await;
    try_poll_until(CONVERGE, || match envoy.stat("control_plane.connected_state") {
        Ok(v) if v == "0" => Ok(()),
        other => Err(other.map_err(|e| e.to_string())),
    })
    .expect("Envoy notices the control plane is gone");
    for _ in 0..5 {
        assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"r:ping", "traffic without a CP");
    }

    let _restarted = Harness::serve(store, fast_config(), None, port).await;
    try_poll_until(Duration::from_secs(40), || match envoy.stat("control_plane.connected_state") {
        Ok(v) if v == "1" => Ok(()),
        other => Err(other.map_err(|e| e.to_string())),
    })
    .expect("Envoy reconnects to the restarted control plane");
    try_poll_until(CONVERGE, || {
        let acked = stat_u64(&envoy, "listener_manager.lds.update_success");
        if acked > lds_updates && acked != u64::MAX {
            Ok(())
        } else {
            Err(acked)
        }
    })
    .expect("Envoy takes the restarted server's config");
    assert_eq!(envoy.stat("cluster_manager.cds.version_text").unwrap(), cds_version);
    assert_eq!(envoy.stat("listener_manager.lds.version_text").unwrap(), lds_version);
    assert_eq!(stat_u64(&envoy, "listener_manager.listener_modified"), 0, "no listener churn");
    assert_eq!(stat_u64(&envoy, "cluster_manager.cluster_modified"), 0, "no cluster churn");
    assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"r:ping");
}
