//! kuma-dp against a fake bootstrap server: the request it sends, retrying while the Dataplane is
//! not registered, failing over past peers that do not answer, and running the real Envoy with
//! the bootstrap it got until it is told to stop.

use std::net::TcpStream;
use std::time::Duration;

use kuma_test_support::{envoy_path, free_port, poll_until};
use rustix::process::Signal;

use crate::support::{
    envoy_admin_get, must_envoy_pid, must_run_kuma_dp, must_start_tcp_echo, must_write_fake_envoy,
    not_found_body, process_exists, round_trip, spawn_kuma_dp, static_bootstrap,
    FakeBootstrapServer, CLOSED_URL, DEADLINE,
};

#[test]
fn kuma_dp_gets_the_bootstrap_from_the_peer_that_answers_runs_envoy_and_stops_it_on_sigterm() {
    let (_echo, echo_port) = must_start_tcp_echo();
    let (admin_port, listener_port) = (free_port(), free_port());
    let bootstrap = static_bootstrap(admin_port, listener_port, echo_port);
    let cp = FakeBootstrapServer::start(vec![
        (404, not_found_body("demo", "web-1")),
        (404, not_found_body("demo", "web-1")),
        (200, bootstrap.clone()),
    ]);
    let config_dir = tempfile::tempdir().expect("temp dir");
    let token_file = config_dir.path().join("token");
    std::fs::write(&token_file, "token-of-web-1\n").unwrap();
    let envoy = envoy_path();
    let urls = format!("{CLOSED_URL},{}", cp.url());
    let mut dp = spawn_kuma_dp(
        &[
            "run",
            "--mesh=demo",
            "--name=web-1",
            &format!("--admin-port={admin_port}"),
            &format!("--binary-path={}", envoy.display()),
            &format!("--config-dir={}", config_dir.path().display()),
            &format!("--dataplane-token-file={}", token_file.display()),
            "--drain-time=1s",
            // Envoy's info log lists every extension: too much to read in a failure message.
            "--envoy-log-level=warn",
        ],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &urls),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "100ms"),
            ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "30s"),
        ],
    );

    // Envoy comes up with the bootstrap the third request returned.
    poll_until(DEADLINE, "Envoy /ready on the admin port", || {
        match envoy_admin_get(admin_port, "/ready") {
            Ok((200, body)) if body.trim() == "LIVE" => Ok(()),
            other => Err(format!("{other:?}; log:\n{}", dp.log())),
        }
    });
    let requests = cp.requests();
    assert_eq!(requests.len(), 3, "404, 404, then 200: {requests:?}");
    for request in &requests {
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/bootstrap"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&request.body).expect("JSON body");
        assert_eq!(
            body,
            serde_json::json!({
                "mesh": "demo",
                "name": "web-1",
                "adminPort": admin_port,
                "dataplaneTokenPath": token_file.to_str().unwrap(),
                "dataplaneToken": "token-of-web-1",
            })
        );
    }
    let file = config_dir.path().join("bootstrap-demo.web-1.yaml");
    assert_eq!(std::fs::read_to_string(&file).expect("the bootstrap file"), bootstrap);
    let log = dp.log();
    assert!(log.contains(&format!("url={}", cp.url())), "which URL answered: {log}");
    assert!(log.contains("--config-path") && log.contains("--base-id"), "command line: {log}");

    // Traffic through Envoy's listener reaches kuma-tcp-echo and comes back.
    let payload: Vec<u8> = (0..64 * 1024).map(|n| (n % 251) as u8).collect();
    let stream = TcpStream::connect(("127.0.0.1", listener_port)).expect("connect to Envoy");
    assert_eq!(round_trip(stream, &payload), payload);

    // SIGTERM to kuma-dp stops Envoy, and kuma-dp exits with Envoy's status.
    let envoy_pid = must_envoy_pid(&dp);
    assert!(process_exists(envoy_pid), "Envoy {envoy_pid} runs");
    dp.signal(Signal::TERM);
    let exited = dp.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    assert!(envoy_admin_get(admin_port, "/ready").is_err(), "Envoy's admin still answers");
    poll_until(Duration::from_secs(5), "the Envoy process is gone", || {
        if process_exists(envoy_pid) {
            Err(envoy_pid)
        } else {
            Ok(())
        }
    });
}

#[test]
fn a_dataplane_that_stays_unregistered_fails_with_the_not_registered_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let cp = FakeBootstrapServer::start(vec![(404, not_found_body("default", "redis-1"))]);
    let exited = must_run_kuma_dp(
        &[
            "run",
            "--name=redis-1",
            &format!("--binary-path={}", envoy.display()),
            &format!("--config-dir={}", dir.path().join("config").display()),
        ],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url()),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "200ms"),
            ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "1s"),
        ],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let line = exited.must_error_line();
    let expected = format!(
        "Error: Dataplane default/redis-1 is not registered at {}: create it first with kumactl apply",
        cp.url()
    );
    assert!(line.starts_with(&expected), "{line}");
    assert!(line.ends_with("(retried for 1s)"), "{line}");
    assert!(cp.requests().len() >= 2, "retried: {:?}", cp.requests().len());
    assert!(exited.took < Duration::from_secs(8), "took {:?}", exited.took);
    assert!(!dir.path().join("args").exists(), "Envoy ran without a bootstrap");
}

#[test]
fn a_bootstrap_envoy_rejects_makes_kuma_dp_exit_with_envoys_status() {
    let config_dir = tempfile::tempdir().expect("temp dir");
    let cp = FakeBootstrapServer::start(vec![(200, "static_resources: [oops\n".to_string())]);
    let exited = must_run_kuma_dp(
        &[
            "run",
            "--name=web-1",
            &format!("--binary-path={}", envoy_path().display()),
            &format!("--config-dir={}", config_dir.path().display()),
        ],
        &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())],
    );
    // Envoy exits 1 on a config it cannot load.
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(line.starts_with("Error: Envoy exited with status 1"), "{line}");
    let file = config_dir.path().join("bootstrap-default.web-1.yaml");
    assert!(line.contains(&file.display().to_string()), "{line}");
}

#[test]
fn a_peer_that_answers_5xx_is_passed_over_for_the_next_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let broken = FakeBootstrapServer::start(vec![(503, "{\"title\":\"unavailable\"}".into())]);
    let healthy = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
    let urls = format!("{},{}", broken.url(), healthy.url());
    let exited = must_run_kuma_dp(
        &[
            "run",
            "--name=web-1",
            &format!("--binary-path={}", envoy.display()),
            &format!("--config-dir={}", dir.path().join("config").display()),
        ],
        &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &urls)],
    );
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    assert_eq!(broken.requests().len(), 1);
    assert_eq!(healthy.requests().len(), 1);
    assert!(exited.log.contains(&format!("url={}", healthy.url())), "{}", exited.log);
}

#[test]
fn a_400_fails_at_once_with_the_control_planes_details() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let body =
        r#"{"title":"Could not parse the request","details":"adminPort: expected a number"}"#;
    let cp = FakeBootstrapServer::start(vec![(400, body.to_string())]);
    let exited = must_run_kuma_dp(
        &[
            "run",
            "--name=web-1",
            &format!("--binary-path={}", envoy.display()),
            &format!("--config-dir={}", dir.path().join("config").display()),
        ],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url()),
            ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "5m"),
        ],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(line.contains("with 400: adminPort: expected a number"), "{line}");
    assert_eq!(cp.requests().len(), 1, "a 400 is not retried");
    assert!(exited.took < Duration::from_secs(5), "took {:?}", exited.took);
}
