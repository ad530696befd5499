//! Kuma resources as Kubernetes objects, both ways: Kuma's CRDs (`kuma.io/v1alpha1`, `mesh` at
//! the top level beside `spec`) and, for Secrets, Kubernetes Secrets of Kuma's types in the
//! system namespace (`data.value`, the mesh as a label).
//!
//! Names: Mesh and the policies are cluster-scoped, so a Kuma name is the object's name.
//! Dataplanes and their insights are namespaced: the Kuma name `<name>.<namespace>` is object
//! `<name>` in `<namespace>`, and a name without a dot is an object in the system namespace.

use chrono::{DateTime, Utc};
use kube::api::{ApiResource, DynamicObject};
use kuma_model::{Resource, ResourceKey, ResourceType, Spec, Version};
use serde_json::{json, Map, Value};

use crate::annotations::MESH;

pub const GROUP: &str = "kuma.io";
pub const API_VERSION: &str = "kuma.io/v1alpha1";
/// The Kubernetes Secret type of a mesh's Secret.
pub const SECRET_TYPE: &str = "system.kuma.io/secret";
/// The Kubernetes Secret type of a control-plane-wide GlobalSecret.
pub const GLOBAL_SECRET_TYPE: &str = "system.kuma.io/global-secret";
/// The key of a Kuma Secret's bytes in the Kubernetes Secret's `data`.
const SECRET_VALUE: &str = "value";

/// The Kubernetes API resource a type is kept as.
pub fn api_resource(t: ResourceType) -> ApiResource {
    match &t.descriptor().kubernetes {
        Some(kind) => ApiResource {
            group: GROUP.into(),
            version: "v1alpha1".into(),
            api_version: API_VERSION.into(),
            kind: t.name().into(),
            plural: kind.plural.into(),
        },
        None => ApiResource {
            group: String::new(),
            version: "v1".into(),
            api_version: "v1".into(),
            kind: "Secret".into(),
            plural: "secrets".into(),
        },
    }
}

/// The Kubernetes Secret type of a type kept as Secrets; `None` for CRD types.
pub fn secret_type(t: ResourceType) -> Option<&'static str> {
    match t {
        ResourceType::Secret => Some(SECRET_TYPE),
        ResourceType::GlobalSecret => Some(GLOBAL_SECRET_TYPE),
        _ => None,
    }
}

fn namespaced_crd(t: ResourceType) -> bool {
    t.descriptor().kubernetes.as_ref().is_some_and(|k| k.namespaced)
}

/// Where one object lives: its type, namespace (`None` when cluster-scoped) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub resource_type: ResourceType,
    pub namespace: Option<String>,
    pub name: String,
}

/// The object a Kuma key is kept as.
pub fn object_ref(key: &ResourceKey, system_namespace: &str) -> ObjectRef {
    let t = key.resource_type;
    let (namespace, name) = if namespaced_crd(t) {
        match key.name.rsplit_once('.') {
            Some((name, namespace)) if !name.is_empty() && !namespace.is_empty() => {
                (Some(namespace.to_string()), name.to_string())
            }
            _ => (Some(system_namespace.to_string()), key.name.clone()),
        }
    } else if t.descriptor().kubernetes.is_some() {
        (None, key.name.clone())
    } else {
        (Some(system_namespace.to_string()), key.name.clone())
    };
    ObjectRef { resource_type: t, namespace, name }
}

/// The Kuma name of a namespaced object (`<name>.<namespace>`, or `<name>` in the system
/// namespace) or of a cluster-scoped one (its name).
fn kuma_name(t: ResourceType, name: &str, namespace: Option<&str>, system: &str) -> String {
    match namespace {
        Some(ns) if namespaced_crd(t) && ns != system => format!("{name}.{ns}"),
        _ => name.to_string(),
    }
}

