//! Upkeep: snapshots by size as well as by count (openraft 0.9 counts entries only), and the
//! removal of voters dead for longer than configured (Consul's autopilot CleanupDeadServers),
//! never below the configured minimum of voters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use tokio::time::Instant;
use tracing::{info, warn};

use super::RaftNode;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::types::NodeId;

/// How often sizes and peers are looked at.
const TICK: Duration = Duration::from_secs(1);
/// How long a peer has to answer the leader's health check.
const CHECK_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs until openraft shuts down.
pub(super) async fn run(node: Arc<RaftNode>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut snapshots = SnapshotBySize::default();
    let mut dead = DeadPeers::default();
    loop {
        tick.tick().await;
        let m = node.raft.metrics().borrow().clone();
        if m.state == ServerState::Shutdown {
            return;
        }
        snapshots.check(&node, m.snapshot.map(|l| l.index)).await;
        if m.state == ServerState::Leader {
            if let Some(after) = node.config.upkeep.remove_dead_after {
                dead.check(&node, after).await;
            }
        } else {
            dead = DeadPeers::default();
        }
    }
}

/// Asks for a snapshot once the entries appended since the last one reach the byte threshold.
#[derive(Default)]
struct SnapshotBySize {
    /// The snapshot index and the appended-bytes count when it was last seen to change.
    last: Option<(Option<u64>, u64)>,
    asked: bool,
}

impl SnapshotBySize {
    async fn check(&mut self, node: &RaftNode, snapshot: Option<u64>) {
        let appended = node.appended_bytes();
        match self.last {
            Some((index, _)) if index == snapshot => {}
            _ => {
                self.last = Some((snapshot, appended));
                self.asked = false;
                return;
            }
        }
        let since = appended - self.last.map_or(0, |(_, at)| at);
        if !self.asked && since >= node.config.upkeep.snapshot_bytes {
            info!(bytes = since, "the log grew past store.raft.snapshotBytes: building a snapshot");
            self.asked = node.raft.trigger().snapshot().await.is_ok();
        }
    }
}

/// When each voter last answered the leader.
#[derive(Default)]
struct DeadPeers {
    last_seen: BTreeMap<NodeId, Instant>,
}

impl DeadPeers {
    async fn check(&mut self, node: &RaftNode, after: Duration) {
        let me = node.config.node_id;
        let voters: BTreeSet<NodeId> =
            node.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        self.last_seen.retain(|id, _| voters.contains(id));
        let now = Instant::now();
        for id in voters.iter().copied().filter(|id| *id != me) {
            let seen = self.last_seen.entry(id).or_insert(now);
            let answered = match node.committer.peer_client(id) {
                Ok(client) => matches!(
                    client.call(PeerRequest::Status, CHECK_TIMEOUT).await,
                    Ok(PeerResponse::Status(_))
                ),
                Err(_) => false,
            };
            if answered {
                *seen = Instant::now();
            }
        }
        let min_quorum = node.config.upkeep.min_quorum;
        let dead = self
            .last_seen
            .iter()
            .filter(|(_, seen)| seen.elapsed() >= after)
            .map(|(id, _)| *id)
            .min();
        let Some(id) = dead else { return };
        if voters.len() <= min_quorum {
            return;
        }
        warn!(
            peer = id,
            after = ?after,
            "no answer from this voter for store.raft.autopilot.removeDeadAfter: removing it"
        );
        match node.bounded_change(PeerRequest::RemovePeer { id }).await {
            Ok(()) => {
                self.last_seen.remove(&id);
                info!(peer = id, "removed a dead voter; its id is never used again");
            }
            Err(e) => warn!(peer = id, error = %e, "could not remove the dead voter"),
        }
    }
}
