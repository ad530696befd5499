//! The messages of Kuma's MADS APIs: v1 (`kuma.observability.v1`, defined in kuma-model, which
//! kuma-prometheus-sd shares) and, here, Kuma 0.4-0.5's v1alpha1.

pub use kuma_model::mads::{MonitoringAssignment, Target, SERVICE, STREAM_PATH, TYPE_URL};

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
