//! The Raft log on RocksDB. An append is reported durable only once it is synced to disk, and
//! the vote is synced before `save_vote` returns: a peer that crashes never forgets an entry it
//! acknowledged or a vote it cast.
//!
//! The newest entries are also kept in memory as they were appended (`Recent`): openraft reads
//! every entry back right after appending it, to send it to the followers and again to apply it
//! once committed, and those reads are then served without RocksDB and without decoding JSON.
//!
//! On the leader, an append hands its entries to `early` before the synced write, so the
//! followers write them while the leader does (see `early`).

use std::collections::VecDeque;
use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, ErrorSubject, ErrorVerb, RaftLogReader, StorageIOError};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::db::{index_key, CF_LOGS, CF_META, KEY_COMMITTED, KEY_LAST_PURGED, KEY_VOTE};
use crate::disk::DiskHealth;
use crate::early::EarlyAppend;
use crate::types::{Entry, LogId, NodeId, StorageError, TypeConfig, Vote};

#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
    disk: DiskHealth,
    /// Bytes of entries appended since this peer started (upkeep snapshots by size).
    appended: Arc<std::sync::atomic::AtomicU64>,
    /// Shared by the clones openraft reads with.
    recent: Arc<Mutex<Recent>>,
    /// The vote last saved or read: whether this peer leads the entries it appends.
    vote: Arc<Mutex<Option<Vote>>>,
    /// Sends the leader's entries to idle followers as its own write starts; `None`: off.
    early: Option<EarlyAppend>,
}

/// Entries kept at most in `Recent`, and their encoded bytes at most.
const RECENT_ENTRIES: usize = 1024;
const RECENT_BYTES: usize = 8 << 20;

/// The newest entries of the log with consecutive indexes, each exactly as it is on disk: an
/// entry comes in once its append is durable and leaves when the log is truncated at or before
/// it, or purged past it, or when newer ones push it out.
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|(entry, _)| entry.log_id.index)
    }

    fn next_index(&self) -> Option<u64> {
        self.entries.back().map(|(entry, _)| entry.log_id.index + 1)
    }

    /// Takes appended entries (with their encoded sizes). Entries that do not follow the kept
    /// ones replace them.
    fn extend(&mut self, appended: impl IntoIterator<Item = (Entry, usize)>) {
        for (entry, bytes) in appended {
            if self.next_index().is_some_and(|next| next != entry.log_id.index) {
                self.entries.clear();
                self.bytes = 0;
            }
            self.bytes += bytes;
            self.entries.push_back((entry, bytes));
        }
        while self.entries.len() > RECENT_ENTRIES
            || (self.bytes > RECENT_BYTES && self.entries.len() > 1)
        {
            if let Some((_, bytes)) = self.entries.pop_front() {
                self.bytes -= bytes;
            }
        }
    }

    /// Forgets the entries from `index` on.
    fn truncate(&mut self, index: u64) {
        while self.entries.back().is_some_and(|(entry, _)| entry.log_id.index >= index) {
            if let Some((_, bytes)) = self.entries.pop_back() {
                self.bytes -= bytes;
            }
        }
    }

    /// Forgets the entries up to `index`.
    fn purge(&mut self, index: u64) {
        while self.entries.front().is_some_and(|(entry, _)| entry.log_id.index <= index) {
            if let Some((_, bytes)) = self.entries.pop_front() {
                self.bytes -= bytes;
            }
        }
    }

    /// The log id right before `index`, if the entry there is kept.
    fn log_id_before(&self, index: u64) -> Option<LogId> {
        let (last, _) = self.entries.back()?;
        (last.log_id.index + 1 == index).then_some(last.log_id)
    }

    /// Entries `start..end`, if all of them are kept.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let (first, next) = (self.first_index()?, self.next_index()?);
        if start < first || end > next || start > end {
            return None;
        }
        let from = (start - first) as usize;
        let to = (end - first) as usize;
        Some(self.entries.range(from..to).map(|(entry, _)| entry.clone()).collect())
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore").finish()
    }
}

