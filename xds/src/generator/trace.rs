//! TrafficTrace: the selected dataplane's HTTP listeners report spans to the mesh's zipkin
//! backend (the mesh's default backend when the policy names none), sampled at the backend's
//! `sampling` percentage, through a cluster `tracing:<backend>` to the collector.

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::trace::v3::tracing::http::ConfigType;
use envoy_types::pb::envoy::config::trace::v3::tracing::Http;
use envoy_types::pb::envoy::config::trace::v3::zipkin_config::CollectorEndpointVersion;
use envoy_types::pb::envoy::config::trace::v3::ZipkinConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing;
use envoy_types::pb::envoy::r#type::v3::Percent;
use envoy_types::util::pack_any;
use kuma_model::policy::TrafficTraceSpec;
use kuma_model::selection::Selected;

use super::envoy::{load_assignment_of, pb_duration, CONNECT_TIMEOUT};
use super::MeshContext;

const ZIPKIN: &str = "envoy.tracers.zipkin";

/// A zipkin collector as Envoy reaches it.
#[derive(Clone, Debug, PartialEq)]
pub struct ZipkinBackend {
    /// The cluster of the collector: `tracing:<backend>`.
    pub cluster: String,
    pub host: String,
    pub port: u16,
    pub path: String,
    /// Percent of requests traced, 0-100.
    pub sampling: f64,
    pub trace_id_128bit: bool,
}

/// Splits `http://host:port/path`; the port is required (validation says so).
fn parse_url(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].to_string()),
        None => (rest, "/api/v2/spans".to_string()),
    };
    let (host, port) = authority.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Some((host, port.parse().ok()?, path))
}

/// The backend the chosen TrafficTrace sends to; `None` when it does not exist or is not zipkin.
pub fn backend(
    mesh: &MeshContext,
    selected: &Selected<'_, TrafficTraceSpec>,
) -> Option<ZipkinBackend> {
    let tracing = mesh.spec.tracing.as_ref()?;
    let named = selected.policy.spec.conf.as_ref().and_then(|c| c.backend.as_deref());
    let wanted = super::chosen_backend(named, tracing.default_backend.as_deref())?;
    let backend = tracing.backends.iter().find(|b| b.name == wanted)?;
    if backend.kind.as_deref().is_some_and(|k| k != "zipkin") {
        return None;
    }
    let conf = backend.conf.as_ref().or(backend.zipkin.as_ref())?;
    let (host, port, path) = parse_url(conf.url.as_deref()?)?;
    Some(ZipkinBackend {
        cluster: format!("tracing:{}", backend.name),
        host,
        port,
        path,
        sampling: backend.sampling.unwrap_or(100.0).clamp(0.0, 100.0),
        trace_id_128bit: conf.trace_id_128bit.unwrap_or(false),
    })
}

/// The collector's cluster (the host may be a name, resolved by Envoy).
pub fn collector_cluster(backend: &ZipkinBackend) -> Cluster {
    let address = Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: backend.host.clone(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(backend.port))),
            ..Default::default()
        })),
    };
    Cluster {
        name: backend.cluster.clone(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32)),
        connect_timeout: Some(pb_duration(CONNECT_TIMEOUT)),
        load_assignment: Some(load_assignment_of(&backend.cluster, [address])),
        ..Default::default()
    }
}

/// The tracing of an HTTP connection manager reporting to `backend`.
pub fn tracing(backend: &ZipkinBackend) -> Tracing {
    let zipkin = ZipkinConfig {
        collector_cluster: backend.cluster.clone(),
        collector_endpoint: backend.path.clone(),
        collector_endpoint_version: CollectorEndpointVersion::HttpJson as i32,
        trace_id_128bit: backend.trace_id_128bit,
        ..Default::default()
    };
    Tracing {
        random_sampling: Some(Percent { value: backend.sampling }),
        provider: Some(Http {
            name: ZIPKIN.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_any(zipkin))),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipkin_urls_split_into_host_port_and_path() {
        assert_eq!(
            parse_url("http://zipkin.local:9411/api/v2/spans"),
            Some(("zipkin.local".into(), 9411, "/api/v2/spans".into()))
        );
        assert_eq!(
            parse_url("http://127.0.0.1:9411"),
            Some(("127.0.0.1".into(), 9411, "/api/v2/spans".into()))
        );
        assert_eq!(parse_url("zipkin:9411"), None);
    }
}
