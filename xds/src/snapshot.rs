//! A dataplane's complete Envoy config, with content-derived versions: two peers that generate
//! the same config give it the same version, so a reconnecting Envoy gets nothing new to apply.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use envoy_types::pb::google::protobuf::Any;
use kuma_model::ResourceType;

use crate::xds_type::XdsType;

/// One resource, its encoding and the hash of that encoding. Held behind an `Arc`, so a resource
/// many dataplanes share (a service's endpoint assignment) is encoded, hashed and stored once.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    pub resource: Any,
    pub version: String,
}

impl VersionedResource {
    /// Versions `resource` by the hash of its type and bytes.
    pub fn new(resource: Any) -> VersionedResource {
        let mut hash = Fnv::new();
        hash.write(resource.type_url.as_bytes());
        hash.write(&resource.value);
        VersionedResource { version: hash.finish_hex(), resource }
    }
}

/// The resources of one type, by name, with the version of the whole set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeSnapshot {
    pub version: String,
    pub resources: BTreeMap<String, Arc<VersionedResource>>,
}

/// Every type of one dataplane's config.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    types: [TypeSnapshot; 5],
    /// When this peer saw the store change the config was made for (`None`: made for a
    /// connecting dataplane, a listing or a certificate rotation): the start of its delivery time.
    changed_at: Option<Instant>,
}

/// Two snapshots are equal when they hold the same config, whenever it was made.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.types == other.types
    }
}

/// What a generated config was made from, beyond the dataplane itself and the mesh's settings:
/// the services whose instances it reached and the policies chosen for it. A change elsewhere
/// cannot change the config, so it is not generated again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Services whose endpoints the config holds (sorted, no duplicates).
    pub services: Vec<String>,
    /// Of those, the services it holds only some instances of (a TrafficRoute's destination
    /// tags): their assignment is the config's own, not the service's shared one.
    pub subsets: Vec<String>,
    /// The policies chosen for the dataplane, as (type, name), sorted.
    pub policies: Vec<(ResourceType, String)>,
}

/// Resources as generators produce them, and what they were made from.
#[derive(Clone, Debug, Default)]
pub struct ResourceSet {
    types: [BTreeMap<String, Arc<VersionedResource>>; 5],
    services: BTreeSet<String>,
    subsets: BTreeSet<String>,
    policies: Vec<(ResourceType, String)>,
}

impl ResourceSet {
    /// Adds a resource; a second resource of the same type and name replaces the first, so a
    /// response never names one twice.
    pub fn add(&mut self, kind: XdsType, name: impl Into<String>, resource: Any) {
        self.add_shared(kind, name, Arc::new(VersionedResource::new(resource)));
    }

    /// Adds a resource encoded once for many dataplanes.
    pub fn add_shared(
        &mut self,
        kind: XdsType,
        name: impl Into<String>,
        resource: Arc<VersionedResource>,
    ) {
        self.types[kind.index()].insert(name.into(), resource);
    }

    /// The resources of `kind`, by name.
    pub fn get(&self, kind: XdsType) -> impl Iterator<Item = (&String, &Any)> {
        self.types[kind.index()].iter().map(|(name, r)| (name, &r.resource))
    }

    /// Rewrites every resource of `kind` in place (each gets the version of its new bytes).
    pub fn modify(&mut self, kind: XdsType, mut change: impl FnMut(&mut Any)) {
        for resource in self.types[kind.index()].values_mut() {
            let mut any = resource.resource.clone();
            change(&mut any);
            *resource = Arc::new(VersionedResource::new(any));
        }
    }

    /// Notes that the config holds `service`'s endpoints.
    pub fn reaches(&mut self, service: &str) {
        if !self.services.contains(service) {
            self.services.insert(service.to_string());
        }
    }

    /// Notes that the config holds some of `service`'s instances in an assignment of its own.
    pub fn reaches_subset(&mut self, service: &str) {
        self.reaches(service);
        if !self.subsets.contains(service) {
            self.subsets.insert(service.to_string());
        }
    }

    /// Notes the policies chosen for the dataplane.
    pub fn chosen(&mut self, mut policies: Vec<(ResourceType, String)>) {
        policies.sort();
        policies.dedup();
        self.policies = policies;
    }

