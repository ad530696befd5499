//! The large-state run (issue 16, item 4): a 3-peer Raft cluster of real kuma-cp loaded with R
//! resources (Dataplanes and policies across 100 meshes, written by many concurrent writers
//! through every peer), then: each peer's memory per resource, list latency with paging (first
//! page, deepest page, every page), the time to build a snapshot (`GET /status/raft/snapshot`,
//! what `kumactl raft snapshot save` asks for), the restart of a killed follower until it is
//! caught up and serves consistent reads, and a new peer added with add-peer until it is a caught
//! up voter (it gets the leader's snapshot: the log before it is purged).

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::bench_api::BenchApi;
use crate::bench_cluster::{BenchCluster, BenchClusterConfig};
use crate::{LoadError, Percentiles};

/// Meshes the resources are spread over.
pub const MESHES: usize = 100;
pub const MAX_RESOURCES: usize = 1_000_000;
/// One resource in `POLICY_EVERY` is a policy (alternately a TrafficPermission and a
/// HealthCheck), the others are Dataplanes.
const POLICY_EVERY: usize = 5;
/// Services per mesh the Dataplanes are instances of.
const SERVICES: usize = 50;
/// The page size of the list measurements (the API's largest).
const PAGE_SIZE: usize = 1000;
/// Times each single-page request is repeated.
const PAGE_REPEATS: usize = 10;
/// Snapshot requests.
const SNAPSHOTS: usize = 3;
const API_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a restarted or added peer may take to catch up.
const CATCH_UP_WITHIN: Duration = Duration::from_secs(300);
/// Pause before a memory reading.
const SETTLE: Duration = Duration::from_secs(2);
/// Polls of a consistent read through a restarted peer (10 ms apart).
const READ_POLLS: usize = 30_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LargeStateConfig {
    pub kuma_cp: PathBuf,
    /// `kumactl`, to time `kumactl raft snapshot save` as a user runs it; `None`: not timed.
    pub kumactl: Option<PathBuf>,
    pub resources: usize,
    /// Concurrent writers while loading.
    pub writers: usize,
    pub log_level: String,
    pub env: Vec<(String, String)>,
    /// Where the cluster keeps its files; `None`: a temporary directory.
    pub dir: Option<PathBuf>,
}

