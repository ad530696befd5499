//! Membership changes: adding a peer (learner first, then voter) and removing one for good.

use std::collections::BTreeSet;
use std::time::Duration;

use tracing::info;

use super::RaftNode;
use crate::call::Leader;
use crate::command::Op;
use crate::rpc::{ForwardError, PeerRequest, PeerResponse};
use crate::types::{NodeId, PeerNode};

impl RaftNode {
    /// Adds a peer: first as a learner that catches up, then as a voter. Any peer may be asked;
    /// the request goes to the leader.
    pub async fn add_peer(&self, id: NodeId, raft_address: String) -> Result<(), ForwardError> {
        self.on_leader(PeerRequest::AddPeer { id, raft_address }, self.membership_bound()).await
    }

    /// Removes a peer for good; its id is never accepted again.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), ForwardError> {
        self.on_leader(PeerRequest::RemovePeer { id }, self.membership_bound()).await
    }

    /// Runs a membership change or a hand-over on the leader: here, or forwarded (waiting at most
    /// `bound` for its answer).
    pub(super) async fn on_leader(
        &self,
        request: PeerRequest,
        bound: Duration,
    ) -> Result<(), ForwardError> {
        match self.committer.leader() {
            Leader::Here => self.lead(request).await,
            Leader::Peer(leader) => {
                match self.committer.call_leader(leader, request, bound).await {
                    Ok(PeerResponse::Membership(result)) => result,
                    Ok(other) => {
                        Err(ForwardError::Unavailable(format!("leader answered {other:?}")))
                    }
                    Err(attempt) => Err(ForwardError::Unavailable(attempt.to_string())),
                }
            }
            Leader::Unknown => Err(ForwardError::Unavailable("no leader elected".into())),
        }
    }

    /// On the leader: a membership change, or handing leadership over.
    pub(super) async fn lead(&self, request: PeerRequest) -> Result<(), ForwardError> {
        match request {
            PeerRequest::TransferLeader { to } => self.hand_over(to).await,
            change => self.bounded_change(change).await,
        }
    }

    /// How long a membership change may take: a learner has to catch up first.
    fn membership_bound(&self) -> Duration {
        self.config.write_timeout * 8
    }

    /// A membership change, bounded in time: a leader that lost its majority (openraft 0.9 does
    /// not step down by itself) must answer rather than hang.
    pub(super) async fn bounded_change(&self, request: PeerRequest) -> Result<(), ForwardError> {
        let bound = self.membership_bound();
        tokio::time::timeout(bound, self.change_membership(request)).await.unwrap_or_else(|_| {
            Err(ForwardError::Unavailable(format!(
                "the membership change did not commit within {bound:?}: check that a majority of \
                 the peers is up"
            )))
        })
    }

    async fn change_membership(&self, request: PeerRequest) -> Result<(), ForwardError> {
        let voters: BTreeSet<NodeId> =
            self.raft.metrics().borrow().membership_config.membership().voter_ids().collect();
        let retired = self.replica.read(|s| s.retired.clone());
        match request {
            PeerRequest::AddPeer { id, raft_address } => {
                if retired.contains(&id) {
                    return Err(ForwardError::Refused(format!(
                        "peer id {id} belonged to a removed peer and is never reused; pick a new id"
                    )));
                }
                if voters.contains(&id) {
                    return Err(ForwardError::Refused(format!("peer {id} is already a member")));
                }
                // A learner that cannot be reached (down, or holding no certificate from this
                // cluster's CA) never catches up: give up after a bound, and say why. openraft's
                // own blocking add returns before the learner has acknowledged anything.
                self.raft
                    .add_learner(id, PeerNode { raft_address: raft_address.clone() }, false)
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                if let Err(bound) = self.wait_caught_up(id).await {
                    let _ = self
                        .raft
                        .change_membership(
                            openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                            false,
                        )
                        .await;
                    return Err(ForwardError::Unavailable(format!(
                        "peer {id} at {raft_address} did not catch up within {bound:?}: check \
                         that it runs with KUMA_STORE_RAFT_JOIN=true and holds a certificate from \
                         this cluster's CA"
                    )));
                }
                let mut next = voters;
                next.insert(id);
                self.raft
                    .change_membership(next, false)
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                info!(peer = id, "peer added");
                Ok(())
            }
            PeerRequest::RemovePeer { id } => {
                if !voters.contains(&id) {
                    return Err(ForwardError::Refused(format!("peer {id} is not a member")));
                }
                if voters.len() == 1 {
                    return Err(ForwardError::Refused("the last peer cannot be removed".into()));
                }
                let mut next = voters;
                next.remove(&id);
                self.raft
                    .change_membership(next, false)
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                self.writer
                    .write(Op::Retire { id })
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                info!(peer = id, "peer removed");
                Ok(())
            }
            PeerRequest::Rejoin { id } => {
                let learners: BTreeSet<NodeId> = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .learner_ids()
                    .collect();
                if !voters.contains(&id) && !learners.contains(&id) {
                    return Err(ForwardError::Refused(format!(
                        "peer {id} is not a member: add it with kumactl raft add-peer"
                    )));
                }
                if voters.contains(&id) {
                    // It votes for no one until it is back (its gate), but its empty log must not
                    // count toward a majority either.
                    self.raft
                        .change_membership(
                            openraft::ChangeMembers::RemoveVoters(BTreeSet::from([id])),
                            true,
                        )
                        .await
                        .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                    info!(peer = id, "a peer that lost its data is a learner until it caught up");
                }
                if let Err(bound) = self.wait_caught_up(id).await {
                    return Err(ForwardError::Unavailable(format!(
                        "peer {id} did not catch up within {bound:?}; it asks again"
                    )));
                }
                self.raft
                    .change_membership(
                        openraft::ChangeMembers::AddVoterIds(BTreeSet::from([id])),
                        false,
                    )
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                info!(peer = id, "a peer that lost its data caught up and votes again");
                Ok(())
            }
            _ => Err(ForwardError::Refused("not a membership change".into())),
        }
    }

    /// Waits until learner `id` holds the leader's log as of now; on timeout, the bound waited.
    pub(super) async fn wait_caught_up(&self, id: NodeId) -> Result<(), Duration> {
        let bound = self.config.write_timeout * 6;
        let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
        self.raft
            .wait(Some(bound))
            .metrics(
                |m| {
                    m.replication
                        .as_ref()
                        .and_then(|r| r.get(&id).copied().flatten())
                        .is_some_and(|matched| matched.index >= target)
                },
                "the peer catches up",
            )
            .await
            .map(|_| ())
            .map_err(|_| bound)
    }
}
