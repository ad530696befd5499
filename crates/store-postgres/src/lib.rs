//! The PostgreSQL store: a `ResourceStore` over a bounded connection pool (tokio-postgres with
//! deadpool, TLS through rustls on ring), its versioned schema migrations, the LISTEN/NOTIFY
//! change feed behind `watch`, the leader lease of leader-only work, and the registry of the
//! kuma-cp instances sharing one database.
//!
//! This crate is the only one that links the Postgres driver. It depends only on `kuma-store` and
//! `kuma-model`; never on the API server, xDS, or another backend.
//!
//! # Wiring it into kuma-cp
//!
//! ```text
//! // config: store.postgres (Kuma's keys; KUMA_STORE_POSTGRES_* fill the same fields)
//! let config: PostgresConfig = ...;            // Debug redacts the password
//! config.validate()?;                           // ConfigError: one line per problem
//!
//! // `kuma-cp migrate up`
//! let report = migrate_up(&config).await?;      // idempotent, safe to run concurrently
//!
//! // `kuma-cp run`
//! let pg = PostgresStore::connect(&config).await?;   // cheap to clone
//! //   PostgresError::Unmigrated / Newer: print it (one line naming `kuma-cp migrate up`), exit 1
//! //   PostgresError::Unavailable: the database is not reachable (is_retryable())
//! let store: Arc<dyn ResourceStore> = Arc::new(pg.clone());
//! pg.ping().await                               // readiness (Unavailable when the DB is gone)
//! let _beat = pg.register_instance(&id, "10.0.0.1:5681", "10.0.0.1:5678");  // until dropped
//! let leader = LeaderLock::start(&pg, &id);     // leader.subscribe(): watch::Receiver<bool>
//! pg.instances().await                          // for `kumactl inspect control-planes`
//!
//! // `kumactl install postgres-schema`: kumactl must not link the driver (.ci/check-deps), so it
//! // prints the checked-in `crates/store-postgres/schema.sql` (include_str!), which a test keeps
//! // equal to schema_sql()
//! print!("{}", schema_sql());
//! ```
//!
//! `PostgresConfig` serializes with Kuma's keys (`host`, `port`, `user`, `password`, `dbName`,
//! `connectionTimeout` in seconds, `maxOpenConnections`, `tls.{mode,certPath,keyPath,caPath}`),
//! every field present in its defaults, so kuma-cp's generic `KUMA_*` overlay names them
//! `KUMA_STORE_POSTGRES_HOST` ... `KUMA_STORE_POSTGRES_TLS_CA_PATH`.
//!
//! Failures: a connection error, a pool timeout, or an operation that takes longer than
//! `connection_timeout` is `StoreError::Unavailable` (retryable; the API answers 503). A write
//! that timed out may still have committed, as with any database: retrying a create may then be
//! `AlreadyExists`. The pool (at most `pool_size()` connections, plus the one LISTEN connection)
//! opens new connections as needed, so the store recovers by itself when the database returns.
//! A wrong password or a missing permission is not retryable (`PostgresError::Database`).
//!
//! Watch: every write commits under one advisory lock, draws its revisions from one counter, and
//! logs its events in `kuma_changes` (the latest `kuma_store::HISTORY`). Each store keeps one
//! LISTEN connection (`LISTEN_APPLICATION_NAME` in `pg_stat_activity`) and broadcasts the logged
//! events to its watchers; after that connection drops it re-reads the log from where it was, or
//! ends its watchers' streams with `Compacted` when the log no longer reaches back.

mod config;
mod connect;
mod error;
mod feed;
mod instances;
mod leader;
mod migrations;
mod rows;
mod store;
mod tls;

pub use config::{ConfigError, PostgresConfig, TlsConfig, TlsMode, DEFAULT_POOL_SIZE};
pub use error::PostgresError;
pub use feed::LISTEN_APPLICATION_NAME;
pub use instances::{InstanceHeartbeat, InstanceInfo, ALIVE_WITHIN, HEARTBEAT_EVERY};
pub use leader::{current_leader, LeaderLock, LeaderLockConfig, LEADER_LOCK_NAME};
pub use migrations::{
    migrate_up, schema_sql, schema_status, MigrateReport, Migration, SchemaStatus, MIGRATIONS,
    SCHEMA_VERSION,
};
pub use store::PostgresStore;
