//! `KubernetesStore`: the API server as the `ResourceStore`. Kuma's CRDs hold meshes, policies
//! and dataplanes, Kubernetes Secrets in the system namespace hold Secrets. Each replica follows
//! the API server with one watch per type into its own copy ([`mirror`]), which serves reads and
//! the change feed; writes go to the API server, with `resourceVersion` as the compare-and-set
//! version, and return once this replica's copy has seen them.
//!
//! Names are unique per type across meshes ([`NameScope::PerType`]), as on Kubernetes. Reads
//! come from the copy, so a write made through another replica or with `kubectl` shows here
//! after the watch delivers it (milliseconds), as in every Kubernetes controller.

mod mirror;
pub mod object;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher::{self, watcher, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use kuma_store::{
    check_key, ListPage, ListQuery, NameScope, ResourceStore, Revision, StoreError, WatchStream,
};
use serde_json::json;
use tracing::{info, warn};

use self::mirror::Mirror;
use self::object::{api_resource, from_object, object_ref, secret_type, ObjectError, ObjectRef};

/// How long a write waits for this replica's watch to deliver it before returning anyway.
const VISIBLE_WITHIN: Duration = Duration::from_secs(10);
/// How long the first listing of every type may take before the store gives up starting.
const SYNCED_WITHIN: Duration = Duration::from_secs(60);

/// Why the Kubernetes store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the CRD {plural}.kuma.io is not installed: run `kumactl install crds | kubectl apply -f -` (or `kumactl install control-plane`)")]
    MissingCrd { plural: &'static str },
    #[error("the system namespace {0:?} does not exist: create it (`kumactl install control-plane` does) or set KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE")]
    MissingNamespace(String),
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(String),
    #[error("the first listing of {0} did not finish within {SYNCED_WITHIN:?}: {1}")]
    NotSynced(&'static str, String),
}

/// The Kubernetes API server as the resource store.
pub struct KubernetesStore {
    client: Client,
    system_namespace: String,
    mirror: Arc<Mirror>,
    watchers: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for KubernetesStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubernetesStore")
            .field("system_namespace", &self.system_namespace)
            .finish_non_exhaustive()
    }
}

impl Drop for KubernetesStore {
    fn drop(&mut self) {
        for watcher in &self.watchers {
            watcher.abort();
        }
    }
}

fn api_error(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(status) => (status.code, status.message),
        other => (0, other.to_string()),
    }
}

/// The store error for a failed request about `key`.
fn store_error(e: kube::Error, key: &ResourceKey, on_conflict: StoreError) -> StoreError {
    let (code, message) = api_error(e);
    match code {
        404 => StoreError::NotFound { key: key.clone() },
        409 => on_conflict,
        400 | 422 => StoreError::Invalid { reason: message },
        0 | 429 | 500..=599 => StoreError::Unavailable { reason: message },
        _ => StoreError::Internal { reason: format!("{code}: {message}") },
    }
}

