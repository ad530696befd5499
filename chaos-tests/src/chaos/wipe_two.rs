//! Two of three peers wiped at once, the leader among them: the worst case of issue 15, where two
//! peers with empty logs could elect each other and the cluster would come back empty. Each run
//! starts a fresh cluster, writes a few registers, waits until every peer holds them, kills the
//! leader and a random follower (a random delay apart), deletes both data directories, starts
//! both with their old ids and the full peer list (each must refuse), then with
//! `KUMA_STORE_RAFT_JOIN=true` (in random order, a random delay apart). A majority lost its data,
//! so the cluster may stay without a leader until an operator recovers it (`--force-new-cluster`
//! on the survivor), but for a while after the restarts it is asked, through every peer, for the
//! registers (consistent reads: never "not found") and for new writes, and at the end every
//! peer's registers are read (`?consistency=stale`): the survivor must hold every register, and
//! if the cluster became healthy again (both back as caught-up voters), every peer must.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::chaos::api::{ApiClient, REGISTER_PREFIX};
use crate::chaos::cluster::{ChaosCluster, ClusterConfig};
use crate::chaos::error::ChaosError;
use crate::chaos::history::Outcome;
use crate::chaos::membership_faults::{judge_refusal, JOIN, REFUSE_WITHIN};

/// A register write or read gives up after this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A read or write during the watch gives up after this long.
const WATCH_TIMEOUT: Duration = Duration::from_millis(700);

/// How many runs and how they are timed.
#[derive(Debug, Clone)]
pub struct WipeTwoConfig {
    pub runs: usize,
    /// Registers written before each wipe.
    pub writes_per_run: usize,
    /// Each random delay (between the kills, before the starts, between the starts) is at most
    /// this.
    pub max_delay: Duration,
    /// After both rejoining peers are ready, the cluster is watched this long.
    pub watch_for: Duration,
    /// The longest wait for a healthy cluster before the wipe, and for registers to show.
    pub within: Duration,
    pub seed: u64,
}

impl Default for WipeTwoConfig {
    fn default() -> Self {
        WipeTwoConfig {
            runs: 20,
            writes_per_run: 5,
            max_delay: Duration::from_millis(500),
            watch_for: Duration::from_secs(2),
            within: Duration::from_secs(30),
            seed: 1,
        }
    }
}

/// One run.
#[derive(Debug, Clone)]
pub struct WipeTwoRun {
    /// The wiped leader and follower, and the survivor (indexes).
    pub leader: usize,
    pub follower: usize,
    pub survivor: usize,
    /// Registers on every peer before the wipe.
    pub before: usize,
    /// The starts on the wiped directories without `KUMA_STORE_RAFT_JOIN`: leader's, then
    /// follower's.
    pub refused: [Result<(), String>; 2],
    /// Whether the survivor had each wiped peer's announcement (its addresses) before the kill:
    /// leader's, then follower's (`None`: its status did not say).
    pub announced: [Option<bool>; 2],
    /// Consistent reads of registers written before the wipe, during the watch: the value,
    /// "not found" (an empty state served: a failure), no answer.
    pub reads: (usize, usize, usize),
    /// Writes during the watch: acknowledged, not.
    pub writes: (usize, usize),
    /// The cluster was healthy again (all three caught-up voters) at the end of the watch.
    pub healthy_again: bool,
    /// Registers on each peer at the end (`None`: the peer did not answer a stale read).
    pub after: Vec<Option<usize>>,
    /// `register on peer N` for each register written before the wipe that a peer that must
    /// hold it lacks.
    pub missing: Vec<String>,
}

