use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kuma_model::rest::{Index, TAGLINE};
use kuma_model::{Spec, Violation};
use kuma_store::ResourceStore;
use tokio::net::TcpListener;

use crate::error::{ApiError, Op};
use crate::{openapi, overview, policies, resources, ApiServerConfig};

/// What the index (`GET /`) reports about this control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerInfo {
    pub version: String,
    pub hostname: String,
}

/// Checks a resource's spec beyond the model's rules (e.g. ProxyTemplate raw resources against
/// Envoy's schema, which only xDS knows); returns every violation with its field path.
pub type ExtraValidation = Arc<dyn Fn(&Spec) -> Vec<Violation> + Send + Sync>;

pub(crate) struct AppState {
    pub store: Arc<dyn ResourceStore>,
    pub config: ApiServerConfig,
    pub info: ServerInfo,
    pub openapi: String,
    pub extra_validation: Option<ExtraValidation>,
}

pub(crate) type State = axum::extract::State<Arc<AppState>>;

/// The HTTP API server.
pub struct ApiServer {
    state: Arc<AppState>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer").field("config", &self.state.config).finish_non_exhaustive()
    }
}

impl ApiServer {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        config: ApiServerConfig,
        info: ServerInfo,
    ) -> ApiServer {
        let openapi = openapi::document(&info.version).to_string();
        ApiServer {
            state: Arc::new(AppState { store, config, info, openapi, extra_validation: None }),
        }
    }

    /// Adds checks every written resource must also pass.
    pub fn with_validation(mut self, validation: ExtraValidation) -> ApiServer {
        let state = Arc::get_mut(&mut self.state).expect("set before the router is built");
        state.extra_validation = Some(validation);
        self
    }

    /// The routes, without a socket: tests drive it with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(index))
            .route("/openapi.json", get(openapi_json))
            .route("/meshes", get(resources::list_meshes))
            .route(
                "/meshes/{name}",
                get(resources::get_mesh).put(resources::put_mesh).delete(resources::delete_mesh),
            )
            .route("/meshes/{mesh}/{collection}", get(resources::list_in_mesh))
            .route(
                "/meshes/{mesh}/{collection}/{name}",
                get(resources::get_in_mesh)
                    .put(resources::put_in_mesh)
                    .delete(resources::delete_in_mesh),
            )
            .route("/meshes/{mesh}/dataplanes/{name}/policies", get(policies::get))
            .route("/{collection}", get(resources::list_across_meshes))
            .route(
                "/{collection}/{name}",
                get(resources::get_global)
                    .put(resources::put_global)
                    .delete(resources::delete_global),
            )
            .route("/dataplanes+insights", get(overview::list_across_meshes))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(self.state.clone(), consistent_reads))
            .layer(axum::middleware::from_fn(secret_writes_from_loopback))
            .layer(axum::middleware::from_fn(log_request))
            .with_state(self.state.clone())
    }

    /// The API's routes plus `extra` (e.g. the Raft status of a replicated control plane).
    pub fn router_with(&self, extra: Router) -> Router {
        self.router().merge(extra)
    }

    /// Serves on `listener` until `shutdown` completes, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        self.serve_with(Router::new(), listener, shutdown).await
    }

    /// `serve` with `extra` routes beside the API's.
    pub async fn serve_with(
        self,
        extra: Router,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        use axum::serve::ListenerExt;
        // Small request/response exchanges: no waiting for Nagle's algorithm.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        // Handlers see the client's address: some operations are for the peer's own host only.
        let app = self.router_with(extra).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown).await
    }
}

/// Whether a request came from this host (loopback). A request without a known client address
/// (a router driven in-process) is not.
pub fn is_from_loopback(request: &axum::extract::Request) -> bool {
    request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .is_some_and(|info| info.0.ip().is_loopback())
}

/// Until operators authenticate, what controls the mesh's identity is changed only from the
/// control plane's own host: a Secret or GlobalSecret written from anywhere else (a CA key, a
/// token signing key, the revocation list) would let its writer impersonate any dataplane.
async fn secret_writes_from_loopback(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let writes =
        request.method() != axum::http::Method::GET && request.method() != axum::http::Method::HEAD;
    let path = request.uri().path();
    let secret = path.starts_with("/global-secrets/")
        || (path.starts_with("/meshes/") && path.split('/').nth(3) == Some("secrets"));
    if writes && secret && !is_from_loopback(&request) {
        tracing::warn!(method = %request.method(), %path, "secret write refused: not from loopback");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            Op::Put,
            "secrets can be written only from the control plane's own host (loopback): run kumactl there",
        )
        .into_response();
    }
    next.run(request).await
}

/// Reads are consistent unless the client asks otherwise: before a GET of resources, the store
/// catches up with every write acknowledged anywhere (a no-op for a single control plane; a read
/// index from the Raft leader on a replicated one). `?consistency=stale` reads this peer's copy
/// as it is, which also works while the cluster has no leader.
async fn consistent_reads(
    axum::extract::State(state): State,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if request.method() != axum::http::Method::GET || path == "/" || path == "/openapi.json" {
        return next.run(request).await;
    }
    let query = request.uri().query().unwrap_or_default();
    let consistency = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "consistency")
        .map(|(_, v)| v.into_owned());
    match consistency.as_deref() {
        None | Some("consistent") => {
            if let Err(e) = state.store.sync().await {
                return ApiError::store(Op::Get, e, false).into_response();
            }
        }
        Some("stale") => {}
        Some(other) => {
            return ApiError::new(StatusCode::BAD_REQUEST, Op::Get, "Invalid consistency")
                .with_cause(
                    "consistency",
                    format!("{other:?} is not a read consistency; use consistent or stale"),
                )
                .into_response()
        }
    }
    next.run(request).await
}

/// One log line per request: debug when it went well, warn for server errors.
async fn log_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let micros = started.elapsed().as_micros() as u64;
    if response.status().is_server_error() {
        tracing::warn!(%method, %path, status, micros, "api request failed");
    } else {
        tracing::debug!(%method, %path, status, micros, "api request");
    }
    response
}

async fn index(state: State) -> Json<Index> {
    Json(Index {
        hostname: state.info.hostname.clone(),
        tagline: TAGLINE.to_string(),
        version: state.info.version.clone(),
    })
}

async fn openapi_json(state: State) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], state.openapi.clone())
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        Op::Other,
        format!("no API at {}; see /openapi.json for the paths", uri.path()),
    )
}

async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        Op::Other,
        format!("{method} is not supported on {}", uri.path()),
    )
}
