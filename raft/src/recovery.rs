//! Recovery from what replication cannot fix: seeding the peers of a new cluster from a snapshot
//! file (`kuma-cp raft restore`), and turning the one survivor of a lost majority into a cluster of
//! its own (`kuma-cp run --force-new-cluster`). Both write a peer's RocksDB before openraft opens it.
//!
//! **Restore** writes a brand-new data directory that looks like a peer which installed the
//! snapshot from a leader and purged its log: the snapshot (its membership is the new peer list,
//! all voters), the purge mark at the snapshot's log id, a vote in the snapshot's term, no log
//! entries. openraft starts from that (`get_initial_state` takes the last log id from the purge
//! mark and the membership from the state machine) and the peers elect a leader in the next term.
//! The restored state gets a new cluster id, derived from the file's checksum and the peer list,
//! so every peer restored from the same file with the same list agrees on it and no peer of the
//! old cluster is taken for one of the new.
//!
//! **Force-new-cluster** keeps every log entry and the snapshot, and appends, after the last entry,
//! a membership entry naming this peer alone, then an entry retiring the dropped peers (their
//! announced addresses leave the bootstraps; their ids are never reused). Both carry a term above
//! any this peer has seen, and the vote is raised to it, so the peer's log stays a valid Raft log:
//! terms never go down. Alone, the peer is its own majority: it elects itself and commits
//! everything it holds, acknowledged or not; nothing it held is lost. Raft's safety across the old
//! majority is given up on purpose: the dropped peers must never run again with their old data.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tracing::{info, warn};

use crate::backup::{sha256_hex, SnapshotFile, SnapshotFileError};
use crate::command::{Command, Op, RequestId};
use crate::config::RaftConfig;
use crate::db::{index_key, CF_LOGS, CF_META, KEY_LAST_PURGED, KEY_SNAPSHOT, KEY_VOTE};
use crate::log_store::LogStore;
use crate::replica::Replica;
use crate::state_machine::StateMachine;
use crate::types::{Entry, LogId, NodeId, PeerNode, SnapshotMeta, StoredMembership, Vote};

/// Where and as whom `restore` seeds a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoreTarget {
    /// The new peer's data directory: absent or empty.
    pub data_dir: PathBuf,
    /// The new peer's id; one of `peers`.
    pub node_id: NodeId,
    /// Every peer of the new cluster, id → `host:port` of its Raft RPC. The same on every peer.
    pub peers: BTreeMap<NodeId, String>,
}

/// What `restore` wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restored {
    /// The new cluster's id (the same for every peer restored from the file with the same peers).
    pub cluster_id: String,
    /// The log position the state was taken at, which the new cluster continues from.
    pub index: u64,
    pub term: u64,
    pub resources: u64,
}

/// What `force_new_cluster` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForceNewCluster {
    pub node_id: NodeId,
    pub raft_address: String,
    /// The voters this peer's data named before.
    pub previous_voters: BTreeSet<NodeId>,
    /// The members dropped (and retired).
    pub dropped: BTreeSet<NodeId>,
    /// The last log entry this peer held, kept with every one before it.
    pub last_kept: LogId,
    /// Index of the entry that makes this peer the only member; `None` when it was already.
    pub membership_index: Option<u64>,
    /// The term of the new entries, which the vote was raised to.
    pub term: u64,
}

/// Why a restore or a forced new cluster was not done. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("could not restore from {path}")]
    Snapshot {
        path: String,
        #[source]
        error: SnapshotFileError,
    },
    #[error(
        "--node-id {node_id} is not in --peers ({peers}): give this peer's id as --peers lists it"
    )]
    NotAPeer { node_id: NodeId, peers: String },
    #[error(
        "{dir} is not empty: restore each peer into a new, empty directory (its \
         KUMA_STORE_RAFT_DATA_DIR), never over existing Raft data"
    )]
    DataDirNotEmpty { dir: String },
    #[error("could not prepare the data directory {dir} (give one this user may create or write)")]
    DataDir {
        dir: String,
        #[source]
        error: std::io::Error,
    },
    #[error("could not open the Raft data in {dir} ({reason})")]
    Open { dir: String, reason: String },
    #[error("could not {what} ({reason})")]
    Storage { what: &'static str, reason: String },
    #[error(
        "this peer holds no Raft data (no log, no snapshot): there is nothing to keep; remove \
         --force-new-cluster, or restore a backup with kuma-cp raft restore"
    )]
    NoData,
    #[error(
        "peer {node_id} is not a member of the cluster its data describes (members: {members}): \
         force a new cluster from a peer that was a voter"
    )]
    NotAMember { node_id: NodeId, members: String },
    #[error("the Raft data is damaged: {what} does not read ({reason})")]
    Corrupt { what: &'static str, reason: String },
}

