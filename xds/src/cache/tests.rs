//! The shape of the cache's work, counted rather than timed: a change costs what it touches.

use std::sync::Arc;

use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use kuma_model::{Resource, ResourceKey};
use prost::Message;
use serde_json::{json, Value};

use super::{NodeWatch, SnapshotCache};
use crate::{NodeId, XdsType};

fn resource(json: Value) -> Resource {
    let input = kuma_model::parse_resource(json).unwrap();
    Resource {
        key: input.key,
        spec: input.spec,
        version: kuma_model::Version("1".into()),
        creation_time: chrono::Utc::now(),
        modification_time: chrono::Utc::now(),
    }
}

/// A dataplane offering `service` on 127.0.0.1:`port` and reaching `reaches`.
fn dataplane(name: &str, service: &str, port: u16, reaches: &[&str]) -> Resource {
    let outbound: Vec<Value> = reaches
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"interface": format!(":{}", 20000 + i), "service": s}))
        .collect();
    resource(json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "inbound": [{"interface": format!("127.0.0.1:{port}:{}", port + 1), "tags": {"service": service}}],
            "outbound": outbound,
        }
    }))
}

fn upsert(cache: &SnapshotCache, resource: Resource) {
    cache.apply(&[(resource.key.clone(), Some(resource))]);
}

fn delete(cache: &SnapshotCache, key: ResourceKey) {
    cache.apply(&[(key, None)]);
}

/// The endpoints `watch`'s config holds for `service`'s cluster.
fn endpoints(watch: &NodeWatch, service: &str) -> usize {
    let snapshot = watch.borrow().clone().expect("a config");
    let assignment = &snapshot.get(XdsType::Endpoint).resources[service];
    let assignment = ClusterLoadAssignment::decode(assignment.resource.value.as_slice()).unwrap();
    assignment.endpoints.iter().map(|l| l.lb_endpoints.len()).sum()
}

struct Fleet {
    cache: SnapshotCache,
    /// `client-<i>` reaches service `a`; `other-<i>` reaches only `c`.
    clients: Vec<NodeWatch>,
    others: Vec<NodeWatch>,
    /// `c-1`, the one instance of `c`.
    c: NodeWatch,
    /// What the cache was loaded with.
    resources: Vec<Resource>,
}

impl Fleet {
    /// Whether `watch` holds exactly the config a cache loaded with the fleet's resources and
    /// `more` would generate for `name` from scratch.
    fn as_generated_whole(&self, watch: &NodeWatch, name: &str, more: &[Resource]) -> bool {
        let fresh = SnapshotCache::new(None);
        fresh.reset(self.resources.iter().chain(more).cloned().collect());
        let whole = fresh.subscribe(&NodeId::new("default", name)).borrow().clone().unwrap();
        watch.borrow().clone().unwrap().same_content(&whole)
    }
}

/// A mesh with services a, b, c, 40 connected dataplanes reaching `a` and 10 reaching only `c`
/// (enough that generation is spread over threads).
fn fleet() -> Fleet {
    let cache = SnapshotCache::new(None);
    let mut all = vec![
        resource(json!({"type": "Mesh", "name": "default"})),
        dataplane("a-1", "a", 9000, &[]),
        dataplane("b-1", "b", 9010, &["c"]),
        dataplane("c-1", "c", 9020, &[]),
    ];
    for i in 0..40 {
        all.push(dataplane(&format!("client-{i}"), "client", 10000 + 2 * i, &["a", "b"]));
    }
    for i in 0..10 {
        all.push(dataplane(&format!("other-{i}"), "other", 11000 + 2 * i, &["c"]));
    }
    cache.reset(all.clone());
    let watch = |name: String| {
        let mut watch = cache.subscribe(&NodeId::new("default", &name));
        watch.borrow_and_update();
        watch
    };
    let clients = (0..40).map(|i| watch(format!("client-{i}"))).collect();
    let others = (0..10).map(|i| watch(format!("other-{i}"))).collect();
    let c = watch("c-1".to_string());
    Fleet { clients, others, c, cache, resources: all }
}

fn woken(watches: &[NodeWatch]) -> usize {
    watches.iter().filter(|w| w.has_changed().unwrap()).count()
}

#[test]
fn a_new_instance_is_encoded_once_and_reaches_only_the_dataplanes_that_reach_its_service() {
    let fleet = fleet();
    let before = fleet.cache.stats();

    let a2 = dataplane("a-2", "a", 9002, &[]);
    upsert(&fleet.cache, a2.clone());

    let after = fleet.cache.stats();
    assert_eq!(after.assignments_encoded - before.assignments_encoded, 1, "only a's assignment");
    assert_eq!(after.generated, before.generated, "nothing generated whole");
    assert_eq!(after.swapped - before.swapped, 40, "a's new assignment swapped into each");
    assert_eq!(after.pushed - before.pushed, 40);
    assert_eq!(woken(&fleet.clients), 40);
    assert_eq!(woken(&fleet.others), 0, "nothing is sent to dataplanes that do not reach a");
    assert!(!fleet.c.has_changed().unwrap());
    assert!(fleet.clients.iter().all(|w| endpoints(w, "a") == 2));
    assert!(fleet.as_generated_whole(&fleet.clients[7], "client-7", &[a2]));
    let shared =
        |w: &NodeWatch| w.borrow().clone().unwrap().get(XdsType::Endpoint).resources["a"].clone();
    assert!(
        Arc::ptr_eq(&shared(&fleet.clients[0]), &shared(&fleet.clients[39])),
        "every config holds the one encoded assignment"
    );

    delete(&fleet.cache, ResourceKey::new(kuma_model::ResourceType::Dataplane, "default", "a-2"));
    assert_eq!(fleet.cache.stats().assignments_encoded - after.assignments_encoded, 1);
    assert!(fleet.clients.iter().all(|w| endpoints(w, "a") == 1));
    assert!(fleet.as_generated_whole(&fleet.clients[7], "client-7", &[]));
}

