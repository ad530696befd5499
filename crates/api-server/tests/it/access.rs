//! Who may do what, in-process: loopback is admin unless told otherwise; from elsewhere a request
//! needs credentials, a viewer only reads, an admin writes; a refusal changes nothing and uses
//! Kuma's error body. User tokens are checked by a stand-in here; the real ones (signed by keys
//! in the store) are tested against kuma-cp processes in node/tests/it/operator_access.rs.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use kuma_api_server::{ApiServer, ApiServerConfig, Identity, ServerInfo, UserTokens, ADMIN_GROUP};
use serde_json::json;

use crate::support::{must_api, must_api_with, Api};

struct Tokens;

#[async_trait::async_trait]
impl UserTokens for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Identity, String> {
        match token {
            "admin-token" => Ok(Identity::new("alice", vec![ADMIN_GROUP.into()])),
            "viewer-token" => Ok(Identity::new("bob", vec!["mesh-system:viewer".into()])),
            _ => Err("signed by a key this control plane does not have".into()),
        }
    }
}

fn with_tokens(api: &Api) -> Api {
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(api.store.clone(), ApiServerConfig::default(), info)
        .with_user_tokens(Arc::new(Tokens))
        .router();
    Api { router, ..api.clone() }
}

fn mesh(name: &str) -> serde_json::Value {
    json!({"type": "Mesh", "name": name})
}

#[tokio::test]
async fn from_elsewhere_a_request_without_credentials_is_refused_and_changes_nothing() {
    let api = must_api().await;
    let remote = api.as_remote();
    let refused = remote.put_json("/meshes/other", &mesh("other")).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(refused.body["title"].is_string(), "Kuma's error body: {}", refused.body);
    assert!(refused.body["details"].as_str().unwrap().contains("user token"), "{}", refused.body);
    assert_eq!(remote.get("/meshes").await.status, StatusCode::UNAUTHORIZED);
    let body = json!({"type": "Secret", "mesh": "default", "name": "s1", "data": "c2VjcmV0"});
    assert_eq!(
        remote.put_json("/meshes/default/secrets/s1", &body).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.get("/meshes").await.body["total"], 1, "nothing was written");
    assert_eq!(api.get("/meshes/default/secrets").await.body["total"], 0);
    // What a client needs before it has credentials stays public.
    assert_eq!(remote.get("/").await.status, StatusCode::OK);
    assert_eq!(remote.get("/openapi.json").await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_viewer_reads_but_may_not_write_and_an_admin_does_both() {
    let api = with_tokens(&must_api().await).as_remote();
    let as_viewer = [("authorization", "Bearer viewer-token")];
    let as_admin = [("authorization", "Bearer admin-token")];
    let reply = api.send(Method::GET, "/meshes", None, &as_viewer).await;
    assert_eq!(reply.status, StatusCode::OK);
    let reply =
        api.send(Method::PUT, "/meshes/other", Some(mesh("other").to_string()), &as_viewer).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert!(
        reply.body["details"].as_str().unwrap().contains("bob may only read"),
        "{}",
        reply.body
    );
    let reply =
        api.send(Method::PUT, "/meshes/other", Some(mesh("other").to_string()), &as_admin).await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    let reply = api.send(Method::DELETE, "/meshes/other", None, &as_viewer).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    let reply = api.send(Method::GET, "/meshes/other", None, &as_viewer).await;
    assert_eq!(reply.status, StatusCode::OK, "the viewer's delete changed nothing");
}

#[tokio::test]
async fn a_bad_token_is_refused_even_from_loopback() {
    let api = with_tokens(&must_api().await);
    let reply = api.send(Method::GET, "/meshes", None, &[("authorization", "Bearer forged")]).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.body["details"].as_str().unwrap().contains("does not have"), "{}", reply.body);
}

#[tokio::test]
async fn loopback_is_anonymous_when_the_api_is_told_not_to_trust_it() {
    let mut config = ApiServerConfig::default();
    config.auth.localhost_is_admin = false;
    let api = must_api_with(config).await;
    assert_eq!(
        api.put_json("/meshes/other", &mesh("other")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(api.get("/meshes").await.status, StatusCode::UNAUTHORIZED);
}
