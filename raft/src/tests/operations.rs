//! What an operator does to a running cluster: hand leadership over, lose a majority, wipe a
//! peer's disk, and what the cluster then says about itself.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kuma_model::{MeshSpec, ResourceKey, ResourceType, Spec};
use kuma_store::{ListQuery, ResourceStore};
use tempfile::TempDir;

use super::harness::{must_hold_within, start_cluster, wait_for_leader, TestPeer};
use crate::node::RaftStartError;

fn mesh(name: &str) -> (ResourceKey, Spec) {
    (ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
}

async fn mesh_count(peer: &TestPeer) -> u64 {
    peer.store.sync().await.expect("a consistent read");
    peer.store.list(&ListQuery::new(ResourceType::Mesh, None, 1)).await.unwrap().total as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn leadership_handed_over_under_writes_loses_no_write_and_applies_none_twice() {
    let dir = TempDir::new().unwrap();
    let peers = start_cluster(3, dir.path()).await;
    let leader = wait_for_leader(&peers).await;
    let target = peers.iter().map(|p| p.node.id()).find(|id| *id != leader).unwrap();
    let writer = peers.iter().find(|p| p.node.id() != leader && p.node.id() != target).unwrap();

    // Writes through a follower while leadership moves: every one acknowledged exactly once.
    let store: Arc<dyn ResourceStore> = Arc::new(writer.store.clone());
    let writes = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for i in 0..60 {
            let (key, spec) = mesh(&format!("m{i}"));
            store.create(key, spec).await.expect("no write fails: it waits for the new leader");
            acknowledged.push(i);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(60)).await;
    let asked = peers.iter().find(|p| p.node.id() == leader).unwrap();
    asked.node.transfer_leader(target).await.expect("the transfer succeeds");
    assert_eq!(wait_for_leader(&peers).await, target);
    let acknowledged = writes.await.unwrap();
    assert_eq!(acknowledged.len(), 60);
    for peer in &peers {
        // The default mesh is not created here (no leader work in these tests): 60 meshes.
        assert_eq!(mesh_count(peer).await, 60, "peer {}", peer.node.id());
    }

    // A transfer asked of a follower goes to the leader; to a non-member it is refused.
    let follower = peers.iter().find(|p| p.node.id() != target).unwrap();
    follower.node.transfer_leader(leader).await.expect("a transfer forwarded to the leader");
    assert_eq!(wait_for_leader(&peers).await, leader);
    // Asked through its own target: the leader's answer may be lost as leadership moves, and
    // the target still answers that it leads.
    let target_peer = peers.iter().find(|p| p.node.id() == target).unwrap();
    target_peer.node.transfer_leader(target).await.expect("a transfer asked through its target");
    assert_eq!(wait_for_leader(&peers).await, target);
    let refused = follower.node.transfer_leader(9).await.unwrap_err();
    assert!(refused.to_string().contains("not a voter"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_cut_off_from_its_majority_steps_down_within_two_election_timeouts() {
    let dir = TempDir::new().unwrap();
    let mut peers = start_cluster(3, dir.path()).await;
    let leader = wait_for_leader(&peers).await;
    let timeout = peers[0].config.election_timeout_max;
    let at = peers.iter().position(|p| p.node.id() == leader).unwrap();
    let lead = peers.remove(at);
    for follower in peers {
        follower.stop().await;
    }
    let cut_off = tokio::time::Instant::now();
    must_hold_within(timeout * 4, "the cut-off leader steps down", || {
        lead.node.status().role != "Leader"
    })
    .await;
    let took = cut_off.elapsed();
    println!("stepped down {took:?} after losing its majority (election timeout {timeout:?})");
    assert!(took <= timeout * 2 + timeout / 2, "took {took:?}");
    assert!(!lead.node.is_leader());
    // It does not lead again on its own: no pre-vote majority.
    tokio::time::sleep(timeout * 3).await;
    assert_ne!(lead.node.status().role, "Leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_wiped_peer_is_refused_and_with_join_rejoins_as_a_learner_then_votes_again() {
    let dir = TempDir::new().unwrap();
    let mut peers = start_cluster(3, dir.path()).await;
    let leader = wait_for_leader(&peers).await;
    for i in 0..20 {
        let (key, spec) = mesh(&format!("kept-{i}"));
        peers[0].store.create(key, spec).await.unwrap();
    }
    // Every peer has announced itself and the cluster is named.
    must_hold_within(Duration::from_secs(10), "every peer announced", || {
        peers.iter().all(|p| p.node.replica().peers().len() == 3)
            && peers.iter().all(|p| p.node.status().cluster_id.is_some())
    })
    .await;
    let cluster_id = peers[0].node.status().cluster_id;

    let at = peers.iter().position(|p| p.node.id() != leader).unwrap();
    let mut config = peers.remove(at).stop().await;
    let let_go = |config: &crate::config::RaftConfig| {
        let dir = config.data_dir.clone();
        move || crate::db::open(&dir).is_ok()
    };
    // A stopped peer's openraft lets its RocksDB go moments after it stopped.
    must_hold_within(Duration::from_secs(5), "the stopped peer's data is let go", let_go(&config))
        .await;
    std::fs::remove_dir_all(&config.data_dir).unwrap();
    let refused = match RaftNode_start(&config).await {
        Err(e) => e,
        Ok(_) => panic!("a wiped peer must not start"),
    };
    assert!(matches!(refused, RaftStartError::Wiped { .. }), "{refused}");
    let message = refused.to_string();
    assert!(message.contains("KUMA_STORE_RAFT_JOIN=true"), "{message}");
    assert!(message.contains(cluster_id.as_deref().unwrap()), "{message}");
    // The others keep serving.
    let (key, spec) = mesh("while-refused");
    peers[0].store.create(key, spec).await.expect("the majority takes writes");

    // The refused peer's openraft lets its RocksDB go moments after it stopped.
    must_hold_within(Duration::from_secs(5), "the refused peer's data is let go", let_go(&config))
        .await;
    std::fs::remove_dir_all(&config.data_dir).unwrap();
    config.join = true;
    let back = TestPeer::start(config).await;
    let id = back.node.id();
    must_hold_within(Duration::from_secs(20), "the wiped peer is a voter again", || {
        let voters: BTreeSet<u64> = peers[0].node.status().voters.into_iter().collect();
        voters.contains(&id) && back.node.status().problem.is_none()
    })
    .await;
    assert_eq!(mesh_count(&back).await, 21);
    assert_eq!(back.node.status().cluster_id, cluster_id);
    peers.push(back);
    // Its vote counts again: with the old leader gone, the two others elect one.
    let at = peers.iter().position(|p| p.node.id() == leader).unwrap();
    peers.remove(at).stop().await;
    let new_leader = wait_for_leader(&peers).await;
    assert_ne!(new_leader, leader);
}

/// `RaftNode::start` on a fresh port listener, returning its error when refused.
#[allow(non_snake_case)]
async fn RaftNode_start(
    config: &crate::config::RaftConfig,
) -> Result<Arc<crate::node::RaftNode>, RaftStartError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await.unwrap();
    crate::node::RaftNode::start(config.clone(), listener, std::future::pending()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_status_tells_lag_contact_tolerance_and_disk_use() {
    let dir = TempDir::new().unwrap();
    let mut peers = start_cluster(3, dir.path()).await;
    wait_for_leader(&peers).await;
    let (key, spec) = mesh("one");
    peers[0].store.create(key, spec).await.unwrap();
    must_hold_within(Duration::from_secs(10), "three healthy voters", || true).await;
    let status = peers[0].node.cluster_status().await;
    assert_eq!(status.failure_tolerance, 1, "{status:?}");
    assert!(status.members.iter().all(|m| m.lag.is_some()), "{status:?}");
    let me = status.members.iter().find(|m| m.id == peers[0].node.id()).unwrap();
    assert!(me.status.as_ref().unwrap().disk_bytes > 0);
    let follower = peers.iter().find(|p| !p.node.is_leader()).unwrap();
    assert!(follower.node.status().millis_since_leader_contact.is_some());

    let stopped = peers.pop().unwrap();
    stopped.stop().await;
    let status = peers[0].node.cluster_status().await;
    assert_eq!(status.failure_tolerance, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_dead_longer_than_configured_is_removed_but_never_below_the_minimum() {
    let dir = TempDir::new().unwrap();
    let ports = super::harness::ports(4);
    let mut peers = Vec::new();
    for id in 1..=4 {
        let mut config = super::harness::config(id, &ports, dir.path());
        config.upkeep.remove_dead_after = Some(Duration::from_secs(1));
        config.upkeep.min_quorum = 3;
        peers.push(TestPeer::start(config).await);
    }
    let leader = wait_for_leader(&peers).await;
    let voters = |peer: &TestPeer| peer.node.status().voters.len();

    let at = peers.iter().position(|p| p.node.id() != leader).unwrap();
    let dead = peers.remove(at);
    let dead_id = dead.node.id();
    dead.stop().await;
    let lead = peers.iter().find(|p| p.node.id() == leader).unwrap();
    // Removed from the voters, then its id retired (a second write).
    must_hold_within(Duration::from_secs(15), "the dead voter is removed and retired", || {
        voters(lead) == 3 && lead.node.replica().read(|s| s.retired.contains(&dead_id))
    })
    .await;

    // Three voters is the minimum: a second dead one stays a member.
    let at = peers.iter().position(|p| p.node.id() != leader).unwrap();
    peers.remove(at).stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lead = peers.iter().find(|p| p.node.id() == leader).unwrap();
    assert_eq!(voters(lead), 3, "never below store.raft.autopilot.minQuorum");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_log_grown_past_the_byte_threshold_is_snapshotted_and_purged() {
    let dir = TempDir::new().unwrap();
    let ports = super::harness::ports(1);
    let mut config = super::harness::config(1, &ports, dir.path());
    // Far more entries than written, so only the size can trigger the snapshot.
    config.upkeep.snapshot_entries = 1_000_000;
    config.upkeep.snapshot_bytes = 64 * 1024;
    let peer = TestPeer::start(config).await;
    wait_for_leader(std::slice::from_ref(&peer)).await;
    assert_eq!(peer.node.status().snapshot_index, None);
    let store: Arc<dyn ResourceStore> = Arc::new(peer.store.clone());
    let mut written = 0;
    while peer.node.appended_bytes() < 80 * 1024 {
        let (key, spec) = mesh(&format!("grow-{written}"));
        store.create(key, spec).await.unwrap();
        written += 1;
        assert!(written < 5000, "the log does not grow");
    }
    must_hold_within(Duration::from_secs(10), "a snapshot by size", || {
        peer.node.status().snapshot_index.is_some()
    })
    .await;
    println!("{written} writes, {} bytes appended", peer.node.appended_bytes());
    assert!(written < 1_000_000 / 2, "not the entry count");
}
