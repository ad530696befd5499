//! The image of a peer's latest Raft snapshot, kept as a file in `snapshots/` of its data
//! directory (RocksDB keeps only the snapshot's meta and the file's name, length and SHA-256).
//! Through RocksDB, every snapshot went whole through its write-ahead log, which is kept (and
//! replayed at every open) until memtables flush: hundreds of MB per snapshot at 100,000
//! resources.
//!
//! A file is written to `<name>.tmp`, synced, renamed to `<name>`, and the directory synced, so a
//! name either holds a whole image or does not exist; only then does RocksDB name it (synced).
//! Anything else in the directory (a temporary file torn by a crash, a whole file written just
//! before a crash, before RocksDB named it) is ignored and removed at the next open.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::backup::sha256_hex;
use crate::types::SnapshotMeta;

/// The directory, under the peer's data directory.
pub(crate) const DIR: &str = "snapshots";
const TMP: &str = ".tmp";

/// Which file holds a snapshot's image, and what it must read back as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileRef {
    pub name: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Why a stored image does not read back.
#[derive(Debug, thiserror::Error)]
#[error(
    "the Raft snapshot file {path} {reason}: the peer's data directory is damaged; restore the \
     peer from a backup (kuma-cp raft restore), or empty its data directory and rejoin it \
     (KUMA_STORE_RAFT_JOIN=true)"
)]
pub(crate) struct ReadError {
    path: String,
    reason: String,
}

#[derive(Clone, Debug)]
pub(crate) struct SnapshotDir {
    dir: PathBuf,
}

impl SnapshotDir {
    pub fn of(data_dir: &Path) -> SnapshotDir {
        SnapshotDir { dir: data_dir.join(DIR) }
    }

    /// A new name for the image of `meta`: never one in use, even for the same log position.
    pub fn name_for(meta: &SnapshotMeta) -> String {
        let (term, index) = meta.last_log_id.map_or((0, 0), |l| (l.leader_id.term, l.index));
        format!("snapshot-{index:020}-{term}-{:016x}.json", rand::random::<u64>())
    }

    /// Writes `data` as `name` durably: temporary file, fsync, rename, fsync of the directory.
    pub fn write(&self, name: &str, data: &[u8]) -> io::Result<FileRef> {
        if !self.dir.exists() {
            fs::create_dir_all(&self.dir)?;
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent)?;
            }
        }
        let tmp = self.dir.join(format!("{name}{TMP}"));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(data)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        fs::rename(&tmp, self.dir.join(name))?;
        sync_dir(&self.dir)?;
        Ok(FileRef { name: name.to_string(), bytes: data.len() as u64, sha256: sha256_hex(data) })
    }

    /// Reads the image `file` names, checking its length and checksum.
    pub fn read(&self, file: &FileRef) -> Result<Vec<u8>, ReadError> {
        let path = self.dir.join(&file.name);
        let problem = |reason: String| ReadError { path: path.display().to_string(), reason };
        let data = fs::read(&path).map_err(|e| problem(format!("does not read ({e})")))?;
        if data.len() as u64 != file.bytes {
            return Err(problem(format!(
                "holds {} bytes where {} were written",
                data.len(),
                file.bytes
            )));
        }
        let sum = sha256_hex(&data);
        if sum != file.sha256 {
            return Err(problem(format!(
                "does not match its checksum (sha256 {sum}, written {})",
                file.sha256
            )));
        }
        Ok(data)
    }

    /// Removes every file but `keep` (best effort: a file left over is removed next time).
    pub fn remove_others(&self, keep: Option<&str>) {
        let Ok(entries) = fs::read_dir(&self.dir) else { return };
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            if Some(name.to_string_lossy().as_ref()) == keep {
                continue;
            }
            if let Err(e) = fs::remove_file(entry.path()) {
                warn!(file = %entry.path().display(), "could not remove an old Raft snapshot: {e}");
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
