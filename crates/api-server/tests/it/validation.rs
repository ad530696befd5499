//! Every validation rule, sent through the HTTP API: the reply is 400 in Kuma's error body and
//! names exactly the violated fields.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::StatusCode;
use kuma_api_server::{ApiServer, ApiServerConfig, ServerInfo};
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use kuma_store::{ListPage, ListQuery, ResourceStore, Revision, StoreError, WatchStream};

use crate::support::{must_api, Api};

/// PUTs `yaml` (after creating `setup` resources) and checks the 400 names exactly `fields`.
async fn must_reject(setup: &[&str], yaml: &str, fields: &[&str]) {
    let api = must_api().await;
    for resource in setup {
        api.must_put_yaml(resource).await;
    }
    let reply = api.put_yaml(yaml).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.body["title"], "Could not process a resource");
    let mut expected: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    expected.sort();
    assert_eq!(reply.cause_fields(), expected, "{}", reply.body);
    for cause in reply.body["causes"].as_array().expect("causes") {
        assert!(!cause["message"].as_str().unwrap_or_default().is_empty(), "{cause}");
    }
}

macro_rules! rejects {
    ($($name:ident: [$($setup:expr),*] $yaml:expr => [$($field:expr),* $(,)?];)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                must_reject(&[$($setup),*], $yaml, &[$($field),*]).await;
            }
        )*
    };
}

const DP: &str = "type: Dataplane\nmesh: default\nname: dp-1\n";
const REDIS: &str = "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n";
const LOGGING_MESH: &str = "type: Mesh\nname: default\nlogging:\n  backends:\n  - name: file-1\n    type: file\n    conf:\n      path: /tmp/access.log\n";

fn dp(networking: &str) -> String {
    format!("{DP}networking:\n{networking}")
}

