//! A real `kuma-cp run` process on free 127.0.0.1 ports, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::time::Instant;

use crate::LoadError;

/// How long kuma-cp may take to answer `/ready`.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long kuma-cp may take to stop after SIGTERM before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(10);
/// Start attempts when a port picked as free was taken before kuma-cp bound it.
const START_ATTEMPTS: usize = 3;

/// The ports of one kuma-cp, every one set through its `KUMA_*` variable.
#[derive(Debug, Clone, Copy)]
pub struct CpPorts {
    pub api: u16,
    pub diagnostics: u16,
    pub bootstrap: u16,
    pub xds: u16,
    pub sds: u16,
    pub raft: u16,
    /// The API over HTTPS.
    pub https: u16,
}

impl CpPorts {
    fn pick() -> Result<CpPorts, std::io::Error> {
        CpPorts::pick_with(free_port)
    }

    /// Every port from `free`, a source of ports nobody listens on.
    pub fn pick_with<E>(mut free: impl FnMut() -> Result<u16, E>) -> Result<CpPorts, E> {
        Ok(CpPorts {
            api: free()?,
            diagnostics: free()?,
            bootstrap: free()?,
            xds: free()?,
            sds: free()?,
            raft: free()?,
            https: free()?,
        })
    }

    /// The `KUMA_*` variable of each port.
    pub fn env(&self) -> [(&'static str, u16); 7] {
        [
            ("KUMA_API_SERVER_PORT", self.api),
            ("KUMA_DIAGNOSTICS_PORT", self.diagnostics),
            ("KUMA_BOOTSTRAP_SERVER_PORT", self.bootstrap),
            ("KUMA_XDS_SERVER_GRPC_PORT", self.xds),
            ("KUMA_SDS_SERVER_GRPC_PORT", self.sds),
            ("KUMA_RAFT_PORT", self.raft),
            ("KUMA_API_SERVER_HTTPS_PORT", self.https),
        ]
    }
}

/// A port nobody listens on right now and not handed out before by this process (the OS's
/// pick of port 0 can repeat, and two servers of one kuma-cp then collide).
fn free_port() -> Result<u16, std::io::Error> {
    crate::chaos::free_port().map_err(std::io::Error::other)
}

/// How to start a kuma-cp.
#[derive(Debug, Clone)]
pub struct KumaCpProcessConfig {
    pub binary: PathBuf,
    /// `--log-level`.
    pub log_level: String,
    /// Where its output goes (kept); `None`: a temporary file, shown only when it fails.
    pub log: Option<PathBuf>,
    /// More environment variables (`KUMA_*`), set after the ports so they can override them.
    pub env: Vec<(String, String)>,
}

/// A running kuma-cp. Dropping it sends SIGTERM, waits a bounded time, then kills it.
#[derive(Debug)]
pub struct KumaCpProcess {
    child: Option<Child>,
    pub ports: CpPorts,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl KumaCpProcess {
    /// Starts kuma-cp as `config` says and waits until `/ready` answers 200.
    pub async fn start(config: &KumaCpProcessConfig) -> Result<KumaCpProcess, LoadError> {
        let mut attempt = 1;
        loop {
            match KumaCpProcess::try_start(config).await {
                Err(LoadError::Exited { log_tail, .. })
                    if attempt < START_ATTEMPTS && log_tail.contains("could not listen") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn try_start(config: &KumaCpProcessConfig) -> Result<KumaCpProcess, LoadError> {
        let binary = &config.binary;
        let spawn_error = |source| LoadError::Spawn { binary: binary.clone(), source };
        let dir = tempfile::tempdir().map_err(spawn_error)?;
        let log = config.log.clone().unwrap_or_else(|| dir.path().join("kuma-cp.log"));
        let ports = CpPorts::pick().map_err(spawn_error)?;
        let stdout = std::fs::File::create(&log).map_err(spawn_error)?;
        let stderr = stdout.try_clone().map_err(spawn_error)?;
        let mut command = Command::new(binary);
        command
            .args(["run", "--log-level", &config.log_level])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            // Never the machine's default data directory, even when the Raft store is chosen.
            .env("KUMA_STORE_RAFT_DATA_DIR", dir.path().join("raft"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr);
        for (name, port) in ports.env() {
            command.env(name, port.to_string());
        }
        command.envs(config.env.iter().map(|(k, v)| (k, v)));
        let child = command.spawn().map_err(spawn_error)?;
        let mut cp = KumaCpProcess { child: Some(child), ports, log, _dir: dir };
        cp.wait_ready().await?;
        Ok(cp)
    }

    async fn wait_ready(&mut self) -> Result<(), LoadError> {
        let url = format!("http://127.0.0.1:{}/ready", self.ports.diagnostics);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(1))
            .build()
            .map_err(|source| LoadError::Http { request: format!("GET {url}"), source })?;
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            self.check_running()?;
            if let Ok(response) = client.get(&url).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(LoadError::NotReady {
                    waited: READY_WITHIN,
                    log_tail: self.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `Err(Exited)` once the process has ended.
    pub fn check_running(&mut self) -> Result<(), LoadError> {
        let status = match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => return Ok(()),
            Some(Ok(Some(status))) => status.to_string(),
            Some(Err(e)) => e.to_string(),
            None => "stopped".to_string(),
        };
        self.child = None;
        Err(LoadError::Exited { status, log_tail: self.log_tail(20) })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Resident set size of the process (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> Result<u64, LoadError> {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map_err(|source| LoadError::Rss { pid, source })?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().strip_suffix("kB"))
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .ok_or_else(|| LoadError::Rss {
                pid,
                source: std::io::Error::other("no VmRSS line in kB"),
            })
    }

    /// The last `lines` lines of what the process logged.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for KumaCpProcess {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = i32::try_from(child.id()).ok().and_then(Pid::from_raw) {
            let _ = kill_process(pid, Signal::TERM);
        }
        let deadline = std::time::Instant::now() + STOP_WITHIN;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
