//! Early replication: the leader sends its new entries to idle followers while it writes them to
//! its own disk, so that the two fsyncs of a commit overlap instead of following each other.
//!
//! openraft 0.9 starts replicating an entry only once the leader's own append is durable
//! (`RaftCore::append_to_log` awaits the flush before the replication commands run), so a lone
//! write pays the leader's fsync, then a round trip holding the follower's fsync. Here the log
//! store, as it starts the leader's synced write, hands the same entries to this module, which
//! sends each idle voter the AppendEntries request openraft's replication will send a moment
//! later: the leader's vote, the log id before the entries, the entries, and no commit index.
//! The follower appends them through openraft as any AppendEntries and syncs them; when openraft's
//! own request arrives, the entries are there and durable, and it answers without writing.
//!
//! Nothing is counted differently: openraft commits an entry only once its own append is durable
//! and a follower acknowledged openraft's request, so a write is still acknowledged only once a
//! majority holds it on disk. Sending an entry before the sender's own copy is durable is safe in
//! Raft (Ongaro's thesis, 10.2.1): a follower holding an entry its leader then lost is the case of
//! a leader that crashed after replicating, which Raft resolves by the usual election rules. The
//! request is one openraft's replication could have sent, so a follower needs nothing new.
//!
//! Only followers with no request of openraft's replication in flight are sent early: under
//! concurrent writes openraft's own requests are always in flight and carry batches, and a second
//! copy of each entry would only cost CPU.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use openraft::raft::{AppendEntriesRequest, AppendEntriesResponse};

use crate::rpc::{PeerClients, PeerRequest, PeerResponse};
use crate::types::{Entry, LogId, NodeId, PeerNode, Vote};

type RaftMetrics = openraft::RaftMetrics<NodeId, PeerNode>;

/// How long an early request may take; openraft's own request follows anyway.
const EARLY_TIMEOUT: Duration = Duration::from_secs(1);

/// After a failed early request, the follower is not sent early for this long (a dead follower
/// would otherwise be dialled on every write).
const BACK_OFF: Duration = Duration::from_secs(1);

/// Per follower: requests of openraft's replication in flight, and whether an early one is.
#[derive(Debug, Default)]
struct Follower {
    replicating: AtomicUsize,
    early: AtomicBool,
    failed_at: Mutex<Option<Instant>>,
}

/// What openraft's network tells this module: which followers have a request in flight.
#[derive(Clone, Debug, Default)]
pub(crate) struct InFlight {
    followers: Arc<Mutex<BTreeMap<NodeId, Arc<Follower>>>>,
}

impl InFlight {
    fn follower(&self, id: NodeId) -> Arc<Follower> {
        let mut followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        followers.entry(id).or_default().clone()
    }

    /// Whether an early request would go to every follower known here now: none has a request
    /// of openraft's replication carrying entries in flight, nor an early one, nor is backed off.
    #[cfg(test)]
    pub(crate) fn idle(&self) -> bool {
        let followers = self.followers.lock().unwrap_or_else(|p| p.into_inner());
        followers.values().all(|f| {
            f.replicating.load(Ordering::Acquire) == 0
                && !f.early.load(Ordering::Acquire)
                && !backing_off(f)
        })
    }

    /// Marks a request of openraft's replication to `target` as in flight until the guard drops.
    pub(crate) fn replicating(&self, target: NodeId) -> Replicating {
        let follower = self.follower(target);
        follower.replicating.fetch_add(1, Ordering::AcqRel);
        Replicating(follower)
    }
}

/// A request of openraft's replication in flight (see `InFlight::replicating`).
pub(crate) struct Replicating(Arc<Follower>);

