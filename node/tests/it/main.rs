//! kuma-cp as a real process: startup, configuration layering, signals, bad input.

mod config_dump;
mod dataplane_identity;
mod failover;
mod gui_browser;
mod kubernetes;
mod mesh_ca;
mod metrics;
mod operator_access;
mod postgres;
mod process;
mod proxy_template;
mod raft;
mod raft_backup;
mod support;
mod walkthrough;
