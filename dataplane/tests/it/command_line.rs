//! kuma-dp's command line and the failures that need no control plane: version, help, a missing
//! name, a malformed URL, a missing Envoy, no control plane reachable, a stop while waiting.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use kuma_test_support::poll_until;
use rustix::process::Signal;

use crate::support::{
    must_run_kuma_dp, must_write_fake_envoy, spawn_kuma_dp, static_bootstrap, FakeBootstrapServer,
    Proc, CA_PEM, CLOSED_URL, CLOSED_URL_2, DEADLINE,
};

#[test]
fn version_prints_the_version_and_detailed_adds_build_information() {
    let exited = must_run_kuma_dp(&["version"], &[]);
    assert_eq!(exited.code(), Some(0));
    assert_eq!(exited.log, format!("{}\n", kuma_build_info::VERSION));
    let detailed = must_run_kuma_dp(&["version", "--detailed"], &[]);
    assert_eq!(detailed.code(), Some(0));
    assert_eq!(detailed.log, kuma_build_info::detailed("Kuma"));
}

#[test]
fn help_lists_the_commands_and_every_run_flag_with_its_environment_variable() {
    let help = must_run_kuma_dp(&["-h"], &[]);
    assert_eq!(help.code(), Some(0));
    assert!(help.log.contains("run") && help.log.contains("version"), "{}", help.log);
    let run_help = must_run_kuma_dp(&["run", "--help"], &[]);
    assert_eq!(run_help.code(), Some(0));
    for expected in [
        "--bootstrap-server-url",
        "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL",
        "https://localhost:5682",
        "--ca-cert-file",
        "KUMA_CONTROL_PLANE_CA_CERT_FILE",
        "--ca-cert <PEM>",
        "[env: KUMA_CONTROL_PLANE_CA_CERT]",
        "--cp-address",
        "KUMA_CONTROL_PLANE_URL=",
        "--dataplane-token",
        "KUMA_DATAPLANE_RUNTIME_TOKEN",
        "--dataplane-file",
        "KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH",
        "--dataplane-var",
        "--mesh",
        "KUMA_DATAPLANE_MESH",
        "--name",
        "KUMA_DATAPLANE_NAME",
        "--admin-port",
        "KUMA_DATAPLANE_ADMIN_PORT",
        "--binary-path",
        "KUMA_DATAPLANE_RUNTIME_BINARY_PATH",
        "--config-dir",
        "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR",
        "--dataplane-token-file",
        "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
        "KUMA_CONTROL_PLANE_RETRY_BACKOFF",
        "KUMA_CONTROL_PLANE_RETRY_MAX_DURATION",
        "--log-level",
    ] {
        assert!(run_help.log.contains(expected), "{expected} missing from:\n{}", run_help.log);
    }
}

#[test]
fn a_missing_name_is_a_one_line_usage_error_naming_the_flag_and_variable() {
    let exited = must_run_kuma_dp(&["run"], &[]);
    assert_eq!(exited.code(), Some(2), "{}", exited.log);
    assert_eq!(exited.log.lines().count(), 1, "one line: {}", exited.log);
    let line = exited.must_error_line();
    assert!(line.contains("--name") && line.contains("KUMA_DATAPLANE_NAME"), "{line}");
}

#[test]
fn a_malformed_bootstrap_url_is_a_one_line_usage_error_with_the_value() {
    for (flag, value) in [
        ("--bootstrap-server-url", "localhost:5682"),
        ("--bootstrap-server-url", "http://127.0.0.1:5682,not a url"),
    ] {
        let exited = must_run_kuma_dp(&["run", "--name", "web-1", flag, value], &[]);
        assert_eq!(exited.code(), Some(2), "{}", exited.log);
        assert_eq!(exited.log.lines().count(), 1, "one line: {}", exited.log);
        let line = exited.must_error_line();
        assert!(line.contains("is not a valid URL"), "{line}");
        assert!(line.contains("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL"), "{line}");
    }
    // From the environment variable too.
    let exited = must_run_kuma_dp(
        &["run"],
        &[
            ("KUMA_DATAPLANE_NAME", "web-1"),
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", "ftp://127.0.0.1:21"),
        ],
    );
    assert_eq!(exited.code(), Some(2), "{}", exited.log);
    assert!(exited.must_error_line().contains("\"ftp://127.0.0.1:21\""), "{}", exited.log);
}