rejects! {
    // --- Dataplane
    dataplane_without_service_tag_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      version: v1\n")
        => ["networking.inbound[0].tags[\"service\"]"];
    dataplane_with_malformed_inbound_interface_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:9000\n    tags:\n      service: redis\n")
        => ["networking.inbound[0].interface"];
    dataplane_with_inbound_port_out_of_range_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:70000:6379\n    tags:\n      service: redis\n")
        => ["networking.inbound[0].interface"];
    dataplane_with_hostname_in_inbound_interface_is_rejected: []
        &dp("  inbound:\n  - interface: localhost:9000:6379\n    tags:\n      service: redis\n")
        => ["networking.inbound[0].interface"];
    dataplane_with_malformed_outbound_interface_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: \"10000\"\n    service: redis\n")
        => ["networking.outbound[0].interface"];
    dataplane_outbound_without_service_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n")
        => ["networking.outbound[0].service"];
    dataplane_without_inbound_or_gateway_is_rejected: []
        &dp("  outbound:\n  - interface: :10000\n    service: redis\n")
        => ["networking"];
    dataplane_with_inbound_and_gateway_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  gateway:\n    tags:\n      service: kong\n")
        => ["networking.gateway"];
    dataplane_mixing_interface_and_port_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    port: 8000\n    tags:\n      service: backend\n")
        => ["networking.inbound[0]"];
    dataplane_mixing_interface_and_networking_address_is_rejected: []
        &dp("  address: 10.0.0.1\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n")
        => ["networking.address"];
    dataplane_with_hostname_as_address_is_rejected: []
        &dp("  address: backend.local\n  inbound:\n  - port: 8000\n    tags:\n      service: backend\n")
        => ["networking.address"];
    dataplane_new_form_ports_out_of_range_are_rejected: []
        &dp("  address: 10.0.0.1\n  inbound:\n  - port: 0\n    servicePort: 65536\n    tags:\n      service: backend\n")
        => ["networking.inbound[0].port", "networking.inbound[0].servicePort"];
    dataplane_new_form_inbound_without_any_address_is_rejected: []
        &dp("  inbound:\n  - port: 8000\n    tags:\n      service: backend\n")
        => ["networking.inbound[0].address"];
    dataplane_new_form_outbound_without_port_is_rejected: []
        &dp("  address: 10.0.0.1\n  inbound:\n  - port: 8000\n    tags:\n      service: backend\n  outbound:\n  - service: redis\n")
        => ["networking.outbound[0].port"];
    dataplane_reusing_a_listener_address_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:10000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: 127.0.0.1:10000\n    service: redis\n")
        => ["networking.outbound[0]"];
    dataplane_forwarding_a_loopback_port_to_itself_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:9000:9000\n    tags:\n      service: echo\n")
        => ["networking.inbound[0].interface"];
    dataplane_tag_with_invalid_characters_or_empty_value_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n      version: \"v 1\"\n      team: \"\"\n      \"bad key\": x\n")
        => ["networking.inbound[0].tags[\"bad key\"]", "networking.inbound[0].tags[\"team\"]", "networking.inbound[0].tags[\"version\"]"];
    dataplane_with_unknown_protocol_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n      protocol: smtp\n")
        => ["networking.inbound[0].tags[\"protocol\"]"];
    dataplane_with_two_different_service_tags_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n      kuma.io/service: web\n")
        => ["networking.inbound[0].tags[\"kuma.io/service\"]"];
    dataplane_gateway_without_service_tag_is_rejected: []
        &dp("  gateway:\n    tags:\n      region: eu\n")
        => ["networking.gateway.tags[\"service\"]"];
    dataplane_with_several_problems_reports_every_one: []
        &dp("  inbound:\n  - interface: 127.0.0.1:9000\n    tags: {}\n  - interface: 127.0.0.1:9001:6379\n    tags:\n      service: redis\n  outbound:\n  - interface: :abc\n")
        => ["networking.inbound[0].interface", "networking.inbound[0].tags[\"service\"]", "networking.outbound[0].interface", "networking.outbound[0].service"];
    dataplane_with_unknown_field_is_rejected_at_its_path: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tag:\n      service: backend\n")
        => ["networking.inbound[0].tag"];
    dataplane_with_port_of_wrong_type_is_rejected_at_its_path: []
        &dp("  address: 10.0.0.1\n  inbound:\n  - port: eighty\n    tags:\n      service: backend\n")
        => ["networking.inbound[0].port"];

    // --- Names, meshes, the URL
    name_with_upper_case_letters_is_rejected: []
        "type: Mesh\nname: Production\n"
        => ["name"];
    mesh_scoped_resource_without_mesh_is_rejected: []
        "type: TrafficPermission\nname: tp\nsources:\n- match:\n    service: a\ndestinations:\n- match:\n    service: b\n"
        => ["mesh"];
    resource_without_type_is_rejected: []
        "mesh: default\nname: x\n"
        => ["type"];
    resource_of_unknown_type_is_rejected: []
        "type: Widget\nmesh: default\nname: x\n"
        => ["type"];

    // --- Selectors
    traffic_permission_without_sources_or_destinations_is_rejected: []
        "type: TrafficPermission\nmesh: default\nname: tp\n"
        => ["destinations", "sources"];
    traffic_permission_source_with_a_tag_other_than_service_is_rejected: []
        "type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match:\n    service: web\n    version: v1\ndestinations:\n- match:\n    service: backend\n    version: v2\n"
        => ["sources[0].match[\"version\"]"];
    selector_without_service_tag_is_rejected: []
        "type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    version: v2\n"
        => ["destinations[0].match[\"service\"]"];
    selector_with_empty_match_is_rejected: []
        "type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match: {}\ndestinations:\n- match:\n    service: '*'\n"
        => ["sources[0].match"];
    selector_with_invalid_value_is_rejected: []
        "type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match:\n    service: 'web*'\ndestinations:\n- match:\n    service: '*'\n"
        => ["sources[0].match[\"service\"]"];

    // --- TrafficRoute
    traffic_route_without_conf_is_rejected: []
        "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\n"
        => ["conf"];
    traffic_route_destination_without_service_is_rejected: []
        "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 100\n  destination:\n    version: '1.0'\n"
        => ["conf[0].destination[\"service\"]"];
    traffic_route_with_only_zero_weights_is_rejected: []
        "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 0\n  destination:\n    service: redis\n"
        => ["conf"];
    traffic_route_destination_selector_with_extra_tags_is_rejected: []
        "type: TrafficRoute\nmesh: default\nname: r\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: redis\n    version: '1'\nconf:\n- weight: 1\n  destination:\n    service: redis\n"
        => ["destinations[0].match[\"version\"]"];

    // --- TrafficLog / TrafficTrace backend references
    traffic_log_naming_an_undefined_backend_is_rejected: [LOGGING_MESH]
        "type: TrafficLog\nmesh: default\nname: l\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\nconf:\n  backend: elk\n"
        => ["conf.backend"];
    traffic_trace_without_selectors_or_known_backend_is_rejected: []
        "type: TrafficTrace\nmesh: default\nname: t\nconf:\n  backend: zipkin\n"
        => ["conf.backend", "selectors"];

    // --- ProxyTemplate
    proxy_template_with_unknown_profile_and_bad_resources_is_rejected: []
        "type: ProxyTemplate\nmesh: default\nname: pt\nselectors:\n- match:\n    service: backend\nconf:\n  imports:\n  - default-proxi\n  resources:\n  - name: a\n    version: v1\n    resource: 'not: [valid'\n  - name: a\n    version: ''\n    resource: 'name: x'\n"
        => ["conf.imports[0]", "conf.resources[0].resource", "conf.resources[1].name", "conf.resources[1].resource", "conf.resources[1].version"];

    // --- HealthCheck
    health_check_without_checks_is_rejected: []
        "type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\n"
        => ["conf"];
    health_check_with_bad_durations_and_thresholds_is_rejected: []
        "type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\nconf:\n  activeChecks:\n    interval: \"10\"\n    timeout: 0s\n    unhealthyThreshold: 0\n  passiveChecks:\n    unhealthyThreshold: 3\n    penaltyInterval: soon\n"
        => ["conf.activeChecks.healthyThreshold", "conf.activeChecks.interval", "conf.activeChecks.timeout", "conf.activeChecks.unhealthyThreshold", "conf.passiveChecks.penaltyInterval"];

    // --- Mesh
    mesh_enabling_an_undefined_ca_backend_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  enabledBackend: ca-2\n  backends:\n  - name: ca-1\n    type: builtin\n"
        => ["mtls.enabledBackend"];
    mesh_with_duplicate_or_unknown_ca_backends_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  backends:\n  - name: ca-1\n    type: builtin\n  - name: ca-1\n    type: vault\n"
        => ["mtls.backends[1].name", "mtls.backends[1].type"];
    mesh_with_provided_ca_lacking_cert_and_key_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        file: /a\n        inline: b\n"
        => ["mtls.backends[0].conf.cert", "mtls.backends[0].conf.key"];
    mesh_with_weak_builtin_ca_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  backends:\n  - name: ca-1\n    type: builtin\n    conf:\n      caCert:\n        RSAbits: 1024\n        expiration: forever\n"
        => ["mtls.backends[0].conf.caCert.RSAbits", "mtls.backends[0].conf.caCert.expiration"];
    mesh_mixing_legacy_and_backend_mtls_forms_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  enabled: true\n  ca:\n    builtin: {}\n  backends:\n  - name: ca-1\n    type: builtin\n"
        => ["mtls"];
    mesh_with_bad_logging_backends_is_rejected: []
        "type: Mesh\nname: m\nlogging:\n  defaultBackend: nope\n  backends:\n  - name: tcp-1\n    type: tcp\n    conf:\n      address: logstash\n  - name: file-1\n    type: file\n  - name: x\n    type: syslog\n"
        => ["logging.backends[0].conf.address", "logging.backends[1].conf.path", "logging.backends[2].type", "logging.defaultBackend"];
    mesh_with_bad_tracing_backend_is_rejected: []
        "type: Mesh\nname: m\ntracing:\n  backends:\n  - name: zipkin-1\n    type: zipkin\n    sampling: 101\n    conf:\n      url: http://zipkin/api/v2/spans\n      apiVersion: v3\n"
        => ["tracing.backends[0].conf.apiVersion", "tracing.backends[0].conf.url", "tracing.backends[0].sampling"];
    mesh_with_bad_metrics_backend_is_rejected: []
        "type: Mesh\nname: m\nmetrics:\n  enabledBackend: prom-2\n  backends:\n  - name: prom-1\n    type: statsd\n    conf:\n      port: 99999\n      path: metrics\n"
        => ["metrics.backends[0].conf.path", "metrics.backends[0].conf.port", "metrics.backends[0].type", "metrics.enabledBackend"];
    // --- Rules added after review
    dataplane_with_unknown_metrics_type_and_bad_redirect_port_is_rejected: []
        &format!("{}metrics:\n  name: m\n  type: statsd\n", dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  transparentProxying:\n    redirectPort: 70000\n"))
        => ["metrics.type", "networking.transparentProxying.redirectPort"];
    dataplane_outbound_with_bad_service_and_tags_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: 'red is'\n    tags:\n      version: ''\n")
        => ["networking.outbound[0].service", "networking.outbound[0].tags[\"version\"]"];
    dataplane_insight_without_id_or_with_disconnect_before_connect_is_rejected: [REDIS]
        "type: DataplaneInsight\nmesh: default\nname: redis-1\nsubscriptions:\n- id: ''\n  connectTime: '2026-01-02T00:00:00Z'\n  disconnectTime: '2026-01-01T00:00:00Z'\n"
        => ["subscriptions[0].disconnectTime", "subscriptions[0].id"];
    name_longer_than_253_characters_is_rejected: []
        &format!("type: Mesh\nname: {}\n", "a".repeat(254))
        => ["name"];
    mesh_name_with_a_dot_is_rejected: []
        "type: Mesh\nname: prod.eu\n"
        => ["name"];
    resource_in_a_mesh_with_invalid_characters_is_rejected: []
        "type: TrafficPermission\nmesh: Prod\nname: tp\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n"
        => ["mesh"];
    unquoted_decimal_tag_value_is_rejected: []
        &dp("  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n      version: 1.10\n")
        => ["networking.inbound[0].tags[\"version\"]"];
    kuma_0_2_rules_form_is_rejected_with_a_hint: []
        "type: TrafficPermission\nmesh: default\nname: tp\nrules:\n- sources:\n  - match:\n      service: '*'\n  destinations:\n  - match:\n      service: '*'\n"
        => ["rules"];
    mesh_legacy_ca_with_both_or_neither_kind_is_rejected: []
        "type: Mesh\nname: m\nmtls:\n  enabled: true\n  ca:\n    builtin: {}\n    provided: {}\n"
        => ["mtls.ca"];
    mesh_ca_certificate_settings_in_the_wrong_place_are_rejected: []
        "type: Mesh\nname: m\nmtls:\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 0s\n    conf:\n      cert:\n        file: /a\n"
        => ["mtls.backends[0].conf", "mtls.backends[0].dpCert.rotation.expiration"];
    mesh_mixing_logging_tracing_and_metrics_forms_is_rejected: []
        "type: Mesh\nname: m\nlogging:\n  backends:\n  - name: l\n    type: file\n    file:\n      path: /tmp/a\ntracing:\n  backends:\n  - name: t\n    type: zipkin\n    zipkin:\n      url: http://z:9411/api\nmetrics:\n  prometheus:\n    port: 5670\n  backends:\n  - name: p\n    type: prometheus\n"
        => ["logging.backends[0]", "metrics", "tracing.backends[0]"];
}

