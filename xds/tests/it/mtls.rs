//! Mutual TLS between real Envoys: a mesh with a builtin CA, identities over ADS, inbounds that
//! refuse anything but a mesh certificate, and identity rotation that keeps connections open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use kuma_test_support::{free_port, tcp_roundtrip, try_poll_until, EchoServer, Envoy};
use kuma_xds::XdsApiType;
use serde_json::Value;

use crate::harness::{backend_dataplane, redis_dataplane, Harness};

const LIVE: Duration = Duration::from_secs(20);
const CONVERGE: Duration = Duration::from_secs(10);

pub fn mtls_mesh(rotation: Option<&str>) -> String {
    let dp_cert = rotation
        .map(|r| format!("    dpCert:\n      rotation:\n        expiration: {r}\n"))
        .unwrap_or_default();
    format!(
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: builtin\n{dp_cert}"
    )
}

pub const ALLOW_ALL: &str = "type: TrafficPermission\nmesh: default\nname: allow-all\nsources:\n- match:\n    service: '*'\ndestinations:\n- match:\n    service: '*'\n";

/// A mesh with mTLS on and its CA generated, as the leader would do it.
pub async fn must_enable_mtls(h: &Harness, rotation: Option<&str>) {
    h.apply(&mtls_mesh(rotation)).await;
    assert_eq!(kuma_xds::ensure_builtin_cas(h.store.as_ref()).await.unwrap(), 1);
    assert_eq!(kuma_xds::ensure_builtin_cas(h.store.as_ref()).await.unwrap(), 0, "idempotent");
}

/// A sidecar for a dataplane, started and LIVE.
pub fn must_start_sidecar(h: &Harness, name: &str) -> Envoy {
    must_start_sidecar_over(h, name, XdsApiType::Grpc)
}

/// A sidecar that speaks `api` (state of the world or delta) to the control plane.
pub fn must_start_sidecar_over(h: &Harness, name: &str, api: XdsApiType) -> Envoy {
    let admin = free_port();
    let envoy = Envoy::must_start(&h.bootstrap("default", name, admin, api), admin);
    envoy.must_be_live(LIVE);
    envoy
}

