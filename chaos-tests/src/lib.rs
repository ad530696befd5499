//! Process-level chaos tests for a cluster of `kuma-cp` peers (DESIGN.md section 6, level 4).
//!
//! Empty until the Raft issue lands; the crate exists so the workspace layout is fixed from the start.
