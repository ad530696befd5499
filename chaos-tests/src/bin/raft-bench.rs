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
//! Beside them (unless `--no-postgres`): one kuma-cp on the PostgreSQL store, on a real
//! PostgreSQL server started for the run (fsync and synchronous_commit on, schema applied with
//! `kuma-cp migrate up`), given the same writes by the same client. Its write figures are printed
//! in a third column with their ratio to the Raft store's; its server CPU includes every
//! PostgreSQL process. It has no follower and no leader to kill, so it has no read or failover
//! figures.
//!
//! The writes and reads alternate between the two systems in short rounds, so a change in the
//! machine's load (other processes on a shared machine) falls on both alike. Before that it
//! prints the fsync floor of the disk the members write to: what one small synced write costs
//! appended to a growing file, overwriting an already written one, and through the Raft log's
//! RocksDB.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kuma_chaos_tests::Percentiles;
use kuma_test_support::{PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};
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
    /// Leave out the kuma-cp on PostgreSQL (measured by default; needs Debian's postgresql
    /// package, which `make setup-tests` installs).
    #[arg(long = "no-postgres", action = clap::ArgAction::SetFalse)]
    postgres: bool,
    /// An extra environment variable for the Raft peers, NAME=VALUE (repeatable): compares a
    /// setting with one binary, e.g. KUMA_STORE_RAFT_EARLY_REPLICATION=false.
    #[arg(long = "cp-env", value_parser = parse_env)]
    cp_env: Vec<(String, String)>,
    /// Let the etcd members talk plain HTTP to each other (before 2026-12-03 they always did,
    /// while the kuma-cp peers talk mutual TLS, which kuma-cp requires of a cluster).
    #[arg(long)]
    etcd_plain_peers: bool,
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("{text:?} is not NAME=VALUE")),
    }
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
    /// CPU time (user + system) the system's processes have used so far.
    fn cpu(&self) -> Duration {
        cpu_time(&self.pids())
    }
    /// The part of `cpu` a database behind the system used (none for etcd and Raft).
    fn database_cpu(&self) -> Duration {
        Duration::ZERO
    }
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
    /// The database's part of it (PostgreSQL's processes).
    concurrent_database_cpu_per_write: Duration,
    reads: Percentiles,
    failover: Percentiles,
}

/// A free port not handed out before in this run (the OS's pick of port 0 can repeat).
fn free_port() -> u16 {
    kuma_chaos_tests::chaos::free_port().expect("a free port")
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

// Clock ticks per second in /proc/<pid>/stat: 100 on Linux for every architecture this runs on.
const TICKS: u64 = 100;

/// The fields of `/proc/<pid>/stat` after the command name (which may hold spaces and
/// parentheses): the state is field 0, the parent's pid 1, utime 11, stime 12, cutime 13 and
/// cstime 14.
fn stat_fields(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // The state (a letter) reads as 0.
    Some(rest.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0)).collect())
}

/// CPU time (user + system) the processes `pids` have used so far, from `/proc/<pid>/stat`.
fn cpu_time(pids: &[u32]) -> Duration {
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| stat_fields(*pid))
        .filter_map(|fields| Some(fields.get(11)? + fields.get(12)?))
        .sum();
    Duration::from_millis(ticks * 1000 / TICKS)
}

/// CPU time (user + system) of the process `root` and all its descendants so far, including
/// those that already exited and were waited for (their time is in their parent's cutime and
/// cstime), so a PostgreSQL backend that ends between two readings is still counted.
fn tree_cpu_time(root: u32) -> Duration {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(pid).and_then(|f| f.get(1).copied()) {
            parents.push((pid, ppid as u32));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    let ticks: u64 = tree
        .iter()
        .filter_map(|pid| stat_fields(*pid))
        .filter_map(|f| Some(f.get(11)? + f.get(12)? + f.get(13)? + f.get(14)?))
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
    concurrent_database_cpu: Duration,
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
            concurrent_database_cpu: Duration::ZERO,
            reads: Vec::new(),
        })
    }

    async fn writes(&mut self, writers: usize, per_writer: usize, run: &str) -> anyhow::Result<()> {
        let cpu_before = self.system.cpu();
        let database_cpu_before = self.system.database_cpu();
        let (took, latencies) =
            write_load(&self.system, &self.client, self.leader, writers, per_writer, run).await?;
        let into = if writers == 1 { &mut self.single } else { &mut self.concurrent };
        into.0 += took;
        into.1.extend(latencies);
        if writers > 1 {
            self.concurrent_cpu += self.system.cpu().saturating_sub(cpu_before);
            self.concurrent_database_cpu +=
                self.system.database_cpu().saturating_sub(database_cpu_before);
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
            concurrent_database_cpu_per_write: self.concurrent_database_cpu / writes,
            reads: Percentiles::new(std::mem::take(&mut self.reads)),
            failover: Percentiles::default(),
        }
    }
}

