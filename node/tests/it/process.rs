use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use kuma_test_support::{eventually, free_port, http_get, http_request, KumaCp};
use serde_json::Value;

const KUMA_CP: &str = env!("CARGO_BIN_EXE_kuma-cp");

fn must_json(reply: std::io::Result<kuma_test_support::HttpReply>) -> (u16, Value) {
    let reply = reply.expect("the API answers");
    (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
}

/// Runs kuma-cp to completion with only the given environment. Every run here is expected to
/// end by itself; one that is still running after the deadline (a regression that let it start)
/// is killed and fails the test instead of hanging it.
fn must_run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(KUMA_CP)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kuma-cp runs");
    let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        eventually!(Duration::from_secs(20), || -> Result<_, String> {
            child.try_wait().map_err(|e| e.to_string())?.ok_or_else(|| "still running".into())
        })
    }));
    if finished.is_err() {
        let _ = child.kill();
        panic!("kuma-cp {args:?} did not exit by itself");
    }
    child.wait_with_output().expect("kuma-cp output")
}

#[test]
fn starts_with_defaults_and_creates_the_default_mesh() {
    let cp = KumaCp::must_start();
    let (status, index) = must_json(http_get(cp.api_port, "/"));
    assert_eq!(status, 200);
    assert_eq!(index["tagline"], "Kuma");
    let (status, mesh) = must_json(http_get(cp.api_port, "/meshes/default"));
    assert_eq!((status, mesh["name"].as_str()), (200, Some("default")));
    assert_eq!(http_get(cp.diagnostics_port, "/healthy").unwrap().status, 200);
    assert_eq!(http_get(cp.diagnostics_port, "/ready").unwrap().status, 200);
}

/// The value of `name` in the environment the running process `pid` was executed with.
fn environment_of(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).expect("/proc/<pid>/environ");
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_string))
}

#[test]
fn it_runs_its_allocator_without_huge_pages_unless_the_operator_chose() {
    // kuma-cp executes itself again with the variable set, before anything else runs.
    let cp = KumaCp::must_start();
    let pid = cp.pid().expect("running");
    assert_eq!(environment_of(pid, "MIMALLOC_ALLOW_THP").as_deref(), Some("0"));

    let chosen = KumaCp::builder().env("MIMALLOC_ALLOW_THP", "1").must_start();
    let pid = chosen.pid().expect("running");
    assert_eq!(environment_of(pid, "MIMALLOC_ALLOW_THP").as_deref(), Some("1"));
}

#[test]
fn skip_mesh_creation_leaves_no_default_mesh() {
    let cp = KumaCp::builder().env("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true").must_start();
    let (_, meshes) = must_json(http_get(cp.api_port, "/meshes"));
    assert_eq!(meshes["total"], 0);
}

