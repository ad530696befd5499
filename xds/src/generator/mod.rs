//! A dataplane's Envoy config as a pure function of the dataplane and its mesh: inbound listeners
//! that forward to the local workload, outbound listeners that reach every instance of a service,
//! shaped by the policies chosen for the dataplane; a ProxyTemplate's raw resources are merged in
//! last (a resource of the same type and name replaces the generated one).

mod access_log;
mod envoy;
mod health_check;
mod http;
mod inbound;
mod mesh_context;
pub mod metrics;
mod outbound;
mod rbac;
pub mod tls;
mod trace;

pub use mesh_context::{instances_of, MeshContext, ServiceEndpoint, ServiceInstances};

use envoy_types::util::pack_any;
use kuma_ca::IssuedCert;
use kuma_model::selection::DataplanePolicies;
use kuma_model::{DataplaneSpec, ResourceType};
use tracing::warn;

/// The profile of the generated config a ProxyTemplate imports.
const DEFAULT_PROXY: &str = "default-proxy";

use crate::raw_resource::parse_raw_resource;
use crate::snapshot::ResourceSet;
use crate::xds_type::XdsType;

/// The dataplane a config is generated for.
#[derive(Clone, Copy, Debug)]
pub struct Proxy<'a> {
    pub mesh: &'a str,
    pub name: &'a str,
    pub spec: &'a DataplaneSpec,
    /// Its identity certificate, when the mesh has mTLS on.
    pub identity: Option<&'a IssuedCert>,
}

/// Every resource of one dataplane's config.
pub fn generate(proxy: &Proxy<'_>, mesh: &MeshContext) -> ResourceSet {
    let mut resources = ResourceSet::default();
    let policies = mesh.policies();
    let selected = DataplanePolicies::select(proxy.spec, &policies);
    resources.chosen(chosen_policies(&selected));
    let template = selected.proxy_template.as_ref().map(|t| &t.policy.spec.conf);
    // Without a ProxyTemplate, or with one importing it, the default config is generated.
    if template.is_none_or(|t| t.imports.iter().any(|i| i == DEFAULT_PROXY)) {
        let zipkin = selected.traffic_trace.as_ref().and_then(|t| trace::backend(mesh, t));
        if let Some(zipkin) = &zipkin {
            resources.add(
                XdsType::Cluster,
                zipkin.cluster.clone(),
                pack_any(trace::collector_cluster(zipkin)),
            );
        }
        if access_log::mesh_has_tcp_backend(mesh) {
            let sink = access_log::sink_cluster(proxy);
            resources.add(XdsType::Cluster, sink.name.clone(), pack_any(sink));
        }
        inbound::generate(proxy, mesh, &selected, zipkin.as_ref(), &mut resources);
        outbound::generate(proxy, mesh, &selected, zipkin.as_ref(), &mut resources);
        if let Some(endpoint) = metrics::prometheus_endpoint(&mesh.spec, proxy.spec) {
            let listener = metrics::metrics_listener(&endpoint);
            resources.add(XdsType::Listener, metrics::METRICS_LISTENER, pack_any(listener));
        }
        if mesh.mtls() {
            if let Some(identity) = proxy.identity {
                let secret =
                    tls::identity_secret(proxy.mesh, &identity.cert_pem, &identity.key_pem);
                resources.add(XdsType::Secret, secret.name.clone(), pack_any(secret));
            }
            if let Some(ca) = mesh.ca() {
                let secret = tls::mesh_ca_secret(proxy.mesh, ca.cert_pem());
                resources.add(XdsType::Secret, secret.name.clone(), pack_any(secret));
            }
        }
    }
    for raw in template.map(|t| t.resources.as_slice()).unwrap_or_default() {
        // Raw resources were checked when applied; one that still fails is left out, not sent.
        match parse_raw_resource(&raw.resource) {
            Ok(parsed) => resources.add(parsed.kind, parsed.name, parsed.resource),
            Err(error) => {
                warn!(mesh = %proxy.mesh, dataplane = %proxy.name, resource = %raw.name, %error, "raw resource of a ProxyTemplate left out")
            }
        }
    }
    resources
}

/// The policies `dataplane` would be given in `mesh` now, as (type, name), sorted: what
/// [`generate`] records, without generating.
pub fn policies_for(dataplane: &DataplaneSpec, mesh: &MeshContext) -> Vec<(ResourceType, String)> {
    let policies = mesh.policies();
    let mut chosen = chosen_policies(&DataplanePolicies::select(dataplane, &policies));
    chosen.sort();
    chosen.dedup();
    chosen
}

fn chosen_policies(selected: &DataplanePolicies<'_>) -> Vec<(ResourceType, String)> {
    let mut chosen = Vec::new();
    let mut note = |kind: ResourceType, name: &str| chosen.push((kind, name.to_string()));
    for inbound in &selected.inbounds {
        if let Some(s) = &inbound.traffic_permission {
            note(ResourceType::TrafficPermission, s.policy.name);
        }
    }
    for outbound in &selected.outbounds {
        if let Some(s) = &outbound.traffic_route {
            note(ResourceType::TrafficRoute, s.policy.name);
        }
        if let Some(s) = &outbound.traffic_log {
            note(ResourceType::TrafficLog, s.policy.name);
        }
        if let Some(s) = &outbound.health_check {
            note(ResourceType::HealthCheck, s.policy.name);
        }
    }
    if let Some(s) = &selected.traffic_trace {
        note(ResourceType::TrafficTrace, s.policy.name);
    }
    if let Some(s) = &selected.proxy_template {
        note(ResourceType::ProxyTemplate, s.policy.name);
    }
    chosen
}

/// The backend a TrafficLog or TrafficTrace sends to: the one it names, else the mesh's default.
fn chosen_backend<'a>(named: Option<&'a str>, default: Option<&'a str>) -> Option<&'a str> {
    named.filter(|b| !b.is_empty()).or(default)
}
