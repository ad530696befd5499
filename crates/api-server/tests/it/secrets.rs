//! Secrets (the builtin mesh CAs): stored, and their bytes come back only to an admin who lists
//! them with `include=data`.

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use kuma_api_server::{ApiServer, ApiServerConfig, ServerInfo};
use kuma_model::{Resource, ResourceKey, ResourceType, SecretSpec, Spec, Version};
use kuma_store::{ListPage, ListQuery, ResourceStore, Revision, StoreError, WatchStream};
use serde_json::json;

use crate::support::{must_api, Api};

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

/// Stands in for kuma-cp's user tokens: one admin, one viewer.
struct Tokens;

#[async_trait::async_trait]
impl kuma_api_server::UserTokens for Tokens {
    async fn authenticate(&self, token: &str) -> Result<kuma_api_server::Identity, String> {
        use kuma_api_server::{Identity, ADMIN_GROUP};
        match token {
            "admin-token" => Ok(Identity::new("alice", vec![ADMIN_GROUP.into()])),
            "viewer-token" => Ok(Identity::new("bob", vec!["mesh-system:viewer".into()])),
            _ => Err("signed by a key this control plane does not have".into()),
        }
    }
}

/// An API with a Secret in `default` and a GlobalSecret, reached from another host with tokens.
async fn must_api_with_secrets() -> (Api, &'static str, &'static str) {
    let api = must_api().await;
    let (data, global) = ("LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t", "c2VjcmV0");
    let secret = json!({"type": "Secret", "mesh": "default", "name": "s1", "data": data});
    assert_eq!(api.put_json("/meshes/default/secrets/s1", &secret).await.status, 201);
    let body = json!({"type": "GlobalSecret", "name": "g1", "data": global});
    assert_eq!(api.put_json("/global-secrets/g1", &body).await.status, StatusCode::CREATED);
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(api.store.clone(), ApiServerConfig::default(), info)
        .with_user_tokens(Arc::new(Tokens))
        .router();
    (Api { router, ..api }.as_remote(), data, global)
}

const AS_ADMIN: [(&str, &str); 1] = [("authorization", "Bearer admin-token")];
const AS_VIEWER: [(&str, &str); 1] = [("authorization", "Bearer viewer-token")];

#[tokio::test]
async fn an_admin_who_asks_for_data_gets_the_bytes_of_secrets_and_global_secrets() {
    let (api, data, global) = must_api_with_secrets().await;
    let get = |path: &'static str| api.send(Method::GET, path, None, &AS_ADMIN);

    let in_mesh = get("/meshes/default/secrets?include=data").await;
    assert_eq!(in_mesh.status, StatusCode::OK, "{}", in_mesh.body);
    assert_eq!(in_mesh.body["items"][0]["name"], "s1");
    assert_eq!(in_mesh.body["items"][0]["data"], data);
    let across = get("/secrets?include=data").await;
    assert_eq!(across.body["items"][0]["data"], data, "{}", across.body);
    let globals = get("/global-secrets?include=data").await;
    assert_eq!(globals.status, StatusCode::OK);
    assert_eq!(globals.body["items"][0]["name"], "g1");
    assert_eq!(globals.body["items"][0]["data"], global);
    // Everything but the bytes is what the list without the parameter serves.
    let mut item = in_mesh.body["items"][0].clone();
    item.as_object_mut().unwrap().remove("data");
    assert_eq!(get("/meshes/default/secrets").await.body["items"][0], item);
}

#[tokio::test]
async fn without_include_nobody_gets_secret_bytes_not_even_an_admin() {
    let (api, data, global) = must_api_with_secrets().await;
    for who in [AS_ADMIN, AS_VIEWER] {
        for path in ["/meshes/default/secrets", "/secrets", "/global-secrets"] {
            let reply = api.send(Method::GET, path, None, &who).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}");
            assert_eq!(reply.body["total"], 1, "{path}");
            let text = reply.body.to_string();
            assert!(!text.contains(data) && !text.contains(global), "{path}: {text}");
            assert!(reply.body["items"][0].get("data").is_none(), "{path}: {text}");
        }
    }
}

