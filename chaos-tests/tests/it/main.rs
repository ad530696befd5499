//! The chaos-tests crate's one integration-test binary.

mod benchmarks;
mod demo;
mod raft_chaos;
mod raft_chaos_faults;
