//! Config dumps of connected dataplanes for the HTTP API (`/meshes/{mesh}/dataplanes/{name}/xds`),
//! on every peer: the peer holding the dataplane's xDS stream renders the config it serves that
//! stream; any other peer finds the holder in the dataplane's insight (open subscriptions name
//! their peer's instance id) and forwards the request to that peer's announced API address, with
//! the caller's own credentials and a short timeout.
//!
//! Where peers do not announce their API (a single control plane, Kubernetes replicas, which
//! announce only the Service's xDS address), a dataplane on another peer gets a 503 naming it.

use std::sync::Arc;
use std::time::Duration;

use kuma_api_server::{ConfigDumps, DumpError, DumpRequest, FORWARDED_FROM};
use kuma_model::{DataplaneInsightSpec, ResourceKey, ResourceType};
use kuma_raft::RaftNode;
use kuma_store::{ResourceStore, StoreError};
use kuma_xds::{NodeId, SnapshotCache};
use serde_json::Value;
use tracing::{debug, warn};

/// How long connecting to the holding peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the holding peer may take to answer in all.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(3);
/// Peers tried at most, newest subscription first (an older one may be left open by a peer that
/// died and whose subscriptions the leader has not closed yet).
const MAX_HOLDERS: usize = 3;

/// Who serves what: the API address of a peer, by the instance id it names itself with in
/// DataplaneInsights.
pub trait PeerApis: Send + Sync {
    /// The base URL of `instance_id`'s HTTP API, or why it is not known here.
    fn api_url(&self, instance_id: &str) -> Result<String, String>;
}

/// The peers of a Raft cluster, from what each announced through the log.
pub struct RaftPeerApis(pub Arc<RaftNode>);

impl PeerApis for RaftPeerApis {
    fn api_url(&self, instance_id: &str) -> Result<String, String> {
        self.0
            .replica()
            .peers()
            .values()
            .find(|p| p.instance_id == instance_id)
            .map(|p| p.api_url.clone())
            .filter(|url| !url.is_empty())
            .ok_or_else(|| format!("no peer of this cluster announced instance id {instance_id}"))
    }
}

