//! The Raft admin routes of the HTTP API: the cluster's status, its membership and backups.

use std::sync::Arc;

use axum::extract::{Json, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Extension, Router};
use kuma_api_server::{ApiError, Identity, Role, ADMIN_GROUP};
use kuma_raft::{BackupError, ClusterStatus, ForwardError, RaftNode};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddPeer {
    id: u64,
    raft_address: String,
}

/// `GET /status/raft` and `GET /status/raft/snapshot` (admin only), and unless `read_only`,
/// `POST /status/raft/peers`, `DELETE /status/raft/peers/{id}` and
/// `POST /status/raft/transfer-leader`.
pub fn routes(node: Arc<RaftNode>, read_only: bool) -> Router {
    let router = Router::new()
        .route("/status/raft", get(status))
        .route("/status/raft/snapshot", get(snapshot));
    if read_only {
        return router.with_state(node);
    }
    router
        .route("/status/raft/peers", post(add_peer))
        .route("/status/raft/peers/{id}", delete(remove_peer))
        .route("/status/raft/transfer-leader", post(transfer_leader))
        .with_state(node)
}

async fn status(State(node): State<Arc<RaftNode>>) -> Json<ClusterStatus> {
    Json(node.cluster_status().await)
}

/// A consistent snapshot of the replicated state as a file (`kumactl raft snapshot save`). It
/// holds every secret of every mesh, so only an admin gets it, whichever peer is asked.
async fn snapshot(
    State(node): State<Arc<RaftNode>>,
    identity: Option<Extension<Identity>>,
) -> Result<Response, ApiError> {
    let who = identity.map(|Extension(i)| i);
    if who.as_ref().is_none_or(|i| i.role != Role::Admin) {
        let user = who.map_or("this client".to_string(), |i| i.name);
        tracing::warn!(target: "audit", identity = %user, "refused: Raft snapshots are for admins");
        return Err(ApiError::request(
            StatusCode::FORBIDDEN,
            format!(
                "{user} may not save a snapshot: it holds every secret of the mesh, so it needs a \
                 user in group {ADMIN_GROUP}"
            ),
        ));
    }
    let file = node.save_snapshot().await.map_err(|e| match e {
        e @ (BackupError::Unavailable { .. } | BackupError::Empty { .. }) => {
            ApiError::request(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        e => {
            tracing::error!(error = %e, "could not serve a Raft snapshot");
            ApiError::request(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    })?;
    let user = who.map_or_else(String::new, |i| i.name);
    let header_of = file.header();
    tracing::info!(target: "audit", identity = %user, index = header_of.index, term = header_of.term, resources = header_of.resources, "served a Raft snapshot");
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], file.to_bytes()).into_response())
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
        .map_err(|e| ApiError::request(StatusCode::BAD_REQUEST, e.to_string()))?;
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransferLeader {
    to: u64,
}

/// Hands leadership to voter `to`; answers once this peer sees it lead.
async fn transfer_leader(
    State(node): State<Arc<RaftNode>>,
    body: axum::body::Bytes,
) -> Result<Json<ClusterStatus>, ApiError> {
    let TransferLeader { to } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::request(StatusCode::BAD_REQUEST, format!("expected {{\"to\": 2}}: {e}"))
    })?;
    node.transfer_leader(to).await.map_err(membership_error)?;
    Ok(Json(node.cluster_status().await))
}

/// A refused change is the caller's to fix; anything else may pass once the cluster has a leader.
fn membership_error(e: ForwardError) -> ApiError {
    match e {
        ForwardError::Refused(reason) => ApiError::request(StatusCode::BAD_REQUEST, reason),
        other => ApiError::request(StatusCode::SERVICE_UNAVAILABLE, other.to_string()),
    }
}
