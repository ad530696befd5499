//! The state machine: applies committed entries to this peer's replica. The replica lives in
//! memory; a snapshot of it is written to a file (`snapshot_file`, synced) whenever openraft
//! builds or installs one, its meta to RocksDB, and a restart loads the latest snapshot and
//! re-applies the log after it.
//!
//! A snapshot's image is the JSON of `ReplicaImage`, encoded once and kept as those bytes: in its
//! file, in what openraft sends to a follower, and in what a follower installs. Building one takes
//! a view of the replica under its lock (`ReplicaState::view`: a reference count per resource),
//! then encodes it in one pass on a blocking thread and writes it there, with no lock held: applies
//! and reads go on meanwhile, and so do the runtime's workers, heartbeats and appends.

use std::io::Cursor;
use std::sync::Arc;
use std::time::Instant;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::command::CommandResult;
use crate::db::{CF_META, KEY_SNAPSHOT};
use crate::disk::{is_out_of_space, DiskHealth};
use crate::replica::{Replica, ReplicaState};
use crate::snapshot_file::{FileRef, SnapshotDir};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// The value under `KEY_SNAPSHOT`: the latest snapshot's meta and the file of its image.
#[derive(Serialize)]
struct SnapshotRecord<'a> {
    meta: &'a SnapshotMeta,
    file: &'a FileRef,
}

/// `KEY_SNAPSHOT` as read: the form above, or the earlier one holding the image itself as `data`
/// (a JSON array of numbers), which is read as it is and replaced by the next snapshot.
#[derive(Deserialize)]
struct StoredValue {
    meta: SnapshotMeta,
    #[serde(default)]
    file: Option<FileRef>,
    #[serde(default)]
    data: Option<Vec<u8>>,
}

/// The stored snapshot.
#[derive(Clone, Debug)]
struct Current {
    meta: SnapshotMeta,
    /// `None`: stored in the earlier form, the image inside the RocksDB value.
    file: Option<FileRef>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    replica: Arc<Replica>,
    disk: DiskHealth,
    files: SnapshotDir,
    /// Held from writing a snapshot's file until RocksDB names it and the previous file is gone,
    /// and while a file is read: a build and an install never interleave, and a file being sent
    /// is not removed.
    current: Arc<tokio::sync::Mutex<Option<Current>>>,
    /// Tests stop a build here, between its view and its encoding.
    #[cfg(test)]
    encode_gate: Option<Arc<tests::Gate>>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine").finish()
    }
}

fn sm_error(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::StateMachine, verb, AnyError::new(&e)).into()
}

fn snapshot_error(verb: ErrorVerb, e: impl std::error::Error + 'static) -> StorageError {
    StorageIOError::new(ErrorSubject::Snapshot(None), verb, AnyError::new(&e)).into()
}

fn joined<T>(result: Result<T, tokio::task::JoinError>) -> Result<T, StorageError> {
    result.map_err(|e| snapshot_error(ErrorVerb::Write, e))
}

impl StateMachine {
    /// Opens the state machine, loading the latest snapshot into `replica`: one read of its file
    /// and one parse. Leftovers of an interrupted snapshot write are removed.
    pub fn open(db: Arc<DB>, replica: Arc<Replica>) -> Result<StateMachine, StorageError> {
        let files = SnapshotDir::of(db.path());
        let stored = StateMachine::read_value(&db)?;
        let current = match stored {
            None => None,
            Some(StoredValue { meta, file: Some(file), .. }) => {
                let data = files.read(&file).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
                let state =
                    ReplicaState::decode(&data).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
                replica.replace(state);
                Some(Current { meta, file: Some(file) })
            }
            Some(StoredValue { meta, data: Some(data), .. }) => {
                let state =
                    ReplicaState::decode(&data).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
                replica.replace(state);
                Some(Current { meta, file: None })
            }
            Some(StoredValue { .. }) => {
                let e = std::io::Error::other("the stored snapshot names neither a file nor data");
                return Err(snapshot_error(ErrorVerb::Read, e));
            }
        };
        files.remove_others(current.as_ref().and_then(|c| c.file.as_ref()).map(|f| &*f.name));
        Ok(StateMachine {
            db,
            replica,
            disk: DiskHealth::default(),
            files,
            current: Arc::new(tokio::sync::Mutex::new(current)),
            #[cfg(test)]
            encode_gate: None,
        })
    }

