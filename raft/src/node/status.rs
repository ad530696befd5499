//! What this peer says about itself and, asking each member, about the cluster.

use std::collections::BTreeSet;
use std::time::Duration;

use openraft::ServerState;

use super::RaftNode;
use crate::command::Peers;
use crate::formation::{Gate, Hello};
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
            millis_since_leader_contact: (metrics.state != ServerState::Leader)
                .then(|| self.contact.elapsed().as_millis() as u64),
            cluster_id: self.replica.cluster_id(),
            snapshot_index: metrics.snapshot.map(|l| l.index),
            purged_index: metrics.purged.map(|l| l.index),
            disk_bytes: crate::disk::size_of(&self.config.data_dir),
            problem: self.disk.problem().or_else(|| match self.admission.gate() {
                Gate::Deciding => Some(
                    "the data directory is empty: waiting for every listed peer to answer before \
                     forming or joining the cluster"
                        .to_string(),
                ),
                Gate::Rejoining => Some(
                    "this peer lost its data: a learner until it caught up, then a voter again"
                        .to_string(),
                ),
                Gate::Open => None,
            }),
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
            let healthy =
                status.as_ref().is_some_and(|s| s.role != "Shutdown" && s.problem.is_none());
            members.push(MemberStatus {
                id,
                raft_address: address,
                membership: if voter { "voter" } else { "learner" }.to_string(),
                status,
                healthy,
                lag: None,
                serves: peers.get(&id).cloned(),
            });
        }
        let leader_last = members
            .iter()
            .filter_map(|m| m.status.as_ref())
            .find(|s| Some(s.id) == this.leader)
            .and_then(|s| s.last_log_index);
        for member in &mut members {
            let own = member.status.as_ref().map(|s| s.last_log_index.unwrap_or(0));
            member.lag = leader_last.zip(own).map(|(leader, own)| leader.saturating_sub(own));
        }
        let voters = members.iter().filter(|m| m.membership == "voter");
        let failure_tolerance = crate::status::failure_tolerance(
            voters.clone().count(),
            voters.filter(|m| m.healthy).count(),
        );
        ClusterStatus {
            this: this.id,
            leader: this.leader,
            term: this.term,
            members,
            failure_tolerance,
        }
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