impl LargeStateConfig {
    pub fn validate(&self) -> Result<(), LoadError> {
        if self.resources < MESHES * POLICY_EVERY || self.resources > MAX_RESOURCES {
            return Err(LoadError::Invalid(format!(
                "--resources {} is out of range: use {} to {MAX_RESOURCES}",
                self.resources,
                MESHES * POLICY_EVERY
            )));
        }
        if self.writers == 0 || self.writers > 1024 {
            return Err(LoadError::Invalid(format!(
                "--writers {} is out of range: use 1 to 1024",
                self.writers
            )));
        }
        Ok(())
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct LargeStateReport {
    pub resources: usize,
    pub writers: usize,
    pub load_time: Duration,
    /// Latency of each write of the load (retries included).
    pub writes: Percentiles,
    /// Writes sent again after a 503 (no leader in time) or a 409 (raced an earlier attempt).
    pub write_retries: usize,
    /// The Raft term before and after the load: elections during it.
    pub term_before: u64,
    pub term_after: u64,
    /// CPU time of the three peers per resource written.
    pub cpu_per_write: Duration,
    /// Per peer: RSS before the load and after it (every peer caught up).
    pub rss_idle: Vec<u64>,
    pub rss_loaded: Vec<u64>,
    /// Items of the list across meshes (`GET /dataplanes`) and its pages of `PAGE_SIZE`.
    pub list_items: usize,
    pub list_pages: usize,
    pub list_first_page: Percentiles,
    pub list_deepest_page: Percentiles,
    /// Every page, one after another, following `next`.
    pub list_all_pages: Duration,
    /// The first 10,000 items (10 pages), part of the walk above.
    pub list_first_10k: Option<Duration>,
    /// First page of one mesh's Dataplanes (a list of R x 0.8 / 100 items).
    pub mesh_list_first_page: Percentiles,
    pub snapshot_build: Percentiles,
    pub snapshot_bytes: usize,
    pub kumactl_save: Option<Duration>,
    /// A killed follower started again: until `/ready`, until it applied what the leader had,
    /// until a consistent read of the last resource written answers through it.
    pub restart_ready: Duration,
    pub restart_caught_up: Duration,
    pub restart_read: Duration,
    /// A new peer (JOIN): until `/ready`; the add-peer call (answers once it caught up as a
    /// learner and became a voter); until a consistent read answers through it.
    pub join_ready: Duration,
    pub add_peer: Duration,
    pub join_read: Duration,
    /// The new peer's own snapshot index right after it was added (Some: it installed one), and
    /// the leader's purged log index (the new peer could not have been sent the log from 1).
    pub join_snapshot_index: Option<u64>,
    pub leader_purged_index: Option<u64>,
    /// Raft snapshots the peers built during the run (their `built a Raft snapshot` lines).
    pub snapshots_built: usize,
    /// The longest any build held the replica's lock (applies and reads wait meanwhile): its view
    /// (`view_us`), or, from a kuma-cp that logs no view, its whole encoding (`encode_ms`: the
    /// image was encoded under the lock).
    pub snapshot_lock_max: Option<Duration>,
    /// The longest encoding of an image (`encode_ms`).
    pub snapshot_encode_max: Option<Duration>,
    /// Snapshots installed (`installed a Raft snapshot`) and the longest decoding among them.
    pub snapshots_installed: usize,
    pub snapshot_decode_max: Option<Duration>,
}

impl LargeStateReport {
    /// Memory per resource of every peer: (RSS loaded - RSS idle) / R.
    pub fn bytes_per_resource(&self) -> Vec<u64> {
        self.rss_idle
            .iter()
            .zip(&self.rss_loaded)
            .map(|(idle, loaded)| loaded.saturating_sub(*idle) / self.resources as u64)
            .collect()
    }

    pub fn writes_per_second(&self) -> f64 {
        self.resources as f64 / self.load_time.as_secs_f64().max(1e-9)
    }

    /// The figures of the table, with how each should grow with R.
    pub fn figures(&self) -> Vec<Figure> {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let mut figures = vec![
            Figure::linear("load (all writes)", "ms", ms(self.load_time)),
            Figure::constant("CPU per write (3 peers)", "us", ms(self.cpu_per_write) * 1000.0),
            Figure::constant("write latency p99", "ms", ms(self.writes.at(99.0))),
            Figure::constant("write latency max", "ms", ms(self.writes.max())),
        ];
        for (i, bytes) in self.bytes_per_resource().into_iter().enumerate() {
            figures.push(Figure::constant(
                &format!("memory per resource, peer {}", i + 1),
                "B",
                bytes as f64,
            ));
        }
        figures.extend([
            Figure::constant("list first page (1000)", "ms", ms(self.list_first_page.at(50.0))),
            Figure::constant("list deepest page (1000)", "ms", ms(self.list_deepest_page.at(50.0))),
            Figure::linear("list all pages", "ms", ms(self.list_all_pages)),
            Figure::constant(
                "list all pages, per item",
                "us",
                ms(self.list_all_pages) * 1000.0 / self.list_items.max(1) as f64,
            ),
        ]);
        if let Some(d) = self.list_first_10k {
            figures.push(Figure::constant("list first 10,000 items", "ms", ms(d)));
        }
        figures.extend([
            Figure::linear(
                "one mesh's list, first page",
                "ms",
                ms(self.mesh_list_first_page.at(50.0)),
            ),
            Figure::linear("snapshot build (GET)", "ms", ms(self.snapshot_build.at(50.0))),
            Figure::linear("snapshot size", "KiB", self.snapshot_bytes as f64 / 1024.0),
            Figure::linear("restart: ready", "ms", ms(self.restart_ready)),
            Figure::linear("restart: caught up", "ms", ms(self.restart_caught_up)),
            Figure::linear("restart: consistent read", "ms", ms(self.restart_read)),
            Figure::linear("new peer: add-peer (install)", "ms", ms(self.add_peer)),
            Figure::linear("new peer: consistent read", "ms", ms(self.join_read)),
        ]);
        if let Some(d) = self.kumactl_save {
            figures.push(Figure::linear("kumactl raft snapshot save", "ms", ms(d)));
        }
        let logged = [
            ("snapshot: lock held (max)", self.snapshot_lock_max),
            ("snapshot: encoding (max)", self.snapshot_encode_max),
            ("snapshot: install decode (max)", self.snapshot_decode_max),
        ];
        for (name, value) in logged {
            if let Some(d) = value {
                figures.push(Figure::linear(name, "ms", ms(d)));
            }
        }
        figures
    }

    /// Adds what a peer's log says of the snapshots it built and installed.
    pub fn read_snapshot_log(&mut self, log: &str) {
        let longest = |kept: &mut Option<Duration>, d: Duration| {
            *kept = Some(kept.map_or(d, |k| k.max(d)));
        };
        for line in log.lines() {
            let built = line.contains("built a Raft snapshot");
            if !built && !line.contains("installed a Raft snapshot") {
                continue;
            }
            let line = without_ansi(line);
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                    .and_then(|v| v.parse::<u64>().ok())
            };
            let encode = field("encode_ms").map(Duration::from_millis);
            if built {
                self.snapshots_built += 1;
                if let Some(d) = encode {
                    longest(&mut self.snapshot_encode_max, d);
                }
                if let Some(d) = field("view_us").map(Duration::from_micros).or(encode) {
                    longest(&mut self.snapshot_lock_max, d);
                }
            } else {
                self.snapshots_installed += 1;
                if let Some(d) = field("decode_ms").map(Duration::from_millis) {
                    longest(&mut self.snapshot_decode_max, d);
                }
            }
        }
    }

    /// What a person reads.
    pub fn human_lines(&self) -> Vec<String> {
        let r = self.resources;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let ms = |d: Duration| d.as_millis();
        let p = |x: &Percentiles| {
            format!("p50 {} ms, max {} ms", x.at(50.0).as_millis(), x.max().as_millis())
        };
        let mut lines = vec![format!(
            "load: {r} resources across {MESHES} meshes by {} writers through every peer in {} \
             ms ({:.0} writes/s), {:.2} ms of CPU (3 peers) per write; write latency p50 {} ms, \
             p99 {} ms, max {} ms; {} writes retried (503 or 409); Raft term {} before, {} \
             after",
            self.writers,
            ms(self.load_time),
            self.writes_per_second(),
            self.cpu_per_write.as_secs_f64() * 1000.0,
            ms(self.writes.at(50.0)),
            ms(self.writes.at(99.0)),
            ms(self.writes.max()),
            self.write_retries,
            self.term_before,
            self.term_after,
        )];
        for (i, bytes) in self.bytes_per_resource().into_iter().enumerate() {
            lines.push(format!(
                "memory, peer {}: RSS {:.1} MiB idle, {:.1} MiB loaded: {bytes} bytes per resource",
                i + 1,
                mib(self.rss_idle[i]),
                mib(self.rss_loaded[i])
            ));
        }
        lines.push(format!(
            "list GET /dataplanes?size={PAGE_SIZE} ({} items, {} pages) through a follower: \
             first page {}; deepest page {}; every page {} ms{}; one mesh's list, first page {}",
            self.list_items,
            self.list_pages,
            p(&self.list_first_page),
            p(&self.list_deepest_page),
            ms(self.list_all_pages),
            self.list_first_10k
                .map(|d| format!(" (the first 10,000 items {} ms)", ms(d)))
                .unwrap_or_default(),
            p(&self.mesh_list_first_page)
        ));
        lines.push(format!(
            "snapshot: GET /status/raft/snapshot {} ({} KiB){}",
            p(&self.snapshot_build),
            self.snapshot_bytes / 1024,
            self.kumactl_save
                .map(|d| format!("; kumactl raft snapshot save {} ms", ms(d)))
                .unwrap_or_default()
        ));
        lines.push(format!(
            "restart of a killed follower: ready after {} ms, caught up after {} ms, a \
             consistent read through it after {} ms",
            ms(self.restart_ready),
            ms(self.restart_caught_up),
            ms(self.restart_read)
        ));
        lines.push(format!(
            "new peer: ready after {} ms; add-peer answered after {} ms (its snapshot index {}, \
             the leader's log purged up to {}); a consistent read through it {} ms later",
            ms(self.join_ready),
            ms(self.add_peer),
            self.join_snapshot_index.map_or("none".to_string(), |i| i.to_string()),
            self.leader_purged_index.map_or("none".to_string(), |i| i.to_string()),
            ms(self.join_read)
        ));
        let most = |d: Option<Duration>| d.map_or("-".to_string(), |d| format!("{} ms", ms(d)));
        lines.push(format!(
            "snapshots (the peers' logs): {} built, the replica's lock held up to {} per build, \
             encoded in up to {}; {} installed, decoded in up to {}",
            self.snapshots_built,
            self.snapshot_lock_max
                .map_or("-".to_string(), |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0)),
            most(self.snapshot_encode_max),
            self.snapshots_installed,
            most(self.snapshot_decode_max)
        ));
        lines
    }