/// The object to create for `key` with `spec`, as JSON.
pub fn to_object(key: &ResourceKey, spec: &Spec, system_namespace: &str) -> Value {
    let place = object_ref(key, system_namespace);
    let api = api_resource(key.resource_type);
    let mut metadata = Map::new();
    metadata.insert("name".into(), place.name.into());
    if let Some(namespace) = place.namespace {
        metadata.insert("namespace".into(), namespace.into());
    }
    if let Some(mesh) = &key.mesh {
        metadata.insert("labels".into(), json!({ MESH: mesh }));
    }
    let mut object = Map::new();
    object.insert("apiVersion".into(), api.api_version.into());
    object.insert("kind".into(), api.kind.into());
    object.insert("metadata".into(), Value::Object(metadata));
    match secret_type(key.resource_type) {
        Some(secret_type) => {
            object.insert("type".into(), secret_type.into());
            object.insert("data".into(), secret_data(spec));
        }
        None => {
            if let Some(mesh) = &key.mesh {
                object.insert("mesh".into(), mesh.clone().into());
            }
            object.insert("spec".into(), spec.to_json());
        }
    }
    Value::Object(object)
}

/// A Secret's `data`: its base64 bytes under `value`, as Kubernetes keeps them.
fn secret_data(spec: &Spec) -> Value {
    let data = spec.as_secret().map(|s| s.data.trim().to_string()).unwrap_or_default();
    json!({ SECRET_VALUE: data })
}

/// JSON-patch operations that give an object `spec` (its `spec`, or a Secret's `data`).
pub fn spec_patch(t: ResourceType, spec: &Spec) -> Value {
    match secret_type(t) {
        Some(_) => json!({ "op": "add", "path": "/data", "value": secret_data(spec) }),
        None => json!({ "op": "add", "path": "/spec", "value": spec.to_json() }),
    }
}

fn to_chrono(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.0.as_second(), t.0.subsec_nanosecond().max(0) as u32)
}

/// Why an object could not be read as a Kuma resource.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ObjectError {
    /// A Secret of another type: not Kuma's, silently skipped.
    #[error("not a Kuma object")]
    NotKuma,
    #[error("{object}: {reason}")]
    Invalid { object: String, reason: String },
}

/// The Kuma resource an object holds.
///
/// Kubernetes keeps a creation time but no modification time: an object changed since its
/// creation (`generation` above 1) was last modified at the newest time among its
/// `managedFields`, which the apiserver stamps on every write.
pub fn from_object(
    t: ResourceType,
    object: &DynamicObject,
    system_namespace: &str,
) -> Result<Resource, ObjectError> {
    let meta = &object.metadata;
    let name = meta.name.clone().unwrap_or_default();
    let namespace = meta.namespace.as_deref();
    let display = match namespace {
        Some(ns) => format!("{} {ns}/{name}", t.name()),
        None => format!("{} {name}", t.name()),
    };
    let invalid = |reason: String| ObjectError::Invalid { object: display.clone(), reason };
    let data = &object.data;
    let (mesh, spec_json) = match secret_type(t) {
        Some(wanted) => {
            if data.get("type").and_then(Value::as_str) != Some(wanted) {
                return Err(ObjectError::NotKuma);
            }
            let label = meta.labels.as_ref().and_then(|l| l.get(MESH)).cloned();
            let value = data.pointer("/data/value").cloned().unwrap_or_else(|| json!(""));
            (label, json!({ "data": value }))
        }
        None => {
            let mesh = data.get("mesh").and_then(Value::as_str).map(str::to_string);
            (mesh, data.get("spec").cloned().unwrap_or_else(|| json!({})))
        }
    };
    let mesh = mesh.filter(|m| !m.is_empty()).unwrap_or_else(|| "default".to_string());
    let spec = Spec::from_json(t, spec_json).map_err(|e| invalid(format!("spec: {e}")))?;
    let key = ResourceKey::new(t, &mesh, &kuma_name(t, &name, namespace, system_namespace));
    let version =
        meta.resource_version.clone().ok_or_else(|| invalid("no resourceVersion".into()))?;
    let creation_time = meta
        .creation_timestamp
        .as_ref()
        .and_then(to_chrono)
        .ok_or_else(|| invalid("no creationTimestamp".into()))?;
    let modified = meta
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|f| f.time.as_ref().and_then(to_chrono))
        .max();
    let modification_time = match (meta.generation.unwrap_or(1), modified) {
        (generation, Some(modified)) if generation > 1 => modified.max(creation_time),
        _ => creation_time,
    };
    Ok(Resource { key, spec, version: Version(version), creation_time, modification_time })
}

