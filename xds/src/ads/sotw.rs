//! One state-of-the-world ADS stream.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use tokio::time::Instant;
use tracing::{debug, warn};

use futures::SinkExt;

use super::stream::{Protocol, Sender};
use super::subscription::Subscription;
use crate::metrics::Delivery;
use crate::node_id::NodeId;
use crate::snapshot::Snapshot;
use crate::status::StreamStatus;
use crate::xds_type::XdsType;

#[derive(Debug, Default)]
struct TypeState {
    requested: bool,
    subscription: Subscription,
    /// A request that must be answered whatever the versions (a stream's first request).
    must_respond: bool,
    sent_version: Option<String>,
    sent_names: Option<BTreeSet<String>>,
    /// For types whose responses may carry only what changed: the version of each resource
    /// sent since the last full response. Emptied when Envoy rejects a response.
    sent_resources: BTreeMap<String, String>,
    nonce: String,
    awaiting_answer: bool,
    /// When Envoy last rejected a response of this type, and which version it rejected.
    rejected: Option<(String, Instant)>,
    delivery: Delivery,
}

pub(super) struct SotwStream {
    node: NodeId,
    status: StreamStatus,
    types: [TypeState; 5],
    nonces: u64,
    nack_backoff: Duration,
}

impl Protocol for SotwStream {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;
    const NAME: &'static str = "ADS";

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(node: NodeId, status: StreamStatus, nack_backoff: Duration) -> SotwStream {
        SotwStream { node, status, types: Default::default(), nonces: 0, nack_backoff }
    }

    fn status(&self) -> &StreamStatus {
        &self.status
    }

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
                        // Envoy dropped the whole response: the next one carries everything.
                        state.sent_resources.clear();
                        state.delivery.answered(kind, false);
                        self.status.rejected(kind);
                    }
                    None => {
                        state.rejected = None;
                        state.delivery.answered(kind, true);
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
        tx: &mut Sender<DiscoveryResponse>,
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
            // Envoy takes a response of these types as an update of the resources it names,
            // not as the whole set (only listeners and clusters must always come whole): once
            // the names are settled, a change sends just the resources that changed.
            let partial = kind.updates_by_name()
                && !state.must_respond
                && state.sent_names.as_ref() == Some(&names)
                && !state.sent_resources.is_empty();
            let sending: Vec<_> = selected
                .iter()
                .filter(|(name, r)| !partial || state.sent_resources.get(*name) != Some(&r.version))
                .collect();
            if partial && sending.is_empty() {
                // Only resources it did not ask for changed.
                state.sent_version = Some(current.version.clone());
                continue;
            }
            if kind.updates_by_name() {
                state.sent_resources =
                    selected.iter().map(|(name, r)| ((*name).clone(), r.version.clone())).collect();
            }
            // A new version of what Envoy already holds carries a store change; the answer to
            // a request (a stream's first, a subscription's change) does not.
            let by_change = !state.must_respond
                && state.sent_version.as_ref().is_some_and(|sent| *sent != current.version);
            self.nonces += 1;
            let response = DiscoveryResponse {
                version_info: current.version.clone(),
                resources: sending.iter().map(|(_, r)| r.resource.clone()).collect(),
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
            state.delivery.sent(snapshot.changed_at().filter(|_| by_change));
            self.status.sent(kind);
        }
        Ok(retry_at)
    }
}
