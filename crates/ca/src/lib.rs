//! Certificate authorities: the CA of a Raft cluster of kuma-cp peers, whose certificates the
//! peers present to each other (mutual TLS on the peer RPC), and the CA of each mesh with the
//! SPIFFE identity certificates it issues to dataplanes.
//!
//! No I/O beyond what callers ask for, and never tokio: certificates are plain PEM strings.

mod cluster;
mod mesh_ca;

pub use cluster::{CaError, ClusterCa, IssuedCert, PEER_SERVER_NAME};
pub use mesh_ca::{
    certificate_uris, rotation_time, self_signed_server_cert, spiffe_id, MeshCa,
    BUILTIN_CA_VALIDITY, DEFAULT_DP_CERT_VALIDITY,
};
