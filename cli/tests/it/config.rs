//! `kumactl config control-planes add|list|switch|remove`.

use kuma_test_support::KumaCp;

use crate::support::{must_serve, Ctl, CLOSED_URL};

#[test]
fn adding_a_control_plane_makes_it_active_and_list_switch_remove_follow() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::new();
    let url = cp.api_url();

    let out =
        ctl.must_run(&["config", "control-planes", "add", "--name", "test", "--address", &url]);

    assert_eq!(out, "added Control Plane \"test\"\nswitched active Control Plane to \"test\"\n");
    assert_eq!(
        ctl.must_run(&["config", "control-planes", "list"]),
        format!("ACTIVE   NAME    ADDRESS\n         local   http://localhost:5681\n*        test    {url}\n")
    );
    // The active control plane is the one commands talk to.
    assert!(ctl.must_run(&["get", "meshes"]).contains("default"));

    let out = ctl.must_run(&["config", "control-planes", "switch", "--name", "local"]);
    assert_eq!(out, "switched active Control Plane to \"local\"\n");
    let list = ctl.must_run(&["config", "control-planes", "list"]);
    assert!(list.lines().nth(1).unwrap().starts_with("*        local"), "{list}");

    let out = ctl.must_run(&["config", "control-planes", "remove", "--name", "test"]);
    assert_eq!(out, "removed Control Plane \"test\"\n");
    let view = ctl.must_run(&["config", "view"]);
    assert!(!view.contains(&url), "{view}");
}

#[test]
fn a_duplicate_name_is_refused_unless_overwrite_is_given() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::new();
    let url = cp.api_url();

    let stderr = ctl
        .run(&["config", "control-planes", "add", "--name", "local", "--address", &url])
        .must_fail();
    assert!(
        stderr.contains("\"local\" already exists") && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert!(!ctl.config_path().exists(), "a refused add writes nothing");

    ctl.must_run(&[
        "config",
        "control-planes",
        "add",
        "--name",
        "local",
        "--address",
        &url,
        "--overwrite",
    ]);
    let list = ctl.must_run(&["config", "control-planes", "list"]);
    assert_eq!(list, format!("ACTIVE   NAME    ADDRESS\n*        local   {url}\n"));
}

#[test]
fn an_address_that_is_not_kuma_is_refused() {
    let ctl = Ctl::new();
    let server = must_serve(200, "application/json", "{}".to_string());

    let stderr = ctl
        .run(&["config", "control-planes", "add", "--name", "x", "--address", &server])
        .must_fail();

    assert!(stderr.contains("is not a Kuma Control Plane"), "{stderr}");
    assert!(stderr.contains(&server), "{stderr}");
    assert!(!ctl.config_path().exists(), "a refused add writes nothing");
}

#[test]
fn an_address_that_answers_html_is_refused() {
    let ctl = Ctl::new();
    let server = must_serve(200, "text/html", "<html>hello</html>".to_string());
    let stderr = ctl
        .run(&["config", "control-planes", "add", "--name", "x", "--address", &server])
        .must_fail();
    assert!(stderr.contains("is not a Kuma Control Plane") && stderr.contains("JSON"), "{stderr}");
}

#[test]
fn an_unreachable_address_is_one_clear_line() {
    let ctl = Ctl::new();
    let address = CLOSED_URL;

    let stderr = ctl
        .run(&["config", "control-planes", "add", "--name", "x", "--address", address])
        .must_fail();

    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: could not connect to the Control Plane API Server at "),
        "{stderr}"
    );
    assert!(stderr.contains(address) && stderr.contains("kuma-cp is running"), "{stderr}");
    assert!(!ctl.config_path().exists(), "a refused add writes nothing");
}

#[test]
fn switching_or_removing_an_unknown_name_fails_clearly() {
    let ctl = Ctl::new();
    for command in ["switch", "remove"] {
        let stderr = ctl.run(&["config", "control-planes", command, "--name", "nope"]).must_fail();
        assert!(stderr.contains("there is no Control Plane with name \"nope\""), "{stderr}");
    }
    assert!(!ctl.config_path().exists());
}

/// Regression: a file written by Kuma's kumactl (with `credentials`, API server `headers`, ...)
/// was refused as invalid, so every command failed before reaching the control plane.
#[test]
fn a_config_file_written_by_kumas_kumactl_is_used_and_its_other_fields_kept() {
    let ctl = Ctl::new();
    let kumas = format!(
        "controlPlanes:\n\
         - name: local\n  coordinates:\n    apiServer:\n      url: http://localhost:5681\n\
         - name: prod\n  coordinates:\n    apiServer:\n      url: {CLOSED_URL}\n      \
             headers:\n      - key: X-Team\n        value: mesh\n\
         contexts:\n\
         - name: local\n  controlPlane: local\n  defaults:\n    mesh: default\n\
         - name: prod\n  controlPlane: prod\n  defaults:\n    mesh: demo\n  \
             credentials:\n    adminApi:\n      clientCert: /etc/kuma/admin.pem\n      \
             clientKey: /etc/kuma/admin.key\n\
         currentContext: local\n"
    );
    std::fs::create_dir_all(ctl.config_path().parent().unwrap()).unwrap();
    std::fs::write(ctl.config_path(), &kumas).unwrap();

    ctl.must_run(&["config", "control-planes", "switch", "--name", "prod"]);
    // The command gets as far as the control plane.
    let stderr = ctl.run(&["get", "meshes"]).must_fail();
    assert!(
        stderr.starts_with("Error: could not reach the Control Plane API Server at "),
        "{stderr}"
    );

    let saved: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(ctl.config_path()).unwrap()).unwrap();
    let mut expected: serde_yaml::Value = serde_yaml::from_str(&kumas).unwrap();
    expected["currentContext"] = "prod".into();
    assert_eq!(saved, expected);
    let view = ctl.must_run(&["config", "view"]);
    assert!(view.contains("clientKey: /etc/kuma/admin.key"), "{view}");
}
