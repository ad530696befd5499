//! What kuma-dp does with its Envoy child, shown with stand-in scripts: the command line it
//! gets, its exit status passed on, and a child that ignores SIGTERM killed after the grace period.

use std::path::Path;
use std::time::Duration;

use kuma_test_support::poll_until;
use rustix::process::Signal;

use crate::support::{
    must_envoy_pid, must_run_kuma_dp, must_write_fake_envoy, process_exists, spawn_kuma_dp,
    FakeBootstrapServer, DEADLINE,
};

/// `kuma-dp run` flags for a Dataplane `web-1` whose Envoy is `envoy` and whose files go in `dir`.
fn run_args(envoy: &Path, dir: &Path) -> Vec<String> {
    vec![
        "run".to_string(),
        "--name=web-1".to_string(),
        format!("--binary-path={}", envoy.display()),
        format!("--config-dir={}", dir.join("config").display()),
    ]
}

fn as_strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A stand-in Envoy that ignores SIGTERM and SIGINT (ignored signals stay ignored across exec, so
/// `sleep` ignores them too) and says so in `$DIR/ready`.
const STUBBORN: &str = "trap '' TERM INT\n: > \"$DIR/ready\"\nexec sleep 60";

/// The pid of the stand-in Envoy, once it has ignored the stop signals.
fn must_wait_until_stubborn(dir: &Path) -> u32 {
    poll_until(DEADLINE, "the fake Envoy ignores stop signals", || {
        if !dir.join("ready").exists() {
            return Err("not yet".to_string());
        }
        std::fs::read_to_string(dir.join("pid"))
            .map_err(|e| e.to_string())
            .and_then(|pid| pid.trim().parse::<u32>().map_err(|e| e.to_string()))
    })
}

#[test]
fn envoy_gets_the_bootstrap_file_a_unique_base_id_and_kuma_dps_settings() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", "exit 0");
    let cp = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
    let mut args = run_args(&envoy, dir.path());
    args.extend(["--log-level=warn".to_string(), "--drain-time=3s".to_string()]);
    let mut dp =
        spawn_kuma_dp(&as_strs(&args), &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())]);
    let dp_pid = dp.pid();
    let exited = dp.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    let envoy_args = std::fs::read_to_string(dir.path().join("args")).expect("envoy ran");
    let file = dir.path().join("config/bootstrap-default.web-1.yaml");
    assert_eq!(
        envoy_args.trim(),
        format!(
            "--config-path {} --base-id {dp_pid} --disable-hot-restart --drain-time-s 3 \
             --log-level warning",
            file.display()
        )
    );
}

#[test]
fn envoys_exit_status_or_killing_signal_becomes_kuma_dps_exit_code() {
    for (body, code, message) in [
        ("exit 7", 7, "Error: Envoy exited with status 7"),
        ("kill -9 $$", 137, "Error: Envoy was killed by signal 9 (SIGKILL)"),
    ] {
        let dir = tempfile::tempdir().expect("temp dir");
        let envoy = must_write_fake_envoy(dir.path(), "envoy", body);
        let cp = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
        let exited = must_run_kuma_dp(
            &as_strs(&run_args(&envoy, dir.path())),
            &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())],
        );
        assert_eq!(exited.code(), Some(code), "{body}: {}", exited.log);
        assert!(exited.must_error_line().starts_with(message), "{body}: {}", exited.log);
    }
}

#[test]
fn an_envoy_that_ignores_sigterm_is_killed_after_the_grace_period() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", STUBBORN);
    let cp = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
    let mut args = run_args(&envoy, dir.path());
    args.push("--drain-time=1s".to_string());
    let mut dp =
        spawn_kuma_dp(&as_strs(&args), &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())]);
    let envoy_pid = must_envoy_pid(&dp);
    assert_eq!(must_wait_until_stubborn(dir.path()), envoy_pid);

    dp.signal(Signal::TERM);
    let exited = dp.must_exit_within(DEADLINE);
    // Drain time 1s + 2s margin before SIGKILL.
    assert!(exited.took >= Duration::from_secs(2), "killed too early: {:?}", exited.took);
    assert_eq!(exited.code(), Some(137), "{}", exited.log);
    assert!(exited.log.contains("Envoy did not stop within 3s; killing Envoy"), "{}", exited.log);
    assert!(!process_exists(envoy_pid), "Envoy {envoy_pid} was left behind");
}

#[test]
fn a_second_stop_signal_kills_envoy_at_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let envoy = must_write_fake_envoy(dir.path(), "envoy", STUBBORN);
    let cp = FakeBootstrapServer::start(vec![(200, "node: {}\n".to_string())]);
    let mut dp = spawn_kuma_dp(
        &as_strs(&run_args(&envoy, dir.path())),
        &[("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL", &cp.url())],
    );
    let envoy_pid = must_envoy_pid(&dp);
    assert_eq!(must_wait_until_stubborn(dir.path()), envoy_pid);
    dp.signal(Signal::INT);
    poll_until(DEADLINE, "kuma-dp forwarded the first signal", || {
        let log = dp.log();
        if log.contains("stopping Envoy") {
            Ok(())
        } else {
            Err(log)
        }
    });
    dp.signal(Signal::INT);
    // Well within the default grace period (5s drain + 2s).
    let exited = dp.must_exit_within(Duration::from_secs(4));
    assert_eq!(exited.code(), Some(137), "{}", exited.log);
    assert!(!process_exists(envoy_pid), "Envoy {envoy_pid} was left behind");
}
