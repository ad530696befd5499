//! The write path. Concurrent writes are gathered into one command (one log entry, one fsync);
//! a write that finds nothing in flight and nothing queued is committed by its caller's task
//! directly, without the two hand-overs to the gathering task and back. A follower forwards the
//! command to the leader; with no leader known, it waits for one within the write timeout. Each command carries a request id, so a retry after a lost answer is applied
//! once. A write returns only after this peer's replica has applied it, so a reader on the same
//! peer sees its own writes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::time::Instant;
use tracing::debug;

use crate::call::{until_deadline, Attempt, Leader};
use crate::command::{Command, CommandResult, Op, Outcome, RequestId};
use crate::replica::Replica;
use crate::rpc::{DialError, ForwardError, PeerClient, PeerClients, PeerRequest, PeerResponse};
use crate::types::{NodeId, Raft};

/// Writes gathered into one command at most.
const MAX_BATCH: usize = 512;
/// Commands in flight at once from this peer.
const IN_FLIGHT: usize = 2;

/// Resolves once this peer sees a leader other than `leader` (or none).
pub(crate) async fn leadership_moves_from(raft: &Raft, leader: NodeId) {
    let mut metrics = raft.metrics();
    let _ = metrics.wait_for(|m| m.current_leader != Some(leader)).await;
}

/// The Raft address of member `id` in the membership this peer knows.
pub(crate) fn membership_address(raft: &Raft, id: NodeId) -> Option<String> {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&id)
        .map(|n| n.raft_address.clone())
}

/// Why a write did not complete.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum WriteError {
    /// No leader could take the write in time; it may or may not have been applied.
    #[error("{0}")]
    Unavailable(String),
}

type Reply = oneshot::Sender<Result<Outcome, WriteError>>;

/// Hands writes to the cluster.
#[derive(Debug)]
pub struct Writer {
    queue: mpsc::Sender<(Op, Reply)>,
    /// Commands in flight, the gathering task's and the ones committed directly.
    in_flight: Arc<Semaphore>,
    committer: Committer,
}

/// What the commit loop needs.
#[derive(Clone)]
pub struct Committer {
    pub node_id: NodeId,
    pub raft: Raft,
    pub replica: Arc<Replica>,
    pub timeout: Duration,
    clients: PeerClients,
    dial_overrides: Arc<BTreeMap<NodeId, String>>,
    origin: u64,
    seq: Arc<AtomicU64>,
    /// Held for writing while leadership is handed over: no new entry is proposed meanwhile.
    proposals: Arc<tokio::sync::RwLock<()>>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer").field("node_id", &self.node_id).finish()
    }
}

impl Writer {
    /// Starts the coalescing task.
    pub fn start(committer: Committer) -> Writer {
        let (queue, mut rx) = mpsc::channel::<(Op, Reply)>(MAX_BATCH * 4);
        let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
        let writer = Writer { queue, in_flight: in_flight.clone(), committer: committer.clone() };
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let permit = match in_flight.clone().acquire_owned().await {
                    Ok(permit) => permit,
                    Err(_) => return,
                };
                // Whatever queued up while the previous command was in flight goes in this one.
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(item) => batch.push(item),
                        Err(_) => break,
                    }
                }
                let committer = committer.clone();
                tokio::spawn(async move {
                    let (ops, replies): (Vec<Op>, Vec<Reply>) = batch.into_iter().unzip();
                    let count = ops.len();
                    match committer.commit(ops).await {
                        Ok(result) => {
                            for (reply, outcome) in replies.into_iter().zip(result.outcomes) {
                                let _ = reply.send(Ok(outcome));
                            }
                        }
                        Err(error) => {
                            debug!(%error, writes = count, "write failed");
                            for reply in replies {
                                let _ = reply.send(Err(error.clone()));
                            }
                        }
                    }
                    drop(permit);
                });
            }
        });
        writer
    }

    /// Submits one write and waits for its outcome.
    pub async fn write(&self, op: Op) -> Result<Outcome, WriteError> {
        // Nothing queued and no command in flight: this write is a command of its own, so it
        // needs no gathering. (With one in flight, the other slot is left to the gathering task,
        // so writes that arrive meanwhile share one command.) Dropped midway (its caller went
        // away), it is a write whose answer was lost.
        if self.queue.capacity() == self.queue.max_capacity()
            && self.in_flight.available_permits() == IN_FLIGHT
        {
            if let Ok(_permit) = self.in_flight.try_acquire() {
                let result = self.committer.commit(vec![op]).await?;
                return result.outcomes.into_iter().next().ok_or_else(|| {
                    WriteError::Unavailable("the write's command gave no outcome".into())
                });
            }
        }
        let (reply, outcome) = oneshot::channel();
        self.queue
            .send((op, reply))
            .await
            .map_err(|_| WriteError::Unavailable("the Raft store is shutting down".into()))?;
        outcome
            .await
            .unwrap_or_else(|_| Err(WriteError::Unavailable("the write was dropped".into())))
    }
}

