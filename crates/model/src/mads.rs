//! The messages of Kuma's Monitoring Assignment Discovery Service, v1 (`kuma.observability.v1`):
//! what kuma-cp's MADS server sends and kuma-prometheus-sd reads, defined once for both. Written
//! out by hand with the field numbers of Kuma's `mads.proto`, so Kuma's own clients decode them;
//! the stream carries Envoy's v3 `DiscoveryRequest`/`DiscoveryResponse` around them.

use std::collections::BTreeMap;

/// The gRPC service.
pub const SERVICE: &str = "kuma.observability.v1.MonitoringAssignmentDiscoveryService";
/// Its state-of-the-world stream.
pub const STREAM_PATH: &str =
    "/kuma.observability.v1.MonitoringAssignmentDiscoveryService/StreamMonitoringAssignments";
/// The type URL of a [`MonitoringAssignment`] in a response (and of the resources asked for).
pub const TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

/// A group of targets to scrape: kuma-cp sends one per dataplane.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct MonitoringAssignment {
    /// The dataplane's mesh.
    #[prost(string, tag = "2")]
    pub mesh: String,
    /// The dataplane's identifying service (its first inbound's `service` tag).
    #[prost(string, tag = "3")]
    pub service: String,
    #[prost(message, repeated, tag = "4")]
    pub targets: Vec<Target>,
    /// Labels of every target of the assignment.
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}

/// One endpoint to scrape.
#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Target {
    /// The dataplane's name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// `http`.
    #[prost(string, tag = "2")]
    pub scheme: String,
    /// `ip:port`.
    #[prost(string, tag = "3")]
    pub address: String,
    #[prost(string, tag = "4")]
    pub metrics_path: String,
    /// The dataplane's tags, as Prometheus label names.
    #[prost(btree_map = "string, string", tag = "5")]
    pub labels: BTreeMap<String, String>,
}
