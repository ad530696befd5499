//! The snapshot cache: this peer's view of the mesh state and the current config of every
//! connected dataplane. Store changes come in through [`SnapshotCache::apply`]; each stream holds a
//! [`NodeWatch`] and is woken when its dataplane's config really changed.
//!
//! Work follows what changed: a change to a service's instances encodes that service's
//! assignment once and regenerates only the dataplanes that reach it; a change to a policy
//! regenerates only the dataplanes it is (or was) chosen for; a Mesh or secret change
//! regenerates the mesh. Configs are generated outside the lock, on every core, and a
//! generation never replaces a config made from a later state.

mod mesh;
mod work;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use kuma_model::{MtlsInsight, Resource, ResourceKey, ResourceType, Version};
use tokio::sync::watch;
use tracing::info;

use self::mesh::{MeshState, Touched};
use self::work::{Done, Identities, Job, JobKind, Outcome};
use crate::generator::Proxy;
use crate::node_id::NodeId;
use crate::snapshot::{Inputs, ResourceSet, Snapshot};

/// Lets tests change generated configs before they are versioned, e.g. to make Envoy reject one.
pub type ConfigHook = Arc<dyn Fn(&Proxy<'_>, &mut ResourceSet) + Send + Sync>;

/// A connected dataplane's config: `None` while its Dataplane does not exist (yet).
pub type NodeWatch = watch::Receiver<Option<Arc<Snapshot>>>;

/// What the cache has done since it started, counted for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Dataplane configs generated.
    pub generated: u64,
    /// Dataplane configs updated by swapping in the new assignments of services they reach.
    pub swapped: u64,
    /// Service endpoint assignments encoded.
    pub assignments_encoded: u64,
    /// Streams woken with a new config.
    pub pushed: u64,
    /// Lists of a mesh's policies built for its dataplanes' configs.
    pub policy_lists: u64,
}

struct NodeEntry {
    tx: watch::Sender<Option<Arc<Snapshot>>>,
    streams: usize,
    /// What the current config was made from; `None` until one was generated.
    inputs: Option<Inputs>,
    /// The epoch the current config belongs to.
    epoch: u64,
}

#[derive(Default)]
struct Inner {
    /// False until the first full listing is in; nothing is generated from a partial view.
    synced: bool,
    /// Counts commits across every mesh, so results of different commits are ordered.
    epoch: u64,
    meshes: BTreeMap<String, MeshState>,
    /// The version of every resource in the view, so a listing again applies only what differs.
    known: HashMap<ResourceKey, Version>,
    nodes: HashMap<NodeId, NodeEntry>,
    /// Connected dataplanes by mesh.
    connected: HashMap<String, usize>,
    stats: CacheStats,
}

/// Shared by the ADS server, the store watcher and the status tracker.
pub struct SnapshotCache {
    inner: Mutex<Inner>,
    identities: Arc<Identities>,
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
        SnapshotCache { inner: Mutex::new(Inner::default()), identities: Arc::default(), hook }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a stream of `node`; the returned watch holds its current config. Generating
    /// the first config may take a while (it may issue a certificate): call it where blocking
    /// is allowed.
    pub fn subscribe(&self, node: &NodeId) -> NodeWatch {
        let (rx, job) = {
            let mut inner = self.lock();
            if let Some(entry) = inner.nodes.get_mut(node) {
                entry.streams += 1;
                return entry.tx.subscribe();
            }
            let (tx, rx) = watch::channel(None);
            inner.nodes.insert(node.clone(), NodeEntry { tx, streams: 1, inputs: None, epoch: 0 });
            *inner.connected.entry(node.mesh.clone()).or_default() += 1;
            if !inner.synced {
                return rx;
            }
            let Inner { meshes, stats, .. } = &mut *inner;
            if let Some(mesh) = meshes.get_mut(&node.mesh) {
                mesh.refresh(stats);
            }
            (rx, job_for(&inner, node, JobKind::Full))
        };
        self.run(vec![job]);
        rx
    }

