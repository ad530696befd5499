//! Unit tests of `config_dump.rs`.

use super::*;
use crate::generator::tls::{identity_secret, mesh_ca_secret};
use crate::raw_resource::parse_raw_resource;
use crate::snapshot::ResourceSet;

const KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nTOP-SECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n";
const CERT: &str = "-----BEGIN CERTIFICATE-----\nPUBLIC-CHAIN\n-----END CERTIFICATE-----\n";

fn raw(set: &mut ResourceSet, yaml: &str) {
    let parsed = parse_raw_resource(yaml).unwrap();
    set.add(parsed.kind, parsed.name, parsed.resource);
}

fn snapshot() -> std::sync::Arc<Snapshot> {
    let mut set = ResourceSet::default();
    raw(
        &mut set,
        "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: localhost:9000\ntype: STATIC\nconnect_timeout: 5s\n",
    );
    raw(
        &mut set,
        "'@type': type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\ncluster_name: redis\n",
    );
    raw(
        &mut set,
        r#"'@type': type.googleapis.com/envoy.config.listener.v3.Listener
name: inbound:127.0.0.1:9000
address: {socket_address: {address: 127.0.0.1, port_value: 9000}}
filter_chains:
- filters:
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      '@type': type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: localhost_9000
      cluster: localhost:9000
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      common_tls_context:
        tls_certificates:
        - certificate_chain: {inline_string: "PUBLIC-CHAIN"}
          private_key: {inline_string: "INLINE-KEY-MATERIAL"}
          password: {inline_string: "KEY-PASSWORD"}
"#,
    );
    raw(
        &mut set,
        "'@type': type.googleapis.com/envoy.config.route.v3.RouteConfiguration\nname: outbound:backend\n",
    );
    let identity = identity_secret("default", CERT, KEY);
    set.add(XdsType::Secret, identity.name.clone(), envoy_types::util::pack_any(identity));
    let ca = mesh_ca_secret("default", CERT);
    set.add(XdsType::Secret, ca.name.clone(), envoy_types::util::pack_any(ca));
    set.into_snapshot()
}

#[test]
fn every_type_is_dumped_in_envoys_order_with_its_resources_and_versions() {
    let snapshot = snapshot();
    let dump = config_dump(&snapshot).unwrap();
    let types: Vec<&str> =
        dump["configs"].as_array().unwrap().iter().map(|c| c["@type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ]
    );
    let [clusters, endpoints, listeners, routes, secrets] =
        <[Value; 5]>::try_from(dump["configs"].as_array().unwrap().clone()).unwrap();

    assert_eq!(clusters["version_info"], snapshot.get(XdsType::Cluster).version.as_str());
    let cluster = &clusters["dynamic_active_clusters"][0];
    assert_eq!(cluster["cluster"]["@type"], "type.googleapis.com/envoy.config.cluster.v3.Cluster");
    assert_eq!(cluster["cluster"]["name"], "localhost:9000");
    assert_eq!(cluster["cluster"]["connect_timeout"], "5s");
    assert_eq!(
        cluster["version_info"],
        snapshot.get(XdsType::Cluster).resources["localhost:9000"].version.as_str()
    );
    assert_eq!(
        endpoints["dynamic_endpoint_configs"][0]["endpoint_config"]["cluster_name"],
        "redis"
    );

    let listener = &listeners["dynamic_listeners"][0];
    assert_eq!(listener["name"], "inbound:127.0.0.1:9000");
    let active = &listener["active_state"]["listener"];
    assert_eq!(active["address"]["socket_address"]["port_value"], 9000);
    assert_eq!(
        active["filter_chains"][0]["filters"][0]["typed_config"]["cluster"], "localhost:9000",
        "nested Anys are unpacked: {active}"
    );
    assert_eq!(routes["dynamic_route_configs"][0]["route_config"]["name"], "outbound:backend");

    let names: Vec<&str> = secrets["dynamic_active_secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{secrets}");
}

#[test]
fn private_keys_and_passwords_are_redacted_wherever_they_are_and_certificates_kept() {
    let dump = config_dump(&snapshot()).unwrap();
    let text = dump.to_string();
    for secret in ["TOP-SECRET-KEY-MATERIAL", "INLINE-KEY-MATERIAL", "KEY-PASSWORD"] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    let secrets = &dump["configs"][4]["dynamic_active_secrets"];
    let identity = secrets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["secret"]["tls_certificate"].is_object())
        .expect("the identity secret");
    let certificate = &identity["secret"]["tls_certificate"];
    assert_eq!(certificate["private_key"], serde_json::json!({"inline_string": REDACTED}));
    assert_eq!(certificate["certificate_chain"]["inline_string"], CERT, "the chain is public");
    let inline = &dump["configs"][2]["dynamic_listeners"][0]["active_state"]["listener"]
        ["filter_chains"][0]["transport_socket"]["typed_config"]["common_tls_context"]
        ["tls_certificates"][0];
    assert_eq!(inline["private_key"]["inline_string"], REDACTED);
    assert_eq!(inline["password"]["inline_string"], REDACTED);
    assert_eq!(inline["certificate_chain"]["inline_string"], "PUBLIC-CHAIN");
}

#[test]
fn an_empty_config_is_five_empty_sections() {
    let dump = config_dump(&ResourceSet::default().into_snapshot()).unwrap();
    assert_eq!(dump["configs"].as_array().unwrap().len(), 5);
    assert!(dump["configs"][2]["dynamic_listeners"].is_null(), "{dump}");
}

fn resource(json: Value) -> kuma_model::Resource {
    let input = kuma_model::parse_resource(json).unwrap();
    kuma_model::Resource {
        key: input.key,
        spec: input.spec,
        version: kuma_model::Version("1".into()),
        creation_time: chrono::Utc::now(),
        modification_time: chrono::Utc::now(),
    }
}

#[test]
fn the_cache_has_a_config_for_a_dataplane_only_while_a_stream_of_it_is_open() {
    let cache = crate::cache::SnapshotCache::new(None);
    cache.reset(vec![
        resource(serde_json::json!({"type": "Mesh", "name": "default"})),
        resource(serde_json::json!({
            "type": "Dataplane", "mesh": "default", "name": "redis-1",
            "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}
        })),
    ]);
    let node = crate::NodeId::new("default", "redis-1");
    assert!(cache.current_config(&node).is_none(), "no stream, no config");
    let _watch = cache.subscribe(&node);
    let config = cache.current_config(&node).expect("the open stream's config");
    let dump = config_dump(&config).unwrap();
    let listeners = dump["configs"][2]["dynamic_listeners"].as_array().unwrap();
    assert!(
        listeners.iter().any(|l| l["name"].as_str().unwrap().starts_with("inbound:127.0.0.1:9000")),
        "{dump}"
    );
    cache.unsubscribe(&node);
    assert!(cache.current_config(&node).is_none(), "the stream ended");
    assert!(cache.current_config(&crate::NodeId::new("default", "web-1")).is_none());
}
