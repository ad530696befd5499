//! `PostgresStore`: the `ResourceStore` on PostgreSQL.
//!
//! Every write runs in one transaction that first takes one advisory lock
//! (`pg_advisory_xact_lock(WRITE_LOCK)`), so writes are serialized from their first statement to
//! their commit: the revisions they draw from the `kuma_revision` counter are in commit order,
//! and a watcher that read revision n has seen every write up to n. Reads take no lock. Each write
//! appends its events to `kuma_changes` (pruned to `HISTORY` rows) and sends `NOTIFY
//! kuma_changes`, delivered at commit; the change feed (`feed.rs`) reads the log from there.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Object, Pool, Transaction};
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use kuma_store::{
    check_key, EventKind, ListPage, ListQuery, ResourceStore, Revision, StoreError, StoreMetrics,
    StoreOp, WatchStream, HISTORY,
};
use tokio_postgres::Statement;

use crate::connect::Connector;
use crate::error::{pool_error, store_error};
use crate::feed::Feed;
use crate::migrations::{status_of, SchemaStatus};
use crate::rows::{
    col, decode_offset, encode_offset, key_columns, kind_name, resource_from, version_number,
    RESOURCE_COLUMNS,
};
use crate::{PostgresConfig, PostgresError};

/// The advisory lock every write transaction takes first (any constant of this schema).
const WRITE_LOCK: i64 = 0x6b75_6d61_7772_6974; // "kumawrit"

/// The channel writes notify and the change feed listens on.
pub(crate) const CHANNEL: &str = "kuma_changes";

/// The PostgreSQL `ResourceStore`. Cheap to clone: clones share the pool and the change feed,
/// which stops when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pub(crate) shared: Arc<Shared>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) pool: Pool,
    pub(crate) connector: Connector,
    feed: Feed,
    metrics: StoreMetrics,
}

impl PostgresStore {
    /// Opens the pool, checks that the schema is this binary's (an unmigrated or newer schema is
    /// refused with one line saying what to run), and starts the change feed. A database that
    /// cannot be reached within the connection timeout is `Unavailable` (retryable).
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore, PostgresError> {
        let connector = Connector::new(config)?;
        let pool = connector.pool(config.pool_size());
        let check = async {
            let client = pool.get().await.map_err(|e| PostgresError::from(pool_error(e)))?;
            match status_of(&client).await? {
                SchemaStatus::Current => {}
                SchemaStatus::Unmigrated { db, binary, .. } => {
                    return Err(PostgresError::Unmigrated { db, binary })
                }
                SchemaStatus::Newer { db, binary } => {
                    return Err(PostgresError::Newer { db, binary })
                }
            }
            current_revision(&client).await.map_err(PostgresError::from)
        };
        let revision = tokio::time::timeout(connector.timeout(), check).await.map_err(|_| {
            PostgresError::Unavailable {
                reason: format!("the database did not answer within {:?}", connector.timeout()),
            }
        })??;
        let feed = Feed::start(pool.clone(), connector.clone(), revision);
        let metrics = StoreMetrics::new("postgres");
        Ok(PostgresStore { shared: Arc::new(Shared { pool, connector, feed, metrics }) })
    }

    /// Readiness: `Ok` when the database answers a query within the connection timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            let client = self.client().await?;
            client.simple_query("SELECT 1").await.map_err(store_error)?;
            Ok(())
        })
        .await
    }

    /// How long one operation may take before it fails with `Unavailable`.
    pub(crate) fn op_timeout(&self) -> Duration {
        self.shared.connector.timeout()
    }

    pub(crate) async fn client(&self) -> Result<Object, StoreError> {
        self.shared.pool.get().await.map_err(pool_error)
    }

    /// Runs `op`, failing with `Unavailable` if it takes longer than the connection timeout:
    /// a database that stopped answering never makes a caller hang.
    pub(crate) async fn bounded<T>(
        &self,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let limit = self.op_timeout();
        match tokio::time::timeout(limit, op).await {
            Ok(result) => result,
            Err(_) => Err(StoreError::Unavailable {
                reason: format!("the database did not answer within {limit:?}"),
            }),
        }
    }

    /// `bounded`, timed as `op` in the `store` histogram.
    async fn timed<T>(
        &self,
        op: StoreOp,
        operation: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.shared.metrics.time(op, self.bounded(operation)).await
    }
}

