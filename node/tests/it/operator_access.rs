//! Operator access with real kuma-cp processes. Loopback is told not to count as admin
//! (`KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN=false`), so these requests from 127.0.0.1 are what a
//! request from another host is: refused without credentials, read-only with a viewer token,
//! accepted with an admin token (issued through any peer) or an admin client certificate; an
//! expired token is refused; kumactl works over HTTPS; slow and idle clients hold up nobody.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use kuma_ca::{SigningKey, TokenTimes, UserClaims};
use kuma_test_support::{http_request_as, try_poll_until, KumaCp, KumaCpCluster};
use serde_json::Value;

use crate::support::Kumactl as Ctl;

const UNTRUSTED_LOOPBACK: (&str, &str) = ("KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN", "false");
const CONVERGE: Duration = Duration::from_secs(20);

fn status(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> (u16, String) {
    let reply = http_request_as(port, method, path, body, token).expect("the API answers");
    (reply.status, reply.body)
}

fn mesh(name: &str) -> String {
    format!(r#"{{"type":"Mesh","name":"{name}"}}"#)
}

/// The admin token made at first start, read on a peer's own host.
fn admin_token(port: u16) -> String {
    try_poll_until(CONVERGE, || match status(port, "GET", "/tokens/admin", None, None) {
        (200, token) => Ok(token.trim().to_string()),
        other => Err(other),
    })
    .expect("the admin token")
}

fn user_token(port: u16, admin: &str, name: &str, group: &str, valid_for: &str) -> String {
    let body = format!(r#"{{"name":"{name}","groups":["{group}"],"validFor":"{valid_for}"}}"#);
    let (code, token) = status(port, "POST", "/tokens/user", Some(&body), Some(admin));
    assert_eq!(code, 200, "{token}");
    token.trim().to_string()
}

#[test]
fn writes_need_an_admin_and_a_token_from_any_peer_works_on_every_other() {
    let mut cluster =
        KumaCpCluster::must_start_with(3, |b| b.env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1));
    cluster.must_wait_for_leader(CONVERGE);
    let (p1, p2, p3) =
        (cluster.peers[0].api_port, cluster.peers[1].api_port, cluster.peers[2].api_port);

    let (code, body) = status(p2, "PUT", "/meshes/other", Some(&mesh("other")), None);
    assert_eq!(code, 401, "{body}");
    let error: Value = serde_json::from_str(&body).unwrap();
    assert!(
        error["title"].is_string() && error["details"].as_str().unwrap().contains("user token"),
        "{body}"
    );
    assert_eq!(status(p2, "GET", "/meshes", None, None).0, 401);

    let admin = admin_token(p1);
    let viewer = user_token(p1, &admin, "bob", "mesh-system:viewer", "1h");
    assert_eq!(status(p2, "GET", "/meshes", None, Some(&viewer)).0, 200, "a viewer reads");
    let (code, body) = status(p2, "PUT", "/meshes/other", Some(&mesh("other")), Some(&viewer));
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("bob may only read"), "{body}");
    let join = r#"{"id": 9, "raftAddress": "127.0.0.1:1"}"#;
    assert_eq!(
        status(p3, "POST", "/status/raft/peers", Some(join), Some(&viewer)).0,
        403,
        "Raft membership is admin-only"
    );

    // Issued through peer 1, accepted by peer 2.
    let (code, body) = status(p2, "PUT", "/meshes/other", Some(&mesh("other")), Some(&admin));
    assert_eq!(code, 201, "{body}");
    assert_eq!(status(p3, "GET", "/meshes/other", None, Some(&viewer)).0, 200);
    let audit = cluster.peers[1].log();
    assert!(
        audit.lines().any(|l| l.contains("audit")
            && l.contains("mesh-system:admin")
            && l.contains("/meshes/other")
            && l.contains("changed")),
        "the write is audit-logged with who made it:\n{audit}"
    );
    assert!(
        audit.lines().any(|l| l.contains("audit") && l.contains("bob") && l.contains("refused")),
        "{audit}"
    );

    // An expired token, signed by a key the operator added.
    let key = SigningKey::generate("99").unwrap();
    let secret = format!(
        r#"{{"type":"GlobalSecret","name":"user-token-signing-key-99","data":"{}"}}"#,
        base64::engine::general_purpose::STANDARD.encode(key.key_pem())
    );
    assert_eq!(
        status(p1, "PUT", "/global-secrets/user-token-signing-key-99", Some(&secret), Some(&admin))
            .0,
        201
    );
    let claims = |start: i64, valid: u64| UserClaims {
        name: "carol".into(),
        groups: vec!["mesh-system:admin".into()],
        times: TokenTimes::starting(start, Duration::from_secs(valid)),
    };
    let now = chrono::Utc::now().timestamp();
    let fresh = key.sign(&claims(now, 3600)).unwrap();
    try_poll_until(CONVERGE, || match status(p3, "GET", "/meshes", None, Some(&fresh)) {
        (200, _) => Ok(()),
        other => Err(other),
    })
    .expect("the operator's key reaches peer 3");
    let expired = key.sign(&claims(now - 7200, 60)).unwrap();
    let (code, body) = status(p3, "GET", "/meshes", None, Some(&expired));
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("expired"), "{body}");
}