    /// One line for scripts.
    pub fn machine_line(&self) -> String {
        let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
        let bytes = self.bytes_per_resource();
        let per_peer: Vec<String> = bytes
            .iter()
            .enumerate()
            .map(|(i, b)| format!("peer{}_bytes_per_resource={b}", i + 1))
            .collect();
        format!(
            "large-state resources={} meshes={MESHES} writers={} load_ms={} writes_per_s={:.0} \
             write_p99_ms={} write_max_ms={} write_retries={} elections={} \
             cpu_ms_per_write={} {} list_items={} list_first_page_ms={} \
             list_deepest_page_ms={} list_all_pages_ms={} list_first_10k_ms={} \
             mesh_list_first_page_ms={} snapshot_build_ms={} snapshot_bytes={} \
             kumactl_save_ms={} restart_ready_ms={} restart_caught_up_ms={} restart_read_ms={} \
             join_ready_ms={} add_peer_ms={} join_read_ms={} join_snapshot_index={} \
             snapshots_built={} snapshot_lock_max_ms={} snapshot_encode_max_ms={} \
             snapshots_installed={} snapshot_decode_max_ms={}",
            self.resources,
            self.writers,
            ms(self.load_time),
            self.writes_per_second(),
            ms(self.writes.at(99.0)),
            ms(self.writes.max()),
            self.write_retries,
            self.term_after.saturating_sub(self.term_before),
            ms(self.cpu_per_write),
            per_peer.join(" "),
            self.list_items,
            ms(self.list_first_page.at(50.0)),
            ms(self.list_deepest_page.at(50.0)),
            ms(self.list_all_pages),
            self.list_first_10k.map_or("-".to_string(), ms),
            ms(self.mesh_list_first_page.at(50.0)),
            ms(self.snapshot_build.at(50.0)),
            self.snapshot_bytes,
            self.kumactl_save.map_or("-".to_string(), ms),
            ms(self.restart_ready),
            ms(self.restart_caught_up),
            ms(self.restart_read),
            ms(self.join_ready),
            ms(self.add_peer),
            ms(self.join_read),
            self.join_snapshot_index.map_or("-".to_string(), |i| i.to_string()),
            self.snapshots_built,
            self.snapshot_lock_max.map_or("-".to_string(), ms),
            self.snapshot_encode_max.map_or("-".to_string(), ms),
            self.snapshots_installed,
            self.snapshot_decode_max.map_or("-".to_string(), ms),
        )
    }
}

