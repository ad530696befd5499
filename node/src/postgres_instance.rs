//! One kuma-cp instance on a shared PostgreSQL database: its registration, readiness from a
//! ping loop, and the leader-only work while it holds the leader lease.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kuma_store::ResourceStore;
use kuma_store_postgres::{InstanceHeartbeat, LeaderLock, PostgresStore};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::KumaCpConfig;
use crate::diagnostics::Readiness;

/// How often readiness asks the database whether it answers.
const PING_EVERY: Duration = Duration::from_secs(1);
/// How often the leader runs its work.
const TICK: Duration = Duration::from_secs(1);
/// How often the leader closes the subscriptions of instances that are gone.
const ORPHAN_CHECK: Duration = Duration::from_secs(5);

/// What this instance keeps running while it shares the database: its registration and its side
/// of the leader lease. Dropped at shutdown: the row ages out, the lease is given up.
#[derive(Debug)]
pub struct PostgresInstance {
    lock: Option<LeaderLock>,
    _heartbeat: InstanceHeartbeat,
}

/// The address other instances and kumactl reach this one at: `xdsHost` when set, else the host
/// name.
fn advertised_host(config: &KumaCpConfig) -> String {
    let host = &config.bootstrap_server.params.xds_host;
    if host.is_empty() {
        gethostname::gethostname().to_string_lossy().into_owned()
    } else {
        host.clone()
    }
}

/// Registers this instance, competes for the leader lease, follows the database's health into
/// `readiness`, and runs the leader-only work while holding the lease, until `stop`.
pub fn start_instance(
    pg: PostgresStore,
    store: Arc<dyn ResourceStore>,
    config: &KumaCpConfig,
    readiness: Readiness,
    stop: watch::Receiver<bool>,
) -> PostgresInstance {
    let id = config.instance_id();
    let host = advertised_host(config);
    let xds_port = match config.bootstrap_server.params.xds_port {
        0 => config.xds_server.grpc_port,
        port => port,
    };
    let heartbeat = pg.register_instance(
        &id,
        &format!("{host}:{}", config.api_server.port),
        &format!("{host}:{xds_port}"),
    );
    let lock = LeaderLock::start(&pg, &id);
    tokio::spawn(follow_health(pg.clone(), readiness, stop.clone()));
    tokio::spawn(leader_work(
        pg.clone(),
        store,
        !config.defaults.skip_mesh_creation,
        lock.subscribe(),
        stop,
    ));
    PostgresInstance { lock: Some(lock), _heartbeat: heartbeat }
}

impl PostgresInstance {
    /// Gives the lease up at once, so another instance takes the leader-only work at its next
    /// try instead of after the lease runs out.
    pub async fn release(&mut self) {
        if let Some(lock) = self.lock.take() {
            if let Err(e) = lock.release().await {
                warn!(error = %e, "could not give up the leader lease; it runs out by itself");
            }
        }
    }
}

/// Readiness follows whether the database answers: false within a ping of it going away, true
/// again once it answers.
async fn follow_health(pg: PostgresStore, readiness: Readiness, mut stop: watch::Receiver<bool>) {
    let mut was_up = true;
    loop {
        let result = tokio::select! {
            r = pg.ping() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        if *stop.borrow() {
            return;
        }
        let up = result.is_ok();
        match (&result, was_up) {
            (Err(e), true) => warn!(error = %e, "PostgreSQL does not answer: not ready"),
            (Ok(()), false) => info!("PostgreSQL answers again: ready"),
            _ => {}
        }
        readiness.set(up);
        was_up = up;
        tokio::select! {
            _ = tokio::time::sleep(PING_EVERY) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// While this instance holds the leader lease: the default mesh, the identity secrets every
/// second, and closing the subscriptions of instances that are gone. Stops when the lease is lost.
async fn leader_work(
    pg: PostgresStore,
    store: Arc<dyn ResourceStore>,
    create_default_mesh: bool,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if *leading.borrow_and_update() {
            info!("this instance holds the leader lease: running the leader-only work");
            let mut suspects = BTreeSet::new();
            let mut last_orphan_check: Option<tokio::time::Instant> = None;
            while *leading.borrow() && !*stop.borrow() {
                if create_default_mesh {
                    if let Err(e) = crate::cluster_work::ensure_default_mesh(store.as_ref()).await {
                        warn!(error = %e, "could not create the default mesh yet");
                    }
                }
                crate::cluster_work::ensure_identity_secrets(store.as_ref()).await;
                if last_orphan_check.is_none_or(|t| t.elapsed() >= ORPHAN_CHECK) {
                    match pg.instances().await {
                        Ok(instances) => {
                            let alive: BTreeSet<String> =
                                instances.into_iter().filter(|i| i.alive).map(|i| i.id).collect();
                            if !alive.is_empty() {
                                suspects = crate::cluster_work::close_subscriptions_of_dead_peers(
                                    store.as_ref(),
                                    &alive,
                                    suspects,
                                )
                                .await;
                            }
                        }
                        Err(e) => warn!(error = %e, "could not list the control-plane instances"),
                    }
                    last_orphan_check = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = leading.changed() => {}
                    _ = stop.changed() => {}
                }
            }
            info!("this instance stopped the leader-only work");
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return },
            _ = stop.changed() => {}
        }
    }
}
