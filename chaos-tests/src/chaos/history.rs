//! What the workload did: every operation with the client process that ran it, the peer it went
//! to, when it was invoked and when it completed (monotonic, from the start of the run), and its
//! outcome in Jepsen's three kinds: ok, fail (definitely not applied) and info (unknown).

use std::fmt;
use std::time::Duration;

/// A client process of the history. A process runs one operation at a time; after an operation
/// with an unknown outcome its client continues as a new process (Jepsen's rule), since the old
/// operation may still take effect at any later time.
pub type ProcessId = u64;

/// What an operation asked for. Each register (key) holds the last value written to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this value, unique across the whole run.
    Write(u64),
    /// A consistent read.
    Read,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The write was acknowledged (200 or 201).
    Written,
    /// The read returned this value, or `None` for a key that does not exist (404).
    Read(Option<u64>),
    /// Definitely not applied: refused before it was sent, or a definite answer such as 409.
    Failed(String),
    /// May or may not have been applied: a timeout, a broken connection, a 503 on a write.
    Unknown(String),
}

impl Outcome {
    /// `ok`, `fail` or `info`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Written | Outcome::Read(_) => "ok",
            Outcome::Failed(_) => "fail",
            Outcome::Unknown(_) => "info",
        }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, Outcome::Written | Outcome::Read(_))
    }
}

/// One completed call of the workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation {
    pub process: ProcessId,
    pub key: String,
    /// Index of the peer the request went to (peer `i` has Raft node id `i + 1`).
    pub peer: usize,
    pub action: Action,
    /// Taken just before the request was sent.
    pub invoked: Duration,
    /// Taken just after the outcome was known.
    pub completed: Duration,
    pub outcome: Outcome,
}

impl Operation {
    pub fn is_write(&self) -> bool {
        matches!(self.action, Action::Write(_))
    }

    /// One JSON object, for offline analysis of a history.
    pub fn to_json(&self) -> serde_json::Value {
        let (f, value) = match (self.action, &self.outcome) {
            (Action::Write(v), _) => ("write", Some(v)),
            (Action::Read, Outcome::Read(v)) => ("read", *v),
            (Action::Read, _) => ("read", None),
        };
        let error = match &self.outcome {
            Outcome::Failed(e) | Outcome::Unknown(e) => Some(e.clone()),
            _ => None,
        };
        serde_json::json!({
            "process": self.process,
            "type": self.outcome.kind(),
            "f": f,
            "key": self.key,
            "value": value,
            "peer": self.peer + 1,
            "invoked_ns": self.invoked.as_nanos() as u64,
            "completed_ns": self.completed.as_nanos() as u64,
            "error": error,
        })
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            Action::Write(v) => format!("write {v}"),
            Action::Read => "read".to_string(),
        };
        let outcome = match &self.outcome {
            Outcome::Written => "ok".to_string(),
            Outcome::Read(Some(v)) => format!("ok {v}"),
            Outcome::Read(None) => "ok absent".to_string(),
            Outcome::Failed(e) => format!("fail ({e})"),
            Outcome::Unknown(e) => format!("info ({e})"),
        };
        write!(
            f,
            "[{:>9.3}s..{:>9.3}s] p{} peer {} {} {}: {}",
            self.invoked.as_secs_f64(),
            self.completed.as_secs_f64(),
            self.process,
            self.peer + 1,
            self.key,
            action,
            outcome
        )
    }
}

/// Operations counted by outcome kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub ok: usize,
    pub fail: usize,
    pub info: usize,
}

impl OutcomeCounts {
    pub fn of<'a>(ops: impl IntoIterator<Item = &'a Operation>) -> OutcomeCounts {
        let mut counts = OutcomeCounts::default();
        for op in ops {
            match op.outcome.kind() {
                "ok" => counts.ok += 1,
                "fail" => counts.fail += 1,
                _ => counts.info += 1,
            }
        }
        counts
    }

    pub fn total(&self) -> usize {
        self.ok + self.fail + self.info
    }
}

impl fmt::Display for OutcomeCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ok, {} fail, {} info", self.ok, self.fail, self.info)
    }
}
