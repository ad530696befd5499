//! End to end with a real Prometheus: three kuma-cp peers (Raft), a mesh with a prometheus
//! metrics backend, two dataplanes each a real kuma-dp and Envoy, kuma-prometheus-sd following
//! the peers' MADS, and Prometheus reading its file (plus kuma-cp's own /metrics as a static
//! target). Both dataplanes' Envoy series arrive with their mesh and service labels; when the
//! peer kuma-prometheus-sd follows is killed it follows another and keeps the file; a deleted
//! Dataplane leaves the file and Prometheus's targets.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use kuma_test_support::{
    bin_path, envoy_path, free_port, http_request, try_poll_until, KumaCp, KumaCpCluster, Proc,
    Prometheus,
};
use serde_json::Value;

const CONVERGE: Duration = Duration::from_secs(60);

/// `PUT`s `json` at `path` of the API on `api_port` until it is taken (the cluster may still elect).
fn must_put(api_port: u16, path: &str, json: &str) {
    try_poll_until(CONVERGE, || match http_request(api_port, "PUT", path, Some(json)) {
        Ok(r) if r.status == 200 || r.status == 201 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
}

fn dataplane_json(name: &str, ip: &str) -> String {
    format!(
        r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"address":"{ip}","inbound":[{{"port":{},"servicePort":{},"tags":{{"kuma.io/service":"web","version":"v1"}}}}]}}}}"#,
        free_port(),
        free_port()
    )
}

/// A kuma-dp for `name`, as a user runs it, bootstrapping from `bootstrap` (comma-separated).
fn kuma_dp(cp: &KumaCp, name: &str, bootstrap: &str, dir: &Path) -> Proc {
    let mut env = cp.must_kuma_dp_env("default", name);
    env.retain(|(k, _)| k != "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL");
    env.push(("KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL".into(), bootstrap.to_string()));
    env.push(("KUMA_DATAPLANE_ADMIN_PORT".into(), free_port().to_string()));
    env.push(("KUMA_CONTROL_PLANE_RETRY_BACKOFF".into(), "200ms".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let envoy = envoy_path();
    let config_dir = dir.join(name);
    std::fs::create_dir_all(&config_dir).unwrap();
    Proc::spawn(
        &bin_path("kuma-dp"),
        &[
            "run",
            "--binary-path",
            envoy.to_str().unwrap(),
            "--config-dir",
            config_dir.to_str().unwrap(),
        ],
        &env,
    )
}

/// The dataplanes named in the file_sd file, when it parses.
fn file_dataplanes(path: &Path) -> Result<BTreeSet<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let groups: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
    Ok(groups
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["labels"]["dataplane"].as_str().map(str::to_string))
        .collect())
}

