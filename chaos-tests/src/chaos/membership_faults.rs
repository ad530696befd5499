//! The membership faults of the nemesis. Wiped peer: kill -9 of a peer, its data directory
//! deleted, started again with its old id and the full peer list, which must be refused (a
//! non-zero exit naming `KUMA_STORE_RAFT_JOIN=true`) while the others keep serving; then started
//! with `KUMA_STORE_RAFT_JOIN=true`, it must come back as a voter and catch up. Leader transfer:
//! `POST /status/raft/transfer-leader` as an admin, then the chosen peer must lead.

use std::fmt;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::chaos::error::ChaosError;
use crate::chaos::nemesis::{first_write, Nemesis};

/// How long a peer started on a wiped data directory may take to refuse.
pub const REFUSE_WITHIN: Duration = Duration::from_secs(20);
/// How long after a transfer the chosen peer must lead.
const LEAD_WITHIN: Duration = Duration::from_secs(10);
/// The transfer request's own timeout.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);
/// What a refused peer must tell its operator to set.
pub const JOIN_HINT: &str = "KUMA_STORE_RAFT_JOIN=true";
pub const JOIN: (&str, &str) = ("KUMA_STORE_RAFT_JOIN", "true");

/// One wiped peer.
#[derive(Debug, Clone)]
pub struct WipeRound {
    pub peer: usize,
    pub led: bool,
    /// `Ok` when the start on the empty directory was refused as documented; else what happened.
    pub refused: Result<(), String>,
    /// Kill to the first write acknowledged through the others.
    pub majority_write: Option<Duration>,
    /// Start with `KUMA_STORE_RAFT_JOIN=true` to a voter caught up with a healthy cluster.
    pub rejoined: Option<Duration>,
}

impl WipeRound {
    pub fn failures(&self) -> Vec<String> {
        match &self.refused {
            Ok(()) => Vec::new(),
            Err(what) => vec![format!("wiped peer {}: {what}", self.peer + 1)],
        }
    }
}

impl fmt::Display for WipeRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.led { "leader" } else { "follower" };
        let secs =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.3}s", d.as_secs_f64()));
        let refused = match &self.refused {
            Ok(()) => "refused as documented".to_string(),
            Err(what) => format!("NOT refused: {what}"),
        };
        write!(
            f,
            "peer {} ({role}) wiped: {refused}; others wrote after {}; with {JOIN_HINT} a caught-up \
             voter after {}",
            self.peer + 1,
            secs(self.majority_write),
            secs(self.rejoined)
        )
    }
}

/// One leader transfer.
#[derive(Debug, Clone)]
pub struct TransferRound {
    pub from: usize,
    pub to: usize,
    /// The peer the request went to.
    pub via: usize,
    /// The answer's status and body, or why there was none.
    pub answer: Result<(u16, String), String>,
    /// Request to every peer naming `to` as leader.
    pub led_after: Option<Duration>,
}

impl TransferRound {
    /// A transfer must answer 200 and the chosen peer must lead; either failing is reported on
    /// its own (an error answer for a transfer that happened misleads the operator).
    pub fn failures(&self) -> Vec<String> {
        let to = self.to + 1;
        let mut failures = Vec::new();
        match &self.answer {
            Ok((200, _)) => {}
            Ok((status, body)) => {
                let led = match self.led_after {
                    Some(after) => format!(" although peer {to} led after {after:?}"),
                    None => String::new(),
                };
                failures.push(format!(
                    "transfer-leader to {to} (asked peer {}) answered {status}{led}: {}",
                    self.via + 1,
                    body.trim()
                ));
            }
            Err(e) => failures.push(format!("transfer-leader to {to}: {e}")),
        }
        if self.led_after.is_none() {
            failures
                .push(format!("transfer-leader to {to}: it did not lead within {LEAD_WITHIN:?}"));
        }
        failures
    }
}

impl fmt::Display for TransferRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let answer = match &self.answer {
            Ok((status, _)) => status.to_string(),
            Err(e) => e.clone(),
        };
        write!(
            f,
            "leader {} -> {} (asked peer {}): {answer}, led after {}",
            self.from + 1,
            self.to + 1,
            self.via + 1,
            self.led_after.map_or("never".into(), |d| format!("{:.3}s", d.as_secs_f64()))
        )
    }
}

