//! The nemesis: a fixed number of faults, one at a time, each followed by a wait for the cluster
//! to recover (bounded) and a quiet period. Kills of the leader measure the time until the first
//! acknowledged write through a survivor; partitions record when a peer was cut off and send it
//! writes that it must not acknowledge. The storage faults (a full disk, slow fsyncs) are in
//! `storage_faults.rs`, the membership faults (a wiped peer, a leader transfer) in
//! `membership_faults.rs`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::future::{select_ok, BoxFuture, FutureExt};
use rand::rngs::StdRng;
use rand::Rng;

use crate::chaos::api::{ApiClient, REGISTER_PREFIX};
use crate::chaos::checker::PartitionWindow;
use crate::chaos::cluster::ChaosCluster;
use crate::chaos::error::ChaosError;
use crate::chaos::history::{Action, Operation, Outcome};
use crate::chaos::membership_faults::{TransferRound, WipeRound};
use crate::chaos::storage_faults::{DiskFullRound, SlowFsyncRound};
use crate::chaos::throttle::SlowDisk;

/// A probe write gives up after this long and tries again.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a write sent to a cut-off peer may wait for an answer.
const MINORITY_PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the leader, the time to the first acknowledged write, then its restart.
    KillLeader,
    /// SIGSTOP of a random peer, SIGCONT a moment later.
    Pause,
    /// Every link of the leader cut, then healed.
    PartitionLeader,
    /// Every link of a follower cut, then healed.
    PartitionFollower,
    /// kill -9 of every peer, then all started again at once.
    RestartAll,
    /// The peer with a small filesystem: filled, held, emptied; alternately while it follows
    /// and while it leads.
    DiskFull,
    /// A peer's disk writes capped (slow fsyncs) for a while; alternately a follower and the
    /// leader.
    SlowFsync,
    /// kill -9 of a follower, its data directory deleted, started again with its old id (must be
    /// refused), then with `KUMA_STORE_RAFT_JOIN=true`.
    WipeFollower,
    /// The same with the leader.
    WipeLeader,
    /// `POST /status/raft/transfer-leader` to a random follower.
    TransferLeader,
}

/// How many faults of each kind, and their timing.
#[derive(Debug, Clone)]
pub struct NemesisConfig {
    pub kills: usize,
    pub pauses: usize,
    /// Partitions, alternately of the leader and of a follower (the leader first).
    pub partitions: usize,
    pub restarts: usize,
    /// Disk-full rounds (needs `ClusterConfig::small_disk`), alternately of a follower and of
    /// the leader (the follower first).
    pub disk_fulls: usize,
    /// Slow-fsync rounds, alternately of a follower and of the leader (the follower first).
    pub slow_fsyncs: usize,
    /// Wiped peers, alternately a follower and the leader (the follower first).
    pub wipes: usize,
    /// Leader transfers.
    pub transfers: usize,
    /// The workload runs undisturbed this long between faults.
    pub settle: Duration,
    /// A paused peer stays paused between this and twice this.
    pub pause_for: Duration,
    /// A partition lasts this long.
    pub partition_for: Duration,
    /// The longest wait for the cluster to recover from a fault.
    pub recover_within: Duration,
    /// A small disk stays full this long.
    pub disk_full_for: Duration,
    /// A slow peer stays slow this long.
    pub slow_fsync_for: Duration,
    /// A slow peer may do this many disk writes per second.
    pub slow_fsync_iops: u32,
}

impl Default for NemesisConfig {
    fn default() -> Self {
        NemesisConfig {
            kills: 10,
            pauses: 1,
            partitions: 2,
            restarts: 1,
            settle: Duration::from_secs(1),
            pause_for: Duration::from_secs(1),
            partition_for: Duration::from_secs(4),
            recover_within: Duration::from_secs(30),
            disk_fulls: 0,
            slow_fsyncs: 0,
            wipes: 0,
            transfers: 0,
            disk_full_for: Duration::from_secs(3),
            slow_fsync_for: Duration::from_secs(3),
            slow_fsync_iops: 20,
        }
    }
}