#[test]
fn instances_that_change_an_outbound_to_http_regenerate_its_listener() {
    let fleet = fleet();
    let before = fleet.cache.stats();
    // a's one instance now speaks HTTP: the outbounds to a get an HTTP connection manager.
    let http = resource(json!({
        "type": "Dataplane", "mesh": "default", "name": "a-1",
        "networking": {"inbound": [{"interface": "127.0.0.1:9000:9001", "tags": {"service": "a", "protocol": "http"}}]}
    }));
    upsert(&fleet.cache, http.clone());
    let after = fleet.cache.stats();
    assert_eq!(after.generated - before.generated, 40, "generated whole, not swapped");
    assert_eq!(after.swapped, before.swapped);
    assert!(fleet.as_generated_whole(&fleet.clients[3], "client-3", &[http]));
}

#[test]
fn a_dataplane_change_that_keeps_its_instances_regenerates_only_itself() {
    let fleet = fleet();
    let before = fleet.cache.stats();

    // c-1 starts reaching b: its own config changes, the instances of c do not.
    upsert(&fleet.cache, dataplane("c-1", "c", 9020, &["b"]));

    let after = fleet.cache.stats();
    assert_eq!(after.assignments_encoded, before.assignments_encoded);
    assert_eq!(after.generated - before.generated, 1);
    assert!(fleet.c.has_changed().unwrap());
    assert_eq!(woken(&fleet.clients) + woken(&fleet.others), 0);
}

#[test]
fn a_policy_change_regenerates_the_dataplanes_it_is_or_was_chosen_for() {
    let fleet = fleet();
    let permission = resource(json!({
        "type": "TrafficPermission", "mesh": "default", "name": "to-c",
        "sources": [{"match": {"service": "other"}}],
        "destinations": [{"match": {"service": "c"}}],
    }));
    let key = permission.key.clone();
    let before = fleet.cache.stats();

    upsert(&fleet.cache, permission);
    let added = fleet.cache.stats();
    assert_eq!(added.generated - before.generated, 1, "only c-1, whose inbound it is chosen for");
    assert_eq!(added.assignments_encoded, before.assignments_encoded);
    assert_eq!(woken(&fleet.clients) + woken(&fleet.others), 0);

    delete(&fleet.cache, key);
    assert_eq!(fleet.cache.stats().generated - added.generated, 1, "c-1 again: it was chosen");
}

#[test]
fn a_mesh_change_regenerates_every_dataplane_of_the_mesh() {
    let fleet = fleet();
    let before = fleet.cache.stats();
    upsert(
        &fleet.cache,
        resource(json!({"type": "Mesh", "name": "default", "logging": {"backends": []}})),
    );
    assert_eq!(fleet.cache.stats().generated - before.generated, 51);
}

#[test]
fn listing_again_applies_only_what_differs() {
    let fleet = fleet();
    let before = fleet.cache.stats();
    fleet.cache.reset(fleet.resources.clone());
    assert_eq!(fleet.cache.stats(), before, "the same listing changes nothing");
    assert_eq!(
        woken(&fleet.clients) + woken(&fleet.others) + woken(std::slice::from_ref(&fleet.c)),
        0
    );

    // A listing without other-0 and with a new instance of a, as after a missed deletion and
    // a missed creation.
    let mut listing: Vec<Resource> =
        fleet.resources.iter().filter(|r| r.key.name != "other-0").cloned().collect();
    listing.push(dataplane("a-2", "a", 9002, &[]));
    fleet.cache.reset(listing);
    let after = fleet.cache.stats();
    assert_eq!(after.assignments_encoded - before.assignments_encoded, 2, "a and other");
    assert_eq!(after.swapped - before.swapped, 40, "the dataplanes reaching a");
    assert_eq!(after.generated, before.generated, "other-0's is gone, not generated");
    assert!(fleet.others[0].borrow().is_none(), "other-0's Dataplane is gone");
    assert_eq!(woken(&fleet.others[1..]), 0);
}

#[test]
fn policies_written_while_no_dataplane_is_connected_are_listed_once_when_one_connects() {
    let cache = SnapshotCache::new(None);
    cache.reset(vec![
        resource(json!({"type": "Mesh", "name": "default"})),
        dataplane("c-1", "c", 9020, &[]),
    ]);
    for i in 0..50 {
        upsert(
            &cache,
            resource(json!({
                "type": "TrafficPermission", "mesh": "default", "name": format!("p-{i}"),
                "sources": [{"match": {"service": format!("s-{i}")}}],
                "destinations": [{"match": {"service": "c"}}],
            })),
        );
    }
    assert_eq!(cache.stats().policy_lists, 0, "no dataplane connected: no list to build");
    let watch = cache.subscribe(&NodeId::new("default", "c-1"));
    assert_eq!(cache.stats().policy_lists, 1);
    let config = watch.borrow().clone().expect("a config");
    assert_eq!(config.get(XdsType::Listener).resources.len(), 1, "c-1's inbound");
    upsert(
        &cache,
        resource(json!({
            "type": "TrafficPermission", "mesh": "default", "name": "p-50",
            "sources": [{"match": {"service": "s-50"}}],
            "destinations": [{"match": {"service": "c"}}],
        })),
    );
    assert_eq!(cache.stats().policy_lists, 2, "with c-1 connected, a change lists them again");
}
