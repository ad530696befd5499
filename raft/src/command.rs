//! What goes through the Raft log: a batch of store writes with a request id, and what applying
//! it gave. Everything here is serializable and every verdict (conflicts, missing meshes) is
//! reached when the entry is applied, so every peer reaches the same one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use kuma_model::{Resource, ResourceKey, Spec, Version};
use kuma_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// Identifies one command for deduplication: the proposing process and its sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    /// Random per process start, so a restarted peer never reuses an id.
    pub origin: u64,
    pub seq: u64,
}

/// A spec as JSON text. It is written into log entries and peer messages as it is and cloned as
/// bytes: a write's spec is parsed once per peer, when the entry is applied, instead of being
/// rebuilt as a JSON tree at every encoding, decoding and copy on its way there.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpecJson(Box<RawValue>);

impl SpecJson {
    pub fn of(spec: &Spec) -> SpecJson {
        SpecJson(spec.to_raw_json())
    }

    pub fn text(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for SpecJson {
    fn eq(&self, other: &SpecJson) -> bool {
        self.text() == other.text()
    }
}

/// One write, as the `ResourceStore` trait names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Create {
        key: ResourceKey,
        spec: SpecJson,
    },
    Update {
        key: ResourceKey,
        spec: SpecJson,
        expected: Version,
    },
    Delete {
        key: ResourceKey,
        expected: Option<Version>,
    },
    /// A peer announces the addresses it serves on (kept beside the resources, not in them).
    Announce {
        peer: PeerInfo,
    },
    /// A peer left the cluster for good: its id may never be used again.
    Retire {
        id: u64,
    },
    /// The cluster gets its id, once.
    NameCluster {
        id: String,
    },
}

impl Op {
    pub fn create(key: ResourceKey, spec: &Spec) -> Op {
        Op::Create { key, spec: SpecJson::of(spec) }
    }

    pub fn update(key: ResourceKey, spec: &Spec, expected: Version) -> Op {
        Op::Update { key, spec: SpecJson::of(spec), expected }
    }
}

/// What a peer serves, as other peers and dataplanes reach it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerInfo {
    pub id: u64,
    /// How it names itself in DataplaneInsights.
    pub instance_id: String,
    /// `host:port` of its xDS server.
    pub xds_address: String,
    /// Base URL of its HTTP API.
    pub api_url: String,
    /// Base URL of its bootstrap server.
    pub bootstrap_url: String,
}

/// A batch of writes, applied in order, each on its own (one failing does not undo the others).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub request_id: RequestId,
    /// Stamped by the proposer: applying must not read the clock, or peers would disagree.
    pub at: DateTime<Utc>,
    pub ops: Vec<Op>,
}

/// A resource in its serializable form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceData {
    pub key: ResourceKey,
    pub spec: Value,
    pub version: Version,
    pub creation_time: DateTime<Utc>,
    pub modification_time: DateTime<Utc>,
}

impl From<&Resource> for ResourceData {
    fn from(r: &Resource) -> ResourceData {
        ResourceData {
            key: r.key.clone(),
            spec: r.spec.to_json(),
            version: r.version.clone(),
            creation_time: r.creation_time,
            modification_time: r.modification_time,
        }
    }
}

impl ResourceData {
    pub fn into_resource(self) -> Result<Resource, StoreError> {
        let spec = Spec::from_json(self.key.resource_type, self.spec).map_err(|e| {
            StoreError::Internal { reason: format!("stored {:?} does not parse: {e}", self.key) }
        })?;
        Ok(Resource {
            key: self.key,
            spec,
            version: self.version,
            creation_time: self.creation_time,
            modification_time: self.modification_time,
        })
    }
}

/// What a create or update gave the resource besides the spec it was sent with: the proposer
/// already holds the spec, so it does not travel back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    pub version: Version,
    pub creation_time: DateTime<Utc>,
    pub modification_time: DateTime<Utc>,
}

impl Written {
    pub fn of(resource: &Resource) -> Written {
        Written {
            version: resource.version.clone(),
            creation_time: resource.creation_time,
            modification_time: resource.modification_time,
        }
    }

    /// The resource as written: `key` and `spec` as proposed, with what applying gave them.
    pub fn into_resource(self, key: ResourceKey, spec: Spec) -> Resource {
        Resource {
            key,
            spec,
            version: self.version,
            creation_time: self.creation_time,
            modification_time: self.modification_time,
        }
    }
}

/// How one write ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Written(Written),
    Deleted,
    Announced,
    Retired,
    /// The cluster's id (the one named first).
    Named(String),
    Failed(OpError),
}

/// A `StoreError` that can travel between peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OpError {
    NotFound { key: ResourceKey },
    AlreadyExists { key: ResourceKey },
    Conflict { key: ResourceKey, expected: Version, actual: Version },
    Invalid { reason: String },
    MeshNotFound { mesh: String },
    Other { reason: String },
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> OpError {
        match e {
            StoreError::NotFound { key } => OpError::NotFound { key },
            StoreError::AlreadyExists { key } => OpError::AlreadyExists { key },
            StoreError::Conflict { key, expected, actual } => {
                OpError::Conflict { key, expected, actual }
            }
            StoreError::Invalid { reason } => OpError::Invalid { reason },
            StoreError::MeshNotFound { mesh } => OpError::MeshNotFound { mesh },
            other => OpError::Other { reason: other.to_string() },
        }
    }
}

impl From<OpError> for StoreError {
    fn from(e: OpError) -> StoreError {
        match e {
            OpError::NotFound { key } => StoreError::NotFound { key },
            OpError::AlreadyExists { key } => StoreError::AlreadyExists { key },
            OpError::Conflict { key, expected, actual } => {
                StoreError::Conflict { key, expected, actual }
            }
            OpError::Invalid { reason } => StoreError::Invalid { reason },
            OpError::MeshNotFound { mesh } => StoreError::MeshNotFound { mesh },
            OpError::Other { reason } => StoreError::Internal { reason },
        }
    }
}

/// What applying one log entry gave: one outcome per op of its command.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub outcomes: Vec<Outcome>,
}

/// Peers announced so far, by id.
pub type Peers = BTreeMap<u64, PeerInfo>;
