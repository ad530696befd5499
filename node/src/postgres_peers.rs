//! The other kuma-cp instances on the same PostgreSQL database, as last read: where a bootstrap
//! sends Envoy, and where a config dump of a dataplane connected elsewhere is forwarded.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use kuma_store_postgres::{InstanceInfo, PostgresStore};
use tokio::sync::watch;

/// How often each instance re-reads the list of instances.
const INSTANCES_EVERY: Duration = Duration::from_secs(1);

/// The instances as last read from the database.
#[derive(Debug, Default)]
pub struct LiveInstances(RwLock<Vec<InstanceInfo>>);

impl LiveInstances {
    /// Re-reads the instances every [`INSTANCES_EVERY`] until `stop`; a failed read keeps the
    /// last list.
    pub fn follow(pg: PostgresStore, mut stop: watch::Receiver<bool>) -> Arc<LiveInstances> {
        let live = Arc::new(LiveInstances::default());
        let updated = live.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(instances) = pg.instances().await {
                    *updated.0.write().unwrap_or_else(|p| p.into_inner()) = instances;
                }
                tokio::select! {
                    _ = tokio::time::sleep(INSTANCES_EVERY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
        live
    }
}

/// The xDS addresses a bootstrap names: every live instance's, when the instances announce
/// addresses Envoy can dial (`xdsHost` set), so an Envoy moves to another instance when its own
/// dies; else (and until the first read) this instance's own.
#[derive(Debug)]
pub struct PostgresXdsPeers {
    pub instances: Arc<LiveInstances>,
    pub fallback: kuma_xds::SinglePeer,
}

impl kuma_xds::XdsPeers for PostgresXdsPeers {
    fn xds_addresses(&self, request_host: &str) -> Vec<kuma_xds::XdsAddress> {
        if self.fallback.host.is_empty() {
            return self.fallback.xds_addresses(request_host);
        }
        let announced: Vec<kuma_xds::XdsAddress> = self
            .instances
            .0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|i| i.alive)
            .filter_map(|i| kuma_xds::XdsAddress::parse(&i.xds_address))
            .collect();
        if announced.is_empty() {
            self.fallback.xds_addresses(request_host)
        } else {
            announced
        }
    }
}

/// Another instance's API, for a config dump of a dataplane connected to it.
impl crate::config_dump::PeerApis for LiveInstances {
    fn api_url(&self, instance_id: &str) -> Result<String, String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|i| i.id == instance_id && i.alive)
            .map(|i| format!("http://{}", i.api_address))
            .ok_or_else(|| {
                format!("no live kuma-cp instance {instance_id} is registered in the database")
            })
    }
}
