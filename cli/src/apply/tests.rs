//! Unit tests of `apply.rs`.

use super::*;
use kuma_model::ResourceType;
use serde_json::json;

const REDIS: &str = "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis";

#[test]
fn the_seeds_dataplane_becomes_its_flat_rest_object() {
    let resolved = Resolved::from_text(REDIS, &[], "stdin").unwrap();
    assert_eq!(resolved.resources.len(), 1);
    assert_eq!(
        resolved.resources[0].to_rest_json(),
        json!({
            "type": "Dataplane", "mesh": "default", "name": "redis-1",
            "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}
        })
    );
}

#[test]
fn variables_are_filled_in_before_parsing() {
    let text = "type: Mesh\nname: {{ name }}\n";
    let resolved = Resolved::from_text(text, &[("name".into(), "demo".into())], "f").unwrap();
    assert_eq!(resolved.resources[0].key.name, "demo");
    assert_eq!(resolved.resources[0].key.resource_type, ResourceType::Mesh);
}

#[test]
fn a_missing_variable_is_an_error_naming_it() {
    let err = Resolved::from_text("type: Mesh\nname: {{ name }}\n", &[], "f").unwrap_err();
    assert!(err.to_string().contains("\"name\""), "{err}");
}

#[test]
fn every_document_is_checked_and_the_bad_one_named() {
    let text = "type: Mesh\nname: a\n---\ntype: Dataplane\nname: b\n";
    let err = Resolved::from_text(text, &[], "f").unwrap_err();
    assert_eq!(
        err.to_string(),
        "Could not process a resource (Resource in document 2 is not valid)\n* mesh: field is required"
    );
}

#[test]
fn a_listing_as_get_prints_it_is_applied_item_by_item() {
    let text = "total: 2\nitems:\n- type: Mesh\n  name: a\n- type: Mesh\n  name: b\nnext: null\n";
    let resolved = Resolved::from_text(text, &[], "f").unwrap();
    let names: Vec<_> = resolved.resources.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    let err = Resolved::from_text("items:\n- type: Mesh\n- type: Mesh\n  name: b\n", &[], "f")
        .unwrap_err();
    assert!(err.to_string().contains("(Resource in item 1 is not valid)"), "{err}");
}

#[test]
fn server_set_times_are_accepted_and_not_sent() {
    let text = "type: Mesh\nname: a\ncreationTime: 2026-11-21T10:00:00Z\nmodificationTime: 2026-11-21T10:00:00Z\n";
    let resolved = Resolved::from_text(text, &[], "f").unwrap();
    assert_eq!(resolved.resources[0].to_rest_json(), json!({"type": "Mesh", "name": "a"}));
}

#[test]
fn an_empty_input_says_there_is_nothing_to_apply() {
    let err = Resolved::from_text("\n---\n", &[], "stdin").unwrap_err();
    assert_eq!(err.to_string(), "stdin contains no resources");
}

#[test]
fn text_that_is_not_yaml_is_a_syntax_error() {
    let err = Resolved::from_text("type: [Mesh\n", &[], "f").unwrap_err();
    assert!(matches!(err, CliError::Syntax(_)), "{err}");
    let err = Resolved::from_text("- a\n- b\n", &[], "f").unwrap_err();
    assert!(matches!(err, CliError::Syntax(_)), "{err}");
}
