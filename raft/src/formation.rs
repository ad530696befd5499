//! Forming the cluster once, and never again from an empty data directory.
//!
//! A peer whose data directory is empty cannot tell a brand-new cluster from one that has run for
//! months and lost this peer's disk. Forming again would be unsafe: Raft's vote record is gone, so
//! the peer could vote twice in one term, and two wiped peers could elect each other from empty
//! logs. So an empty peer first asks every configured peer about the cluster:
//!
//! - a peer that knows this one as a member that announced itself (it ran with its data before)
//!   makes it refuse to start, or, with `KUMA_STORE_RAFT_JOIN=true`, rejoin as a learner that is
//!   promoted back to voter once it caught up;
//! - a cluster that exists (it has an id) but never heard this peer announce itself means a late
//!   first start, or a peer wiped before it announced: either way it forms nothing and is taken
//!   in as a learner that votes only once it caught up, as a rejoining peer is;
//! - only when every configured peer answered and none belongs to a named cluster does it form.
//!
//! Until it decided, the peer takes part in nothing: Raft's messages to it are turned away.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::rpc::{PeerClients, PeerRequest, PeerResponse};
use crate::types::NodeId;

/// How long one peer has to answer the question.
const HELLO_TIMEOUT: Duration = Duration::from_millis(500);

/// What a peer tells an empty peer about the cluster.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub cluster_id: Option<String>,
    /// It knows the asking peer as a member that ran before (it announced itself, or retired).
    pub knows_you: bool,
    pub leader: Option<NodeId>,
    /// The leader's Raft address, when it has one.
    pub leader_address: Option<String>,
}

/// What the peer RPC lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Gate {
    /// An empty peer still asking: no Raft message is taken.
    Deciding = 0,
    Open = 1,
    /// A wiped peer rejoining as a learner: it takes entries but votes for no one.
    Rejoining = 2,
}

/// The gate and the cluster id, shared by the node and its RPC server and clients.
#[derive(Clone, Debug)]
pub(crate) struct Admission {
    gate: Arc<AtomicU8>,
    cluster_id: Arc<RwLock<Option<String>>>,
}

impl Admission {
    pub(crate) fn new(gate: Gate) -> Admission {
        Admission { gate: Arc::new(AtomicU8::new(gate as u8)), cluster_id: Arc::default() }
    }

    pub(crate) fn gate(&self) -> Gate {
        match self.gate.load(Ordering::Acquire) {
            0 => Gate::Deciding,
            2 => Gate::Rejoining,
            _ => Gate::Open,
        }
    }

    pub(crate) fn set_gate(&self, gate: Gate) {
        self.gate.store(gate as u8, Ordering::Release);
    }

    pub(crate) fn cluster_id(&self) -> Option<String> {
        self.cluster_id.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_cluster_id(&self, id: Option<String>) {
        *self.cluster_id.write().unwrap_or_else(|p| p.into_inner()) = id;
    }

    /// Whether `request`, from a peer of cluster `their_cluster`, may be served now; if not, why.
    pub(crate) fn admits(
        &self,
        request: &PeerRequest,
        their_cluster: Option<&str>,
    ) -> Result<(), Refusal> {
        if let (Some(ours), Some(theirs)) = (self.cluster_id(), their_cluster) {
            if ours != theirs {
                return Err(Refusal::OtherCluster { ours, theirs: theirs.to_string() });
            }
        }
        let raft_message = matches!(
            request,
            PeerRequest::AppendEntries(_)
                | PeerRequest::InstallSnapshot(_)
                | PeerRequest::Vote(_)
                | PeerRequest::PreVote { .. }
        );
        let vote = matches!(request, PeerRequest::Vote(_) | PeerRequest::PreVote { .. });
        match self.gate() {
            Gate::Deciding if raft_message => Err(Refusal::Deciding),
            Gate::Rejoining if vote => Err(Refusal::Rejoining),
            _ => Ok(()),
        }
    }
}

/// Why a peer request was turned away.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "this peer belongs to Raft cluster {ours}, the caller to cluster {theirs}: a peer from \
         another cluster is never served"
    )]
    OtherCluster { ours: String, theirs: String },
    #[error("this peer's data directory is empty and it is still asking the cluster about it")]
    Deciding,
    #[error("this peer lost its data and rejoins as a learner: it votes once it caught up")]
    Rejoining,
}

