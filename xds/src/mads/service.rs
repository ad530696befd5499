//! The gRPC side of MADS: authenticates a stream, then answers it the xDS way: a request whose
//! version is not the current one is answered at once; a request that acknowledges the current
//! one waits until the assignments change; a NACK is logged and not answered with the same again.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::ProstCodec;
use tracing::{info, warn};

use super::{v1alpha1, Access, Published, SERVICE, STREAM_PATH, TYPE_URL};

type Responses = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;

/// Answers queued per stream before its task waits for the client to read.
const STREAM_BUFFER: usize = 4;

#[derive(Clone)]
pub(super) struct MadsService {
    shared: Arc<Shared>,
}

struct Shared {
    published: watch::Receiver<Option<Arc<Published>>>,
    access: Access,
    stop: watch::Receiver<bool>,
}

impl MadsService {
    pub(super) fn new(
        published: watch::Receiver<Option<Arc<Published>>>,
        access: Access,
        stop: watch::Receiver<bool>,
    ) -> MadsService {
        MadsService { shared: Arc::new(Shared { published, access, stop }) }
    }
}

impl NamedService for MadsService {
    const NAME: &'static str = SERVICE;
}

/// The MADS API a stream speaks.
#[derive(Clone, Copy, Debug)]
enum Api {
    V1,
    V1Alpha1,
}

impl Api {
    fn path(self) -> &'static str {
        match self {
            Api::V1 => STREAM_PATH,
            Api::V1Alpha1 => v1alpha1::STREAM_PATH,
        }
    }

    fn type_url(self) -> &'static str {
        match self {
            Api::V1 => TYPE_URL,
            Api::V1Alpha1 => v1alpha1::TYPE_URL,
        }
    }
}

/// The v1alpha1 service (Kuma 0.4-0.5's kuma-prometheus-sd), from the same assignments.
#[derive(Clone)]
pub(super) struct MadsV1Alpha1(pub(super) MadsService);

impl NamedService for MadsV1Alpha1 {
    const NAME: &'static str = v1alpha1::SERVICE;
}

impl<B> Service<http::Request<B>> for MadsService
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        dispatch(self.shared.clone(), Api::V1, request)
    }
}

impl<B> Service<http::Request<B>> for MadsV1Alpha1
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        dispatch(self.0.shared.clone(), Api::V1Alpha1, request)
    }
}

/// Serves the stream method of `api`; any other method is unimplemented.
fn dispatch<B>(
    shared: Arc<Shared>,
    api: Api,
    request: http::Request<B>,
) -> BoxFuture<http::Response<tonic::body::Body>, Infallible>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    if request.uri().path() != api.path() {
        let status = Status::unimplemented(format!(
            "no method {}: MADS serves {}",
            request.uri().path(),
            api.path()
        ));
        return Box::pin(async move { Ok(status.into_http()) });
    }
    let handler = StreamHandler(shared, api);
    Box::pin(async move {
        let mut grpc = Grpc::new(ProstCodec::<DiscoveryResponse, DiscoveryRequest>::default());
        Ok(grpc.streaming(handler, request).await)
    })
}

struct StreamHandler(Arc<Shared>, Api);

impl StreamingService<DiscoveryRequest> for StreamHandler {
    type Response = DiscoveryResponse;
    type ResponseStream = Responses;
    type Future = BoxFuture<Response<Responses>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let (shared, api) = (self.0.clone(), self.1);
        Box::pin(async move {
            let peer = request.remote_addr().map(|a| a.to_string()).unwrap_or_default();
            let who = match authorize(&shared.access, &request).await {
                Ok(who) => who,
                Err(status) => {
                    // Refusals are audit-logged, as the API's are.
                    warn!(target: "audit", %peer, ?api, reason = %status.message(), "MADS stream refused");
                    return Err(status);
                }
            };
            let (tx, rx) = mpsc::channel(STREAM_BUFFER);
            tokio::spawn(serve_stream(shared, api, request.into_inner(), tx, who, peer));
            Ok(Response::new(Box::pin(ReceiverStream::new(rx)) as Responses))
        })
    }
}

/// The user a stream is opened for, or why it is refused.
async fn authorize<T>(access: &Access, request: &Request<T>) -> Result<String, Status> {
    let bearer = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string());
    match bearer {
        Some(token) => match &access.tokens {
            Some(tokens) => tokens.authenticate(&token).await.map_err(|reason| {
                Status::unauthenticated(format!("the user token is not valid: {reason}"))
            }),
            None => Err(Status::unauthenticated("this MADS server does not take user tokens")),
        },
        None if access.localhost_is_admin
            && request.remote_addr().is_some_and(|a| a.ip().is_loopback()) =>
        {
            Ok("localhost".to_string())
        }
        None => Err(Status::unauthenticated(
            "MADS needs a user token (viewer or admin) as `authorization: Bearer <token>` \
             metadata: give kuma-prometheus-sd one with --auth-token-file",
        )),
    }
}

/// One stream, until the client goes or the server stops.
async fn serve_stream(
    shared: Arc<Shared>,
    api: Api,
    mut requests: Streaming<DiscoveryRequest>,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
    who: String,
    peer: String,
) {
    let mut published = shared.published.clone();
    let mut stop = shared.stop.clone();
    let mut client = String::new();
    // A request came since the last answer: the next change is sent at once.
    let mut waiting = false;
    let mut last_nonce = String::new();
    let mut nonces: u64 = 0;
    loop {
        let event = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tx.closed() => return,
            changed = published.changed() => match changed {
                Ok(()) => None,
                Err(_) => return,
            },
            request = requests.next() => Some(request),
        };
        let send_now = match event {
            None => waiting,
            Some(None) => return,
            Some(Some(Err(status))) => {
                info!(user = %who, %peer, client = %client, %status, "MADS stream ended");
                return;
            }
            Some(Some(Ok(request))) => {
                if client.is_empty() {
                    client = request.node.as_ref().map(|n| n.id.clone()).unwrap_or_default();
                    info!(user = %who, %peer, %client, ?api, "MADS stream opened");
                }
                if !request.type_url.is_empty() && request.type_url != api.type_url() {
                    let status = Status::invalid_argument(format!(
                        "MADS serves {} here, not {}",
                        api.type_url(),
                        request.type_url
                    ));
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if !last_nonce.is_empty() && request.response_nonce != last_nonce {
                    // An answer to an older response: the newer one is on its way.
                    continue;
                }
                waiting = true;
                if let Some(error) = &request.error_detail {
                    warn!(%client, version = %request.version_info, error = %error.message, "MADS client rejected the assignments");
                    false
                } else {
                    let current = published.borrow().as_ref().map(|p| p.version.clone());
                    current.is_some_and(|v| v != request.version_info)
                }
            }
        };
        if !send_now {
            continue;
        }
        let Some(current) = published.borrow_and_update().clone() else { continue };
        nonces += 1;
        last_nonce = nonces.to_string();
        let response = DiscoveryResponse {
            version_info: current.version.clone(),
            resources: match api {
                Api::V1 => current.resources.clone(),
                Api::V1Alpha1 => current.v1alpha1().to_vec(),
            },
            type_url: api.type_url().to_string(),
            nonce: last_nonce.clone(),
            ..Default::default()
        };
        waiting = false;
        if tx.send(Ok(response)).await.is_err() {
            return;
        }
    }
}
