use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub use rustix::process::Signal;
use rustix::process::{kill_process, Pid};

use crate::try_poll_until;

/// A process this test started, with its stdout and stderr in one log file. Dropping it stops
/// it: SIGTERM first (so a kuma-dp stops its Envoy), SIGKILL if it is still there after 5s.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proc {
    /// Starts `program args` with only `env` (and `PATH` unless `env` sets it).
    pub fn spawn(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let dir = tempfile::tempdir().expect("a temp dir");
        let log = dir.path().join("output.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let mut command = Command::new(program);
        command.args(args).env_clear();
        if !env.iter().any(|(k, _)| *k == "PATH") {
            command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        }
        command.envs(env.iter().copied()).stdin(Stdio::null()).stdout(out).stderr(err);
        // ETXTBSY: a file the test just wrote (a copied binary) can still be open for writing in
        // a process that another thread forked meanwhile; it is closed at that process's exec.
        let child = try_poll_until(Duration::from_secs(5), || match command.spawn() {
            Err(e) if e.raw_os_error() == Some(26) => Err(e),
            other => Ok(other),
        })
        .and_then(|spawned| spawned)
        .unwrap_or_else(|e| panic!("spawn {}: {e}", program.display()));
        Proc { child, log, _dir: dir }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` to this process (only ever a process this test started).
    pub fn signal(&self, signal: Signal) {
        kill_process(pid(self.pid()), signal).expect("signal a child of the test");
    }

    /// Waits for the exit, panicking with the log when it takes longer than `deadline`.
    pub fn must_exit_within(&mut self, deadline: Duration) -> Exited {
        let started = Instant::now();
        let status = try_poll_until(deadline, || match self.child.try_wait() {
            Ok(Some(status)) => Ok(status),
            Ok(None) => Err("still running".to_string()),
            Err(e) => panic!("wait: {e}"),
        });
        match status {
            Ok(status) => Exited { status, log: self.log(), took: started.elapsed() },
            Err(_) => {
                panic!("the process did not exit within {deadline:?}; its log:\n{}", self.log())
            }
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.is_running() {
            return;
        }
        let _ = kill_process(pid(self.pid()), Signal::TERM);
        let stopped = try_poll_until(Duration::from_secs(5), || match self.child.try_wait() {
            Ok(None) => Err(()),
            _ => Ok(()),
        });
        if stopped.is_err() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn pid(raw: u32) -> Pid {
    Pid::from_raw(i32::try_from(raw).expect("a pid")).expect("a pid is not 0")
}

/// How a process ended.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub log: String,
    pub took: Duration,
}

impl Exited {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// The one line starting with `Error: `; panics unless there is exactly one.
    pub fn must_error_line(&self) -> String {
        let errors: Vec<&str> = self.log.lines().filter(|l| l.starts_with("Error: ")).collect();
        assert_eq!(errors.len(), 1, "exactly one error line expected in:\n{}", self.log);
        errors[0].to_string()
    }
}
