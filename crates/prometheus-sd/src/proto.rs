//! The MADS v1 messages (`kuma.observability.v1`), with the field numbers of Kuma's
//! `mads.proto`; kuma-cp's xds crate writes the same ones.

use std::collections::BTreeMap;

/// The state-of-the-world stream of MADS.
pub const STREAM_PATH: &str =
    "/kuma.observability.v1.MonitoringAssignmentDiscoveryService/StreamMonitoringAssignments";
/// The type URL of a monitoring assignment.
pub const TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

/// Targets of one service of one mesh (kuma-cp sends one per dataplane).
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MonitoringAssignment {
    #[prost(string, tag = "2")]
    pub mesh: String,
    #[prost(string, tag = "3")]
    pub service: String,
    #[prost(message, repeated, tag = "4")]
    pub targets: Vec<Target>,
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}

/// One endpoint to scrape.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Target {
    /// The dataplane's name.
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub scheme: String,
    #[prost(string, tag = "3")]
    pub address: String,
    #[prost(string, tag = "4")]
    pub metrics_path: String,
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}
