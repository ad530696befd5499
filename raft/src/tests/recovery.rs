//! Recovery with real peers in one process: a cluster restored from a follower's snapshot elects a
//! leader and holds every write; a survivor forced into a new cluster leads alone, keeps every
//! write and takes fresh peers.

use std::collections::BTreeMap;
use std::time::Duration;

use kuma_model::{MeshSpec, ResourceKey, ResourceType, Spec};
use kuma_store::{ListQuery, ResourceStore};
use tempfile::TempDir;

use super::harness::{config, must_hold_within, ports, start_cluster, wait_for_leader, TestPeer};
use crate::recovery::{restore, RestoreTarget};

fn mesh(name: &str) -> (ResourceKey, Spec) {
    (ResourceKey::mesh(name), Spec::Mesh(MeshSpec::default()))
}

async fn must_write(peers: &[TestPeer], names: impl Iterator<Item = String>) -> Vec<ResourceKey> {
    let mut keys = Vec::new();
    for (i, name) in names.enumerate() {
        let (key, spec) = mesh(&name);
        peers[i % peers.len()].store.create(key.clone(), spec).await.unwrap();
        keys.push(key);
    }
    keys
}

/// How many meshes this peer's own copy holds (a stale read).
fn local_meshes(peer: &TestPeer) -> usize {
    peer.node.replica().list(&ListQuery::new(ResourceType::Mesh, None, 1000)).unwrap().total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_restored_from_a_followers_snapshot_elects_a_leader_and_holds_every_write() {
    let dir = TempDir::new().unwrap();
    let old = start_cluster(3, &dir.path().join("old")).await;
    let leader = wait_for_leader(&old).await;
    let written = must_write(&old, (0..20).map(|i| format!("before-{i}"))).await;
    let follower = old.iter().find(|p| p.node.id() != leader).unwrap();
    let file = follower.node.save_snapshot().await.unwrap();
    assert_eq!(file.header().resources, 20, "every acknowledged write, from a follower");
    let old_cluster = old[0].node.replica().cluster_id();
    let path = dir.path().join("backup.snap");
    std::fs::write(&path, file.to_bytes()).unwrap();
    for peer in old {
        peer.stop().await;
    }

    let new_ports = ports(3);
    let root = dir.path().join("new");
    let mut cluster_ids = Vec::new();
    for id in 1..=3 {
        let config = config(id, &new_ports, &root);
        let target =
            RestoreTarget { data_dir: config.data_dir.clone(), node_id: id, peers: config.peers };
        cluster_ids.push(restore(&path, &target).await.unwrap().cluster_id);
    }
    assert!(cluster_ids.iter().all(|id| *id == cluster_ids[0]));
    let mut peers = Vec::new();
    for id in 1..=3 {
        peers.push(TestPeer::start(config(id, &new_ports, &root)).await);
    }
    wait_for_leader(&peers).await;
    for peer in &peers {
        let status = peer.node.status();
        assert!(status.term > file.header().term, "terms go on from the snapshot's: {status:?}");
        assert_eq!(peer.node.replica().cluster_id().as_ref(), Some(&cluster_ids[0]));
        assert_ne!(peer.node.replica().cluster_id(), old_cluster);
        for key in &written {
            assert!(peer.node.replica().get(key).is_ok(), "peer {} lacks {key}", status.id);
        }
    }
    let (key, spec) = mesh("after-restore");
    peers[1].store.create(key.clone(), spec).await.unwrap();
    for peer in &peers {
        peer.store.sync().await.unwrap();
        assert!(peer.store.get(&key).await.is_ok());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_survivor_leads_alone_keeps_every_write_and_takes_fresh_peers() {
    let dir = TempDir::new().unwrap();
    let mut peers = start_cluster(3, dir.path()).await;
    let written = must_write(&peers, (0..15).map(|i| format!("before-{i}"))).await;
    let cluster_id = peers[0].node.replica().cluster_id();
    // The survivor holds every acknowledged write (what it lacks, a forced start cannot keep).
    peers[0].store.sync().await.unwrap();
    // Peers 2 and 3 are gone for good; the survivor is restarted with the flag.
    let mut forced = peers.remove(0).stop().await;
    for peer in peers {
        peer.stop().await;
    }
    forced.force_new_cluster = true;
    let survivor = TestPeer::start(forced).await;
    must_hold_within(Duration::from_secs(10), "the survivor leads", || survivor.node.is_leader())
        .await;
    assert_eq!(survivor.node.status().voters, [1]);
    for key in &written {
        assert!(survivor.store.get(key).await.is_ok(), "{key} was kept");
    }
    assert_eq!(survivor.node.replica().cluster_id(), cluster_id, "the same cluster goes on");
    // The dropped peers are retired by an entry the survivor applies once it leads.
    must_hold_within(Duration::from_secs(10), "peers 2 and 3 retired", || {
        survivor.node.replica().read(|s| s.retired.contains(&2) && s.retired.contains(&3))
    })
    .await;
    let (key, spec) = mesh("alone");
    survivor.store.create(key, spec).await.unwrap();

    let mut fresh = Vec::new();
    for id in [4, 5] {
        let ports: BTreeMap<u64, u16> =
            BTreeMap::from([(1, survivor.config.port), (id, kuma_test_support::free_port())]);
        let mut joining = config(id, &ports, dir.path());
        joining.join = true;
        fresh.push(TestPeer::start(joining).await);
        survivor.node.add_peer(id, format!("127.0.0.1:{}", ports[&id])).await.unwrap();
    }
    assert_eq!(survivor.node.status().voters, [1, 4, 5]);
    let (key, spec) = mesh("with-fresh-peers");
    fresh[0].store.create(key, spec).await.unwrap();
    for peer in &fresh {
        peer.store.sync().await.unwrap();
        assert_eq!(local_meshes(peer), local_meshes(&survivor));
    }
    assert_eq!(local_meshes(&survivor), written.len() + 2);
}
