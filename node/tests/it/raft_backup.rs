//! Backup, restore and lost-quorum recovery of the Raft store with real kuma-cp peers, driven as an
//! operator drives them: tokens (loopback is not admin here), `kumactl raft snapshot save`,
//! `kuma-cp raft restore`, `kuma-cp run --force-new-cluster`, `kumactl raft add-peer`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kuma_test_support::{
    bin_path, free_port, http_request_as, try_poll_until, KumaCp, KumaCpCluster,
};
use serde_json::Value;

use crate::support::Kumactl;

const UNTRUSTED_LOOPBACK: (&str, &str) = ("KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN", "false");
const CONVERGE: Duration = Duration::from_secs(30);
/// At most this many writes of the background load: with the rest they stay on one page of 1000.
const MAX_LOAD: usize = 800;

fn request(port: u16, method: &str, path: &str, body: Option<&str>, token: &str) -> (u16, String) {
    match http_request_as(port, method, path, body, Some(token)) {
        Ok(reply) => (reply.status, reply.body),
        Err(e) => (0, e.to_string()),
    }
}

/// The admin token made at first start, read on a peer's own host.
fn admin_token(port: u16) -> String {
    try_poll_until(CONVERGE, || match http_request_as(port, "GET", "/tokens/admin", None, None) {
        Ok(reply) if reply.status == 200 => Ok(reply.body.trim().to_string()),
        other => Err(format!("{other:?}")),
    })
    .expect("the admin token")
}

fn put_mesh(port: u16, name: &str, token: &str) -> u16 {
    let body = format!(r#"{{"type":"Mesh","name":"{name}"}}"#);
    request(port, "PUT", &format!("/meshes/{name}"), Some(&body), token).0
}

/// The names of the meshes a peer holds: its own copy (`stale`) or after a consistent read.
fn meshes(port: u16, token: &str, stale: bool) -> Result<BTreeSet<String>, String> {
    let path = if stale { "/meshes?size=1000&consistency=stale" } else { "/meshes?size=1000" };
    let (status, body) = request(port, "GET", path, None, token);
    if status != 200 {
        return Err(format!("GET {path} on {port}: {status} {body}"));
    }
    let list: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
    Ok(list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect())
}

fn missing<'a>(expected: &'a [String], held: &BTreeSet<String>) -> Vec<&'a String> {
    expected.iter().filter(|n| !held.contains(*n)).collect()
}

