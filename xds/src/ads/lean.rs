//! The ADS gRPC service, shaped for a fleet of idle streams. Requests are decoded with a
//! buffer that starts at 1 KiB (not tonic's 8 KiB). Each response is encoded into a buffer of its
//! own, handed to HTTP/2 and freed once written: tonic's encoder keeps one buffer per stream that
//! grows to the stream's largest response (a first EDS answer of a big mesh) and stays that size
//! for the stream's life.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use futures::StreamExt;
use http_body::Frame;
use prost::Message;
use tonic::codec::{BufferSettings, Streaming};
use tonic::codegen::{http, Body, BoxFuture, Bytes, Context, Poll, Service, StdError};
use tonic::server::NamedService;
use tonic::{Request, Response, Status};
use tonic_prost::ProstDecoder;

use super::{AdsService, ResponseStream};

/// Where each stream's request decoding buffer starts.
const INITIAL_BUFFER: usize = 1024;
/// Decoding yields after this many bytes (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The Aggregated Discovery Service as tonic's router serves it.
#[derive(Clone)]
pub(crate) struct AdsServer {
    service: Arc<AdsService>,
    max_request_bytes: usize,
}

impl AdsServer {
    pub(crate) fn new(service: AdsService, max_request_bytes: usize) -> AdsServer {
        AdsServer { service: Arc::new(service), max_request_bytes }
    }
}

impl NamedService for AdsServer {
    const NAME: &'static str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
}

impl<B> Service<http::Request<B>> for AdsServer
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
        let service = self.service.clone();
        let limit = self.max_request_bytes;
        match request.uri().path() {
            SOTW => Box::pin(serve(
                request,
                limit,
                move |r: Request<Streaming<DiscoveryRequest>>| async move {
                    service.stream_aggregated_resources(r).await
                },
            )),
            DELTA => Box::pin(serve(
                request,
                limit,
                move |r: Request<Streaming<DeltaDiscoveryRequest>>| async move {
                    service.delta_aggregated_resources(r).await
                },
            )),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

/// One bidirectional stream: requests decoded as they come, responses framed one by one.
async fn serve<B, Req, Resp, F, Fut>(
    request: http::Request<B>,
    max_request_bytes: usize,
    handle: F,
) -> Result<http::Response<tonic::body::Body>, Infallible>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
    Req: Message + Default + Send + 'static,
    Resp: Message + Send + 'static,
    F: FnOnce(Request<Streaming<Req>>) -> Fut,
    Fut: Future<Output = Result<Response<ResponseStream<Resp>>, Status>>,
{
    let (parts, body) = request.into_parts();
    let decoder: ProstDecoder<Req> =
        ProstDecoder::new(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD));
    let requests = Streaming::new_request(decoder, body, None, Some(max_request_bytes));
    let request = Request::from_http(http::Request::from_parts(parts, requests));
    let response = match handle(request).await {
        Ok(response) => response,
        Err(status) => return Ok(status.into_http()),
    };
    let (metadata, responses, extensions) = response.into_parts();
    let mut http = http::Response::new(tonic::body::Body::new(Framed { responses, done: false }));
    *http.headers_mut() = metadata.into_headers();
    http.headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
    *http.extensions_mut() = extensions;
    Ok(http)
}

/// A response body of gRPC messages, each encoded into its own buffer, then the trailers with
/// the stream's status.
struct Framed<M> {
    responses: ResponseStream<M>,
    done: bool,
}

impl<M: Message + Send + 'static> Body for Framed<M> {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let status = match futures::ready!(self.responses.poll_next_unpin(cx)) {
            Some(Ok(message)) => return Poll::Ready(Some(Ok(Frame::data(frame(&message))))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        self.done = true;
        let mut trailers = http::HeaderMap::new();
        if let Err(unencodable) = status.add_header(&mut trailers) {
            Status::internal(unencodable.message().to_string()).add_header(&mut trailers).ok();
        }
        Poll::Ready(Some(Ok(Frame::trailers(trailers))))
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

/// One gRPC message: no compression flag, its length, its bytes.
fn frame(message: &impl Message) -> Bytes {
    let length = message.encoded_len();
    let mut buffer = Vec::with_capacity(5 + length);
    buffer.push(0);
    buffer.extend_from_slice(&(length as u32).to_be_bytes());
    message.encode(&mut buffer).expect("the buffer holds the message's encoded length");
    Bytes::from(buffer)
}
