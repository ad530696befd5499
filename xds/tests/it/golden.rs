//! Golden files for the generators: what each dataplane's Envoy config is, resource by resource.
//! Rendered from the decoded protobufs with default-valued fields left out. `GOLDEN_UPDATE=1`
//! rewrites the files; review the diff like any other change.

use std::path::PathBuf;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::Any;
use kuma_model::{parse_resource, DataplaneSpec};
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

fn render_any(any: &Any) -> String {
    let bytes = any.value.as_slice();
    if any.type_url == Cluster::type_url() {
        compact(format!("{:#?}", Cluster::decode(bytes).unwrap()))
    } else if any.type_url == ClusterLoadAssignment::type_url() {
        compact(format!("{:#?}", ClusterLoadAssignment::decode(bytes).unwrap()))
    } else if any.type_url == Listener::type_url() {
        let mut listener = Listener::decode(bytes).unwrap();
        let mut filters = String::new();
        for chain in &mut listener.filter_chains {
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
        compact(format!("{:#?}", TcpProxy::decode(bytes).unwrap()))
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
    if std::env::var_os("GOLDEN_UPDATE").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run with GOLDEN_UPDATE=1", path.display()));
    assert!(
        expected == actual,
        "{} differs from the generated config (GOLDEN_UPDATE=1 rewrites it):\n{actual}",
        path.display()
    );
}

fn dataplane(yaml: &str) -> (String, DataplaneSpec) {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    (input.key.name.clone(), input.spec.as_dataplane().unwrap().clone())
}

fn config_of(name: &str, mesh: &[(String, DataplaneSpec)]) -> String {
    let context = MeshContext::build("default", mesh.iter().map(|(n, s)| (n.as_str(), s)));
    let spec = &mesh.iter().find(|(n, _)| n == name).unwrap().1;
    render(&generate(&Proxy { mesh: "default", name, spec }, &context))
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
