//! Elections started by this peer instead of openraft's own timer.
//!
//! openraft 0.9 draws one random election timeout per process and has no pre-vote. After a leader
//! dies, two survivors whose drawn timeouts are close split the vote round after round, and a
//! survivor whose log is an entry short keeps starting elections it cannot win, each one pushing
//! the real winner's election back. Both showed as failovers of 2-3 s in the chaos runs.
//!
//! So openraft's timer is off (`enable_elect: false`) and this module decides when to call an
//! election: a voter that has heard nothing from a leader for the leader lease plus a fresh random
//! delay first asks the other voters whether they would vote for it (a pre-vote: they lost the
//! leader too, and its log is at least as up to date as theirs). Only when a majority says yes
//! does it ask openraft to elect. A peer that cannot win never raises the term, so it disturbs
//! neither the winner nor, once a partition heals, a healthy leader.
//!
//! The pre-vote is only about liveness: openraft's vote still decides who leads.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use openraft::ServerState;
use rand::Rng;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::log_store::LastLogId;
use crate::rpc::{PeerRequest, PeerResponse};
use crate::types::{LogId, NodeId, Raft};
use crate::writer::Committer;

/// How often the election clock is checked.
const TICK: Duration = Duration::from_millis(10);

/// The instant this peer last heard from a leader, or granted a vote, or started an election.
#[derive(Debug)]
pub(crate) struct LeaderContact {
    at: Mutex<Instant>,
}

impl LeaderContact {
    pub(crate) fn new() -> LeaderContact {
        LeaderContact { at: Mutex::new(Instant::now()) }
    }

    pub(crate) fn touch(&self) {
        *self.at.lock().expect("the contact clock is never poisoned") = Instant::now();
    }

    fn at(&self) -> Instant {
        *self.at.lock().expect("the contact clock is never poisoned")
    }

    pub(crate) fn elapsed(&self) -> Duration {
        self.at().elapsed()
    }
}

/// The timings elections follow.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ElectionTimings {
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    /// Also openraft's leader lease: a voter refuses any vote for this long after it last heard
    /// from the leader.
    pub election_timeout_max: Duration,
}

impl ElectionTimings {
    fn spread(&self) -> Duration {
        self.election_timeout_max - self.election_timeout_min
    }

    /// How long after the last leader contact this peer waits before trying: past the other
    /// voters' leases (their last contact may be a heartbeat later than ours), plus a random
    /// delay so that two survivors rarely try at once.
    fn after_contact(&self) -> Duration {
        self.election_timeout_max + self.heartbeat + random_up_to(self.spread())
    }

    /// How long after a failed attempt (no pre-vote majority, or a split vote) this peer waits
    /// before the next one, drawn again each time.
    fn after_attempt(&self) -> Duration {
        self.election_timeout_min + random_up_to(self.spread())
    }
}

fn random_up_to(bound: Duration) -> Duration {
    let millis = bound.as_millis() as u64;
    Duration::from_millis(if millis == 0 { 0 } else { rand::rng().random_range(0..millis) })
}

/// Whether this peer would vote for a candidate whose last log id is `candidate_last_log`:
/// it has not heard from a leader for a lease, and the candidate's log is at least as up to date
/// as its own (the comparison openraft's vote makes).
pub(crate) async fn pre_vote(
    raft: &Raft,
    contact: &LeaderContact,
    log: &LastLogId,
    timings: ElectionTimings,
    candidate_last_log: Option<LogId>,
) -> bool {
    if raft.metrics().borrow().state == ServerState::Leader {
        return false;
    }
    if contact.elapsed() < timings.election_timeout_max {
        return false;
    }
    candidate_last_log.as_ref() >= log.read().await.as_ref()
}

/// Runs until openraft shuts down: watches the leader contact and calls elections this peer can
/// win.
pub(crate) async fn run(
    id: NodeId,
    raft: Raft,
    contact: Arc<LeaderContact>,
    log: LastLogId,
    committer: Committer,
    timings: ElectionTimings,
) {
    // The wait counts from the later of the last leader contact and this peer's last attempt,
    // and is drawn once for each such instant.
    let mut attempted_at: Option<Instant> = None;
    let mut counting_from: Option<Instant> = None;
    let mut wait = Duration::ZERO;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let metrics = raft.metrics();
    loop {
        ticker.tick().await;
        if metrics.has_changed().is_err() {
            return; // openraft stopped
        }
        let (state, voters) = {
            let metrics = metrics.borrow();
            let voters: BTreeSet<NodeId> =
                metrics.membership_config.membership().voter_ids().collect();
            (metrics.state, voters)
        };
        match state {
            ServerState::Shutdown => return,
            ServerState::Leader => {
                contact.touch();
                continue;
            }
            _ if !voters.contains(&id) => continue,
            _ => {}
        }
        let contact_at = contact.at();
        let from = attempted_at.filter(|at| *at > contact_at).unwrap_or(contact_at);
        if counting_from != Some(from) {
            counting_from = Some(from);
            wait =
                if from == contact_at { timings.after_contact() } else { timings.after_attempt() };
        }
        if from.elapsed() < wait {
            continue;
        }
        let others: Vec<NodeId> = voters.iter().copied().filter(|v| *v != id).collect();
        let majority = voters.len() / 2 + 1;
        let granted = if others.is_empty() {
            1
        } else {
            let last_log = log.read().await;
            1 + ask_for_votes(&committer, &others, last_log, majority - 1, timings).await
        };
        if granted >= majority {
            info!(term = raft.metrics().borrow().current_term, "no leader; calling an election");
            let _ = raft.trigger().elect().await;
        } else {
            debug!(granted, "pre-vote found no majority; not calling an election");
        }
        attempted_at = Some(Instant::now());
    }
}

/// Asks `others` for a pre-vote at once; returns how many said yes, as soon as `needed` did or
/// every one answered (or timed out).
async fn ask_for_votes(
    committer: &Committer,
    others: &[NodeId],
    last_log: Option<LogId>,
    needed: usize,
    timings: ElectionTimings,
) -> usize {
    let timeout = timings.heartbeat * 2;
    let mut answers: FuturesUnordered<_> = others
        .iter()
        .filter_map(|peer| committer.peer_client(*peer).ok())
        .map(|client| async move {
            matches!(
                client.call(PeerRequest::PreVote { last_log_id: last_log }, timeout).await,
                Ok(PeerResponse::PreVote(true))
            )
        })
        .collect();
    let mut granted = 0;
    while let Some(yes) = answers.next().await {
        if yes {
            granted += 1;
            if granted >= needed {
                break;
            }
        }
    }
    granted
}