fn io_error(
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
    e: impl std::error::Error + 'static,
) -> StorageError {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

fn synced() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

/// One row of the `logs` column family: the big-endian index and the encoded entry.
type Row = ([u8; 8], Vec<u8>);

/// Entries as the rows of the `logs` column family.
fn encode_rows(entries: &[Entry]) -> Result<Vec<Row>, StorageError> {
    entries
        .iter()
        .map(|entry| {
            serde_json::to_vec(entry)
                .map(|value| (index_key(entry.log_id.index), value))
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
        })
        .collect()
}

impl LogStore {
    /// One synced write for the whole batch: the rows are on disk when it returns.
    fn write_rows(&self, rows: &[Row]) -> Result<(), rocksdb::Error> {
        let mut batch = WriteBatch::default();
        for (key, value) in rows {
            batch.put_cf(self.logs(), key, value);
        }
        crate::metrics::fsync(|| self.db.write_opt(batch, &synced()))
    }

    pub fn new(db: Arc<DB>) -> LogStore {
        LogStore {
            db,
            disk: DiskHealth::default(),
            appended: Arc::default(),
            recent: Arc::default(),
            vote: Arc::default(),
            early: None,
        }
    }

    /// Appends of the leader's own entries send them to idle followers first (see `early`).
    pub(crate) fn with_early(self, early: EarlyAppend) -> LogStore {
        LogStore { early: Some(early), ..self }
    }

    fn remember_vote(&self, vote: Option<Vote>) {
        *self.vote.lock().unwrap_or_else(|p| p.into_inner()) = vote;
    }

    /// Offers `entries` to early replication, when this peer leads them and knows the log id
    /// before them (it does whenever it appended that one itself since it started).
    fn send_early(&self, entries: &[Entry]) {
        let Some(early) = &self.early else { return };
        let Some(vote) = *self.vote.lock().unwrap_or_else(|p| p.into_inner()) else { return };
        let Some(first) = entries.first() else { return };
        let prev = match first.log_id.index {
            0 => None,
            index => match self.recent().log_id_before(index) {
                Some(prev) => Some(prev),
                None => return,
            },
        };
        early.offer(&vote, prev, entries);
    }

    /// Counts the bytes of entries appended since this peer started; holds no reference to the
    /// database, so whoever keeps it does not keep RocksDB open.
    pub fn appended_counter(&self) -> Arc<std::sync::atomic::AtomicU64> {
        self.appended.clone()
    }

    /// Durable writes wait out a full disk, reported through `disk` (see `disk`).
    pub fn with_disk(self, disk: DiskHealth) -> LogStore {
        LogStore { disk, ..self }
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn logs(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_LOGS).expect("the logs column family is created at open")
    }

    fn meta(&self) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(CF_META).expect("the meta column family is created at open")
    }

    fn get_meta<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let bytes = self
            .db
            .get_cf(self.meta(), key)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))?;
        bytes
            .map(|b| serde_json::from_slice(&b))
            .transpose()
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Read, e))
    }

    async fn put_meta<T: Serialize>(
        &self,
        key: &[u8],
        value: &T,
        sync: bool,
    ) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let options = if sync { synced() } else { WriteOptions::default() };
        self.disk
            .until_written("Raft metadata", || match sync {
                true => {
                    crate::metrics::fsync(|| self.db.put_cf_opt(self.meta(), key, &bytes, &options))
                }
                false => self.db.put_cf_opt(self.meta(), key, &bytes, &options),
            })
            .await
            .map_err(|e| io_error(ErrorSubject::Store, ErrorVerb::Write, e))
    }
}

/// Reads the last log id without keeping the database open: RocksDB must close when openraft
/// stops, so that the same process can open it again (a restart in tests).
#[derive(Clone, Debug)]
pub struct LastLogId {
    db: std::sync::Weak<DB>,
}

