//! Unit tests of `cluster.rs`.

use super::*;
use kuma_model::rest::ErrorBody;

fn member(id: u64, role: &str, applied: u64) -> Value {
    json!({
        "id": id, "raftAddress": format!("127.0.0.1:{}683", 20 + id), "membership": "voter",
        "status": {
            "id": id, "raftAddress": format!("127.0.0.1:{}683", 20 + id), "role": role,
            "term": 3, "leader": 2, "lastLogIndex": applied, "lastAppliedIndex": applied,
            "voters": [1, 2, 3], "learners": [],
            "millisSinceLeaderContact": if role == "Leader" { None } else { Some(40 + id * 1000) },
            "diskBytes": 3 * 1024 * 1024 + id * 1024 * 100
        },
        "healthy": true, "lag": 10 - applied,
        "serves": {
            "id": id, "instanceId": format!("host:{}678", 20 + id),
            "xdsAddress": format!("127.0.0.1:{}678", 20 + id),
            "apiUrl": format!("http://127.0.0.1:{}681", 20 + id),
            "bootstrapUrl": format!("http://127.0.0.1:{}682", 20 + id)
        }
    })
}

#[test]
fn every_member_is_a_row_by_id_with_the_leader_marked() {
    let answer = json!({
        "this": 1, "leader": 2, "term": 3,
        "members": [member(2, "Leader", 10), member(1, "Follower", 10), member(3, "Follower", 9)]
    });
    let table = ClusterStatus::from_answer(&answer).unwrap().table();
    assert_eq!(
        table.to_string(),
        "ID   ADDRESS           ROLE       TERM   APPLIED   LAG   CONTACT   DISK     LEADER   HEALTHY   XDS               API\n\
         1    127.0.0.1:21683   Follower   3      10        0     1.0s      3.1MiB   no       yes       127.0.0.1:21678   http://127.0.0.1:21681\n\
         2    127.0.0.1:22683   Leader     3      10        0     -         3.2MiB   yes      yes       127.0.0.1:22678   http://127.0.0.1:22681\n\
         3    127.0.0.1:23683   Follower   3      9         1     3.0s      3.3MiB   no       yes       127.0.0.1:23678   http://127.0.0.1:23681\n"
    );
}

#[test]
fn a_member_that_did_not_answer_or_announce_shows_dashes_and_is_unhealthy() {
    let answer = json!({
        "this": 1, "leader": null, "term": 4,
        "members": [
            member(1, "Candidate", 10),
            {"id": 2, "raftAddress": "10.0.0.2:5683", "membership": "voter",
             "status": null, "healthy": false, "serves": null},
            {"id": 3, "raftAddress": "10.0.0.3:5683", "membership": "learner",
             "status": {"id": 3, "raftAddress": "10.0.0.3:5683", "role": "Learner", "term": 4,
                        "leader": null, "lastLogIndex": null, "lastAppliedIndex": null,
                        "voters": [1, 2], "learners": [3]},
             "healthy": true, "serves": null}
        ]
    });
    let table = ClusterStatus::from_answer(&answer).unwrap().table().to_string();
    let rows: Vec<Vec<&str>> =
        table.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[1], ["2", "10.0.0.2:5683", "-", "-", "-", "-", "-", "-", "no", "no", "-", "-"]);
    assert_eq!(
        rows[2],
        ["3", "10.0.0.3:5683", "Learner", "4", "-", "-", "-", "0B", "no", "yes", "-", "-"]
    );
    assert!(rows.iter().all(|r| r[r.len() - 4] == "no"), "no leader, no row marked: {table}");
}

#[test]
fn a_peer_waiting_to_join_says_how_to_add_it() {
    let status =
        ClusterStatus::from_answer(&json!({"this": 4, "leader": null, "term": 0, "members": []}))
            .unwrap();
    let mut out = Vec::new();
    status.print(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("ID   ADDRESS   ROLE"), "{text}");
    assert!(text.contains("peer 4 is not a member of a cluster yet"), "{text}");
    assert!(text.contains("kumactl raft add-peer --id 4 --address HOST:PORT"), "{text}");
}

