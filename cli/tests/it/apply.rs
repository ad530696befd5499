//! `kumactl apply`: sources (stdin, file, URL), variables, dry runs, validation errors, and
//! re-applying what `get` printed.

use kuma_test_support::KumaCp;
use serde_json::Value;

use crate::support::{must_serve, Ctl, CLOSED_URL, REDIS_1};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn apply_reads_a_resource_from_an_http_url() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let server = must_serve(200, "application/x-yaml", REDIS_1.to_string());

    let out = ctl.must_run(&["apply", "-f", &format!("{server}/redis-1.yaml")]);

    assert_eq!(out, "");
    let dp = json(&ctl.must_run(&["get", "dataplane", "redis-1", "-o", "json"]));
    assert_eq!(dp["networking"]["inbound"][0]["interface"], "127.0.0.1:9000:6379");
}

#[test]
fn apply_from_a_url_that_answers_an_error_names_the_url_and_status() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let server = must_serve(404, "text/plain", "no such file".to_string());
    let url = format!("{server}/missing.yaml");

    let stderr = ctl.run(&["apply", "-f", &url]).must_fail();

    assert!(stderr.contains(&url) && stderr.contains("404"), "{stderr}");
}

#[test]
fn apply_fills_in_variables_given_with_v() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let file = ctl.must_write_file(
        "dp.yaml",
        "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  inbound:\n  \
         - interface: 127.0.0.1:{{port}}:80\n    tags:\n      service: {{ service.name }}\n",
    );

    ctl.must_run(&[
        "apply",
        "-f",
        &file,
        "-v",
        "name=web-1",
        "-v",
        "port=8080",
        "-v",
        "service.name=web",
    ]);

    let dp = json(&ctl.must_run(&["get", "dataplane", "web-1", "-o", "json"]));
    assert_eq!(dp["networking"]["inbound"][0]["interface"], "127.0.0.1:8080:80");
    assert_eq!(dp["networking"]["inbound"][0]["tags"]["service"], "web");
}

#[test]
fn a_variable_used_but_not_given_is_an_error_naming_it_and_nothing_is_applied() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let yaml = "type: Mesh\nname: {{ meshName }}\n";

    let stderr = ctl.run_with_stdin(&["apply", "-f", "-"], yaml).must_fail();

    assert!(stderr.contains("\"meshName\"") && stderr.contains("meshName=VALUE"), "{stderr}");
    assert!(stderr.contains("kumactl apply -v"), "{stderr}");
    let meshes = json(&ctl.must_run(&["get", "meshes", "-o", "json"]));
    assert_eq!(meshes["items"].as_array().map(Vec::len), Some(1), "{meshes}");
}

#[test]
fn dry_run_prints_the_resolved_yaml_and_sends_nothing() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let yaml = "type: Mesh\nname: {{ name }}\n---\ntype: TrafficPermission\nmesh: {{ name }}\n\
                name: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n";

    let out = ctl
        .run_with_stdin(&["apply", "-f", "-", "--dry-run", "-v", "name=demo"], yaml)
        .must_succeed();

    assert_eq!(
        out,
        "type: Mesh\nname: demo\n---\ntype: TrafficPermission\nmesh: demo\nname: allow-all\n\
         sources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n"
    );
    let stderr = ctl.run(&["get", "mesh", "demo"]).must_fail();
    assert!(stderr.contains("No resources found"), "{stderr}");
}

#[test]
fn dry_run_needs_no_control_plane() {
    let ctl = Ctl::for_url(CLOSED_URL);
    let out = ctl.run_with_stdin(&["apply", "-f", "-", "--dry-run"], REDIS_1).must_succeed();
    assert_eq!(out, REDIS_1);
}

#[test]
fn an_invalid_dataplane_prints_each_violation_and_exits_non_zero() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let yaml = "type: Dataplane\nmesh: default\nname: redis-1\nnetworking:\n  inbound:\n  \
                - interface: 127.0.0.1:9000:6379\n    tags:\n      version: v1\n";

    let stderr = ctl.run_with_stdin(&["apply", "-f", "-"], yaml).must_fail();

    assert_eq!(
        stderr,
        "Error: Could not process a resource (Resource is not valid)\n\
         * networking.inbound[0].tags[\"service\"]: tag has to exist\n"
    );
}

