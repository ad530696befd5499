//! MADS, Kuma's Monitoring Assignment Discovery Service (`monitoringAssignmentServer`, port
//! 5676): a gRPC state-of-the-world xDS stream of [`MonitoringAssignment`]s, one per dataplane
//! whose Envoy serves metrics, which kuma-prometheus-sd turns into Prometheus `file_sd` targets.
//! Kuma's `v1` API, and `v1alpha1` (Kuma 0.4-0.5's kuma-prometheus-sd) from the same assignments.
//!
//! Pushed, not polled: one task per server follows the store's change feed (Meshes and
//! Dataplanes), and every stream is answered again as soon as the set of assignments changes and
//! the client has acknowledged the previous answer. Every peer serves it from its own store.
//!
//! Operators authenticate as on the HTTP API: a user token (viewer or admin) as
//! `authorization: Bearer` metadata, or, when loopback counts as admin, a connection from this
//! host with no token.

mod assignments;
mod proto;
mod service;

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use envoy_types::pb::google::protobuf::Any;
use futures::StreamExt;
use kuma_listener::{tls_server_config, ConnectionLimit, ServerCert, TcpIncoming, TlsIncoming};
use kuma_model::ResourceType;
use kuma_store::{ResourceStore, StoreError};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

pub use assignments::{as_v1alpha1, assignment, sanitize_label, Inventory};
pub use proto::{v1alpha1, MonitoringAssignment, Target, SERVICE, STREAM_PATH, TYPE_URL};

use crate::server::XdsError;

/// Changes arriving within this window after the first are answered together.
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Wait before listing again after the store failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// Streams one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// Checks operators' user tokens; kuma-cp supplies it (the signing keys are in its store).
#[async_trait::async_trait]
pub trait OperatorTokens: Send + Sync {
    /// The name of the user a token proves, or why it proves nothing (a message for the client).
    async fn authenticate(&self, token: &str) -> Result<String, String>;
}

/// The assignments as last published: what every stream answers with.
#[derive(Debug)]
pub(crate) struct Published {
    /// Changes whenever the content does (a hash of it), so a client that reconnects with the
    /// version it has is not sent the same again.
    pub version: String,
    pub resources: Vec<Any>,
    assignments: Vec<MonitoringAssignment>,
    /// The same assignments for v1alpha1 clients, encoded when the first one asks: most
    /// deployments have none, and at 10,000 dataplanes the encoding is as long as v1's.
    v1alpha1: OnceLock<Vec<Any>>,
}

impl Published {
    fn of(assignments: Vec<MonitoringAssignment>) -> Published {
        let resources: Vec<Any> = assignments
            .iter()
            .map(|a| Any { type_url: TYPE_URL.to_string(), value: a.encode_to_vec() })
            .collect();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for resource in &resources {
            for byte in resource.value.iter().chain(&[0xff]) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        Published {
            version: format!("{hash:016x}"),
            resources,
            assignments,
            v1alpha1: OnceLock::new(),
        }
    }

    /// The assignments as v1alpha1 resources.
    pub fn v1alpha1(&self) -> &[Any] {
        self.v1alpha1.get_or_init(|| {
            self.assignments
                .iter()
                .flat_map(as_v1alpha1)
                .map(|a| Any { type_url: v1alpha1::TYPE_URL.to_string(), value: a.encode_to_vec() })
                .collect()
        })
    }
}

/// Who may open a stream.
#[derive(Clone)]
pub(crate) struct Access {
    pub tokens: Option<Arc<dyn OperatorTokens>>,
    pub localhost_is_admin: bool,
}

/// One peer's MADS server.
pub struct MadsServer {
    store: Arc<dyn ResourceStore>,
    access: Access,
    tls: Option<Arc<ServerCert>>,
}

impl std::fmt::Debug for MadsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MadsServer").field("tls", &self.tls.is_some()).finish()
    }
}

