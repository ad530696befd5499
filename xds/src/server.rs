//! `XdsServer`: the snapshot cache fed by the store, the ADS gRPC server and the status flusher,
//! started and stopped together.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryServiceServer;
use kuma_listener::{tls_server_config, ConnectionLimit, ServerCert, TcpIncoming, TlsIncoming};
use kuma_store::ResourceStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::ads::{AdsServer, AdsService, SdsService, Shared};
use crate::auth::DataplaneAuth;
use crate::cache::{ConfigHook, SnapshotCache};
use crate::config::XdsServerConfig;
use crate::status::StatusTracker;

/// How long open streams get to finish after shutdown was asked for.
const DRAIN: Duration = Duration::from_secs(2);
/// gRPC messages Envoy may send us (NACK details can be long).
const MAX_REQUEST_BYTES: usize = 16 * 1024 * 1024;
/// Streams one connection may have open at once (ADS and SDS).
const MAX_STREAMS_PER_CONNECTION: u32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum XdsError {
    #[error("xDS server failed")]
    Transport(#[from] tonic::transport::Error),
}

/// One peer's xDS server.
pub struct XdsServer {
    store: Arc<dyn ResourceStore>,
    config: XdsServerConfig,
    cache: Arc<SnapshotCache>,
    status: Arc<StatusTracker>,
    auth: Arc<DataplaneAuth>,
    /// The certificate ADS is served with; plain gRPC without one.
    tls: Option<Arc<ServerCert>>,
    /// The SDS server's listener and certificate (SDS is always TLS), when it is to be served.
    sds: Option<(TcpListener, Arc<ServerCert>)>,
}

impl std::fmt::Debug for XdsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdsServer").field("config", &self.config).finish()
    }
}

impl XdsServer {
    /// `instance_id` names this peer in DataplaneInsights; `auth` checks every stream's token.
    pub fn new(
        store: Arc<dyn ResourceStore>,
        config: XdsServerConfig,
        instance_id: String,
        auth: Arc<DataplaneAuth>,
        hook: Option<ConfigHook>,
    ) -> XdsServer {
        let cache = Arc::new(SnapshotCache::new(hook));
        let status = Arc::new(StatusTracker::new(store.clone(), cache.clone(), instance_id));
        XdsServer { store, config, cache, status, auth, tls: None, sds: None }
    }

    /// Serves ADS over TLS with `cert` instead of plain gRPC.
    pub fn with_tls(mut self, cert: Arc<ServerCert>) -> XdsServer {
        self.tls = Some(cert);
        self
    }

    /// Also serves SDS (gRPC over TLS with `cert`) on `listener`, from the same cache.
    pub fn with_sds(mut self, listener: TcpListener, cert: Arc<ServerCert>) -> XdsServer {
        self.sds = Some((listener, cert));
        self
    }

    /// The cache, for diagnostics and tests.
    pub fn cache(&self) -> Arc<SnapshotCache> {
        self.cache.clone()
    }

    /// Serves ADS on `listener` until `shutdown` resolves, then closes every stream and writes
    /// the dataplanes' status one last time.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), XdsError> {
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let sync = tokio::spawn(crate::sync::run(
            self.store.clone(),
            self.cache.clone(),
            self.auth.clone(),
            self.config.push_debounce,
            stopped(stop_rx.clone()),
        ));
        let rotation =
            tokio::spawn(rotate_certificates(self.cache.clone(), stopped(stop_rx.clone())));
        let (status_stop_tx, status_stop_rx) = watch::channel(false);
        let status = tokio::spawn(
            self.status
                .clone()
                .run(self.config.dataplane_status_flush_interval, stopped(status_stop_rx)),
        );
        let shared = Arc::new(Shared {
            cache: self.cache.clone(),
            status: self.status.clone(),
            auth: self.auth.clone(),
            nack_backoff: self.config.nack_backoff,
            stop: stop_rx.clone(),
        });
        let sds = match self.sds {
            Some((listener, cert)) => {
                let service = SecretDiscoveryServiceServer::new(SdsService::new(shared.clone()))
                    .max_decoding_message_size(MAX_REQUEST_BYTES);
                info!(address = ?listener.local_addr().ok(), "SDS server listening");
                let mut sds_stop = stop_rx.clone();
                let config = tls_server_config(cert, &[b"h2"]);
                let incoming = TlsIncoming::new(listener, config, ConnectionLimit::FLEET);
                let server = tonic::transport::Server::builder()
                    .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
                    .add_service(service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = sds_stop.wait_for(|stop| *stop).await;
                    });
                Some(tokio::spawn(server))
            }
            None => None,
        };
        let service = AdsServer::new(AdsService::new(shared), MAX_REQUEST_BYTES);
        info!(address = ?listener.local_addr().ok(), tls = self.tls.is_some(), "xDS server listening");
        let mut grpc_stop = stop_rx.clone();
        let drained_signal = async move {
            let _ = grpc_stop.wait_for(|stop| *stop).await;
            // Streams end on the same signal; give them a moment to say goodbye.
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(15)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // One Envoy opens one ADS stream; a client opening thousands on one connection is not
            // a dataplane.
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .add_service(service);
        let result: std::pin::Pin<
            Box<dyn Future<Output = Result<(), tonic::transport::Error>> + Send>,
        > = match self.tls {
            Some(cert) => Box::pin(builder.serve_with_incoming_shutdown(
                TlsIncoming::new(
                    listener,
                    tls_server_config(cert, &[b"h2"]),
                    ConnectionLimit::FLEET,
                ),
                drained_signal,
            )),
            // Accepted sockets get TCP_NODELAY: small RPCs must not wait for Nagle's algorithm.
            None => Box::pin(builder.serve_with_incoming_shutdown(
                TcpIncoming::new(listener, ConnectionLimit::FLEET),
                drained_signal,
            )),
        };
        // Graceful shutdown waits for open streams; a stream stuck on a slow client must not
        // hold up the process, so draining is bounded once the stop signal came.
        let mut drain_stop = stop_rx.clone();
        let drained = async move {
            let _ = drain_stop.wait_for(|stop| *stop).await;
            tokio::time::sleep(DRAIN).await;
        };
        let result = tokio::select! {
            result = result => result,
            _ = drained => Ok(()),
        };
        let _ = sync.await;
        let _ = rotation.await;
        if let Some(sds) = sds {
            sds.abort();
            let _ = sds.await;
        }
        let _ = status_stop_tx.send(true);
        let _ = status.await;
        result.map_err(XdsError::from)
    }
}

/// How often identity certificates are checked for rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(1);

/// Replaces identity certificates that reached 4/5 of their lifetime, until `shutdown`.
async fn rotate_certificates(cache: Arc<SnapshotCache>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(ROTATION_CHECK) => cache.rotate_due(),
        }
    }
}
