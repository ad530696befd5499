//! The server side of the peer RPC, written out by hand (there is no .proto to generate from).

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::codec::{ChunkCodec, JsonCodec, RawChunk};
use super::{
    PeerRequest, PeerResponse, CALL_PATH, CLUSTER_HEADER, MAX_MESSAGE, SERVICE_NAME, SNAPSHOT_PATH,
};
use crate::formation::{Admission, Refusal};

/// Serves peer requests; implemented by the Raft node.
#[async_trait::async_trait]
pub trait PeerHandler: Send + Sync + 'static {
    async fn handle(&self, request: PeerRequest) -> PeerResponse;
}

/// The tonic service.
#[derive(Clone)]
pub struct PeerServer {
    handler: Arc<dyn PeerHandler>,
    admission: Admission,
}

impl std::fmt::Debug for PeerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerServer").finish()
    }
}

impl PeerServer {
    pub(crate) fn new(handler: Arc<dyn PeerHandler>, admission: Admission) -> PeerServer {
        PeerServer { handler, admission }
    }
}

impl NamedService for PeerServer {
    const NAME: &'static str = SERVICE_NAME;
}

/// Serves one request of either path, if the caller's cluster and this peer's gate admit it.
fn serve(
    handler: Arc<dyn PeerHandler>,
    admission: &Admission,
    request: Request<PeerRequest>,
) -> BoxFuture<Response<PeerResponse>, Status> {
    let their_cluster =
        request.metadata().get(CLUSTER_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
    let admitted = admission.admits(request.get_ref(), their_cluster.as_deref());
    Box::pin(async move {
        admitted.map_err(refusal_status)?;
        Ok(Response::new(handler.handle(request.into_inner()).await))
    })
}

/// What a caller is told when its request is turned away (by either form of the RPC).
pub(super) fn refusal_status(refusal: Refusal) -> Status {
    match refusal {
        Refusal::OtherCluster { .. } => Status::permission_denied(refusal.to_string()),
        refusal => Status::unavailable(refusal.to_string()),
    }
}

struct Call(Arc<dyn PeerHandler>, Admission);

impl UnaryService<PeerRequest> for Call {
    type Response = PeerResponse;
    type Future = BoxFuture<Response<PeerResponse>, Status>;

    fn call(&mut self, request: Request<PeerRequest>) -> Self::Future {
        serve(self.0.clone(), &self.1, request)
    }
}

/// `SNAPSHOT_PATH`: a snapshot chunk with its bytes raw, served as the same request on
/// `CALL_PATH` would be.
struct Chunk(Arc<dyn PeerHandler>, Admission);

impl UnaryService<RawChunk> for Chunk {
    type Response = PeerResponse;
    type Future = BoxFuture<Response<PeerResponse>, Status>;

    fn call(&mut self, request: Request<RawChunk>) -> Self::Future {
        let request = request.map(|RawChunk(chunk)| PeerRequest::InstallSnapshot(chunk));
        serve(self.0.clone(), &self.1, request)
    }
}

impl<B> Service<http::Request<B>> for PeerServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let handler = self.handler.clone();
        let admission = self.admission.clone();
        if request.uri().path() == SNAPSHOT_PATH {
            return Box::pin(async move {
                let mut grpc = Grpc::new(ChunkCodec::<PeerResponse, RawChunk>::default())
                    .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
                Ok(grpc.unary(Chunk(handler, admission), request).await)
            });
        }
        if request.uri().path() != CALL_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(Body::default());
                response
                    .headers_mut()
                    .insert(Status::GRPC_STATUS, (tonic::Code::Unimplemented as i32).into());
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, tonic::metadata::GRPC_CONTENT_TYPE);
                Ok(response)
            });
        }
        Box::pin(async move {
            let mut grpc = Grpc::new(JsonCodec::<PeerResponse, PeerRequest>::default())
                .apply_max_message_size_config(Some(MAX_MESSAGE), Some(MAX_MESSAGE));
            Ok(grpc.unary(Call(handler, admission), request).await)
        })
    }
}
