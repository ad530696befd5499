//! Reading a resource from the flat REST/kumactl form (JSON or YAML).

use serde_json::{Map, Value};

use crate::registry::ResourceType;
use crate::resource::ResourceKey;
use crate::spec::Spec;
use crate::validation::{ValidationError, Violation};

/// A resource as a user submitted it: key and spec, not yet validated against Kuma's rules.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceInput {
    pub key: ResourceKey,
    pub spec: Spec,
}

/// Why a document could not be read as a resource.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParseError {
    /// Not well-formed JSON/YAML at all.
    #[error("{0}")]
    Syntax(String),
    /// Well-formed, but not a resource of a known shape; every problem with its field.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

impl ResourceInput {
    /// The flat REST object to submit: `type`, `mesh` (not for Mesh), `name`, then the spec.
    pub fn to_rest_json(&self) -> Value {
        crate::resource::flat_object(&self.key, None, &self.spec, false)
    }
}

/// Fields the server sets; accepted on input (so `kumactl get -o yaml` output can be re-applied)
/// and ignored.
const SERVER_FIELDS: &[&str] = &["creationTime", "modificationTime"];

fn take_string(
    object: &mut Map<String, Value>,
    field: &str,
    violations: &mut Vec<Violation>,
) -> Option<String> {
    match object.remove(field) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            violations.push(Violation::new(field, format!("must be a string, got {other}")));
            None
        }
    }
}

/// Reads one resource from its flat JSON form. Structural problems (missing `type`/`name`/`mesh`,
/// unknown type, fields of the wrong shape) are reported together with their field paths.
pub fn parse_resource(value: Value) -> Result<ResourceInput, ParseError> {
    let Value::Object(mut object) = value else {
        return Err(ParseError::Syntax(
            "a resource must be an object with type, name and (except for Mesh) mesh".into(),
        ));
    };
    let mut violations = Vec::new();
    let type_name = take_string(&mut object, "type", &mut violations);
    let name = take_string(&mut object, "name", &mut violations);
    let mesh = take_string(&mut object, "mesh", &mut violations);
    for field in SERVER_FIELDS {
        object.remove(*field);
    }

    let resource_type = match type_name.as_deref() {
        None => {
            violations.push(Violation::new("type", "field is required"));
            None
        }
        Some(t) => {
            let found = ResourceType::from_name(t);
            if found.is_none() {
                let known: Vec<_> = ResourceType::descriptors().iter().map(|d| d.name).collect();
                violations.push(Violation::new(
                    "type",
                    format!("unknown type {t:?}; known types: {}", known.join(", ")),
                ));
            }
            found
        }
    };
    if name.is_none() {
        violations.push(Violation::new("name", "field is required"));
    }
    if let Some(t) = resource_type {
        match (t.is_mesh_scoped(), &mesh) {
            (true, None) => violations.push(Violation::new("mesh", "field is required")),
            (false, Some(_)) => violations
                .push(Violation::new("mesh", format!("must not be set on a {}", t.name()))),
            _ => {}
        }
    }

    let spec = resource_type.and_then(|t| match Spec::from_json(t, Value::Object(object)) {
        Ok(spec) => Some(spec),
        Err(e) => {
            violations.push(spec_violation(&e));
            None
        }
    });

    match (resource_type, name, spec) {
        (Some(t), Some(name), Some(spec)) if violations.is_empty() => Ok(ResourceInput {
            key: ResourceKey::new(t, mesh.as_deref().unwrap_or_default(), &name),
            spec,
        }),
        _ => Err(ValidationError::new(violations).into()),
    }
}

/// Turns a serde error inside a spec into a violation at the field it names.
fn spec_violation(e: &serde_path_to_error::Error<serde_json::Error>) -> Violation {
    // Keys of the tag maps are written as Kuma writes them (`tags["version"]`); serde reports map
    // keys and struct fields alike, so the map-typed fields are recognised by name.
    const TAG_MAPS: &[&str] = &["tags", "match", "destination"];
    let mut field = String::new();
    let mut previous: Option<&str> = None;
    for segment in e.path().iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => {
                field.push_str(&format!("[{index}]"));
                previous = None;
            }
            serde_path_to_error::Segment::Map { key }
            | serde_path_to_error::Segment::Enum { variant: key } => {
                // A key with no name has no dotted form either: `[""]`.
                if key.is_empty() || previous.is_some_and(|p| TAG_MAPS.contains(&p)) {
                    field.push_str(&format!("[{key:?}]"));
                    previous = None;
                } else {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(key);
                    previous = Some(key.as_str());
                }
            }
            serde_path_to_error::Segment::Unknown => previous = None,
        }
    }
    let mut message = e.inner().to_string();
    if field == "rules" && message.starts_with("unknown field") {
        // Kuma 0.2 wrapped policies in `rules: [{sources, destinations, conf}]`; 0.3 flattened them.
        message.push_str(
            "; Kuma 0.2's `rules: [...]` form is not supported: write sources, destinations and \
             conf at the top level of the policy, as Kuma 0.3 and later do",
        );
    }
    Violation::new(field, message)
}

/// Splits a (possibly multi-document) YAML or JSON text into resource objects, skipping empty
/// documents.
pub fn parse_resources_yaml(text: &str) -> Result<Vec<Value>, ParseError> {
    use serde::Deserialize;
    let mut values = Vec::new();
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(document).map_err(|e| {
            ParseError::Syntax(format!("document {} is not valid YAML: {e}", i + 1))
        })?;
        if !value.is_null() {
            values.push(value);
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seeds_dataplane_parses_and_echoes_as_written() {
        let docs = parse_resources_yaml(
            "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n",
        )
        .unwrap();
        let input = parse_resource(docs[0].clone()).unwrap();
        assert_eq!(input.key, ResourceKey::new(ResourceType::Dataplane, "default", "redis-1"));
        assert_eq!(
            input.spec.to_json(),
            json!({"networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}})
        );
    }

    #[test]
    fn missing_type_and_name_are_both_reported() {
        let err = parse_resource(json!({"mesh": "default"})).unwrap_err();
        let ParseError::Invalid(e) = err else { panic!("{err:?}") };
        let fields: Vec<_> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["type", "name"]);
    }

    #[test]
    fn unknown_field_is_reported_at_its_path() {
        let err = parse_resource(json!({
            "type": "Dataplane", "mesh": "default", "name": "dp",
            "networking": {"inbound": [{"interfaces": "x"}]}
        }))
        .unwrap_err();
        let ParseError::Invalid(e) = err else { panic!("{err:?}") };
        assert_eq!(e.violations[0].field, "networking.inbound[0].interfaces");
        assert!(e.violations[0].message.contains("unknown field"), "{:?}", e.violations);
    }

    #[test]
    fn empty_documents_are_skipped() {
        let docs =
            parse_resources_yaml("---\ntype: Mesh\nname: a\n---\n---\ntype: Mesh\nname: b\n")
                .unwrap();
        assert_eq!(docs.len(), 2);
    }
}
