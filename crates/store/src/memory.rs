//! `MemoryStore`: everything in one process's memory. The default for a single kuma-cp; restarting
//! loses the data, as Kuma's documentation says of the memory backend.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use futures::StreamExt;
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::store::check_key;
use crate::{
    EventKind, ListPage, ListQuery, ResourceStore, Revision, StoreError, WatchEvent, WatchStream,
};

/// How many past events a watcher may ask to replay, and how far a live watcher may fall behind.
const HISTORY: usize = 4096;

/// Sort order of lists: mesh, then name, within one type.
type OrderKey = (ResourceType, String, String);

fn order_key(key: &ResourceKey) -> OrderKey {
    (key.resource_type, key.mesh.clone().unwrap_or_default(), key.name.clone())
}

#[derive(Debug, Default)]
struct State {
    resources: BTreeMap<OrderKey, Resource>,
    revision: u64,
    history: VecDeque<WatchEvent>,
}

/// The in-memory `ResourceStore`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<WatchEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore { state: Mutex::new(State::default()), events: broadcast::channel(HISTORY).0 }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the maps consistent (every write is one insert or
        // remove), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(
        &self,
        state: &mut State,
        kind: EventKind,
        key: ResourceKey,
        resource: Option<Resource>,
    ) {
        let event = WatchEvent { revision: Revision(state.revision), kind, key, resource };
        if state.history.len() == HISTORY {
            state.history.pop_front();
        }
        state.history.push_back(event.clone());
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

/// Encodes the position after `key` as an opaque page offset.
fn encode_offset(key: &OrderKey) -> String {
    format!("{}/{}", key.1, key.2)
}

fn decode_offset(t: ResourceType, offset: &str) -> Result<OrderKey, StoreError> {
    let (mesh, name) = offset.split_once('/').ok_or_else(|| StoreError::Invalid {
        reason: format!("offset {offset:?} is not one this store issued"),
    })?;
    Ok((t, mesh.to_string(), name.to_string()))
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.lock()
            .resources
            .get(&order_key(key))
            .cloned()
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let t = query.resource_type;
        let mesh = query.mesh.as_deref().filter(|_| t.is_mesh_scoped());
        let size = query.size.max(1);
        let state = self.lock();
        let first = (t, String::new(), String::new());
        let matching = state
            .resources
            .range(first..)
            .take_while(|(k, _)| k.0 == t)
            .filter(|(k, _)| mesh.is_none_or(|m| k.1 == m));
        let total = matching.clone().count();
        let after = query.offset.as_deref().map(|o| decode_offset(t, o)).transpose()?;
        let mut page: Vec<(&OrderKey, &Resource)> = matching
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .take(size + 1)
            .collect();
        let next = (page.len() > size).then(|| encode_offset(page[size - 1].0));
        page.truncate(size);
        Ok(ListPage { items: page.into_iter().map(|(_, r)| r.clone()).collect(), total, next })
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let mut state = self.lock();
        if let Some(mesh) = &key.mesh {
            if !state.resources.contains_key(&order_key(&ResourceKey::mesh(mesh))) {
                return Err(StoreError::MeshNotFound { mesh: mesh.clone() });
            }
        }
        let ok = order_key(&key);
        if state.resources.contains_key(&ok) {
            return Err(StoreError::AlreadyExists { key });
        }
        state.revision += 1;
        let now = Utc::now();
        let resource = Resource {
            key: key.clone(),
            spec,
            version: Version(state.revision.to_string()),
            creation_time: now,
            modification_time: now,
        };
        state.resources.insert(ok, resource.clone());
        self.record(&mut state, EventKind::Created, key, Some(resource.clone()));
        Ok(resource)
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let mut state = self.lock();
        let revision = state.revision + 1;
        let ok = order_key(&key);
        let current = state
            .resources
            .get_mut(&ok)
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
        if &current.version != expected {
            return Err(StoreError::Conflict {
                key,
                expected: expected.clone(),
                actual: current.version.clone(),
            });
        }
        current.spec = spec;
        current.version = Version(revision.to_string());
        current.modification_time = Utc::now();
        let resource = current.clone();
        state.revision = revision;
        self.record(&mut state, EventKind::Updated, key, Some(resource.clone()));
        Ok(resource)
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        let mut state = self.lock();
        let ok = order_key(key);
        let current =
            state.resources.get(&ok).ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
        if let Some(expected) = expected {
            if &current.version != expected {
                return Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: expected.clone(),
                    actual: current.version.clone(),
                });
            }
        }
        // What the resource owns goes with it, owned things first so watchers never see an orphan.
        let owned: Vec<OrderKey> = match key.resource_type {
            ResourceType::Mesh => state
                .resources
                .keys()
                .filter(|k| k.0 != ResourceType::Mesh && k.1 == key.name)
                .cloned()
                .collect(),
            ResourceType::Dataplane => {
                vec![(ResourceType::DataplaneInsight, ok.1.clone(), ok.2.clone())]
            }
            _ => Vec::new(),
        };
        for k in owned.iter().chain(std::iter::once(&ok)) {
            if let Some(removed) = state.resources.remove(k) {
                state.revision += 1;
                self.record(&mut state, EventKind::Deleted, removed.key, None);
            }
        }
        Ok(())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(Revision(self.lock().revision))
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        let state = self.lock();
        let from = from.unwrap_or(Revision(state.revision));
        let oldest_kept = state.history.front().map_or(state.revision + 1, |e| e.revision.0);
        if from.0 + 1 < oldest_kept {
            return Err(StoreError::Compacted { requested: from.0 });
        }
        let replay: Vec<Result<WatchEvent, StoreError>> =
            state.history.iter().filter(|e| e.revision > from).cloned().map(Ok).collect();
        // Subscribing under the lock means no event falls between the replay and the live feed.
        let live = BroadcastStream::new(self.events.subscribe());
        drop(state);
        let last_replayed =
            replay.last().and_then(|e| e.as_ref().ok()).map_or(from, |e| e.revision);
        let live = live
            .map(move |item| match item {
                Ok(event) => Ok(event),
                Err(BroadcastStreamRecvError::Lagged(_)) => {
                    Err(StoreError::Compacted { requested: last_replayed.0 })
                }
            })
            .scan(false, |ended, item| {
                // End the stream after reporting a lag: the watcher must resynchronise.
                if *ended {
                    return futures::future::ready(None);
                }
                *ended = item.is_err();
                futures::future::ready(Some(item))
            });
        Ok(Box::pin(futures::stream::iter(replay).chain(live)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    crate::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn ResourceStore> });

    #[tokio::test]
    async fn a_watcher_that_falls_too_far_behind_is_told_and_its_stream_ends() {
        let store = MemoryStore::new();
        store.create(ResourceKey::mesh("default"), Spec::Mesh(Default::default())).await.unwrap();
        let mut events = store.watch(None).await.unwrap();
        for i in 0..HISTORY + 10 {
            let key =
                ResourceKey::new(ResourceType::TrafficPermission, "default", &format!("tp-{i}"));
            store.create(key, Spec::empty(ResourceType::TrafficPermission)).await.unwrap();
        }
        let mut delivered = 0;
        loop {
            match events.next().await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(StoreError::Compacted { .. })) => break,
                other => panic!("expected Compacted after the events kept, got {other:?}"),
            }
        }
        assert!(delivered <= HISTORY, "{delivered} events delivered before the lag was reported");
        assert!(events.next().await.is_none(), "the stream ends after Compacted");
        // Asking for history older than what is kept is refused the same way.
        assert!(matches!(store.watch(Some(Revision(0))).await, Err(StoreError::Compacted { .. })));
    }
}
