//! The peer RPC's snapshot path: chunks travel with their bytes raw and arrive as sent, and a peer
//! of an earlier version (which serves `CALL_PATH` only) gets them as JSON after saying so.
//! A whole snapshot installed over this path by openraft: `tests::cluster`'s
//! `a_peer_behind_a_purged_log_catches_up_from_a_snapshot`.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use kuma_model::{MeshSpec, ResourceKey, Spec};
use openraft::raft::{InstallSnapshotRequest, InstallSnapshotResponse};
use openraft::{CommittedLeaderId, Vote};
use tokio::net::TcpListener;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service};
use tonic::server::NamedService;

use super::codec::{ChunkError, RawChunk};
use super::*;
use crate::command::{Command, Op, RequestId};
use crate::config::PeerTls;
use crate::formation::{Admission, Gate};
use crate::replica::ReplicaState;
use crate::types::SnapshotMeta;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps every snapshot chunk it is sent.
#[derive(Default)]
struct Chunks(Mutex<Vec<InstallSnapshotRequest<TypeConfig>>>);

#[async_trait::async_trait]
impl PeerHandler for Chunks {
    async fn handle(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::InstallSnapshot(chunk) => {
                let vote = chunk.vote;
                self.0.lock().unwrap().push(chunk);
                PeerResponse::InstallSnapshot(Ok(InstallSnapshotResponse { vote }))
            }
            _ => PeerResponse::PreVote(false),
        }
    }
}

/// This version's server, noting the path of every call; as `earlier`, a server of the version
/// before raw chunks, which knows `CALL_PATH` only and answers any other `Unimplemented`.
#[derive(Clone)]
struct Peer {
    server: PeerServer,
    earlier: bool,
    paths: Arc<Mutex<Vec<String>>>,
}

impl NamedService for Peer {
    const NAME: &'static str = SERVICE_NAME;
}

impl Service<http::Request<Body>> for Peer {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_string();
        self.paths.lock().unwrap().push(path.clone());
        if self.earlier && path != CALL_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(Body::default());
                let headers = response.headers_mut();
                headers.insert("grpc-status", (tonic::Code::Unimplemented as i32).into());
                headers.insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        self.server.call(request)
    }
}

struct Running {
    address: String,
    chunks: Arc<Chunks>,
    paths: Arc<Mutex<Vec<String>>>,
}

impl Running {
    fn paths(&self) -> Vec<String> {
        std::mem::take(&mut *self.paths.lock().unwrap())
    }

    fn chunks(&self) -> Vec<InstallSnapshotRequest<TypeConfig>> {
        std::mem::take(&mut *self.chunks.0.lock().unwrap())
    }
}

async fn must_serve(earlier: bool) -> Running {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let chunks = Arc::new(Chunks::default());
    let paths = Arc::new(Mutex::new(Vec::new()));
    let server = PeerServer::new(chunks.clone(), Admission::new(Gate::Open));
    let peer = Peer { server, earlier, paths: paths.clone() };
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(peer)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    Running { address, chunks, paths }
}

/// The image of a replica holding `meshes` meshes, as a snapshot holds it.
fn image(meshes: u64) -> Vec<u8> {
    let mut state = ReplicaState::default();
    let mut events = Vec::new();
    for seq in 0..meshes {
        let key = ResourceKey::mesh(&format!("mesh-{seq}"));
        let ops = vec![Op::create(key, &Spec::Mesh(MeshSpec::default()))];
        state.apply(
            &Command { request_id: RequestId { origin: 3, seq }, at: Utc::now(), ops },
            &mut events,
        );
    }
    state.view().encode().unwrap()
}

fn chunk(offset: usize, data: &[u8], done: bool) -> InstallSnapshotRequest<TypeConfig> {
    InstallSnapshotRequest {
        vote: Vote::new_committed(4, 1),
        meta: SnapshotMeta {
            last_log_id: Some(crate::types::LogId::new(CommittedLeaderId::new(4, 1), 90)),
            snapshot_id: "4-1-90".to_string(),
            ..SnapshotMeta::default()
        },
        offset: offset as u64,
        data: data.to_vec(),
        done,
    }
}

/// Sends `image` in three chunks; the answers.
async fn send(client: &PeerClient, image: &[u8]) -> Vec<Result<PeerResponse, tonic::Status>> {
    let third = image.len() / 3;
    let mut answers = Vec::new();
    for (start, end) in [(0, third), (third, 2 * third), (2 * third, image.len())] {
        let request = chunk(start, &image[start..end], end == image.len());
        answers.push(client.call(PeerRequest::InstallSnapshot(request), TIMEOUT).await);
    }
    answers
}

