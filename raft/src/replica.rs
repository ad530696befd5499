//! This peer's replica of the store: what its state machine has applied. Reads on this peer are
//! served from it; watchers are told of each applied change.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use kuma_model::Version;
use kuma_model::{Resource, ResourceKey, Spec};
use kuma_store::{
    ListPage, ListQuery, Revision, StoreError, StoreState, WatchEvent, WatchStream, HISTORY,
};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;
use tokio::sync::{broadcast, watch};

use crate::command::{
    Command, CommandResult, Op, OpError, Outcome, Peers, RequestId, ResourceData, SpecJson, Written,
};
use crate::types::{LogId, StoredMembership};

/// Commands remembered for deduplication. A retry comes within seconds; thousands of commands
/// later it cannot be one.
const DEDUP_KEPT: usize = 10_000;

/// The replicated part: identical on every peer after the same entries.
#[derive(Debug, Default, Clone)]
pub struct ReplicaState {
    pub store: StoreState,
    pub peers: Peers,
    /// Ids of peers removed from the cluster; never used again.
    pub retired: BTreeSet<u64>,
    /// Made once by the first leader; a peer holding another cluster's id is refused.
    pub cluster_id: Option<String>,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    /// Shared, as the store's resources are, so a `view` copies no result.
    dedup: BTreeMap<RequestId, Arc<CommandResult>>,
    dedup_order: VecDeque<RequestId>,
}

/// The replica as it was when the view was taken, to be encoded as a snapshot image while the
/// replica goes on: resources and results shared with it (reference counts, no copies), the
/// rest small. Taking one holds the replica's lock for about a millisecond per 100,000
/// resources; encoding one takes no lock.
#[derive(Debug, Clone)]
pub struct ImageView {
    pub revision: u64,
    pub resources: Vec<Arc<Resource>>,
    pub peers: Peers,
    pub retired: BTreeSet<u64>,
    pub cluster_id: Option<String>,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    dedup: Vec<(RequestId, Arc<CommandResult>)>,
}

/// The serialized form of a replica, which is what a snapshot holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplicaImage {
    pub revision: u64,
    pub resources: Vec<ResourceData>,
    pub peers: Peers,
    #[serde(default)]
    pub retired: BTreeSet<u64>,
    #[serde(default)]
    pub cluster_id: Option<String>,
    pub applied: Option<LogId>,
    pub membership: StoredMembership,
    pub dedup: Vec<(RequestId, CommandResult)>,
}

impl ReplicaState {
    /// Applies one command; the events of its changes go to `events`.
    pub fn apply(&mut self, command: &Command, events: &mut Vec<WatchEvent>) -> CommandResult {
        if let Some(done) = self.dedup.get(&command.request_id) {
            return CommandResult::clone(done);
        }
        let outcomes = command.ops.iter().map(|op| self.apply_op(op, command, events)).collect();
        let result = CommandResult { outcomes };
        self.dedup.insert(command.request_id, Arc::new(result.clone()));
        self.dedup_order.push_back(command.request_id);
        while self.dedup_order.len() > DEDUP_KEPT {
            if let Some(old) = self.dedup_order.pop_front() {
                self.dedup.remove(&old);
            }
        }
        result
    }

    fn apply_op(&mut self, op: &Op, command: &Command, events: &mut Vec<WatchEvent>) -> Outcome {
        let spec = |key: &ResourceKey, json: &SpecJson| {
            Spec::from_json_str(key.resource_type, json.text())
                .map_err(|e| StoreError::Invalid { reason: format!("{}: {e}", e.path()) })
        };
        let result = match op {
            Op::Create { key, spec: value } => spec(key, value).and_then(|spec| {
                self.store.create(key.clone(), spec, command.at).map(|(resource, changes)| {
                    events.extend(changes);
                    Outcome::Written(Written::of(&resource))
                })
            }),
            Op::Update { key, spec: value, expected } => spec(key, value).and_then(|spec| {
                self.store.update(key.clone(), spec, expected, command.at).map(
                    |(resource, changes)| {
                        events.extend(changes);
                        Outcome::Written(Written::of(&resource))
                    },
                )
            }),
            Op::Delete { key, expected } => {
                self.store.delete(key, expected.as_ref()).map(|changes| {
                    events.extend(changes);
                    Outcome::Deleted
                })
            }
            Op::Announce { peer } => {
                self.peers.insert(peer.id, peer.clone());
                Ok(Outcome::Announced)
            }
            Op::Retire { id } => {
                self.peers.remove(id);
                self.retired.insert(*id);
                Ok(Outcome::Retired)
            }
            // The first id made wins; a second leader's attempt changes nothing.
            Op::NameCluster { id } => {
                self.cluster_id.get_or_insert_with(|| id.clone());
                Ok(Outcome::Named(self.cluster_id.clone().unwrap_or_default()))
            }
        };
        result.unwrap_or_else(|e| Outcome::Failed(OpError::from(e)))
    }

