//! Unit tests of `get.rs`.

use super::*;
use chrono::TimeZone;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

#[test]
fn dataplanes_show_mesh_name_sorted_tags_and_age() {
    let items = [json!({
        "type": "Dataplane", "mesh": "default", "name": "backend-1",
        "creationTime": "2026-11-21T11:58:00Z", "modificationTime": "2026-11-21T11:58:00Z",
        "networking": {"inbound": [
            {"interface": "127.0.0.1:8000:80", "tags": {"service": "backend", "version": "2"}},
            {"interface": "127.0.0.1:8001:81", "tags": {"service": "backend-admin", "version": "2"}}
        ]}
    })];
    let table = resource_table(ResourceType::Dataplane, &items, now()).unwrap();
    assert_eq!(
        table.to_string(),
        "MESH      NAME        TAGS                                      AGE\n\
         default   backend-1   service=backend,backend-admin version=2   2m\n"
    );
}

#[test]
fn meshes_show_ca_metrics_and_backends_or_off() {
    let items = [
        json!({"type": "Mesh", "name": "default", "creationTime": "2026-11-20T12:00:00Z"}),
        json!({
            "type": "Mesh", "name": "prod", "creationTime": "2026-11-21T11:59:30Z",
            "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]},
            "metrics": {"enabledBackend": "prom", "backends": [{"name": "prom", "type": "prometheus"}]},
            "logging": {"backends": [
                {"name": "file", "type": "file", "conf": {"path": "/tmp/log"}},
                {"name": "tcp", "type": "tcp", "conf": {"address": "127.0.0.1:5000"}}
            ]},
            "tracing": {"backends": [{"name": "zipkin", "type": "zipkin", "conf": {"url": "http://z:9411/api/v2/spans"}}]}
        }),
    ];
    let table = resource_table(ResourceType::Mesh, &items, now()).unwrap();
    assert_eq!(
        table.to_string(),
        "NAME      mTLS      METRICS      LOGGING    TRACING   AGE\n\
         default   off       off          off        off       1d\n\
         prod      builtin   prometheus   file,tcp   zipkin    30s\n"
    );
}

#[test]
fn policies_show_mesh_name_and_age() {
    let items = [json!({
        "type": "TrafficPermission", "mesh": "demo", "name": "allow-all",
        "creationTime": "2026-11-21T09:00:00Z",
        "sources": [{"match": {"service": "*"}}], "destinations": [{"match": {"service": "*"}}]
    })];
    let table = resource_table(ResourceType::TrafficPermission, &items, now()).unwrap();
    assert_eq!(table.to_string(), "MESH   NAME        AGE\ndemo   allow-all   3h\n");
}

#[test]
fn an_empty_list_is_just_the_header() {
    let table = resource_table(ResourceType::TrafficRoute, &[], now()).unwrap();
    assert_eq!(table.to_string(), "MESH   NAME   AGE\n");
}

#[test]
fn an_object_of_another_type_is_an_unexpected_answer() {
    let items = [json!({"type": "Mesh", "name": "default"})];
    let err = resource_table(ResourceType::Dataplane, &items, now()).unwrap_err();
    assert!(matches!(err, CliError::UnexpectedAnswer { .. }), "{err}");
}

#[test]
fn the_offset_is_read_from_the_next_link() {
    assert_eq!(
        offset_of("http://cp:5681/meshes/default/dataplanes?size=1&offset=abc%3D").as_deref(),
        Some("abc=")
    );
    assert_eq!(offset_of("http://cp:5681/meshes"), None);
}
