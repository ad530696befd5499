//! `RaftNode`: one peer of the cluster: its RocksDB, openraft, the peer RPC server, the write
//! path, consistent reads, membership changes and status. Starting it is here; each other concern
//! has its own file.

mod dispatch;
mod leadership;
mod membership;
mod read;
mod status;
mod upkeep;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use openraft::storage::RaftLogStorage;
use openraft::{Config, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::command::{Op, Outcome, PeerInfo};
use crate::config::RaftConfig;
use crate::disk::DiskHealth;
use crate::early::{EarlyAppend, InFlight};
use crate::election::{self, ElectionTimings, LeaderContact};
use crate::formation::{self, Admission, Decision, Gate};
use crate::log_store::{LastLogId, LogStore};
use crate::network::NetworkFactory;
use crate::replica::Replica;
use crate::rpc::{PeerClients, PeerHandler, PeerRequest, PeerResponse, PeerServer};
use crate::state_machine::StateMachine;
use crate::types::{NodeId, PeerNode, Raft};
use crate::writer::{Committer, Writer};

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
    #[error(
        "peer {id}'s data directory {dir} is empty, but the Raft cluster{cluster} counts peer {id} \
         as a member that ran before, so it lost its data: restart it with \
         KUMA_STORE_RAFT_JOIN=true to rejoin as a learner, or remove it (kumactl raft \
         remove-peer {id}) and add a fresh peer with a new id"
    )]
    Wiped { id: NodeId, dir: String, cluster: String },
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
    /// What the peer RPC lets through, and the cluster id it checks callers against.
    admission: Admission,
    /// Whether the disk refuses writes.
    disk: DiskHealth,
    /// Bytes of log entries appended (snapshots by size). Not the log store itself: a task still
    /// holding the node after a stop would keep RocksDB locked.
    appended: Arc<std::sync::atomic::AtomicU64>,
    /// Which followers have a replication request in flight (see `early`).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) in_flight: InFlight,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode").field("id", &self.config.node_id).finish()
    }
}