    /// Called when a stream of `node` ends.
    pub fn unsubscribe(&self, node: &NodeId) {
        let mut inner = self.lock();
        if let Some(entry) = inner.nodes.get_mut(node) {
            entry.streams -= 1;
            if entry.streams == 0 {
                inner.nodes.remove(node);
                if let Some(count) = inner.connected.get_mut(&node.mesh) {
                    *count -= 1;
                }
                self.identities.forget(node);
            }
        }
    }

    /// Number of dataplanes with at least one open stream.
    pub fn connected(&self) -> usize {
        self.lock().nodes.len()
    }

    /// What the cache has done since it started.
    pub fn stats(&self) -> CacheStats {
        self.lock().stats
    }

    /// The config this peer generated for `node` and serves its open streams, e.g. for a config
    /// dump; `None` when no stream of `node` is open on this peer or its Dataplane does not exist.
    pub fn current_config(&self, node: &NodeId) -> Option<Arc<Snapshot>> {
        self.lock().nodes.get(node).and_then(|entry| entry.tx.borrow().clone())
    }

    /// Whether the Dataplane `node` exists in this peer's view.
    pub fn has_dataplane(&self, node: &NodeId) -> bool {
        self.lock().meshes.get(&node.mesh).is_some_and(|m| m.dataplane(&node.name).is_some())
    }

    /// The tags of Dataplane `node`'s inbounds (empty while it does not exist), for tokens
    /// scoped by tags.
    pub fn dataplane_tags(&self, node: &NodeId) -> BTreeMap<String, BTreeSet<String>> {
        let inner = self.lock();
        inner
            .meshes
            .get(&node.mesh)
            .and_then(|m| m.dataplane(&node.name))
            .map(|d| crate::auth::dataplane_tags(d))
            .unwrap_or_default()
    }

    /// Replaces the whole view with a listing. The first one generates every connected
    /// dataplane; a later one (after the change feed fell behind) applies only the resources
    /// whose version differs from the view's, like any other change.
    pub fn reset(&self, resources: Vec<Resource>) {
        let synced = self.lock().synced;
        if !synced {
            return self.load(resources);
        }
        let changes = differences(&self.lock().known, resources);
        self.apply(&changes);
    }

    fn load(&self, resources: Vec<Resource>) {
        let jobs = {
            let mut inner = self.lock();
            inner.meshes.clear();
            inner.known.clear();
            for resource in &resources {
                apply_one(&mut inner, &resource.key, Some(resource));
            }
            inner.synced = true;
            let names: Vec<String> = inner.meshes.keys().cloned().collect();
            commit(&mut inner, &names);
            let nodes: Vec<NodeId> = inner.nodes.keys().cloned().collect();
            nodes.iter().map(|node| job_for(&inner, node, JobKind::Full)).collect()
        };
        self.run(jobs);
    }

    /// Applies a batch of changes (`None` = deleted) and regenerates the dataplanes whose config
    /// they may change. A dataplane whose config comes out the same is not woken.
    pub fn apply(&self, changes: &[(ResourceKey, Option<Resource>)]) {
        self.apply_seen_at(changes, Instant::now())
    }

    /// `apply` for changes this peer saw at `seen_at`: the configs made for them are delivered
    /// in `xds_delivery` from then until Envoy's ACK.
    pub fn apply_seen_at(&self, changes: &[(ResourceKey, Option<Resource>)], seen_at: Instant) {
        let jobs = {
            let mut inner = self.lock();
            let mut touched = BTreeSet::new();
            for (key, resource) in changes {
                if let Some(mesh) = apply_one(&mut inner, key, resource.as_ref()) {
                    touched.insert(mesh);
                }
            }
            if !inner.synced {
                return;
            }
            let touched: Vec<String> = touched.into_iter().collect();
            let committed = commit(&mut inner, &touched);
            let mut jobs = plan(&inner, &committed, self.hook.is_some());
            for job in &mut jobs {
                job.changed_at = Some(seen_at);
            }
            jobs
        };
        self.run(jobs);
    }

    /// The identity certificate `node` holds, for its DataplaneInsight; `None` without mTLS.
    pub fn mtls_status(&self, node: &NodeId) -> Option<MtlsInsight> {
        self.identities.status(node)
    }

