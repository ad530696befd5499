//! One chaos run: start the cluster, run the workload while the nemesis injects its faults, stop,
//! let the cluster recover, then check the history and the replicas.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::chaos::api::{register_value, ApiClient};
use crate::chaos::checker;
use crate::chaos::cluster::{ChaosCluster, ClusterConfig, SmallDiskConfig};
use crate::chaos::error::ChaosError;
use crate::chaos::history::{Action, Operation, Outcome};
use crate::chaos::nemesis::{Nemesis, NemesisConfig, NemesisReport};
use crate::chaos::report::ChaosReport;
use crate::chaos::workload::{Workload, WorkloadConfig};

/// How long the final checks may wait for the replicas to agree.
const CONVERGE_WITHIN: Duration = Duration::from_secs(30);
/// The size of the small filesystem of the disk-full fault's peer: room for a long run's Raft
/// log and snapshots, and little memory.
pub const SMALL_DISK_BYTES: u64 = 128 << 20;
/// Every peer's registers by name, in peer order.
type Registers = Vec<BTreeMap<String, serde_json::Value>>;
/// Each final read gives up after this long and tries another peer.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub cluster: ClusterConfig,
    pub workload: WorkloadConfig,
    pub nemesis: NemesisConfig,
    /// Seeds the clients' and the nemesis' choices (which peer, which key, how long).
    pub seed: u64,
    /// The longest the linearizability checks may take in all.
    pub check_budget: Duration,
    /// After the workload stops, wait this long before the final reads, so that writes whose
    /// outcome was unknown are applied or abandoned (kuma-cp retries a write for its write
    /// timeout, 5 s by default).
    pub quiesce: Duration,
    /// Print each fault as it happens.
    pub verbose: bool,
    /// Write the history here, one JSON object per line.
    pub history_file: Option<PathBuf>,
}

impl ChaosConfig {
    /// The settings of the bounded run (the CI test) with the given binary.
    pub fn bounded(kuma_cp: PathBuf) -> ChaosConfig {
        ChaosConfig {
            cluster: ClusterConfig {
                kuma_cp,
                peers: 3,
                env: Vec::new(),
                dir: None,
                log_level: "info".to_string(),
                small_disk: None,
            },
            workload: WorkloadConfig::default(),
            nemesis: NemesisConfig::default(),
            seed: 1,
            check_budget: Duration::from_secs(120),
            quiesce: Duration::from_secs(6),
            verbose: false,
            history_file: None,
        }
    }
}

/// The kuma-cp next to the running executable (a test's `deps/` folder counts as its parent).
pub fn kuma_cp_beside_this_program() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    let dir =
        if dir.ends_with("deps") { dir.parent().map(PathBuf::from).unwrap_or(dir) } else { dir };
    dir.join("kuma-cp")
}

