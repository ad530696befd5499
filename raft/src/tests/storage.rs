//! openraft's own storage test suite, run against the RocksDB log store and the state machine.

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use crate::log_store::LogStore;
use crate::replica::Replica;
use crate::state_machine::StateMachine;
use crate::types::{StorageError, TypeConfig};

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachine), StorageError> {
        let dir = TempDir::new().expect("a temp dir");
        let db = crate::db::open(dir.path()).expect("open RocksDB");
        let sm = StateMachine::open(db.clone(), Arc::new(Replica::default()))?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn the_rocksdb_stores_pass_openraft_storage_suite() {
    Suite::test_all(RocksBuilder).expect("openraft's storage suite");
}
