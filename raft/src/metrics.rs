//! This peer's Raft metrics, through the `metrics` facade (kuma-cp renders them on `/metrics`).
//! The handles are looked up once, on first use (after kuma-cp installed its recorder), and kept:
//! recording on the write path is an atomic add, never a registry lookup.
//!
//! Term, role, applied and last log index follow openraft's own metrics watch, so they cost
//! nothing per write beyond what openraft already publishes.

use std::sync::LazyLock;
use std::time::Instant;

use metrics::{Counter, Gauge, Histogram};
use openraft::ServerState;

use crate::types::{NodeId, PeerNode};

type RaftMetrics = openraft::RaftMetrics<NodeId, PeerNode>;

/// What the write path, the log store and the state machine record.
pub(crate) struct Recorded {
    /// Writes per Raft command: how well the coalescer gathers concurrent writes.
    pub write_batch_size: Histogram,
    /// Writes this peer forwarded to the leader and the leader committed.
    pub forwarded_writes: Counter,
    /// Synced RocksDB writes of the log and the vote.
    pub fsync_seconds: Histogram,
    pub commit_index: Gauge,
    /// Snapshots stored (built here or installed from the leader), and the size of the latest.
    pub snapshots: Counter,
    pub snapshot_bytes: Gauge,
    /// Early AppendEntries requests (see `early`) by how they ended.
    pub early_appended: Counter,
    pub early_refused: Counter,
    pub early_failed: Counter,
}

pub(crate) static RECORDED: LazyLock<Recorded> = LazyLock::new(|| Recorded {
    write_batch_size: metrics::histogram!("raft_write_batch_size"),
    forwarded_writes: metrics::counter!("raft_forwarded_writes_total"),
    fsync_seconds: metrics::histogram!("raft_fsync_duration_seconds"),
    commit_index: metrics::gauge!("raft_commit_index"),
    snapshots: metrics::counter!("raft_snapshots_total"),
    snapshot_bytes: metrics::gauge!("raft_snapshot_size_bytes"),
    early_appended: metrics::counter!("raft_early_appends_total", "outcome" => "appended"),
    early_refused: metrics::counter!("raft_early_appends_total", "outcome" => "refused"),
    early_failed: metrics::counter!("raft_early_appends_total", "outcome" => "failed"),
});

/// Counts an early AppendEntries request (see `early`) by its outcome.
pub(crate) fn early_append(outcome: &str) {
    match outcome {
        "appended" => RECORDED.early_appended.increment(1),
        "refused" => RECORDED.early_refused.increment(1),
        _ => RECORDED.early_failed.increment(1),
    }
}

/// Runs `write` (a synced write) and records how long it took.
pub(crate) fn fsync<T>(write: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let result = write();
    RECORDED.fsync_seconds.record(started.elapsed().as_secs_f64());
    result
}

/// The roles a peer can be in, as the `state` label of `raft_state`.
const STATES: [(ServerState, &str); 5] = [
    (ServerState::Learner, "learner"),
    (ServerState::Follower, "follower"),
    (ServerState::Candidate, "candidate"),
    (ServerState::Leader, "leader"),
    (ServerState::Shutdown, "shutdown"),
];

/// Follows openraft's metrics until it shuts down: term, role (1 for the peer's state, 0 for the
/// others), applied and last log index, and a count of leader changes seen.
pub(crate) async fn follow(mut watch: tokio::sync::watch::Receiver<RaftMetrics>) {
    let term = metrics::gauge!("raft_term");
    let applied = metrics::gauge!("raft_applied_index");
    let last_log = metrics::gauge!("raft_last_log_index");
    let leader_changes = metrics::counter!("raft_leader_changes_total");
    let roles: Vec<(ServerState, Gauge)> = STATES
        .iter()
        .map(|(state, label)| (*state, metrics::gauge!("raft_state", "state" => *label)))
        .collect();
    let mut leader: Option<NodeId> = None;
    loop {
        // Read in place: the metrics are published on every applied entry.
        let state = {
            let m = watch.borrow_and_update();
            term.set(m.current_term as f64);
            applied.set(m.last_applied.map_or(0, |l| l.index) as f64);
            last_log.set(m.last_log_index.unwrap_or(0) as f64);
            for (state, gauge) in &roles {
                gauge.set(if *state == m.state { 1.0 } else { 0.0 });
            }
            if m.current_leader.is_some() && m.current_leader != leader {
                leader_changes.increment(1);
            }
            leader = m.current_leader;
            m.state
        };
        if state == ServerState::Shutdown || watch.changed().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_state_has_a_label_of_its_own() {
        let labels: std::collections::BTreeSet<_> = STATES.iter().map(|(_, l)| *l).collect();
        assert_eq!(labels.len(), STATES.len());
        let states: Vec<ServerState> = STATES.iter().map(|(s, _)| *s).collect();
        for state in [
            ServerState::Learner,
            ServerState::Follower,
            ServerState::Candidate,
            ServerState::Leader,
            ServerState::Shutdown,
        ] {
            assert!(states.contains(&state), "{state:?} has no label");
        }
    }
}
