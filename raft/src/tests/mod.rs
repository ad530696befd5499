//! Tests of the Raft store: openraft's storage suite on the RocksDB stores, the store conformance
//! suite on a one-peer cluster, and in-process three-peer clusters on loopback.

mod cluster;
mod early;
mod harness;
mod operations;
mod recovery;
mod storage;
mod tls;
