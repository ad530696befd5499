//! The bootstrap server: `POST /bootstrap` gives kuma-dp the Envoy config to start with: the node
//! id `<mesh>.<name>`, the admin address, and ADS to an `ads_cluster` listing the xDS address of
//! every control-plane peer, so Envoy reconnects to another peer when its stream breaks. The
//! request must carry the dataplane's token, which the bootstrap hands on to Envoy for its ADS
//! stream; over TLS, the bootstrap also carries the CA Envoy verifies every peer against. A request
//! with a Dataplane resource registers (or updates) it first: a VM needs no separate
//! `kumactl apply`.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Json, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use kuma_listener::{
    serve_http, tls_server_config, CertError, ConnectionLimit, HttpLimits, ServerCert, TcpIncoming,
    TlsIncoming,
};
use kuma_model::rest::{Cause, ErrorBody};
use kuma_model::{
    parse_resource, parse_resources_yaml, validate, DataplaneSpec, ParseError, Resource,
    ResourceKey, ResourceType, Spec, ValidationContext,
};
use kuma_store::{ResourceStore, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::auth::{dataplane_tags, AuthError, DataplaneAuth, DataplaneIdentity};
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
    /// The dataplane token (also accepted as `Authorization: Bearer`).
    #[serde(default)]
    pub dataplane_token: String,
    /// The CA kuma-dp verified this server with (PEM); Envoy verifies every peer against it.
    #[serde(default)]
    pub ca_cert: String,
    /// A Dataplane (YAML or JSON) to register or update before the bootstrap is made.
    #[serde(default)]
    pub dataplane_resource: String,
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

impl XdsAddress {
    /// `host:port`, as peers announce it; `None` for anything else.
    pub fn parse(host_port: &str) -> Option<XdsAddress> {
        let (host, port) = host_port.rsplit_once(':')?;
        Some(XdsAddress { host: host.to_string(), port: port.parse().ok()? })
    }
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

/// How Envoy's ADS stream authenticates and what it trusts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AdsSecurity {
    /// Sent as gRPC metadata `authorization` on every ADS stream.
    pub token: Option<String>,
    /// With TLS: the CA (PEM) every peer's certificate must chain to.
    pub trusted_ca: Option<String>,
}

/// Builds the Envoy bootstrap (as a JSON value; served as YAML).
pub fn generate(
    request: &BootstrapRequest,
    params: &BootstrapParams,
    peers: &[XdsAddress],
    service: &str,
    security: &AdsSecurity,
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
    if let Some(token) = &security.token {
        bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"] =
            json!([{"key": "authorization", "value": token}]);
    }
    if let Some(ca) = &security.trusted_ca {
        bootstrap["static_resources"]["clusters"][0]["transport_socket"] = json!({
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "common_tls_context": {
                    "alpn_protocols": ["h2"],
                    "validation_context": {"trusted_ca": {"inline_string": ca}},
                },
            },
        });
    }
    if request.admin_port > 0 {
        bootstrap["admin"] = json!({"address": {"socket_address": {
            "address": params.admin_address, "port_value": request.admin_port}}});
        // The metrics listener (generator::metrics) reaches the admin's stats through it.
        let admin = crate::generator::metrics::ENVOY_ADMIN_CLUSTER;
        if let Some(clusters) = bootstrap["static_resources"]["clusters"].as_array_mut() {
            clusters.push(json!({
                "name": admin,
                "type": "STATIC",
                "connect_timeout": connect_timeout,
                "load_assignment": {"cluster_name": admin, "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {
                        "address": params.admin_address, "port_value": request.admin_port}}}},
                ]}]},
            }));
        }
    }
    bootstrap
}

/// The certificate the bootstrap and xDS servers present, and the CA that issued it when it is
/// the control plane's own (given to Envoy when kuma-dp sends none).
#[derive(Debug, Default)]
pub struct ControlPlaneCert {
    server: Arc<ServerCert>,
    ca_pem: RwLock<Option<String>>,
}

