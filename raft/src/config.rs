//! Settings of the Raft store (`store.raft` in kuma-cp's config).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::command::PeerInfo;
use crate::types::NodeId;

/// The address to dial peer `id` at: its entry in `overrides` (`dialAddresses`), else the address
/// the membership lists for it.
pub(crate) fn dial_address<'a>(
    overrides: &'a BTreeMap<NodeId, String>,
    id: NodeId,
    membership_address: &'a str,
) -> &'a str {
    overrides.get(&id).map_or(membership_address, String::as_str)
}

/// Everything a Raft peer needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// This peer's id; never reused for another peer.
    pub node_id: NodeId,
    /// Every peer of the initial cluster, id → `host:port` of its Raft RPC. Includes this one.
    pub peers: BTreeMap<NodeId, String>,
    /// Where the log, the vote and snapshots are kept.
    pub data_dir: PathBuf,
    /// Port the peer RPC listens on (all interfaces).
    pub port: u16,
    /// Start without forming a cluster, waiting to be added to an existing one.
    pub join: bool,
    pub heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// How long a write waits for a leader before it fails as unavailable.
    pub write_timeout: Duration,
    /// What this peer serves, announced to the others.
    pub serves: PeerInfo,
    /// Mutual TLS between peers; `None` only for a development peer alone or a test cluster.
    pub tls: Option<PeerTls>,
    /// Where the peer RPC listens; loopback for a development peer alone.
    pub listen_loopback_only: bool,
    /// Addresses this peer dials to reach some peers, when they differ from the cluster-wide
    /// ones (NAT, a proxy in between).
    pub dial_overrides: BTreeMap<NodeId, String>,
    /// Before openraft reads the data, make this peer the only member of its cluster, keeping
    /// every log entry (`kuma-cp run --force-new-cluster`, after a majority is lost for good).
    pub force_new_cluster: bool,
    /// As leader, send new entries to idle followers while writing them to this peer's disk
    /// (see `early`); off, a follower gets them only once the leader's write is durable.
    pub early_replication: bool,
    /// Snapshots, log compaction and dead-peer cleanup.
    pub upkeep: Upkeep,
}

/// When the log is compacted and dead peers removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upkeep {
    /// A snapshot is built once this many entries were appended since the last one; the log it
    /// covers is then purged.
    pub snapshot_entries: u64,
    /// ... or once this many bytes of entries were.
    pub snapshot_bytes: u64,
    /// A voter no one heard from for this long is removed (Consul's autopilot
    /// CleanupDeadServers); `None`: never.
    pub remove_dead_after: Option<Duration>,
    /// Dead voters are never removed below this many voters.
    pub min_quorum: usize,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            snapshot_entries: 5000,
            snapshot_bytes: 64 * 1024 * 1024,
            remove_dead_after: None,
            min_quorum: 3,
        }
    }
}

/// Why a peer list (`ID=HOST:PORT,...`) does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeerListError {
    #[error("{0:?} is not ID=HOST:PORT, e.g. 1=10.0.0.1:5683")]
    NotIdAddress(String),
    #[error("{id:?} in {item:?} is not a numeric peer id")]
    Id { id: String, item: String },
    #[error("{address:?} in {item:?} is not HOST:PORT")]
    Address { address: String, item: String },
    #[error("peer id {0} is listed twice")]
    Twice(NodeId),
}

/// The cluster CA and this peer's certificate and key, PEM-encoded. Every peer presents its
/// certificate and accepts only peers whose certificates the CA issued for `server_name`.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerTls {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The name every peer certificate carries, checked when connecting.
    pub server_name: String,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the private key.
        f.debug_struct("PeerTls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl RaftConfig {
    /// Parses `1=10.0.0.1:5683,2=10.0.0.2:5683`.
    pub fn parse_peers(text: &str) -> Result<BTreeMap<NodeId, String>, PeerListError> {
        let mut peers = BTreeMap::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (id, address) =
                item.split_once('=').ok_or_else(|| PeerListError::NotIdAddress(item.into()))?;
            let id: NodeId = id.trim().parse().map_err(|_| PeerListError::Id {
                id: id.trim().to_string(),
                item: item.to_string(),
            })?;
            let address = address.trim();
            let valid = address.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid {
                return Err(PeerListError::Address {
                    address: address.to_string(),
                    item: item.to_string(),
                });
            }
            if peers.insert(id, address.to_string()).is_some() {
                return Err(PeerListError::Twice(id));
            }
        }
        Ok(peers)
    }

    /// Every problem, as `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.node_id == 0 {
            problems
                .push("store.raft.nodeId: must be set to this peer's id (1 or more)".to_string());
        }
        if !self.join && !self.peers.contains_key(&self.node_id) {
            problems.push(format!(
                "store.raft.peers: must list this peer (id {}) to form a cluster, or set store.raft.join",
                self.node_id
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            problems.push("store.raft.dataDir: must be set".to_string());
        }
        if self.heartbeat * 2 >= self.election_timeout_min {
            problems.push(
                "store.raft.heartbeatInterval: must be under half of electionTimeoutMin"
                    .to_string(),
            );
        }
        if self.upkeep.snapshot_entries == 0 {
            problems.push("store.raft.snapshotEntries: must be 1 or more".to_string());
        }
        if self.upkeep.snapshot_bytes < 1024 * 1024 {
            problems.push("store.raft.snapshotBytes: must be at least 1048576 (1 MiB)".to_string());
        }
        if self.upkeep.remove_dead_after.is_some() && self.upkeep.min_quorum < 3 {
            problems.push(
                "store.raft.autopilot.minQuorum: must be 3 or more when dead peers are removed"
                    .to_string(),
            );
        }
        if self.election_timeout_min >= self.election_timeout_max {
            problems.push(
                "store.raft.electionTimeoutMin: must be below electionTimeoutMax".to_string(),
            );
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_with_ids_and_addresses() {
        let peers = RaftConfig::parse_peers("1=10.0.0.1:5683, 2=node-2:5683,3=[::1]:5683").unwrap();
        assert_eq!(peers[&1], "10.0.0.1:5683");
        assert_eq!(peers[&2], "node-2:5683");
        assert_eq!(peers[&3], "[::1]:5683");
    }

    #[test]
    fn malformed_peers_say_what_is_wrong() {
        for (text, expected) in [
            ("10.0.0.1:5683", "ID=HOST:PORT"),
            ("x=10.0.0.1:5683", "numeric"),
            ("1=10.0.0.1", "HOST:PORT"),
            ("1=a:1,1=b:2", "twice"),
        ] {
            let err = RaftConfig::parse_peers(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
