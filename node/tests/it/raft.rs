//! Three kuma-cp peers with the Raft store, as processes on loopback: writes on any peer, reads on
//! any other, a killed leader, a full restart, the cluster status, and bootstraps that list every
//! peer.

use std::time::{Duration, Instant};

use kuma_test_support::{http_request, try_poll_until, KumaCpCluster};
use serde_json::Value;

const LEADER: Duration = Duration::from_secs(15);

fn put(port: u16, path: &str, body: &str) -> Result<u16, String> {
    http_request(port, "PUT", path, Some(body)).map(|r| r.status).map_err(|e| e.to_string())
}

fn must_get(port: u16, path: &str) -> (u16, Value) {
    let reply = http_request(port, "GET", path, None).expect("the peer answers");
    (reply.status, serde_json::from_str(&reply.body).unwrap_or(Value::Null))
}

fn mesh(name: &str) -> String {
    format!(r#"{{"type":"Mesh","name":"{name}"}}"#)
}

#[test]
fn a_write_on_a_follower_is_read_at_once_on_another_peer() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(LEADER);
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let (writer, reader) =
        (cluster.peers[followers[0]].api_port, cluster.peers[followers[1]].api_port);
    assert_eq!(put(writer, "/meshes/replicated", &mesh("replicated")), Ok(201));
    let (status, body) = must_get(reader, "/meshes/replicated");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "replicated");
    // The default mesh was created once, by the leader.
    let (_, meshes) = must_get(reader, "/meshes");
    let names: Vec<&str> =
        meshes["items"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "replicated"]);
}

