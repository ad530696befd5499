//! `raft-bench`: the Raft store against etcd, measured in the same run by the same client.
//!
//! Starts 3 etcd 3.4 members (Debian's `etcd-server`, which `.ci/setup --bench` unpacks) and 3
//! kuma-cp peers with the Raft store (fsync on, mutual TLS) side by side and measures both the
//! same way: write throughput and latency with 1 and 32 concurrent writers (each write a new
//! ~300 B record through the leader's HTTP API: etcd's JSON gateway, kuma-cp's resource API),
//! consistent read latency on a follower, and the time from a kill -9 of the leader to the first
//! successful write through a survivor (etcd's kills first, then kuma-cp's). Prints each figure
//! with its ratio to etcd's. Everything on 127.0.0.1; every loop is bounded.
//!
//! The writes and reads alternate between the two systems in short rounds, so a change in the
//! machine's load (other processes on a shared machine) falls on both alike. Before that it
//! prints the fsync floor of the disk the members write to: what one small synced write costs
//! appended to a growing file, overwriting an already written one, and through the Raft log's
//! RocksDB.

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
    /// Rounds the writes and reads are split into, alternating between the two systems.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Synced writes per probe of the fsync floor (0: skip it).
    #[arg(long, default_value_t = 1000)]
    fsync_writes: usize,
    /// The kuma-cp binary (default: the one next to raft-bench).
    #[arg(long)]
    kuma_cp: Option<PathBuf>,
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

/// `writers` tasks, each doing `per_writer` writes of new keys through the leader; returns the
/// wall time and the latencies.
async fn write_load<S: System + Send + Sync + 'static>(
    system: &Arc<S>,
    client: &reqwest::Client,
    leader: usize,
    writers: usize,
    per_writer: usize,
    run: &str,
) -> anyhow::Result<(Duration, Vec<Duration>)> {
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
    Ok((started.elapsed(), all))
}

/// One system while it is measured: its leader, a client, and what was measured so far.
struct Subject<S> {
    system: Arc<S>,
    leader: usize,
    client: reqwest::Client,
    single: (Duration, Vec<Duration>),
    concurrent: (Duration, Vec<Duration>),
    concurrent_cpu: Duration,
    reads: Vec<Duration>,
}

impl<S: System + Send + Sync + 'static> Subject<S> {
    fn new(mut system: S) -> anyhow::Result<Subject<S>> {
        let leader = system.leader()?;
        Ok(Subject {
            system: Arc::new(system),
            leader,
            client: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
            single: Default::default(),
            concurrent: Default::default(),
            concurrent_cpu: Duration::ZERO,
            reads: Vec::new(),
        })
    }

    async fn writes(&mut self, writers: usize, per_writer: usize, run: &str) -> anyhow::Result<()> {
        let cpu_before = cpu_time(&self.system.pids());
        let (took, latencies) =
            write_load(&self.system, &self.client, self.leader, writers, per_writer, run).await?;
        let into = if writers == 1 { &mut self.single } else { &mut self.concurrent };
        into.0 += took;
        into.1.extend(latencies);
        if writers > 1 {
            self.concurrent_cpu += cpu_time(&self.system.pids()).saturating_sub(cpu_before);
        }
        Ok(())
    }

    /// Consistent reads on a follower of the `written` keys the single writer wrote,
    /// `per_round` in each of its rounds.
    async fn reads(
        &mut self,
        from: usize,
        count: usize,
        (written, per_round): (usize, usize),
    ) -> anyhow::Result<()> {
        let follower = (self.leader + 1) % 3;
        for i in from..from + count {
            let k = i % written.max(1);
            let key = format!("single-{}-0-{}", k / per_round.max(1), k % per_round.max(1));
            let t = Instant::now();
            must_succeed(self.system.read(&self.client, follower, &key)).await?;
            self.reads.push(t.elapsed());
        }
        Ok(())
    }

    fn figures(&mut self) -> Figures {
        let ops = |(took, latencies): &(Duration, Vec<Duration>)| {
            latencies.len() as f64 / took.as_secs_f64().max(f64::MIN_POSITIVE)
        };
        let writes = self.concurrent.1.len().max(1) as u32;
        Figures {
            single_ops: ops(&self.single),
            single: Percentiles::new(std::mem::take(&mut self.single.1)),
            concurrent_ops: ops(&self.concurrent),
            concurrent: Percentiles::new(std::mem::take(&mut self.concurrent.1)),
            concurrent_cpu_per_write: self.concurrent_cpu / writes,
            reads: Percentiles::new(std::mem::take(&mut self.reads)),
            failover: Percentiles::default(),
        }
    }
}

