//! The outcome of a chaos run: the counts, every check's verdict and the failover times.

use std::fmt;
use std::time::Duration;

use crate::chaos::checker::LinearizabilityReport;
use crate::chaos::history::{Action, Operation, OutcomeCounts};
use crate::chaos::nemesis::NemesisReport;
use crate::Percentiles;

/// Failed checks show at most this many operations each.
const SHOWN: usize = 40;

/// Everything a run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    pub seed: u64,
    pub took: Duration,
    /// The workload's operations and the final reads, by invocation time.
    pub history: Vec<Operation>,
    pub linearizability: LinearizabilityReport,
    /// Acknowledged writes that the final state contradicts.
    pub lost_writes: Vec<Operation>,
    /// Keys with an acknowledged write that a peer does not have at the end (`key on peer N`).
    pub missing: Vec<String>,
    /// Whether every peer ended with identical registers at one applied index; else what
    /// differed.
    pub converged: Result<(), String>,
    /// Writes a cut-off peer acknowledged while it was cut off.
    pub minority_acks: Vec<Operation>,
    /// Writes sent to a cut-off peer and answered while it was cut off.
    pub minority_writes: usize,
    pub nemesis: NemesisReport,
}

impl ChaosReport {
    /// Every check passed.
    pub fn passed(&self) -> bool {
        self.failures().is_empty()
    }

    /// One line per failed check.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        if !self.linearizability.is_linearizable() {
            failures.push(format!("linearizability: {}", self.linearizability.verdict()));
        }
        if !self.lost_writes.is_empty() {
            failures.push(format!("{} acknowledged writes lost", self.lost_writes.len()));
        }
        if !self.missing.is_empty() {
            failures.push(format!("acknowledged keys missing: {}", self.missing.join(", ")));
        }
        if let Err(diff) = &self.converged {
            failures.push(format!("replicas did not converge: {diff}"));
        }
        if !self.minority_acks.is_empty() {
            failures
                .push(format!("a cut-off peer acknowledged {} writes", self.minority_acks.len()));
        }
        let n = &self.nemesis;
        failures.extend(n.disk_fulls.iter().flat_map(|r| r.failures()));
        failures.extend(n.slow_fsyncs.iter().flat_map(|r| r.failures()));
        failures.extend(n.wipes.iter().flat_map(|r| r.failures()));
        failures.extend(n.transfers.iter().flat_map(|r| r.failures()));
        failures
    }

    pub fn ops(&self) -> OutcomeCounts {
        OutcomeCounts::of(&self.history)
    }

    pub fn writes(&self) -> OutcomeCounts {
        OutcomeCounts::of(self.history.iter().filter(|op| op.is_write()))
    }

    pub fn reads(&self) -> OutcomeCounts {
        OutcomeCounts::of(self.history.iter().filter(|op| op.action == Action::Read))
    }

    /// Leader kill to the first acknowledged write.
    pub fn failovers(&self) -> Percentiles {
        Percentiles::new(self.nemesis.failovers.clone())
    }
}

fn distribution(samples: &[Duration]) -> String {
    if samples.is_empty() {
        return "none".to_string();
    }
    let p = Percentiles::new(samples.to_vec());
    let s = |d: Duration| format!("{:.3}s", d.as_secs_f64());
    format!(
        "n={} min {} median {} p99 {} max {}",
        p.len(),
        s(p.min()),
        s(p.at(50.0)),
        s(p.at(99.0)),
        s(p.max())
    )
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = &self.nemesis;
        let lin = &self.linearizability;
        writeln!(f, "chaos run, seed {}, {:.1}s", self.seed, self.took.as_secs_f64())?;
        writeln!(
            f,
            "faults: {} leader kills, {} pauses, {} partitions, {} restarts of every peer, {} disks \
             full, {} slow fsyncs, {} wiped peers, {} leader transfers",
            n.failovers.len(),
            n.pauses,
            n.partitions.len(),
            n.restart_recoveries.len(),
            n.disk_fulls.len(),
            n.slow_fsyncs.len(),
            n.wipes.len(),
            n.transfers.len(),
        )?;
        writeln!(f, "ops: {} ({})", self.ops().total(), self.ops())?;
        writeln!(f, "  writes: {}", self.writes())?;
        writeln!(f, "  reads: {}", self.reads())?;
        writeln!(
            f,
            "linearizability: {} ({} keys, {} ops checked, at most {} per key, {:.1}s)",
            lin.verdict(),
            lin.keys,
            lin.ops_checked,
            lin.max_ops_per_key,
            lin.took.as_secs_f64()
        )?;
        writeln!(f, "lost acknowledged writes: {}", self.lost_writes.len())?;
        writeln!(f, "acknowledged keys missing on a peer: {}", self.missing.len())?;
        match &self.converged {
            Ok(()) => {
                writeln!(f, "replicas: converged (identical registers at one applied index)")?
            }
            Err(diff) => writeln!(f, "replicas: NOT converged:\n{diff}")?,
        }
        writeln!(
            f,
            "cut-off peer: {} of {} writes acknowledged",
            self.minority_acks.len(),
            self.minority_writes
        )?;
        writeln!(
            f,
            "failover (leader kill -> first acknowledged write): {}",
            distribution(&n.failovers)
        )?;
        writeln!(
            f,
            "leader cut off -> first write through the majority: {}",
            distribution(&n.partition_failovers)
        )?;
        writeln!(
            f,
            "leader cut off -> its own status says it no longer leads: {}",
            distribution(&n.cut_leader_step_downs)
        )?;
        writeln!(
            f,
            "every peer restarted -> first write: {}",
            distribution(&n.restart_recoveries)
        )?;
        for round in &n.disk_fulls {
            writeln!(f, "disk full: {round}")?;
        }
        if let Some(synced) = n.capped_synced_write {
            writeln!(f, "slow fsync: one synced 4 KiB write on the capped disk takes {synced:?}")?;
        }
        for round in &n.slow_fsyncs {
            writeln!(f, "slow fsync: {round}")?;
        }
        for round in &n.wipes {
            writeln!(f, "wiped: {round}")?;
        }
        if !n.transfers.is_empty() {
            let led: Vec<Duration> = n.transfers.iter().filter_map(|t| t.led_after).collect();
            let ok = n.transfers.iter().filter(|t| t.failures().is_empty()).count();
            writeln!(
                f,
                "leader transfers: {ok} of {} done; request -> new leader: {}",
                n.transfers.len(),
                distribution(&led)
            )?;
            for round in n.transfers.iter().filter(|t| !t.failures().is_empty()).take(SHOWN) {
                writeln!(f, "  transfer: {round}")?;
            }
        }
        for (key, ops) in lin.violations.iter().take(3) {
            writeln!(f, "history of {key} ({} ops):", ops.len())?;
            for op in ops.iter().take(SHOWN * 3) {
                writeln!(f, "  {op}")?;
            }
        }
        for (what, ops) in [("lost write", &self.lost_writes), ("cut-off ack", &self.minority_acks)]
        {
            for op in ops.iter().take(SHOWN) {
                writeln!(f, "{what}: {op}")?;
            }
        }
        let failures = self.failures();
        if failures.is_empty() {
            write!(f, "verdict: PASS")
        } else {
            write!(f, "verdict: FAIL: {}", failures.join("; "))
        }
    }
}