    /// Regenerates the dataplanes whose identity certificate is due for rotation; called
    /// periodically. Envoy swaps the secret without closing the connections it has.
    pub fn rotate_due(&self) {
        let due = self.identities.due();
        if due.is_empty() {
            return;
        }
        let jobs = {
            let inner = self.lock();
            due.iter()
                .filter(|node| inner.nodes.contains_key(*node))
                .map(|node| {
                    info!(mesh = %node.mesh, dataplane = %node.name, "rotating the identity certificate");
                    job_for(&inner, node, JobKind::Full)
                })
                .collect()
        };
        self.run(jobs);
    }

    /// Generates outside the lock, then installs what is still current.
    fn run(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let done = work::run_all(jobs, &self.identities, self.hook.as_ref());
        let mut inner = self.lock();
        for result in done {
            install(&mut inner, result);
        }
    }
}

/// Applies a generation's result, unless the node's config already comes from a later epoch.
fn install(inner: &mut Inner, done: Done) {
    let Done { node, epoch, outcome } = done;
    let Some(entry) = inner.nodes.get_mut(&node) else { return };
    if entry.epoch > epoch {
        return;
    }
    entry.epoch = epoch;
    let snapshot = match outcome {
        Outcome::Unaffected => return,
        Outcome::Gone => {
            entry.inputs = None;
            None
        }
        Outcome::Generated(snapshot, inputs) => {
            inner.stats.generated += 1;
            entry.inputs = Some(inputs);
            Some(snapshot)
        }
        Outcome::Swapped(snapshot, inputs) => {
            inner.stats.swapped += 1;
            entry.inputs = Some(inputs);
            Some(snapshot)
        }
    };
    let pushed = entry.tx.send_if_modified(|current| {
        let unchanged = match (current.as_deref(), snapshot.as_deref()) {
            (Some(a), Some(b)) => a.same_content(b),
            (None, None) => true,
            _ => false,
        };
        if !unchanged {
            *current = snapshot;
        }
        !unchanged
    });
    if pushed {
        inner.stats.pushed += 1;
    }
}

/// Commits the gathered changes of `meshes` into new contexts, one epoch for all of them.
fn commit(inner: &mut Inner, meshes: &[String]) -> BTreeMap<String, Touched> {
    inner.epoch += 1;
    let Inner { meshes: states, connected, stats, .. } = inner;
    let mut committed = BTreeMap::new();
    for name in meshes {
        match states.get_mut(name) {
            Some(mesh) => {
                let connected = connected.get(name).is_some_and(|n| *n > 0);
                if let Some(touched) = mesh.commit(name, stats, connected) {
                    committed.insert(name.clone(), touched);
                }
            }
            // The mesh was deleted: its dataplanes' configs go.
            None => {
                committed.insert(name.clone(), Touched { mesh_wide: true, ..Touched::default() });
            }
        }
    }
    committed
}

/// The jobs for the connected dataplanes of the meshes `committed` touched.
fn plan(inner: &Inner, committed: &BTreeMap<String, Touched>, hook: bool) -> Vec<Job> {
    let mut policy_changes = BTreeMap::new();
    let mut jobs = Vec::new();
    for (node, entry) in &inner.nodes {
        let Some(touched) = committed.get(&node.mesh) else { continue };
        let Some(inputs) = &entry.inputs else {
            jobs.push(job_for(inner, node, JobKind::Full));
            continue;
        };
        if touched.mesh_wide || touched.dataplanes.contains(&node.name) {
            jobs.push(job_for(inner, node, JobKind::Full));
            continue;
        }
        let reached: Vec<String> =
            inputs.services.iter().filter(|s| touched.services.contains(*s)).cloned().collect();
        if !reached.is_empty() {
            // The config's own assignments (subsets), a protocol that changed, policies changing
            // in the same batch, or a hook that may rewrite anything: generate it whole.
            let swappable = !hook
                && touched.policies.is_empty()
                && reached
                    .iter()
                    .all(|s| !inputs.subsets.contains(s) && !touched.protocol_changed.contains(s));
            let previous = if swappable { entry.tx.borrow().clone() } else { None };
            let kind = match previous {
                Some(previous) => {
                    JobKind::SwapAssignments { previous, inputs: inputs.clone(), services: reached }
                }
                None => JobKind::Full,
            };
            jobs.push(job_for(inner, node, kind));
        } else if !touched.policies.is_empty() {
            let changed = policy_changes
                .entry(node.mesh.clone())
                .or_insert_with(|| Arc::new(touched.policies.clone()))
                .clone();
            let chosen = inputs.policies.clone();
            jobs.push(job_for(inner, node, JobKind::UnlessUnchosen { chosen, changed }));
        }
    }
    jobs
}