/// `line` without its terminal colour codes (kuma-cp colours its log fields).
fn without_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// One figure of the table and how it should grow with the number of resources.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    /// `true`: proportional to R; `false`: independent of R.
    pub linear: bool,
}

impl Figure {
    fn linear(name: &str, unit: &'static str, value: f64) -> Figure {
        Figure { name: name.to_string(), unit, value, linear: true }
    }

    fn constant(name: &str, unit: &'static str, value: f64) -> Figure {
        Figure { name: name.to_string(), unit, value, linear: false }
    }
}

/// How a figure grew from the smallest run to the largest, against how it should have: its
/// growth divided by the growth in R (linear figures) or by 1 (constant ones). Above
/// `WORSE_THAN_EXPECTED` it grew faster than it should, unless both values are within `noise`.
pub const WORSE_THAN_EXPECTED: f64 = 1.5;

/// The verdict on one figure measured at sizes `small` and `large` (values `a` and `b`).
pub fn growth_verdict(figure: &Figure, small: usize, large: usize, a: f64, b: f64) -> String {
    let expected = if figure.linear { large as f64 / small as f64 } else { 1.0 };
    // Differences of a few milliseconds (or a few bytes per resource) are noise on 2 shared cores.
    let noise = match figure.unit {
        "ms" => 2.0,
        "us" => 2.0,
        "B" => 256.0,
        _ => 0.0,
    };
    if b <= noise || a <= 0.0 {
        return "ok (small)".to_string();
    }
    let relative = (b / a) / expected;
    if relative > WORSE_THAN_EXPECTED && b - a * expected > noise {
        format!(
            "WORSE than {} (x{:.1})",
            if figure.linear { "linear" } else { "constant" },
            relative
        )
    } else {
        format!("ok (x{relative:.2} of {})", if figure.linear { "linear" } else { "constant" })
    }
}

/// Runs the whole measurement at one size; the cluster is gone when it returns.
#[derive(Debug)]
pub struct LargeState {
    config: LargeStateConfig,
}

impl LargeState {
    pub fn new(config: LargeStateConfig) -> LargeState {
        LargeState { config }
    }

