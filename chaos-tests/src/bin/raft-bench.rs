//! `raft-bench`: the Raft store against etcd, measured in the same run by the same client.
//!
//! Starts 3 etcd 3.4 members (Debian's `etcd-server`, which `.ci/setup --bench` unpacks), measures
//! them, stops them, then starts 3 kuma-cp peers with the Raft store (fsync on, mutual TLS) and
//! measures them the same way: write throughput and latency with 1 and 32 concurrent writers
//! (each write a new ~300 B record through the leader's HTTP API: etcd's JSON gateway, kuma-cp's
//! resource API), consistent read latency on a follower, and the time from a kill -9 of the
//! leader to the first successful write through a survivor. Prints each figure with its ratio to
//! etcd's. Everything on 127.0.0.1; every loop is bounded.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kuma_chaos_tests::Percentiles;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(about = "Raft store vs etcd: throughput, latency, follower reads, failover")]
struct Args {
    /// Writes per writer in the single-writer run.
    #[arg(long, default_value_t = 1000)]
    single_writes: usize,
    /// Writes per writer in the 32-writer run.
    #[arg(long, default_value_t = 300)]
    concurrent_writes: usize,
    /// Consistent reads on a follower.
    #[arg(long, default_value_t = 1000)]
    reads: usize,
    /// Leader kills.
    #[arg(long, default_value_t = 5)]
    kills: usize,
    /// Where etcd and etcdctl are (Debian's etcd-server unpacked).
    #[arg(long)]
    etcd_bin: Option<PathBuf>,
}

/// One system under test: three members reachable over HTTP.
trait System {
    fn name(&self) -> &'static str;
    /// Index of the current leader, waiting for one.
    fn leader(&mut self) -> anyhow::Result<usize>;
    /// An HTTP request that writes record `key` through member `member`.
    fn write(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder;
    /// A consistent read of `key` on member `member`.
    fn read(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder;
    fn kill(&mut self, member: usize);
    /// Process ids of the running members.
    fn pids(&self) -> Vec<u32>;
    fn restart(&mut self, member: usize) -> anyhow::Result<()>;
}

#[derive(Debug, Default, Clone)]
struct Figures {
    single_ops: f64,
    single: Percentiles,
    concurrent_ops: f64,
    concurrent: Percentiles,
    /// CPU time (user + system) the three members spent per write in the 32-writer run.
    concurrent_cpu_per_write: Duration,
    reads: Percentiles,
    failover: Percentiles,
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn value() -> String {
    "v".repeat(256)
}

async fn must_succeed(request: reqwest::RequestBuilder) -> anyhow::Result<()> {
    let response = request.send().await?;
    let status = response.status();
    if !status.is_success() {
        anyhow::bail!("{status}: {}", response.text().await.unwrap_or_default());
    }
    Ok(())
}

/// CPU time (user + system) the processes `pids` have used so far, from `/proc/<pid>/stat`.
fn cpu_time(pids: &[u32]) -> Duration {
    // Clock ticks per second: 100 on Linux for every architecture this runs on.
    const TICKS: u64 = 100;
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command name (which may hold spaces) in parentheses.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_millis(ticks * 1000 / TICKS)
}

/// `writers` tasks, each doing `per_writer` writes of new keys through the leader; returns
/// ops/s over the wall time and the latencies.
async fn write_load<S: System + Send + Sync + 'static>(
    system: &Arc<S>,
    leader: usize,
    writers: usize,
    per_writer: usize,
    run: &str,
) -> anyhow::Result<(f64, Percentiles)> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build()?;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (system, client, run) = (system.clone(), client.clone(), run.to_string());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let key = format!("{run}-{w}-{i}");
                let t = Instant::now();
                must_succeed(system.write(&client, leader, &key)).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await??);
    }
    let ops = all.len() as f64 / started.elapsed().as_secs_f64();
    Ok((ops, Percentiles::new(all)))
}

