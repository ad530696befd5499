//! The RocksDB of one peer: column family `logs` (entries by big-endian index) and `meta` (vote,
//! last purged log id, the latest snapshot).

use std::path::Path;
use std::sync::Arc;

use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub const CF_LOGS: &str = "logs";
pub const CF_META: &str = "meta";

pub const KEY_VOTE: &[u8] = b"vote";
pub const KEY_LAST_PURGED: &[u8] = b"last_purged";
pub const KEY_COMMITTED: &[u8] = b"committed";
pub const KEY_SNAPSHOT: &[u8] = b"snapshot";

pub fn open(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut options = Options::default();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    let families = [CF_LOGS, CF_META]
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
    DB::open_cf_descriptors(&options, dir, families).map(Arc::new)
}

pub fn index_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// Whether this data directory holds any Raft state: a vote, a log entry or a snapshot.
pub fn holds_raft_state(db: &DB) -> Result<bool, rocksdb::Error> {
    let meta = db.cf_handle(CF_META).expect("the meta column family is created at open");
    let logs = db.cf_handle(CF_LOGS).expect("the logs column family is created at open");
    if db.get_cf(meta, KEY_VOTE)?.is_some() || db.get_cf(meta, KEY_SNAPSHOT)?.is_some() {
        return Ok(true);
    }
    Ok(db.iterator_cf(logs, rocksdb::IteratorMode::Start).next().transpose()?.is_some())
}
