//! CRUD, status codes, echoing, conflicts, read-only mode and the error body.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::support::{must_api, must_api_with};
use kuma_api_server::ApiServerConfig;

const REDIS: &str = "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags:\n      service: redis\n";

fn redis_json() -> Value {
    serde_yaml::from_str(REDIS).unwrap()
}

#[tokio::test]
async fn index_identifies_kuma() {
    let api = must_api().await;
    let reply = api.get("/").await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"hostname": "cp-1", "tagline": "Kuma", "version": "1.2.3", "gui": "The gui is available at /gui"})
    );
}

#[tokio::test]
async fn put_creates_with_201_then_updates_with_200() {
    let api = must_api().await;
    assert_eq!(
        api.put_json("/meshes/default/dataplanes/redis-1", &redis_json()).await.status,
        StatusCode::CREATED
    );
    assert_eq!(
        api.put_json("/meshes/default/dataplanes/redis-1", &redis_json()).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn get_echoes_what_was_written_with_timestamps() {
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    let reply = api.get("/meshes/default/dataplanes/redis-1").await;
    assert_eq!(reply.status, StatusCode::OK);
    let mut body = reply.body.clone();
    let object = body.as_object_mut().unwrap();
    assert!(object.remove("creationTime").unwrap().as_str().unwrap().ends_with('Z'));
    assert!(object.remove("modificationTime").is_some());
    assert_eq!(body, redis_json());
    assert!(reply.headers.contains_key("etag"));
}

#[tokio::test]
async fn a_resource_read_back_can_be_written_again_unchanged() {
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    let read = api.get("/meshes/default/dataplanes/redis-1").await.body;
    assert_eq!(
        api.put_json("/meshes/default/dataplanes/redis-1", &read).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn missing_resource_is_404_in_kumas_error_body() {
    let api = must_api().await;
    let reply = api.get("/meshes/default/dataplanes/nope").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(reply.body["title"], "Could not retrieve a resource");
    assert!(reply.body["details"].as_str().unwrap().contains("nope"), "{}", reply.body);
}

#[tokio::test]
async fn unknown_collection_is_404() {
    let api = must_api().await;
    for path in [
        "/meshes/default/widgets",
        "/widgets",
        "/meshes/default/widgets/x",
        "/meshes/default/dataplanes/x/extra",
    ] {
        let reply = api.get(path).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
        assert!(reply.body["title"].is_string(), "{path}: {}", reply.body);
    }
}

#[tokio::test]
async fn delete_removes_and_a_second_delete_is_404() {
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    assert_eq!(api.delete("/meshes/default/dataplanes/redis-1").await.status, StatusCode::OK);
    assert_eq!(api.get("/meshes/default/dataplanes/redis-1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.delete("/meshes/default/dataplanes/redis-1").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn deleting_a_mesh_deletes_its_resources() {
    let api = must_api().await;
    api.must_put_yaml("type: Mesh\nname: demo\n").await;
    api.must_put_yaml(&REDIS.replace("mesh: default", "mesh: demo")).await;
    api.must_put_yaml(REDIS).await;
    assert_eq!(api.delete("/meshes/demo").await.status, StatusCode::OK);
    assert_eq!(api.get("/meshes/demo/dataplanes").await.body["total"], 0);
    assert_eq!(api.get("/meshes/default/dataplanes").await.body["total"], 1);
}

#[tokio::test]
async fn malformed_json_is_400_and_stores_nothing() {
    let api = must_api().await;
    for body in ["{", "[1,2]", "\"text\"", ""] {
        let reply = api
            .send(Method::PUT, "/meshes/default/dataplanes/redis-1", Some(body.into()), &[])
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body:?}: {}", reply.body);
        assert!(reply.body["details"].is_string());
    }
    assert_eq!(api.get("/meshes/default/dataplanes").await.body["total"], 0);
}

#[tokio::test]
async fn yaml_bodies_are_accepted_with_a_yaml_content_type() {
    let api = must_api().await;
    let reply = api
        .send(
            Method::PUT,
            "/meshes/default/dataplanes/redis-1",
            Some(REDIS.into()),
            &[("content-type", "application/yaml")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let stored = api.get("/meshes/default/dataplanes/redis-1").await.body;
    assert_eq!(stored["networking"], redis_json()["networking"]);
}

#[tokio::test]
async fn oversized_body_is_413_and_stores_nothing() {
    let api = must_api_with(ApiServerConfig { max_body_bytes: 2048, ..Default::default() }).await;
    let mut body = redis_json();
    body["networking"]["inbound"][0]["tags"]["padding"] = Value::String("x".repeat(4096));
    let reply = api.put_json("/meshes/default/dataplanes/redis-1", &body).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", reply.body);
    assert!(reply.body["details"].as_str().unwrap().contains("2048"));
    assert_eq!(api.get("/meshes/default/dataplanes").await.body["total"], 0);
}

#[tokio::test]
async fn read_only_mode_refuses_writes_with_405_and_serves_reads() {
    let api = must_api_with(ApiServerConfig { read_only: true, ..Default::default() }).await;
    let put = api.put_json("/meshes/default/dataplanes/redis-1", &redis_json()).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(put.body["details"].as_str().unwrap().contains("read-only"));
    assert_eq!(api.delete("/meshes/default").await.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(api.get("/meshes/default").await.status, StatusCode::OK);
}

#[tokio::test]
async fn unsupported_method_is_405_in_kumas_error_body() {
    let api = must_api().await;
    let reply = api.send(Method::POST, "/meshes/default", Some("{}".into()), &[]).await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(reply.body["title"].is_string());
}

#[tokio::test]
async fn stale_if_match_is_412_and_current_if_match_succeeds() {
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    let etag = api.get("/meshes/default/dataplanes/redis-1").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let body = Some(redis_json().to_string());
    let first = api
        .send(
            Method::PUT,
            "/meshes/default/dataplanes/redis-1",
            body.clone(),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let stale = api
        .send(Method::PUT, "/meshes/default/dataplanes/redis-1", body, &[("if-match", &etag)])
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.body);
    let stale_delete = api
        .send(Method::DELETE, "/meshes/default/dataplanes/redis-1", None, &[("if-match", &etag)])
        .await;
    assert_eq!(stale_delete.status, StatusCode::PRECONDITION_FAILED);
}

/// Six writers on separate tasks of a multi-threaded runtime, released together.
async fn must_race(
    api: &crate::support::Api,
    if_match: Option<String>,
) -> Vec<(StatusCode, Value)> {
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(6));
    let writers: Vec<_> = (0..6)
        .map(|i| {
            let mut body = redis_json();
            body["networking"]["inbound"][0]["tags"]["writer"] = Value::String(i.to_string());
            let (api, barrier, if_match) = (api.clone(), barrier.clone(), if_match.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let headers: Vec<(&str, &str)> =
                    if_match.iter().map(|v| ("if-match", v.as_str())).collect();
                let reply = api
                    .send(
                        Method::PUT,
                        "/meshes/default/dataplanes/redis-1",
                        Some(body.to_string()),
                        &headers,
                    )
                    .await;
                (reply.status, body)
            })
        })
        .collect();
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.expect("writer task"));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_of_one_version_have_one_winner_and_the_rest_get_412() {
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    let etag = api.get("/meshes/default/dataplanes/redis-1").await.headers["etag"]
        .to_str()
        .unwrap()
        .to_string();
    let results = must_race(&api, Some(etag)).await;
    let statuses: Vec<StatusCode> = results.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 1, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED),
        "{statuses:?}"
    );
    let winner = &results.iter().find(|(s, _)| *s == StatusCode::OK).unwrap().1;
    let stored = api.get("/meshes/default/dataplanes/redis-1").await.body;
    assert_eq!(stored["networking"], winner["networking"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_puts_without_a_version_never_lose_an_acknowledged_write_silently() {
    // Each PUT reads the current version and writes on it: a writer that loses the race between
    // its read and its write gets 409 and can retry; the stored state is one acknowledged body.
    let api = must_api().await;
    api.must_put_yaml(REDIS).await;
    let results = must_race(&api, None).await;
    assert!(
        results.iter().all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::CONFLICT),
        "{results:?}"
    );
    let stored = api.get("/meshes/default/dataplanes/redis-1").await.body;
    assert!(
        results
            .iter()
            .any(|(s, body)| *s == StatusCode::OK && body["networking"] == stored["networking"]),
        "the stored body {stored} was not acknowledged to any writer"
    );
}

#[tokio::test]
async fn if_match_star_requires_the_resource_to_exist() {
    let api = must_api().await;
    let body = Some(redis_json().to_string());
    let missing = api
        .send(Method::PUT, "/meshes/default/dataplanes/redis-1", body.clone(), &[("if-match", "*")])
        .await;
    assert_eq!(missing.status, StatusCode::PRECONDITION_FAILED, "{}", missing.body);
    assert_eq!(api.get("/meshes/default/dataplanes").await.body["total"], 0);
    api.must_put_yaml(REDIS).await;
    let present = api
        .send(Method::PUT, "/meshes/default/dataplanes/redis-1", body, &[("if-match", "*")])
        .await;
    assert_eq!(present.status, StatusCode::OK);
    let deleted = api
        .send(Method::DELETE, "/meshes/default/dataplanes/redis-1", None, &[("if-match", "*")])
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let again = api
        .send(Method::DELETE, "/meshes/default/dataplanes/redis-1", None, &[("if-match", "*")])
        .await;
    assert_eq!(again.status, StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn openapi_document_describes_every_collection_with_schemas() {
    let api = must_api().await;
    let reply = api.get("/openapi.json").await;
    assert_eq!(reply.status, StatusCode::OK);
    let doc = reply.body;
    assert_eq!(doc["openapi"], "3.0.3");
    for d in kuma_model::ResourceType::descriptors() {
        assert!(
            doc["components"]["schemas"][format!("{}Resource", d.name)].is_object(),
            "{}",
            d.name
        );
    }
    for path in [
        "/meshes/{name}",
        "/meshes/{mesh}/dataplanes/{name}",
        "/meshes/{mesh}/traffic-routes",
        "/health-checks",
        "/meshes/{mesh}/dataplanes+insights",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
    // Every $ref resolves inside the document.
    let text = doc.to_string();
    for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
        let name = &piece[..piece.find('"').unwrap()];
        assert!(doc["components"]["schemas"][name].is_object(), "dangling $ref {name}");
    }
}
