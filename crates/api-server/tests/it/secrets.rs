//! Secrets (the builtin mesh CAs): stored, but their bytes never come back.

use axum::http::StatusCode;
use serde_json::json;

use crate::support::must_api;

#[tokio::test]
async fn a_secret_is_accepted_but_its_data_never_appears_in_get_or_list() {
    let api = must_api().await;
    // base64 of "-----BEGIN PRIVATE KEY-----"
    let data = "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t";
    let body = json!({"type": "Secret", "mesh": "default", "name": "s1", "data": data});
    assert_eq!(api.put_json("/meshes/default/secrets/s1", &body).await.status, StatusCode::CREATED);
    let one = api.get("/meshes/default/secrets/s1").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["name"], "s1");
    assert!(one.body.get("data").is_none(), "{}", one.body);
    let list = api.get("/meshes/default/secrets").await;
    assert_eq!(list.body["total"], 1);
    assert!(!list.body.to_string().contains(data), "{}", list.body);
}

#[tokio::test]
async fn a_secret_without_base64_data_is_rejected_with_the_field() {
    let api = must_api().await;
    let body = json!({"type": "Secret", "mesh": "default", "name": "s1", "data": "not base64!"});
    let reply = api.put_json("/meshes/default/secrets/s1", &body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.cause_fields(), ["data"]);
}

#[tokio::test]
async fn a_global_secret_round_trips_without_its_data() {
    let api = must_api().await;
    let data = "c2VjcmV0";
    let body = json!({"type": "GlobalSecret", "name": "g1", "data": data});
    assert_eq!(api.put_json("/global-secrets/g1", &body).await.status, StatusCode::CREATED);
    let one = api.get("/global-secrets/g1").await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.body["type"], "GlobalSecret");
    assert!(one.body.get("mesh").is_none() && one.body.get("data").is_none(), "{}", one.body);
    assert_eq!(api.get("/global-secrets").await.body["total"], 1);
    // A mesh-scoped collection is not a global one.
    assert_eq!(api.get("/dataplanes/g1").await.status, StatusCode::NOT_FOUND);
    assert_eq!(api.delete("/global-secrets/g1").await.status, StatusCode::OK);
    assert_eq!(api.get("/global-secrets/g1").await.status, StatusCode::NOT_FOUND);
}
