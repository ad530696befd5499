//! What can stop a load run before it has measured anything.

use std::path::PathBuf;
use std::time::Duration;

/// Why a load run could not complete. A missed target is not an error: it is in the report.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "cannot run {binary}: {source}; build it first with `cargo build --release --bins` \
         (or pass --kuma-cp PATH)"
    )]
    Spawn { binary: PathBuf, source: std::io::Error },
    #[error("kuma-cp did not become ready within {waited:?}; the end of its log:\n{log_tail}")]
    NotReady { waited: Duration, log_tail: String },
    #[error("kuma-cp exited ({status}); the end of its log:\n{log_tail}")]
    Exited { status: String, log_tail: String },
    #[error("cannot read the memory of kuma-cp (pid {pid}) from /proc: {source}")]
    Rss { pid: u32, source: std::io::Error },
    #[error("{request} failed: {source}")]
    Http { request: String, source: reqwest::Error },
    #[error("{request} answered {status}: {body}")]
    Api { request: String, status: u16, body: String },
    #[error(
        "too few file descriptors: `ulimit -n` is {soft} (hard limit {hard}) but {needed} \
         dataplanes need about {wanted} (one socket per stream here and in kuma-cp); raise it \
         with `ulimit -n {wanted}` or run with a smaller --n"
    )]
    FileLimit { soft: u64, hard: u64, needed: usize, wanted: u64 },
    #[error("cannot open the ADS stream of {dataplane}: {reason}")]
    Connect { dataplane: String, reason: String },
    #[error("the ADS stream of {dataplane} ended: {reason}")]
    StreamEnded { dataplane: String, reason: String },
    #[error(
        "{missing} of {total} ADS streams did not get their initial config ACKed within \
         {waited:?} (e.g. {examples})"
    )]
    SetupTimeout { missing: usize, total: usize, waited: Duration, examples: String },
    #[error(
        "round {round}: {missing} of {total} ADS streams never ACKed the new endpoints within \
         {waited:?} (e.g. {examples})"
    )]
    NotConverged { round: usize, missing: usize, total: usize, waited: Duration, examples: String },
    /// A Raft cluster of kuma-cp peers did not start or keep running.
    #[error(transparent)]
    Cluster(#[from] crate::chaos::ChaosError),
    #[error("{0}")]
    Invalid(String),
}
