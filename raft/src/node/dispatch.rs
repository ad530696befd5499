//! The peer RPC's requests, dispatched to openraft, the write path, reads, status and membership.

use openraft::raft::AppendEntriesResponse;

use super::RaftNode;
use crate::election;
use crate::rpc::{ForwardError, PeerHandler, PeerRequest, PeerResponse};

#[async_trait::async_trait]
impl PeerHandler for RaftNode {
    async fn handle(&self, request: PeerRequest) -> PeerResponse {
        match request {
            PeerRequest::AppendEntries(rpc) => {
                let result = self.raft.append_entries(rpc).await;
                if matches!(&result, Ok(r) if !matches!(r, AppendEntriesResponse::HigherVote(_))) {
                    self.contact.touch();
                }
                PeerResponse::AppendEntries(result)
            }
            PeerRequest::Vote(rpc) => {
                let result = self.raft.vote(rpc).await;
                if matches!(&result, Ok(r) if r.vote_granted) {
                    self.contact.touch();
                }
                PeerResponse::Vote(result)
            }
            PeerRequest::InstallSnapshot(rpc) => {
                let leader = rpc.vote;
                let result = self.raft.install_snapshot(rpc).await;
                if matches!(&result, Ok(r) if r.vote <= leader) {
                    self.contact.touch();
                }
                PeerResponse::InstallSnapshot(result)
            }
            PeerRequest::PreVote { last_log_id } => PeerResponse::PreVote(
                election::pre_vote(&self.raft, &self.contact, &self.log, self.timings, last_log_id)
                    .await,
            ),
            PeerRequest::Write(command) => {
                PeerResponse::Write(self.committer.serve_forwarded(command).await)
            }
            PeerRequest::ReadIndex => PeerResponse::ReadIndex(self.serve_read_index().await),
            PeerRequest::Status => PeerResponse::Status(self.status()),
            PeerRequest::Hello { from } => PeerResponse::Hello(self.hello(from)),
            PeerRequest::TimeoutNow => {
                self.campaign_now().await;
                PeerResponse::Membership(Ok(()))
            }
            request @ (PeerRequest::AddPeer { .. }
            | PeerRequest::RemovePeer { .. }
            | PeerRequest::Rejoin { .. }
            | PeerRequest::TransferLeader { .. }) => {
                PeerResponse::Membership(if self.is_leader() {
                    self.lead(request).await
                } else {
                    Err(ForwardError::NotLeader(self.config.node_id))
                })
            }
        }
    }
}
