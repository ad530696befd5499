//! Envoy's admin port: without --admin-port kuma-dp takes a free port of 30001-65535 on 127.0.0.1
//! (so a mesh's prometheus metrics answer with no flag), `""` turns the admin off, a bad value is
//! a usage error, and a port taken before Envoy bound it is named in kuma-dp's one error line.

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::Duration;

use kuma_test_support::{envoy_path, free_port, http_get, http_request, poll_until, KumaCp};
use rustix::process::Signal;

use crate::support::{
    must_run_kuma_dp, must_write_fake_envoy, spawn_kuma_dp, FakeBootstrapServer, Proc, DEADLINE,
};

/// How long a real Envoy may take to get its listeners from kuma-cp.
const CONVERGE: Duration = Duration::from_secs(30);

fn must_put(cp: &KumaCp, path: &str, json: &str) {
    let reply = http_request(cp.api_port, "PUT", path, Some(json)).unwrap();
    assert!(matches!(reply.status, 200 | 201), "PUT {path}: {} {}", reply.status, reply.body);
}

/// A kuma-dp for `name` against `cp`, with a real Envoy, its files in `dir`, and `extra` flags.
fn spawn_sidecar(cp: &KumaCp, name: &str, dir: &Path, extra: &[&str]) -> Proc {
    let env = cp.must_kuma_dp_env("default", name);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = envoy_path();
    let mut args = vec![
        "run",
        "--binary-path",
        envoy.to_str().unwrap(),
        "--config-dir",
        dir.to_str().unwrap(),
        // Envoy's info log lists every extension: too much to read in a failure message.
        "--envoy-log-level=warn",
    ];
    args.extend(extra);
    spawn_kuma_dp(&args, &env)
}

