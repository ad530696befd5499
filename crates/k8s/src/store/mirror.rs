//! This replica's copy of every Kuma object in the API server, fed by one watch per type. Reads,
//! the revision and the change feed come from it; a write returns once the copy has seen it.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use kuma_model::{Resource, ResourceKey, ResourceType};
use kuma_store::{StoreState, WatchEvent, HISTORY};
use tokio::sync::{broadcast, watch};

use super::object::ObjectRef;

#[derive(Debug, Default)]
pub(crate) struct Inner {
    pub state: StoreState,
    /// Which Kuma key each object is held under (an object's mesh may change).
    pub objects: HashMap<ObjectRef, ResourceKey>,
    /// The newest resourceVersion each type's watch has delivered.
    pub seen: HashMap<ResourceType, u64>,
    /// Types whose first listing is in.
    pub synced: HashSet<ResourceType>,
    /// The latest watch error of each type, until its watch works again.
    pub errors: HashMap<ResourceType, String>,
}

#[derive(Debug)]
pub(crate) struct Mirror {
    inner: Mutex<Inner>,
    pub events: broadcast::Sender<WatchEvent>,
    /// Bumped after every change, so writers and readiness waiters wake up.
    progress: watch::Sender<u64>,
}

impl Mirror {
    pub fn new() -> Mirror {
        Mirror {
            inner: Mutex::new(Inner::default()),
            events: broadcast::channel(HISTORY).0,
            progress: watch::channel(0).0,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is a few map operations that leave the maps consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn changed(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    fn publish(&self, event: Option<WatchEvent>) {
        if let Some(event) = event {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
    }

    fn note_version(inner: &mut Inner, t: ResourceType, version: Option<u64>) {
        if let Some(v) = version {
            let seen = inner.seen.entry(t).or_default();
            *seen = (*seen).max(v);
        }
    }

    /// An object was created or changed (`resource` is `None` when it no longer reads as a
    /// Kuma resource: it leaves the copy).
    pub fn apply(&self, at: ObjectRef, resource: Option<Resource>, version: Option<u64>) {
        let mut inner = self.lock();
        let t = at.resource_type;
        Mirror::note_version(&mut inner, t, version);
        let previous = inner.objects.get(&at).cloned();
        if let Some(previous) = previous {
            if resource.as_ref().is_none_or(|r| r.key != previous) {
                inner.objects.remove(&at);
                let event = inner.state.remove(&previous);
                self.publish(event);
            }
        }
        if let Some(resource) = resource {
            inner.objects.insert(at, resource.key.clone());
            let event = inner.state.put(resource);
            self.publish(event);
        }
        drop(inner);
        self.changed();
    }

    /// An object was deleted.
    pub fn delete(&self, at: &ObjectRef, version: Option<u64>) {
        let mut inner = self.lock();
        Mirror::note_version(&mut inner, at.resource_type, version);
        if let Some(key) = inner.objects.remove(at) {
            let event = inner.state.remove(&key);
            self.publish(event);
        }
        drop(inner);
        self.changed();
    }

    /// A full listing of type `t` replaced what the copy held of it (after a start, an expired
    /// watch or an apiserver restart): what is gone is deleted, what changed is updated.
    pub fn relisted(
        &self,
        t: ResourceType,
        objects: Vec<(ObjectRef, Option<Resource>, Option<u64>)>,
    ) {
        let listed: HashSet<ObjectRef> = objects.iter().map(|(at, _, _)| at.clone()).collect();
        let gone: Vec<ObjectRef> = self
            .lock()
            .objects
            .keys()
            .filter(|at| at.resource_type == t && !listed.contains(*at))
            .cloned()
            .collect();
        for at in gone {
            self.delete(&at, None);
        }
        for (at, resource, version) in objects {
            self.apply(at, resource, version);
        }
        let mut inner = self.lock();
        inner.synced.insert(t);
        inner.errors.remove(&t);
        drop(inner);
        self.changed();
    }

    pub fn watch_failed(&self, t: ResourceType, error: String) {
        self.lock().errors.insert(t, error);
        self.changed();
    }

    /// Waits until `done` holds for the copy, or `within` has passed; says which.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        mut done: impl FnMut(&Inner) -> bool,
    ) -> bool {
        let mut progress = self.progress.subscribe();
        tokio::time::timeout(within, async {
            loop {
                if done(&self.lock()) {
                    return;
                }
                if progress.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}
