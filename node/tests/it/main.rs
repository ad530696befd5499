//! kuma-cp as a real process: startup, configuration layering, signals, bad input.

mod failover;
mod process;
mod raft;
mod walkthrough;
