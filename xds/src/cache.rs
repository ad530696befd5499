//! The snapshot cache: this peer's view of the mesh state and the current config of every
//! connected dataplane. Store changes come in through [`SnapshotCache::apply`]; each stream holds a
//! [`NodeWatch`] and is woken when its dataplane's config really changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kuma_ca::{rotation_time, IssuedCert, MeshCa, DEFAULT_DP_CERT_VALIDITY};
use kuma_model::{
    parse_duration, DataplaneSpec, MeshSpec, MtlsInsight, Resource, ResourceKey, ResourceType,
    SecretSpec,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::generator::{self, MeshContext, Proxy};
use crate::node_id::NodeId;
use crate::snapshot::{ResourceSet, Snapshot};

/// Lets tests change generated configs before they are versioned, e.g. to make Envoy reject one.
pub type ConfigHook = Arc<dyn Fn(&Proxy<'_>, &mut ResourceSet) + Send + Sync>;

/// A connected dataplane's config: `None` while its Dataplane does not exist (yet).
pub type NodeWatch = watch::Receiver<Option<Arc<Snapshot>>>;

#[derive(Default)]
struct MeshState {
    /// The Mesh resource; `None` until it is seen (dataplanes may arrive first).
    spec: Option<MeshSpec>,
    dataplanes: BTreeMap<String, Arc<DataplaneSpec>>,
    /// Every policy of the mesh, by type and name.
    policies: BTreeMap<(ResourceType, String), Resource>,
    secrets: BTreeMap<String, Arc<SecretSpec>>,
    /// Built on first use after a change, shared by every dataplane of the mesh.
    context: Option<Arc<MeshContext>>,
}

/// A dataplane's identity certificate and what it was issued for: it is reused (so the config's
/// version stays put) until the services, the CA or the lifetime change, or it is due for
/// rotation.
struct Identity {
    services: Vec<String>,
    ca_cert: String,
    validity: Duration,
    issued_at: SystemTime,
    rotate_at: SystemTime,
    cert: IssuedCert,
    /// Certificates issued to this dataplane since it connected to this peer.
    regenerations: u64,
}

struct NodeEntry {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    streams: usize,
}

#[derive(Default)]
struct Inner {
    /// False until the first full listing is in; nothing is generated from a partial view.
    synced: bool,
    meshes: BTreeMap<String, MeshState>,
    nodes: HashMap<NodeId, NodeEntry>,
    identities: HashMap<NodeId, Identity>,
}

/// Shared by the ADS server, the store watcher and the status tracker.
pub struct SnapshotCache {
    inner: Mutex<Inner>,
    hook: Option<ConfigHook>,
}

impl std::fmt::Debug for SnapshotCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("SnapshotCache")
            .field("meshes", &inner.meshes.len())
            .field("nodes", &inner.nodes.len())
            .finish()
    }
}

