//! The PostgreSQL store in kuma-cp: opening it (an unmigrated or newer schema is refused in one
//! line naming the command to run) and `kuma-cp migrate up`. What an instance runs while it
//! shares the database is in `postgres_instance`, the other instances as this one knows them in
//! `postgres_peers`, and the status routes in `postgres_admin`.

use kuma_store_postgres::{PostgresConfig, PostgresError, PostgresStore};
use tracing::info;

/// Why the PostgreSQL store could not be opened or migrated, in one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PostgresStartError {
    #[error(
        "could not reach PostgreSQL at {host}:{port} (check that it runs there and accepts \
         connections, and KUMA_STORE_POSTGRES_HOST, KUMA_STORE_POSTGRES_PORT and \
         KUMA_STORE_POSTGRES_TLS_MODE)"
    )]
    Unreachable { host: String, port: u16, source: PostgresError },
    #[error(
        "PostgreSQL at {host}:{port} refused database {db_name:?} as user {user:?} (check \
         KUMA_STORE_POSTGRES_USER, KUMA_STORE_POSTGRES_PASSWORD, KUMA_STORE_POSTGRES_DB_NAME and \
         the user's permissions)"
    )]
    Refused { host: String, port: u16, user: String, db_name: String, source: PostgresError },
    /// Unmigrated, newer schema, bad config or TLS files: the message says what to do.
    #[error(transparent)]
    Other(PostgresError),
}

impl PostgresStartError {
    fn new(config: &PostgresConfig, e: PostgresError) -> PostgresStartError {
        let (host, port) = (config.host.clone(), config.port);
        match e {
            e @ PostgresError::Unavailable { .. } => {
                PostgresStartError::Unreachable { host, port, source: e }
            }
            e @ PostgresError::Database { .. } => PostgresStartError::Refused {
                host,
                port,
                user: config.user.clone(),
                db_name: config.db_name.clone(),
                source: e,
            },
            other => PostgresStartError::Other(other),
        }
    }
}

/// `kuma-cp migrate up`: the line to print on success.
pub async fn migrate_up(config: &PostgresConfig) -> Result<String, PostgresStartError> {
    config.validate().map_err(|e| PostgresStartError::Other(e.into()))?;
    let report = kuma_store_postgres::migrate_up(config)
        .await
        .map_err(|e| PostgresStartError::new(config, e))?;
    let at = format!("{}:{}/{}", config.host, config.port, config.db_name);
    Ok(if report.applied.is_empty() {
        format!("the PostgreSQL schema at {at} is already at version {}", report.version)
    } else {
        let applied: Vec<String> = report.applied.iter().map(u32::to_string).collect();
        format!(
            "migrated the PostgreSQL schema at {at} to version {} (applied {})",
            report.version,
            applied.join(", ")
        )
    })
}

/// Opens the store; an unmigrated or newer schema is refused with the command to run.
pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore, PostgresStartError> {
    let store =
        PostgresStore::connect(config).await.map_err(|e| PostgresStartError::new(config, e))?;
    info!(host = %config.host, port = config.port, db = %config.db_name, "connected to PostgreSQL");
    Ok(store)
}
