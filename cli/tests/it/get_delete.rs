//! `kumactl get` and `kumactl delete`.

use kuma_test_support::KumaCp;
use serde_json::Value;

use crate::support::{must_mask_age, Ctl, REDIS_1};

const DEMO_MESH: &str = "type: Mesh\nname: demo\n";
const ALLOW_ALL: &str = "type: TrafficPermission\nmesh: demo\nname: allow-all\n\
                         sources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n";

#[test]
fn get_of_a_missing_resource_exits_non_zero_naming_it() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);

    let stderr = ctl.run(&["get", "dataplane", "nope"]).must_fail();
    assert_eq!(
        stderr,
        "Error: No resources found in default mesh (Dataplane \"nope\" does not exist)\n"
    );
    let stderr = ctl.run(&["get", "mesh", "nope", "-o", "yaml"]).must_fail();
    assert!(stderr.contains("Mesh \"nope\" does not exist"), "{stderr}");
}

#[test]
fn an_empty_list_prints_just_the_header() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    assert_eq!(ctl.must_run(&["get", "traffic-routes"]), "MESH   NAME   AGE\n");
    assert_eq!(ctl.must_run(&["get", "dataplanes"]), "MESH   NAME   TAGS   AGE\n");
}

#[test]
fn get_meshes_shows_the_default_mesh_with_everything_off() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    assert_eq!(
        must_mask_age(&ctl.must_run(&["get", "meshes"])),
        "NAME      mTLS   METRICS   LOGGING   TRACING   AGE\ndefault   off    off       off       off       <age>\n"
    );
}

#[test]
fn get_takes_plural_singular_and_alias_type_names_in_the_mesh_given_with_m() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(DEMO_MESH);
    ctl.must_apply(ALLOW_ALL);

    for name in ["traffic-permissions", "traffic-permission", "trafficpermissions"] {
        let table = ctl.must_run(&["get", name, "-m", "demo"]);
        assert_eq!(
            must_mask_age(&table),
            "MESH   NAME        AGE\ndemo   allow-all   <age>\n",
            "{name}"
        );
    }
    assert_eq!(ctl.must_run(&["get", "traffic-permissions"]), "MESH   NAME   AGE\n");

    let json: Value = serde_json::from_str(&ctl.must_run(&[
        "--mesh",
        "demo",
        "get",
        "traffic-permission",
        "allow-all",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(json["type"], "TrafficPermission");
    assert_eq!(json["mesh"], "demo");
    assert_eq!(json["sources"][0]["match"]["service"], "*");
    assert!(json["creationTime"].is_string(), "{json}");
}

#[test]
fn get_yaml_of_a_list_prints_total_items_and_next() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);
    let yaml = ctl.must_run(&["get", "dataplanes", "-o", "yaml"]);
    assert!(
        yaml.starts_with("total: 1\nitems:\n- type: Dataplane\n  mesh: default\n  name: redis-1\n"),
        "{yaml}"
    );
    assert!(yaml.ends_with("next: null\n"), "{yaml}");
}

#[test]
fn delete_prints_the_type_and_name_and_a_second_delete_fails() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);

    assert_eq!(
        ctl.must_run(&["delete", "dataplane", "redis-1"]),
        "deleted Dataplane \"redis-1\"\n"
    );

    assert!(ctl.run(&["get", "dataplane", "redis-1"]).must_fail().contains("No resources found"));
    let stderr = ctl.run(&["delete", "dataplane", "redis-1"]).must_fail();
    assert_eq!(stderr, "Error: there is no Dataplane with name \"redis-1\" in mesh \"default\"\n");
}

#[test]
fn delete_works_for_meshes_and_policies() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(DEMO_MESH);
    ctl.must_apply(ALLOW_ALL);

    let out = ctl.must_run(&["delete", "traffic-permission", "allow-all", "-m", "demo"]);
    assert_eq!(out, "deleted TrafficPermission \"allow-all\"\n");
    assert_eq!(ctl.must_run(&["delete", "mesh", "demo"]), "deleted Mesh \"demo\"\n");
    let meshes = ctl.must_run(&["get", "meshes"]);
    assert!(!meshes.contains("demo"), "{meshes}");
}

#[test]
fn get_secrets_lists_the_builtin_mesh_ca_without_its_key() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n",
    );
    let table = kuma_test_support::try_poll_until(std::time::Duration::from_secs(15), || {
        let table = ctl.must_run(&["get", "secrets"]);
        if table.contains("default.ca-builtin-ca-1") {
            Ok(table)
        } else {
            Err(table)
        }
    })
    .expect("the leader generates the CA");
    assert!(table.starts_with("MESH"), "{table}");
    for format in ["yaml", "json"] {
        let out = ctl.must_run(&["get", "secret", "default.ca-builtin-ca-1", "-o", format]);
        assert!(out.contains("default.ca-builtin-ca-1"), "{out}");
        assert!(!out.contains("data") && !out.contains("PRIVATE KEY"), "{out}");
    }
}
