//! Peers of an in-process cluster, each with its own RocksDB and peer RPC port on 127.0.0.1.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::command::PeerInfo;
use crate::config::RaftConfig;
use crate::node::RaftNode;
use crate::store::RaftStore;
use crate::types::NodeId;

pub struct TestPeer {
    pub node: Arc<RaftNode>,
    pub store: RaftStore,
    pub config: RaftConfig,
    stop: Option<oneshot::Sender<()>>,
}

impl TestPeer {
    /// Stops the peer (its data stays); `TestPeer::start(config)` brings it back.
    pub async fn stop(mut self) -> RaftConfig {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.node.shutdown().await;
        // The listener is closed once the server task ends.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.config.clone()
    }

    pub async fn start(config: RaftConfig) -> TestPeer {
        let listener = bind(config.port).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let node = RaftNode::start(config.clone(), listener, async move {
            let _ = stopped.await;
        })
        .await
        .expect("the peer starts");
        TestPeer { store: RaftStore::new(node.clone()), node, config, stop: Some(stop) }
    }
}

impl Drop for TestPeer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn bind(port: u16) -> TcpListener {
    // A restarted peer takes its port back; the old socket may linger for a moment.
    for _ in 0..100 {
        if let Ok(listener) = TcpListener::bind(("127.0.0.1", port)).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("port {port} stays taken");
}

/// Settings for peer `id` of a cluster on `ports`, with data under `root`.
pub fn config(id: NodeId, ports: &BTreeMap<NodeId, u16>, root: &std::path::Path) -> RaftConfig {
    RaftConfig {
        node_id: id,
        peers: ports.iter().map(|(id, port)| (*id, format!("127.0.0.1:{port}"))).collect(),
        data_dir: PathBuf::from(root).join(format!("peer-{id}")),
        port: ports[&id],
        join: false,
        heartbeat: Duration::from_millis(50),
        election_timeout_min: Duration::from_millis(200),
        election_timeout_max: Duration::from_millis(400),
        write_timeout: Duration::from_secs(5),
        serves: PeerInfo {
            id,
            instance_id: format!("test-{id}"),
            xds_address: format!("127.0.0.1:{}", 5000 + id),
            api_url: format!("http://127.0.0.1:{}", 6000 + id),
            bootstrap_url: format!("http://127.0.0.1:{}", 7000 + id),
        },
        tls: None,
        listen_loopback_only: true,
        dial_overrides: BTreeMap::new(),
        force_new_cluster: false,
        early_replication: true,
        upkeep: crate::config::Upkeep::default(),
    }
}

/// Free loopback ports for `n` peers, ids 1..=n.
pub fn ports(n: u64) -> BTreeMap<NodeId, u16> {
    (1..=n).map(|id| (id, kuma_test_support::free_port())).collect()
}

/// Starts a cluster of `n` peers and waits for a leader.
pub async fn start_cluster(n: u64, root: &std::path::Path) -> Vec<TestPeer> {
    let ports = ports(n);
    let mut peers = Vec::new();
    for id in 1..=n {
        peers.push(TestPeer::start(config(id, &ports, root)).await);
    }
    wait_for_leader(&peers).await;
    peers
}

/// The id of the leader all running peers agree on, waiting up to 10 s.
pub async fn wait_for_leader(peers: &[TestPeer]) -> NodeId {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let leaders: Vec<Option<NodeId>> = peers.iter().map(|p| p.node.status().leader).collect();
        if let Some(Some(leader)) = leaders.first() {
            if leaders.iter().all(|l| *l == Some(*leader))
                && peers.iter().any(|p| p.node.id() == *leader)
            {
                return *leader;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "no agreed leader: {leaders:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` until it holds, failing the test with `what` after `deadline`.
pub async fn must_hold_within(deadline: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let until = tokio::time::Instant::now() + deadline;
    while !check() {
        assert!(tokio::time::Instant::now() < until, "{what} did not hold within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
