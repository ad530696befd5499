//! Kuma's CustomResourceDefinitions, one per type the registry stores as a Kubernetes object:
//! group `kuma.io`, version `v1alpha1`, category `kuma`, and Kuma's object shape, `mesh` at the top
//! level beside a free-form `spec`. `kumactl install crds` prints them.

use serde_json::{json, Value};

use crate::registry::ResourceType;

/// The API group of every Kuma CRD.
pub const KUMA_GROUP: &str = "kuma.io";
/// The version of every Kuma CRD.
pub const KUMA_VERSION: &str = "v1alpha1";

/// The CRD of `resource_type`, or `None` for the types kept as Kubernetes Secrets.
pub fn crd(resource_type: ResourceType) -> Option<Value> {
    let d = resource_type.descriptor();
    let kind = d.kubernetes.as_ref()?;
    let singular = d.name.to_ascii_lowercase();
    Some(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{}.{KUMA_GROUP}", kind.plural)},
        "spec": {
            "group": KUMA_GROUP,
            "names": {
                "kind": d.name,
                "listKind": format!("{}List", d.name),
                "plural": kind.plural,
                "singular": singular,
                "categories": ["kuma"],
            },
            "scope": if kind.namespaced { "Namespaced" } else { "Cluster" },
            "versions": [{
                "name": KUMA_VERSION,
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "mesh": {"type": "string"},
                        "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    },
                }},
            }],
        },
    }))
}

/// Every Kuma CRD, in registry order.
pub fn crds() -> Vec<Value> {
    ResourceType::all().filter_map(crd).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meshes_and_policies_are_cluster_scoped_and_dataplanes_namespaced() {
        let scope =
            |t: ResourceType| crd(t).unwrap()["spec"]["scope"].as_str().unwrap().to_string();
        assert_eq!(scope(ResourceType::Mesh), "Cluster");
        assert_eq!(scope(ResourceType::TrafficPermission), "Cluster");
        assert_eq!(scope(ResourceType::Dataplane), "Namespaced");
        assert_eq!(scope(ResourceType::DataplaneInsight), "Namespaced");
        assert!(crd(ResourceType::Secret).is_none(), "secrets are Kubernetes Secrets");
        let mesh = crd(ResourceType::Mesh).unwrap();
        assert_eq!(mesh["metadata"]["name"], "meshes.kuma.io");
        assert_eq!(mesh["spec"]["names"]["kind"], "Mesh");
    }

    #[test]
    fn every_crd_has_the_top_level_mesh_and_a_free_form_spec() {
        let all = crds();
        assert_eq!(all.len(), 9);
        for crd in all {
            let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
            assert_eq!(schema["mesh"]["type"], "string");
            assert_eq!(schema["spec"]["x-kubernetes-preserve-unknown-fields"], true);
        }
    }
}
