//! Helpers for tests across the workspace: `eventually!` for waiting with a deadline, free ports,
//! locating the workspace's binaries, and spawning a real `kuma-cp` process.
//!
//! Used only as a dev-dependency; it must never be linked into a shipped binary. Helpers that
//! panic on failure are named `must_*`.

mod child;
mod chromium;
mod cluster;
mod echo;
mod envoy;
mod eventually;
pub mod golden;
mod kube_apiserver;
mod kuma_cp;
mod ports;
mod postgres;
mod process;
mod prometheus;

pub use child::{Exited, Proc, Signal};
pub use chromium::{Chromium, Page};
pub use cluster::KumaCpCluster;
pub use echo::{tcp_roundtrip, EchoServer};
pub use envoy::{envoy_path, Envoy};
pub use eventually::{poll_until, try_poll_until};
pub use kube_apiserver::KubeApiServer;
pub use kuma_cp::{KumaCp, KumaCpBuilder};
pub use ports::free_port;
pub use postgres::{PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};
pub use process::{bin_path, http_get, http_request, http_request_as, https_request, HttpReply};
pub use prometheus::{prometheus_path, Prometheus};