impl ControlPlaneCert {
    pub fn new() -> Arc<ControlPlaneCert> {
        Arc::new(ControlPlaneCert::default())
    }

    /// Presents `chain_pem` and `key_pem` from now on; `ca_pem` is the CA that issued them, when
    /// this control plane knows it.
    pub fn set(
        &self,
        chain_pem: &str,
        key_pem: &str,
        ca_pem: Option<&str>,
    ) -> Result<(), CertError> {
        self.server.set_pem(chain_pem, key_pem)?;
        *self.ca_pem.write().unwrap_or_else(|p| p.into_inner()) = ca_pem.map(str::to_string);
        Ok(())
    }

    /// The certificate, for TLS servers.
    pub fn server_cert(&self) -> Arc<ServerCert> {
        self.server.clone()
    }

    /// The issuing CA, when known.
    pub fn ca_pem(&self) -> Option<String> {
        self.ca_pem.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The HTTP side of the bootstrap server.
#[derive(Clone)]
pub struct BootstrapServer {
    store: Arc<dyn ResourceStore>,
    params: BootstrapParams,
    peers: Arc<dyn XdsPeers>,
    auth: Arc<DataplaneAuth>,
    /// With TLS: the bootstrap server speaks HTTPS and Envoy's ADS stream TLS.
    tls: Option<Arc<ControlPlaneCert>>,
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
        auth: Arc<DataplaneAuth>,
    ) -> BootstrapServer {
        BootstrapServer { store, params, peers, auth, tls: None }
    }

    /// Serves HTTPS with `cert`, and tells Envoy to reach the xDS servers over TLS.
    pub fn with_tls(mut self, cert: Arc<ControlPlaneCert>) -> BootstrapServer {
        self.tls = Some(cert);
        self
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
        // A slow client gets the same deadlines as on the API: a trickled request is cut off.
        let limits = HttpLimits::default();
        match self.tls.clone() {
            Some(cert) => {
                let config = tls_server_config(cert.server_cert(), &[b"http/1.1"]);
                let incoming = TlsIncoming::new(listener, config, ConnectionLimit::BOOTSTRAP);
                serve_http(incoming, self.router(), limits, shutdown).await
            }
            None => {
                let incoming = TcpIncoming::new(listener, ConnectionLimit::BOOTSTRAP);
                serve_http(incoming, self.router(), limits, shutdown).await
            }
        }
    }
}

fn error(status: StatusCode, title: &str, details: String) -> Response {
    let body = ErrorBody { title: title.to_string(), details, causes: Vec::new() };
    (status, Json(body)).into_response()
}

fn bad_request(details: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "Bad Request", details.into())
}

fn refused(e: &AuthError, mesh: &str, name: &str) -> Response {
    warn!(mesh, dataplane = name, reason = %e, "bootstrap refused");
    match e {
        e if e.is_retryable() => {
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string())
        }
        e if e.is_permission() => error(StatusCode::FORBIDDEN, "Forbidden", e.to_string()),
        e => error(StatusCode::UNAUTHORIZED, "Unauthorized", e.to_string()),
    }
}

fn store_failure(e: StoreError) -> Response {
    if e.is_retryable() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string());
    }
    warn!(error = %e, "bootstrap failed");
    error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", String::new())
}

/// The token of a request: `Authorization: Bearer`, else the body's `dataplaneToken`.
fn token_of(headers: &HeaderMap, request: &BootstrapRequest) -> Option<String> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.trim().strip_prefix("Bearer ").unwrap_or(h.trim()).trim().to_string());
    header.or_else(|| Some(request.dataplane_token.clone())).filter(|t| !t.is_empty())
}

