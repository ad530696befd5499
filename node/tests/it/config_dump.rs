//! A dataplane's Envoy config from any peer: one real dataplane (kuma-dp and Envoy) is connected
//! to one of three Raft peers, and every peer answers `GET /meshes/default/dataplanes/NAME/xds`
//! with the same config dump, the two without its stream by forwarding to the one with it.
//! Loopback is not admin here (`KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN=false`), so a forwarded
//! request is accepted only because it carries the caller's own token.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use kuma_test_support::{
    bin_path, envoy_path, free_port, http_get, http_request_as, try_poll_until, EchoServer, KumaCp,
    KumaCpCluster, Proc,
};
use serde_json::Value;

use crate::support::{dataplane, spawn_kuma_dp, Kumactl};

const CONVERGE: Duration = Duration::from_secs(30);

fn call(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let reply = http_request_as(port, method, path, body, token).expect("the API answers");
    (reply.status, reply.body)
}

fn admin_token(port: u16) -> String {
    try_poll_until(CONVERGE, || match call(port, "GET", "/tokens/admin", None, None) {
        (200, token) => Ok(token.trim().to_string()),
        other => Err(other),
    })
    .expect("the admin token")
}

/// A kuma-dp for `name` with a token issued by an admin, reaching the cluster through peer 0's
/// bootstrap server (Envoy's ADS cluster lists every peer, so it may connect to any of them).
fn must_spawn_sidecar(
    cluster: &KumaCpCluster,
    admin: &str,
    name: &str,
    admin_port: u16,
    dir: &Path,
) -> Proc {
    let request = format!(r#"{{"mesh":"default","name":"{name}"}}"#);
    let api = cluster.peers[0].api_port;
    let token = try_poll_until(CONVERGE, || {
        match call(api, "POST", "/tokens/dataplane", Some(&request), Some(admin)) {
            (200, token) => Ok(token.trim().to_string()),
            other => Err(other),
        }
    })
    .expect("a dataplane token");
    let token_file = dir.join("token");
    std::fs::write(&token_file, token).unwrap();
    let ca = cluster.peers[0].must_ca_file();
    let args = [
        "run".to_string(),
        format!("--binary-path={}", envoy_path().display()),
        format!("--config-dir={}", dir.display()),
        format!("--ca-cert-file={}", ca.display()),
        format!("--bootstrap-server-url={}", cluster.peers[0].bootstrap_url()),
        format!("--dataplane-token-file={}", token_file.display()),
        format!("--name={name}"),
        "--mesh=default".to_string(),
        format!("--admin-port={admin_port}"),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(&bin_path("kuma-dp"), &args, &[])
}

/// The index of the peer whose open subscription the dataplane has (its instance id ends with
/// the peer's xDS port).
fn holder(cluster: &KumaCpCluster, admin: &str, name: &str) -> Result<usize, String> {
    let path = format!("/meshes/default/dataplanes+insights/{name}");
    let (_, body) = call(cluster.peers[0].api_port, "GET", &path, None, Some(admin));
    let body: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let open: Vec<&str> = body["dataplaneInsight"]["subscriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["disconnectTime"].is_null() && !s["connectTime"].is_null())
        .filter_map(|s| s["controlPlaneInstanceId"].as_str())
        .collect();
    let [id] = open[..] else { return Err(format!("not one open subscription: {body}")) };
    let port: u16 = id.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).ok_or(id.to_string())?;
    cluster.peers.iter().position(|p| p.xds_port == port).ok_or(format!("no peer serves {id}"))
}

/// The names of the dynamic listeners of a config dump.
fn listener_names(dump: &Value) -> BTreeSet<String> {
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.ListenersConfigDump")
        .flat_map(|c| c["dynamic_listeners"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l["name"].as_str().map(str::to_string))
        .collect()
}

fn details(body: &str) -> String {
    let error: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("an error body: {body}"));
    error["details"].as_str().unwrap_or_default().to_string()
}

#[test]
fn every_peer_answers_a_dataplanes_config_dump_the_others_by_forwarding_to_its_peer() {
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN", "false")
            .env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    cluster.must_wait_for_leader(CONVERGE);
    let admin = admin_token(cluster.peers[0].api_port);
    let api = cluster.peers[0].api_port;
    let echo = EchoServer::start("a:");
    let inbound = free_port();
    let put = |name: &str, inbound: &str| {
        let body = dataplane(name, inbound, "redis", None);
        let path = format!("/meshes/default/dataplanes/{name}");
        let (code, reply) = call(api, "PUT", &path, Some(&body), Some(&admin));
        assert!(code == 201 || code == 200, "PUT {name}: {code} {reply}");
    };
    put("redis-1", &format!("127.0.0.1:{inbound}:{}", echo.port));
    put("web-1", &format!("127.0.0.1:{}:8080", free_port()));

    let dir = tempfile::tempdir().unwrap();
    let envoy_admin = free_port();
    let sidecar = must_spawn_sidecar(&cluster, &admin, "redis-1", envoy_admin, dir.path());
    let holder = try_poll_until(CONVERGE, || holder(&cluster, &admin, "redis-1"))
        .unwrap_or_else(|e| panic!("redis-1 connects ({e}):\n{}", sidecar.log()));
    // Envoy applied the config: its own dump has the inbound listener.
    let inbound_listener = format!("inbound:127.0.0.1:{inbound}");
    let envoys = try_poll_until(CONVERGE, || {
        let dump = http_get(envoy_admin, "/config_dump").map_err(|e| e.to_string())?;
        let dump: Value = serde_json::from_str(&dump.body).map_err(|e| e.to_string())?;
        let names = listener_names(&dump);
        if names.contains(&inbound_listener) {
            Ok(names)
        } else {
            Err(format!("{names:?}"))
        }
    })
    .unwrap_or_else(|e| panic!("Envoy has no {inbound_listener} ({e}):\n{}", sidecar.log()));

    // Every peer answers the same dump: the one the holder generated for the stream.
    let path = "/meshes/default/dataplanes/redis-1/xds";
    let dumps: Vec<Value> = cluster
        .peers
        .iter()
        .map(|peer| {
            let started = Instant::now();
            let (code, body) = call(peer.api_port, "GET", path, None, Some(&admin));
            assert_eq!(code, 200, "peer {} answers: {body}", peer.api_port);
            eprintln!("peer {} answered in {:?}", peer.api_port, started.elapsed());
            serde_json::from_str(&body).unwrap()
        })
        .collect();
    assert_eq!(dumps[0], dumps[1]);
    assert_eq!(dumps[1], dumps[2]);
    assert_eq!(listener_names(&dumps[0]), envoys, "the listeners Envoy has");
    let text = dumps[0].to_string();
    assert!(!text.contains("PRIVATE KEY"), "no private key leaves the control plane");

    // kumactl, over HTTPS with the admin's token, against a peer without the stream.
    let other = (holder + 1) % 3;
    let ca = cluster.peers[other].must_ca_file();
    let ctl = Kumactl::new();
    let token_conf = format!("token={admin}");
    ctl.must_add(
        &format!("https://127.0.0.1:{}", cluster.peers[other].https_port),
        &[
            "--ca-cert-file",
            ca.to_str().unwrap(),
            "--auth-type",
            "tokens",
            "--auth-conf",
            &token_conf,
        ],
    );
    let printed = ctl.must_succeed(&["inspect", "dataplane", "redis-1", "--config-dump"], "");
    let printed: Value = serde_json::from_str(&printed).expect("kumactl prints the dump as JSON");
    assert_eq!(printed, dumps[0]);

    // A dataplane that never connected, and one that does not exist.
    let (code, body) = call(
        cluster.peers[other].api_port,
        "GET",
        "/meshes/default/dataplanes/web-1/xds",
        None,
        Some(&admin),
    );
    assert_eq!(code, 404, "{body}");
    assert!(
        details(&body).contains("dataplane default/web-1 is not connected to any control plane"),
        "{body}"
    );
    let err = ctl.must_fail(&["inspect", "dataplane", "web-1", "--config-dump"], "");
    assert!(err.contains("dataplane default/web-1 is not connected to any control plane"), "{err}");
    let err = ctl.must_fail(&["inspect", "dataplane", "nobody", "--config-dump"], "");
    assert!(err.contains("nobody"), "{err}");

    // A viewer is refused on every peer, and so is a request without credentials.
    let body = r#"{"name":"bob","groups":["mesh-system:viewer"],"validFor":"1h"}"#;
    let (code, viewer) = call(api, "POST", "/tokens/user", Some(body), Some(&admin));
    assert_eq!(code, 200, "{viewer}");
    for peer in &cluster.peers {
        let (code, body) = call(peer.api_port, "GET", path, None, Some(viewer.trim()));
        assert_eq!(code, 403, "{body}");
        assert!(details(&body).contains("bob may not see"), "{body}");
        assert_eq!(call(peer.api_port, "GET", path, None, None).0, 401);
    }

    // The holder stops answering: a peer without the stream says so within seconds, naming it.
    let holder_id = format!(":{}", cluster.peers[holder].xds_port);
    cluster.peers[holder].signal("STOP");
    let started = Instant::now();
    let (code, body) = call(
        cluster.peers[other].api_port,
        "GET",
        &format!("{path}?consistency=stale"),
        None,
        Some(&admin),
    );
    let took = started.elapsed();
    cluster.peers[holder].signal("CONT");
    assert_eq!(code, 503, "{body}");
    let said = details(&body);
    assert!(said.contains("is connected to control plane") && said.contains(&holder_id), "{said}");
    assert!(took < Duration::from_secs(5), "the answer took {took:?}");
    eprintln!("an unresponsive holder was reported in {took:?}");
}

#[test]
fn a_single_control_plane_answers_for_its_own_dataplanes() {
    let cp = KumaCp::must_start();
    let inbound = free_port();
    let body = dataplane("redis-1", &format!("127.0.0.1:{inbound}:{}", free_port()), "redis", None);
    let (code, reply) =
        call(cp.api_port, "PUT", "/meshes/default/dataplanes/redis-1", Some(&body), None);
    assert!(code == 201 || code == 200, "{code} {reply}");
    let dir = tempfile::tempdir().unwrap();
    let sidecar = spawn_kuma_dp(&cp.must_kuma_dp_env("default", "redis-1"), dir.path());
    let path = "/meshes/default/dataplanes/redis-1/xds";
    let dump = try_poll_until(CONVERGE, || match call(cp.api_port, "GET", path, None, None) {
        (200, body) => Ok(serde_json::from_str::<Value>(&body).unwrap()),
        other => Err(other),
    })
    .unwrap_or_else(|e| panic!("no config dump ({e:?}):\n{}", sidecar.log()));
    assert!(listener_names(&dump).contains(&format!("inbound:127.0.0.1:{inbound}")), "{dump}");
}
