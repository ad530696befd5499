//! How kuma-cp's servers accept connections: [`TlsIncoming`] and [`TcpIncoming`] turn a TCP listener
//! into a stream of connections for tonic and a listener for axum, under a cap on open connections,
//! each TLS handshake in its own task and bounded in time, so a client that never finishes its
//! handshake holds up nobody. The certificate comes from
//! a [`ServerCert`], which may be set after the server started (a control plane whose CA is not
//! replicated yet refuses handshakes until it is) and replaced while it serves.
//!
//! Knows nothing of Kuma's resources: it depends on no workspace crate.

mod accepted;
mod serve_http;
mod server_cert;
mod tls_incoming;

pub use accepted::{Accepted, PeerCertificate};
pub use serve_http::{serve_http, ConnectionInfo, HttpLimits};
pub use server_cert::{CertError, ServerCert};
pub use tls_incoming::{
    tls_server_config, tls_server_config_with_client_certs, ConnectionLimit, TcpIncoming,
    TlsIncoming, HANDSHAKE_TIMEOUT,
};
