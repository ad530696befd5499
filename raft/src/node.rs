//! `RaftNode`: one peer of the cluster: its RocksDB, openraft, the peer RPC server, the write
//! path, consistent reads, membership changes and status.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use openraft::raft::AppendEntriesResponse;
use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tracing::{info, warn};

use crate::command::{Op, Outcome, PeerInfo, Peers};
use crate::config::RaftConfig;
use crate::election::{self, ElectionTimings, LeaderContact};
use crate::log_store::{LastLogId, LogStore};
use crate::network::NetworkFactory;
use crate::replica::Replica;
use crate::rpc::{ForwardError, PeerClients, PeerHandler, PeerRequest, PeerResponse, PeerServer};
use crate::state_machine::StateMachine;
use crate::status::{ClusterStatus, MemberStatus, PeerStatus};
use crate::types::{NodeId, PeerNode, Raft};
use crate::writer::{Committer, WriteError, Writer};

/// How long a peer has to answer a status request before it counts as unhealthy.
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum RaftStartError {
    #[error(
        "could not open the Raft data in {dir} ({reason}); set KUMA_STORE_RAFT_DATA_DIR to a \
         writable directory that no other kuma-cp uses"
    )]
    Open { dir: String, reason: String },
    #[error("invalid Raft settings: {0}")]
    Config(String),
    #[error("could not start Raft: {0}")]
    Raft(String),
}

/// One peer.
pub struct RaftNode {
    config: RaftConfig,
    raft: Raft,
    replica: Arc<Replica>,
    committer: Committer,
    writer: Writer,
    /// When a leader last spoke to this peer; elections wait on it.
    contact: Arc<LeaderContact>,
    log: LastLogId,
    timings: ElectionTimings,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.config.node_id).finish()
    }
}

fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl RaftNode {
    /// Opens the peer's data, starts openraft and serves the peer RPC on `listener` until
    /// `shutdown`. On the first start of a configured cluster, forms it.
    pub async fn start(
        config: RaftConfig,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Arc<RaftNode>, RaftStartError> {
        let db = crate::db::open(&config.data_dir).map_err(|e| RaftStartError::Open {
            dir: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let replica = Arc::new(Replica::default());
        let state_machine = StateMachine::open(db.clone(), replica.clone())
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        let raft_config = Config {
            cluster_name: "kuma".to_string(),
            heartbeat_interval: millis(config.heartbeat),
            election_timeout_min: millis(config.election_timeout_min),
            election_timeout_max: millis(config.election_timeout_max),
            // Snapshots are sent whole; a slow peer must get time to install one.
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
            max_in_snapshot_log_to_keep: 5000,
            // Elections are called by `election::run`, after a pre-vote.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftStartError::Config(e.to_string()))?;
        let tls = config.tls.clone().map(Arc::new);
        let clients = PeerClients::new(tls.clone());
        let dial_overrides = Arc::new(config.dial_overrides.clone());
        let log = LogStore::new(db);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory {
                // Not shared with the committer's: see `PeerClients`.
                clients: PeerClients::new(tls.clone()),
                dial_overrides: dial_overrides.clone(),
            },
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| RaftStartError::Raft(e.to_string()))?;

        let committer = Committer::new(
            config.node_id,
            raft.clone(),
            replica.clone(),
            config.write_timeout,
            clients,
            dial_overrides,
        );
        let writer = Writer::start(committer.clone());
        let timings = ElectionTimings {
            heartbeat: config.heartbeat,
            election_timeout_min: config.election_timeout_min,
            election_timeout_max: config.election_timeout_max,
        };
        let contact = Arc::new(LeaderContact::new());
        tokio::spawn(election::run(
            config.node_id,
            raft.clone(),
            contact.clone(),
            LastLogId::of(&log),
            committer.clone(),
            timings,
        ));
        let node = Arc::new(RaftNode {
            config,
            raft,
            replica,
            committer,
            writer,
            contact,
            log: LastLogId::of(&log),
            timings,
        });

        let handler: Arc<dyn PeerHandler> = node.clone();
        let mut builder = tonic::transport::Server::builder().tcp_nodelay(true);
        if let Some(tls) = &tls {
            // Only peers holding a certificate from the cluster CA get past the handshake.
            builder = builder
                .tls_config(
                    ServerTlsConfig::new()
                        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                        .client_ca_root(Certificate::from_pem(&tls.ca_pem)),
                )
                .map_err(|e| RaftStartError::Config(format!("peer TLS: {e}")))?;
        }
        let server = builder
            .add_service(PeerServer::new(handler))
            // Accepted sockets get TCP_NODELAY: small RPCs must not wait for Nagle's algorithm.
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown,
            );
        let raft = node.raft.clone();
        tokio::spawn(async move {
            if let Err(error) = server.await {
                warn!(%error, "Raft peer server failed");
            }
            let _ = raft.shutdown().await;
        });

        if !node.config.join {
            node.form_cluster().await;
        }
        tokio::spawn(announce(node.clone()));
        Ok(node)
    }

    /// Forms the cluster from the configured peers, once: on a peer that already holds Raft
    /// state (a restart) openraft refuses, which is what we want.
    async fn form_cluster(&self) {
        let members: BTreeMap<NodeId, PeerNode> = self
            .config
            .peers
            .iter()
            .map(|(id, address)| (*id, PeerNode { raft_address: address.clone() }))
            .collect();
        match self.raft.initialize(members).await {
            Ok(()) => info!(peers = ?self.config.peers, "formed the Raft cluster"),
            Err(e) => info!(reason = %e, "Raft state found on disk; rejoining the cluster"),
        }
    }

    pub fn id(&self) -> NodeId {
        self.config.node_id
    }

    pub fn replica(&self) -> &Arc<Replica> {
        &self.replica
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Whether this peer leads now.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.config.node_id)
    }

    /// Becomes true while this peer leads: leader-only work watches it.
    pub fn leadership(&self) -> watch::Receiver<bool> {
        let (tx, rx) = watch::channel(self.is_leader());
        let mut metrics = self.raft.metrics();
        let id = self.config.node_id;
        tokio::spawn(async move {
            loop {
                let leads = metrics.borrow_and_update().current_leader == Some(id);
                tx.send_if_modified(|current| std::mem::replace(current, leads) != leads);
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        rx
    }

    /// Waits until reads here reflect every write acknowledged before the call: a read index from
    /// the leader, then the local apply. Fails as unavailable after the write timeout.
    pub async fn read_barrier(&self) -> Result<(), WriteError> {
        let deadline = Instant::now() + self.config.write_timeout;
        let mut last_problem = String::from("no leader");
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(WriteError::Unavailable(format!(
                    "no Raft leader confirmed a consistent read within {:?} ({last_problem}); \
                     read with ?consistency=stale, or check that a majority of peers is up",
                    self.config.write_timeout
                )));
            }
            let leader = self.raft.metrics().borrow().current_leader;
            let index = match leader {
                Some(leader) if leader == self.config.node_id => {
                    match tokio::time::timeout(remaining, self.raft.get_read_log_id()).await {
                        Ok(Ok((read, _))) => Ok(read.map_or(0, |l| l.index)),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("the leader could not confirm its leadership".to_string()),
                    }
                }
                Some(leader) => self.ask_read_index(leader, remaining).await,
                None => {
                    self.committer.wait_for_leader(remaining).await;
                    Err("no leader elected".to_string())
                }
            };
            match index {
                Ok(index) => {
                    return tokio::time::timeout_at(deadline, self.replica.wait_applied(index))
                        .await
                        .map_err(|_| {
                            WriteError::Unavailable(format!(
                                "this peer did not catch up with the leader (index {index}) in time"
                            ))
                        });
                }
                Err(problem) => {
                    last_problem = problem;
                    tokio::time::sleep(Duration::from_millis(25).min(remaining)).await;
                }
            }
        }
    }

    async fn ask_read_index(&self, leader: NodeId, remaining: Duration) -> Result<u64, String> {
        let client = self.leader_client(leader)?;
        let answer = tokio::select! {
            answer = client.call(PeerRequest::ReadIndex, remaining) => answer,
            _ = crate::writer::leadership_moves_from(&self.raft, leader) => {
                return Err(format!("leadership moved away from {leader}"));
            }
        };
        match answer {
            Ok(PeerResponse::ReadIndex(Ok(index))) => Ok(index),
            Ok(PeerResponse::ReadIndex(Err(e))) => Err(e.to_string()),
            Ok(other) => Err(format!("leader {leader} answered {other:?}")),
            Err(status) => Err(format!("leader {leader}: {}", status.message())),
        }
    }

    fn leader_client(&self, leader: NodeId) -> Result<crate::rpc::PeerClient, String> {
        self.committer.peer_client(leader)
    }

    /// This peer's own status.
    pub fn status(&self) -> PeerStatus {
        let metrics = self.raft.metrics().borrow().clone();
        let membership = metrics.membership_config.membership();
        PeerStatus {
            id: self.config.node_id,
            raft_address: crate::writer::membership_address(&self.raft, self.config.node_id)
                .or_else(|| self.config.peers.get(&self.config.node_id).cloned())
                .unwrap_or_default(),
            role: match metrics.state {
                ServerState::Leader => "Leader",
                ServerState::Follower => "Follower",
                ServerState::Candidate => "Candidate",
                ServerState::Learner => "Learner",
                ServerState::Shutdown => "Shutdown",
            }
            .to_string(),
            term: metrics.current_term,
            leader: metrics.current_leader,
            last_log_index: metrics.last_log_index,
            last_applied_index: metrics.last_applied.map(|l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            millis_since_quorum_ack: metrics.millis_since_quorum_ack,
        }
    }

    /// Every member as this peer sees it, each asked for its own status.
    pub async fn cluster_status(&self) -> ClusterStatus {
        let this = self.status();
        let peers: Peers = self.replica.peers();
        let nodes: Vec<(NodeId, String, bool)> = {
            let metrics = self.raft.metrics().borrow().clone();
            let membership = metrics.membership_config.membership().clone();
            let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
            membership
                .nodes()
                .map(|(id, node)| (*id, node.raft_address.clone(), voters.contains(id)))
                .collect()
        };
        let mut members = Vec::new();
        for (id, address, voter) in nodes {
            let status = if id == self.config.node_id {
                Some(this.clone())
            } else {
                match self.committer.peer_client(id) {
                    Ok(client) => match client.call(PeerRequest::Status, STATUS_TIMEOUT).await {
                        Ok(PeerResponse::Status(status)) => Some(status),
                        _ => None,
                    },
                    Err(_) => None,
                }
            };
            let healthy = status.as_ref().is_some_and(|s| s.role != "Shutdown");
            members.push(MemberStatus {
                id,
                raft_address: address,
                membership: if voter { "voter" } else { "learner" }.to_string(),
                status,
                healthy,
                serves: peers.get(&id).cloned(),
            });
        }
        ClusterStatus { this: this.id, leader: this.leader, term: this.term, members }
    }

    /// Adds a peer: first as a learner that catches up, then as a voter. Any peer may be asked;
    /// the request goes to the leader.
    pub async fn add_peer(&self, id: NodeId, raft_address: String) -> Result<(), ForwardError> {
        self.on_leader(PeerRequest::AddPeer { id, raft_address }).await
    }

    /// Removes a peer for good; its id is never accepted again.
    pub async fn remove_peer(&self, id: NodeId) -> Result<(), ForwardError> {
        self.on_leader(PeerRequest::RemovePeer { id }).await
    }

    async fn on_leader(&self, request: PeerRequest) -> Result<(), ForwardError> {
        if self.is_leader() {
            return self.bounded_change(request).await;
        }
        let leader = self
            .raft
            .metrics()
            .borrow()
            .current_leader
            .ok_or_else(|| ForwardError::Unavailable("no leader elected".into()))?;
        let client = self.leader_client(leader).map_err(ForwardError::Unavailable)?;
        match client.call(request, Duration::from_secs(60)).await {
            Ok(PeerResponse::Membership(result)) => result,
            Ok(other) => Err(ForwardError::Unavailable(format!("leader answered {other:?}"))),
            Err(status) => Err(ForwardError::Unavailable(status.message().to_string())),
        }
    }

    /// A membership change, bounded in time: a leader that lost its majority (openraft 0.9 does
    /// not step down by itself) must answer rather than hang.
    async fn bounded_change(&self, request: PeerRequest) -> Result<(), ForwardError> {
        let bound = self.config.write_timeout * 8;
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
                let catch_up = self.config.write_timeout * 6;
                self.raft
                    .add_learner(id, PeerNode { raft_address: raft_address.clone() }, false)
                    .await
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))?;
                let target = self.raft.metrics().borrow().last_log_index.unwrap_or(0);
                let caught_up = self
                    .raft
                    .wait(Some(catch_up))
                    .metrics(
                        |m| {
                            m.replication
                                .as_ref()
                                .and_then(|r| r.get(&id).copied().flatten())
                                .is_some_and(|matched| matched.index >= target)
                        },
                        "the new peer catches up",
                    )
                    .await;
                if caught_up.is_err() {
                    let _ = self
                        .raft
                        .change_membership(
                            openraft::ChangeMembers::RemoveNodes(BTreeSet::from([id])),
                            false,
                        )
                        .await;
                    return Err(ForwardError::Unavailable(format!(
                        "peer {id} at {raft_address} did not catch up within {catch_up:?}: check \
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
            _ => Err(ForwardError::Refused("not a membership change".into())),
        }
    }

    /// Builds a snapshot now and purges the log it covers (tests: forces a lagging peer to be
    /// caught up by snapshot installation).
    #[cfg(test)]
    pub(crate) async fn compact_log(&self) {
        let _ = self.raft.trigger().snapshot().await;
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.snapshot.is_some(), "a snapshot")
            .await;
        let upto = self.raft.metrics().borrow().snapshot.map_or(0, |s| s.index);
        let _ = self.raft.trigger().purge_log(upto).await;
        let _ = self
            .raft
            .wait(Some(Duration::from_secs(10)))
            .metrics(|m| m.purged.is_some_and(|p| p.index >= upto), "the log purged")
            .await;
    }

    /// Stops openraft.
    pub async fn shutdown(&self) {
        let _ = self.raft.shutdown().await;
    }
}

/// Tells the cluster what this peer serves, and again whenever the replicated record differs
/// (after a snapshot install, or a changed address).
async fn announce(node: Arc<RaftNode>) {
    let mine: PeerInfo = PeerInfo { id: node.config.node_id, ..node.config.serves.clone() };
    loop {
        if node.replica.peers().get(&mine.id) != Some(&mine) {
            match node.writer.write(Op::Announce { peer: mine.clone() }).await {
                Ok(Outcome::Announced) => info!(peer = mine.id, "announced this peer's addresses"),
                Ok(other) => warn!(?other, "unexpected answer to the peer announcement"),
                Err(error) => warn!(%error, "could not announce this peer yet"),
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        if node.raft.metrics().borrow().state == ServerState::Shutdown {
            return;
        }
    }
}

#[async_trait::async_trait]
impl PeerHandler for RaftNode {
    async fn handle(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::AppendEntries(rpc) => {
                let result = self.raft.append_entries(rpc).await;
                if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                    self.contact.touch();
                }
                PeerResponse::AppendEntries(result)
            }
            PeerRequest::Vote(rpc) => {
                let result = self.raft.vote(rpc).await;
                if matches!(&result, Ok(r) if r.vote_granted) {
                    self.contact.touch();
                }
                PeerResponse::Vote(result)
            }
            PeerRequest::InstallSnapshot(rpc) => {
                let leader = rpc.vote;
                let result = self.raft.install_snapshot(rpc).await;
                if matches!(&result, Ok(r) if r.vote <= leader) {
                    self.contact.touch();
                }
                PeerResponse::InstallSnapshot(result)
            }
            PeerRequest::PreVote { last_log_id } => PeerResponse::PreVote(
                election::pre_vote(&self.raft, &self.contact, &self.log, self.timings, last_log_id)
                    .await,
            ),
            PeerRequest::Write(command) => {
                PeerResponse::Write(self.committer.serve_forwarded(command).await)
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(if self.is_leader() {
                self.raft
                    .get_read_log_id()
                    .await
                    .map(|(read, _)| read.map_or(0, |l| l.index))
                    .map_err(|e| ForwardError::Unavailable(e.to_string()))
            } else {
                Err(ForwardError::NotLeader(self.config.node_id))
            }),
            PeerRequest::Status => PeerResponse::Status(self.status()),
            request @ (PeerRequest::AddPeer { .. } | PeerRequest::RemovePeer { .. }) => {
                PeerResponse::Membership(if self.is_leader() {
                    self.bounded_change(request).await
                } else {
                    Err(ForwardError::NotLeader(self.config.node_id))
                })
            }
        }
    }
}
