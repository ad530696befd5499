//! `serve_http`: an axum router served over HTTP/1.1 on connections from a [`TcpIncoming`] or a
//! [`TlsIncoming`], with what keeps a slow or idle client from holding a connection: a deadline
//! for a request's headers (a client that trickles them is disconnected), a bound on buffered
//! header bytes, and graceful shutdown.
//!
//! [`TcpIncoming`]: crate::TcpIncoming
//! [`TlsIncoming`]: crate::TlsIncoming

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::ServiceExt;
use tracing::debug;

use crate::accepted::{Accepted, PeerCertificate};

/// Who is on the other end of a request's connection; every request carries it as an extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The leaf certificate (DER) the client presented over TLS, verified against the
    /// configured client CA; `None` on plain HTTP or without one.
    pub client_certificate: Option<Vec<u8>>,
}

/// Bounds on what one HTTP connection may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// A request's headers must arrive within this, counted from when the server starts waiting
    /// for them (so it also ends an idle keep-alive connection).
    pub header_read_timeout: Duration,
    /// Largest buffered request head, in bytes.
    pub max_header_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { header_read_timeout: Duration::from_secs(10), max_header_bytes: 64 * 1024 }
    }
}

/// Serves `router` on `incoming` until `shutdown` completes; connections then finish the request
/// in flight and close.
pub async fn serve_http<L, T>(
    mut incoming: L,
    router: axum::Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()>
where
    L: Listener<Io = Accepted<T>, Addr = SocketAddr>,
    T: AsyncRead + AsyncWrite + PeerCertificate + Unpin + Send + 'static,
{
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (io, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = incoming.accept() => accepted,
        };
        let info =
            ConnectionInfo { peer, client_certificate: io.peer_certificate().map(<[u8]>::to_vec) };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(info.clone());
            router.clone().oneshot(request.map(axum::body::Body::new))
        });
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .serve_connection(TokioIo::new(io), service);
            tokio::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        debug!(%peer, error = %e, "HTTP connection ended");
                    }
                }
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Connections finish their request in flight on their own tasks; the caller bounds the wait.
    stop_tx.closed().await;
    Ok(())
}

/// Waits for the stop signal; `wait_for`'s guard is not Send, so it must not live in a select.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}
