//! The client side of the peer RPC: one lazily connected channel per peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::client::Grpc;
use tonic::codec::Codec;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request, Status};
use tracing::warn;

use super::codec::{ChunkCodec, JsonCodec, RawChunk};
use super::direct::DirectClient;
use super::{PeerRequest, PeerResponse, CALL_PATH, CLUSTER_HEADER, MAX_MESSAGE, SNAPSHOT_PATH};
use crate::config::PeerTls;
use crate::formation::Admission;

/// How long a connection to a peer may take before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long snapshot chunks go to a peer as JSON after it answered that it takes no raw ones (an
/// earlier kuma-cp, during a rolling upgrade) before the raw form is tried again.
const EARLIER_PEER_RECHECK: Duration = Duration::from_secs(60);

/// Why no client could be made for a peer.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum DialError {
    #[error("peer {0} has no known address")]
    NoAddress(u64),
    #[error("peer address {address:?} is not host:port: {reason}")]
    Address { address: String, reason: String },
    #[error("peer TLS settings: {0}")]
    Tls(String),
}

#[derive(Clone, Debug)]
pub struct PeerClient {
    grpc: Grpc<Channel>,
    /// Says which cluster the caller belongs to, once it knows.
    admission: Option<Admission>,
    address: Arc<str>,
    /// When the peer last answered `SNAPSHOT_PATH` with `Unimplemented`; shared by the clones.
    raw_refused: Arc<Mutex<Option<Instant>>>,
    /// Every request but snapshot chunks goes this way (see `direct`), shared by the clones.
    direct: Arc<DirectClient>,
}

impl PeerClient {
    /// A client for the peer at `host:port`, over mutual TLS when `tls` is given; connects on
    /// first use.
    pub fn new(address: &str, tls: Option<&PeerTls>) -> Result<PeerClient, DialError> {
        Self::for_cluster(address, tls, None)
    }

    pub(crate) fn for_cluster(
        address: &str,
        tls: Option<&PeerTls>,
        admission: Option<Admission>,
    ) -> Result<PeerClient, DialError> {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{address}")).map_err(|e| {
            DialError::Address { address: address.to_string(), reason: e.to_string() }
        })?;
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(
                    ClientTlsConfig::new()
                        .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                        .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem))
                        .domain_name(tls.server_name.clone()),
                )
                .map_err(|e| DialError::Tls(e.to_string()))?;
        }
        let endpoint = endpoint
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let grpc = Grpc::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        let address: Arc<str> = address.into();
        let direct =
            DirectClient::new(address.clone(), tls, CONNECT_TIMEOUT).map_err(DialError::Tls)?;
        Ok(PeerClient {
            grpc,
            admission,
            address,
            raw_refused: Arc::default(),
            direct: Arc::new(direct),
        })
    }

    /// Idle direct connections kept for this peer.
    #[cfg(test)]
    pub(super) fn idle_direct(&self) -> usize {
        self.direct.idle_connections().0
    }

    /// Of those, the ones still open.
    #[cfg(test)]
    pub(super) fn open_idle_direct(&self) -> usize {
        self.direct.idle_connections().1
    }

    /// The caller's cluster id, once it has one.
    fn cluster_id(&self) -> Option<String> {
        self.admission.as_ref().and_then(Admission::cluster_id)
    }

    /// Whether snapshot chunks go raw (`SNAPSHOT_PATH`): unless the peer refused them lately.
    fn takes_raw_chunks(&self) -> bool {
        let refused = self.raw_refused.lock().unwrap_or_else(|p| p.into_inner());
        refused.is_none_or(|at| at.elapsed() >= EARLIER_PEER_RECHECK)
    }

    /// Sends one request; fails after `timeout`. A snapshot chunk goes with its bytes raw
    /// (`SNAPSHOT_PATH`); to a peer of an earlier version, which knows only `CALL_PATH`, the first
    /// fails with a message saying so (openraft sends the chunk again) and the next go as JSON.
    pub async fn call(
        &self,
        request: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, Status> {
        match request {
            PeerRequest::InstallSnapshot(chunk) if self.takes_raw_chunks() => {
                let codec = ChunkCodec::<RawChunk, PeerResponse>::default();
                match self.unary(RawChunk(chunk), SNAPSHOT_PATH, codec, timeout).await {
                    Err(status) if status.code() == Code::Unimplemented => {
                        *self.raw_refused.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(Instant::now());
                        let message = format!(
                            "peer at {} does not take Raft snapshot chunks as raw bytes (it \
                             answered {SNAPSHOT_PATH} Unimplemented: an earlier kuma-cp); they go \
                             to it as JSON on {CALL_PATH} until it is upgraded",
                            self.address
                        );
                        warn!(peer = %self.address, "{message}");
                        Err(Status::unimplemented(message))
                    }
                    answer => answer,
                }
            }
            request => {
                let cluster = self.cluster_id();
                if let Some(answer) = self.direct.call(&request, cluster.as_deref(), timeout).await
                {
                    return answer;
                }
                let codec = JsonCodec::<PeerRequest, PeerResponse>::default();
                self.unary(request, CALL_PATH, codec, timeout).await
            }
        }
    }

    async fn unary<M, C>(
        &self,
        message: M,
        path: &'static str,
        codec: C,
        timeout: Duration,
    ) -> Result<PeerResponse, Status>
    where
        M: Send + Sync + 'static,
        C: Codec<Encode = M, Decode = PeerResponse>,
    {
        let mut grpc = self.grpc.clone();
        let mut request = Request::new(message);
        request.set_timeout(timeout);
        if let Some(id) = self.cluster_id() {
            if let Ok(value) = id.parse() {
                request.metadata_mut().insert(CLUSTER_HEADER, value);
            }
        }
        let call = async move {
            grpc.ready().await.map_err(|e| Status::unavailable(format!("peer not ready: {e}")))?;
            grpc.unary(request, PathAndQuery::from_static(path), codec)
                .await
                .map(tonic::Response::into_inner)
        };
        tokio::time::timeout(timeout, call)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("peer did not answer in time")))
    }
}

/// One client per peer address, reused by every call of one user: a new client per call would
/// cost a TCP and TLS handshake each time. A peer keeps two of these: one for openraft (its
/// replication streams, votes, and the leadership check of every consistent read) and one for
/// our own calls (forwarded writes, pre-votes, status). Sharing one between them made failovers
/// slower (chaos test: median 0.57 -> 0.83 s, max 0.67 -> 1.89 s). The likely cause, not proven:
/// our calls to a dead leader, waiting out their timeouts, then share the channel (and its
/// reconnects) with Raft's messages.
#[derive(Clone, Debug, Default)]
pub struct PeerClients {
    tls: Option<Arc<PeerTls>>,
    admission: Option<Admission>,
    clients: Arc<Mutex<BTreeMap<String, PeerClient>>>,
}

impl PeerClients {
    pub fn new(tls: Option<Arc<PeerTls>>) -> PeerClients {
        PeerClients { tls, admission: None, clients: Arc::default() }
    }

    /// Clients that tell every peer which cluster this one belongs to.
    pub(crate) fn of_cluster(tls: Option<Arc<PeerTls>>, admission: Admission) -> PeerClients {
        PeerClients { tls, admission: Some(admission), clients: Arc::default() }
    }

    /// The client for the peer at `address`, created on first use.
    pub fn get(&self, address: &str) -> Result<PeerClient, DialError> {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(address) {
            return Ok(client.clone());
        }
        let client = PeerClient::for_cluster(address, self.tls.as_deref(), self.admission.clone())?;
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }
}
