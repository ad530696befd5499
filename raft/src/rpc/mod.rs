//! Peer RPC: one gRPC method carrying JSON-encoded requests between kuma-cp peers: Raft's own
//! messages, writes forwarded to the leader, read-index requests and status. Snapshot chunks go
//! on a second method with their bytes raw (`SNAPSHOT_PATH`, see `codec::RawChunk`).

mod client;
mod codec;
mod direct;
mod server;
#[cfg(test)]
mod tests;

pub use client::{DialError, PeerClient, PeerClients};
pub(crate) use direct::{listen, server_tls};
pub use server::{PeerHandler, PeerServer};

use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};

use crate::command::{Command, CommandResult};
use crate::formation::Hello;
use crate::status::PeerStatus;
use crate::types::{LogId, NodeId, TypeConfig};

/// The metadata key carrying the caller's cluster id, once it has one.
pub const CLUSTER_HEADER: &str = "kuma-raft-cluster";

/// The gRPC path of the method that carries every request as JSON.
pub const CALL_PATH: &str = "/kuma.raft.Peer/Call";
/// The gRPC path of `PeerRequest::InstallSnapshot` with the chunk's bytes raw. A path of its own,
/// not a new form on `CALL_PATH`: a peer of an earlier version answers it `Unimplemented` (it
/// knows no other path) instead of misreading the bytes, and the sender falls back to JSON.
pub const SNAPSHOT_PATH: &str = "/kuma.raft.Peer/InstallSnapshot";
pub const SERVICE_NAME: &str = "kuma.raft.Peer";
/// The largest peer message either way, at both ends (a snapshot chunk is the largest).
pub(crate) const MAX_MESSAGE: usize = 256 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write forwarded by a follower to the leader.
    Write(Command),
    /// Asks the leader for the index a linearizable read must wait for.
    ReadIndex,
    Status,
    /// Membership changes, served by the leader.
    AddPeer {
        id: NodeId,
        raft_address: String,
    },
    RemovePeer {
        id: NodeId,
    },
    /// Would the receiver vote for a candidate with this last log id (see `election`)?
    PreVote {
        last_log_id: Option<LogId>,
    },
    /// An empty peer asks what the cluster knows of it (see `formation`).
    Hello {
        from: NodeId,
    },
    /// A peer that lost its data asks the leader to take it back: as a learner until it caught
    /// up, then as a voter again.
    Rejoin {
        id: NodeId,
    },
    /// Leadership goes to `to` (served by the leader).
    TransferLeader {
        to: NodeId,
    },
    /// From a leader that just handed over to the receiver: campaign now.
    TimeoutNow,
}

/// Why a forwarded write or read-index request was not served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, thiserror::Error)]
pub enum ForwardError {
    #[error("peer {0} is not the leader")]
    NotLeader(NodeId),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Refused(String),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    AppendEntries(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    InstallSnapshot(
        Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>,
    ),
    Write(Result<(CommandResult, u64), ForwardError>),
    ReadIndex(Result<u64, ForwardError>),
    Status(PeerStatus),
    Membership(Result<(), ForwardError>),
    PreVote(bool),
    Hello(Hello),
}
