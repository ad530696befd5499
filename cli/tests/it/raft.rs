//! `kumactl inspect control-planes` and `kumactl raft add-peer|remove-peer` against real kuma-cp
//! peers with the Raft store on loopback, plus the errors for control planes that form no
//! cluster and for bad flags.

use std::cell::Cell;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kuma_test_support::{bin_path, http_get, poll_until, KumaCp, KumaCpBuilder, KumaCpCluster};
use serde_json::Value;

use crate::support::{must_serve, Ctl};

/// How long a fresh cluster may take to elect a leader.
const ELECTION: Duration = Duration::from_secs(10);
/// How long the status may take to show a change (announcements, a killed peer, a new member).
const SETTLE: Duration = Duration::from_secs(10);

/// One row of the `inspect control-planes` table.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    id: String,
    address: String,
    role: String,
    term: String,
    applied: String,
    lag: String,
    contact: String,
    disk: String,
    leader: String,
    healthy: String,
    xds: String,
    api: String,
}

/// The rows of a control-planes table (no cell holds a space), after checking its header. The
/// table ends at the first blank line: a peer in no cluster yet adds a note after it.
fn must_read_rows(table: &str) -> Vec<Row> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID", "ADDRESS", "ROLE", "TERM", "APPLIED", "LAG", "CONTACT", "DISK", "LEADER",
            "HEALTHY", "XDS", "API"
        ],
        "{table}"
    );
    lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let cells: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            let [id, address, role, term, applied, lag, contact, disk, leader, healthy, xds, api] =
                <[String; 12]>::try_from(cells).unwrap_or_else(|_| panic!("12 cells: {line:?}"));
            Row { id, address, role, term, applied, lag, contact, disk, leader, healthy, xds, api }
        })
        .collect()
}

/// Runs `inspect control-planes` until `check` holds for its rows; returns them.
fn must_poll_rows(ctl: &Ctl, what: &str, check: impl Fn(&[Row]) -> bool) -> Vec<Row> {
    poll_until(SETTLE, what, || {
        let run = ctl.run(&["inspect", "control-planes"]);
        if run.code != Some(0) {
            return Err(format!("{run:?}"));
        }
        let rows = must_read_rows(&run.stdout);
        if check(&rows) {
            Ok(rows)
        } else {
            Err(run.stdout)
        }
    })
}

