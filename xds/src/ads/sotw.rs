//! One state-of-the-world ADS stream.

use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Status, Streaming};
use tracing::{debug, info, warn};

use super::subscription::Subscription;
use super::{node_of, Registration, Shared};
use crate::cache::NodeWatch;
use crate::node_id::NodeId;
use crate::snapshot::Snapshot;
use crate::status::StreamStatus;
use crate::xds_type::XdsType;

type Sender = mpsc::Sender<Result<DiscoveryResponse, Status>>;

#[derive(Debug, Default)]
struct TypeState {
    requested: bool,
    subscription: Subscription,
    /// A request that must be answered whatever the versions (a stream's first request).
    must_respond: bool,
    sent_version: Option<String>,
    sent_names: Option<BTreeSet<String>>,
    nonce: String,
    awaiting_answer: bool,
    /// When Envoy last rejected a response of this type, and which version it rejected.
    rejected: Option<(String, Instant)>,
}

struct SotwStream {
    node: NodeId,
    status: StreamStatus,
    types: [TypeState; 5],
    nonces: u64,
    nack_backoff: std::time::Duration,
}

pub(super) async fn run(shared: Arc<Shared>, mut inbound: Streaming<DiscoveryRequest>, tx: Sender) {
    let first = match inbound.next().await {
        Some(Ok(first)) => first,
        _ => return,
    };
    let node = match node_of(first.node.as_ref()) {
        Ok(node) => node,
        Err(status) => {
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    let mut watch: NodeWatch = shared.cache.subscribe(&node);
    let _registration = Registration { cache: shared.cache.clone(), node: node.clone() };
    let status = shared.status.open(&node);
    info!(dataplane = %node, stream = status.id(), "ADS stream opened");
    let mut stream = SotwStream {
        node,
        status,
        types: Default::default(),
        nonces: 0,
        nack_backoff: shared.nack_backoff,
    };
    stream.on_request(first);
    let mut stop = shared.stop.clone();
    loop {
        let snapshot = watch.borrow_and_update().clone();
        let retry_at = match stream.push(snapshot.as_deref(), &tx).await {
            Ok(retry_at) => retry_at,
            Err(()) => break,
        };
        tokio::select! {
            _ = stop.wait_for(|stop| *stop) => break,
            request = inbound.next() => match request {
                Some(Ok(request)) => stream.on_request(request),
                Some(Err(error)) => {
                    debug!(dataplane = %stream.node, %error, "ADS stream failed");
                    break;
                }
                None => break,
            },
            changed = watch.changed() => if changed.is_err() { break },
            _ = sleep_until(retry_at), if retry_at.is_some() => {}
        }
    }
    info!(dataplane = %stream.node, stream = stream.status.id(), "ADS stream closed");
}

pub(super) async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

impl SotwStream {
    fn on_request(&mut self, request: DiscoveryRequest) {
        let Some(kind) = XdsType::from_type_url(&request.type_url) else {
            debug!(dataplane = %self.node, type_url = %request.type_url, "request for an unknown type ignored");
            return;
        };
        let state = &mut self.types[kind.index()];
        if !request.response_nonce.is_empty() {
            if request.response_nonce != state.nonce {
                // Superseded by a response the client has not seen yet; its answer will come.
                debug!(dataplane = %self.node, kind = kind.short_name(), "stale nonce ignored");
                return;
            }
            if state.awaiting_answer {
                state.awaiting_answer = false;
                match &request.error_detail {
                    Some(error) => {
                        let version = state.sent_version.clone().unwrap_or_default();
                        warn!(
                            dataplane = %self.node, kind = kind.short_name(), %version,
                            error = %error.message, "Envoy rejected the config"
                        );
                        state.rejected = Some((version, Instant::now()));
                        self.status.rejected(kind);
                    }
                    None => {
                        state.rejected = None;
                        self.status.acknowledged(kind);
                    }
                }
            }
        } else {
            state.must_respond = true;
        }
        state.requested = true;
        state.subscription.replace(&request.resource_names);
    }

    /// Sends every type that is due, in push order; returns when a type held back by the NACK
    /// backoff may be sent. `Err` when the client has gone.
    async fn push(
        &mut self,
        snapshot: Option<&Snapshot>,
        tx: &Sender,
    ) -> Result<Option<Instant>, ()> {
        let Some(snapshot) = snapshot else { return Ok(None) };
        let mut retry_at: Option<Instant> = None;
        for kind in XdsType::ALL {
            let state = &mut self.types[kind.index()];
            if !state.requested {
                continue;
            }
            let current = snapshot.get(kind);
            let selected: Vec<_> = current
                .resources
                .iter()
                .filter(|(name, _)| state.subscription.contains(name))
                .collect();
            let names: BTreeSet<String> = selected.iter().map(|(n, _)| (*n).clone()).collect();
            let changed = state.sent_version.as_deref() != Some(current.version.as_str())
                || state.sent_names.as_ref() != Some(&names);
            if !state.must_respond && !changed {
                continue;
            }
            if let Some((rejected_version, at)) = &state.rejected {
                if !state.must_respond && *rejected_version == current.version {
                    continue;
                }
                let allowed = *at + self.nack_backoff;
                if !state.must_respond && Instant::now() < allowed {
                    retry_at = Some(retry_at.map_or(allowed, |r| r.min(allowed)));
                    continue;
                }
            }
            self.nonces += 1;
            let response = DiscoveryResponse {
                version_info: current.version.clone(),
                resources: selected.iter().map(|(_, r)| r.resource.clone()).collect(),
                type_url: kind.type_url(),
                nonce: self.nonces.to_string(),
                ..Default::default()
            };
            state.nonce = response.nonce.clone();
            state.sent_version = Some(current.version.clone());
            state.sent_names = Some(names);
            state.must_respond = false;
            state.awaiting_answer = true;
            debug!(
                dataplane = %self.node, kind = kind.short_name(), version = %current.version,
                resources = response.resources.len(), "sending"
            );
            if tx.send(Ok(response)).await.is_err() {
                return Err(());
            }
            self.status.sent(kind);
        }
        Ok(retry_at)
    }
}
