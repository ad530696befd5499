//! Process-level tests: the real `kumactl` binary against a real `kuma-cp` (started by
//! `kuma_test_support::KumaCp`; build it first with `cargo build -p kuma-cp`), plus tiny local
//! HTTP servers for what must not be kuma-cp.

mod apply;
mod config;
mod export;
mod get_delete;
mod identity;
mod inspect;
mod install;
mod offline;
mod raft;
mod support;
mod walkthrough;
mod watch;
