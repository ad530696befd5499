//! kuma-prometheus-sd: follows a control plane's MADS stream (Kuma's Monitoring Assignment
//! Discovery Service) and keeps a Prometheus `file_sd` file with one target group per dataplane
//! whose Envoy serves metrics. When its control-plane peer goes away it follows the next one it
//! was given, and the file keeps the last targets until that peer answers.
//!
//! Depends on no other crate of the workspace but the model (the MADS messages, shared with
//! kuma-cp's server) and build info: it talks to kuma-cp over gRPC only.

mod config;
mod file_sd;
mod follower;

pub use config::{Args, Command, Config, ConfigError, CpUrl, RunArgs};
pub use file_sd::{target_groups, write_atomically};
pub use follower::{run, RunError};
pub use kuma_model::mads::{MonitoringAssignment, Target, STREAM_PATH, TYPE_URL};
