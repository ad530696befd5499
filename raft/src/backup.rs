//! Backups: a consistent snapshot of the replicated state as one self-checking file
//! (`kumactl raft snapshot save`, `GET /status/raft/snapshot`), which `kuma-cp raft restore`
//! turns into the data of a new cluster (see `recovery`).
//!
//! The file is three parts:
//!
//! ```text
//! kuma-raft-snapshot v1\n
//! {"clusterId":"…","index":812,"term":4,"createdAt":"…","takenOn":2,"resources":57,"bodyBytes":40213,"sha256":"…"}\n
//! <bodyBytes bytes: the replica image as JSON, what a Raft snapshot of this peer holds>
//! ```
//!
//! The first line names the format and its version, so a reader refuses a file it does not know
//! before parsing anything else. The header says where in the log the state was taken (the index
//! and term of the last applied entry) and carries the SHA-256 of the body: a truncated, damaged
//! or edited file is refused instead of seeding a cluster with half a state.

use std::path::Path;

use chrono::{DateTime, Utc};
use ring::digest::{digest, SHA256};
use serde::{Deserialize, Serialize};

use crate::node::RaftNode;
use crate::replica::{ImageView, ReplicaImage, ReplicaState};
use crate::types::NodeId;

/// The first line's format name.
pub const SNAPSHOT_FORMAT: &str = "kuma-raft-snapshot";
/// The version of the format this build writes and reads.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 1;

/// What the header of a snapshot file says about its body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnapshotHeader {
    /// The id of the cluster it was taken from, once the cluster has one.
    pub cluster_id: Option<String>,
    /// Index of the last log entry the state holds.
    pub index: u64,
    /// Term of that entry.
    pub term: u64,
    pub created_at: DateTime<Utc>,
    /// The peer that served it.
    pub taken_on: NodeId,
    /// How many resources the state holds.
    pub resources: u64,
    /// Length of the body in bytes.
    pub body_bytes: u64,
    /// SHA-256 of the body, lowercase hex.
    pub sha256: String,
}

/// A snapshot file: its header and body, checked against each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotFile {
    header: SnapshotHeader,
    body: Vec<u8>,
}

/// Why bytes are not a usable snapshot file. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("could not read the file")]
    Read(#[source] std::io::Error),
    #[error(
        "this is not a kuma-cp Raft snapshot (it does not start with \"{SNAPSHOT_FORMAT} v\"): \
         give a file written by kumactl raft snapshot save"
    )]
    NotASnapshot,
    #[error(
        "the snapshot is in format version {version}, this kuma-cp reads version \
         {SNAPSHOT_FORMAT_VERSION}: restore it with the kuma-cp release that wrote it"
    )]
    UnsupportedVersion { version: String },
    #[error(
        "the snapshot's header is damaged ({reason}): the file is corrupted, use another backup"
    )]
    BadHeader { reason: String },
    #[error(
        "the snapshot is truncated: its header announces {expected} bytes of data, the file holds \
         {actual}; the copy is incomplete, use another backup"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error(
        "the snapshot holds {actual} bytes of data where its header announces {expected}: the file \
         is corrupted, use another backup"
    )]
    TooLong { expected: u64, actual: u64 },
    #[error(
        "the snapshot's data does not match its checksum (sha256 {actual}, the header says \
         {expected}): the file is corrupted or was changed, use another backup"
    )]
    ChecksumMismatch { expected: String, actual: String },
    #[error("the snapshot's data is not a replicated state ({reason}): use another backup")]
    BadBody { reason: String },
    #[error(
        "the snapshot's header says {field} {header} but its data holds {body}: the file was \
         changed, use another backup"
    )]
    Inconsistent { field: &'static str, header: String, body: String },
}

