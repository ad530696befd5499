//! The conformance suite: the store contract as executable checks. Every backend runs all of them
//! through `conformance_suite!`, e.g.
//! `kuma_store::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn ResourceStore> });`
//! Each check receives a fresh, empty store.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kuma_model::{
    DataplaneInsightSpec, DataplaneSpec, Inbound, MeshSpec, Networking, Resource, ResourceKey,
    ResourceType, Spec, Tags, Version,
};

use crate::{EventKind, ListQuery, NameScope, ResourceStore, StoreError, WatchEvent, WatchStream};

/// Generates one `#[tokio::test]` per check, each with a fresh store from `$factory` (an async
/// expression yielding `Arc<dyn ResourceStore>`).
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@tests $factory;
            create_then_get_returns_what_was_written,
            creating_an_existing_key_is_already_exists,
            getting_a_missing_key_is_not_found,
            update_with_the_current_version_bumps_version_and_keeps_creation_time,
            update_with_a_stale_version_is_a_conflict_and_changes_nothing,
            updating_a_missing_key_is_not_found,
            concurrent_updates_from_one_version_have_exactly_one_winner,
            delete_removes_and_a_second_delete_is_not_found,
            delete_with_a_stale_version_is_a_conflict,
            resource_in_a_missing_mesh_is_mesh_not_found,
            deleting_a_mesh_deletes_what_it_contains_and_nothing_else,
            deleting_a_dataplane_deletes_its_insight,
            same_name_in_other_types_and_meshes_does_not_clash,
            list_filters_by_type_and_mesh,
            list_across_meshes_is_ordered_by_mesh_then_name,
            list_pages_cover_every_item_exactly_once,
            list_offset_survives_deletion_of_the_last_item_seen,
            a_key_that_does_not_fit_its_spec_is_invalid,
            watch_from_now_sees_create_update_delete_in_order,
            watch_from_a_revision_replays_the_changes_after_it,
            revision_advances_with_every_write,
            deleting_a_mesh_tells_watchers_about_everything_it_owned,
            an_offset_the_store_did_not_issue_is_invalid,
            watch_from_long_ago_replays_everything_or_says_compacted,
        );
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: std::sync::Arc<dyn $crate::ResourceStore> = $factory.await;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}

type Store = Arc<dyn ResourceStore>;

const DEADLINE: Duration = Duration::from_secs(10);

fn dataplane(service: &str, port: u32) -> Spec {
    let tags: Tags = [("service", service)].into_iter().collect();
    Spec::Dataplane(DataplaneSpec {
        networking: Networking {
            inbound: vec![Inbound {
                interface: Some(format!("127.0.0.1:{port}:{}", port + 1)),
                tags,
                ..Default::default()
            }],
            ..Default::default()
        },
        metrics: None,
    })
}

fn dp_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Dataplane, mesh, name)
}

