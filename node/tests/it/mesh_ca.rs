//! The builtin CA of a mesh: generated once, by the leader, stored as a Secret whose key never
//! leaves through the API.

use std::time::Duration;

use kuma_test_support::{http_request, try_poll_until, KumaCp, KumaCpCluster};
use serde_json::Value;

const MTLS_MESH: &str = r#"{"type":"Mesh","name":"default","mtls":{"enabledBackend":"ca-1","backends":[{"name":"ca-1","type":"builtin"}]}}"#;

fn must_get(port: u16, path: &str) -> (u16, String) {
    let reply = http_request(port, "GET", path, None).expect("the peer answers");
    (reply.status, reply.body)
}

/// Waits until `port` lists the builtin CA Secret; returns the listing's body.
fn must_see_ca_secret(port: u16) -> String {
    try_poll_until(Duration::from_secs(15), || {
        let (status, body) = must_get(port, "/meshes/default/secrets");
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let has_ca = list["items"].as_array().is_some_and(|items| {
            items.iter().any(|i| i["name"].as_str().is_some_and(|n| n.contains("ca-builtin")))
        });
        if status == 200 && has_ca {
            Ok(body)
        } else {
            Err(body)
        }
    })
    .expect("the builtin CA appears as a Secret")
}

fn assert_no_key_material(body: &str) {
    assert!(!body.contains("PRIVATE KEY"), "{body}");
    assert!(!body.contains("\"data\""), "{body}");
}

#[test]
fn enabling_builtin_mtls_on_a_replicated_cluster_generates_one_ca_secret_without_showing_it() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(Duration::from_secs(15));
    let follower = (0..3).find(|i| *i != leader).unwrap();
    let port = cluster.peers[follower].api_port;
    // The new leader creates the default mesh: a PUT racing that creation is refused with 409
    // and "retry", as it should be; here the mesh is changed once it exists, as a user would.
    try_poll_until(Duration::from_secs(15), || match must_get(port, "/meshes/default") {
        (200, _) => Ok(()),
        other => Err(other),
    })
    .expect("the leader creates the default mesh");
    let reply = http_request(port, "PUT", "/meshes/default", Some(MTLS_MESH)).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    for peer in &cluster.peers {
        let body = must_see_ca_secret(peer.api_port);
        let list: Value = serde_json::from_str(&body).unwrap();
        // The mesh's CA, and its dataplane token signing key.
        let names: Vec<&str> =
            list["items"].as_array().unwrap().iter().filter_map(|i| i["name"].as_str()).collect();
        assert_eq!(
            names,
            ["dataplane-token-signing-key-default-1", "default.ca-builtin-ca-1"],
            "generated once"
        );
        assert_no_key_material(&body);
        let (status, one) =
            must_get(peer.api_port, "/meshes/default/secrets/default.ca-builtin-ca-1");
        assert_eq!(status, 200, "{one}");
        assert_no_key_material(&one);
    }
}

#[test]
fn a_single_control_plane_generates_the_ca_of_a_mesh_that_enables_mtls() {
    let cp = KumaCp::must_start();
    let reply = http_request(cp.api_port, "PUT", "/meshes/default", Some(MTLS_MESH)).unwrap();
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_no_key_material(&must_see_ca_secret(cp.api_port));
    assert!(!cp.log().contains("PRIVATE KEY"));
}

#[test]
fn the_sds_port_accepts_connections_when_the_control_plane_is_ready() {
    let cp = KumaCp::must_start();
    assert!(std::net::TcpStream::connect(("127.0.0.1", cp.sds_port)).is_ok(), "{}", cp.log());
    assert!(cp.log().contains("sds-server starting"), "{}", cp.log());
}