fn kuma_cp(args: &[&str]) -> Output {
    Command::new(bin_path("kuma-cp")).args(args).output().expect("kuma-cp runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kuma-cp raft restore` of `file` must fail with one line on standard error that says `why`.
fn must_refuse_restore(file: &Path, data_dir: &Path, why: &str) {
    let out = kuma_cp(&[
        "raft",
        "restore",
        "--from",
        file.to_str().unwrap(),
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--node-id",
        "1",
        "--peers",
        "1=127.0.0.1:5683",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("Error: could not restore from ") && stderr.contains(why),
        "{stderr}"
    );
    assert!(!data_dir.exists(), "nothing is written for a refused file");
}

/// Index, resource count and size from `kumactl raft snapshot save`'s line.
fn saved_numbers(line: &str) -> (u64, u64, u64) {
    let number =
        |text: &str| text.parse::<u64>().unwrap_or_else(|_| panic!("{text:?} in {line:?}"));
    let rest = line.strip_prefix("saved the snapshot at index ").expect(line);
    let (index, rest) = rest.split_once(" (term ").expect(line);
    let (_, rest) = rest.split_once("): ").expect(line);
    let (resources, rest) = rest.split_once(" resources, ").expect(line);
    let (bytes, _) = rest.split_once(" bytes, ").expect(line);
    (number(index), number(resources), number(bytes))
}

#[test]
fn a_snapshot_saved_on_a_follower_under_load_restores_into_a_new_cluster_with_every_acknowledged_write(
) {
    let mut old =
        KumaCpCluster::must_start_with(3, |b| b.env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1));
    let leader = old.must_wait_for_leader(CONVERGE);
    let follower = (leader + 1) % 3;
    let admin = admin_token(old.peers[leader].api_port);
    let ports: Vec<u16> = old.peers.iter().map(|p| p.api_port).collect();
    let mut acknowledged: Vec<String> = Vec::new();
    for i in 0..30 {
        let name = format!("before-{i}");
        assert_eq!(put_mesh(ports[i % 3], &name, &admin), 201);
        acknowledged.push(name);
    }

    // Writes go on, through every peer, while the snapshot is saved; each acknowledged one is
    // recorded with the moment its answer came.
    let stop = Arc::new(AtomicBool::new(false));
    let load_acks: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let load = {
        let (stop, acks, token, ports) = (stop.clone(), load_acks.clone(), admin.clone(), ports);
        std::thread::spawn(move || {
            for n in 0..MAX_LOAD {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let name = format!("load-{n}");
                if put_mesh(ports[n % 3], &name, &token) == 201 {
                    acks.lock().unwrap().push((name, Instant::now()));
                }
            }
        })
    };
    try_poll_until(CONVERGE, || (load_acks.lock().unwrap().len() >= 20).then_some(()).ok_or(()))
        .expect("the load is acknowledged");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("backup.snap");
    let ctl = Kumactl::new();
    let token_conf = format!("token={admin}");
    ctl.must_add(
        &old.peers[follower].api_url(),
        &["--auth-type", "tokens", "--auth-conf", &token_conf],
    );
    let save_started = Instant::now();
    let printed = ctl.must_succeed(&["raft", "snapshot", "save", file.to_str().unwrap()], "");
    let save_took = save_started.elapsed();
    let load_ran_throughout = !load.is_finished();
    stop.store(true, Ordering::SeqCst);
    load.join().unwrap();
    assert!(load_ran_throughout, "the load ended before the save did");
    let during = load_acks.lock().unwrap().iter().filter(|(_, at)| *at >= save_started).count();
    acknowledged.extend(
        load_acks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, at)| *at < save_started)
            .map(|(n, _)| n.clone()),
    );
    assert_eq!(printed.lines().count(), 1, "{printed}");
    let (index, resources, size) = saved_numbers(&printed);
    assert!(printed.contains("sha256 ") && printed.ends_with(&format!("{}\n", file.display())));
    assert_eq!(std::fs::metadata(&file).unwrap().len(), size, "{printed}");
    println!(
        "saved on follower {} in {save_took:?}: {printed}  ({} writes acknowledged before, {during} during the save)",
        follower + 1,
        acknowledged.len()
    );
    // Every acknowledged mesh, the default mesh and the secrets the leader made.
    assert!(resources as usize > acknowledged.len(), "{printed}");

    // A viewer may not take one: it holds every secret.
    let body = r#"{"name":"bob","groups":["mesh-system:viewer"],"validFor":"1h"}"#;
    let (status, viewer) = request(ports_of(&old)[0], "POST", "/tokens/user", Some(body), &admin);
    assert_eq!(status, 200, "{viewer}");
    let viewer_ctl = Kumactl::new();
    let viewer_conf = format!("token={}", viewer.trim());
    viewer_ctl.must_add(
        &old.peers[follower].api_url(),
        &["--auth-type", "tokens", "--auth-conf", &viewer_conf],
    );
    let err = viewer_ctl.must_fail(&["raft", "snapshot", "save", "viewer.snap"], "");
    assert!(err.contains("bob may not save a snapshot"), "{err}");
    drop(old);

    // A changed or cut copy is refused with one line, and nothing is written.
    let bytes = std::fs::read(&file).unwrap();
    let mut changed = bytes.clone();
    let at = changed.len() - 10;
    changed[at] ^= 0x20;
    let tampered = dir.path().join("tampered.snap");
    std::fs::write(&tampered, &changed).unwrap();
    must_refuse_restore(&tampered, &dir.path().join("t-data"), "does not match its checksum");
    let cut = dir.path().join("cut.snap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    must_refuse_restore(&cut, &dir.path().join("c-data"), "the snapshot is truncated");

    // A new cluster of three, on new ports and new data directories, from the file.
    let from = file.to_str().unwrap().to_string();
    let cluster_ids = Mutex::new(BTreeSet::new());
    let mut restored = KumaCpCluster::must_start_prepared(
        3,
        |id, data_dir, peers| {
            let id = id.to_string();
            let out = kuma_cp(&[
                "raft",
                "restore",
                "--from",
                &from,
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--node-id",
                &id,
                "--peers",
                peers,
            ]);
            let stdout = text(&out.stdout);
            assert!(out.status.success(), "{}", text(&out.stderr));
            assert_eq!(stdout.lines().count(), 1, "{stdout}");
            assert!(stdout.starts_with(&format!("restored index {index} ")), "{stdout}");
            let cluster = stdout.split("new cluster ").nth(1).and_then(|s| s.split(';').next());
            cluster_ids.lock().unwrap().insert(cluster.unwrap().to_string());
        },
        |b| b.env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1),
    );
    assert_eq!(cluster_ids.lock().unwrap().len(), 1, "one new cluster id for every peer");
    let new_leader = restored.must_wait_for_leader(CONVERGE);
    for (i, peer) in restored.peers.iter().enumerate() {
        let held = meshes(peer.api_port, &admin, true).unwrap();
        assert!(
            missing(&acknowledged, &held).is_empty(),
            "restored peer {} lacks {:?}",
            i + 1,
            missing(&acknowledged, &held)
        );
    }
    // It takes writes, with the old cluster's admin token: its signing key was restored too.
    let writer = restored.peers[(new_leader + 1) % 3].api_port;
    assert_eq!(put_mesh(writer, "after-restore", &admin), 201);
    for peer in &restored.peers {
        let (status, body) = request(peer.api_port, "GET", "/meshes/after-restore", None, &admin);
        assert_eq!(status, 200, "{body}");
    }
}