#[test]
fn an_answer_that_is_not_a_cluster_status_names_what_was_read() {
    let err = ClusterStatus::from_answer(&json!({"members": "three"})).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("could not read the cluster status from the API: "), "{text}");
}

#[test]
fn a_missing_status_api_means_the_control_plane_does_not_replicate() {
    let client = ApiClient::new("http://cp:5681").unwrap();
    let api_error = |status: u16| ClientError::Api {
        status,
        body: ErrorBody { title: "t".into(), details: "d".into(), causes: vec![] },
    };
    let text = not_replicated(&client, api_error(404)).to_string();
    assert_eq!(
        text,
        "the Control Plane at http://cp:5681/ does not replicate: it keeps its state in memory, \
         on its own; only control planes started with KUMA_STORE_TYPE=raft form a cluster"
    );
    assert_eq!(not_replicated(&client, api_error(503)).to_string(), "t (d)");
}

#[test]
fn adding_a_peer_that_does_not_answer_warns_that_it_counts_as_a_voter_that_is_down() {
    let mut answer = json!({
        "this": 1, "leader": 1, "term": 3,
        "members": [member(1, "Leader", 10), member(2, "Follower", 10), member(3, "Follower", 10),
                    {"id": 4, "raftAddress": "10.0.0.4:5683", "membership": "voter",
                     "status": null, "healthy": false, "serves": null}]
    });
    let mut out = Vec::new();
    let status = ClusterStatus::from_answer(&answer).unwrap();
    status.print_added(4, "10.0.0.4:5683", &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("added peer 4 (10.0.0.4:5683) to the cluster as a voter\nID "));
    let warning = text.lines().last().unwrap();
    assert!(warning.starts_with("peer 4 does not answer at 10.0.0.4:5683: "), "{text}");
    assert!(warning.contains("kumactl raft remove-peer --id 4"), "{text}");

    answer["members"][3] = member(4, "Follower", 10);
    let mut out = Vec::new();
    let status = ClusterStatus::from_answer(&answer).unwrap();
    status.print_added(4, "127.0.0.1:24683", &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(!text.contains("does not answer"), "{text}");
    assert_eq!(
        text.lines().count(),
        8,
        "confirmation, header, four rows, a blank line, the failure tolerance: {text}"
    );
}

#[test]
fn the_cluster_says_how_many_voters_may_fail_who_trails_and_who_has_a_problem() {
    let mut trailing = member(3, "Follower", 7);
    trailing["status"]["problem"] = json!("the disk holding the Raft data is full");
    let answer = json!({
        "this": 1, "leader": 2, "term": 3, "failureTolerance": 1,
        "members": [member(2, "Leader", 10), member(1, "Follower", 10), trailing]
    });
    let mut out = Vec::new();
    ClusterStatus::from_answer(&answer).unwrap().print(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("failure tolerance: 1 of 3 voters may fail now\n"), "{text}");
    assert!(text.contains("peer 3 trails the leader by 3 entries\n"), "{text}");
    assert!(text.contains("peer 3: the disk holding the Raft data is full\n"), "{text}");
    assert!(!text.contains("peer 1 trails"), "{text}");

    let none_to_spare = json!({"this": 1, "leader": 1, "term": 3, "failureTolerance": 0,
                               "members": [member(1, "Leader", 10), member(2, "Follower", 10)]});
    let mut out = Vec::new();
    ClusterStatus::from_answer(&none_to_spare).unwrap().print(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("0 of 2 voters may fail now: one more failure stops every write"),
        "{text}"
    );
}

#[test]
fn durations_and_sizes_read_as_people_read_them() {
    assert_eq!(human_millis(340), "340ms");
    assert_eq!(human_millis(1250), "1.2s");
    assert_eq!(human_millis(185_000), "3m5s");
    assert_eq!(human_bytes(900), "900B");
    assert_eq!(human_bytes(12 * 1024), "12KiB");
    assert_eq!(human_bytes(3 * 1024 * 1024 + 400 * 1024), "3.4MiB");
}
