//! The PostgreSQL store in kuma-cp: opening it (refusing an unmigrated or newer schema),
//! `kuma-cp migrate up`, this instance's registration, readiness from a ping loop, the leader-only
//! work on the holder of the leader lease, and the instances as `GET /status/raft` shows them.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kuma_api_server::ApiError;
use kuma_store::ResourceStore;
use kuma_store_postgres::{
    InstanceHeartbeat, InstanceInfo, LeaderLock, PostgresConfig, PostgresError, PostgresStore,
};
use serde_json::{json, Value};
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
/// How often each instance re-reads the list of instances (for forwarded config dumps).
const INSTANCES_EVERY: Duration = Duration::from_secs(1);

/// Why the PostgreSQL store could not be opened or migrated, in one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum PostgresStartError {
    #[error(
        "could not reach PostgreSQL at {host}:{port} (check that it runs there and accepts \
         connections, and KUMA_STORE_POSTGRES_HOST, KUMA_STORE_POSTGRES_PORT and \
         KUMA_STORE_POSTGRES_TLS_MODE)"
    )]
    Unreachable { host: String, port: u16, source: PostgresError },
    #[error(
        "PostgreSQL at {host}:{port} refused database {db_name:?} as user {user:?} (check \
         KUMA_STORE_POSTGRES_USER, KUMA_STORE_POSTGRES_PASSWORD, KUMA_STORE_POSTGRES_DB_NAME and \
         the user's permissions)"
    )]
    Refused { host: String, port: u16, user: String, db_name: String, source: PostgresError },
    /// Unmigrated, newer schema, bad config or TLS files: the message says what to do.
    #[error(transparent)]
    Other(PostgresError),
}

impl PostgresStartError {
    fn new(config: &PostgresConfig, e: PostgresError) -> PostgresStartError {
        let (host, port) = (config.host.clone(), config.port);
        match e {
            e @ PostgresError::Unavailable { .. } => {
                PostgresStartError::Unreachable { host, port, source: e }
            }
            e @ PostgresError::Database { .. } => PostgresStartError::Refused {
                host,
                port,
                user: config.user.clone(),
                db_name: config.db_name.clone(),
                source: e,
            },
            other => PostgresStartError::Other(other),
        }
    }
}

/// `kuma-cp migrate up`: the line to print on success.
pub async fn migrate_up(config: &PostgresConfig) -> Result<String, PostgresStartError> {
    config.validate().map_err(|e| PostgresStartError::Other(e.into()))?;
    let report = kuma_store_postgres::migrate_up(config)
        .await
        .map_err(|e| PostgresStartError::new(config, e))?;
    let at = format!("{}:{}/{}", config.host, config.port, config.db_name);
    Ok(if report.applied.is_empty() {
        format!("the PostgreSQL schema at {at} is already at version {}", report.version)
    } else {
        let applied: Vec<String> = report.applied.iter().map(u32::to_string).collect();
        format!(
            "migrated the PostgreSQL schema at {at} to version {} (applied {})",
            report.version,
            applied.join(", ")
        )
    })
}

/// Opens the store; an unmigrated or newer schema is refused with the command to run.
pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore, PostgresStartError> {
    let store =
        PostgresStore::connect(config).await.map_err(|e| PostgresStartError::new(config, e))?;
    info!(host = %config.host, port = config.port, db = %config.db_name, "connected to PostgreSQL");
    Ok(store)
}

