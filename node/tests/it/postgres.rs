//! kuma-cp on the PostgreSQL store, with real processes: a real PostgreSQL (`PgServer`), kuma-cp
//! instances migrated and started as a user does, kuma-dp with a real Envoy and a token of its
//! own. Two instances share one database (a write through one reaches an Envoy connected to the
//! other; the leader-only work moves when the lease holder dies); the database going away and
//! coming back under a write loop; an unmigrated database refused in one line; and a move from
//! PostgreSQL to a 3-peer Raft cluster with `kumactl export` and `kumactl apply`.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kuma_test_support::{
    bin_path, free_port, http_get, http_request, tcp_roundtrip, try_poll_until, EchoServer, KumaCp,
    KumaCpBuilder, KumaCpCluster, PgServer, Proc, PG_DATABASE, PG_PASSWORD, PG_USER,
};
use serde_json::Value;

use crate::support::{dataplane, must_create_backend_and_redis, must_put, spawn_kuma_dp, Kumactl};

const CONVERGE: Duration = Duration::from_secs(30);

/// The environment of a kuma-cp on database `db` of `pg`, as a user sets it.
fn pg_env(pg: &PgServer, db: &str) -> Vec<(String, String)> {
    [
        ("KUMA_STORE_TYPE", "postgres".to_string()),
        ("KUMA_STORE_POSTGRES_HOST", pg.host().to_string()),
        ("KUMA_STORE_POSTGRES_PORT", pg.port().to_string()),
        ("KUMA_STORE_POSTGRES_USER", PG_USER.to_string()),
        ("KUMA_STORE_POSTGRES_PASSWORD", PG_PASSWORD.to_string()),
        ("KUMA_STORE_POSTGRES_DB_NAME", db.to_string()),
        ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "2".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn builder(pg: &PgServer, db: &str) -> KumaCpBuilder {
    pg_env(pg, db)
        .iter()
        .fold(KumaCp::builder(), |b, (k, v)| b.env(k, v))
        .env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
        // Where the instances announce themselves to each other (and Envoy dials).
        .env("KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST", "127.0.0.1")
}

/// `kuma-cp <args>` with the environment of database `db`, run to its end.
fn must_run_kuma_cp(pg: &PgServer, db: &str, args: &[&str]) -> kuma_test_support::Exited {
    let env = pg_env(pg, db);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Proc::spawn(&bin_path("kuma-cp"), args, &env).must_exit_within(Duration::from_secs(30))
}

/// `kuma-cp migrate up`, which must succeed; returns its one line.
fn must_migrate(pg: &PgServer, db: &str) -> String {
    let exited = must_run_kuma_cp(pg, db, &["migrate", "up"]);
    assert_eq!(exited.code(), Some(0), "migrate up failed:\n{}", exited.log);
    let lines: Vec<&str> = exited.log.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", exited.log);
    lines[0].to_string()
}

/// A kuma-dp for `name` that bootstraps from `cp`, with its CA and a token issued by it.
fn must_spawn_sidecar(cp: &KumaCp, name: &str, dir: &Path) -> Proc {
    let mut env = cp.must_kuma_dp_env("default", name);
    env.push(("KUMA_DATAPLANE_ADMIN_PORT".into(), free_port().to_string()));
    spawn_kuma_dp(&env, dir)
}

fn replies(port: u16, n: usize) -> BTreeSet<String> {
    (0..n)
        .filter_map(|_| tcp_roundtrip(port, b"ping").ok())
        .map(|r| String::from_utf8_lossy(&r).trim_end_matches("ping").to_string())
        .collect()
}

fn must_reach(port: u16, expected: &[u8], what: &str, sidecar: &Proc) {
    try_poll_until(CONVERGE, || match tcp_roundtrip(port, b"ping") {
        Ok(reply) if reply == expected => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("{what} ({e}):\n{}", sidecar.log()));
}

/// `GET /status/raft` of an instance, as `kumactl inspect control-planes -o json` prints it.
fn control_planes(ctl: &Kumactl) -> Value {
    let out = ctl.must_succeed(&["inspect", "control-planes", "-o", "json"], "");
    serde_json::from_str(&out).expect("kumactl prints JSON")
}

fn ready(cp: &KumaCp) -> bool {
    http_get(cp.diagnostics_port, "/ready").is_ok_and(|r| r.status == 200)
}

#[test]
fn two_instances_share_one_database_and_the_leader_only_work_moves_when_its_holder_dies() {
    let pg = PgServer::must_start();
    let line = must_migrate(&pg, PG_DATABASE);
    assert!(line.contains("version 1"), "{line}");
    let instances =
        [builder(&pg, PG_DATABASE).must_start(), builder(&pg, PG_DATABASE).must_start()];
    let (a, b) = (&instances[0], &instances[1]);

    let (first, second) = (EchoServer::start("a:"), EchoServer::start("b:"));
    let outbound = must_create_backend_and_redis(a.api_port, &first);
    // The Envoy is B's: its bootstrap, its xDS stream, a token B issued.
    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(b, "backend-1", dir.path());
    must_reach(outbound, b"a:ping", "traffic through B's Envoy", &sidecar);

    // An endpoint written through A reaches the Envoy connected to B.
    must_put(
        a.api_port,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", &format!("127.0.0.1:{}:6379", second.port), "redis", None),
    );
    try_poll_until(CONVERGE, || match replies(outbound, 10) {
        seen if seen.len() == 2 => Ok(()),
        seen => Err(seen),
    })
    .unwrap_or_else(|seen| panic!("B's Envoy never reached redis-2 ({seen:?}):\n{}", b.log()));

    // kumactl lists both instances and which one holds the leader lease.
    let ctl = Kumactl::must_connect(&a.api_url());
    let status = try_poll_until(CONVERGE, || {
        let status = control_planes(&ctl);
        let count = status["instances"].as_array().map_or(0, Vec::len);
        if count == 2 && status["leaderInstance"].is_string() {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .unwrap_or_else(|s| panic!("both instances and a leader: {s}"));
    let table = ctl.must_succeed(&["inspect", "control-planes"], "");
    for instance in [a, b] {
        assert!(table.contains(&format!(":{}", instance.xds_port)), "{table}");
    }
    assert_eq!(
        table.lines().filter(|l| l.contains(" yes ")).count(),
        2,
        "one leader, 2 healthy:\n{table}"
    );
    // A config dump asked of A comes from B, which holds the Envoy's stream.
    // (A learns of B's registration within a second or two.)
    let dump: Value = try_poll_until(CONVERGE, || {
        let out = ctl.run(&["inspect", "dataplane", "backend-1", "--config-dump"], "");
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(dump) if out.status.success() => Ok(dump),
            _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    })
    .unwrap_or_else(|e| panic!("config dump through A: {e}"));
    assert!(dump.to_string().contains("redis"), "{dump}");
    // Raft's membership commands say what to do instead.
    let err = ctl.must_fail(&["raft", "add-peer", "--id", "3", "--address", "127.0.0.1:1"], "");
    assert!(err.contains("PostgreSQL") && err.contains("KUMA_STORE_POSTGRES_"), "{err}");
    let holder = status["leaderInstance"].as_str().unwrap().to_string();
    let victim = instances
        .iter()
        .position(|i| holder.ends_with(&format!(":{}", i.xds_port)))
        .expect("the holder is one of the instances");
    let survivor = 1 - victim;

    instances[victim].signal("KILL");
    let killed = Instant::now();
    // Leader-only work moves: a mesh created now gets its token signing key from the survivor.
    let api = instances[survivor].api_port;
    must_put(api, "/meshes/later", r#"{"type":"Mesh","name":"later"}"#);
    try_poll_until(CONVERGE, || {
        match http_request(api, "POST", "/tokens/dataplane", Some(r#"{"mesh":"later","name":"x"}"#))
        {
            Ok(r) if r.status == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .unwrap_or_else(|e| {
        panic!("no signing key for the new mesh ({e}):\n{}", instances[survivor].log())
    });
    let took = killed.elapsed();
    assert!(took < Duration::from_secs(15), "the leader-only work moved after {took:?}");
    let ctl = Kumactl::must_connect(&instances[survivor].api_url());
    let status = control_planes(&ctl);
    let leader = status["leaderInstance"].as_str().unwrap_or_default();
    assert!(
        leader.ends_with(&format!(":{}", instances[survivor].xds_port)),
        "the survivor holds the lease: {status}"
    );
}

#[test]
fn the_database_going_away_makes_writes_503_and_instances_unready_and_both_recover_with_every_acknowledged_write(
) {
    let mut pg = PgServer::must_start();
    must_migrate(&pg, PG_DATABASE);
    let a = builder(&pg, PG_DATABASE).must_start();
    let b = builder(&pg, PG_DATABASE).must_start();
    let (echo, second) = (EchoServer::start("a:"), EchoServer::start("b:"));
    let outbound = must_create_backend_and_redis(a.api_port, &echo);
    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&b, "backend-1", dir.path());
    must_reach(outbound, b"a:ping", "traffic through B's Envoy", &sidecar);

    // A bounded write loop through A and B in turn, recording what was acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let ports = [a.api_port, b.api_port];
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut acknowledged, mut statuses, mut slowest) =
                (Vec::new(), BTreeSet::new(), Duration::ZERO);
            for i in 0..5000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("w-{i}");
                let body = format!(
                    r#"{{"type":"TrafficPermission","mesh":"default","name":"{name}","sources":[{{"match":{{"service":"w{i}"}}}}],"destinations":[{{"match":{{"service":"none"}}}}]}}"#
                );
                let path = format!("/meshes/default/traffic-permissions/{name}");
                let started = Instant::now();
                let reply = http_request(ports[i % 2], "PUT", &path, Some(&body));
                slowest = slowest.max(started.elapsed());
                match reply {
                    Ok(r) if (200..300).contains(&r.status) => acknowledged.push(name),
                    Ok(r) => {
                        statuses.insert(r.status);
                    }
                    Err(_) => {
                        statuses.insert(0);
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            (acknowledged, statuses, slowest)
        })
    };
    std::thread::sleep(Duration::from_secs(1));

    pg.stop();
    let outage = Instant::now();
    for cp in [&a, &b] {
        try_poll_until(Duration::from_secs(10), || if ready(cp) { Err(()) } else { Ok(()) })
            .unwrap_or_else(|_| panic!("still ready without its database:\n{}", cp.log()));
    }
    assert!(outage.elapsed() < Duration::from_secs(10));
    // A write answers 503 (retryable), quickly.
    let started = Instant::now();
    let reply = http_request(a.api_port, "PUT", "/meshes/default/traffic-permissions/during", Some(
        r#"{"type":"TrafficPermission","mesh":"default","name":"during","sources":[{"match":{"service":"*"}}],"destinations":[{"match":{"service":"*"}}]}"#,
    ))
    .expect("the API answers");
    assert_eq!(reply.status, 503, "{}", reply.body);
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    // A consistent read too; the API stays responsive.
    let reply = http_request(b.api_port, "GET", "/meshes/default/dataplanes/redis-1", None)
        .expect("the API answers");
    assert_eq!(reply.status, 503, "{}", reply.body);
    // Envoy keeps forwarding with the last config it got.
    for _ in 0..20 {
        assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"a:ping", "traffic in the outage");
    }
    std::thread::sleep(Duration::from_secs(2));

    pg.must_start_again();
    for cp in [&a, &b] {
        try_poll_until(CONVERGE, || if ready(cp) { Ok(()) } else { Err(()) })
            .unwrap_or_else(|_| panic!("not ready again:\n{}", cp.log()));
    }
    // Writes are acknowledged again before the loop stops.
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (acknowledged, statuses, slowest) = writer.join().unwrap();
    assert!(statuses.contains(&503), "writes in the outage answered 503: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 503), "only 503 as failures: {statuses:?}");
    assert!(slowest < Duration::from_secs(6), "a write took {slowest:?}");
    assert!(acknowledged.len() > 20, "{} acknowledged", acknowledged.len());
    let last = acknowledged.last().unwrap().clone();
    assert!(last.trim_start_matches("w-").parse::<usize>().unwrap() > 0);
    for name in &acknowledged {
        for cp in [&a, &b] {
            let path = format!("/meshes/default/traffic-permissions/{name}");
            let reply = http_get(cp.api_port, &path).expect("the API answers");
            assert_eq!(reply.status, 200, "acknowledged {name} is gone: {}", reply.body);
        }
    }
    assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"a:ping");
    // Both instances follow the database's changes again: one written through A reaches the
    // Envoy connected to B.
    must_put(
        a.api_port,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", &format!("127.0.0.1:{}:6379", second.port), "redis", None),
    );
    try_poll_until(CONVERGE, || match replies(outbound, 10) {
        seen if seen.len() == 2 => Ok(()),
        seen => Err(seen),
    })
    .unwrap_or_else(|seen| panic!("B's Envoy never reached redis-2 ({seen:?}):\n{}", b.log()));
}

#[test]
fn an_unmigrated_database_is_refused_in_one_line_until_migrate_up_or_the_printed_schema() {
    let pg = PgServer::must_start();
    pg.must_create_database("fresh");
    let ports: Vec<String> = (0..7).map(|_| free_port().to_string()).collect();
    let run = |db: &str| {
        let mut env = pg_env(&pg, db);
        for (var, port) in [
            "KUMA_API_SERVER_PORT",
            "KUMA_DIAGNOSTICS_PORT",
            "KUMA_BOOTSTRAP_SERVER_PORT",
            "KUMA_XDS_SERVER_GRPC_PORT",
            "KUMA_SDS_SERVER_GRPC_PORT",
            "KUMA_RAFT_PORT",
            "KUMA_API_SERVER_HTTPS_PORT",
        ]
        .iter()
        .zip(&ports)
        {
            env.push((var.to_string(), port.clone()));
        }
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::spawn(&bin_path("kuma-cp"), &["run"], &env)
    };
    let exited = run("fresh").must_exit_within(Duration::from_secs(30));
    assert_ne!(exited.code(), Some(0));
    let line = exited.must_error_line();
    assert!(line.contains("version 0") && line.contains("run `kuma-cp migrate up`"), "{line}");

    let line = must_migrate(&pg, "fresh");
    assert!(line.contains("to version 1"), "{line}");
    let again = must_migrate(&pg, "fresh");
    assert!(again.contains("already at version 1"), "{again}");
    let cp = builder(&pg, "fresh").must_start();
    assert!(ready(&cp));
    drop(cp);

    // A database set up with the schema kumactl prints is one kuma-cp accepts.
    pg.must_create_database("printed");
    let schema = Kumactl::new().must_succeed(&["install", "postgres-schema"], "");
    pg.must_psql("printed", &schema);
    let cp = builder(&pg, "printed").must_start();
    assert!(ready(&cp));
    drop(cp);

    // A schema newer than this kuma-cp is refused too.
    pg.must_psql(
        "printed",
        "INSERT INTO kuma_schema_migrations (version, name) VALUES (99, 'future')",
    );
    let exited = run("printed").must_exit_within(Duration::from_secs(30));
    assert_ne!(exited.code(), Some(0));
    let line = exited.must_error_line();
    assert!(line.contains("version 99") && line.contains("newer"), "{line}");

    // A wrong password is refused in one line naming what to check, and never shown.
    let mut env = pg_env(&pg, "fresh");
    env.retain(|(k, _)| k != "KUMA_STORE_POSTGRES_PASSWORD");
    env.push(("KUMA_STORE_POSTGRES_PASSWORD".into(), "wrong-s3cret".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let exited =
        Proc::spawn(&bin_path("kuma-cp"), &["run"], &env).must_exit_within(Duration::from_secs(30));
    assert_ne!(exited.code(), Some(0));
    let line = exited.must_error_line();
    assert!(line.contains("KUMA_STORE_POSTGRES_PASSWORD"), "{line}");
    assert!(!exited.log.contains("wrong-s3cret"), "{}", exited.log);

    // An unreachable database is named, with what to check, in one line.
    let nobody = free_port();
    let mut env = pg_env(&pg, "fresh");
    env.retain(|(k, _)| k != "KUMA_STORE_POSTGRES_PORT");
    env.push(("KUMA_STORE_POSTGRES_PORT".into(), nobody.to_string()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let exited = Proc::spawn(&bin_path("kuma-cp"), &["migrate", "up"], &env)
        .must_exit_within(Duration::from_secs(30));
    assert_eq!(exited.code(), Some(1));
    let line = exited.must_error_line();
    assert!(
        line.contains(&format!("127.0.0.1:{nobody}")) && line.contains("KUMA_STORE_POSTGRES_HOST"),
        "{line}"
    );
}

/// A config dump without what differs between two control planes serving the same state:
/// versions, timestamps, certificates and keys.
fn comparable(dump: &Value) -> Value {
    match dump {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !matches!(k.as_str(), "version_info" | "last_updated"))
                .map(|(k, v)| (k.clone(), comparable(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(comparable).collect()),
        Value::String(s) if s.contains("-----BEGIN") => Value::String("<pem>".into()),
        other => other.clone(),
    }
}

#[test]
fn export_from_postgres_applies_to_a_raft_cluster_with_identical_resources_and_envoy_config() {
    let pg = PgServer::must_start();
    must_migrate(&pg, PG_DATABASE);
    let cp = builder(&pg, PG_DATABASE).must_start();
    let echo = EchoServer::start("a:");
    let outbound = must_create_backend_and_redis(cp.api_port, &echo);
    must_put(
        cp.api_port,
        "/meshes/default/traffic-permissions/allow-backend",
        r#"{"type":"TrafficPermission","mesh":"default","name":"allow-backend","sources":[{"match":{"service":"backend"}}],"destinations":[{"match":{"service":"redis"}}]}"#,
    );
    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&cp, "backend-1", dir.path());
    must_reach(outbound, b"a:ping", "traffic on PostgreSQL", &sidecar);
    let ctl = Kumactl::must_connect(&cp.api_url());
    let dump_args = ["inspect", "dataplane", "backend-1", "--config-dump"];
    let before: Value = serde_json::from_str(&ctl.must_succeed(&dump_args, "")).unwrap();
    let exported = ctl.must_succeed(&["export"], "");
    assert!(exported.contains("allow-backend") && exported.contains("backend-1"), "{exported}");
    drop(sidecar);
    drop(cp);

    let mut cluster = KumaCpCluster::must_start_with(3, |b| {
        b.env("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL", "100ms")
    });
    let leader = cluster.must_wait_for_leader(Duration::from_secs(15));
    let raft = &cluster.peers[leader];
    let raft_ctl = Kumactl::must_connect(&raft.api_url());
    // The default mesh exists on both sides: apply updates it to the exported one.
    try_poll_until(CONVERGE, || {
        let out = raft_ctl.run(&["apply", "-f", "-"], &exported);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .unwrap_or_else(|e| panic!("apply into Raft: {e}"));
    assert_eq!(raft_ctl.must_succeed(&["export"], ""), exported, "the resources differ");

    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(raft, "backend-1", dir.path());
    must_reach(outbound, b"a:ping", "traffic on Raft", &sidecar);
    let after: Value = try_poll_until(CONVERGE, || {
        let out = raft_ctl.run(&dump_args, "");
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(v) if out.status.success() => Ok(v),
            _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
        }
    })
    .unwrap_or_else(|e| panic!("config dump on Raft: {e}"));
    let (before, after) = (comparable(&before), comparable(&after));
    if before != after {
        let text = |v: &Value| serde_json::to_string_pretty(v).unwrap();
        panic!("{}", kuma_test_support::golden::line_diff(&text(&before), &text(&after)));
    }
}

#[test]
fn a_frozen_database_never_makes_kuma_cp_unresponsive_and_it_recovers_by_itself() {
    let pg = PgServer::must_start();
    must_migrate(&pg, PG_DATABASE);
    let cp = builder(&pg, PG_DATABASE).must_start();
    must_put(
        cp.api_port,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", "127.0.0.1:7000:6379", "redis", None),
    );

    // A hung database host: connections stay open, nothing answers.
    pg.pause();
    let frozen = Instant::now();
    try_poll_until(Duration::from_secs(10), || if ready(&cp) { Err(()) } else { Ok(()) })
        .unwrap_or_else(|_| panic!("still ready with a frozen database:\n{}", cp.log()));
    assert!(frozen.elapsed() < Duration::from_secs(10));
    for (method, path, body) in [
        ("GET", "/meshes/default/dataplanes/redis-1", None),
        (
            "PUT",
            "/meshes/default/dataplanes/redis-2",
            Some(dataplane("redis-2", "127.0.0.1:7001:6379", "redis", None)),
        ),
    ] {
        let started = Instant::now();
        let reply =
            http_request(cp.api_port, method, path, body.as_deref()).expect("the API answers");
        assert_eq!(reply.status, 503, "{method} {path}: {}", reply.body);
        // The connection timeout (2 s) bounds it.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{method} took {:?}",
            started.elapsed()
        );
    }
    let started = Instant::now();
    let healthy = http_get(cp.diagnostics_port, "/healthy").expect("diagnostics answer");
    assert_eq!(healthy.status, 200);
    assert!(started.elapsed() < Duration::from_secs(1));

    pg.resume();
    try_poll_until(CONVERGE, || if ready(&cp) { Ok(()) } else { Err(()) })
        .unwrap_or_else(|_| panic!("not ready again:\n{}", cp.log()));
    must_put(
        cp.api_port,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", "127.0.0.1:7001:6379", "redis", None),
    );
}

/// The xDS addresses (`host:port`) a bootstrap from `cp` names.
fn bootstrap_xds_addresses(cp: &KumaCp, body: &str) -> Result<BTreeSet<String>, String> {
    let reply = cp.bootstrap_request(body).map_err(|e| e.to_string())?;
    let yaml: serde_yaml::Value = serde_yaml::from_str(&reply.body).map_err(|e| e.to_string())?;
    let endpoints = yaml["static_resources"]["clusters"][0]["load_assignment"]["endpoints"][0]
        ["lb_endpoints"]
        .as_sequence()
        .cloned()
        .unwrap_or_default();
    Ok(endpoints
        .iter()
        .map(|e| {
            let a = &e["endpoint"]["address"]["socket_address"];
            format!(
                "{}:{}",
                a["address"].as_str().unwrap_or(""),
                a["port_value"].as_u64().unwrap_or(0)
            )
        })
        .collect())
}

#[test]
fn an_envoy_moves_to_another_instance_when_its_own_dies_and_takes_later_changes() {
    let pg = PgServer::must_start();
    must_migrate(&pg, PG_DATABASE);
    let a = builder(&pg, PG_DATABASE).must_start();
    let b = builder(&pg, PG_DATABASE).must_start();
    let (first, second) = (EchoServer::start("a:"), EchoServer::start("b:"));
    let outbound = must_create_backend_and_redis(a.api_port, &first);

    // B's bootstrap names every live instance once B has read A's registration.
    let token = b.must_token(r#"{"mesh":"default","name":"backend-1"}"#);
    let body = format!(
        r#"{{"mesh":"default","name":"backend-1","adminPort":9901,"dataplaneToken":"{token}"}}"#
    );
    let expected: BTreeSet<String> =
        [&a, &b].iter().map(|cp| format!("127.0.0.1:{}", cp.xds_port)).collect();
    try_poll_until(CONVERGE, || match bootstrap_xds_addresses(&b, &body) {
        Ok(seen) if seen == expected => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .unwrap_or_else(|e| panic!("B's bootstrap names both instances: {e}"));

    let dir = tempfile::tempdir().unwrap();
    let sidecar = must_spawn_sidecar(&b, "backend-1", dir.path());
    must_reach(outbound, b"a:ping", "traffic through B's Envoy", &sidecar);
    b.signal("KILL");
    for _ in 0..20 {
        assert_eq!(tcp_roundtrip(outbound, b"ping").unwrap(), b"a:ping", "traffic after B died");
    }
    // A change written through A after B died reaches the Envoy: it is A's now.
    must_put(
        a.api_port,
        "/meshes/default/dataplanes/redis-2",
        &dataplane("redis-2", &format!("127.0.0.1:{}:6379", second.port), "redis", None),
    );
    try_poll_until(CONVERGE, || match replies(outbound, 10) {
        seen if seen.len() == 2 => Ok(()),
        seen => Err(seen),
    })
    .unwrap_or_else(|seen| {
        panic!("the Envoy never took A's change ({seen:?}):\n{}", sidecar.log())
    });
}

/// The lease holder by `GET /status/raft` of `cp`.
fn lease_holder(cp: &KumaCp) -> Option<String> {
    let reply = http_get(cp.api_port, "/status/raft").ok()?;
    let status: Value = serde_json::from_str(&reply.body).ok()?;
    status["leaderInstance"].as_str().map(str::to_string)
}

#[test]
fn a_lease_holder_stopped_with_sigterm_hands_the_leader_only_work_over_at_once() {
    let pg = PgServer::must_start();
    must_migrate(&pg, PG_DATABASE);
    let mut instances =
        [builder(&pg, PG_DATABASE).must_start(), builder(&pg, PG_DATABASE).must_start()];
    let holder = try_poll_until(CONVERGE, || lease_holder(&instances[0]).ok_or(()))
        .expect("an instance holds the lease");
    let victim = instances
        .iter()
        .position(|i| holder.ends_with(&format!(":{}", i.xds_port)))
        .expect("the holder is one of the instances");
    let survivor = 1 - victim;

    let status = instances[victim].must_stop_with("TERM");
    assert!(status.success(), "{status:?}");
    let stopped = Instant::now();
    let next = try_poll_until(CONVERGE, || match lease_holder(&instances[survivor]) {
        Some(h) if h != holder => Ok(h),
        other => Err(other),
    })
    .expect("the survivor takes the lease");
    // Without the hand-over it would wait for the 5 s lease to run out.
    let took = stopped.elapsed();
    assert!(took < Duration::from_millis(3500), "the lease moved after {took:?}");
    assert!(next.ends_with(&format!(":{}", instances[survivor].xds_port)), "{next}");
}

#[test]
fn the_database_password_never_reaches_the_log_even_at_debug_level_and_through_an_outage() {
    const PASSWORD: &str = "Pw-7f3a9c-never-logged";
    let mut pg = PgServer::must_start();
    pg.must_psql(PG_DATABASE, &format!("CREATE ROLE operator LOGIN PASSWORD '{PASSWORD}'"));
    pg.must_psql(PG_DATABASE, "CREATE DATABASE mesh OWNER operator");
    let with_operator = |b: KumaCpBuilder| {
        b.env("KUMA_STORE_POSTGRES_USER", "operator").env("KUMA_STORE_POSTGRES_PASSWORD", PASSWORD)
    };
    let exited = {
        let mut env = pg_env(&pg, "mesh");
        env.retain(|(k, _)| !k.starts_with("KUMA_STORE_POSTGRES_USER") && !k.ends_with("PASSWORD"));
        env.push(("KUMA_STORE_POSTGRES_USER".into(), "operator".into()));
        env.push(("KUMA_STORE_POSTGRES_PASSWORD".into(), PASSWORD.into()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Proc::spawn(&bin_path("kuma-cp"), &["migrate", "up", "--log-level", "debug"], &env)
            .must_exit_within(Duration::from_secs(30))
    };
    assert_eq!(exited.code(), Some(0), "{}", exited.log);
    let cp = with_operator(builder(&pg, "mesh")).arg("--log-level").arg("debug").must_start();
    must_put(
        cp.api_port,
        "/meshes/default/dataplanes/redis-1",
        &dataplane("redis-1", "127.0.0.1:7000:6379", "redis", None),
    );
    pg.stop();
    try_poll_until(Duration::from_secs(10), || if ready(&cp) { Err(()) } else { Ok(()) })
        .unwrap_or_else(|_| panic!("still ready without its database:\n{}", cp.log()));
    pg.must_start_again();
    try_poll_until(CONVERGE, || if ready(&cp) { Ok(()) } else { Err(()) })
        .unwrap_or_else(|_| panic!("not ready again:\n{}", cp.log()));
    let log = cp.log();
    assert!(log.contains("operator") || log.contains("PostgreSQL"), "a debug log: {log}");
    assert!(!log.contains(PASSWORD), "the password is in the log:\n{log}");
    assert!(!exited.log.contains(PASSWORD), "{}", exited.log);
}
