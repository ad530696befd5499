//! A full disk. RocksDB refuses a write when the filesystem has no space left; openraft would
//! take the storage error as fatal and stop this peer for good. Instead, a durable write that
//! fails for lack of space is tried again until it succeeds: meanwhile this peer acknowledges
//! nothing (its Raft core waits on the write, so as a leader it sends no heartbeats and the
//! others elect another leader), its status says why, and it carries on by itself once space
//! returns. Any other storage error stays fatal.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

/// Pause between attempts at a write the disk refused.
const RETRY: Duration = Duration::from_millis(500);

/// What this peer's disk last refused, shared by the storage and the status.
#[derive(Clone, Debug, Default)]
pub struct DiskHealth {
    problem: Arc<Mutex<Option<String>>>,
    closing: Arc<AtomicBool>,
}

impl DiskHealth {
    /// Why the disk refuses writes now, if it does.
    pub fn problem(&self) -> Option<String> {
        self.problem.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_problem(&self, problem: Option<String>) -> Option<String> {
        std::mem::replace(&mut *self.problem.lock().unwrap_or_else(|p| p.into_inner()), problem)
    }

    /// Stops retrying: the peer shuts down.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Runs `write` until it succeeds, or fails for another reason than a full disk, or the peer
    /// shuts down.
    pub(crate) async fn until_written<T, E: std::fmt::Display>(
        &self,
        what: &str,
        mut write: impl FnMut() -> Result<T, E>,
    ) -> Result<T, E> {
        let mut attempts = 0u64;
        loop {
            match write() {
                Ok(done) => {
                    if self.set_problem(None).is_some() {
                        info!(what, "the disk takes writes again");
                    }
                    return Ok(done);
                }
                Err(e) if is_out_of_space(&e) && !self.closing.load(Ordering::Acquire) => {
                    let problem = format!(
                        "the disk holding the Raft data is full ({e}); this peer acknowledges \
                         nothing until space is freed"
                    );
                    if attempts.is_multiple_of(20) {
                        warn!(what, "{problem}");
                    }
                    self.set_problem(Some(problem));
                    attempts += 1;
                    // The caller (a Raft storage call) waits: it must not proceed before the
                    // write is durable. The runtime's threads stay free for the API and status.
                    tokio::time::sleep(RETRY).await;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A RocksDB or file-system error saying the disk is full.
pub(crate) fn is_out_of_space(e: &impl std::fmt::Display) -> bool {
    let text = e.to_string();
    text.contains("No space left on device") || text.contains("NoSpace")
}

/// Bytes used by the files under `dir` (RocksDB's SST files, WAL and manifests).
pub(crate) fn size_of(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok().map(|m| (e.path(), m)))
        .map(|(path, m)| if m.is_dir() { size_of(&path) } else { m.len() })
        .sum()
}
