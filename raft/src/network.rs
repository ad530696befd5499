//! openraft's network over the peer RPC.

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};

use crate::early::InFlight;
use crate::rpc::{DialError, PeerClient, PeerClients, PeerRequest, PeerResponse};
use crate::types::{NodeId, PeerNode, TypeConfig};

#[derive(Clone, Debug, Default)]
pub struct NetworkFactory {
    pub clients: PeerClients,
    pub dial_overrides: std::sync::Arc<std::collections::BTreeMap<NodeId, String>>,
    /// Which peers have a replication request in flight (early replication skips them).
    pub(crate) in_flight: InFlight,
}

/// Raft's connection to one peer.
#[derive(Debug)]
pub struct PeerConnection {
    target: NodeId,
    client: Result<PeerClient, DialError>,
    in_flight: InFlight,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerConnection {
        let address = crate::config::dial_address(&self.dial_overrides, target, &node.raft_address);
        // openraft asks for a connection per replication stream, and again for every leadership
        // check (each consistent read): reuse the peer's client.
        PeerConnection {
            target,
            client: self.clients.get(address),
            in_flight: self.in_flight.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("peer {peer}: {message}")]
struct TransportError {
    peer: NodeId,
    message: String,
}

type Failure<E> = RPCError<NodeId, PeerNode, RaftError<NodeId, E>>;

impl PeerConnection {
    async fn call<E: std::error::Error>(
        &self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerResponse, Failure<E>> {
        let client =
            self.client.as_ref().map_err(|e| RPCError::Unreachable(Unreachable::new(e)))?;
        client.call(request, option.hard_ttl()).await.map_err(|status| {
            let error = TransportError { peer: self.target, message: status.message().to_string() };
            match status.code() {
                // Not listening, or not reachable: openraft backs off before trying again.
                tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&error)),
                _ => RPCError::Network(NetworkError::new(&error)),
            }
        })
    }

    fn unexpected<E: std::error::Error>(&self, got: &PeerResponse) -> Failure<E> {
        let error = TransportError { peer: self.target, message: format!("answered {got:?}") };
        RPCError::Network(NetworkError::new(&error))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        // A heartbeat carries no entries: an early request may go beside it.
        let _replicating =
            (!rpc.entries.is_empty()).then(|| self.in_flight.replicating(self.target));
        match self.call(PeerRequest::AppendEntries(rpc), &option).await? {
            PeerResponse::AppendEntries(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let _replicating = self.in_flight.replicating(self.target);
        match self.call(PeerRequest::InstallSnapshot(rpc), &option).await? {
            PeerResponse::InstallSnapshot(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        match self.call(PeerRequest::Vote(rpc), &option).await? {
            PeerResponse::Vote(result) => {
                result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(&other)),
        }
    }
}
