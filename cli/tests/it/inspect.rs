//! `kumactl inspect dataplanes|meshes`.

use kuma_test_support::KumaCp;

use crate::support::{Ctl, BACKEND_1, REDIS_1};

#[test]
fn inspect_dataplanes_shows_only_those_with_every_tag_given() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    ctl.must_apply(BACKEND_1);
    ctl.must_apply(
        "type: Dataplane\nmesh: default\nname: redis-2\nnetworking:\n  inbound:\n  \
         - interface: 127.0.0.1:9001:6379\n    tags:\n      service: redis\n      version: v2\n",
    );

    let names = |args: &[&str]| -> Vec<String> {
        ctl.must_run(args)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&["inspect", "dataplanes", "--tag", "service=redis"]), ["redis-1", "redis-2"]);
    assert_eq!(
        names(&["inspect", "dataplanes", "--tag", "service=redis", "--tag", "version=v2"]),
        ["redis-2"]
    );
    assert!(names(&["inspect", "dataplanes", "--tag", "service=nope"]).is_empty());
    let row = ctl.must_run(&["inspect", "dataplanes", "redis-2"]);
    assert!(row.contains("   service=redis version=v2   Offline   "), "{row}");
}

#[test]
fn inspect_of_a_missing_dataplane_exits_non_zero() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let stderr = ctl.run(&["inspect", "dataplanes", "nope"]).must_fail();
    assert!(stderr.contains("Dataplane \"nope\" does not exist"), "{stderr}");
}

#[test]
fn inspect_meshes_counts_dataplanes_and_policies_per_mesh() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    ctl.must_apply(BACKEND_1);
    ctl.must_apply("type: Mesh\nname: demo\n");
    ctl.must_apply(
        "type: TrafficPermission\nmesh: demo\nname: allow-all\n\
         sources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n",
    );
    // A policy in a column that moved, so each count is seen under its own title.
    ctl.must_apply(
        "type: HealthCheck\nmesh: demo\nname: hc\nsources:\n- match:\n    service: web\n\
         destinations:\n- match:\n    service: backend\nconf:\n  activeChecks:\n    \
         interval: 10s\n    timeout: 2s\n    unhealthyThreshold: 3\n    healthyThreshold: 1\n",
    );

    // Kuma 1.0's column order.
    assert_eq!(
        ctl.must_run(&["inspect", "meshes"]),
        "MESH      DATAPLANES   TRAFFIC PERMISSIONS   TRAFFIC ROUTES   HEALTH CHECKS   TRAFFIC TRACES   TRAFFIC LOGS   PROXY TEMPLATES\n\
         default   0/2          0                     0                0               0                0              0\n\
         demo      0/0          1                     0                1               0                0              0\n"
    );
}

#[test]
fn a_connected_dataplane_is_online_with_ages_and_totals_over_every_subscription() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    let ago = |seconds: i64| (chrono::Utc::now() - chrono::Duration::seconds(seconds)).to_rfc3339();
    // An earlier stream that ended, and the current one: totals add up, ages come from the latest.
    let insight = |current_ended: bool| {
        let end = if current_ended {
            format!("  disconnectTime: '{}'\n", ago(60))
        } else {
            String::new()
        };
        format!(
            "type: DataplaneInsight\nmesh: default\nname: redis-1\nsubscriptions:\n\
             - id: old\n  controlPlaneInstanceId: cp-1\n  connectTime: '{}'\n  disconnectTime: '{}'\n  \
               status:\n    lastUpdateTime: '{}'\n    total:\n      responsesSent: '5'\n      responsesRejected: '1'\n\
             - id: new\n  controlPlaneInstanceId: cp-1\n  connectTime: '{}'\n{end}  \
               status:\n    lastUpdateTime: '{}'\n    total:\n      responsesSent: '2'\n      responsesAcknowledged: '2'\n",
            ago(3 * 86_400),
            ago(2 * 86_400),
            ago(2 * 86_400),
            ago(90 * 60),
            ago(65 * 60),
        )
    };
    ctl.must_apply(&insight(false));
    assert_eq!(
        ctl.must_run(&["inspect", "dataplanes"]),
        "MESH      NAME      TAGS            STATUS   LAST CONNECTED AGO   LAST UPDATED AGO   TOTAL UPDATES   TOTAL ERRORS\n\
         default   redis-1   service=redis   Online   1h                   1h                 7               1\n"
    );

    // When the current stream ends too, the dataplane is Offline and its history stays.
    ctl.must_apply(&insight(true));
    let row = ctl.must_run(&["inspect", "dataplanes"]);
    assert!(row.contains("   service=redis   Offline   1h   "), "{row}");
    assert!(row.trim_end().ends_with("7               1"), "{row}");
}

#[test]
fn inspect_dataplane_policies_shows_the_chosen_permission_and_why() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    ctl.must_apply(BACKEND_1);
    ctl.must_apply(
        "type: TrafficPermission\nmesh: default\nname: allow-all\n\
         sources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n",
    );
    ctl.must_apply(
        "type: TrafficPermission\nmesh: default\nname: backend-to-redis\n\
         sources:\n- match:\n    service: backend\ndestinations:\n- match:\n    service: redis\n",
    );
    let text = ctl.must_run(&["inspect", "dataplane", "redis-1", "--policies"]);
    let row =
        text.lines().find(|l| l.contains("TrafficPermission")).unwrap_or_else(|| panic!("{text}"));
    assert!(row.starts_with("inbound 127.0.0.1:"), "{text}");
    assert!(row.contains("backend-to-redis") && row.contains("1 (1 exact, 0 wildcard)"), "{text}");
    assert!(row.contains("beats \"allow-all\""), "{text}");
    let stderr = ctl.run(&["inspect", "dataplane", "nope", "--policies"]).must_fail();
    assert!(stderr.contains("Dataplane \"nope\" does not exist"), "{stderr}");
}