#[tokio::test]
async fn a_viewer_who_asks_for_data_is_refused_with_403_and_gets_no_bytes() {
    let (api, data, _) = must_api_with_secrets().await;
    for path in [
        "/meshes/default/secrets?include=data",
        "/secrets?include=data",
        "/global-secrets?include=data",
    ] {
        let reply = api.send(Method::GET, path, None, &AS_VIEWER).await;
        assert_eq!(reply.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(reply.body["title"], "Could not retrieve resources", "{path}");
        let details = reply.body["details"].as_str().unwrap();
        assert!(
            details.contains("bob may not read secret contents")
                && details.contains("mesh-system:admin"),
            "{details}"
        );
        assert!(!reply.body.to_string().contains(data));
    }
    // Without credentials from elsewhere, as always: 401.
    let anonymous = api.get("/global-secrets?include=data").await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn include_data_is_refused_on_other_lists_and_include_takes_only_data() {
    let (api, _, _) = must_api_with_secrets().await;
    for path in [
        "/meshes/default/dataplanes?include=data",
        "/meshes?include=data",
        "/meshes/default/dataplanes+insights?include=data",
        "/meshes/default/secrets?include=everything",
    ] {
        let reply = api.send(Method::GET, path, None, &AS_ADMIN).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.body);
        assert_eq!(reply.cause_fields(), ["include"], "{path}");
    }
}

#[tokio::test]
async fn every_page_of_a_list_with_data_keeps_include_in_its_next_link() {
    let (api, _, _) = must_api_with_secrets().await;
    let secret = json!({"type": "Secret", "mesh": "default", "name": "s2", "data": "c2Vjb25k"});
    let put =
        api.send(Method::PUT, "/meshes/default/secrets/s2", Some(secret.to_string()), &AS_ADMIN);
    assert_eq!(put.await.status, StatusCode::CREATED);

    let first =
        api.send(Method::GET, "/meshes/default/secrets?include=data&size=1", None, &AS_ADMIN).await;
    assert_eq!(first.body["items"][0]["data"], "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0t");
    let next = first.body["next"].as_str().expect("a next page");
    assert!(next.contains("include=data"), "{next}");
    let next = next.strip_prefix("http://cp.test:5681").expect("under the request's host");
    let second = api.send(Method::GET, next, None, &AS_ADMIN).await;
    assert_eq!(second.body["items"][0]["name"], "s2");
    assert_eq!(second.body["items"][0]["data"], "c2Vjb25k");
}

#[tokio::test]
async fn the_openapi_document_offers_include_data_on_secret_lists_only() {
    let api = must_api().await;
    let doc = api.get("/openapi.json").await.body;
    let include = |path: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path}"))
            .iter()
            .find(|p| p["name"] == "include")
            .cloned()
    };
    for path in ["/meshes/{mesh}/secrets", "/secrets", "/global-secrets"] {
        let param = include(path).unwrap_or_else(|| panic!("{path} has no include"));
        assert_eq!(param["schema"]["enum"], json!(["data"]), "{path}");
        assert!(doc["paths"][path]["get"]["responses"]["403"].is_object(), "{path}");
    }
    for path in ["/meshes/{mesh}/dataplanes", "/meshes", "/meshes/{mesh}/dataplanes+insights"] {
        assert!(include(path).is_none(), "{path}");
    }
}

/// A store in which another writer creates `key` right after the first read that misses it, as
/// the leader makes a new mesh's token signing key while a restore writes the saved one.
struct CreatedByAnotherWriter {
    inner: Arc<dyn ResourceStore>,
    key: ResourceKey,
    spec: Spec,
}

#[async_trait::async_trait]
impl ResourceStore for CreatedByAnotherWriter {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        let found = self.inner.get(key).await;
        if key == &self.key && matches!(found, Err(StoreError::NotFound { .. })) {
            self.inner.create(self.key.clone(), self.spec.clone()).await?;
        }
        found
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.inner.list(query).await
    }
    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        self.inner.create(key, spec).await
    }
    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        self.inner.update(key, spec, expected).await
    }
    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        self.inner.delete(key, expected).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.inner.revision().await
    }
    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        self.inner.watch(from).await
    }
}

#[tokio::test]
async fn a_put_without_if_match_that_loses_the_create_to_another_writer_replaces_what_it_wrote() {
    let api = must_api().await;
    let key = ResourceKey::new(ResourceType::Secret, "default", "signing-key-1");
    let store: Arc<dyn ResourceStore> = Arc::new(CreatedByAnotherWriter {
        inner: api.store.clone(),
        key: key.clone(),
        spec: Spec::Secret(SecretSpec::from_bytes(b"the leader's")),
    });
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(store, ApiServerConfig::default(), info).router();
    let api = Api { router, ..api };
    let saved = SecretSpec::from_bytes(b"the saved one");

    let body =
        json!({"type": "Secret", "mesh": "default", "name": "signing-key-1", "data": saved.data});
    let reply = api.put_json("/meshes/default/secrets/signing-key-1", &body).await;

    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let stored = api.store.get(&key).await.unwrap();
    assert_eq!(stored.spec.as_secret(), Some(&saved));
}
