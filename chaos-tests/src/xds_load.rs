//! The xDS load run: real kuma-cp (one with the memory store, or a Raft cluster of several
//! peers), N registered dataplanes, N simulated Envoys on their own connections (spread round
//! robin over the peers), then rounds of one API change each (written through each peer in
//! turn), timing how long every stream takes to receive and ACK the new endpoints, each peer's
//! resident memory per connected dataplane, and the CPU time the control plane spent per change.

use std::time::Duration;

use futures::StreamExt;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::bench_api::BenchApi;
use crate::bench_cluster::{BenchCluster, BenchClusterConfig};
use crate::scrape::{self, Buckets};
use crate::{
    proc_stats, KumaCpProcess, KumaCpProcessConfig, LoadError, Percentiles, SimulatedEnvoy,
    StreamEvent, StreamEventKind,
};

/// The service every dataplane has an outbound to; each round adds one instance of it.
const TARGET_SERVICE: &str = "target";
/// Services the dataplanes are instances of (`svc-0` .. `svc-9`).
const SERVICES: usize = 10;
/// Dataplane `i` listens on `FIRST_INBOUND_PORT + 2i` and its workload on the next port; the
/// ports are only data (nothing listens on them), unique so that no endpoint is deduplicated.
const FIRST_INBOUND_PORT: usize = 10_000;
/// The inbound ports of the `target-<k>` dataplanes added by the rounds.
const FIRST_TARGET_PORT: usize = 60_000;
pub const MAX_DATAPLANES: usize = (FIRST_TARGET_PORT - FIRST_INBOUND_PORT) / 2 - 1;
pub const MAX_ROUNDS: usize = 1_000;
/// Raft peers a run may start (an odd number is what a cluster runs with; 1 is the memory store).
pub const MAX_PEERS: usize = 7;
/// Concurrent API requests while registering, and concurrent connection attempts.
const API_CONCURRENCY: usize = 32;
const CONNECT_CONCURRENCY: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const API_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before a memory reading (lets the status flusher write the DataplaneInsights) and
/// between rounds, so each change meets a control plane at rest.
const SETTLE: Duration = Duration::from_millis(1500);
const BETWEEN_ROUNDS: Duration = Duration::from_millis(300);
/// How often (every 50 ms) kuma-cp is checked for an exit after a failure.
const EXIT_CHECKS: usize = 20;
/// How long reading one peer's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the last round's ACKs may take to reach kuma-cp's histogram.
const SCRAPE_SETTLE: Duration = Duration::from_secs(10);
/// The label of kuma-cp's `xds_delivery` histogram for EDS, the type every round changes.
const EDS_TYPE_LABEL: &str =
    "type_url=\"type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\"";
/// File descriptors each process needs besides one socket per stream.
const SPARE_FDS: u64 = 256;

/// What to run and what to hold it to.
#[derive(Debug, Clone)]
pub struct XdsLoadConfig {
    /// The kuma-cp to start (its binary, log level, log file and extra variables serve every
    /// peer of a cluster too).
    pub kuma_cp: KumaCpProcessConfig,
    /// 1: one kuma-cp with its default (memory) store; more: a Raft cluster of that many peers.
    pub peers: usize,
    /// Dataplanes, each with one ADS stream.
    pub dataplanes: usize,
    /// Changes made through the API, one after another.
    pub rounds: usize,
    /// How long one round may take before the run fails.
    pub round_deadline: Duration,
    /// Time for every stream to get its first CDS, EDS and LDS ACKed.
    pub setup_deadline: Duration,
    /// Where a cluster keeps its certificates, data and peer logs; `None`: a temporary
    /// directory, removed at the end.
    pub cluster_dir: Option<std::path::PathBuf>,
    pub targets: Targets,
}

/// What a run must achieve to pass.
#[derive(Debug, Clone, Copy)]
pub struct Targets {
    pub p99_convergence: Duration,
    pub bytes_per_dataplane: u64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets { p99_convergence: Duration::from_secs(1), bytes_per_dataplane: 100 * 1024 }
    }
}

impl Targets {
    /// Issue 16's targets for a fleet spread over several peers: p99 within 1 s, at most 64 KiB
    /// of a peer's memory per connected dataplane.
    pub fn across_peers() -> Targets {
        Targets { p99_convergence: Duration::from_secs(1), bytes_per_dataplane: 64 * 1024 }
    }
}

