//! Early replication on an in-process three-peer cluster: with the leader's disk made slow, the
//! followers hold a lone write's entry while the leader still writes it, and the write is still
//! acknowledged only after the leader's own append.

use std::time::{Duration, Instant};

use kuma_model::{MeshSpec, ResourceKey, Spec};
use kuma_store::ResourceStore;
use tempfile::TempDir;

use super::harness::{config, must_hold_within, ports, wait_for_leader, TestPeer};
use crate::log_store::tests::slow_disk;

/// How much longer the leader's appends take in these tests.
const SLOW: Duration = Duration::from_millis(600);

async fn cluster(early: bool, root: &std::path::Path) -> Vec<TestPeer> {
    let ports = ports(3);
    let mut peers = Vec::new();
    for id in 1..=3 {
        let mut config = config(id, &ports, root);
        config.early_replication = early;
        // The leader's slow append holds up its heartbeats: no follower may campaign meanwhile.
        config.election_timeout_min = SLOW * 4;
        config.election_timeout_max = SLOW * 5;
        peers.push(TestPeer::start(config).await);
    }
    peers
}

fn mesh(name: &str) -> (ResourceKey, Spec) {
    (ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
}

fn last_index(peer: &TestPeer) -> u64 {
    peer.node.status().last_log_index.unwrap_or(0)
}

/// Makes the leader's disk slow once the cluster settled, writes one mesh through the leader,
/// and returns when a follower first held the new entry and when the write was acknowledged,
/// both counted from the write's start.
async fn lone_write_on_a_slow_leader(peers: &[TestPeer]) -> (Duration, Duration) {
    let leader_id = wait_for_leader(peers).await;
    let leader = peers.iter().find(|p| p.node.id() == leader_id).unwrap();
    let (key, spec) = mesh("settle");
    leader.store.create(key, spec).await.unwrap();
    must_hold_within(Duration::from_secs(5), "every peer holding the leader's log", || {
        peers.iter().all(|p| last_index(p) == last_index(leader))
    })
    .await;
    must_hold_within(Duration::from_secs(5), "the leader's replication idle", || {
        leader.node.in_flight.idle()
    })
    .await;
    let before = last_index(leader);

    slow_disk::set(&leader.config.data_dir, SLOW);
    let store = leader.store.clone();
    let started = Instant::now();
    let (key, spec) = mesh("lone");
    let write = tokio::spawn(async move { store.create(key, spec).await });
    let followers: Vec<&TestPeer> = peers.iter().filter(|p| p.node.id() != leader_id).collect();
    while !followers.iter().any(|p| last_index(p) > before) {
        assert!(started.elapsed() < SLOW * 10, "no follower got the entry");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let follower_held = started.elapsed();
    write.await.unwrap().expect("the write is acknowledged");
    (follower_held, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_write_a_lone_entry_while_the_leader_writes_it() {
    let dir = TempDir::new().unwrap();
    let peers = cluster(true, dir.path()).await;
    let (follower_held, acknowledged) = lone_write_on_a_slow_leader(&peers).await;
    assert!(
        follower_held < SLOW / 2,
        "a follower held the entry {follower_held:?} after the write started; the leader's append takes {SLOW:?}"
    );
    assert!(
        acknowledged >= SLOW,
        "acknowledged after {acknowledged:?}, before the leader's own append ({SLOW:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_early_replication_followers_wait_for_the_leaders_append() {
    let dir = TempDir::new().unwrap();
    let peers = cluster(false, dir.path()).await;
    let (follower_held, acknowledged) = lone_write_on_a_slow_leader(&peers).await;
    assert!(follower_held >= SLOW, "a follower held the entry after {follower_held:?}");
    assert!(acknowledged >= follower_held);
}