    /// Snapshot writes wait out a full disk, reported through `disk` (see `disk`).
    pub fn with_disk(self, disk: DiskHealth) -> StateMachine {
        StateMachine { disk, ..self }
    }

    fn meta_cf(db: &DB) -> &rocksdb::ColumnFamily {
        db.cf_handle(CF_META).expect("the meta column family is created at open")
    }

    fn read_value(db: &DB) -> Result<Option<StoredValue>, StorageError> {
        let bytes = db
            .get_cf(StateMachine::meta_cf(db), KEY_SNAPSHOT)
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))
    }

    /// Stores `data` as the snapshot of `meta` (its file synced, then its meta synced) unless a
    /// later snapshot is stored already; gives `data` back.
    async fn store(&self, meta: &SnapshotMeta, data: Vec<u8>) -> Result<Vec<u8>, StorageError> {
        let mut current = self.current.lock().await;
        if let Some(stored) = current.as_ref() {
            if stored.meta.last_log_id > meta.last_log_id {
                info!(
                    stored = ?stored.meta.last_log_id,
                    offered = ?meta.last_log_id,
                    "a later Raft snapshot is stored already; keeping it"
                );
                return Ok(data);
            }
        }
        let name = SnapshotDir::name_for(meta);
        let files = self.files.clone();
        let (data, written) = joined(
            tokio::task::spawn_blocking(move || {
                let written = files.write(&name, &data);
                (data, written.map_err(|e| (name, e)))
            })
            .await,
        )?;
        let file = match written {
            Ok(file) => file,
            // Rare: waits here for space, as the other durable writes do.
            Err((name, e)) if is_out_of_space(&e) => self
                .disk
                .until_written("Raft snapshot", || self.files.write(&name, &data))
                .await
                .map_err(|e| snapshot_error(ErrorVerb::Write, e))?,
            Err((_, e)) => return Err(snapshot_error(ErrorVerb::Write, e)),
        };
        let record = serde_json::to_vec(&SnapshotRecord { meta, file: &file })
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        // Synced: the log before this snapshot may be purged once it exists.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.disk
            .until_written("Raft snapshot", || {
                self.db.put_cf_opt(StateMachine::meta_cf(&self.db), KEY_SNAPSHOT, &record, &options)
            })
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        let keep = file.name.clone();
        *current = Some(Current { meta: meta.clone(), file: Some(file) });
        crate::metrics::RECORDED.snapshots.increment(1);
        crate::metrics::RECORDED.snapshot_bytes.set(data.len() as f64);
        let files = self.files.clone();
        joined(tokio::task::spawn_blocking(move || files.remove_others(Some(&keep))).await)?;
        Ok(data)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let started = Instant::now();
        // A view under the lock (reference counts), the encoding after it. Applies and reads wait
        // for the view only: at 100,000 resources the encoding under the lock took 1.7-2.0 s, and
        // a deep copy of the state to encode outside it took as long.
        // Timed from inside the lock: `view_us` is how long applies and reads waited for it,
        // `lock_wait_us` how long this build waited for an apply to let go of it.
        let (view, held) = self.replica.read(|state| {
            let at = Instant::now();
            (state.view(), at.elapsed())
        });
        let viewed = started.elapsed();
        let snapshot_id = match view.applied {
            Some(last) => format!("{}-{}", last.leader_id, last.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: view.applied,
            last_membership: view.membership.clone(),
            snapshot_id,
        };
        let resources = view.resources.len();
        // Encoded on a blocking thread, and the view dropped there: the last reference to a
        // resource replaced meanwhile frees it.
        #[cfg(test)]
        let gate = self.encode_gate.clone();
        let data = joined(
            tokio::task::spawn_blocking(move || {
                #[cfg(test)]
                if let Some(gate) = gate {
                    gate.pass();
                }
                view.encode()
            })
            .await,
        )?
        .map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        let encoded = started.elapsed();
        let data = self.store(&meta, data).await?;
        info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            resources,
            bytes = data.len(),
            view_us = held.as_micros() as u64,
            lock_wait_us = viewed.saturating_sub(held).as_micros() as u64,
            encode_ms = (encoded - viewed).as_millis() as u64,
            store_ms = (started.elapsed() - encoded).as_millis() as u64,
            "built a Raft snapshot"
        );
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok(self.replica.read(|s| (s.applied, s.membership.clone())))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        Ok(self.replica.apply(|state, events| {
            entries
                .into_iter()
                .map(|entry| {
                    state.applied = Some(entry.log_id);
                    match entry.payload {
                        EntryPayload::Blank => CommandResult::default(),
                        EntryPayload::Normal(command) => state.apply(&command, events),
                        EntryPayload::Membership(membership) => {
                            state.membership =
                                StoredMembership::new(Some(entry.log_id), membership);
                            CommandResult::default()
                        }
                    }
                })
                .collect()
        }))
    }

    async fn get_snapshot_builder(&mut self) -> StateMachine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let started = Instant::now();
        let data = snapshot.into_inner();
        let (data, state) = joined(
            tokio::task::spawn_blocking(move || {
                let state = ReplicaState::decode(&data);
                (data, state)
            })
            .await,
        )?;
        let mut state = state.map_err(|e| sm_error(ErrorVerb::Read, e))?;
        let decoded = started.elapsed();
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        let data = self.store(meta, data).await?;
        self.replica.replace(state);
        info!(
            index = meta.last_log_id.map_or(0, |l| l.index),
            bytes = data.len(),
            decode_ms = decoded.as_millis() as u64,
            store_ms = (started.elapsed() - decoded).as_millis() as u64,
            "installed a Raft snapshot"
        );
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        // Held while reading, so the file is not replaced and removed meanwhile.
        let current = self.current.lock().await;
        let Some(Current { meta, file }) = current.clone() else { return Ok(None) };
        let data = match file {
            Some(file) => {
                let files = self.files.clone();
                joined(tokio::task::spawn_blocking(move || files.read(&file)).await)?
                    .map_err(|e| snapshot_error(ErrorVerb::Read, e))?
            }
            None => StateMachine::read_value(&self.db)?.and_then(|v| v.data).ok_or_else(|| {
                let e = std::io::Error::other("the stored snapshot's data is gone");
                snapshot_error(ErrorVerb::Read, e)
            })?,
        };
        drop(current);
        Ok(Some(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;
    use std::sync::Barrier;
    use std::time::Duration;

    use chrono::Utc;
    use kuma_model::{MeshSpec, ResourceKey, Spec};
    use openraft::{CommittedLeaderId, Membership};
    use tempfile::TempDir;

    use super::*;
    use crate::command::{Command, Op, RequestId};
    use crate::snapshot_file::DIR;
    use crate::types::PeerNode;

    /// Where a build stops between its view and its encoding until the test opens it.
    pub(crate) struct Gate {
        reached: Barrier,
        open: Barrier,
    }

    impl Gate {
        fn new() -> Gate {
            Gate { reached: Barrier::new(2), open: Barrier::new(2) }
        }

        /// The build's side: says it got here, then waits to be let through.
        pub(crate) fn pass(&self) {
            self.reached.wait();
            self.open.wait();
        }
    }

    fn entry(index: u64, mesh: &str) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 1), index),
            payload: EntryPayload::Normal(Command {
                request_id: RequestId { origin: 9, seq: index },
                at: Utc::now(),
                ops: vec![Op::create(ResourceKey::mesh(mesh), &Spec::Mesh(MeshSpec::default()))],
            }),
        }
    }

    fn open(dir: &Path) -> (Arc<DB>, Arc<Replica>, Result<StateMachine, StorageError>) {
        let db = crate::db::open(dir).unwrap();
        let replica = Arc::new(Replica::default());
        let sm = StateMachine::open(db.clone(), replica.clone());
        (db, replica, sm)
    }

    /// A state machine that applied meshes m1..=mn at indexes 1..=n.
    async fn applied(dir: &Path, n: u64) -> (Arc<DB>, Arc<Replica>, StateMachine) {
        let (db, replica, sm) = open(dir);
        let mut sm = sm.unwrap();
        let entries: Vec<Entry> = (1..=n).map(|i| entry(i, &format!("m{i}"))).collect();
        sm.apply(entries).await.unwrap();
        (db, replica, sm)
    }

    fn meshes(replica: &Replica) -> Vec<String> {
        replica.read(|s| s.store.resources().map(|r| r.key.name.clone()).collect())
    }

    fn files(dir: &Path) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(dir.join(DIR)) else { return Vec::new() };
        let mut names: Vec<String> =
            entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn stored_value(db: &DB) -> Vec<u8> {
        db.get_cf(StateMachine::meta_cf(db), KEY_SNAPSHOT).unwrap().unwrap()
    }

    #[tokio::test]
    async fn a_snapshot_is_a_file_named_by_a_small_value_and_survives_a_restart() {
        let temp = TempDir::new().unwrap();
        let (db, replica, mut sm) = applied(temp.path(), 3).await;
        let first = sm.build_snapshot().await.unwrap();
        assert_eq!(first.meta.last_log_id.map(|l| l.index), Some(3));
        sm.apply([entry(4, "m4")]).await.unwrap();
        let built = sm.build_snapshot().await.unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(4));
        let image = built.snapshot.into_inner();
        // The image is the replica's JSON, readable as a `ReplicaImage` by any peer.
        let read: crate::replica::ReplicaImage = serde_json::from_slice(&image).unwrap();
        assert_eq!(read.resources.len(), 4);
        // One file, the second snapshot's: the first was removed once the second was named.
        assert_eq!(files(temp.path()).len(), 1, "{:?}", files(temp.path()));
        drop((db, replica, sm));

        let (db, replica, sm) = open(temp.path());
        let mut sm = sm.unwrap();
        let value = stored_value(&db);
        assert!(value.len() < 2048, "the RocksDB value holds no image: {} bytes", value.len());
        assert_eq!(meshes(&replica), ["m1", "m2", "m3", "m4"]);
        assert_eq!(replica.read(|s| s.applied.map(|l| l.index)), Some(4));
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.meta, built.meta);
        assert_eq!(current.snapshot.into_inner(), image, "sent as it was built");
    }

    /// Issue 16: the image was encoded under the replica's lock, so at 100,000 resources applies
    /// and reads waited 1.7-2.0 s for each snapshot built, and elections followed. A build now
    /// holds the lock for its view only: stopped between its view and its encoding, it lets
    /// applies and reads through, and the image holds the state of its view, not what came after.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn applies_and_reads_go_on_while_a_snapshot_is_encoded() {
        let temp = TempDir::new().unwrap();
        let (_db, replica, mut sm) = applied(temp.path(), 3).await;
        let gate = Arc::new(Gate::new());
        sm.encode_gate = Some(gate.clone());
        let mut builder = sm.get_snapshot_builder().await;
        let build = tokio::spawn(async move { builder.build_snapshot().await });
        let wait = |barrier: fn(&Gate) -> &Barrier| {
            let gate = gate.clone();
            tokio::time::timeout(
                Duration::from_secs(30),
                tokio::task::spawn_blocking(move || {
                    barrier(&gate).wait();
                }),
            )
        };
        wait(|g| &g.reached).await.expect("the build reaches its encoding").unwrap();

        let applying = sm.apply([entry(4, "m4"), entry(5, "m5")]);
        tokio::time::timeout(Duration::from_secs(30), applying)
            .await
            .expect("applies do not wait for the encoding")
            .unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2", "m3", "m4", "m5"]);
        assert_eq!(replica.get(&ResourceKey::mesh("m5")).unwrap().key.name, "m5");

        wait(|g| &g.open).await.expect("the build waits at its gate").unwrap();
        let built = build.await.unwrap().unwrap();
        assert_eq!(built.meta.last_log_id.map(|l| l.index), Some(3));
        let image: crate::replica::ReplicaImage =
            serde_json::from_slice(&built.snapshot.into_inner()).unwrap();
        let names: Vec<String> = image.resources.iter().map(|r| r.key.name.clone()).collect();
        assert_eq!(names, ["m1", "m2", "m3"], "the image is the state of its view");
    }

    /// What earlier versions stored: the image inside the RocksDB value, as numbers.
    #[derive(Serialize)]
    struct OldStoredSnapshot {
        meta: SnapshotMeta,
        data: Vec<u8>,
    }

    #[tokio::test]
    async fn a_snapshot_stored_the_earlier_way_opens_and_is_replaced_by_the_next() {
        let temp = TempDir::new().unwrap();
        let (db, replica, _) = applied(temp.path(), 2).await;
        let image = replica.read(ReplicaState::image);
        let data = serde_json::to_vec(&image).unwrap();
        let meta = SnapshotMeta {
            last_log_id: image.applied,
            last_membership: image.membership.clone(),
            snapshot_id: "old".to_string(),
        };
        let old = serde_json::to_vec(&OldStoredSnapshot { meta: meta.clone(), data: data.clone() })
            .unwrap();
        db.put_cf(StateMachine::meta_cf(&db), KEY_SNAPSHOT, old).unwrap();
        drop((db, replica));

        let (db, replica, sm) = open(temp.path());
        let mut sm = sm.unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2"]);
        assert!(crate::db::holds_raft_state(&db).unwrap());
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!((current.meta, current.snapshot.into_inner()), (meta, data));
        assert!(files(temp.path()).is_empty());

        sm.apply([entry(3, "m3")]).await.unwrap();
        sm.build_snapshot().await.unwrap();
        assert!(stored_value(&db).len() < 2048, "rewritten in the new form");
        assert_eq!(files(temp.path()).len(), 1);
        drop((db, replica, sm));
        let (_, replica, sm) = open(temp.path());
        sm.unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2", "m3"]);
    }

    #[tokio::test]
    async fn a_torn_temporary_file_and_an_unnamed_file_are_ignored_and_removed() {
        let temp = TempDir::new().unwrap();
        let (db, replica, mut sm) = applied(temp.path(), 2).await;
        let built = sm.build_snapshot().await.unwrap();
        let kept = files(temp.path());
        // A crash while writing the next snapshot: half a temporary file, and a whole file the
        // crash kept RocksDB from naming.
        let image = built.snapshot.into_inner();
        let dir = temp.path().join(DIR);
        std::fs::write(dir.join("snapshot-00000000000000000009-2-1.json.tmp"), &image[..10])
            .unwrap();
        std::fs::write(dir.join("snapshot-00000000000000000009-2-2.json"), b"{\"revision\":")
            .unwrap();
        drop((db, replica, sm));

        let (_, replica, sm) = open(temp.path());
        let mut sm = sm.unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2"]);
        assert_eq!(files(temp.path()), kept);
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!(current.snapshot.into_inner(), image);
    }

    #[tokio::test]
    async fn a_damaged_or_missing_snapshot_file_stops_the_open_and_says_so() {
        let temp = TempDir::new().unwrap();
        let (db, replica, mut sm) = applied(temp.path(), 2).await;
        sm.build_snapshot().await.unwrap();
        drop((db, replica, sm));
        let name = files(temp.path()).remove(0);
        let path = temp.path().join(DIR).join(&name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[5] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let Err(error) = open(temp.path()).2 else { panic!("a damaged snapshot opened") };
        let text = error.to_string();
        assert!(text.contains(&name) && text.contains("checksum"), "{text}");
        std::fs::remove_file(&path).unwrap();
        let Err(error) = open(temp.path()).2 else { panic!("a missing snapshot opened") };
        assert!(error.to_string().contains("does not read"), "{error}");
    }

    #[tokio::test]
    async fn an_installed_snapshot_is_stored_as_sent_and_an_older_one_does_not_replace_it() {
        let source = TempDir::new().unwrap();
        let (_, _, mut leader) = applied(source.path(), 3).await;
        let built = leader.build_snapshot().await.unwrap();
        let image = built.snapshot.into_inner();

        let temp = TempDir::new().unwrap();
        let (db, replica, sm) = open(temp.path());
        let mut sm = sm.unwrap();
        let mut meta = built.meta.clone();
        meta.last_membership = StoredMembership::new(
            meta.last_log_id,
            Membership::new(vec![BTreeSet::from([1])], BTreeMap::from([(1, PeerNode::default())])),
        );
        sm.install_snapshot(&meta, Box::new(Cursor::new(image.clone()))).await.unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2", "m3"]);
        assert_eq!(replica.read(|s| s.membership.clone()), meta.last_membership);

        // A build that copied the state before the install stored it comes too late.
        let older = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(2, 1), 1)),
            ..meta.clone()
        };
        sm.store(&older, b"{}".to_vec()).await.unwrap();
        let current = sm.get_current_snapshot().await.unwrap().unwrap();
        assert_eq!((current.meta, current.snapshot.into_inner()), (meta, image));
        drop((db, replica, sm));
        let (_, replica, sm) = open(temp.path());
        sm.unwrap();
        assert_eq!(meshes(&replica), ["m1", "m2", "m3"]);
    }
}
