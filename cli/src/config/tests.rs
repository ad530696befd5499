//! Unit tests of `config.rs`.

use super::*;

#[test]
fn a_missing_file_means_the_local_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&dir.path().join("config")).unwrap();
    assert_eq!(config.current_control_plane().unwrap().url(), "http://localhost:5681");
    assert_eq!(config.current_context, "local");
}

#[test]
fn kumas_file_layout_is_read() {
    let config = Config::from_yaml(
        "controlPlanes:\n- name: test1\n  coordinates:\n    apiServer:\n      url: https://test1.internal:5681\n\
         contexts:\n- name: test1\n  controlPlane: test1\n  defaults:\n    mesh: demo\n\
         currentContext: test1\n",
    )
    .unwrap();
    assert_eq!(config.current_control_plane().unwrap().url(), "https://test1.internal:5681");
    assert_eq!(config.current().unwrap().defaults.mesh, "demo");
}

#[test]
fn saving_and_loading_round_trips_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/.kumactl/config");
    let mut config = Config::default();
    config.add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false).unwrap();
    config.save(&path).unwrap();
    assert_eq!(Config::load(&path).unwrap(), config);
}

#[test]
fn adding_a_control_plane_adds_a_context_and_switches_to_it() {
    let mut config = Config::default();
    config.add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false).unwrap();
    assert_eq!(config.current_context, "prod");
    assert_eq!(config.current_control_plane().unwrap().url(), "http://prod:5681");
    let active: Vec<_> =
        config.control_planes().map(|(cp, active)| (cp.name.as_str(), active)).collect();
    assert_eq!(active, [("local", false), ("prod", true)]);
}

#[test]
fn a_duplicate_name_is_refused_unless_overwriting() {
    let mut config = Config::default();
    let err = config
        .add_control_plane(ControlPlane::new("local", "http://other:5681"), false)
        .unwrap_err();
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert_eq!(config, Config::default());
    config.add_control_plane(ControlPlane::new("local", "http://other:5681"), true).unwrap();
    assert_eq!(config.control_planes.len(), 1);
    assert_eq!(config.current_control_plane().unwrap().url(), "http://other:5681");
}

#[test]
fn switching_to_an_unknown_name_fails_and_changes_nothing() {
    let mut config = Config::default();
    assert!(matches!(config.switch("nope"), Err(ConfigError::UnknownControlPlane(_))));
    assert_eq!(config.current_context, "local");
    config.add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false).unwrap();
    config.switch("local").unwrap();
    assert_eq!(config.current_context, "local");
}

#[test]
fn removing_the_active_control_plane_leaves_none_active() {
    let mut config = Config::default();
    config.add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false).unwrap();
    config.remove_control_plane("prod").unwrap();
    assert_eq!(config.contexts.len(), 1);
    assert_eq!(config.current_context, "");
    assert!(matches!(config.current_control_plane(), Err(ConfigError::NoActiveControlPlane)));
    assert!(matches!(
        config.remove_control_plane("prod"),
        Err(ConfigError::UnknownControlPlane(_))
    ));
}

#[test]
fn a_context_pointing_nowhere_is_reported() {
    let err =
        Config::from_yaml("contexts:\n- name: a\n  controlPlane: missing\ncurrentContext: a\n")
            .unwrap_err();
    assert!(err.contains("missing"), "{err}");
}

/// A file as Kuma's kumactl writes it, with fields this kumactl does not use at every level.
const KUMAS_FILE: &str = "\
controlPlanes:
- name: prod
  coordinates:
    apiServer:
      url: https://prod.internal:5682
      caCertFile: /etc/kuma/ca.pem
      headers:
      - key: X-Team
        value: mesh
    region: eu-west
contexts:
- name: prod
  controlPlane: prod
  defaults:
    mesh: demo
    output: yaml
  credentials:
    adminApi:
      clientCert: /etc/kuma/admin.pem
      clientKey: /etc/kuma/admin.key
currentContext: prod
kumactlVersion: 1.0.0
";

fn must_parse_yaml(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap()
}

/// Regression: `deny_unknown_fields` refused every file Kuma's kumactl had written with
/// credentials, so every command failed.
#[test]
fn a_file_written_by_kumas_kumactl_is_read_and_written_back_unchanged() {
    let config = Config::from_yaml(KUMAS_FILE).unwrap();
    assert_eq!(config.current_control_plane().unwrap().url(), "https://prod.internal:5682");
    assert_eq!(config.current().unwrap().defaults.mesh, "demo");
    assert_eq!(must_parse_yaml(&config.to_yaml()), must_parse_yaml(KUMAS_FILE));
}

#[test]
fn unknown_fields_survive_a_change_and_a_save() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, KUMAS_FILE).unwrap();
    let mut config = Config::load(&path).unwrap();
    config.add_control_plane(ControlPlane::new("dev", "http://dev:5681"), false).unwrap();
    config.switch("prod").unwrap();
    config.save(&path).unwrap();

    let saved = must_parse_yaml(&std::fs::read_to_string(&path).unwrap());
    let kumas = must_parse_yaml(KUMAS_FILE);
    assert_eq!(saved["controlPlanes"][0], kumas["controlPlanes"][0]);
    assert_eq!(saved["contexts"][0], kumas["contexts"][0]);
    assert_eq!(saved["kumactlVersion"], kumas["kumactlVersion"]);
    assert_eq!(saved["controlPlanes"][1]["name"], "dev");
}

#[test]
fn a_file_of_the_wrong_shape_is_refused_saying_where() {
    for (text, expected) in [
        ("controlPlanes: 5\n", "controlPlanes: invalid type"),
        ("controlPlanes:\n- name: a\n", "controlPlanes[0]: missing field `coordinates`"),
        (
            "controlPlanes:\n- name: a\n  coordinates:\n    apiServer: {}\n",
            "controlPlanes[0].coordinates.apiServer: missing field `url`",
        ),
        ("contexts:\n- controlPlane: a\n", "contexts[0]: missing field `name`"),
        ("- a\n", "invalid type: sequence"),
        ("just text\n", "invalid type: string"),
    ] {
        let err = Config::from_yaml(text).unwrap_err();
        assert!(err.contains(expected), "{text:?}: {err}");
    }
}

#[test]
fn a_file_that_is_not_yaml_is_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config");
    std::fs::write(&path, "controlPlanes: [\n\tname: : x\n").unwrap();
    let err = Config::load(&path).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&path.display().to_string()) && text.contains("fix or remove the file"),
        "{text}"
    );
}
