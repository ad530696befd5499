//! `StoreState`: a store's contents and recent change history, where every write is a
//! deterministic function of its inputs. The write's time is given by the caller and versions are
//! revision numbers, so peers that apply the same writes in the same order hold the same state.
//! `MemoryStore` wraps it with a lock and the clock; the Raft state machine applies the writes of
//! its log to one.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{errors::BroadcastStreamRecvError, BroadcastStream};

use crate::store::check_key;
use crate::{EventKind, ListPage, ListQuery, Revision, StoreError, WatchEvent, WatchStream};

/// How many past events a watcher may ask to replay, and how far a live watcher may fall behind.
pub const HISTORY: usize = 4096;

/// Sort order of lists: mesh, then name, within one type.
type OrderKey = (ResourceType, String, String);

fn order_key(key: &ResourceKey) -> OrderKey {
    (key.resource_type, key.mesh.clone().unwrap_or_default(), key.name.clone())
}

/// Resources, the revision of the latest write, and the latest events.
#[derive(Debug, Default, Clone)]
pub struct StoreState {
    /// Shared, never changed in place (a write puts a new `Arc`): a consistent view of every
    /// resource is a reference count each (`shared`), taken under whatever lock guards the state
    /// and read after it is released (a Raft snapshot's encoding, issue 16).
    resources: BTreeMap<OrderKey, Arc<Resource>>,
    /// How many resources each (type, mesh) holds, so a list page says its total without
    /// counting them: a page costs its own size, not the size of the list (issue 16).
    counts: BTreeMap<(ResourceType, String), usize>,
    revision: u64,
    history: VecDeque<WatchEvent>,
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

impl StoreState {
    /// A state holding `resources` at `revision`, with no history (a watcher asking for an
    /// older revision is told to list again).
    pub fn restore(
        resources: impl IntoIterator<Item = Resource>,
        revision: Revision,
    ) -> StoreState {
        let mut state = StoreState { revision: revision.0, ..StoreState::default() };
        for resource in resources {
            state.insert(order_key(&resource.key), Arc::new(resource));
        }
        state
    }

    /// Inserts or replaces the resource at `key`, keeping the counts.
    fn insert(&mut self, key: OrderKey, resource: Arc<Resource>) {
        let group = (key.0, key.1.clone());
        if self.resources.insert(key, resource).is_none() {
            *self.counts.entry(group).or_default() += 1;
        }
    }

