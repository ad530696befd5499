use std::future::Future;
use std::sync::Arc;

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use kuma_model::rest::{Index, TAGLINE};
use kuma_model::{Spec, Violation};
use kuma_store::ResourceStore;
use tokio::net::TcpListener;

use kuma_listener::{
    serve_http, tls_server_config, tls_server_config_with_client_certs, ConnectionLimit,
    HttpLimits, ServerCert, TcpIncoming, TlsIncoming,
};

use crate::access::{self, UserTokens};
use crate::config_dumps::{self, ConfigDumps, OverTls};
use crate::error::{ApiError, Op};
use crate::{gui, openapi, overview, policies, resources, ApiServerConfig};

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
    pub user_tokens: Option<Arc<dyn UserTokens>>,
    /// Why writes are refused, when the API is read-only for a reason other than its config.
    pub read_only_reason: Option<String>,
    /// Where dataplanes' config dumps come from; `None`: this API serves none.
    pub config_dumps: Option<Arc<dyn ConfigDumps>>,
}

/// Where the API is served: plain HTTP, HTTPS, or both.
#[derive(Default)]
pub struct ApiListeners {
    pub http: Option<TcpListener>,
    pub https: Option<HttpsListener>,
}

/// The HTTPS listener, its certificate, and the CA of the client certificates it accepts.
#[derive(Debug)]
pub struct HttpsListener {
    pub listener: TcpListener,
    pub cert: Arc<ServerCert>,
    pub client_ca_pem: Option<String>,
}

impl std::fmt::Debug for ApiListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiListeners")
            .field("http", &self.http.as_ref().and_then(|l| l.local_addr().ok()))
            .field("https", &self.https.as_ref().and_then(|l| l.listener.local_addr().ok()))
            .finish()
    }
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
            state: Arc::new(AppState {
                store,
                config,
                info,
                openapi,
                extra_validation: None,
                user_tokens: None,
                read_only_reason: None,
                config_dumps: None,
            }),
        }
    }

    /// Adds checks every written resource must also pass.
    pub fn with_validation(mut self, validation: ExtraValidation) -> ApiServer {
        let state = Arc::get_mut(&mut self.state).expect("set before the router is built");
        state.extra_validation = Some(validation);
        self
    }

    /// Makes the API read-only, saying `reason` to every write (on Kubernetes, resources are
    /// changed with kubectl).
    pub fn read_only_because(mut self, reason: &str) -> ApiServer {
        let state = Arc::get_mut(&mut self.state).expect("set before the router is built");
        state.config.read_only = true;
        state.read_only_reason = Some(reason.to_string());
        self
    }

    /// Checks user tokens with `tokens`; without it, a request with a token is refused.
    pub fn with_user_tokens(mut self, tokens: Arc<dyn UserTokens>) -> ApiServer {
        let state = Arc::get_mut(&mut self.state).expect("set before the router is built");
        state.user_tokens = Some(tokens);
        self
    }

    /// Answers `GET /meshes/{mesh}/dataplanes/{name}/xds` with `dumps`.
    pub fn with_config_dumps(mut self, dumps: Arc<dyn ConfigDumps>) -> ApiServer {
        let state = Arc::get_mut(&mut self.state).expect("set before the router is built");
        state.config_dumps = Some(dumps);
        self
    }

    /// The routes, without a socket: tests drive it with `tower::ServiceExt::oneshot`.
    pub fn router(&self) -> Router {
        self.router_with(Router::new())
    }

    fn routes(&self) -> Router {
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
            .route("/meshes/{mesh}/dataplanes/{name}/xds", get(config_dumps::get))
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
            .with_state(self.state.clone())
    }

    /// The API's routes plus `extra` (e.g. the Raft status of a replicated control plane), all
    /// behind the access check; and the GUI, which holds no data (its script reads the API with
    /// the operator's credentials), outside it.
    pub fn router_with(&self, extra: Router) -> Router {
        self.routes()
            .merge(extra)
            .layer(axum::middleware::from_fn_with_state(
                access::Access {
                    localhost_is_admin: self.state.config.auth.localhost_is_admin,
                    user_tokens: self.state.user_tokens.clone(),
                },
                access::authorize,
            ))
            .merge(gui::routes())
            .layer(axum::middleware::from_fn(crate::metrics::record))
            .layer(axum::middleware::from_fn(log_request))
    }

    /// Serves on `listener` (plain HTTP) until `shutdown` completes, then finishes in-flight
    /// requests.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listeners = ApiListeners { http: Some(listener), https: None };
        self.serve_with(Router::new(), listeners, shutdown).await
    }

    /// `serve` with `extra` routes beside the API's, on every listener given.
    pub async fn serve_with(
        self,
        extra: Router,
        listeners: ApiListeners,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router_with(extra);
        let limits = HttpLimits::default();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let mut servers = tokio::task::JoinSet::new();
        if let Some(listener) = listeners.http {
            let incoming = TcpIncoming::new(listener, ConnectionLimit::API);
            servers.spawn(serve_http(incoming, router.clone(), limits, stopped(stop_rx.clone())));
        }
        if let Some(https) = listeners.https {
            let alpn: &[&[u8]] = &[b"http/1.1"];
            let config = match &https.client_ca_pem {
                Some(ca) => {
                    tls_server_config_with_client_certs(https.cert, alpn, ca).map_err(|e| {
                        std::io::Error::other(format!("the client certificates' CA: {e}"))
                    })?
                }
                None => tls_server_config(https.cert, alpn),
            };
            let incoming = TlsIncoming::new(https.listener, config, ConnectionLimit::API);
            let router = router.layer(axum::Extension(OverTls));
            servers.spawn(serve_http(incoming, router, limits, stopped(stop_rx)));
        }
        tokio::select! {
            _ = shutdown => {}
            // A listener that fails ends the API.
            Some(result) = servers.join_next() => {
                return result.map_err(std::io::Error::other)?;
            }
        }
        let _ = stop_tx.send(true);
        while let Some(result) = servers.join_next().await {
            result.map_err(std::io::Error::other)??;
        }
        Ok(())
    }
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

/// Kuma's index, with where the GUI is (`gui`, as later Kuma versions say it).
async fn index(state: State) -> Json<serde_json::Value> {
    let index = Index {
        hostname: state.info.hostname.clone(),
        tagline: TAGLINE.to_string(),
        version: state.info.version.clone(),
    };
    let mut body = serde_json::to_value(index).unwrap_or_default();
    body["gui"] = format!("The gui is available at {}", gui::GUI_PATH).into();
    Json(body)
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
