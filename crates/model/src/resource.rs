//! A stored resource: its key, spec, version and timestamps, and its flat REST form.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::registry::ResourceType;
use crate::spec::Spec;

/// Identifies a resource: `(type, mesh, name)`; `mesh` is `None` for global types.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    pub resource_type: ResourceType,
    pub mesh: Option<String>,
    pub name: String,
}

impl ResourceKey {
    /// A key of `resource_type`; `mesh` is dropped for global types.
    pub fn new(resource_type: ResourceType, mesh: &str, name: &str) -> ResourceKey {
        let mesh = resource_type.is_mesh_scoped().then(|| mesh.to_string());
        ResourceKey { resource_type, mesh, name: name.to_string() }
    }

    /// The key of the Mesh named `name`.
    pub fn mesh(name: &str) -> ResourceKey {
        ResourceKey { resource_type: ResourceType::Mesh, mesh: None, name: name.to_string() }
    }

    /// The mesh this key belongs to: its own name for a Mesh.
    pub fn owning_mesh(&self) -> &str {
        self.mesh.as_deref().unwrap_or(&self.name)
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.mesh {
            Some(mesh) => write!(f, "{} {}/{}", self.resource_type, mesh, self.name),
            None => write!(f, "{} {}", self.resource_type, self.name),
        }
    }
}

/// An opaque version that changes on every write; updates compare-and-set on it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A resource as a store returns it.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub key: ResourceKey,
    pub spec: Spec,
    pub version: Version,
    pub creation_time: DateTime<Utc>,
    pub modification_time: DateTime<Utc>,
}

/// Formats a timestamp as Kuma's API does (RFC 3339, UTC, microseconds).
pub(crate) fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Resource {
    /// The flat REST object: `type`, `mesh`, `name`, the timestamps, then the spec's fields
    /// (a Secret without its bytes: what the API serves).
    pub fn to_rest_json(&self) -> Value {
        let times = (&self.creation_time, &self.modification_time);
        flat_object(&self.key, Some(times), &self.spec, true)
    }

    /// The REST object of a Secret or GlobalSecret with its bytes (`data`), for the one
    /// admin-only read that serves them (`?include=data`, for backups and moving between
    /// stores); `None` for any other type, whose REST form stays [`Resource::to_rest_json`].
    pub fn to_rest_json_with_secret_data(&self) -> Option<Value> {
        let secret = self.spec.as_secret()?;
        let mut object = self.to_rest_json();
        object.as_object_mut()?.insert("data".into(), secret.data.clone().into());
        Some(object)
    }
}

/// `type`, `mesh` (not for global types), `name`, the timestamps when known, then the spec;
/// with `redact`, without a Secret's bytes.
pub(crate) fn flat_object(
    key: &ResourceKey,
    times: Option<(&DateTime<Utc>, &DateTime<Utc>)>,
    spec: &Spec,
    redact: bool,
) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), key.resource_type.name().into());
    if let Some(mesh) = &key.mesh {
        object.insert("mesh".into(), mesh.clone().into());
    }
    object.insert("name".into(), key.name.clone().into());
    if let Some((created, modified)) = times {
        object.insert("creationTime".into(), format_time(created).into());
        object.insert("modificationTime".into(), format_time(modified).into());
    }
    if let Value::Object(mut fields) = spec.to_json() {
        if redact && matches!(spec, Spec::Secret(_) | Spec::GlobalSecret(_)) {
            // Secret bytes (CA private keys) never leave through the REST form.
            fields.remove("data");
        }
        if redact && matches!(spec, Spec::Mesh(_)) {
            redact_inline_ca_keys(&mut fields);
        }
        object.extend(fields);
    }
    Value::Object(object)
}

/// Removes the inline private keys of provided CAs (`mtls.backends[].conf.key.inline`): keys are
/// written, never shown. A key given by `file` or `secret` only names where it is.
fn redact_inline_ca_keys(fields: &mut Map<String, Value>) {
    let backends =
        fields.get_mut("mtls").and_then(|m| m.get_mut("backends")).and_then(Value::as_array_mut);
    for backend in backends.into_iter().flatten() {
        if let Some(key) = backend.pointer_mut("/conf/key").and_then(Value::as_object_mut) {
            key.remove("inline");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rest_form_of_a_mesh_never_shows_an_inline_ca_key() {
        let spec: crate::MeshSpec = serde_yaml::from_str(
            "mtls:\n  enabledBackend: ca\n  backends:\n  - name: ca\n    type: provided\n    conf:\n      cert:\n        inline: CERT\n      key:\n        inline: KEY\n",
        )
        .unwrap();
        let t = chrono::Utc::now();
        let resource = Resource {
            key: ResourceKey::mesh("m"),
            spec: Spec::Mesh(spec),
            version: Version("1".into()),
            creation_time: t,
            modification_time: t,
        };
        let rest = resource.to_rest_json().to_string();
        assert!(rest.contains("CERT") && !rest.contains("KEY"), "{rest}");
        // What is stored keeps it.
        assert!(resource.spec.to_json().to_string().contains("KEY"));
        assert_eq!(resource.to_rest_json_with_secret_data(), None, "not a secret");
    }

    #[test]
    fn only_the_rest_form_with_secret_data_shows_a_secrets_bytes() {
        let t = chrono::Utc::now();
        let secret = crate::SecretSpec::from_bytes(b"KEY");
        for (key, spec) in [
            (ResourceKey::new(ResourceType::Secret, "m", "s"), Spec::Secret(secret.clone())),
            (
                ResourceKey::new(ResourceType::GlobalSecret, "", "g"),
                Spec::GlobalSecret(crate::GlobalSecretSpec(secret.clone())),
            ),
        ] {
            let resource = Resource {
                key,
                spec,
                version: Version("1".into()),
                creation_time: t,
                modification_time: t,
            };
            assert!(resource.to_rest_json().get("data").is_none());
            let mut with_data = resource.to_rest_json_with_secret_data().unwrap();
            assert_eq!(with_data["data"], secret.data);
            with_data.as_object_mut().unwrap().remove("data");
            assert_eq!(with_data, resource.to_rest_json(), "otherwise the same object");
        }
    }
}
