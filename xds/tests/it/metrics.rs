//! Dataplane metrics: a mesh's prometheus backend gives every dataplane's Envoy a listener that
//! serves Envoy's stats in Prometheus format; a real Envoy answers on the port and path, and the
//! listener goes when the backend does.

use std::path::PathBuf;
use std::time::Duration;

use kuma_model::{parse_resource, DataplaneSpec, MeshSpec};
use kuma_test_support::{free_port, http_get, try_poll_until, Envoy};
use kuma_xds::generator::metrics::{prometheus_endpoint, PrometheusEndpoint, METRICS_LISTENER};
use kuma_xds::generator::{generate, MeshContext, Proxy};
use kuma_xds::XdsApiType;

use crate::golden::render;
use crate::harness::{redis_dataplane, Harness};

const LIVE: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(10);

fn dataplane(yaml: &str) -> DataplaneSpec {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    input.spec.as_dataplane().unwrap().clone()
}

fn mesh(yaml: &str) -> MeshSpec {
    serde_yaml::from_str(yaml).unwrap()
}

const REDIS: &str = "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  address: 10.0.0.1\n  inbound:\n  - port: 9000\n    servicePort: 6379\n    tags:\n      service: redis\n";
const BACKEND_05: &str = "metrics:\n  enabledBackend: prometheus-1\n  backends:\n  - name: prometheus-1\n    type: prometheus\n    conf:\n      port: 1234\n      path: /non-standard-path\n";

fn config(mesh_yaml: &str, dataplane_yaml: &str) -> String {
    let spec = dataplane(dataplane_yaml);
    let context =
        MeshContext::build("default", [("redis-1", &spec)]).with_mesh(mesh(mesh_yaml), None);
    render(&generate(
        &Proxy { mesh: "default", name: "redis-1", spec: &spec, identity: None },
        &context,
    ))
}

#[test]
fn a_prometheus_backend_adds_a_listener_routing_its_path_to_envoys_admin_stats() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/redis-1-metrics.txt");
    kuma_test_support::golden::must_match(&path, &config(BACKEND_05, REDIS));
}

#[test]
fn without_an_enabled_prometheus_backend_there_is_no_metrics_listener() {
    let disabled = "metrics:\n  backends:\n  - name: prometheus-1\n    type: prometheus\n";
    for mesh_yaml in ["{}", disabled] {
        let config = config(mesh_yaml, REDIS);
        assert!(!config.contains(METRICS_LISTENER), "{mesh_yaml}: {config}");
    }
}

#[test]
fn the_endpoint_takes_the_dataplanes_settings_over_the_meshs_over_kumas_defaults() {
    let ip = "10.0.0.1".parse().unwrap();
    let legacy = mesh("metrics:\n  prometheus: {}\n");
    assert_eq!(
        prometheus_endpoint(&legacy, &dataplane(REDIS)),
        Some(PrometheusEndpoint { ip, port: 5670, path: "/metrics".into() })
    );
    let legacy_port = mesh("metrics:\n  prometheus:\n    port: 9999\n");
    assert_eq!(prometheus_endpoint(&legacy_port, &dataplane(REDIS)).unwrap().port, 9999);
    let own = format!("{REDIS}metrics:\n  type: prometheus\n  conf:\n    path: /own\n");
    assert_eq!(
        prometheus_endpoint(&mesh(BACKEND_05), &dataplane(&own)),
        Some(PrometheusEndpoint { ip, port: 1234, path: "/own".into() })
    );
    // A dataplane's own section only adjusts its mesh's backend: alone it turns nothing on (as
    // Kuma's GetPrometheusEndpoint), so a pod's annotations in a mesh without metrics add no
    // listener and no monitoring target.
    assert_eq!(prometheus_endpoint(&mesh("{}"), &dataplane(&own)), None);
    // The seeds' form: the address comes from the inbound interface.
    let seeds = "type: Dataplane\nmesh: default\nname: r\nnetworking:\n  inbound:\n  - interface: 127.0.0.2:9000:6379\n    tags:\n      service: redis\n";
    assert_eq!(
        prometheus_endpoint(&legacy, &dataplane(seeds)).unwrap().ip,
        "127.0.0.2".parse::<std::net::IpAddr>().unwrap()
    );
}

/// Envoy's stats at `port`/`path`, when they answer.
fn scrape(port: u16, path: &str) -> Result<String, String> {
    match http_get(port, path) {
        Ok(reply) if reply.status == 200 && reply.body.contains("envoy_") => Ok(reply.body),
        Ok(reply) => Err(format!("{}: {:.200}", reply.status, reply.body)),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_envoy_serves_its_stats_on_the_backends_port_and_path_until_the_backend_goes() {
    let h = Harness::start().await;
    let (inbound, admin, metrics) = (free_port(), free_port(), free_port());
    h.apply(&redis_dataplane("redis-1", inbound, inbound + 1)).await;
    h.apply(&format!("type: Mesh\nname: default\nmetrics:\n  enabledBackend: prom\n  backends:\n  - name: prom\n    type: prometheus\n    conf:\n      port: {metrics}\n      path: /stats-here\n")).await;
    let envoy =
        Envoy::must_start(&h.bootstrap("default", "redis-1", admin, XdsApiType::Grpc), admin);
    envoy.must_be_live(LIVE);
    let body = try_poll_until(CONVERGE, || scrape(metrics, "/stats-here"))
        .expect("Envoy serves Prometheus stats on the metrics port");
    assert!(body.contains("# TYPE envoy_"), "{body:.300}");
    let other = http_get(metrics, "/other").unwrap();
    assert_eq!(other.status, 404, "only the backend's path is served");

    h.apply(
        "type: Mesh\nname: default\nmetrics:\n  backends:\n  - name: prom\n    type: prometheus\n",
    )
    .await;
    try_poll_until(CONVERGE, || match http_get(metrics, "/stats-here") {
        Err(_) => Ok(()),
        Ok(reply) => Err(reply.status),
    })
    .expect("the listener goes with the enabled backend");
    // It may drain for a while; it is no longer active.
    let dump = envoy.config_dump("dynamic_listeners", false).unwrap();
    let active = dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["active_state"].is_object())
        .any(|c| c["name"] == METRICS_LISTENER);
    assert!(!active, "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envoy_without_an_admin_port_still_takes_the_listener_and_answers_503() {
    let h = Harness::start().await;
    let (inbound, base_id, metrics) = (free_port(), free_port(), free_port());
    h.apply(&redis_dataplane("redis-1", inbound, inbound + 1)).await;
    h.apply(&format!("type: Mesh\nname: default\nmetrics:\n  prometheus:\n    port: {metrics}\n"))
        .await;
    // No admin in the bootstrap, so no admin cluster; the port given only keeps Envoys apart.
    let _envoy =
        Envoy::must_start(&h.bootstrap("default", "redis-1", 0, XdsApiType::Grpc), base_id);
    try_poll_until(LIVE, || match http_get(metrics, "/metrics") {
        Ok(reply) if reply.status == 503 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .expect("the metrics listener answers 503 without Envoy's admin");
}
