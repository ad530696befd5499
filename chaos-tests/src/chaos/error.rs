//! What can stop a chaos run before its checks. A failed check is not an error: it is in the
//! report.

use std::path::PathBuf;
use std::time::Duration;

/// Why a chaos run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error(
        "cannot run {binary}: {source}; build it first with `cargo build --workspace --bins` \
         (or pass --kuma-cp PATH)"
    )]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("`kuma-cp raft certs` failed: {0}")]
    Certs(String),
    #[error("peer {id} did not become ready within {waited:?}; the end of its log:\n{log_tail}")]
    NotReady { id: u64, waited: Duration, log_tail: String },
    #[error("peer {id} exited ({status}); the end of its log:\n{log_tail}")]
    Exited { id: u64, status: String, log_tail: String },
    /// The cluster did not get back to a state the run can go on from; `statuses` is what every
    /// peer said last.
    #[error(
        "{what} did not happen within {waited:?} (after {after}); the peers said:\n{statuses}"
    )]
    NoRecovery { what: String, after: String, waited: Duration, statuses: String },
    #[error("{what}, which needs root: run it as root or pass {instead}")]
    NeedsRoot { what: String, instead: &'static str },
    #[error("invalid settings: {0}")]
    Invalid(String),
}
