//! The Kuma resource model: every resource type (Mesh, Dataplane, DataplaneInsight and the
//! policies), the one type registry that drives API paths and kumactl arguments, validation that
//! collects every violation with its field path, and the REST shapes (flat resource objects, lists,
//! Kuma's error body).
//!
//! This crate does no I/O and must never depend on tokio, a store backend or a network stack: every
//! other crate builds on it, and it has to stay cheap to compile and easy to test.

mod crd;
mod dataplane;
mod duration;
mod insight;
pub mod mads;
mod mesh;
mod parse;
pub mod policy;
#[cfg(test)]
mod properties;
mod registry;
mod resource;
pub mod rest;
mod schema;
mod secret;
pub mod selection;
mod spec;
mod tags;
mod template;
mod validation;

pub use crd::{crd, crds, KUMA_GROUP, KUMA_VERSION};
pub use dataplane::{
    parse_inbound_interface, parse_outbound_interface, DataplaneSpec, Gateway, Inbound,
    InboundInterface, Networking, Outbound, OutboundInterface, TransparentProxying,
};
pub use duration::{duration_text, parse_duration, DurationError};
pub use insight::{
    DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription,
    DiscoverySubscriptionStatus, MtlsInsight,
};
pub use mesh::{
    CaConf, CaDataSource, CertificateAuthorityBackend, LegacyCa, Logging, LoggingBackend, MeshSpec,
    Metrics, MetricsBackend, Mtls, Tracing, TracingBackend,
};
pub use parse::{parse_resource, parse_resources_yaml, ParseError, ResourceInput};
pub use registry::{KubernetesKind, ResourceType, Scope, TypeDescriptor};
pub use resource::{Resource, ResourceKey, Version};
pub use schema::json_schemas;
pub use secret::{GlobalSecretSpec, SecretSpec};
pub use spec::Spec;
pub use tags::{Tags, SERVICE_TAG, SERVICE_TAG_LEGACY};
pub use template::{render_template, TemplateError};
pub use validation::{validate, validate_meta, ValidationContext, ValidationError, Violation};
