//! The xDS load run: a real kuma-cp, N registered dataplanes, N simulated Envoys on their own
//! connections, then rounds of one API change each, timing how long every stream takes to
//! receive and ACK the new endpoints, and kuma-cp's resident memory per dataplane.

use std::time::Duration;

use futures::StreamExt;
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use crate::{
    KumaCpProcess, KumaCpProcessConfig, LoadError, Percentiles, SimulatedEnvoy, StreamEvent,
    StreamEventKind,
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
/// Concurrent API requests while registering, and concurrent connection attempts.
const API_CONCURRENCY: usize = 32;
const CONNECT_CONCURRENCY: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for every stream to get its first CDS, EDS and LDS ACKed.
const SETUP_DEADLINE: Duration = Duration::from_secs(120);
/// Pause before a memory reading (lets the status flusher write the DataplaneInsights) and
/// between rounds, so each change meets a control plane at rest.
const SETTLE: Duration = Duration::from_millis(1500);
const BETWEEN_ROUNDS: Duration = Duration::from_millis(300);
/// How often (every 50 ms) kuma-cp is checked for an exit after a failure.
const EXIT_CHECKS: usize = 20;
/// File descriptors each process needs besides one socket per stream.
const SPARE_FDS: u64 = 256;

/// What to run and what to hold it to.
#[derive(Debug, Clone)]
pub struct XdsLoadConfig {
    /// The kuma-cp to start.
    pub kuma_cp: KumaCpProcessConfig,
    /// Dataplanes, each with one ADS stream.
    pub dataplanes: usize,
    /// Changes made through the API, one after another.
    pub rounds: usize,
    /// How long one round may take before the run fails.
    pub round_deadline: Duration,
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
        if self.round_deadline.is_zero() {
            return Err(LoadError::Invalid("the round deadline must be above 0".to_string()));
        }
        Ok(())
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct XdsLoadReport {
    pub dataplanes: usize,
    pub rounds: usize,
    pub kuma_cp_pid: u32,
    /// From starting kuma-cp until every stream had its initial config ACKed.
    pub setup_time: Duration,
    pub register_time: Duration,
    pub connect_time: Duration,
    /// kuma-cp's RSS: started, with every Dataplane registered, with every stream connected
    /// (initial config ACKed), and after the last round.
    pub rss_idle: u64,
    pub rss_registered: u64,
    pub rss_connected: u64,
    pub rss_end: u64,
    /// One sample per stream per round: from just before the API change until the stream had
    /// sent the ACK of the EDS response with the new endpoint.
    pub convergence: Percentiles,
    pub round_p99: Vec<Duration>,
    pub targets: Targets,
}

impl XdsLoadReport {
    /// kuma-cp memory per connected dataplane: (RSS connected - RSS registered) / N.
    pub fn bytes_per_dataplane(&self) -> u64 {
        self.rss_connected.saturating_sub(self.rss_registered) / self.dataplanes as u64
    }

    /// Including the Dataplane resource itself: (RSS connected - RSS idle) / N.
    pub fn bytes_per_dataplane_with_registration(&self) -> u64 {
        self.rss_connected.saturating_sub(self.rss_idle) / self.dataplanes as u64
    }

    pub fn rss_per_dataplane(&self) -> u64 {
        self.rss_connected / self.dataplanes as u64
    }

    pub fn passed(&self) -> bool {
        self.convergence.at(99.0) < self.targets.p99_convergence
            && self.bytes_per_dataplane() < self.targets.bytes_per_dataplane
    }

    /// What a person reads.
    pub fn human_lines(&self) -> Vec<String> {
        let n = self.dataplanes;
        let c = &self.convergence;
        let rounds: Vec<String> = self.round_p99.iter().map(|d| ms(*d).to_string()).collect();
        vec![
            format!(
                "setup: {n} dataplanes registered in {} ms, {n} ADS streams (one connection \
                 each) with CDS/EDS/LDS ACKed in {} ms; {} ms in all",
                ms(self.register_time),
                ms(self.connect_time),
                ms(self.setup_time)
            ),
            format!(
                "memory: kuma-cp (pid {}) RSS {} MiB started, {} MiB with {n} Dataplanes, {} MiB \
                 with {n} streams, {} MiB after the rounds",
                self.kuma_cp_pid,
                mib(self.rss_idle),
                mib(self.rss_registered),
                mib(self.rss_connected),
                mib(self.rss_end)
            ),
            format!(
                "memory per dataplane: {} bytes per connected stream ({:.1} KiB), {} bytes with \
                 its registration, {} bytes of total RSS / N",
                self.bytes_per_dataplane(),
                self.bytes_per_dataplane() as f64 / 1024.0,
                self.bytes_per_dataplane_with_registration(),
                self.rss_per_dataplane()
            ),
            format!(
                "convergence ({} samples = {n} streams x {} rounds): min {} ms, p50 {} ms, p99 {} \
                 ms, max {} ms; p99 per round: {} ms",
                c.len(),
                self.rounds,
                ms(c.min()),
                ms(c.at(50.0)),
                ms(c.at(99.0)),
                ms(c.max()),
                rounds.join(", ")
            ),
        ]
    }

    /// One line for scripts.
    pub fn machine_line(&self) -> String {
        let c = &self.convergence;
        format!(
            "xds-load n={} rounds={} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} bytes_per_dp={} \
             bytes_per_dp_with_registration={} rss_total_mib={} rss_per_dp={} setup_ms={} \
             target_p99_ms={} target_bytes_per_dp={} {}",
            self.dataplanes,
            self.rounds,
            ms_f(c.at(50.0)),
            ms_f(c.at(99.0)),
            ms_f(c.max()),
            self.bytes_per_dataplane(),
            self.bytes_per_dataplane_with_registration(),
            mib(self.rss_connected),
            self.rss_per_dataplane(),
            ms(self.setup_time),
            ms(self.targets.p99_convergence),
            self.targets.bytes_per_dataplane,
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
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

/// Runs the whole measurement; kuma-cp and every stream are gone when it returns, on success
/// or error.
#[derive(Debug)]
pub struct XdsLoad {
    config: XdsLoadConfig,
}

/// What the run knows about each stream.
struct Streams {
    names: Vec<String>,
    ready: Vec<bool>,
    watched_endpoints: Vec<usize>,
}

impl XdsLoad {
    pub fn new(config: XdsLoadConfig) -> XdsLoad {
        XdsLoad { config }
    }

    pub async fn run(&self) -> Result<XdsLoadReport, LoadError> {
        self.config.validate()?;
        ensure_file_limit(self.config.dataplanes)?;
        let started = Instant::now();
        let mut cp = KumaCpProcess::start(&self.config.kuma_cp).await?;
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
        cp: &mut KumaCpProcess,
        started: Instant,
    ) -> Result<XdsLoadReport, LoadError> {
        let config = &self.config;
        let n = config.dataplanes;
        let api = ApiClient::new(cp.ports.api)?;
        let rss_idle = cp.rss_bytes()?;

        let at = Instant::now();
        register_dataplanes(&api, n).await?;
        let register_time = at.elapsed();
        tokio::time::sleep(SETTLE).await;
        cp.check_running()?;
        let rss_registered = cp.rss_bytes()?;

        let (events_tx, mut events) = mpsc::unbounded_channel();
        // Dropped (every stream aborted) when this returns, before kuma-cp is stopped.
        let mut tasks = JoinSet::new();
        let mut streams = Streams {
            names: (0..n).map(dataplane_name).collect(),
            ready: vec![false; n],
            watched_endpoints: vec![0; n],
        };
        // As a real fleet connects: TLS verified against the control plane's CA, and a token (one
        // for the whole mesh, which every simulated dataplane may use).
        let identity = DataplaneIdentity {
            ca_pem: api.text("GET", "/control-plane/ca", None).await?,
            token: api.text("POST", "/tokens/dataplane", Some(&json!({"mesh": "default"}))).await?,
        };
        let at = Instant::now();
        open_streams(cp.ports.xds, &identity, &streams.names, &events_tx, &mut tasks).await?;
        streams.wait_ready(&mut events, at + SETUP_DEADLINE).await?;
        let connect_time = at.elapsed();
        let setup_time = started.elapsed();
        tokio::time::sleep(SETTLE).await;
        cp.check_running()?;
        let rss_connected = cp.rss_bytes()?;

        let mut samples = Vec::with_capacity(n * config.rounds);
        let mut round_p99 = Vec::with_capacity(config.rounds);
        for round in 1..=config.rounds {
            tokio::time::sleep(BETWEEN_ROUNDS).await;
            streams.drain(&mut events)?;
            let round_samples =
                streams.run_round(&api, &mut events, round, config.round_deadline).await?;
            round_p99.push(Percentiles::new(round_samples.clone()).at(99.0));
            samples.extend(round_samples);
        }
        cp.check_running()?;
        let rss_end = cp.rss_bytes()?;
        let kuma_cp_pid = cp.pid();
        tasks.shutdown().await;
        Ok(XdsLoadReport {
            dataplanes: n,
            rounds: config.rounds,
            kuma_cp_pid,
            setup_time,
            register_time,
            connect_time,
            rss_idle,
            rss_registered,
            rss_connected,
            rss_end,
            convergence: Percentiles::new(samples),
            round_p99,
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
                        waited: SETUP_DEADLINE,
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

    /// Adds `target-<round>` and returns, per stream, the time until it ACKed the endpoints of
    /// `target` with the new one among them.
    async fn run_round(
        &mut self,
        api: &ApiClient,
        events: &mut mpsc::UnboundedReceiver<StreamEvent>,
        round: usize,
        deadline: Duration,
    ) -> Result<Vec<Duration>, LoadError> {
        let total = self.names.len();
        // Round k leaves k instances of `target`.
        let expected = round;
        let mut converged: Vec<Option<Duration>> = vec![None; total];
        let mut missing = total;
        let t0 = Instant::now();
        api.put_dataplane(&target_name(round), &target_dataplane(round)).await?;
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
        Ok(converged.into_iter().flatten().collect())
    }
}

/// Opens one connection and one ADS stream per dataplane; each stream runs as a task in `tasks`.
/// What every simulated dataplane connects with.
struct DataplaneIdentity {
    ca_pem: String,
    token: String,
}

async fn open_streams(
    xds_port: u16,
    identity: &DataplaneIdentity,
    names: &[String],
    events: &mpsc::UnboundedSender<StreamEvent>,
    tasks: &mut JoinSet<()>,
) -> Result<(), LoadError> {
    let url = format!("https://127.0.0.1:{xds_port}");
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(&identity.ca_pem))
        .domain_name("127.0.0.1");
    let endpoint = Endpoint::from_shared(url.clone())
        .map_err(|e| LoadError::Invalid(format!("xDS address {url}: {e}")))?
        .tls_config(tls)
        .map_err(|e| LoadError::Invalid(format!("TLS to {url}: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true);
    let mut connections = futures::stream::iter(0..names.len())
        .map(|i| {
            let endpoint = endpoint.clone();
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
        .with_token(identity.token.clone());
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

/// Raises the soft limit on open files to what `dataplanes` streams need (kuma-cp inherits it),
/// or says clearly that the hard limit is too low.
fn ensure_file_limit(dataplanes: usize) -> Result<(), LoadError> {
    let wanted = dataplanes as u64 + SPARE_FDS;
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    let (soft, hard) = (current.unwrap_or(u64::MAX), maximum.unwrap_or(u64::MAX));
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        return Err(LoadError::FileLimit { soft, hard, needed: dataplanes, wanted });
    }
    setrlimit(Resource::Nofile, Rlimit { current: Some(wanted), maximum })
        .map_err(|_| LoadError::FileLimit { soft, hard, needed: dataplanes, wanted })
}

fn dataplane_name(i: usize) -> String {
    format!("dp-{i}")
}

fn target_name(k: usize) -> String {
    format!("target-{k}")
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

async fn register_dataplanes(api: &ApiClient, n: usize) -> Result<(), LoadError> {
    let mut puts = futures::stream::iter(0..n)
        .map(|i| async move { api.put_dataplane(&dataplane_name(i), &dataplane(i)).await })
        .buffer_unordered(API_CONCURRENCY);
    while let Some(result) = puts.next().await {
        result?;
    }
    Ok(())
}

/// The few calls made to kuma-cp's HTTP API.
#[derive(Debug)]
struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    fn new(port: u16) -> Result<ApiClient, LoadError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|source| LoadError::Http { request: "building the client".into(), source })?;
        Ok(ApiClient { base: format!("http://127.0.0.1:{port}"), http })
    }

    /// A request whose answer is text (the CA, a token); retried for a few seconds, since the
    /// leader makes both shortly after it starts.
    async fn text(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, LoadError> {
        let url = format!("{}{path}", self.base);
        let request = format!("{method} {url}");
        let mut attempts = 0;
        loop {
            let mut builder = match method {
                "POST" => self.http.post(&url),
                _ => self.http.get(&url),
            };
            if let Some(body) = body {
                builder = builder.json(body);
            }
            let response = builder
                .send()
                .await
                .map_err(|source| LoadError::Http { request: request.clone(), source })?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if status.is_success() {
                return Ok(text.trim().to_string());
            }
            attempts += 1;
            if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || attempts >= 50 {
                return Err(LoadError::Api { request, status: status.as_u16(), body: text });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn put_dataplane(&self, name: &str, body: &Value) -> Result<(), LoadError> {
        let url = format!("{}/meshes/default/dataplanes/{name}", self.base);
        let request = format!("PUT {url}");
        let response = self
            .http
            .put(&url)
            .json(body)
            .send()
            .await
            .map_err(|source| LoadError::Http { request: request.clone(), source })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        Err(LoadError::Api { request, status: status.as_u16(), body })
    }
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