/// A CA for client certificates and one certificate it signed, for `name` in `group`.
fn client_certificate(dir: &Path, name: &str, group: &str) -> (String, String, String) {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
        IsCa, Issuer, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let mut ca_name = DistinguishedName::new();
    ca_name.push(DnType::CommonName, "operators CA");
    ca.distinguished_name = ca_name;
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, name);
    subject.push(DnType::OrganizationName, group);
    params.distinguished_name = subject;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(file);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    (
        write("client-ca.crt", ca_cert.pem()),
        write("client.crt", cert.pem()),
        write("client.key", key.serialize_pem()),
    )
}

#[test]
fn kumactl_works_over_https_with_a_token_or_a_client_certificate_and_says_why_when_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (client_ca, client_cert, client_key) =
        client_certificate(dir.path(), "carol", "mesh-system:admin");
    let cp = KumaCp::builder()
        .env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1)
        .env("KUMA_API_SERVER_AUTH_CLIENT_CERTS_CA_FILE", &client_ca)
        .must_start();
    let ca = cp.must_ca_file();
    let ca = ca.to_str().unwrap();
    let url = format!("https://127.0.0.1:{}", cp.https_port);
    let admin = admin_token(cp.api_port);
    let viewer = user_token(cp.api_port, &admin, "bob", "mesh-system:viewer", "1h");

    // An admin token over HTTPS, verified against the control plane's CA.
    let ctl = Ctl::new();
    let token_conf = format!("token={admin}");
    ctl.must_add(
        &url,
        &["--ca-cert-file", ca, "--auth-type", "tokens", "--auth-conf", &token_conf],
    );
    let config = ctl.home.path().join(".kumactl/config");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the config holds a token: only its owner reads it");
    ctl.must_succeed(&["apply", "-f", "-"], &mesh("by-token"));
    assert!(ctl.must_succeed(&["get", "meshes"], "").contains("by-token"));
    let generated = ctl.must_succeed(
        &[
            "generate",
            "user-token",
            "--name",
            "dave",
            "--group",
            "mesh-system:viewer",
            "--valid-for",
            "1h",
        ],
        "",
    );
    assert_eq!(generated.trim().split('.').count(), 3, "a JWT: {generated}");

    // A viewer reads and is told why it may not write.
    let ctl = Ctl::new();
    let token_conf = format!("token={viewer}");
    ctl.must_add(
        &url,
        &["--ca-cert-file", ca, "--auth-type", "tokens", "--auth-conf", &token_conf],
    );
    assert!(ctl.must_succeed(&["get", "meshes"], "").contains("by-token"));
    let err = ctl.must_fail(&["apply", "-f", "-"], &mesh("by-viewer"));
    assert!(err.contains("bob may only read"), "{err}");

    // No credentials.
    let ctl = Ctl::new();
    ctl.must_add(&url, &["--ca-cert-file", ca]);
    let err = ctl.must_fail(&["get", "meshes"], "");
    assert!(err.contains("needs credentials"), "{err}");

    // The wrong CA.
    let ctl = Ctl::new();
    let out = ctl.add(&url, &["--ca-cert-file", &client_ca]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("not signed by the CA given with --ca-cert-file"), "{err}");

    // An admin client certificate.
    let ctl = Ctl::new();
    ctl.must_add(
        &url,
        &[
            "--ca-cert-file",
            ca,
            "--client-cert-file",
            &client_cert,
            "--client-key-file",
            &client_key,
        ],
    );
    ctl.must_succeed(&["apply", "-f", "-"], &mesh("by-certificate"));
    assert!(
        cp.log()
            .lines()
            .any(|l| l.contains("audit") && l.contains("carol") && l.contains("changed")),
        "{}",
        cp.log()
    );
}