    pub async fn run(&self) -> Result<LargeStateReport, LoadError> {
        self.config.validate()?;
        let config = &self.config;
        let mut cluster = BenchCluster::start(&BenchClusterConfig {
            kuma_cp: config.kuma_cp.clone(),
            peers: 3,
            log_level: config.log_level.clone(),
            env: config.env.clone(),
            dir: config.dir.clone(),
        })
        .await?;
        let result = self.measure(&mut cluster).await;
        if result.is_err() {
            cluster.check_running()?;
        }
        result
    }

    async fn measure(&self, cluster: &mut BenchCluster) -> Result<LargeStateReport, LoadError> {
        let config = &self.config;
        let r = config.resources;
        let mut report =
            LargeStateReport { resources: r, writers: config.writers, ..Default::default() };
        let ports: Vec<u16> = (0..3).map(|i| cluster.api_port(i)).collect();
        let api = BenchApi::new(&ports, API_TIMEOUT)?;
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        report.term_before = cluster.status(leader).await.map(|s| s.term).unwrap_or_default();
        tokio::time::sleep(SETTLE).await;
        report.rss_idle = (0..3).map(|i| cluster.rss(i)).collect::<Result<_, _>>()?;

        for_each_concurrently(&api, MESHES, config.writers, |i| {
            (format!("/meshes/{}", mesh_name(i)), json!({"type": "Mesh", "name": mesh_name(i)}))
        })
        .await?;
        let cpu_before = cluster.cpu_time();
        let retries_before = api.retries();
        let at = Instant::now();
        report.writes =
            for_each_concurrently(&api, r, config.writers, |i| (resource_path(i), resource(i)))
                .await?;
        report.load_time = at.elapsed();
        report.cpu_per_write = cluster.cpu_time().saturating_sub(cpu_before) / r as u32;
        report.write_retries = api.retries() - retries_before;

        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        report.term_after = cluster.status(leader).await.map(|s| s.term).unwrap_or_default();
        let committed = cluster.applied(leader).await.unwrap_or_default();
        for peer in 0..3 {
            cluster.wait_applied(peer, committed, CATCH_UP_WITHIN).await?;
        }
        tokio::time::sleep(SETTLE).await;
        cluster.check_running()?;
        report.rss_loaded = (0..3).map(|i| cluster.rss(i)).collect::<Result<_, _>>()?;

        let follower = (leader + 1) % 3;
        self.measure_lists(&api, follower, &mut report).await?;
        self.measure_snapshots(cluster, &api, follower, &mut report).await?;
        let last = r - 1;
        self.measure_restart(cluster, &api, follower, last, &mut report).await?;
        self.measure_join(cluster, &api, last, &mut report).await?;
        for log in peer_logs(cluster.dir()) {
            report.read_snapshot_log(&log);
        }
        Ok(report)
    }

    async fn measure_lists(
        &self,
        api: &BenchApi,
        peer: usize,
        report: &mut LargeStateReport,
    ) -> Result<(), LoadError> {
        let first = format!("/dataplanes?size={PAGE_SIZE}");
        let mut path = first.clone();
        let mut pages: Vec<(String, Duration)> = Vec::new();
        let walk = Instant::now();
        // Bounded: MAX_RESOURCES / PAGE_SIZE pages at most.
        for _ in 0..=MAX_RESOURCES / PAGE_SIZE {
            let at = Instant::now();
            let page = api.get_json(peer, &path).await?;
            pages.push((path.clone(), at.elapsed()));
            report.list_items += page["items"].as_array().map_or(0, Vec::len);
            match page["next"].as_str() {
                Some(next) => path = path_of(next)?,
                None => break,
            }
        }
        report.list_all_pages = walk.elapsed();
        report.list_pages = pages.len();
        if pages.len() >= 10 {
            report.list_first_10k = Some(pages[..10].iter().map(|(_, d)| *d).sum());
        }
        let deepest = pages.last().map(|(p, _)| p.clone()).unwrap_or(first.clone());
        report.list_first_page = time_gets(api, peer, &first).await?;
        report.list_deepest_page = time_gets(api, peer, &deepest).await?;
        let mesh_list = format!("/meshes/{}/dataplanes?size={PAGE_SIZE}", mesh_name(1));
        report.mesh_list_first_page = time_gets(api, peer, &mesh_list).await?;
        Ok(())
    }

