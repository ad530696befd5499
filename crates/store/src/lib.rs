//! The store contract every backend implements (`ResourceStore`), its errors, the in-memory
//! backend, and the conformance suite that every backend (memory, Raft, PostgreSQL, Kubernetes)
//! must pass.
//!
//! This crate knows resources only through `kuma-model`; it must never depend on a concrete
//! backend's libraries (RocksDB, kube, a Postgres driver) or on the API server.

pub mod conformance;
mod error;
mod memory;
mod metrics;
mod state;
mod store;
mod watch;

pub use error::StoreError;
pub use memory::MemoryStore;
pub use metrics::{MeteredStore, StoreMetrics, StoreOp, STORE_METRIC};
pub use state::{StoreState, HISTORY};
pub use store::{check_key, list_all, ListPage, ListQuery, NameScope, ResourceStore};
pub use watch::{EventKind, Revision, WatchEvent, WatchStream};
