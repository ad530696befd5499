//! The database going away and coming back, under one store that is never reopened.

use std::time::{Duration, Instant};

use kuma_store::{EventKind, ResourceStore, StoreError};

use crate::support::{
    must_create_mesh, must_eventually, must_migrated_store, must_next_event, route, route_key,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_fast_while_the_database_is_down_and_succeed_again_when_it_returns() {
    let (mut server, config, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    let mut events = store.watch(None).await.unwrap();
    store.ping().await.unwrap();

    tokio::task::block_in_place(|| server.stop());
    let started = Instant::now();
    let err = store.create(route_key("default", "while-down"), route()).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    assert!(err.is_retryable());
    let err = store.ping().await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err:?}");
    let meshes = kuma_store::ListQuery::new(kuma_model::ResourceType::Mesh, None, 10);
    assert!(matches!(store.list(&meshes).await, Err(StoreError::Unavailable { .. })));
    let bound = config.connection_timeout + Duration::from_secs(1);
    assert!(started.elapsed() < bound, "failing took {:?}", started.elapsed());

    tokio::task::block_in_place(|| server.must_start_again());
    let created = must_eventually(Duration::from_secs(20), "a write succeeds", || async {
        store.create(route_key("default", "after"), route()).await.map_err(|e| e.to_string())
    })
    .await;
    store.ping().await.unwrap();
    assert_eq!(store.get(&created.key).await.unwrap(), created);
    // The watcher from before the outage hears of the write after it: the feed reconnected.
    let event = must_next_event(&mut events).await;
    assert_eq!((event.kind, event.key), (EventKind::Created, created.key));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_is_not_there_is_unavailable_within_the_connection_timeout() {
    let (mut server, config, _) = must_migrated_store().await;
    tokio::task::block_in_place(|| server.stop());
    let started = Instant::now();
    let err = kuma_store_postgres::PostgresStore::connect(&config).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < config.connection_timeout + Duration::from_secs(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_stops_answering_makes_operations_unavailable_not_hang() {
    let (server, config, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    let bound = config.connection_timeout + Duration::from_secs(1);
    server.pause();
    for op in ["create", "get", "ping"] {
        let started = Instant::now();
        let result = match op {
            "create" => store.create(route_key("default", "frozen"), route()).await.map(drop),
            "get" => store.get(&route_key("default", "frozen")).await.map(drop),
            _ => store.ping().await,
        };
        let err = result.expect_err("the database does not answer");
        assert!(matches!(err, StoreError::Unavailable { .. }), "{op}: {err:?}");
        assert!(started.elapsed() < bound, "{op} took {:?}", started.elapsed());
    }
    let started = Instant::now();
    let err = kuma_store_postgres::PostgresStore::connect(&config).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = kuma_store_postgres::schema_status(&config).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(started.elapsed() < bound * 2, "connecting took {:?}", started.elapsed());
    server.resume();
    let created = must_eventually(Duration::from_secs(20), "a write succeeds", || async {
        store.create(route_key("default", "thawed"), route()).await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!(store.get(&created.key).await.unwrap(), created);
    let err = store.get(&route_key("default", "frozen")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::NotFound { .. }),
        "the timed-out write was not applied: {err:?}"
    );
}
