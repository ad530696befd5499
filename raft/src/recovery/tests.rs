use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::Utc;
use openraft::storage::RaftLogStorage;
use openraft::{CommittedLeaderId, EntryPayload, Membership, RaftLogReader};
use tempfile::TempDir;

use super::*;
use crate::backup::tests::image_with;
use crate::command::Op;

fn peers(list: &[(NodeId, u16)]) -> BTreeMap<NodeId, String> {
    list.iter().map(|(id, port)| (*id, format!("127.0.0.1:{port}"))).collect()
}

/// A snapshot file of 4 meshes at index 42, term 3, written to a temp dir.
fn must_write_file(dir: &TempDir) -> PathBuf {
    let path = dir.path().join("backup.snap");
    let file = SnapshotFile::of_image(&image_with(4), 1, Utc::now()).unwrap();
    std::fs::write(&path, file.to_bytes()).unwrap();
    path
}

fn target(dir: &Path, node_id: NodeId) -> RestoreTarget {
    RestoreTarget {
        data_dir: dir.to_path_buf(),
        node_id,
        peers: peers(&[(4, 14), (5, 15), (6, 16)]),
    }
}

#[tokio::test]
async fn a_restored_directory_holds_the_snapshot_with_the_new_peers_as_voters_and_no_log() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let data = temp.path().join("peer-5");
    let restored = restore(&from, &target(&data, 5)).await.unwrap();
    assert_eq!((restored.index, restored.term, restored.resources), (42, 3, 4));

    let db = crate::db::open(&data).unwrap();
    let replica = Arc::new(Replica::default());
    StateMachine::open(db.clone(), replica.clone()).unwrap();
    replica.read(|state| {
        assert_eq!(state.store.resources().count(), 4);
        assert_eq!(state.cluster_id.as_deref(), Some(restored.cluster_id.as_str()));
        assert_eq!(state.applied.map(|l| (l.index, l.leader_id.term)), Some((42, 3)));
        assert_eq!(state.membership.voter_ids().collect::<Vec<_>>(), [4, 5, 6]);
        assert_eq!(state.membership.log_id(), &state.applied);
        let address = state.membership.membership().get_node(&6).unwrap();
        assert_eq!(address.raft_address, "127.0.0.1:16");
        assert!(state.peers.is_empty() && state.retired.is_empty());
    });
    let mut log = LogStore::new(db.clone());
    let log_state = log.get_log_state().await.unwrap();
    assert_eq!(log_state.last_purged_log_id, replica.read(|s| s.applied));
    assert_eq!(log_state.last_log_id, log_state.last_purged_log_id, "no entry after the snapshot");
    assert!(log.try_get_log_entries(0..100).await.unwrap().is_empty());
    let vote = log.read_vote().await.unwrap().unwrap();
    assert_eq!((vote.leader_id.term, vote.leader_id.node_id, vote.committed), (3, 5, false));
}

#[tokio::test]
async fn peers_restored_from_one_file_with_one_list_share_a_cluster_id_no_other_restore_gives() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let a = restore(&from, &target(&temp.path().join("a"), 4)).await.unwrap();
    let b = restore(&from, &target(&temp.path().join("b"), 6)).await.unwrap();
    assert_eq!(a.cluster_id, b.cluster_id);
    assert_ne!(a.cluster_id, "old-cluster");
    let mut other_list = target(&temp.path().join("c"), 4);
    other_list.peers.insert(7, "127.0.0.1:17".to_string());
    let c = restore(&from, &other_list).await.unwrap();
    assert_ne!(a.cluster_id, c.cluster_id);
}

#[tokio::test]
async fn a_directory_with_anything_in_it_is_refused_and_left_alone() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let data = temp.path().join("used");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("CURRENT"), "x").unwrap();
    let err = restore(&from, &target(&data, 4)).await.unwrap_err();
    assert!(matches!(err, RecoveryError::DataDirNotEmpty { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(data.join("CURRENT")).unwrap(), "x");
}

#[tokio::test]
async fn an_id_missing_from_the_peer_list_is_refused() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let err = restore(&from, &target(&temp.path().join("d"), 1)).await.unwrap_err();
    assert!(err.to_string().starts_with("--node-id 1 is not in --peers (4=127.0.0.1:14"), "{err}");
}

#[tokio::test]
async fn a_damaged_file_is_refused_before_the_directory_is_touched() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let mut bytes = std::fs::read(&from).unwrap();
    bytes.truncate(bytes.len() - 10);
    std::fs::write(&from, bytes).unwrap();
    let data = temp.path().join("never");
    let err = restore(&from, &target(&data, 4)).await.unwrap_err();
    assert!(matches!(
        &err,
        RecoveryError::Snapshot { error: SnapshotFileError::Truncated { .. }, .. }
    ));
    assert!(!data.exists());
}

fn leader(term: u64, node: NodeId) -> CommittedLeaderId<NodeId> {
    CommittedLeaderId::new(term, node)
}

fn three_voters() -> Membership<NodeId, PeerNode> {
    let nodes: BTreeMap<NodeId, PeerNode> = (1..=3)
        .map(|id| (id, PeerNode { raft_address: format!("127.0.0.1:{}", 10 + id) }))
        .collect();
    Membership::new(vec![BTreeSet::from([1, 2, 3])], nodes)
}

