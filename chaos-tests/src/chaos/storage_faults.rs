//! The storage faults of the nemesis. Disk full: the peer whose data directory is a small tmpfs
//! gets it filled; while it is full, writes are sent through it and its `/status/raft` is
//! watched, then the filler is deleted and the peer must recover by itself. Slow fsync: a peer's
//! disk writes are capped through a block-I/O cgroup (`throttle.rs`) while the write latency
//! through the leader is measured.

use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::chaos::api::REGISTER_PREFIX;
use crate::chaos::error::ChaosError;
use crate::chaos::history::Outcome;
use crate::chaos::nemesis::{first_write, Nemesis};
use crate::Percentiles;

/// A write through the full or slowed peer gives up after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between two looks at the full peer's status.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Write latency is measured for this long before a peer is slowed.
const BASELINE_FOR: Duration = Duration::from_secs(2);

/// One round of the disk-full fault.
#[derive(Debug, Clone, Default)]
pub struct DiskFullRound {
    /// The peer's index.
    pub peer: usize,
    /// It led when its disk was filled.
    pub led: bool,
    /// Bytes of filler that fit.
    pub filled: u64,
    /// How long its disk stayed full.
    pub held: Duration,
    /// Fill to the first write acknowledged through the other peers.
    pub majority_write: Option<Duration>,
    /// Writes sent through the full peer: acknowledged, not.
    pub via_peer: (usize, usize),
    /// Fill to the first time the cluster named another leader (when it led).
    pub leadership_moved: Option<Duration>,
    /// At the end of the hold it still led and the last write through it was acknowledged.
    pub acknowledged_at_end: bool,
    /// Fill to the first status in which it said what is wrong, and what it said.
    pub said_why: Option<(Duration, String)>,
    /// Its `GET /status/raft` asked while it was full: answered, not (error or timeout).
    pub status_asked: (usize, usize),
    /// How its process ended on the full disk (then the harness started it again).
    pub exited: Option<String>,
    /// Filler deleted to healthy, caught up and no problem named; `None` when it did not
    /// within the bound (then the harness restarted it).
    pub recovered: Option<Duration>,
}

impl DiskFullRound {
    /// What went wrong, one line each.
    pub fn failures(&self) -> Vec<String> {
        let peer = self.peer + 1;
        let mut failures = Vec::new();
        if self.said_why.is_none() {
            failures.push(format!(
                "peer {peer} did not say why while its disk was full ({:?}: no diskFull or \
                 problem in its GET /status/raft)",
                self.held
            ));
        }
        if self.acknowledged_at_end {
            failures.push(format!(
                "peer {peer} still led and acknowledged writes {:?} after its disk filled",
                self.held
            ));
        }
        if self.recovered.is_none() {
            failures.push(format!(
                "peer {peer} did not recover by itself after its disk had space again"
            ));
        }
        failures
    }
}

impl fmt::Display for DiskFullRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.led { "leader" } else { "follower" };
        let secs =
            |d: Option<Duration>| d.map_or("never".into(), |d| format!("{:.3}s", d.as_secs_f64()));
        write!(
            f,
            "peer {} ({role}) full for {:.1}s: majority wrote after {}, through it {} ok {} not",
            self.peer + 1,
            self.held.as_secs_f64(),
            secs(self.majority_write),
            self.via_peer.0,
            self.via_peer.1,
        )?;
        if self.led {
            write!(f, ", leadership moved after {}", secs(self.leadership_moved))?;
        }
        match &self.said_why {
            Some((after, why)) => {
                write!(f, ", said why after {:.3}s ({why})", after.as_secs_f64())?
            }
            None => write!(f, ", never said why")?,
        }
        if self.status_asked.1 > 0 {
            let (answered, not) = self.status_asked;
            write!(f, " (its status answered {answered} times, not {not} times)")?;
        }
        if let Some(exited) = &self.exited {
            write!(f, ", exited ({exited}) and was restarted")?;
        }
        write!(f, ", recovered {}", secs(self.recovered).replace("never", "not by itself"))
    }
}

