//! Certificate authorities and tokens: the CA of a Raft cluster of kuma-cp peers, whose
//! certificates the peers present to each other (mutual TLS on the peer RPC); the control plane's
//! CA, whose certificates the peers present to dataplanes; the CA of each mesh with the SPIFFE
//! identity certificates it issues to dataplanes; and the dataplane tokens.
//!
//! No I/O beyond what callers ask for, and never tokio: certificates are plain PEM strings.

mod cluster;
mod control_plane_ca;
mod mesh_ca;
mod token;
#[cfg(test)]
mod token_properties;

pub use cluster::{CaError, ClusterCa, IssuedCert, PEER_SERVER_NAME};
pub use control_plane_ca::{split_pem_bundle, ControlPlaneCa, CONTROL_PLANE_CA_VALIDITY};
pub use mesh_ca::{
    certificate_uris, rotation_time, self_signed_server_cert, spiffe_id, MeshCa,
    BUILTIN_CA_VALIDITY, DEFAULT_DP_CERT_VALIDITY,
};
pub use token::{
    token_kid, unverified_mesh, verify, DataplaneClaims, HasTimes, SigningKey, TokenError,
    TokenTimes, UserClaims, VerifyingKey, TOKEN_CLOCK_SKEW,
};
