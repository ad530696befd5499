//! `GET /meshes/{mesh}/dataplanes/{name}/xds` in-process, with a stand-in for kuma-cp's
//! `ConfigDumps`: admins only, the Dataplane must exist, the caller's credentials and whether it
//! came over TLS reach the hook, and each `DumpError` gets its status and a message in Kuma's
//! error body. The real hook (streams, forwarding between peers) is tested with kuma-cp
//! processes in node/tests/it/config_dump.rs.

use std::sync::{Arc, Mutex};

use axum::http::{Method, StatusCode};
use kuma_api_server::{
    ApiServer, ApiServerConfig, ConfigDumps, DumpError, DumpRequest, Identity, ServerInfo,
    UserTokens, ADMIN_GROUP, FORWARDED_FROM,
};
use serde_json::{json, Value};

use crate::support::{must_api, Api};

struct Tokens;

#[async_trait::async_trait]
impl UserTokens for Tokens {
    async fn authenticate(&self, token: &str) -> Result<Identity, String> {
        match token {
            "admin-token" => Ok(Identity::new("alice", vec![ADMIN_GROUP.into()])),
            "viewer-token" => Ok(Identity::new("bob", vec!["mesh-system:viewer".into()])),
            _ => Err("unknown".into()),
        }
    }
}

/// Answers `redis-1` with a dump, `gone-1` as not connected, `far-1` as held by a peer that
/// does not answer; remembers what it was asked.
#[derive(Default)]
struct Dumps {
    asked: Mutex<Vec<DumpRequest>>,
}

#[async_trait::async_trait]
impl ConfigDumps for Dumps {
    async fn config_dump(&self, request: DumpRequest) -> Result<Value, DumpError> {
        self.asked.lock().unwrap().push(request.clone());
        let (mesh, name) = (request.mesh, request.name);
        match name.as_str() {
            "redis-1" => Ok(
                json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"}]}),
            ),
            "gone-1" => Err(DumpError::NotConnected { mesh, name }),
            "far-1" => Err(DumpError::PeerUnavailable {
                mesh,
                name,
                peer: "cp-2".into(),
                reason: "connection refused".into(),
            }),
            _ => Err(DumpError::Internal("boom".into())),
        }
    }
}

async fn api_with(dumps: Arc<Dumps>) -> Api {
    let api = must_api().await;
    let info = ServerInfo { version: "1".into(), hostname: "cp".into() };
    let router = ApiServer::new(api.store.clone(), ApiServerConfig::default(), info)
        .with_user_tokens(Arc::new(Tokens))
        .with_config_dumps(dumps)
        .router();
    let api = Api { router, ..api };
    for name in ["redis-1", "gone-1", "far-1", "odd-1"] {
        api.must_put_yaml(&format!(
            "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags: {{service: redis}}\n"
        ))
        .await;
    }
    api
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

#[tokio::test]
async fn an_admin_gets_the_dump_and_the_hook_gets_the_callers_credentials() {
    let dumps = Arc::new(Dumps::default());
    let api = api_with(dumps.clone()).await.as_remote();
    let auth = bearer("admin-token");
    let reply = api
        .send(
            Method::GET,
            "/meshes/default/dataplanes/redis-1/xds",
            None,
            &[("authorization", &auth), (FORWARDED_FROM, "cp-3")],
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body["configs"].is_array(), "{}", reply.body);
    let asked = dumps.asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [DumpRequest {
            mesh: "default".into(),
            name: "redis-1".into(),
            authorization: Some(auth),
            over_tls: false,
            forwarded_from: Some("cp-3".into()),
        }]
    );
}

#[tokio::test]
async fn a_viewer_is_refused_with_403_and_without_credentials_401_and_the_hook_is_not_asked() {
    let dumps = Arc::new(Dumps::default());
    let api = api_with(dumps.clone()).await.as_remote();
    let path = "/meshes/default/dataplanes/redis-1/xds";
    let viewer = bearer("viewer-token");
    let reply = api.send(Method::GET, path, None, &[("authorization", &viewer)]).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.body);
    let details = reply.body["details"].as_str().unwrap();
    assert!(details.contains("bob may not see") && details.contains(ADMIN_GROUP), "{details}");
    assert_eq!(api.get(path).await.status, StatusCode::UNAUTHORIZED);
    assert!(dumps.asked.lock().unwrap().is_empty());
}

#[tokio::test]
async fn each_failure_has_its_status_and_says_what_is_wrong() {
    let api = api_with(Arc::new(Dumps::default())).await;
    let details =
        |reply: &crate::support::Reply| reply.body["details"].as_str().unwrap().to_string();

    let missing = api.get("/meshes/default/dataplanes/web-1/xds").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.body);
    assert!(details(&missing).contains("web-1"), "{}", missing.body);

    let gone = api.get("/meshes/default/dataplanes/gone-1/xds").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(
        details(&gone).contains("dataplane default/gone-1 is not connected to any control plane"),
        "{}",
        gone.body
    );

    let far = api.get("/meshes/default/dataplanes/far-1/xds").await;
    assert_eq!(far.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(details(&far).contains("cp-2") && details(&far).contains("connection refused"));
    assert!(far.headers.contains_key("retry-after"));

    let odd = api.get("/meshes/default/dataplanes/odd-1/xds").await;
    assert_eq!(odd.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(!odd.body.to_string().contains("boom"), "internal errors are not shown");
}

#[tokio::test]
async fn an_api_without_xds_says_it_has_no_config_dumps() {
    let api = must_api().await;
    api.must_put_yaml("type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:9000:6379\n    tags: {service: redis}\n").await;
    let reply = api.get("/meshes/default/dataplanes/redis-1/xds").await;
    assert_eq!(reply.status, StatusCode::NOT_IMPLEMENTED, "{}", reply.body);
}
