//! A Raft cluster of real `kuma-cp` peers for the benchmarks (`xds-load --peers 3`,
//! `large-state`): mutual TLS between peers from `kuma-cp raft certs`, every peer dialing the
//! others directly (no link proxies: a benchmark measures the peers, not a proxy), default Raft
//! settings, and peers that can be killed, restarted and added the way an operator does it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::chaos::{
    pick_ports, work_dir, write_certs, ApiClient, ChaosError, ChaosPeer, RaftStatus,
};
use crate::proc_stats;

/// How long a started peer may take to answer `/ready`.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// How long one `/status/raft` may take (it asks every other member).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(20);

/// How to start a benchmark cluster.
#[derive(Debug, Clone)]
pub struct BenchClusterConfig {
    pub kuma_cp: PathBuf,
    /// Voters started at once (3 for the benchmarks).
    pub peers: usize,
    /// kuma-cp's `--log-level`.
    pub log_level: String,
    /// More `KUMA_*` variables for every peer, set last.
    pub env: Vec<(String, String)>,
    /// Where certificates, data and logs go; `None`: a temporary directory removed at the end.
    pub dir: Option<PathBuf>,
}

/// The running peers. Dropping it kills every peer it started.
#[derive(Debug)]
pub struct BenchCluster {
    peers: Vec<ChaosPeer>,
    config: BenchClusterConfig,
    api: ApiClient,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl BenchCluster {
    /// Writes the certificates, starts every peer and waits until each answers `/ready` and the
    /// cluster has a leader that created the default mesh.
    pub async fn start(config: &BenchClusterConfig) -> Result<BenchCluster, ChaosError> {
        if config.peers == 0 {
            return Err(ChaosError::Invalid("a cluster of 0 peers".to_string()));
        }
        let (dir, temp) = work_dir(config.dir.as_deref(), "kuma-bench-")?;
        let ids: Vec<u64> = (1..=config.peers as u64).collect();
        write_certs(&config.kuma_cp, &dir.join("certs"), &ids)?;
        let ports = (0..config.peers).map(|_| pick_ports()).collect::<Result<Vec<_>, _>>()?;
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p.raft))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = BenchCluster {
            peers: Vec::new(),
            config: config.clone(),
            api: ApiClient::new(),
            dir,
            _temp: temp,
        };
        for (i, peer_ports) in ports.into_iter().enumerate() {
            let peer = cluster.new_peer(i as u64 + 1, peer_ports, &members, false);
            cluster.peers.push(peer);
        }
        for peer in &mut cluster.peers {
            peer.spawn()?;
        }
        for peer in &mut cluster.peers {
            peer.wait_ready(READY_WITHIN).await?;
        }
        cluster.wait_for_default_mesh(READY_WITHIN).await?;
        Ok(cluster)
    }

    fn new_peer(&self, id: u64, ports: crate::CpPorts, members: &str, join: bool) -> ChaosPeer {
        let certs = self.dir.join("certs");
        let data_dir = self.dir.join(format!("peer-{id}"));
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut env = vec![
            ("KUMA_STORE_TYPE".to_string(), "raft".to_string()),
            ("KUMA_STORE_RAFT_NODE_ID".to_string(), id.to_string()),
            ("KUMA_STORE_RAFT_PEERS".to_string(), members.to_string()),
            ("KUMA_STORE_RAFT_DATA_DIR".to_string(), path(data_dir.clone())),
            ("KUMA_STORE_RAFT_TLS_CA_FILE".to_string(), path(certs.join("ca.crt"))),
            (
                "KUMA_STORE_RAFT_TLS_CERT_FILE".to_string(),
                path(certs.join(format!("peer-{id}.crt"))),
            ),
            (
                "KUMA_STORE_RAFT_TLS_KEY_FILE".to_string(),
                path(certs.join(format!("peer-{id}.key"))),
            ),
        ];
        if join {
            env.push(("KUMA_STORE_RAFT_JOIN".to_string(), "true".to_string()));
        }
        env.extend(self.config.env.iter().cloned());
        let log = self.dir.join(format!("peer-{id}.log"));
        let args =
            vec!["--log-level".to_string(), self.config.log_level.clone(), "run".to_string()];
        ChaosPeer::new(id, ports, self.config.kuma_cp.clone(), args, env, data_dir, log)
    }

    /// Peers started, by index (a peer added with `start_joiner` comes last).
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Where certificates, data and peer logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn api_port(&self, peer: usize) -> u16 {
        self.peers[peer].ports.api
    }

    pub fn xds_port(&self, peer: usize) -> u16 {
        self.peers[peer].ports.xds
    }

    pub fn diagnostics_port(&self, peer: usize) -> u16 {
        self.peers[peer].ports.diagnostics
    }

    pub fn raft_port(&self, peer: usize) -> u16 {
        self.peers[peer].ports.raft
    }

    /// The Raft id of a peer.
    pub fn id(&self, peer: usize) -> u64 {
        self.peers[peer].id
    }

    pub fn pid(&self, peer: usize) -> Option<u32> {
        self.peers[peer].pid()
    }

    /// Process ids of the peers that run.
    pub fn pids(&self) -> Vec<u32> {
        self.peers.iter().filter_map(ChaosPeer::pid).collect()
    }

    /// Resident memory of a running peer, in bytes.
    pub fn rss(&self, peer: usize) -> Result<u64, ChaosError> {
        let pid = self.pid(peer).ok_or_else(|| {
            ChaosError::Invalid(format!("the memory of peer {} while it is stopped", peer + 1))
        })?;
        proc_stats::rss_bytes(pid)
            .map_err(|source| ChaosError::Io { what: format!("read /proc/{pid}/status"), source })
    }

    /// CPU time (user + system) all running peers used so far.
    pub fn cpu_time(&self) -> Duration {
        self.pids().into_iter().filter_map(|pid| proc_stats::cpu_time(pid).ok()).sum()
    }

    /// `Err(Exited)` for the first started peer that is gone.
    pub fn check_running(&mut self) -> Result<(), ChaosError> {
        for peer in &mut self.peers {
            if peer.pid().is_some() {
                if let Some(status) = peer.exited() {
                    return Err(ChaosError::Exited {
                        id: peer.id,
                        status: status.to_string(),
                        log_tail: peer.log_tail(20),
                    });
                }
            }
        }
        Ok(())
    }

    /// The end of a peer's log.
    pub fn log_tail(&self, peer: usize, lines: usize) -> String {
        self.peers[peer].log_tail(lines)
    }

    /// kill -9.
    pub fn kill(&mut self, peer: usize) {
        self.peers[peer].kill();
    }

    /// Starts a stopped peer again (same data, ports and settings) and waits for `/ready`.
    pub async fn restart(&mut self, peer: usize) -> Result<(), ChaosError> {
        self.peers[peer].spawn()?;
        self.peers[peer].wait_ready(READY_WITHIN).await
    }

    /// What `peer` says on `GET /status/raft`.
    pub async fn status(&self, peer: usize) -> Result<RaftStatus, String> {
        self.api.raft_status(self.api_port(peer), STATUS_TIMEOUT).await
    }

    /// Index of the peer a running peer names as leader, waiting up to `within` for one.
    pub async fn wait_for_leader(&self, within: Duration) -> Result<usize, ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            for asked in (0..self.len()).filter(|i| self.pid(*i).is_some()) {
                let leader = self.status(asked).await.ok().and_then(|s| s.leader);
                if let Some(index) =
                    leader.and_then(|id| self.peers.iter().position(|p| p.id == id))
                {
                    return Ok(index);
                }
            }
            if Instant::now() >= deadline {
                return Err(self.no_recovery("an elected leader", within).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The applied index of `peer` as it says itself.
    pub async fn applied(&self, peer: usize) -> Option<u64> {
        let status = self.status(peer).await.ok()?;
        status.member(status.this)?.applied
    }

    /// Waits until `peer` has applied at least `index`; the time it waited.
    pub async fn wait_applied(
        &self,
        peer: usize,
        index: u64,
        within: Duration,
    ) -> Result<Duration, ChaosError> {
        let started = Instant::now();
        loop {
            if self.applied(peer).await.is_some_and(|a| a >= index) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= within {
                let what = format!("peer {} applying index {index}", self.id(peer));
                return Err(self.no_recovery(&what, within).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Starts a new peer with `KUMA_STORE_RAFT_JOIN=true` and the next id (its certificate from
    /// the cluster's CA, as `kuma-cp raft certs --ids N` makes it), waits for `/ready`, and
    /// returns its index. It is no member until `add-peer`.
    pub async fn start_joiner(&mut self) -> Result<usize, ChaosError> {
        let id = self.peers.iter().map(|p| p.id).max().unwrap_or(0) + 1;
        write_certs(&self.config.kuma_cp, &self.dir.join("certs"), &[id])?;
        let mut peer = self.new_peer(id, pick_ports()?, "", true);
        peer.spawn()?;
        self.peers.push(peer);
        let index = self.peers.len() - 1;
        self.peers[index].wait_ready(READY_WITHIN).await?;
        Ok(index)
    }

    /// Stops a peer for good and forgets it (after `remove-peer`).
    pub fn discard(&mut self, peer: usize) {
        let mut gone = self.peers.remove(peer);
        gone.kill();
    }

    async fn wait_for_default_mesh(&self, within: Duration) -> Result<(), ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            if self.api.exists(self.api_port(0), "/meshes/default", STATUS_TIMEOUT).await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.no_recovery("the default mesh", within).await);
            }
            tokio::time::sleep(POLL * 5).await;
        }
    }

    async fn no_recovery(&self, what: &str, waited: Duration) -> ChaosError {
        let mut statuses = String::new();
        for i in 0..self.len() {
            statuses.push_str(&format!(
                "peer {}: {:?}\n  log:\n{}\n",
                self.id(i),
                self.status(i).await,
                self.log_tail(i, 8)
            ));
        }
        ChaosError::NoRecovery {
            what: what.to_string(),
            after: "the benchmark's step".to_string(),
            waited,
            statuses,
        }
    }
}