impl XdsLoadConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.dataplanes == 0 || self.dataplanes > MAX_DATAPLANES {
            return Err(LoadError::Invalid(format!(
                "--n {} is out of range: use 1 to {MAX_DATAPLANES}",
                self.dataplanes
            )));
        }
        if self.rounds == 0 || self.rounds > MAX_ROUNDS {
            return Err(LoadError::Invalid(format!(
                "--rounds {} is out of range: use 1 to {MAX_ROUNDS}",
                self.rounds
            )));
        }
        if self.peers == 0 || self.peers > MAX_PEERS {
            return Err(LoadError::Invalid(format!(
                "--peers {} is out of range: use 1 (one kuma-cp) to {MAX_PEERS} (a Raft cluster)",
                self.peers
            )));
        }
        if self.peers > self.dataplanes {
            return Err(LoadError::Invalid(format!(
                "--n {} is below --peers {}: every peer needs a stream",
                self.dataplanes, self.peers
            )));
        }
        if self.round_deadline.is_zero() || self.setup_deadline.is_zero() {
            return Err(LoadError::Invalid("the round and setup deadlines must be above 0".into()));
        }
        Ok(())
    }
}

/// What one peer (or the one kuma-cp) measured.
#[derive(Debug, Clone)]
pub struct PeerFigures {
    /// 1-based, as the Raft id.
    pub peer: usize,
    pub pid: u32,
    /// The streams connected to it.
    pub streams: usize,
    /// RSS: started, with every Dataplane registered, with every stream connected (initial
    /// config ACKed), and after the last round.
    pub rss_idle: u64,
    pub rss_registered: u64,
    pub rss_connected: u64,
    pub rss_end: u64,
    /// The samples of its streams.
    pub convergence: Percentiles,
}