#[test]
fn config_file_applies_and_env_vars_override_it() {
    // The file makes the API read-only; the environment turns that back off for one of two peers.
    let yaml = "apiServer:\n  readOnly: true\n";
    let read_only = KumaCp::builder().config(yaml).must_start();
    let writable =
        KumaCp::builder().config(yaml).env("KUMA_API_SERVER_READ_ONLY", "false").must_start();
    let body = r#"{"type":"Mesh","name":"demo"}"#;
    assert_eq!(
        http_request(read_only.api_port, "PUT", "/meshes/demo", Some(body)).unwrap().status,
        405
    );
    assert_eq!(
        http_request(writable.api_port, "PUT", "/meshes/demo", Some(body)).unwrap().status,
        201
    );
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly() {
    for signal in ["TERM", "INT"] {
        let mut cp = KumaCp::must_start();
        let status = cp.must_stop_with(signal);
        assert!(status.success(), "SIG{signal}: {status}\n{}", cp.log());
        let log = cp.log();
        assert!(
            log.contains("shutdown requested") && log.contains("Control Plane stopped"),
            "{log}"
        );
    }
}

#[test]
fn logs_are_structured_with_fields() {
    let cp = KumaCp::must_start();
    let log = cp.log();
    assert!(log.contains(&format!("api-server starting port={}", cp.api_port)), "{log}");
    assert!(log.contains("created the default mesh mesh=\"default\""), "{log}");
}

#[test]
fn malformed_env_var_is_one_clear_line_and_a_failure_exit() {
    let out = must_run(&["run"], &[("KUMA_API_SERVER_PORT", "http")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert_eq!(
        last,
        "Error: KUMA_API_SERVER_PORT=\"http\" is not valid: expected a non-negative integer"
    );
}

#[test]
fn unknown_store_type_names_the_variable_and_the_choices() {
    let out = must_run(&["run"], &[("KUMA_STORE_TYPE", "cassandra")]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KUMA_STORE_TYPE") && stderr.contains("memory"), "{stderr}");
}

/// An error is one line: what failed, what to do in parentheses, then its cause once.
#[test]
fn missing_config_file_is_a_clear_error() {
    let out = must_run(&["run", "-c", "/nonexistent/kuma-cp.yaml"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        "Error: could not read config file /nonexistent/kuma-cp.yaml (check the path given with \
         -c/--config-file): No such file or directory (os error 2)",
        "{stderr}"
    );
    assert_eq!(stderr.matches("No such file or directory").count(), 1, "{stderr}");
}

/// Regression: the cause was printed twice ("Address already in use (os error 98): Address
/// already in use (os error 98)"), once by the message and once more as its `source`.
#[test]
fn port_in_use_says_which_server_and_which_variable_and_the_os_error_once() {
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = taken.local_addr().unwrap().port().to_string();
    let diagnostics = free_port().to_string();
    let out = must_run(
        &["run"],
        &[("KUMA_API_SERVER_PORT", &port), ("KUMA_DIAGNOSTICS_PORT", &diagnostics)],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().last().unwrap_or_default(),
        format!(
            "Error: api-server could not listen on 0.0.0.0:{port} (stop whatever uses the port or \
             set KUMA_API_SERVER_PORT to another port): Address already in use (os error 98)"
        ),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Address already in use").count(), 1, "{stderr}");
}

#[test]
fn raft_certs_into_a_directory_it_cannot_make_says_so_with_the_cause_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("file");
    std::fs::write(&file, "").expect("write");
    let certs = file.join("certs").display().to_string();
    let out = must_run(&["raft", "certs", "--dir", &certs, "--ids", "1"], &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        format!(
            "Error: could not create {certs} (give --dir a directory you can read and write): Not \
             a directory (os error 20)\n"
        )
    );
}

#[test]
fn sds_port_in_use_stops_the_start_like_any_other_port() {
    let taken = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = taken.local_addr().unwrap().port().to_string();
    let free: Vec<String> = (0..5).map(|_| free_port().to_string()).collect();
    let out = must_run(
        &["run"],
        &[
            ("KUMA_DIAGNOSTICS_PORT", &free[0]),
            ("KUMA_API_SERVER_PORT", &free[1]),
            ("KUMA_API_SERVER_HTTPS_PORT", &free[4]),
            ("KUMA_BOOTSTRAP_SERVER_PORT", &free[2]),
            ("KUMA_XDS_SERVER_GRPC_PORT", &free[3]),
            ("KUMA_SDS_SERVER_GRPC_PORT", &port),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("sds-server could not listen")
            && stderr.contains("KUMA_SDS_SERVER_GRPC_PORT"),
        "{stderr}"
    );
}

#[test]
fn version_and_detailed_version() {
    let out = must_run(&["version"], &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), kuma_build_info_version());
    let out = must_run(&["version", "--detailed"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    for key in ["Version:", "Git Tag:", "Git Commit:", "Build Date:"] {
        assert!(text.contains(key), "{text}");
    }
}

fn kuma_build_info_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[test]
fn help_lists_the_commands_and_a_wrong_flag_fails() {
    let out = must_run(&["-h"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("run") && text.contains("version"), "{text}");
    let out = must_run(&["run", "--no-such-flag"], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-such-flag"));
}
