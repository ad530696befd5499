//! MADS in process, against an independent gRPC client: the assignments come on the first
//! request, an ACK is not answered until the store changes, a change is pushed without asking,
//! and a stream without a valid user token is refused.

use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use kuma_model::{parse_resource, MeshSpec, ResourceKey, ResourceType, Spec};
use kuma_store::{MemoryStore, ResourceStore};
use kuma_xds::mads::{
    v1alpha1, MadsServer, MonitoringAssignment, OperatorTokens, STREAM_PATH, TYPE_URL,
};
use prost::Message;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::{Code, Streaming};

const ANSWER: Duration = Duration::from_secs(5);

/// Tokens are `user:<name>`; anything else is refused.
struct NamedTokens;

#[async_trait::async_trait]
impl OperatorTokens for NamedTokens {
    async fn authenticate(&self, token: &str) -> Result<String, String> {
        token.strip_prefix("user:").map(str::to_string).ok_or_else(|| "unknown token".to_string())
    }
}

struct Server {
    store: Arc<MemoryStore>,
    port: u16,
    _stop: oneshot::Sender<()>,
}

async fn start(localhost_is_admin: bool) -> Server {
    let store = Arc::new(MemoryStore::new());
    let mesh: MeshSpec = serde_yaml::from_str("metrics:\n  prometheus: {}\n").unwrap();
    store.create(ResourceKey::mesh("default"), Spec::Mesh(mesh)).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = MadsServer::new(store.clone(), Some(Arc::new(NamedTokens)), localhost_is_admin);
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    Server { store, port, _stop: stop }
}

async fn apply(store: &MemoryStore, yaml: &str) {
    let input = parse_resource(serde_yaml::from_str(yaml).unwrap()).unwrap();
    match store.get(&input.key).await {
        Ok(existing) => store.update(input.key, input.spec, &existing.version).await.unwrap(),
        Err(_) => store.create(input.key, input.spec).await.unwrap(),
    };
}

fn web(name: &str, ip: &str) -> String {
    format!("type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  address: {ip}\n  inbound:\n  - port: 8080\n    tags:\n      kuma.io/service: web\n")
}

struct Client {
    tx: mpsc::Sender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

fn request(version: &str, nonce: &str) -> DiscoveryRequest {
    request_of(TYPE_URL, version, nonce)
}

fn request_of(type_url: &str, version: &str, nonce: &str) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.into(),
        response_nonce: nonce.into(),
        type_url: type_url.into(),
        node: Some(Node { id: "test-sd".into(), ..Default::default() }),
        ..Default::default()
    }
}

async fn connect(port: u16, token: Option<&str>) -> Result<Client, tonic::Status> {
    connect_to(port, token, STREAM_PATH, TYPE_URL).await
}

async fn connect_to(
    port: u16,
    token: Option<&str>,
    path: &'static str,
    type_url: &str,
) -> Result<Client, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .expect("a connection");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(request_of(type_url, "", "")).await.unwrap();
    let mut outgoing = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(token) = token {
        outgoing.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let codec = tonic_prost::ProstCodec::<DiscoveryRequest, DiscoveryResponse>::default();
    let rx = grpc.streaming(outgoing, PathAndQuery::from_static(path), codec).await?.into_inner();
    Ok(Client { tx, rx })
}

impl Client {
    async fn must_receive(&mut self) -> (DiscoveryResponse, Vec<MonitoringAssignment>) {
        let response = tokio::time::timeout(ANSWER, self.rx.message())
            .await
            .expect("an answer in time")
            .expect("no error")
            .expect("the stream goes on");
        let assignments = response
            .resources
            .iter()
            .map(|any| MonitoringAssignment::decode(any.value.as_slice()).unwrap())
            .collect();
        (response, assignments)
    }

