//! A dataplane's Envoy config as a pure function of the dataplane and its mesh: inbound listeners
//! that forward to the local workload, outbound listeners that reach every instance of a service.

mod envoy;
mod inbound;
mod mesh_context;
mod outbound;

pub use mesh_context::{MeshContext, ServiceEndpoint};

use kuma_model::DataplaneSpec;

use crate::snapshot::ResourceSet;

/// The dataplane a config is generated for.
#[derive(Clone, Copy, Debug)]
pub struct Proxy<'a> {
    pub mesh: &'a str,
    pub name: &'a str,
    pub spec: &'a DataplaneSpec,
}

/// Every resource of one dataplane's config.
pub fn generate(proxy: &Proxy<'_>, mesh: &MeshContext) -> ResourceSet {
    let mut resources = ResourceSet::default();
    inbound::generate(proxy, &mut resources);
    outbound::generate(proxy, mesh, &mut resources);
    resources
}
