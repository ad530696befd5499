//! What this peer says about itself and, asking each member, about the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ServerState;

use super::RaftNode;
use crate::command::Peers;
use crate::formation::Hello;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::status::{ClusterStatus, MemberStatus, PeerStatus};
use crate::types::NodeId;

/// How long a peer has to answer a status request before it counts as unhealthy.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

impl RaftNode {
    /// This peer's own status.
    pub fn status(&self) -> PeerStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        PeerStatus {
            id: self.config.node_id,
            raft_address: crate::writer::membership_address(&self.raft, self.config.node_id)
                .or_else(|| self.config.peers.get(&self.config.node_id).cloned())
                .unwrap_or_default(),
            role: match metrics.state {
                ServerState::Leader => "Leader",
                ServerState::Follower => "Follower",
                ServerState::Candidate => "Candidate",
                ServerState::Learner => "Learner",
                ServerState::Shutdown => "Shutdown",
            }
            .to_string(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        }
    }

    /// Every member as this peer sees it, each asked for its own status.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let this = self.status();
        let peers: Peers = self.replica.peers();
        let nodes: Vec<(NodeId, String, bool)> = {
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership().clone();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            membership
                .nodes()
                .map(|(id, node)| (*id, node.raft_address.clone(), voters.contains(id)))
                .collect()
        };
        let mut members = Vec::new();
        for (id, address, voter) in nodes {
            let status = if id == self.config.node_id {
                Some(this.clone())
            } else {
                match self.committer.peer_client(id) {
                    Ok(client) => match client.call(PeerRequest::Status, STATUS_TIMEOUT).await {
                        Ok(PeerResponse::Status(status)) => Some(status),
                        _ => None,
                    },
                    Err(_) => None,
                }
            };
            let healthy = status.as_ref().is_some_and(|s| s.role != "Shutdown");
            members.push(MemberStatus {
                id,
                raft_address: address,
                membership: if voter { "voter" } else { "learner" }.to_string(),
                status,
                healthy,
                serves: peers.get(&id).cloned(),
            });
        }
        ClusterStatus { this: this.id, leader: this.leader, term: this.term, members }
    }

    /// What this peer tells an empty peer about the cluster (see `formation`).
    pub(super) fn hello(&self, from: NodeId) -> Hello {
        let (knows_you, cluster_id) = self.replica.read(|s| {
            (s.peers.contains_key(&from) || s.retired.contains(&from), s.cluster_id.clone())
        });
        let leader = self.raft.metrics().borrow().current_leader;
        Hello {
            cluster_id,
            knows_you,
            leader,
            leader_address: leader
                .and_then(|l| crate::writer::membership_address(&self.raft, l))
                .map(|address| match leader {
                    Some(l) => self.committer.dial_address(l, &address),
                    None => address,
                }),
        }
    }
}