/// The admin port kuma-dp logged (`admin=127.0.0.1:PORT`), once it has.
fn must_logged_admin_port(dp: &Proc) -> u16 {
    poll_until(DEADLINE, "kuma-dp logs Envoy's admin port", || {
        let log = dp.log();
        let at = log.find("admin=127.0.0.1:").ok_or_else(|| log.clone())?;
        let digits: String =
            log[at + "admin=127.0.0.1:".len()..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u16>().map_err(|_| log.clone())
    })
}

/// `GET /metrics` on the metrics listener at 127.0.0.1:`port`, once it answers `status`.
fn must_scrape(port: u16, status: u16, dp: &Proc) -> String {
    poll_until(CONVERGE, "the metrics listener answers", || match http_get(port, "/metrics") {
        Ok(reply) if reply.status == status => Ok(reply.body),
        other => Err(format!("{other:?}; kuma-dp:\n{}", dp.log())),
    })
}

#[test]
fn without_admin_port_envoy_gets_a_free_loopback_port_and_an_empty_one_turns_the_admin_off() {
    let cp = KumaCp::must_start();
    let metrics = free_port();
    must_put(
        &cp,
        "/meshes/default",
        &format!(
            r#"{{"type":"Mesh","name":"default","metrics":{{"enabledBackend":"prom","backends":[{{"name":"prom","type":"prometheus","conf":{{"port":{metrics},"path":"/metrics"}}}}]}}}}"#
        ),
    );
    // Per-run names: parallel runs share /tmp (the access log socket is named after them).
    let (with, without) =
        (format!("web-{}", std::process::id()), format!("off-{}", std::process::id()));
    let other_metrics = free_port();
    for (name, metrics_override) in [
        (&with, String::new()),
        (
            &without,
            format!(r#","metrics":{{"type":"prometheus","conf":{{"port":{other_metrics}}}}}"#),
        ),
    ] {
        must_put(
            &cp,
            &format!("/meshes/default/dataplanes/{name}"),
            &format!(
                r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"inbound":[{{"interface":"127.0.0.1:{}:{}","tags":{{"service":"web"}}}}]}}{metrics_override}}}"#,
                free_port(),
                free_port()
            ),
        );
    }

    // No --admin-port, no KUMA_DATAPLANE_ADMIN_PORT: a port of Kuma's range, logged.
    let dir = tempfile::tempdir().unwrap();
    let mut dp = spawn_sidecar(&cp, &with, dir.path(), &[]);
    let admin = must_logged_admin_port(&dp);
    assert!((30001..=65535).contains(&admin), "{admin}");
    poll_until(DEADLINE, "Envoy /ready on the chosen port", || match http_get(admin, "/ready") {
        Ok(reply) if reply.status == 200 && reply.body.trim() == "LIVE" => Ok(()),
        other => Err(format!("{other:?}; kuma-dp:\n{}", dp.log())),
    });
    // On 127.0.0.1 only: another loopback address of the host gets nothing.
    assert!(
        TcpStream::connect(("127.0.0.2", admin)).is_err(),
        "the admin listens beyond 127.0.0.1"
    );
    let bootstrap =
        std::fs::read_to_string(dir.path().join(format!("bootstrap-default.{with}.yaml")))
            .expect("the bootstrap file");
    assert!(bootstrap.contains(&admin.to_string()), "{bootstrap}");
    assert!(bootstrap.contains("kuma:envoy:admin"), "{bootstrap}");
    // The mesh's metrics answer, from Envoy's admin, with no flag given.
    let body = must_scrape(metrics, 200, &dp);
    assert!(body.contains("envoy_server_live"), "{body}");
    dp.signal(Signal::TERM);
    let exited = dp.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", exited.log);

    // --admin-port "": no admin in the bootstrap, and the metrics listener answers 503.
    let dir = tempfile::tempdir().unwrap();
    let dp = spawn_sidecar(&cp, &without, dir.path(), &["--admin-port", ""]);
    must_scrape(other_metrics, 503, &dp);
    let log = dp.log();
    assert!(log.contains("Envoy gets no admin server"), "{log}");
    assert!(!log.contains("admin=127.0.0.1:"), "{log}");
    let bootstrap =
        std::fs::read_to_string(dir.path().join(format!("bootstrap-default.{without}.yaml")))
            .expect("the bootstrap file");
    assert!(!bootstrap.contains("kuma:envoy:admin"), "{bootstrap}");
    assert!(!bootstrap.lines().any(|l| l.starts_with("admin:")), "{bootstrap}");
}

