//! Mutual TLS on the peer RPC: peers with certificates from the cluster CA form a cluster;
//! nothing else gets an answer.

use std::time::Duration;

use kuma_ca::{ClusterCa, PEER_SERVER_NAME};
use kuma_model::{MeshSpec, ResourceKey, Spec};
use kuma_store::ResourceStore;
use tempfile::TempDir;

use super::harness::{config, must_hold_within, ports, wait_for_leader, TestPeer};
use crate::config::PeerTls;
use crate::rpc::{PeerClient, PeerRequest, PeerResponse};

fn tls_for(ca: &ClusterCa, id: u64) -> PeerTls {
    let issued = ca.issue_peer(id).unwrap();
    PeerTls {
        ca_pem: ca.ca.cert_pem.clone(),
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        server_name: PEER_SERVER_NAME.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_with_certificates_from_the_cluster_ca_form_a_cluster_and_no_one_else_is_answered() {
    let dir = TempDir::new().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let ports = ports(3);
    let mut peers = Vec::new();
    for id in 1..=3 {
        let mut cfg = config(id, &ports, dir.path());
        cfg.tls = Some(tls_for(&ca, id));
        peers.push(TestPeer::start(cfg).await);
    }
    wait_for_leader(&peers).await;
    peers[1]
        .store
        .create(ResourceKey::mesh("over-tls"), Spec::Mesh(MeshSpec::default()))
        .await
        .expect("a write replicates over mutual TLS");

    let address = format!("127.0.0.1:{}", ports[&1]);
    let timeout = Duration::from_secs(2);
    let plain = PeerClient::new(&address, None).unwrap();
    assert!(plain.call(PeerRequest::Status, timeout).await.is_err(), "a client without TLS");

    let foreign = ClusterCa::generate().unwrap();
    let stranger = PeerClient::new(&address, Some(&tls_for(&foreign, 9))).unwrap();
    assert!(
        stranger.call(PeerRequest::Status, timeout).await.is_err(),
        "a client whose certificate another CA issued"
    );

    let member = PeerClient::new(&address, Some(&tls_for(&ca, 4))).unwrap();
    match member.call(PeerRequest::Status, timeout).await {
        Ok(PeerResponse::Status(status)) => assert_eq!(status.id, 1),
        other => panic!("a client with a certificate from the cluster CA: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_with_a_certificate_from_another_ca_cannot_be_added() {
    let dir = TempDir::new().unwrap();
    let ca = ClusterCa::generate().unwrap();
    let mut ports = ports(3);
    let mut peers = Vec::new();
    for id in 1..=3 {
        let mut cfg = config(id, &ports, dir.path());
        cfg.tls = Some(tls_for(&ca, id));
        cfg.write_timeout = Duration::from_secs(1);
        peers.push(TestPeer::start(cfg).await);
    }
    wait_for_leader(&peers).await;
    ports.insert(4, kuma_test_support::free_port());
    let mut intruder = config(4, &ports, dir.path());
    intruder.join = true;
    intruder.tls = Some(tls_for(&ClusterCa::generate().unwrap(), 4));
    let _intruder = TestPeer::start(intruder).await;
    let result = peers[0].node.add_peer(4, format!("127.0.0.1:{}", ports[&4])).await;
    assert!(
        matches!(&result, Err(crate::ForwardError::Unavailable(m)) if m.contains("certificate")),
        "{result:?}"
    );
    // The removal of the learner commits on the leader; peer 1 may learn of it a moment later.
    must_hold_within(Duration::from_secs(5), "the failed learner is removed", || {
        let status = peers[0].node.status();
        status.voters == vec![1, 2, 3] && status.learners.is_empty()
    })
    .await;
}
