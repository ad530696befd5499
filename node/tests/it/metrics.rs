//! `GET /metrics` on the diagnostics port of a 3-peer Raft cluster with a real kuma-dp and Envoy
//! connected: the series exist and their values follow what happened (a stream, ACKs, delivery
//! times, API requests, Raft roles, forwarded writes, fsyncs).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kuma_test_support::{
    bin_path, http_get, tcp_roundtrip, try_poll_until, EchoServer, KumaCp, KumaCpCluster, PgServer,
    Proc, PG_DATABASE, PG_PASSWORD, PG_USER,
};

use crate::support::{dataplane, must_create_backend_and_redis, must_spawn_sidecar, put};

const CONVERGE: Duration = Duration::from_secs(30);

/// One sample of the Prometheus text format: name, labels, value.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the sample lines of Prometheus' text format (comments skipped); `Err` on a line that
/// is not one.
fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let bad = || format!("not a sample line: {line:?}");
        let (series, value) = line.rsplit_once(' ').ok_or_else(bad)?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad())?,
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').ok_or_else(bad)?)?),
        };
        samples.push(Sample { name: name.to_string(), labels, value });
    }
    Ok(samples)
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").ok_or_else(|| format!("labels: {text:?}"))?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err(format!("labels: {text:?}")),
                },
                Some((_, c)) => value.push(c),
                None => return Err(format!("unterminated label value: {text:?}")),
            }
        };
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

/// The sum of the samples named `name` whose labels include every pair of `with`.
fn sum(samples: &[Sample], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
        .sum()
}

fn has(samples: &[Sample], name: &str) -> bool {
    samples.iter().any(|s| s.name == name)
}

fn scrape(diagnostics_port: u16) -> Result<Vec<Sample>, String> {
    let reply = http_get(diagnostics_port, "/metrics").map_err(|e| e.to_string())?;
    if reply.status != 200 {
        return Err(format!("{} {}", reply.status, reply.body));
    }
    parse(&reply.body)
}

const ACK: &[(&str, &str)] = &[("confirmation", "ACK")];
const ITEM_ROUTE: &str = "/meshes/{mesh}/{collection}/{name}";
const EDS: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";