/// kuma-dp run for `web-1` against a control plane that answers 400 (enough to see the request),
/// with a stand-in Envoy that is never started.
fn must_request_body(flags: &[&str], env: &[(&str, &str)]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let envoy = envoy.display().to_string();
    let config_dir = dir.path().join("config").display().to_string();
    let cp = FakeBootstrapServer::start(vec![(400, r#"{"title":"stop here"}"#.to_string())]);
    let mut args =
        vec!["run", "--name=web-1", "--binary-path", &envoy, "--config-dir", &config_dir];
    args.extend(flags);
    let url = cp.url();
    let mut env = env.to_vec();
    env.push(("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &url));
    let exited = must_run_kuma_dp(&args, &env);
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let requests = cp.requests();
    assert_eq!(requests.len(), 1, "{}", exited.log);
    serde_json::from_str(&requests[0].body).expect("JSON")
}

#[test]
fn the_bootstrap_request_carries_the_port_found_free_or_0_when_disabled() {
    let default = must_request_body(&[], &[]);
    let port = default["adminPort"].as_u64().expect("a port");
    assert!((30001..=65535).contains(&port), "{default}");
    for (flags, env) in [
        (vec!["--admin-port", ""], vec![]),
        (vec!["--admin-port=0"], vec![]),
        (vec![], vec![("KUMA_DATAPLANE_ADMIN_PORT", "")]),
    ] {
        let body = must_request_body(&flags, &env);
        assert_eq!(body["adminPort"], 0, "{flags:?} {env:?}: {body}");
    }
    let given = free_port();
    let range = format!("{given}-{given}");
    for (flags, env) in [
        (vec![format!("--admin-port={given}")], vec![]),
        (vec![], vec![("KUMA_DATAPLANE_ADMIN_PORT", range.as_str())]),
    ] {
        let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
        let body = must_request_body(&flags, &env);
        assert_eq!(body["adminPort"], given, "{flags:?} {env:?}: {body}");
    }
}

#[test]
fn a_bad_admin_port_is_a_one_line_usage_error_listing_the_forms() {
    for (flags, env) in [
        (vec!["--admin-port", "99o1"], vec![]),
        (vec!["--admin-port=9999-9901"], vec![]),
        (vec![], vec![("KUMA_DATAPLANE_ADMIN_PORT", "70000")]),
    ] {
        let mut args = vec!["run", "--name", "web-1"];
        args.extend(&flags);
        let exited = must_run_kuma_dp(&args, &env);
        assert_eq!(exited.code(), Some(2), "{}", exited.log);
        assert_eq!(exited.log.lines().count(), 1, "one line: {}", exited.log);
        let line = exited.must_error_line();
        assert!(line.contains("--admin-port"), "{line}");
        assert!(line.contains("a port (9901), a range (9901-9999, 9901- or -9901)"), "{line}");
    }
}

#[test]
fn an_admin_port_that_is_not_free_fails_before_the_control_plane_is_asked() {
    let taker = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = taker.local_addr().unwrap().port();
    let cp = FakeBootstrapServer::start(vec![(500, "must not be asked".to_string())]);
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let exited = must_run_kuma_dp(
        &[
            "run",
            "--name=web-1",
            &format!("--binary-path={}", envoy.display()),
            &format!("--admin-port={port}"),
        ],
        &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(
        line.starts_with(&format!("Error: no port of --admin-port {port} is free on 127.0.0.1")),
        "{line}"
    );
    assert!(
        line.contains("KUMA_DATAPLANE_ADMIN_PORT") && line.ends_with("in use (os error 98)"),
        "{line}"
    );
    assert!(cp.requests().is_empty(), "asked the control plane: {:?}", cp.requests());
}

#[test]
fn a_port_taken_after_kuma_dp_found_it_free_is_named_when_envoy_fails() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Says it started, then waits (bounded) for the test to take the port, and fails as Envoy
    // does when it cannot bind its admin.
    let envoy = must_write_fake_envoy(
        dir.path(),
        "envoy",
        ": > \"$DIR/started\"\ni=0\nwhile [ ! -e \"$DIR/go\" ] && [ $i -lt 150 ]; do sleep 0.1; \
         i=$((i+1)); done\nexit 1",
    );
    let cp = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
    let port = free_port();
    let mut dp = spawn_kuma_dp(
        &[
            "run",
            "--name=web-1",
            &format!("--binary-path={}", envoy.display()),
            &format!("--config-dir={}", dir.path().join("config").display()),
            &format!("--admin-port={port}"),
        ],
        &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())],
    );
    poll_until(DEADLINE, "the stand-in Envoy started", || {
        if dir.path().join("started").exists() {
            Ok(())
        } else {
            Err(dp.log())
        }
    });
    // kuma-dp released the port for Envoy; another process takes it first.
    let _taker = TcpListener::bind(("127.0.0.1", port)).expect("kuma-dp released the port");
    std::fs::write(dir.path().join("go"), "").unwrap();
    let exited = dp.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(1), "Envoy's status: {}", exited.log);
    let line = exited.must_error_line();
    assert!(
        line.starts_with(&format!(
            "Error: Envoy exited with status 1: another process took its admin port \
             127.0.0.1:{port} after kuma-dp found it free"
        )),
        "{line}"
    );
    assert!(line.contains("--admin-port (or KUMA_DATAPLANE_ADMIN_PORT)"), "{line}");
}