impl WipeTwoRun {
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let wiped = [self.leader, self.follower].into_iter().zip(&self.refused).zip(self.announced);
        for ((peer, refused), announced) in wiped {
            if let Err(e) = refused {
                let announced = match announced {
                    Some(true) => "it had announced itself before the wipe",
                    Some(false) => "it had not announced itself yet when it was wiped",
                    None => "whether it had announced itself is unknown",
                };
                failures.push(format!("wiped peer {} ({announced}): {e}", peer + 1));
            }
        }
        if self.reads.1 > 0 {
            failures.push(format!(
                "{} consistent reads of registers written before the wipe answered not found",
                self.reads.1
            ));
        }
        let must_hold: Vec<usize> =
            if self.healthy_again { (0..self.after.len()).collect() } else { vec![self.survivor] };
        for peer in must_hold {
            match self.after.get(peer).copied().flatten() {
                Some(n) if n >= self.before => {}
                Some(n) => failures.push(format!(
                    "peer {} holds {n} registers, fewer than the {} before the wipe",
                    peer + 1,
                    self.before
                )),
                None => failures.push(format!("peer {} did not answer a stale read", peer + 1)),
            }
        }
        if !self.missing.is_empty() {
            failures.push(format!("registers missing: {}", self.missing.join(", ")));
        }
        failures
    }
}

impl fmt::Display for WipeTwoRun {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let after: Vec<String> =
            self.after.iter().map(|n| n.map_or("?".into(), |n| n.to_string())).collect();
        let refused = self.refused.iter().filter(|r| r.is_ok()).count();
        let announced: Vec<&str> = self
            .announced
            .iter()
            .map(|a| match a {
                Some(true) => "yes",
                Some(false) => "no",
                None => "?",
            })
            .collect();
        let state = if self.healthy_again { "healthy again" } else { "no quorum (as designed)" };
        write!(
            f,
            "wiped leader {} and follower {} (survivor {}; announced: {}): {refused} of 2 starts \
             refused; \
             reads {} ok {} not found {} unanswered, writes {} acknowledged {} not; {state}; \
             registers {} before, [{}] after",
            self.leader + 1,
            self.follower + 1,
            self.survivor + 1,
            announced.join("/"),
            self.reads.0,
            self.reads.1,
            self.reads.2,
            self.writes.0,
            self.writes.1,
            self.before,
            after.join(", "),
        )
    }
}

/// Every run, in order.
#[derive(Debug, Clone, Default)]
pub struct WipeTwoReport {
    pub runs: Vec<WipeTwoRun>,
    pub took: Duration,
}

impl WipeTwoReport {
    pub fn failures(&self) -> Vec<String> {
        let runs = self.runs.iter().enumerate();
        runs.flat_map(|(n, run)| {
            run.failures().into_iter().map(move |f| format!("run {}: {f}", n + 1))
        })
        .collect()
    }

    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }
}

impl fmt::Display for WipeTwoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "two of three peers wiped, the leader among them: {} runs, {:.1}s",
            self.runs.len(),
            self.took.as_secs_f64()
        )?;
        for (n, run) in self.runs.iter().enumerate() {
            writeln!(f, "run {}: {run}", n + 1)?;
        }
        let failures = self.failures();
        if failures.is_empty() {
            write!(f, "verdict: PASS")
        } else {
            write!(f, "verdict: FAIL: {}", failures.join("; "))
        }
    }
}

/// Does `config.runs` runs, each on a fresh cluster as `cluster` says. An error means a run could
/// not go on (with what every peer said); failed checks are in the report.
pub async fn run_wipe_two(
    cluster: &ClusterConfig,
    config: &WipeTwoConfig,
    verbose: bool,
) -> Result<WipeTwoReport, ChaosError> {
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut report = WipeTwoReport::default();
    for n in 0..config.runs {
        let mut run_cluster = cluster.clone();
        if let Some(dir) = &cluster.dir {
            run_cluster.dir = Some(dir.join(format!("run-{}", n + 1)));
        }
        let done = one_run(&run_cluster, config, &mut rng).await?;
        if verbose {
            eprintln!("[{:>8.3}s] run {}: {done}", started.elapsed().as_secs_f64(), n + 1);
        }
        report.runs.push(done);
    }
    report.took = started.elapsed();
    Ok(report)
}

