//! `LeaderLock`: leader-only work among the kuma-cp instances sharing one database, as a lease
//! row (`kuma_leader_leases`) that its holder renews. Expiry is database time (`now() + lease`),
//! so the instances' clocks do not matter. A holder that cannot renew (the database is gone)
//! reports the lock lost once its lease may have run out, before anyone else can take it.

use std::sync::Arc;
use std::time::Duration;

use kuma_store::StoreError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::store_error;
use crate::feed::AbortOnDrop;
use crate::rows::col;
use crate::PostgresStore;

/// The lease of leader-only work in kuma-cp (the name Kuma gives its lock).
pub const LEADER_LOCK_NAME: &str = "kuma-cp-lock";

/// A lease's name and timing. Kuma's: a 5 s lease renewed every second.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderLockConfig {
    pub name: String,
    /// How long a lease lasts past its last renewal.
    pub lease: Duration,
    /// How often the holder renews it, and how often the others try to take it.
    pub renew_every: Duration,
}

impl Default for LeaderLockConfig {
    fn default() -> Self {
        LeaderLockConfig {
            name: LEADER_LOCK_NAME.into(),
            lease: Duration::from_secs(5),
            renew_every: Duration::from_secs(1),
        }
    }
}

/// One instance's side of a lease: a task tries to take it, or renews it while held, every
/// `renew_every`. Dropping it stops trying (the lease then expires within `lease`);
/// [`LeaderLock::release`] hands it over at once.
#[derive(Debug)]
pub struct LeaderLock {
    store: PostgresStore,
    config: Arc<LeaderLockConfig>,
    holder: String,
    leader: watch::Receiver<bool>,
    _task: AbortOnDrop,
}

impl LeaderLock {
    /// Competes for [`LEADER_LOCK_NAME`] as `holder` (the instance id) with Kuma's timing.
    pub fn start(store: &PostgresStore, holder: &str) -> LeaderLock {
        LeaderLock::start_with(store, holder, LeaderLockConfig::default())
    }

    /// Competes for the lease `config` names as `holder`.
    pub fn start_with(store: &PostgresStore, holder: &str, config: LeaderLockConfig) -> LeaderLock {
        let (tell, leader) = watch::channel(false);
        let config = Arc::new(config);
        let task = tokio::spawn(compete(store.clone(), config.clone(), holder.to_string(), tell));
        LeaderLock {
            store: store.clone(),
            config,
            holder: holder.to_string(),
            leader,
            _task: AbortOnDrop(task.abort_handle()),
        }
    }

    /// Whether this instance holds the lease now.
    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Follows leadership: `true` when acquired, `false` when lost.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    pub fn holder(&self) -> &str {
        &self.holder
    }

    /// Stops competing and gives the lease up if this instance holds it, so another instance
    /// can take it at its next try rather than after the lease runs out.
    pub async fn release(self) -> Result<(), StoreError> {
        let LeaderLock { store, config, holder, _task, .. } = self;
        drop(_task);
        store
            .bounded(async {
                let client = store.client().await?;
                client
                    .execute(
                        "DELETE FROM kuma_leader_leases WHERE name = $1 AND holder = $2",
                        &[&config.name, &holder],
                    )
                    .await
                    .map_err(store_error)?;
                Ok(())
            })
            .await
    }
}

/// The holder of the lease `name` whose lease has not run out, if any.
pub async fn current_leader(
    store: &PostgresStore,
    name: &str,
) -> Result<Option<String>, StoreError> {
    store
        .bounded(async {
            let client = store.client().await?;
            let row = client
                .query_opt(
                    "SELECT holder FROM kuma_leader_leases WHERE name = $1 AND expires_at > now()",
                    &[&name],
                )
                .await
                .map_err(store_error)?;
            row.map(|row| col(&row, 0)).transpose()
        })
        .await
}

/// Takes the lease if it is free or expired, or renews it if `holder` has it; true if `holder`
/// holds it now.
async fn try_acquire(
    store: &PostgresStore,
    config: &LeaderLockConfig,
    holder: &str,
) -> Result<bool, StoreError> {
    let lease_ms = config.lease.as_millis() as f64;
    store
        .bounded(async {
            let client = store.client().await?;
            let row = client
                .query_opt(
                    "INSERT INTO kuma_leader_leases AS l (name, holder, expires_at) \
                     VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, \
                     expires_at = EXCLUDED.expires_at \
                     WHERE l.holder = EXCLUDED.holder OR l.expires_at <= now() \
                     RETURNING holder",
                    &[&config.name, &holder, &lease_ms],
                )
                .await
                .map_err(store_error)?;
            Ok(row.is_some())
        })
        .await
}

async fn compete(
    store: PostgresStore,
    config: Arc<LeaderLockConfig>,
    holder: String,
    tell: watch::Sender<bool>,
) {
    // The lease runs from when the database ran the statement, which is after it was sent: a
    // holder counts from the send, and gives up a renewal period early for clock drift.
    let margin = config.renew_every.min(config.lease / 2);
    let mut held_until: Option<Instant> = None;
    let mut tick = tokio::time::interval(config.renew_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let iteration = async {
            tick.tick().await;
            let sent = Instant::now();
            let attempt = try_acquire(&store, &config, &holder);
            (sent, tokio::time::timeout(config.renew_every, attempt).await)
        };
        // While held, the lease's end interrupts whatever is in flight: a renewal that hangs
        // never keeps a lost lease reported as held.
        let outcome = match held_until {
            Some(until) => tokio::select! {
                outcome = iteration => Some(outcome),
                _ = tokio::time::sleep_until(until) => None,
            },
            None => Some(iteration.await),
        };
        match outcome {
            Some((sent, Ok(Ok(true)))) => {
                if held_until.is_none() {
                    tracing::info!(lock = %config.name, holder = %holder, "leader lock acquired");
                }
                held_until = Some(sent + config.lease - margin);
            }
            Some((_, Ok(Ok(false)))) => {
                let was_held = held_until.take().is_some();
                if was_held {
                    tracing::warn!(lock = %config.name, holder = %holder, "leader lock taken by another instance");
                }
            }
            Some((_, Ok(Err(e)))) => {
                tracing::debug!(lock = %config.name, error = %e, "leader lock not renewed");
            }
            Some((_, Err(_))) => {
                tracing::debug!(lock = %config.name, "leader lock renewal timed out")
            }
            None => {}
        }
        if held_until.is_some_and(|until| Instant::now() >= until) {
            tracing::warn!(lock = %config.name, holder = %holder, "leader lock lost: not renewed within the lease");
            held_until = None;
        }
        tell.send_if_modified(|leader| {
            let now = held_until.is_some();
            std::mem::replace(leader, now) != now
        });
    }
}