/// One round of the slow-fsync fault.
#[derive(Debug, Clone, Default)]
pub struct SlowFsyncRound {
    pub peer: usize,
    pub led: bool,
    /// Writes per second allowed to the slow peer.
    pub iops: u32,
    /// Latency of acknowledged writes through the leader before and while the peer was slow.
    pub before: Vec<Duration>,
    pub during: Vec<Duration>,
    /// Writes through the leader that failed or timed out while the peer was slow.
    pub failed_during: usize,
    /// A synced write on the capped disk, as measured at the start of the run.
    pub capped_synced_write: Duration,
    /// The leader when the peer was made fast again.
    pub leader_after: Option<usize>,
}

impl SlowFsyncRound {
    pub fn median_before(&self) -> Option<Duration> {
        median(&self.before)
    }

    pub fn median_during(&self) -> Option<Duration> {
        median(&self.during)
    }

    /// A slow follower is not in the majority a write needs, so writes must not wait for its
    /// fsyncs: the median write while it is slow stays under one capped synced write.
    pub fn failures(&self) -> Vec<String> {
        let waited = self.median_during().is_none_or(|m| m >= self.capped_synced_write);
        if self.led || !waited {
            return Vec::new();
        }
        vec![format!(
            "writes waited for slow follower {}: median {} while it was slow, {} before (one \
             synced write on its capped disk takes {:?})",
            self.peer + 1,
            ms(self.median_during()),
            ms(self.median_before()),
            self.capped_synced_write
        )]
    }
}

impl fmt::Display for SlowFsyncRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = if self.led { "leader" } else { "follower" };
        write!(
            f,
            "peer {} ({role}) capped at {} writes/s: write median {} (n={}) before, {} (n={}, {} \
             failed) while slow",
            self.peer + 1,
            self.iops,
            ms(self.median_before()),
            self.before.len(),
            ms(self.median_during()),
            self.during.len(),
            self.failed_during,
        )?;
        match self.leader_after {
            Some(l) if self.led && l != self.peer => write!(f, "; leadership moved to {}", l + 1),
            _ => Ok(()),
        }
    }
}

fn median(samples: &[Duration]) -> Option<Duration> {
    (!samples.is_empty()).then(|| Percentiles::new(samples.to_vec()).at(50.0))
}

fn ms(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{:.1}ms", d.as_secs_f64() * 1000.0))
}

/// What the watch of the full peer saw.
#[derive(Debug, Default)]
struct Watched {
    said_why: Option<(Duration, String)>,
    status_asked: (usize, usize),
    leadership_moved: Option<Duration>,
    leader_at_end: Option<u64>,
}

