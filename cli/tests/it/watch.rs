//! `kumactl inspect dataplanes --watch` as a script sees it (stdout a pipe): a new table, after a
//! blank line, when a dataplane appears; `--watch-count` and Ctrl-C end it with exit 0; a first
//! attempt that fails exits 1 with one line; later failures are one stderr line each and the watch
//! goes on; no colours on a pipe. `get -w` the same way.

use std::path::Path;
use std::time::Duration;

use kuma_test_support::{try_poll_until, KumaCp, Proc, Signal};

use crate::support::{Ctl, CLOSED_URL, REDIS_1};

const DEADLINE: Duration = Duration::from_secs(20);

/// `kumactl --config-file <ctl's> args...`, its output (stdout and stderr) in a log.
fn spawn_kumactl(ctl: &Ctl, home: &Path, args: &[&str]) -> Proc {
    let config = ctl.config_path();
    let mut all = vec!["--config-file", config.to_str().unwrap()];
    all.extend_from_slice(args);
    Proc::spawn(Path::new(env!("CARGO_BIN_EXE_kumactl")), &all, &[("HOME", home.to_str().unwrap())])
}

/// Waits until the output holds `n` tables (header lines).
fn must_see_tables(kumactl: &Proc, n: usize) -> String {
    try_poll_until(DEADLINE, || {
        let log = kumactl.log();
        (log.matches("MESH ").count() >= n).then_some(log.clone()).ok_or(log)
    })
    .unwrap_or_else(|log| panic!("no {n} tables within {DEADLINE:?}:\n{log}"))
}

#[test]
fn watch_on_a_pipe_prints_a_new_table_when_a_dataplane_appears_and_stops_at_the_count() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let home = tempfile::tempdir().unwrap();
    let mut watch = spawn_kumactl(
        &ctl,
        home.path(),
        &["inspect", "dataplanes", "--watch", "--interval", "1s", "--watch-count", "2"],
    );
    let first = must_see_tables(&watch, 1);
    assert!(!first.contains("redis-1"), "{first}");
    ctl.must_apply(REDIS_1);
    let exited = watch.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", watch.log());
    let log = watch.log();
    let (before, after) = log.split_once("\n\n").unwrap_or_else(|| panic!("no blank line:\n{log}"));
    assert!(before.starts_with("MESH ") && !before.contains("redis-1"), "{log}");
    assert!(after.starts_with("MESH ") && after.contains("redis-1"), "{log}");
    assert!(after.contains("   Offline   "), "{log}");
    assert!(!log.contains('\x1b'), "no colours or redrawing on a pipe: {log:?}");
}

#[test]
fn ctrl_c_ends_a_watch_with_exit_zero() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    let home = tempfile::tempdir().unwrap();
    let mut watch = spawn_kumactl(&ctl, home.path(), &["inspect", "dataplanes", "-w"]);
    let log = must_see_tables(&watch, 1);
    assert!(log.contains("redis-1"), "{log}");
    watch.signal(Signal::INT);
    let exited = watch.must_exit_within(Duration::from_secs(5));
    assert_eq!(exited.code(), Some(0), "{}", watch.log());
}

#[test]
fn a_watch_that_cannot_start_exits_one_with_one_line_and_a_bad_command_line_two() {
    let ctl = Ctl::for_url(CLOSED_URL);
    let stderr = ctl.run(&["inspect", "dataplanes", "--watch"]).must_fail();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("Error: could not reach"), "{stderr}");

    let usage = ctl.run(&["inspect", "dataplanes", "--watch-count", "2"]);
    assert_eq!(usage.code, Some(2), "--watch-count needs --watch: {usage:?}");
    let usage = ctl.run(&["inspect", "dataplanes", "--watch", "--interval", "10ms"]);
    assert_eq!(usage.code, Some(2), "{usage:?}");
    assert!(usage.stderr.contains("use 1s or more"), "{usage:?}");
}

#[test]
fn the_help_documents_the_exit_status() {
    let help = Ctl::new().run(&["--help"]).must_succeed();
    assert!(help.contains("Exit status: 0") && help.contains("NO_COLOR"), "{help}");
}

#[test]
fn get_watch_on_a_pipe_prints_the_list_again_when_a_mesh_appears() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let home = tempfile::tempdir().unwrap();
    let mut watch = spawn_kumactl(
        &ctl,
        home.path(),
        &["get", "meshes", "-w", "--interval", "1s", "--watch-count", "2"],
    );
    let first = try_poll_until(DEADLINE, || {
        let log = watch.log();
        log.contains("NAME ").then_some(log.clone()).ok_or(log)
    })
    .unwrap_or_else(|log| panic!("no table:\n{log}"));
    assert!(!first.contains("other"), "{first}");
    ctl.must_apply("type: Mesh\nname: other\n");
    let exited = watch.must_exit_within(DEADLINE);
    assert_eq!(exited.code(), Some(0), "{}", watch.log());
    let log = watch.log();
    let (before, after) = log.split_once("\n\n").unwrap_or_else(|| panic!("no blank line:\n{log}"));
    assert!(before.starts_with("NAME ") && !before.contains("other"), "{log}");
    assert!(after.starts_with("NAME ") && after.contains("other"), "{log}");

    let usage = ctl.run(&["get", "meshes", "-w", "--size", "1"]);
    assert_eq!(usage.code, Some(2), "--watch reads every page: {usage:?}");
}

#[test]
fn a_watch_outlives_a_control_plane_restart_saying_so_on_stderr() {
    let mut cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    let home = tempfile::tempdir().unwrap();
    let mut watch = spawn_kumactl(
        &ctl,
        home.path(),
        &["inspect", "dataplanes", "-w", "--interval", "1s", "--watch-count", "2"],
    );
    assert!(must_see_tables(&watch, 1).contains("redis-1"));

    cp.must_stop_with("KILL");
    try_poll_until(DEADLINE, || {
        let log = watch.log();
        log.contains("kumactl: could not reach").then_some(()).ok_or(log)
    })
    .unwrap_or_else(|log| panic!("the watch did not report the outage:\n{log}"));
    // Its store was in memory: the restarted control plane has no dataplanes, a change.
    cp.must_restart();
    let exited = watch.must_exit_within(Duration::from_secs(60));
    assert_eq!(exited.code(), Some(0), "{}", watch.log());
    let log = watch.log();
    let last = log.rsplit("\n\n").next().unwrap_or_default();
    assert!(last.starts_with("MESH ") && !last.contains("redis-1"), "{log}");
    let outage = log.lines().find(|l| l.starts_with("kumactl: ")).unwrap_or_default();
    assert!(outage.contains("trying again in"), "one line per failed attempt: {outage}");
}
