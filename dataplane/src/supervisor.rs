//! Supervising the Envoy child: wait for it, forward a stop signal to it, and kill it when it does
//! not stop within the grace period, so kuma-dp never leaves an orphan Envoy behind.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::process::Child;

use crate::error::format_duration;
use crate::stop_signals::{StopSignal, StopSignals};

/// How Envoy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvoyExit {
    /// It exited with this status.
    Exited(i32),
    /// A signal killed it.
    Signaled(i32),
}

impl EnvoyExit {
    pub fn from_status(status: ExitStatus) -> EnvoyExit {
        match (status.code(), status.signal()) {
            (Some(code), _) => EnvoyExit::Exited(code),
            (None, Some(signal)) => EnvoyExit::Signaled(signal),
            // Neither exited nor signaled (stopped/continued) is not a final status; report it as
            // a failure rather than success.
            (None, None) => EnvoyExit::Exited(1),
        }
    }

    /// The exit code kuma-dp passes on: Envoy's status, or 128 + the signal that killed it, as
    /// a shell reports it.
    pub fn code(self) -> u8 {
        match self {
            EnvoyExit::Exited(code) => (code & 0xff) as u8,
            EnvoyExit::Signaled(signal) => (128 + (signal & 0x7f)) as u8,
        }
    }

    pub fn success(self) -> bool {
        self == EnvoyExit::Exited(0)
    }
}

impl fmt::Display for EnvoyExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EnvoyExit::Exited(code) => write!(f, "exited with status {code}"),
            EnvoyExit::Signaled(signal) => match signal_name(signal) {
                Some(name) => write!(f, "was killed by signal {signal} ({name})"),
                None => write!(f, "was killed by signal {signal}"),
            },
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// How a supervised Envoy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Supervised {
    pub exit: EnvoyExit,
    /// The signal that asked kuma-dp to stop, if one did; `None` means Envoy ended on its own.
    pub stop: Option<StopSignal>,
    /// Envoy did not stop in time and was sent SIGKILL.
    pub killed: bool,
}

/// Waits for `child` to end. On a stop signal, forwards it to Envoy and gives Envoy `grace` to
/// exit; after that, or on a second stop signal, sends SIGKILL. Always returns after the child
/// has been reaped.
pub async fn supervise(
    child: &mut Child,
    signals: &mut StopSignals,
    grace: Duration,
) -> std::io::Result<Supervised> {
    // Taken before any wait: once the child is reaped its pid may belong to someone else, and
    // it is only reaped by the waits below, after which nothing is sent.
    let pid = child.id().and_then(|id| i32::try_from(id).ok()).and_then(Pid::from_raw);
    let stop = tokio::select! {
        status = child.wait() => {
            return Ok(Supervised { exit: EnvoyExit::from_status(status?), stop: None, killed: false });
        }
        stop = signals.recv() => stop,
    };
    tracing::info!(signal = %stop, "stopping Envoy");
    send(pid, stop.forwarded());
    let deadline = tokio::time::sleep(grace);
    tokio::pin!(deadline);
    let why = tokio::select! {
        status = child.wait() => {
            return Ok(Supervised { exit: EnvoyExit::from_status(status?), stop: Some(stop), killed: false });
        }
        () = &mut deadline => format!("Envoy did not stop within {}", format_duration(grace)),
        again = signals.recv() => format!("{again} received while stopping"),
    };
    tracing::warn!("{why}; killing Envoy");
    send(pid, Signal::KILL);
    let status = child.wait().await?;
    Ok(Supervised { exit: EnvoyExit::from_status(status), stop: Some(stop), killed: true })
}

fn send(pid: Option<Pid>, signal: Signal) {
    let Some(pid) = pid else { return };
    if let Err(e) = kill_process(pid, signal) {
        // ESRCH: it has just exited; the wait that follows collects it.
        if e != rustix::io::Errno::SRCH {
            tracing::warn!(pid = pid.as_raw_nonzero().get(), error = %e, "could not signal Envoy");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(EnvoyExit::Exited(0).code(), 0);
        assert_eq!(EnvoyExit::Exited(1).code(), 1);
        assert_eq!(EnvoyExit::Signaled(15).code(), 143);
        assert_eq!(EnvoyExit::Signaled(9).code(), 137);
        assert!(EnvoyExit::Exited(0).success());
        assert!(!EnvoyExit::Signaled(15).success());
    }

    #[test]
    fn exits_read_as_sentences() {
        assert_eq!(EnvoyExit::Exited(1).to_string(), "exited with status 1");
        assert_eq!(EnvoyExit::Signaled(9).to_string(), "was killed by signal 9 (SIGKILL)");
        assert_eq!(EnvoyExit::Signaled(40).to_string(), "was killed by signal 40");
    }

    #[test]
    fn statuses_are_read_from_the_wait_status() {
        assert_eq!(EnvoyExit::from_status(ExitStatus::from_raw(3 << 8)), EnvoyExit::Exited(3));
        assert_eq!(EnvoyExit::from_status(ExitStatus::from_raw(9)), EnvoyExit::Signaled(9));
    }
}