/// The status as `inspect control-planes -o json` prints it.
fn must_status_json(ctl: &Ctl) -> Value {
    let out = ctl.must_run(&["inspect", "control-planes", "-o", "json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The documented step for the peers' mutual TLS, `kuma-cp raft certs`: creates the cluster CA
/// in `dir` (or reuses the one there) and a certificate for each of `ids`.
fn must_issue_certs(dir: &Path, ids: &str) {
    let out = Command::new(bin_path("kuma-cp"))
        .args(["raft", "certs", "--ids", ids, "--dir"])
        .arg(dir)
        .output()
        .expect("run kuma-cp raft certs");
    assert!(out.status.success(), "kuma-cp raft certs: {}", String::from_utf8_lossy(&out.stderr));
}

/// `builder` with the CA of `dir` and the certificate of peer `id`.
fn with_peer_tls(builder: KumaCpBuilder, dir: &Path, id: usize) -> KumaCpBuilder {
    let file = |name: String| dir.join(name).to_str().expect("a UTF-8 path").to_string();
    builder
        .env("KUMA_STORE_RAFT_TLS_CA_FILE", &file("ca.crt".to_string()))
        .env("KUMA_STORE_RAFT_TLS_CERT_FILE", &file(format!("peer-{id}.crt")))
        .env("KUMA_STORE_RAFT_TLS_KEY_FILE", &file(format!("peer-{id}.key")))
}

fn all_healthy_and_announced(rows: &[Row]) -> bool {
    rows.iter().all(|r| r.healthy == "yes" && r.xds != "-" && r.api != "-")
}

fn ids(rows: &[Row]) -> Vec<&str> {
    rows.iter().map(|r| r.id.as_str()).collect()
}

#[test]
fn inspect_control_planes_shows_every_peer_with_exactly_one_leader_and_what_each_serves() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(ELECTION);
    let ctl = Ctl::for_cp(&cluster.peers[0]);

    // A peer started last may still be catching up when the others already list it.
    let rows = must_poll_rows(&ctl, "every peer healthy, announced and caught up", |rows| {
        rows.len() == 3 && all_healthy_and_announced(rows) && rows.iter().all(|r| r.lag == "0")
    });

    assert_eq!(ids(&rows), ["1", "2", "3"]);
    for (i, (row, peer)) in rows.iter().zip(&cluster.peers).enumerate() {
        let leads = i == leader;
        assert_eq!(row.address, format!("127.0.0.1:{}", peer.raft_port), "{row:?}");
        assert_eq!(row.role, if leads { "Leader" } else { "Follower" }, "{row:?}");
        assert_eq!(row.leader, if leads { "yes" } else { "no" }, "{row:?}");
        assert!(row.term.parse::<u64>().is_ok_and(|t| t >= 1), "{row:?}");
        assert!(row.applied.parse::<u64>().is_ok_and(|a| a >= 1), "{row:?}");
        assert!(row.lag.parse::<u64>().is_ok(), "{row:?}");
        assert_eq!(row.contact == "-", leads, "only followers tell their last contact: {row:?}");
        assert!(row.disk.ends_with("iB") || row.disk.ends_with('B'), "{row:?}");
        assert_eq!(row.xds, format!("127.0.0.1:{}", peer.xds_port), "{row:?}");
        assert_eq!(row.api, peer.api_url(), "{row:?}");
    }

    // -o json and -o yaml print the API's answer as it came.
    let status = must_status_json(&ctl);
    assert_eq!(status["this"], 1, "{status}");
    assert_eq!(status["leader"], leader as u64 + 1, "{status}");
    let members = status["members"].as_array().expect("members");
    assert_eq!(members.len(), 3, "{status}");
    assert!(members.iter().all(|m| m["membership"] == "voter"), "{status}");
    let yaml = ctl.must_run(&["inspect", "control-planes", "-o", "yaml"]);
    let from_yaml: Value = serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{e}: {yaml}"));
    assert_eq!(from_yaml["members"].as_array().map(Vec::len), Some(3), "{yaml}");
}

#[test]
fn a_killed_follower_is_listed_unhealthy_with_dashes_for_what_only_it_can_say() {
    let mut cluster = KumaCpCluster::must_start(3);
    let leader = cluster.must_wait_for_leader(ELECTION);
    let killed = (leader + 1) % 3;
    let ctl = Ctl::for_cp(&cluster.peers[leader]);
    must_poll_rows(&ctl, "every peer healthy and announced", |rows| {
        rows.len() == 3 && all_healthy_and_announced(rows)
    });

    cluster.peers[killed].signal("KILL");

    let rows = must_poll_rows(&ctl, "the killed follower unhealthy", |rows| {
        rows.len() == 3 && rows[killed].healthy == "no"
    });
    let row = &rows[killed];
    assert_eq!(
        (row.role.as_str(), row.term.as_str(), row.applied.as_str(), row.leader.as_str()),
        ("-", "-", "-", "no"),
        "{row:?}"
    );
    // What it announced is replicated state: it stays listed while the peer is down.
    assert_eq!(row.api, cluster.peers[killed].api_url(), "{row:?}");
    let survivors: Vec<&Row> = rows.iter().filter(|r| r.id != row.id).collect();
    assert!(survivors.iter().all(|r| r.healthy == "yes"), "{rows:?}");
    assert_eq!(survivors.iter().filter(|r| r.role == "Leader" && r.leader == "yes").count(), 1);
}

#[test]
fn a_peer_started_to_join_is_added_as_a_voter_and_once_removed_its_id_is_never_reused() {
    // A peer added later needs a certificate from the cluster's CA, so the cluster gets its
    // CA from a directory this test keeps (the cluster's own is private to it). The peers are
    // started in order: the n-th one customized is peer n.
    let certs = tempfile::tempdir().expect("a temp dir");
    must_issue_certs(certs.path(), "1,2,3");
    let started = Cell::new(0);
    let mut cluster = KumaCpCluster::must_start_with(3, |builder| {
        started.set(started.get() + 1);
        with_peer_tls(builder, certs.path(), started.get())
    });
    let leader = cluster.must_wait_for_leader(ELECTION);
    must_issue_certs(certs.path(), "4");
    let data = tempfile::tempdir().expect("a temp dir");
    let joiner = with_peer_tls(KumaCp::builder(), certs.path(), 4)
        .env("KUMA_STORE_TYPE", "raft")
        .env("KUMA_STORE_RAFT_NODE_ID", "4")
        .env("KUMA_STORE_RAFT_JOIN", "true")
        .env("KUMA_STORE_RAFT_PEERS", "")
        .env("KUMA_STORE_RAFT_DATA_DIR", data.path().to_str().expect("a UTF-8 path"))
        .must_start();
    let address = format!("127.0.0.1:{}", joiner.raft_port);
    // Membership changes go to the leader, whichever peer is asked: refusals come back from a
    // follower; changes are asked of the leader, whose answer already shows them.
    let on_leader = Ctl::for_cp(&cluster.peers[leader]);
    let on_follower = Ctl::for_cp(&cluster.peers[(leader + 1) % 3]);
    let on_joiner = Ctl::for_cp(&joiner);

    let waiting = on_joiner.must_run(&["inspect", "control-planes"]);
    assert!(waiting.contains("peer 4 is not a member of a cluster yet"), "{waiting}");
    let stderr = on_follower.run(&["raft", "add-peer", "--id", "2", "--address", &address]);
    assert_eq!(
        stderr.must_fail(),
        "Error: Could not process the request (peer 2 is already a member)\n"
    );

    let out = on_leader.must_run(&["raft", "add-peer", "--id", "4", "--address", &address]);
    let (confirmation, table) = out.split_once('\n').expect("a confirmation line");
    assert_eq!(confirmation, format!("added peer 4 ({address}) to the cluster as a voter"));
    let rows = must_read_rows(table);
    assert_eq!(ids(&rows), ["1", "2", "3", "4"], "{out}");
    assert_eq!(rows[3].address, address);

    // Every peer, the new one too, sees four healthy voters once it has caught up.
    for ctl in [&on_follower, &on_joiner] {
        must_poll_rows(ctl, "four healthy peers that announced", |rows| {
            rows.len() == 4 && all_healthy_and_announced(rows)
        });
    }
    let status = must_status_json(&on_joiner);
    assert_eq!(status["this"], 4, "{status}");
    let members = status["members"].as_array().expect("members");
    assert!(members.iter().all(|m| m["membership"] == "voter"), "{status}");
    assert_eq!(members[3]["status"]["voters"], serde_json::json!([1, 2, 3, 4]), "{status}");
    // It serves consistent reads (the default, since it is a voter with the log).
    let meshes = http_get(joiner.api_port, "/meshes").expect("the new peer answers");
    assert_eq!(meshes.status, 200, "{}", meshes.body);
    let meshes: Value = serde_json::from_str(&meshes.body).expect("a JSON list");
    assert_eq!(meshes["items"][0]["name"], "default", "{meshes}");

    let out = on_leader.must_run(&["raft", "remove-peer", "--id", "4"]);
    let (confirmation, table) = out.split_once('\n').expect("a confirmation line");
    assert_eq!(confirmation, "removed peer 4 from the cluster; its id can never be used again");
    assert_eq!(ids(&must_read_rows(table)), ["1", "2", "3"], "{out}");
    must_poll_rows(&on_follower, "three members again", |rows| ids(rows) == ["1", "2", "3"]);

    let stderr = on_follower.run(&["raft", "add-peer", "--id", "4", "--address", &address]);
    assert_eq!(
        stderr.must_fail(),
        "Error: Could not process the request (peer id 4 belonged to a removed peer and is never reused; pick a \
         new id)\n"
    );
    let stderr = on_leader.run(&["raft", "remove-peer", "--id", "4"]).must_fail();
    assert_eq!(stderr, "Error: Could not process the request (peer 4 is not a member)\n");
}

#[test]
fn a_control_plane_with_the_memory_store_says_it_does_not_replicate() {
    let cp = KumaCp::must_start();
    let ctl = Ctl::for_cp(&cp);
    let expected = format!(
        "Error: the Control Plane at {}/ does not replicate: it keeps its state in memory, on \
         its own; only control planes started with KUMA_STORE_TYPE=raft form a cluster\n",
        cp.api_url()
    );
    for args in [
        &["inspect", "control-planes"][..],
        &["inspect", "control-planes", "-o", "json"],
        &["raft", "add-peer", "--id", "4", "--address", "10.0.0.4:5683"],
        &["raft", "remove-peer", "--id", "2"],
    ] {
        assert_eq!(ctl.run(args).must_fail(), expected, "{args:?}");
    }
}

#[test]
fn membership_changes_sent_to_a_read_only_peer_say_to_use_a_writable_one() {
    let data = tempfile::tempdir().expect("a temp dir");
    let cp = KumaCp::builder()
        .env("KUMA_STORE_TYPE", "raft")
        .env("KUMA_STORE_RAFT_DATA_DIR", data.path().to_str().expect("a UTF-8 path"))
        .env("KUMA_API_SERVER_READ_ONLY", "true")
        .must_start();
    let ctl = Ctl::for_cp(&cp);
    // A cluster of one: it shows itself.
    let rows = must_poll_rows(&ctl, "the single peer leads", |rows| {
        rows.len() == 1 && rows[0].role == "Leader"
    });
    assert_eq!(rows[0].address, format!("127.0.0.1:{}", cp.raft_port));

    let stderr = ctl.run(&["raft", "remove-peer", "--id", "1"]).must_fail();
    assert_eq!(
        stderr,
        format!(
            "Error: the Control Plane at {}/ shows the cluster but does not change its members, \
             as when its API server is read-only (KUMA_API_SERVER_READ_ONLY=true); send the \
             change to a writable peer\n",
            cp.api_url()
        )
    );
}

#[test]
fn a_membership_change_without_a_leader_prints_the_apis_error() {
    let url = must_serve(
        503,
        "application/json",
        r#"{"title":"Service Unavailable","details":"no leader elected"}"#.to_string(),
    );
    let ctl = Ctl::for_url(&url);
    let stderr = ctl.run(&["raft", "add-peer", "--id", "4", "--address", "10.0.0.4:5683"]);
    assert_eq!(stderr.must_fail(), "Error: Service Unavailable (no leader elected)\n");
}

#[test]
fn bad_peer_ids_and_addresses_are_usage_errors_that_say_what_is_wrong() {
    let ctl = Ctl::new();
    for (args, says) in [
        (
            &["raft", "add-peer", "--id", "0", "--address", "10.0.0.4:5683"][..],
            "peer ids start at 1",
        ),
        (
            &["raft", "add-peer", "--id", "four", "--address", "10.0.0.4:5683"],
            "\"four\" is not a peer id",
        ),
        (&["raft", "add-peer", "--id", "4", "--address", "10.0.0.4"], "the port is missing"),
        (&["raft", "add-peer", "--id", "4", "--address", "http://10.0.0.4:5683"], "not a URL"),
        (&["raft", "add-peer", "--id", "4", "--address", "10.0.0.4:0"], "from 1 to 65535"),
        (&["raft", "add-peer", "--id", "4"], "--address <HOST:PORT>"),
        (&["raft", "remove-peer"], "--id <ID>"),
        (&["raft", "remove-peer", "--id", "0"], "peer ids start at 1"),
    ] {
        let run = ctl.run(args);
        assert_eq!(run.code, Some(2), "{args:?}: {run:#?}");
        assert!(run.stderr.contains(says), "{args:?} should say {says:?}: {}", run.stderr);
    }
}

#[test]
fn the_cluster_commands_are_in_help_and_shell_completion() {
    let ctl = Ctl::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = ctl.must_run(&["completion", shell]);
        for word in ["control-planes", "add-peer", "remove-peer"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
    }
    let help = ctl.must_run(&["raft", "add-peer", "--help"]);
    assert!(help.contains("KUMA_STORE_RAFT_JOIN=true"), "{help}");
    assert!(help.contains("kumactl raft add-peer --id 4 --address 10.0.0.4:5683"), "{help}");
}
