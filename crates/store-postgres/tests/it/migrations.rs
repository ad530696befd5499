//! Schema migrations: applied once however many run them, refused when missing or newer, and the
//! printed schema equivalent to migrating.

use kuma_store::ResourceStore;
use kuma_store_postgres::{
    migrate_up, schema_sql, schema_status, PostgresError, PostgresStore, SchemaStatus,
    SCHEMA_VERSION,
};

use crate::support::{config_for, must_create_mesh, must_start_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmigrated_database_is_refused_with_one_line_naming_migrate_up() {
    let server = must_start_server().await;
    let config = config_for(&server);
    let status = schema_status(&config).await.unwrap();
    assert_eq!(
        status,
        SchemaStatus::Unmigrated { db: 0, binary: SCHEMA_VERSION, pending: vec![1] }
    );
    let err = PostgresStore::connect(&config).await.unwrap_err();
    assert_eq!(err, PostgresError::Unmigrated { db: 0, binary: SCHEMA_VERSION });
    let line = err.to_string();
    assert!(line.contains("`kuma-cp migrate up`") && !line.contains('\n'), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_migrations_apply_each_version_once_and_a_second_run_changes_nothing() {
    let server = must_start_server().await;
    let config = config_for(&server);
    let runs = (0..4).map(|_| {
        let config = config.clone();
        tokio::spawn(async move { migrate_up(&config).await })
    });
    let reports: Vec<_> = futures::future::join_all(runs)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("migrate up"))
        .collect();
    let applied: Vec<u32> = reports.iter().flat_map(|r| r.applied.clone()).collect();
    assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "{reports:?}");
    assert!(reports.iter().all(|r| r.version == SCHEMA_VERSION));
    assert!(migrate_up(&config).await.unwrap().applied.is_empty());
    assert_eq!(schema_status(&config).await.unwrap(), SchemaStatus::Current);
    let recorded = server.must_psql("kuma", "SELECT count(*) FROM kuma_schema_migrations");
    assert_eq!(recorded, SCHEMA_VERSION.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let server = must_start_server().await;
    let config = config_for(&server);
    migrate_up(&config).await.unwrap();
    server.must_psql(
        "kuma",
        "INSERT INTO kuma_schema_migrations (version, name) VALUES (999, 'from the future')",
    );
    let newer = PostgresError::Newer { db: 999, binary: SCHEMA_VERSION };
    assert_eq!(
        schema_status(&config).await.unwrap(),
        SchemaStatus::Newer { db: 999, binary: SCHEMA_VERSION }
    );
    assert_eq!(PostgresStore::connect(&config).await.unwrap_err(), newer);
    assert_eq!(migrate_up(&config).await.unwrap_err(), newer);
    assert!(!newer.to_string().contains('\n'));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_set_up_from_the_printed_schema_is_current_and_usable() {
    let server = must_start_server().await;
    let config = config_for(&server);
    server.must_psql("kuma", &schema_sql());
    assert_eq!(schema_status(&config).await.unwrap(), SchemaStatus::Current);
    assert!(migrate_up(&config).await.unwrap().applied.is_empty());
    let store = PostgresStore::connect(&config).await.unwrap();
    let mesh = must_create_mesh(&store, "default").await;
    assert_eq!(store.get(&mesh.key).await.unwrap(), mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_as_not_retryable_and_no_password_is_ever_shown() {
    let server = must_start_server().await;
    let mut config = config_for(&server);
    server.must_psql("kuma", "ALTER ROLE kuma PASSWORD 's3cr3t-Pw'");
    let err = migrate_up(&config).await.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("password"), "{err}");
    config.password = "s3cr3t-Pw".into();
    migrate_up(&config).await.unwrap();
    let store = PostgresStore::connect(&config).await.unwrap();
    store.ping().await.unwrap();
    let shown = format!("{store:?} {config:?}");
    assert!(!shown.contains("s3cr3t-Pw"), "{shown}");
}

/// `schema.sql` beside the crate's manifest is `schema_sql()` checked in, so kumactl (which must
/// not link the driver) can print the schema with `include_str!` of that file.
#[test]
fn the_checked_in_schema_file_is_the_printed_schema() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.sql");
    kuma_test_support::golden::must_match(&path, &schema_sql());
}
