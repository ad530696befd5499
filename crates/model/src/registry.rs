//! The one type registry: every resource type with its REST path, kumactl names and scope.
//! API routes, kumactl `get`/`delete` arguments and (later) the Kubernetes CRD list all read it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Whether a type lives inside a mesh or is global.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Global: `Mesh` itself and the control plane's own secrets (`GlobalSecret`).
    Global,
    /// Lives in a mesh; its key includes the mesh name.
    Mesh,
}

/// Every resource type this control plane knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Mesh,
    Dataplane,
    DataplaneInsight,
    TrafficPermission,
    TrafficRoute,
    HealthCheck,
    TrafficTrace,
    TrafficLog,
    ProxyTemplate,
    Secret,
    GlobalSecret,
}

/// What the registry records about one type.
#[derive(Debug, PartialEq, Eq)]
pub struct TypeDescriptor {
    pub resource_type: ResourceType,
    /// The `type` field of the REST object, e.g. `TrafficPermission`.
    pub name: &'static str,
    pub scope: Scope,
    /// The REST collection segment, e.g. `traffic-permissions` in `/meshes/{mesh}/traffic-permissions`.
    pub path: &'static str,
    /// The singular kumactl argument, e.g. `traffic-permission`.
    pub singular: &'static str,
    /// Further names kumactl accepts (Kuma 0.5 spellings such as `healthchecks`).
    pub aliases: &'static [&'static str],
    /// Policies are listed per mesh by `kumactl inspect meshes`.
    pub is_policy: bool,
    /// Column title used by `kumactl inspect meshes`.
    pub title: &'static str,
    /// On Kubernetes: the CRD's plural and whether its objects live in a namespace; `None` for
    /// types kept as Kubernetes Secrets.
    pub kubernetes: Option<KubernetesKind>,
}

/// How a type is stored on Kubernetes, as Kuma's CRDs do it (group `kuma.io`, version
/// `v1alpha1`).
#[derive(Debug, PartialEq, Eq)]
pub struct KubernetesKind {
    /// The CRD's plural, e.g. `trafficpermissions`.
    pub plural: &'static str,
    /// Dataplanes and their insights live in the namespace of their Pod; Meshes and the
    /// policies are cluster-scoped.
    pub namespaced: bool,
}

const fn cluster(plural: &'static str) -> Option<KubernetesKind> {
    Some(KubernetesKind { plural, namespaced: false })
}

const fn namespaced(plural: &'static str) -> Option<KubernetesKind> {
    Some(KubernetesKind { plural, namespaced: true })
}

/// In Kuma 1.0's order, which `kumactl inspect meshes` shows its policy columns in.
const REGISTRY: &[TypeDescriptor] = &[
    TypeDescriptor {
        resource_type: ResourceType::Mesh,
        name: "Mesh",
        scope: Scope::Global,
        path: "meshes",
        singular: "mesh",
        aliases: &[],
        is_policy: false,
        kubernetes: cluster("meshes"),
        title: "MESHES",
    },
    TypeDescriptor {
        resource_type: ResourceType::Dataplane,
        name: "Dataplane",
        scope: Scope::Mesh,
        path: "dataplanes",
        singular: "dataplane",
        aliases: &[],
        is_policy: false,
        kubernetes: namespaced("dataplanes"),
        title: "DATAPLANES",
    },
    TypeDescriptor {
        resource_type: ResourceType::DataplaneInsight,
        name: "DataplaneInsight",
        scope: Scope::Mesh,
        path: "dataplane-insights",
        singular: "dataplane-insight",
        aliases: &["dataplaneinsights", "dataplaneinsight"],
        is_policy: false,
        kubernetes: namespaced("dataplaneinsights"),
        title: "DATAPLANE INSIGHTS",
    },
    TypeDescriptor {
        resource_type: ResourceType::TrafficPermission,
        name: "TrafficPermission",
        scope: Scope::Mesh,
        path: "traffic-permissions",
        singular: "traffic-permission",
        aliases: &["trafficpermissions", "trafficpermission"],
        is_policy: true,
        kubernetes: cluster("trafficpermissions"),
        title: "TRAFFIC PERMISSIONS",
    },
    TypeDescriptor {
        resource_type: ResourceType::TrafficRoute,
        name: "TrafficRoute",
        scope: Scope::Mesh,
        path: "traffic-routes",
        singular: "traffic-route",
        aliases: &["trafficroutes", "trafficroute"],
        is_policy: true,
        kubernetes: cluster("trafficroutes"),
        title: "TRAFFIC ROUTES",
    },
    TypeDescriptor {
        resource_type: ResourceType::HealthCheck,
        name: "HealthCheck",
        scope: Scope::Mesh,
        path: "health-checks",
        singular: "healthcheck",
        aliases: &["healthchecks", "health-check"],
        is_policy: true,
        kubernetes: cluster("healthchecks"),
        title: "HEALTH CHECKS",
    },
    TypeDescriptor {
        resource_type: ResourceType::TrafficTrace,
        name: "TrafficTrace",
        scope: Scope::Mesh,
        path: "traffic-traces",
        singular: "traffic-trace",
        aliases: &["traffictraces", "traffictrace"],
        is_policy: true,
        kubernetes: cluster("traffictraces"),
        title: "TRAFFIC TRACES",
    },
    TypeDescriptor {
        resource_type: ResourceType::TrafficLog,
        name: "TrafficLog",
        scope: Scope::Mesh,
        path: "traffic-logs",
        singular: "traffic-log",
        aliases: &["trafficlogs", "trafficlog"],
        is_policy: true,
        kubernetes: cluster("trafficlogs"),
        title: "TRAFFIC LOGS",
    },
    TypeDescriptor {
        resource_type: ResourceType::ProxyTemplate,
        name: "ProxyTemplate",
        scope: Scope::Mesh,
        path: "proxytemplates",
        singular: "proxytemplate",
        aliases: &["proxy-templates", "proxy-template"],
        is_policy: true,
        kubernetes: cluster("proxytemplates"),
        title: "PROXY TEMPLATES",
    },
    TypeDescriptor {
        resource_type: ResourceType::Secret,
        name: "Secret",
        scope: Scope::Mesh,
        path: "secrets",
        singular: "secret",
        aliases: &[],
        is_policy: false,
        kubernetes: None,
        title: "SECRETS",
    },
    TypeDescriptor {
        resource_type: ResourceType::GlobalSecret,
        name: "GlobalSecret",
        scope: Scope::Global,
        path: "global-secrets",
        singular: "global-secret",
        aliases: &["globalsecrets", "globalsecret"],
        is_policy: false,
        kubernetes: None,
        title: "GLOBAL SECRETS",
    },
];