/// Why a peer could not serve a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// No leader confirmed that this peer's copy holds every acknowledged write.
    #[error(
        "peer {peer} could not confirm with a leader that its copy is current ({reason}); save \
         the snapshot once a majority of the peers is up, or from a peer that reaches the leader"
    )]
    Unavailable { peer: NodeId, reason: String },
    /// Nothing was ever applied: the cluster has not formed yet.
    #[error("peer {peer} has applied nothing yet: the cluster has not formed; retry once it has a leader")]
    Empty { peer: NodeId },
    #[error("could not encode the replicated state")]
    Encode(#[source] serde_json::Error),
    #[error("the snapshot's encoding stopped before it was done ({reason}); ask again")]
    Interrupted { reason: String },
}

impl BackupError {
    /// Whether asking again (later, or another peer) may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, BackupError::Unavailable { .. } | BackupError::Empty { .. })
    }
}

/// SHA-256 of `bytes`, lowercase hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    digest(&SHA256, bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn magic_line() -> String {
    format!("{SNAPSHOT_FORMAT} v{SNAPSHOT_FORMAT_VERSION}")
}

impl SnapshotFile {
    /// The file of a replica taken on peer `taken_on`: its image encoded in one pass (the
    /// document a Raft snapshot holds), then its checksum.
    pub(crate) fn of_view(
        view: &ImageView,
        taken_on: NodeId,
        created_at: DateTime<Utc>,
    ) -> Result<SnapshotFile, BackupError> {
        let applied = view.applied.ok_or(BackupError::Empty { peer: taken_on })?;
        let body = view.encode().map_err(BackupError::Encode)?;
        Ok(SnapshotFile::of_body(
            body,
            view.cluster_id.clone(),
            applied,
            view.resources.len(),
            taken_on,
            created_at,
        ))
    }

    /// The file of a replica image taken on peer `taken_on`, the image encoded as it is (its
    /// specs as `serde_json::Value`s): what earlier versions wrote.
    #[cfg(test)]
    pub(crate) fn of_image(
        image: &ReplicaImage,
        taken_on: NodeId,
        created_at: DateTime<Utc>,
    ) -> Result<SnapshotFile, BackupError> {
        let applied = image.applied.ok_or(BackupError::Empty { peer: taken_on })?;
        let body = serde_json::to_vec(image).map_err(BackupError::Encode)?;
        let (cluster_id, resources) = (image.cluster_id.clone(), image.resources.len());
        Ok(SnapshotFile::of_body(body, cluster_id, applied, resources, taken_on, created_at))
    }

    fn of_body(
        body: Vec<u8>,
        cluster_id: Option<String>,
        applied: crate::types::LogId,
        resources: usize,
        taken_on: NodeId,
        created_at: DateTime<Utc>,
    ) -> SnapshotFile {
        let header = SnapshotHeader {
            cluster_id,
            index: applied.index,
            term: applied.leader_id.term,
            created_at,
            taken_on,
            resources: resources as u64,
            body_bytes: body.len() as u64,
            sha256: sha256_hex(&body),
        };
        SnapshotFile { header, body }
    }

    pub fn header(&self) -> &SnapshotHeader {
        &self.header
    }

