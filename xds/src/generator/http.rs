//! HTTP listeners: an HTTP connection manager with one route to one cluster or split over
//! weighted clusters, optionally traced (TrafficTrace) and access-logged (TrafficLog). Used for
//! inbounds tagged `protocol: http` and for outbounds whose every instance is.

use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    RouteSpecifier, Tracing,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::google::protobuf::{Any, UInt32Value};
use envoy_types::util::pack_any;
use kuma_model::Tags;

/// Name Envoy knows the HTTP connection manager by.
pub const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
const ROUTER: &str = "envoy.filters.http.router";

/// Whether tags declare HTTP: `protocol: http` or `kuma.io/protocol: http`.
pub fn is_http(tags: &Tags) -> bool {
    tags.get("kuma.io/protocol").or_else(|| tags.get("protocol")) == Some("http")
}

/// An HTTP connection manager routing every request to `clusters` (one, or weighted).
pub fn connection_manager(
    stat_prefix: &str,
    route_name: &str,
    clusters: &[(&str, u32)],
    tracing: Option<Tracing>,
    log: Option<AccessLog>,
) -> Any {
    let cluster_specifier = match clusters {
        [(cluster, _)] => ClusterSpecifier::Cluster(cluster.to_string()),
        _ => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: clusters
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: name.to_string(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let route = RouteConfiguration {
        name: route_name.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: route_name.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Prefix("/".to_string())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(cluster_specifier),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    pack_any(HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(RouteSpecifier::RouteConfig(route)),
        http_filters: vec![HttpFilter {
            name: ROUTER.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        tracing,
        access_log: log.into_iter().collect(),
        ..Default::default()
    })
}