/// The faults in the order they happen: the kills, with every other fault spread evenly
/// between them.
pub fn schedule(config: &NemesisConfig) -> Vec<Fault> {
    let mut others = Vec::new();
    let mut partitions = (0..config.partitions).map(|i| {
        if i % 2 == 0 {
            Fault::PartitionLeader
        } else {
            Fault::PartitionFollower
        }
    });
    let mut pauses = std::iter::repeat_n(Fault::Pause, config.pauses);
    let mut restarts = std::iter::repeat_n(Fault::RestartAll, config.restarts);
    let mut disk_fulls = std::iter::repeat_n(Fault::DiskFull, config.disk_fulls);
    let mut slow_fsyncs = std::iter::repeat_n(Fault::SlowFsync, config.slow_fsyncs);
    let mut wipes =
        (0..config.wipes).map(|i| if i % 2 == 0 { Fault::WipeFollower } else { Fault::WipeLeader });
    let mut transfers = std::iter::repeat_n(Fault::TransferLeader, config.transfers);
    // Round robin over the kinds, so a short run still gets one of each.
    loop {
        let before = others.len();
        others.extend(pauses.next());
        others.extend(partitions.next());
        others.extend(restarts.next());
        others.extend(disk_fulls.next());
        others.extend(slow_fsyncs.next());
        others.extend(wipes.next());
        others.extend(transfers.next());
        if others.len() == before {
            break;
        }
    }
    let total = config.kills + others.len();
    let mut faults = Vec::with_capacity(total);
    let mut placed = 0;
    for slot in 0..total {
        // Place the j-th other fault at slot round((j + 1) * total / (others + 1)).
        let due = placed < others.len() && slot + 1 >= (placed + 1) * total / (others.len() + 1);
        if due {
            faults.push(others[placed]);
            placed += 1;
        } else {
            faults.push(Fault::KillLeader);
        }
    }
    faults
}

/// What the nemesis did and measured.
#[derive(Debug, Clone, Default)]
pub struct NemesisReport {
    /// kill -9 of the leader to the first acknowledged write through a survivor, per kill.
    pub failovers: Vec<Duration>,
    /// Cut of the leader's links to the first acknowledged write through the majority.
    pub partition_failovers: Vec<Duration>,
    /// Cut of the leader's links to the answer of its own status naming another role
    /// (check-quorum; an upper bound, as the status of a cut-off peer takes a while).
    pub cut_leader_step_downs: Vec<Duration>,
    /// kill -9 of every peer to the first acknowledged write after they all started again.
    pub restart_recoveries: Vec<Duration>,
    pub partitions: Vec<PartitionWindow>,
    /// SIGSTOP/SIGCONT rounds done.
    pub pauses: usize,
    pub disk_fulls: Vec<DiskFullRound>,
    pub slow_fsyncs: Vec<SlowFsyncRound>,
    /// The time of one synced write on a disk capped as the slow-fsync fault caps it, measured
    /// at the start of the run.
    pub capped_synced_write: Option<Duration>,
    pub wipes: Vec<WipeRound>,
    pub transfers: Vec<TransferRound>,
    /// Writes sent to a cut-off peer by the nemesis itself.
    pub minority_probes: Vec<Operation>,
    /// One line per fault, with its time from the start of the run.
    pub log: Vec<String>,
}

/// Runs the faults of `config` against `cluster`; times are measured from `epoch`.
#[derive(Debug)]
pub struct Nemesis<'a> {
    pub(super) cluster: &'a mut ChaosCluster,
    pub(super) api: ApiClient,
    pub(super) config: NemesisConfig,
    pub(super) rng: StdRng,
    epoch: Instant,
    verbose: bool,
    /// Values for the nemesis' own writes, disjoint from the workload's.
    pub(super) values: AtomicU64,
    pub(super) report: NemesisReport,
    /// The disk under the peers' data for the slow-fsync fault, found at the first round.
    pub(super) slow_disk: Option<SlowDisk>,
    /// The admin token, read at the first leader transfer.
    pub(super) admin_token: Option<String>,
}

