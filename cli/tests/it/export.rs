//! `kumactl export`: a filled control plane exported, applied to an empty 3-peer Raft cluster and
//! exported again gives the same bytes and the same `get` of every type; more than one page of
//! Dataplanes; a viewer's export; a refused token and an unreachable control plane. With
//! `--include-secrets`: the mesh CA and the dataplane token signing keys move with the state (a
//! token of the exported control plane is accepted by the new one), the control plane's own
//! GlobalSecrets stay behind, and a viewer is refused.

use std::time::Duration;

use kuma_test_support::{poll_until, KumaCp, KumaCpCluster};
use serde_json::Value;

use crate::support::{Ctl, CLOSED_URL};

/// How long a fresh cluster may take to elect a leader.
const ELECTION: Duration = Duration::from_secs(10);

/// More than one page of the API's default page size (100).
const DATAPLANES: usize = 130;

/// The mesh-scoped types export writes, as `kumactl get` names them.
const MESH_TYPES: &[&str] = &[
    "dataplanes",
    "traffic-permissions",
    "traffic-routes",
    "health-checks",
    "traffic-traces",
    "traffic-logs",
    "proxytemplates",
];

const MESHES: &str = "type: Mesh
name: demo
mtls:
  enabledBackend: ca-1
  backends:
  - name: ca-1
    type: builtin
---
type: Mesh
name: logs
logging:
  defaultBackend: file
  backends:
  - name: file
    type: file
    format: '{{ format }}'
    conf:
      path: /tmp/kuma-export-test.log
---
type: Mesh
name: empty
";

/// One policy of every type, in `mesh`.
fn policies(mesh: &str) -> String {
    format!(
        "type: TrafficPermission
mesh: {mesh}
name: allow-all
sources:
- match:
    service: '*'
destinations:
- match:
    service: '*'
---
type: TrafficRoute
mesh: {mesh}
name: canary
sources:
- match:
    service: backend
destinations:
- match:
    service: redis
conf:
- weight: 90
  destination:
    service: redis
    version: v1
- weight: 10
  destination:
    service: redis
    version: v2
---
type: HealthCheck
mesh: {mesh}
name: redis-check
sources:
- match:
    service: '*'
destinations:
- match:
    service: redis
conf:
  activeChecks:
    interval: 1s
    timeout: 500ms
    unhealthyThreshold: 2
    healthyThreshold: 1
---
type: TrafficTrace
mesh: {mesh}
name: trace-web
selectors:
- match:
    service: web
---
type: TrafficLog
mesh: {mesh}
name: all
sources:
- match:
    service: '*'
destinations:
- match:
    service: '*'
---
type: ProxyTemplate
mesh: {mesh}
name: default-only
selectors:
- match:
    service: '*'
conf:
  imports:
  - default-proxy
"
    )
}

