//! The sidecar injector: the mutating admission webhook that puts `kuma-dp` (container
//! `kuma-sidecar`) and the transparent-proxy init container (`kuma-init`) into the pods of the
//! mesh.
//!
//! Three layers, each usable alone:
//! * [`inject`]: a pure function from a Pod and its Namespace to a JSON patch (or nothing);
//! * [`review`]: the `AdmissionReview` the apiserver POSTs to `/inject-sidecar`, as bytes in and
//!   bytes out, so any HTTP server can serve it (kuma-cp does, over TLS);
//! * [`NamespaceCache`]: the namespaces' labels, which an admission request does not carry.

mod config;
mod error;
mod mutation;
mod namespaces;
mod review;

pub use config::{InjectorConfig, InjectorConfigError, Resources};
pub use error::InjectError;
pub use mutation::{inject, INIT_CONTAINER, SIDECAR_CONTAINER};
pub use namespaces::NamespaceCache;
pub use review::{review, ADMISSION_PATH};