impl LastLogId {
    pub fn of(log: &LogStore) -> LastLogId {
        LastLogId { db: Arc::downgrade(&log.db) }
    }

    /// `None` for an empty log, and once the store is closed.
    pub async fn read(&self) -> Option<LogId> {
        let db = self.db.upgrade()?;
        LogStore::new(db).get_log_state().await.ok()?.last_log_id
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(x) => *x,
            Bound::Excluded(x) => *x + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(x) => Some(*x + 1),
            Bound::Excluded(x) => Some(*x),
            Bound::Unbounded => None,
        };
        if let Some(entries) = end.and_then(|end| self.recent().get(start, end)) {
            return Ok(entries);
        }
        let mut entries = Vec::new();
        let from = index_key(start);
        for item in self.db.iterator_cf(self.logs(), IteratorMode::From(&from, Direction::Forward))
        {
            let (key, value) =
                item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            let index = u64::from_be_bytes(key.as_ref().try_into().unwrap_or_default());
            if !range.contains(&index) {
                break;
            }
            let entry: Entry = serde_json::from_slice(&value)
                .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
            entries.push(entry);
        }
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged: Option<LogId> = self.get_meta(KEY_LAST_PURGED)?;
        let last = match self.db.iterator_cf(self.logs(), IteratorMode::End).next() {
            Some(item) => {
                let (_, value) =
                    item.map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                let entry: Entry = serde_json::from_slice(&value)
                    .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Read, e))?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        self.put_meta(KEY_VOTE, vote, true).await?;
        self.remember_vote(Some(*vote));
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let vote = self.get_meta(KEY_VOTE)?;
        self.remember_vote(vote);
        Ok(vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        crate::metrics::RECORDED.commit_index.set(committed.map_or(0, |c| c.index) as f64);
        // Not synced: it is only a hint that lets a restart apply sooner.
        self.put_meta(KEY_COMMITTED, &committed, false).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.get_meta::<Option<LogId>>(KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        self.send_early(&entries);
        let rows = encode_rows(&entries)?;
        #[cfg(test)]
        tests::slow_disk::wait(self.db.path());
        self.disk
            .until_written("Raft log", || self.write_rows(&rows))
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))?;
        let bytes: usize = rows.iter().map(|(_, value)| value.len()).sum();
        self.appended.fetch_add(bytes as u64, std::sync::atomic::Ordering::Relaxed);
        self.recent().extend(entries.into_iter().zip(rows.iter().map(|(_, value)| value.len())));
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.recent().truncate(log_id.index);
        let batch = || {
            let mut batch = WriteBatch::default();
            batch.delete_range_cf(self.logs(), index_key(log_id.index), index_key(u64::MAX));
            batch
        };
        self.disk
            .until_written("Raft log truncation", || self.db.write_opt(batch(), &synced()))
            .await
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Recorded first: entries at or before it are ignored from then on, so a crash between
        // the two writes leaves nothing inconsistent.
        self.put_meta(KEY_LAST_PURGED, &log_id, true).await?;
        self.recent().purge(log_id.index);
        self.db
            .delete_range_cf(self.logs(), index_key(0), index_key(log_id.index + 1))
            .map_err(|e| io_error(ErrorSubject::Logs, ErrorVerb::Write, e))
    }
}

