//! `kuma-dp` (bootstrap client and Envoy supervisor) and the `kuma-tcp-echo` demo server
//! (DESIGN.md section 5). Never links RocksDB.
//!
//! Empty until the data-plane issue lands; the crate exists so the workspace layout is fixed from the start.
