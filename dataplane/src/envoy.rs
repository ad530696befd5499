//! Finding the `envoy` binary and building its command line.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::args::LogLevel;
use crate::error::KumaDpError;

/// The Envoy binary to run: `binary_path` when given (it must be an executable file), else
/// `envoy` in `exe_dir` (the directory of kuma-dp, as Kuma's archives ship them), else `envoy` on
/// `path_env` (`$PATH`).
pub fn find_envoy(
    binary_path: Option<&Path>,
    exe_dir: Option<&Path>,
    path_env: Option<&OsStr>,
) -> Result<PathBuf, KumaDpError> {
    if let Some(path) = binary_path {
        let bad = |reason: String| KumaDpError::BadEnvoyPath { path: path.to_path_buf(), reason };
        let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => bad("there is no such file".to_string()),
            _ => bad(e.to_string()),
        })?;
        if !metadata.is_file() {
            return Err(bad("it is not a file".to_string()));
        }
        if metadata.permissions().mode() & 0o111 == 0 {
            return Err(bad(format!(
                "it is not executable (mode {:o})",
                metadata.permissions().mode() & 0o7777
            )));
        }
        return Ok(path.to_path_buf());
    }
    let sibling = exe_dir.map(|dir| dir.join("envoy"));
    if let Some(sibling) = sibling.as_ref().filter(|p| is_executable(p)) {
        return Ok(sibling.clone());
    }
    if let Some(paths) = path_env {
        for dir in std::env::split_paths(paths) {
            let candidate = dir.join("envoy");
            if is_executable(&candidate) {
                return Ok(candidate);
            }
        }
    }
    Err(KumaDpError::NoEnvoy {
        sibling: sibling
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "envoy next to kuma-dp (its path is unknown)".to_string()),
        path: path_env.map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// `envoy --config-path FILE --base-id N --disable-hot-restart --drain-time-s N --log-level L`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvoyCommand {
    pub binary: PathBuf,
    pub config_path: PathBuf,
    /// Unique per kuma-dp process (its pid), so several Envoys on one host never share the
    /// shared-memory region or domain sockets a base id names.
    pub base_id: u32,
    /// Rounded up to whole seconds, as Envoy takes it.
    pub drain_time: Duration,
    pub log_level: LogLevel,
}

impl EnvoyCommand {
    /// The arguments after the binary.
    pub fn args(&self) -> Vec<OsString> {
        let drain_secs = self.drain_time.as_secs() + u64::from(self.drain_time.subsec_nanos() > 0);
        vec![
            "--config-path".into(),
            self.config_path.clone().into_os_string(),
            "--base-id".into(),
            self.base_id.to_string().into(),
            "--disable-hot-restart".into(),
            "--drain-time-s".into(),
            drain_secs.to_string().into(),
            "--log-level".into(),
            self.log_level.as_envoy().into(),
        ]
    }

    /// The command line as a shell would show it, for the log.
    pub fn display(&self) -> String {
        std::iter::once(self.binary.as_os_str().to_os_string())
            .chain(self.args())
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The child process: stdout and stderr shared with kuma-dp, no stdin, and killed if kuma-dp
    /// drops it without having waited for it (an early return or a panic never leaves an orphan).
    pub fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.binary);
        command
            .args(self.args())
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        command
    }
}

#[cfg(test)]
mod tests;
