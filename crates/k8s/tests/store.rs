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
    let kubeconfig =
        kube::config::Kubeconfig::read_from(server.kubeconfig()).expect("a kubeconfig");
    let options = kube::config::KubeConfigOptions::default();
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.expect("a config");
    kube::Client::try_from(config).expect("a client")
}

/// A store over a fresh apiserver with Kuma's CRDs and the system namespace; the apiserver
/// lives as long as the store (it is leaked into the store's test: one per test process).
async fn fresh_store() -> Arc<dyn ResourceStore> {
    let server = tokio::task::spawn_blocking(|| {
        let server = KubeApiServer::must_start();
        server.must_install_kuma_crds();
        server.must_create_namespace(SYSTEM, &[]);
        server
    })
    .await
    .expect("the apiserver starts");
    let server: &'static KubeApiServer = Box::leak(Box::new(server));
    let store =
        KubernetesStore::start(client(server).await, SYSTEM).await.expect("the store starts");
    Arc::new(store)
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
