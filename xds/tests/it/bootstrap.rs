//! The bootstrap server over HTTP, and every bootstrap shape checked by Envoy itself.

use std::process::Command;
use std::sync::Arc;

use kuma_store::ResourceStore;
use kuma_test_support::{envoy_path, http_request};
use kuma_xds::{
    bootstrap, AdsSecurity, BootstrapParams, BootstrapRequest, BootstrapServer,
    BootstrapServerConfig, DataplaneAuth, DpAuthType, SinglePeer, XdsAddress, XdsApiType,
};

use crate::harness::{redis_dataplane, Harness};

async fn serve(h: &Harness, host: &str) -> u16 {
    let store: Arc<dyn ResourceStore> = h.store.clone();
    let peers = Arc::new(SinglePeer { host: host.to_string(), port: 15678 });
    // The bootstrap's shape is under test here; tokens are tested in identity.rs.
    let auth = Arc::new(DataplaneAuth::new(DpAuthType::None));
    let server = BootstrapServer::new(store, BootstrapServerConfig::default().params, peers, auth);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server.serve(listener, std::future::pending()));
    port
}

fn post(port: u16, body: &str) -> (u16, String) {
    let reply = http_request(port, "POST", "/bootstrap", Some(body)).unwrap();
    (reply.status, reply.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_dataplane_gets_its_bootstrap_as_yaml() {
    let h = Harness::start().await;
    h.apply(&redis_dataplane("redis-1", 9000, 6379)).await;
    let port = serve(&h, "").await;
    let (status, body) = post(
        port,
        r#"{"mesh":"default","name":"redis-1","adminPort":9901,"dataplaneTokenPath":""}"#,
    );
    assert_eq!(status, 200, "{body}");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&body).unwrap();
    assert_eq!(yaml["node"]["id"], "default.redis-1");
    assert_eq!(yaml["node"]["cluster"], "redis");
    assert_eq!(yaml["admin"]["address"]["socket_address"]["port_value"], 9901);
    assert_eq!(yaml["admin"]["address"]["socket_address"]["address"], "127.0.0.1");
    let endpoint = &yaml["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"][0]["endpoint"]["address"]["socket_address"];
    // No advertised host: the host kuma-dp used to reach this server.
    assert_eq!(endpoint["address"], "127.0.0.1");
    assert_eq!(endpoint["port_value"], 15678);
    assert_eq!(yaml["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_dataplane_is_a_404_that_says_what_to_do() {
    let h = Harness::start().await;
    let port = serve(&h, "").await;
    let (status, body) = post(port, r#"{"mesh":"default","name":"ghost","adminPort":0}"#);
    assert_eq!(status, 404);
    assert!(body.contains("default/ghost") && body.contains("kumactl apply"), "{body}");
    let (status, body) = post(port, r#"{"mesh":"nomesh","name":"ghost"}"#);
    assert_eq!((status, body.contains("nomesh/ghost")), (404, true), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_request_is_a_400_with_the_reason() {
    let h = Harness::start().await;
    let port = serve(&h, "").await;
    for (body, expected) in [
        ("not json", "JSON"),
        (r#"{"mesh":"default"}"#, "name"),
        (r#"{"mesh":"default","name":"x","adminPort":70000}"#, "adminPort"),
        (r#"{"mesh":"default","name":"x","adminPort":"9901"}"#, "JSON"),
    ] {
        let (status, reply) = post(port, body);
        assert_eq!(status, 400, "{body}: {reply}");
        assert!(reply.contains(expected), "{body}: {reply}");
    }
}

fn must_pass_envoy_validate(yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(envoy_path())
        .args(["--mode", "validate", "-c"])
        .arg(&path)
        .output()
        .expect("run envoy --mode validate");
    assert!(
        out.status.success(),
        "envoy refused the bootstrap:\n{yaml}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_bootstrap_shape_passes_envoy_validate() {
    let request = |admin_port| BootstrapRequest {
        mesh: "default".into(),
        name: "web.ns-1".into(),
        admin_port,
        dataplane_token_path: "/tmp/token".into(),
        dataplane_token: String::new(),
        ca_cert: String::new(),
        dataplane_resource: String::new(),
    };
    let ip = |port| XdsAddress { host: "127.0.0.1".into(), port };
    let ca = kuma_ca::ControlPlaneCa::generate().unwrap();
    let securities = [
        AdsSecurity::default(),
        // What a secured control plane serves: the token as ADS metadata, TLS to every peer.
        AdsSecurity {
            token: Some("eyJ0eXAiOiJKV1QifQ.e30.c2ln".into()),
            trusted_ca: Some(ca.cert_pem().to_string()),
        },
    ];
    let peer_sets = [
        vec![ip(5678)],
        vec![ip(5678), ip(5679), ip(5680)],
        vec![XdsAddress { host: "localhost".into(), port: 5678 }, ip(5679)],
    ];
    for api in [XdsApiType::Grpc, XdsApiType::DeltaGrpc] {
        let params =
            BootstrapParams { xds_api_type: api, ..BootstrapServerConfig::default().params };
        for peers in &peer_sets {
            for admin in [0, 9901] {
                for security in &securities {
                    let value =
                        bootstrap::generate(&request(admin), &params, peers, "web", security);
                    must_pass_envoy_validate(&serde_yaml::to_string(&value).unwrap());
                }
            }
        }
    }
}

/// A token issued right after its mesh's signing key was made reaches a peer whose view of the
/// keys has not caught up with the store yet: the peer reads the mesh's Secrets and accepts it,
/// instead of refusing a genuine token (kuma-dp gives up on a refusal).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_key_the_view_has_not_seen_yet_is_checked_against_the_store() {
    let h = Harness::start().await;
    h.apply(&redis_dataplane("redis-1", 9000, 6379)).await;
    kuma_xds::ensure_signing_keys(h.store.as_ref()).await.unwrap();
    let request = kuma_xds::TokenRequest {
        mesh: "default".into(),
        name: "redis-1".into(),
        tags: Default::default(),
        valid_for: kuma_xds::DEFAULT_TOKEN_VALIDITY,
    };
    let token = kuma_xds::issue_dataplane_token(h.store.as_ref(), &request).await.unwrap();
    // The view has been listed (synced) but not told about the key.
    let auth = Arc::new(DataplaneAuth::new(DpAuthType::DpToken));
    auth.reset(&[]);
    let store: Arc<dyn ResourceStore> = h.store.clone();
    let peers = Arc::new(SinglePeer { host: String::new(), port: 15678 });
    let server = BootstrapServer::new(store, BootstrapServerConfig::default().params, peers, auth);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(server.serve(listener, std::future::pending()));
    let body = format!(r#"{{"mesh":"default","name":"redis-1","dataplaneToken":"{token}"}}"#);
    let (status, reply) = tokio::task::spawn_blocking(move || post(port, &body)).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    // A token signed by another control plane's key is still refused.
    let other = Harness::start().await;
    kuma_xds::ensure_signing_keys(other.store.as_ref()).await.unwrap();
    let foreign = kuma_xds::issue_dataplane_token(other.store.as_ref(), &request).await.unwrap();
    let body = format!(r#"{{"mesh":"default","name":"redis-1","dataplaneToken":"{foreign}"}}"#);
    let (status, reply) = tokio::task::spawn_blocking(move || post(port, &body)).await.unwrap();
    assert_eq!(status, 401, "{reply}");
}
