//! Kubernetes mode: Kuma's CRDs in the API server as the resource store, Pods turned into
//! Dataplanes, the sidecar injector, and leader election with a `coordination.k8s.io` Lease.
//!
//! This is the only crate that links kube; the rest of the workspace sees a `ResourceStore`.

pub mod annotations;
pub mod inject;
pub mod lease;
pub mod pods;
pub mod store;
pub mod token_review;

pub use store::{KubernetesStore, StartError};

/// A client for the API server a kubeconfig file names (its current context), e.g. for a
/// control plane run outside the cluster; in a pod, `kube::Client::try_default` uses the pod's
/// service account instead.
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<kube::Client, String> {
    let describe = |e: &dyn std::fmt::Display| format!("kubeconfig {}: {e}", path.display());
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| describe(&e))?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| describe(&e))?;
    kube::Client::try_from(config).map_err(|e| describe(&e))
}
