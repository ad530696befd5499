//! One simulated Envoy: a state-of-the-world ADS stream on its own gRPC connection that requests
//! and ACKs like Envoy does (CDS with the node first, EDS for the EDS clusters it got, then LDS),
//! and reports what it ACKed, with when.
//!
//! Thousands of them run in one load process, so each is kept cheap: the token is one shared
//! metadata value, the TLS settings are the caller's one `Endpoint`, and an EDS response is only
//! decoded as far as the cluster names until the watched cluster is found.

use std::collections::BTreeSet;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::Channel;

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// Requests queued before the stream task waits for gRPC to take them.
const REQUEST_BUFFER: usize = 8;

/// Something a stream did, with the instant it did it.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// Index of the stream (and of its dataplane).
    pub stream: usize,
    pub at: Instant,
    pub kind: StreamEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEventKind {
    /// The first CDS, EDS and LDS responses have all been ACKed (sent once per stream).
    Ready,
    /// An EDS response holding the watched cluster was ACKed, with this many endpoints in it.
    EndpointsAcked { watched_endpoints: usize },
    /// The stream failed or the control plane ended it; nothing follows.
    Ended { reason: String },
}

/// What one stream acknowledged last, per type.
#[derive(Debug, Default)]
struct Acked {
    cds: bool,
    eds: bool,
    lds: bool,
    eds_version: String,
    eds_nonce: String,
}

/// An ADS client that behaves like one Envoy.
#[derive(Debug)]
pub struct SimulatedEnvoy {
    stream: usize,
    node_id: String,
    /// The EDS cluster whose endpoints are counted in [`StreamEventKind::EndpointsAcked`].
    watched_cluster: String,
    /// Sent as gRPC metadata `authorization`, as Envoy does with the token its bootstrap holds
    /// (the value shares its bytes with every other stream's).
    token: Option<AsciiMetadataValue>,
    events: mpsc::UnboundedSender<StreamEvent>,
}

impl SimulatedEnvoy {
    pub fn new(
        stream: usize,
        node_id: String,
        watched_cluster: String,
        events: mpsc::UnboundedSender<StreamEvent>,
    ) -> SimulatedEnvoy {
        SimulatedEnvoy { stream, node_id, watched_cluster, token: None, events }
    }

    /// Opens its stream with this dataplane token.
    pub fn with_token(mut self, token: AsciiMetadataValue) -> SimulatedEnvoy {
        self.token = Some(token);
        self
    }

    /// Parses a dataplane token once, for every stream to share.
    pub fn token_value(token: &str) -> Result<AsciiMetadataValue, String> {
        token.parse().map_err(|_| "the dataplane token is not ASCII".to_string())
    }

    /// Runs the stream on `channel` until it fails or the task is aborted; a failure is reported
    /// as [`StreamEventKind::Ended`].
    pub async fn run(self, channel: Channel) {
        let reason = match self.serve(channel).await {
            Ok(()) => "the control plane closed the stream".to_string(),
            Err(reason) => reason,
        };
        self.report(StreamEventKind::Ended { reason });
    }

    fn report(&self, kind: StreamEventKind) {
        // The receiver is gone only when the run is over.
        let _ = self.events.send(StreamEvent { stream: self.stream, at: Instant::now(), kind });
    }

