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
    let out = canonical(ResourceType::TrafficPermission, Some("demo"), item, false).unwrap();
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
    let err = canonical(ResourceType::Dataplane, Some("demo"), item.clone(), false).unwrap_err();
    assert!(
        err.to_string()
            .contains("the list of the Dataplanes of mesh \"demo\" holds Dataplane other/dp-1"),
        "{err}"
    );
    let err = canonical(ResourceType::TrafficRoute, Some("other"), item, false).unwrap_err();
    assert!(matches!(err, ExportError::Unexpected { .. }), "{err}");
}

#[test]
fn a_mesh_whose_provided_ca_key_the_api_hid_is_refused_naming_the_mesh_and_backend() {
    // What the API serves for an inline key: the key object, emptied.
    let item = json!({"type": "Mesh", "name": "prod", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided",
            "conf": {"cert": {"inline": "CERT"}, "key": {}}}]}});
    let err = canonical(ResourceType::Mesh, None, item, false).unwrap_err();
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
    let out = canonical(ResourceType::Mesh, None, item, false).unwrap();
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
    let out = canonical(ResourceType::Mesh, None, item, false).unwrap();
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
    let out = canonical(ResourceType::Mesh, None, item, false).unwrap();
    assert_eq!(out.notes.len(), 2, "{:?}", out.notes);
    assert!(out.notes[1].contains("the file \"/etc/ca.key\""), "{:?}", out.notes);
}

fn names_and_types(resources: &[Exported]) -> Vec<String> {
    resources.iter().map(|r| format!("{} {}", r.value["type"], name_of(&r.value))).collect()
}

/// A leader that sees mTLS enabled before the CA's Secret exists makes a CA of its own: with
/// secrets, each such Mesh comes first without `enabledBackend`, then the secrets, then the Mesh
/// as exported.
#[test]
fn with_secrets_meshes_come_without_enabled_backend_then_secrets_then_the_meshes_as_exported() {
    let builtin = json!({"type": "Mesh", "name": "demo", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "builtin"}]}});
    let provided = json!({"type": "Mesh", "name": "prod", "mtls": {"enabledBackend": "ca-1",
        "backends": [{"name": "ca-1", "type": "provided",
            "conf": {"cert": {"secret": "prod-ca-cert"}, "key": {"secret": "prod-ca-key"}}}]}});
    let meshes: Vec<Exported> = [json!({"type": "Mesh", "name": "default"}), builtin, provided]
        .into_iter()
        .map(|m| canonical(ResourceType::Mesh, None, m, true).unwrap())
        .collect();
    assert!(meshes[2].notes.is_empty(), "the Secrets are in the export: {:?}", meshes[2].notes);
    let secret = |mesh: &str, name: &str| {
        let item = json!({"type": "Secret", "mesh": mesh, "name": name, "data": "c2VjcmV0"});
        canonical(ResourceType::Secret, Some(mesh), item, true).unwrap()
    };
    let secrets = vec![secret("demo", "demo.ca-builtin-ca-1"), secret("prod", "prod-ca-key")];
    let dataplane = json!({"type": "Dataplane", "mesh": "demo", "name": "web",
        "networking": {"inbound": [{"interface": "127.0.0.1:9000:8080", "tags": {"service": "web"}}]}});
    let rest = vec![canonical(ResourceType::Dataplane, Some("demo"), dataplane, true).unwrap()];

    let ordered = restore_order(meshes.clone(), secrets, rest);

    assert_eq!(
        names_and_types(&ordered),
        [
            "\"Mesh\" default",
            "\"Mesh\" demo",
            "\"Mesh\" prod",
            "\"Secret\" demo.ca-builtin-ca-1",
            "\"Secret\" prod-ca-key",
            "\"Mesh\" demo",
            "\"Mesh\" prod",
            "\"Dataplane\" web",
        ]
    );
    assert_eq!(ordered[0], meshes[0], "a Mesh without mTLS comes once, as it was");
    assert!(ordered[1].value["mtls"].get("enabledBackend").is_none());
    assert_eq!(ordered[1].value["mtls"]["backends"], meshes[1].value["mtls"]["backends"]);
    assert!(ordered[1].notes[0].contains("enabledBackend ca-1 follows"), "{:?}", ordered[1].notes);
    assert_eq!(ordered[5].value, meshes[1].value);
    assert_eq!(ordered[6].value, meshes[2].value);
    assert_eq!(ordered[3].value["data"], "c2VjcmV0", "a Secret keeps its bytes");

    // Apply reads it back in this order, and each Mesh without enabledBackend is valid alone.
    let text = render(&ordered).unwrap();
    let applied = Resolved::from_text(&text, &[], "export").unwrap();
    assert_eq!(applied.resources.len(), ordered.len());
    for (input, exported) in applied.resources.iter().zip(&ordered) {
        assert_eq!(input.to_rest_json(), exported.value);
    }
    let ctx = kuma_model::ValidationContext { mesh: None };
    for input in &applied.resources[1..3] {
        kuma_model::validate(input, &ctx).unwrap_or_else(|e| panic!("{}: {e}", input.key));
    }
}

#[test]
fn the_control_planes_own_global_secrets_are_told_from_those_users_wrote() {
    for own in [
        "control-plane-ca",
        "admin-user-token",
        "user-token-revocations",
        "user-token-signing-key-1",
        "user-token-signing-key-12",
    ] {
        assert!(is_control_plane_global_secret(own), "{own}");
    }
    for written in ["my-ca", "user-token-signing-key-", "control-plane-ca-backup", "vault-token"] {
        assert!(!is_control_plane_global_secret(written), "{written}");
    }
}