    /// The whole file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let header = serde_json::to_string(&self.header).expect("a header always serializes");
        let mut bytes = Vec::with_capacity(self.body.len() + header.len() + 64);
        bytes.extend_from_slice(magic_line().as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// Reads and checks a whole file: format, version, length, checksum, and that the header
    /// describes the body.
    pub fn from_bytes(bytes: &[u8]) -> Result<SnapshotFile, SnapshotFileError> {
        let (first, rest) = split_line(bytes).ok_or(SnapshotFileError::NotASnapshot)?;
        let version = std::str::from_utf8(first)
            .ok()
            .and_then(|line| line.strip_prefix(SNAPSHOT_FORMAT))
            .and_then(|tail| tail.strip_prefix(" v"))
            .ok_or(SnapshotFileError::NotASnapshot)?;
        if version != SNAPSHOT_FORMAT_VERSION.to_string() {
            return Err(SnapshotFileError::UnsupportedVersion {
                version: version.chars().take(20).collect(),
            });
        }
        let (header, body) = split_line(rest).ok_or_else(|| SnapshotFileError::BadHeader {
            reason: "the file ends inside the header".to_string(),
        })?;
        let header: SnapshotHeader = serde_json::from_slice(header)
            .map_err(|e| SnapshotFileError::BadHeader { reason: e.to_string() })?;
        let actual = body.len() as u64;
        if actual < header.body_bytes {
            return Err(SnapshotFileError::Truncated { expected: header.body_bytes, actual });
        }
        if actual > header.body_bytes {
            return Err(SnapshotFileError::TooLong { expected: header.body_bytes, actual });
        }
        let sum = sha256_hex(body);
        if sum != header.sha256 {
            return Err(SnapshotFileError::ChecksumMismatch {
                expected: header.sha256,
                actual: sum,
            });
        }
        let file = SnapshotFile { header, body: body.to_vec() };
        file.check_body()?;
        Ok(file)
    }

    /// Reads and checks the file at `path`.
    pub fn read(path: &Path) -> Result<SnapshotFile, SnapshotFileError> {
        let bytes = std::fs::read(path).map_err(SnapshotFileError::Read)?;
        SnapshotFile::from_bytes(&bytes)
    }

    /// The replicated state the body holds.
    pub(crate) fn image(&self) -> Result<ReplicaImage, SnapshotFileError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| SnapshotFileError::BadBody { reason: e.to_string() })
    }

    /// A checksum only proves the body is what the writer wrote; the header's claims are checked
    /// against the body too, since restore takes the log position from it.
    fn check_body(&self) -> Result<(), SnapshotFileError> {
        let image = self.image()?;
        let inconsistent = |field, header: String, body: String| {
            Err(SnapshotFileError::Inconsistent { field, header, body })
        };
        let Some(applied) = image.applied else {
            return Err(SnapshotFileError::BadBody {
                reason: "it holds no applied log position".to_string(),
            });
        };
        let h = &self.header;
        if applied.index != h.index {
            return inconsistent("index", h.index.to_string(), applied.index.to_string());
        }
        if applied.leader_id.term != h.term {
            return inconsistent("term", h.term.to_string(), applied.leader_id.term.to_string());
        }
        if image.resources.len() as u64 != h.resources {
            return inconsistent(
                "resources",
                h.resources.to_string(),
                image.resources.len().to_string(),
            );
        }
        if image.cluster_id != h.cluster_id {
            let show = |id: &Option<String>| id.clone().unwrap_or_else(|| "none".to_string());
            return inconsistent("clusterId", show(&h.cluster_id), show(&image.cluster_id));
        }
        // Every resource must read back as a resource of its type.
        ReplicaState::from_image(image)
            .map(drop)
            .map_err(|e| SnapshotFileError::BadBody { reason: e.to_string() })
    }
}

/// The bytes before the first newline and those after it.
fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|b| *b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

impl RaftNode {
    /// A consistent snapshot of the replicated state, from this peer: it first confirms with the
    /// leader how far the log is committed and waits until it has applied that far, so the
    /// snapshot holds every write acknowledged before the call, wherever it was made.
    pub async fn save_snapshot(&self) -> Result<SnapshotFile, BackupError> {
        self.read_barrier()
            .await
            .map_err(|e| BackupError::Unavailable { peer: self.id(), reason: e.to_string() })?;
        // A view under the replica's lock (reference counts, no copies), encoded after it on a
        // blocking thread: applies, reads and the runtime's workers go on meanwhile.
        let view = self.replica().read(ReplicaState::view);
        let (peer, created_at) = (self.id(), Utc::now());
        tokio::task::spawn_blocking(move || SnapshotFile::of_view(&view, peer, created_at))
            .await
            .map_err(|e| BackupError::Interrupted { reason: e.to_string() })?
    }
}

#[cfg(test)]
pub(crate) mod tests;