fn joined(chunks: &[InstallSnapshotRequest<TypeConfig>]) -> Vec<u8> {
    let mut offset = 0;
    let mut bytes = Vec::new();
    for chunk in chunks {
        assert_eq!(chunk.offset, offset);
        bytes.extend_from_slice(&chunk.data);
        offset += chunk.data.len() as u64;
    }
    bytes
}

/// As JSON a chunk's data was an array of decimal numbers, about 4 bytes a byte; raw, a chunk is
/// its data and a header of a few hundred bytes.
#[test]
fn a_raw_chunk_is_its_bytes_and_a_small_header() {
    let data: Vec<u8> = (0..1024 * 1024).map(|i| (i % 251) as u8).collect();
    let request = chunk(3 << 20, &data, false);
    let as_json = serde_json::to_vec(&PeerRequest::InstallSnapshot(request.clone())).unwrap();
    let mut raw = Vec::new();
    RawChunk(request.clone()).write(&mut raw).unwrap();
    assert!(raw.len() < data.len() + 1024, "{} bytes for {}", raw.len(), data.len());
    assert!(as_json.len() > 3 * data.len(), "{} bytes as JSON", as_json.len());
    assert_eq!(&raw[raw.len() - data.len()..], &data[..], "the data, as it is, last");
    assert_eq!(RawChunk::read(&raw).unwrap().0, request);
}

#[test]
fn a_damaged_raw_chunk_is_refused_and_says_how() {
    let mut raw = Vec::new();
    RawChunk(chunk(0, b"image", true)).write(&mut raw).unwrap();
    assert_eq!(RawChunk::read(&raw[..3]).unwrap_err(), ChunkError::Short(3));
    let header = u32::from_be_bytes(raw[..4].try_into().unwrap()) as usize;
    assert!(matches!(
        RawChunk::read(&raw[..header]).unwrap_err(),
        ChunkError::HeaderPastEnd { header: h, .. } if h == header
    ));
    let mut edited = raw.clone();
    edited[4] = b'[';
    assert!(matches!(RawChunk::read(&edited).unwrap_err(), ChunkError::Header(_)));
    // A JSON request sent to the raw path by mistake is not taken for a chunk.
    let json = serde_json::to_vec(&PeerRequest::InstallSnapshot(chunk(0, b"x", true))).unwrap();
    assert!(RawChunk::read(&json).is_err());
}