impl<'a> Nemesis<'a> {
    pub fn new(
        cluster: &'a mut ChaosCluster,
        config: NemesisConfig,
        rng: StdRng,
        epoch: Instant,
        verbose: bool,
    ) -> Nemesis<'a> {
        Nemesis {
            cluster,
            api: ApiClient::new(),
            config,
            rng,
            epoch,
            verbose,
            values: AtomicU64::new(1 << 40),
            report: NemesisReport::default(),
            slow_disk: None,
            admin_token: None,
        }
    }

    /// Every fault of the schedule, one after the other. Stops at the first fault the cluster
    /// does not recover from; the report so far comes with the error.
    pub async fn run(mut self) -> Result<NemesisReport, (ChaosError, NemesisReport)> {
        let faults = schedule(&self.config);
        if let Err(e) = self.prepare(&faults) {
            return Err((e, self.report));
        }
        let (mut disk_fulls, mut slow_fsyncs) = (0, 0);
        for (n, fault) in faults.iter().enumerate() {
            tokio::time::sleep(self.config.settle).await;
            let done = match fault {
                Fault::KillLeader => self.kill_leader().await,
                Fault::Pause => self.pause().await,
                Fault::PartitionLeader => self.partition(true).await,
                Fault::PartitionFollower => self.partition(false).await,
                Fault::RestartAll => self.restart_all().await,
                Fault::DiskFull => {
                    disk_fulls += 1;
                    self.disk_full(disk_fulls % 2 == 0).await
                }
                Fault::SlowFsync => {
                    slow_fsyncs += 1;
                    self.slow_fsync(slow_fsyncs % 2 == 0).await
                }
                Fault::WipeFollower => self.wipe_peer(false).await,
                Fault::WipeLeader => self.wipe_peer(true).await,
                Fault::TransferLeader => self.transfer_leader().await,
            };
            if let Err(e) = done {
                self.note(format!("fault {}/{} ({fault:?}) failed", n + 1, faults.len()));
                return Err((e, self.report));
            }
        }
        tokio::time::sleep(self.config.settle).await;
        Ok(self.report)
    }

    /// Checks what the scheduled faults need before the first one: a small disk for the
    /// disk-full fault, a block-I/O cgroup and a real disk for the slow-fsync fault (whose
    /// capped fsync time is measured once here).
    fn prepare(&mut self, faults: &[Fault]) -> Result<(), ChaosError> {
        if faults.contains(&Fault::DiskFull) && self.cluster.small_disk().is_none() {
            return Err(ChaosError::Invalid(
                "the disk-full fault needs a peer with a small disk (ClusterConfig::small_disk)"
                    .into(),
            ));
        }
        if faults.contains(&Fault::SlowFsync) {
            let disk = SlowDisk::under(self.cluster.dir())?;
            let synced = disk.measure_synced_write(self.config.slow_fsync_iops)?;
            self.report.capped_synced_write = Some(synced);
            self.note(format!(
                "slow fsync: a synced 4 KiB write on disk {} capped at {} writes/s takes {synced:?}",
                disk.device(),
                self.config.slow_fsync_iops
            ));
            self.slow_disk = Some(disk);
        }
        Ok(())
    }

    pub(super) fn note(&mut self, line: String) {
        let line = format!("[{:>8.3}s] {line}", self.epoch.elapsed().as_secs_f64());
        if self.verbose {
            eprintln!("{line}");
        }
        self.report.log.push(line);
    }

    async fn kill_leader(&mut self) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let leader = self.cluster.wait_for_leader(within, "before a kill").await?;
        let survivors: Vec<usize> = (0..self.cluster.len()).filter(|i| *i != leader).collect();
        let killed = Instant::now();
        self.cluster.kill(leader);
        let ports = self.cluster.api_ports();
        let failover =
            first_write(&self.api, &ports, &survivors, &self.values, killed, within).await;
        let Some(failover) = failover else {
            return Err(self.no_write("a write after the leader's kill").await);
        };
        self.report.failovers.push(failover);
        self.note(format!("killed leader {}: first write after {failover:?}", leader + 1));
        self.cluster.start_peers(&[leader]).await?;
        self.cluster.wait_healthy(within, &format!("restarting peer {}", leader + 1)).await?;
        Ok(())
    }

    async fn pause(&mut self) -> Result<(), ChaosError> {
        let peer = self.rng.random_range(0..self.cluster.len());
        let reachable = self.cluster.reachable();
        let leader = self.cluster.leader_among(&reachable).await;
        let pause_for = self.config.pause_for.mul_f64(1.0 + self.rng.random::<f64>());
        self.cluster.pause(peer);
        tokio::time::sleep(pause_for).await;
        self.cluster.resume(peer);
        self.report.pauses += 1;
        let role = if leader == Some(peer) { "leader" } else { "follower" };
        self.note(format!("paused peer {} ({role}) for {pause_for:?}", peer + 1));
        self.cluster
            .wait_healthy(self.config.recover_within, &format!("pausing peer {}", peer + 1))
            .await?;
        Ok(())
    }

    async fn partition(&mut self, of_leader: bool) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let leader = self.cluster.wait_for_leader(within, "before a partition").await?;
        let peer = if of_leader {
            leader
        } else {
            let followers: Vec<usize> = (0..self.cluster.len()).filter(|i| *i != leader).collect();
            followers[self.rng.random_range(0..followers.len())]
        };
        let majority: Vec<usize> = (0..self.cluster.len()).filter(|i| *i != peer).collect();
        let ports = self.cluster.api_ports();
        self.cluster.cut(peer);
        let cut = Instant::now();
        let from = self.epoch.elapsed();
        // Measure when the majority takes writes again while writing to the cut-off peer, which
        // must acknowledge none, until the partition has lasted long enough.
        let ends = cut + self.config.partition_for;
        let (majority_write, probes, stepped_down) = tokio::join!(
            first_write(&self.api, &ports, &majority, &self.values, cut, within),
            self.minority_probes(ports[peer], peer, ends),
            self.role_left_leader(ports[peer], of_leader, cut, ends),
        );
        if let Some((_, answered)) = stepped_down {
            self.report.cut_leader_step_downs.push(answered);
        }
        let until = self.epoch.elapsed();
        self.cluster.heal_all();
        let count = probes.len();
        self.report.minority_probes.extend(probes);
        self.report.partitions.push(PartitionWindow { peer, from, until });
        let Some(majority_write) = majority_write else {
            return Err(self.no_write("a write through the majority").await);
        };
        if of_leader {
            self.report.partition_failovers.push(majority_write);
        }
        let role = if of_leader { "leader" } else { "follower" };
        let step_down = match (of_leader, stepped_down) {
            (false, _) => String::new(),
            (true, Some((sent, answered))) => format!(
                ", its status said it no longer leads (asked after {sent:?}, answered after \
                 {answered:?})"
            ),
            (true, None) => ", it never stepped down".to_string(),
        };
        self.note(format!(
            "cut off peer {} ({role}) for {:?}: majority wrote after {majority_write:?}, \
             {count} writes sent to the cut-off peer{step_down}",
            peer + 1,
            until - from,
        ));
        self.cluster.wait_healthy(within, &format!("healing peer {}", peer + 1)).await?;
        Ok(())
    }

    /// When `watch`, polls the peer at `port` until its own role is no longer `Leader`
    /// (check-quorum): when the status request that first said so was sent and answered,
    /// measured from `since`, or `None` by `ends`. A cut-off peer's status waits for its
    /// unreachable members, so the answer comes a while after the request.
    async fn role_left_leader(
        &self,
        port: u16,
        watch: bool,
        since: Instant,
        ends: Instant,
    ) -> Option<(Duration, Duration)> {
        // Bounded by `ends`: each status request times out.
        while watch && Instant::now() < ends {
            let sent = since.elapsed();
            if let Ok(status) = self.api.raft_status(port, Duration::from_secs(2)).await {
                if status.role.as_deref().is_some_and(|r| r != "Leader") {
                    return Some((sent, since.elapsed()));
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// Writes to the cut-off peer at `port`, one after the other, until `ends`.
    async fn minority_probes(&self, port: u16, peer: usize, ends: Instant) -> Vec<Operation> {
        let mut probes = Vec::new();
        // Bounded by `ends`: every attempt takes at least a few milliseconds or sleeps.
        loop {
            let left = ends.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(100) {
                return probes;
            }
            let key = format!("{REGISTER_PREFIX}minority-{peer}-{}", probes.len());
            let value = self.values.fetch_add(1, Ordering::Relaxed);
            let invoked = self.epoch.elapsed();
            let outcome = self.api.write(port, &key, value, MINORITY_PROBE_TIMEOUT.min(left)).await;
            let completed = self.epoch.elapsed();
            let failed = !outcome.is_ok();
            probes.push(Operation {
                process: u64::MAX,
                key,
                peer,
                action: Action::Write(value),
                invoked,
                completed,
                outcome,
            });
            if failed {
                tokio::time::sleep(Duration::from_millis(50).min(left)).await;
            }
        }
    }

    async fn restart_all(&mut self) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        self.cluster.wait_for_leader(within, "before restarting every peer").await?;
        let all: Vec<usize> = (0..self.cluster.len()).collect();
        let killed = Instant::now();
        for peer in &all {
            self.cluster.kill(*peer);
        }
        self.cluster.start_peers(&all).await?;
        let ports = self.cluster.api_ports();
        let recovery = first_write(&self.api, &ports, &all, &self.values, killed, within).await;
        let Some(recovery) = recovery else {
            return Err(self.no_write("a write after restarting every peer").await);
        };
        self.report.restart_recoveries.push(recovery);
        self.note(format!("restarted every peer: first write after {recovery:?}"));
        self.cluster.wait_healthy(within, "restarting every peer").await?;
        Ok(())
    }

    pub(super) async fn no_write(&mut self, what: &str) -> ChaosError {
        ChaosError::NoRecovery {
            what: what.to_string(),
            after: format!("{:?} of trying", self.config.recover_within),
            waited: self.config.recover_within,
            statuses: self.cluster.describe().await,
        }
    }
}

/// Writes through each of `via` concurrently, again and again, until one is acknowledged;
/// the time from `since` to that acknowledgement, or `None` after `within`.
pub(super) async fn first_write(
    api: &ApiClient,
    ports: &[u16],
    via: &[usize],
    values: &AtomicU64,
    since: Instant,
    within: Duration,
) -> Option<Duration> {
    let deadline = Instant::now() + within;
    let attempts: Vec<BoxFuture<'_, Result<Duration, ()>>> = via
        .iter()
        .map(|peer| {
            let port = ports[*peer];
            let key = format!("{REGISTER_PREFIX}probe-{}", peer + 1);
            async move {
                while Instant::now() < deadline {
                    let value = values.fetch_add(1, Ordering::Relaxed);
                    if api.write(port, &key, value, PROBE_TIMEOUT).await == Outcome::Written {
                        return Ok(since.elapsed());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(())
            }
            .boxed()
        })
        .collect();
    select_ok(attempts).await.ok().map(|(took, _)| took)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_has_every_fault_asked_for_spread_between_the_kills() {
        let config = NemesisConfig {
            kills: 10,
            pauses: 1,
            partitions: 2,
            restarts: 1,
            ..NemesisConfig::default()
        };
        let faults = schedule(&config);
        let count = |f: Fault| faults.iter().filter(|x| **x == f).count();
        assert_eq!(faults.len(), 14);
        assert_eq!(count(Fault::KillLeader), 10);
        assert_eq!(count(Fault::Pause), 1);
        assert_eq!(count(Fault::PartitionLeader), 1);
        assert_eq!(count(Fault::PartitionFollower), 1);
        assert_eq!(count(Fault::RestartAll), 1);
        assert_eq!(faults[0], Fault::KillLeader, "{faults:?}");
        assert_ne!(faults[faults.len() - 1], Fault::RestartAll, "{faults:?}");
    }

    #[test]
    fn a_schedule_without_kills_still_has_the_other_faults() {
        let config = NemesisConfig {
            kills: 0,
            pauses: 2,
            partitions: 0,
            restarts: 0,
            ..NemesisConfig::default()
        };
        assert_eq!(schedule(&config), vec![Fault::Pause, Fault::Pause]);
    }
}