    async fn measure_snapshots(
        &self,
        cluster: &BenchCluster,
        api: &BenchApi,
        peer: usize,
        report: &mut LargeStateReport,
    ) -> Result<(), LoadError> {
        // An operator on the peer's host reads the admin token over loopback.
        let token = api.text(peer, "GET", "/tokens/admin", None).await?;
        let mut builds = Vec::new();
        for _ in 0..SNAPSHOTS {
            let at = Instant::now();
            let bytes = api.get_bytes(peer, "/status/raft/snapshot", &token).await?;
            builds.push(at.elapsed());
            report.snapshot_bytes = bytes.len();
        }
        report.snapshot_build = Percentiles::new(builds);
        if let Some(kumactl) = &self.config.kumactl {
            report.kumactl_save = Some(kumactl_save(kumactl, cluster, peer).await?);
        }
        Ok(())
    }

    async fn measure_restart(
        &self,
        cluster: &mut BenchCluster,
        api: &BenchApi,
        peer: usize,
        last: usize,
        report: &mut LargeStateReport,
    ) -> Result<(), LoadError> {
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let committed = cluster.applied(leader).await.unwrap_or_default();
        cluster.kill(peer);
        let at = Instant::now();
        cluster.restart(peer).await?;
        report.restart_ready = at.elapsed();
        cluster.wait_applied(peer, committed, CATCH_UP_WITHIN).await?;
        report.restart_caught_up = at.elapsed();
        poll_read(api, peer, &resource_path(last)).await?;
        report.restart_read = at.elapsed();
        Ok(())
    }

    async fn measure_join(
        &self,
        cluster: &mut BenchCluster,
        api: &BenchApi,
        last: usize,
        report: &mut LargeStateReport,
    ) -> Result<(), LoadError> {
        let at = Instant::now();
        let joiner = cluster.start_joiner().await?;
        report.join_ready = at.elapsed();
        let leader = cluster.wait_for_leader(Duration::from_secs(30)).await?;
        let status = api.get_json(leader, "/status/raft").await?;
        report.leader_purged_index = own_status(&status)["purgedIndex"].as_u64();
        let token = api.text(leader, "GET", "/tokens/admin", None).await?;
        let body = json!({
            "id": cluster.id(joiner),
            "raftAddress": format!("127.0.0.1:{}", cluster.raft_port(joiner)),
        });
        let at = Instant::now();
        api.call(leader, reqwest::Method::POST, "/status/raft/peers", Some(&body), Some(&token))
            .await?;
        report.add_peer = at.elapsed();
        let joiner_api = BenchApi::new(&[cluster.api_port(joiner)], API_TIMEOUT)?;
        let status = joiner_api.get_json(0, "/status/raft?consistency=stale").await?;
        report.join_snapshot_index = own_status(&status)["snapshotIndex"].as_u64();
        let at = Instant::now();
        poll_read(&joiner_api, 0, &resource_path(last)).await?;
        report.join_read = at.elapsed();
        // Back to three peers; the id is retired for good.
        let path = format!("/status/raft/peers/{}", cluster.id(joiner));
        api.call(leader, reqwest::Method::DELETE, &path, None, Some(&token)).await?;
        cluster.discard(joiner);
        Ok(())
    }
}

/// The text of every peer's log in `dir` (`peer-<id>.log`, the added peer's too).
fn peer_logs(dir: &std::path::Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("peer-") && name.ends_with(".log")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect()
}

/// `PUT` of `n` resources, `writers` at a time, each through the next peer; the latency of each.
async fn for_each_concurrently(
    api: &BenchApi,
    n: usize,
    writers: usize,
    resource: impl Fn(usize) -> (String, Value),
) -> Result<Percentiles, LoadError> {
    let peers = api.peers();
    let resource = &resource;
    let mut puts = futures::stream::iter(0..n)
        .map(|i| async move {
            let (path, body) = resource(i);
            let at = Instant::now();
            api.put(i % peers, &path, &body).await.map(|()| at.elapsed())
        })
        .buffer_unordered(writers);
    let mut latencies = Vec::with_capacity(n);
    while let Some(result) = puts.next().await {
        latencies.push(result?);
    }
    Ok(Percentiles::new(latencies))
}

/// `PAGE_REPEATS` timed `GET`s of `path`.
async fn time_gets(api: &BenchApi, peer: usize, path: &str) -> Result<Percentiles, LoadError> {
    let mut samples = Vec::with_capacity(PAGE_REPEATS);
    for _ in 0..PAGE_REPEATS {
        let at = Instant::now();
        api.get_json(peer, path).await?;
        samples.push(at.elapsed());
    }
    Ok(Percentiles::new(samples))
}

