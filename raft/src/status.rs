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
    /// What it serves (xDS, API, bootstrap), once it announced it.
    pub serves: Option<PeerInfo>,
}
