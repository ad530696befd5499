//! `kuma-dp` (bootstrap client and Envoy supervisor) and the `kuma-tcp-echo` demo server
//! (DESIGN.md section 5).
//!
//! kuma-dp asks any control-plane peer for the Envoy bootstrap (`POST /bootstrap`), writes it to
//! a file, runs `envoy` as a child, forwards stop signals to it and exits with its status. It talks
//! to kuma-cp over HTTP only: it depends on the model and build info, never on the store, xDS or
//! RocksDB. For `tcp` logging backends it also runs the access log streamer: Envoy streams entries
//! to it over gRPC on a unix socket and it writes lines to the backend's TCP address. Envoy's admin
//! server listens on 127.0.0.1 only, at a port of `--admin-port` that kuma-dp found free (by
//! default one of 30001-65535), which a mesh's prometheus metrics listener reads the stats from.

mod access_log_format;
mod access_log_streamer;
mod admin_port;
mod args;
mod bootstrap_client;
mod config;
mod envoy;
mod error;
mod kuma_dp;
mod stop_signals;
mod supervisor;
mod tcp_echo;
mod tcp_log_writer;

pub use access_log_format::format_tcp_entry;
pub use access_log_streamer::{access_log_socket_path, AccessLogStreamer, AccessLogStreamerError};
pub use admin_port::{AdminPort, AdminPortError, AdminPortReservation, ADMIN_ADDRESS};
pub use args::{Args, Command, LogLevel, RunArgs};
pub use bootstrap_client::{Bootstrap, BootstrapClient, BootstrapRequest};
pub use config::{ConfigError, KumaDpConfig};
pub use envoy::{find_envoy, EnvoyCommand};
pub use error::KumaDpError;
pub use kuma_dp::KumaDp;
pub use stop_signals::{StopSignal, StopSignals};
pub use supervisor::{supervise, EnvoyExit, Supervised};
pub use tcp_echo::{TcpEcho, TcpEchoArgs, TcpEchoArgsError};
pub use tcp_log_writer::TcpLogWriter;