/// Polls a consistent `GET` of `path` through `peer` until it answers 200.
async fn poll_read(api: &BenchApi, peer: usize, path: &str) -> Result<(), LoadError> {
    let mut last_error = None;
    for _ in 0..READ_POLLS {
        match api.get_json(peer, path).await {
            Ok(_) => return Ok(()),
            Err(e) => last_error = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Err(last_error.unwrap_or_else(|| LoadError::Invalid(format!("no answer to GET {path}"))))
}

/// `kumactl raft snapshot save` against `peer`, as an operator on its host runs it (over
/// loopback, which kuma-cp counts as an admin): a config naming the peer's API, then the save,
/// timed alone.
async fn kumactl_save(
    kumactl: &std::path::Path,
    cluster: &BenchCluster,
    peer: usize,
) -> Result<Duration, LoadError> {
    let config = cluster.dir().join("kumactl.config");
    let file = cluster.dir().join("snapshot.kuma");
    let address = format!("http://127.0.0.1:{}", cluster.api_port(peer));
    let add = [
        "--config-file",
        path_str(&config)?,
        "config",
        "control-planes",
        "add",
        "--name",
        "bench",
        "--address",
        &address,
        "--overwrite",
    ];
    run_kumactl(kumactl, &add).await?;
    let at = Instant::now();
    run_kumactl(
        kumactl,
        &["--config-file", path_str(&config)?, "raft", "snapshot", "save", path_str(&file)?],
    )
    .await?;
    Ok(at.elapsed())
}

fn path_str(path: &std::path::Path) -> Result<&str, LoadError> {
    path.to_str().ok_or_else(|| LoadError::Invalid(format!("{} is not UTF-8", path.display())))
}

async fn run_kumactl(kumactl: &std::path::Path, args: &[&str]) -> Result<(), LoadError> {
    let out = tokio::process::Command::new(kumactl).args(args).output().await.map_err(|e| {
        LoadError::Invalid(format!("cannot run {}: {e} (pass --kumactl PATH)", kumactl.display()))
    })?;
    if !out.status.success() {
        return Err(LoadError::Invalid(format!(
            "kumactl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// The path and query of a `next` link, whatever host it names.
fn path_of(next: &str) -> Result<String, LoadError> {
    let rest = next.split_once("://").map_or(next, |(_, rest)| rest);
    rest.find('/')
        .map(|at| rest[at..].to_string())
        .ok_or_else(|| LoadError::Invalid(format!("a next link without a path: {next}")))
}

/// The answering peer's own status in a `GET /status/raft` answer.
fn own_status(status: &Value) -> &Value {
    let this = status["this"].as_u64();
    status["members"]
        .as_array()
        .and_then(|members| members.iter().find(|m| m["id"].as_u64() == this))
        .map_or(&Value::Null, |m| &m["status"])
}

fn mesh_name(i: usize) -> String {
    format!("mesh-{}", i % MESHES)
}

/// Resource `i`: in mesh `i mod 100`; one in five a policy, the others Dataplanes.
fn resource_path(i: usize) -> String {
    let mesh = mesh_name(i);
    match kind(i) {
        Kind::Dataplane => format!("/meshes/{mesh}/dataplanes/dp-{i}"),
        Kind::TrafficPermission => format!("/meshes/{mesh}/traffic-permissions/tp-{i}"),
        Kind::HealthCheck => format!("/meshes/{mesh}/health-checks/hc-{i}"),
    }
}

enum Kind {
    Dataplane,
    TrafficPermission,
    HealthCheck,
}

fn kind(i: usize) -> Kind {
    if i % POLICY_EVERY != POLICY_EVERY - 1 {
        Kind::Dataplane
    } else if (i / POLICY_EVERY).is_multiple_of(2) {
        Kind::TrafficPermission
    } else {
        Kind::HealthCheck
    }
}

/// The body of resource `i`: a Dataplane with its own address (10.x.y.z), or a policy between
/// two of the mesh's services.
pub fn resource(i: usize) -> Value {
    let mesh = mesh_name(i);
    let service = |k: usize| format!("svc-{}", k % SERVICES);
    match kind(i) {
        Kind::Dataplane => json!({
            "type": "Dataplane",
            "mesh": mesh,
            "name": format!("dp-{i}"),
            "networking": {
                "inbound": [{
                    "interface": format!(
                        "10.{}.{}.{}:8080:8081",
                        (i >> 16) & 255,
                        (i >> 8) & 255,
                        i & 255
                    ),
                    "tags": {"service": service(i / MESHES)}
                }],
                "outbound": [{"interface": ":7001", "service": service(i / MESHES + 1)}]
            }
        }),
        Kind::TrafficPermission => json!({
            "type": "TrafficPermission",
            "mesh": mesh,
            "name": format!("tp-{i}"),
            "sources": [{"match": {"service": service(i)}}],
            "destinations": [{"match": {"service": service(i + 1)}}]
        }),
        Kind::HealthCheck => json!({
            "type": "HealthCheck",
            "mesh": mesh,
            "name": format!("hc-{i}"),
            "sources": [{"match": {"service": "*"}}],
            "destinations": [{"match": {"service": service(i)}}],
            "conf": {"activeChecks": {
                "interval": "10s",
                "timeout": "2s",
                "unhealthyThreshold": 3,
                "healthyThreshold": 1
            }}
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_spread_over_every_mesh_with_one_in_five_a_policy() {
        let paths: Vec<String> = (0..1000).map(resource_path).collect();
        let unique: std::collections::BTreeSet<&String> = paths.iter().collect();
        assert_eq!(unique.len(), 1000);
        let dataplanes = paths.iter().filter(|p| p.contains("/dataplanes/")).count();
        assert_eq!(dataplanes, 800);
        for mesh in 0..MESHES {
            let prefix = format!("/meshes/mesh-{mesh}/");
            assert_eq!(paths.iter().filter(|p| p.starts_with(&prefix)).count(), 10);
        }
        assert_eq!(resource(7)["mesh"], "mesh-7");
    }

    #[test]
    fn a_figure_that_grows_faster_than_it_should_is_flagged() {
        let linear = Figure::linear("restart", "ms", 0.0);
        assert!(growth_verdict(&linear, 10_000, 100_000, 100.0, 900.0).starts_with("ok"));
        assert!(growth_verdict(&linear, 10_000, 100_000, 100.0, 5000.0).starts_with("WORSE"));
        let constant = Figure::constant("first page", "ms", 0.0);
        assert!(growth_verdict(&constant, 10_000, 100_000, 10.0, 11.0).starts_with("ok"));
        assert!(growth_verdict(&constant, 10_000, 100_000, 10.0, 80.0).starts_with("WORSE"));
        assert!(growth_verdict(&constant, 10_000, 100_000, 0.5, 1.5).starts_with("ok (small)"));
    }

    /// The peers' log lines as kuma-cp writes them (fields coloured), of this version (the view
    /// under the lock, the encoding after it) and of the earlier one (the encoding under the lock).
    #[test]
    fn snapshot_lines_of_both_versions_are_read_from_the_peers_logs() {
        let now = "2026-12-03T11:28:16.113235Z \u{1b}[32m INFO\u{1b}[0m \
                   \u{1b}[2mkuma_raft::state_machine\u{1b}[0m\u{1b}[2m:\u{1b}[0m built a Raft \
                   snapshot \u{1b}[3mindex\u{1b}[0m\u{1b}[2m=\u{1b}[0m15004 \
                   \u{1b}[3mview_us\u{1b}[0m\u{1b}[2m=\u{1b}[0m16856 \
                   \u{1b}[3mencode_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m1272 store_ms=258";
        let before =
            "built a Raft snapshot index=15003 resources=95996 encode_ms=1701 store_ms=220\n\
                      INFO openraft: something else encode_ms=99999\n\
                      installed a Raft snapshot index=15003 bytes=42525102 decode_ms=1795";
        let mut report = LargeStateReport::default();
        report.read_snapshot_log(now);
        assert_eq!(report.snapshot_lock_max, Some(Duration::from_micros(16856)));
        assert_eq!(report.snapshot_encode_max, Some(Duration::from_millis(1272)));
        report.read_snapshot_log(before);
        assert_eq!((report.snapshots_built, report.snapshots_installed), (2, 1));
        assert_eq!(report.snapshot_lock_max, Some(Duration::from_millis(1701)));
        assert_eq!(report.snapshot_encode_max, Some(Duration::from_millis(1701)));
        assert_eq!(report.snapshot_decode_max, Some(Duration::from_millis(1795)));
        assert!(report.machine_line().contains("snapshots_built=2 snapshot_lock_max_ms=1701.0"));
    }

    #[test]
    fn next_links_are_followed_on_the_asked_peer() {
        assert_eq!(
            path_of("http://10.0.0.1:5681/dataplanes?size=1000&offset=m/n").unwrap(),
            "/dataplanes?size=1000&offset=m/n"
        );
    }
}
