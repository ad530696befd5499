//! The Aggregated Discovery Service: state-of-the-world and incremental (delta) streams over one
//! gRPC service. Both follow Envoy's xDS protocol: ACK and NACK by `error_detail`, no reply to an
//! ACK, stale nonces ignored, push order CDS → EDS → LDS → RDS → SDS, and a rejected config not
//! sent again (and nothing newer sent before the NACK backoff has passed).

mod delta;
mod lean;
mod sds;
mod sotw;
mod stream;
mod subscription;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::AggregatedDiscoveryService;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use futures::channel::mpsc;
use futures::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::DataplaneAuth;
use crate::cache::SnapshotCache;
use crate::metrics::StreamApi;
use crate::node_id::NodeId;
use crate::status::StatusTracker;

pub(crate) use lean::AdsServer;
pub(crate) use sds::SdsService;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Responses queued per stream before the stream task waits for Envoy to read.
const STREAM_BUFFER: usize = 16;

/// What every stream shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cache: Arc<SnapshotCache>,
    pub status: Arc<StatusTracker>,
    pub auth: Arc<DataplaneAuth>,
    pub nack_backoff: Duration,
    /// Becomes true when the server shuts down; every stream then ends.
    pub stop: tokio::sync::watch::Receiver<bool>,
}

/// The tonic service; one task per stream.
#[derive(Debug, Clone)]
pub struct AdsService {
    shared: Arc<Shared>,
}

impl AdsService {
    pub(crate) fn new(shared: Arc<Shared>) -> AdsService {
        AdsService { shared }
    }
}

/// The dataplane a stream serves, from the node of its first request.
fn node_of(node: Option<&Node>) -> Result<NodeId, Status> {
    let node = node.ok_or_else(|| {
        Status::invalid_argument("the first request of a stream must carry the node")
    })?;
    NodeId::parse(&node.id).map_err(Status::invalid_argument)
}

/// The dataplane token of a stream: gRPC metadata `authorization`, with or without `Bearer `.
fn token_of<T>(request: &Request<T>) -> Option<String> {
    let value = request.metadata().get("authorization")?.to_str().ok()?.trim();
    Some(value.strip_prefix("Bearer ").unwrap_or(value).trim().to_string())
}

/// Ends a stream's registration in the cache however the stream ends.
struct Registration {
    cache: Arc<SnapshotCache>,
    node: NodeId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cache.unsubscribe(&self.node);
    }
}

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream<DiscoveryResponse>;
    type DeltaAggregatedResourcesStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let token = token_of(&request);
        tokio::spawn(stream::serve::<sotw::SotwStream>(
            StreamApi::Ads,
            self.shared.clone(),
            request.into_inner(),
            token,
            tx,
        ));
        Ok(Response::new(Box::pin(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let token = token_of(&request);
        tokio::spawn(stream::serve::<delta::DeltaStream>(
            StreamApi::DeltaAds,
            self.shared.clone(),
            request.into_inner(),
            token,
            tx,
        ));
        Ok(Response::new(Box::pin(rx)))
    }
}
