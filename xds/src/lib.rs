//! xDS for Envoy (DESIGN.md section 5): the generators that turn a Dataplane and its mesh into
//! Envoy config, the snapshot cache fed by the store's change feed, the ADS server (state of the
//! world and delta), dataplane status as DataplaneInsights, and the bootstrap server.
//!
//! Depends on the store only through the `ResourceStore` trait, and never on a concrete backend.

mod ads;
pub mod bootstrap;
mod cache;
mod config;
pub mod generator;
mod mesh_ca;
pub mod names;
mod node_id;
mod raw_resource;
mod server;
mod snapshot;
mod status;
mod sync;
mod xds_type;

pub use bootstrap::{BootstrapRequest, BootstrapServer, SinglePeer, XdsAddress, XdsPeers};
pub use cache::{ConfigHook, NodeWatch, SnapshotCache};
pub use config::{BootstrapParams, BootstrapServerConfig, SdsTls, XdsApiType, XdsServerConfig};
pub use mesh_ca::{builtin_ca_secret_name, ensure_builtin_cas, provided_ca_violations};
pub use node_id::NodeId;
pub use raw_resource::{parse_raw_resource, proxy_template_violations, RawResource};
pub use server::{XdsError, XdsServer};
pub use snapshot::{ResourceSet, Snapshot, TypeSnapshot, VersionedResource};
pub use status::{FlushReport, StatusTracker, StreamStatus};
pub use xds_type::XdsType;
