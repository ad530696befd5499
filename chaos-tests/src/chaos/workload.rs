//! The workload: a few client tasks, each writing unique values to and reading registers through
//! a random live peer, recording every operation. Keys come in generations: after a number of
//! operations the clients move on to fresh keys, which keeps each key's history small enough
//! for an exhaustive linearizability check.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::chaos::api::{ApiClient, REGISTER_PREFIX};
use crate::chaos::history::{Action, Operation, Outcome};

/// How the clients behave.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys in use at a time.
    pub keys: usize,
    /// Operations after which the clients move to fresh keys.
    pub ops_per_generation: u64,
    /// A client gives up on a request after this long (the outcome is then unknown).
    pub op_timeout: Duration,
    /// A client waits a random time up to this between operations.
    pub think_time: Duration,
    /// The share of writes among operations (the rest are reads).
    pub write_fraction: f64,
    /// Read with `?consistency=stale`: not linearizable, only to see the checks fail.
    pub stale_reads: bool,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            clients: 4,
            keys: 3,
            ops_per_generation: 300,
            op_timeout: Duration::from_secs(3),
            think_time: Duration::from_millis(20),
            write_fraction: 0.5,
            stale_reads: false,
        }
    }
}

/// What the clients share.
#[derive(Debug)]
struct Shared {
    api: ApiClient,
    ports: Vec<u16>,
    up: Arc<Vec<AtomicBool>>,
    epoch: Instant,
    config: WorkloadConfig,
    /// The next value to write; values are unique across the run.
    values: AtomicU64,
    /// The next process id.
    processes: AtomicU64,
    /// Operations started, which picks the key generation.
    started: AtomicU64,
}

impl Shared {
    fn next_process(&self) -> u64 {
        self.processes.fetch_add(1, Ordering::Relaxed)
    }
}

/// Running clients.
#[derive(Debug)]
pub struct Workload {
    stop: watch::Sender<bool>,
    clients: Vec<JoinHandle<Vec<Operation>>>,
}

impl Workload {
    /// Starts the clients against the peers whose API ports are `ports`; `up` says which run.
    /// Times in the history are measured from `epoch`.
    pub fn start(
        config: WorkloadConfig,
        api: ApiClient,
        ports: Vec<u16>,
        up: Arc<Vec<AtomicBool>>,
        epoch: Instant,
        seed: u64,
    ) -> Workload {
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            api,
            ports,
            up,
            epoch,
            config,
            values: AtomicU64::new(1),
            processes: AtomicU64::new(0),
            started: AtomicU64::new(0),
        });
        let clients = (0..shared.config.clients)
            .map(|client| {
                let rng = StdRng::seed_from_u64(seed.wrapping_add(client as u64 + 1));
                tokio::spawn(run_client(shared.clone(), rng, stopped.clone()))
            })
            .collect();
        Workload { stop, clients }
    }

    /// Stops the clients after their current operation and returns everything they did.
    pub async fn stop(self) -> Vec<Operation> {
        self.stop.send_replace(true);
        let mut ops = Vec::new();
        for client in self.clients {
            if let Ok(done) = client.await {
                ops.extend(done);
            }
        }
        ops.sort_by_key(|op| op.invoked);
        ops
    }
}

/// The name of register `index` of generation `generation`.
pub fn register_name(generation: u64, index: usize) -> String {
    format!("{REGISTER_PREFIX}g{generation}-k{index}")
}

async fn run_client(
    shared: Arc<Shared>,
    mut rng: StdRng,
    mut stopped: watch::Receiver<bool>,
) -> Vec<Operation> {
    let config = &shared.config;
    let mut ops = Vec::new();
    let mut process = shared.next_process();
    while !*stopped.borrow_and_update() {
        let live: Vec<usize> =
            (0..shared.ports.len()).filter(|i| shared.up[*i].load(Ordering::SeqCst)).collect();
        if live.is_empty() {
            pause(&mut stopped, Duration::from_millis(50)).await;
            continue;
        }
        let peer = live[rng.random_range(0..live.len())];
        let generation = shared.started.fetch_add(1, Ordering::Relaxed) / config.ops_per_generation;
        let key = register_name(generation, rng.random_range(0..config.keys));
        let action = if rng.random_bool(config.write_fraction) {
            Action::Write(shared.values.fetch_add(1, Ordering::Relaxed))
        } else {
            Action::Read
        };
        let port = shared.ports[peer];
        let invoked = shared.epoch.elapsed();
        let outcome = match action {
            Action::Write(value) => shared.api.write(port, &key, value, config.op_timeout).await,
            Action::Read => {
                shared.api.read_with(port, &key, config.op_timeout, config.stale_reads).await
            }
        };
        let completed = shared.epoch.elapsed();
        let ok = outcome.is_ok();
        let unknown = matches!(outcome, Outcome::Unknown(_));
        ops.push(Operation { process, key, peer, action, invoked, completed, outcome });
        if unknown {
            // The operation may still take effect later: this process never completes it.
            process = shared.next_process();
        }
        let think = if ok {
            config.think_time.mul_f64(rng.random::<f64>())
        } else {
            // Do not spin on a peer that refuses connections.
            Duration::from_millis(20)
        };
        pause(&mut stopped, think).await;
    }
    ops
}

/// Sleeps for `how_long`, or less when the workload stops meanwhile.
async fn pause(stopped: &mut watch::Receiver<bool>, how_long: Duration) {
    let _ = tokio::time::timeout(how_long, stopped.changed()).await;
}