async fn must_create_mesh(store: &Store, name: &str) -> Resource {
    store
        .create(ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
        .await
        .expect("create mesh")
}

async fn must_create_dp(store: &Store, mesh: &str, name: &str) -> Resource {
    store.create(dp_key(mesh, name), dataplane(name, 9000)).await.expect("create dataplane")
}

async fn must_list_all(store: &Store, t: ResourceType, mesh: Option<&str>) -> Vec<ResourceKey> {
    let mut query = ListQuery::new(t, mesh, 1000);
    let mut keys = Vec::new();
    loop {
        let page = store.list(&query).await.expect("list");
        keys.extend(page.items.into_iter().map(|r| r.key));
        match page.next {
            Some(next) => query.offset = Some(next),
            None => return keys,
        }
    }
}

async fn must_next_event(stream: &mut WatchStream) -> WatchEvent {
    tokio::time::timeout(DEADLINE, stream.next())
        .await
        .expect("an event within the deadline")
        .expect("the stream is open")
        .expect("no watch error")
}

pub async fn create_then_get_returns_what_was_written(store: Store) {
    must_create_mesh(&store, "default").await;
    let created = must_create_dp(&store, "default", "redis-1").await;
    let got = store.get(&dp_key("default", "redis-1")).await.unwrap();
    assert_eq!(got, created);
    assert_eq!(got.spec, dataplane("redis-1", 9000));
    assert!(!got.version.0.is_empty());
    assert_eq!(got.creation_time, got.modification_time);
}

pub async fn creating_an_existing_key_is_already_exists(store: Store) {
    must_create_mesh(&store, "default").await;
    let first = must_create_dp(&store, "default", "a").await;
    let err = store.create(dp_key("default", "a"), dataplane("other", 7000)).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(store.get(&dp_key("default", "a")).await.unwrap(), first);
}

pub async fn getting_a_missing_key_is_not_found(store: Store) {
    must_create_mesh(&store, "default").await;
    let err = store.get(&dp_key("default", "nope")).await.unwrap_err();
    assert_eq!(err, StoreError::NotFound { key: dp_key("default", "nope") });
}

pub async fn update_with_the_current_version_bumps_version_and_keeps_creation_time(store: Store) {
    must_create_mesh(&store, "default").await;
    let created = must_create_dp(&store, "default", "a").await;
    let updated =
        store.update(dp_key("default", "a"), dataplane("a", 7000), &created.version).await.unwrap();
    assert_ne!(updated.version, created.version);
    assert_eq!(updated.creation_time, created.creation_time);
    assert!(updated.modification_time >= created.modification_time);
    assert_eq!(store.get(&dp_key("default", "a")).await.unwrap().spec, dataplane("a", 7000));
}

pub async fn update_with_a_stale_version_is_a_conflict_and_changes_nothing(store: Store) {
    must_create_mesh(&store, "default").await;
    let created = must_create_dp(&store, "default", "a").await;
    let current =
        store.update(dp_key("default", "a"), dataplane("a", 7000), &created.version).await.unwrap();
    let err = store
        .update(dp_key("default", "a"), dataplane("a", 5000), &created.version)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert_eq!(store.get(&dp_key("default", "a")).await.unwrap(), current);
}

pub async fn updating_a_missing_key_is_not_found(store: Store) {
    must_create_mesh(&store, "default").await;
    let err = store
        .update(dp_key("default", "a"), dataplane("a", 7000), &Version("1".into()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
}

pub async fn concurrent_updates_from_one_version_have_exactly_one_winner(store: Store) {
    must_create_mesh(&store, "default").await;
    let created = must_create_dp(&store, "default", "a").await;
    let writers = (0..8u32).map(|i| {
        let store = store.clone();
        let version = created.version.clone();
        tokio::spawn(async move {
            store.update(dp_key("default", "a"), dataplane("a", 1000 + i * 10), &version).await
        })
    });
    let results = futures::future::join_all(writers).await;
    let mut winners = Vec::new();
    for result in results {
        match result.expect("writer task") {
            Ok(resource) => winners.push(resource),
            Err(StoreError::Conflict { .. }) => {}
            Err(other) => panic!("unexpected error {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one writer wins");
    assert_eq!(store.get(&dp_key("default", "a")).await.unwrap(), winners[0]);
}

pub async fn delete_removes_and_a_second_delete_is_not_found(store: Store) {
    must_create_mesh(&store, "default").await;
    must_create_dp(&store, "default", "a").await;
    store.delete(&dp_key("default", "a"), None).await.unwrap();
    assert!(matches!(store.get(&dp_key("default", "a")).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(
        store.delete(&dp_key("default", "a"), None).await,
        Err(StoreError::NotFound { .. })
    ));
}

pub async fn delete_with_a_stale_version_is_a_conflict(store: Store) {
    must_create_mesh(&store, "default").await;
    let created = must_create_dp(&store, "default", "a").await;
    let updated =
        store.update(dp_key("default", "a"), dataplane("a", 7000), &created.version).await.unwrap();
    let err = store.delete(&dp_key("default", "a"), Some(&created.version)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    store.delete(&dp_key("default", "a"), Some(&updated.version)).await.unwrap();
}

pub async fn resource_in_a_missing_mesh_is_mesh_not_found(store: Store) {
    let err = store.create(dp_key("ghost", "a"), dataplane("a", 9000)).await.unwrap_err();
    assert_eq!(err, StoreError::MeshNotFound { mesh: "ghost".into() });
    assert!(must_list_all(&store, ResourceType::Dataplane, None).await.is_empty());
}

pub async fn deleting_a_mesh_deletes_what_it_contains_and_nothing_else(store: Store) {
    must_create_mesh(&store, "doomed").await;
    must_create_mesh(&store, "kept").await;
    must_create_dp(&store, "doomed", "a").await;
    must_create_dp(&store, "kept", "b").await;
    store.delete(&ResourceKey::mesh("doomed"), None).await.unwrap();
    assert_eq!(
        must_list_all(&store, ResourceType::Dataplane, None).await,
        vec![dp_key("kept", "b")]
    );
    assert_eq!(
        must_list_all(&store, ResourceType::Mesh, None).await,
        vec![ResourceKey::mesh("kept")]
    );
    // Re-creating the mesh starts empty.
    must_create_mesh(&store, "doomed").await;
    assert!(must_list_all(&store, ResourceType::Dataplane, Some("doomed")).await.is_empty());
}

pub async fn deleting_a_dataplane_deletes_its_insight(store: Store) {
    must_create_mesh(&store, "default").await;
    must_create_dp(&store, "default", "a").await;
    let insight_key = ResourceKey::new(ResourceType::DataplaneInsight, "default", "a");
    store
        .create(insight_key.clone(), Spec::DataplaneInsight(DataplaneInsightSpec::default()))
        .await
        .unwrap();
    store.delete(&dp_key("default", "a"), None).await.unwrap();
    assert!(matches!(store.get(&insight_key).await, Err(StoreError::NotFound { .. })));
}

pub async fn same_name_in_other_types_and_meshes_does_not_clash(store: Store) {
    must_create_mesh(&store, "a").await;
    must_create_mesh(&store, "b").await;
    let first = must_create_dp(&store, "a", "x").await;
    let insight = ResourceKey::new(ResourceType::DataplaneInsight, "a", "x");
    store
        .create(insight.clone(), Spec::DataplaneInsight(DataplaneInsightSpec::default()))
        .await
        .unwrap();
    let route = ResourceKey::new(ResourceType::TrafficRoute, "a", "x");
    store.create(route.clone(), Spec::empty(ResourceType::TrafficRoute)).await.unwrap();
    assert_eq!(store.get(&dp_key("a", "x")).await.unwrap(), first);
    assert_eq!(store.get(&insight).await.unwrap().key, insight);
    assert_eq!(store.get(&route).await.unwrap().key, route);
    let in_b = store.create(dp_key("b", "x"), dataplane("x", 9000)).await;
    match store.name_scope() {
        NameScope::PerMesh => {
            in_b.unwrap();
            assert_eq!(store.get(&dp_key("b", "x")).await.unwrap().key, dp_key("b", "x"));
        }
        NameScope::PerType => {
            let err = in_b.unwrap_err();
            assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err:?}");
            // Nothing changed, and the name is not visible in the other mesh.
            assert_eq!(store.get(&dp_key("a", "x")).await.unwrap(), first);
            let err = store.get(&dp_key("b", "x")).await.unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
            let err = store.delete(&dp_key("b", "x"), None).await.unwrap_err();
            assert!(matches!(err, StoreError::NotFound { .. }), "{err:?}");
            assert_eq!(store.get(&dp_key("a", "x")).await.unwrap(), first);
        }
    }
}

pub async fn list_filters_by_type_and_mesh(store: Store) {
    must_create_mesh(&store, "a").await;
    must_create_mesh(&store, "b").await;
    must_create_dp(&store, "a", "one").await;
    must_create_dp(&store, "b", "two").await;
    assert_eq!(
        must_list_all(&store, ResourceType::Dataplane, Some("a")).await,
        vec![dp_key("a", "one")]
    );
    assert!(must_list_all(&store, ResourceType::TrafficRoute, Some("a")).await.is_empty());
    let page = store.list(&ListQuery::new(ResourceType::Dataplane, Some("b"), 10)).await.unwrap();
    assert_eq!((page.total, page.next), (1, None));
}

pub async fn list_across_meshes_is_ordered_by_mesh_then_name(store: Store) {
    // Names unique across meshes (as every backend accepts), ordered against the mesh order.
    for (mesh, names) in [("m2", ["b", "a"]), ("m1", ["z", "y"])] {
        must_create_mesh(&store, mesh).await;
        for name in names {
            must_create_dp(&store, mesh, name).await;
        }
    }
    let keys = must_list_all(&store, ResourceType::Dataplane, None).await;
    assert_eq!(
        keys,
        vec![dp_key("m1", "y"), dp_key("m1", "z"), dp_key("m2", "a"), dp_key("m2", "b")]
    );
}

pub async fn list_pages_cover_every_item_exactly_once(store: Store) {
    must_create_mesh(&store, "default").await;
    for i in 0..5 {
        must_create_dp(&store, "default", &format!("dp-{i}")).await;
    }
    let mut query = ListQuery::new(ResourceType::Dataplane, Some("default"), 2);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = store.list(&query).await.unwrap();
        assert_eq!(page.total, 5);
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|r| r.key.name));
        pages += 1;
        match page.next {
            Some(next) => query.offset = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["dp-0", "dp-1", "dp-2", "dp-3", "dp-4"]);
}

pub async fn list_offset_survives_deletion_of_the_last_item_seen(store: Store) {
    must_create_mesh(&store, "default").await;
    for name in ["a", "b", "c", "d"] {
        must_create_dp(&store, "default", name).await;
    }
    let first =
        store.list(&ListQuery::new(ResourceType::Dataplane, Some("default"), 2)).await.unwrap();
    store.delete(&dp_key("default", "b"), None).await.unwrap();
    let mut query = ListQuery::new(ResourceType::Dataplane, Some("default"), 2);
    query.offset = first.next;
    let second = store.list(&query).await.unwrap();
    let names: Vec<_> = second.items.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["c", "d"]);
}

pub async fn a_key_that_does_not_fit_its_spec_is_invalid(store: Store) {
    must_create_mesh(&store, "default").await;
    let wrong_type = ResourceKey::new(ResourceType::TrafficRoute, "default", "a");
    let err = store.create(wrong_type, dataplane("a", 9000)).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

pub async fn watch_from_now_sees_create_update_delete_in_order(store: Store) {
    must_create_mesh(&store, "default").await;
    let mut events = store.watch(None).await.unwrap();
    let created = must_create_dp(&store, "default", "a").await;
    store.update(dp_key("default", "a"), dataplane("a", 7000), &created.version).await.unwrap();
    store.delete(&dp_key("default", "a"), None).await.unwrap();
    let mut kinds = Vec::new();
    let mut revisions = Vec::new();
    for _ in 0..3 {
        let event = must_next_event(&mut events).await;
        assert_eq!(event.key, dp_key("default", "a"));
        assert_eq!(event.resource.is_some(), event.kind != EventKind::Deleted);
        kinds.push(event.kind);
        revisions.push(event.revision);
    }
    assert_eq!(kinds, [EventKind::Created, EventKind::Updated, EventKind::Deleted]);
    assert!(revisions.windows(2).all(|w| w[0] < w[1]), "revisions increase: {revisions:?}");
}

pub async fn watch_from_a_revision_replays_the_changes_after_it(store: Store) {
    must_create_mesh(&store, "default").await;
    let before = store.revision().await.unwrap();
    must_create_dp(&store, "default", "a").await;
    must_create_dp(&store, "default", "b").await;
    let mut events = store.watch(Some(before)).await.unwrap();
    must_create_dp(&store, "default", "c").await;
    let mut names = Vec::new();
    for _ in 0..3 {
        names.push(must_next_event(&mut events).await.key.name);
    }
    assert_eq!(names, ["a", "b", "c"]);
}

pub async fn revision_advances_with_every_write(store: Store) {
    let mut seen = HashSet::new();
    let r0 = store.revision().await.unwrap();
    must_create_mesh(&store, "default").await;
    let r1 = store.revision().await.unwrap();
    let dp = must_create_dp(&store, "default", "a").await;
    let r2 = store.revision().await.unwrap();
    store.update(dp_key("default", "a"), dataplane("a", 7000), &dp.version).await.unwrap();
    let r3 = store.revision().await.unwrap();
    assert!(r0 < r1 && r1 < r2 && r2 < r3, "{r0} {r1} {r2} {r3}");
    for r in [r0, r1, r2, r3] {
        assert!(seen.insert(r));
    }
}

pub async fn deleting_a_mesh_tells_watchers_about_everything_it_owned(store: Store) {
    must_create_mesh(&store, "doomed").await;
    must_create_dp(&store, "doomed", "a").await;
    let insight = ResourceKey::new(ResourceType::DataplaneInsight, "doomed", "a");
    store
        .create(insight.clone(), Spec::DataplaneInsight(DataplaneInsightSpec::default()))
        .await
        .unwrap();
    let mut events = store.watch(None).await.unwrap();
    store.delete(&ResourceKey::mesh("doomed"), None).await.unwrap();
    let mut deleted = HashSet::new();
    for _ in 0..3 {
        let event = must_next_event(&mut events).await;
        assert_eq!(event.kind, EventKind::Deleted, "{event:?}");
        deleted.insert(event.key);
    }
    let expected: HashSet<ResourceKey> =
        [ResourceKey::mesh("doomed"), dp_key("doomed", "a"), insight].into_iter().collect();
    assert_eq!(deleted, expected);
}

pub async fn an_offset_the_store_did_not_issue_is_invalid(store: Store) {
    must_create_mesh(&store, "default").await;
    let mut query = ListQuery::new(ResourceType::Dataplane, Some("default"), 10);
    query.offset = Some("not an offset".into());
    let err = store.list(&query).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err:?}");
}

/// A watcher asking for history must never miss an event silently: it gets every change after
/// its revision, in order, or `Compacted` (and then lists again).
pub async fn watch_from_long_ago_replays_everything_or_says_compacted(store: Store) {
    let start = store.revision().await.unwrap();
    must_create_mesh(&store, "default").await;
    for i in 0..50 {
        must_create_dp(&store, "default", &format!("dp-{i:02}")).await;
    }
    match store.watch(Some(start)).await {
        Err(StoreError::Compacted { .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(mut events) => {
            assert_eq!(must_next_event(&mut events).await.key, ResourceKey::mesh("default"));
            for i in 0..50 {
                let event = must_next_event(&mut events).await;
                assert_eq!(event.key, dp_key("default", &format!("dp-{i:02}")));
            }
        }
    }
}