/// The dataplanes Prometheus has `envoy_server_live` from, with mesh default and service web.
fn scraped_dataplanes(prometheus: &Prometheus) -> Result<BTreeSet<String>, String> {
    let series = prometheus.query(r#"envoy_server_live{mesh="default",service="web"}"#)?;
    Ok(series
        .iter()
        .filter_map(|s| s["metric"]["dataplane"].as_str().map(str::to_string))
        .collect())
}

/// The dataplanes among Prometheus's active targets.
fn target_dataplanes(prometheus: &Prometheus) -> Result<BTreeSet<String>, String> {
    Ok(prometheus
        .active_targets()?
        .iter()
        .filter_map(|t| t["labels"]["dataplane"].as_str().map(str::to_string))
        .collect())
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[test]
fn prometheus_scrapes_every_dataplane_kuma_prometheus_sd_finds_and_drops_a_deleted_one() {
    let mads_ports = Mutex::new(Vec::new());
    let mut cluster = KumaCpCluster::must_start_with(3, |builder| {
        let port = free_port();
        mads_ports.lock().unwrap().push(port);
        builder.env("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", &port.to_string())
    });
    let mads_ports = mads_ports.into_inner().unwrap();
    cluster.must_wait_for_leader(CONVERGE);
    let metrics_port = free_port();
    let writer = cluster.peers[1].api_port;
    must_put(
        writer,
        "/meshes/default",
        &format!(
            r#"{{"type":"Mesh","name":"default","metrics":{{"enabledBackend":"prometheus-1","backends":[{{"name":"prometheus-1","type":"prometheus","conf":{{"port":{metrics_port},"path":"/metrics"}}}}]}}}}"#
        ),
    );
    must_put(writer, "/meshes/default/dataplanes/web-1", &dataplane_json("web-1", "127.0.0.2"));
    must_put(writer, "/meshes/default/dataplanes/web-2", &dataplane_json("web-2", "127.0.0.3"));

    let dir = tempfile::tempdir().unwrap();
    let bootstrap =
        format!("{},{}", cluster.peers[1].bootstrap_url(), cluster.peers[2].bootstrap_url());
    let _web1 = kuma_dp(&cluster.peers[1], "web-1", &bootstrap, dir.path());
    let web2 = kuma_dp(&cluster.peers[1], "web-2", &bootstrap, dir.path());

    // kuma-prometheus-sd with an operator's viewer token, following peer 0 first.
    let token = try_poll_until(CONVERGE, || {
        match http_request(
            writer,
            "POST",
            "/tokens/user",
            Some(r#"{"name":"prometheus","groups":["mesh-system:viewer"],"validFor":"1h"}"#),
        ) {
            Ok(r) if r.status == 200 => Ok(r.body),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("a viewer token");
    let token_file = dir.path().join("viewer.token");
    std::fs::write(&token_file, token).unwrap();
    let output = dir.path().join("kuma.file_sd.json");
    let addresses =
        mads_ports.iter().map(|p| format!("grpc://127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let sd = Proc::spawn(
        &bin_path("kuma-prometheus-sd"),
        &["run", "--output-file", output.to_str().unwrap()],
        &[
            ("KUMA_MONITORING_ASSIGNMENT_CLIENT_URL", addresses.as_str()),
            ("KUMA_MONITORING_ASSIGNMENT_CLIENT_AUTH_TOKEN_FILE", token_file.to_str().unwrap()),
        ],
    );

    let diagnostics = cluster
        .peers
        .iter()
        .map(|p| format!("'127.0.0.1:{}'", p.diagnostics_port))
        .collect::<Vec<_>>()
        .join(", ");
    let config = [
        "global:".to_string(),
        "  scrape_interval: 1s".to_string(),
        "  scrape_timeout: 1s".to_string(),
        "scrape_configs:".to_string(),
        "- job_name: kuma-dataplanes".to_string(),
        "  file_sd_configs:".to_string(),
        format!("  - files: ['{}']", output.display()),
        "    refresh_interval: 1s".to_string(),
        "- job_name: kuma-cp".to_string(),
        "  static_configs:".to_string(),
        format!("  - targets: [{diagnostics}]"),
    ];
    let prometheus = Prometheus::must_start(&(config.join("\n") + "\n"));

    let both = set(&["web-1", "web-2"]);
    try_poll_until(CONVERGE, || match scraped_dataplanes(&prometheus) {
        Ok(seen) if seen == both => Ok(()),
        other => Err(other),
    })
    .unwrap_or_else(|e| {
        panic!(
            "Prometheus has no Envoy series of both dataplanes ({e:?}); file: {:?}\nsd:\n{}\nweb-2:\n{}\nprometheus:\n{}",
            std::fs::read_to_string(&output),
            sd.log(),
            web2.log(),
            prometheus.log()
        )
    });
    // The labels kuma-prometheus-sd gives: the tags too, as Prometheus label names.
    let series = prometheus.query(r#"envoy_server_live{dataplane="web-1"}"#).unwrap();
    let labels = &series[0]["metric"];
    assert_eq!(labels["kuma_io_service"], "web", "{labels}");
    assert_eq!(labels["version"], "v1", "{labels}");
    assert_eq!(labels["job"], "web", "{labels}");
    assert_eq!(labels["instance"], "web-1", "{labels}");

    // kuma-cp's own metrics, from the same Prometheus.
    for query in [r#"raft_term{job="kuma-cp"}"#, r#"xds_streams_active{job="kuma-cp"}"#] {
        try_poll_until(CONVERGE, || match prometheus.query(query) {
            Ok(series) if !series.is_empty() => Ok(()),
            other => Err(other),
        })
        .unwrap_or_else(|e| panic!("no {query} in Prometheus: {e:?}"));
    }

    // The peer it follows dies: it follows the next, whose answer leaves the file as it is.
    let peer_of = |port: u16| format!("peer=grpc://127.0.0.1:{port}");
    let log = sd.log();
    let followed = log
        .lines()
        .rev()
        .find(|l| l.contains("following the control plane"))
        .and_then(|l| mads_ports.iter().position(|p| l.contains(&peer_of(*p))))
        .unwrap_or_else(|| panic!("kuma-prometheus-sd names the peer it follows:\n{log}"));
    let next = (followed + 1) % mads_ports.len();
    let unchanged_from = |log: &str, port: u16| {
        log.lines()
            .filter(|l| l.contains("targets unchanged") && l.contains(&peer_of(port)))
            .count()
    };
    let written = |log: &str| log.matches("file_sd targets written").count();
    let (writes_before, unchanged_before) = (written(&log), unchanged_from(&log, mads_ports[next]));
    let modified = std::fs::metadata(&output).unwrap().modified().unwrap();
    cluster.peers[followed].must_stop_with("KILL");
    assert_eq!(file_dataplanes(&output).unwrap(), both);
    try_poll_until(CONVERGE, || {
        let log = sd.log();
        match unchanged_from(&log, mads_ports[next]) > unchanged_before {
            true => Ok(()),
            false => Err(log),
        }
    })
    .unwrap_or_else(|log| panic!("kuma-prometheus-sd did not follow peer {next}:\n{log}"));
    assert_eq!(written(&sd.log()), writes_before, "{}", sd.log());
    assert_eq!(std::fs::metadata(&output).unwrap().modified().unwrap(), modified);
    let writer = cluster.peers[next].api_port;

    // A deleted Dataplane leaves the file and Prometheus's targets.
    drop(web2);
    try_poll_until(CONVERGE, || {
        match http_request(writer, "DELETE", "/meshes/default/dataplanes/web-2", None) {
            Ok(r) if r.status == 200 || r.status == 404 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .expect("the Dataplane is deleted");
    let one = set(&["web-1"]);
    try_poll_until(CONVERGE, || match file_dataplanes(&output) {
        Ok(seen) if seen == one => Ok(()),
        other => Err(other),
    })
    .unwrap_or_else(|e| panic!("web-2 stays in the file ({e:?}); sd:\n{}", sd.log()));
    try_poll_until(CONVERGE, || match target_dataplanes(&prometheus) {
        Ok(seen) if seen == one => Ok(()),
        other => Err(other),
    })
    .unwrap_or_else(|e| panic!("web-2 stays among Prometheus's targets: {e:?}"));
}

#[test]
fn a_forged_token_is_refused_in_one_line() {
    let port = free_port();
    let cp = KumaCp::builder()
        .env("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", &port.to_string())
        .must_start();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("forged.token");
    std::fs::write(&token, "not-a-token").unwrap();
    let out = dir.path().join("f.json");
    let output = std::process::Command::new(bin_path("kuma-prometheus-sd"))
        .args(["run", "--cp-address", &format!("grpc://127.0.0.1:{port}")])
        .args([
            "--output-file",
            out.to_str().unwrap(),
            "--auth-token-file",
            token.to_str().unwrap(),
        ])
        .env_clear()
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.contains("refused") && last.contains("--auth-token-file"), "{stderr}");
    drop(cp);
}

#[test]
fn with_the_operators_api_certificate_mads_is_tls_and_grpcs_follows_it() {
    let dir = tempfile::tempdir().unwrap();
    let ca = kuma_ca::ControlPlaneCa::generate().unwrap();
    let issued = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let (ca_file, cert, key) = (
        write("ca.crt", ca.cert_pem()),
        write("api.crt", &issued.cert_pem),
        write("api.key", &issued.key_pem),
    );
    let port = free_port();
    let cp = KumaCp::builder()
        .env("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", &port.to_string())
        .env("KUMA_API_SERVER_HTTPS_TLS_CERT_FILE", &cert)
        .env("KUMA_API_SERVER_HTTPS_TLS_KEY_FILE", &key)
        .must_start();
    must_put(
        cp.api_port,
        "/meshes/default",
        r#"{"type":"Mesh","name":"default","metrics":{"prometheus":{"port":1234}}}"#,
    );
    must_put(
        cp.api_port,
        "/meshes/default/dataplanes/web-1",
        &dataplane_json("web-1", "127.0.0.2"),
    );
    let output = dir.path().join("kuma.file_sd.json");
    let _sd = Proc::spawn(
        &bin_path("kuma-prometheus-sd"),
        &[
            "run",
            "--cp-address",
            &format!("grpcs://127.0.0.1:{port}"),
            "--ca-cert-file",
            &ca_file,
            "--output-file",
            output.to_str().unwrap(),
        ],
        &[],
    );
    try_poll_until(CONVERGE, || match file_dataplanes(&output) {
        Ok(seen) if seen == set(&["web-1"]) => Ok(()),
        other => Err(other),
    })
    .expect("the target arrives over TLS");
    let text = std::fs::read_to_string(&output).unwrap();
    assert!(text.contains("127.0.0.2:1234"), "{text}");
    // Plain gRPC gets nothing from a TLS port.
    let plain = std::process::Command::new(bin_path("kuma-prometheus-sd"))
        .args([
            "run",
            "--cp-address",
            &format!("grpc://127.0.0.1:{port}"),
            "--startup-timeout",
            "2s",
        ])
        .args(["--output-file", dir.path().join("plain.json").to_str().unwrap()])
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(plain.status.code(), Some(1), "{}", String::from_utf8_lossy(&plain.stderr));
}
