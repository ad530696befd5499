//! Dataplane identity with real processes: kuma-dp, a real Envoy and kuma-cp peers (a 3-peer Raft
//! cluster where it matters). Every bad token is refused with its own reason and gets no config;
//! a token issued through one peer works on another; revoking it closes Envoy's stream; Envoy
//! refuses a control plane whose certificate is from another CA; kuma-dp registers its own
//! Dataplane within what its token allows.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use kuma_ca::{ControlPlaneCa, DataplaneClaims, SigningKey, TokenTimes};
use kuma_test_support::{
    bin_path, envoy_path, free_port, http_get, http_request, tcp_roundtrip, try_poll_until,
    EchoServer, Exited, KumaCp, KumaCpCluster, Proc,
};
use serde_json::Value;

use crate::support::dataplane;

const CONVERGE: Duration = Duration::from_secs(30);

fn must_write(port: u16, method: &str, path: &str, body: Option<&str>) {
    let reply = http_request(port, method, path, body).expect("the API answers");
    assert!((200..300).contains(&reply.status), "{method} {path}: {} {}", reply.status, reply.body);
}

fn secret(name: &str, bytes: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(bytes);
    format!(r#"{{"type":"Secret","mesh":"default","name":"{name}","data":"{data}"}}"#)
}

/// The token id (`jti`), which a revocation list names.
fn token_id(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap();
    let claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["jti"].as_str().unwrap().to_string()
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn kuma_dp(
    urls: &str,
    ca: &Path,
    token: Option<&Path>,
    name: &str,
    dir: &Path,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "run".to_string(),
        format!("--binary-path={}", envoy_path().display()),
        format!("--config-dir={}", dir.display()),
        format!("--ca-cert-file={}", ca.display()),
        format!("--bootstrap-server-url={urls}"),
        "--retry-backoff=100ms".to_string(),
        "--retry-max-duration=2s".to_string(),
    ];
    if !name.is_empty() {
        args.push(format!("--name={name}"));
    }
    if let Some(token) = token {
        args.push(format!("--dataplane-token-file={}", token.display()));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(&bin_path("kuma-dp"), &args, &[])
}

fn must_be_refused(mut dp: Proc, reason: &str) -> Exited {
    let exited = dp.must_exit_within(CONVERGE);
    assert_ne!(exited.code(), Some(0), "{}", exited.log);
    let line = exited.must_error_line();
    assert!(line.contains(reason), "the error says {reason:?}: {line}");
    assert!(!exited.log.contains("Envoy started"), "no config, no Envoy:\n{}", exited.log);
    exited
}

/// Waits until every peer answers `token`'s bootstrap request with `status` (the change that
/// makes it so has reached every peer).
fn must_answer_everywhere(cluster: &KumaCpCluster, name: &str, token: &str, status: u16) {
    let body = format!(r#"{{"mesh":"default","name":"{name}","dataplaneToken":"{token}"}}"#);
    for peer in &cluster.peers {
        try_poll_until(CONVERGE, || match peer.bootstrap_request(&body) {
            Ok(reply) if reply.status == status => Ok(()),
            other => Err(format!("{other:?}")),
        })
        .unwrap_or_else(|e| panic!("peer {} did not answer {status}: {e}", peer.api_port));
    }
}

#[test]
fn kuma_dp_is_refused_for_every_bad_token_with_its_own_reason_and_gets_no_config() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(CONVERGE);
    let api = cluster.peers[leader].api_port;
    must_write(
        api,
        "PUT",
        "/meshes/default/dataplanes/redis-1",
        Some(&dataplane("redis-1", "127.0.0.1:9000:6379", "redis", None)),
    );
    let dir = tempfile::tempdir().unwrap();
    let ca = cluster.peers[0].must_ca_file();
    let urls = cluster.peers.iter().map(|p| p.bootstrap_url()).collect::<Vec<_>>().join(",");
    let refused = |token: Option<&str>, reason: &str| {
        let file = token.map(|t| write(dir.path(), "token", t));
        must_be_refused(kuma_dp(&urls, &ca, file.as_deref(), "redis-1", dir.path(), &[]), reason)
    };

    refused(None, "no dataplane token was given");
    refused(Some("not-a-token"), "malformed");
    let for_web = cluster.peers[1].must_token(r#"{"mesh":"default","name":"web-1"}"#);
    refused(Some(&for_web), "is for dataplane \"web-1\", not \"redis-1\"");
    must_write(api, "PUT", "/meshes/other", Some(r#"{"type":"Mesh","name":"other"}"#));
    let for_other_mesh = cluster.peers[2].must_token(r#"{"mesh":"other","name":"redis-1"}"#);
    refused(Some(&for_other_mesh), "is for mesh \"other\", not \"default\"");

    // An operator's own signing key (key id 99), and with it an expired token.
    let key = SigningKey::generate("99").unwrap();
    must_write(
        api,
        "PUT",
        "/meshes/default/secrets/dataplane-token-signing-key-default-99",
        Some(&secret("dataplane-token-signing-key-default-99", key.key_pem().as_bytes())),
    );
    let now = chrono::Utc::now().timestamp();
    let claims = |start: i64, valid: u64| DataplaneClaims {
        mesh: "default".into(),
        name: "redis-1".into(),
        tags: Default::default(),
        times: TokenTimes::starting(start, Duration::from_secs(valid)),
    };
    let signed_by_99 = key.sign(&claims(now, 3600)).unwrap();
    must_answer_everywhere(&cluster, "redis-1", &signed_by_99, 200);
    refused(Some(&key.sign(&claims(now - 7200, 60)).unwrap()), "expired at");

    // Revoked: the revocation list is a Secret the operator writes through any peer.
    let revoked = cluster.peers[0].must_token(r#"{"mesh":"default","name":"redis-1"}"#);
    must_answer_everywhere(&cluster, "redis-1", &revoked, 200);
    let list = format!("{}\n", token_id(&revoked));
    must_write(
        cluster.peers[1].api_port,
        "PUT",
        "/meshes/default/secrets/dataplane-token-revocations-default",
        Some(&secret("dataplane-token-revocations-default", list.as_bytes())),
    );
    must_answer_everywhere(&cluster, "redis-1", &revoked, 401);
    refused(Some(&revoked), "is revoked");

    // Signed by a key that was deleted since.
    must_write(
        api,
        "DELETE",
        "/meshes/default/secrets/dataplane-token-signing-key-default-99",
        None,
    );
    must_answer_everywhere(&cluster, "redis-1", &signed_by_99, 401);
    refused(Some(&signed_by_99), "key \"99\", which mesh \"default\" does not have");
}

#[test]
fn a_token_from_one_peer_works_on_another_and_revoking_it_closes_envoys_stream() {
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    let leader = cluster.must_wait_for_leader(CONVERGE);
    let api = cluster.peers[leader].api_port;
    let echo = EchoServer::start("r:");
    let outbound = free_port();
    must_write(
        api,
        "PUT",
        "/meshes/default/dataplanes/redis-1",
        Some(&dataplane("redis-1", &format!("127.0.0.1:{}:6379", echo.port), "redis", None)),
    );
    let backend_in = free_port();
    must_write(
        api,
        "PUT",
        "/meshes/default/dataplanes/backend-1",
        Some(&dataplane(
            "backend-1",
            &format!("127.0.0.1:{backend_in}:{}", backend_in + 1),
            "backend",
            Some(outbound),
        )),
    );

    let dir = tempfile::tempdir().unwrap();
    let token = cluster.peers[0].must_token(r#"{"mesh":"default","name":"backend-1"}"#);
    let token_file = write(dir.path(), "token", &token);
    let ca = cluster.peers[0].must_ca_file();
    let admin = free_port();
    // Issued through peer 1, used with peer 3 only.
    let dp = kuma_dp(
        &cluster.peers[2].bootstrap_url(),
        &ca,
        Some(&token_file),
        "backend-1",
        dir.path(),
        &[&format!("--admin-port={admin}")],
    );
    try_poll_until(CONVERGE, || match tcp_roundtrip(outbound, b"ping") {
        Ok(reply) if reply == b"r:ping" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no traffic through the sidecar ({e}):\n{}", dp.log()));
    let connected = || {
        http_get(admin, "/stats?filter=control_plane.connected_state")
            .map(|r| r.body.trim().ends_with(": 1"))
            .unwrap_or(false)
    };
    assert!(connected(), "Envoy's ADS stream is up");

    let list = format!("{}\n", token_id(&token));
    let revoked_at = std::time::Instant::now();
    must_write(
        cluster.peers[1].api_port,
        "PUT",
        "/meshes/default/secrets/dataplane-token-revocations-default",
        Some(&secret("dataplane-token-revocations-default", list.as_bytes())),
    );
    try_poll_until(Duration::from_secs(5), || if connected() { Err(()) } else { Ok(()) })
        .unwrap_or_else(|_| panic!("the stream of a revoked token stays open:\n{}", dp.log()));
    eprintln!("Envoy's stream closed {:?} after the revocation was written", revoked_at.elapsed());
    // Envoy tries every peer again; none takes the revoked token.
    std::thread::sleep(Duration::from_secs(2));
    assert!(!connected(), "a peer accepted the revoked token again:\n{}", dp.log());
    assert!(dp.log().contains("revoked"), "Envoy logs why:\n{}", dp.log());
    // Envoy keeps the config it has: traffic goes on.
    assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"r:ping");
}

#[test]
fn envoy_refuses_a_control_plane_whose_certificate_is_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let other_ca = ControlPlaneCa::generate().unwrap();
    let issued = other_ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
    let cert = write(dir.path(), "impostor.crt", &issued.cert_pem);
    let key = write(dir.path(), "impostor.key", &issued.key_pem);
    let impostor = KumaCp::builder()
        .env("KUMA_GENERAL_TLS_CERT_FILE", cert.to_str().unwrap())
        .env("KUMA_GENERAL_TLS_KEY_FILE", key.to_str().unwrap())
        .must_start();
    // The real control plane tells Envoy to reach xDS at the impostor's port.
    let cp = KumaCp::builder()
        .env("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT", &impostor.xds_port.to_string())
        .must_start();
    must_write(
        cp.api_port,
        "PUT",
        "/meshes/default/dataplanes/redis-1",
        Some(&dataplane("redis-1", &format!("127.0.0.1:{}:6379", free_port()), "redis", None)),
    );
    let ca = cp.must_ca_file();
    let token_file = cp.must_token_file("default", "redis-1");

    let admin = free_port();
    let dp = kuma_dp(
        &cp.bootstrap_url(),
        &ca,
        Some(&token_file),
        "redis-1",
        dir.path(),
        &[&format!("--admin-port={admin}")],
    );
    let failures = try_poll_until(CONVERGE, || {
        let stats = http_get(admin, "/stats?filter=ads_cluster.ssl.fail_verify_error")
            .map_err(|e| e.to_string())?;
        let count: u64 = stats.body.rsplit(": ").next().unwrap_or("0").trim().parse().unwrap_or(0);
        if count > 0 {
            Ok(count)
        } else {
            Err(stats.body)
        }
    })
    .unwrap_or_else(|e| panic!("Envoy did not refuse the impostor ({e}):\n{}", dp.log()));
    assert!(failures > 0);
    let listeners = http_get(admin, "/listeners").unwrap().body;
    assert!(!listeners.contains("inbound"), "no config from the impostor: {listeners}");

    // kuma-dp itself refuses the impostor's bootstrap server, at once and for good.
    let exited = must_be_refused(
        kuma_dp(&impostor.bootstrap_url(), &ca, Some(&token_file), "redis-1", dir.path(), &[]),
        "not signed by the CA given with --ca-cert-file",
    );
    assert!(exited.took < Duration::from_secs(2), "no retries: {:?}", exited.took);
}

#[test]
fn kuma_dp_registers_its_own_dataplane_within_the_tags_its_token_allows() {
    let cp = KumaCp::must_start();
    let echo = EchoServer::start("r:");
    let dir = tempfile::tempdir().unwrap();
    let ca = cp.must_ca_file();
    let token = cp.must_token(r#"{"mesh":"default","tags":{"kuma.io/service":["redis"]}}"#);
    let token_file = write(dir.path(), "token", &token);
    let template = write(
        dir.path(),
        "dataplane.yaml",
        "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{{ port }}:{{ service_port }}\n    tags:\n      service: {{ service }}\n",
    );
    let inbound = free_port();
    let file_arg = format!("--dataplane-file={}", template.display());
    let vars = |name: &str, port: u16, service: &str| {
        vec![
            format!("--dataplane-var=name={name}"),
            format!("--dataplane-var=port={port}"),
            format!("--dataplane-var=service_port={}", echo.port),
            format!("--dataplane-var=service={service}"),
        ]
    };
    let mut extra: Vec<String> = vec![file_arg.clone(), format!("--admin-port={}", free_port())];
    extra.extend(vars("redis-7", inbound, "redis"));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let dp = kuma_dp(&cp.bootstrap_url(), &ca, Some(&token_file), "", dir.path(), &extra);
    try_poll_until(CONVERGE, || match tcp_roundtrip(inbound, b"ping") {
        Ok(reply) if reply == b"r:ping" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| {
        panic!("the registered dataplane's inbound does not answer ({e}):\n{}", dp.log())
    });
    let registered = http_get(cp.api_port, "/meshes/default/dataplanes/redis-7").unwrap();
    assert_eq!(registered.status, 200, "{}", registered.body);
    assert!(
        registered.body.contains(&format!("127.0.0.1:{inbound}:{}", echo.port)),
        "{}",
        registered.body
    );

    // The same token may not register a dataplane of another service.
    let mut extra: Vec<String> = vec![file_arg];
    extra.extend(vars("web-1", free_port(), "web"));
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    must_be_refused(
        kuma_dp(&cp.bootstrap_url(), &ca, Some(&token_file), "", dir.path(), &extra),
        "allows tag kuma.io/service=redis but the Dataplane has kuma.io/service=web",
    );
    assert_eq!(http_get(cp.api_port, "/meshes/default/dataplanes/web-1").unwrap().status, 404);
}