async fn measure<S: System + Send + Sync + 'static>(
    mut system: S,
    args: &Args,
) -> anyhow::Result<Figures> {
    let leader = system.leader()?;
    let mut figures = Figures::default();
    let shared = Arc::new(system);
    // Warm up connections and caches.
    write_load(&shared, leader, 4, 25, "warmup").await?;
    (figures.single_ops, figures.single) =
        write_load(&shared, leader, 1, args.single_writes, "single").await?;
    let cpu_before = cpu_time(&shared.pids());
    (figures.concurrent_ops, figures.concurrent) =
        write_load(&shared, leader, 32, args.concurrent_writes, "concurrent").await?;
    let writes = (32 * args.concurrent_writes).max(1) as u32;
    figures.concurrent_cpu_per_write = cpu_time(&shared.pids()).saturating_sub(cpu_before) / writes;

    let follower = (leader + 1) % 3;
    let client = reqwest::Client::new();
    let mut reads = Vec::with_capacity(args.reads);
    for i in 0..args.reads {
        let key = format!("single-0-{}", i % args.single_writes.max(1));
        let t = Instant::now();
        must_succeed(shared.read(&client, follower, &key)).await?;
        reads.push(t.elapsed());
    }
    figures.reads = Percentiles::new(reads);

    let mut system = match Arc::try_unwrap(shared) {
        Ok(system) => system,
        Err(_) => anyhow::bail!("the load tasks still hold the system"),
    };
    let mut failovers = Vec::new();
    for round in 0..args.kills {
        let leader = system.leader()?;
        let survivors: Vec<usize> = (0..3).filter(|m| *m != leader).collect();
        let quick = reqwest::Client::builder().timeout(Duration::from_millis(250)).build()?;
        for s in &survivors {
            // Warm connections to the survivors, as a client spread over peers has them.
            let _ = system.write(&quick, *s, &format!("warm-{round}-{s}")).send().await;
        }
        system.kill(leader);
        let killed = Instant::now();
        let mut attempt = 0usize;
        loop {
            let member = survivors[attempt % 2];
            attempt += 1;
            let ok = matches!(
                system.write(&quick, member, &format!("failover-{round}-{attempt}")).send().await,
                Ok(r) if r.status().is_success()
            );
            if ok {
                failovers.push(killed.elapsed());
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                anyhow::bail!(
                    "{}: no write succeeded within 30 s of the leader kill",
                    system.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        system.restart(leader)?;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    figures.failover = Percentiles::new(failovers);
    Ok(figures)
}

// ---------------------------------------------------------------------------------------------
// etcd

struct Etcd {
    bin: PathBuf,
    dir: tempfile::TempDir,
    clients: [u16; 3],
    peers: [u16; 3],
    children: [Option<Child>; 3],
}

impl Etcd {
    fn start(bin: &Path) -> anyhow::Result<Etcd> {
        let mut etcd = Etcd {
            bin: bin.to_path_buf(),
            dir: tempfile::tempdir()?,
            clients: [free_port(), free_port(), free_port()],
            peers: [free_port(), free_port(), free_port()],
            children: [None, None, None],
        };
        for m in 0..3 {
            etcd.spawn(m, true)?;
        }
        Ok(etcd)
    }

    fn spawn(&mut self, m: usize, new: bool) -> anyhow::Result<()> {
        let cluster = (0..3)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", self.peers[i]))
            .collect::<Vec<_>>()
            .join(",");
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{m}.log")))?;
        let mut command = Command::new(self.bin.join("etcd"));
        command
            .arg(format!("--name=m{m}"))
            .arg(format!("--data-dir={}", self.dir.path().join(format!("m{m}")).display()))
            .arg(format!("--listen-client-urls=http://127.0.0.1:{}", self.clients[m]))
            .arg(format!("--advertise-client-urls=http://127.0.0.1:{}", self.clients[m]))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{}", self.peers[m]))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{}", self.peers[m]))
            .arg(format!("--initial-cluster={cluster}"))
            .arg("--initial-cluster-token=kuma-rs-bench")
            // The same timing class as the Raft store's defaults (50 ms heartbeat, 200-400 ms
            // election).
            .args(["--heartbeat-interval=50", "--election-timeout=300", "--logger=zap"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if new {
            command.arg("--initial-cluster-state=new");
        }
        self.children[m] = Some(command.spawn()?);
        Ok(())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn b64(s: &str) -> String {
    const TABLE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = s.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl System for Etcd {
    fn name(&self) -> &'static str {
        "etcd"
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    fn leader(&mut self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for m in 0..3 {
                if self.children[m].is_none() {
                    continue;
                }
                let status = Command::new(self.bin.join("etcdctl"))
                    .arg(format!("--endpoints=127.0.0.1:{}", self.clients[m]))
                    .args(["endpoint", "status", "-w", "json"])
                    .env("ETCDCTL_API", "3")
                    .output()?;
                let Ok(json): Result<Value, _> = serde_json::from_slice(&status.stdout) else {
                    continue;
                };
                let leader = json[0]["Status"]["leader"].as_u64();
                let me = json[0]["Status"]["header"]["member_id"].as_u64();
                if leader.is_some() && leader == me {
                    return Ok(m);
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "etcd elected no leader within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder {
        client
            .post(format!("http://127.0.0.1:{}/v3/kv/put", self.clients[member]))
            .json(&json!({"key": b64(key), "value": b64(&value())}))
    }

    fn read(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder {
        client
            .post(format!("http://127.0.0.1:{}/v3/kv/range", self.clients[member]))
            .json(&json!({"key": b64(key)}))
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.children[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, member: usize) -> anyhow::Result<()> {
        self.spawn(member, false)
    }
}

// ---------------------------------------------------------------------------------------------
// kuma-cp with the Raft store

struct KumaCluster {
    binary: PathBuf,
    dir: tempfile::TempDir,
    ports: [[u16; 7]; 3],
    children: [Option<Child>; 3],
}

impl KumaCluster {
    fn start(binary: &Path) -> anyhow::Result<KumaCluster> {
        let dir = tempfile::tempdir()?;
        let certs = dir.path().join("certs");
        let out = Command::new(binary)
            .args(["raft", "certs", "--dir", &certs.display().to_string(), "--ids", "1,2,3"])
            .output()?;
        anyhow::ensure!(
            out.status.success(),
            "kuma-cp raft certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut cluster = KumaCluster {
            binary: binary.to_path_buf(),
            dir,
            ports: std::array::from_fn(|_| std::array::from_fn(|_| free_port())),
            children: [None, None, None],
        };
        for m in 0..3 {
            cluster.spawn(m)?;
        }
        // The leader creates the default mesh once it is elected; the writes go in it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !blocking_get(cluster.ports[0][0], "/meshes/default")
            .is_some_and(|b| b.contains("\"default\""))
        {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cluster did not create the default mesh within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(cluster)
    }

    fn spawn(&mut self, m: usize) -> anyhow::Result<()> {
        let peers = (0..3)
            .map(|i| format!("{}=127.0.0.1:{}", i + 1, self.ports[i][5]))
            .collect::<Vec<_>>()
            .join(",");
        let certs = self.dir.path().join("certs");
        let p = self.ports[m];
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("peer-{}.log", m + 1)))?;
        let child = Command::new(&self.binary)
            .args(["run", "--log-level", "warn"])
            .env_clear()
            .env("KUMA_API_SERVER_PORT", p[0].to_string())
            .env("KUMA_DIAGNOSTICS_PORT", p[1].to_string())
            .env("KUMA_BOOTSTRAP_SERVER_PORT", p[2].to_string())
            .env("KUMA_XDS_SERVER_GRPC_PORT", p[3].to_string())
            .env("KUMA_SDS_SERVER_GRPC_PORT", p[4].to_string())
            .env("KUMA_RAFT_PORT", p[5].to_string())
            .env("KUMA_API_SERVER_HTTPS_PORT", p[6].to_string())
            .env("KUMA_STORE_TYPE", "raft")
            .env("KUMA_STORE_RAFT_NODE_ID", (m + 1).to_string())
            .env("KUMA_STORE_RAFT_PEERS", &peers)
            .env("KUMA_STORE_RAFT_DATA_DIR", self.dir.path().join(format!("peer-{}", m + 1)))
            .env("KUMA_STORE_RAFT_TLS_CA_FILE", certs.join("ca.crt"))
            .env("KUMA_STORE_RAFT_TLS_CERT_FILE", certs.join(format!("peer-{}.crt", m + 1)))
            .env("KUMA_STORE_RAFT_TLS_KEY_FILE", certs.join(format!("peer-{}.key", m + 1)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.children[m] = Some(child);
        Ok(())
    }

    fn status(&self, m: usize) -> Option<Value> {
        let body = blocking_get(self.ports[m][0], "/status/raft?consistency=stale")?;
        serde_json::from_str(&body).ok()
    }
}

/// A blocking HTTP GET on 127.0.0.1, so status polling needs no runtime.
fn blocking_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(conn, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).ok()?;
    raw.split_once("\r\n\r\n").map(|(_, body)| body.to_string())
}

impl Drop for KumaCluster {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl System for KumaCluster {
    fn name(&self) -> &'static str {
        "kuma-cp (Raft)"
    }

    fn pids(&self) -> Vec<u32> {
        self.children.iter().flatten().map(Child::id).collect()
    }

    fn leader(&mut self) -> anyhow::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            for m in 0..3 {
                if self.children[m].is_none() {
                    continue;
                }
                if let Some(status) = self.status(m) {
                    if let Some(leader) = status["leader"].as_u64() {
                        let index = leader as usize - 1;
                        if self.children.get(index).is_some_and(Option::is_some) {
                            return Ok(index);
                        }
                    }
                }
            }
            anyhow::ensure!(Instant::now() < deadline, "kuma-cp elected no leader within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn write(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder {
        client
            .put(format!(
                "http://127.0.0.1:{}/meshes/default/traffic-permissions/{key}",
                self.ports[member][0]
            ))
            .json(&json!({
                "type": "TrafficPermission", "mesh": "default", "name": key,
                "sources": [{"match": {"service": value()}}],
                "destinations": [{"match": {"service": "*"}}],
            }))
    }

    fn read(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder {
        client.get(format!(
            "http://127.0.0.1:{}/meshes/default/traffic-permissions/{key}",
            self.ports[member][0]
        ))
    }

    fn kill(&mut self, member: usize) {
        if let Some(mut child) = self.children[member].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, member: usize) -> anyhow::Result<()> {
        self.spawn(member)
    }
}

// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print(etcd: &Figures, kuma: &Figures) {
    let row = |what: &str, e: f64, k: f64, unit: &str, higher_is_better: bool| {
        let ratio = if e > 0.0 { k / e } else { f64::NAN };
        let verdict = if higher_is_better == (ratio >= 1.0) { "ok" } else { "behind" };
        println!("{what:<36} {e:>10.1} {k:>10.1} {unit:<5} ratio {ratio:>5.2}  {verdict}");
    };
    println!("{:<36} {:>10} {:>10}", "", "etcd", "kuma-cp");
    row("writes/s, 1 writer", etcd.single_ops, kuma.single_ops, "op/s", true);
    row("write p50, 1 writer", ms(etcd.single.at(50.0)), ms(kuma.single.at(50.0)), "ms", false);
    row("write p99, 1 writer", ms(etcd.single.at(99.0)), ms(kuma.single.at(99.0)), "ms", false);
    row("writes/s, 32 writers", etcd.concurrent_ops, kuma.concurrent_ops, "op/s", true);
    row(
        "server CPU per write, 32 writers",
        etcd.concurrent_cpu_per_write.as_secs_f64() * 1e6,
        kuma.concurrent_cpu_per_write.as_secs_f64() * 1e6,
        "us",
        false,
    );
    row(
        "write p50, 32 writers",
        ms(etcd.concurrent.at(50.0)),
        ms(kuma.concurrent.at(50.0)),
        "ms",
        false,
    );
    row(
        "write p99, 32 writers",
        ms(etcd.concurrent.at(99.0)),
        ms(kuma.concurrent.at(99.0)),
        "ms",
        false,
    );
    row(
        "consistent read p50, follower",
        ms(etcd.reads.at(50.0)),
        ms(kuma.reads.at(50.0)),
        "ms",
        false,
    );
    row(
        "consistent read p99, follower",
        ms(etcd.reads.at(99.0)),
        ms(kuma.reads.at(99.0)),
        "ms",
        false,
    );
    row(
        "leader kill -> first write, median",
        ms(etcd.failover.at(50.0)),
        ms(kuma.failover.at(50.0)),
        "ms",
        false,
    );
    row(
        "leader kill -> first write, max",
        ms(etcd.failover.max()),
        ms(kuma.failover.max()),
        "ms",
        false,
    );
    println!(
        "raft-bench targets: 32-writer throughput >= etcd: {}; p99 <= etcd: {}; failover median < 1 s: {}; max < 2 s: {}",
        kuma.concurrent_ops >= etcd.concurrent_ops,
        kuma.concurrent.at(99.0) <= etcd.concurrent.at(99.0),
        kuma.failover.at(50.0) < Duration::from_secs(1),
        kuma.failover.max() < Duration::from_secs(2),
    );
}

fn default_etcd_bin() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    home.join(".cache/kuma-rs/etcd/usr/bin")
}

fn main() -> ExitCode {
    let args = Args::parse();
    let etcd_bin = args.etcd_bin.clone().unwrap_or_else(default_etcd_bin);
    if !etcd_bin.join("etcd").is_file() {
        eprintln!(
            "Error: no etcd in {}: run .ci/setup --bench (unpacks Debian's etcd-server) or pass --etcd-bin",
            etcd_bin.display()
        );
        return ExitCode::FAILURE;
    }
    let kuma_cp = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("kuma-cp")))
        .filter(|p| p.is_file());
    let Some(kuma_cp) = kuma_cp else {
        eprintln!("Error: no kuma-cp next to raft-bench: build the workspace binaries first (make bench does)");
        return ExitCode::FAILURE;
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        println!("raft-bench: measuring 3 etcd members...");
        let etcd = measure(Etcd::start(&etcd_bin)?, &args).await?;
        println!("raft-bench: measuring 3 kuma-cp peers (Raft store)...");
        let kuma = measure(KumaCluster::start(&kuma_cp)?, &args).await?;
        anyhow::Ok((etcd, kuma))
    });
    match result {
        Ok((etcd, kuma)) => {
            print(&etcd, &kuma);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
