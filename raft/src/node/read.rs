//! Consistent reads on any peer: a read index from the leader, then the local apply.

use std::time::Duration;

use tokio::time::Instant;

use super::RaftNode;
use crate::call::{until_deadline, Attempt, Leader};
use crate::rpc::{ForwardError, PeerRequest, PeerResponse};
use crate::writer::WriteError;

impl RaftNode {
    /// Waits until reads here reflect every write acknowledged before the call: a read index from
    /// the leader, then the local apply. Fails as unavailable after the write timeout.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let timeout = self.config.write_timeout;
        let deadline = Instant::now() + timeout;
        let index = until_deadline(
            deadline,
            |remaining| self.read_index(remaining),
            |last| {
                format!(
                    "no Raft leader confirmed a consistent read within {timeout:?} ({last}); read \
                     with ?consistency=stale, or check that a majority of peers is up"
                )
            },
        )
        .await?;
        tokio::time::timeout_at(deadline, self.replica.wait_applied(index)).await.map_err(|_| {
            WriteError::Unavailable(format!(
                "this peer did not catch up with the leader (index {index}) in time"
            ))
        })
    }

    /// The index a linearizable read must wait for, confirmed by the leader.
    async fn read_index(&self, remaining: Duration) -> Result<u64, Attempt> {
        match self.committer.leader() {
            Leader::Here => self.local_read_index(remaining).await,
            Leader::Peer(leader) => {
                match self.committer.call_leader(leader, PeerRequest::ReadIndex, remaining).await? {
                    PeerResponse::ReadIndex(Ok(index)) => Ok(index),
                    PeerResponse::ReadIndex(Err(e)) => {
                        Err(Attempt::Leader { leader, message: e.to_string() })
                    }
                    other => {
                        Err(Attempt::Leader { leader, message: format!("answered {other:?}") })
                    }
                }
            }
            Leader::Unknown => self.committer.no_leader(remaining).await,
        }
    }

    /// On the leader: the read index, once a majority confirmed this peer still leads.
    pub(super) async fn local_read_index(&self, remaining: Duration) -> Result<u64, Attempt> {
        match tokio::time::timeout(remaining, self.raft.get_read_log_id()).await {
            Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
            Ok(Err(e)) => Err(Attempt::Here(e.to_string())),
            Err(_) => Err(Attempt::Here("the leader could not confirm its leadership".into())),
        }
    }

    /// A read-index request forwarded by another peer.
    pub(super) async fn serve_read_index(&self) -> Result<u64, ForwardError> {
        if !self.is_leader() {
            return Err(ForwardError::NotLeader(self.config.node_id));
        }
        self.local_read_index(self.config.write_timeout)
            .await
            .map_err(|e| ForwardError::Unavailable(e.to_string()))
    }
}