/// Reads the Dataplane a kuma-dp wants registered: one document, YAML or JSON, of type Dataplane,
/// valid, and named as the request says.
fn registration(request: &BootstrapRequest) -> Result<(ResourceKey, DataplaneSpec), Box<Response>> {
    let invalid = |causes: Vec<Cause>| -> Response {
        let body = ErrorBody {
            title: "Could not register the Dataplane".to_string(),
            details: "Resource is not valid".to_string(),
            causes,
        };
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    let mut documents = parse_resources_yaml(&request.dataplane_resource)
        .map_err(|e| Box::new(bad_request(format!("dataplaneResource: {e}"))))?;
    if documents.len() != 1 {
        return Err(Box::new(bad_request(format!(
            "dataplaneResource: expected one Dataplane, got {} documents",
            documents.len()
        ))));
    }
    let input = parse_resource(documents.remove(0)).map_err(|e| match e {
        ParseError::Syntax(reason) => bad_request(format!("dataplaneResource: {reason}")),
        ParseError::Invalid(v) => invalid(
            v.violations
                .into_iter()
                .map(|v| Cause { field: v.field, message: v.message })
                .collect(),
        ),
    })?;
    if input.key.resource_type != ResourceType::Dataplane {
        return Err(Box::new(bad_request(format!(
            "dataplaneResource: expected type Dataplane, got {}",
            input.key.resource_type
        ))));
    }
    let mesh = input.key.mesh.clone().unwrap_or_default();
    if mesh != request.mesh || input.key.name != request.name {
        return Err(Box::new(bad_request(format!(
            "dataplaneResource: it names {mesh}/{}, but kuma-dp runs as {}/{}",
            input.key.name, request.mesh, request.name
        ))));
    }
    if let Err(v) = validate(&input, &ValidationContext { mesh: None }) {
        return Err(Box::new(invalid(
            v.violations
                .into_iter()
                .map(|v| Cause { field: v.field, message: v.message })
                .collect(),
        )));
    }
    let Spec::Dataplane(spec) = input.spec else { unreachable!("the type was checked above") };
    Ok((input.key, spec))
}

/// Checks a dataplane's token. A key this peer's view does not know may have been made a moment
/// ago (a token issued right after its mesh's key): the view follows the store's change feed and
/// may trail it, so the mesh's Secrets are read from the store once before the token is refused.
async fn check_token(
    server: &BootstrapServer,
    token: Option<&str>,
    mesh: &str,
    name: &str,
    tags: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
) -> Result<Option<DataplaneIdentity>, AuthError> {
    let first = server.auth.check(token, mesh, name, tags).await;
    if !matches!(&first, Err(AuthError::Token(kuma_ca::TokenError::UnknownKey { .. }))) {
        return first;
    }
    if server.store.sync().await.is_err() {
        return first;
    }
    let Ok(secrets) =
        kuma_store::list_all(server.store.as_ref(), kuma_model::ResourceType::Secret, Some(mesh))
            .await
    else {
        return first;
    };
    let changes: Vec<_> = secrets.into_iter().map(|r| (r.key.clone(), Some(r))).collect();
    server.auth.apply(&changes);
    server.auth.check(token, mesh, name, tags).await
}

/// Creates or replaces the Dataplane `key`.
async fn register(
    store: &dyn ResourceStore,
    key: ResourceKey,
    spec: DataplaneSpec,
) -> Result<Resource, StoreError> {
    // A concurrent writer makes the compare-and-set fail: read again and retry, a few times.
    let mut last = None;
    for _ in 0..3 {
        let result = match store.get(&key).await {
            Ok(existing) => {
                if existing.spec.as_dataplane() == Some(&spec) {
                    return Ok(existing);
                }
                store.update(key.clone(), Spec::Dataplane(spec.clone()), &existing.version).await
            }
            Err(StoreError::NotFound { .. }) => {
                store.create(key.clone(), Spec::Dataplane(spec.clone())).await
            }
            Err(e) => return Err(e),
        };
        match result {
            Err(e @ (StoreError::Conflict { .. } | StoreError::AlreadyExists { .. })) => {
                last = Some(e)
            }
            other => return other,
        }
    }
    Err(last.expect("three attempts failed"))
}

async fn bootstrap(
    State(server): State<Arc<BootstrapServer>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let request: BootstrapRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return bad_request(format!("the body must be JSON like {{\"mesh\": \"default\", \"name\": \"redis-1\", \"adminPort\": 9901}}: {e}"))
        }
    };
    if request.name.is_empty() {
        return bad_request("name: must not be empty");
    }
    if request.admin_port > u32::from(u16::MAX) {
        return bad_request(format!("adminPort: {} is out of range 0-65535", request.admin_port));
    }
    let token = token_of(&headers, &request);
    let (mesh, name) = (request.mesh.as_str(), request.name.as_str());
    let key = ResourceKey::new(ResourceType::Dataplane, mesh, name);

    let dataplane = if request.dataplane_resource.trim().is_empty() {
        match server.store.get(&key).await {
            Ok(resource) => Some(resource),
            Err(StoreError::NotFound { .. } | StoreError::MeshNotFound { .. }) => None,
            Err(e) => return store_failure(e),
        }
    } else {
        // Self-registration: the token must allow the Dataplane as it is about to be written.
        let (key, spec) = match registration(&request) {
            Ok(registration) => registration,
            Err(response) => return *response,
        };
        let tags = dataplane_tags(&spec);
        if let Err(e) = check_token(&server, token.as_deref(), mesh, name, &tags).await {
            return refused(&e, mesh, name);
        }
        match register(server.store.as_ref(), key, spec).await {
            Ok(resource) => {
                info!(mesh, dataplane = name, "dataplane registered itself");
                Some(resource)
            }
            Err(StoreError::MeshNotFound { .. }) => {
                return error(
                    StatusCode::NOT_FOUND,
                    "Not Found",
                    format!("mesh {mesh:?} does not exist: create it first with kumactl apply"),
                )
            }
            Err(e) => return store_failure(e),
        }
    };
    let tags = dataplane.as_ref().and_then(|d| d.spec.as_dataplane()).map(dataplane_tags);
    let tags = tags.unwrap_or_default();
    if let Err(e) = check_token(&server, token.as_deref(), mesh, name, &tags).await {
        // A token scoped by tags cannot be checked before the Dataplane exists: say it is missing.
        let missing = dataplane.is_none()
            && matches!(&e, AuthError::Token(kuma_ca::TokenError::WrongTags { .. }));
        if !missing {
            return refused(&e, mesh, name);
        }
    }
    let Some(dataplane) = dataplane else {
        info!(mesh, dataplane = name, "bootstrap for an unknown dataplane");
        return error(
            StatusCode::NOT_FOUND,
            "Not Found",
            format!(
                "Dataplane {mesh}/{name} is not registered: create it first with kumactl apply, \
                 or start kuma-dp with --dataplane-file"
            ),
        );
    };
    let service = dataplane.spec.as_dataplane().map_or("unknown", |d| d.first_service());
    let request_host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(host_of)
        .unwrap_or("127.0.0.1")
        .to_string();
    let peers = server.peers.xds_addresses(&request_host);
    let trusted_ca =
        match &server.tls {
            None => None,
            Some(cert) => {
                let given = Some(request.ca_cert.clone()).filter(|c| !c.trim().is_empty());
                match given.or_else(|| cert.ca_pem()) {
                    Some(ca) => Some(ca),
                    None => return bad_request(
                        "caCert: this control plane serves a certificate from a CA it does not \
                         know: start kuma-dp with --ca-cert-file naming that CA",
                    ),
                }
            }
        };
    let security = AdsSecurity { token, trusted_ca };
    let value = generate(&request, &server.params, &peers, service, &security);
    match serde_yaml::to_string(&value) {
        Ok(yaml) => {
            info!(mesh, dataplane = name, "bootstrap served");
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
