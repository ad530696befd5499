//! What writes, consistent reads and membership changes share: finding the leader, calling it
//! (giving up on it as soon as leadership moves), and trying again until a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::rpc::{DialError, PeerRequest, PeerResponse};
use crate::types::NodeId;
use crate::writer::{leadership_moves_from, Committer, WriteError};

/// Pause between attempts while the cluster has no usable leader.
const RETRY_PAUSE: Duration = Duration::from_millis(25);

/// Why one attempt got no answer; the caller tries again until its deadline.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub(crate) enum Attempt {
    #[error("no leader elected")]
    NoLeader,
    #[error("leadership moved away from {0}")]
    Moved(NodeId),
    #[error("leader {leader}: {message}")]
    Leader { leader: NodeId, message: String },
    #[error(transparent)]
    Dial(#[from] DialError),
    /// This peer leads but could not do it (e.g. it could not confirm its leadership in time).
    #[error("{0}")]
    Here(String),
}

/// Where this peer believes the leader is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Leader {
    Here,
    Peer(NodeId),
    Unknown,
}

/// Runs `attempt` (given the time left) until it succeeds or `deadline` passes; then fails as
/// unavailable with `give_up`'s message about the last problem.
pub(crate) async fn until_deadline<T, Fut>(
    deadline: Instant,
    mut attempt: impl FnMut(Duration) -> Fut,
    give_up: impl FnOnce(&Attempt) -> String,
) -> Result<T, WriteError>
where
    Fut: Future<Output = Result<T, Attempt>>,
{
    let mut last = Attempt::NoLeader;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(WriteError::Unavailable(give_up(&last)));
        }
        match attempt(remaining).await {
            Ok(done) => return Ok(done),
            Err(problem) => {
                last = problem;
                tokio::time::sleep(RETRY_PAUSE.min(remaining)).await;
            }
        }
    }
}

impl Committer {
    /// The leader as this peer's Raft metrics know it.
    pub(crate) fn leader(&self) -> Leader {
        match self.raft.metrics().borrow().current_leader {
            Some(id) if id == self.node_id => Leader::Here,
            Some(id) => Leader::Peer(id),
            None => Leader::Unknown,
        }
    }

    /// Sends `request` to `leader`. A leader cut off without refusing connections would hold the
    /// call for its whole timeout; once another leader is known, the call is dropped so the
    /// caller goes there instead.
    pub(crate) async fn call_leader(
        &self,
        leader: NodeId,
        request: PeerRequest,
        remaining: Duration,
    ) -> Result<PeerResponse, Attempt> {
        let client = self.peer_client(leader)?;
        tokio::select! {
            answer = client.call(request, remaining) => answer.map_err(|status| Attempt::Leader {
                leader,
                message: status.message().to_string(),
            }),
            _ = leadership_moves_from(&self.raft, leader) => Err(Attempt::Moved(leader)),
        }
    }

    /// With no leader known: waits (at most `remaining`) for one, then reports the attempt lost.
    pub(crate) async fn no_leader<T>(&self, remaining: Duration) -> Result<T, Attempt> {
        self.wait_for_leader(remaining).await;
        Err(Attempt::NoLeader)
    }
}
