//! Checks of a recorded history: per-key linearizability against a register model (stateright's
//! `LinearizabilityTester`), acknowledged writes lost at the end, and writes acknowledged by a
//! peer while it was cut off from the others.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use stateright::semantics::register::{Register, RegisterOp, RegisterRet};
use stateright::semantics::{ConsistencyTester, LinearizabilityTester};

use crate::chaos::history::{Action, Operation, Outcome};

/// One key and its operations.
type KeyHistory = (String, Vec<Operation>);

/// The tester searches depth-first, one frame per operation of a key.
const CHECKER_STACK: usize = 256 * 1024 * 1024;

/// The verdict over every key.
#[derive(Debug, Clone, Default)]
pub struct LinearizabilityReport {
    /// Keys checked.
    pub keys: usize,
    /// Operations that went into the checks (failed writes and reads that returned nothing
    /// have no effect and are left out).
    pub ops_checked: usize,
    /// The largest number of operations of one key.
    pub max_ops_per_key: usize,
    /// Keys whose history is not linearizable, each with its history.
    pub violations: Vec<(String, Vec<Operation>)>,
    /// Keys the checker could not decide within its time budget.
    pub undecided: Vec<String>,
    /// How long the checks took.
    pub took: Duration,
}

impl LinearizabilityReport {
    pub fn is_linearizable(&self) -> bool {
        self.violations.is_empty() && self.undecided.is_empty()
    }

    /// `linearizable`, `NOT linearizable (keys ...)` or `undecided (keys ...)`.
    pub fn verdict(&self) -> String {
        if !self.violations.is_empty() {
            let keys: Vec<&str> = self.violations.iter().map(|(k, _)| k.as_str()).collect();
            format!("NOT linearizable (keys {})", keys.join(", "))
        } else if !self.undecided.is_empty() {
            format!("undecided within the budget (keys {})", self.undecided.join(", "))
        } else {
            "linearizable".to_string()
        }
    }
}

/// Whether an operation can have had an effect on, or observed, the register.
fn matters(op: &Operation) -> bool {
    match (&op.action, &op.outcome) {
        (Action::Read, Outcome::Read(_)) => true,
        (Action::Read, _) => false,
        (Action::Write(_), Outcome::Failed(_)) => false,
        (Action::Write(_), _) => true,
    }
}

/// Checks one key's operations. Events are fed to the tester in real-time order (an invoke
/// before a return taken at the same instant, so they count as concurrent); a write whose
/// outcome is unknown is invoked and never returns, so it may take effect anywhere after its
/// invocation, or never.
pub fn is_linearizable(ops: &[Operation]) -> Result<bool, String> {
    let mut events: Vec<(Duration, bool, usize)> = Vec::new();
    for (i, op) in ops.iter().enumerate().filter(|(_, op)| matters(op)) {
        events.push((op.invoked, false, i));
        if op.outcome.is_ok() {
            events.push((op.completed, true, i));
        }
    }
    events.sort();
    let mut tester = LinearizabilityTester::new(Register(None::<u64>));
    for (_, is_return, i) in events {
        let op = &ops[i];
        if is_return {
            let ret = match op.outcome {
                Outcome::Read(value) => RegisterRet::ReadOk(value),
                _ => RegisterRet::WriteOk,
            };
            tester.on_return(op.process, ret)?;
        } else {
            let invoked = match op.action {
                Action::Write(value) => RegisterOp::Write(Some(value)),
                Action::Read => RegisterOp::Read,
            };
            tester.on_invoke(op.process, invoked)?;
        }
    }
    Ok(tester.serialized_history().is_some())
}

