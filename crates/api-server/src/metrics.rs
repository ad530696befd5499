//! `api_server_http_request_duration_seconds` (Kuma's name): every API request's latency by
//! `handler` (the route template it matched, e.g. `/meshes/{mesh}/{collection}/{name}`, never the
//! raw path, so the series stay few), `method` and `code`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;

/// The histogram's name.
pub const REQUEST_DURATION: &str = "api_server_http_request_duration_seconds";

/// The `handler` label of a request that matched no route (a 404 of the fallback).
const UNMATCHED: &str = "unmatched";

/// The `handler` label: the matched route's template.
fn handler(matched: Option<&MatchedPath>) -> String {
    matched.map_or(UNMATCHED, MatchedPath::as_str).to_string()
}

/// Times the request and records it under its route template, method and status.
pub(crate) async fn record(request: Request, next: Next) -> Response {
    let handler = handler(request.extensions().get::<MatchedPath>());
    let method = request.method().as_str().to_string();
    let started = Instant::now();
    let response = next.run(request).await;
    let code = response.status().as_u16().to_string();
    metrics::histogram!(REQUEST_DURATION, "handler" => handler, "method" => method, "code" => code)
        .record(started.elapsed().as_secs_f64());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    #[tokio::test]
    async fn a_request_is_labelled_with_its_route_template_not_its_path() {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let tap = {
            let seen = seen.clone();
            move |request: Request, next: Next| {
                let seen = seen.clone();
                async move {
                    seen.lock().unwrap().push(handler(request.extensions().get::<MatchedPath>()));
                    next.run(request).await
                }
            }
        };
        let app = Router::new()
            .route("/meshes/{mesh}/{collection}/{name}", get(|| async { "ok" }))
            .layer(axum::middleware::from_fn(tap));
        for path in ["/meshes/default/dataplanes/dp-1", "/nowhere"] {
            let request = axum::http::Request::get(path).body(axum::body::Body::empty()).unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        assert_eq!(
            *seen.lock().unwrap(),
            vec!["/meshes/{mesh}/{collection}/{name}".to_string(), UNMATCHED.to_string()]
        );
    }
}
