//! The life of one ADS stream, shared by both protocol variants: the first request names the
//! dataplane, then requests, config changes and backoff deadlines drive the variant's state
//! machine until the client leaves or the server stops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use futures::channel::mpsc;
use futures::SinkExt;
use futures::StreamExt;
use tokio::time::Instant;
use tonic::{Code, Status, Streaming};
use tracing::{debug, info, warn};

use super::{node_of, Registration, Shared};
use crate::metrics::{StreamApi, XDS};
use crate::node_id::NodeId;
use crate::snapshot::Snapshot;
use crate::status::StreamStatus;

/// A stream's responses on their way to tonic. A bounded channel that allocates per queued
/// message: an idle stream holds no preallocated slots.
pub(super) type Sender<T> = mpsc::Sender<Result<T, Status>>;

/// What differs between state-of-the-world and delta.
pub(super) trait Protocol: Sized + Send + 'static {
    type Request: Send + 'static;
    type Response: Send + 'static;
    /// For logs: `ADS` or `delta ADS`.
    const NAME: &'static str;

    fn node(request: &Self::Request) -> Option<&Node>;

    fn new(node: NodeId, status: StreamStatus, nack_backoff: Duration) -> Self;

    fn status(&self) -> &StreamStatus;

    fn on_request(&mut self, request: Self::Request);

    /// The config changed, or a backoff deadline passed: what is due must be reconsidered.
    fn wake(&mut self) {}

    /// Sends what is due; returns when something held back by the NACK backoff may be sent.
    /// `Err` when the client has gone.
    fn push(
        &mut self,
        snapshot: Option<&Snapshot>,
        tx: &mut Sender<Self::Response>,
    ) -> impl Future<Output = Result<Option<Instant>, ()>> + Send;
}

/// Checks the stream's token for `node`, with the tags its Dataplane has in this peer's view.
/// `Ok(Some(deadline))`: the token expires then (with the allowed clock skew).
async fn authenticate(
    shared: &Shared,
    token: Option<&str>,
    node: &NodeId,
) -> Result<Option<Instant>, Status> {
    let tags = shared.cache.dataplane_tags(node);
    let identity =
        shared.auth.check(token, &node.mesh, &node.name, &tags).await.map_err(|e| e.to_status())?;
    Ok(identity.and_then(|identity| identity.expires_at()).map(|exp| {
        let now = chrono::Utc::now().timestamp();
        let left = exp + kuma_ca::TOKEN_CLOCK_SKEW.as_secs() as i64 - now;
        Instant::now() + Duration::from_secs(left.max(0) as u64 + 1)
    }))
}

pub(super) async fn serve<P: Protocol>(
    api: StreamApi,
    shared: Arc<Shared>,
    mut inbound: Streaming<P::Request>,
    token: Option<String>,
    mut tx: Sender<P::Response>,
) {
    let first = match inbound.next().await {
        Some(Ok(first)) => first,
        _ => return,
    };
    let node = match node_of(P::node(&first)) {
        Ok(node) => node,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut auth_changes = shared.auth.changes();
    let mut expires_at = match authenticate(&shared, token.as_deref(), &node).await {
        Ok(expires_at) => expires_at,
        Err(status) => {
            warn!(dataplane = %node, reason = %status.message(), "{} stream refused", P::NAME);
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut watch = shared.cache.subscribe(&node);
    let _registration = Registration { cache: shared.cache.clone(), node: node.clone() };
    let status = shared.status.open(&node);
    let _connected = XDS.stream_opened(api);
    info!(dataplane = %node, stream = status.id(), "{} stream opened", P::NAME);
    let mut stream = P::new(node.clone(), status, shared.nack_backoff);
    stream.on_request(first);
    let mut stop = shared.stop.clone();
    loop {
        let snapshot = watch.borrow_and_update().clone();
        let Ok(retry_at) = stream.push(snapshot.as_deref(), &mut tx).await else { break };
        tokio::select! {
            // The guard `wait_for` returns is not Send: it must not live in the select's output.
            () = stopped(&mut stop) => break,
            request = inbound.next() => match request {
                Some(Ok(request)) => stream.on_request(request),
                Some(Err(error)) => {
                    debug!(dataplane = %node, %error, "{} stream failed", P::NAME);
                    break;
                }
                None => break,
            },
            changed = watch.changed() => {
                if changed.is_err() {
                    break;
                }
                stream.wake();
            }
            _ = sleep_until(retry_at), if retry_at.is_some() => stream.wake(),
            // A signing key deleted, a token revoked, or the token's time is up: check again,
            // and close the stream at once if it no longer holds.
            Ok(()) = auth_changes.changed() => {
                match authenticate(&shared, token.as_deref(), &node).await {
                    Ok(at) => expires_at = at,
                    // Whoever checks could not answer now: the stream was let in, and stays
                    // until an answer says otherwise.
                    Err(status) if status.code() == Code::Unavailable => {
                        debug!(dataplane = %node, reason = %status.message(), "{} stream kept: its token could not be checked again", P::NAME);
                    }
                    Err(status) => {
                        warn!(dataplane = %node, reason = %status.message(), "{} stream closed: its token no longer holds", P::NAME);
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                }
            }
            _ = sleep_until(expires_at), if expires_at.is_some() => {
                if let Err(status) = authenticate(&shared, token.as_deref(), &node).await {
                    warn!(dataplane = %node, reason = %status.message(), "{} stream closed: its token expired", P::NAME);
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                expires_at = None;
            }
        }
    }
    info!(dataplane = %node, stream = stream.status().id(), "{} stream closed", P::NAME);
}

async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}
