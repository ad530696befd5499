//! The standalone SDS server (port 5677, gRPC over TLS): the same identity and mesh CA secrets a
//! dataplane gets over ADS, for clients that fetch secrets on their own stream. A secrets stream
//! is a state-of-the-world stream that only asks for secrets, so it shares the ADS streams'
//! protocol handling and the snapshot cache.

use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::secret::v3::secret_discovery_service_server::SecretDiscoveryService;
use futures::channel::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::delta::DeltaStream;
use super::sotw::SotwStream;
use super::{stream, token_of, ResponseStream, Shared, STREAM_BUFFER};
use crate::metrics::StreamApi;
use crate::xds_type::XdsType;

/// The tonic service; one task per stream.
#[derive(Debug, Clone)]
pub(crate) struct SdsService {
    shared: Arc<Shared>,
}

impl SdsService {
    pub(crate) fn new(shared: Arc<Shared>) -> SdsService {
        SdsService { shared }
    }
}

fn only_secrets(type_url: &str) -> Result<(), Status> {
    if type_url.is_empty() || type_url == XdsType::Secret.type_url() {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "the SDS server serves only {}, not {type_url}",
            XdsType::Secret.type_url()
        )))
    }
}

#[tonic::async_trait]
impl SecretDiscoveryService for SdsService {
    type StreamSecretsStream = ResponseStream<DiscoveryResponse>;
    type DeltaSecretsStream = ResponseStream<DeltaDiscoveryResponse>;

    async fn stream_secrets(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<Self::StreamSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let token = token_of(&request);
        tokio::spawn(stream::serve::<SotwStream>(
            StreamApi::Sds,
            self.shared.clone(),
            request.into_inner(),
            token,
            tx,
        ));
        Ok(Response::new(Box::pin(rx)))
    }

    async fn delta_secrets(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaSecretsStream>, Status> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let token = token_of(&request);
        tokio::spawn(stream::serve::<DeltaStream>(
            StreamApi::DeltaSds,
            self.shared.clone(),
            request.into_inner(),
            token,
            tx,
        ));
        Ok(Response::new(Box::pin(rx)))
    }

    async fn fetch_secrets(
        &self,
        request: Request<DiscoveryRequest>,
    ) -> Result<Response<DiscoveryResponse>, Status> {
        only_secrets(&request.get_ref().type_url)?;
        Err(Status::unimplemented("fetch_secrets: use stream_secrets"))
    }
}
