//! kuma-cp: one control-plane peer. Loads the configuration, builds the store, and runs the HTTP
//! API and diagnostics servers (xDS, SDS, bootstrap and Raft peer RPC join as their issues land).
//!
//! This is the only crate that names a concrete store backend; every other crate sees the
//! `ResourceStore` trait.

mod config;
mod control_plane;
mod diagnostics;

pub use config::{env_var_name, ConfigError, KumaCpConfig, StoreType, DEFAULTS_YAML};
pub use control_plane::{ensure_default_mesh, ControlPlane, ControlPlaneError};
pub use diagnostics::Readiness;