async fn one_run(
    cluster: &ClusterConfig,
    config: &WipeTwoConfig,
    rng: &mut StdRng,
) -> Result<WipeTwoRun, ChaosError> {
    let within = config.within;
    let mut cluster = ChaosCluster::start(cluster).await?;
    let api = ApiClient::new();
    let leader = cluster.wait_healthy(within, "starting the cluster").await?;
    let ports = cluster.api_ports();
    let mut written = BTreeSet::new();
    for i in 0..config.writes_per_run {
        let key = format!("{REGISTER_PREFIX}before-wipe-{i}");
        must_write(&mut cluster, &api, ports[leader], &key, i as u64, within).await?;
        written.insert(key);
    }
    let all: Vec<usize> = (0..cluster.len()).collect();
    let before = wait_for_keys(&cluster, &api, &all, &written, within).await;
    // The first election's winner is much the same peer every time: hand the leadership to a
    // random one, so that every pair gets wiped.
    let wanted = rng.random_range(0..cluster.len());
    if wanted != leader {
        move_leadership(&mut cluster, &api, wanted).await;
    }
    let leader = cluster.wait_for_leader(within, "a leader transfer").await?;
    let before = before.iter().map(|n| n.unwrap_or_default()).min().unwrap_or_default();

    let others: Vec<usize> = (0..cluster.len()).filter(|i| *i != leader).collect();
    let follower = others[rng.random_range(0..others.len())];
    let survivor = (0..cluster.len()).find(|i| *i != leader && *i != follower).unwrap_or_default();
    let announced = match cluster.statuses(&[survivor]).await.pop() {
        Some((_, Ok(status))) => {
            [leader, follower].map(|p| status.member(p as u64 + 1).map(|m| m.announced))
        }
        _ => [None, None],
    };
    cluster.kill(leader);
    tokio::time::sleep(random_delay(rng, config.max_delay)).await;
    cluster.kill(follower);
    cluster.wipe(leader)?;
    cluster.wipe(follower)?;
    tokio::time::sleep(random_delay(rng, config.max_delay)).await;

    cluster.spawn_with(leader, &[])?;
    cluster.spawn_with(follower, &[])?;
    let mut refused = [Ok(()), Ok(())];
    for (slot, peer) in [leader, follower].into_iter().enumerate() {
        let exit = cluster.wait_exit(peer, REFUSE_WITHIN).await;
        refused[slot] = judge_refusal(exit, &cluster.log_since_start(peer));
        if refused[slot].is_err() {
            // It took the empty directory as a new peer: start over from an empty one again.
            cluster.kill(peer);
            cluster.wipe(peer)?;
        }
    }

    let mut order = [leader, follower];
    if rng.random_bool(0.5) {
        order.swap(0, 1);
    }
    cluster.spawn_with(order[0], &[JOIN])?;
    tokio::time::sleep(random_delay(rng, config.max_delay)).await;
    cluster.spawn_with(order[1], &[JOIN])?;
    for peer in order {
        cluster.wait_ready(peer, within).await?;
    }
    let keys: Vec<String> = written.iter().cloned().collect();
    let (reads, writes) = watch(&api, &ports, &keys, config.watch_for, rng).await;
    let healthy_again = cluster.wait_healthy(Duration::from_millis(1), "").await.is_ok();
    let must_hold = if healthy_again { all.clone() } else { vec![survivor] };
    wait_for_keys(&cluster, &api, &must_hold, &written, within).await;
    let after = wait_for_keys(&cluster, &api, &all, &written, Duration::ZERO).await;
    let mut missing = Vec::new();
    for peer in must_hold {
        let held = api.registers(ports[peer], REQUEST_TIMEOUT).await.unwrap_or_default();
        let lacking = written.iter().filter(|k| !held.contains_key(*k));
        missing.extend(lacking.map(|k| format!("{k} on peer {}", peer + 1)));
    }
    Ok(WipeTwoRun {
        leader,
        follower,
        survivor,
        before,
        refused,
        announced,
        reads,
        writes,
        healthy_again,
        after,
        missing,
    })
}

