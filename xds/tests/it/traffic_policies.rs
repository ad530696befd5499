//! TrafficRoute, HealthCheck and TrafficLog changing what a real Envoy does to real traffic.

use std::collections::BTreeMap;
use std::time::Duration;

use kuma_test_support::{free_port, tcp_roundtrip, try_poll_until, EchoServer, Envoy};

use crate::harness::{backend_dataplane, Harness};
use crate::mtls::{must_echo_through, must_start_sidecar};

const CONVERGE: Duration = Duration::from_secs(10);

fn redis_instance(name: &str, dp_port: u16, workload_port: u16, version: &str) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{dp_port}:{workload_port}\n    tags:\n      service: redis\n      version: {version}\n"
    )
}

/// Replies over `n` connections through `port`, counted by their prefix (`fail` for none).
fn tally(port: u16, n: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for _ in 0..n {
        let key = match tcp_roundtrip(port, b"ping") {
            Ok(reply) => String::from_utf8_lossy(&reply).trim_end_matches("ping").to_string(),
            Err(_) => "fail".to_string(),
        };
        *counts.entry(key).or_default() += 1;
    }
    counts
}

/// Hosts of `cluster` in Envoy's `/clusters`, with their health flags.
fn hosts(envoy: &Envoy, cluster: &str) -> BTreeMap<String, String> {
    let body = envoy.admin("/clusters").map(|r| r.body).unwrap_or_default();
    body.lines()
        .filter_map(|l| l.strip_prefix(&format!("{cluster}::")))
        .filter_map(|l| l.split_once("::health_flags::"))
        .map(|(host, flags)| (host.to_string(), flags.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_90_10_route_splits_1000_connections_within_five_points() {
    let h = Harness::start().await;
    let (v1, v2) = (EchoServer::start("v1:"), EchoServer::start("v2:"));
    // Without mTLS the instances' inbound ports can be the workloads themselves.
    h.apply(&redis_instance("redis-1", v1.port, 6379, "v1")).await;
    h.apply(&redis_instance("redis-2", v2.port, 6379, "v2")).await;
    h.apply("type: TrafficRoute\nmesh: default\nname: canary\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n    version: v1\n- weight: 10\n  destination:\n    service: redis\n    version: v2\n").await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let backend = must_start_sidecar(&h, "backend-1");
    try_poll_until(CONVERGE, || {
        let (a, b) = (hosts(&backend, "redis-_0_"), hosts(&backend, "redis-_1_"));
        if a.len() == 1 && b.len() == 1 {
            Ok(())
        } else {
            Err((a, b))
        }
    })
    .expect("each subset cluster holds its one instance");
    let counts = tally(outbound, 1000);
    let (n1, n2) =
        (counts.get("v1:").copied().unwrap_or(0), counts.get("v2:").copied().unwrap_or(0));
    assert_eq!(n1 + n2, 1000, "every connection lands on a subset: {counts:?}");
    assert!((850..=950).contains(&n1), "v1 got {n1} of 1000, outside 90 ± 5 points: {counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_unhealthy_threshold_a_killed_instance_gets_no_connection() {
    let h = Harness::start().await;
    let (one, two) = (EchoServer::start("1:"), EchoServer::start("2:"));
    let (port1, port2) = (free_port(), free_port());
    h.apply(&redis_instance("redis-1", port1, one.port, "v1")).await;
    h.apply(&redis_instance("redis-2", port2, two.port, "v1")).await;
    h.apply("type: HealthCheck\nmesh: default\nname: redis-check\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: redis\nconf:\n  activeChecks:\n    interval: 200ms\n    timeout: 100ms\n    unhealthyThreshold: 2\n    healthyThreshold: 1\n").await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let _redis1 = must_start_sidecar(&h, "redis-1");
    let mut redis2 = must_start_sidecar(&h, "redis-2");
    let backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "");
    let both = try_poll_until(CONVERGE, || match tally(outbound, 20) {
        c if c.contains_key("1:") && c.contains_key("2:") => Ok(c),
        c => Err(c),
    })
    .expect("both instances serve while healthy");
    assert!(!both.contains_key("fail"), "{both:?}");

    redis2.kill();
    let dead = format!("127.0.0.1:{port2}");
    try_poll_until(CONVERGE, || {
        let hosts = hosts(&backend, "redis");
        match hosts.get(&dead) {
            Some(flags) if flags.contains("failed_active_hc") => Ok(()),
            _ => Err(hosts),
        }
    })
    .unwrap_or_else(|hosts| {
        panic!(
            "the health check does not mark the killed instance unhealthy: {hosts:?}\n{}",
            backend.config_dump("dynamic_active_clusters", false).unwrap()
        )
    });
    let counts = tally(outbound, 100);
    assert_eq!(
        counts.get("1:"),
        Some(&100),
        "no connection goes to the killed instance: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_traffic_log_writes_one_line_per_connection_with_both_services() {
    let h = Harness::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    h.apply(&format!("type: Mesh\nname: default\nlogging:\n  defaultBackend: file\n  backends:\n  - name: file\n    type: file\n    conf:\n      path: {}\n", path.display())).await;
    h.apply("type: TrafficLog\nmesh: default\nname: redis-log\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\n").await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_instance("redis-1", echo.port, 6379, "v1")).await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let _backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "r:");
    for _ in 0..4 {
        assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"r:ping");
    }
    // Envoy flushes access log files every 10 s by default.
    let lines = try_poll_until(Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        if lines.len() >= 5 {
            Ok(lines)
        } else {
            Err(lines)
        }
    })
    .expect("a line per connection");
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines {
        assert!(line.contains("default 127.0.0.1(backend)->"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{}(redis)", echo.port)), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_template_merges_a_raw_listener_into_the_default_config() {
    let h = Harness::start().await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_instance("redis-1", echo.port, 6379, "v1")).await;
    let (outbound, extra) = (free_port(), free_port());
    h.apply(&format!(
        "type: ProxyTemplate\nmesh: default\nname: extra-listener\nselectors:\n- match:\n    service: backend\nconf:\n  imports:\n  - default-proxy\n  resources:\n  - name: extra\n    version: v1\n    resource: |\n      '@type': type.googleapis.com/envoy.config.listener.v3.Listener\n      name: extra\n      address:\n        socket_address:\n          address: 127.0.0.1\n          port_value: {extra}\n      filter_chains:\n      - filters:\n        - name: envoy.filters.network.tcp_proxy\n          typed_config:\n            '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n            stat_prefix: extra\n            cluster: redis\n"
    ))
    .await;
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let _backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "r:");
    must_echo_through(extra, "r:");
}
