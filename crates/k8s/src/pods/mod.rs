//! Pods become Dataplanes: the pure conversion (Pod, the Services of its namespace, the
//! namespace -> the Dataplane object) and the controller that keeps every pod's Dataplane in
//! line with it, on the replica that holds the Lease.

mod controller;
mod convert;
mod queue;
mod reconcile;

pub use controller::{dataplane_resource, run, run_with, PodControllerConfig};
pub use convert::{
    convert, in_mesh, selects, ConvertError, PodDataplane, KUMA_API_VERSION, NAMESPACE_TAG,
    PROTOCOL_TAG, SERVICELESS_PORT, SERVICE_NAME_TAG, SERVICE_PORT_TAG,
};
pub use reconcile::INVALID_ANNOTATION;
