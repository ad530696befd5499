//! An independent ADS client for protocol tests, built on envoy-types' generated gRPC client.

use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::Streaming;

pub const CDS: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const LDS: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// How long a test waits to be sure nothing comes.
pub const SILENCE: Duration = Duration::from_millis(400);
const REPLY: Duration = Duration::from_secs(5);

fn node(id: &str) -> Node {
    Node { id: id.to_string(), ..Default::default() }
}

/// A state-of-the-world stream.
pub struct SotwClient {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
    node: Option<Node>,
}

impl SotwClient {
    /// A stream over TLS (verified against `ca_pem`) to the ADS port, or with `sds` to the SDS
    /// port, sending `token` as gRPC metadata `authorization`, as Envoy does.
    pub async fn connect_secure(
        port: u16,
        ca_pem: &str,
        token: Option<&str>,
        node_id: &str,
        sds: bool,
    ) -> SotwClient {
        use tonic::transport::{Certificate, Channel, ClientTlsConfig};
        let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca_pem))
                    .domain_name("127.0.0.1"),
            )
            .unwrap()
            .connect()
            .await
            .expect("a TLS connection");
        let (tx, rx) = mpsc::channel(16);
        let mut request = tonic::Request::new(ReceiverStream::new(rx));
        if let Some(token) = token {
            request.metadata_mut().insert("authorization", token.parse().expect("ASCII"));
        }
        let rx = if sds {
            use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_client::SecretDiscoveryServiceClient;
            SecretDiscoveryServiceClient::new(channel).stream_secrets(request).await
        } else {
            AggregatedDiscoveryServiceClient::new(channel).stream_aggregated_resources(request).await
        }
        .expect("open a stream")
        .into_inner();
        SotwClient { tx, rx, node: Some(node(node_id)) }
    }

    pub async fn connect(port: u16, node_id: &str) -> SotwClient {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .expect("connect to the xDS server");
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open an ADS stream")
            .into_inner();
        SotwClient { tx, rx, node: Some(node(node_id)) }
    }

    /// Sends a request; the first one carries the node.
    pub async fn request(&mut self, type_url: &str, names: &[&str], version: &str, nonce: &str) {
        self.send(DiscoveryRequest {
            type_url: type_url.to_string(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.to_string(),
            response_nonce: nonce.to_string(),
            ..Default::default()
        })
        .await;
    }

    pub async fn send(&mut self, mut request: DiscoveryRequest) {
        if request.node.is_none() {
            request.node = self.node.take();
        }
        self.tx.send(request).await.expect("the stream is open");
    }

    pub async fn ack(&mut self, response: &DiscoveryResponse, names: &[&str]) {
        self.request(&response.type_url, names, &response.version_info, &response.nonce).await;
    }

    pub async fn nack(&mut self, response: &DiscoveryResponse, names: &[&str], accepted: &str) {
        self.send(DiscoveryRequest {
            type_url: response.type_url.clone(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: accepted.to_string(),
            response_nonce: response.nonce.clone(),
            error_detail: Some(RpcStatus {
                code: 3,
                message: "rejected by the test".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await;
    }

    /// The next response; panics if none comes within 5 s.
    pub async fn must_recv(&mut self) -> DiscoveryResponse {
        match tokio::time::timeout(REPLY, self.rx.next()).await {
            Ok(Some(Ok(response))) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// Asserts nothing arrives for a while.
    pub async fn must_stay_silent(&mut self, why: &str) {
        if let Ok(Some(response)) = tokio::time::timeout(SILENCE, self.rx.next()).await {
            panic!("{why}: got {response:?}");
        }
    }

    /// The stream's end status (for streams the server refuses).
    pub async fn must_fail(&mut self) -> tonic::Status {
        match tokio::time::timeout(REPLY, self.rx.next()).await {
            Ok(Some(Err(status))) => status,
            other => panic!("expected the stream to fail, got {other:?}"),
        }
    }
}

/// A delta stream.
pub struct DeltaClient {
    tx: mpsc::Sender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
    node: Option<Node>,
}

impl DeltaClient {
    pub async fn connect(port: u16, node_id: &str) -> DeltaClient {
        let mut client =
            AggregatedDiscoveryServiceClient::connect(format!("http://127.0.0.1:{port}"))
                .await
                .expect("connect to the xDS server");
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .delta_aggregated_resources(ReceiverStream::new(rx))
            .await
            .expect("open a delta ADS stream")
            .into_inner();
        DeltaClient { tx, rx, node: Some(node(node_id)) }
    }

    pub async fn send(&mut self, mut request: DeltaDiscoveryRequest) {
        if request.node.is_none() {
            request.node = self.node.take();
        }
        self.tx.send(request).await.expect("the stream is open");
    }

    pub async fn ack(&mut self, response: &DeltaDiscoveryResponse) {
        self.send(DeltaDiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce.clone(),
            ..Default::default()
        })
        .await;
    }

    pub async fn must_recv(&mut self) -> DeltaDiscoveryResponse {
        match tokio::time::timeout(REPLY, self.rx.next()).await {
            Ok(Some(Ok(response))) => response,
            other => panic!("expected a delta response, got {other:?}"),
        }
    }

    pub async fn must_stay_silent(&mut self, why: &str) {
        if let Ok(Some(response)) = tokio::time::timeout(SILENCE, self.rx.next()).await {
            panic!("{why}: got {response:?}");
        }
    }
}

/// Names of the resources in a response, decoded from their `Any`.
pub fn names(response: &DiscoveryResponse) -> Vec<String> {
    use envoy_types::pb::envoy::config::cluster::v3::Cluster;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::listener::v3::Listener;
    use prost::Message;
    response
        .resources
        .iter()
        .map(|any| match any.type_url.as_str() {
            CDS => Cluster::decode(any.value.as_slice()).unwrap().name,
            EDS => ClusterLoadAssignment::decode(any.value.as_slice()).unwrap().cluster_name,
            LDS => Listener::decode(any.value.as_slice()).unwrap().name,
            other => panic!("unexpected type {other}"),
        })
        .collect()
}
