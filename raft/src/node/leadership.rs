//! Leadership moved on purpose: a leader that lost its majority steps down by itself
//! (check-quorum), and an operator hands leadership to a chosen peer (transfer-leader).
//!
//! openraft 0.9 has neither, and no way to make a leader step down. A leader does step down when
//! it grants a vote in a higher term, and granting a vote nobody asked for is safe (a voter still
//! votes once per term). So stepping down is this peer voting, in the next term, for the peer
//! that should lead (or any other voter): openraft then follows, and the elections of
//! `election` or the chosen peer's immediate campaign pick the next leader.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::VoteRequest;
use openraft::ServerState;
use tokio::time::Instant;
use tracing::{info, warn};

use super::RaftNode;
use crate::rpc::{ForwardError, PeerRequest};
use crate::types::{NodeId, Vote};

impl RaftNode {
    /// Hands leadership to voter `to`: writes on the leader pause, `to` catches up, the leader
    /// steps down voting for it and tells it to campaign at once. Any peer may be asked.
    pub async fn transfer_leader(&self, to: NodeId) -> Result<(), ForwardError> {
        let bound = self.config.write_timeout * 4;
        // Leadership moving away from the leader while the call waits for its answer is what was
        // asked for; whether it went to `to` is checked below.
        let asked = self.on_leader(PeerRequest::TransferLeader { to }, bound).await;
        if let Err(ForwardError::Refused(reason)) = asked {
            return Err(ForwardError::Refused(reason));
        }
        // This peer's view follows within a heartbeat or two; it decides the answer.
        let leads = self
            .raft
            .wait(Some(bound))
            .metrics(|m| m.current_leader == Some(to), "the new leader")
            .await
            .is_ok();
        match asked {
            _ if leads => Ok(()),
            Err(e) => Err(e),
            Ok(()) => Err(ForwardError::Unavailable(format!(
                "leadership was handed to peer {to}, but this peer does not see it lead within \
                 {bound:?}"
            ))),
        }
    }

    /// On the leader: the hand-over itself.
    pub(super) async fn hand_over(&self, to: NodeId) -> Result<(), ForwardError> {
        let id = self.config.node_id;
        if to == id {
            return Ok(());
        }
        let voters: BTreeSet<NodeId> =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        if !voters.contains(&to) {
            return Err(ForwardError::Refused(format!(
                "peer {to} is not a voter; leadership goes only to a voter ({voters:?})"
            )));
        }
        // No new entry may land here after `to` caught up, or it would refuse our vote's log.
        let _paused = self.committer.pause_writes().await;
        if let Err(bound) = self.wait_caught_up(to).await {
            return Err(ForwardError::Unavailable(format!(
                "peer {to} did not catch up within {bound:?}; leadership stays with {id}"
            )));
        }
        let term = self.step_down(to).await?;
        info!(to, term, "leadership handed over; the new leader campaigns now");
        if let Ok(client) = self.committer.peer_client(to) {
            let _ = client.call(PeerRequest::TimeoutNow, self.timings.heartbeat * 4).await;
        }
        Ok(())
    }

    /// Stops leading: votes for `successor` in the next term. openraft refuses while this
    /// leader's own lease runs (right after it was elected), so this retries until it passed.
    /// Returns the term voted in.
    pub(super) async fn step_down(&self, successor: NodeId) -> Result<u64, ForwardError> {
        let deadline = Instant::now() + self.timings.election_timeout_max * 2;
        loop {
            let metrics = self.raft.metrics();
            let (term, leads) = {
                let m = metrics.borrow();
                (m.vote.leader_id().term, m.state == ServerState::Leader)
            };
            if !leads {
                return Ok(term);
            }
            let last_log_id = self.log.read().await;
            let request = VoteRequest::new(Vote::new(term + 1, successor), last_log_id);
            match self.raft.vote(request).await {
                Ok(answer) if answer.vote_granted => return Ok(term + 1),
                Ok(_) if Instant::now() < deadline => {
                    tokio::time::sleep(self.timings.heartbeat).await;
                }
                Ok(answer) => {
                    return Err(ForwardError::Unavailable(format!(
                        "this leader could not step down (its vote {})",
                        answer.vote
                    )))
                }
                Err(e) => return Err(ForwardError::Unavailable(e.to_string())),
            }
        }
    }

    /// Told by the leader that handed over to this peer: campaign now, without waiting for the
    /// election timeout or a pre-vote.
    pub(super) async fn campaign_now(&self) {
        self.contact.touch();
        let _ = self.raft.trigger().elect().await;
    }
}

/// Check-quorum: a leader that has not heard from a majority for an election timeout steps
/// down, so a leader cut off from the others stops claiming the role and clients go elsewhere.
/// Runs until openraft shuts down.
pub(super) async fn check_quorum(node: Arc<RaftNode>) {
    let mut tick = tokio::time::interval(node.timings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limit = node.timings.election_timeout_max;
    loop {
        tick.tick().await;
        // Read under the borrow, without copying the metrics every heartbeat.
        let (state, silent_ms, successor) = {
            let metrics = node.raft.metrics();
            let m = metrics.borrow();
            let successor =
                m.membership_config.membership().voter_ids().find(|v| *v != node.config.node_id);
            (m.state, m.millis_since_quorum_ack, successor)
        };
        match state {
            ServerState::Shutdown => return,
            ServerState::Leader => {}
            _ => continue,
        }
        // None: a leader elected a moment ago, not acknowledged yet. Not a lost majority.
        let (Some(silent_ms), Some(successor)) = (silent_ms, successor) else { continue };
        let silent_for = Duration::from_millis(silent_ms);
        if silent_for <= limit {
            continue;
        }
        warn!(
            silent_ms = silent_for.as_millis() as u64,
            "no majority acknowledged this leader for an election timeout: stepping down"
        );
        if let Err(e) = node.step_down(successor).await {
            warn!(error = %e, "could not step down");
        }
    }
}
