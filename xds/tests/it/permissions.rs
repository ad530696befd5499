//! TrafficPermission enforced by real Envoys: with mTLS on, only the sources of the most
//! specific permission reach a service, and deleting it cuts them off.

use std::time::{Duration, Instant};

use kuma_model::ResourceType;
use kuma_test_support::{free_port, tcp_roundtrip, try_poll_until, EchoServer, Envoy};

use crate::harness::{backend_dataplane, redis_dataplane, Harness};
use crate::mtls::{must_echo_through, must_enable_mtls, must_start_sidecar};

/// How long a change may take to reach Envoy and its traffic.
const CONVERGE: Duration = Duration::from_secs(10);

const BACKEND_TO_REDIS: &str = "type: TrafficPermission\nmesh: default\nname: backend-to-redis\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\n";

fn web_dataplane(outbound: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{}:{}\n    tags:\n      service: web\n  outbound:\n  - interface: :{outbound}\n    service: redis\n",
        free_port(),
        free_port()
    )
}

/// Connections through `port` that got an echo, out of `n`.
fn echoed(port: u16, n: usize) -> usize {
    (0..n).filter(|_| tcp_roundtrip(port, b"ping").is_ok_and(|r| r.starts_with(b"r:"))).count()
}

fn rbac_denied(envoy: &Envoy) -> u64 {
    let body = envoy.admin("/stats?filter=rbac.denied$").map(|r| r.body).unwrap_or_default();
    body.lines().filter_map(|l| l.rsplit_once(": ").and_then(|(_, v)| v.parse::<u64>().ok())).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_lets_its_source_through_refuses_others_and_its_deletion_cuts_off() {
    let h = Harness::start().await;
    must_enable_mtls(&h, None).await;
    h.apply(BACKEND_TO_REDIS).await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_dataplane("redis-1", free_port(), echo.port)).await;
    let (backend_out, web_out) = (free_port(), free_port());
    h.apply(&backend_dataplane("default", backend_out, free_port())).await;
    h.apply(&web_dataplane(web_out)).await;
    let redis = must_start_sidecar(&h, "redis-1");
    let _backend = must_start_sidecar(&h, "backend-1");
    let _web = must_start_sidecar(&h, "web-1");

    must_echo_through(backend_out, "r:");
    assert_eq!(echoed(backend_out, 5), 5, "backend is allowed");
    assert_eq!(echoed(web_out, 5), 0, "web is refused");
    assert!(rbac_denied(&redis) >= 5, "the refusals are RBAC denials: {}", rbac_denied(&redis));

    let deleted = Instant::now();
    h.delete(ResourceType::TrafficPermission, "default", "backend-to-redis").await;
    try_poll_until(CONVERGE, || match echoed(backend_out, 1) {
        0 => Ok(()),
        n => Err(n),
    })
    .expect("deleting the permission cuts backend off");
    let took = deleted.elapsed();
    assert_eq!(echoed(backend_out, 5), 0, "and it stays cut off");
    eprintln!("backend cut off {took:?} after the permission was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_a_route_split_reaches_each_subset_through_its_sidecar() {
    let h = Harness::start().await;
    must_enable_mtls(&h, None).await;
    h.apply(crate::mtls::ALLOW_ALL).await;
    let (v1, v2) = (EchoServer::start("v1:"), EchoServer::start("v2:"));
    for (name, echo, version) in [("redis-1", &v1, "v1"), ("redis-2", &v2, "v2")] {
        h.apply(&format!(
            "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{}:{}\n    tags:\n      service: redis\n      version: {version}\n",
            free_port(),
            echo.port
        ))
        .await;
    }
    h.apply("type: TrafficRoute\nmesh: default\nname: canary\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 50\n  destination:\n    service: redis\n    version: v1\n- weight: 50\n  destination:\n    service: redis\n    version: v2\n").await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let _redis1 = must_start_sidecar(&h, "redis-1");
    let _redis2 = must_start_sidecar(&h, "redis-2");
    let _backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "v");
    let replies: Vec<Vec<u8>> =
        (0..100).filter_map(|_| tcp_roundtrip(outbound, b"ping").ok()).collect();
    let v1_count = replies.iter().filter(|r| r.starts_with(b"v1:")).count();
    let v2_count = replies.iter().filter(|r| r.starts_with(b"v2:")).count();
    assert_eq!(v1_count + v2_count, 100, "every connection is served over mTLS");
    assert!(v1_count > 20 && v2_count > 20, "both subsets serve: {v1_count}/{v2_count}");
}
