//! Certificate authorities. Today: the CA of a Raft cluster of kuma-cp peers, whose certificates
//! the peers present to each other (mutual TLS on the peer RPC). Mesh CAs and SPIFFE workload
//! identities join with the mTLS issue.
//!
//! No I/O beyond what callers ask for, and never tokio: certificates are plain PEM strings.

mod cluster;

pub use cluster::{CaError, ClusterCa, IssuedCert, PEER_SERVER_NAME};
