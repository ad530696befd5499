//! kuma-cp: one control-plane peer. Loads the configuration, builds the store (in memory,
//! replicated through Raft, the Kubernetes API server, or a PostgreSQL database shared with other
//! instances), and runs the HTTP API, xDS, bootstrap, diagnostics and Raft peer servers, plus the
//! work only the leader does (the Raft leader, the holder of a Lease or of the PostgreSQL lease).
//!
//! This is the only crate that names a concrete store backend; every other crate sees the
//! `ResourceStore` trait.

mod cluster_work;
mod config;
mod config_dump;
mod control_plane;
mod diagnostics;
mod identity_api;
mod kubernetes;
mod leader_work;
pub mod metrics;
pub mod peer_certs;
pub mod postgres;
mod postgres_admin;
mod postgres_instance;
mod postgres_peers;
mod raft_admin;
mod raft_xds_peers;
mod stale_subscriptions;
mod user_tokens;
mod xds_runtime;

pub use cluster_work::ensure_default_mesh;
pub use config::{env_var_name, ConfigError, KumaCpConfig, StoreType, DEFAULTS_YAML};
pub use control_plane::{ControlPlane, ControlPlaneError};
pub use diagnostics::Readiness;