    /// Removes the resource at `key`, keeping the counts.
    fn take(&mut self, key: &OrderKey) -> Option<Arc<Resource>> {
        let removed = self.resources.remove(key)?;
        let group = (key.0, key.1.clone());
        if let Some(count) = self.counts.get_mut(&group) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&group);
            }
        }
        Some(removed)
    }

    /// Every resource, in list order.
    pub fn resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources.values().map(Arc::as_ref)
    }

    /// Every resource, in list order, as it is now: later writes to this state do not change
    /// it. It costs a reference count per resource, no copy, so it may be taken under a lock
    /// that applies wait for and read (encoded, say) after the lock is released.
    pub fn shared(&self) -> Vec<Arc<Resource>> {
        self.resources.values().cloned().collect()
    }

    /// How many resources the state holds.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    pub fn revision(&self) -> Revision {
        Revision(self.revision)
    }

    pub fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.resources
            .get(&order_key(key))
            .map(|r| Resource::clone(r))
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })
    }

    /// One page of a list. It costs the page, not the list: the page starts where the offset
    /// points in the ordered map (no walk from the list's start) and the total comes from the
    /// counts (no count of every item), so walking a list of n items page by page is O(n).
    pub fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let t = query.resource_type;
        let mesh = query.mesh.as_deref().filter(|_| t.is_mesh_scoped());
        let size = query.size.max(1);
        let total = match mesh {
            Some(m) => self.counts.get(&(t, m.to_string())).copied().unwrap_or_default(),
            None => self
                .counts
                .range((t, String::new())..)
                .take_while(|((counted, _), _)| *counted == t)
                .map(|(_, n)| n)
                .sum(),
        };
        let list_start = (t, mesh.unwrap_or_default().to_string(), String::new());
        let after = query.offset.as_deref().map(|o| decode_offset(t, o)).transpose()?;
        let start = match after {
            // An offset before the asked mesh (not one this list issued) starts at the mesh.
            Some(after) if after > list_start => Bound::Excluded(after),
            _ => Bound::Included(list_start),
        };
        let mut page: Vec<(&OrderKey, &Arc<Resource>)> = self
            .resources
            .range((start, Bound::Unbounded))
            .take_while(|(k, _)| k.0 == t && mesh.is_none_or(|m| k.1 == m))
            .take(size + 1)
            .collect();
        let next = (page.len() > size).then(|| encode_offset(page[size - 1].0));
        page.truncate(size);
        Ok(ListPage {
            items: page.into_iter().map(|(_, r)| Resource::clone(r)).collect(),
            total,
            next,
        })
    }

    fn record(
        &mut self,
        kind: EventKind,
        key: ResourceKey,
        resource: Option<Arc<Resource>>,
        events: &mut Vec<WatchEvent>,
    ) {
        let event = WatchEvent { revision: Revision(self.revision), kind, key, resource };
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back(event.clone());
        events.push(event);
    }

    /// Creates a resource at time `at`; returns it and the events of the change.
    pub fn create(
        &mut self,
        key: ResourceKey,
        spec: Spec,
        at: DateTime<Utc>,
    ) -> Result<(Resource, Vec<WatchEvent>), StoreError> {
        check_key(&key, &spec)?;
        if let Some(mesh) = &key.mesh {
            if !self.resources.contains_key(&order_key(&ResourceKey::mesh(mesh))) {
                return Err(StoreError::MeshNotFound { mesh: mesh.clone() });
            }
        }
        let ok = order_key(&key);
        if self.resources.contains_key(&ok) {
            return Err(StoreError::AlreadyExists { key });
        }
        self.revision += 1;
        let resource = Resource {
            key: key.clone(),
            spec,
            version: Version(self.revision.to_string()),
            creation_time: at,
            modification_time: at,
        };
        let shared = Arc::new(resource);
        self.insert(ok, shared.clone());
        let mut events = Vec::with_capacity(1);
        self.record(EventKind::Created, key, Some(shared.clone()), &mut events);
        Ok((Arc::unwrap_or_clone(shared), events))
    }

    /// Replaces a resource's spec at time `at` if its version is still `expected`.
    pub fn update(
        &mut self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
        at: DateTime<Utc>,
    ) -> Result<(Resource, Vec<WatchEvent>), StoreError> {
        check_key(&key, &spec)?;
        let revision = self.revision + 1;
        let current = self
            .resources
            .get_mut(&order_key(&key))
            .ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
        if &current.version != expected {
            return Err(StoreError::Conflict {
                key,
                expected: expected.clone(),
                actual: current.version.clone(),
            });
        }
        // A new value, not a change in place: a view taken before still sees the old one.
        let resource = Resource {
            key: current.key.clone(),
            spec,
            version: Version(revision.to_string()),
            creation_time: current.creation_time,
            modification_time: at,
        };
        let shared = Arc::new(resource);
        *current = shared.clone();
        self.revision = revision;
        let mut events = Vec::with_capacity(1);
        self.record(EventKind::Updated, key, Some(shared.clone()), &mut events);
        Ok((Arc::unwrap_or_clone(shared), events))
    }

    /// Deletes a resource and what it owns, if its version is still `expected` (when given).
    pub fn delete(
        &mut self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<Vec<WatchEvent>, StoreError> {
        let ok = order_key(key);
        let current =
            self.resources.get(&ok).ok_or_else(|| StoreError::NotFound { key: key.clone() })?;
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
            ResourceType::Mesh => self
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
        let mut events = Vec::new();
        for k in owned.iter().chain(std::iter::once(&ok)) {
            if let Some(removed) = self.take(k) {
                self.revision += 1;
                self.record(EventKind::Deleted, removed.key.clone(), None, &mut events);
            }
        }
        Ok(events)
    }

    /// Records `resource` as an outside source of truth holds it now (a store that mirrors
    /// another system keeps its copy this way): an `Created` or `Updated` event when it is new or
    /// its version changed, nothing when this state already holds that version.
    pub fn put(&mut self, resource: Resource) -> Option<WatchEvent> {
        let ok = order_key(&resource.key);
        let kind = match self.resources.get(&ok) {
            Some(current) if current.version == resource.version => return None,
            Some(_) => EventKind::Updated,
            None => EventKind::Created,
        };
        self.revision += 1;
        let key = resource.key.clone();
        let shared = Arc::new(resource);
        self.insert(ok, shared.clone());
        let mut events = Vec::with_capacity(1);
        self.record(kind, key, Some(shared), &mut events);
        events.pop()
    }

    /// Forgets a resource the outside source of truth no longer holds: a `Deleted` event, or
    /// nothing when it was not here.
    pub fn remove(&mut self, key: &ResourceKey) -> Option<WatchEvent> {
        let removed = self.take(&order_key(key))?;
        self.revision += 1;
        let mut events = Vec::with_capacity(1);
        self.record(EventKind::Deleted, removed.key.clone(), None, &mut events);
        events.pop()
    }

    /// A watch from `from` (or from now): the kept history after it, then the live `events`.
    /// Call it while holding whatever lock guards this state and the sending side of `events`, so
    /// no event falls between the replay and the live feed.
    pub fn watch(
        &self,
        events: &broadcast::Sender<WatchEvent>,
        from: Option<Revision>,
    ) -> Result<WatchStream, StoreError> {
        let from = from.unwrap_or(Revision(self.revision));
        let oldest_kept = self.history.front().map_or(self.revision + 1, |e| e.revision.0);
        if from.0 + 1 < oldest_kept {
            return Err(StoreError::Compacted { requested: from.0 });
        }
        let replay: Vec<Result<WatchEvent, StoreError>> =
            self.history.iter().filter(|e| e.revision > from).cloned().map(Ok).collect();
        let live = BroadcastStream::new(events.subscribe());
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
    use kuma_model::MeshSpec;

    use super::*;

    fn with_meshes(meshes: &[&str]) -> StoreState {
        let mut state = StoreState::default();
        for mesh in meshes {
            let spec = Spec::Mesh(MeshSpec::default());
            state.create(ResourceKey::mesh(mesh), spec, Utc::now()).unwrap();
        }
        state
    }

    fn must_route(state: &mut StoreState, mesh: &str, name: &str) {
        let key = ResourceKey::new(ResourceType::TrafficRoute, mesh, name);
        state.create(key, Spec::empty(ResourceType::TrafficRoute), Utc::now()).unwrap();
    }

    fn total(state: &StoreState, mesh: Option<&str>) -> usize {
        state.list(&ListQuery::new(ResourceType::TrafficRoute, mesh, 1)).unwrap().total
    }

    #[test]
    fn list_totals_follow_creates_deletes_puts_and_a_restore() {
        let mut state = with_meshes(&["a", "b"]);
        for name in ["r1", "r2", "r3"] {
            must_route(&mut state, "a", name);
        }
        must_route(&mut state, "b", "r1");
        assert_eq!((total(&state, Some("a")), total(&state, Some("b"))), (3, 1));
        assert_eq!(total(&state, None), 4);

        let r2 = ResourceKey::new(ResourceType::TrafficRoute, "a", "r2");
        state.delete(&r2, None).unwrap();
        let r1 = state.get(&ResourceKey::new(ResourceType::TrafficRoute, "a", "r1")).unwrap();
        state.put(Resource { version: Version("99".into()), ..r1.clone() });
        assert_eq!((total(&state, Some("a")), total(&state, None)), (2, 3));
        state.remove(&r1.key);
        assert_eq!(total(&state, Some("a")), 1);

        let restored = StoreState::restore(state.resources().cloned(), state.revision());
        assert_eq!((total(&restored, Some("a")), total(&restored, None)), (1, 2));
        state.delete(&ResourceKey::mesh("a"), None).unwrap();
        assert_eq!((total(&state, Some("a")), total(&state, None)), (0, 1));
        assert_eq!(state.list(&ListQuery::new(ResourceType::Mesh, None, 10)).unwrap().total, 1);
    }

    /// A Raft snapshot is encoded from a view taken under the replica's lock and read after the
    /// lock is released (issue 16): writes after the view do not show through it, and what did
    /// not change is shared with the state, not copied.
    #[test]
    fn a_shared_view_keeps_what_it_saw_while_the_state_moves_on() {
        let mut state = with_meshes(&["a"]);
        must_route(&mut state, "a", "r1");
        must_route(&mut state, "a", "r2");
        let before: Vec<Resource> = state.resources().cloned().collect();
        let view = state.shared();

        let r1 = state.get(&ResourceKey::new(ResourceType::TrafficRoute, "a", "r1")).unwrap();
        let spec = Spec::empty(ResourceType::TrafficRoute);
        state.update(r1.key.clone(), spec, &r1.version, Utc::now()).unwrap();
        state.delete(&ResourceKey::new(ResourceType::TrafficRoute, "a", "r2"), None).unwrap();
        must_route(&mut state, "a", "r3");

        let seen: Vec<Resource> = view.iter().map(|r| Resource::clone(r)).collect();
        assert_eq!(seen, before);
        let now = state.shared();
        assert_eq!(state.len(), 3);
        assert_ne!(now[1].version, view[1].version, "r1 was updated");
        assert!(Arc::ptr_eq(&now[0], &view[0]), "the unchanged mesh is shared");
    }

    #[test]
    fn an_offset_outside_the_asked_mesh_starts_at_the_mesh_or_ends_the_list() {
        let mut state = with_meshes(&["a", "b", "c"]);
        for mesh in ["a", "b", "c"] {
            must_route(&mut state, mesh, "r1");
            must_route(&mut state, mesh, "r2");
        }
        let page = |offset: &str| {
            let query = ListQuery {
                offset: Some(offset.to_string()),
                ..ListQuery::new(ResourceType::TrafficRoute, Some("b"), 10)
            };
            let page = state.list(&query).unwrap();
            page.items.into_iter().map(|r| r.key.name).collect::<Vec<_>>()
        };
        assert_eq!(page("a/r2"), ["r1", "r2"]);
        assert_eq!(page("b/r1"), ["r2"]);
        assert!(page("c/r1").is_empty());
    }
}
