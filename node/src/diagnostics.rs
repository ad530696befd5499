//! The diagnostics server (default port 5680): `/healthy` while the process serves, `/ready` once
//! the control plane has started every component and can take traffic, `/metrics` in
//! Prometheus' text format (see `metrics`).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

/// Shared readiness flag.
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// `GET /metrics`: every series recorded in this process.
async fn metrics() -> Response {
    match crate::metrics::render() {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "no metrics recorder");
            (StatusCode::INTERNAL_SERVER_ERROR, "no metrics recorder in this process\n")
                .into_response()
        }
    }
}

/// The diagnostics routes.
pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthy", get(|| async { (StatusCode::OK, "healthy\n") }))
        .route("/metrics", get(metrics))
        .route(
            "/ready",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    if readiness.is_ready() {
                        (StatusCode::OK, "ready\n")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                    }
                }
            }),
        )
}

/// Serves diagnostics until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    readiness: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(readiness)).with_graceful_shutdown(shutdown).await
}
