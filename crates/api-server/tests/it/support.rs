use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kuma_api_server::{ApiServer, ApiServerConfig, ServerInfo};
use kuma_store::{MemoryStore, ResourceStore};
use serde_json::Value;
use tower::ServiceExt;

#[derive(Clone)]
pub struct Api {
    pub router: Router,
    pub store: Arc<dyn ResourceStore>,
    /// The address requests come from, as the server sees it: loopback unless `as_remote`.
    pub client: SocketAddr,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The `field`s of the error body's causes, sorted.
    pub fn cause_fields(&self) -> Vec<String> {
        let mut fields: Vec<String> = self.body["causes"]
            .as_array()
            .map(|c| {
                c.iter().map(|c| c["field"].as_str().unwrap_or_default().to_string()).collect()
            })
            .unwrap_or_default();
        fields.sort();
        fields
    }
}

pub async fn must_api_with(config: ApiServerConfig) -> Api {
    let store: Arc<dyn ResourceStore> = Arc::new(MemoryStore::new());
    kuma_cp_default_mesh(store.as_ref()).await;
    let info = ServerInfo { version: "1.2.3".into(), hostname: "cp-1".into() };
    let router = ApiServer::new(store.clone(), config, info).router();
    Api { router, store, client: SocketAddr::from(([127, 0, 0, 1], 40000)) }
}

pub async fn must_api() -> Api {
    must_api_with(ApiServerConfig::default()).await
}

async fn kuma_cp_default_mesh(store: &dyn ResourceStore) {
    use kuma_model::{MeshSpec, ResourceKey, Spec};
    store
        .create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default()))
        .await
        .expect("default mesh");
}

impl Api {
    /// The same API, reached from another host.
    pub fn as_remote(&self) -> Api {
        Api { client: SocketAddr::from(([10, 0, 0, 9], 40000)), ..self.clone() }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request =
            Request::builder().method(method).uri(path).header("host", "cp.test:5681");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            request = request.header("content-type", "application/json");
        }
        let request = request
            .extension(kuma_listener::ConnectionInfo {
                peer: self.client,
                client_certificate: None,
            })
            .body(body.map(Body::from).unwrap_or_else(Body::empty))
            .expect("request");
        let response =
            self.router.clone().oneshot(request).await.expect("the router always answers");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, None, &[]).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Reply {
        self.send(Method::PUT, path, Some(body.to_string()), &[]).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, None, &[]).await
    }

    /// PUTs a YAML resource to the path its own type/mesh/name give.
    pub async fn put_yaml(&self, yaml: &str) -> Reply {
        let value: Value = serde_yaml::from_str(yaml).expect("test YAML");
        self.put_json(&path_of(&value), &value).await
    }

    pub async fn must_put_yaml(&self, yaml: &str) {
        let reply = self.put_yaml(yaml).await;
        assert!(reply.status.is_success(), "PUT failed: {} {}", reply.status, reply.body);
    }
}

/// `/meshes/{mesh}/{collection}/{name}` (or `/meshes/{name}`) of a flat resource object.
pub fn path_of(value: &Value) -> String {
    // A body without a (known) type goes to the dataplanes collection: parsing refuses it first.
    let t = value["type"]
        .as_str()
        .and_then(kuma_model::ResourceType::from_name)
        .unwrap_or(kuma_model::ResourceType::Dataplane);
    let name = value["name"].as_str().expect("name");
    match value["mesh"].as_str() {
        Some(mesh) if t.is_mesh_scoped() => {
            format!("/meshes/{mesh}/{}/{name}", t.descriptor().path)
        }
        _ => format!("/meshes/{name}"),
    }
}