/// `count` Dataplanes `web-000`... in `mesh`, named so that their order by name is not the
/// order they were written in.
fn dataplanes(mesh: &str, count: usize) -> String {
    (0..count)
        .rev()
        .map(|i| {
            format!(
                "type: Dataplane\nmesh: {mesh}\nname: web-{i:03}\nnetworking:\n  inbound:\n  \
                 - interface: 127.0.0.1:{}:{}\n    tags:\n      service: web\n      \
                 version: v{}\n",
                10000 + i,
                20000 + i,
                i % 3
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// Meshes (one with a builtin CA, one whose log format holds `{{`), every policy type in two
/// meshes, and more than a page of Dataplanes.
fn must_fill(ctl: &Ctl) {
    let meshes = ctl.must_write_file("meshes.yaml", MESHES);
    // `{{ upstream }}` reaches the store as written: a variable's value is not rendered again.
    ctl.must_run(&["apply", "-f", &meshes, "-v", "format=[%START_TIME%] {{ upstream }}"]);
    let rest = [
        policies("default"),
        policies("demo"),
        dataplanes("demo", DATAPLANES),
        dataplanes("default", 2),
    ]
    .join("---\n");
    let file = ctl.must_write_file("rest.yaml", &rest);
    ctl.must_run(&["apply", "-f", &file]);
}

/// `kumactl get TYPE [-m MESH] -o json` without the server's timestamps.
fn must_get(ctl: &Ctl, resource_type: &str, mesh: &str) -> Value {
    let out = ctl.must_run(&["get", resource_type, "--mesh", mesh, "-o", "json"]);
    let mut list: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    for item in list["items"].as_array_mut().expect("a list") {
        let item = item.as_object_mut().expect("an object");
        assert!(item.remove("creationTime").is_some() && item.remove("modificationTime").is_some());
    }
    list
}

/// The `type: X` lines that open documents, in order.
fn document_types(export: &str) -> Vec<String> {
    let mut types = Vec::new();
    let mut starts = true;
    for line in export.lines() {
        if line == "---" {
            starts = true;
        } else if starts && !line.starts_with('#') {
            let t = line.strip_prefix("type: ").or_else(|| {
                line.strip_prefix("{\"type\":\"").and_then(|rest| rest.split('"').next())
            });
            types.push(
                t.unwrap_or_else(|| panic!("a document starts with its type: {line}")).to_string(),
            );
            starts = false;
        }
    }
    types
}

#[test]
fn an_export_applied_to_an_empty_raft_cluster_exports_the_same_bytes_and_gets() {
    let source = KumaCp::must_start();
    let ctl = Ctl::for_cp(&source);
    must_fill(&ctl);

    let state = ctl.must_run(&["export"]);

    let types = document_types(&state);
    assert_eq!(&types[..4], ["Mesh"; 4], "every Mesh first: {types:?}");
    assert!(!types[4..].contains(&"Mesh".to_string()), "{types:?}");
    assert_eq!(types.iter().filter(|t| *t == "Dataplane").count(), DATAPLANES + 2);
    assert_eq!(types.len(), 4 + DATAPLANES + 2 + 2 * 6, "{types:?}");
    assert!(
        state.starts_with("type: Mesh\nname: default\n---\ntype: Mesh\nname: demo\n"),
        "{state}"
    );
    assert!(!state.contains("creationTime") && !state.contains("modificationTime"));
    assert!(!state.contains("{{"), "apply would read {{ as a variable");
    let web_000 = state.find("name: web-000\n").expect("web-000");
    assert!(web_000 < state.find("name: web-001\n").expect("web-001"), "by name");
    assert_eq!(ctl.must_run(&["export", "-o", "yaml"]), state, "the same state, the same bytes");

    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(ELECTION);
    let target = Ctl::for_cp(&cluster.peers[(leader + 1) % 3]);
    let file = target.must_write_file("state.yaml", &state);
    assert_eq!(target.must_run(&["apply", "-f", &file]), "");

    assert_eq!(target.must_run(&["export"]), state);
    assert_eq!(must_get(&target, "meshes", "default"), must_get(&ctl, "meshes", "default"));
    for mesh in ["default", "demo", "logs", "empty"] {
        for resource_type in MESH_TYPES {
            assert_eq!(
                must_get(&target, resource_type, mesh),
                must_get(&ctl, resource_type, mesh),
                "{resource_type} in {mesh}"
            );
        }
    }
    let logs = must_get(&target, "meshes", "default");
    let logs = logs["items"].as_array().unwrap().iter().find(|m| m["name"] == "logs").unwrap();
    assert_eq!(logs["logging"]["backends"][0]["format"], "[%START_TIME%] {{ upstream }}");
    // The restored mesh with a builtin CA gets one from the cluster's leader.
    poll_until(Duration::from_secs(20), "the demo mesh's CA on the new cluster", || {
        let secrets = target.must_run(&["get", "secrets", "--mesh", "demo"]);
        if secrets.contains("demo.ca-builtin-ca-1") {
            Ok(())
        } else {
            Err(secrets)
        }
    });
}

/// Waits until `ctl`'s control plane holds `secret` in `mesh` (the leader makes CAs and signing
/// keys within a second of a mesh needing them).
fn must_wait_for_secret(ctl: &Ctl, mesh: &str, secret: &str) {
    poll_until(Duration::from_secs(20), &format!("the Secret {secret} in {mesh}"), || {
        let secrets = ctl.must_run(&["get", "secrets", "--mesh", mesh]);
        if secrets.contains(secret) {
            Ok(())
        } else {
            Err(secrets)
        }
    });
}

#[test]
fn an_export_with_secrets_moves_the_mesh_ca_and_dataplane_tokens_to_an_empty_raft_cluster() {
    let source = KumaCp::must_start();
    let ctl = Ctl::for_cp(&source);
    let meshes = ctl.must_write_file("meshes.yaml", MESHES);
    ctl.must_run(&["apply", "-f", &meshes, "-v", "format=[%START_TIME%] {{ upstream }}"]);
    ctl.must_apply(&[policies("demo"), dataplanes("demo", 3)].join("---\n"));
    ctl.must_apply(
        "type: GlobalSecret\nname: vault-token\ndata: dmF1bHQ=\n---\ntype: Secret\nmesh: demo\n\
         name: db-password\ndata: aHVudGVyMg==\n",
    );
    must_wait_for_secret(&ctl, "demo", "demo.ca-builtin-ca-1");
    for mesh in ["default", "demo", "logs", "empty"] {
        must_wait_for_secret(&ctl, mesh, &format!("dataplane-token-signing-key-{mesh}-1"));
    }
    let token = source.must_token(r#"{"mesh":"demo","name":"web-000"}"#);
    let own = ctl.must_run(&["get", "global-secrets"]);
    assert!(own.contains("control-plane-ca") && own.contains("user-token-signing-key-1"), "{own}");

    let state = ctl.must_run(&["export", "--include-secrets"]);

    assert!(state.starts_with("# kumactl export --include-secrets: this file holds"), "{state}");
    let types = document_types(&state);
    let secrets = 1 + 4 + 2; // vault-token; a signing key per mesh, demo's CA and db-password
    assert_eq!(&types[..4], ["Mesh"; 4], "every Mesh first: {types:?}");
    assert_eq!(types[4], "GlobalSecret", "{types:?}");
    assert_eq!(&types[5..4 + secrets], ["Secret"; 6], "{types:?}");
    assert_eq!(types[4 + secrets], "Mesh", "the Mesh with mTLS again: {types:?}");
    assert_eq!(types.len(), 4 + secrets + 1 + 3 + 6, "{types:?}");
    let (before_secrets, after) = state.split_at(state.find("type: GlobalSecret").unwrap());
    assert!(!before_secrets.contains("enabledBackend:"), "{before_secrets}");
    assert!(after.contains("enabledBackend: ca-1"), "{after}");
    for left_out in ["control-plane-ca", "user-token-signing-key", "admin-user-token"] {
        assert!(!state.contains(&format!("name: {left_out}")), "{left_out} is left out");
    }
    assert!(state.contains("name: vault-token\ndata: dmF1bHQ=\n"), "{state}");
    assert!(state.contains("name: db-password\ndata: aHVudGVyMg==\n"), "{state}");
    assert_eq!(ctl.must_run(&["export", "--include-secrets"]), state, "the same bytes again");
    let log = source.log();
    let reads: Vec<&str> = log.lines().filter(|l| l.contains("read secret contents")).collect();
    assert!(
        reads.iter().any(|l| l.contains("localhost") && l.contains("GlobalSecret")),
        "who read secret contents is logged: {reads:?}"
    );

    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(ELECTION);
    let peer = &cluster.peers[(leader + 1) % 3];
    let target = Ctl::for_cp(peer);
    let file = target.must_write_file("state.yaml", &state);
    assert_eq!(target.must_run(&["apply", "-f", &file]), "");

    // The same mesh CA (its Secret's bytes), the same signing keys, the same everything.
    assert_eq!(target.must_run(&["export", "--include-secrets"]), state);
    for p in &cluster.peers {
        assert!(
            !p.log().contains("generated the mesh's builtin CA"),
            "a CA of its own:\n{}",
            p.log()
        );
    }
    // A dataplane token issued by the exported control plane is accepted by the new one.
    let body = format!(r#"{{"mesh":"demo","name":"web-000","dataplaneToken":"{token}"}}"#);
    poll_until(
        Duration::from_secs(20),
        "the exported control plane's token accepted",
        || match peer.bootstrap_request(&body) {
            Ok(reply) if reply.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // The new control plane keeps its own user token machinery.
    let target_own = target.must_run(&["get", "global-secrets"]);
    assert!(target_own.contains("admin-user-token"), "{target_own}");
}

#[test]
fn a_viewer_exports_the_same_as_an_admin_and_a_refused_token_writes_nothing() {
    let cp = KumaCp::must_start();
    let admin = Ctl::for_cp(&cp);
    admin.must_apply(&policies("default"));
    admin.must_apply(&dataplanes("default", 3));
    let state = admin.must_run(&["export"]);
    let token = admin.must_run(&[
        "generate",
        "user-token",
        "--name",
        "auditor",
        "--group",
        "auditors",
        "--valid-for",
        "1h",
    ]);

    let viewer = Ctl::new();
    viewer.must_run(&[
        "config",
        "control-planes",
        "add",
        "--name",
        "cp",
        "--address",
        &cp.api_url(),
        "--auth-type",
        "tokens",
        "--auth-conf",
        &format!("token={}", token.trim()),
    ]);
    let refused = viewer.run_with_stdin(&["apply", "-f", "-"], &dataplanes("default", 1));
    assert!(refused.must_fail().contains("may only read"), "the token is a viewer's");
    assert_eq!(viewer.must_run(&["export"]), state);
    let run = viewer.run(&["export", "--include-secrets"]);
    assert_eq!(run.stdout, "", "nothing is written");
    let stderr = run.must_fail();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: --include-secrets needs an admin, so nothing was exported: ")
            && stderr.contains("auditor may not read secret contents")
            && stderr.contains("mesh-system:admin"),
        "{stderr}"
    );

    let config = std::fs::read_to_string(viewer.config_path()).unwrap();
    std::fs::write(viewer.config_path(), config.replace(token.trim(), "not-a-token")).unwrap();
    let run = viewer.run(&["export"]);
    assert_eq!(run.stdout, "", "nothing is written");
    let stderr = run.must_fail();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("Error: could not list the Meshes, so nothing was exported: ")
            && stderr.contains("user token is not valid"),
        "{stderr}"
    );
}

#[test]
fn an_unreachable_control_plane_is_one_line_naming_it_and_nothing_is_written() {
    let ctl = Ctl::for_url(CLOSED_URL);

    let run = ctl.run(&["export"]);

    assert_eq!(run.stdout, "");
    let stderr = run.must_fail();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("could not list the Meshes, so nothing was exported")
            && stderr
                .contains("could not reach the Control Plane API Server at http://127.0.0.1:1/")
            && stderr.contains("check that kuma-cp is running there"),
        "{stderr}"
    );
}

/// The API never shows a provided CA's inline key, so such a Mesh cannot be restored from an
/// export: export says so rather than write a file that apply refuses.
#[test]
fn a_mesh_with_an_inline_ca_key_is_refused_naming_it_and_nothing_is_written() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let certs = tempfile::tempdir().unwrap();
    let dir = certs.path().to_str().unwrap();
    let out = std::process::Command::new(kuma_test_support::bin_path("kuma-cp"))
        .args(["raft", "certs", "--dir", dir, "--ids", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let indent = |file: &str| {
        let pem = std::fs::read_to_string(certs.path().join(file)).unwrap();
        pem.lines().map(|l| format!("          {l}\n")).collect::<String>()
    };
    ctl.must_apply(&format!(
        "type: Mesh\nname: prod\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    \
         type: provided\n    conf:\n      cert:\n        inline: |\n{}      key:\n        \
         inline: |\n{}",
        indent("ca.crt"),
        indent("ca.key")
    ));

    let run = ctl.run(&["export"]);

    assert_eq!(run.stdout, "");
    let stderr = run.must_fail();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(
            "Error: Mesh \"prod\" cannot be exported: the key of its provided CA backend \"ca-1\""
        ) && stderr.contains("conf.key.file or conf.key.secret"),
        "{stderr}"
    );
}

/// `kumactl get ... | head` exits 0 when head closes the pipe; an export cut short must not.
#[test]
fn an_export_into_a_closed_pipe_fails() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    ctl.must_apply(&dataplanes("default", 3));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_kumactl"))
        .arg("--config-file")
        .arg(ctl.config_path())
        .arg("export")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Closed before kumactl has read anything from the control plane, so before it writes.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("Error: could not write the export, so what was written is incomplete")
            && stderr.contains("Broken pipe"),
        "{stderr}"
    );
}