impl KubernetesStore {
    /// Checks that Kuma's CRDs and the system namespace exist, starts one watch per type and
    /// returns once every type's first listing is in this replica's copy.
    pub async fn start(
        client: Client,
        system_namespace: &str,
    ) -> Result<KubernetesStore, StartError> {
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        match namespaces.get_opt(system_namespace).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(StartError::MissingNamespace(system_namespace.into())),
            Err(e) => return Err(StartError::Unreachable(e.to_string())),
        }
        for t in ResourceType::all() {
            let Some(kind) = &t.descriptor().kubernetes else { continue };
            let probe = Api::<DynamicObject>::all_with(client.clone(), &api_resource(t));
            match probe.list_metadata(&kube::api::ListParams::default().limit(1)).await {
                Ok(_) => {}
                Err(e) => match api_error(e) {
                    (404, _) => return Err(StartError::MissingCrd { plural: kind.plural }),
                    (_, message) => return Err(StartError::Unreachable(message)),
                },
            }
        }
        let mirror = Arc::new(Mirror::new());
        let watchers = ResourceType::all()
            .map(|t| {
                let api = KubernetesStore::watch_api(&client, t, system_namespace);
                tokio::spawn(follow(api, t, system_namespace.to_string(), mirror.clone()))
            })
            .collect();
        let store = KubernetesStore {
            client,
            system_namespace: system_namespace.to_string(),
            mirror,
            watchers,
        };
        let all = ResourceType::all().count();
        let synced = store.mirror.wait_for(SYNCED_WITHIN, |inner| inner.synced.len() == all).await;
        if !synced {
            let inner = store.mirror.lock();
            let t =
                ResourceType::all().find(|t| !inner.synced.contains(t)).expect("one is missing");
            let why = inner.errors.get(&t).cloned().unwrap_or_else(|| "no answer".into());
            return Err(StartError::NotSynced(t.name(), why));
        }
        info!(namespace = system_namespace, "following the Kubernetes API server");
        Ok(store)
    }

    /// The API a type's watch follows: every namespace for Kuma's CRDs, the system namespace
    /// for Secrets.
    fn watch_api(client: &Client, t: ResourceType, system_namespace: &str) -> Api<DynamicObject> {
        let resource = api_resource(t);
        match secret_type(t) {
            Some(_) => Api::namespaced_with(client.clone(), system_namespace, &resource),
            None => Api::all_with(client.clone(), &resource),
        }
    }

    fn api(&self, at: &ObjectRef) -> Api<DynamicObject> {
        let resource = api_resource(at.resource_type);
        match &at.namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &resource),
            None => Api::all_with(self.client.clone(), &resource),
        }
    }

    /// The key this object is held under in the copy, when the copy knows it.
    fn holder(&self, at: &ObjectRef) -> Option<ResourceKey> {
        self.mirror.lock().objects.get(at).cloned()
    }

    /// Refuses to touch an object that the copy holds under another mesh.
    fn check_holder(&self, key: &ResourceKey, at: &ObjectRef) -> Result<(), StoreError> {
        match self.holder(at) {
            Some(held) if &held != key => Err(StoreError::NotFound { key: key.clone() }),
            _ => Ok(()),
        }
    }

    async fn mesh_exists(&self, mesh: &str) -> Result<bool, StoreError> {
        let key = ResourceKey::mesh(mesh);
        if self.mirror.lock().state.get(&key).is_ok() {
            return Ok(true);
        }
        // Perhaps created a moment ago elsewhere and not yet watched here: ask.
        let at = object_ref(&key, &self.system_namespace);
        match self.api(&at).get_opt(&at.name).await {
            Ok(found) => Ok(found.is_some()),
            Err(e) => {
                Err(store_error(e, &key, StoreError::Unavailable { reason: "conflict".into() }))
            }
        }
    }

    /// Waits until the copy has seen resourceVersion `version` of type `t`.
    async fn await_version(&self, t: ResourceType, version: Option<u64>) {
        let Some(version) = version else { return };
        let seen = self
            .mirror
            .wait_for(VISIBLE_WITHIN, |inner| inner.seen.get(&t).is_some_and(|v| *v >= version))
            .await;
        if !seen {
            warn!(resource_type = %t, version, "the watch has not delivered a write of this replica yet");
        }
    }

    async fn await_gone(&self, keys: &[ResourceKey]) {
        let gone = self
            .mirror
            .wait_for(VISIBLE_WITHIN, |inner| keys.iter().all(|k| inner.state.get(k).is_err()))
            .await;
        if !gone {
            warn!(keys = ?keys, "the watch has not delivered a deletion of this replica yet");
        }
    }

    fn read(&self, object: &DynamicObject, t: ResourceType) -> Result<Resource, StoreError> {
        from_object(t, object, &self.system_namespace)
            .map_err(|e| StoreError::Internal { reason: e.to_string() })
    }

    /// Deletes one object, with a precondition on its version when given.
    async fn delete_one(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        let at = object_ref(key, &self.system_namespace);
        let params = DeleteParams {
            preconditions: expected
                .map(|v| Preconditions { resource_version: Some(v.0.clone()), uid: None }),
            ..DeleteParams::default()
        };
        let conflict = StoreError::Conflict {
            key: key.clone(),
            expected: expected.cloned().unwrap_or_else(|| Version(String::new())),
            actual: self.current_version(key),
        };
        self.api(&at).delete(&at.name, &params).await.map_err(|e| store_error(e, key, conflict))?;
        Ok(())
    }

    fn current_version(&self, key: &ResourceKey) -> Version {
        self.mirror
            .lock()
            .state
            .get(key)
            .map(|r| r.version)
            .unwrap_or_else(|_| Version("unknown".into()))
    }
}

