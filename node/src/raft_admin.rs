//! The Raft admin routes of the HTTP API: the cluster's status and its membership.

use std::sync::Arc;

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use kuma_api_server::ApiError;
use kuma_raft::{ClusterStatus, ForwardError, RaftNode};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddPeer {
    id: u64,
    raft_address: String,
}

/// `GET /status/raft`, and unless `read_only`, `POST /status/raft/peers` and
/// `DELETE /status/raft/peers/{id}`.
pub fn routes(node: Arc<RaftNode>, read_only: bool) -> Router {
    let router = Router::new().route("/status/raft", get(status));
    if read_only {
        return router.with_state(node);
    }
    router
        .route("/status/raft/peers", post(add_peer))
        .route("/status/raft/peers/{id}", delete(remove_peer))
        .with_state(node)
}

async fn status(State(node): State<Arc<RaftNode>>) -> Json<ClusterStatus> {
    Json(node.cluster_status().await)
}

async fn add_peer(
    State(node): State<Arc<RaftNode>>,
    body: axum::body::Bytes,
) -> Result<Json<ClusterStatus>, ApiError> {
    let add: AddPeer = serde_json::from_slice(&body).map_err(|e| {
        ApiError::request(
            StatusCode::BAD_REQUEST,
            format!("expected {{\"id\": 4, \"raftAddress\": \"10.0.0.4:5683\"}}: {e}"),
        )
    })?;
    kuma_raft::RaftConfig::parse_peers(&format!("{}={}", add.id, add.raft_address))
        .map_err(|e| ApiError::request(StatusCode::BAD_REQUEST, e))?;
    node.add_peer(add.id, add.raft_address).await.map_err(membership_error)?;
    Ok(Json(node.cluster_status().await))
}

async fn remove_peer(
    State(node): State<Arc<RaftNode>>,
    Path(id): Path<u64>,
) -> Result<Json<ClusterStatus>, ApiError> {
    node.remove_peer(id).await.map_err(membership_error)?;
    Ok(Json(node.cluster_status().await))
}

/// A refused change is the caller's to fix; anything else may pass once the cluster has a leader.
fn membership_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::Refused(reason) => ApiError::request(StatusCode::BAD_REQUEST, reason),
        other => ApiError::request(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}
