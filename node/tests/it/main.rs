//! kuma-cp as a real process: startup, configuration layering, signals, bad input.

mod process;
mod raft;
mod walkthrough;