    /// The image with every spec as a `serde_json::Value` (tests compare the one-pass encoding
    /// with it; backups were made this way).
    #[cfg(test)]
    pub fn image(&self) -> ReplicaImage {
        ReplicaImage {
            revision: self.store.revision().0,
            resources: self.store.resources().map(ResourceData::from).collect(),
            peers: self.peers.clone(),
            retired: self.retired.clone(),
            cluster_id: self.cluster_id.clone(),
            applied: self.applied,
            membership: self.membership.clone(),
            dedup: self
                .dedup_order
                .iter()
                .map(|id| (*id, CommandResult::clone(&self.dedup[id])))
                .collect(),
        }
    }

    /// The state as it is now, for an image encoded after the lock is released (see
    /// `ImageView`).
    pub fn view(&self) -> ImageView {
        ImageView {
            revision: self.store.revision().0,
            resources: self.store.shared(),
            peers: self.peers.clone(),
            retired: self.retired.clone(),
            cluster_id: self.cluster_id.clone(),
            applied: self.applied,
            membership: self.membership.clone(),
            dedup: self.dedup_order.iter().map(|id| (*id, self.dedup[id].clone())).collect(),
        }
    }

    /// Reads an encoded image (`encode_image`, or `ReplicaImage` as JSON) in one pass:
    /// each spec is parsed straight from its JSON text, without a `serde_json::Value` between.
    pub fn decode(bytes: &[u8]) -> Result<ReplicaState, ImageError> {
        let image: ImageIn<'_> = serde_json::from_slice(bytes).map_err(ImageError::Json)?;
        let resources = image
            .resources
            .into_iter()
            .map(|r| {
                let spec = Spec::from_json_str(r.key.resource_type, r.spec.get()).map_err(|e| {
                    ImageError::Resource(format!("stored {:?} does not parse: {e}", r.key))
                })?;
                Ok(Resource {
                    key: r.key,
                    spec,
                    version: r.version,
                    creation_time: r.creation_time,
                    modification_time: r.modification_time,
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()?;
        Ok(ReplicaState::assemble(
            resources,
            image.revision,
            image.peers,
            image.retired,
            image.cluster_id,
            image.applied,
            image.membership,
            image.dedup,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        resources: Vec<Resource>,
        revision: u64,
        peers: Peers,
        retired: BTreeSet<u64>,
        cluster_id: Option<String>,
        applied: Option<LogId>,
        membership: StoredMembership,
        dedup_list: Vec<(RequestId, CommandResult)>,
    ) -> ReplicaState {
        let mut dedup = BTreeMap::new();
        let mut dedup_order = VecDeque::new();
        for (id, result) in dedup_list {
            dedup.insert(id, Arc::new(result));
            dedup_order.push_back(id);
        }
        ReplicaState {
            store: StoreState::restore(resources, Revision(revision)),
            peers,
            retired,
            cluster_id,
            applied,
            membership,
            dedup,
            dedup_order,
        }
    }

    pub fn from_image(image: ReplicaImage) -> Result<ReplicaState, StoreError> {
        let resources = image
            .resources
            .into_iter()
            .map(ResourceData::into_resource)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReplicaState::assemble(
            resources,
            image.revision,
            image.peers,
            image.retired,
            image.cluster_id,
            image.applied,
            image.membership,
            image.dedup,
        ))
    }
}

impl ImageView {
    /// The image as JSON bytes, in one pass: the same document as `ReplicaImage` (what a peer of
    /// any version reads and a backup file holds), each spec written straight from its typed
    /// form, without a `serde_json::Value` between.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        // About 450 bytes per resource: one allocation for most states.
        let mut out = Vec::with_capacity(4096 + self.resources.len() * 512);
        serde_json::to_writer(
            &mut out,
            &ImageOut {
                revision: self.revision,
                resources: ResourcesOut(&self.resources),
                peers: &self.peers,
                retired: &self.retired,
                cluster_id: &self.cluster_id,
                applied: &self.applied,
                membership: &self.membership,
                dedup: DedupOut(&self.dedup),
            },
        )?;
        Ok(out)
    }
}

/// Why an encoded image does not read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("the image is not valid JSON of a replica: {0}")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Resource(String),
}

/// `ReplicaImage`'s fields, borrowed (same names and order).
#[derive(Serialize)]
struct ImageOut<'a> {
    revision: u64,
    resources: ResourcesOut<'a>,
    peers: &'a Peers,
    retired: &'a BTreeSet<u64>,
    cluster_id: &'a Option<String>,
    applied: &'a Option<LogId>,
    membership: &'a StoredMembership,
    dedup: DedupOut<'a>,
}

struct ResourcesOut<'a>(&'a [Arc<Resource>]);

impl Serialize for ResourcesOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for r in self.0 {
            seq.serialize_element(&ResourceOut {
                key: &r.key,
                spec: r.spec.to_raw_json(),
                version: &r.version,
                creation_time: &r.creation_time,
                modification_time: &r.modification_time,
            })?;
        }
        seq.end()
    }
}