/// For `watch_for`, in rounds, reads a random register of `keys` and writes a new one through
/// every peer at once: the reads (value, not found, unanswered) and writes (acknowledged, not).
async fn watch(
    api: &ApiClient,
    ports: &[u16],
    keys: &[String],
    watch_for: Duration,
    rng: &mut StdRng,
) -> ((usize, usize, usize), (usize, usize)) {
    let (mut reads, mut writes) = ((0, 0, 0), (0, 0));
    let ends = Instant::now() + watch_for;
    let mut round = 0usize;
    // Bounded by `ends`: every request times out within WATCH_TIMEOUT.
    while Instant::now() < ends && !keys.is_empty() {
        let asks = ports.iter().enumerate().map(|(peer, port)| {
            let key = keys[rng.random_range(0..keys.len())].clone();
            let new = format!("{REGISTER_PREFIX}after-wipe-{round}-{peer}");
            async move {
                let read = api.read(*port, &key, WATCH_TIMEOUT).await;
                let write = api.write(*port, &new, round as u64, WATCH_TIMEOUT).await;
                (read, write)
            }
        });
        for (read, write) in futures::future::join_all(asks).await {
            match read {
                Outcome::Read(Some(_)) => reads.0 += 1,
                Outcome::Read(None) => reads.1 += 1,
                _ => reads.2 += 1,
            }
            match write {
                Outcome::Written => writes.0 += 1,
                _ => writes.1 += 1,
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (reads, writes)
}

/// Asks for the leadership to go to `to` and waits a moment for it; the wipe goes on with
/// whichever peer leads then.
async fn move_leadership(cluster: &mut ChaosCluster, api: &ApiClient, to: usize) {
    let ports = cluster.api_ports();
    let Ok(token) = api.admin_token(ports[to], REQUEST_TIMEOUT).await else { return };
    let _ = api.transfer_leader(ports[to], to as u64 + 1, &token, REQUEST_TIMEOUT).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    // Bounded by the deadline.
    while Instant::now() < deadline {
        let reachable = cluster.reachable();
        if cluster.leader_among(&reachable).await == Some(to) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Writes `key` through the peer at `port` until it is acknowledged.
async fn must_write(
    cluster: &mut ChaosCluster,
    api: &ApiClient,
    port: u16,
    key: &str,
    value: u64,
    within: Duration,
) -> Result<(), ChaosError> {
    let deadline = Instant::now() + within;
    // Bounded by the deadline: each attempt times out or sleeps.
    while Instant::now() < deadline {
        if api.write(port, key, value, REQUEST_TIMEOUT).await == Outcome::Written {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(ChaosError::NoRecovery {
        what: format!("an acknowledged write of {key}"),
        after: "a healthy cluster".into(),
        waited: within,
        statuses: cluster.describe().await,
    })
}

/// Polls the registers of `peers` (stale reads) until each holds every key of `keys`, or
/// `within` passed: the number every peer holds at the end (by index; `None` for a peer that
/// did not answer or was not asked).
async fn wait_for_keys(
    cluster: &ChaosCluster,
    api: &ApiClient,
    peers: &[usize],
    keys: &BTreeSet<String>,
    within: Duration,
) -> Vec<Option<usize>> {
    let ports = cluster.api_ports();
    let deadline = Instant::now() + within;
    loop {
        let mut counts = vec![None; ports.len()];
        let mut complete = true;
        for peer in peers {
            match api.registers(ports[*peer], REQUEST_TIMEOUT).await {
                Ok(held) => {
                    complete &= keys.iter().all(|k| held.contains_key(k));
                    counts[*peer] = Some(held.len());
                }
                Err(_) => complete = false,
            }
        }
        if complete || Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn random_delay(rng: &mut StdRng, max: Duration) -> Duration {
    max.mul_f64(rng.random::<f64>())
}