async fn current_revision(client: &Object) -> Result<u64, StoreError> {
    let row = client
        .query_one(&client.stmt("SELECT revision FROM kuma_revision").await?, &[])
        .await
        .map_err(store_error)?;
    Ok(col::<i64>(&row, 0)? as u64)
}

/// Statements prepared once per connection (deadpool's statement cache): one round trip per
/// statement instead of two.
#[async_trait]
trait Prepared {
    async fn stmt(&self, sql: &str) -> Result<Statement, StoreError>;
}

#[async_trait]
impl Prepared for Transaction<'_> {
    async fn stmt(&self, sql: &str) -> Result<Statement, StoreError> {
        self.prepare_cached(sql).await.map_err(store_error)
    }
}

#[async_trait]
impl Prepared for Object {
    async fn stmt(&self, sql: &str) -> Result<Statement, StoreError> {
        self.prepare_cached(sql).await.map_err(store_error)
    }
}

/// Starts a write transaction: every write holds the one write lock until it commits.
async fn begin_write(client: &mut Object) -> Result<Transaction<'_>, StoreError> {
    let tx = client.transaction().await.map_err(store_error)?;
    tx.execute(&tx.stmt("SELECT pg_advisory_xact_lock($1)").await?, &[&WRITE_LOCK])
        .await
        .map_err(store_error)?;
    Ok(tx)
}

/// Draws `n` revisions; returns the first.
async fn next_revisions(tx: &Transaction<'_>, n: usize) -> Result<i64, StoreError> {
    let row = tx
        .query_one(
            &tx.stmt("UPDATE kuma_revision SET revision = revision + $1 RETURNING revision")
                .await?,
            &[&(n as i64)],
        )
        .await
        .map_err(store_error)?;
    Ok(col::<i64>(&row, 0)? - n as i64 + 1)
}

/// Records a created or updated resource in the change log.
async fn log_resource(
    tx: &Transaction<'_>,
    kind: EventKind,
    resource: &Resource,
    spec_json: &str,
) -> Result<(), StoreError> {
    let (t, mesh, name) = key_columns(&resource.key);
    let revision: i64 = resource.version.0.parse().unwrap_or_default();
    tx.execute(
        &tx.stmt(
            "INSERT INTO kuma_changes (revision, kind, type, mesh, name, version, spec, \
         creation_time, modification_time) VALUES ($1, $2, $3, $4, $5, $1, $6, $7, $8)",
        )
        .await?,
        &[
            &revision,
            &kind_name(kind),
            &t,
            &mesh,
            &name,
            &spec_json,
            &resource.creation_time,
            &resource.modification_time,
        ],
    )
    .await
    .map_err(store_error)?;
    Ok(())
}

/// Prunes the change log to `HISTORY` entries, notifies the listeners (delivered at commit), and
/// commits.
async fn commit_write(tx: Transaction<'_>, last_revision: i64) -> Result<(), StoreError> {
    // One round trip: a data-modifying WITH runs whether or not the outer query reads it.
    tx.execute(
        &tx.stmt(
            "WITH pruned AS (DELETE FROM kuma_changes WHERE revision <= $1) \
             SELECT pg_notify($2, $3)",
        )
        .await?,
        &[&(last_revision - HISTORY as i64), &CHANNEL, &last_revision.to_string()],
    )
    .await
    .map_err(store_error)?;
    tx.commit().await.map_err(store_error)
}

/// The current version of `key`, or `NotFound`; with `expected`, `Conflict` when it differs.
async fn check_version(
    tx: &Transaction<'_>,
    key: &ResourceKey,
    expected: Option<&Version>,
) -> Result<i64, StoreError> {
    let (t, mesh, name) = key_columns(key);
    let row = tx
        .query_opt(
            &tx.stmt(
                "SELECT version FROM kuma_resources WHERE type = $1 AND mesh = $2 AND name = $3",
            )
            .await?,
            &[&t, &mesh, &name],
        )
        .await
        .map_err(store_error)?
        .ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
    let actual: i64 = col(&row, 0)?;
    if let Some(expected) = expected {
        if version_number(expected) != Some(actual) {
            return Err(StoreError::Conflict {
                key: key.clone(),
                expected: expected.clone(),
                actual: Version(actual.to_string()),
            });
        }
    }
    Ok(actual)
}

