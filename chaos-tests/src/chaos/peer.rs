//! One `kuma-cp run` peer of a chaos cluster: the same ports, environment and data directory on
//! every start, so it can be killed, paused and started again. Signals go only to the process it
//! started itself; dropping it kills that process.

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, Pid, Signal};

use crate::chaos::error::ChaosError;

/// Ports are taken below Linux's ephemeral range (32768-60999): a port in it could be taken as
/// the source port of some client connection while its peer is down between a kill and a
/// restart, and the peer could not listen again.
const FIRST_PORT: u16 = 16_000;
const LAST_PORT: u16 = 32_000;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Where test processes on this machine claim ports, one file per port, so that a test started
/// meanwhile does not bind a port of a peer that is down between a kill and its restart (the
/// protocol of `kuma_test_support::free_port`: a claim is created exclusively and is taken over
/// once it is ten minutes old, so a peer refreshes its claims on every start and kill).
fn claims_dir() -> PathBuf {
    std::env::temp_dir().join("kuma-rs-test-ports")
}

/// Claims `port` for this process; `false` when another process holds a fresh claim.
fn claim(port: u16) -> bool {
    const CLAIM_LIFETIME: Duration = Duration::from_secs(10 * 60);
    let dir = claims_dir();
    if std::fs::create_dir_all(&dir).is_err() {
        return true; // no shared directory: the bind check alone
    }
    let file = dir.join(port.to_string());
    let create = || std::fs::OpenOptions::new().write(true).create_new(true).open(&file).is_ok();
    if create() {
        return true;
    }
    let stale = std::fs::metadata(&file)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > CLAIM_LIFETIME);
    stale && std::fs::remove_file(&file).is_ok() && create()
}

/// Makes this process' claims on `ports` fresh again.
fn refresh_claims(ports: &PeerPorts) {
    for (_, port) in ports.env() {
        let file = claims_dir().join(port.to_string());
        if let Ok(f) =
            std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(&file)
        {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
    }
}

/// Gives up this process' claims on `ports`.
fn release_claims(ports: &PeerPorts) {
    for (_, port) in ports.env() {
        let _ = std::fs::remove_file(claims_dir().join(port.to_string()));
    }
}

/// A port free right now, not handed out before by this process, and claimed against other
/// test processes.
pub fn free_port() -> Result<u16, ChaosError> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    let seed = RandomState::new();
    for attempt in 0..10_000u64 {
        let mut hasher = seed.build_hasher();
        hasher.write_u64(attempt);
        let port = FIRST_PORT + (hasher.finish() % u64::from(LAST_PORT - FIRST_PORT)) as u16;
        if !handed_out.contains(&port)
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
            && claim(port)
        {
            handed_out.insert(port);
            return Ok(port);
        }
    }
    Err(ChaosError::Invalid(format!("no free port between {FIRST_PORT} and {LAST_PORT}")))
}

/// The ports of one peer, each set through its `KUMA_*` variable, picked with `free_port`.
pub type PeerPorts = crate::CpPorts;

/// A peer's ports, none handed out before in this run.
pub fn pick_ports() -> Result<PeerPorts, ChaosError> {
    PeerPorts::pick_with(free_port)
}

/// One peer process (or none, between a kill and a restart).
#[derive(Debug)]
pub struct ChaosPeer {
    /// Raft node id.
    pub id: u64,
    pub ports: PeerPorts,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
    starts: usize,
}

impl ChaosPeer {
    /// A peer that is not started yet: `binary args` with the port variables and `env`, its
    /// Raft data in `data_dir`; its output goes to `log` (appended on every start).
    pub fn new(
        id: u64,
        ports: PeerPorts,
        binary: PathBuf,
        args: Vec<String>,
        env: Vec<(String, String)>,
        data_dir: PathBuf,
        log: PathBuf,
    ) -> ChaosPeer {
        let (child, paused, starts) = (None, false, 0);
        ChaosPeer { id, ports, binary, args, env, data_dir, log, child, paused, starts }
    }

    /// Where the peer keeps its Raft log (`KUMA_STORE_RAFT_DATA_DIR`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process (it must not be running); `wait_ready` waits for it to serve.
    pub fn spawn(&mut self) -> Result<(), ChaosError> {
        self.spawn_with(&[])
    }

    /// `spawn` with more variables for this start only (e.g. `KUMA_STORE_RAFT_JOIN=true`).
    pub fn spawn_with(&mut self, extra: &[(&str, &str)]) -> Result<(), ChaosError> {
        let io = |what: &str| {
            let what = format!("{what} {}", self.log.display());
            move |source| ChaosError::Io { what, source }
        };
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(io("open the peer log"))?;
        self.starts += 1;
        refresh_claims(&self.ports);
        writeln!(log, "--- chaos: start {} of peer {} ---", self.starts, self.id)
            .map_err(io("write the peer log"))?;
        let stderr = log.try_clone().map_err(io("open the peer log"))?;
        let mut command = Command::new(&self.binary);
        command
            .args(&self.args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(stderr);
        for (name, port) in self.ports.env() {
            command.env(name, port.to_string());
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command.envs(extra.iter().copied());
        let child = command
            .spawn()
            .map_err(|source| ChaosError::Spawn { binary: self.binary.clone(), source })?;
        self.child = Some(child);
        self.paused = false;
        Ok(())
    }

    /// Waits until `/ready` answers 200.
    pub async fn wait_ready(&mut self, within: Duration) -> Result<(), ChaosError> {
        let url = format!("http://127.0.0.1:{}/ready", self.ports.diagnostics);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        let deadline = Instant::now() + within;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(ChaosError::Exited {
                    id: self.id,
                    status: status.to_string(),
                    log_tail: self.log_tail(30),
                });
            }
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(ChaosError::NotReady {
                    id: self.id,
                    waited: within,
                    log_tail: self.log_tail(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits up to `within` for the process to exit by itself; its status, or `None` when it
    /// still runs (or was never started).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            match self.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => {
                    self.child = None;
                    return Some(status);
                }
                Some(Ok(None)) if Instant::now() < deadline => {}
                _ => return None,
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The status of a process that has exited by itself since it was started (it is then
    /// forgotten); `None` while it runs.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// What the peer logged since its last start.
    pub fn log_since_start(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let marker = format!("--- chaos: start {} of peer {} ---", self.starts, self.id);
        match log.rfind(&marker) {
            Some(at) => log[at + marker.len()..].trim_start().to_string(),
            None => log,
        }
    }

    /// Whether the process exists (running or paused).
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(Child::try_wait), Some(Ok(None)))
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// SIGKILL, then reaps it. Nothing happens when it is not running.
    pub fn kill(&mut self) {
        refresh_claims(&self.ports);
        if let Some(mut child) = self.child.take() {
            signal(&child, Signal::KILL);
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        if let Some(child) = &self.child {
            signal(child, Signal::STOP);
            self.paused = true;
        }
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        if let Some(child) = &self.child {
            signal(child, Signal::CONT);
        }
        self.paused = false;
    }

    /// The last `lines` lines the peer logged, over all its starts.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

fn signal(child: &Child, signal: Signal) {
    if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

impl Drop for ChaosPeer {
    fn drop(&mut self) {
        self.kill();
        release_claims(&self.ports);
    }
}