/// What this instance keeps running while it shares the database: its registration and its side
/// of the leader lease. Dropped at shutdown: the row ages out, the lease is given up.
#[derive(Debug)]
pub struct PostgresInstance {
    pub store: PostgresStore,
    pub lock: Option<LeaderLock>,
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
    PostgresInstance { store: pg, lock: Some(lock), _heartbeat: heartbeat }
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

#[derive(Clone)]
struct StatusState {
    pg: PostgresStore,
    instance_id: String,
}

/// `GET /status/raft` on a control plane of the PostgreSQL store: its instances in the shape of
/// the Raft cluster status, so `kumactl inspect control-planes` shows them (ADDRESS is the
/// instance id, LEADER the holder of the leader lease). `store: postgres` tells them apart.
/// The Raft cluster's other routes answer 400 saying what to do instead.
pub fn routes(pg: PostgresStore, instance_id: String) -> Router {
    let no_peers = || async {
        ApiError::request(
            StatusCode::BAD_REQUEST,
            "this control plane keeps its state in PostgreSQL, not in Raft: it has no peers to \
             add, remove or hand leadership to. Another instance joins by running kuma-cp with \
             the same KUMA_STORE_POSTGRES_* settings; the leader lease moves by itself",
        )
    };
    let no_snapshot = || async {
        ApiError::request(
            StatusCode::BAD_REQUEST,
            "this control plane keeps its state in PostgreSQL, not in Raft: back it up with \
             pg_dump, or with kumactl export (--include-secrets for the secrets too)",
        )
    };
    Router::new()
        .route("/status/raft", get(status))
        .route("/status/raft/snapshot", get(no_snapshot))
        .route("/status/raft/peers", axum::routing::post(no_peers))
        .route("/status/raft/peers/{id}", axum::routing::delete(no_peers))
        .route("/status/raft/transfer-leader", axum::routing::post(no_peers))
        .with_state(StatusState { pg, instance_id })
}

async fn status(State(state): State<StatusState>) -> Result<Json<Value>, ApiError> {
    let unavailable = |e: kuma_store::StoreError| {
        ApiError::request(StatusCode::SERVICE_UNAVAILABLE, format!("the instances: {e}"))
    };
    let mut instances = state.pg.instances().await.map_err(unavailable)?;
    let holder =
        kuma_store_postgres::current_leader(&state.pg, kuma_store_postgres::LEADER_LOCK_NAME)
            .await
            .map_err(unavailable)?;
    instances.sort_by(|a, b| (a.started_at, &a.id).cmp(&(b.started_at, &b.id)));
    Ok(Json(status_body(&instances, holder.as_deref(), &state.instance_id)))
}

/// The instances, numbered 1.. by when they started.
fn status_body(
    instances: &[kuma_store_postgres::InstanceInfo],
    holder: Option<&str>,
    this: &str,
) -> Value {
    let number = |id: &str| instances.iter().position(|i| i.id == id).map(|n| n as u64 + 1);
    let alive = instances.iter().filter(|i| i.alive).count();
    let members: Vec<Value> = instances
        .iter()
        .enumerate()
        .map(|(n, i)| {
            json!({
                "id": n as u64 + 1,
                "raftAddress": i.id,
                "membership": "voter",
                "healthy": i.alive,
                "status": null,
                "serves": {
                    "instanceId": i.id,
                    "xdsAddress": i.xds_address,
                    "apiUrl": format!("http://{}", i.api_address),
                },
                "startedAt": i.started_at,
                "lastSeen": i.last_seen,
                "leaderLease": holder == Some(i.id.as_str()),
            })
        })
        .collect();
    json!({
        "store": "postgres",
        "this": number(this).unwrap_or(0),
        "thisInstance": this,
        "leader": holder.and_then(number),
        "leaderInstance": holder,
        "term": 0,
        "members": members,
        // Any instance may fail while one is left.
        "failureTolerance": alive.saturating_sub(1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use kuma_store_postgres::InstanceInfo;

    fn instance(id: &str, started: i64, alive: bool) -> InstanceInfo {
        InstanceInfo {
            id: id.to_string(),
            api_address: format!("{id}-api"),
            xds_address: format!("{id}-xds"),
            started_at: Utc.timestamp_opt(started, 0).unwrap(),
            last_seen: Utc.timestamp_opt(started + 5, 0).unwrap(),
            alive,
        }
    }

    #[test]
    fn instances_are_numbered_by_start_and_the_lease_holder_leads() {
        let instances = [instance("a:1", 10, true), instance("b:1", 20, true)];
        let body = status_body(&instances, Some("b:1"), "a:1");
        assert_eq!((body["this"].as_u64(), body["leader"].as_u64()), (Some(1), Some(2)));
        assert_eq!(body["members"][1]["raftAddress"], "b:1");
        assert_eq!(body["members"][1]["serves"]["apiUrl"], "http://b:1-api");
        assert_eq!(body["failureTolerance"], 1);
        let body = status_body(&instances[..1], None, "c:1");
        assert_eq!((body["this"].as_u64(), body["leader"].as_u64()), (Some(0), None));
    }
}
