//! The API operations behind identity: issuing dataplane and user tokens and rotating a mesh's
//! token signing key (admin only: the API's access check sees to it), the first admin token (to
//! the control plane's own host only), and the control plane's CA certificate for kuma-dp's
//! `--ca-cert-file`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Json, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kuma_model::rest::ErrorBody;
use kuma_store::{ResourceStore, StoreError};
use kuma_xds::{IssueError, TokenRequest, DEFAULT_TOKEN_VALIDITY};
use serde::Deserialize;
use tracing::{info, warn};

fn error(status: StatusCode, title: &str, details: String) -> Response {
    (status, Json(ErrorBody { title: title.to_string(), details, causes: Vec::new() }))
        .into_response()
}

fn store_error(e: StoreError) -> Response {
    match e {
        StoreError::NotFound { key } => {
            error(StatusCode::NOT_FOUND, "Not Found", format!("{key} does not exist"))
        }
        e if e.is_retryable() => {
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string())
        }
        e => {
            warn!(error = %e, "identity operation failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", String::new())
        }
    }
}

/// `POST /tokens/dataplane` (Kuma's body).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DataplaneTokenRequest {
    #[serde(default)]
    name: String,
    #[serde(default = "default_mesh")]
    mesh: String,
    #[serde(default)]
    tags: BTreeMap<String, Vec<String>>,
    /// `24h`, `30m`; empty means 10 years, as in Kuma.
    #[serde(default)]
    valid_for: String,
    /// Kuma's token type; only dataplane tokens exist here.
    #[serde(default, rename = "type")]
    kind: String,
}

fn default_mesh() -> String {
    "default".to_string()
}

async fn generate_dataplane_token(
    State(store): State<Arc<dyn ResourceStore>>,
    body: axum::body::Bytes,
) -> Response {
    let request: DataplaneTokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("expected {{\"mesh\": \"default\", \"name\": \"redis-1\", \"validFor\": \"24h\"}}: {e}"),
            )
        }
    };
    if !request.kind.is_empty() && request.kind != "dataplane" {
        return error(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            format!("type: {:?} is not a token type here; use dataplane", request.kind),
        );
    }
    let valid_for = if request.valid_for.is_empty() {
        DEFAULT_TOKEN_VALIDITY
    } else {
        match kuma_model::parse_duration(&request.valid_for) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "Bad Request",
                    format!(
                        "validFor: {:?} is not a duration above 0, e.g. 24h",
                        request.valid_for
                    ),
                )
            }
        }
    };
    let tags: BTreeMap<String, BTreeSet<String>> =
        request.tags.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect();
    let token_request = TokenRequest { mesh: request.mesh, name: request.name, tags, valid_for };
    match kuma_xds::issue_dataplane_token(store.as_ref(), &token_request).await {
        Ok(token) => {
            info!(
                mesh = %token_request.mesh,
                dataplane = %token_request.name,
                tags = ?token_request.tags,
                "issued a dataplane token"
            );
            ([(header::CONTENT_TYPE, "text/plain")], token).into_response()
        }
        Err(IssueError::Store(e)) => store_error(e),
        Err(e @ IssueError::NoSigningKey { .. }) => {
            error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", e.to_string())
        }
        Err(e) => {
            warn!(error = %e, "could not issue a dataplane token");
            error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error", e.to_string())
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RotateRequest {
    #[serde(default = "default_mesh")]
    mesh: String,
}

async fn rotate_signing_key(
    State(store): State<Arc<dyn ResourceStore>>,
    body: axum::body::Bytes,
) -> Response {
    let request: RotateRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("expected {{\"mesh\": \"default\"}}: {e}"),
            )
        }
    };
    match kuma_xds::rotate_signing_key(store.as_ref(), &request.mesh).await {
        Ok(kid) => {
            info!(mesh = %request.mesh, kid, "rotated the dataplane token signing key");
            Json(serde_json::json!({
                "mesh": request.mesh,
                "kid": kid.to_string(),
                "secret": kuma_xds::signing_key_secret_name(&request.mesh, kid),
            }))
            .into_response()
        }
        Err(e) => store_error(e),
    }
}

async fn control_plane_ca(State(store): State<Arc<dyn ResourceStore>>) -> Response {
    match kuma_xds::control_plane_ca(store.as_ref()).await {
        Ok(Some(ca)) => {
            ([(header::CONTENT_TYPE, "application/x-pem-file")], ca.cert_pem().to_string())
                .into_response()
        }
        Ok(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "the control plane's CA is not generated yet: retry in a moment".to_string(),
        ),
        Err(e) => store_error(e),
    }
}

/// `POST /tokens/user` (Kuma's body).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UserTokenRequest {
    name: String,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    valid_for: String,
}

async fn generate_user_token(
    State(store): State<Arc<dyn ResourceStore>>,
    body: axum::body::Bytes,
) -> Response {
    let request: UserTokenRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("expected {{\"name\": \"alice\", \"groups\": [\"mesh-system:admin\"], \"validFor\": \"24h\"}}: {e}"),
            )
        }
    };
    if request.name.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "Bad Request", "name: must not be empty".into());
    }
    let valid_for = match kuma_model::parse_duration(&request.valid_for) {
        Ok(d) if !d.is_zero() => d,
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "Bad Request",
                format!("validFor: {:?} is not a duration above 0, e.g. 24h", request.valid_for),
            )
        }
    };
    match crate::user_tokens::issue_user_token(
        store.as_ref(),
        &request.name,
        &request.groups,
        valid_for,
    )
    .await
    {
        Ok(token) => {
            info!(user = %request.name, groups = ?request.groups, "issued a user token");
            ([(header::CONTENT_TYPE, "text/plain")], token).into_response()
        }
        Err(e) => store_error(e),
    }
}

/// The first admin token, to a client on this host only.
async fn admin_token(
    State(store): State<Arc<dyn ResourceStore>>,
    request: axum::extract::Request,
) -> Response {
    if !kuma_api_server::is_from_loopback(&request) {
        warn!("admin token refused: not from loopback");
        return error(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "the admin token is given only to a client on the control plane's own host".to_string(),
        );
    }
    match crate::user_tokens::admin_token(store.as_ref()).await {
        Ok(Some(token)) => ([(header::CONTENT_TYPE, "text/plain")], token).into_response(),
        Ok(None) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Service Unavailable",
            "the admin token is not issued yet: retry in a moment".to_string(),
        ),
        Err(e) => store_error(e),
    }
}

/// `POST /tokens/dataplane`, `POST /tokens/dataplane/signing-keys`, `POST /tokens/user`,
/// `GET /tokens/admin` and `GET /control-plane/ca`.
pub fn routes(store: Arc<dyn ResourceStore>) -> Router {
    Router::new()
        .route("/tokens/dataplane", post(generate_dataplane_token))
        .route("/tokens/dataplane/signing-keys", post(rotate_signing_key))
        .route("/tokens/user", post(generate_user_token))
        .route("/tokens/admin", get(admin_token))
        .route("/control-plane/ca", get(control_plane_ca))
        .with_state(store)
}