#[tokio::test]
async fn a_snapshot_goes_raw_on_its_own_path_and_arrives_as_sent() {
    let peer = must_serve(false).await;
    let client = PeerClient::new(&peer.address, None).unwrap();
    let image = image(40);
    for answer in send(&client, &image).await {
        assert!(matches!(answer, Ok(PeerResponse::InstallSnapshot(Ok(_)))), "{answer:?}");
    }
    assert_eq!(peer.paths(), [SNAPSHOT_PATH; 3]);
    let chunks = peer.chunks();
    assert_eq!(chunks.iter().map(|c| c.done).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(chunks[2].meta.snapshot_id, "4-1-90");
    let received = joined(&chunks);
    assert_eq!(received, image);
    let state = ReplicaState::decode(&received).unwrap();
    assert_eq!(state.store.len(), 40);

    // Every other request still goes as JSON on the one method.
    let answer = client.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await;
    assert!(matches!(answer, Ok(PeerResponse::PreVote(false))), "{answer:?}");
    assert_eq!(peer.paths(), [CALL_PATH]);
}

/// A rolling upgrade: a leader of this version sends a snapshot to a follower of the version
/// before, which knows no raw chunks. The first chunk fails with a message that says why (not a
/// misread message: the earlier server answers a path it does not know `Unimplemented`); openraft
/// sends it again, and the chunks go as JSON on `CALL_PATH`, which both versions read.
#[tokio::test]
async fn a_peer_of_the_earlier_version_is_told_apart_and_sent_json() {
    let peer = must_serve(true).await;
    let client = PeerClient::new(&peer.address, None).unwrap();
    let image = image(12);
    let first = client
        .call(PeerRequest::InstallSnapshot(chunk(0, &image[..10], false)), TIMEOUT)
        .await
        .unwrap_err();
    assert_eq!(first.code(), tonic::Code::Unimplemented);
    let message = first.message();
    assert!(message.contains(&peer.address) && message.contains("earlier kuma-cp"), "{message}");
    assert_eq!(peer.paths(), [SNAPSHOT_PATH]);
    assert!(peer.chunks().is_empty(), "nothing was taken from the raw form");

    for answer in send(&client, &image).await {
        assert!(matches!(answer, Ok(PeerResponse::InstallSnapshot(Ok(_)))), "{answer:?}");
    }
    assert_eq!(peer.paths(), [CALL_PATH; 3]);
    assert_eq!(joined(&peer.chunks()), image);
    // Clients of the same peer share what it said.
    let again = PeerClients::new(None);
    let shared = again.get(&peer.address).unwrap();
    let _ = shared.call(PeerRequest::InstallSnapshot(chunk(0, &image, true)), TIMEOUT).await;
    assert_eq!(peer.paths(), [SNAPSHOT_PATH], "another PeerClients asks on its own");
    let same = client.clone();
    same.call(PeerRequest::InstallSnapshot(chunk(0, &image, true)), TIMEOUT).await.unwrap();
    assert_eq!(peer.paths(), [CALL_PATH], "a clone knows");
}

// ---------------------------------------------------------------------------------------------
// The direct form (`direct`) beside gRPC on the same port

/// This version's listener: direct connections served by it, gRPC ones by tonic through `Peer`
/// (which notes their paths).
async fn must_serve_both(tls: Option<&PeerTls>, admission: Admission) -> Running {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let chunks = Arc::new(Chunks::default());
    let paths = Arc::new(Mutex::new(Vec::new()));
    let handler: Arc<dyn PeerHandler> = chunks.clone();
    let server_tls = tls.map(|tls| server_tls(tls).unwrap());
    let (grpc, accepting) =
        listen(listener, server_tls, handler.clone(), admission.clone(), std::future::pending());
    let peer =
        Peer { server: PeerServer::new(handler, admission), earlier: false, paths: paths.clone() };
    tokio::spawn(accepting);
    tokio::spawn(tonic::transport::Server::builder().add_service(peer).serve_with_incoming(grpc));
    Running { address, chunks, paths }
}

fn tls_for(ca: &kuma_ca::ClusterCa, id: u64) -> PeerTls {
    let issued = ca.issue_peer(id).unwrap();
    PeerTls {
        ca_pem: ca.ca.cert_pem.clone(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        server_name: kuma_ca::PEER_SERVER_NAME.to_string(),
    }
}

async fn must_pre_vote(client: &PeerClient) {
    let answer = client.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await;
    assert!(matches!(answer, Ok(PeerResponse::PreVote(false))), "{answer:?}");
}

#[tokio::test]
async fn requests_go_direct_on_one_reused_connection_and_snapshot_chunks_by_grpc_beside_them() {
    let peer = must_serve_both(None, Admission::new(Gate::Open)).await;
    let client = PeerClient::new(&peer.address, None).unwrap();
    for _ in 0..3 {
        must_pre_vote(&client).await;
        assert_eq!(client.idle_direct(), 1, "the one connection is kept for the next call");
    }
    assert!(peer.paths().is_empty(), "no request went by gRPC");

    // The same port still serves gRPC: snapshot chunks go there, raw.
    let image = image(5);
    for answer in send(&client, &image).await {
        assert!(matches!(answer, Ok(PeerResponse::InstallSnapshot(Ok(_)))), "{answer:?}");
    }
    assert_eq!(peer.paths(), [SNAPSHOT_PATH; 3]);
    assert_eq!(joined(&peer.chunks()), image);
    must_pre_vote(&client).await;
    assert!(peer.paths().is_empty());
}

/// A rolling upgrade, both ways: a caller of the earlier version (gRPC only) is served on the
/// same port, and a peer of the earlier version is sent every request by gRPC.
#[tokio::test]
async fn callers_and_peers_of_the_earlier_version_speak_grpc_with_this_one() {
    let peer = must_serve_both(None, Admission::new(Gate::Open)).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", peer.address))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut earlier_caller = tonic::client::Grpc::new(channel);
    earlier_caller.ready().await.unwrap();
    let answer = earlier_caller
        .unary(
            tonic::Request::new(PeerRequest::PreVote { last_log_id: None }),
            tonic::codegen::http::uri::PathAndQuery::from_static(CALL_PATH),
            super::codec::JsonCodec::<PeerRequest, PeerResponse>::default(),
        )
        .await
        .unwrap()
        .into_inner();
    assert!(matches!(answer, PeerResponse::PreVote(false)), "{answer:?}");
    assert_eq!(peer.paths(), [CALL_PATH]);

    let earlier_peer = must_serve(false).await;
    let client = PeerClient::new(&earlier_peer.address, None).unwrap();
    must_pre_vote(&client).await;
    assert_eq!(earlier_peer.paths(), [CALL_PATH], "sent by gRPC after the preface got HTTP/2");
    must_pre_vote(&client).await;
    assert_eq!(earlier_peer.paths(), [CALL_PATH], "and the next without trying again");
    assert_eq!(client.idle_direct(), 0);
}

#[tokio::test]
async fn over_tls_only_a_certificate_from_the_cluster_ca_gets_a_direct_answer() {
    let ca = kuma_ca::ClusterCa::generate().unwrap();
    let peer = must_serve_both(Some(&tls_for(&ca, 1)), Admission::new(Gate::Open)).await;
    let member = PeerClient::new(&peer.address, Some(&tls_for(&ca, 2))).unwrap();
    must_pre_vote(&member).await;
    must_pre_vote(&member).await;
    assert_eq!(member.idle_direct(), 1);
    assert!(peer.paths().is_empty(), "no request went by gRPC");

    let foreign = kuma_ca::ClusterCa::generate().unwrap();
    let stranger = PeerClient::new(&peer.address, Some(&tls_for(&foreign, 9))).unwrap();
    let refused = stranger.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await;
    assert!(refused.is_err(), "{refused:?}");
    let plain = PeerClient::new(&peer.address, None).unwrap();
    let refused = plain.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(peer.paths().is_empty(), "neither got through to gRPC either");
}

#[tokio::test]
async fn a_direct_request_from_another_cluster_is_refused_and_says_why() {
    let ours = Admission::new(Gate::Open);
    ours.set_cluster_id(Some("cluster-a".to_string()));
    let peer = must_serve_both(None, ours).await;
    let theirs = Admission::new(Gate::Open);
    theirs.set_cluster_id(Some("cluster-b".to_string()));
    let client = PeerClient::for_cluster(&peer.address, None, Some(theirs)).unwrap();
    let refused =
        client.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(refused.message().contains("cluster-a"), "{}", refused.message());
    assert_eq!(client.idle_direct(), 1, "a refusal is an answer: the connection stays good");

    let deciding = must_serve_both(None, Admission::new(Gate::Deciding)).await;
    let client = PeerClient::new(&deciding.address, None).unwrap();
    let refused =
        client.call(PeerRequest::PreVote { last_log_id: None }, TIMEOUT).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains("still asking"), "{}", refused.message());
}

/// A peer that restarted closed the idle connections to it: the next call notices before sending
/// and dials again.
#[tokio::test]
async fn a_connection_the_peer_closed_while_idle_is_not_used_again() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handler: Arc<dyn PeerHandler> = Arc::new(Chunks::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (_grpc, accepting) =
        listen(listener, None, handler.clone(), Admission::new(Gate::Open), async {
            let _ = stopped.await;
        });
    let first = tokio::spawn(accepting);
    let client = PeerClient::new(&address, None).unwrap();
    must_pre_vote(&client).await;
    assert_eq!(client.idle_direct(), 1);

    // The listener stops (its connections with it) and a new one takes the port.
    stop.send(()).unwrap();
    first.await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while client.open_idle_direct() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped listener's connection stays open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(client.idle_direct(), 1, "closed by the peer, still kept until the next call");
    let listener = TcpListener::bind(&address).await.unwrap();
    let (_grpc, accepting) =
        listen(listener, None, handler, Admission::new(Gate::Open), std::future::pending());
    tokio::spawn(accepting);
    must_pre_vote(&client).await;
    assert_eq!(client.idle_direct(), 1, "the new connection, kept");
}

/// A frame announcing more than the largest peer message is not read: the connection closes
/// (nothing of that size is set aside for it), and the peer goes on serving others.
#[tokio::test]
async fn a_direct_frame_over_the_limit_closes_its_connection_only() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let peer = must_serve_both(None, Admission::new(Gate::Open)).await;
    let mut raw = tokio::net::TcpStream::connect(&peer.address).await.unwrap();
    raw.write_all(super::direct::PREFACE).await.unwrap();
    let mut preface = [0u8; 24];
    raw.read_exact(&mut preface).await.unwrap();
    assert_eq!(&preface, super::direct::PREFACE);
    raw.write_all(&(MAX_MESSAGE as u32 + 1).to_be_bytes()).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(TIMEOUT, raw.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "closed without an answer: {read:?} {rest:?}");

    must_pre_vote(&PeerClient::new(&peer.address, None).unwrap()).await;
}