/// No announced peers: why another control plane cannot be asked from here.
pub struct NoPeerApis(pub &'static str);

impl PeerApis for NoPeerApis {
    fn api_url(&self, _: &str) -> Result<String, String> {
        Err(self.0.to_string())
    }
}

/// The config dumps of a peer whose xDS server keeps its streams' configs in `cache`: on a Raft
/// cluster it forwards to the holding peer; a single control plane and Kubernetes replicas
/// answer for their own streams only.
pub fn config_dumps(
    cache: Arc<SnapshotCache>,
    store: Arc<dyn ResourceStore>,
    instance_id: String,
    raft: Option<&Arc<RaftNode>>,
    on_kubernetes: bool,
) -> Arc<dyn ConfigDumps> {
    let peers: Arc<dyn PeerApis> = match (raft, on_kubernetes) {
        (Some(node), _) => Arc::new(RaftPeerApis(node.clone())),
        (None, true) => Arc::new(NoPeerApis(
            "replicas on Kubernetes do not announce their API addresses: ask that replica \
             directly (kubectl port-forward -n kuma-system pod/POD 5681, POD being the instance \
             id before its ':')",
        )),
        (None, false) => Arc::new(NoPeerApis(
            "this control plane is not part of a Raft cluster, so it knows no other control plane",
        )),
    };
    Arc::new(StreamConfigDumps { cache, store, instance_id, peers })
}

/// The config dumps of a peer that knows the other peers' API addresses from `peers` (the
/// instances sharing a PostgreSQL database).
pub fn config_dumps_with(
    cache: Arc<SnapshotCache>,
    store: Arc<dyn ResourceStore>,
    instance_id: String,
    peers: Arc<dyn PeerApis>,
) -> Arc<dyn ConfigDumps> {
    Arc::new(StreamConfigDumps { cache, store, instance_id, peers })
}

/// kuma-cp's [`ConfigDumps`]: this peer's streams, else the holding peer's.
pub struct StreamConfigDumps {
    pub cache: Arc<SnapshotCache>,
    pub store: Arc<dyn ResourceStore>,
    /// This peer's instance id, as its subscriptions name it.
    pub instance_id: String,
    pub peers: Arc<dyn PeerApis>,
}

#[async_trait::async_trait]
impl ConfigDumps for StreamConfigDumps {
    async fn config_dump(&self, request: DumpRequest) -> Result<Value, DumpError> {
        let node = NodeId::new(&request.mesh, &request.name);
        if let Some(config) = self.cache.current_config(&node) {
            return kuma_xds::config_dump(&config).map_err(|e| DumpError::Internal(e.to_string()));
        }
        let (mesh, name) = (request.mesh.clone(), request.name.clone());
        if request.forwarded_from.is_some() {
            return Err(DumpError::NotConnectedHere {
                mesh,
                name,
                instance_id: self.instance_id.clone(),
            });
        }
        let insight = self.insight(&mesh, &name).await?;
        let mut holders = holders(&insight);
        holders.retain(|h| *h != self.instance_id);
        // A holder that was unreachable or refused wins over one that no longer holds the stream.
        let mut failure = None;
        for peer in holders.iter().take(MAX_HOLDERS) {
            match self.forward(peer, &request).await {
                Ok(dump) => return Ok(dump),
                Err(DumpError::NotConnectedHere { .. }) => {
                    debug!(%peer, %mesh, dataplane = %name, "the peer no longer holds the stream")
                }
                Err(e @ DumpError::PeerAnswered { status: 401 | 403, .. }) => return Err(e),
                Err(e) => {
                    warn!(%peer, %mesh, dataplane = %name, error = %e, "could not forward a config dump request");
                    failure.get_or_insert(e);
                }
            }
        }
        Err(failure.unwrap_or(DumpError::NotConnected { mesh, name }))
    }
}

impl StreamConfigDumps {
    async fn insight(&self, mesh: &str, name: &str) -> Result<DataplaneInsightSpec, DumpError> {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, mesh, name);
        match self.store.get(&key).await {
            Ok(resource) => Ok(resource.spec.as_dataplane_insight().cloned().unwrap_or_default()),
            Err(StoreError::NotFound { .. }) => Ok(DataplaneInsightSpec::default()),
            Err(e) => {
                Err(DumpError::Internal(format!("reading the insight of {mesh}/{name}: {e}")))
            }
        }
    }

    /// Asks `peer` for the dump, as the caller asked this peer.
    async fn forward(&self, peer: &str, request: &DumpRequest) -> Result<Value, DumpError> {
        let unavailable = |reason: String| DumpError::PeerUnavailable {
            mesh: request.mesh.clone(),
            name: request.name.clone(),
            peer: peer.to_string(),
            reason,
        };
        let base = self.peers.api_url(peer).map_err(unavailable)?;
        let mut url = reqwest::Url::parse(&base).map_err(|e| {
            unavailable(format!("its announced API address {base:?} is not a URL: {e}"))
        })?;
        if request.over_tls && url.scheme() == "http" && !is_loopback(&url) {
            return Err(unavailable(format!(
                "its announced API address {base} is plain HTTP and this request came over \
                 HTTPS, so its credentials are not passed on in clear text"
            )));
        }
        url.path_segments_mut()
            .map_err(|()| unavailable(format!("its announced API address {base:?} has no path")))?
            .pop_if_empty()
            .extend(["meshes", &request.mesh, "dataplanes", &request.name, "xds"]);
        // The Dataplane was read consistently here; the holder need not ask its leader again.
        url.set_query(Some("consistency=stale"));
        let client = self.client(url.scheme() == "https").await.map_err(unavailable)?;
        let mut call = client.get(url.clone()).header(FORWARDED_FROM, &self.instance_id);
        if let Some(authorization) = &request.authorization {
            call = call.header(reqwest::header::AUTHORIZATION, authorization);
        }
        debug!(%peer, %url, "forwarding a config dump request");
        let response = call.send().await.map_err(|e| unavailable(reason_of(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| unavailable(reason_of(&e)))?;
        if status.is_success() {
            return serde_json::from_str(&body)
                .map_err(|e| unavailable(format!("its answer is not JSON: {e}")));
        }
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(DumpError::NotConnectedHere {
                mesh: request.mesh.clone(),
                name: request.name.clone(),
                instance_id: peer.to_string(),
            });
        }
        Err(DumpError::PeerAnswered {
            mesh: request.mesh.clone(),
            name: request.name.clone(),
            peer: peer.to_string(),
            status: status.as_u16(),
            details: DumpError::details_of(&body),
        })
    }

    /// A client for one forward; over HTTPS it trusts the control plane's CA, which issues the
    /// peers' API certificates unless the operator gave their own.
    async fn client(&self, tls: bool) -> Result<reqwest::Client, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if tls {
            let ca = kuma_xds::control_plane_ca(self.store.as_ref())
                .await
                .map_err(|e| format!("the control plane's CA could not be read: {e}"))?
                .ok_or("the control plane's CA does not exist yet")?;
            let certificate = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes())
                .map_err(|e| format!("the control plane's CA: {e}"))?;
            builder = builder.add_root_certificate(certificate);
        }
        builder.build().map_err(|e| format!("no HTTP client: {e}"))
    }
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A transport error with its causes, in one line.
fn reason_of(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        return format!("no answer within {}s", FORWARD_TIMEOUT.as_secs());
    }
    let mut reason = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        reason.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    reason
}