#[test]
fn the_cluster_status_lists_every_peer_with_its_role_and_what_it_serves() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(LEADER);
    let status = try_poll_until(Duration::from_secs(10), || {
        let (_, status) = must_get(cluster.peers[0].api_port, "/status/raft");
        let members = status["members"].as_array().cloned().unwrap_or_default();
        if members.len() == 3
            && members.iter().all(|m| m["healthy"] == true && m["serves"].is_object())
        {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .expect("every peer healthy and announced");
    assert_eq!(status["leader"], (leader + 1) as u64);
    let roles: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["status"]["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles.iter().filter(|r| **r == "Leader").count(), 1, "{roles:?}");
    let xds = status["members"][1]["serves"]["xdsAddress"].as_str().unwrap().to_string();
    assert_eq!(xds, format!("127.0.0.1:{}", cluster.peers[1].xds_port));
}

#[test]
fn after_the_leader_is_killed_the_survivors_take_writes_and_it_catches_up_when_back() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(LEADER);
    let survivor = cluster.peers[(leader + 1) % 3].api_port;
    assert_eq!(put(survivor, "/meshes/before", &mesh("before")), Ok(201));

    cluster.peers[leader].signal("KILL");
    let killed = Instant::now();
    try_poll_until(Duration::from_secs(10), || {
        match put(survivor, "/meshes/after", &mesh("after")) {
            Ok(201) => Ok(()),
            other => Err(other),
        }
    })
    .expect("a write through a survivor succeeds after the kill");
    let failover = killed.elapsed();
    assert!(failover < Duration::from_secs(3), "first write {failover:?} after the kill");

    cluster.peers[leader].must_restart();
    let back = cluster.peers[leader].api_port;
    let (status, _) = must_get(back, "/meshes/after");
    assert_eq!(status, 200, "a consistent read on the restarted peer sees the write");
    try_poll_until(Duration::from_secs(10), || {
        match must_get(back, "/meshes/after?consistency=stale").0 {
            200 => Ok(()),
            other => Err(other),
        }
    })
    .expect("its own replica caught up");
}

#[test]
fn every_resource_survives_a_restart_of_all_peers() {
    let mut cluster = KumaCpCluster::must_start(3);
    cluster.must_wait_for_leader(LEADER);
    for i in 0..10 {
        let port = cluster.peers[i % 3].api_port;
        assert_eq!(put(port, &format!("/meshes/m-{i}"), &mesh(&format!("m-{i}"))), Ok(201));
    }
    for peer in &mut cluster.peers {
        peer.signal("KILL");
    }
    for peer in &mut cluster.peers {
        peer.must_restart();
    }
    cluster.must_wait_for_leader(LEADER);
    for peer in &cluster.peers {
        let (status, body) = must_get(peer.api_port, "/meshes");
        assert_eq!(status, 200);
        assert_eq!(body["total"], 11, "default plus ten on peer {}: {body}", peer.api_port);
    }
}

#[test]
fn a_peer_without_a_majority_refuses_writes_with_503_and_still_reads_stale() {
    let mut cluster =
        KumaCpCluster::must_start_with(3, |b| b.env("KUMA_STORE_RAFT_WRITE_TIMEOUT", "1s"));
    cluster.must_wait_for_leader(LEADER);
    let lone = cluster.peers[0].api_port;
    assert_eq!(put(lone, "/meshes/kept", &mesh("kept")), Ok(201));
    cluster.peers[1].signal("KILL");
    cluster.peers[2].signal("KILL");
    let started = Instant::now();
    let reply = http_request(lone, "PUT", "/meshes/lost", Some(&mesh("lost"))).unwrap();
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(reply.body.contains("majority"), "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(4));
    assert_eq!(must_get(lone, "/meshes/kept").0, 503, "no consistent read without a leader");
    assert_eq!(must_get(lone, "/meshes/kept?consistency=stale").0, 200);
    assert_eq!(must_get(lone, "/meshes/lost?consistency=stale").0, 404);
}

#[test]
fn a_bootstrap_from_any_peer_lists_the_xds_address_of_every_peer() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(LEADER);
    let api = cluster.peers[leader].api_port;
    assert_eq!(
        put(
            api,
            "/meshes/default/dataplanes/web-1",
            r#"{"type":"Dataplane","mesh":"default","name":"web-1","networking":{"inbound":[{"interface":"127.0.0.1:9000:8080","tags":{"service":"web"}}]}}"#
        ),
        Ok(201)
    );
    let mut expected: Vec<String> =
        cluster.peers.iter().map(|p| format!("127.0.0.1:{}", p.xds_port)).collect();
    expected.sort();
    // One token, issued through the leader, is good on every peer.
    let token = cluster.peers[leader].must_token(r#"{"mesh":"default","name":"web-1"}"#);
    let body = format!(
        r#"{{"mesh":"default","name":"web-1","adminPort":9901,"dataplaneToken":"{token}"}}"#
    );
    for peer in &cluster.peers {
        let addresses = try_poll_until(Duration::from_secs(10), || {
            let reply = peer.bootstrap_request(&body).map_err(|e| e.to_string())?;
            let yaml: serde_yaml::Value =
                serde_yaml::from_str(&reply.body).map_err(|e| e.to_string())?;
            let endpoints = yaml["static_resources"]["clusters"][0]["load_assignment"]["endpoints"]
                [0]["lb_endpoints"]
                .as_sequence()
                .cloned()
                .unwrap_or_default();
            let mut addresses: Vec<String> = endpoints
                .iter()
                .map(|e| {
                    let a = &e["endpoint"]["address"]["socket_address"];
                    format!(
                        "{}:{}",
                        a["address"].as_str().unwrap_or(""),
                        a["port_value"].as_u64().unwrap_or(0)
                    )
                })
                .collect();
            addresses.sort();
            if addresses == expected {
                Ok(addresses)
            } else {
                Err(format!("{addresses:?}"))
            }
        });
        assert!(addresses.is_ok(), "peer {}: {addresses:?}", peer.bootstrap_port);
    }
}

#[test]
fn an_unusable_raft_data_dir_is_one_clear_line_and_a_failure_exit() {
    let out = std::process::Command::new(kuma_test_support::bin_path("kuma-cp"))
        .arg("run")
        .env_clear()
        .env("KUMA_STORE_TYPE", "raft")
        .env("KUMA_STORE_RAFT_DATA_DIR", "/proc/not-a-place-for-data")
        .env("KUMA_API_SERVER_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_API_SERVER_HTTPS_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_DIAGNOSTICS_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_BOOTSTRAP_SERVER_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_XDS_SERVER_GRPC_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_SDS_SERVER_GRPC_PORT", kuma_test_support::free_port().to_string())
        .env("KUMA_RAFT_PORT", kuma_test_support::free_port().to_string())
        .output()
        .expect("kuma-cp runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Error: ")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("/proc/not-a-place-for-data")
            && errors[0].contains("KUMA_STORE_RAFT_DATA_DIR"),
        "{}",
        errors[0]
    );
    assert_eq!(errors[0].matches("could not open").count(), 1, "said once: {}", errors[0]);
}
