//! `GET /status/raft` on a control plane of the PostgreSQL store: the instances sharing the
//! database, in the shape `kumactl inspect control-planes` shows; Raft's membership and snapshot
//! routes answer what to do instead.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use kuma_api_server::ApiError;
use kuma_store_postgres::PostgresStore;
use serde_json::{json, Value};

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