/// RSS of a process, from /proc.
fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// A GET /meshes from 127.0.0.1 with a fresh connection: how long it takes.
fn timed_get(port: u16) -> Duration {
    let started = Instant::now();
    let reply = http_request_as(port, "GET", "/meshes", None, None).expect("the API answers");
    assert_eq!(reply.status, 200);
    started.elapsed()
}

#[test]
fn idle_and_slow_clients_neither_exhaust_the_api_nor_delay_other_clients() {
    let cp = KumaCp::must_start();
    let pid = cp.pid().unwrap();
    let baseline = (0..5).map(|_| timed_get(cp.api_port)).max().unwrap();
    let rss_before = rss_bytes(pid);
    // 300 idle connections and 30 that trickle a request header a byte at a time, all from
    // 127.0.0.2 (the API takes at most 64 connections from one address, so one host cannot
    // take every place).
    let mut idle = Vec::new();
    let mut trickling = Vec::new();
    for i in 0..330 {
        let socket = connect_from([127, 0, 0, 2], cp.api_port);
        let Some(mut stream) = socket else { continue };
        if i < 30 {
            let _ = stream.write_all(b"GET /meshes HTTP/1.1\r\nHost: x\r\n");
            trickling.push(stream);
        } else {
            idle.push(stream);
        }
    }
    let trickle_until = Instant::now() + Duration::from_secs(12);
    let mut slowest = Duration::ZERO;
    while Instant::now() < trickle_until {
        for stream in &mut trickling {
            let _ = stream.write_all(b"X");
        }
        slowest = slowest.max(timed_get(cp.api_port));
        std::thread::sleep(Duration::from_millis(500));
    }
    let rss_during = rss_bytes(pid);
    // The header deadline (10 s) has passed: the server closed the tricklers' connections (a
    // read ends, or fails with a reset, instead of waiting).
    let cut_off = trickling
        .iter_mut()
        .filter_map(|s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            let mut buf = [0u8; 256];
            let closed = match std::io::Read::read(s, &mut buf) {
                Ok(_) => true,
                Err(e) => !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
            };
            closed.then_some(())
        })
        .count();
    eprintln!(
        "slow clients: baseline GET {baseline:?}, slowest GET while 300 idle + 30 trickling connections were open {slowest:?}; RSS {} KiB before, {} KiB during; {cut_off} of {} tricklers cut off",
        rss_before / 1024,
        rss_during / 1024,
        trickling.len()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a normal request took {slowest:?} (baseline {baseline:?})"
    );
    assert!(
        rss_during < rss_before + 64 * 1024 * 1024,
        "memory grew from {rss_before} to {rss_during}"
    );
    assert!(cut_off >= trickling.len() / 2, "only {cut_off} trickling connections were closed");
}

/// A connection to 127.0.0.1:`port` from the local address `from`.
fn connect_from(from: [u8; 4], port: u16) -> Option<std::net::TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
    rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(std::net::SocketAddr::from((from, 0))).ok()?;
        let stream = tokio::time::timeout(
            Duration::from_secs(2),
            socket.connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))),
        )
        .await
        .ok()?
        .ok()?;
        stream.into_std().ok()
    })
    .inspect(|s| {
        let _ = s.set_nonblocking(false);
    })
}

#[test]
fn plain_http_can_be_turned_off_leaving_the_api_on_https_only() {
    let cp = KumaCp::builder().env("KUMA_API_SERVER_HTTP_ENABLED", "false").must_start();
    assert!(http_request_as(cp.api_port, "GET", "/", None, None).is_err(), "nothing on 5681");
    // The first contact, on the host: trust on first use, then only the CA it printed.
    let ctl = Ctl::new();
    let url = format!("https://127.0.0.1:{}", cp.https_port);
    ctl.must_add(&url, &["--skip-verify"]);
    let ca = ctl.must_succeed(&["inspect", "control-plane-ca"], "");
    let reply =
        kuma_test_support::https_request(cp.https_port, &ca, "GET", "/meshes", None).unwrap();
    assert_eq!(reply.status, 200, "loopback is admin over HTTPS too: {}", reply.body);
}
