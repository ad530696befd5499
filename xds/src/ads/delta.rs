//! One incremental (delta) ADS stream: per-resource versions, only what changed, and removals.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, Resource,
};
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
    /// The type's first response is owed even when it would be empty: Envoy waits for it.
    answered: bool,
    subscription: Subscription,
    /// What the client holds, name → version, as far as this stream knows.
    client_versions: HashMap<String, String>,
    /// Explicitly subscribed names that do not exist and were already reported removed.
    reported_absent: BTreeSet<String>,
    /// Names to send even if the client seems to hold them (re-subscribed).
    resend: BTreeSet<String>,
    nonce: String,
    awaiting_answer: bool,
    rejected_at: Option<Instant>,
    delivery: Delivery,
}

pub(super) struct DeltaStream {
    node: NodeId,
    status: StreamStatus,
    types: [TypeState; 5],
    nonces: u64,
    nack_backoff: Duration,
    changed_since_push: bool,
}

impl Protocol for DeltaStream {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;
    const NAME: &'static str = "delta ADS";

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(node: NodeId, status: StreamStatus, nack_backoff: Duration) -> DeltaStream {
        DeltaStream {
            node,
            status,
            types: Default::default(),
            nonces: 0,
            nack_backoff,
            changed_since_push: true,
        }
    }

    fn status(&self) -> &StreamStatus {
        &self.status
    }

    fn wake(&mut self) {
        self.changed_since_push = true;
    }

    fn on_request(&mut self, request: DeltaDiscoveryRequest) {
        let Some(kind) = XdsType::from_type_url(&request.type_url) else {
            debug!(dataplane = %self.node, type_url = %request.type_url, "request for an unknown type ignored");
            return;
        };
        let state = &mut self.types[kind.index()];
        let first = !state.requested;
        state.requested = true;
        if first {
            state.client_versions = request.initial_resource_versions.clone();
        } else {
            // A name subscribed again must be sent again, whatever the client seems to hold.
            state.resend.extend(request.resource_names_subscribe.iter().cloned());
        }
        state.subscription.change(
            &request.resource_names_subscribe,
            &request.resource_names_unsubscribe,
            first,
        );
        for name in &request.resource_names_unsubscribe {
            state.client_versions.remove(name);
            state.reported_absent.remove(name);
        }
        for name in &request.resource_names_subscribe {
            state.reported_absent.remove(name);
        }
        // Subscription changes count even on a stale nonce; ACK/NACK only on the latest one.
        if !request.response_nonce.is_empty()
            && request.response_nonce == state.nonce
            && state.awaiting_answer
        {
            state.awaiting_answer = false;
            match &request.error_detail {
                Some(error) => {
                    warn!(
                        dataplane = %self.node, kind = kind.short_name(),
                        error = %error.message, "Envoy rejected the config"
                    );
                    state.rejected_at = Some(Instant::now());
                    state.delivery.answered(kind, false);
                    self.status.rejected(kind);
                }
                None => {
                    state.rejected_at = None;
                    state.delivery.answered(kind, true);
                    self.status.acknowledged(kind);
                }
            }
        }
        self.changed_since_push = true;
    }

    async fn push(
        &mut self,
        snapshot: Option<&Snapshot>,
        tx: &mut Sender<DeltaDiscoveryResponse>,
    ) -> Result<Option<Instant>, ()> {
        let Some(snapshot) = snapshot else { return Ok(None) };
        if !std::mem::take(&mut self.changed_since_push) {
            return Ok(None);
        }
        let mut retry_at: Option<Instant> = None;
        for kind in XdsType::ALL {
            let state = &mut self.types[kind.index()];
            if !state.requested {
                continue;
            }
            let current = snapshot.get(kind);
            let updates: Vec<Resource> = current
                .resources
                .iter()
                .filter(|(name, r)| {
                    state.subscription.contains(name)
                        && (state.resend.contains(*name)
                            || state.client_versions.get(*name) != Some(&r.version))
                })
                .map(|(name, r)| Resource {
                    name: name.clone(),
                    version: r.version.clone(),
                    resource: Some(r.resource.clone()),
                    ..Default::default()
                })
                .collect();
            let mut removed: Vec<String> = state
                .client_versions
                .keys()
                .filter(|name| !current.resources.contains_key(*name))
                .cloned()
                .collect();
            let absent: Vec<String> = state
                .subscription
                .names
                .iter()
                .filter(|n| {
                    !current.resources.contains_key(*n)
                        && !state.client_versions.contains_key(*n)
                        && !state.reported_absent.contains(*n)
                })
                .cloned()
                .collect();
            removed.extend(absent.iter().cloned());
            removed.sort();
            if updates.is_empty() && removed.is_empty() && state.answered {
                state.resend.clear();
                continue;
            }
            if let Some(at) = state.rejected_at {
                let allowed = at + self.nack_backoff;
                if Instant::now() < allowed {
                    retry_at = Some(retry_at.map_or(allowed, |r| r.min(allowed)));
                    continue;
                }
            }
            // A store change: a new version of, or the removal of, something Envoy holds. What a
            // (re)subscription asks for is no change.
            let by_change = state.answered
                && (removed.iter().any(|name| state.client_versions.contains_key(name))
                    || updates.iter().any(|u| {
                        !state.resend.contains(&u.name)
                            && state.client_versions.get(&u.name).is_some_and(|v| *v != u.version)
                    }));
            self.nonces += 1;
            for update in &updates {
                state.client_versions.insert(update.name.clone(), update.version.clone());
            }
            for name in &removed {
                state.client_versions.remove(name);
            }
            state.reported_absent.extend(absent);
            state.resend.clear();
            state.answered = true;
            state.nonce = self.nonces.to_string();
            state.awaiting_answer = true;
            debug!(
                dataplane = %self.node, kind = kind.short_name(), updated = updates.len(),
                removed = removed.len(), "sending delta"
            );
            let response = DeltaDiscoveryResponse {
                system_version_info: current.version.clone(),
                resources: updates,
                type_url: kind.type_url(),
                removed_resources: removed,
                nonce: state.nonce.clone(),
                ..Default::default()
            };
            if tx.send(Ok(response)).await.is_err() {
                return Err(());
            }
            state.delivery.sent(snapshot.changed_at().filter(|_| by_change));
            self.status.sent(kind);
        }
        Ok(retry_at)
    }
}