#[tokio::test]
async fn the_kuma_0_2_rules_form_is_explained() {
    let api = must_api().await;
    let reply = api.put_yaml("type: TrafficRoute\nmesh: default\nname: r\nrules: []\n").await;
    let message = reply.body["causes"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("write sources, destinations and conf at the top level"), "{message}");
}

#[tokio::test]
async fn resource_in_a_missing_mesh_is_rejected_with_mesh_not_found() {
    let api = must_api().await;
    let reply = api.put_yaml("type: TrafficPermission\nmesh: ghost\nname: tp\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["details"], "Mesh is not found");
    assert_eq!(reply.cause_fields(), ["mesh"]);
}

#[tokio::test]
async fn body_that_disagrees_with_the_url_is_rejected_field_by_field() {
    let api = must_api().await;
    let body = serde_json::json!({"type": "Dataplane", "mesh": "other", "name": "dp-2",
        "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}});
    let reply = api.put_json("/meshes/default/traffic-routes/dp-1", &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.cause_fields(), ["mesh", "name", "type"]);
}

#[tokio::test]
async fn the_seeds_resources_are_accepted() {
    let api = must_api().await;
    for yaml in [
        "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n",
        "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: redis\n",
        "type: Dataplane\nmesh: default\nname: web-01\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:11011:11012\n    tags:\n      service: backend\n  outbound:\n  - interface: :33033\n    service: redis\n",
        "type: Dataplane\nmesh: default\nname: web-02\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 8080\n    servicePort: 80\n    tags:\n      kuma.io/service: web\n      version: 2\n  outbound:\n  - port: 10001\n    service: redis\n",
        "type: Mesh\nname: prod\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n    dpCert:\n      rotation:\n        expiration: 1d\n    conf:\n      caCert:\n        RSAbits: 2048\n        expiration: 10y\nlogging:\n  defaultBackend: file-1\n  backends:\n  - name: file-1\n    type: file\n    conf:\n      path: /tmp/access.log\n  - name: logstash\n    format: '%START_TIME%'\n    type: tcp\n    conf:\n      address: 127.0.0.1:5000\ntracing:\n  defaultBackend: zipkin-1\n  backends:\n  - name: zipkin-1\n    sampling: 100.0\n    type: zipkin\n    conf:\n      url: http://zipkin.local:9411/api/v2/spans\nmetrics:\n  enabledBackend: prometheus-1\n  backends:\n  - name: prometheus-1\n    type: prometheus\n    conf:\n      port: 5670\n      path: /metrics\n",
        "type: Mesh\nname: legacy\nmtls:\n  enabled: true\n  ca:\n    builtin: {}\n",
        "type: TrafficPermission\nmesh: default\nname: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n",
        "type: TrafficRoute\nmesh: default\nname: route-example\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n    version: '1.0'\n- weight: 10\n  destination:\n    service: redis\n    version: '2.0'\n",
        "type: HealthCheck\nmesh: default\nname: hc\nsources:\n- match:\n    service: web\ndestinations:\n- match:\n    service: backend\nconf:\n  activeChecks:\n    interval: 10s\n    timeout: 2s\n    unhealthyThreshold: 3\n    healthyThreshold: 1\n",
        "type: ProxyTemplate\nmesh: default\nname: pt\nselectors:\n- match:\n    service: backend\nconf:\n  imports:\n  - default-proxy\n  resources:\n  - name: raw\n    version: v1\n    resource: |\n      '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n      name: localhost:8443\n",
        "type: TrafficTrace\nmesh: default\nname: tt\nselectors:\n- match:\n    service: '*'\n",
        // No selectors: applies to every dataplane of the mesh.
        "type: ProxyTemplate\nmesh: default\nname: everywhere\nconf:\n  imports:\n  - default-proxy\n",
        // Kuma 0.4's forms of the mesh backends.
        "type: Mesh\nname: legacy-backends\nmtls:\n  enabled: false\n  ca:\n    provided: {}\nlogging:\n  defaultBackend: file\n  backends:\n  - name: file\n    file:\n      path: /tmp/access.log\n  - name: logstash\n    tcp:\n      address: 127.0.0.1:5000\ntracing:\n  defaultBackend: zipkin\n  backends:\n  - name: zipkin\n    sampling: 50\n    zipkin:\n      url: http://zipkin:9411/api/v1/spans\n      apiVersion: httpJsonV1\nmetrics:\n  prometheus:\n    port: 1234\n    path: /metrics\n",
    ] {
        let reply = api.put_yaml(yaml).await;
        assert_eq!(reply.status, StatusCode::CREATED, "{yaml}\n{}", reply.body);
    }
}

/// A peer's copy of the store that does not yet hold the meshes written through another peer:
/// they appear once `sync` (the read index) has run.
struct LaggingReplica {
    inner: Arc<dyn ResourceStore>,
    synced: AtomicBool,
}

#[async_trait::async_trait]
impl ResourceStore for LaggingReplica {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        if key.resource_type == ResourceType::Mesh && !self.synced.load(Ordering::SeqCst) {
            return Err(StoreError::NotFound { key: key.clone() });
        }
        self.inner.get(key).await
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.inner.list(query).await
    }
    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        self.inner.create(key, spec).await
    }
    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        self.inner.update(key, spec, expected).await
    }
    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        self.inner.delete(key, expected).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        self.inner.watch(from).await
    }
    async fn sync(&self) -> Result<(), StoreError> {
        self.synced.store(true, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_write_into_a_mesh_this_peer_has_not_applied_yet_is_taken_after_a_sync() {
    let api = must_api().await;
    let lagging = Arc::new(LaggingReplica { inner: api.store.clone(), synced: false.into() });
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(lagging.clone(), ApiServerConfig::default(), info).router();
    let api = Api { router, ..api };

    api.must_put_yaml("type: TrafficPermission\nmesh: default\nname: tp\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n").await;

    assert!(lagging.synced.load(Ordering::SeqCst), "the miss was checked again after a sync");
    let key = ResourceKey::new(ResourceType::TrafficPermission, "default", "tp");
    assert!(api.store.get(&key).await.is_ok());
}