/// Splits `total` into `rounds` nearly equal parts.
fn share(total: usize, rounds: usize, round: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// Writes and reads on both systems, alternating between them round by round (the order too),
/// so that both see the same machine.
async fn measure_side_by_side<A, B>(
    a: &mut Subject<A>,
    b: &mut Subject<B>,
    args: &Args,
) -> anyhow::Result<()>
where
    A: System + Send + Sync + 'static,
    B: System + Send + Sync + 'static,
{
    let rounds = args.rounds.max(1);
    // Warm up connections and caches.
    a.writes(4, 25, "warmup").await?;
    b.writes(4, 25, "warmup").await?;
    // Each single-writer round writes keys single-<round>-0-<i>, at most 100 per round.
    let per_round = args.single_writes.div_ceil(rounds).min(100);
    let single_rounds = args.single_writes.div_ceil(per_round.max(1));
    for round in 0..single_rounds {
        let n = per_round.min(args.single_writes - round * per_round);
        let run = format!("single-{round}");
        if round % 2 == 0 {
            a.writes(1, n, &run).await?;
            b.writes(1, n, &run).await?;
        } else {
            b.writes(1, n, &run).await?;
            a.writes(1, n, &run).await?;
        }
    }
    for round in 0..rounds {
        let n = share(args.concurrent_writes, rounds, round);
        let run = format!("concurrent-{round}");
        if round % 2 == 0 {
            a.writes(32, n, &run).await?;
            b.writes(32, n, &run).await?;
        } else {
            b.writes(32, n, &run).await?;
            a.writes(32, n, &run).await?;
        }
    }
    let mut from = 0;
    for round in 0..rounds {
        let n = share(args.reads, rounds, round);
        if round % 2 == 0 {
            a.reads(from, n, (args.single_writes, per_round)).await?;
            b.reads(from, n, (args.single_writes, per_round)).await?;
        } else {
            b.reads(from, n, (args.single_writes, per_round)).await?;
            a.reads(from, n, (args.single_writes, per_round)).await?;
        }
        from += n;
    }
    Ok(())
}

/// Kill -9 of the leader, then writes alternating between the survivors until one succeeds,
/// `kills` times; the times from the kill to that write.
async fn failovers<S: System>(system: &mut S, kills: usize) -> anyhow::Result<Percentiles> {
    let mut failovers = Vec::new();
    for round in 0..kills {
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
    Ok(Percentiles::new(failovers))
}

fn unwrap_system<S>(subject: Subject<S>) -> anyhow::Result<S> {
    match Arc::try_unwrap(subject.system) {
        Ok(system) => Ok(system),
        Err(_) => anyhow::bail!("the load tasks still hold the system"),
    }
}

// ---------------------------------------------------------------------------------------------
// The fsync floor

/// Latencies of one kind of small synced write.
struct Floor {
    what: &'static str,
    took: Percentiles,
}

const FLOOR_WRITE: usize = 400;

/// `count` writes of `FLOOR_WRITE` bytes to `file` from its start, each followed by fdatasync.
fn synced_writes(file: &mut std::fs::File, count: usize) -> std::io::Result<Percentiles> {
    use std::io::{Seek, SeekFrom, Write};
    file.seek(SeekFrom::Start(0))?;
    let record = [b'r'; FLOOR_WRITE];
    let mut took = Vec::with_capacity(count);
    for _ in 0..count {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        took.push(t.elapsed());
    }
    Ok(Percentiles::new(took))
}

/// The fsync floor of the disk under `dir`: the same small synced write appended to a growing
/// file (the file's size changes with every write, so each fdatasync also commits the inode),
/// overwriting a file written and synced before (only the data goes to disk), and as a Raft log
/// append into a new RocksDB.
fn fsync_floor(dir: &Path, count: usize) -> anyhow::Result<Vec<Floor>> {
    let mut floors = Vec::new();
    let mut growing = std::fs::File::create(dir.join("growing"))?;
    growing.sync_all()?;
    floors.push(Floor {
        what: "append to a growing file + fdatasync",
        took: synced_writes(&mut growing, count)?,
    });
    let mut written = std::fs::File::create(dir.join("preallocated"))?;
    std::io::Write::write_all(&mut written, &vec![0; count * FLOOR_WRITE])?;
    written.sync_all()?;
    floors.push(Floor {
        what: "overwrite a written file + fdatasync",
        took: synced_writes(&mut written, count)?,
    });
    let took = kuma_raft::probe_synced_appends(&dir.join("rocksdb"), count, FLOOR_WRITE)
        .map_err(anyhow::Error::msg)?;
    floors.push(Floor { what: "Raft log append (RocksDB, sync)", took: Percentiles::new(took) });
    Ok(floors)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string())
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
                "the cluster did not create the default mesh within 30 s\n{}",
                cluster.peer_states()
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

    /// Each peer: whether it still runs, and the end of its log (for a failed start).
    fn peer_states(&mut self) -> String {
        let mut states = String::new();
        for m in 0..3 {
            let state = match self.children[m].as_mut().map(|c| c.try_wait()) {
                Some(Ok(None)) => "running".to_string(),
                Some(Ok(Some(status))) => format!("exited ({status})"),
                Some(Err(e)) => format!("unknown ({e})"),
                None => "not started".to_string(),
            };
            let log = std::fs::read_to_string(self.dir.path().join(format!("peer-{}.log", m + 1)))
                .unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n    ");
            states.push_str(&format!("peer {}: {state}\n    {tail}\n", m + 1));
        }
        states
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
        "raft-bench targets: 1-writer throughput >= etcd: {}; 1-writer p50 <= etcd: {}; 32-writer throughput >= 1.5 x etcd: {}; p99 <= etcd: {}; failover median < 1 s: {}; max < 2 s: {}",
        kuma.single_ops >= etcd.single_ops,
        kuma.single.at(50.0) <= etcd.single.at(50.0),
        kuma.concurrent_ops >= 1.5 * etcd.concurrent_ops,
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
    let kuma_cp = args.kuma_cp.clone().or_else(|| {
        std::env::current_exe().ok().and_then(|exe| exe.parent().map(|d| d.join("kuma-cp")))
    });
    let Some(kuma_cp) = kuma_cp.filter(|p| p.is_file()) else {
        eprintln!("Error: no kuma-cp next to raft-bench (or at --kuma-cp): build the workspace binaries first (make bench does)");
        return ExitCode::FAILURE;
    };
    println!("raft-bench: load average {} at the start", load_average());
    if args.fsync_writes > 0 {
        let floors = tempfile::tempdir()
            .map_err(anyhow::Error::from)
            .and_then(|dir| fsync_floor(dir.path(), args.fsync_writes));
        match floors {
            Ok(floors) => {
                println!(
                    "fsync floor of {} ({} synced writes of {FLOOR_WRITE} B each):",
                    std::env::temp_dir().display(),
                    args.fsync_writes
                );
                for floor in floors {
                    println!(
                        "  {:<40} p50 {:>6.0} us  p99 {:>6.0} us",
                        floor.what,
                        floor.took.at(50.0).as_secs_f64() * 1e6,
                        floor.took.at(99.0).as_secs_f64() * 1e6
                    );
                }
            }
            Err(e) => {
                eprintln!("Error: measuring the fsync floor: {e:#}");
                return ExitCode::FAILURE;
            }
        }
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    let result = runtime.block_on(async {
        println!("raft-bench: starting 3 etcd members and 3 kuma-cp peers (Raft store)...");
        let mut etcd = Subject::new(Etcd::start(&etcd_bin)?)?;
        let mut kuma = Subject::new(KumaCluster::start(&kuma_cp)?)?;
        println!("raft-bench: measuring both, alternating in {} rounds...", args.rounds.max(1));
        measure_side_by_side(&mut etcd, &mut kuma, &args).await?;
        let (mut etcd_figures, mut kuma_figures) = (etcd.figures(), kuma.figures());
        let (mut etcd, mut kuma) = (unwrap_system(etcd)?, unwrap_system(kuma)?);
        println!("raft-bench: failovers ({} leader kills each)...", args.kills);
        etcd_figures.failover = failovers(&mut etcd, args.kills).await?;
        drop(etcd);
        kuma_figures.failover = failovers(&mut kuma, args.kills).await?;
        anyhow::Ok((etcd_figures, kuma_figures))
    });
    match result {
        Ok((etcd, kuma)) => {
            print(&etcd, &kuma);
            println!("raft-bench: load average {} at the end", load_average());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
