//! The xDS resource types this control plane serves, in the order they are pushed.

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use prost::Name;

/// One xDS resource type. The declaration order is the push order (make-before-break): clusters
/// before their endpoints, listeners after the clusters they use, routes after their listeners.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum XdsType {
    Cluster,
    Endpoint,
    Listener,
    Route,
    Secret,
}

impl XdsType {
    /// Whether a state-of-the-world response of this type may carry only some of the resources
    /// the client asked for (it updates those it names, and leaves the others as they are):
    /// every type except listeners and clusters, whose responses are the whole set.
    pub fn updates_by_name(self) -> bool {
        !matches!(self, XdsType::Listener | XdsType::Cluster)
    }

    pub const ALL: [XdsType; 5] =
        [XdsType::Cluster, XdsType::Endpoint, XdsType::Listener, XdsType::Route, XdsType::Secret];

    pub fn type_url(self) -> String {
        match self {
            XdsType::Cluster => Cluster::type_url(),
            XdsType::Endpoint => ClusterLoadAssignment::type_url(),
            XdsType::Listener => Listener::type_url(),
            XdsType::Route => RouteConfiguration::type_url(),
            XdsType::Secret => Secret::type_url(),
        }
    }

    pub fn from_type_url(url: &str) -> Option<XdsType> {
        XdsType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// CDS and LDS: every response carries the whole set, and a client subscribes by wildcard.
    pub fn is_state_of_the_world(self) -> bool {
        matches!(self, XdsType::Cluster | XdsType::Listener)
    }

    /// Short name used in logs and DataplaneInsights: `cds`, `eds`, `lds`, `rds`, `sds`.
    pub fn short_name(self) -> &'static str {
        match self {
            XdsType::Cluster => "cds",
            XdsType::Endpoint => "eds",
            XdsType::Listener => "lds",
            XdsType::Route => "rds",
            XdsType::Secret => "sds",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}
