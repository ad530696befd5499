//! `kuma-dp` (bootstrap client and Envoy supervisor) and the `kuma-tcp-echo` demo server
//! (DESIGN.md section 5).
//!
//! kuma-dp asks any control-plane peer for the Envoy bootstrap (`POST /bootstrap`), writes it to
//! a file, runs `envoy` as a child, forwards stop signals to it and exits with its status. It talks
//! to kuma-cp over HTTP only: it depends on the model and build info, never on the store, xDS or
//! RocksDB.

mod args;
mod bootstrap_client;
mod config;
mod envoy;
mod error;
mod kuma_dp;
mod stop_signals;
mod supervisor;
mod tcp_echo;

pub use args::{Args, Command, LogLevel, RunArgs};
pub use bootstrap_client::{Bootstrap, BootstrapClient, BootstrapRequest};
pub use config::{ConfigError, KumaDpConfig};
pub use envoy::{find_envoy, EnvoyCommand};
pub use error::KumaDpError;
pub use kuma_dp::KumaDp;
pub use stop_signals::{StopSignal, StopSignals};
pub use supervisor::{supervise, EnvoyExit, Supervised};
pub use tcp_echo::{TcpEcho, TcpEchoArgs, TcpEchoArgsError};