/// Splits `total` into `rounds` nearly equal parts.
fn share(total: usize, rounds: usize, round: usize) -> usize {
    total / rounds + usize::from(round < total % rounds)
}

/// Writes and reads on both systems (and the writes on the third, `c`, when there is one),
/// alternating between them round by round (the order too: each round starts with the next
/// system), so that all see the same machine.
async fn measure_side_by_side<A, B, C>(
    a: &mut Subject<A>,
    b: &mut Subject<B>,
    mut c: Option<&mut Subject<C>>,
    args: &Args,
) -> anyhow::Result<()>
where
    A: System + Send + Sync + 'static,
    B: System + Send + Sync + 'static,
    C: System + Send + Sync + 'static,
{
    let rounds = args.rounds.max(1);
    let systems = if c.is_some() { 3 } else { 2 };
    // Writes of `writers` x `n` keys of `run` on each system, starting with system `round`.
    macro_rules! writes_in_turn {
        ($round:expr, $writers:expr, $n:expr, $run:expr) => {
            for turn in 0..systems {
                match ($round + turn) % systems {
                    0 => a.writes($writers, $n, $run).await?,
                    1 => b.writes($writers, $n, $run).await?,
                    _ => {
                        if let Some(c) = c.as_deref_mut() {
                            c.writes($writers, $n, $run).await?;
                        }
                    }
                }
            }
        };
    }
    // Warm up connections and caches.
    writes_in_turn!(0, 4, 25, "warmup");
    // Each single-writer round writes keys single-<round>-0-<i>, at most 100 per round.
    let per_round = args.single_writes.div_ceil(rounds).min(100);
    let single_rounds = args.single_writes.div_ceil(per_round.max(1));
    for round in 0..single_rounds {
        let n = per_round.min(args.single_writes - round * per_round);
        let run = format!("single-{round}");
        writes_in_turn!(round, 1, n, &run);
    }
    for round in 0..rounds {
        let n = share(args.concurrent_writes, rounds, round);
        let run = format!("concurrent-{round}");
        writes_in_turn!(round, 32, n, &run);
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
    /// The members talk mutual TLS to each other (certificates under `dir`).
    peer_tls: bool,
}

/// A CA and a certificate per etcd member for 127.0.0.1, for server and client authentication,
/// written to `dir` as ca.crt and m<N>.crt / m<N>.key: the members' peer traffic is then
/// encrypted and authenticated as the kuma-cp peers' is.
fn etcd_peer_certs(dir: &Path) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
        KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    std::fs::write(dir.join("ca.crt"), ca.self_signed(&ca_key)?.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for m in 0..3 {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()])?;
        params.key_usages =
            vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        std::fs::write(dir.join(format!("m{m}.crt")), params.signed_by(&key, &issuer)?.pem())?;
        std::fs::write(dir.join(format!("m{m}.key")), key.serialize_pem())?;
    }
    Ok(())
}

impl Etcd {
    fn start(bin: &Path, peer_tls: bool) -> anyhow::Result<Etcd> {
        let mut etcd = Etcd {
            bin: bin.to_path_buf(),
            dir: tempfile::tempdir()?,
            clients: [free_port(), free_port(), free_port()],
            peers: [free_port(), free_port(), free_port()],
            children: [None, None, None],
            peer_tls,
        };
        if peer_tls {
            etcd_peer_certs(etcd.dir.path())?;
        }
        for m in 0..3 {
            etcd.spawn(m, true)?;
        }
        Ok(etcd)
    }