pub fn must_echo_through(port: u16, expected_prefix: &str) {
    try_poll_until(CONVERGE, || match tcp_roundtrip(port, b"ping") {
        Ok(reply) if reply.starts_with(expected_prefix.as_bytes()) => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no echo through port {port}: {e}"));
}

/// `(URI SANs, serial numbers)` of the certificates Envoy holds, from `/certs`.
fn certs(envoy: &Envoy) -> (Vec<String>, Vec<String>) {
    let body = envoy.admin("/certs").map(|r| r.body).unwrap_or_default();
    let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let chains: Vec<&Value> = json["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten())
        .collect();
    let uris = chains
        .iter()
        .flat_map(|c| c["subject_alt_names"].as_array().into_iter().flatten())
        .filter_map(|san| san["uri"].as_str().map(str::to_string))
        .collect();
    let serials =
        chains.iter().filter_map(|c| c["serial_number"].as_str().map(str::to_string)).collect();
    (uris, serials)
}

/// The sum of a listener counter over every listener, e.g. `ssl.connection_error`.
fn listener_stat(envoy: &Envoy, suffix: &str) -> u64 {
    let body = envoy.admin(&format!("/stats?filter={suffix}$")).map(|r| r.body).unwrap_or_default();
    body.lines()
        .filter(|l| l.starts_with("listener.") && !l.starts_with("listener.admin"))
        .filter_map(|l| l.rsplit_once(": ").and_then(|(_, v)| v.parse::<u64>().ok()))
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_sidecars_talk_while_a_plain_client_is_refused_at_the_handshake() {
    sidecars_talk_over_mtls(XdsApiType::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mtls_over_delta_xds_sidecars_talk_while_a_plain_client_is_refused() {
    sidecars_talk_over_mtls(XdsApiType::DeltaGrpc).await;
}

async fn sidecars_talk_over_mtls(api: XdsApiType) {
    let h = Harness::start().await;
    must_enable_mtls(&h, None).await;
    h.apply(ALLOW_ALL).await;
    let echo = EchoServer::start("r:");
    let redis_inbound = free_port();
    h.apply(&redis_dataplane("redis-1", redis_inbound, echo.port)).await;
    let (outbound, backend_inbound) = (free_port(), free_port());
    h.apply(&backend_dataplane("default", outbound, backend_inbound)).await;
    let redis = must_start_sidecar_over(&h, "redis-1", api);
    let backend = must_start_sidecar_over(&h, "backend-1", api);

    must_echo_through(outbound, "r:");

    let refused_before = listener_stat(&redis, "ssl.connection_error");
    // Longer than a TLS record header, so the handshake sees it is not TLS at once.
    let direct = tcp_roundtrip(redis_inbound, b"plain text, not a TLS client hello\n");
    // Refused in the handshake: the connection closes, at most after a fatal TLS alert record
    // (content type 21, level 2), and never with the workload's echo.
    match &direct {
        Err(_) => {}
        Ok(reply) => assert!(
            reply.len() >= 6 && reply[0] == 21 && reply[5] == 2,
            "a plain TCP client got an answer that is not a TLS alert: {reply:?}"
        ),
    }
    try_poll_until(CONVERGE, || match listener_stat(&redis, "ssl.connection_error") {
        n if n > refused_before => Ok(()),
        n => Err(n),
    })
    .unwrap_or_else(|n| {
        panic!(
            "no TLS handshake failure counted ({n}): {}",
            redis.admin("/stats?filter=ssl").map(|r| r.body).unwrap_or_default()
        )
    });

    let (redis_uris, _) = certs(&redis);
    assert!(redis_uris.contains(&"spiffe://default/redis".to_string()), "{redis_uris:?}");
    let (backend_uris, _) = certs(&backend);
    assert!(backend_uris.contains(&"spiffe://default/backend".to_string()), "{backend_uris:?}");
    assert!(!backend_uris.contains(&"spiffe://default/redis".to_string()), "{backend_uris:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_rotate_before_expiry_without_dropping_open_connections() {
    let h = Harness::start().await;
    // Certificates live 5 s and are replaced at 4 s.
    must_enable_mtls(&h, Some("5s")).await;
    h.apply(ALLOW_ALL).await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_dataplane("redis-1", free_port(), echo.port)).await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let _redis = must_start_sidecar(&h, "redis-1");
    let backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "r:");

    let mut conn = TcpStream::connect(("127.0.0.1", outbound)).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let roundtrip = |conn: &mut TcpStream| {
        conn.write_all(b"ping").unwrap();
        let mut buf = [0u8; 64];
        let n = conn.read(&mut buf).unwrap();
        buf[..n].to_vec()
    };
    assert_eq!(roundtrip(&mut conn), b"r:ping");
    let (_, first) = certs(&backend);
    assert!(!first.is_empty());
    let rotated = try_poll_until(Duration::from_secs(15), || {
        let (_, now) = certs(&backend);
        if !now.is_empty() && now.iter().all(|s| !first.contains(s)) {
            Ok(now)
        } else {
            Err(now)
        }
    })
    .expect("a new identity certificate replaces the old one");
    assert_ne!(rotated, first);
    assert_eq!(roundtrip(&mut conn), b"r:ping", "the connection opened before survives");
    let insight = try_poll_until(Duration::from_secs(5), || {
        match futures::executor::block_on(h.insight("default", "backend-1")).and_then(|i| i.mtls) {
            Some(mtls) if mtls.certificate_regenerations >= 2 => Ok(mtls),
            other => Err(other),
        }
    })
    .expect("the DataplaneInsight counts the regenerations");
    assert!(insight.certificate_expiration_time > insight.last_certificate_regeneration);
    must_echo_through(outbound, "r:");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provided_ca_from_files_secures_sidecar_traffic_with_its_own_certificates() {
    let h = Harness::start().await;
    let ca = kuma_ca::MeshCa::generate("default", kuma_ca::BUILTIN_CA_VALIDITY).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("ca.crt"), dir.path().join("ca.key"));
    std::fs::write(&cert, ca.cert_pem()).unwrap();
    std::fs::write(&key, ca.key_pem()).unwrap();
    h.apply(&format!(
        "type: Mesh\nname: default\nmtls:\n  enabledBackend: ca-1\n  backends:\n  - name: ca-1\n    type: provided\n    conf:\n      cert:\n        file: {}\n      key:\n        file: {}\n",
        cert.display(),
        key.display()
    ))
    .await;
    assert_eq!(
        kuma_xds::ensure_builtin_cas(h.store.as_ref()).await.unwrap(),
        0,
        "nothing to generate"
    );
    h.apply(ALLOW_ALL).await;
    let echo = EchoServer::start("r:");
    h.apply(&redis_dataplane("redis-1", free_port(), echo.port)).await;
    let outbound = free_port();
    h.apply(&backend_dataplane("default", outbound, free_port())).await;
    let redis = must_start_sidecar(&h, "redis-1");
    let _backend = must_start_sidecar(&h, "backend-1");
    must_echo_through(outbound, "r:");
    // No builtin CA exists, so the mesh CA Envoy trusts came from the files.
    let body = redis.admin("/certs").map(|r| r.body).unwrap_or_default();
    let json: Value = serde_json::from_str(&body).unwrap();
    let ca_uris: Vec<&str> = json["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ca_cert"].as_array().into_iter().flatten())
        .flat_map(|c| c["subject_alt_names"].as_array().into_iter().flatten())
        .filter_map(|san| san["uri"].as_str())
        .collect();
    assert!(ca_uris.contains(&"spiffe://default"), "{body}");
}