impl Committer {
    pub fn new(
        node_id: NodeId,
        raft: Raft,
        replica: Arc<Replica>,
        timeout: Duration,
        clients: PeerClients,
        dial_overrides: Arc<BTreeMap<NodeId, String>>,
    ) -> Committer {
        // Distinct per process start: a restarted peer never repeats an earlier request id.
        let origin =
            (Utc::now().timestamp_nanos_opt().unwrap_or_default() as u64) ^ (node_id << 48);
        Committer {
            node_id,
            raft,
            replica,
            timeout,
            clients,
            dial_overrides,
            origin,
            seq: Arc::new(AtomicU64::new(0)),
            proposals: Arc::default(),
        }
    }

    /// The address to dial peer `id` at: its override, else `membership_address`.
    pub fn dial_address(&self, id: NodeId, membership_address: &str) -> String {
        crate::config::dial_address(&self.dial_overrides, id, membership_address).to_string()
    }

    /// The clients this peer calls others with.
    pub(crate) fn clients(&self) -> PeerClients {
        self.clients.clone()
    }

    /// A client for the peer at `address`, reused across calls.
    pub fn client(&self, address: &str) -> Result<PeerClient, DialError> {
        self.clients.get(address)
    }

    /// Commits `ops` as one command through whichever peer leads, within the write timeout.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<CommandResult, WriteError> {
        crate::metrics::RECORDED.write_batch_size.record(ops.len() as f64);
        let command = Command {
            request_id: RequestId {
                origin: self.origin,
                seq: self.seq.fetch_add(1, Ordering::Relaxed),
            },
            at: Utc::now(),
            ops,
        };
        let deadline = Instant::now() + self.timeout;
        let (result, index) = until_deadline(
            deadline,
            |remaining| self.attempt(&command, remaining),
            |last| {
                format!(
                    "no Raft leader accepted the write within {:?} ({last}); check that a \
                     majority of the control-plane peers is up",
                    self.timeout
                )
            },
        )
        .await?;
        // Read-your-writes on this peer.
        let _ = tokio::time::timeout_at(deadline, self.replica.wait_applied(index)).await;
        Ok(result)
    }

    /// One try: locally when this peer leads, else forwarded to the leader it knows. The request
    /// id makes a retry safe if an earlier leader applied the command after all.
    async fn attempt(
        &self,
        command: &Command,
        remaining: Duration,
    ) -> Result<(CommandResult, u64), Attempt> {
        match self.leader() {
            Leader::Here => self.write_locally(command, remaining).await,
            Leader::Peer(leader) => {
                match self
                    .call_leader(leader, PeerRequest::Write(command.clone()), remaining)
                    .await?
                {
                    PeerResponse::Write(Ok(done)) => {
                        crate::metrics::RECORDED
                            .forwarded_writes
                            .increment(command.ops.len() as u64);
                        Ok(done)
                    }
                    PeerResponse::Write(Err(e)) => {
                        Err(Attempt::Leader { leader, message: e.to_string() })
                    }
                    other => {
                        Err(Attempt::Leader { leader, message: format!("answered {other:?}") })
                    }
                }
            }
            Leader::Unknown => self.no_leader(remaining).await,
        }
    }

    /// Waits (at most `remaining`) until this peer knows a leader.
    pub async fn wait_for_leader(&self, remaining: Duration) {
        let _ = self
            .raft
            .wait(Some(remaining))
            .metrics(|m| m.current_leader.is_some(), "a leader")
            .await;
    }

    /// A client for peer `id`, at its dial address (its override, else its membership address).
    pub fn peer_client(&self, id: NodeId) -> Result<PeerClient, DialError> {
        let address = membership_address(&self.raft, id).ok_or(DialError::NoAddress(id))?;
        self.client(&self.dial_address(id, &address))
    }

    /// Proposes `command` on this peer, which must be the leader.
    pub(crate) async fn write_locally(
        &self,
        command: &Command,
        remaining: Duration,
    ) -> Result<(CommandResult, u64), Attempt> {
        let propose = async {
            let _proposing = self.proposals.read().await;
            self.raft.client_write(command.clone()).await
        };
        match tokio::time::timeout(remaining, propose).await {
            Err(_) => Err(Attempt::Here("the leader did not commit in time".to_string())),
            Ok(Ok(response)) => Ok((response.data, response.log_id.index)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                Err(Attempt::Moved(self.node_id))
            }
            Ok(Err(e)) => Err(Attempt::Here(e.to_string())),
        }
    }

    /// Holds new proposals back until the guard is dropped; waits for those under way.
    pub(crate) async fn pause_writes(&self) -> tokio::sync::OwnedRwLockWriteGuard<()> {
        self.proposals.clone().write_owned().await
    }

    /// Serves a write forwarded by another peer.
    pub async fn serve_forwarded(
        &self,
        command: Command,
    ) -> Result<(CommandResult, u64), ForwardError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if leader != Some(self.node_id) {
            return Err(ForwardError::NotLeader(self.node_id));
        }
        self.write_locally(&command, self.timeout)
            .await
            .map_err(|e| ForwardError::Unavailable(e.to_string()))
    }
}