impl PeerFigures {
    /// Its memory per connected dataplane: (RSS connected - RSS registered) / its streams.
    pub fn bytes_per_dataplane(&self) -> u64 {
        self.rss_connected.saturating_sub(self.rss_registered) / self.streams.max(1) as u64
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct XdsLoadReport {
    pub dataplanes: usize,
    pub rounds: usize,
    /// One per peer (one for a single kuma-cp).
    pub peers: Vec<PeerFigures>,
    /// From starting kuma-cp until every stream had its initial config ACKed.
    pub setup_time: Duration,
    pub register_time: Duration,
    pub connect_time: Duration,
    /// One sample per stream per round: from just before the API change until the stream had
    /// sent the ACK of the EDS response with the new endpoint.
    pub convergence: Percentiles,
    pub round_p99: Vec<Duration>,
    /// CPU time (user + system) of every kuma-cp process from the first round's write to the
    /// last round's last ACK (pauses between rounds included), divided by the rounds.
    pub cpu_per_change: Duration,
    /// The same for this load process (the simulated Envoys), to tell when it is the bottleneck.
    pub client_cpu_per_change: Duration,
    /// This load process' RSS with every stream connected.
    pub client_rss_connected: u64,
    /// kuma-cp's own `xds_delivery` histogram for EDS over the rounds (all peers; from its
    /// `/metrics`, in milliseconds), or why it could not be read.
    pub reported_delivery: Result<Buckets, String>,
    pub targets: Targets,
}

impl XdsLoadReport {
    /// Control-plane memory per connected dataplane, over every peer: the sum of (RSS connected -
    /// RSS registered) / N.
    pub fn bytes_per_dataplane(&self) -> u64 {
        let grown: u64 =
            self.peers.iter().map(|p| p.rss_connected.saturating_sub(p.rss_registered)).sum();
        grown / self.dataplanes as u64
    }

    /// Including the Dataplane resources (held by every peer): the sum of (RSS connected - RSS
    /// idle) / N.
    pub fn bytes_per_dataplane_with_registration(&self) -> u64 {
        let grown: u64 =
            self.peers.iter().map(|p| p.rss_connected.saturating_sub(p.rss_idle)).sum();
        grown / self.dataplanes as u64
    }

    pub fn rss_connected(&self) -> u64 {
        self.peers.iter().map(|p| p.rss_connected).sum()
    }

    pub fn rss_per_dataplane(&self) -> u64 {
        self.rss_connected() / self.dataplanes as u64
    }

    /// The highest memory per connected dataplane of any peer.
    pub fn worst_peer_bytes_per_dataplane(&self) -> u64 {
        self.peers.iter().map(PeerFigures::bytes_per_dataplane).max().unwrap_or_default()
    }

    pub fn passed(&self) -> bool {
        self.convergence.at(99.0) < self.targets.p99_convergence
            && self.worst_peer_bytes_per_dataplane() < self.targets.bytes_per_dataplane
    }

    /// What a person reads.
    pub fn human_lines(&self) -> Vec<String> {
        let n = self.dataplanes;
        let c = &self.convergence;
        let rounds: Vec<String> = self.round_p99.iter().map(|d| ms(*d).to_string()).collect();
        let mut lines = vec![format!(
            "setup: {n} dataplanes registered in {} ms, {n} ADS streams (one connection each) \
             with CDS/EDS/LDS ACKed in {} ms; {} ms in all",
            ms(self.register_time),
            ms(self.connect_time),
            ms(self.setup_time)
        )];
        if let [only] = self.peers.as_slice() {
            lines.push(format!(
                "memory: kuma-cp (pid {}) RSS {} MiB started, {} MiB with {n} Dataplanes, {} MiB \
                 with {n} streams, {} MiB after the rounds",
                only.pid,
                mib(only.rss_idle),
                mib(only.rss_registered),
                mib(only.rss_connected),
                mib(only.rss_end)
            ));
        } else {
            for p in &self.peers {
                lines.push(format!(
                    "peer {} (pid {}, {} streams): RSS {} MiB started, {} MiB with {n} \
                     Dataplanes, {} MiB with its streams, {} MiB after the rounds; {} bytes per \
                     connected stream ({:.1} KiB); convergence p50 {} ms, p99 {} ms, max {} ms",
                    p.peer,
                    p.pid,
                    p.streams,
                    mib(p.rss_idle),
                    mib(p.rss_registered),
                    mib(p.rss_connected),
                    mib(p.rss_end),
                    p.bytes_per_dataplane(),
                    p.bytes_per_dataplane() as f64 / 1024.0,
                    ms(p.convergence.at(50.0)),
                    ms(p.convergence.at(99.0)),
                    ms(p.convergence.max()),
                ));
            }
        }
        lines.push(format!(
            "memory per dataplane: {} bytes per connected stream ({:.1} KiB), {} bytes with \
             its registration, {} bytes of total RSS / N",
            self.bytes_per_dataplane(),
            self.bytes_per_dataplane() as f64 / 1024.0,
            self.bytes_per_dataplane_with_registration(),
            self.rss_per_dataplane()
        ));
        lines.push(format!(
            "convergence ({} samples = {n} streams x {} rounds): min {} ms, p50 {} ms, p99 {} \
             ms, max {} ms; p99 per round: {} ms",
            c.len(),
            self.rounds,
            ms(c.min()),
            ms(c.at(50.0)),
            ms(c.at(99.0)),
            ms(c.max()),
            rounds.join(", ")
        ));
        lines.push(match &self.reported_delivery {
            Ok(reported) => format!(
                "kuma-cp's own xds_delivery for EDS over the rounds (GET /metrics on every peer, \
                 change seen -> ACK, read off its buckets): {} samples, p50 {} ms, p99 {} ms",
                reported.count(),
                quantile_ms(reported, 0.5),
                quantile_ms(reported, 0.99),
            ),
            Err(why) => format!("kuma-cp's own xds_delivery: not read ({why})"),
        });
        lines.push(format!(
            "CPU per change: {} ms of kuma-cp (all peers, user + system), {} ms of this load \
             process (the simulated Envoys; its RSS {} MiB with every stream)",
            ms(self.cpu_per_change),
            ms(self.client_cpu_per_change),
            mib(self.client_rss_connected)
        ));
        lines
    }

    /// One line for scripts (for one kuma-cp, the fields it always had, then the CPU ones).
    pub fn machine_line(&self) -> String {
        let c = &self.convergence;
        let mut line = String::from("xds-load");
        if self.peers.len() > 1 {
            line.push_str(&format!(" peers={}", self.peers.len()));
        }
        line.push_str(&format!(
            " n={} rounds={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} bytes_per_dp={} \
             bytes_per_dp_with_registration={} rss_total_mib={} rss_per_dp={} setup_ms={}",
            self.dataplanes,
            self.rounds,
            ms_f(c.at(50.0)),
            ms_f(c.at(99.0)),
            ms_f(c.max()),
            self.bytes_per_dataplane(),
            self.bytes_per_dataplane_with_registration(),
            mib(self.rss_connected()),
            self.rss_per_dataplane(),
            ms(self.setup_time),
        ));
        if self.peers.len() > 1 {
            for p in &self.peers {
                let k = p.peer;
                line.push_str(&format!(
                    " peer{k}_streams={} peer{k}_p50_ms={:.1} peer{k}_p99_ms={:.1} \
                     peer{k}_max_ms={:.1} peer{k}_bytes_per_dp={} peer{k}_rss_mib={}",
                    p.streams,
                    ms_f(p.convergence.at(50.0)),
                    ms_f(p.convergence.at(99.0)),
                    ms_f(p.convergence.max()),
                    p.bytes_per_dataplane(),
                    mib(p.rss_connected),
                ));
            }
        }
        line.push_str(&format!(
            " cpu_ms_per_change={:.1} client_cpu_ms_per_change={:.1} client_rss_mib={} \
             target_p99_ms={} target_bytes_per_dp={} {}",
            ms_f(self.cpu_per_change),
            ms_f(self.client_cpu_per_change),
            mib(self.client_rss_connected),
            ms(self.targets.p99_convergence),
            self.targets.bytes_per_dataplane,
            if self.passed() { "PASS" } else { "FAIL" }
        ));
        line
    }
}

/// A quantile of a histogram in milliseconds, rounded, or `-` without samples.
fn quantile_ms(buckets: &Buckets, q: f64) -> String {
    buckets.quantile(q).map_or_else(|| "-".to_string(), |v| format!("{v:.0}"))
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// The control plane under load: one kuma-cp, or the peers of a Raft cluster.
enum ControlPlane {
    Single(KumaCpProcess),
    Cluster(BenchCluster),
}

impl ControlPlane {
    async fn start(config: &XdsLoadConfig) -> Result<ControlPlane, LoadError> {
        if config.peers == 1 {
            return Ok(ControlPlane::Single(KumaCpProcess::start(&config.kuma_cp).await?));
        }
        let cp = &config.kuma_cp;
        let cluster = BenchCluster::start(&BenchClusterConfig {
            kuma_cp: cp.binary.clone(),
            peers: config.peers,
            log_level: cp.log_level.clone(),
            env: cp.env.clone(),
            dir: config.cluster_dir.clone(),
        })
        .await?;
        Ok(ControlPlane::Cluster(cluster))
    }

    fn len(&self) -> usize {
        match self {
            ControlPlane::Single(_) => 1,
            ControlPlane::Cluster(cluster) => cluster.len(),
        }
    }

    fn api_ports(&self) -> Vec<u16> {
        match self {
            ControlPlane::Single(cp) => vec![cp.ports.api],
            ControlPlane::Cluster(cluster) => {
                (0..cluster.len()).map(|i| cluster.api_port(i)).collect()
            }
        }
    }

    fn xds_port(&self, peer: usize) -> u16 {
        match self {
            ControlPlane::Single(cp) => cp.ports.xds,
            ControlPlane::Cluster(cluster) => cluster.xds_port(peer),
        }
    }

    fn diagnostics_port(&self, peer: usize) -> u16 {
        match self {
            ControlPlane::Single(cp) => cp.ports.diagnostics,
            ControlPlane::Cluster(cluster) => cluster.diagnostics_port(peer),
        }
    }

    /// Every peer's `xds_delivery` buckets for EDS from its `/metrics`; `Err` says why they
    /// could not be read (a kuma-cp built before it had `/metrics`, for one).
    async fn delivery(&self) -> Result<Vec<Buckets>, String> {
        let mut all = Vec::with_capacity(self.len());
        for peer in 0..self.len() {
            let text = scrape::metrics_text(self.diagnostics_port(peer), SCRAPE_TIMEOUT)
                .await
                .map_err(|e| e.to_string())?;
            all.push(Buckets::parse(&text, "xds_delivery", EDS_TYPE_LABEL));
        }
        Ok(all)
    }

    /// The delivery buckets added since `before`, summed over the peers, once they hold
    /// `expected` samples or after [`SCRAPE_SETTLE`] with what they hold then.
    async fn delivery_since(&self, before: &[Buckets], expected: u64) -> Result<Buckets, String> {
        let deadline = Instant::now() + SCRAPE_SETTLE;
        loop {
            let after = self.delivery().await?;
            let added: Vec<Buckets> = after.iter().zip(before).map(|(a, b)| a.since(b)).collect();
            let total = Buckets::sum(&added);
            if total.count() >= expected || Instant::now() >= deadline {
                return Ok(total);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self, peer: usize) -> u32 {
        match self {
            ControlPlane::Single(cp) => cp.pid(),
            ControlPlane::Cluster(cluster) => cluster.pid(peer).unwrap_or_default(),
        }
    }

    /// Every peer's RSS, by index.
    fn rss(&self) -> Result<Vec<u64>, LoadError> {
        match self {
            ControlPlane::Single(cp) => Ok(vec![cp.rss_bytes()?]),
            ControlPlane::Cluster(cluster) => {
                (0..cluster.len()).map(|i| cluster.rss(i).map_err(LoadError::from)).collect()
            }
        }
    }

    /// CPU time of every kuma-cp process so far.
    fn cpu_time(&self) -> Duration {
        (0..self.len()).filter_map(|i| proc_stats::cpu_time(self.pid(i)).ok()).sum()
    }

    fn check_running(&mut self) -> Result<(), LoadError> {
        match self {
            ControlPlane::Single(cp) => cp.check_running(),
            ControlPlane::Cluster(cluster) => Ok(cluster.check_running()?),
        }
    }
}

/// Runs the whole measurement; kuma-cp and every stream are gone when it returns, on success
/// or error.
#[derive(Debug)]
pub struct XdsLoad {
    config: XdsLoadConfig,
}

/// What the run knows about each stream.
struct Streams {
    names: Vec<String>,
    /// The peer (index) each stream is connected to.
    peer_of: Vec<usize>,
    ready: Vec<bool>,
    watched_endpoints: Vec<usize>,
    setup_deadline: Duration,
}

impl XdsLoad {
    pub fn new(config: XdsLoadConfig) -> XdsLoad {
        XdsLoad { config }
    }

    pub async fn run(&self) -> Result<XdsLoadReport, LoadError> {
        self.config.validate()?;
        ensure_file_limit(self.config.dataplanes)?;
        let started = Instant::now();
        let mut cp = ControlPlane::start(&self.config).await?;
        let result = self.measure(&mut cp, started).await;
        // A stream or request that failed because kuma-cp died is reported as kuma-cp's exit;
        // the exit may be seen a moment after the broken connections.
        if result.is_err() {
            for _ in 0..EXIT_CHECKS {
                cp.check_running()?;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        result
    }

    /// Everything after kuma-cp is up; every stream is closed when it returns.
    async fn measure(
        &self,
        cp: &mut ControlPlane,
        started: Instant,
    ) -> Result<XdsLoadReport, LoadError> {
        let config = &self.config;
        let n = config.dataplanes;
        let peers = cp.len();
        let api = BenchApi::new(&cp.api_ports(), API_TIMEOUT)?;
        let rss_idle = cp.rss()?;

        let at = Instant::now();
        register_dataplanes(&api, n).await?;
        let register_time = at.elapsed();
        tokio::time::sleep(SETTLE).await;
        cp.check_running()?;
        let rss_registered = cp.rss()?;

        let (events_tx, mut events) = mpsc::unbounded_channel();
        // Dropped (every stream aborted) when this returns, before kuma-cp is stopped.
        let mut tasks = JoinSet::new();
        let mut streams = Streams {
            names: (0..n).map(dataplane_name).collect(),
            peer_of: (0..n).map(|i| i % peers).collect(),
            ready: vec![false; n],
            watched_endpoints: vec![0; n],
            setup_deadline: config.setup_deadline,
        };
        // As a real fleet connects: TLS verified against the control plane's CA, and a token (one
        // for the whole mesh, which every simulated dataplane may use).
        let identity = DataplaneIdentity {
            ca_pem: api.text(0, "GET", "/control-plane/ca", None).await?,
            token: api
                .text(0, "POST", "/tokens/dataplane", Some(&json!({"mesh": "default"})))
                .await?,
        };
        let at = Instant::now();
        let xds_ports: Vec<u16> = (0..peers).map(|i| cp.xds_port(i)).collect();
        open_streams(&xds_ports, &identity, &streams, &events_tx, &mut tasks).await?;
        streams.wait_ready(&mut events, at + config.setup_deadline).await?;
        let connect_time = at.elapsed();
        let setup_time = started.elapsed();
        tokio::time::sleep(SETTLE).await;
        cp.check_running()?;
        let rss_connected = cp.rss()?;
        let client_rss_connected = proc_stats::own_rss_bytes().unwrap_or_default();

        let mut samples = Vec::with_capacity(n * config.rounds);
        let mut per_peer: Vec<Vec<Duration>> = vec![Vec::new(); peers];
        let mut round_p99 = Vec::with_capacity(config.rounds);
        let delivery_before = cp.delivery().await;
        let cpu_before = cp.cpu_time();
        let client_cpu_before = proc_stats::own_cpu_time().unwrap_or_default();
        for round in 1..=config.rounds {
            tokio::time::sleep(BETWEEN_ROUNDS).await;
            streams.drain(&mut events)?;
            // Each change goes through the next peer: a follower forwards it to the leader.
            let through = (round - 1) % peers;
            let round_samples =
                streams.run_round(&api, through, &mut events, round, config.round_deadline).await?;
            let durations: Vec<Duration> = round_samples.iter().map(|(_, d)| *d).collect();
            round_p99.push(Percentiles::new(durations.clone()).at(99.0));
            for (stream, d) in round_samples {
                per_peer[streams.peer_of[stream]].push(d);
            }
            samples.extend(durations);
        }
        let rounds = config.rounds as u32;
        let cpu_per_change = cp.cpu_time().saturating_sub(cpu_before) / rounds;
        let client_cpu_per_change =
            proc_stats::own_cpu_time().unwrap_or_default().saturating_sub(client_cpu_before)
                / rounds;
        // What kuma-cp itself measured for the same changes: one delivery per stream and round,
        // each counted when kuma-cp has handled the ACK, which may come a moment after this
        // program had the response.
        let reported_delivery = match delivery_before {
            Ok(before) => cp.delivery_since(&before, (n * config.rounds) as u64).await,
            Err(why) => Err(why),
        };
        cp.check_running()?;
        let rss_end = cp.rss()?;
        tasks.shutdown().await;
        let peers = per_peer
            .into_iter()
            .enumerate()
            .map(|(i, samples)| PeerFigures {
                peer: i + 1,
                pid: cp.pid(i),
                streams: streams.peer_of.iter().filter(|p| **p == i).count(),
                rss_idle: rss_idle[i],
                rss_registered: rss_registered[i],
                rss_connected: rss_connected[i],
                rss_end: rss_end[i],
                convergence: Percentiles::new(samples),
            })
            .collect();
        Ok(XdsLoadReport {
            dataplanes: n,
            rounds: config.rounds,
            peers,
            setup_time,
            register_time,
            connect_time,
            convergence: Percentiles::new(samples),
            round_p99,
            cpu_per_change,
            client_cpu_per_change,
            client_rss_connected,
            reported_delivery,
            targets: config.targets,
        })
    }
}

impl Streams {
    fn ended(&self, stream: usize, reason: String) -> LoadError {
        LoadError::StreamEnded { dataplane: self.names[stream].clone(), reason }
    }

    /// Names (and what they last ACKed) of a few streams matching `pending`.
    fn examples(&self, pending: impl Fn(usize) -> bool) -> String {
        let names: Vec<String> = (0..self.names.len())
            .filter(|i| pending(*i))
            .take(5)
            .map(|i| {
                format!("{} (ACKed {} target endpoints)", self.names[i], self.watched_endpoints[i])
            })
            .collect();
        names.join(", ")
    }

    /// Takes in the events that arrived while nothing was measured.
    fn drain(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<StreamEvent>,
    ) -> Result<(), LoadError> {
        while let Ok(event) = events.try_recv() {
            self.note(event)?;
        }
        Ok(())
    }

    fn note(&mut self, event: StreamEvent) -> Result<(), LoadError> {
        match event.kind {
            StreamEventKind::Ready => self.ready[event.stream] = true,
            StreamEventKind::EndpointsAcked { watched_endpoints } => {
                self.watched_endpoints[event.stream] = watched_endpoints;
            }
            StreamEventKind::Ended { reason } => return Err(self.ended(event.stream, reason)),
        }
        Ok(())
    }

    async fn wait_ready(
        &mut self,
        events: &mut mpsc::UnboundedReceiver<StreamEvent>,
        deadline: Instant,
    ) -> Result<(), LoadError> {
        let total = self.names.len();
        let mut missing = self.ready.iter().filter(|r| !**r).count();
        while missing > 0 {
            let event = match tokio::time::timeout_at(deadline, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => {
                    return Err(LoadError::SetupTimeout {
                        missing,
                        total,
                        waited: self.setup_deadline,
                        examples: self.examples(|i| !self.ready[i]),
                    })
                }
            };
            let was_ready = self.ready[event.stream];
            self.note(event.clone())?;
            if !was_ready && self.ready[event.stream] {
                missing -= 1;
            }
        }
        Ok(())
    }

    /// Adds `target-<round>` through peer `through` and returns, per stream (by index), the
    /// time until it ACKed the endpoints of `target` with the new one among them.
    async fn run_round(
        &mut self,
        api: &BenchApi,
        through: usize,
        events: &mut mpsc::UnboundedReceiver<StreamEvent>,
        round: usize,
        deadline: Duration,
    ) -> Result<Vec<(usize, Duration)>, LoadError> {
        let total = self.names.len();
        // Round k leaves k instances of `target`.
        let expected = round;
        let mut converged: Vec<Option<Duration>> = vec![None; total];
        let mut missing = total;
        let t0 = Instant::now();
        api.put(through, &dataplane_path(&target_name(round)), &target_dataplane(round)).await?;
        while missing > 0 {
            let event = match tokio::time::timeout_at(t0 + deadline, events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) | Err(_) => {
                    return Err(LoadError::NotConverged {
                        round,
                        missing,
                        total,
                        waited: deadline,
                        examples: self.examples(|i| converged[i].is_none()),
                    })
                }
            };
            let (stream, at) = (event.stream, event.at);
            self.note(event)?;
            if converged[stream].is_none() && self.watched_endpoints[stream] >= expected {
                converged[stream] = Some(at.saturating_duration_since(t0));
                missing -= 1;
            }
        }
        Ok(converged.into_iter().enumerate().filter_map(|(i, d)| Some((i, d?))).collect())
    }
}

/// What every simulated dataplane connects with.
struct DataplaneIdentity {
    ca_pem: String,
    token: String,
}

/// Opens one connection and one ADS stream per dataplane, to the xDS port of its peer; each
/// stream runs as a task in `tasks`. Every stream shares the peer's `Endpoint` (so one TLS client
/// configuration) and one parsed token.
async fn open_streams(
    xds_ports: &[u16],
    identity: &DataplaneIdentity,
    streams: &Streams,
    events: &mpsc::UnboundedSender<StreamEvent>,
    tasks: &mut JoinSet<()>,
) -> Result<(), LoadError> {
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&identity.ca_pem))
        .domain_name("127.0.0.1");
    let endpoints = xds_ports
        .iter()
        .map(|port| {
            let url = format!("https://127.0.0.1:{port}");
            Endpoint::from_shared(url.clone())
                .map_err(|e| LoadError::Invalid(format!("xDS address {url}: {e}")))?
                .tls_config(tls.clone())
                .map_err(|e| LoadError::Invalid(format!("TLS to {url}: {e}")))
                .map(|e| e.connect_timeout(CONNECT_TIMEOUT).tcp_nodelay(true))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let token = SimulatedEnvoy::token_value(&identity.token).map_err(LoadError::Invalid)?;
    let names = &streams.names;
    let mut connections = futures::stream::iter(0..names.len())
        .map(|i| {
            let endpoint = endpoints[streams.peer_of[i]].clone();
            async move { (i, endpoint.connect().await) }
        })
        .buffer_unordered(CONNECT_CONCURRENCY);
    while let Some((i, connected)) = connections.next().await {
        let channel = connected.map_err(|e| LoadError::Connect {
            dataplane: names[i].clone(),
            reason: error_chain(&e),
        })?;
        let envoy = SimulatedEnvoy::new(
            i,
            format!("default.{}", names[i]),
            TARGET_SERVICE.to_string(),
            events.clone(),
        )
        .with_token(token.clone());
        tasks.spawn(envoy.run(channel));
    }
    Ok(())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Raises the soft limit on open files to the hard limit (kuma-cp inherits it), or says clearly
/// that the hard limit is below what `dataplanes` streams need.
fn ensure_file_limit(dataplanes: usize) -> Result<(), LoadError> {
    let wanted = dataplanes as u64 + SPARE_FDS;
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (soft, hard) = (current.unwrap_or(u64::MAX), maximum.unwrap_or(u64::MAX));
    if hard < wanted {
        return Err(LoadError::FileLimit { soft, hard, needed: dataplanes, wanted });
    }
    if soft >= hard {
        return Ok(());
    }
    setrlimit(Resource::Nofile, Rlimit { current: maximum, maximum })
        .map_err(|_| LoadError::FileLimit { soft, hard, needed: dataplanes, wanted })
}

fn dataplane_name(i: usize) -> String {
    format!("dp-{i}")
}

fn target_name(k: usize) -> String {
    format!("target-{k}")
}

fn dataplane_path(name: &str) -> String {
    format!("/meshes/default/dataplanes/{name}")
}

/// Dataplane `i`: an instance of `svc-<i mod 10>` with outbounds to `target` and to the next two
/// services, so a change to `target` changes the config of every dataplane.
pub fn dataplane(i: usize) -> Value {
    let port = FIRST_INBOUND_PORT + 2 * i;
    json!({
        "type": "Dataplane",
        "mesh": "default",
        "name": dataplane_name(i),
        "networking": {
            "inbound": [{
                "interface": format!("127.0.0.1:{port}:{}", port + 1),
                "tags": {"service": format!("svc-{}", i % SERVICES)}
            }],
            "outbound": [
                {"interface": ":7001", "service": TARGET_SERVICE},
                {"interface": ":7002", "service": format!("svc-{}", (i + 1) % SERVICES)},
                {"interface": ":7003", "service": format!("svc-{}", (i + 2) % SERVICES)}
            ]
        }
    })
}

/// Dataplane `target-<k>`: one more instance of `target`.
pub fn target_dataplane(k: usize) -> Value {
    let port = FIRST_TARGET_PORT + 2 * k;
    json!({
        "type": "Dataplane",
        "mesh": "default",
        "name": target_name(k),
        "networking": {
            "inbound": [{
                "interface": format!("127.0.0.1:{port}:{}", port + 1),
                "tags": {"service": TARGET_SERVICE}
            }]
        }
    })
}

/// Registers every dataplane, each through the next peer (a follower forwards the write).
async fn register_dataplanes(api: &BenchApi, n: usize) -> Result<(), LoadError> {
    let peers = api.peers();
    let mut puts = futures::stream::iter(0..n)
        .map(|i| async move {
            api.put(i % peers, &dataplane_path(&dataplane_name(i)), &dataplane(i)).await
        })
        .buffer_unordered(API_CONCURRENCY);
    while let Some(result) = puts.next().await {
        result?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dataplane_and_target_has_its_own_inbound_address() {
        let mut seen = std::collections::BTreeSet::new();
        let interfaces = (0..MAX_DATAPLANES)
            .map(dataplane)
            .chain((1..=MAX_ROUNDS).map(target_dataplane))
            .map(|dp| dp["networking"]["inbound"][0]["interface"].as_str().unwrap().to_string());
        for interface in interfaces {
            let port: u32 = interface.split(':').nth(2).unwrap().parse().unwrap();
            assert!(port <= u32::from(u16::MAX), "{interface} has no valid port");
            assert!(seen.insert(interface.clone()), "{interface} is used twice");
        }
    }
}