/// What an empty peer does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Brand-new cluster: every configured peer answered and none belongs to a named cluster.
    Form,
    /// The cluster exists and never heard this peer announce itself: a late first start, or a
    /// peer wiped before it announced. Either way it catches up as a learner before it votes,
    /// through `leader`.
    AwaitLeader { leader: Option<(NodeId, String)> },
    /// The cluster knows this peer: it lost its data. `leader` may be asked to re-add it.
    Wiped { cluster_id: Option<String>, leader: Option<(NodeId, String)> },
    /// Some configured peers did not answer; ask again.
    Undecided { silent: Vec<NodeId> },
}

/// Asks every other configured peer once and decides.
pub(crate) async fn ask(
    me: NodeId,
    peers: &std::collections::BTreeMap<NodeId, String>,
    clients: &PeerClients,
) -> Decision {
    let questions = peers.iter().filter(|(id, _)| **id != me).map(|(id, address)| async move {
        let answer = match clients.get(address) {
            Ok(client) => match client.call(PeerRequest::Hello { from: me }, HELLO_TIMEOUT).await {
                Ok(PeerResponse::Hello(hello)) => Some(hello),
                _ => None,
            },
            Err(_) => None,
        };
        (*id, answer)
    });
    let answers = futures::future::join_all(questions).await;
    decide(&answers)
}

/// The decision for these answers (`None`: the peer did not answer).
pub(crate) fn decide(answers: &[(NodeId, Option<Hello>)]) -> Decision {
    let heard: Vec<&Hello> = answers.iter().filter_map(|(_, a)| a.as_ref()).collect();
    if let Some(knowing) = heard.iter().find(|h| h.knows_you) {
        let leader = heard.iter().find_map(|h| h.leader.zip(h.leader_address.clone()));
        return Decision::Wiped { cluster_id: knowing.cluster_id.clone(), leader };
    }
    if heard.iter().any(|h| h.cluster_id.is_some()) {
        let leader = heard.iter().find_map(|h| h.leader.zip(h.leader_address.clone()));
        return Decision::AwaitLeader { leader };
    }
    let silent: Vec<NodeId> =
        answers.iter().filter(|(_, a)| a.is_none()).map(|(id, _)| *id).collect();
    if silent.is_empty() {
        Decision::Form
    } else {
        Decision::Undecided { silent }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(knows_you: bool) -> Option<Hello> {
        Some(Hello {
            cluster_id: Some("c1".into()),
            knows_you,
            leader: Some(1),
            leader_address: Some("127.0.0.1:1".into()),
        })
    }

    #[test]
    fn a_brand_new_cluster_forms_only_when_every_peer_answered_empty() {
        let empty = Some(Hello::default());
        assert_eq!(decide(&[(1, empty.clone()), (3, empty.clone())]), Decision::Form);
        assert_eq!(decide(&[(1, empty), (3, None)]), Decision::Undecided { silent: vec![3] });
    }

    #[test]
    fn a_peer_the_cluster_knows_is_wiped_even_if_others_are_silent_or_empty() {
        let decision = decide(&[(1, named(true)), (3, None)]);
        assert_eq!(
            decision,
            Decision::Wiped {
                cluster_id: Some("c1".into()),
                leader: Some((1, "127.0.0.1:1".into()))
            }
        );
        assert!(matches!(
            decide(&[(1, Some(Hello::default())), (3, named(true))]),
            Decision::Wiped { .. }
        ));
    }

    #[test]
    fn a_named_cluster_that_never_heard_of_the_peer_is_a_late_first_start() {
        assert_eq!(
            decide(&[(1, named(false)), (3, None)]),
            Decision::AwaitLeader { leader: Some((1, "127.0.0.1:1".into())) }
        );
    }

    #[test]
    fn the_gate_turns_away_raft_messages_while_deciding_and_votes_while_rejoining() {
        let admission = Admission::new(Gate::Deciding);
        let pre_vote = PeerRequest::PreVote { last_log_id: None };
        assert_eq!(admission.admits(&pre_vote, None), Err(Refusal::Deciding));
        assert_eq!(admission.admits(&PeerRequest::Status, None), Ok(()));
        admission.set_gate(Gate::Rejoining);
        assert_eq!(admission.admits(&pre_vote, None), Err(Refusal::Rejoining));
        admission.set_gate(Gate::Open);
        assert_eq!(admission.admits(&pre_vote, None), Ok(()));
        admission.set_cluster_id(Some("a".into()));
        assert!(matches!(
            admission.admits(&PeerRequest::Status, Some("b")),
            Err(Refusal::OtherCluster { .. })
        ));
        assert_eq!(admission.admits(&PeerRequest::Status, Some("a")), Ok(()));
        assert_eq!(admission.admits(&PeerRequest::Status, None), Ok(()));
    }
}
