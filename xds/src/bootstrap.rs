//! The bootstrap server: `POST /bootstrap` gives kuma-dp the Envoy config to start with: the node
//! id `<mesh>.<name>`, the admin address, and ADS to an `ads_cluster` listing the xDS address of
//! every control-plane peer, so Envoy reconnects to another peer when its stream breaks.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Json, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kuma_model::rest::ErrorBody;
use kuma_model::{ResourceKey, ResourceType};
use kuma_store::{ResourceStore, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::{BootstrapParams, XdsApiType};

/// What kuma-dp sends. Unknown fields are accepted: newer kuma-dp versions send more.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest {
    #[serde(default = "default_mesh")]
    pub mesh: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub admin_port: u32,
    #[serde(default)]
    pub dataplane_token_path: String,
}

fn default_mesh() -> String {
    "default".to_string()
}

/// One control-plane peer's ADS address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsAddress {
    pub host: String,
    pub port: u16,
}

/// The xDS addresses of every control-plane peer this peer knows, itself included. Given the host
/// kuma-dp used to reach this peer, for peers that do not advertise one.
pub trait XdsPeers: Send + Sync + 'static {
    fn xds_addresses(&self, request_host: &str) -> Vec<XdsAddress>;
}

/// A control plane of one peer: its own address only.
#[derive(Clone, Debug)]
pub struct SinglePeer {
    /// Advertised host; empty means the host of the bootstrap request.
    pub host: String,
    pub port: u16,
}

impl XdsPeers for SinglePeer {
    fn xds_addresses(&self, request_host: &str) -> Vec<XdsAddress> {
        let host = if self.host.is_empty() { request_host } else { &self.host };
        vec![XdsAddress { host: host.to_string(), port: self.port }]
    }
}

/// Builds the Envoy bootstrap (as a JSON value; served as YAML).
pub fn generate(
    request: &BootstrapRequest,
    params: &BootstrapParams,
    peers: &[XdsAddress],
    service: &str,
) -> Value {
    let all_ips = peers.iter().all(|p| p.host.parse::<IpAddr>().is_ok());
    let endpoints: Vec<Value> = peers
        .iter()
        .map(|p| {
            json!({"endpoint": {"address": {"socket_address": {
                "address": p.host, "port_value": p.port}}}})
        })
        .collect();
    let connect_timeout = format!("{}s", params.xds_connect_timeout.as_secs_f64());
    let api_type = match params.xds_api_type {
        XdsApiType::Grpc => "GRPC",
        XdsApiType::DeltaGrpc => "DELTA_GRPC",
    };
    let mut bootstrap = json!({
        "node": {
            "id": format!("{}.{}", request.mesh, request.name),
            "cluster": service,
            "metadata": {
                "dataplane.admin.port": request.admin_port.to_string(),
                "dataplane.token.path": request.dataplane_token_path,
            },
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [{"envoy_grpc": {"cluster_name": "ads_cluster"}}],
            },
            // Wait for the control plane however long it takes: "ready" must mean "configured".
            "cds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
            "lds_config": {"ads": {}, "resource_api_version": "V3", "initial_fetch_timeout": "0s"},
        },
        "static_resources": {
            "clusters": [{
                "name": "ads_cluster",
                "type": if all_ips { "STATIC" } else { "STRICT_DNS" },
                "connect_timeout": connect_timeout,
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {
                            // A peer that died without closing the connection is noticed.
                            "connection_keepalive": {"interval": "10s", "timeout": "5s"},
                        }},
                    },
                },
                "upstream_connection_options": {"tcp_keepalive": {
                    "keepalive_probes": 3, "keepalive_time": 10, "keepalive_interval": 10}},
                "load_assignment": {
                    "cluster_name": "ads_cluster",
                    "endpoints": [{"lb_endpoints": endpoints}],
                },
            }],
        },
    });
    if request.admin_port > 0 {
        bootstrap["admin"] = json!({"address": {"socket_address": {
            "address": params.admin_address, "port_value": request.admin_port}}});
    }
    bootstrap
}

/// The HTTP side of the bootstrap server.
#[derive(Clone)]
pub struct BootstrapServer {
    store: Arc<dyn ResourceStore>,
    params: BootstrapParams,
    peers: Arc<dyn XdsPeers>,
}

impl std::fmt::Debug for BootstrapServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapServer").field("params", &self.params).finish()
    }
}

impl BootstrapServer {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        params: BootstrapParams,
        peers: Arc<dyn XdsPeers>,
    ) -> BootstrapServer {
        BootstrapServer { store, params, peers }
    }

    pub fn router(self) -> Router {
        Router::new().route("/bootstrap", post(bootstrap)).with_state(Arc::new(self))
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router()).with_graceful_shutdown(shutdown).await
    }
}

fn error(status: StatusCode, title: &str, details: String) -> Response {
    let body = ErrorBody { title: title.to_string(), details, causes: Vec::new() };
    (status, Json(body)).into_response()
}

async fn bootstrap(
    State(server): State<Arc<BootstrapServer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: BootstrapRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("the body must be JSON like {{\"mesh\": \"default\", \"name\": \"redis-1\", \"adminPort\": 9901}}: {e}"),
            )
        }
    };
    if request.name.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            "name: must not be empty".to_string(),
        );
    }
    if request.admin_port > u32::from(u16::MAX) {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("adminPort: {} is out of range 0-65535", request.admin_port),
        );
    }
    let key = ResourceKey::new(ResourceType::Dataplane, &request.mesh, &request.name);
    let dataplane = match server.store.get(&key).await {
        Ok(resource) => resource,
        Err(StoreError::NotFound { .. } | StoreError::MeshNotFound { .. }) => {
            info!(mesh = %request.mesh, dataplane = %request.name, "bootstrap for an unknown dataplane");
            return error(
                StatusCode::NOT_FOUND,
                "Not Found",
                format!(
                    "Dataplane {}/{} is not registered: create it first with kumactl apply",
                    request.mesh, request.name
                ),
            );
        }
        Err(e) if e.is_retryable() => {
            return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string())
        }
        Err(e) => {
            warn!(error = %e, "bootstrap failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal Server Error",
                String::new(),
            );
        }
    };
    let service = dataplane.spec.as_dataplane().map_or("unknown", |d| d.first_service());
    let request_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of)
        .unwrap_or("127.0.0.1")
        .to_string();
    let peers = server.peers.xds_addresses(&request_host);
    let value = generate(&request, &server.params, &peers, service);
    match serde_yaml::to_string(&value) {
        Ok(yaml) => {
            info!(mesh = %request.mesh, dataplane = %request.name, "bootstrap served");
            ([(header::CONTENT_TYPE, "text/x-yaml")], yaml).into_response()
        }
        Err(e) => {
            warn!(error = %e, "bootstrap could not be rendered");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", String::new())
        }
    }
}

/// `host:port` or `[v6]:port` → host, without brackets.
fn host_of(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.rsplit_once(':').map_or(authority, |(host, _)| host)
}