fn job_for(inner: &Inner, node: &NodeId, kind: JobKind) -> Job {
    let dataplane = inner
        .meshes
        .get(&node.mesh)
        .and_then(|mesh| Some((mesh.dataplane(&node.name)?.clone(), mesh.context().clone())));
    Job { node: node.clone(), epoch: inner.epoch, dataplane, kind, changed_at: None }
}

/// What turns the view `known` into `listing`: changed and new resources (Meshes first), then
/// deletions (Meshes last).
fn differences(
    known: &HashMap<ResourceKey, Version>,
    listing: Vec<Resource>,
) -> Vec<(ResourceKey, Option<Resource>)> {
    let listed: HashSet<ResourceKey> = listing.iter().map(|r| r.key.clone()).collect();
    let mut upserts: Vec<(ResourceKey, Option<Resource>)> = listing
        .into_iter()
        .filter(|r| known.get(&r.key) != Some(&r.version))
        .map(|r| (r.key.clone(), Some(r)))
        .collect();
    upserts.sort_by_key(|(key, _)| key.resource_type != ResourceType::Mesh);
    let mut deletions: Vec<(ResourceKey, Option<Resource>)> =
        known.keys().filter(|key| !listed.contains(*key)).map(|key| (key.clone(), None)).collect();
    deletions.sort_by_key(|(key, _)| key.resource_type == ResourceType::Mesh);
    upserts.extend(deletions);
    upserts
}

/// Updates the view; returns the mesh whose dataplanes may need a new config.
fn apply_one(inner: &mut Inner, key: &ResourceKey, resource: Option<&Resource>) -> Option<String> {
    if key.resource_type != ResourceType::DataplaneInsight {
        match resource {
            Some(resource) => inner.known.insert(key.clone(), resource.version.clone()),
            None => inner.known.remove(key),
        };
    }
    match key.resource_type {
        // Observed state: never part of a config, and written on every status flush.
        ResourceType::DataplaneInsight => None,
        ResourceType::Mesh => {
            match resource.and_then(|r| r.spec.as_mesh()) {
                Some(spec) => {
                    inner.meshes.entry(key.name.clone()).or_default().set_mesh(spec.clone())
                }
                None => {
                    // The store deleted the mesh's contents with it.
                    inner.meshes.remove(&key.name);
                    inner.known.retain(|k, _| {
                        k.resource_type == ResourceType::Mesh
                            || k.mesh.as_deref() != Some(&key.name)
                    });
                }
            }
            Some(key.name.clone())
        }
        ResourceType::Dataplane => {
            let mesh_name = key.owning_mesh().to_string();
            let spec = resource.and_then(|r| r.spec.as_dataplane()).cloned();
            inner.meshes.entry(mesh_name.clone()).or_default().set_dataplane(&key.name, spec);
            Some(mesh_name)
        }
        ResourceType::Secret => {
            let mesh_name = key.owning_mesh().to_string();
            let spec = resource.and_then(|r| r.spec.as_secret()).cloned();
            inner.meshes.entry(mesh_name.clone()).or_default().set_secret(&key.name, spec);
            Some(mesh_name)
        }
        // Policies: a change regenerates the dataplanes it is or was chosen for.
        kind => {
            let mesh_name = key.owning_mesh().to_string();
            let mesh = inner.meshes.entry(mesh_name.clone()).or_default();
            mesh.set_policy(kind, &key.name, resource.cloned());
            Some(mesh_name)
        }
    }
}

#[cfg(test)]
mod tests;
