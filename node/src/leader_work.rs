//! The work only the Raft leader does, started again on every peer that becomes leader.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kuma_raft::RaftNode;
use kuma_store::ResourceStore;
use tracing::{info, warn};

use crate::cluster_work::{ensure_default_mesh, ensure_identity_secrets};

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