/// The deduplication table, oldest first, as `(id, result)` pairs.
struct DedupOut<'a>(&'a [(RequestId, Arc<CommandResult>)]);

impl Serialize for DedupOut<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (id, result) in self.0 {
            seq.serialize_element(&(id, &**result))?;
        }
        seq.end()
    }
}

/// `ResourceData`'s fields (same names and order), the spec as JSON text.
#[derive(Serialize)]
struct ResourceOut<'a> {
    key: &'a ResourceKey,
    spec: Box<RawValue>,
    version: &'a Version,
    creation_time: &'a DateTime<Utc>,
    modification_time: &'a DateTime<Utc>,
}

/// `ReplicaImage` as read by `ReplicaState::decode`: specs kept as their JSON text.
#[derive(Deserialize)]
struct ImageIn<'a> {
    revision: u64,
    #[serde(borrow)]
    resources: Vec<ResourceIn<'a>>,
    peers: Peers,
    #[serde(default)]
    retired: BTreeSet<u64>,
    #[serde(default)]
    cluster_id: Option<String>,
    applied: Option<LogId>,
    membership: StoredMembership,
    dedup: Vec<(RequestId, CommandResult)>,
}

#[derive(Deserialize)]
struct ResourceIn<'a> {
    key: ResourceKey,
    #[serde(borrow)]
    spec: &'a RawValue,
    version: Version,
    creation_time: DateTime<Utc>,
    modification_time: DateTime<Utc>,
}

/// The replica shared by the state machine (which writes it) and the store API (which reads it).
#[derive(Debug)]
pub struct Replica {
    inner: Mutex<Inner>,
    applied_index: watch::Sender<u64>,
}

#[derive(Debug)]
struct Inner {
    state: ReplicaState,
    /// Replaced when the whole state is replaced: live watchers then see their stream end and
    /// list again, as after any gap.
    events: broadcast::Sender<WatchEvent>,
}

impl Default for Replica {
    fn default() -> Self {
        Replica {
            inner: Mutex::new(Inner {
                state: ReplicaState::default(),
                events: broadcast::channel(HISTORY).0,
            }),
            applied_index: watch::channel(0).0,
        }
    }
}

impl Replica {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the state under the replica's lock (applies and reads wait meanwhile: take a
    /// `ReplicaState::view` to work on a whole state).
    pub fn read<R>(&self, read: impl FnOnce(&ReplicaState) -> R) -> R {
        read(&self.lock().state)
    }

    /// Replaces the whole state (snapshot install or restart).
    pub fn replace(&self, state: ReplicaState) {
        let index = state.applied.map_or(0, |l| l.index);
        let mut inner = self.lock();
        let old = std::mem::replace(&mut inner.state, state);
        inner.events = broadcast::channel(HISTORY).0;
        self.applied_index.send_replace(index);
        drop(inner);
        // Freed outside the lock: a whole state takes a while.
        drop(old);
    }

    /// Runs `apply` on the state and publishes the events it collected, under one lock, so a
    /// watcher subscribing meanwhile sees every event exactly once (replayed or live).
    pub fn apply<R>(&self, apply: impl FnOnce(&mut ReplicaState, &mut Vec<WatchEvent>) -> R) -> R {
        let mut inner = self.lock();
        let mut events = Vec::new();
        let result = apply(&mut inner.state, &mut events);
        for event in events {
            // No receivers is fine.
            let _ = inner.events.send(event);
        }
        self.applied_index.send_replace(inner.state.applied.map_or(0, |l| l.index));
        result
    }

