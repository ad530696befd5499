//! The Raft-replicated `ResourceStore` for universal HA: openraft over a RocksDB log, peer RPC,
//! write forwarding and read modes (DESIGN.md section 4). It is the only crate that links RocksDB.
//!
//! Empty until the Raft issue lands; the crate exists so the workspace layout is fixed from the start.