#[test]
fn a_malformed_resource_is_reported_before_anything_is_sent() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let yaml = format!(
        "{REDIS_1}---\ntype: Dataplane\nname: no-mesh\nnetworking:\n  inbound:\n  - interfac: x\n"
    );

    let stderr = ctl.run_with_stdin(&["apply", "-f", "-"], &yaml).must_fail();

    assert!(
        stderr.starts_with(
            "Error: Could not process a resource (Resource in document 2 is not valid)\n"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("* mesh: field is required"), "{stderr}");
    assert!(stderr.contains("* networking.inbound[0].interfac: unknown field"), "{stderr}");
    assert!(ctl.run(&["get", "dataplane", "redis-1"]).must_fail().contains("No resources found"));
}

#[test]
fn what_get_prints_as_yaml_applies_back_cleanly() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(REDIS_1);

    let one = ctl.must_run(&["get", "dataplane", "redis-1", "-o", "yaml"]);
    assert!(one.contains("creationTime:") && one.contains("modificationTime:"), "{one}");
    let all = ctl.must_run(&["get", "dataplanes", "-o", "yaml"]);
    let mesh = ctl.must_run(&["get", "mesh", "default", "-o", "yaml"]);

    ctl.must_run(&["apply", "-f", &ctl.must_write_file("one.yaml", &one)]);
    ctl.must_run(&["apply", "-f", &ctl.must_write_file("all.yaml", &all)]);
    ctl.must_run(&["apply", "-f", &ctl.must_write_file("mesh.yaml", &mesh)]);

    let after = json(&ctl.must_run(&["get", "dataplane", "redis-1", "-o", "json"]));
    assert_eq!(after["networking"]["inbound"][0]["tags"]["service"], "redis");
}

#[test]
fn lists_longer_than_a_page_are_followed_to_the_end() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let count = 105;
    let yaml: String = (0..count)
        .map(|i| {
            format!(
                "---\ntype: Dataplane\nmesh: default\nname: dp-{i:03}\nnetworking:\n  inbound:\n  \
                 - interface: 127.0.0.1:{}:80\n    tags:\n      service: web\n",
                20000 + i
            )
        })
        .collect();
    ctl.must_apply(&yaml);

    let list = json(&ctl.must_run(&["get", "dataplanes", "-o", "json"]));
    assert_eq!(list["items"].as_array().map(Vec::len), Some(count));
    assert_eq!(list["total"], count);
    assert_eq!(list["next"], Value::Null);
    let table = ctl.must_run(&["get", "dataplanes"]);
    assert_eq!(table.lines().count(), count + 1, "{table}");
    let inspect = ctl.must_run(&["inspect", "dataplanes"]);
    assert_eq!(inspect.lines().count(), count + 1, "{inspect}");
    // The tag filter holds on every page, not just the first.
    ctl.must_apply(REDIS_1);
    let web = ctl.must_run(&["inspect", "dataplanes", "--tag", "service=web"]);
    assert_eq!(web.lines().count(), count + 1, "{web}");
    let redis = ctl.must_run(&["inspect", "dataplanes", "--tag", "service=redis"]);
    assert_eq!(redis.lines().count(), 2, "{redis}");

    let page = json(&ctl.must_run(&["get", "dataplanes", "-o", "json", "--size", "10"]));
    assert_eq!(page["items"].as_array().map(Vec::len), Some(10));
    assert_eq!(page["total"], count + 1);
    assert!(page["next"].is_string(), "{page}");
    let paged = ctl.must_run(&["get", "dataplanes", "--size", "10"]);
    assert!(paged.contains("Rerun command with --offset="), "{paged}");
}

#[test]
fn when_the_api_refuses_one_of_several_resources_the_error_says_which_and_what_was_applied() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let yaml = format!(
        "{REDIS_1}---\ntype: Dataplane\nmesh: default\nname: bad\nnetworking:\n  inbound:\n  \
         - interface: 127.0.0.1:9000:6379\n    tags:\n      version: v1\n"
    );

    let stderr = ctl.run_with_stdin(&["apply", "-f", "-"], &yaml).must_fail();

    assert_eq!(
        stderr,
        "Error: could not apply Dataplane default/bad, resource 2 of 2 (the resources before it \
         were applied, the ones after it were not): Could not process a resource (Resource is \
         not valid)\n\
         * networking.inbound[0].tags[\"service\"]: tag has to exist\n"
    );
    ctl.must_run(&["get", "dataplane", "redis-1"]);
}
