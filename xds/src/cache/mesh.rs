//! One mesh as the cache sees it: its resources, which dataplanes offer which service, and the
//! context of its current epoch. Changes are gathered, then committed at once into the next
//! context, which says what they touched: only the services whose instances really changed are
//! encoded again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use kuma_model::{DataplaneSpec, MeshSpec, Resource, ResourceType, SecretSpec};
use tracing::warn;

use super::CacheStats;
use crate::generator::{instances_of, MeshContext, ServiceEndpoint, ServiceInstances};

/// What the changes committed into one epoch touched.
#[derive(Debug, Default)]
pub(super) struct Touched {
    /// The Mesh, its CA or its secrets changed: every dataplane of the mesh is affected.
    pub mesh_wide: bool,
    /// Dataplanes created, changed or deleted.
    pub dataplanes: BTreeSet<String>,
    /// Services whose instances changed.
    pub services: BTreeSet<String>,
    /// Of those, the services whose outbounds now speak another protocol (HTTP or TCP).
    pub protocol_changed: BTreeSet<String>,
    /// Policies created, changed or deleted.
    pub policies: BTreeSet<(ResourceType, String)>,
}

#[derive(Default)]
pub(super) struct MeshState {
    /// The Mesh resource; `None` until it is seen (dataplanes may arrive first).
    spec: Option<MeshSpec>,
    dataplanes: BTreeMap<String, Arc<DataplaneSpec>>,
    /// For each service, the dataplanes with an inbound of it.
    offered_by: HashMap<String, BTreeSet<String>>,
    /// Every policy of the mesh, by type and name.
    policies: BTreeMap<(ResourceType, String), Arc<Resource>>,
    /// The context's policies lag behind `policies`: a change came while no dataplane of the
    /// mesh was connected, so the list was not rebuilt (a store full of policies and no
    /// connected dataplane would rebuild it on every write otherwise).
    policies_stale: bool,
    secrets: BTreeMap<String, Arc<SecretSpec>>,
    /// The context of the last commit, shared by every generation of its epoch.
    context: Arc<MeshContext>,
    /// Gathered since the last commit.
    pending: Touched,
    /// Services to look at in the next commit.
    recount: BTreeSet<String>,
}

impl MeshState {
    pub fn dataplane(&self, name: &str) -> Option<&Arc<DataplaneSpec>> {
        self.dataplanes.get(name)
    }

    pub fn context(&self) -> &Arc<MeshContext> {
        &self.context
    }

    pub fn set_mesh(&mut self, spec: MeshSpec) {
        self.spec = Some(spec);
        self.pending.mesh_wide = true;
    }

    pub fn set_secret(&mut self, name: &str, secret: Option<SecretSpec>) {
        match secret {
            Some(secret) => self.secrets.insert(name.to_string(), Arc::new(secret)),
            None => self.secrets.remove(name),
        };
        self.pending.mesh_wide = true;
    }

    pub fn set_policy(&mut self, kind: ResourceType, name: &str, policy: Option<Resource>) {
        let id = (kind, name.to_string());
        match policy {
            Some(policy) => self.policies.insert(id.clone(), Arc::new(policy)),
            None => self.policies.remove(&id),
        };
        self.pending.policies.insert(id);
    }

    pub fn set_dataplane(&mut self, name: &str, dataplane: Option<DataplaneSpec>) {
        if let Some(old) = self.dataplanes.remove(name) {
            for (service, _) in instances_of(name, &old) {
                if let Some(names) = self.offered_by.get_mut(&service) {
                    names.remove(name);
                }
                self.recount.insert(service);
            }
        }
        if let Some(new) = dataplane {
            for (service, _) in instances_of(name, &new) {
                self.offered_by.entry(service.clone()).or_default().insert(name.to_string());
                self.recount.insert(service);
            }
            self.dataplanes.insert(name.to_string(), Arc::new(new));
        }
        self.pending.dataplanes.insert(name.to_string());
    }

    /// Brings the context's policies up to date, before a dataplane of the mesh connects.
    pub fn refresh(&mut self, stats: &mut CacheStats) {
        if self.policies_stale {
            stats.policy_lists += 1;
            self.policies_stale = false;
            let context =
                MeshContext::clone(&self.context).with_shared_policies(self.policy_list());
            self.context = Arc::new(context);
        }
    }

    fn policy_list(&self) -> Vec<Arc<Resource>> {
        self.policies.values().cloned().collect()
    }

    /// Builds the next context from what changed since the last commit (counted in `stats`);
    /// `connected`: whether a dataplane of the mesh is connected. `None` when nothing changed.
    pub fn commit(
        &mut self,
        name: &str,
        stats: &mut CacheStats,
        connected: bool,
    ) -> Option<Touched> {
        let mut touched = std::mem::take(&mut self.pending);
        let recount = std::mem::take(&mut self.recount);
        if !touched.mesh_wide && touched.dataplanes.is_empty() && touched.policies.is_empty() {
            return None;
        }
        let mut context = if touched.mesh_wide {
            let spec = self.spec.clone().unwrap_or_default();
            let ca = match crate::mesh_ca::resolve(name, &spec, &self.secrets) {
                Ok(ca) => ca,
                Err(reason) => {
                    // Fail closed: listeners still require TLS, but no certificate is served.
                    warn!(mesh = %name, %reason, "mTLS is on but the mesh CA is not available");
                    None
                }
            };
            MeshContext::clone(&self.context).with_mesh(spec, ca)
        } else {
            MeshContext::clone(&self.context)
        };
        context.mesh = name.to_string();
        let mut changed = Vec::new();
        for service in recount {
            let endpoints = self.instances(&service);
            let current = context.service(&service);
            if endpoints.is_empty() {
                if current.is_some() {
                    changed.push((service, None));
                }
                continue;
            }
            if current.is_some_and(|c| c.same_as(endpoints.clone())) {
                continue;
            }
            stats.assignments_encoded += 1;
            let instances = Arc::new(ServiceInstances::new(&service, endpoints));
            changed.push((service, Some(instances)));
        }
        touched.services = changed.iter().map(|(service, _)| service.clone()).collect();
        let speaks_http =
            |instances: Option<&Arc<ServiceInstances>>| instances.is_some_and(|i| i.speaks_http());
        touched.protocol_changed = changed
            .iter()
            .filter(|(service, new)| {
                speaks_http(context.service(service)) != speaks_http(new.as_ref())
            })
            .map(|(service, _)| service.clone())
            .collect();
        let mut context = context.with_services(changed);
        self.policies_stale |= !touched.policies.is_empty();
        if self.policies_stale && connected {
            self.policies_stale = false;
            stats.policy_lists += 1;
            context = context.with_shared_policies(self.policy_list());
        }
        self.offered_by.retain(|_, names| !names.is_empty());
        self.context = Arc::new(context);
        Some(touched)
    }

    /// Every instance of `service` the mesh's dataplanes offer now.
    fn instances(&self, service: &str) -> Vec<ServiceEndpoint> {
        let Some(names) = self.offered_by.get(service) else { return Vec::new() };
        names
            .iter()
            .filter_map(|name| self.dataplanes.get(name).map(|spec| (name, spec)))
            .flat_map(|(name, spec)| instances_of(name, spec))
            .filter(|(s, _)| s == service)
            .map(|(_, endpoint)| endpoint)
            .collect()
    }
}