    fn spawn(&mut self, m: usize, new: bool) -> anyhow::Result<()> {
        let scheme = if self.peer_tls { "https" } else { "http" };
        let cluster = (0..3)
            .map(|i| format!("m{i}={scheme}://127.0.0.1:{}", self.peers[i]))
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
            .arg(format!("--listen-peer-urls={scheme}://127.0.0.1:{}", self.peers[m]))
            .arg(format!("--initial-advertise-peer-urls={scheme}://127.0.0.1:{}", self.peers[m]))
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
        if self.peer_tls {
            let file = |name: String| self.dir.path().join(name).display().to_string();
            command
                .arg(format!("--peer-cert-file={}", file(format!("m{m}.crt"))))
                .arg(format!("--peer-key-file={}", file(format!("m{m}.key"))))
                .arg(format!("--peer-trusted-ca-file={}", file("ca.crt".to_string())))
                .arg("--peer-client-cert-auth");
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
    env: Vec<(String, String)>,
}

impl KumaCluster {
    /// Starts the cluster on fresh ports, again (up to 3 times) when a port chosen free was taken
    /// by another process before a peer could bind it.
    fn start(binary: &Path, env: &[(String, String)]) -> anyhow::Result<KumaCluster> {
        const ATTEMPTS: usize = 3;
        let mut attempt = 1;
        loop {
            match KumaCluster::start_once(binary, env) {
                Err(e)
                    if attempt < ATTEMPTS && e.to_string().contains("Address already in use") =>
                {
                    eprintln!(
                        "raft-bench: a port chosen free was taken before a peer bound it; starting the cluster again on fresh ports ({attempt} of {ATTEMPTS})"
                    );
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    fn start_once(binary: &Path, env: &[(String, String)]) -> anyhow::Result<KumaCluster> {
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
            env: env.to_vec(),
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

    /// How many early AppendEntries requests the peers sent (`raft_early_appends_total` on each
    /// peer's `/metrics`), by outcome: whether early replication took part in the run.
    async fn early_appends(&self) -> String {
        let mut totals: std::collections::BTreeMap<String, f64> = Default::default();
        for m in 0..3 {
            let Ok(text) =
                kuma_chaos_tests::scrape::metrics_text(self.ports[m][1], Duration::from_secs(2))
                    .await
            else {
                continue;
            };
            for line in text.lines().filter(|l| l.starts_with("raft_early_appends_total{")) {
                let outcome = line.split('"').nth(1).unwrap_or("?").to_string();
                let count = line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
                *totals.entry(outcome).or_default() += count;
            }
        }
        let counts: Vec<String> = totals.iter().map(|(o, n)| format!("{o} {n}")).collect();
        match counts.is_empty() {
            true => "early appends: none (early replication off, or a kuma-cp without it)".into(),
            false => format!("early appends: {}", counts.join(", ")),
        }
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
            .envs(self.env.iter().map(|(name, value)| (name, value)))
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
        kuma_cp_write(client, self.ports[member][0], key)
    }

    fn read(&self, client: &reqwest::Client, member: usize, key: &str) -> reqwest::RequestBuilder {
        kuma_cp_read(client, self.ports[member][0], key)
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

/// The write of record `key` through the resource API of the kuma-cp at `api_port`: a
/// TrafficPermission of ~300 B in the default mesh.
fn kuma_cp_write(client: &reqwest::Client, api_port: u16, key: &str) -> reqwest::RequestBuilder {
    client
        .put(format!("http://127.0.0.1:{api_port}/meshes/default/traffic-permissions/{key}"))
        .json(&json!({
            "type": "TrafficPermission", "mesh": "default", "name": key,
            "sources": [{"match": {"service": value()}}],
            "destinations": [{"match": {"service": "*"}}],
        }))
}

fn kuma_cp_read(client: &reqwest::Client, api_port: u16, key: &str) -> reqwest::RequestBuilder {
    client.get(format!("http://127.0.0.1:{api_port}/meshes/default/traffic-permissions/{key}"))
}

/// Waits until the kuma-cp at `api_port` has created the default mesh (the writes go in it).
fn wait_for_default_mesh(api_port: u16, what: impl Fn() -> String) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !blocking_get(api_port, "/meshes/default").is_some_and(|b| b.contains("\"default\"")) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the default mesh was not created within 30 s\n{}",
            what()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// kuma-cp with the PostgreSQL store

/// Whether Debian's PostgreSQL server is installed (`/usr/lib/postgresql/<version>/bin`, where
/// `PgServer` looks for it).
fn postgres_installed() -> bool {
    std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .any(|entry| entry.path().join("bin/postgres").is_file())
}

/// A real PostgreSQL on 127.0.0.1 with its durability at PostgreSQL's defaults, and one kuma-cp
/// on it (`KUMA_STORE_TYPE=postgres`), its schema applied with `kuma-cp migrate up`.
struct PostgresKuma {
    binary: PathBuf,
    dir: tempfile::TempDir,
    ports: [u16; 6],
    child: Option<Child>,
    /// Dropped after the kuma-cp (see `Drop`).
    pg: PgServer,
}

impl PostgresKuma {
    /// The test launcher's template turns durability off for speed; these put PostgreSQL's
    /// defaults back (and its default cache).
    const SETTINGS: [&'static str; 4] =
        ["fsync=on", "synchronous_commit=on", "full_page_writes=on", "shared_buffers=128MB"];

    fn start(binary: &Path) -> anyhow::Result<PostgresKuma> {
        let pg = PgServer::must_start_with(&Self::SETTINGS, None);
        let mut kuma = PostgresKuma {
            binary: binary.to_path_buf(),
            dir: tempfile::tempdir()?,
            ports: std::array::from_fn(|_| free_port()),
            child: None,
            pg,
        };
        let out = kuma.command().args(["migrate", "up"]).stdin(Stdio::null()).output()?;
        anyhow::ensure!(
            out.status.success(),
            "kuma-cp migrate up: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        kuma.spawn()?;
        wait_for_default_mesh(kuma.ports[0], || kuma.log_tail())?;
        Ok(kuma)
    }

    /// `kuma-cp` with the environment of this database, as a user sets it.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env_clear()
            .env("KUMA_STORE_TYPE", "postgres")
            .env("KUMA_STORE_POSTGRES_HOST", self.pg.host())
            .env("KUMA_STORE_POSTGRES_PORT", self.pg.port().to_string())
            .env("KUMA_STORE_POSTGRES_USER", PG_USER)
            .env("KUMA_STORE_POSTGRES_PASSWORD", PG_PASSWORD)
            .env("KUMA_STORE_POSTGRES_DB_NAME", PG_DATABASE);
        command
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let p = self.ports;
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kuma-cp.log"))?;
        let child = self
            .command()
            .args(["run", "--log-level", "warn"])
            .env("KUMA_API_SERVER_PORT", p[0].to_string())
            .env("KUMA_DIAGNOSTICS_PORT", p[1].to_string())
            .env("KUMA_BOOTSTRAP_SERVER_PORT", p[2].to_string())
            .env("KUMA_XDS_SERVER_GRPC_PORT", p[3].to_string())
            .env("KUMA_SDS_SERVER_GRPC_PORT", p[4].to_string())
            .env("KUMA_API_SERVER_HTTPS_PORT", p[5].to_string())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        Ok(())
    }

    /// The end of kuma-cp's and PostgreSQL's logs (for a failed start).
    fn log_tail(&self) -> String {
        let tail = |log: String| {
            let lines: Vec<&str> = log.lines().collect();
            lines[lines.len().saturating_sub(8)..].join("\n    ")
        };
        let kuma = std::fs::read_to_string(self.dir.path().join("kuma-cp.log")).unwrap_or_default();
        format!("kuma-cp:\n    {}\npostgres:\n    {}", tail(kuma), tail(self.pg.log()))
    }

    /// PostgreSQL's version and durability settings, as the server reports them.
    fn settings(&self) -> String {
        let show = |setting: &str| {
            self.pg.psql(PG_DATABASE, &format!("SHOW {setting}")).unwrap_or_else(|e| e)
        };
        format!(
            "PostgreSQL {}, fsync={}, synchronous_commit={}, full_page_writes={}, wal_sync_method={}",
            show("server_version"),
            show("fsync"),
            show("synchronous_commit"),
            show("full_page_writes"),
            show("wal_sync_method")
        )
    }
}

impl Drop for PostgresKuma {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl System for PostgresKuma {
    fn name(&self) -> &'static str {
        "kuma-cp (PostgreSQL)"
    }

    /// The kuma-cp and the postmaster.
    fn pids(&self) -> Vec<u32> {
        self.child.iter().map(Child::id).chain(self.pg.pid()).collect()
    }

    /// The kuma-cp's, and that of every PostgreSQL process: the postmaster and all its
    /// backends and workers, including those that ended.
    fn cpu(&self) -> Duration {
        cpu_time(&self.child.iter().map(Child::id).collect::<Vec<_>>()) + self.database_cpu()
    }

    fn database_cpu(&self) -> Duration {
        self.pg.pid().map(tree_cpu_time).unwrap_or_default()
    }

    /// One instance: it is member 0, and every member.
    fn leader(&mut self) -> anyhow::Result<usize> {
        Ok(0)
    }

    fn write(&self, client: &reqwest::Client, _: usize, key: &str) -> reqwest::RequestBuilder {
        kuma_cp_write(client, self.ports[0], key)
    }

    fn read(&self, client: &reqwest::Client, _: usize, key: &str) -> reqwest::RequestBuilder {
        kuma_cp_read(client, self.ports[0], key)
    }

    fn kill(&mut self, _: usize) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn restart(&mut self, _: usize) -> anyhow::Result<()> {
        self.spawn()
    }
}

// ---------------------------------------------------------------------------------------------

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The table: etcd, kuma-cp on Raft and its ratio to etcd, and (with `pg`) kuma-cp on PostgreSQL
/// and its ratio to Raft, for the writes (it has no follower reads and no failover).
fn print(etcd: &Figures, kuma: &Figures, pg: Option<&Figures>) {
    let row = |what: &str, e: f64, k: f64, unit: &str, higher_is_better: bool, p: Option<f64>| {
        let ratio = if e > 0.0 { k / e } else { f64::NAN };
        let verdict = if higher_is_better == (ratio >= 1.0) { "ok" } else { "behind" };
        let line =
            format!("{what:<36} {e:>10.1} {k:>10.1} {unit:<5} ratio {ratio:>5.2}  {verdict}");
        match (pg, p) {
            (None, _) => println!("{line}"),
            (Some(_), None) => println!("{line:<84} | {:>10}", "-"),
            (Some(_), Some(p)) => {
                let ratio = if k > 0.0 { p / k } else { f64::NAN };
                println!("{line:<84} | {p:>10.1} {unit:<5} vs Raft {ratio:>5.2}");
            }
        }
    };
    let header = format!("{:<36} {:>10} {:>10}", "", "etcd", "kuma-cp");
    match pg {
        None => println!("{header}"),
        Some(_) => println!("{header:<84} | {:>10}", "kuma-cp on PostgreSQL"),
    }
    let pg_at = |f: fn(&Figures) -> f64| pg.map(f);
    row(
        "writes/s, 1 writer",
        etcd.single_ops,
        kuma.single_ops,
        "op/s",
        true,
        pg_at(|f| f.single_ops),
    );
    row(
        "write p50, 1 writer",
        ms(etcd.single.at(50.0)),
        ms(kuma.single.at(50.0)),
        "ms",
        false,
        pg_at(|f| ms(f.single.at(50.0))),
    );
    row(
        "write p99, 1 writer",
        ms(etcd.single.at(99.0)),
        ms(kuma.single.at(99.0)),
        "ms",
        false,
        pg_at(|f| ms(f.single.at(99.0))),
    );
    row(
        "writes/s, 32 writers",
        etcd.concurrent_ops,
        kuma.concurrent_ops,
        "op/s",
        true,
        pg_at(|f| f.concurrent_ops),
    );
    row(
        "server CPU per write, 32 writers",
        etcd.concurrent_cpu_per_write.as_secs_f64() * 1e6,
        kuma.concurrent_cpu_per_write.as_secs_f64() * 1e6,
        "us",
        false,
        pg_at(|f| f.concurrent_cpu_per_write.as_secs_f64() * 1e6),
    );
    row(
        "write p50, 32 writers",
        ms(etcd.concurrent.at(50.0)),
        ms(kuma.concurrent.at(50.0)),
        "ms",
        false,
        pg_at(|f| ms(f.concurrent.at(50.0))),
    );
    row(
        "write p99, 32 writers",
        ms(etcd.concurrent.at(99.0)),
        ms(kuma.concurrent.at(99.0)),
        "ms",
        false,
        pg_at(|f| ms(f.concurrent.at(99.0))),
    );
    row(
        "consistent read p50, follower",
        ms(etcd.reads.at(50.0)),
        ms(kuma.reads.at(50.0)),
        "ms",
        false,
        None,
    );
    row(
        "consistent read p99, follower",
        ms(etcd.reads.at(99.0)),
        ms(kuma.reads.at(99.0)),
        "ms",
        false,
        None,
    );
    row(
        "leader kill -> first write, median",
        ms(etcd.failover.at(50.0)),
        ms(kuma.failover.at(50.0)),
        "ms",
        false,
        None,
    );
    row(
        "leader kill -> first write, max",
        ms(etcd.failover.max()),
        ms(kuma.failover.max()),
        "ms",
        false,
        None,
    );
    if let Some(pg) = pg {
        println!(
            "kuma-cp on PostgreSQL, server CPU per write at 32 writers: {:.1} us in kuma-cp, {:.1} us in PostgreSQL's processes",
            pg.concurrent_cpu_per_write.saturating_sub(pg.concurrent_database_cpu_per_write).as_secs_f64() * 1e6,
            pg.concurrent_database_cpu_per_write.as_secs_f64() * 1e6,
        );
    }
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
    if args.postgres && !postgres_installed() {
        eprintln!(
            "Error: no PostgreSQL server in /usr/lib/postgresql/<version>/bin: run `make setup-tests` (installs Debian's postgresql package) or pass --no-postgres"
        );
        return ExitCode::FAILURE;
    }
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
        let peers = match args.etcd_plain_peers {
            false => "both with mutual TLS between members",
            true => "etcd's members in plain HTTP (--etcd-plain-peers), kuma-cp's in mutual TLS",
        };
        println!(
            "raft-bench: starting 3 etcd members and 3 kuma-cp peers (Raft store), {peers}..."
        );
        let mut etcd = Subject::new(Etcd::start(&etcd_bin, !args.etcd_plain_peers)?)?;
        let mut kuma = Subject::new(KumaCluster::start(&kuma_cp, &args.cp_env)?)?;
        let mut pg = None;
        if args.postgres {
            println!("raft-bench: starting PostgreSQL and one kuma-cp on it (PostgreSQL store)...");
            let system = PostgresKuma::start(&kuma_cp)?;
            println!("raft-bench: {}", system.settings());
            pg = Some(Subject::new(system)?);
        }
        let all = if pg.is_some() { "all three" } else { "both" };
        println!("raft-bench: measuring {all}, alternating in {} rounds...", args.rounds.max(1));
        measure_side_by_side(&mut etcd, &mut kuma, pg.as_mut(), &args).await?;
        let (mut etcd_figures, mut kuma_figures) = (etcd.figures(), kuma.figures());
        let pg_figures = pg.as_mut().map(Subject::figures);
        drop(pg);
        let (mut etcd, mut kuma) = (unwrap_system(etcd)?, unwrap_system(kuma)?);
        println!("raft-bench: {}", kuma.early_appends().await);
        println!("raft-bench: failovers ({} leader kills each)...", args.kills);
        etcd_figures.failover = failovers(&mut etcd, args.kills).await?;
        drop(etcd);
        kuma_figures.failover = failovers(&mut kuma, args.kills).await?;
        anyhow::Ok((etcd_figures, kuma_figures, pg_figures))
    });
    match result {
        Ok((etcd, kuma, pg)) => {
            print(&etcd, &kuma, pg.as_ref());
            println!("raft-bench: load average {} at the end", load_average());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
