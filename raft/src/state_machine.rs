//! The state machine: applies committed entries to this peer's replica. The replica lives in
//! memory; a snapshot of it is written to RocksDB (synced) whenever openraft builds one, and a
//! restart loads the latest snapshot and re-applies the log after it.

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use rocksdb::{WriteOptions, DB};
use serde::{Deserialize, Serialize};

use crate::command::CommandResult;
use crate::db::{CF_META, KEY_SNAPSHOT};
use crate::disk::DiskHealth;
use crate::replica::{Replica, ReplicaImage, ReplicaState};
use crate::types::{Entry, LogId, SnapshotMeta, StorageError, StoredMembership, TypeConfig};

/// A snapshot as kept on disk.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    replica: Arc<Replica>,
    disk: DiskHealth,
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

impl StateMachine {
    /// Opens the state machine, loading the latest snapshot into `replica`.
    pub fn open(db: Arc<DB>, replica: Arc<Replica>) -> Result<StateMachine, StorageError> {
        let sm = StateMachine { db, replica, disk: DiskHealth::default() };
        if let Some(stored) = sm.stored_snapshot()? {
            let image: ReplicaImage = serde_json::from_slice(&stored.data)
                .map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
            let state =
                ReplicaState::from_image(image).map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
            sm.replica.replace(state);
        }
        Ok(sm)
    }

    /// Snapshot writes wait out a full disk, reported through `disk` (see `disk`).
    pub fn with_disk(self, disk: DiskHealth) -> StateMachine {
        StateMachine { disk, ..self }
    }

    fn meta_cf(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("the meta column family is created at open")
    }

    fn stored_snapshot(&self) -> Result<Option<StoredSnapshot>, StorageError> {
        let bytes = self
            .db
            .get_cf(self.meta_cf(), KEY_SNAPSHOT)
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| snapshot_error(ErrorVerb::Read, e))
    }

    async fn store_snapshot(&self, snapshot: &StoredSnapshot) -> Result<(), StorageError> {
        let bytes =
            serde_json::to_vec(snapshot).map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        // Synced: the log before this snapshot may be purged once it exists.
        let mut options = WriteOptions::default();
        options.set_sync(true);
        self.disk
            .until_written("Raft snapshot", || {
                self.db.put_cf_opt(self.meta_cf(), KEY_SNAPSHOT, &bytes, &options)
            })
            .await
            .map_err(|e| snapshot_error(ErrorVerb::Write, e))
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let image = self.replica.read(ReplicaState::image);
        let data = serde_json::to_vec(&image).map_err(|e| snapshot_error(ErrorVerb::Write, e))?;
        let snapshot_id = match image.applied {
            Some(last) => format!("{}-{}", last.leader_id, last.index),
            None => "empty".to_string(),
        };
        let meta = SnapshotMeta {
            last_log_id: image.applied,
            last_membership: image.membership.clone(),
            snapshot_id,
        };
        self.store_snapshot(&StoredSnapshot { meta: meta.clone(), data: data.clone() }).await?;
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
        let data = snapshot.into_inner();
        let image: ReplicaImage =
            serde_json::from_slice(&data).map_err(|e| sm_error(ErrorVerb::Read, e))?;
        let mut state =
            ReplicaState::from_image(image).map_err(|e| sm_error(ErrorVerb::Read, e))?;
        state.applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        self.store_snapshot(&StoredSnapshot { meta: meta.clone(), data }).await?;
        self.replica.replace(state);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        Ok(self.stored_snapshot()?.map(|stored| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        }))
    }
}
