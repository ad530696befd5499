//! The change feed across connections and instances.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kuma_store::{EventKind, ResourceStore, Revision, StoreError};
use kuma_store_postgres::{PostgresStore, LISTEN_APPLICATION_NAME};

use crate::support::{
    must_create_mesh, must_eventually, must_migrated_store, must_next_event, route, route_key,
};

/// Terminates every LISTEN connection of the stores on `server`; how many it terminated.
fn kill_listen_connections(server: &kuma_test_support::PgServer) -> usize {
    let sql = format!(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE application_name = '{LISTEN_APPLICATION_NAME}'"
    );
    server.must_psql("kuma", &sql).parse().expect("a count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_misses_no_event_when_the_listen_connection_is_killed_during_writes() {
    let (server, _, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    let mut events = store.watch(None).await.unwrap();
    let killed = Arc::new(AtomicBool::new(false));
    let writer = {
        let store = store.clone();
        let killed = killed.clone();
        tokio::spawn(async move {
            let mut written = 0;
            while written < 50 || !killed.load(Ordering::SeqCst) {
                let key = route_key("default", &format!("r-{written:04}"));
                store.create(key, route()).await.unwrap();
                written += 1;
            }
            written
        })
    };
    // Kill the listening connection three times while the writes go on, each time once the
    // feed has connected again.
    for _ in 0..3 {
        must_eventually(Duration::from_secs(10), "a LISTEN connection is killed", || async {
            match tokio::task::block_in_place(|| kill_listen_connections(&server)) {
                0 => Err("no LISTEN connection".to_string()),
                _ => Ok(()),
            }
        })
        .await;
    }
    killed.store(true, Ordering::SeqCst);
    let written = writer.await.unwrap();
    let mut last = None::<Revision>;
    for i in 0..written {
        let event = must_next_event(&mut events).await;
        assert_eq!(event.kind, EventKind::Created);
        assert_eq!(event.key, route_key("default", &format!("r-{i:04}")));
        if let Some(last) = last {
            assert_eq!(event.revision.0, last.0 + 1, "no revision skipped");
        }
        last = Some(event.revision);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_store_reaches_the_watchers_of_another_on_the_same_database() {
    let (_server, config, a) = must_migrated_store().await;
    let b = PostgresStore::connect(&config).await.unwrap();
    let mut on_b = b.watch(None).await.unwrap();
    let mesh = must_create_mesh(&a, "default").await;
    let event = must_next_event(&mut on_b).await;
    assert_eq!(event.resource.as_deref(), Some(&mesh));
    assert_eq!(b.get(&mesh.key).await.unwrap(), mesh);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_before_the_kept_log_is_compacted() {
    let (server, _, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    for i in 0..3 {
        store.create(route_key("default", &format!("r-{i}")), route()).await.unwrap();
    }
    // As if the log had been pruned past revision 2.
    server.must_psql("kuma", "DELETE FROM kuma_changes WHERE revision <= 2");
    let err = store.watch(Some(Revision(1))).await.err().expect("Compacted");
    assert_eq!(err, StoreError::Compacted { requested: 1 });
    let mut from_two = store.watch(Some(Revision(2))).await.unwrap();
    assert_eq!(must_next_event(&mut from_two).await.revision, Revision(3));
    assert_eq!(must_next_event(&mut from_two).await.revision, Revision(4));
    let nothing = tokio::time::timeout(Duration::from_millis(200), from_two.next()).await;
    assert!(nothing.is_err(), "nothing after the latest write: {nothing:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_change_log_keeps_the_latest_history_entries_and_older_watches_are_compacted() {
    let (server, _, store) = must_migrated_store().await;
    must_create_mesh(&store, "default").await;
    // Jump the counter as if 10,000 writes had happened since.
    server.must_psql("kuma", "UPDATE kuma_revision SET revision = 10000");
    let a = store.create(route_key("default", "a"), route()).await.unwrap();
    store.create(route_key("default", "b"), route()).await.unwrap();
    assert_eq!(a.version.0, "10001");
    let kept = server.must_psql("kuma", "SELECT string_agg(revision::text, ',') FROM kuma_changes");
    assert_eq!(kept, "10001,10002", "revision 1 is more than HISTORY writes old and was pruned");
    let err = store.watch(Some(Revision(1))).await.err().expect("Compacted");
    assert_eq!(err, StoreError::Compacted { requested: 1 });
    let mut events = store.watch(Some(Revision(10000))).await.unwrap();
    assert_eq!(must_next_event(&mut events).await.key, route_key("default", "a"));
    assert_eq!(must_next_event(&mut events).await.key, route_key("default", "b"));
}

/// Revisions are in commit order across instances: concurrent writers on two stores, and a
/// watcher on a third sees every write once, revisions without a gap, each event carrying the
/// version its write returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_on_two_stores_reach_a_third_stores_watcher_in_revision_order() {
    let (_server, config, a) = must_migrated_store().await;
    let b = PostgresStore::connect(&config).await.unwrap();
    let c = PostgresStore::connect(&config).await.unwrap();
    must_create_mesh(&a, "default").await;
    let mut events = c.watch(None).await.unwrap();
    let writers = [a.clone(), b.clone(), a, b].into_iter().enumerate().map(|(w, store)| {
        tokio::spawn(async move {
            let mut versions = Vec::new();
            for i in 0..25 {
                let key = route_key("default", &format!("w{w}-{i:02}"));
                versions.push((key.clone(), store.create(key, route()).await.unwrap().version));
            }
            versions
        })
    });
    let mut written: std::collections::HashMap<_, _> = futures::future::join_all(writers)
        .await
        .into_iter()
        .flat_map(|versions| versions.unwrap())
        .collect();
    let mut last = None::<u64>;
    while !written.is_empty() {
        let event = must_next_event(&mut events).await;
        let version = written.remove(&event.key).expect("each write once");
        assert_eq!(version.0, event.revision.0.to_string());
        if let Some(last) = last {
            assert_eq!(event.revision.0, last + 1, "no gap");
        }
        last = Some(event.revision.0);
    }
}