/// The peers holding an open subscription of the dataplane, newest first, each once.
fn holders(insight: &DataplaneInsightSpec) -> Vec<String> {
    let mut open: Vec<_> = insight
        .subscriptions
        .iter()
        .filter(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
        .filter(|s| !s.control_plane_instance_id.is_empty())
        .collect();
    open.sort_by_key(|s| std::cmp::Reverse(s.connect_time));
    let mut peers: Vec<String> = Vec::new();
    for s in open {
        if !peers.contains(&s.control_plane_instance_id) {
            peers.push(s.control_plane_instance_id.clone());
        }
    }
    peers
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use kuma_model::DiscoverySubscription;

    fn subscription(
        peer: &str,
        connected: i64,
        disconnected: Option<i64>,
    ) -> DiscoverySubscription {
        let at = |s: i64| Utc.timestamp_opt(1_800_000_000 + s, 0).single();
        DiscoverySubscription {
            control_plane_instance_id: peer.into(),
            connect_time: at(connected),
            disconnect_time: disconnected.and_then(at),
            ..Default::default()
        }
    }

    #[test]
    fn holders_are_the_peers_of_open_subscriptions_newest_first_each_once() {
        let insight = DataplaneInsightSpec {
            subscriptions: vec![
                subscription("cp-1", 10, Some(20)),
                subscription("cp-2", 30, None),
                subscription("cp-3", 40, None),
                subscription("cp-2", 50, None),
                subscription("", 60, None),
            ],
            ..Default::default()
        };
        assert_eq!(holders(&insight), ["cp-2", "cp-3"]);
        assert!(holders(&DataplaneInsightSpec::default()).is_empty());
    }

    #[test]
    fn only_loopback_addresses_count_as_this_host() {
        let loopback = |u: &str| is_loopback(&reqwest::Url::parse(u).unwrap());
        assert!(loopback("http://127.0.0.1:5681") && loopback("http://localhost:5681"));
        assert!(loopback("http://[::1]:5681"));
        assert!(!loopback("http://10.0.0.2:5681") && !loopback("http://cp-2.example:5681"));
    }
}
