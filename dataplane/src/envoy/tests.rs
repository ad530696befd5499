//! Finding Envoy and its command line.

use super::*;

fn must_write(path: &Path, mode: u32) {
    std::fs::write(path, "#!/bin/sh\n").expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[test]
fn binary_path_wins_when_it_is_an_executable_file() {
    let dir = tempfile::tempdir().unwrap();
    let given = dir.path().join("my-envoy");
    must_write(&given, 0o755);
    must_write(&dir.path().join("envoy"), 0o755);
    let found = find_envoy(Some(&given), Some(dir.path()), None).expect("found");
    assert_eq!(found, given);
}

#[test]
fn a_bad_binary_path_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let err = find_envoy(Some(&missing), None, None).expect_err("missing").to_string();
    assert!(err.contains("there is no such file") && err.contains("--binary-path"), "{err}");
    let plain = dir.path().join("plain");
    must_write(&plain, 0o644);
    let err = find_envoy(Some(&plain), None, None).expect_err("not executable").to_string();
    assert!(err.contains("not executable (mode 644)"), "{err}");
    let err = find_envoy(Some(dir.path()), None, None).expect_err("a dir").to_string();
    assert!(err.contains("not a file"), "{err}");
}

#[test]
fn envoy_next_to_kuma_dp_comes_before_path() {
    let exe_dir = tempfile::tempdir().unwrap();
    let path_dir = tempfile::tempdir().unwrap();
    must_write(&path_dir.path().join("envoy"), 0o755);
    let path_env = std::env::join_paths([path_dir.path()]).unwrap();
    let found = find_envoy(None, Some(exe_dir.path()), Some(&path_env)).expect("on PATH");
    assert_eq!(found, path_dir.path().join("envoy"));
    must_write(&exe_dir.path().join("envoy"), 0o755);
    let found = find_envoy(None, Some(exe_dir.path()), Some(&path_env)).expect("sibling");
    assert_eq!(found, exe_dir.path().join("envoy"));
}

#[test]
fn no_envoy_anywhere_lists_where_it_looked() {
    let exe_dir = tempfile::tempdir().unwrap();
    let path_dir = tempfile::tempdir().unwrap();
    // Not executable: does not count.
    must_write(&path_dir.path().join("envoy"), 0o644);
    let path_env = std::env::join_paths([path_dir.path()]).unwrap();
    let err = find_envoy(None, Some(exe_dir.path()), Some(&path_env)).expect_err("none");
    let text = err.to_string();
    assert!(text.contains(&exe_dir.path().join("envoy").display().to_string()), "{text}");
    assert!(text.contains(&path_dir.path().display().to_string()), "{text}");
    assert!(text.contains("--binary-path"), "{text}");
}

#[test]
fn the_command_line_has_every_flag_kuma_dp_promises() {
    let command = EnvoyCommand {
        binary: PathBuf::from("/usr/bin/envoy"),
        config_path: PathBuf::from("/tmp/kuma.io/envoy/bootstrap-default.web-1.yaml"),
        base_id: 4242,
        drain_time: Duration::from_millis(1500),
        log_level: LogLevel::Warn,
    };
    assert_eq!(
        command.display(),
        "/usr/bin/envoy --config-path /tmp/kuma.io/envoy/bootstrap-default.web-1.yaml \
         --base-id 4242 --disable-hot-restart --drain-time-s 2 --log-level warning"
    );
}