    /// Waits until entries up to `index` are applied here.
    pub async fn wait_applied(&self, index: u64) {
        let mut rx = self.applied_index.subscribe();
        let _ = rx.wait_for(|applied| *applied >= index).await;
    }

    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    pub fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.lock().state.store.get(key)
    }

    pub fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.lock().state.store.list(query)
    }

    pub fn revision(&self) -> Revision {
        self.lock().state.store.revision()
    }

    pub fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        let inner = self.lock();
        inner.state.store.watch(&inner.events, from)
    }

    pub fn peers(&self) -> Peers {
        self.lock().state.peers.clone()
    }

    pub fn cluster_id(&self) -> Option<String> {
        self.lock().state.cluster_id.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuma_model::{MeshSpec, ResourceType};

    fn command(seq: u64, name: &str) -> Command {
        Command {
            request_id: RequestId { origin: 7, seq },
            at: chrono::Utc::now(),
            ops: vec![Op::create(ResourceKey::mesh(name), &Spec::Mesh(MeshSpec::default()))],
        }
    }

    /// A retried command (same request id) is answered from the first application, not applied
    /// twice: the retry of a create that succeeded does not turn into AlreadyExists.
    #[test]
    fn a_command_applied_twice_takes_effect_once() {
        let mut state = ReplicaState::default();
        let mut events = Vec::new();
        let first = state.apply(&command(1, "m"), &mut events);
        let again = state.apply(&command(1, "m"), &mut events);
        assert_eq!(first, again);
        assert!(matches!(first.outcomes[0], Outcome::Written(_)));
        assert_eq!(events.len(), 1, "one change, seen once");
        let other = state.apply(&command(2, "m"), &mut events);
        assert!(matches!(other.outcomes[0], Outcome::Failed(OpError::AlreadyExists { .. })));
        let query = ListQuery::new(ResourceType::Mesh, None, 10);
        assert_eq!(state.store.list(&query).unwrap().total, 1);
    }

    #[test]
    fn a_snapshot_image_restores_the_same_state() {
        let mut state = ReplicaState::default();
        let mut events = Vec::new();
        for i in 0..5 {
            state.apply(&command(i, &format!("m{i}")), &mut events);
        }
        let restored = ReplicaState::from_image(state.image()).unwrap();
        assert_eq!(restored.store.revision(), state.store.revision());
        let all: Vec<_> = restored.store.resources().cloned().collect();
        assert_eq!(all, state.store.resources().cloned().collect::<Vec<_>>());
        // The dedup table travels with the snapshot.
        let mut restored = restored;
        let again = restored.apply(&command(3, "m3"), &mut events);
        assert!(matches!(again.outcomes[0], Outcome::Written(_)));
    }

    /// The one-pass encoding is the `ReplicaImage` document, and the one-pass decoding reads both.
    #[test]
    fn the_one_pass_encoding_is_the_image_document() {
        let mut state = ReplicaState::default();
        let mut events = Vec::new();
        for i in 0..5 {
            state.apply(&command(i, &format!("m{i}")), &mut events);
        }
        state.cluster_id = Some("c".to_string());
        let encoded = state.view().encode().unwrap();
        let as_image: ReplicaImage = serde_json::from_slice(&encoded).unwrap();
        let old_way = serde_json::to_vec(&state.image()).unwrap();
        let old_image: ReplicaImage = serde_json::from_slice(&old_way).unwrap();
        assert_eq!(
            serde_json::to_value(&as_image).unwrap(),
            serde_json::to_value(&old_image).unwrap()
        );
        for bytes in [&encoded, &old_way] {
            let decoded = ReplicaState::decode(bytes).unwrap();
            let all: Vec<_> = decoded.store.resources().cloned().collect();
            assert_eq!(all, state.store.resources().cloned().collect::<Vec<_>>());
            assert_eq!(decoded.store.revision(), state.store.revision());
            assert_eq!(decoded.cluster_id, state.cluster_id);
            assert_eq!(decoded.dedup_order, state.dedup_order);
        }
        let broken =
            String::from_utf8(encoded).unwrap().replace("\"spec\":{}", "\"spec\":{\"mtls\":7}");
        let error = ReplicaState::decode(broken.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("m0") && error.contains("mtls"), "{error}");
    }
}
