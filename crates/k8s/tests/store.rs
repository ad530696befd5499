//! The Kubernetes store against a real kube-apiserver: the store conformance suite (each check
//! on a fresh apiserver), and what only a store over an API server has to get right: objects
//! written with kubectl, watch resync after an apiserver restart, and clear start-up errors.

use std::sync::Arc;
use std::time::Duration;

use kuma_k8s::{KubernetesStore, StartError};
use kuma_store::ResourceStore;
use kuma_test_support::KubeApiServer;

const SYSTEM: &str = "kuma-system";

/// A kube client for the test apiserver, from the kubeconfig it writes.
async fn client(server: &KubeApiServer) -> kube::Client {
    kuma_k8s::client_from_kubeconfig(server.kubeconfig())
        .await
        .expect("a client for the test apiserver")
}

/// A fresh apiserver with Kuma's CRDs and `namespaces` (started off the async runtime).
async fn fresh_server(namespaces: &'static [&'static str]) -> KubeApiServer {
    tokio::task::spawn_blocking(move || {
        let server = KubeApiServer::must_start();
        server.must_install_kuma_crds();
        for namespace in namespaces {
            server.must_create_namespace(namespace, &[]);
        }
        server
    })
    .await
    .expect("the apiserver starts")
}

/// A store over a fresh apiserver with Kuma's CRDs and the system namespace. It owns the
/// apiserver, so dropping it at the end of the check (or while a failed one unwinds) stops the
/// apiserver and etcd: nothing outlives the test process.
async fn fresh_store() -> Arc<dyn ResourceStore> {
    let server = fresh_server(&[SYSTEM]).await;
    let store =
        KubernetesStore::start(client(&server).await, SYSTEM).await.expect("the store starts");
    Arc::new(StoreWithServer { store, _server: server })
}

/// The store, then the apiserver it follows (fields drop in order).
#[derive(Debug)]
struct StoreWithServer {
    store: KubernetesStore,
    _server: KubeApiServer,
}

#[async_trait::async_trait]
impl ResourceStore for StoreWithServer {
    fn name_scope(&self) -> kuma_store::NameScope {
        self.store.name_scope()
    }
    async fn get(
        &self,
        key: &kuma_model::ResourceKey,
    ) -> Result<kuma_model::Resource, kuma_store::StoreError> {
        self.store.get(key).await
    }
    async fn list(
        &self,
        query: &kuma_store::ListQuery,
    ) -> Result<kuma_store::ListPage, kuma_store::StoreError> {
        self.store.list(query).await
    }
    async fn create(
        &self,
        key: kuma_model::ResourceKey,
        spec: kuma_model::Spec,
    ) -> Result<kuma_model::Resource, kuma_store::StoreError> {
        self.store.create(key, spec).await
    }
    async fn update(
        &self,
        key: kuma_model::ResourceKey,
        spec: kuma_model::Spec,
        expected: &kuma_model::Version,
    ) -> Result<kuma_model::Resource, kuma_store::StoreError> {
        self.store.update(key, spec, expected).await
    }
    async fn delete(
        &self,
        key: &kuma_model::ResourceKey,
        expected: Option<&kuma_model::Version>,
    ) -> Result<(), kuma_store::StoreError> {
        self.store.delete(key, expected).await
    }
    async fn revision(&self) -> Result<kuma_store::Revision, kuma_store::StoreError> {
        self.store.revision().await
    }
    async fn watch(
        &self,
        from: Option<kuma_store::Revision>,
    ) -> Result<kuma_store::WatchStream, kuma_store::StoreError> {
        self.store.watch(from).await
    }
}