/// A peer's data with a log: the membership of 1, 2 and 3 at index 1 (term 1), then `normal`
/// writes in term 2; its vote is for peer 2 in term 3.
fn must_peer_data(dir: &Path, normal: u64) -> Arc<DB> {
    let db = crate::db::open(dir).unwrap();
    let logs = db.cf_handle(CF_LOGS).unwrap();
    let mut entries = vec![Entry {
        log_id: LogId::new(leader(1, 1), 1),
        payload: EntryPayload::Membership(three_voters()),
    }];
    for index in 2..2 + normal {
        entries.push(Entry {
            log_id: LogId::new(leader(2, 2), index),
            payload: EntryPayload::Normal(Command {
                request_id: RequestId { origin: 9, seq: index },
                at: Utc::now(),
                ops: vec![Op::Retire { id: 100 + index }],
            }),
        });
    }
    for entry in &entries {
        db.put_cf(logs, index_key(entry.log_id.index), serde_json::to_vec(entry).unwrap()).unwrap();
    }
    let meta = db.cf_handle(CF_META).unwrap();
    db.put_cf(meta, KEY_VOTE, serde_json::to_vec(&Vote::new_committed(3, 2)).unwrap()).unwrap();
    db
}

async fn must_entries(db: &Arc<DB>) -> Vec<Entry> {
    LogStore::new(db.clone()).try_get_log_entries(0..1000).await.unwrap()
}

#[tokio::test]
async fn forcing_a_new_cluster_appends_this_peer_alone_after_every_kept_entry_in_a_higher_term() {
    let temp = TempDir::new().unwrap();
    let db = must_peer_data(temp.path(), 4);
    let before = must_entries(&db).await;
    let done = force_new_cluster(&db, 1, "ignored:1").unwrap();
    assert_eq!(done.previous_voters, BTreeSet::from([1, 2, 3]));
    assert_eq!(done.dropped, BTreeSet::from([2, 3]));
    assert_eq!((done.last_kept.index, done.membership_index, done.term), (5, Some(6), 4));
    assert_eq!(done.raft_address, "127.0.0.1:11", "the address the cluster knew is kept");

    let after = must_entries(&db).await;
    assert_eq!(after[..before.len()], before[..], "every entry is kept as it was");
    assert_eq!(after.len(), before.len() + 2);
    let (membership, retire) = (&after[5], &after[6]);
    assert_eq!(membership.log_id, LogId::new(leader(4, 1), 6));
    let EntryPayload::Membership(alone) = &membership.payload else { panic!("{membership:?}") };
    assert_eq!(alone.voter_ids().collect::<Vec<_>>(), [1]);
    assert_eq!(alone.nodes().count(), 1);
    assert_eq!(retire.log_id, LogId::new(leader(4, 1), 7));
    let EntryPayload::Normal(command) = &retire.payload else { panic!("{retire:?}") };
    assert_eq!(command.ops, [Op::Retire { id: 2 }, Op::Retire { id: 3 }]);
    let vote = LogStore::new(db.clone()).read_vote().await.unwrap().unwrap();
    assert_eq!(vote, Vote::new(4, 1), "the vote is raised to the new entries' term");
}

#[tokio::test]
async fn forcing_again_on_a_peer_already_alone_changes_nothing() {
    let temp = TempDir::new().unwrap();
    let db = must_peer_data(temp.path(), 2);
    force_new_cluster(&db, 1, "").unwrap();
    let before = must_entries(&db).await;
    let again = force_new_cluster(&db, 1, "").unwrap();
    assert_eq!(again.membership_index, None);
    assert!(again.dropped.is_empty());
    assert_eq!(must_entries(&db).await, before);
}

#[tokio::test]
async fn a_peer_with_no_data_or_outside_the_membership_is_not_forced() {
    let temp = TempDir::new().unwrap();
    let empty = crate::db::open(&temp.path().join("empty")).unwrap();
    let err = force_new_cluster(&empty, 1, "127.0.0.1:1").unwrap_err();
    assert!(matches!(err, RecoveryError::NoData), "{err}");
    let db = must_peer_data(&temp.path().join("member"), 1);
    let err = force_new_cluster(&db, 9, "127.0.0.1:1").unwrap_err();
    assert_eq!(
        err.to_string(),
        "peer 9 is not a member of the cluster its data describes (members: 1, 2, 3): force a new \
         cluster from a peer that was a voter"
    );
}

#[tokio::test]
async fn a_restored_peer_with_only_a_snapshot_is_forced_after_the_snapshot() {
    let temp = TempDir::new().unwrap();
    let from = must_write_file(&temp);
    let data = temp.path().join("restored");
    restore(&from, &target(&data, 4)).await.unwrap();
    let db = crate::db::open(&data).unwrap();
    let done = force_new_cluster(&db, 4, "").unwrap();
    assert_eq!((done.last_kept.index, done.membership_index), (42, Some(43)));
    assert_eq!(done.dropped, BTreeSet::from([5, 6]));
    // The restored vote is in term 3, like the snapshot's last entry.
    assert_eq!(done.term, 4);
    let entries = must_entries(&db).await;
    assert_eq!(entries.iter().map(|e| e.log_id.index).collect::<Vec<_>>(), [43, 44]);
}