#[async_trait]
impl ResourceStore for PostgresStore {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.timed(StoreOp::Get, async {
            let client = self.client().await?;
            let (t, mesh, name) = key_columns(key);
            let sql = format!(
                "SELECT {RESOURCE_COLUMNS} FROM kuma_resources \
                 WHERE type = $1 AND mesh = $2 AND name = $3"
            );
            let row = client
                .query_opt(&client.stmt(&sql).await?, &[&t, &mesh, &name])
                .await
                .map_err(store_error)?;
            match row {
                Some(row) => resource_from(&row),
                None => Err(StoreError::NotFound { key: key.clone() }),
            }
        })
        .await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let t = query.resource_type;
        let mesh = query.mesh.as_deref().filter(|_| t.is_mesh_scoped());
        let size = query.size.max(1);
        let (after_mesh, after_name) = match &query.offset {
            Some(offset) => decode_offset(offset)?,
            None => (String::new(), String::new()),
        };
        self.timed(StoreOp::List, async {
            let client = self.client().await?;
            let type_name = t.name();
            let limit = i64::try_from(size).unwrap_or(i64::MAX).saturating_add(1);
            let (total, rows) = match mesh {
                Some(mesh) => {
                    let total = client
                        .query_one(&client.stmt("SELECT count(*) FROM kuma_resources WHERE type = $1 AND mesh = $2").await?,
                            &[&type_name, &mesh],
                        )
                        .await
                        .map_err(store_error)?;
                    let sql = format!(
                        "SELECT {RESOURCE_COLUMNS} FROM kuma_resources \
                         WHERE type = $1 AND mesh = $2 AND (mesh, name) > ($3, $4) \
                         ORDER BY mesh, name LIMIT $5"
                    );
                    let rows = client
                        .query(&client.stmt(&sql).await?, &[&type_name, &mesh, &after_mesh, &after_name, &limit])
                        .await
                        .map_err(store_error)?;
                    (total, rows)
                }
                None => {
                    let total = client
                        .query_one(&client.stmt("SELECT count(*) FROM kuma_resources WHERE type = $1").await?,
                            &[&type_name],
                        )
                        .await
                        .map_err(store_error)?;
                    let sql = format!(
                        "SELECT {RESOURCE_COLUMNS} FROM kuma_resources \
                         WHERE type = $1 AND (mesh, name) > ($2, $3) \
                         ORDER BY mesh, name LIMIT $4"
                    );
                    let rows = client
                        .query(&client.stmt(&sql).await?, &[&type_name, &after_mesh, &after_name, &limit])
                        .await
                        .map_err(store_error)?;
                    (total, rows)
                }
            };
            let total = total.get::<_, i64>(0) as usize;
            let mut items = rows.iter().map(resource_from).collect::<Result<Vec<_>, _>>()?;
            let next = (items.len() > size).then(|| {
                let last = &items[size - 1].key;
                encode_offset(last.mesh.as_deref().unwrap_or(""), &last.name)
            });
            items.truncate(size);
            Ok(ListPage { items, total, next })
        })
        .await
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let spec_json = spec.to_raw_json().get().to_string();
        self.timed(StoreOp::Create, async {
            let mut client = self.client().await?;
            let tx = begin_write(&mut client).await?;
            let (t, mesh, name) = key_columns(&key);
            if let Some(mesh) = &key.mesh {
                let exists = tx
                    .query_opt(&tx.stmt("SELECT 1 FROM kuma_resources WHERE type = $1 AND mesh = '' AND name = $2").await?,
                        &[&ResourceType::Mesh.name(), mesh],
                    )
                    .await
                    .map_err(store_error)?;
                if exists.is_none() {
                    return Err(StoreError::MeshNotFound { mesh: mesh.clone() });
                }
            }
            let revision = next_revisions(&tx, 1).await?;
            let row = tx
                .query_opt(&tx.stmt("INSERT INTO kuma_resources (type, mesh, name, version, spec, creation_time, \
                     modification_time) VALUES ($1, $2, $3, $4, $5, now(), now()) \
                     ON CONFLICT DO NOTHING RETURNING creation_time").await?,
                    &[&t, &mesh, &name, &revision, &spec_json],
                )
                .await
                .map_err(store_error)?
                .ok_or_else(|| StoreError::AlreadyExists { key: key.clone() })?;
            let at: DateTime<Utc> = col(&row, 0)?;
            let resource = Resource {
                key: key.clone(),
                spec: spec.clone(),
                version: Version(revision.to_string()),
                creation_time: at,
                modification_time: at,
            };
            log_resource(&tx, EventKind::Created, &resource, &spec_json).await?;
            commit_write(tx, revision).await?;
            Ok(resource)
        })
        .await
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let spec_json = spec.to_raw_json().get().to_string();
        self.timed(StoreOp::Update, async {
            let mut client = self.client().await?;
            let tx = begin_write(&mut client).await?;
            let current = check_version(&tx, &key, Some(expected)).await?;
            let revision = next_revisions(&tx, 1).await?;
            let (t, mesh, name) = key_columns(&key);
            let row = tx
                .query_opt(&tx.stmt("UPDATE kuma_resources SET spec = $4, version = $5, modification_time = now() \
                     WHERE type = $1 AND mesh = $2 AND name = $3 AND version = $6 \
                     RETURNING creation_time, modification_time").await?,
                    &[&t, &mesh, &name, &spec_json, &revision, &current],
                )
                .await
                .map_err(store_error)?
                .ok_or_else(|| StoreError::Internal {
                    reason: format!("{key} changed under the write lock"),
                })?;
            let resource = Resource {
                key: key.clone(),
                spec: spec.clone(),
                version: Version(revision.to_string()),
                creation_time: col(&row, 0)?,
                modification_time: col(&row, 1)?,
            };
            log_resource(&tx, EventKind::Updated, &resource, &spec_json).await?;
            commit_write(tx, revision).await?;
            Ok(resource)
        })
        .await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        self.timed(StoreOp::Delete, async {
            let mut client = self.client().await?;
            let tx = begin_write(&mut client).await?;
            check_version(&tx, key, expected).await?;
            let (t, mesh, name) = key_columns(key);
            // What the resource owns goes first, so a watcher never sees an orphan.
            let owned = match key.resource_type {
                ResourceType::Mesh => {
                    tx.query(&tx.stmt("DELETE FROM kuma_resources WHERE mesh = $1 AND mesh <> '' \
                         RETURNING type, mesh, name").await?,
                        &[&name],
                    )
                    .await
                }
                ResourceType::Dataplane => {
                    tx.query(&tx.stmt("DELETE FROM kuma_resources WHERE type = $1 AND mesh = $2 AND name = $3 \
                         RETURNING type, mesh, name").await?,
                        &[&ResourceType::DataplaneInsight.name(), &mesh, &name],
                    )
                    .await
                }
                _ => Ok(Vec::new()),
            }
            .map_err(store_error)?;
            tx.execute(&tx.stmt("DELETE FROM kuma_resources WHERE type = $1 AND mesh = $2 AND name = $3").await?,
                &[&t, &mesh, &name],
            )
            .await
            .map_err(store_error)?;
            let mut keys: Vec<(String, String, String)> =
                owned
                    .iter()
                    .map(|row| Ok((col(row, 0)?, col(row, 1)?, col(row, 2)?)))
                    .collect::<Result<_, StoreError>>()?;
            keys.sort();
            keys.push((t.to_string(), mesh.to_string(), name.to_string()));
            let first = next_revisions(&tx, keys.len()).await?;
            let revisions: Vec<i64> = (first..first + keys.len() as i64).collect();
            let (types, meshes, names): (Vec<String>, Vec<String>, Vec<String>) =
                keys.into_iter().fold(Default::default(), |mut cols, (t, m, n)| {
                    cols.0.push(t);
                    cols.1.push(m);
                    cols.2.push(n);
                    cols
                });
            tx.execute(&tx.stmt("INSERT INTO kuma_changes (revision, kind, type, mesh, name) \
                 SELECT r, 'deleted', t, m, n FROM unnest($1::bigint[], $2::text[], $3::text[], \
                 $4::text[]) AS u(r, t, m, n)").await?,
                &[&revisions, &types, &meshes, &names],
            )
            .await
            .map_err(store_error)?;
            commit_write(tx, *revisions.last().expect("at least the key itself")).await
        })
        .await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.timed(StoreOp::Revision, async {
            let client = self.client().await?;
            Ok(Revision(current_revision(&client).await?))
        })
        .await
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        // Subscribe before reading the log: an event committed after the read is then in the
        // live feed, and one in both is passed on once.
        let live = self.shared.feed.subscribe();
        let replay = self
            .bounded(async {
                let client = self.client().await?;
                let current = current_revision(&client).await?;
                let from = from.map_or(current, |r| r.0);
                let events = crate::feed::read_log(&client, from).await?;
                Ok((from, events))
            })
            .await?;
        let (from, events) = replay;
        Ok(crate::feed::watch_stream(from, events, live))
    }
}
