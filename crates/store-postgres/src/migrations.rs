//! Versioned schema migrations, embedded in the binary: `migrate_up` applies the missing ones,
//! `schema_status` compares the database with this binary, `schema_sql` prints the whole schema.

use tokio_postgres::Client;

use crate::connect::Connector;
use crate::{PostgresConfig, PostgresError};

/// One step of the schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; versions count up from 1 without gaps.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "initial",
    sql: include_str!("../migrations/0001_initial.sql"),
}];

/// The schema version this binary reads and writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Serializes concurrent `migrate_up` calls (any constant distinct from the writers' lock).
const MIGRATE_LOCK: i64 = 0x6b75_6d61_6d69_6772; // "kumamigr"

const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS kuma_schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);";

/// How the database's schema compares with this binary's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaStatus {
    /// At this binary's version.
    Current,
    /// Older (or empty, `db` 0): `pending` are the migrations `migrate_up` would apply.
    Unmigrated { db: u32, binary: u32, pending: Vec<u32> },
    /// Newer than this binary knows: a newer kuma-cp migrated it.
    Newer { db: u32, binary: u32 },
}

/// What `migrate_up` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The versions applied by this call, in order (empty when the schema was current).
    pub applied: Vec<u32>,
    /// The schema version now.
    pub version: u32,
}

/// Applies every missing migration in one transaction under an advisory lock, so concurrent
/// callers (several kuma-cp running `migrate up` at once) apply each migration once. Running it
/// on a current schema changes nothing. A schema newer than this binary is `Newer`.
pub async fn migrate_up(config: &PostgresConfig) -> Result<MigrateReport, PostgresError> {
    let connector = Connector::new(config)?;
    let mut client = connector.connect("kuma-cp migrate").await?;
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_LOCK]).await?;
    tx.batch_execute(MIGRATIONS_TABLE).await?;
    let db = applied_version(&tx).await?;
    if db > SCHEMA_VERSION {
        return Err(PostgresError::Newer { db, binary: SCHEMA_VERSION });
    }
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > db) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO kuma_schema_migrations (version, name) VALUES ($1, $2)",
            &[&(migration.version as i32), &migration.name],
        )
        .await?;
        applied.push(migration.version);
    }
    tx.commit().await?;
    if !applied.is_empty() {
        tracing::info!(?applied, version = SCHEMA_VERSION, "PostgreSQL schema migrated");
    }
    Ok(MigrateReport { applied, version: SCHEMA_VERSION })
}

/// How the schema of the database `config` names compares with this binary's.
pub async fn schema_status(config: &PostgresConfig) -> Result<SchemaStatus, PostgresError> {
    let connector = Connector::new(config)?;
    let check = async {
        let client = connector.connect("kuma-cp schema-status").await?;
        status_of(&client).await
    };
    tokio::time::timeout(connector.timeout(), check).await.map_err(|_| {
        PostgresError::Unavailable {
            reason: format!("the database did not answer within {:?}", connector.timeout()),
        }
    })?
}

pub(crate) async fn status_of(client: &Client) -> Result<SchemaStatus, PostgresError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('kuma_schema_migrations') IS NOT NULL", &[])
        .await?
        .get(0);
    let db = if exists { applied_version(client).await? } else { 0 };
    Ok(match db {
        db if db == SCHEMA_VERSION => SchemaStatus::Current,
        db if db > SCHEMA_VERSION => SchemaStatus::Newer { db, binary: SCHEMA_VERSION },
        db => SchemaStatus::Unmigrated {
            db,
            binary: SCHEMA_VERSION,
            pending: MIGRATIONS.iter().map(|m| m.version).filter(|v| *v > db).collect(),
        },
    })
}

async fn applied_version(
    client: &impl tokio_postgres::GenericClient,
) -> Result<u32, PostgresError> {
    let max: Option<i32> =
        client.query_one("SELECT max(version) FROM kuma_schema_migrations", &[]).await?.get(0);
    Ok(max.unwrap_or(0).max(0) as u32)
}

/// The whole schema as one SQL script (what `kumactl install postgres-schema` prints): every
/// migration in one transaction, recorded as applied, so `kuma-cp run` accepts a database set up
/// with it and `kuma-cp migrate up` later applies only newer migrations.
pub fn schema_sql() -> String {
    let mut sql = format!(
        "-- The PostgreSQL schema of kuma-rs, version {SCHEMA_VERSION}.\n\
         -- Apply it to an empty database, e.g. `psql -v ON_ERROR_STOP=1 -f schema.sql`, or let\n\
         -- `kuma-cp migrate up` do it.\nBEGIN;\n\n{MIGRATIONS_TABLE}\n"
    );
    for migration in MIGRATIONS {
        sql.push_str(&format!("\n-- Migration {}: {}\n", migration.version, migration.name));
        sql.push_str(migration.sql.trim_end());
        sql.push_str(&format!(
            "\nINSERT INTO kuma_schema_migrations (version, name) VALUES ({}, '{}');\n",
            migration.version, migration.name
        ));
    }
    sql.push_str("\nCOMMIT;\n");
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one_without_gaps() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version as usize, i + 1, "{}", migration.name);
            assert!(!migration.name.contains('\''), "names go into SQL literals");
        }
    }

    #[test]
    fn the_printed_schema_holds_every_migration_and_records_it() {
        let sql = schema_sql();
        for migration in MIGRATIONS {
            assert!(sql.contains(migration.sql.trim_end()));
            assert!(sql.contains(&format!("VALUES ({}, '{}')", migration.version, migration.name)));
        }
        assert!(sql.trim_end().ends_with("COMMIT;"));
    }
}