impl ResourceType {
    /// Every type, in registry order.
    pub fn all() -> impl Iterator<Item = ResourceType> {
        REGISTRY.iter().map(|d| d.resource_type)
    }

    /// Every descriptor, in registry order.
    pub fn descriptors() -> &'static [TypeDescriptor] {
        REGISTRY
    }

    /// This type's descriptor.
    pub fn descriptor(self) -> &'static TypeDescriptor {
        REGISTRY
            .iter()
            .find(|d| d.resource_type == self)
            .expect("every ResourceType has a registry entry")
    }

    /// The REST `type` name, e.g. `Dataplane`.
    pub fn name(self) -> &'static str {
        self.descriptor().name
    }

    pub fn scope(self) -> Scope {
        self.descriptor().scope
    }

    pub fn is_mesh_scoped(self) -> bool {
        self.scope() == Scope::Mesh
    }

    /// Finds a type by its REST `type` name (`TrafficRoute`).
    pub fn from_name(name: &str) -> Option<ResourceType> {
        REGISTRY.iter().find(|d| d.name == name).map(|d| d.resource_type)
    }

    /// Finds a type by its REST collection segment (`traffic-routes`).
    pub fn from_path(path: &str) -> Option<ResourceType> {
        REGISTRY.iter().find(|d| d.path == path).map(|d| d.resource_type)
    }

    /// Finds a type by any name kumactl accepts: plural path, singular, or an alias.
    pub fn from_cli_name(arg: &str) -> Option<ResourceType> {
        let arg = arg.to_ascii_lowercase();
        REGISTRY
            .iter()
            .find(|d| d.path == arg || d.singular == arg || d.aliases.contains(&arg.as_str()))
            .map(|d| d.resource_type)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_found_by_each_of_its_names() {
        for d in ResourceType::descriptors() {
            assert_eq!(ResourceType::from_name(d.name), Some(d.resource_type));
            assert_eq!(ResourceType::from_path(d.path), Some(d.resource_type));
            assert_eq!(ResourceType::from_cli_name(d.singular), Some(d.resource_type));
            for alias in d.aliases {
                assert_eq!(ResourceType::from_cli_name(alias), Some(d.resource_type));
            }
        }
    }

    #[test]
    fn names_paths_and_cli_arguments_are_unique() {
        let mut cli_names = std::collections::HashSet::new();
        let mut type_names = std::collections::HashSet::new();
        for d in ResourceType::descriptors() {
            assert!(type_names.insert(d.name), "{} is used twice", d.name);
            for n in [d.path, d.singular].iter().chain(d.aliases) {
                assert!(cli_names.insert(*n), "{n} is used twice");
            }
        }
    }

    #[test]
    fn only_meshes_and_global_secrets_are_global() {
        for t in ResourceType::all() {
            assert_eq!(
                t.scope() == Scope::Global,
                matches!(t, ResourceType::Mesh | ResourceType::GlobalSecret)
            );
        }
    }
}