/// Checks every key on `workers` threads; keys not decided within `budget` are reported as
/// undecided (their threads are left to finish on their own).
pub fn check_linearizability(
    ops: &[Operation],
    budget: Duration,
    workers: usize,
) -> LinearizabilityReport {
    let started = Instant::now();
    let mut by_key: BTreeMap<String, Vec<Operation>> = BTreeMap::new();
    for op in ops {
        by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    let mut report = LinearizabilityReport {
        keys: by_key.len(),
        ops_checked: ops.iter().filter(|op| matters(op)).count(),
        max_ops_per_key: by_key.values().map(Vec::len).max().unwrap_or_default(),
        ..LinearizabilityReport::default()
    };
    let jobs: Arc<Mutex<VecDeque<KeyHistory>>> =
        Arc::new(Mutex::new(by_key.clone().into_iter().collect()));
    let (done, results) = mpsc::channel();
    for _ in 0..workers.max(1) {
        let jobs = jobs.clone();
        let done = done.clone();
        let spawned = std::thread::Builder::new()
            .name("linearizability".into())
            .stack_size(CHECKER_STACK)
            .spawn(move || loop {
                let job = jobs.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some((key, ops)) = job else { return };
                let verdict = is_linearizable(&ops);
                if done.send((key, verdict)).is_err() {
                    return;
                }
            });
        if spawned.is_err() {
            break;
        }
    }
    drop(done);
    let deadline = started + budget;
    let mut decided = std::collections::BTreeSet::new();
    while decided.len() < by_key.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match results.recv_timeout(left) {
            Ok((key, verdict)) => {
                match verdict {
                    Ok(true) => {}
                    Ok(false) => report.violations.push((key.clone(), by_key[&key].clone())),
                    // The history itself is malformed (two operations in flight for one
                    // process): a harness bug, reported as a violation with the reason.
                    Err(reason) => {
                        let mut ops = by_key[&key].clone();
                        ops.sort_by_key(|op| op.invoked);
                        report.violations.push((format!("{key} (invalid history: {reason})"), ops));
                    }
                }
                decided.insert(key);
            }
            Err(_) => break,
        }
    }
    report.undecided = by_key.keys().filter(|k| !decided.contains(*k)).cloned().collect();
    // Stop idle workers from picking up more keys.
    jobs.lock().unwrap_or_else(|e| e.into_inner()).clear();
    report.took = started.elapsed();
    report
}

/// Acknowledged writes that the final state contradicts: the key is absent at the end, or its
/// final value was written by a write acknowledged before this one was even invoked.
/// `finals` maps every key to its final value (`None`: absent).
pub fn lost_writes(ops: &[Operation], finals: &BTreeMap<String, Option<u64>>) -> Vec<Operation> {
    let writes: BTreeMap<u64, &Operation> = ops
        .iter()
        .filter_map(|op| match op.action {
            Action::Write(value) => Some((value, op)),
            Action::Read => None,
        })
        .collect();
    ops.iter()
        .filter(|op| op.outcome == Outcome::Written)
        .filter(|op| {
            let Action::Write(value) = op.action else { return false };
            match finals.get(&op.key).copied().flatten() {
                None => true,
                Some(last) if last == value => false,
                Some(last) => match writes.get(&last) {
                    Some(overwriting) => {
                        overwriting.outcome == Outcome::Written
                            && overwriting.completed < op.invoked
                    }
                    // A final value nobody wrote is a violation the linearizability check
                    // reports; here it does not make this write lost.
                    None => false,
                },
            }
        })
        .cloned()
        .collect()
}

/// When a peer was cut off from every other peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionWindow {
    pub peer: usize,
    /// Every link of the peer was cut at this time (from the start of the run).
    pub from: Duration,
    /// The links were healed after this time.
    pub until: Duration,
}

/// Writes sent to a cut-off peer after it was cut and answered before it was healed. A
/// minority can commit nothing, so none of them may be acknowledged.
pub fn sent_to_minority<'a>(
    ops: impl IntoIterator<Item = &'a Operation>,
    windows: &[PartitionWindow],
) -> Vec<&'a Operation> {
    ops.into_iter()
        .filter(|op| op.is_write())
        .filter(|op| {
            windows
                .iter()
                .any(|w| w.peer == op.peer && op.invoked >= w.from && op.completed <= w.until)
        })
        .collect()
}

/// The writes of `sent_to_minority` that were acknowledged: there must be none.
pub fn minority_acks(ops: &[Operation], windows: &[PartitionWindow]) -> Vec<Operation> {
    sent_to_minority(ops, windows)
        .into_iter()
        .filter(|op| op.outcome == Outcome::Written)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests;