    /// Answers until one whose targets are `expected`, acknowledging the others (the server may
    /// have published before the store's latest change reached it).
    async fn must_receive_targets(
        &mut self,
        expected: &[(&str, &str)],
    ) -> (DiscoveryResponse, Vec<MonitoringAssignment>) {
        let expected: Vec<(String, String)> =
            expected.iter().map(|(n, a)| (n.to_string(), a.to_string())).collect();
        loop {
            let (response, assignments) = self.must_receive().await;
            if targets(&assignments) == expected {
                return (response, assignments);
            }
            self.ack(&response).await;
        }
    }

    async fn ack(&self, response: &DiscoveryResponse) {
        self.tx.send(request(&response.version_info, &response.nonce)).await.unwrap();
    }
}

fn targets(assignments: &[MonitoringAssignment]) -> Vec<(String, String)> {
    assignments
        .iter()
        .flat_map(|a| a.targets.iter().map(|t| (t.name.clone(), t.address.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_come_at_once_and_every_change_is_pushed_after_the_ack() {
    let server = start(false).await;
    apply(&server.store, &web("web-1", "10.0.0.1")).await;
    let mut client = connect(server.port, Some("user:viewer")).await.unwrap();
    let (first, assignments) = client.must_receive_targets(&[("web-1", "10.0.0.1:5670")]).await;
    assert_eq!(assignments[0].mesh, "default");
    assert_eq!(assignments[0].service, "web");
    assert_eq!(assignments[0].targets[0].metrics_path, "/metrics");
    assert_eq!(assignments[0].targets[0].labels["kuma_io_service"], "web");
    client.ack(&first).await;
    // Nothing changed: the ACK is not answered.
    assert!(tokio::time::timeout(Duration::from_millis(500), client.rx.message()).await.is_err());

    apply(&server.store, &web("web-2", "10.0.0.2")).await;
    let (second, _) = client
        .must_receive_targets(&[("web-1", "10.0.0.1:5670"), ("web-2", "10.0.0.2:5670")])
        .await;
    assert_ne!(second.version_info, first.version_info);
    client.ack(&second).await;

    // A change that is not a Mesh or Dataplane's is not pushed; a deletion is.
    let log = "type: TrafficLog\nmesh: default\nname: all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n";
    apply(&server.store, log).await;
    server
        .store
        .delete(&ResourceKey::new(ResourceType::Dataplane, "default", "web-1"), None)
        .await
        .unwrap();
    client.must_receive_targets(&[("web-2", "10.0.0.2:5670")]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_without_a_valid_user_token_is_refused_unless_loopback_is_admin() {
    let server = start(false).await;
    for token in [None, Some("forged")] {
        let refused = connect(server.port, token).await.err().expect("refused");
        assert_eq!(refused.code(), Code::Unauthenticated, "{token:?}: {refused:?}");
        assert!(refused.message().contains("token"), "{refused:?}");
    }
    let open = start(true).await;
    let mut client = connect(open.port, None).await.expect("loopback counts as admin");
    client.must_receive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kuma_0_5s_v1alpha1_clients_get_the_same_targets_in_their_shape() {
    let server = start(true).await;
    apply(&server.store, &web("web-1", "10.0.0.1")).await;
    let mut client = connect_to(server.port, None, v1alpha1::STREAM_PATH, v1alpha1::TYPE_URL)
        .await
        .expect("the v1alpha1 service answers");
    let assignment = loop {
        let response = tokio::time::timeout(ANSWER, client.rx.message())
            .await
            .expect("an answer in time")
            .unwrap()
            .unwrap();
        assert_eq!(response.type_url, v1alpha1::TYPE_URL);
        if let Some(any) = response.resources.first() {
            break v1alpha1::MonitoringAssignment::decode(any.value.as_slice()).unwrap();
        }
        let ack = request_of(v1alpha1::TYPE_URL, &response.version_info, &response.nonce);
        client.tx.send(ack).await.unwrap();
    };
    assert_eq!(assignment.name, "/meshes/default/dataplanes/web-1");
    assert_eq!(assignment.targets[0].labels["__address__"], "10.0.0.1:5670");
    assert_eq!(assignment.labels["mesh"], "default");
    assert_eq!(assignment.labels["job"], "web");
    assert_eq!(assignment.labels["__metrics_path__"], "/metrics");
}
