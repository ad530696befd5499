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
