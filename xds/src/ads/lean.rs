//! The ADS gRPC service with codec buffers sized for a fleet. The generated service gives every
//! stream an 8 KiB decode and an 8 KiB encode buffer before its first message; an Envoy's
//! requests are a few hundred bytes, so here both start at 1 KiB and grow only for a stream whose
//! messages need it. Thousands of idle streams then hold kilobytes less each.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic::codegen::{http, Body, BoxFuture, Context, Poll, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tonic_prost::{ProstDecoder, ProstEncoder};

use super::{AdsService, ResponseStream};

/// Where each stream's codec buffers start.
const INITIAL_BUFFER: usize = 1024;
/// How much encoded response data is gathered before it is handed to HTTP/2 (tonic's default).
const YIELD_THRESHOLD: usize = 32 * 1024;

const SOTW: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Prost encoding with small initial buffers.
struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> LeanCodec<T, U> {
    fn new() -> Self {
        LeanCodec(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::new(INITIAL_BUFFER, YIELD_THRESHOLD))
    }
}

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

struct Sotw(Arc<AdsService>);

impl StreamingService<DiscoveryRequest> for Sotw {
    type Response = DiscoveryResponse;
    type ResponseStream = ResponseStream<DiscoveryResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DiscoveryRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.stream_aggregated_resources(request).await })
    }
}

struct Delta(Arc<AdsService>);

impl StreamingService<DeltaDiscoveryRequest> for Delta {
    type Response = DeltaDiscoveryResponse;
    type ResponseStream = ResponseStream<DeltaDiscoveryResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<DeltaDiscoveryRequest>>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.delta_aggregated_resources(request).await })
    }
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
        let limit = Some(self.max_request_bytes);
        match request.uri().path() {
            SOTW => Box::pin(async move {
                let mut grpc =
                    Grpc::new(LeanCodec::new()).apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(Sotw(service), request).await)
            }),
            DELTA => Box::pin(async move {
                let mut grpc =
                    Grpc::new(LeanCodec::new()).apply_max_message_size_config(limit, None);
                Ok(grpc.streaming(Delta(service), request).await)
            }),
            other => {
                let status = Status::unimplemented(format!("no method {other}"));
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
