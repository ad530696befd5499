//! Golden files for the generators: what each dataplane's Envoy config is, resource by resource.
//! Rendered from the decoded protobufs with default-valued fields left out. `GOLDEN_UPDATE=1`
//! rewrites the files; review the diff like any other change.

use std::path::PathBuf;

use envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType as LogConfig;
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as SocketConfig;
use envoy_types::pb::envoy::config::core::v3::TransportSocket;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::TcpGrpcAccessLogConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType as TracerConfig;
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, Secret, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::Any;
use kuma_ca::{IssuedCert, MeshCa, BUILTIN_CA_VALIDITY};
use kuma_model::{parse_resource, DataplaneSpec, MeshSpec, Resource, Version};
use kuma_xds::generator::{generate, MeshContext, Proxy};
use kuma_xds::{ResourceSet, XdsType};
use prost::{Message, Name};

/// Debug output without the lines of fields left at their defaults.
fn compact(debug: String) -> String {
    const DEFAULTS: [&str; 7] =
        [": None,", ": [],", ": 0,", ": false,", ": \"\",", ": {},", ": 0.0,"];
    debug
        .lines()
        .filter(|line| !DEFAULTS.iter().any(|d| line.trim_end().ends_with(d)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Takes a transport socket's typed config out, to render it decoded after its owner.
fn take_socket(socket: &mut Option<TransportSocket>, rendered: &mut String) {
    if let Some(SocketConfig::TypedConfig(config)) =
        socket.as_mut().and_then(|s| s.config_type.take())
    {
        rendered.push_str(&format!("\ntransport socket:\n{}", render_any(&config)));
    }
}

/// PEM text differs on every run (fresh keys); the goldens show where it goes, not what it is.
fn mask_pem(debug: String) -> String {
    let mut out = String::new();
    let mut rest = debug.as_str();
    while let Some(start) = rest.find("\"-----BEGIN") {
        out.push_str(&rest[..start]);
        let end = rest[start + 1..].find('"').map_or(rest.len(), |e| start + e + 2);
        out.push_str("\"<PEM>\"");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn render_any(any: &Any) -> String {
    let bytes = any.value.as_slice();
    if any.type_url == Cluster::type_url() {
        let mut cluster = Cluster::decode(bytes).unwrap();
        let mut socket = String::new();
        take_socket(&mut cluster.transport_socket, &mut socket);
        let mut options: Vec<_> =
            std::mem::take(&mut cluster.typed_extension_protocol_options).into_iter().collect();
        options.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, any) in options {
            socket.push_str(&format!("\nprotocol options {name}:\n{}", render_any(&any)));
        }
        compact(format!("{cluster:#?}")) + &socket
    } else if any.type_url == Rbac::type_url() {
        compact(format!("{:#?}", Rbac::decode(bytes).unwrap()))
    } else if any.type_url == Secret::type_url() {
        mask_pem(compact(format!("{:#?}", Secret::decode(bytes).unwrap())))
    } else if any.type_url == DownstreamTlsContext::type_url() {
        compact(format!("{:#?}", DownstreamTlsContext::decode(bytes).unwrap()))
    } else if any.type_url == UpstreamTlsContext::type_url() {
        compact(format!("{:#?}", UpstreamTlsContext::decode(bytes).unwrap()))
    } else if any.type_url == ClusterLoadAssignment::type_url() {
        compact(format!("{:#?}", ClusterLoadAssignment::decode(bytes).unwrap()))
    } else if any.type_url == Listener::type_url() {
        let mut listener = Listener::decode(bytes).unwrap();
        let mut filters = String::new();
        for chain in &mut listener.filter_chains {
            take_socket(&mut chain.transport_socket, &mut filters);
            for filter in &mut chain.filters {
                if let Some(ConfigType::TypedConfig(config)) = filter.config_type.take() {
                    filters.push_str(&format!(
                        "\nfilter {}:\n{}",
                        filter.name,
                        render_any(&config)
                    ));
                }
            }
        }
        compact(format!("{listener:#?}")) + &filters
    } else if any.type_url == TcpProxy::type_url() {
        let mut proxy = TcpProxy::decode(bytes).unwrap();
        let mut logs = String::new();
        for log in &mut proxy.access_log {
            if let Some(LogConfig::TypedConfig(config)) = log.config_type.take() {
                logs.push_str(&format!("\naccess log {}:\n{}", log.name, render_any(&config)));
            }
        }
        compact(format!("{proxy:#?}")) + &logs
    } else if any.type_url == HttpConnectionManager::type_url() {
        let mut manager = HttpConnectionManager::decode(bytes).unwrap();
        let mut inner = String::new();
        for filter in &mut manager.http_filters {
            if let Some(HttpFilterConfig::TypedConfig(config)) = filter.config_type.take() {
                inner.push_str(&format!("\nhttp filter {}: {}", filter.name, config.type_url));
            }
        }
        if let Some(provider) = manager.tracing.as_mut().and_then(|t| t.provider.as_mut()) {
            if let Some(TracerConfig::TypedConfig(config)) = provider.config_type.take() {
                let zipkin = ZipkinConfig::decode(config.value.as_slice()).unwrap();
                inner.push_str(&format!(
                    "\ntracer {}:\n{}",
                    provider.name,
                    compact(format!("{zipkin:#?}"))
                ));
            }
        }
        for log in &mut manager.access_log {
            if let Some(LogConfig::TypedConfig(config)) = log.config_type.take() {
                inner.push_str(&format!("\naccess log {}:\n{}", log.name, render_any(&config)));
            }
        }
        compact(format!("{manager:#?}")) + &inner
    } else if any.type_url == FileAccessLog::type_url() {
        compact(format!("{:#?}", FileAccessLog::decode(bytes).unwrap()))
    } else if any.type_url == HttpProtocolOptions::type_url() {
        compact(format!("{:#?}", HttpProtocolOptions::decode(bytes).unwrap()))
    } else if any.type_url == TcpGrpcAccessLogConfig::type_url() {
        compact(format!("{:#?}", TcpGrpcAccessLogConfig::decode(bytes).unwrap()))
    } else {
        panic!("no renderer for {}", any.type_url)
    }
}

pub fn render(set: &ResourceSet) -> String {
    let mut out = String::new();
    for kind in XdsType::ALL {
        for (name, any) in set.get(kind) {
            out.push_str(&format!("=== {} {name}\n{}\n", kind.short_name(), render_any(any)));
        }
    }
    out
}

fn must_match_golden(file: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(file);
    kuma_test_support::golden::must_match(&path, actual);
}

fn dataplane(yaml: &str) -> (String, DataplaneSpec) {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    (input.key.name.clone(), input.spec.as_dataplane().unwrap().clone())
}

fn config_of(name: &str, mesh: &[(String, DataplaneSpec)]) -> String {
    let context = MeshContext::build("default", mesh.iter().map(|(n, s)| (n.as_str(), s)));
    let spec = &mesh.iter().find(|(n, _)| n == name).unwrap().1;
    render(&generate(&Proxy { mesh: "default", name, spec, identity: None }, &context))
}

/// A policy (or other resource) as the store would hold it, created at second `created`.
pub fn stored(yaml: &str, created: i64) -> Resource {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    let time = chrono::DateTime::from_timestamp(1_700_000_000 + created, 0).unwrap();
    Resource {
        key: input.key,
        spec: input.spec,
        version: Version("1".into()),
        creation_time: time,
        modification_time: time,
    }
}

/// The config of `name` in a mesh with `mesh_yaml` (a Mesh spec), `policies` and, when mTLS is
/// on, a fresh CA and identity.
fn config_with(
    name: &str,
    mesh: &[(String, DataplaneSpec)],
    mesh_yaml: &str,
    policies: Vec<Resource>,
) -> String {
    let spec: MeshSpec = serde_yaml::from_str(mesh_yaml).unwrap();
    let ca = spec.mtls_enabled().then(|| MeshCa::generate("default", BUILTIN_CA_VALIDITY).unwrap());
    let identity = ca.as_ref().map(|ca| {
        ca.issue_identity("default", &["x"], std::time::Duration::from_secs(60)).unwrap()
    });
    let context = MeshContext::build("default", mesh.iter().map(|(n, s)| (n.as_str(), s)))
        .with_mesh(spec, ca)
        .with_policies(policies);
    let dp = &mesh.iter().find(|(n, _)| n == name).unwrap().1;
    let identity: Option<&IssuedCert> = identity.as_ref();
    render(&generate(&Proxy { mesh: "default", name, spec: dp, identity }, &context))
}

const MTLS_MESH: &str =
    "mtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n";

#[test]
fn with_mtls_inbounds_require_a_mesh_certificate_and_secrets_are_served() {
    must_match_golden(
        "redis-1-mtls.txt",
        &config_with("redis-1", &seeds_mesh(), MTLS_MESH, vec![]),
    );
}

#[test]
fn with_mtls_outbound_clusters_verify_the_exact_spiffe_id_of_their_service() {
    must_match_golden(
        "backend-1-mtls.txt",
        &config_with("backend-1", &seeds_mesh(), MTLS_MESH, vec![]),
    );
}

#[test]
fn with_mtls_the_most_specific_permission_of_an_inbound_becomes_its_rbac_filter() {
    let policies = vec![
        stored("type: TrafficPermission\nmesh: default\nname: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n", 2),
        stored("type: TrafficPermission\nmesh: default\nname: backend-to-redis\nsources:\n- match:\n    service: backend\n- match:\n    service: admin\ndestinations:\n- match:\n    service: redis\n", 1),
    ];
    must_match_golden(
        "redis-1-permission.txt",
        &config_with("redis-1", &seeds_mesh(), MTLS_MESH, policies),
    );
}

#[test]
fn without_mtls_permissions_are_not_enforced() {
    let policies = vec![stored("type: TrafficPermission\nmesh: default\nname: backend-to-redis\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\n", 1)];
    assert_eq!(
        config_with("redis-1", &seeds_mesh(), "{}", policies),
        config_of("redis-1", &seeds_mesh())
    );
}

#[test]
fn a_traffic_route_splits_an_outbound_over_weighted_clusters_of_tagged_subsets() {
    let route = stored("type: TrafficRoute\nmesh: default\nname: canary\nsources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\nconf:\n- weight: 90\n  destination:\n    service: redis\n- weight: 10\n  destination:\n    service: redis\n    version: v2\n", 1);
    must_match_golden(
        "backend-1-route.txt",
        &config_with("backend-1", &seeds_mesh(), "{}", vec![route]),
    );
}

#[test]
fn a_health_check_adds_active_tcp_checks_to_the_clusters_of_its_destination() {
    let check = stored("type: HealthCheck\nmesh: default\nname: redis-check\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: redis\nconf:\n  activeChecks:\n    interval: 1s\n    timeout: 500ms\n    unhealthyThreshold: 2\n    healthyThreshold: 1\n", 1);
    must_match_golden(
        "backend-1-health-check.txt",
        &config_with("backend-1", &seeds_mesh(), "{}", vec![check]),
    );
}

#[test]
fn a_traffic_log_adds_a_file_access_log_naming_source_and_destination() {
    let mesh = "logging:\n  defaultBackend: file\n  backends:\n  - name: file\n    type: file\n    conf:\n      path: /tmp/access.log\n";
    let log = stored("type: TrafficLog\nmesh: default\nname: all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: redis\n", 1);
    must_match_golden(
        "backend-1-traffic-log.txt",
        &config_with("backend-1", &seeds_mesh(), mesh, vec![log]),
    );
}

#[test]
fn a_traffic_log_to_a_tcp_backend_streams_entries_to_the_kuma_dp_sink_over_a_unix_socket() {
    let mesh = "logging:\n  defaultBackend: file\n  backends:\n  - name: file\n    type: file\n    conf:\n      path: /tmp/access.log\n  - name: logstash\n    type: tcp\n    conf:\n      address: 127.0.0.1:5000\n";
    let log = stored("type: TrafficLog\nmesh: default\nname: all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: redis\nconf:\n  backend: logstash\n", 1);
    must_match_golden(
        "backend-1-traffic-log-tcp.txt",
        &config_with("backend-1", &seeds_mesh(), mesh, vec![log]),
    );
}

fn http_mesh() -> Vec<(String, DataplaneSpec)> {
    vec![
        dataplane("type: Dataplane\nmesh: default\nname: api-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9100:8080\n    tags:\n      service: api\n      protocol: http\n"),
        dataplane("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9200:8081\n    tags:\n      service: web\n      protocol: http\n  outbound:\n  - interface: :10100\n    service: api\n  - interface: :10101\n    service: redis\n"),
        dataplane("type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n"),
    ]
}

#[test]
fn a_traffic_trace_traces_http_inbounds_and_outbounds_to_the_zipkin_backend() {
    let mesh = "tracing:\n  defaultBackend: zipkin-1\n  backends:\n  - name: zipkin-1\n    type: zipkin\n    sampling: 50\n    conf:\n      url: http://zipkin.local:9411/api/v2/spans\n";
    let trace = stored("type: TrafficTrace\nmesh: default\nname: trace-web\nselectors:\n- match:\n    service: web\n", 1);
    must_match_golden("web-1-trace.txt", &config_with("web-1", &http_mesh(), mesh, vec![trace]));
}

#[test]
fn without_a_traffic_trace_http_listeners_are_not_traced() {
    must_match_golden("web-1-http.txt", &config_with("web-1", &http_mesh(), "{}", vec![]));
}

const RAW_CLUSTER: &str = "    resource: |\n      '@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\n      name: extra\n      connect_timeout: 2s\n      type: STATIC\n";

#[test]
fn a_proxy_template_importing_default_proxy_adds_its_raw_resources() {
    let template = stored(&format!("type: ProxyTemplate\nmesh: default\nname: pt\nconf:\n  imports:\n  - default-proxy\n  resources:\n  - name: extra\n    version: v1\n{RAW_CLUSTER}"), 1);
    must_match_golden(
        "redis-1-proxy-template.txt",
        &config_with("redis-1", &seeds_mesh(), "{}", vec![template]),
    );
}

#[test]
fn a_proxy_template_without_imports_gives_only_its_raw_resources() {
    let template = stored(&format!("type: ProxyTemplate\nmesh: default\nname: pt\nconf:\n  resources:\n  - name: extra\n    version: v1\n{RAW_CLUSTER}"), 1);
    let config = config_with("redis-1", &seeds_mesh(), "{}", vec![template]);
    assert!(config.starts_with("=== cds extra\n"), "{config}");
    assert_eq!(config.matches("=== ").count(), 1, "{config}");
}

fn seeds_mesh() -> Vec<(String, DataplaneSpec)> {
    vec![
        dataplane("type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n"),
        dataplane("type: Dataplane\nmesh: default\nname: redis-2\nnetworking:\n  address: 10.0.0.2\n  inbound:\n  - port: 9000\n    servicePort: 6379\n    tags:\n      kuma.io/service: redis\n      version: v2\n"),
        dataplane("type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:8000:80\n    tags:\n      service: backend\n  outbound:\n  - interface: :10000\n    service: redis\n  - interface: 127.0.0.1:10001\n    service: redis\n  - port: 10002\n    service: web\n"),
    ]
}

#[test]
fn inbound_only_dataplane_forwards_to_its_local_workload() {
    must_match_golden("redis-1.txt", &config_of("redis-1", &seeds_mesh()));
}

#[test]
fn outbounds_reach_every_instance_of_their_service_in_both_dataplane_forms() {
    must_match_golden("backend-1.txt", &config_of("backend-1", &seeds_mesh()));
}

#[test]
fn the_same_mesh_in_another_order_gives_the_same_config() {
    let mut reversed = seeds_mesh();
    reversed.reverse();
    assert_eq!(config_of("backend-1", &reversed), config_of("backend-1", &seeds_mesh()));
}
