//! Small builders for the Envoy messages every generator uses.

use std::net::IpAddr;
use std::time::Duration;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, EdsClusterConfig,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, SocketAddress, TrafficDirection,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener};
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::{
    ClusterSpecifier, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use envoy_types::pb::google::protobuf::{Any, Duration as PbDuration};
use envoy_types::util::pack_any;

/// How long Envoy waits for a TCP connection to an upstream (Kuma's default).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub fn socket_address(ip: IpAddr, port: u16) -> Address {
    Address {
        address: Some(AddressKind::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..Default::default()
        })),
    }
}

pub fn pb_duration(d: Duration) -> PbDuration {
    PbDuration { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 }
}

/// Resources of any kind come from the aggregated stream.
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// A cluster with fixed endpoints.
pub fn static_cluster(name: &str, endpoints: &[(IpAddr, u16)]) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(pb_duration(CONNECT_TIMEOUT)),
        load_assignment: Some(load_assignment(name, endpoints)),
        ..Default::default()
    }
}

/// A cluster whose endpoints come over EDS, under the cluster's own name.
pub fn eds_cluster(name: &str) -> Cluster {
    Cluster {
        name: name.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)),
        connect_timeout: Some(pb_duration(CONNECT_TIMEOUT)),
        eds_cluster_config: Some(EdsClusterConfig {
            eds_config: Some(ads_config_source()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Endpoints of a cluster, all in one locality, in the order given.
pub fn load_assignment(cluster: &str, endpoints: &[(IpAddr, u16)]) -> ClusterLoadAssignment {
    load_assignment_of(cluster, endpoints.iter().map(|(ip, port)| socket_address(*ip, *port)))
}

/// Endpoints of a cluster at any kind of address (a host name, a unix socket), all in one
/// locality, in the order given.
pub fn load_assignment_of(
    cluster: &str,
    addresses: impl IntoIterator<Item = Address>,
) -> ClusterLoadAssignment {
    let lb_endpoints = addresses
        .into_iter()
        .map(|address| LbEndpoint {
            host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                address: Some(address),
                ..Default::default()
            })),
            ..Default::default()
        })
        .collect();
    ClusterLoadAssignment {
        cluster_name: cluster.to_string(),
        endpoints: vec![LocalityLbEndpoints { lb_endpoints, ..Default::default() }],
        ..Default::default()
    }
}

/// A TCP proxy to one cluster, or split over weighted clusters, with an optional access log.
pub fn tcp_proxy_to(stat_prefix: &str, clusters: &[(&str, u32)], log: Option<AccessLog>) -> Any {
    let cluster_specifier = match clusters {
        [(cluster, _)] => ClusterSpecifier::Cluster(cluster.to_string()),
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: name.to_string(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    pack_any(TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster_specifier),
        access_log: log.into_iter().collect(),
        ..Default::default()
    })
}

pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Any {
    pack_any(TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    })
}

/// A listener with one filter chain of network filters, in order.
pub fn listener(
    name: &str,
    address: Address,
    direction: TrafficDirection,
    filters: Vec<(&str, Any)>,
) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(address),
        traffic_direction: direction as i32,
        filter_chains: vec![FilterChain {
            filters: filters
                .into_iter()
                .map(|(name, config)| Filter {
                    name: name.to_string(),
                    config_type: Some(ConfigType::TypedConfig(config)),
                })
                .collect(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Envoy's stat names may not contain ':'; Kuma replaces it with '_'.
pub fn stat_prefix(name: &str) -> String {
    name.replace(':', "_")
}

pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
