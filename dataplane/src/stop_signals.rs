//! `StopSignals`: SIGTERM, SIGINT and SIGHUP, the signals that ask kuma-dp to stop.

use std::fmt;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// A signal that asks kuma-dp to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    Term,
    Int,
    /// The terminal went away; Envoy gets SIGTERM.
    Hup,
}

impl StopSignal {
    /// The signal sent to Envoy.
    pub fn forwarded(self) -> rustix::process::Signal {
        match self {
            StopSignal::Term | StopSignal::Hup => rustix::process::Signal::TERM,
            StopSignal::Int => rustix::process::Signal::INT,
        }
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StopSignal::Term => "SIGTERM",
            StopSignal::Int => "SIGINT",
            StopSignal::Hup => "SIGHUP",
        })
    }
}

/// The stop signals, caught from the moment this is built: one that arrives while kuma-dp is
/// still fetching the bootstrap or starting Envoy is kept, not lost and not fatal.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl StopSignals {
    /// Installs the handlers. Needs a tokio runtime with I/O enabled.
    pub fn install() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// The next stop signal.
    pub async fn recv(&mut self) -> StopSignal {
        // `recv` gives `None` only when the runtime shuts down; then no signal ever comes.
        tokio::select! {
            Some(()) = self.term.recv() => StopSignal::Term,
            Some(()) = self.int.recv() => StopSignal::Int,
            Some(()) = self.hup.recv() => StopSignal::Hup,
            else => std::future::pending().await,
        }
    }
}
