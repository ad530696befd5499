//! `PostgresError`: why connecting, migrating or checking the schema failed; and the mapping of
//! driver and pool errors to the store contract's `StoreError`.

use std::path::PathBuf;

use kuma_store::StoreError;

use crate::ConfigError;

/// Why the store could not be opened or the schema not be migrated or checked.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PostgresError {
    #[error("invalid store.postgres config: {0}")]
    Config(#[from] ConfigError),
    /// A TLS file is missing or unreadable, or holds no usable certificate or key.
    #[error("store.postgres.tls: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
    /// The database schema is older than this binary's (or absent).
    #[error(
        "the PostgreSQL schema is at version {db}, this kuma-cp needs version {binary}: \
         run `kuma-cp migrate up`"
    )]
    Unmigrated { db: u32, binary: u32 },
    /// The database schema is newer than this binary knows.
    #[error(
        "the PostgreSQL schema is at version {db}, newer than this kuma-cp knows ({binary}): \
         run a kuma-cp at least as new as the one that ran `kuma-cp migrate up`"
    )]
    Newer { db: u32, binary: u32 },
    /// The database could not be reached or did not answer in time; retrying may succeed.
    #[error("PostgreSQL unavailable: {reason}")]
    Unavailable { reason: String },
    /// The database refused a statement (permissions, a broken schema).
    #[error("PostgreSQL error: {reason}")]
    Database { reason: String },
}

impl PostgresError {
    /// True when the same call may succeed later (the database was down or busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self, PostgresError::Unavailable { .. })
    }
}

impl From<StoreError> for PostgresError {
    fn from(e: StoreError) -> PostgresError {
        match e {
            StoreError::Unavailable { reason } => PostgresError::Unavailable { reason },
            other => PostgresError::Database { reason: other.to_string() },
        }
    }
}

/// A driver error in one line: the server's message and SQLSTATE, or the I/O cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Whether a driver error means "the database is not reachable right now" rather than "it refused
/// this statement": connection and I/O failures, shutdowns, too many connections, transaction
/// rollbacks the server chose (serialization, deadlock).
pub(crate) fn is_transient(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            ["08", "57", "53", "40"].iter().any(|class| code.starts_with(class))
        }
    }
}

/// A driver error as the store contract says it: `Unavailable` when retrying may help.
pub(crate) fn store_error(e: tokio_postgres::Error) -> StoreError {
    if is_transient(&e) {
        StoreError::Unavailable { reason: describe(&e) }
    } else {
        StoreError::Internal { reason: describe(&e) }
    }
}

/// A pool error: a timeout or a failed connection is `Unavailable`.
pub(crate) fn pool_error(e: deadpool_postgres::PoolError) -> StoreError {
    use deadpool_postgres::PoolError;
    match e {
        PoolError::Backend(e) => store_error(e),
        PoolError::Timeout(kind) => StoreError::Unavailable {
            reason: format!("no database connection within the connection timeout ({kind:?})"),
        },
        PoolError::Closed => StoreError::Unavailable { reason: "the pool is closed".into() },
        other => StoreError::Internal { reason: other.to_string() },
    }
}

impl From<tokio_postgres::Error> for PostgresError {
    fn from(e: tokio_postgres::Error) -> PostgresError {
        if is_transient(&e) {
            PostgresError::Unavailable { reason: describe(&e) }
        } else {
            PostgresError::Database { reason: describe(&e) }
        }
    }
}
