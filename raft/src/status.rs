//! What a peer says about itself and the cluster: for `GET /status/raft` and
//! `kumactl inspect control-planes`.

use serde::{Deserialize, Serialize};

use crate::command::PeerInfo;
use crate::types::NodeId;

/// One peer's view.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerStatus {
    pub id: NodeId,
    pub raft_address: String,
    /// `Leader`, `Follower`, `Candidate`, `Learner` or `Shutdown`.
    pub role: String,
    pub term: u64,
    pub leader: Option<NodeId>,
    pub last_log_index: Option<u64>,
    pub last_applied_index: Option<u64>,
    /// Voters and learners of the current membership, by id.
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// On a leader: how long ago a majority last acknowledged it. A leader cut off from its
    /// majority keeps its role (openraft 0.9 has no check-quorum) but this grows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis_since_quorum_ack: Option<u64>,
    /// On a follower or learner: how long ago it last heard from a leader.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub millis_since_leader_contact: Option<u64>,
    /// The cluster's id, once the first leader named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// The last log index the latest snapshot covers, and the last one purged from the log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_index: Option<u64>,
    /// Bytes the Raft data (RocksDB) takes on disk.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Why this peer cannot do its part now (e.g. its disk is full).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// The cluster as one peer sees it: every member with its own status when it answered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// The peer that answered.
    pub this: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    pub members: Vec<MemberStatus>,
    /// How many voters may fail now with a majority left: healthy voters minus a majority.
    #[serde(default)]
    pub failure_tolerance: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberStatus {
    pub id: NodeId,
    pub raft_address: String,
    /// `voter` or `learner`.
    pub membership: String,
    /// Its status when it answered; `None` when it did not (then `healthy` is false).
    pub status: Option<PeerStatus>,
    pub healthy: bool,
    /// How many entries it trails the leader by (the leader's last log index minus its own),
    /// when both answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// What it serves (xDS, API, bootstrap), once it announced it.
    pub serves: Option<PeerInfo>,
}

/// How many of `voters` may fail with a majority of them left, counting only `healthy` ones.
pub fn failure_tolerance(voters: usize, healthy: usize) -> usize {
    let majority = voters / 2 + 1;
    healthy.saturating_sub(majority)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_tolerance_counts_healthy_voters_above_a_majority() {
        assert_eq!(failure_tolerance(3, 3), 1);
        assert_eq!(failure_tolerance(3, 2), 0);
        assert_eq!(failure_tolerance(5, 5), 2);
        assert_eq!(failure_tolerance(5, 4), 1);
        assert_eq!(failure_tolerance(1, 1), 0);
        assert_eq!(failure_tolerance(3, 1), 0);
    }
}
