//! What a mesh contributes to each of its dataplanes' configs, computed once per mesh per push.

use std::collections::BTreeMap;
use std::net::IpAddr;

use envoy_types::pb::google::protobuf::Any;
use envoy_types::util::pack_any;
use kuma_ca::MeshCa;
use kuma_model::selection::MeshPolicies;
use kuma_model::{DataplaneSpec, MeshSpec, Resource, Tags};

use super::envoy::load_assignment;

/// One instance of a service: an inbound interface of some dataplane of the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    pub address: IpAddr,
    pub port: u16,
    /// The dataplane the inbound belongs to.
    pub dataplane: String,
    pub tags: Tags,
}

/// The mesh-wide view the generators need.
#[derive(Clone, Debug, Default)]
pub struct MeshContext {
    pub mesh: String,
    endpoints: BTreeMap<String, Vec<ServiceEndpoint>>,
    /// Each service's endpoint assignment, encoded once and shared by every dataplane that
    /// reaches the service (regenerating a mesh would otherwise encode it per dataplane).
    assignments: BTreeMap<String, Any>,
    /// The Mesh resource's spec (mTLS and the logging and tracing backends).
    pub spec: MeshSpec,
    /// The mesh's CA when mTLS is on and the CA is available.
    ca: Option<MeshCa>,
    /// Every policy of the mesh.
    policies: Vec<Resource>,
}

impl MeshContext {
    /// Indexes the inbounds of every dataplane of `mesh` by service.
    pub fn build<'a>(
        mesh: &str,
        dataplanes: impl IntoIterator<Item = (&'a str, &'a DataplaneSpec)>,
    ) -> MeshContext {
        let mut endpoints: BTreeMap<String, Vec<ServiceEndpoint>> = BTreeMap::new();
        for (name, spec) in dataplanes {
            let address = spec.networking.address.as_deref();
            for inbound in &spec.networking.inbound {
                let (Some(interface), Some(service)) =
                    (inbound.resolve(address), inbound.tags.service())
                else {
                    continue;
                };
                endpoints.entry(service.to_string()).or_default().push(ServiceEndpoint {
                    address: interface.dataplane_ip,
                    port: interface.dataplane_port,
                    dataplane: name.to_string(),
                    tags: inbound.tags.clone(),
                });
            }
        }
        // Sorted, so the same mesh always gives the same bytes and so the same version.
        for list in endpoints.values_mut() {
            list.sort_by(|a, b| {
                (a.address, a.port, &a.dataplane).cmp(&(b.address, b.port, &b.dataplane))
            });
            list.dedup_by(|a, b| a.address == b.address && a.port == b.port);
        }
        let assignments = endpoints
            .iter()
            .map(|(service, list)| {
                let cluster = crate::names::service_cluster(service);
                let addresses: Vec<_> = list.iter().map(|e| (e.address, e.port)).collect();
                (service.clone(), pack_any(load_assignment(&cluster, &addresses)))
            })
            .collect();
        MeshContext {
            mesh: mesh.to_string(),
            endpoints,
            assignments,
            spec: MeshSpec::default(),
            ca: None,
            policies: Vec::new(),
        }
    }

    /// The same context with the Mesh's spec and, when mTLS is on, its CA.
    pub fn with_mesh(mut self, spec: MeshSpec, ca: Option<MeshCa>) -> MeshContext {
        self.spec = spec;
        self.ca = ca;
        self
    }

    /// The same context with the mesh's policies.
    pub fn with_policies(mut self, policies: Vec<Resource>) -> MeshContext {
        self.policies = policies;
        self
    }

    /// Whether the mesh has mutual TLS on.
    pub fn mtls(&self) -> bool {
        self.spec.mtls_enabled()
    }

    /// The mesh's CA, when mTLS is on and the CA loaded.
    pub fn ca(&self) -> Option<&MeshCa> {
        self.ca.as_ref()
    }

    /// The mesh's policies by type, for selection.
    pub fn policies(&self) -> MeshPolicies<'_> {
        MeshPolicies::from_resources(&self.policies)
    }

    /// The encoded `ClusterLoadAssignment` of `service`'s cluster (empty when it has no
    /// instance).
    pub fn assignment(&self, service: &str) -> Any {
        self.assignments.get(service).cloned().unwrap_or_else(|| {
            pack_any(load_assignment(&crate::names::service_cluster(service), &[]))
        })
    }

    /// Instances of `service`, sorted; empty when there are none.
    pub fn endpoints(&self, service: &str) -> &[ServiceEndpoint] {
        self.endpoints.get(service).map_or(&[], Vec::as_slice)
    }
}
