//! What kumactl does without any control plane: version, completion, config view, and the
//! message when the control plane cannot be reached.

use std::net::TcpStream;

use crate::support::{Ctl, CLOSED_URL};

#[test]
fn version_prints_the_version_and_detailed_adds_build_information() {
    let ctl = Ctl::new();
    assert_eq!(ctl.must_run(&["version"]), format!("{}\n", kuma_build_info::VERSION));
    let detailed = ctl.must_run(&["version", "--detailed"]);
    for key in ["Version:", "Git Tag:", "Git Commit:", "Build Date:"] {
        assert!(detailed.contains(key), "{key} missing from {detailed}");
    }
    assert_eq!(ctl.must_run(&["version", "-a"]), detailed);
}

#[test]
fn completion_prints_a_script_for_bash_zsh_and_fish() {
    let ctl = Ctl::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl.must_run(&["completion", shell]);
        assert!(script.contains("kumactl") && script.contains("inspect"), "{shell}: {script}");
    }
    // bash and zsh also complete resource types from the registry (fish has no positionals).
    for shell in ["bash", "zsh"] {
        assert!(ctl.must_run(&["completion", shell]).contains("traffic-permissions"), "{shell}");
    }
}

#[test]
fn config_view_prints_the_built_in_default_and_writes_no_file() {
    let ctl = Ctl::new();
    let view = ctl.must_run(&["config", "view"]);
    assert!(view.contains("url: http://localhost:5681"), "{view}");
    assert!(view.contains("currentContext: local"), "{view}");
    assert!(!ctl.config_path().exists(), "config view must not write the file");
}

#[test]
fn a_command_against_an_unreachable_control_plane_says_which_url_and_what_to_do() {
    let url = CLOSED_URL;
    let ctl = Ctl::for_url(url);
    let stderr = ctl.run(&["get", "meshes"]).must_fail();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("Error: could not reach the Control Plane API Server at "),
        "{stderr}"
    );
    assert!(stderr.contains(url), "{stderr}");
    assert!(stderr.contains("kuma-cp is running"), "{stderr}");
    assert!(stderr.contains("kumactl config control-planes add"), "{stderr}");
}

#[test]
fn a_broken_config_file_is_reported_with_its_path() {
    let ctl = Ctl::new();
    std::fs::create_dir_all(ctl.config_path().parent().unwrap()).unwrap();
    std::fs::write(ctl.config_path(), "controlPlanes: [oops\n").unwrap();
    let stderr = ctl.run(&["get", "meshes"]).must_fail();
    assert!(stderr.contains(&ctl.config_path().display().to_string()), "{stderr}");
}

#[test]
fn bad_arguments_are_a_usage_error_not_a_crash() {
    let ctl = Ctl::new();
    let run = ctl.run(&["get", "widgets"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
    assert!(run.stderr.contains("widgets"), "{run:#?}");
    let run = ctl.run(&["apply", "-f", "-", "-v", "novalue"]);
    assert_eq!(run.code, Some(2), "{run:#?}");
}

/// The "unreachable" tests rely on nothing listening at `CLOSED_URL`; if something does on this
/// machine, say so here rather than in a puzzling failure elsewhere.
#[test]
fn nothing_listens_at_the_closed_address() {
    let address = CLOSED_URL.trim_start_matches("http://");
    let err = TcpStream::connect(address).expect_err("something listens at the closed address");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{address}: {err}");
}