fn list_ids(ids: impl IntoIterator<Item = NodeId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(|id| id.to_string()).collect();
    if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    }
}

/// The id of a cluster restored from a file with checksum `sha256` onto `peers`: every peer
/// restored from the same file with the same list computes the same one, and it names no other
/// cluster.
pub fn restored_cluster_id(sha256: &str, peers: &BTreeMap<NodeId, String>) -> String {
    let list: Vec<String> = peers.iter().map(|(id, address)| format!("{id}={address}")).collect();
    let hex = sha256_hex(format!("kuma-raft-restore\n{sha256}\n{}", list.join(",")).as_bytes());
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

/// Seeds a new peer's data directory from the snapshot file at `from`; see the module docs.
/// Refuses a damaged file and a directory that holds anything.
pub async fn restore(from: &Path, target: &RestoreTarget) -> Result<Restored, RecoveryError> {
    let snapshot_error =
        |error| RecoveryError::Snapshot { path: from.display().to_string(), error };
    let file = SnapshotFile::read(from).map_err(snapshot_error)?;
    if !target.peers.contains_key(&target.node_id) {
        let peers: Vec<String> = target.peers.iter().map(|(id, a)| format!("{id}={a}")).collect();
        return Err(RecoveryError::NotAPeer { node_id: target.node_id, peers: peers.join(",") });
    }
    let dir = &target.data_dir;
    let dir_error = |error| RecoveryError::DataDir { dir: dir.display().to_string(), error };
    if dir.exists() {
        if std::fs::read_dir(dir).map_err(dir_error)?.next().is_some() {
            return Err(RecoveryError::DataDirNotEmpty { dir: dir.display().to_string() });
        }
    } else {
        std::fs::create_dir_all(dir).map_err(dir_error)?;
    }

    let header = file.header().clone();
    let mut image = file.image().map_err(snapshot_error)?;
    let Some(applied) = image.applied else {
        // `SnapshotFile::read` checked the body holds one.
        return Err(snapshot_error(SnapshotFileError::BadBody {
            reason: "it holds no applied log position".to_string(),
        }));
    };
    let cluster_id = restored_cluster_id(&header.sha256, &target.peers);
    let voters: BTreeSet<NodeId> = target.peers.keys().copied().collect();
    let nodes: BTreeMap<NodeId, PeerNode> = target
        .peers
        .iter()
        .map(|(id, address)| (*id, PeerNode { raft_address: address.clone() }))
        .collect();
    let membership = StoredMembership::new(Some(applied), Membership::new(vec![voters], nodes));
    image.membership = membership.clone();
    // The new peers announce themselves; no id of the old cluster means anything here.
    image.peers.clear();
    image.retired.clear();
    image.cluster_id = Some(cluster_id.clone());
    let data = serde_json::to_vec(&image).map_err(|e| RecoveryError::Storage {
        what: "encode the restored state",
        reason: e.to_string(),
    })?;
    let meta = SnapshotMeta {
        last_log_id: Some(applied),
        last_membership: membership,
        snapshot_id: format!("restored-{}-{}", header.term, header.index),
    };
    // The vote starts in the snapshot's term: the new cluster's first election is in a later one.
    let vote = Vote::new(header.term, target.node_id);
    if let Err(e) = write_restored(dir, meta, data, vote, applied).await {
        // The directory was empty: leave it so, and a retry starts clean.
        let _ = clear_dir(dir);
        return Err(e);
    }
    Ok(Restored { cluster_id, index: header.index, term: header.term, resources: header.resources })
}

async fn write_restored(
    dir: &Path,
    meta: SnapshotMeta,
    data: Vec<u8>,
    vote: Vote,
    applied: LogId,
) -> Result<(), RecoveryError> {
    let storage = |what| {
        move |e: openraft::StorageError<NodeId>| RecoveryError::Storage {
            what,
            reason: e.to_string(),
        }
    };
    let db = crate::db::open(dir).map_err(|e| RecoveryError::Open {
        dir: dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut state_machine = StateMachine::open(db.clone(), Arc::new(Replica::default()))
        .map_err(storage("open the state machine"))?;
    // The same write a peer makes when a leader sends it a snapshot (synced).
    state_machine
        .install_snapshot(&meta, Box::new(Cursor::new(data)))
        .await
        .map_err(storage("store the snapshot"))?;
    let mut log = LogStore::new(db.clone());
    log.save_vote(&vote).await.map_err(storage("store the vote"))?;
    // The log starts after the snapshot.
    log.purge(applied).await.map_err(storage("store the log's start"))?;
    log.save_committed(Some(applied)).await.map_err(storage("store the commit index"))?;
    db.flush().map_err(|e| RecoveryError::Storage { what: "flush", reason: e.to_string() })?;
    Ok(())
}

fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            std::fs::remove_dir_all(path)?;
        } else {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Runs `force_new_cluster` when the config asks for it, and says loudly what it did. Called
/// right after the peer's RocksDB opens, before openraft reads it.
pub(crate) fn force_new_cluster_if_asked(
    db: &DB,
    config: &RaftConfig,
) -> Result<(), RecoveryError> {
    if !config.force_new_cluster {
        return Ok(());
    }
    let address = config.peers.get(&config.node_id).cloned().unwrap_or_default();
    let done = force_new_cluster(db, config.node_id, &address)?;
    let kept = format!("index {} (term {})", done.last_kept.index, done.last_kept.leader_id.term);
    match done.membership_index {
        Some(index) => warn!(
            peer = done.node_id,
            address = %done.raft_address,
            previous_voters = %list_ids(done.previous_voters.iter().copied()),
            dropped = %list_ids(done.dropped.iter().copied()),
            membership_index = index,
            term = done.term,
            "--force-new-cluster: this peer is now the only member of its cluster; every log entry \
             up to {kept} is kept and will be committed. The dropped peers must never start again \
             with their old data. Remove --force-new-cluster before this peer's next restart, then \
             add fresh peers (new ids, KUMA_STORE_RAFT_JOIN=true) with kumactl raft add-peer"
        ),
        None => warn!(
            peer = done.node_id,
            "--force-new-cluster: this peer is already the only member of its cluster; nothing \
             was changed. Remove --force-new-cluster: on a restart after peers were added it would \
             drop them again"
        ),
    }
    info!(last_kept = %kept, "Raft data kept as it was");
    Ok(())
}

/// Rewrites the membership in this peer's data to this peer alone, keeping every log entry and
/// the snapshot; see the module docs. `raft_address` is used when the data does not already name
/// this peer's address. A peer that is already alone is left as it is.
pub(crate) fn force_new_cluster(
    db: &DB,
    node_id: NodeId,
    raft_address: &str,
) -> Result<ForceNewCluster, RecoveryError> {
    let vote: Option<Vote> = read_meta(db, KEY_VOTE, "the vote")?;
    let last_purged: Option<LogId> = read_meta(db, KEY_LAST_PURGED, "the log's start")?;
    let logs = db.cf_handle(CF_LOGS).expect("the logs column family is created at open");
    let last_entry = match db.iterator_cf(logs, IteratorMode::End).next() {
        Some(item) => Some(decode_entry(item)?),
        None => None,
    };
    let last =
        last_entry.as_ref().map(|e| e.log_id).or(last_purged).ok_or(RecoveryError::NoData)?;
    let membership = last_membership(db)?.ok_or(RecoveryError::NoData)?;
    let members: BTreeSet<NodeId> = membership.nodes().map(|(id, _)| *id).collect();
    let previous_voters: BTreeSet<NodeId> = membership.voter_ids().collect();
    if !members.contains(&node_id) {
        return Err(RecoveryError::NotAMember { node_id, members: list_ids(members) });
    }
    let address = membership
        .membership()
        .get_node(&node_id)
        .map(|node| node.raft_address.clone())
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| raft_address.to_string());
    let dropped: BTreeSet<NodeId> = members.iter().copied().filter(|id| *id != node_id).collect();
    let vote_term = vote.map_or(0, |v| v.leader_id.term);
    if dropped.is_empty() && previous_voters.contains(&node_id) {
        return Ok(ForceNewCluster {
            node_id,
            raft_address: address,
            previous_voters,
            dropped,
            last_kept: last,
            membership_index: None,
            term: vote_term,
        });
    }

    let term = vote_term.max(last.leader_id.term) + 1;
    let leader = CommittedLeaderId::new(term, node_id);
    let alone = Membership::new(
        vec![BTreeSet::from([node_id])],
        BTreeMap::from([(node_id, PeerNode { raft_address: address.clone() })]),
    );
    let mut entries = vec![Entry {
        log_id: LogId::new(leader, last.index + 1),
        payload: EntryPayload::Membership(alone),
    }];
    if !dropped.is_empty() {
        entries.push(Entry {
            log_id: LogId::new(leader, last.index + 2),
            payload: EntryPayload::Normal(Command {
                request_id: RequestId { origin: rand::random(), seq: 0 },
                at: chrono::Utc::now(),
                ops: dropped.iter().map(|id| Op::Retire { id: *id }).collect(),
            }),
        });
    }
    let meta = db.cf_handle(CF_META).expect("the meta column family is created at open");
    let encode = |value: Result<Vec<u8>, serde_json::Error>| {
        value.map_err(|e| RecoveryError::Storage {
            what: "encode the new membership",
            reason: e.to_string(),
        })
    };
    // One synced batch: either all of it is on disk or none.
    let mut batch = WriteBatch::default();
    for entry in &entries {
        batch.put_cf(logs, index_key(entry.log_id.index), encode(serde_json::to_vec(entry))?);
    }
    batch.put_cf(meta, KEY_VOTE, encode(serde_json::to_vec(&Vote::new(term, node_id)))?);
    let mut synced = WriteOptions::default();
    synced.set_sync(true);
    db.write_opt(batch, &synced).map_err(|e| RecoveryError::Storage {
        what: "write the new membership",
        reason: e.to_string(),
    })?;
    Ok(ForceNewCluster {
        node_id,
        raft_address: address,
        previous_voters,
        dropped,
        last_kept: last,
        membership_index: Some(last.index + 1),
        term,
    })
}

fn read_meta<T: DeserializeOwned>(
    db: &DB,
    key: &[u8],
    what: &'static str,
) -> Result<Option<T>, RecoveryError> {
    let meta = db.cf_handle(CF_META).expect("the meta column family is created at open");
    let bytes =
        db.get_cf(meta, key).map_err(|e| RecoveryError::Corrupt { what, reason: e.to_string() })?;
    bytes
        .map(|b| serde_json::from_slice(&b))
        .transpose()
        .map_err(|e| RecoveryError::Corrupt { what, reason: e.to_string() })
}

/// A log entry as RocksDB's iterator gives it.
type LogItem = Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

fn decode_entry(item: LogItem) -> Result<Entry, RecoveryError> {
    let corrupt = |reason: String| RecoveryError::Corrupt { what: "a log entry", reason };
    let (_, value) = item.map_err(|e| corrupt(e.to_string()))?;
    serde_json::from_slice(&value).map_err(|e| corrupt(e.to_string()))
}

/// The stored snapshot's metadata (the state machine keeps `{meta, data}`).
#[derive(Deserialize)]
struct StoredSnapshotMeta {
    meta: SnapshotMeta,
}

/// The membership in effect: the last one in the log, else the snapshot's.
fn last_membership(db: &DB) -> Result<Option<StoredMembership>, RecoveryError> {
    let logs = db.cf_handle(CF_LOGS).expect("the logs column family is created at open");
    for item in db.iterator_cf(logs, IteratorMode::End) {
        let entry = decode_entry(item)?;
        if let EntryPayload::Membership(membership) = entry.payload {
            return Ok(Some(StoredMembership::new(Some(entry.log_id), membership)));
        }
    }
    let snapshot: Option<StoredSnapshotMeta> = read_meta(db, KEY_SNAPSHOT, "the snapshot")?;
    Ok(snapshot.map(|s| s.meta.last_membership).filter(|m| m.log_id().is_some()))
}

#[cfg(test)]
mod tests;