    async fn serve(&self, channel: Channel) -> Result<(), String> {
        let (tx, rx) = mpsc::channel(REQUEST_BUFFER);
        let first = DiscoveryRequest {
            node: Some(Node { id: self.node_id.clone(), ..Default::default() }),
            type_url: CDS.to_string(),
            ..Default::default()
        };
        tx.send(first).await.map_err(|_| "the request stream closed".to_string())?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel)
            .max_decoding_message_size(64 * 1024 * 1024);
        let mut opening = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = &self.token {
            opening.metadata_mut().insert("authorization", token.clone());
        }
        let mut responses = client
            .stream_aggregated_resources(opening)
            .await
            .map_err(|status| format!("opening the stream: {status}"))?
            .into_inner();
        let send = |request: DiscoveryRequest| {
            let tx = tx.clone();
            async move { tx.send(request).await.map_err(|_| "the request stream closed".to_string()) }
        };
        let mut acked = Acked::default();
        let mut eds_names: Vec<String> = Vec::new();
        let mut lds_requested = false;
        let mut ready = false;
        while let Some(response) =
            responses.message().await.map_err(|status| format!("receiving: {status}"))?
        {
            match response.type_url.as_str() {
                CDS => {
                    let names = eds_cluster_names(&response)?;
                    send(ack(&response, &[])).await?;
                    acked.cds = true;
                    if names != eds_names {
                        // Envoy asks for the endpoints of the clusters it now has, keeping the
                        // EDS version and nonce it already acknowledged.
                        eds_names = names;
                        send(request(EDS, &eds_names, &acked.eds_version, &acked.eds_nonce))
                            .await?;
                    }
                    if eds_names.is_empty() && !lds_requested {
                        acked.eds = true;
                        lds_requested = true;
                        send(request(LDS, &[], "", "")).await?;
                    }
                }
                EDS => {
                    let watched = endpoints_of(&response, &self.watched_cluster)?;
                    send(ack(&response, &eds_names)).await?;
                    acked.eds = true;
                    acked.eds_version = response.version_info.clone();
                    acked.eds_nonce = response.nonce.clone();
                    // A response may carry only the assignments that changed (the xDS protocol
                    // allows it for EDS): one without the watched cluster leaves it as it was.
                    if let Some(watched) = watched {
                        self.report(StreamEventKind::EndpointsAcked { watched_endpoints: watched });
                    }
                    // Listeners come once the clusters are warm, as in Envoy's init sequence.
                    if !lds_requested {
                        lds_requested = true;
                        send(request(LDS, &[], "", "")).await?;
                    }
                }
                LDS => {
                    send(ack(&response, &[])).await?;
                    acked.lds = true;
                }
                _ => send(ack(&response, &[])).await?,
            }
            if !ready && acked.cds && acked.eds && acked.lds {
                ready = true;
                self.report(StreamEventKind::Ready);
            }
        }
        Ok(())
    }
}

fn request(type_url: &str, names: &[String], version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.to_vec(),
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn ack(response: &DiscoveryResponse, names: &[String]) -> DiscoveryRequest {
    request(&response.type_url, names, &response.version_info, &response.nonce)
}

/// Names of the clusters whose endpoints come over EDS (the cluster name is the service name
/// unless `eds_cluster_config.service_name` says otherwise), sorted.
fn eds_cluster_names(response: &DiscoveryResponse) -> Result<Vec<String>, String> {
    let mut names = BTreeSet::new();
    for any in &response.resources {
        let cluster = Cluster::decode(any.value.as_slice())
            .map_err(|e| format!("a CDS resource is not a Cluster: {e}"))?;
        if let Some(eds) = &cluster.eds_cluster_config {
            let name =
                if eds.service_name.is_empty() { cluster.name } else { eds.service_name.clone() };
            names.insert(name);
        }
    }
    Ok(names.into_iter().collect())
}

/// The name of a ClusterLoadAssignment (its field 1) without decoding its endpoints: prost skips
/// the fields a message does not declare.
#[derive(Clone, PartialEq, prost::Message)]
struct AssignmentName {
    #[prost(string, tag = "1")]
    cluster_name: String,
}

/// Endpoints of `cluster` in an EDS response (`None` when it is not there). Only the watched
/// cluster's assignment is decoded whole: with N dataplanes the others hold about N/5 endpoints,
/// and decoding them on every stream would make the load process, not kuma-cp, the bottleneck.
fn endpoints_of(response: &DiscoveryResponse, cluster: &str) -> Result<Option<usize>, String> {
    let not_an_assignment = |e| format!("an EDS resource is not a ClusterLoadAssignment: {e}");
    let mut count = None;
    for any in &response.resources {
        let name = AssignmentName::decode(any.value.as_slice()).map_err(not_an_assignment)?;
        if name.cluster_name == cluster {
            let assignment =
                ClusterLoadAssignment::decode(any.value.as_slice()).map_err(not_an_assignment)?;
            let endpoints =
                assignment.endpoints.iter().map(|l| l.lb_endpoints.len()).sum::<usize>();
            *count.get_or_insert(0) += endpoints;
        }
    }
    Ok(count)
}