#[test]
fn metrics_follow_streams_acks_deliveries_api_requests_and_raft() {
    // A snapshot every 5 entries: the setup and the writes below make some.
    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
            .env("KUMA_STORE_RAFT_SNAPSHOT_ENTRIES", "5")
    });
    let leader = cluster.must_wait_for_leader(Duration::from_secs(15));
    let follower = (leader + 1) % 3;
    let api = cluster.peers[leader].api_port;
    let diagnostics: Vec<u16> = cluster.peers.iter().map(|p| p.diagnostics_port).collect();

    // Raft: every peer has a term, exactly one says it leads, and it is the agreed leader.
    let samples: Vec<Vec<Sample>> = diagnostics.iter().map(|p| scrape(*p).unwrap()).collect();
    for (i, s) in samples.iter().enumerate() {
        assert!(sum(s, "raft_term", &[]) >= 1.0, "peer {i} has no term");
        assert!(sum(s, "raft_fsync_duration_seconds_count", &[]) > 0.0, "peer {i}: no fsync");
        assert!(has(s, "raft_commit_index") && has(s, "raft_applied_index"), "peer {i}");
    }
    let leaders: Vec<usize> =
        (0..3).filter(|i| sum(&samples[*i], "raft_state", &[("state", "leader")]) == 1.0).collect();
    assert_eq!(leaders, vec![leader], "the peers that report the leader role");

    let (first, second) = (EchoServer::start("a:"), EchoServer::start("b:"));
    let outbound = must_create_backend_and_redis(api, &first);
    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&cluster, leader, "backend-1", dir.path());
    try_poll_until(CONVERGE, || match tcp_roundtrip(outbound, b"ping") {
        Ok(reply) if reply == b"a:ping" => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no traffic through the sidecar ({e}):\n{}", sidecar.log()));

    // Exactly one ADS stream, on one peer (the one the Envoy picked among the bootstrap's).
    let holder = try_poll_until(CONVERGE, || {
        let streams: Vec<f64> = diagnostics
            .iter()
            .map(|p| scrape(*p).map(|s| sum(&s, "xds_streams_active", &[("api", "ads")])))
            .collect::<Result<_, _>>()?;
        match streams.iter().filter(|n| **n == 1.0).count() {
            1 if streams.iter().sum::<f64>() == 1.0 => {
                Ok(streams.iter().position(|n| *n == 1.0).unwrap())
            }
            _ => Err(format!("ADS streams by peer: {streams:?}")),
        }
    })
    .expect("one connected ADS stream");
    let before = scrape(diagnostics[holder]).unwrap();
    let acks_before = sum(&before, "xds_requests_received", ACK);
    assert!(acks_before >= 1.0, "the stream's first responses were ACKed");
    let delivered_before = sum(&before, "xds_delivery_count", &[]);
    let delivery_ms_before = sum(&before, "xds_delivery_sum", &[]);
    let follower_before = scrape(diagnostics[follower]).unwrap();
    let applied_before = sum(&follower_before, "raft_applied_index", &[]);
    let forwarded_before = sum(&follower_before, "raft_forwarded_writes_total", &[]);

    // A change written through a follower: forwarded to the leader, then pushed to the Envoy.
    let written = Instant::now();
    put(
        cluster.peers[follower].api_port,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", &format!("127.0.0.1:{}:6379", second.port), "redis", None),
    );
    let eds = [("type_url", EDS)];
    let after = try_poll_until(CONVERGE, || {
        let s = scrape(diagnostics[holder])?;
        let acks = sum(&s, "xds_requests_received", ACK);
        let delivered = sum(&s, "xds_delivery_count", &eds);
        if acks > acks_before && delivered > sum(&before, "xds_delivery_count", &eds) {
            Ok(s)
        } else {
            Err(format!("ACKs {acks_before} -> {acks}, EDS deliveries {delivered}"))
        }
    })
    .expect("the new endpoint is ACKed and its delivery timed");
    let within = written.elapsed().as_secs_f64() * 1000.0;
    let deliveries = sum(&after, "xds_delivery_count", &[]) - delivered_before;
    let delivery_ms = sum(&after, "xds_delivery_sum", &[]) - delivery_ms_before;
    assert!(
        delivery_ms > 0.0 && delivery_ms <= deliveries * within,
        "{deliveries} deliveries took {delivery_ms} ms in all, within {within} ms of the write"
    );
    assert!(sum(&after, "xds_generation_count", &[]) >= 1.0, "configs were generated");
    assert!(sum(&after, "xds_responses_sent", &[]) >= acks_before);

    // The follower forwarded the write, applied it, and counted the API request by route.
    let follower_after = try_poll_until(CONVERGE, || {
        let s = scrape(diagnostics[follower])?;
        match sum(&s, "raft_applied_index", &[]) > applied_before {
            true => Ok(s),
            false => Err("the follower's applied index did not grow".to_string()),
        }
    })
    .unwrap();
    assert!(
        sum(&follower_after, "raft_forwarded_writes_total", &[]) > forwarded_before,
        "the write through the follower was forwarded"
    );
    let put_item = [("handler", ITEM_ROUTE), ("method", "PUT"), ("code", "201")];
    assert_eq!(
        sum(&follower_after, "api_server_http_request_duration_seconds_count", &put_item),
        1.0,
        "the follower served one PUT of an item"
    );
    assert!(
        sum(&follower_after, "store_count", &[("operation", "create"), ("store_type", "raft")])
            >= 1.0
    );
    let leader_now = scrape(diagnostics[leader]).unwrap();
    assert_eq!(
        sum(&leader_now, "api_server_http_request_duration_seconds_count", &put_item),
        2.0,
        "the leader served the two PUTs sent to it"
    );
    assert!(
        leader_now
            .iter()
            .filter(|s| s.name == "api_server_http_request_duration_seconds_count")
            .all(|s| !s.labels["handler"].contains("redis")),
        "handlers are route templates, never raw paths"
    );
    assert!(
        sum(&leader_now, "raft_write_batch_size_count", &[]) >= 3.0,
        "every write is a command"
    );
    try_poll_until(CONVERGE, || {
        let s = scrape(diagnostics[leader])?;
        let (built, bytes) =
            (sum(&s, "raft_snapshots_total", &[]), sum(&s, "raft_snapshot_size_bytes", &[]));
        match built >= 1.0 && bytes > 0.0 {
            true => Ok(()),
            false => Err(format!("{built} snapshots, the latest {bytes} bytes")),
        }
    })
    .expect("the leader stored a snapshot and its size");
}

/// Polls `/metrics` of `cp` until it has timed a `create` on `store_type` (the default mesh,
/// created by the control plane itself) and a `get` (the API's read of it).
fn must_time_store_operations(cp: &KumaCp, store_type: &str) {
    let reply = http_get(cp.api_port, "/meshes/default").expect("the API answers");
    assert_eq!(reply.status, 200, "{}", reply.body);
    try_poll_until(CONVERGE, || {
        let s = scrape(cp.diagnostics_port)?;
        let count = |op| sum(&s, "store_count", &[("operation", op), ("store_type", store_type)]);
        match (count("create"), count("get")) {
            (c, g) if c >= 1.0 && g >= 1.0 => Ok(()),
            other => Err(format!("{store_type} create and get timed: {other:?}")),
        }
    })
    .unwrap_or_else(|e| panic!("{e}:\n{}", cp.log()));
}

#[test]
fn a_memory_store_times_its_operations() {
    let cp = KumaCp::must_start();
    try_poll_until(CONVERGE, || match http_get(cp.api_port, "/meshes/default") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .expect("the default mesh");
    must_time_store_operations(&cp, "memory");
}

#[test]
fn a_postgres_store_times_its_operations() {
    let pg = PgServer::must_start();
    let env = [
        ("KUMA_STORE_TYPE", "postgres".to_string()),
        ("KUMA_STORE_POSTGRES_HOST", pg.host().to_string()),
        ("KUMA_STORE_POSTGRES_PORT", pg.port().to_string()),
        ("KUMA_STORE_POSTGRES_USER", PG_USER.to_string()),
        ("KUMA_STORE_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("KUMA_STORE_POSTGRES_DB_NAME", PG_DATABASE.to_string()),
    ];
    let args: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let migrated =
        Proc::spawn(&bin_path("kuma-cp"), &["migrate", "up"], &args).must_exit_within(CONVERGE);
    assert_eq!(migrated.code(), Some(0), "{}", migrated.log);
    let cp = env.iter().fold(KumaCp::builder(), |b, (k, v)| b.env(k, v)).must_start();
    try_poll_until(CONVERGE, || match http_get(cp.api_port, "/meshes/default") {
        Ok(r) if r.status == 200 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("no default mesh ({e}):\n{}", cp.log()));
    must_time_store_operations(&cp, "postgres");
}

#[test]
fn the_text_parser_reads_labels_with_braces_and_escapes() {
    let text = "# HELP x y\nx_count{handler=\"/a/{b}\",q=\"say \\\"hi\\\"\"} 3\nup 1\nh_bucket{le=\"+Inf\"} 2\n";
    let samples = parse(text).unwrap();
    assert_eq!(samples.len(), 3);
    assert_eq!(samples[0].labels["handler"], "/a/{b}");
    assert_eq!(samples[0].labels["q"], "say \"hi\"");
    assert_eq!(sum(&samples, "x_count", &[("handler", "/a/{b}")]), 3.0);
    assert_eq!(sum(&samples, "up", &[]), 1.0);
    assert!(parse("nonsense").is_err());
}
