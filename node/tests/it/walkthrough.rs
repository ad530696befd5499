//! The seeds' universal walkthrough with real processes: kuma-cp, kumactl, kuma-tcp-echo as
//! redis, two kuma-dp each running a real Envoy, and bytes echoed through both sidecars.

use std::path::Path;
use std::time::Duration;

use kuma_test_support::{
    bin_path, envoy_path, free_port, tcp_roundtrip, try_poll_until, KumaCp, Proc, Signal,
};

use crate::support::{spawn_kuma_dp, Kumactl};

const CONVERGE: Duration = Duration::from_secs(30);

/// `inspect dataplanes` rows as (name, status, total updates).
fn inspect(ctl: &Kumactl) -> Vec<(String, String, String)> {
    ctl.must_succeed(&["inspect", "dataplanes"], "")
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            (cols[1].to_string(), cols[3].to_string(), cols[cols.len() - 2].to_string())
        })
        .collect()
}

/// A kuma-dp as a user runs it: the control plane's CA (`kumactl inspect control-plane-ca`) and
/// a token of its own (`kumactl generate dataplane-token`), both written to files in `dir`.
fn kuma_dp(ctl: &Kumactl, bootstrap_urls: &str, name: &str, admin_port: u16, dir: &Path) -> Proc {
    let ca = dir.join("ca.crt");
    std::fs::write(&ca, ctl.must_succeed(&["inspect", "control-plane-ca"], "")).unwrap();
    let token = dir.join(format!("{name}.token"));
    let generated = ctl.must_succeed(&["generate", "dataplane-token", "--name", name], "");
    std::fs::write(&token, generated).unwrap();
    let admin = admin_port.to_string();
    let envoy = envoy_path();
    Proc::spawn(
        &bin_path("kuma-dp"),
        &[
            "run",
            "--binary-path",
            envoy.to_str().unwrap(),
            "--config-dir",
            dir.to_str().unwrap(),
            "--ca-cert-file",
            ca.to_str().unwrap(),
            "--dataplane-token-file",
            token.to_str().unwrap(),
        ],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", bootstrap_urls),
            ("KUMA_DATAPLANE_MESH", "default"),
            ("KUMA_DATAPLANE_NAME", name),
            ("KUMA_DATAPLANE_ADMIN_PORT", &admin),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "200ms"),
        ],
    )
}

#[test]
fn the_seeds_walkthrough_echoes_through_both_sidecars_and_shows_them_online() {
    let cp = KumaCp::builder()
        .env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
        .must_start();
    let ctl = Kumactl::must_connect(&cp.api_url());
    let (redis, redis_dp, backend_dp, outbound) =
        (free_port(), free_port(), free_port(), free_port());
    let _echo = Proc::spawn(&bin_path("kuma-tcp-echo"), &["-port", &redis.to_string()], &[]);

    ctl.must_succeed(
        &["apply", "-f", "-"],
        &format!(
            "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{redis_dp}:{redis}\n    tags:\n      service: redis\n"
        ),
    );
    ctl.must_succeed(
        &["apply", "-f", "-"],
        &format!(
            "type: Dataplane\nmesh: default\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{backend_dp}:{}\n    tags:\n      service: backend\n  outbound:\n  - interface: :{outbound}\n    service: redis\n",
            free_port()
        ),
    );
    let offline = inspect(&ctl);
    assert!(offline.iter().all(|(_, status, _)| status == "Offline"), "{offline:?}");

    let dir = tempfile::tempdir().unwrap();
    let bootstrap = cp.bootstrap_url();
    let _redis_sidecar = kuma_dp(&ctl, &bootstrap, "redis-1", free_port(), dir.path());
    // The backend's sidecar is given a dead peer first: it moves on to the live one.
    let mut backend_sidecar = kuma_dp(
        &ctl,
        &format!("https://127.0.0.1:1,{bootstrap}"),
        "backend-1",
        free_port(),
        dir.path(),
    );

    try_poll_until(CONVERGE, || match tcp_roundtrip(outbound, b"hello mesh") {
        Ok(reply) if reply == b"hello mesh" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| {
        panic!("no echo through the sidecars ({e}); backend kuma-dp:\n{}", backend_sidecar.log())
    });

    let rows = try_poll_until(CONVERGE, || {
        let rows = inspect(&ctl);
        if rows.iter().all(|(_, status, updates)| status == "Online" && updates != "0") {
            Ok(rows)
        } else {
            Err(rows)
        }
    })
    .expect("both dataplanes show Online with their updates");
    assert_eq!(rows.len(), 2);

    backend_sidecar.signal(Signal::TERM);
    let exited = backend_sidecar.must_exit_within(CONVERGE);
    assert_eq!(exited.code(), Some(0), "kuma-dp exits with Envoy's status:\n{}", exited.log);
    try_poll_until(CONVERGE, || {
        let rows = inspect(&ctl);
        let statuses: Vec<(&str, &str)> =
            rows.iter().map(|(n, s, _)| (n.as_str(), s.as_str())).collect();
        if statuses == [("backend-1", "Offline"), ("redis-1", "Online")] {
            Ok(())
        } else {
            Err(rows)
        }
    })
    .expect("a stopped sidecar shows Offline");
}

#[test]
fn kuma_dp_for_an_unregistered_dataplane_says_so_and_fails() {
    let cp = KumaCp::builder().must_start();
    let dir = tempfile::tempdir().unwrap();
    let mut env = cp.must_kuma_dp_env("default", "ghost-1");
    env.push(("KUMA_CONTROL_PLANE_RETRY_BACKOFF".into(), "100ms".into()));
    env.push(("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION".into(), "1s".into()));
    let mut dp = spawn_kuma_dp(&env, dir.path());
    let exited = dp.must_exit_within(CONVERGE);
    assert_ne!(exited.code(), Some(0));
    let line = exited.must_error_line();
    assert!(
        line.contains("default/ghost-1") && line.contains("kumactl apply"),
        "the error names the dataplane and the fix: {line}"
    );
}
