//! xDS for Envoy (DESIGN.md section 5): the generators that turn a Dataplane and its mesh into
//! Envoy config, the snapshot cache fed by the store's change feed, the ADS server (state of the
//! world and delta), dataplane status as DataplaneInsights, the bootstrap server, and dataplane
//! identity (tokens checked on every port a dataplane talks to, the control plane's TLS CA).
//!
//! Depends on the store only through the `ResourceStore` trait, and never on a concrete backend.

mod ads;
mod auth;
pub mod bootstrap;
mod cache;
mod config;
mod config_dump;
pub mod generator;
pub mod mads;
mod mesh_ca;
mod metrics;
pub mod names;
mod node_id;
mod raw_resource;
mod server;
mod snapshot;
mod status;
mod sync;
mod tokens;
mod xds_type;

pub use auth::{
    dataplane_tags, revocations_secret_name, signing_key_kid, signing_key_secret_name, AuthError,
    DataplaneAuth, DataplaneIdentity, DpAuthType, ServiceAccountIdentity, TokenReviewer,
    DEFAULT_REVIEW_CAPACITY, DEFAULT_REVIEW_TTL, REVOCATIONS_PREFIX, SIGNING_KEY_PREFIX,
};
pub use bootstrap::{
    AdsSecurity, BootstrapRequest, BootstrapServer, ControlPlaneCert, SinglePeer, XdsAddress,
    XdsPeers,
};
pub use cache::{CacheStats, ConfigHook, NodeWatch, SnapshotCache};
pub use config::{
    BootstrapParams, BootstrapServerConfig, DpAuthConfig, DpServerConfig, DpTlsConfig, XdsApiType,
    XdsServerConfig,
};
pub use config_dump::{config_dump, ConfigDumpError, REDACTED};
pub use mesh_ca::{builtin_ca_secret_name, ensure_builtin_cas, provided_ca_violations};
pub use node_id::NodeId;
pub use raw_resource::{parse_raw_resource, proxy_template_violations, RawResource};
pub use server::{XdsError, XdsServer};
pub use snapshot::{Inputs, ResourceSet, Snapshot, TypeSnapshot, VersionedResource};
pub use status::{FlushReport, StatusTracker, StreamStatus, COUNTERS_EVERY};
pub use tokens::{
    control_plane_ca, ensure_control_plane_ca, ensure_signing_keys, issue_dataplane_token,
    rotate_signing_key, IssueError, TokenRequest, CONTROL_PLANE_CA_SECRET, DEFAULT_TOKEN_VALIDITY,
};
pub use xds_type::XdsType;
