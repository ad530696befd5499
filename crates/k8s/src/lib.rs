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