/// Times `count` synced appends of one entry of about `bytes` bytes each into a new store in
/// `dir` (which must not hold one), written exactly as `append` writes them: the floor a Raft
/// log append costs on that disk (`raft-bench` prints it).
pub fn probe_synced_appends(
    dir: &std::path::Path,
    count: usize,
    bytes: usize,
) -> Result<Vec<std::time::Duration>, String> {
    use crate::command::{Command, Op, RequestId};
    let db =
        crate::db::open(dir).map_err(|e| format!("opening RocksDB in {}: {e}", dir.display()))?;
    let store = LogStore::new(db);
    let command = Command {
        request_id: RequestId { origin: 1, seq: 1 },
        at: chrono::Utc::now(),
        ops: vec![Op::NameCluster { id: "x".repeat(bytes) }],
    };
    let mut took = Vec::with_capacity(count);
    for index in 1..=count as u64 {
        let entry = Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: openraft::EntryPayload::Normal(command.clone()),
        };
        let started = std::time::Instant::now();
        let rows = encode_rows(&[entry]).map_err(|e| e.to_string())?;
        store.write_rows(&rows).map_err(|e| format!("writing to RocksDB: {e}"))?;
        took.push(started.elapsed());
    }
    Ok(took)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A disk whose appends take longer, for tests of what overlaps them (nextest runs each test
    /// in its own process; under `cargo test` the data directory keeps tests apart).
    pub(crate) mod slow_disk {
        use std::collections::BTreeMap;
        use std::path::{Path, PathBuf};
        use std::sync::Mutex;
        use std::time::Duration;

        static SLOW: Mutex<BTreeMap<PathBuf, Duration>> = Mutex::new(BTreeMap::new());

        /// Every append of the log in `data_dir` takes `by` longer from now on.
        pub(crate) fn set(data_dir: &Path, by: Duration) {
            SLOW.lock().unwrap().insert(data_dir.to_path_buf(), by);
        }

        pub(crate) fn wait(db_path: &Path) {
            let by = SLOW
                .lock()
                .unwrap()
                .iter()
                .find(|(dir, _)| db_path.starts_with(dir))
                .map(|(_, by)| *by);
            if let Some(by) = by {
                std::thread::sleep(by);
            }
        }
    }
    use crate::command::{Command, RequestId};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(term, 1), index),
            payload: openraft::EntryPayload::Normal(Command {
                request_id: RequestId { origin: term, seq: index },
                at: chrono::Utc::now(),
                ops: Vec::new(),
            }),
        }
    }

    fn indexes(entries: Option<Vec<Entry>>) -> Option<Vec<(u64, u64)>> {
        entries.map(|e| e.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn recent_entries_follow_appends_truncations_and_purges() {
        let mut recent = Recent::default();
        assert_eq!(indexes(recent.get(1, 2)), None);
        recent.extend((1..=5).map(|i| (entry(1, i), 10)));
        assert_eq!(indexes(recent.get(2, 4)), Some(vec![(1, 2), (1, 3)]));
        assert_eq!(indexes(recent.get(1, 6)).map(|e| e.len()), Some(5));
        assert_eq!(indexes(recent.get(1, 7)), None, "past the last entry");
        assert_eq!(indexes(recent.get(0, 2)), None, "before the first entry");

        // A new leader overwrites 4 and 5.
        recent.truncate(4);
        assert_eq!(indexes(recent.get(3, 5)), None);
        recent.extend([(entry(2, 4), 10)]);
        assert_eq!(indexes(recent.get(3, 5)), Some(vec![(1, 3), (2, 4)]));
        assert_eq!(recent.bytes, 40);

        recent.purge(2);
        assert_eq!(indexes(recent.get(2, 3)), None);
        assert_eq!(indexes(recent.get(3, 4)), Some(vec![(1, 3)]));

        // Entries that do not follow the kept ones replace them.
        recent.extend([(entry(3, 9), 10)]);
        assert_eq!(indexes(recent.get(3, 4)), None);
        assert_eq!(indexes(recent.get(9, 10)), Some(vec![(3, 9)]));
        assert_eq!(recent.bytes, 10);
    }

    #[test]
    fn recent_entries_are_bounded() {
        let mut recent = Recent::default();
        recent.extend((1..=(RECENT_ENTRIES as u64 + 10)).map(|i| (entry(1, i), 1)));
        assert_eq!(recent.entries.len(), RECENT_ENTRIES);
        assert_eq!(recent.first_index(), Some(11));
        recent.extend([(entry(1, RECENT_ENTRIES as u64 + 11), RECENT_BYTES)]);
        assert_eq!(recent.entries.len(), 1, "one entry over the byte bound is kept alone");
    }
}
