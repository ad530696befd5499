//! JSON Schemas of every resource type, generated from the same Rust types the API parses with;
//! the API server assembles its OpenAPI document from them.

use schemars::generate::SchemaSettings;
use schemars::Schema;
use serde_json::{json, Map, Value};

use crate::registry::ResourceType;
use crate::spec::Spec;

/// The schema of each type's flat REST object, plus every definition they refer to.
/// References point at `#/components/schemas/...` so the result drops into an OpenAPI document.
pub fn json_schemas() -> (Vec<(ResourceType, Value)>, Map<String, Value>) {
    let mut settings = SchemaSettings::openapi3();
    settings.definitions_path = "/components/schemas/".into();
    let mut generator = settings.into_generator();
    let mut out = Vec::new();
    for t in ResourceType::all() {
        let spec: Schema = Spec::schema_of(t, &mut generator);
        let mut object = json!({
            "allOf": [
                {
                    "type": "object",
                    "required": if t.is_mesh_scoped() { json!(["type", "mesh", "name"]) } else { json!(["type", "name"]) },
                    "properties": {
                        "type": {"type": "string", "enum": [t.name()]},
                        "name": {"type": "string"},
                        "creationTime": {"type": "string", "format": "date-time", "readOnly": true},
                        "modificationTime": {"type": "string", "format": "date-time", "readOnly": true},
                    }
                },
                spec.to_value(),
            ]
        });
        if t.is_mesh_scoped() {
            object["allOf"][0]["properties"]["mesh"] = json!({"type": "string"});
        }
        out.push((t, object));
    }
    let definitions = generator.take_definitions(true);
    (out, definitions)
}
