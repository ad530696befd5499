//! What a kuma-cp peer adds on top of the Raft store: the xDS addresses of every peer for
//! bootstraps, the cluster status and membership API, and the work only the leader does.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use chrono::{DateTime, Utc};
use kuma_model::rest::ErrorBody;
use kuma_model::{ResourceType, Spec};
use kuma_raft::{ForwardError, RaftNode};
use kuma_store::{ResourceStore, StoreError};
use kuma_xds::{XdsAddress, XdsPeers};
use serde::Deserialize;
use tracing::{info, warn};

use crate::cluster_work::{ensure_default_mesh, ensure_identity_secrets};

/// The xDS address of every peer that announced one (this one included).
#[derive(Debug)]
pub struct RaftXdsPeers {
    pub node: Arc<RaftNode>,
    /// Used until this peer's own announcement is replicated.
    pub fallback: kuma_xds::SinglePeer,
}

impl XdsPeers for RaftXdsPeers {
    fn xds_addresses(&self, request_host: &str) -> Vec<XdsAddress> {
        let announced: Vec<XdsAddress> = self
            .node
            .replica()
            .peers()
            .values()
            .filter_map(|p| XdsAddress::parse(&p.xds_address))
            .collect();
        if announced.is_empty() {
            self.fallback.xds_addresses(request_host)
        } else {
            announced
        }
    }
}

fn error(status: StatusCode, title: &str, details: String) -> Response {
    (status, Json(ErrorBody { title: title.to_string(), details, causes: Vec::new() }))
        .into_response()
}

fn membership_error(e: ForwardError) -> Response {
    match e {
        ForwardError::Refused(reason) => error(StatusCode::BAD_REQUEST, "Bad Request", reason),
        other => error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable", other.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AddPeer {
    id: u64,
    raft_address: String,
}

/// `GET /status/raft`, `POST /status/raft/peers` and `DELETE /status/raft/peers/{id}`.
pub fn routes(node: Arc<RaftNode>, read_only: bool) -> Router {
    let router = Router::new().route(
        "/status/raft",
        get(|State(node): State<Arc<RaftNode>>| async move { Json(node.cluster_status().await) }),
    );
    if read_only {
        return router.with_state(node);
    }
    router
        .route(
            "/status/raft/peers",
            axum::routing::post(
                |State(node): State<Arc<RaftNode>>, body: axum::body::Bytes| async move {
                    let add: AddPeer = match serde_json::from_slice(&body) {
                        Ok(add) => add,
                        Err(e) => {
                            return error(
                                StatusCode::BAD_REQUEST,
                                "Bad Request",
                                format!(
                                "expected {{\"id\": 4, \"raftAddress\": \"10.0.0.4:5683\"}}: {e}"
                            ),
                            )
                        }
                    };
                    if let Err(e) = kuma_raft::RaftConfig::parse_peers(&format!(
                        "{}={}",
                        add.id, add.raft_address
                    )) {
                        return error(StatusCode::BAD_REQUEST, "Bad Request", e);
                    }
                    match node.add_peer(add.id, add.raft_address).await {
                        Ok(()) => Json(node.cluster_status().await).into_response(),
                        Err(e) => membership_error(e),
                    }
                },
            ),
        )
        .route(
            "/status/raft/peers/{id}",
            delete(|State(node): State<Arc<RaftNode>>, Path(id): Path<u64>| async move {
                match node.remove_peer(id).await {
                    Ok(()) => Json(node.cluster_status().await).into_response(),
                    Err(e) => membership_error(e),
                }
            }),
        )
        .with_state(node)
}

/// How often the leader checks for meshes whose builtin CA is missing.
const LEADER_TICK: Duration = Duration::from_secs(1);
/// How often the leader looks for subscriptions left open by peers that are gone.
const ORPHAN_CHECK: Duration = Duration::from_secs(5);

/// Work done once for the cluster, by whichever peer leads: creating the default mesh,
/// generating the builtin CA of meshes that enable mTLS (stored as a Secret), and marking
/// disconnected the dataplane subscriptions of peers that are gone. Started again on
/// every peer that becomes leader, so it survives a leader change; every step is idempotent.
pub async fn leader_work(
    node: Arc<RaftNode>,
    store: Arc<dyn ResourceStore>,
    create_default_mesh: bool,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut leadership = node.leadership();
    loop {
        if *stop.borrow() {
            return;
        }
        if *leadership.borrow_and_update() {
            info!("this peer leads: running the cluster's leader-only work");
            if create_default_mesh {
                while let Err(e) = ensure_default_mesh(store.as_ref()).await {
                    warn!(error = %e, "could not create the default mesh yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if !node.is_leader() {
                        break;
                    }
                }
            }
            let mut suspects = BTreeSet::new();
            let mut last_orphan_check: Option<tokio::time::Instant> = None;
            while node.is_leader() && !*stop.borrow() {
                // Checked every second, so enabling mTLS or adding a mesh does not wait long.
                ensure_identity_secrets(store.as_ref()).await;
                if last_orphan_check.is_none_or(|t| t.elapsed() >= ORPHAN_CHECK) {
                    suspects = close_orphaned_subscriptions(&node, store.as_ref(), suspects).await;
                    last_orphan_check = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(LEADER_TICK) => {}
                    _ = leadership.changed() => {}
                    _ = stop.changed() => {}
                }
            }
        }
        tokio::select! {
            changed = leadership.changed() => if changed.is_err() { return },
            _ = stop.changed() => {}
        }
    }
}

/// Subscriptions still open on a peer that does not answer twice in a row are closed. Returns
/// this round's suspects.
async fn close_orphaned_subscriptions(
    node: &RaftNode,
    store: &dyn ResourceStore,
    previous: BTreeSet<String>,
) -> BTreeSet<String> {
    let status = node.cluster_status().await;
    let alive: BTreeSet<String> = status
        .members
        .iter()
        .filter(|m| m.healthy)
        .filter_map(|m| m.serves.as_ref().map(|s| s.instance_id.clone()))
        .collect();
    crate::cluster_work::close_subscriptions_of_dead_peers(store, &alive, previous).await
}

/// Subscriptions this peer left open before it restarted are closed: none of them can still be
/// open. Runs until it succeeds once (the cluster may still be electing at startup).
pub async fn close_own_stale_subscriptions(
    store: Arc<dyn ResourceStore>,
    instance_id: String,
    started: DateTime<Utc>,
) {
    for _ in 0..120 {
        match close_stale(store.as_ref(), &instance_id, started).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "could not close this peer's earlier subscriptions yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn close_stale(
    store: &dyn ResourceStore,
    instance_id: &str,
    started: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.sync().await?;
    for insight in kuma_store::list_all(store, ResourceType::DataplaneInsight, None).await? {
        let Some(spec) = insight.spec.as_dataplane_insight() else { continue };
        let stale = |s: &kuma_model::DiscoverySubscription| {
            s.disconnect_time.is_none()
                && s.control_plane_instance_id == instance_id
                && s.connect_time.is_some_and(|t| t < started)
        };
        if !spec.subscriptions.iter().any(stale) {
            continue;
        }
        let mut updated = spec.clone();
        for s in &mut updated.subscriptions {
            if stale(s) {
                s.disconnect_time = Some(started);
            }
        }
        match store
            .update(insight.key.clone(), Spec::DataplaneInsight(updated), &insight.version)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