impl Nemesis<'_> {
    pub(super) async fn disk_full(&mut self, as_leader: bool) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let Some((peer, _)) = self.cluster.small_disk() else {
            return Err(ChaosError::Invalid("the disk-full fault needs a small disk".into()));
        };
        let leader = self.cluster.wait_for_leader(within, "before filling a disk").await?;
        if as_leader != (leader == peer) {
            let to = if as_leader { peer } else { self.other_than(&[peer]) };
            if let Err(e) = self.move_leadership(to).await {
                self.note(format!("could not move the leadership for the disk-full fault: {e}"));
            }
        }
        let leader = self.cluster.wait_for_leader(within, "before filling a disk").await?;
        let led = leader == peer;
        let others: Vec<usize> = (0..self.cluster.len()).filter(|i| *i != peer).collect();
        let ports = self.cluster.api_ports();

        let filled = match self.cluster.small_disk() {
            Some((_, disk)) => disk.fill()?,
            None => 0,
        };
        let since = Instant::now();
        let ends = since + self.config.disk_full_for;
        let probe_key = format!("full-{}", peer + 1);
        let (majority_write, via_peer, watched) = tokio::join!(
            first_write(&self.api, &ports, &others, &self.values, since, within),
            self.writes_through(ports[peer], &probe_key, ends),
            self.watch_full_peer(peer, since, ends),
        );
        let held = since.elapsed();
        if let Some((_, disk)) = self.cluster.small_disk() {
            disk.unfill()?;
        }
        let unfilled = Instant::now();
        let (acknowledged, failed, last_ok) = via_peer;
        let mut round = DiskFullRound {
            peer,
            led,
            filled,
            held,
            majority_write,
            via_peer: (acknowledged, failed),
            leadership_moved: watched.leadership_moved,
            acknowledged_at_end: last_ok && watched.leader_at_end == Some(peer as u64 + 1),
            said_why: watched.said_why,
            status_asked: watched.status_asked,
            exited: None,
            recovered: None,
        };
        if let Some(status) = self.cluster.exited(peer) {
            round.exited = Some(status.to_string());
            self.note(format!("peer {} exited on its full disk ({status}): starting it", peer + 1));
            self.cluster.start_peers(&[peer]).await?;
        }
        round.recovered = self.wait_recovered(peer, unfilled).await;
        if round.recovered.is_none() {
            self.note(format!("peer {} did not recover by itself: restarting it", peer + 1));
            self.cluster.kill(peer);
            self.cluster.start_peers(&[peer]).await?;
        }
        self.note(format!("disk full: {round}"));
        self.report.disk_fulls.push(round);
        if majority_write.is_none() {
            return Err(self.no_write("a write through the peers whose disks had space").await);
        }
        self.cluster.wait_healthy(within, &format!("filling peer {}'s disk", peer + 1)).await?;
        Ok(())
    }

    /// Waits until the cluster is healthy with `peer` caught up and `peer` names no problem;
    /// the time from `since`, or `None` after the recovery bound.
    async fn wait_recovered(&mut self, peer: usize, since: Instant) -> Option<Duration> {
        let deadline = since + self.config.recover_within;
        // Bounded by the deadline: each round asks for a status or waits.
        while Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if self.cluster.wait_healthy(left, "a full disk").await.is_err() {
                return None;
            }
            let fine = matches!(
                self.cluster.statuses(&[peer]).await.pop(),
                Some((_, Ok(status))) if status.problems.is_empty()
            );
            if fine {
                return Some(since.elapsed());
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
        None
    }

    /// Writes through the peer at `port`, one after the other, until `ends`: acknowledged,
    /// not, and whether the last one was acknowledged.
    async fn writes_through(&self, port: u16, name: &str, ends: Instant) -> (usize, usize, bool) {
        let (mut ok, mut failed, mut last_ok) = (0, 0, false);
        let key = format!("{REGISTER_PREFIX}probe-{name}");
        // Bounded by `ends`: every attempt takes some time or sleeps.
        loop {
            let left = ends.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(50) {
                return (ok, failed, last_ok);
            }
            let value = self.values.fetch_add(1, Ordering::Relaxed);
            last_ok = self.api.write(port, &key, value, PROBE_TIMEOUT.min(left)).await
                == Outcome::Written;
            if last_ok {
                ok += 1;
            } else {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50).min(left)).await;
            }
        }
    }

    /// Looks at the full peer's status until `ends`: when it first named a problem, when the
    /// others first named another leader, and who led at the end.
    async fn watch_full_peer(&self, peer: usize, since: Instant, ends: Instant) -> Watched {
        let mut watched = Watched::default();
        let all: Vec<usize> = (0..self.cluster.len()).collect();
        let id = peer as u64 + 1;
        // Bounded by `ends`.
        while Instant::now() < ends {
            let statuses = self.cluster.statuses(&all).await;
            let mut leaders = Vec::new();
            for (i, status) in statuses {
                if i == peer {
                    match status {
                        Ok(_) => watched.status_asked.0 += 1,
                        Err(_) => watched.status_asked.1 += 1,
                    }
                }
                let Ok(status) = status else { continue };
                if i == peer && watched.said_why.is_none() && !status.problems.is_empty() {
                    watched.said_why = Some((since.elapsed(), status.problems.join("; ")));
                }
                if i != peer {
                    leaders.extend(status.leader);
                }
            }
            let other_leader = leaders.iter().find(|l| **l != id);
            if other_leader.is_some() && watched.leadership_moved.is_none() {
                watched.leadership_moved = Some(since.elapsed());
            }
            watched.leader_at_end = leaders.first().copied();
            tokio::time::sleep(WATCH_EVERY).await;
        }
        watched
    }

    pub(super) async fn slow_fsync(&mut self, of_leader: bool) -> Result<(), ChaosError> {
        let within = self.config.recover_within;
        let Some(disk) = self.slow_disk.clone() else {
            return Err(ChaosError::Invalid("the slow-fsync fault found no disk to slow".into()));
        };
        // A peer on its own tmpfs has no disk to slow.
        let on_tmpfs = self.cluster.small_disk().map(|(i, _)| i);
        let mut leader = self.cluster.wait_for_leader(within, "before slowing a peer").await?;
        if of_leader && on_tmpfs == Some(leader) {
            let to = self.other_than(&[leader]);
            if let Err(e) = self.move_leadership(to).await {
                self.note(format!("could not move the leadership off the tmpfs peer: {e}"));
            }
            leader = self.cluster.wait_for_leader(within, "before slowing a peer").await?;
        }
        let peer = if of_leader && on_tmpfs != Some(leader) {
            leader
        } else {
            let skip: Vec<usize> = [Some(leader), on_tmpfs].into_iter().flatten().collect();
            self.other_than(&skip)
        };
        let Some(pid) = self.cluster.pid(peer) else {
            return Err(ChaosError::Invalid(format!("peer {} is not running", peer + 1)));
        };
        let port = self.cluster.api_ports()[leader];
        let key = format!("slow-{}", peer + 1);
        let (before, _) = self.timed_writes(port, &key, Instant::now() + BASELINE_FOR).await;
        let iops = self.config.slow_fsync_iops;
        let throttle = disk.slow(pid, iops)?;
        let (during, failed_during) =
            self.timed_writes(port, &key, Instant::now() + self.config.slow_fsync_for).await;
        drop(throttle);
        let reachable = self.cluster.reachable();
        let round = SlowFsyncRound {
            peer,
            led: peer == leader,
            iops,
            before,
            during,
            failed_during,
            capped_synced_write: self.report.capped_synced_write.unwrap_or_default(),
            leader_after: self.cluster.leader_among(&reachable).await,
        };
        self.note(format!("slow fsync: {round}"));
        self.report.slow_fsyncs.push(round);
        self.cluster.wait_healthy(within, &format!("slowing peer {}", peer + 1)).await?;
        Ok(())
    }

    /// Writes through the peer at `port` one after the other until `ends`: the latency of each
    /// acknowledged one, and how many were not.
    async fn timed_writes(&self, port: u16, name: &str, ends: Instant) -> (Vec<Duration>, usize) {
        let key = format!("{REGISTER_PREFIX}probe-{name}");
        let (mut latencies, mut failed) = (Vec::new(), 0);
        // Bounded by `ends`: every attempt takes some time or sleeps.
        while Instant::now() < ends {
            let value = self.values.fetch_add(1, Ordering::Relaxed);
            let started = Instant::now();
            if self.api.write(port, &key, value, PROBE_TIMEOUT).await == Outcome::Written {
                latencies.push(started.elapsed());
            } else {
                failed += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        (latencies, failed)
    }

    /// A random peer not in `skip` (the cluster has more peers than `skip` holds).
    pub(super) fn other_than(&mut self, skip: &[usize]) -> usize {
        let rest: Vec<usize> = (0..self.cluster.len()).filter(|i| !skip.contains(i)).collect();
        rest[self.rng.random_range(0..rest.len())]
    }
}