kuma_store::conformance_suite!(fresh_store());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_or_namespace_is_named_with_the_command_that_fixes_it() {
    let server = tokio::task::spawn_blocking(KubeApiServer::must_start).await.unwrap();
    let err = KubernetesStore::start(client(&server).await, SYSTEM).await.unwrap_err();
    assert!(matches!(err, StartError::MissingNamespace(_)), "{err}");
    assert!(err.to_string().contains("kumactl install control-plane"), "{err}");
    server.must_create_namespace(SYSTEM, &[]);
    let err = KubernetesStore::start(client(&server).await, SYSTEM).await.unwrap_err();
    assert!(matches!(err, StartError::MissingCrd { plural: "meshes" }), "{err}");
    assert!(err.to_string().contains("kumactl install crds"), "{err}");
    drop(tokio::task::spawn_blocking(move || drop(server)).await);
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 15 s.
async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what} did not happen within 15 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn must_request(
    server: &KubeApiServer,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> String {
    let reply =
        server.request(method, path, Some(&body.to_string())).expect("the apiserver answers");
    assert!(reply.status < 300, "{method} {path}: {} {}", reply.status, reply.body);
    reply.body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_written_with_kubectl_show_up_and_invalid_ones_are_left_out() {
    use kuma_model::{ResourceKey, ResourceType};
    use kuma_store::{EventKind, StoreError};
    use serde_json::json;

    let server = fresh_server(&[SYSTEM, "demo"]).await;
    let store = KubernetesStore::start(client(&server).await, SYSTEM).await.unwrap();
    let mut events = store.watch(None).await.unwrap();
    for mesh in ["default", "other"] {
        let body = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": mesh}, "spec": {}});
        must_request(&server, "POST", "/apis/kuma.io/v1alpha1/meshes", body);
    }
    let route = json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": "to-web"}, "mesh": "default",
        "spec": {"sources": [{"match": {"kuma.io/service": "*"}}],
                 "destinations": [{"match": {"kuma.io/service": "web"}}],
                 "conf": [{"weight": 100, "destination": {"kuma.io/service": "web"}}]}
    });
    must_request(&server, "POST", "/apis/kuma.io/v1alpha1/trafficroutes", route.clone());
    let key = ResourceKey::new(ResourceType::TrafficRoute, "default", "to-web");
    let seen = eventually("the route in the store", async || store.get(&key).await.ok()).await;
    assert_eq!(seen.spec.to_json()["destinations"][0]["match"]["kuma.io/service"], "web");
    // The watch said so, after the two meshes.
    let mut kinds = Vec::new();
    for _ in 0..3 {
        let event =
            tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut events))
                .await
                .expect("an event")
                .expect("open")
                .expect("no error");
        kinds.push((event.kind, event.key));
    }
    assert_eq!(kinds[2], (EventKind::Created, key.clone()));

    // Moving the route to another mesh moves its key.
    let mut moved = route.clone();
    moved["mesh"] = json!("other");
    moved["metadata"]["resourceVersion"] = json!(seen.version.0);
    must_request(&server, "PUT", "/apis/kuma.io/v1alpha1/trafficroutes/to-web", moved);
    let in_other = ResourceKey::new(ResourceType::TrafficRoute, "other", "to-web");
    eventually("the route in mesh other", async || store.get(&in_other).await.ok()).await;
    assert!(matches!(store.get(&key).await, Err(StoreError::NotFound { .. })));

    // A Dataplane in namespace demo is <name>.demo.
    let dataplane = json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "Dataplane",
        "metadata": {"name": "web-1", "namespace": "demo"}, "mesh": "default",
        "spec": {"networking": {"address": "10.0.0.7", "inbound": [{"port": 8080, "tags": {"kuma.io/service": "web_demo_svc_80"}}]}}
    });
    must_request(&server, "POST", "/apis/kuma.io/v1alpha1/namespaces/demo/dataplanes", dataplane);
    let dp_key = ResourceKey::new(ResourceType::Dataplane, "default", "web-1.demo");
    eventually("the dataplane web-1.demo", async || store.get(&dp_key).await.ok()).await;

    // An invalid spec (apiserver accepts it: the CRD preserves unknown fields) is left out,
    // and so is a Secret that is not Kuma's.
    let broken = json!({
        "apiVersion": "kuma.io/v1alpha1", "kind": "TrafficRoute",
        "metadata": {"name": "broken"}, "mesh": "default", "spec": {"sources": "not a list"}
    });
    must_request(&server, "POST", "/apis/kuma.io/v1alpha1/trafficroutes", broken);
    let opaque = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other-app"}, "type": "Opaque", "data": {"x": "eA=="}});
    must_request(&server, "POST", &format!("/api/v1/namespaces/{SYSTEM}/secrets"), opaque);
    // A later write is seen, so the two earlier ones were processed (and skipped).
    let marker = json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "marker"}, "spec": {}});
    must_request(&server, "POST", "/apis/kuma.io/v1alpha1/meshes", marker);
    eventually("the marker mesh", async || store.get(&ResourceKey::mesh("marker")).await.ok())
        .await;
    let broken_key = ResourceKey::new(ResourceType::TrafficRoute, "default", "broken");
    assert!(matches!(store.get(&broken_key).await, Err(StoreError::NotFound { .. })));
    let secrets = kuma_store::list_all(&store, ResourceType::Secret, None).await.unwrap();
    assert!(secrets.is_empty(), "{secrets:?}");
    drop(store);
    drop(tokio::task::spawn_blocking(move || drop(server)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_serves_its_copy_while_the_apiserver_restarts_and_follows_it_afterwards() {
    use kuma_model::{MeshSpec, ResourceKey, Spec};
    use kuma_store::StoreError;

    let server = fresh_server(&[SYSTEM]).await;
    let store = Arc::new(KubernetesStore::start(client(&server).await, SYSTEM).await.unwrap());
    store.create(ResourceKey::mesh("before"), Spec::Mesh(MeshSpec::default())).await.unwrap();

    let (down_tx, down_rx) = std::sync::mpsc::channel();
    let (checked_tx, checked_rx) = std::sync::mpsc::channel();
    let restart = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.must_restart_apiserver(|| {
            down_tx.send(()).unwrap();
            checked_rx.recv().unwrap();
        });
        server
    });
    tokio::task::spawn_blocking(move || down_rx.recv().unwrap()).await.unwrap();
    // The apiserver is down: reads come from the copy, writes fail as retryable.
    assert!(store.get(&ResourceKey::mesh("before")).await.is_ok());
    let err = store.create(ResourceKey::mesh("during"), Spec::Mesh(MeshSpec::default())).await;
    assert!(matches!(err, Err(StoreError::Unavailable { .. })), "{err:?}");
    checked_tx.send(()).unwrap();
    let server = restart.await.unwrap();

    // Back: the watch resumes by itself, so a write through the apiserver shows here.
    let body = serde_json::json!({"apiVersion": "kuma.io/v1alpha1", "kind": "Mesh", "metadata": {"name": "after"}, "spec": {}});
    let server = tokio::task::spawn_blocking(move || {
        eventually_blocking(|| {
            server.request("POST", "/apis/kuma.io/v1alpha1/meshes", Some(&body.to_string()))
        });
        server
    })
    .await
    .unwrap();
    eventually("the mesh written after the restart", async || {
        store.get(&ResourceKey::mesh("after")).await.ok()
    })
    .await;
    let created = eventually("a write through the store", async || {
        store.create(ResourceKey::mesh("again"), Spec::Mesh(MeshSpec::default())).await.ok()
    })
    .await;
    assert_eq!(store.get(&ResourceKey::mesh("again")).await.unwrap(), created);
    drop(store);
    drop(tokio::task::spawn_blocking(move || drop(server)).await);
}

/// Retries a request until the apiserver creates the object (it may still be settling).
fn eventually_blocking(mut request: impl FnMut() -> std::io::Result<kuma_test_support::HttpReply>) {
    kuma_test_support::eventually!(Duration::from_secs(30), || match request() {
        Ok(reply) if reply.status == 201 => Ok(()),
        Ok(reply) => Err(format!("{} {}", reply.status, reply.body)),
        Err(e) => Err(e.to_string()),
    });
}