/// The object's resourceVersion as a number (etcd's revision), when it is one.
pub fn resource_version(object: &DynamicObject) -> Option<u64> {
    object.metadata.resource_version.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(value: Value) -> DynamicObject {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_namespaced_name_is_name_dot_namespace_and_a_plain_one_lives_in_the_system_namespace() {
        let dp = ResourceKey::new(ResourceType::Dataplane, "default", "web-1.demo");
        let at = object_ref(&dp, "kuma-system");
        assert_eq!((at.namespace.as_deref(), at.name.as_str()), (Some("demo"), "web-1"));
        let plain = ResourceKey::new(ResourceType::Dataplane, "default", "web-1");
        assert_eq!(object_ref(&plain, "kuma-system").namespace.as_deref(), Some("kuma-system"));
        let policy = ResourceKey::new(ResourceType::TrafficRoute, "default", "route.v1");
        let at = object_ref(&policy, "kuma-system");
        assert_eq!((at.namespace, at.name.as_str()), (None, "route.v1"));
        let secret = ResourceKey::new(ResourceType::Secret, "default", "default.ca-builtin-ca-1");
        let at = object_ref(&secret, "kuma-system");
        assert_eq!(
            (at.namespace.as_deref(), at.name.as_str()),
            (Some("kuma-system"), "default.ca-builtin-ca-1")
        );
    }

    #[test]
    fn an_object_round_trips_with_mesh_beside_spec() {
        let key = ResourceKey::new(ResourceType::Dataplane, "m1", "web-1.demo");
        let spec = Spec::from_json(
            ResourceType::Dataplane,
            json!({"networking": {"address": "10.0.0.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "web"}}]}}),
        )
        .unwrap();
        let mut value = to_object(&key, &spec, "kuma-system");
        assert_eq!(value["mesh"], "m1");
        assert_eq!(value["metadata"]["namespace"], "demo");
        assert_eq!(value["metadata"]["labels"][MESH], "m1");
        value["metadata"]["resourceVersion"] = json!("42");
        value["metadata"]["creationTimestamp"] = json!("2026-12-02T10:00:00Z");
        let back = from_object(ResourceType::Dataplane, &object(value), "kuma-system").unwrap();
        assert_eq!((back.key, back.spec, back.version.0.as_str()), (key, spec, "42"));
        assert_eq!(back.creation_time, back.modification_time);
    }

    #[test]
    fn secrets_keep_their_bytes_under_value_and_foreign_secrets_are_skipped() {
        let key = ResourceKey::new(ResourceType::Secret, "m1", "m1.ca-builtin-ca-1");
        let spec = Spec::Secret(kuma_model::SecretSpec::from_bytes(b"pem"));
        let mut value = to_object(&key, &spec, "kuma-system");
        assert_eq!(value["type"], SECRET_TYPE);
        value["metadata"]["resourceVersion"] = json!("7");
        value["metadata"]["creationTimestamp"] = json!("2026-12-02T10:00:00Z");
        let back =
            from_object(ResourceType::Secret, &object(value.clone()), "kuma-system").unwrap();
        assert_eq!((back.key, back.spec), (key, spec));
        value["type"] = json!("Opaque");
        assert_eq!(
            from_object(ResourceType::Secret, &object(value), "kuma-system"),
            Err(ObjectError::NotKuma)
        );
    }

    #[test]
    fn an_invalid_spec_names_the_object_and_the_field() {
        let value = json!({
            "apiVersion": API_VERSION, "kind": "TrafficRoute",
            "metadata": {"name": "r", "resourceVersion": "1", "creationTimestamp": "2026-12-02T10:00:00Z"},
            "mesh": "default", "spec": {"sources": "not a list"}
        });
        let err =
            from_object(ResourceType::TrafficRoute, &object(value), "kuma-system").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("TrafficRoute r") && text.contains("sources"), "{text}");
    }
}
