//! `TlsIncoming` and `TcpIncoming`: connections accepted from a TCP listener under a cap on how
//! many are open at once; TLS handshakes run concurrently, each bounded in time.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::accepted::{Accepted, PerIp};
use crate::server_cert::{CertError, ServerCert};

/// A client has this long to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Finished handshakes waiting for the server to take them.
const READY_QUEUE: usize = 64;

/// How many connections a listener keeps open at once: past `total`, new clients wait in the
/// kernel's backlog until one closes, so file descriptors and per-connection memory stay bounded;
/// past `per_ip` from one address, that address's new connections are closed at once, so one
/// host cannot take every place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimit {
    pub total: usize,
    pub per_ip: usize,
}

impl ConnectionLimit {
    /// For servers a whole fleet of dataplanes connects to (behind NAT, many share an address).
    pub const FLEET: ConnectionLimit = ConnectionLimit { total: 20_000, per_ip: 20_000 };
    /// For the bootstrap server: short requests, so one address rarely needs many at once.
    pub const BOOTSTRAP: ConnectionLimit = ConnectionLimit { total: 20_000, per_ip: 256 };
    /// For the operators' API.
    pub const API: ConnectionLimit = ConnectionLimit { total: 1024, per_ip: 64 };
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A TLS server configuration presenting `cert`, offering `alpn` (e.g. `h2` for gRPC).
pub fn tls_server_config(cert: Arc<ServerCert>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Like [`tls_server_config`], and clients may present a certificate, which must then be signed
/// by a CA of `client_ca_pem`; clients without one are still accepted (they authenticate
/// otherwise, or not at all).
pub fn tls_server_config_with_client_certs(
    cert: Arc<ServerCert>,
    alpn: &[&[u8]],
    client_ca_pem: &str,
) -> Result<Arc<ServerConfig>, CertError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for ca in rustls::pki_types::CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
        let ca = ca.map_err(|e| CertError::Certificate(e.to_string()))?;
        roots.add(ca).map_err(|e| CertError::Certificate(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(CertError::NoCertificate);
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .allow_unauthenticated()
        .build()
        .map_err(|e| CertError::Certificate(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(cert);
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// TLS connections of one listener. Dropping it stops accepting.
#[derive(Debug)]
pub struct TlsIncoming {
    ready: mpsc::Receiver<(Accepted<TlsStream<TcpStream>>, SocketAddr)>,
    local_addr: io::Result<SocketAddr>,
}

impl TlsIncoming {
    /// Starts accepting on `listener`, at most `limit` connections at once; each handshake runs
    /// in its own task, bounded by [`HANDSHAKE_TIMEOUT`]. Failed handshakes are logged at debug
    /// level and dropped.
    pub fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        limit: ConnectionLimit,
    ) -> TlsIncoming {
        let local_addr = listener.local_addr();
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), limit, tx));
        TlsIncoming { ready, local_addr }
    }
}

/// Plain TCP connections of one listener (TCP_NODELAY set). Dropping it stops accepting.
#[derive(Debug)]
pub struct TcpIncoming {
    ready: mpsc::Receiver<(Accepted<TcpStream>, SocketAddr)>,
    local_addr: io::Result<SocketAddr>,
}

impl TcpIncoming {
    /// Starts accepting on `listener`, at most `limit` connections at once.
    pub fn new(listener: TcpListener, limit: ConnectionLimit) -> TcpIncoming {
        let local_addr = listener.local_addr();
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        tokio::spawn(accept_loop(listener, Plain, limit, tx));
        TcpIncoming { ready, local_addr }
    }
}

/// What happens to an accepted socket before the server gets it.
trait Handshake: Clone + Send + Sync + 'static {
    type Stream: Send + 'static;
    fn handshake(
        &self,
        tcp: TcpStream,
        peer: SocketAddr,
    ) -> impl std::future::Future<Output = Option<Self::Stream>> + Send;
}

/// Nothing: plain TCP.
#[derive(Clone)]
struct Plain;

impl Handshake for Plain {
    type Stream = TcpStream;
    async fn handshake(&self, tcp: TcpStream, _peer: SocketAddr) -> Option<TcpStream> {
        Some(tcp)
    }
}

impl Handshake for TlsAcceptor {
    type Stream = TlsStream<TcpStream>;
    async fn handshake(&self, tcp: TcpStream, peer: SocketAddr) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, self.accept(tcp)).await {
            Ok(Ok(tls)) => Some(tls),
            Ok(Err(e)) => {
                debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }
}

/// Accepts under the cap; each handshake in its own task, so a slow one holds up nobody.
async fn accept_loop<H: Handshake>(
    listener: TcpListener,
    handshake: H,
    limit: ConnectionLimit,
    tx: mpsc::Sender<(Accepted<H::Stream>, SocketAddr)>,
) {
    let permits = Arc::new(Semaphore::new(limit.total.max(1)));
    let per_ip = PerIp::default();
    let mut warned = false;
    loop {
        let permit = tokio::select! {
            _ = tx.closed() => return,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        if permits.available_permits() == 0 {
            if !warned {
                warn!(limit = limit.total, address = ?listener.local_addr().ok(), "connection limit reached: new clients wait until others close");
                warned = true;
            }
        } else if permits.available_permits() > limit.total / 2 {
            warned = false;
        }
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = per_ip.take(peer.ip(), limit.per_ip) else {
            debug!(%peer, limit = limit.per_ip, "too many connections from one address: closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (tx, handshake) = (tx.clone(), handshake.clone());
        tokio::spawn(async move {
            if let Some(stream) = handshake.handshake(tcp, peer).await {
                let _ = tx.send((Accepted::new(stream, permit, slot), peer)).await;
            }
        });
    }
}

/// The stream tonic serves and the listener axum serves, for both kinds.
macro_rules! incoming {
    ($incoming:ty, $stream:ty) => {
        impl Stream for $incoming {
            type Item = io::Result<Accepted<$stream>>;

            fn poll_next(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Self::Item>> {
                self.ready.poll_recv(cx).map(|next| next.map(|(stream, _)| Ok(stream)))
            }
        }

        impl axum::serve::Listener for $incoming {
            type Io = Accepted<$stream>;
            type Addr = SocketAddr;

            async fn accept(&mut self) -> (Self::Io, Self::Addr) {
                match self.ready.recv().await {
                    Some(next) => next,
                    // The accept loop only ends when this listener is dropped.
                    None => std::future::pending().await,
                }
            }

            fn local_addr(&self) -> io::Result<Self::Addr> {
                match &self.local_addr {
                    Ok(addr) => Ok(*addr),
                    Err(e) => Err(io::Error::new(e.kind(), e.to_string())),
                }
            }
        }
    };
}

incoming!(TlsIncoming, TlsStream<TcpStream>);
incoming!(TcpIncoming, TcpStream);

#[cfg(test)]
#[path = "tls_incoming_tests.rs"]
mod tests;
