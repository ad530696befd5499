//! `GET /status/raft` on a control plane of the PostgreSQL store: the instances sharing the
//! database and the holder of the leader lease, in a shape of their own (`store: postgres`) that
//! `kumactl inspect control-planes` tells from a Raft cluster's; Raft's membership and snapshot
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

/// `GET /status/raft` on a control plane of the PostgreSQL store: its instances and the holder of
/// the leader lease (see [`status_body`]), at the path `kumactl inspect control-planes` asks of
/// every store that has several control planes. The Raft cluster's other routes answer 400
/// saying what to do instead.
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

/// `{store: postgres, thisInstance, leaderInstance, instances: [{id, apiUrl, xdsAddress,
/// startedAt, lastSeen, alive, leader}]}`, the instances in the order given. Instances are named
/// by their id, which stays the same for as long as they run; `leaderInstance` is null while no
/// instance holds the lease.
fn status_body(
    instances: &[kuma_store_postgres::InstanceInfo],
    holder: Option<&str>,
    this: &str,
) -> Value {
    let instances: Vec<Value> = instances
        .iter()
        .map(|i| {
            json!({
                "id": i.id,
                "apiUrl": format!("http://{}", i.api_address),
                "xdsAddress": i.xds_address,
                "startedAt": i.started_at,
                "lastSeen": i.last_seen,
                "alive": i.alive,
                "leader": holder == Some(i.id.as_str()),
            })
        })
        .collect();
    json!({
        "store": "postgres",
        "thisInstance": this,
        "leaderInstance": holder,
        "instances": instances,
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
    fn instances_are_named_by_id_in_the_order_given_and_the_lease_holder_leads() {
        let instances = [instance("a:1", 10, true), instance("b:1", 20, false)];
        let body = status_body(&instances, Some("b:1"), "a:1");
        assert_eq!(
            body,
            json!({
                "store": "postgres",
                "thisInstance": "a:1",
                "leaderInstance": "b:1",
                "instances": [
                    {"id": "a:1", "apiUrl": "http://a:1-api", "xdsAddress": "a:1-xds",
                     "startedAt": "1970-01-01T00:00:10Z", "lastSeen": "1970-01-01T00:00:15Z",
                     "alive": true, "leader": false},
                    {"id": "b:1", "apiUrl": "http://b:1-api", "xdsAddress": "b:1-xds",
                     "startedAt": "1970-01-01T00:00:20Z", "lastSeen": "1970-01-01T00:00:25Z",
                     "alive": false, "leader": true},
                ],
            })
        );
    }

    #[test]
    fn without_a_lease_holder_no_instance_leads() {
        let body = status_body(&[instance("a:1", 10, true)], None, "c:1");
        assert_eq!(body["leaderInstance"], Value::Null);
        assert_eq!(body["instances"][0]["leader"], false);
        assert_eq!(body["thisInstance"], "c:1");
    }
}