/// How often an empty peer asks again while some peers are silent, and a wiped one asks to rejoin.
const FORMATION_RETRY: Duration = Duration::from_millis(500);

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
        crate::recovery::force_new_cluster_if_asked(&db, &config)
            .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        let holds_state = crate::db::holds_raft_state(&db).map_err(|e| RaftStartError::Open {
            dir: config.data_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        let admission = Admission::new(if holds_state { Gate::Open } else { Gate::Deciding });
        let replica = Arc::new(Replica::default());
        let disk = DiskHealth::default();
        let state_machine = StateMachine::open(db.clone(), replica.clone())
            .map_err(|e| RaftStartError::Raft(e.to_string()))?
            .with_disk(disk.clone());
        let raft_config = Config {
            cluster_name: "kuma".to_string(),
            heartbeat_interval: millis(config.heartbeat),
            election_timeout_min: millis(config.election_timeout_min),
            election_timeout_max: millis(config.election_timeout_max),
            // Snapshots are sent whole; a slow peer must get time to install one.
            install_snapshot_timeout: 10_000,
            // By count here; by size in `upkeep`.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.upkeep.snapshot_entries),
            // Kept after a snapshot for a follower a little behind, so it needs no snapshot.
            max_in_snapshot_log_to_keep: config.upkeep.snapshot_entries.min(5000),
            // Elections are called by `election::run`, after a pre-vote.
            enable_elect: false,
            ..Default::default()
        }
        .validate()
        .map_err(|e| RaftStartError::Config(e.to_string()))?;
        let tls = config.tls.clone().map(Arc::new);
        let clients = PeerClients::of_cluster(tls.clone(), admission.clone());
        let dial_overrides = Arc::new(config.dial_overrides.clone());
        let in_flight = InFlight::default();
        let raft_clients = PeerClients::of_cluster(tls.clone(), admission.clone());
        let early = EarlyAppend::new(
            config.node_id,
            raft_clients.clone(),
            dial_overrides.clone(),
            in_flight.clone(),
        );
        let mut log = LogStore::new(db).with_disk(disk.clone());
        if config.early_replication {
            log = log.with_early(early.clone());
        }
        let stored_term = log
            .clone()
            .read_vote()
            .await
            .map_err(|e| RaftStartError::Raft(e.to_string()))?
            .map_or(0, |v| v.leader_id().term);
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            NetworkFactory {
                // Not shared with the committer's: see `PeerClients`. Early replication shares
                // it, so an early request goes down the connection openraft's own will take.
                clients: raft_clients,
                dial_overrides: dial_overrides.clone(),
                in_flight: in_flight.clone(),
            },
            log.clone(),
            state_machine,
        )
        .await
        .map_err(|e| RaftStartError::Raft(e.to_string()))?;
        early.follow(raft.metrics());
        // openraft loads its state in its own task: until then its metrics say term 0 and no
        // membership, and this peer's status would too.
        let _ = raft
            .wait(Some(Duration::from_secs(5)))
            .metrics(|m| m.current_term >= stored_term, "the stored state loaded")
            .await;

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
            admission: admission.clone(),
            disk,
            appended: log.appended_counter(),
            in_flight,
        });
        node.admission.set_cluster_id(node.replica.cluster_id());

        let handler: Arc<dyn PeerHandler> = node.clone();
        // Only peers holding a certificate from the cluster CA get past the handshake.
        let server_tls = match &tls {
            Some(tls) => Some(
                crate::rpc::server_tls(tls)
                    .map_err(|e| RaftStartError::Config(format!("peer TLS: {e}")))?,
            ),
            None => None,
        };
        let shutdown = shutdown.shared();
        // The port serves both forms of the peer RPC: direct connections here, gRPC by tonic.
        let (grpc, accepting) = crate::rpc::listen(
            listener,
            server_tls,
            handler.clone(),
            admission.clone(),
            shutdown.clone(),
        );
        let server = tonic::transport::Server::builder()
            .add_service(PeerServer::new(handler, admission))
            .serve_with_incoming_shutdown(grpc, shutdown);
        let raft = node.raft.clone();
        let serving = tokio::spawn(async move {
            let (served, ()) = tokio::join!(server, accepting);
            if let Err(error) = served {
                warn!(%error, "Raft peer server failed");
            }
            let _ = raft.shutdown().await;
        });

        if !holds_state {
            if let Err(refused) = node.decide_formation().await {
                // Nothing of this peer may linger: its port and its data directory are let go.
                serving.abort();
                let _ = serving.await;
                node.shutdown().await;
                return Err(refused);
            }
        }
        tokio::spawn(announce(node.clone()));
        tokio::spawn(leadership::check_quorum(node.clone()));
        tokio::spawn(upkeep::run(node.clone()));
        tokio::spawn(crate::metrics::follow(node.raft.metrics()));
        Ok(node)
    }

    /// An empty data directory: asks the configured peers what the cluster knows of this one (see
    /// `formation`) and acts on it. A first round decides at once when the peers answer; when
    /// some are not up yet, asking goes on in the background and the peer takes part in nothing
    /// meanwhile.
    async fn decide_formation(self: &Arc<Self>) -> Result<(), RaftStartError> {
        let decision = self.ask_about_formation().await;
        if let Decision::Undecided { silent } = decision {
            info!(?silent, "data directory is empty: waiting for every listed peer to answer before forming or joining the Raft cluster");
            let node = self.clone();
            tokio::spawn(async move {
                for round in 1u64.. {
                    tokio::time::sleep(FORMATION_RETRY).await;
                    if node.raft.metrics().borrow().state == ServerState::Shutdown {
                        return;
                    }
                    match node.ask_about_formation().await {
                        Decision::Undecided { silent } => {
                            if round % 20 == 0 {
                                info!(?silent, "still waiting for these peers to answer");
                            }
                        }
                        decision => {
                            if let Err(e) = node.act_on(decision).await {
                                // Turned away: the peer stays out of the cluster's way.
                                error!("{e}");
                            }
                            return;
                        }
                    }
                }
            });
            return Ok(());
        }
        self.act_on(decision).await
    }

    async fn ask_about_formation(&self) -> Decision {
        formation::ask(self.config.node_id, &self.config.peers, &self.committer.clients()).await
    }

    async fn act_on(self: &Arc<Self>, decision: Decision) -> Result<(), RaftStartError> {
        match decision {
            Decision::Form if !self.config.join => {
                self.form_cluster().await;
                self.admission.set_gate(Gate::Open);
            }
            // Never heard announcing: it may have voted before a wipe, so it votes only once the
            // leader took it back as a caught-up voter.
            Decision::AwaitLeader { leader } => {
                info!(?leader, "the cluster exists: catching up as a learner before voting");
                self.admission.set_gate(Gate::Rejoining);
                tokio::spawn(rejoin(self.clone()));
            }
            Decision::Form | Decision::Undecided { .. } => {
                info!("waiting for the Raft leader to replicate the cluster to this peer");
                self.admission.set_gate(Gate::Open);
            }
            Decision::Wiped { cluster_id, leader } => {
                if !self.config.join {
                    return Err(RaftStartError::Wiped {
                        id: self.config.node_id,
                        dir: self.config.data_dir.display().to_string(),
                        cluster: cluster_id.map(|id| format!(" {id}")).unwrap_or_default(),
                    });
                }
                warn!(?leader, "this peer lost its data: rejoining the Raft cluster as a learner");
                self.admission.set_gate(Gate::Rejoining);
                tokio::spawn(rejoin(self.clone()));
            }
        }
        Ok(())
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

    /// Bytes of log entries this peer appended since it started.
    pub(crate) fn appended_bytes(&self) -> u64 {
        self.appended.load(std::sync::atomic::Ordering::Relaxed)
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
        self.disk.close();
        let _ = self.raft.shutdown().await;
    }
}

