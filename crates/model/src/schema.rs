//! JSON Schemas of every resource type, generated from the same Rust types the API parses with;
//! the API server assembles its OpenAPI document from them.

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{json, Map, Value};

use crate::registry::ResourceType;
use crate::spec::Spec;

/// The schema of each type's flat REST object (the spec's fields plus `type`, `mesh`, `name` and
/// the read-only timestamps, in one object so `additionalProperties: false` still holds), and every
/// definition they refer to. References point at `#/components/schemas/...` so the result drops
/// into an OpenAPI document.
pub fn json_schemas() -> (Vec<(ResourceType, Value)>, Map<String, Value>) {
    let mut settings = SchemaSettings::openapi3();
    settings.definitions_path = "/components/schemas/".into();
    let mut generator = settings.into_generator();
    let specs: Vec<(ResourceType, Schema)> =
        ResourceType::all().map(|t| (t, Spec::schema_of(t, &mut generator))).collect();
    let definitions = generator.take_definitions(true);
    let mut out = Vec::new();
    for (t, spec) in specs {
        let spec = spec.to_value();
        // Named spec types come back as a reference; inline the definition it points at.
        let mut object = match spec.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let name = reference.rsplit('/').next().unwrap_or_default();
                definitions.get(name).cloned().unwrap_or(spec)
            }
            None => spec,
        };
        let mut meta = json!({
            "type": {"type": "string", "enum": [t.name()]},
            "name": {"type": "string"},
            "creationTime": {"type": "string", "format": "date-time", "readOnly": true},
            "modificationTime": {"type": "string", "format": "date-time", "readOnly": true},
        });
        let mut required = vec![json!("type"), json!("name")];
        if t.is_mesh_scoped() {
            meta["mesh"] = json!({"type": "string"});
            required.push(json!("mesh"));
        }
        if let Some(properties) = object.get_mut("properties").and_then(Value::as_object_mut) {
            if let Value::Object(meta) = meta {
                properties.extend(meta);
            }
        } else {
            object["properties"] = meta;
        }
        if let Some(existing) = object.get("required").and_then(Value::as_array) {
            required.extend(existing.iter().cloned());
        }
        object["required"] = Value::Array(required);
        object["type"] = json!("object");
        out.push((t, object));
    }
    (out, definitions)
}
