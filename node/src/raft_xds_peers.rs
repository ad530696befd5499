//! The xDS addresses a bootstrap names when the store is replicated through Raft.

use std::sync::Arc;

use kuma_raft::RaftNode;
use kuma_xds::{XdsAddress, XdsPeers};

/// The xDS address of every peer that announced one (this one included).
#[derive(Debug)]
pub struct RaftXdsPeers {
    pub node: Arc<RaftNode>,
    /// Used until this peer's own announcement is replicated.
    pub fallback: kuma_xds::SinglePeer,
}

impl XdsPeers for RaftXdsPeers {
    fn xds_addresses(&self, request_host: &str) -> Vec<XdsAddress> {
        let announced: Vec<XdsAddress> = self
            .node
            .replica()
            .peers()
            .values()
            .filter_map(|p| XdsAddress::parse(&p.xds_address))
            .collect();
        if announced.is_empty() {
            self.fallback.xds_addresses(request_host)
        } else {
            announced
        }
    }
}