/// Runs the whole scenario. Errors mean the run could not go on (the cluster did not recover
/// from a fault within its bound); failed checks are in the report.
pub async fn run_chaos(config: ChaosConfig) -> Result<ChaosReport, ChaosError> {
    let started = Instant::now();
    let mut cluster_config = config.cluster.clone();
    if config.nemesis.disk_fulls > 0 && cluster_config.small_disk.is_none() {
        let peer = cluster_config.peers.saturating_sub(1);
        cluster_config.small_disk = Some(SmallDiskConfig { peer, bytes: SMALL_DISK_BYTES });
    }
    let mut cluster = ChaosCluster::start(&cluster_config).await?;
    let within = config.nemesis.recover_within;
    let leader = cluster.wait_for_leader(within, "starting the cluster").await?;
    // The leader creates mesh `default`; the registers live in it.
    let api = ApiClient::new();
    let ports = cluster.api_ports();
    let mesh_deadline = Instant::now() + within;
    while !api.exists(ports[leader], "/meshes/default", Duration::from_secs(2)).await {
        if Instant::now() >= mesh_deadline {
            return Err(ChaosError::NoRecovery {
                what: "mesh default".into(),
                after: "starting the cluster".into(),
                waited: within,
                statuses: cluster.describe().await,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if config.verbose {
        eprintln!(
            "cluster up in {:?} (data and logs in {})",
            started.elapsed(),
            cluster.dir().display()
        );
    }

    let epoch = Instant::now();
    let workload = Workload::start(
        config.workload.clone(),
        api.clone(),
        ports.clone(),
        cluster.up_flags(),
        epoch,
        config.seed,
    );
    let nemesis = Nemesis::new(
        &mut cluster,
        config.nemesis.clone(),
        StdRng::seed_from_u64(config.seed),
        epoch,
        config.verbose,
    );
    let nemesis = nemesis.run().await;
    let ops = workload.stop().await;
    let nemesis = nemesis.map_err(|(error, _)| error)?;
    if config.verbose {
        eprintln!(
            "[{:>8.3}s] workload stopped after {} operations",
            epoch.elapsed().as_secs_f64(),
            ops.len()
        );
    }
    let ops = final_reads(ops, &mut cluster, &config, epoch).await?;
    let converged = converge(&mut cluster, &api).await;
    drop(cluster);
    if let Some(path) = &config.history_file {
        write_history(path, ops.iter().chain(&nemesis.minority_probes))?;
    }
    Ok(check(ops, converged, nemesis, &config, started))
}

/// Every check of a finished run.
fn check(
    ops: Vec<Operation>,
    converged: Result<Registers, (String, Registers)>,
    nemesis: NemesisReport,
    config: &ChaosConfig,
    started: Instant,
) -> ChaosReport {
    let (converged, replicas) = match converged {
        Ok(registers) => (Ok(()), registers),
        Err((diff, last)) => (Err(diff), last),
    };
    // Final values as the first peer has them (all are equal when the replicas converged).
    let keys: BTreeSet<&String> = ops.iter().map(|op| &op.key).collect();
    let finals: BTreeMap<String, Option<u64>> = keys
        .into_iter()
        .map(|key| {
            let value = replicas.first().and_then(|r| r.get(key)).and_then(register_value);
            (key.clone(), value)
        })
        .collect();
    let written: BTreeSet<&String> =
        ops.iter().filter(|op| op.outcome == Outcome::Written).map(|op| &op.key).collect();
    let missing = replicas
        .iter()
        .enumerate()
        .flat_map(|(peer, registers)| {
            written
                .iter()
                .filter(|key| !registers.contains_key(**key))
                .map(move |key| format!("{key} on peer {}", peer + 1))
        })
        .collect();
    let lost_writes = checker::lost_writes(&ops, &finals);
    let probes = &nemesis.minority_probes;
    let sent_to_minority = checker::sent_to_minority(ops.iter().chain(probes), &nemesis.partitions);
    let minority_writes = sent_to_minority.len();
    let minority_acks =
        sent_to_minority.into_iter().filter(|op| op.outcome == Outcome::Written).cloned().collect();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let linearizability = checker::check_linearizability(&ops, config.check_budget, workers);
    ChaosReport {
        seed: config.seed,
        took: started.elapsed(),
        history: ops,
        linearizability,
        lost_writes,
        missing,
        converged,
        minority_acks,
        minority_writes,
        nemesis,
    }
}

fn write_history<'a>(
    path: &std::path::Path,
    ops: impl Iterator<Item = &'a Operation>,
) -> Result<(), ChaosError> {
    let mut text = String::new();
    for op in ops {
        text.push_str(&op.to_json().to_string());
        text.push('\n');
    }
    std::fs::write(path, text).map_err(|source| ChaosError::Io {
        what: format!("write the history to {}", path.display()),
        source,
    })
}

/// Heals and restarts whatever the nemesis left broken, waits for the cluster to recover and
/// for writes in flight to settle, then reads every key once more (appended to `ops`).
async fn final_reads(
    mut ops: Vec<Operation>,
    cluster: &mut ChaosCluster,
    config: &ChaosConfig,
    epoch: Instant,
) -> Result<Vec<Operation>, ChaosError> {
    cluster.restore().await?;
    cluster.wait_healthy(config.nemesis.recover_within, "the end of the run").await?;
    tokio::time::sleep(config.quiesce).await;
    let api = ApiClient::new();
    let ports = cluster.api_ports();
    let mut process = ops.iter().map(|op| op.process).max().map_or(0, |p| p + 1);
    let keys: BTreeSet<String> = ops.iter().map(|op| op.key.clone()).collect();
    for (n, key) in keys.into_iter().enumerate() {
        // One attempt per peer at most; a read that fails has no effect on the register.
        for attempt in 0..ports.len() {
            let peer = (n + attempt) % ports.len();
            let invoked = epoch.elapsed();
            let outcome = api.read(ports[peer], &key, FINAL_READ_TIMEOUT).await;
            let completed = epoch.elapsed();
            let ok = outcome.is_ok();
            let unknown = matches!(outcome, Outcome::Unknown(_));
            ops.push(Operation {
                process,
                key: key.clone(),
                peer,
                action: Action::Read,
                invoked,
                completed,
                outcome,
            });
            if unknown {
                process += 1;
            }
            if ok {
                break;
            }
        }
    }
    Ok(ops)
}

/// Polls every peer's registers (stale reads) until they are identical and every peer has
/// applied the same index before and after reading them. `Err` has the differences last seen.
async fn converge(
    cluster: &mut ChaosCluster,
    api: &ApiClient,
) -> Result<Registers, (String, Registers)> {
    let deadline = Instant::now() + CONVERGE_WITHIN;
    let ports = cluster.api_ports();
    let all: Vec<usize> = (0..ports.len()).collect();
    let mut last = Vec::new();
    loop {
        let applied = |statuses: Vec<(usize, Result<crate::chaos::api::RaftStatus, String>)>| {
            statuses
                .into_iter()
                .map(|(i, s)| s.ok().and_then(|s| s.member(i as u64 + 1).and_then(|m| m.applied)))
                .collect::<Vec<_>>()
        };
        let before = applied(cluster.statuses(&all).await);
        let mut registers = Vec::new();
        let mut problem = None;
        for port in &ports {
            match api.registers(*port, Duration::from_secs(5)).await {
                Ok(r) => registers.push(r),
                Err(e) => problem = Some(e),
            }
        }
        let after = applied(cluster.statuses(&all).await);
        if problem.is_none() {
            let same_state = registers.windows(2).all(|w| w[0] == w[1]);
            let same_index =
                before.iter().all(|a| a.is_some() && *a == before[0]) && before == after;
            if same_state && same_index {
                return Ok(registers);
            }
            last = registers;
        }
        if Instant::now() >= deadline {
            let diff = match problem {
                Some(problem) => problem,
                None => describe_differences(&last, &before),
            };
            return Err((diff, last));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn describe_differences(
    registers: &[BTreeMap<String, serde_json::Value>],
    applied: &[Option<u64>],
) -> String {
    let keys: BTreeSet<&String> = registers.iter().flat_map(|r| r.keys()).collect();
    let mut lines = vec![format!("applied indexes by peer: {applied:?}")];
    for key in keys {
        let values: Vec<Option<&serde_json::Value>> =
            registers.iter().map(|r| r.get(key)).collect();
        if values.windows(2).any(|w| w[0] != w[1]) {
            let shown: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    format!("peer {}: {}", i + 1, v.map_or("absent".into(), |v| v.to_string()))
                })
                .collect();
            lines.push(format!("{key}: {}", shown.join("; ")));
            if lines.len() > 10 {
                lines.push("...".into());
                break;
            }
        }
    }
    lines.join("\n")
}
