//! The snapshot cache: this peer's view of the mesh state and the current config of every
//! connected dataplane. Store changes come in through [`SnapshotCache::apply`]; each stream holds a
//! [`NodeWatch`] and is woken when its dataplane's config really changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use kuma_model::{DataplaneSpec, Resource, ResourceKey, ResourceType};
use tokio::sync::watch;

use crate::generator::{self, MeshContext, Proxy};
use crate::node_id::NodeId;
use crate::snapshot::{ResourceSet, Snapshot};

/// Lets tests change generated configs before they are versioned, e.g. to make Envoy reject one.
pub type ConfigHook = Arc<dyn Fn(&Proxy<'_>, &mut ResourceSet) + Send + Sync>;

/// A connected dataplane's config: `None` while its Dataplane does not exist (yet).
pub type NodeWatch = watch::Receiver<Option<Arc<Snapshot>>>;

#[derive(Default)]
struct MeshState {
    dataplanes: BTreeMap<String, Arc<DataplaneSpec>>,
    /// Built on first use after a change, shared by every dataplane of the mesh.
    context: Option<Arc<MeshContext>>,
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
            }
        }
    }

    /// Number of dataplanes with at least one open stream.
    pub fn connected(&self) -> usize {
        self.lock().nodes.len()
    }

    /// Whether the Dataplane `node` exists in this peer's view.
    pub fn has_dataplane(&self, node: &NodeId) -> bool {
        self.lock().meshes.get(&node.mesh).is_some_and(|m| m.dataplanes.contains_key(&node.name))
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

    fn generate(&self, inner: &mut Inner, node: &NodeId) -> Option<Arc<Snapshot>> {
        let mesh = inner.meshes.get_mut(&node.mesh)?;
        let spec = mesh.dataplanes.get(&node.name)?.clone();
        let context = mesh
            .context
            .get_or_insert_with(|| {
                Arc::new(MeshContext::build(
                    &node.mesh,
                    mesh.dataplanes.iter().map(|(name, spec)| (name.as_str(), spec.as_ref())),
                ))
            })
            .clone();
        let proxy = Proxy { mesh: &node.mesh, name: &node.name, spec: &spec };
        let mut resources = generator::generate(&proxy, &context);
        if let Some(hook) = &self.hook {
            hook(&proxy, &mut resources);
        }
        Some(resources.into_snapshot())
    }
}

/// Updates the view; returns the mesh whose dataplanes may need a new config.
fn apply_one(inner: &mut Inner, key: &ResourceKey, resource: Option<&Resource>) -> Option<String> {
    match key.resource_type {
        // Observed state: never part of a config, and written on every status flush.
        ResourceType::DataplaneInsight => None,
        ResourceType::Mesh => {
            match resource {
                Some(_) => {
                    inner.meshes.entry(key.name.clone()).or_default().context = None;
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
        // Policies change configs once their generators exist; until then a change regenerates
        // the mesh and, the result being equal, sends nothing.
        _ => key.mesh.clone(),
    }
}
