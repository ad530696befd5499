//! What a mesh contributes to each of its dataplanes' configs. A context is immutable and shared
//! by every generation of its epoch; the next epoch's context shares every service whose
//! instances did not change, so a change re-encodes only what it touched.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::util::pack_any;
use kuma_ca::MeshCa;
use kuma_model::selection::MeshPolicies;
use kuma_model::{DataplaneSpec, MeshSpec, Resource, Tags};

use super::envoy::load_assignment;
use crate::snapshot::VersionedResource;

/// One instance of a service: an inbound interface of some dataplane of the mesh.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceEndpoint {
    pub address: IpAddr,
    pub port: u16,
    /// The dataplane the inbound belongs to.
    pub dataplane: String,
    pub tags: Tags,
}

/// Every instance of one service and its endpoint assignment, encoded once and shared by every
/// dataplane that reaches the service.
#[derive(Debug)]
pub struct ServiceInstances {
    endpoints: Vec<ServiceEndpoint>,
    assignment: Arc<VersionedResource>,
    /// Every instance is tagged `protocol: http` (and there is one): an outbound to the whole
    /// service gets an HTTP connection manager.
    speaks_http: bool,
}

impl ServiceInstances {
    /// Sorts `endpoints` (so the same instances always give the same bytes and version), keeps
    /// one per address and port, and encodes the assignment.
    pub fn new(service: &str, endpoints: Vec<ServiceEndpoint>) -> ServiceInstances {
        let endpoints = canonical(endpoints);
        let addresses: Vec<_> = endpoints.iter().map(|e| (e.address, e.port)).collect();
        let cluster = crate::names::service_cluster(service);
        let assignment =
            Arc::new(VersionedResource::new(pack_any(load_assignment(&cluster, &addresses))));
        let speaks_http = endpoints.iter().all(|e| super::http::is_http(&e.tags));
        ServiceInstances { endpoints, assignment, speaks_http }
    }

    /// Whether an outbound to the whole service speaks HTTP.
    pub fn speaks_http(&self) -> bool {
        self.speaks_http
    }

    /// Whether `endpoints` (in any order) are the instances this holds: then nothing needs to be
    /// encoded again.
    pub fn same_as(&self, endpoints: Vec<ServiceEndpoint>) -> bool {
        canonical(endpoints) == self.endpoints
    }
}

fn canonical(mut endpoints: Vec<ServiceEndpoint>) -> Vec<ServiceEndpoint> {
    endpoints
        .sort_by(|a, b| (a.address, a.port, &a.dataplane).cmp(&(b.address, b.port, &b.dataplane)));
    endpoints.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    endpoints
}

/// The instances `dataplane` (named `name`) offers, by service.
pub fn instances_of<'a>(
    name: &'a str,
    dataplane: &'a DataplaneSpec,
) -> impl Iterator<Item = (String, ServiceEndpoint)> + 'a {
    let address = dataplane.networking.address.as_deref();
    dataplane.networking.inbound.iter().filter_map(move |inbound| {
        let interface = inbound.resolve(address)?;
        let service = inbound.tags.service()?;
        Some((
            service.to_string(),
            ServiceEndpoint {
                address: interface.dataplane_ip,
                port: interface.dataplane_port,
                dataplane: name.to_string(),
                tags: inbound.tags.clone(),
            },
        ))
    })
}

/// The mesh-wide view the generators need.
#[derive(Clone, Debug, Default)]
pub struct MeshContext {
    pub mesh: String,
    services: BTreeMap<String, Arc<ServiceInstances>>,
    /// The Mesh resource's spec (mTLS and the logging and tracing backends).
    pub spec: MeshSpec,
    /// The mesh's CA when mTLS is on and the CA is available.
    ca: Option<Arc<MeshCa>>,
    /// Every policy of the mesh.
    policies: Arc<Vec<Arc<Resource>>>,
}

impl MeshContext {
    /// Indexes the inbounds of every dataplane of `mesh` by service.
    pub fn build<'a>(
        mesh: &str,
        dataplanes: impl IntoIterator<Item = (&'a str, &'a DataplaneSpec)>,
    ) -> MeshContext {
        let mut by_service: BTreeMap<String, Vec<ServiceEndpoint>> = BTreeMap::new();
        for (name, spec) in dataplanes {
            for (service, endpoint) in instances_of(name, spec) {
                by_service.entry(service).or_default().push(endpoint);
            }
        }
        let services = by_service
            .into_iter()
            .map(|(service, list)| {
                let instances = Arc::new(ServiceInstances::new(&service, list));
                (service, instances)
            })
            .collect();
        MeshContext { mesh: mesh.to_string(), services, ..MeshContext::default() }
    }

    /// The same context with the Mesh's spec and, when mTLS is on, its CA.
    pub fn with_mesh(mut self, spec: MeshSpec, ca: Option<MeshCa>) -> MeshContext {
        self.spec = spec;
        self.ca = ca.map(Arc::new);
        self
    }

    /// The same context with the mesh's policies.
    pub fn with_policies(self, policies: Vec<Resource>) -> MeshContext {
        self.with_shared_policies(policies.into_iter().map(Arc::new).collect())
    }

    /// The same context with the mesh's policies, shared with the cache's view.
    pub fn with_shared_policies(mut self, policies: Vec<Arc<Resource>>) -> MeshContext {
        self.policies = Arc::new(policies);
        self
    }

    /// The same context with `changed` services' instances replaced (`None`: the service has no
    /// instance left); every other service's encoded assignment is shared, not copied.
    pub fn with_services(
        mut self,
        changed: impl IntoIterator<Item = (String, Option<Arc<ServiceInstances>>)>,
    ) -> MeshContext {
        for (service, instances) in changed {
            match instances {
                Some(instances) => self.services.insert(service, instances),
                None => self.services.remove(&service),
            };
        }
        self
    }

    /// The instances of `service` this context holds, if it has any.
    pub fn service(&self, service: &str) -> Option<&Arc<ServiceInstances>> {
        self.services.get(service)
    }

    /// Whether the mesh has mutual TLS on.
    pub fn mtls(&self) -> bool {
        self.spec.mtls_enabled()
    }

    /// The mesh's CA, when mTLS is on and the CA loaded.
    pub fn ca(&self) -> Option<&MeshCa> {
        self.ca.as_deref()
    }

    /// The mesh's policies by type, for selection.
    pub fn policies(&self) -> MeshPolicies<'_> {
        MeshPolicies::from_resources(self.policies.iter().map(Arc::as_ref))
    }

    /// The encoded `ClusterLoadAssignment` of `service`'s cluster (empty when it has no
    /// instance).
    pub fn assignment(&self, service: &str) -> Arc<VersionedResource> {
        match self.services.get(service) {
            Some(instances) => instances.assignment.clone(),
            None => Arc::new(VersionedResource::new(pack_any(load_assignment(
                &crate::names::service_cluster(service),
                &[],
            )))),
        }
    }

    /// Instances of `service`, sorted; empty when there are none.
    pub fn endpoints(&self, service: &str) -> &[ServiceEndpoint] {
        self.services.get(service).map_or(&[], |s| s.endpoints.as_slice())
    }
}
