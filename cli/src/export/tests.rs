use serde_json::json;

use super::*;
use crate::apply::Resolved;

fn exported(value: Value) -> Exported {
    Exported { value, notes: Vec::new() }
}

#[test]
fn dataplanes_and_every_policy_type_are_exported_but_no_status_or_secret() {
    let types: Vec<ResourceType> = mesh_types().collect();
    assert_eq!(types[0], ResourceType::Dataplane);
    for t in ResourceType::all() {
        let expected =
            t.is_mesh_scoped() && (t.descriptor().is_policy || t == ResourceType::Dataplane);
        assert_eq!(types.contains(&t), expected, "{t}");
    }
    for t in [ResourceType::DataplaneInsight, ResourceType::Secret, ResourceType::GlobalSecret] {
        assert!(!types.contains(&t), "{t}");
    }
}

#[test]
fn a_listed_item_is_written_as_a_user_would_write_it_without_the_servers_fields() {
    let item = json!({
        "modificationTime": "2026-01-02T00:00:00.000000Z",
        "name": "allow-all",
        "creationTime": "2026-01-01T00:00:00.000000Z",
        "type": "TrafficPermission",
        "mesh": "demo",
        "sources": [{"match": {"kuma.io/service": "*"}}],
        "destinations": [{"match": {"kuma.io/service": "*"}}],
    });
    let out = canonical(ResourceType::TrafficPermission, Some("demo"), item).unwrap();
    assert_eq!(
        render(&[out]).unwrap(),
        "type: TrafficPermission\nmesh: demo\nname: allow-all\nsources:\n- match:\n    \
         kuma.io/service: '*'\ndestinations:\n- match:\n    kuma.io/service: '*'\n"
    );
}

#[test]
fn an_item_of_another_type_or_mesh_in_a_list_is_refused() {
    let item = json!({"type": "Dataplane", "mesh": "other", "name": "dp-1",
        "networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}});
    let err = canonical(ResourceType::Dataplane, Some("demo"), item.clone()).unwrap_err();
    assert!(
        err.to_string()
            .contains("the list of the Dataplanes of mesh \"demo\" holds Dataplane other/dp-1"),
        "{err}"
    );
    let err = canonical(ResourceType::TrafficRoute, Some("other"), item).unwrap_err();
    assert!(matches!(err, ExportError::Unexpected { .. }), "{err}");
}

#[test]
fn a_mesh_whose_provided_ca_key_the_api_hid_is_refused_naming_the_mesh_and_backend() {
    // What the API serves for an inline key: the key object, emptied.
    let item = json!({"type": "Mesh", "name": "prod", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided",
            "conf": {"cert": {"inline": "CERT"}, "key": {}}}]}});
    let err = canonical(ResourceType::Mesh, None, item).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "Mesh \"prod\" cannot be exported: the key of its provided CA backend \"ca-1\""
        ),
        "{err}"
    );
}

#[test]
fn a_mesh_whose_ca_reads_a_secret_is_exported_with_a_note_naming_the_secret() {
    let item = json!({"type": "Mesh", "name": "prod", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided",
            "conf": {"cert": {"secret": "prod-ca-cert"}, "key": {"secret": "prod-ca-key"}}}]}});
    let out = canonical(ResourceType::Mesh, None, item).unwrap();
    let text = render(std::slice::from_ref(&out)).unwrap();
    assert!(
        text.starts_with("# The CA backend \"ca-1\" reads the Secret \"prod-ca-cert\""),
        "{text}"
    );
    assert!(text.contains("the Secret \"prod-ca-key\""), "{text}");
    let applied = Resolved::from_text(&text, &[], "export").unwrap();
    assert_eq!(applied.resources[0].to_rest_json(), out.value);
}

#[test]
fn documents_are_separated_and_read_back_by_apply_in_order() {
    let resources = vec![
        exported(json!({"type": "Mesh", "name": "a"})),
        exported(json!({"type": "Mesh", "name": "b"})),
    ];
    let text = render(&resources).unwrap();
    assert_eq!(text, "type: Mesh\nname: a\n---\ntype: Mesh\nname: b\n");
    let applied = Resolved::from_text(&text, &[], "export").unwrap();
    let names: Vec<&str> = applied.resources.iter().map(|r| r.key.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
}

/// `apply` reads `{{ name }}` as a variable it was not given: such strings are written so that
/// no `{{` is left in the text, and read back as they were.
#[test]
fn a_string_with_double_braces_is_applied_back_as_it_was() {
    let item = json!({"type": "Mesh", "name": "logs", "logging": {"defaultBackend": "file",
        "backends": [{"name": "file", "format": "{{ \"quoted\\\" {{x}} }} {\\{", "type": "file",
            "conf": {"path": "/tmp/{{mesh}}.log"}}]}});
    let out = canonical(ResourceType::Mesh, None, item).unwrap();
    let text = render(&[exported(json!({"type": "Mesh", "name": "a"})), out.clone()]).unwrap();
    assert!(!text.contains("{{"), "{text}");
    let applied = Resolved::from_text(&text, &[], "export").unwrap();
    assert_eq!(applied.resources[1].to_rest_json(), out.value);
}

#[test]
fn a_mesh_whose_ca_reads_files_is_exported_with_a_note_naming_them() {
    let item = json!({"type": "Mesh", "name": "prod", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided",
            "conf": {"cert": {"file": "/etc/ca.crt"}, "key": {"file": "/etc/ca.key"}}}]}});
    let out = canonical(ResourceType::Mesh, None, item).unwrap();
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
    assert!(out.notes[1].contains("the file \"/etc/ca.key\""), "{:?}", out.notes);
}