impl Nemesis<'_> {
    pub(super) async fn wipe_peer(&mut self, of_leader: bool) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let leader = self.cluster.wait_for_leader(within, "before wiping a peer").await?;
        let peer = if of_leader { leader } else { self.other_than(&[leader]) };
        let others: Vec<usize> = (0..self.cluster.len()).filter(|i| *i != peer).collect();
        let ports = self.cluster.api_ports();
        let killed = Instant::now();
        self.cluster.kill(peer);
        self.cluster.wipe(peer)?;
        self.cluster.spawn_with(peer, &[])?;
        let (majority_write, exit) = {
            let write = first_write(&self.api, &ports, &others, &self.values, killed, within);
            let exit = self.cluster.wait_exit(peer, REFUSE_WITHIN);
            tokio::join!(write, exit)
        };
        let log = self.cluster.log_since_start(peer);
        let refused = judge_refusal(exit, &log);
        if refused.is_err() {
            // It took the empty directory as a new peer: start over from an empty one again.
            self.cluster.kill(peer);
            self.cluster.wipe(peer)?;
        }
        let mut round = WipeRound { peer, led: of_leader, refused, majority_write, rejoined: None };
        if majority_write.is_none() {
            self.note(format!("wiped peer: {round}"));
            self.report.wipes.push(round);
            return Err(self.no_write("a write through the peers that were not wiped").await);
        }
        let joined = Instant::now();
        self.cluster.spawn_with(peer, &[JOIN])?;
        self.cluster.wait_ready(peer, within).await?;
        let rejoined =
            self.cluster.wait_healthy(within, &format!("wiping peer {}", peer + 1)).await;
        round.rejoined = rejoined.is_ok().then(|| joined.elapsed());
        self.note(format!("wiped peer: {round}"));
        self.report.wipes.push(round);
        rejoined.map(|_| ())
    }

    pub(super) async fn transfer_leader(&mut self) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let from = self.cluster.wait_for_leader(within, "before a leader transfer").await?;
        let to = self.other_than(&[from]);
        let via = self.rng.random_range(0..self.cluster.len());
        let asked = Instant::now();
        let answer = self.ask_transfer(via, to).await;
        // Whatever the answer, whether the transfer happened.
        let led_after = self.wait_led_by(to, asked).await;
        let round = TransferRound { from, to, via, answer, led_after };
        self.note(format!("transfer: {round}"));
        self.report.transfers.push(round);
        self.cluster.wait_healthy(within, "a leader transfer").await?;
        Ok(())
    }

    /// Moves the leadership to `to` (for another fault's setup): `Err` says why not.
    pub(super) async fn move_leadership(&mut self, to: usize) -> Result<Duration, String> {
        let asked = Instant::now();
        let answer = self.ask_transfer(to, to).await?;
        match (answer, self.wait_led_by(to, asked).await) {
            ((200, _), Some(led)) => Ok(led),
            ((status, body), Some(led)) => {
                self.note(format!(
                    "transfer-leader to {} answered {status} although it led after {led:?}: {}",
                    to + 1,
                    body.trim()
                ));
                Ok(led)
            }
            ((status, body), None) => Err(format!(
                "transfer-leader answered {status} and peer {} did not lead within \
                 {LEAD_WITHIN:?}: {}",
                to + 1,
                body.trim()
            )),
        }
    }

    /// `POST /status/raft/transfer-leader {"to": to}` to peer `via` with the admin token.
    async fn ask_transfer(&mut self, via: usize, to: usize) -> Result<(u16, String), String> {
        let ports = self.cluster.api_ports();
        let token = match &self.admin_token {
            Some(token) => token.clone(),
            None => {
                let token = self.api.admin_token(ports[via], TRANSFER_TIMEOUT).await?;
                self.admin_token = Some(token.clone());
                token
            }
        };
        self.api.transfer_leader(ports[via], to as u64 + 1, &token, TRANSFER_TIMEOUT).await
    }

    /// Waits until every reachable peer names `to` as leader: the time since `since`.
    async fn wait_led_by(&mut self, to: usize, since: Instant) -> Option<Duration> {
        let deadline = Instant::now() + LEAD_WITHIN;
        // Bounded by the deadline.
        while Instant::now() < deadline {
            let reachable = self.cluster.reachable();
            if self.cluster.leader_among(&reachable).await == Some(to) {
                return Some(since.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

/// `Ok` when a start on a wiped directory ended as documented: a non-zero exit and a line
/// naming `KUMA_STORE_RAFT_JOIN=true`.
pub fn judge_refusal(exit: Option<std::process::ExitStatus>, log: &str) -> Result<(), String> {
    let tail = |log: &str| {
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(3)..].join(" | ")
    };
    match exit {
        None => Err(format!("still running {REFUSE_WITHIN:?} after its start: {}", tail(log))),
        Some(status) if status.success() => Err(format!("exited with success: {}", tail(log))),
        Some(status) if !log.contains(JOIN_HINT) => {
            Err(format!("exited ({status}) without naming {JOIN_HINT}: {}", tail(log)))
        }
        Some(_) => Ok(()),
    }
}