impl SnapshotCache {
    pub fn new(hook: Option<ConfigHook>) -> SnapshotCache {
        SnapshotCache { inner: Mutex::new(Inner::default()), hook }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream of `node`; the returned watch holds its current config.
    pub fn subscribe(&self, node: &NodeId) -> NodeWatch {
        let mut inner = self.lock();
        if let Some(entry) = inner.nodes.get_mut(node) {
            entry.streams += 1;
            return entry.tx.subscribe();
        }
        let snapshot = if inner.synced { self.generate(&mut inner, node) } else { None };
        let (tx, rx) = watch::channel(snapshot);
        inner.nodes.insert(node.clone(), NodeEntry { tx, streams: 1 });
        rx
    }

    /// Called when a stream of `node` ends.
    pub fn unsubscribe(&self, node: &NodeId) {
        let mut inner = self.lock();
        if let Some(entry) = inner.nodes.get_mut(node) {
            entry.streams -= 1;
            if entry.streams == 0 {
                inner.nodes.remove(node);
                inner.identities.remove(node);
            }
        }
    }

    /// Number of dataplanes with at least one open stream.
    pub fn connected(&self) -> usize {
        self.lock().nodes.len()
    }

    /// The config this peer generated for `node` and serves its open streams, e.g. for a config
    /// dump; `None` when no stream of `node` is open on this peer or its Dataplane does not exist.
    pub fn current_config(&self, node: &NodeId) -> Option<Arc<Snapshot>> {
        self.lock().nodes.get(node).and_then(|entry| entry.tx.borrow().clone())
    }

    /// Whether the Dataplane `node` exists in this peer's view.
    pub fn has_dataplane(&self, node: &NodeId) -> bool {
        self.lock().meshes.get(&node.mesh).is_some_and(|m| m.dataplanes.contains_key(&node.name))
    }

    /// The tags of Dataplane `node`'s inbounds (empty while it does not exist), for tokens
    /// scoped by tags.
    pub fn dataplane_tags(&self, node: &NodeId) -> BTreeMap<String, BTreeSet<String>> {
        let inner = self.lock();
        inner
            .meshes
            .get(&node.mesh)
            .and_then(|m| m.dataplanes.get(&node.name))
            .map(|d| crate::auth::dataplane_tags(d))
            .unwrap_or_default()
    }

    /// Replaces the whole view (after the first listing, or after the watch fell behind) and
    /// regenerates every connected dataplane.
    pub fn reset(&self, resources: Vec<Resource>) {
        let mut inner = self.lock();
        inner.meshes.clear();
        for resource in resources {
            apply_one(&mut inner, &resource.key, Some(&resource));
        }
        inner.synced = true;
        let all: BTreeSet<String> = inner.nodes.keys().map(|n| n.mesh.clone()).collect();
        self.regenerate(&mut inner, &all);
    }

    /// Applies a batch of changes (`None` = deleted) and regenerates the dataplanes of the meshes
    /// they touch. A dataplane whose config comes out the same is not woken.
    pub fn apply(&self, changes: &[(ResourceKey, Option<Resource>)]) {
        let mut inner = self.lock();
        let mut touched = BTreeSet::new();
        for (key, resource) in changes {
            if let Some(mesh) = apply_one(&mut inner, key, resource.as_ref()) {
                touched.insert(mesh);
            }
        }
        if inner.synced {
            self.regenerate(&mut inner, &touched);
        }
    }

    fn regenerate(&self, inner: &mut Inner, meshes: &BTreeSet<String>) {
        let nodes: Vec<NodeId> =
            inner.nodes.keys().filter(|n| meshes.contains(&n.mesh)).cloned().collect();
        for node in nodes {
            let snapshot = self.generate(inner, &node);
            if let Some(entry) = inner.nodes.get(&node) {
                entry.tx.send_if_modified(|current| {
                    let unchanged = match (current.as_deref(), snapshot.as_deref()) {
                        (Some(a), Some(b)) => a.same_content(b),
                        (None, None) => true,
                        _ => false,
                    };
                    if unchanged {
                        return false;
                    }
                    *current = snapshot;
                    true
                });
            }
        }
    }

    /// The identity certificate `node` holds, for its DataplaneInsight; `None` without mTLS.
    pub fn mtls_status(&self, node: &NodeId) -> Option<MtlsInsight> {
        let inner = self.lock();
        let identity = inner.identities.get(node)?;
        Some(MtlsInsight {
            certificate_expiration_time: Some(DateTime::<Utc>::from(
                identity.issued_at + identity.validity,
            )),
            last_certificate_regeneration: Some(DateTime::<Utc>::from(identity.issued_at)),
            certificate_regenerations: identity.regenerations,
        })
    }

    /// Regenerates the dataplanes whose identity certificate is due for rotation; called
    /// periodically. Envoy swaps the secret without closing the connections it has.
    pub fn rotate_due(&self) {
        let mut inner = self.lock();
        let now = SystemTime::now();
        let due: Vec<NodeId> = inner
            .identities
            .iter()
            .filter(|(_, identity)| identity.rotate_at <= now)
            .map(|(node, _)| node.clone())
            .collect();
        for node in due {
            info!(mesh = %node.mesh, dataplane = %node.name, "rotating the identity certificate");
            let snapshot = self.generate(&mut inner, &node);
            if let (Some(entry), Some(snapshot)) = (inner.nodes.get(&node), snapshot) {
                entry.tx.send_replace(Some(snapshot));
            }
        }
    }

    fn generate(&self, inner: &mut Inner, node: &NodeId) -> Option<Arc<Snapshot>> {
        let mesh = inner.meshes.get_mut(&node.mesh)?;
        let spec = mesh.dataplanes.get(&node.name)?.clone();
        let context = match &mesh.context {
            Some(context) => context.clone(),
            None => {
                let context = Arc::new(build_context(&node.mesh, mesh));
                mesh.context = Some(context.clone());
                context
            }
        };
        let identity = identity_of(&mut inner.identities, node, &spec, &context);
        let proxy =
            Proxy { mesh: &node.mesh, name: &node.name, spec: &spec, identity: identity.as_ref() };
        let mut resources = generator::generate(&proxy, &context);
        if let Some(hook) = &self.hook {
            hook(&proxy, &mut resources);
        }
        Some(resources.into_snapshot())
    }
}

/// The mesh-wide view of one mesh: endpoints, the Mesh spec and CA, and the policies.
fn build_context(name: &str, mesh: &MeshState) -> MeshContext {
    let spec = mesh.spec.clone().unwrap_or_default();
    let ca = match crate::mesh_ca::resolve(name, &spec, &mesh.secrets) {
        Ok(ca) => ca,
        Err(reason) => {
            // Fail closed: listeners still require TLS, but no certificate is served.
            warn!(mesh = %name, %reason, "mTLS is on but the mesh CA is not available");
            None
        }
    };
    MeshContext::build(
        name,
        mesh.dataplanes.iter().map(|(name, spec)| (name.as_str(), spec.as_ref())),
    )
    .with_mesh(spec, ca)
    .with_policies(mesh.policies.values().cloned().collect())
}

/// The identity certificate of `node`, reusing the one it has while it still fits; `None` when
/// mTLS is off or no CA is available.
fn identity_of(
    identities: &mut HashMap<NodeId, Identity>,
    node: &NodeId,
    dataplane: &DataplaneSpec,
    mesh: &MeshContext,
) -> Option<IssuedCert> {
    let Some(ca) = mesh.ca().filter(|_| mesh.mtls()) else {
        identities.remove(node);
        return None;
    };
    let mut services: Vec<String> =
        dataplane.tag_sets().iter().filter_map(|t| t.service()).map(str::to_string).collect();
    services.sort();
    services.dedup();
    let validity = mesh
        .spec
        .dp_cert_expiration()
        .and_then(|e| parse_duration(e).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DP_CERT_VALIDITY);
    let now = SystemTime::now();
    if let Some(current) = identities.get(node) {
        if current.services == services
            && current.ca_cert == ca.cert_pem()
            && current.validity == validity
            && now < current.rotate_at
        {
            return Some(current.cert.clone());
        }
    }
    let cert = issue(ca, &node.mesh, &services, validity)?;
    let regenerations = identities.get(node).map_or(0, |i| i.regenerations) + 1;
    identities.insert(
        node.clone(),
        Identity {
            services,
            ca_cert: ca.cert_pem().to_string(),
            validity,
            issued_at: now,
            rotate_at: rotation_time(now, validity),
            cert: cert.clone(),
            regenerations,
        },
    );
    Some(cert)
}

fn issue(ca: &MeshCa, mesh: &str, services: &[String], validity: Duration) -> Option<IssuedCert> {
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    match ca.issue_identity(mesh, &services, validity) {
        Ok(cert) => Some(cert),
        Err(error) => {
            warn!(%mesh, %error, "could not issue an identity certificate");
            None
        }
    }
}

/// Updates the view; returns the mesh whose dataplanes may need a new config.
fn apply_one(inner: &mut Inner, key: &ResourceKey, resource: Option<&Resource>) -> Option<String> {
    match key.resource_type {
        // Observed state: never part of a config, and written on every status flush.
        ResourceType::DataplaneInsight => None,
        ResourceType::Mesh => {
            match resource.and_then(|r| r.spec.as_mesh()) {
                Some(spec) => {
                    let mesh = inner.meshes.entry(key.name.clone()).or_default();
                    mesh.spec = Some(spec.clone());
                    mesh.context = None;
                }
                None => {
                    inner.meshes.remove(&key.name);
                }
            }
            Some(key.name.clone())
        }
        ResourceType::Dataplane => {
            let mesh_name = key.owning_mesh().to_string();
            let mesh = inner.meshes.entry(mesh_name.clone()).or_default();
            match resource.and_then(|r| r.spec.as_dataplane()) {
                Some(spec) => {
                    mesh.dataplanes.insert(key.name.clone(), Arc::new(spec.clone()));
                }
                None => {
                    mesh.dataplanes.remove(&key.name);
                }
            }
            mesh.context = None;
            Some(mesh_name)
        }
        ResourceType::Secret => {
            let mesh_name = key.owning_mesh().to_string();
            let mesh = inner.meshes.entry(mesh_name.clone()).or_default();
            match resource.and_then(|r| r.spec.as_secret()) {
                Some(spec) => {
                    mesh.secrets.insert(key.name.clone(), Arc::new(spec.clone()));
                }
                None => {
                    mesh.secrets.remove(&key.name);
                }
            }
            mesh.context = None;
            Some(mesh_name)
        }
        // Policies: a change regenerates the mesh; a dataplane whose config comes out the same
        // is not woken.
        _ => {
            let mesh_name = key.owning_mesh().to_string();
            let mesh = inner.meshes.entry(mesh_name.clone()).or_default();
            let id = (key.resource_type, key.name.clone());
            match resource {
                Some(r) => {
                    mesh.policies.insert(id, r.clone());
                }
                None => {
                    mesh.policies.remove(&id);
                }
            }
            mesh.context = None;
            Some(mesh_name)
        }
    }
}
