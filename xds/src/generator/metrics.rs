//! Dataplane metrics: when the mesh enables a `prometheus` metrics backend (either form), every
//! dataplane's Envoy gets the listener `kuma:metrics:prometheus` on the dataplane's address at the
//! backend's port, whose only route (the backend's path) goes to Envoy's own admin
//! `/stats/prometheus` through the [`ENVOY_ADMIN_CLUSTER`]. Prometheus scrapes Envoy there, at the
//! address it finds through kuma-prometheus-sd, without reaching the admin port (which stays on
//! loopback). A Dataplane's own `metrics` section changes the port or path for it alone, in a mesh
//! that enables a backend; in a mesh without one it turns nothing on, as in Kuma.
//!
//! The admin cluster is a static cluster of the bootstrap (only the bootstrap knows the admin
//! port); an Envoy started without an admin port answers the path with 503.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::TrafficDirection;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::RouteSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use kuma_model::{DataplaneSpec, MeshSpec, MetricsBackend};

use super::envoy::{listener, socket_address, stat_prefix};
use super::http::HTTP_CONNECTION_MANAGER;

/// The listener serving a dataplane's metrics (Kuma's name).
pub const METRICS_LISTENER: &str = "kuma:metrics:prometheus";
/// The bootstrap's static cluster of Envoy's own admin server (Kuma's name).
pub const ENVOY_ADMIN_CLUSTER: &str = "kuma:envoy:admin";
/// Where Envoy's admin server serves its stats in Prometheus text format.
const ADMIN_STATS_PATH: &str = "/stats/prometheus";
/// The only metrics backend type.
const PROMETHEUS: &str = "prometheus";
/// Kuma's defaults for a prometheus backend.
pub const DEFAULT_PORT: u16 = 5670;
pub const DEFAULT_PATH: &str = "/metrics";

/// Where a dataplane's Envoy serves its metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrometheusEndpoint {
    /// The dataplane's address.
    pub ip: IpAddr,
    pub port: u16,
    pub path: String,
}

/// A prometheus backend's `port` and `path` as written.
type Conf<'a> = (Option<u32>, Option<&'a str>);

/// The mesh's enabled prometheus backend's settings, under either form.
fn mesh_prometheus(mesh: &MeshSpec) -> Option<Conf<'_>> {
    let metrics = mesh.metrics.as_ref()?;
    let conf = match &metrics.prometheus {
        Some(conf) => Some(conf),
        None => {
            let name = metrics.enabled_backend.as_ref()?;
            let backend = metrics.backends.iter().find(|b| &b.name == name)?;
            if backend.kind != PROMETHEUS {
                return None;
            }
            backend.conf.as_ref()
        }
    };
    Some(conf.map_or((None, None), |c| (c.port, c.path.as_deref())))
}

/// The dataplane's own prometheus settings, when its `metrics` section is of that type.
fn own_prometheus(dataplane: &DataplaneSpec) -> Option<Conf<'_>> {
    let own: &MetricsBackend = dataplane.metrics.as_ref()?;
    if own.kind != PROMETHEUS {
        return None;
    }
    Some(own.conf.as_ref().map_or((None, None), |c| (c.port, c.path.as_deref())))
}

/// The address a dataplane is reached at: `networking.address`, else its first inbound's.
pub fn dataplane_ip(dataplane: &DataplaneSpec) -> Option<IpAddr> {
    let address = dataplane.networking.address.as_deref();
    if let Some(ip) = address.and_then(|a| a.parse().ok()) {
        return Some(ip);
    }
    dataplane.networking.inbound.iter().find_map(|i| i.resolve(address)).map(|i| i.dataplane_ip)
}

/// Where the dataplane's metrics are served, when its mesh enables a prometheus backend: the
/// dataplane's own `metrics` settings over the mesh's over Kuma's defaults. As in Kuma, a
/// dataplane's own section only adjusts the mesh's backend; alone it turns nothing on.
pub fn prometheus_endpoint(
    mesh: &MeshSpec,
    dataplane: &DataplaneSpec,
) -> Option<PrometheusEndpoint> {
    let (mesh_port, mesh_path) = mesh_prometheus(mesh)?;
    let (own_port, own_path) = own_prometheus(dataplane).unwrap_or_default();
    let port = own_port
        .or(mesh_port)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PORT);
    let path =
        own_path.or(mesh_path).filter(|p| p.starts_with('/')).unwrap_or(DEFAULT_PATH).to_string();
    Some(PrometheusEndpoint { ip: dataplane_ip(dataplane)?, port, path })
}

/// The listener serving `endpoint`: `GET <path>` becomes `GET /stats/prometheus` on the admin
/// cluster; any other path is 404.
pub fn metrics_listener(endpoint: &PrometheusEndpoint) -> Listener {
    let route = RouteConfiguration {
        name: METRICS_LISTENER.to_string(),
        virtual_hosts: vec![VirtualHost {
            name: METRICS_LISTENER.to_string(),
            domains: vec!["*".to_string()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(PathSpecifier::Path(endpoint.path.clone())),
                    ..Default::default()
                }),
                action: Some(Action::Route(RouteAction {
                    cluster_specifier: Some(ClusterSpecifier::Cluster(
                        ENVOY_ADMIN_CLUSTER.to_string(),
                    )),
                    prefix_rewrite: ADMIN_STATS_PATH.to_string(),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        // The admin cluster is missing when Envoy runs without an admin port: the route must
        // still load (and answer 503), not make Envoy reject the listener.
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    };
    let manager = pack_any(HttpConnectionManager {
        stat_prefix: stat_prefix(METRICS_LISTENER),
        route_specifier: Some(RouteSpecifier::RouteConfig(route)),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        ..Default::default()
    });
    listener(
        METRICS_LISTENER,
        socket_address(endpoint.ip, endpoint.port),
        TrafficDirection::Inbound,
        vec![(HTTP_CONNECTION_MANAGER, manager)],
    )
}