/// Follows one type into the copy until the store is dropped: a full listing first (and again
/// whenever the watch expires, the apiserver answers 410 Gone, or it restarts), then every change.
async fn follow(api: Api<DynamicObject>, t: ResourceType, system: String, mirror: Arc<Mirror>) {
    let mut config = watcher::Config::default();
    if let Some(secret_type) = secret_type(t) {
        config = config.fields(&format!("type={secret_type}"));
    }
    let read = |object: &DynamicObject| {
        let at = ObjectRef {
            resource_type: t,
            namespace: object.metadata.namespace.clone(),
            name: object.metadata.name.clone().unwrap_or_default(),
        };
        let resource = match from_object(t, object, &system) {
            Ok(resource) => Some(resource),
            Err(ObjectError::NotKuma) => None,
            Err(e) => {
                warn!(error = %e, "ignoring an object that is not a valid Kuma resource: fix it with kubectl");
                None
            }
        };
        (at, resource, object::resource_version(object))
    };
    let mut listing: Vec<(ObjectRef, Option<Resource>, Option<u64>)> = Vec::new();
    let mut stream = watcher(api, config).default_backoff().boxed();
    while let Some(event) = stream.next().await {
        match event {
            Ok(Event::Init) => listing.clear(),
            Ok(Event::InitApply(object)) => listing.push(read(&object)),
            Ok(Event::InitDone) => mirror.relisted(t, std::mem::take(&mut listing)),
            Ok(Event::Apply(object)) => {
                let (at, resource, version) = read(&object);
                mirror.apply(at, resource, version);
            }
            Ok(Event::Delete(object)) => {
                let (at, _, version) = read(&object);
                mirror.delete(&at, version);
            }
            Err(e) => {
                warn!(resource_type = %t, error = %e, "watch failed; listing again after a backoff");
                mirror.watch_failed(t, e.to_string());
            }
        }
    }
}

#[async_trait]
impl ResourceStore for KubernetesStore {
    fn name_scope(&self) -> NameScope {
        NameScope::PerType
    }

    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.mirror.lock().state.get(key)
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.mirror.lock().state.list(query)
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        if let Some(mesh) = &key.mesh {
            if !self.mesh_exists(mesh).await? {
                return Err(StoreError::MeshNotFound { mesh: mesh.clone() });
            }
        }
        let at = object_ref(&key, &self.system_namespace);
        let object: DynamicObject =
            serde_json::from_value(object::to_object(&key, &spec, &self.system_namespace))
                .map_err(|e| StoreError::Internal { reason: e.to_string() })?;
        let created = self
            .api(&at)
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| match e {
                kube::Error::Api(status) if status.code == 404 => StoreError::Invalid {
                    reason: format!(
                        "namespace {:?} does not exist: a {} named <name>.<namespace> lives in that namespace",
                        at.namespace.clone().unwrap_or_default(),
                        key.resource_type.name(),
                    ),
                },
                e => store_error(e, &key, StoreError::AlreadyExists { key: key.clone() }),
            })?;
        self.await_version(key.resource_type, object::resource_version(&created)).await;
        self.read(&created, key.resource_type)
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let at = object_ref(&key, &self.system_namespace);
        self.check_holder(&key, &at)?;
        // Replacing resourceVersion in the patch makes the apiserver compare-and-set on it.
        let ops = json!([
            { "op": "replace", "path": "/metadata/resourceVersion", "value": expected.0 },
            object::spec_patch(key.resource_type, &spec),
        ]);
        let patch: json_patch::Patch = serde_json::from_value(ops)
            .map_err(|e| StoreError::Internal { reason: e.to_string() })?;
        let conflict = StoreError::Conflict {
            key: key.clone(),
            expected: expected.clone(),
            actual: self.current_version(&key),
        };
        let updated = self
            .api(&at)
            .patch(&at.name, &PatchParams::default(), &Patch::<()>::Json(patch))
            .await
            .map_err(|e| store_error(e, &key, conflict))?;
        let resource = self.read(&updated, key.resource_type)?;
        if resource.key != key {
            return Err(StoreError::NotFound { key });
        }
        self.await_version(key.resource_type, object::resource_version(&updated)).await;
        Ok(resource)
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        let at = object_ref(key, &self.system_namespace);
        self.check_holder(key, &at)?;
        if let Some(expected) = expected {
            let actual = self.current_version(key);
            if self.holder(&at).is_some() && &actual != expected {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        // What the resource owns goes first, so watchers never see an orphan. (On a real
        // cluster, owner references would let the garbage collector do it; it may not run.)
        let owned: Vec<ResourceKey> = {
            let inner = self.mirror.lock();
            match key.resource_type {
                ResourceType::Mesh => inner
                    .state
                    .resources()
                    .filter(|r| r.key.mesh.as_deref() == Some(key.name.as_str()))
                    .map(|r| r.key.clone())
                    .collect(),
                ResourceType::Dataplane => {
                    let insight = ResourceKey {
                        resource_type: ResourceType::DataplaneInsight,
                        ..key.clone()
                    };
                    inner.state.get(&insight).map(|r| vec![r.key]).unwrap_or_default()
                }
                _ => Vec::new(),
            }
        };
        for owned_key in &owned {
            match self.delete_one(owned_key, None).await {
                Ok(()) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        self.delete_one(key, expected).await?;
        let mut all = owned;
        all.push(key.clone());
        self.await_gone(&all).await;
        Ok(())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.mirror.lock().state.revision())
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        let inner = self.mirror.lock();
        inner.state.watch(&self.mirror.events, from)
    }
}
