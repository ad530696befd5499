//! Unit tests of `inspect.rs`.

use super::*;
use chrono::TimeZone;
use serde_json::json;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 21, 12, 0, 0).unwrap()
}

#[test]
fn a_dataplane_that_never_connected_is_offline_never_zero_zero() {
    let overview = json!({
        "type": "DataplaneOverview", "mesh": "default", "name": "dp-echo-1",
        "creationTime": "2026-11-21T11:00:00Z", "modificationTime": "2026-11-21T11:00:00Z",
        "dataplane": {"networking": {"inbound": [{"interface": "127.0.0.1:10000:9000", "tags": {"service": "echo"}}]}},
        "dataplaneInsight": {}
    });
    let table = dataplanes_table(&[overview], now(), false).unwrap();
    // Kuma's output in the seeds (003), byte for byte.
    assert_eq!(
        table.to_string(),
        "MESH      NAME        TAGS           STATUS    LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
         default   dp-echo-1   service=echo   Offline   never                never              0               0\n"
    );
}

#[test]
fn a_connected_dataplane_shows_its_latest_subscription_and_totals() {
    let overview = json!({
        "type": "DataplaneOverview", "mesh": "default", "name": "redis-1",
        "dataplane": {"networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}},
        "dataplaneInsight": {"subscriptions": [
            {
                "id": "1", "controlPlaneInstanceId": "cp-1",
                "connectTime": "2026-11-21T10:00:00Z", "disconnectTime": "2026-11-21T10:30:00Z",
                "status": {"lastUpdateTime": "2026-11-21T10:20:00Z",
                           "total": {"responsesSent": "5", "responsesRejected": "1"}}
            },
            {
                "id": "2", "controlPlaneInstanceId": "cp-2",
                "connectTime": "2026-11-21T11:59:00Z",
                "status": {"lastUpdateTime": "2026-11-21T11:59:50Z",
                           "total": {"responsesSent": "4", "responsesAcknowledged": "4"}}
            }
        ]}
    });
    let table = dataplanes_table(&[overview], now(), false).unwrap();
    let row = table.to_string().lines().nth(1).unwrap().to_string();
    let cells: Vec<_> = row.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert_eq!(cells, ["default", "redis-1", "service=redis", "Online", "1m", "10s", "9", "1"]);

    // --wide adds the control plane serving the open subscription.
    let wide =
        dataplanes_table(&[overview_of_two_subscriptions()], now(), true).unwrap().to_string();
    assert!(wide.lines().next().unwrap().ends_with("CONTROL PLANE"), "{wide}");
    assert!(wide.lines().nth(1).unwrap().ends_with("cp-2"), "{wide}");
}

fn overview_of_two_subscriptions() -> Value {
    json!({
        "mesh": "default", "name": "redis-1",
        "dataplane": {"networking": {"inbound": [{"interface": "127.0.0.1:9000:6379", "tags": {"service": "redis"}}]}},
        "dataplaneInsight": {"subscriptions": [
            {"id": "1", "controlPlaneInstanceId": "cp-1", "connectTime": "2026-11-21T10:00:00Z",
             "disconnectTime": "2026-11-21T10:30:00Z"},
            {"id": "2", "controlPlaneInstanceId": "cp-2", "connectTime": "2026-11-21T11:59:00Z"}
        ]}
    })
}

#[test]
fn an_insight_that_is_missing_or_null_means_never_connected() {
    let overview = json!({
        "mesh": "default", "name": "gw",
        "dataplane": {"networking": {"gateway": {"tags": {"service": "kong"}}}},
        "dataplaneInsight": null
    });
    let table = dataplanes_table(&[overview], now(), false).unwrap();
    assert!(table.to_string().contains("service=kong   Offline   never"), "{table}");
}

#[test]
fn a_malformed_overview_is_an_unexpected_answer_naming_the_field() {
    let overview = json!({"name": "bad", "dataplane": {"networking": {"inbound": "x"}}});
    let err = dataplanes_table(&[overview], now(), false).unwrap_err();
    assert!(err.to_string().contains("dataplane.networking.inbound"), "{err}");
}

#[test]
fn inspect_meshes_shows_the_policy_columns_in_kuma_1_0s_order() {
    assert_eq!(
        meshes_header(&policy_types()),
        [
            "MESH",
            "DATAPLANES",
            "TRAFFIC PERMISSIONS",
            "TRAFFIC ROUTES",
            "HEALTH CHECKS",
            "TRAFFIC TRACES",
            "TRAFFIC LOGS",
            "PROXY TEMPLATES",
        ]
    );
}

#[test]
fn on_a_terminal_offline_is_red_and_ages_do_not_count_as_a_change() {
    let overview = |connected: &str| {
        json!({
            "type": "DataplaneOverview", "mesh": "default", "name": "dp-1",
            "dataplane": {"networking": {"inbound": [{"interface": "127.0.0.1:10000:9000", "tags": {"service": "echo"}}]}},
            "dataplaneInsight": {"subscriptions": [{"id": "1", "controlPlaneInstanceId": "cp",
                "connectTime": connected, "disconnectTime": "2026-11-21T11:59:00Z"}]}
        })
    };
    let table = dataplanes_table(&[overview("2026-11-21T11:00:00Z")], now(), false).unwrap();
    let painted = paint_status(&table);
    assert!(painted.contains("\x1b[31mOffline\x1b[0m   1h "), "{painted}");
    assert_eq!(painted.replace("\x1b[31m", "").replace("\x1b[0m", ""), table.to_string());
    let later = dataplanes_table(&[overview("2026-11-21T11:30:00Z")], now(), false).unwrap();
    assert_ne!(later.to_string(), table.to_string());
    assert_eq!(
        later.without_columns(&AGE_COLUMNS).to_string(),
        table.without_columns(&AGE_COLUMNS).to_string()
    );
}
