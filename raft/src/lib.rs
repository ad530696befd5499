//! The replicated store of universal HA (DESIGN.md section 4): openraft 0.9 with its log, vote
//! and snapshots in RocksDB, a state machine holding the resources, the peer RPC (gRPC), write
//! batching and forwarding to the leader, consistent reads on any peer, membership changes.
//!
//! openraft and RocksDB types stay inside this crate; others see `RaftNode`, `RaftStore` and
//! plain data. Only `node/` (kuma-cp) links this crate.

// openraft's storage traits return its (large) `StorageError` by value; our helpers match them.
#![allow(clippy::result_large_err)]

mod backup;
mod call;
mod command;
mod config;
mod db;
mod disk;
mod early;
mod election;
mod formation;
mod log_store;
mod metrics;
mod network;
mod node;
mod recovery;
mod replica;
mod rpc;
mod snapshot_file;
mod state_machine;
mod status;
mod store;
mod types;
mod writer;

pub use backup::{
    BackupError, SnapshotFile, SnapshotFileError, SnapshotHeader, SNAPSHOT_FORMAT,
    SNAPSHOT_FORMAT_VERSION,
};
pub use command::PeerInfo;
pub use config::{PeerListError, PeerTls, RaftConfig, Upkeep};
pub use disk::DiskHealth;
pub use formation::Refusal;
pub use log_store::probe_synced_appends;
pub use node::{RaftNode, RaftStartError};
pub use recovery::{restore, restored_cluster_id, RecoveryError, RestoreTarget, Restored};
pub use rpc::ForwardError;
pub use status::{ClusterStatus, MemberStatus, PeerStatus};
pub use store::RaftStore;
pub use types::NodeId;

#[cfg(test)]
mod tests;