#[test]
fn kumas_injector_variables_name_the_control_plane_and_its_ca() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let envoy = envoy.display().to_string();
    let config_dir = dir.path().join("config").display().to_string();
    let args = ["run", "--name", "web-1", "--binary-path", &envoy, "--config-dir", &config_dir];
    // A 400 ends kuma-dp at once: enough to see which control plane was asked, and with what.
    let body = r#"{"title":"Bad Request","details":"stop here"}"#;
    let newer = FakeBootstrapServer::start(vec![(400, body.to_string())]);
    let older = FakeBootstrapServer::start(vec![(400, body.to_string())]);

    let exited = must_run_kuma_dp(
        &args,
        &[("KUMA_CONTROL_PLANE_URL", &newer.url()), ("KUMA_CONTROL_PLANE_CA_CERT", CA_PEM)],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    assert!(exited.must_error_line().contains("stop here"), "{}", exited.log);
    let asked = newer.requests();
    assert_eq!(asked.len(), 1, "KUMA_CONTROL_PLANE_URL names the control plane");
    let sent: serde_json::Value = serde_json::from_str(&asked[0].body).unwrap();
    assert_eq!(sent["caCert"], CA_PEM, "the inline CA is the one kuma-dp trusts");

    let exited = must_run_kuma_dp(
        &args,
        &[
            ("KUMA_CONTROL_PLANE_URL", &newer.url()),
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &older.url()),
        ],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    assert_eq!(
        (newer.requests().len(), older.requests().len()),
        (1, 1),
        "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL wins over KUMA_CONTROL_PLANE_URL"
    );

    let exited = must_run_kuma_dp(
        &args,
        &[("KUMA_CONTROL_PLANE_URL", "ftp://127.0.0.1:21"), ("KUMA_CONTROL_PLANE_CA_CERT", CA_PEM)],
    );
    assert_eq!(exited.code(), Some(2), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(line.contains("KUMA_CONTROL_PLANE_URL) \"ftp://127.0.0.1:21\""), "{line}");

    let exited = must_run_kuma_dp(
        &args,
        &[("KUMA_CONTROL_PLANE_URL", &newer.url()), ("KUMA_CONTROL_PLANE_CA_CERT", "garbage")],
    );
    assert_eq!(exited.code(), Some(2), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(
        line.contains("--ca-cert (or KUMA_CONTROL_PLANE_CA_CERT) is not a PEM CA certificate"),
        "{line}"
    );

    let ca_file = dir.path().join("ca.crt");
    std::fs::write(&ca_file, CA_PEM).unwrap();
    let exited = must_run_kuma_dp(
        &args,
        &[
            ("KUMA_CONTROL_PLANE_URL", &newer.url()),
            ("KUMA_CONTROL_PLANE_CA_CERT", CA_PEM),
            ("KUMA_CONTROL_PLANE_CA_CERT_FILE", &ca_file.display().to_string()),
        ],
    );
    assert_eq!(exited.code(), Some(2), "{}", exited.log);
    assert_eq!(exited.log.lines().count(), 1, "one line: {}", exited.log);
    let line = exited.must_error_line();
    assert!(line.contains("--ca-cert") && line.contains("--ca-cert-file"), "{line}");
    assert_eq!(newer.requests().len(), 1, "no control plane is asked with a bad setting");
}

#[test]
fn a_missing_or_non_executable_binary_path_fails_before_the_control_plane_is_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_executable = dir.path().join("envoy");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(&not_executable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cp = FakeBootstrapServer::start(vec![(500, "must not be asked".to_string())]);
    for (binary, reason) in [
        ("/nonexistent/envoy".to_string(), "there is no such file"),
        (not_executable.display().to_string(), "it is not executable"),
    ] {
        let exited = must_run_kuma_dp(
            &["run", "--name", "web-1", "--binary-path", &binary],
            &[
                ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url()),
                ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "5m"),
            ],
        );
        assert_eq!(exited.code(), Some(1), "{}", exited.log);
        let line = exited.must_error_line();
        assert!(line.contains(&binary) && line.contains(reason), "{line}");
        assert!(line.contains("--binary-path"), "{line}");
        assert!(exited.took < Duration::from_secs(5), "took {:?}", exited.took);
    }
    assert!(cp.requests().is_empty(), "the control plane was asked: {:?}", cp.requests());
}

