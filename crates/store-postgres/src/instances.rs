//! The registry of kuma-cp instances sharing one database: each heartbeats its row, so any of
//! them (and `kumactl inspect control-planes` through the API) can list the others.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kuma_store::StoreError;

use crate::error::store_error;
use crate::feed::AbortOnDrop;
use crate::rows::col;
use crate::PostgresStore;

/// How often an instance heartbeats its row.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);

/// An instance not seen for this long is listed as not alive.
pub const ALIVE_WITHIN: Duration = Duration::from_secs(10);

/// Rows not seen for this long are removed by the other instances' heartbeats.
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// One registered kuma-cp instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceInfo {
    pub id: String,
    /// Where its HTTP API listens (`host:port`).
    pub api_address: String,
    /// Where its xDS server listens (`host:port`).
    pub xds_address: String,
    pub started_at: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// Seen within [`ALIVE_WITHIN`] (database time).
    pub alive: bool,
}

/// Keeps an instance's row fresh until dropped.
#[derive(Debug)]
pub struct InstanceHeartbeat {
    _task: AbortOnDrop,
}

impl PostgresStore {
    /// Registers this instance and heartbeats its row every [`HEARTBEAT_EVERY`] until the
    /// returned guard is dropped. A failed heartbeat is retried at the next beat.
    pub fn register_instance(
        &self,
        id: &str,
        api_address: &str,
        xds_address: &str,
    ) -> InstanceHeartbeat {
        let store = self.clone();
        let (id, api, xds) = (id.to_string(), api_address.to_string(), xds_address.to_string());
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut registered = false;
            loop {
                tick.tick().await;
                match store.heartbeat(&id, &api, &xds, !registered).await {
                    Ok(()) => registered = true,
                    Err(e) => tracing::debug!(error = %e, "instance heartbeat failed"),
                }
            }
        });
        InstanceHeartbeat { _task: AbortOnDrop(task.abort_handle()) }
    }

    /// Upserts the row; `starting` (the first beat of this process) also resets `started_at`,
    /// for an instance that restarted under the same id.
    async fn heartbeat(
        &self,
        id: &str,
        api: &str,
        xds: &str,
        starting: bool,
    ) -> Result<(), StoreError> {
        let forget = FORGET_AFTER.as_secs_f64();
        self.bounded(async {
            let client = self.client().await?;
            client
                .execute(
                    "INSERT INTO kuma_instances (id, api_address, xds_address, started_at, \
                     last_seen) VALUES ($1, $2, $3, now(), now()) ON CONFLICT (id) DO UPDATE \
                     SET api_address = EXCLUDED.api_address, \
                     xds_address = EXCLUDED.xds_address, last_seen = now(), \
                     started_at = CASE WHEN $4 THEN now() ELSE kuma_instances.started_at END",
                    &[&id, &api, &xds, &starting],
                )
                .await
                .map_err(store_error)?;
            client
                .execute(
                    "DELETE FROM kuma_instances WHERE last_seen < now() - $1::float8 * interval '1 second'",
                    &[&forget],
                )
                .await
                .map_err(store_error)?;
            Ok(())
        })
        .await
    }

    /// Every registered instance, ordered by id.
    pub async fn instances(&self) -> Result<Vec<InstanceInfo>, StoreError> {
        let alive = ALIVE_WITHIN.as_secs_f64();
        self.bounded(async {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT id, api_address, xds_address, started_at, last_seen, \
                     last_seen > now() - $1::float8 * interval '1 second' FROM kuma_instances ORDER BY id",
                    &[&alive],
                )
                .await
                .map_err(store_error)?;
            rows.iter()
                .map(|row| {
                    Ok(InstanceInfo {
                        id: col(row, 0)?,
                        api_address: col(row, 1)?,
                        xds_address: col(row, 2)?,
                        started_at: col(row, 3)?,
                        last_seen: col(row, 4)?,
                        alive: col(row, 5)?,
                    })
                })
                .collect()
        })
        .await
    }
}
