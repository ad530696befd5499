//! A cluster of `kuma-cp` peers with the Raft store on 127.0.0.1, with mutual TLS between peers
//! (certificates from `kuma-cp raft certs`), where every directed peer link `i -> j` goes through
//! its own `LinkProxy` (`KUMA_STORE_RAFT_DIAL_ADDRESSES`), so a peer can be cut off and healed
//! while Raft membership keeps the real addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::chaos::api::{ApiClient, RaftStatus};
use crate::chaos::disk::{wipe_contents, SmallDisk};
use crate::chaos::error::ChaosError;
use crate::chaos::peer::{pick_ports, ChaosPeer};
use crate::chaos::proxy::LinkProxy;

/// How long a started peer may take to answer `/ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long a peer may take to answer `/status/raft` (it asks every other member, 500 ms each).
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// A member counts as caught up this many entries behind the leader (it applies what the leader
/// committed a moment after the leader, and the workload keeps writing).
const CAUGHT_UP_WITHIN: u64 = 20;
/// Pause between polls of the peers' status.
const POLL: Duration = Duration::from_millis(20);

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The kuma-cp binary.
    pub kuma_cp: PathBuf,
    /// Number of peers (3 for the chaos tests).
    pub peers: usize,
    /// More `KUMA_*` variables for every peer, set last.
    pub env: Vec<(String, String)>,
    /// Where certificates, data and logs go; `None`: a temporary directory removed at the end.
    pub dir: Option<PathBuf>,
    /// kuma-cp's `--log-level` (a level or a filter such as `info,kuma_raft=debug`).
    pub log_level: String,
    /// One peer whose data directory is its own small filesystem (for the disk-full fault).
    pub small_disk: Option<SmallDiskConfig>,
}

/// Which peer gets a small filesystem of its own, and its size.
#[derive(Debug, Clone, Copy)]
pub struct SmallDiskConfig {
    /// The peer's index.
    pub peer: usize,
    pub bytes: u64,
}

