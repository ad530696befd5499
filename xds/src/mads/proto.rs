//! The messages of Kuma's MADS v1 API (`kuma.observability.v1`), written out by hand with the
//! field numbers of Kuma's `mads.proto`, so Kuma's own clients decode them. The stream itself
//! carries Envoy's v3 `DiscoveryRequest`/`DiscoveryResponse`.

use std::collections::BTreeMap;

/// The gRPC service.
pub const SERVICE: &str = "kuma.observability.v1.MonitoringAssignmentDiscoveryService";
/// Its state-of-the-world stream.
pub const STREAM_PATH: &str =
    "/kuma.observability.v1.MonitoringAssignmentDiscoveryService/StreamMonitoringAssignments";
/// The type URL of a [`MonitoringAssignment`] in a response (and of the resources asked for).
pub const TYPE_URL: &str = "type.googleapis.com/kuma.observability.v1.MonitoringAssignment";

/// A group of targets to scrape: here always one dataplane.
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

/// Kuma 0.4-0.5's MADS API (`kuma.observability.v1alpha1`), which their kuma-prometheus-sd
/// speaks: one assignment per dataplane, its labels already shaped for Prometheus. Its
/// `envoy.api.v2` discovery messages have the v3 field numbers for every field used here.
pub mod v1alpha1 {
    use std::collections::BTreeMap;

    pub const SERVICE: &str = "kuma.observability.v1alpha1.MonitoringAssignmentDiscoveryService";
    pub const STREAM_PATH: &str = "/kuma.observability.v1alpha1.MonitoringAssignmentDiscoveryService/StreamMonitoringAssignments";
    pub const TYPE_URL: &str =
        "type.googleapis.com/kuma.observability.v1alpha1.MonitoringAssignment";

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct MonitoringAssignment {
        /// `/meshes/<mesh>/dataplanes/<name>`.
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(message, repeated, tag = "2")]
        pub targets: Vec<Target>,
        #[prost(btree_map = "string, string", tag = "3")]
        pub labels: BTreeMap<String, String>,
    }

    #[derive(Clone, PartialEq, ::prost::Message)]
    pub struct Target {
        /// `__address__`.
        #[prost(btree_map = "string, string", tag = "1")]
        pub labels: BTreeMap<String, String>,
    }
}
