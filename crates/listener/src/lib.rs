//! How kuma-cp's servers accept connections: [`TlsIncoming`] turns a TCP listener into a stream of
//! TLS connections for tonic and a listener for axum, each handshake in its own task and bounded in
//! time, so a client that never finishes its handshake holds up nobody. The certificate comes from
//! a [`ServerCert`], which may be set after the server started (a control plane whose CA is not
//! replicated yet refuses handshakes until it is) and replaced while it serves.
//!
//! Knows nothing of Kuma's resources: it depends on no workspace crate.

mod server_cert;
mod tls_incoming;

pub use server_cert::{CertError, ServerCert};
pub use tls_incoming::{tls_server_config, TlsIncoming, HANDSHAKE_TIMEOUT};