fn ports_of(cluster: &KumaCpCluster) -> Vec<u16> {
    cluster.peers.iter().map(|p| p.api_port).collect()
}

#[test]
fn a_survivor_forced_into_a_new_cluster_keeps_every_acknowledged_write_and_fresh_peers_catch_up() {
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1)
            // A write without a majority fails within the HTTP client's patience.
            .env("KUMA_STORE_RAFT_WRITE_TIMEOUT", "2s")
    });
    let leader = cluster.must_wait_for_leader(CONVERGE);
    let admin = admin_token(cluster.peers[leader].api_port);
    let ports = ports_of(&cluster);
    let mut acknowledged = Vec::new();
    for i in 0..40 {
        let name = format!("before-{i}");
        assert_eq!(put_mesh(ports[i % 3], &name, &admin), 201);
        acknowledged.push(name);
    }
    // The survivor is a follower: the leader dies with the other one. A forced start keeps what
    // the survivor holds, so the test lets it catch up first.
    let survivor = (leader + 1) % 3;
    let survivor_id = survivor as u64 + 1;
    let api = ports[survivor];
    try_poll_until(CONVERGE, || {
        let held = meshes(api, &admin, true)?;
        missing(&acknowledged, &held).is_empty().then_some(()).ok_or("catching up".to_string())
    })
    .expect("the survivor holds every acknowledged write");
    for (i, peer) in cluster.peers.iter_mut().enumerate() {
        if i != survivor {
            peer.signal("KILL");
            try_poll_until(CONVERGE, || (!peer.is_running()).then_some(()).ok_or(()))
                .expect("the peer dies");
        }
    }
    let (status, body) =
        request(api, "PUT", "/meshes/alone", Some(r#"{"type":"Mesh","name":"alone"}"#), &admin);
    assert_eq!(status, 503, "without a majority no write is acknowledged: {body}");
    // Nor is a snapshot served that might miss acknowledged writes; the answer says what to do.
    let ctl = Kumactl::new();
    let token_conf = format!("token={admin}");
    ctl.must_add(
        &cluster.peers[survivor].api_url(),
        &["--auth-type", "tokens", "--auth-conf", &token_conf],
    );
    let backup = tempfile::tempdir().unwrap();
    let file = backup.path().join("no-quorum.snap");
    let err = ctl.must_fail(&["raft", "snapshot", "save", file.to_str().unwrap()], "");
    assert!(
        err.contains("could not confirm with a leader that its copy is current")
            && err.contains("once a majority of the peers is up"),
        "{err}"
    );
    assert!(!file.exists());

    let forced_at = Instant::now();
    cluster.peers[survivor].must_restart_with(|b| b.arg("--force-new-cluster"));
    let log = cluster.peers[survivor].log();
    assert!(log.contains("this peer is now the only member of its cluster"), "{log}");
    assert!(log.contains("Remove --force-new-cluster before this peer's next restart"), "{log}");
    let status = try_poll_until(CONVERGE, || {
        let (code, body) = request(api, "GET", "/status/raft", None, &admin);
        let status: Value =
            serde_json::from_str(&body).map_err(|e| format!("{code} {body}: {e}"))?;
        (status["leader"] == survivor_id).then_some(status.clone()).ok_or(status)
    })
    .expect("the survivor leads");
    let led_after = forced_at.elapsed();
    let members: Vec<u64> =
        status["members"].as_array().unwrap().iter().filter_map(|m| m["id"].as_u64()).collect();
    assert_eq!(members, [survivor_id], "{status}");
    let held = meshes(api, &admin, false).unwrap();
    assert!(missing(&acknowledged, &held).is_empty(), "lost {:?}", missing(&acknowledged, &held));
    assert_eq!(put_mesh(api, "after-force", &admin), 201);
    println!(
        "the forced survivor led {led_after:?} after its restart began, holding {} meshes",
        held.len()
    );

    // Two fresh peers, with new ids and certificates from the same CA, join and catch up.
    let certs = cluster.certs_dir();
    let out = kuma_cp(&["raft", "certs", "--dir", certs.to_str().unwrap(), "--ids", "4,5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let data = tempfile::tempdir().unwrap();
    let file = |name: String| certs.join(name).to_str().unwrap().to_string();
    let survivor_raft = format!("{survivor_id}=127.0.0.1:{}", cluster.peers[survivor].raft_port);
    let mut fresh = Vec::new();
    for id in [4u64, 5] {
        let peer_ports: [u16; 7] = std::array::from_fn(|_| free_port());
        let address = format!("127.0.0.1:{}", peer_ports[5]);
        let peer = KumaCp::builder()
            .ports(peer_ports)
            .env(UNTRUSTED_LOOPBACK.0, UNTRUSTED_LOOPBACK.1)
            .env("KUMA_STORE_TYPE", "raft")
            .env("KUMA_STORE_RAFT_NODE_ID", &id.to_string())
            .env("KUMA_STORE_RAFT_JOIN", "true")
            .env("KUMA_STORE_RAFT_PEERS", &format!("{survivor_raft},{id}={address}"))
            .env(
                "KUMA_STORE_RAFT_DATA_DIR",
                data.path().join(format!("peer-{id}")).to_str().unwrap(),
            )
            .env("KUMA_STORE_RAFT_TLS_CA_FILE", &file("ca.crt".into()))
            .env("KUMA_STORE_RAFT_TLS_CERT_FILE", &file(format!("peer-{id}.crt")))
            .env("KUMA_STORE_RAFT_TLS_KEY_FILE", &file(format!("peer-{id}.key")))
            .must_start();
        let printed = ctl.must_succeed(
            &["raft", "add-peer", "--id", &id.to_string(), "--address", &address],
            "",
        );
        assert!(printed.starts_with(&format!("added peer {id}")), "{printed}");
        fresh.push(peer);
    }
    let expected = meshes(api, &admin, false).unwrap();
    for peer in &fresh {
        let held = try_poll_until(CONVERGE, || {
            let held = meshes(peer.api_port, &admin, true)?;
            (held == expected).then_some(held.clone()).ok_or(format!(
                "{} of {}",
                held.len(),
                expected.len()
            ))
        })
        .unwrap_or_else(|e| panic!("a fresh peer did not catch up ({e}):\n{}", peer.log()));
        assert_eq!(held.len(), expected.len());
    }
    let (_, body) = request(api, "GET", "/status/raft", None, &admin);
    let status: Value = serde_json::from_str(&body).unwrap();
    let mut voters: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["membership"] == "voter")
        .filter_map(|m| m["id"].as_u64())
        .collect();
    voters.sort();
    assert_eq!(voters, [survivor_id, 4, 5], "{status}");
}
