//! Unit tests of `config.rs`.

use super::*;

#[test]
fn a_missing_file_means_the_local_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&dir.path().join("config")).unwrap();
    assert_eq!(
        config.current_control_plane().unwrap().url(),
        "http://localhost:5681"
    );
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
    assert_eq!(
        config.current_control_plane().unwrap().url(),
        "https://test1.internal:5681"
    );
    assert_eq!(config.current().unwrap().defaults.mesh, "demo");
}

#[test]
fn saving_and_loading_round_trips_and_creates_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/.kumactl/config");
    let mut config = Config::default();
    config
        .add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false)
        .unwrap();
    config.save(&path).unwrap();
    assert_eq!(Config::load(&path).unwrap(), config);
}

#[test]
fn adding_a_control_plane_adds_a_context_and_switches_to_it() {
    let mut config = Config::default();
    config
        .add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false)
        .unwrap();
    assert_eq!(config.current_context, "prod");
    assert_eq!(
        config.current_control_plane().unwrap().url(),
        "http://prod:5681"
    );
    let active: Vec<_> = config
        .control_planes()
        .map(|(cp, active)| (cp.name.as_str(), active))
        .collect();
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
    config
        .add_control_plane(ControlPlane::new("local", "http://other:5681"), true)
        .unwrap();
    assert_eq!(config.control_planes.len(), 1);
    assert_eq!(
        config.current_control_plane().unwrap().url(),
        "http://other:5681"
    );
}

#[test]
fn switching_to_an_unknown_name_fails_and_changes_nothing() {
    let mut config = Config::default();
    assert!(matches!(
        config.switch("nope"),
        Err(ConfigError::UnknownControlPlane(_))
    ));
    assert_eq!(config.current_context, "local");
    config
        .add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false)
        .unwrap();
    config.switch("local").unwrap();
    assert_eq!(config.current_context, "local");
}

#[test]
fn removing_the_active_control_plane_leaves_none_active() {
    let mut config = Config::default();
    config
        .add_control_plane(ControlPlane::new("prod", "http://prod:5681"), false)
        .unwrap();
    config.remove_control_plane("prod").unwrap();
    assert_eq!(config.contexts.len(), 1);
    assert_eq!(config.current_context, "");
    assert!(matches!(
        config.current_control_plane(),
        Err(ConfigError::NoActiveControlPlane)
    ));
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

#[test]
fn unknown_fields_are_reported() {
    assert!(Config::from_yaml("controlPlane: []\n").is_err());
}