/// Asks the leader to take this peer back (it lost its data, or starts late with an empty one)
/// until it has: first as a learner that catches up, then as a voter. Only then does it vote.
async fn rejoin(node: Arc<RaftNode>) {
    let id = node.config.node_id;
    for attempt in 1u64.. {
        if node.raft.metrics().borrow().state == ServerState::Shutdown {
            return;
        }
        let answer = match formation::ask(id, &node.config.peers, &node.committer.clients()).await {
            Decision::Wiped { leader: Some((leader, address)), .. }
            | Decision::AwaitLeader { leader: Some((leader, address)) } => {
                match node.committer.client(&address) {
                    Ok(client) => client
                        .call(PeerRequest::Rejoin { id }, node.config.write_timeout * 8)
                        .await
                        .map_err(|status| format!("leader {leader}: {}", status.message())),
                    Err(e) => Err(e.to_string()),
                }
            }
            other => Err(format!("no leader to rejoin through yet ({other:?})")),
        };
        match answer {
            Ok(PeerResponse::Membership(Ok(()))) => {
                node.admission.set_gate(Gate::Open);
                info!("rejoined the Raft cluster: caught up and a voter again");
                return;
            }
            // Not a member at all: a fresh peer waiting to be added (KUMA_STORE_RAFT_JOIN); it
            // never voted in this cluster, so it may once it is made a voter.
            Ok(PeerResponse::Membership(Err(crate::rpc::ForwardError::Refused(reason)))) => {
                info!(%reason, "waiting to be added to the Raft cluster (kumactl raft add-peer)");
                node.admission.set_gate(Gate::Open);
                return;
            }
            Ok(PeerResponse::Membership(Err(e))) if attempt % 10 == 1 => {
                warn!(error = %e, "the leader did not take this peer back yet")
            }
            Err(e) if attempt % 10 == 1 => warn!(error = %e, "could not rejoin yet"),
            _ => {}
        }
        tokio::time::sleep(FORMATION_RETRY).await;
    }
}

/// Tells the cluster what this peer serves, and again whenever the replicated record differs
/// (after a snapshot install, or a changed address). The leader names the cluster once.
async fn announce(node: Arc<RaftNode>) {
    let mine: PeerInfo = PeerInfo { id: node.config.node_id, ..node.config.serves.clone() };
    loop {
        if node.is_leader() && node.replica.cluster_id().is_none() {
            let id = format!("{:032x}", rand::random::<u128>());
            match node.writer.write(Op::NameCluster { id }).await {
                Ok(Outcome::Named(id)) => info!(cluster = %id, "the Raft cluster has its id"),
                Ok(other) => warn!(?other, "unexpected answer to naming the cluster"),
                Err(error) => warn!(%error, "could not name the cluster yet"),
            }
        }
        node.admission.set_cluster_id(node.replica.cluster_id());
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