impl Drop for Replicating {
    fn drop(&mut self) {
        self.0.replicating.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The leader's side of early replication, called by the log store as it starts an append.
#[derive(Clone, Debug)]
pub(crate) struct EarlyAppend {
    me: NodeId,
    clients: PeerClients,
    dial_overrides: Arc<BTreeMap<NodeId, String>>,
    in_flight: InFlight,
    /// openraft's metrics, for the voters and their addresses; set once openraft runs.
    metrics: Arc<OnceLock<tokio::sync::watch::Receiver<RaftMetrics>>>,
}

impl EarlyAppend {
    pub(crate) fn new(
        me: NodeId,
        clients: PeerClients,
        dial_overrides: Arc<BTreeMap<NodeId, String>>,
        in_flight: InFlight,
    ) -> EarlyAppend {
        EarlyAppend { me, clients, dial_overrides, in_flight, metrics: Arc::default() }
    }

    /// Starts sending once openraft runs (its metrics name the voters).
    pub(crate) fn follow(&self, metrics: tokio::sync::watch::Receiver<RaftMetrics>) {
        let _ = self.metrics.set(metrics);
    }

    /// Entries this peer is about to write to its log: if they are its own as the leader of
    /// `vote`, sends them to every idle voter. `prev` is the log id right before them. Returns
    /// how many followers were sent them.
    pub(crate) fn offer(&self, vote: &Vote, prev: Option<LogId>, entries: &[Entry]) -> usize {
        if !self.leads(vote, entries) {
            return 0;
        }
        let Some(metrics) = self.metrics.get() else { return 0 };
        let targets: Vec<(Arc<Follower>, String)> = {
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            membership
                .voter_ids()
                .filter(|id| *id != self.me)
                .filter_map(|id| {
                    let node = membership.get_node(&id)?;
                    let follower = self.in_flight.follower(id);
                    // Checked before anything is copied: under concurrent writes every follower
                    // is busy, and an append then costs this check alone.
                    if follower.replicating.load(Ordering::Acquire) > 0
                        || backing_off(&follower)
                        || follower.early.swap(true, Ordering::AcqRel)
                    {
                        return None;
                    }
                    let address =
                        crate::config::dial_address(&self.dial_overrides, id, &node.raft_address);
                    Some((follower, address.to_string()))
                })
                .collect()
        };
        let mut sent = 0;
        for (follower, address) in targets {
            let Ok(client) = self.clients.get(&address) else {
                follower.early.store(false, Ordering::Release);
                continue;
            };
            let request = AppendEntriesRequest {
                vote: *vote,
                prev_log_id: prev,
                entries: entries.to_vec(),
                leader_commit: None,
            };
            sent += 1;
            tokio::spawn(async move {
                let answer = client.call(PeerRequest::AppendEntries(request), EARLY_TIMEOUT).await;
                let outcome = match answer {
                    Ok(PeerResponse::AppendEntries(Ok(AppendEntriesResponse::Success))) => {
                        "appended"
                    }
                    Ok(_) => "refused",
                    Err(_) => {
                        *follower.failed_at.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                        "failed"
                    }
                };
                follower.early.store(false, Ordering::Release);
                crate::metrics::early_append(outcome);
            });
        }
        sent
    }

    /// Whether `entries` are this peer's own, appended as the leader of `vote`: a follower's
    /// entries carry the leader's id too, but its vote names another peer.
    fn leads(&self, vote: &Vote, entries: &[Entry]) -> bool {
        vote.is_committed()
            && vote.leader_id().node_id == self.me
            && !entries.is_empty()
            && entries.iter().all(|e| e.log_id.leader_id == *vote.leader_id())
    }
}

fn backing_off(follower: &Follower) -> bool {
    let failed_at = follower.failed_at.lock().unwrap_or_else(|p| p.into_inner());
    failed_at.is_some_and(|at| at.elapsed() < BACK_OFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Command, RequestId};

    fn entry(term: u64, leader: NodeId, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, leader), index),
            payload: openraft::EntryPayload::Normal(Command {
                request_id: RequestId { origin: 1, seq: index },
                at: chrono::Utc::now(),
                ops: Vec::new(),
            }),
        }
    }

    fn early(me: NodeId) -> EarlyAppend {
        EarlyAppend::new(me, PeerClients::default(), Arc::default(), InFlight::default())
    }

    #[test]
    fn only_a_leaders_own_entries_go_early() {
        let early = early(1);
        let leader = Vote::new_committed(3, 1);
        assert!(early.leads(&leader, &[entry(3, 1, 7), entry(3, 1, 8)]));
        assert!(!early.leads(&leader, &[]), "nothing to send");
        assert!(!early.leads(&Vote::new(3, 1), &[entry(3, 1, 7)]), "a candidate's vote");
        // A follower of peer 2 appends peer 2's entries.
        assert!(!early.leads(&Vote::new_committed(3, 2), &[entry(3, 2, 7)]));
        // This peer's entries of an older term, replicated back to it by a newer leader.
        assert!(!early.leads(&Vote::new_committed(4, 2), &[entry(3, 1, 7)]));
        assert!(!early.leads(&Vote::new_committed(4, 1), &[entry(3, 1, 7)]));
    }

    #[test]
    fn a_follower_with_a_request_in_flight_is_not_sent_early() {
        let in_flight = InFlight::default();
        let guard = in_flight.replicating(2);
        let other = in_flight.replicating(3);
        drop(other);
        assert!(!in_flight.idle());
        drop(guard);
        assert!(in_flight.idle());
    }
}