impl MadsServer {
    /// Answers from `store`; user tokens are checked by `tokens`, and a client on this host
    /// without a token is let in when `localhost_is_admin`.
    pub fn new(
        store: Arc<dyn ResourceStore>,
        tokens: Option<Arc<dyn OperatorTokens>>,
        localhost_is_admin: bool,
    ) -> MadsServer {
        MadsServer { store, access: Access { tokens, localhost_is_admin }, tls: None }
    }

    /// Serves over TLS with `cert` instead of plain gRPC.
    pub fn with_tls(mut self, cert: Arc<ServerCert>) -> MadsServer {
        self.tls = Some(cert);
        self
    }

    /// Serves on `listener` until `shutdown` resolves.
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
        let (published_tx, published_rx) = watch::channel(None);
        let follower = tokio::spawn(follow(self.store.clone(), published_tx, stop_rx.clone()));
        let service = service::MadsService::new(published_rx, self.access, stop_rx.clone());
        let legacy = service::MadsV1Alpha1(service.clone());
        info!(address = ?listener.local_addr().ok(), tls = self.tls.is_some(), "MADS server listening");
        let builder = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(15)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
            .add_service(service)
            .add_service(legacy);
        let mut grpc_stop = stop_rx.clone();
        let stopped = async move {
            let _ = grpc_stop.wait_for(|stop| *stop).await;
        };
        let result = match self.tls {
            Some(cert) => {
                let config = tls_server_config(cert, &[b"h2"]);
                let incoming = TlsIncoming::new(listener, config, ConnectionLimit::FLEET);
                builder.serve_with_incoming_shutdown(incoming, stopped).await
            }
            None => {
                let incoming = TcpIncoming::new(listener, ConnectionLimit::FLEET);
                builder.serve_with_incoming_shutdown(incoming, stopped).await
            }
        };
        follower.abort();
        let _ = follower.await;
        result.map_err(XdsError::from)
    }
}

/// Keeps `published` in step with the store until `stop`.
async fn follow(
    store: Arc<dyn ResourceStore>,
    published: watch::Sender<Option<Arc<Published>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            result = follow_once(store.as_ref(), &published) => {
                if let Err(error) = result {
                    warn!(%error, "MADS view of the store lost; listing again");
                }
            }
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(RETRY_DELAY) => {}
        }
    }
}

/// Lists the Meshes and Dataplanes, then follows the change feed until it fails.
async fn follow_once(
    store: &dyn ResourceStore,
    published: &watch::Sender<Option<Arc<Published>>>,
) -> Result<(), StoreError> {
    // Watching before listing: a change that raced the listing is applied again on top of it.
    let mut feed = store.watch(None).await?;
    let mut inventory = Inventory::default();
    for kind in [ResourceType::Mesh, ResourceType::Dataplane] {
        for resource in kuma_store::list_all(store, kind, None).await? {
            inventory.apply(&resource.key, Some(&resource));
        }
    }
    publish(published, &inventory);
    let ended = || StoreError::Unavailable { reason: "the store's change feed ended".to_string() };
    loop {
        let event = feed.next().await.ok_or_else(ended)??;
        let mut relevant = inventory.apply(&event.key, event.resource.as_deref());
        let quiet = tokio::time::Instant::now() + DEBOUNCE;
        while let Ok(next) = tokio::time::timeout_at(quiet, feed.next()).await {
            let event = next.ok_or_else(ended)??;
            relevant |= inventory.apply(&event.key, event.resource.as_deref());
        }
        if relevant {
            publish(published, &inventory);
        }
    }
}

/// Publishes the inventory's assignments, unless they are the ones already published.
fn publish(published: &watch::Sender<Option<Arc<Published>>>, inventory: &Inventory) {
    let next = Published::of(inventory.assignments());
    let count = next.resources.len();
    published.send_if_modified(|current| {
        if current.as_ref().is_some_and(|c| c.version == next.version) {
            return false;
        }
        debug!(version = %next.version, assignments = count, "MADS assignments changed");
        *current = Some(Arc::new(next));
        true
    });
}