#[test]
fn without_binary_path_envoy_is_looked_for_next_to_kuma_dp_then_on_path() {
    // A copy of kuma-dp in a directory of its own, so "next to kuma-dp" is under the test's control.
    let dir = tempfile::tempdir().expect("temp dir");
    let bin = dir.path().join("bin");
    let empty = dir.path().join("empty-path");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&empty).unwrap();
    let kuma_dp = bin.join("kuma-dp");
    std::fs::copy(env!("CARGO_BIN_EXE_kuma-dp"), &kuma_dp).expect("copy kuma-dp");
    let path_env = empty.display().to_string();
    let config_dir = dir.path().join("config");
    let config_dir = config_dir.display().to_string();
    let cp = FakeBootstrapServer::start(vec![(200, static_bootstrap(1, 2, 3))]);
    let args = ["run", "--name", "web-1", "--config-dir", &config_dir];
    let env = [("PATH", path_env.as_str()), ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())];

    let exited = Proc::spawn(&kuma_dp, &args, &env).must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(line.starts_with("Error: no envoy binary found"), "{line}");
    assert!(line.contains(&bin.join("envoy").display().to_string()), "{line}");
    assert!(line.contains(&path_env), "{line}");
    assert!(line.contains("--binary-path"), "{line}");
    assert!(cp.requests().is_empty(), "asked the control plane without an Envoy");

    // With an `envoy` beside it, that one runs.
    let record = dir.path().join("record");
    std::fs::create_dir_all(&record).unwrap();
    let fake = must_write_fake_envoy(&record, "envoy", "exit 0");
    std::fs::rename(&fake, bin.join("envoy")).expect("put envoy next to kuma-dp");
    let exited = Proc::spawn(&kuma_dp, &args, &env).must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    let envoy_args = std::fs::read_to_string(record.join("args")).expect("the envoy beside ran");
    assert!(envoy_args.starts_with("--config-path "), "{envoy_args}");
}

#[test]
fn an_unreachable_control_plane_fails_after_the_max_duration_naming_every_url() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let envoy = envoy.display().to_string();
    let config_dir = dir.path().join("config").display().to_string();
    let urls = format!("{CLOSED_URL},{CLOSED_URL_2}");
    let exited = must_run_kuma_dp(
        &["run", "--name", "web-1", "--binary-path", &envoy, "--config-dir", &config_dir],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &urls),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "200ms"),
            ("KUMA_CONTROL_PLANE_RETRY_MAX_DURATION", "1s"),
        ],
    );
    assert_eq!(exited.code(), Some(1), "{}", exited.log);
    assert!(exited.took >= Duration::from_secs(1), "gave up after {:?}", exited.took);
    assert!(exited.took < Duration::from_secs(8), "took {:?}", exited.took);
    let line = exited.must_error_line();
    assert!(line.contains(&format!("at {CLOSED_URL}, {CLOSED_URL_2} ")), "{line}");
    assert!(line.contains("after retrying for 1s"), "{line}");
    assert!(line.contains("Connection refused"), "{line}");
    assert!(line.contains("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL"), "{line}");
    assert!(!dir.path().join("args").exists(), "Envoy ran without a bootstrap");
}

#[test]
fn a_stop_signal_while_waiting_for_the_control_plane_exits_0_without_starting_envoy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let envoy = envoy.display().to_string();
    let config_dir = dir.path().join("config").display().to_string();
    let mut dp = spawn_kuma_dp(
        &["run", "--name", "web-1", "--binary-path", &envoy, "--config-dir", &config_dir],
        &[
            ("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", CLOSED_URL),
            ("KUMA_CONTROL_PLANE_RETRY_BACKOFF", "200ms"),
        ],
    );
    poll_until(DEADLINE, "kuma-dp is retrying", || {
        let log = dp.log();
        if log.contains("no Control Plane answered") {
            Ok(())
        } else {
            Err(log)
        }
    });
    dp.signal(Signal::TERM);
    let exited = dp.must_exit_within(Duration::from_secs(5));
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    assert!(exited.log.contains("stopped before Envoy was started"), "{}", exited.log);
    assert!(!Path::new(&dir.path().join("args")).exists(), "Envoy was started");
}