    /// What the config was made from.
    pub fn inputs(&self) -> Inputs {
        Inputs {
            services: self.services.iter().cloned().collect(),
            subsets: self.subsets.iter().cloned().collect(),
            policies: self.policies.clone(),
        }
    }

    pub fn into_snapshot(self) -> Arc<Snapshot> {
        let types =
            self.types.map(|resources| TypeSnapshot { version: version_of(&resources), resources });
        Arc::new(Snapshot { types, changed_at: None })
    }
}

impl Snapshot {
    /// When this peer saw the store change the config was made for, if it was made for one.
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// `snapshot`, marked as made for the store change seen at `changed_at`.
    pub(crate) fn made_for(
        mut snapshot: Arc<Snapshot>,
        changed_at: Option<Instant>,
    ) -> Arc<Snapshot> {
        match Arc::get_mut(&mut snapshot) {
            Some(fresh) => fresh.changed_at = changed_at,
            None => {
                snapshot = Arc::new(Snapshot { changed_at, ..(*snapshot).clone() });
            }
        }
        snapshot
    }

    pub fn get(&self, kind: XdsType) -> &TypeSnapshot {
        &self.types[kind.index()]
    }

    /// The same config with the resources of `kind` named in `replacements` replaced (those it
    /// does not hold are left out): what generating it again would give when nothing else
    /// changed.
    pub fn with_replaced(
        &self,
        kind: XdsType,
        replacements: impl IntoIterator<Item = (String, Arc<VersionedResource>)>,
    ) -> Arc<Snapshot> {
        let mut types = self.types.clone();
        let set = &mut types[kind.index()];
        for (name, resource) in replacements {
            if let Some(current) = set.resources.get_mut(&name) {
                *current = resource;
            }
        }
        set.version = version_of(&set.resources);
        Arc::new(Snapshot { types, changed_at: None })
    }

    /// The versions of every type, e.g. for logs: `cds=… eds=…`.
    pub fn versions(&self) -> String {
        XdsType::ALL
            .iter()
            .map(|t| format!("{}={}", t.short_name(), self.get(*t).version))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether `other` holds the same config: versions are content hashes, so comparing them
    /// stands for comparing every resource's bytes.
    pub fn same_content(&self, other: &Snapshot) -> bool {
        XdsType::ALL.iter().all(|t| self.get(*t).version == other.get(*t).version)
    }
}

/// The version of a whole set: the hash of every name and resource version.
fn version_of(resources: &BTreeMap<String, Arc<VersionedResource>>) -> String {
    let mut whole = Fnv::new();
    for (name, resource) in resources {
        whole.write(name.as_bytes());
        whole.write(&[0]);
        whole.write(resource.version.as_bytes());
    }
    whole.finish_hex()
}

/// 64-bit FNV-1a: stable across processes, builds and Rust versions, unlike `DefaultHasher`.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish_hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(value: &[u8]) -> Any {
        Any { type_url: "t".into(), value: value.to_vec() }
    }

    #[test]
    fn equal_content_gives_equal_versions_and_any_change_a_new_one() {
        let build = |v: &[u8]| {
            let mut set = ResourceSet::default();
            set.add(XdsType::Cluster, "a", any(b"1"));
            set.add(XdsType::Cluster, "b", any(v));
            set.into_snapshot()
        };
        let (one, two, other) = (build(b"2"), build(b"2"), build(b"3"));
        assert_eq!(one.get(XdsType::Cluster).version, two.get(XdsType::Cluster).version);
        assert_ne!(one.get(XdsType::Cluster).version, other.get(XdsType::Cluster).version);
        let (a1, a3) = (
            &one.get(XdsType::Cluster).resources["a"].version,
            &other.get(XdsType::Cluster).resources["a"].version,
        );
        assert_eq!(a1, a3, "an unchanged resource keeps its version");
        assert_eq!(one.get(XdsType::Listener).version, other.get(XdsType::Listener).version);
    }

    #[test]
    fn renaming_a_resource_changes_the_type_version() {
        let mut a = ResourceSet::default();
        a.add(XdsType::Cluster, "a", any(b"1"));
        let mut b = ResourceSet::default();
        b.add(XdsType::Cluster, "b", any(b"1"));
        assert_ne!(
            a.into_snapshot().get(XdsType::Cluster).version,
            b.into_snapshot().get(XdsType::Cluster).version
        );
    }
}