/// The running cluster. Dropping it kills every peer it started and stops the proxies.
#[derive(Debug)]
pub struct ChaosCluster {
    // Dropped in this order: the peers are killed before their small disks are unmounted.
    peers: Vec<ChaosPeer>,
    disks: Vec<Option<SmallDisk>>,
    proxies: BTreeMap<(usize, usize), LinkProxy>,
    up: Arc<Vec<AtomicBool>>,
    api: ApiClient,
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl ChaosCluster {
    /// Writes the certificates, starts the link proxies and every peer, and waits until each
    /// answers `/ready` (which does not need a leader).
    pub async fn start(config: &ClusterConfig) -> Result<ChaosCluster, ChaosError> {
        if config.peers < 2 {
            return Err(ChaosError::Invalid(format!("{} peers: at least 2", config.peers)));
        }
        let (dir, temp) = work_dir(config.dir.as_deref(), "kuma-chaos-")?;
        let certs = dir.join("certs");
        let ids: Vec<u64> = (1..=config.peers as u64).collect();
        write_certs(&config.kuma_cp, &certs, &ids)?;

        let ports = (0..config.peers).map(|_| pick_ports()).collect::<Result<Vec<_>, _>>()?;
        let mut proxies = BTreeMap::new();
        for (from, _) in ports.iter().enumerate() {
            for (to, to_ports) in ports.iter().enumerate() {
                if from != to {
                    let upstream = SocketAddr::from(([127, 0, 0, 1], to_ports.raft));
                    let proxy = LinkProxy::start(upstream).await.map_err(|source| {
                        ChaosError::Io { what: "start a link proxy".into(), source }
                    })?;
                    proxies.insert((from, to), proxy);
                }
            }
        }
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}=127.0.0.1:{}", i + 1, p.raft))
            .collect::<Vec<_>>()
            .join(",");
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        if let Some(small) = config.small_disk.filter(|s| s.peer >= config.peers) {
            return Err(ChaosError::Invalid(format!(
                "a small disk for peer index {} of {} peers",
                small.peer, config.peers
            )));
        }
        let mut disks = Vec::new();
        let mut peers = Vec::new();
        for (i, peer_ports) in ports.iter().enumerate() {
            let id = i as u64 + 1;
            let data_dir = dir.join(format!("peer-{id}"));
            disks.push(match config.small_disk {
                Some(small) if small.peer == i => Some(SmallDisk::mount(&data_dir, small.bytes)?),
                _ => None,
            });
            let dial = proxies
                .iter()
                .filter(|((from, _), _)| *from == i)
                .map(|((_, to), proxy)| format!("{}=127.0.0.1:{}", to + 1, proxy.port()))
                .collect::<Vec<_>>()
                .join(",");
            let mut env = vec![
                ("KUMA_STORE_TYPE".to_string(), "raft".to_string()),
                ("KUMA_STORE_RAFT_NODE_ID".to_string(), id.to_string()),
                ("KUMA_STORE_RAFT_PEERS".to_string(), members.clone()),
                ("KUMA_STORE_RAFT_DIAL_ADDRESSES".to_string(), dial),
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
            env.extend(config.env.iter().cloned());
            let log = dir.join(format!("peer-{id}.log"));
            let args = vec!["--log-level".to_string(), config.log_level.clone(), "run".to_string()];
            let binary = config.kuma_cp.clone();
            peers.push(ChaosPeer::new(id, *peer_ports, binary, args, env, data_dir, log));
        }
        let up = Arc::new((0..config.peers).map(|_| AtomicBool::new(false)).collect());
        let api = ApiClient::new();
        let mut cluster = ChaosCluster { peers, disks, proxies, up, api, dir, _temp: temp };
        let all: Vec<usize> = (0..cluster.len()).collect();
        cluster.start_peers(&all).await?;
        Ok(cluster)
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// Where the certificates, data and peer logs are.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The peer's Raft data directory.
    pub fn data_dir(&self, peer: usize) -> &Path {
        self.peers[peer].data_dir()
    }

    /// The peer's process id while it runs.
    pub fn pid(&self, peer: usize) -> Option<u32> {
        self.peers[peer].pid()
    }

    /// The peer with a small filesystem of its own, and that filesystem.
    pub fn small_disk(&self) -> Option<(usize, &SmallDisk)> {
        self.disks.iter().enumerate().find_map(|(i, d)| d.as_ref().map(|d| (i, d)))
    }

    /// Deletes everything in the data directory of a stopped peer.
    pub fn wipe(&mut self, peer: usize) -> Result<(), ChaosError> {
        if self.peers[peer].is_running() {
            return Err(ChaosError::Invalid(format!("wiping peer {} while it runs", peer + 1)));
        }
        match &self.disks[peer] {
            Some(disk) => disk.wipe(),
            None => wipe_contents(self.peers[peer].data_dir()),
        }
    }

    /// Starts a stopped peer with more variables for this start only, without waiting for it.
    pub fn spawn_with(&mut self, peer: usize, extra: &[(&str, &str)]) -> Result<(), ChaosError> {
        self.peers[peer].spawn_with(extra)
    }

    /// Waits until a peer started with `spawn_with` answers `/ready`.
    pub async fn wait_ready(&mut self, peer: usize, within: Duration) -> Result<(), ChaosError> {
        self.peers[peer].wait_ready(within).await?;
        self.up[peer].store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Waits up to `within` for a peer to exit by itself: its status, or `None` if it runs.
    pub async fn wait_exit(
        &mut self,
        peer: usize,
        within: Duration,
    ) -> Option<std::process::ExitStatus> {
        self.peers[peer].wait_exit(within).await
    }

    /// The status of a peer that has exited by itself (it then counts as stopped).
    pub fn exited(&mut self, peer: usize) -> Option<std::process::ExitStatus> {
        let status = self.peers[peer].exited();
        if status.is_some() {
            self.up[peer].store(false, Ordering::SeqCst);
        }
        status
    }

    /// What the peer logged since it was last started.
    pub fn log_since_start(&self, peer: usize) -> String {
        self.peers[peer].log_since_start()
    }

    /// The HTTP API port of every peer, by index.
    pub fn api_ports(&self) -> Vec<u16> {
        self.peers.iter().map(|p| p.ports.api).collect()
    }

    /// Which peers have a process (running or paused); shared with the workload.
    pub fn up_flags(&self) -> Arc<Vec<AtomicBool>> {
        self.up.clone()
    }

    pub fn is_paused(&self, peer: usize) -> bool {
        self.peers[peer].is_paused()
    }

    /// Whether the peer's links are cut.
    pub fn is_cut(&self, peer: usize) -> bool {
        self.proxies
            .iter()
            .any(|((from, to), proxy)| (*from == peer || *to == peer) && proxy.is_cut())
    }

    /// Peers that run, are not paused and are not cut off.
    pub fn reachable(&mut self) -> Vec<usize> {
        let mut reachable = Vec::new();
        for i in 0..self.len() {
            if !self.peers[i].is_paused() && !self.is_cut(i) && self.peers[i].is_running() {
                reachable.push(i);
            }
        }
        reachable
    }

    /// What each of `peers` says on `/status/raft` right now, asked concurrently.
    pub async fn statuses(&self, peers: &[usize]) -> Vec<(usize, Result<RaftStatus, String>)> {
        let asks = peers.iter().map(|i| {
            let api = self.api.clone();
            let port = self.peers[*i].ports.api;
            async move { (*i, api.raft_status(port, STATUS_TIMEOUT).await) }
        });
        futures::future::join_all(asks).await
    }

    /// The peer that every one of `among` names as leader, when they agree and it is one of them.
    pub async fn leader_among(&self, among: &[usize]) -> Option<usize> {
        let mut agreed = None;
        for (_, status) in self.statuses(among).await {
            let leader = status.ok()?.leader?;
            match agreed {
                None => agreed = Some(leader),
                Some(l) if l == leader => {}
                Some(_) => return None,
            }
        }
        let index = usize::try_from(agreed?).ok()?.checked_sub(1)?;
        among.contains(&index).then_some(index)
    }

    /// Waits until the reachable peers agree on a leader among them.
    pub async fn wait_for_leader(
        &mut self,
        within: Duration,
        after: &str,
    ) -> Result<usize, ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            let reachable = self.reachable();
            if let Some(leader) = self.leader_among(&reachable).await {
                return Ok(leader);
            }
            if Instant::now() >= deadline {
                return Err(self.no_recovery("an agreed leader", after, within).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every peer runs, none is paused or cut, all agree on the leader and the
    /// leader sees every member healthy, a voter, and applied about as far as the leader.
    pub async fn wait_healthy(
        &mut self,
        within: Duration,
        after: &str,
    ) -> Result<usize, ChaosError> {
        let deadline = Instant::now() + within;
        loop {
            let reachable = self.reachable();
            if reachable.len() == self.len() {
                if let Some(leader) = self.leader_among(&reachable).await {
                    if let Some((_, Ok(status))) = self.statuses(&[leader]).await.pop() {
                        let leader_applied =
                            status.member(leader as u64 + 1).and_then(|m| m.applied);
                        let caught_up = status.members.len() == self.len()
                            && status.members.iter().all(|m| {
                                m.healthy
                                    && m.voter
                                    && m.applied.zip(leader_applied).is_some_and(
                                        |(applied, led)| applied + CAUGHT_UP_WITHIN >= led,
                                    )
                            });
                        if caught_up {
                            return Ok(leader);
                        }
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(self.no_recovery("a healthy cluster", after, within).await);
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn no_recovery(&mut self, what: &str, after: &str, waited: Duration) -> ChaosError {
        ChaosError::NoRecovery {
            what: what.to_string(),
            after: after.to_string(),
            waited,
            statuses: self.describe().await,
        }
    }

    /// Every peer's state and status, and the end of its log, for error messages.
    pub async fn describe(&mut self) -> String {
        let all: Vec<usize> = (0..self.len()).collect();
        let statuses = self.statuses(&all).await;
        let mut text = String::new();
        for (i, status) in statuses {
            let running = self.peers[i].is_running();
            text.push_str(&format!(
                "peer {} (running: {running}, paused: {}, cut: {}): {status:?}\n  log:\n{}\n",
                i + 1,
                self.peers[i].is_paused(),
                self.is_cut(i),
                self.peers[i].log_tail(8),
            ));
        }
        text
    }

    /// kill -9 one peer.
    pub fn kill(&mut self, peer: usize) {
        self.up[peer].store(false, Ordering::SeqCst);
        self.peers[peer].kill();
    }

    /// Starts the given (stopped) peers at once and waits until each is ready.
    pub async fn start_peers(&mut self, peers: &[usize]) -> Result<(), ChaosError> {
        for i in peers {
            self.peers[*i].spawn()?;
        }
        for i in peers {
            self.peers[*i].wait_ready(READY_WITHIN).await?;
            self.up[*i].store(true, Ordering::SeqCst);
        }
        Ok(())
    }

    /// SIGSTOP.
    pub fn pause(&mut self, peer: usize) {
        self.peers[peer].pause();
    }

    /// SIGCONT.
    pub fn resume(&mut self, peer: usize) {
        self.peers[peer].resume();
    }

    /// Cuts every link to and from `peer`.
    pub fn cut(&self, peer: usize) {
        for ((from, to), proxy) in &self.proxies {
            if *from == peer || *to == peer {
                proxy.cut();
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&self) {
        for proxy in self.proxies.values() {
            proxy.heal();
        }
    }

    /// Heals every cut link, empties a filled small disk, resumes paused peers and starts
    /// stopped ones.
    pub async fn restore(&mut self) -> Result<(), ChaosError> {
        self.heal_all();
        if let Some((_, disk)) = self.small_disk() {
            disk.unfill()?;
        }
        let mut stopped = Vec::new();
        for i in 0..self.len() {
            if self.peers[i].is_paused() {
                self.peers[i].resume();
            }
            if !self.peers[i].is_running() {
                self.peers[i].kill();
                stopped.push(i);
            }
        }
        self.start_peers(&stopped).await
    }
}

/// The directory a cluster keeps its certificates, data and logs in: `dir` (made if missing), or
/// a temporary one named `prefix…`, removed when the returned guard is dropped.
pub(crate) fn work_dir(
    dir: Option<&Path>,
    prefix: &str,
) -> Result<(PathBuf, Option<tempfile::TempDir>), ChaosError> {
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| ChaosError::Io {
                what: format!("create {}", dir.display()),
                source,
            })?;
            Ok((dir.to_path_buf(), None))
        }
        None => {
            let temp = tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .map_err(|source| ChaosError::Io { what: "create a temp dir".into(), source })?;
            Ok((temp.path().to_path_buf(), Some(temp)))
        }
    }
}

/// `kuma-cp raft certs --ids ...`: the cluster CA in `dir` (made once, then reused) and a
/// certificate for each id.
pub(crate) fn write_certs(kuma_cp: &Path, dir: &Path, ids: &[u64]) -> Result<(), ChaosError> {
    let ids = ids.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(kuma_cp)
        .args(["raft", "certs", "--dir"])
        .arg(dir)
        .args(["--ids", &ids])
        .output()
        .map_err(|source| ChaosError::Spawn { binary: kuma_cp.to_path_buf(), source })?;
    if !out.status.success() {
        return Err(ChaosError::Certs(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    Ok(())
}
