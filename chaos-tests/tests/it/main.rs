//! The chaos-tests crate's one integration-test binary.

mod raft_chaos;
