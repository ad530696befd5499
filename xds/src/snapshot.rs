//! A dataplane's complete Envoy config, with content-derived versions: two peers that generate
//! the same config give it the same version, so a reconnecting Envoy gets nothing new to apply.

use std::collections::BTreeMap;
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use crate::xds_type::XdsType;

/// One resource, its encoding and the hash of that encoding.
#[derive(Clone, Debug, PartialEq)]
pub struct VersionedResource {
    pub resource: Any,
    pub version: String,
}

/// The resources of one type, by name, with the version of the whole set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeSnapshot {
    pub version: String,
    pub resources: BTreeMap<String, VersionedResource>,
}

/// Every type of one dataplane's config.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    types: [TypeSnapshot; 5],
}

/// Resources as generators produce them, before versioning.
#[derive(Clone, Debug, Default)]
pub struct ResourceSet {
    types: [BTreeMap<String, Any>; 5],
}

impl ResourceSet {
    /// Adds a resource; a second resource of the same type and name replaces the first, so a
    /// response never names one twice.
    pub fn add(&mut self, kind: XdsType, name: impl Into<String>, resource: Any) {
        self.types[kind.index()].insert(name.into(), resource);
    }

    pub fn get(&self, kind: XdsType) -> &BTreeMap<String, Any> {
        &self.types[kind.index()]
    }

    pub fn get_mut(&mut self, kind: XdsType) -> &mut BTreeMap<String, Any> {
        &mut self.types[kind.index()]
    }

    pub fn into_snapshot(self) -> Arc<Snapshot> {
        let types = self.types.map(|resources| {
            let mut whole = Fnv::new();
            let resources: BTreeMap<String, VersionedResource> = resources
                .into_iter()
                .map(|(name, resource)| {
                    let mut one = Fnv::new();
                    one.write(resource.type_url.as_bytes());
                    one.write(&resource.value);
                    let version = one.finish_hex();
                    whole.write(name.as_bytes());
                    whole.write(&[0]);
                    whole.write(version.as_bytes());
                    (name, VersionedResource { resource, version })
                })
                .collect();
            TypeSnapshot { version: whole.finish_hex(), resources }
        });
        Arc::new(Snapshot { types })
    }
}

impl Snapshot {
    pub fn get(&self, kind: XdsType) -> &TypeSnapshot {
        &self.types[kind.index()]
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

    /// Approximate bytes held by this snapshot (encoded resources and names).
    pub fn size_bytes(&self) -> usize {
        self.types
            .iter()
            .flat_map(|t| t.resources.iter())
            .map(|(name, r)| name.len() + r.resource.value.len() + r.resource.type_url.len() + 16)
            .sum()
    }
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
