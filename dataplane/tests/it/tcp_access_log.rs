//! The `tcp` logging backend end to end: a real kuma-cp generates the TrafficLog, a real kuma-dp
//! runs a real Envoy and its access log streamer, and a small collector on 127.0.0.1 receives a
//! line per connection naming both services, also when it was down while Envoy streamed them.
//! Then the writer's side in process: a collector that is down, then up, neither blocks the
//! sender (the writer, or the streamer that feeds it) nor loses the lines sent once it is up.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::data::accesslog::v3::{ConnectionProperties, TcpAccessLogEntry};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::{
    LogEntries, TcpAccessLogEntries,
};
use envoy_types::pb::envoy::service::accesslog::v3::StreamAccessLogsMessage;
use kuma_dp::{AccessLogStreamer, TcpLogWriter};
use kuma_test_support::{
    envoy_path, free_port, http_request, tcp_roundtrip, try_poll_until, EchoServer, KumaCp, Proc,
};

/// A TCP listener on 127.0.0.1 collecting every line it receives, from any connection.
struct Collector {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start_on(listener: TcpListener) -> Collector {
        let port = listener.local_addr().unwrap().port();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        sink.lock().unwrap().push(line);
                    }
                });
            }
        });
        Collector { port, lines }
    }

    fn start() -> Collector {
        Collector::start_on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }
}

fn must_put(cp: &KumaCp, path: &str, json: &str) {
    let reply = http_request(cp.api_port, "PUT", path, Some(json)).unwrap();
    assert!(
        reply.status == 200 || reply.status == 201,
        "PUT {path}: {} {}",
        reply.status,
        reply.body
    );
}

/// Envoy's count of connections accepted by the outbound listener to redis.
fn outbound_connections(admin_port: u16) -> Option<u64> {
    let reply = kuma_test_support::http_get(
        admin_port,
        "/stats?filter=^tcp\\.redis\\.downstream_cx_total$",
    )
    .ok()?;
    reply.body.lines().find_map(|l| l.split_once(": ")).and_then(|(_, v)| v.trim().parse().ok())
}

/// A kuma-cp, a redis echo server and a kuma-dp (with a real Envoy) for service `backend` whose
/// outbound to redis is logged by a TrafficLog to the `tcp` backend `127.0.0.1:collector_port`;
/// returned once bytes echo through the outbound.
struct LoggedSidecar {
    echo: EchoServer,
    dp: Proc,
    outbound: u16,
    admin: u16,
    _cp: KumaCp,
    _dir: tempfile::TempDir,
}

fn must_start_logged_sidecar(collector_port: u16, suffix: &str) -> LoggedSidecar {
    let cp = KumaCp::must_start();
    let echo = EchoServer::start("r:");
    // The streamer's socket is /tmp/kuma-access-logs-<mesh>-<name>.sock: a per-run name keeps
    // parallel runs apart.
    let name = format!("web-{}-{suffix}", std::process::id());
    let outbound = free_port();
    let admin = free_port();
    must_put(
        &cp,
        "/meshes/default",
        &format!(
            r#"{{"type":"Mesh","name":"default","logging":{{"defaultBackend":"collector","backends":[{{"name":"collector","type":"tcp","conf":{{"address":"127.0.0.1:{}"}}}}]}}}}"#,
            collector_port
        ),
    );
    must_put(
        &cp,
        "/meshes/default/traffic-logs/redis-log",
        r#"{"type":"TrafficLog","mesh":"default","name":"redis-log","sources":[{"match":{"service":"backend"}}],"destinations":[{"match":{"service":"redis"}}]}"#,
    );
    must_put(
        &cp,
        "/meshes/default/dataplanes/redis-1",
        &format!(
            r#"{{"type":"Dataplane","mesh":"default","name":"redis-1","networking":{{"inbound":[{{"interface":"127.0.0.1:{}:6379","tags":{{"service":"redis"}}}}]}}}}"#,
            echo.port
        ),
    );
    must_put(
        &cp,
        &format!("/meshes/default/dataplanes/{name}"),
        &format!(
            r#"{{"type":"Dataplane","mesh":"default","name":"{name}","networking":{{"inbound":[{{"interface":"127.0.0.1:{}:{}","tags":{{"service":"backend"}}}}],"outbound":[{{"interface":":{outbound}","service":"redis"}}]}}}}"#,
            free_port(),
            free_port()
        ),
    );

    let dir = tempfile::tempdir().unwrap();
    let envoy = envoy_path();
    let mut env = cp.must_kuma_dp_env("default", &name);
    env.push(("KUMA_DATAPLANE_ADMIN_PORT".into(), admin.to_string()));
    env.push(("KUMA_CONTROL_PLANE_RETRY_BACKOFF".into(), "200ms".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dp = Proc::spawn(
        Path::new(env!("CARGO_BIN_EXE_kuma-dp")),
        &[
            "run",
            "--binary-path",
            envoy.to_str().unwrap(),
            "--config-dir",
            dir.path().to_str().unwrap(),
        ],
        &env,
    );
    let echoed = try_poll_until(Duration::from_secs(30), || {
        tcp_roundtrip(outbound, b"ping").map_err(|e| e.to_string()).and_then(|reply| {
            if reply == b"r:ping" {
                Ok(())
            } else {
                Err(format!("{reply:?}"))
            }
        })
    });
    if let Err(e) = echoed {
        panic!("no echo through the outbound ({e}); kuma-dp:\n{}", dp.log());
    }
    LoggedSidecar { echo, dp, outbound, admin, _cp: cp, _dir: dir }
}

/// Every connection Envoy accepted on the outbound has its line at the collector, once at least
/// `at_least` connections were made; the lines.
fn must_collect_a_line_per_connection(
    s: &LoggedSidecar,
    collector: &Collector,
    at_least: u64,
) -> Vec<String> {
    // Envoy flushes gRPC access logs every second; every connection it accepted gets a line.
    let lines = try_poll_until(Duration::from_secs(20), || {
        let lines = collector.lines();
        match outbound_connections(s.admin) {
            Some(total) if total >= at_least && lines.len() as u64 == total => Ok(lines),
            total => Err(format!("{} lines for {total:?} connections: {lines:?}", lines.len())),
        }
    })
    .unwrap_or_else(|e| panic!("{e}\nkuma-dp:\n{}", s.dp.log()));
    for line in &lines {
        assert!(line.contains("default 127.0.0.1(backend)->"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{}(redis)", s.echo.port)), "{line}");
        assert!(line.contains("sent 6 bytes, received: 4 bytes"), "{line}");
    }
    lines
}

#[test]
fn a_tcp_traffic_log_sends_one_line_per_connection_naming_both_services_to_the_collector() {
    let collector = Collector::start();
    let s = must_start_logged_sidecar(collector.port, "up");
    for _ in 0..4 {
        assert_eq!(tcp_roundtrip(s.outbound, b"ping").unwrap(), b"r:ping");
    }
    must_collect_a_line_per_connection(&s, &collector, 5);
}

#[test]
fn lines_of_connections_made_while_the_collector_is_down_arrive_once_it_is_up() {
    // Reserve a port, then free it: nothing listens there until the collector starts.
    let port = free_port();
    let s = must_start_logged_sidecar(port, "down");
    for _ in 0..4 {
        assert_eq!(tcp_roundtrip(s.outbound, b"ping").unwrap(), b"r:ping");
    }
    // The collector starts only once Envoy has streamed the entries to kuma-dp.
    let flushed = try_poll_until(Duration::from_secs(20), || {
        let body = kuma_test_support::http_get(s.admin, "/stats?filter=grpc_entries_flushed")
            .map(|r| r.body)
            .unwrap_or_default();
        let flushed: u64 = body
            .lines()
            .filter_map(|l| l.split_once("grpc_entries_flushed: "))
            .filter_map(|(_, v)| v.trim().parse::<u64>().ok())
            .sum();
        if flushed >= 5 {
            Ok(())
        } else {
            Err(body)
        }
    });
    if let Err(stats) = flushed {
        panic!("Envoy did not stream 5 entries to kuma-dp: {stats}\nkuma-dp:\n{}", s.dp.log());
    }
    let collector = Collector::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    assert_eq!(tcp_roundtrip(s.outbound, b"ping").unwrap(), b"r:ping", "traffic flows");
    must_collect_a_line_per_connection(&s, &collector, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_whose_collector_is_down_never_blocks_and_delivers_once_it_is_up() {
    // Reserve a port, then free it: nothing listens there until the collector starts.
    let port = free_port();
    let writer = TcpLogWriter::spawn(&format!("127.0.0.1:{port}"), 4);
    let started = Instant::now();
    for i in 0..100 {
        writer.send(format!("while down {i}\n"));
    }
    assert!(started.elapsed() < Duration::from_secs(1), "sending waited for the backend");
    assert!(writer.dropped() >= 90, "the queue is bounded: {} dropped", writer.dropped());

    let collector = Collector::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let lines = tokio::task::spawn_blocking(move || {
        try_poll_until(Duration::from_secs(15), || {
            writer.send("after up\n".to_string());
            let lines = collector.lines();
            if lines.iter().any(|l| l == "after up") {
                Ok(lines)
            } else {
                Err(lines)
            }
        })
    })
    .await
    .unwrap()
    .unwrap_or_else(|lines| panic!("nothing arrived after the collector came up: {lines:?}"));
    // What was queued while down arrives first, in order.
    assert_eq!(lines[0], "while down 0", "{lines:?}");
}

/// A message of Envoy's stream with one TCP entry whose connection sent `sent` bytes.
fn entry_message(sent: u64) -> StreamAccessLogsMessage {
    StreamAccessLogsMessage {
        identifier: None,
        log_entries: Some(LogEntries::TcpLogs(TcpAccessLogEntries {
            log_entry: vec![TcpAccessLogEntry {
                connection_properties: Some(ConnectionProperties {
                    sent_bytes: sent,
                    received_bytes: 0,
                }),
                ..Default::default()
            }],
        })),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamer_formats_entries_by_their_log_name_and_delivers_once_the_collector_is_up() {
    let port = free_port();
    let streamer = AccessLogStreamer::new();
    let log_name = format!(
        "127.0.0.1:{port};default 127.0.0.1(web)->%UPSTREAM_HOST%(redis) sent %BYTES_SENT% bytes\n"
    );
    let started = Instant::now();
    streamer.accept(&log_name, entry_message(1));
    assert!(started.elapsed() < Duration::from_secs(1), "accepting waited for the backend");

    let collector = Collector::start_on(TcpListener::bind(("127.0.0.1", port)).unwrap());
    let lines = tokio::task::spawn_blocking(move || {
        try_poll_until(Duration::from_secs(15), || {
            streamer.accept(&log_name, entry_message(2));
            let lines = collector.lines();
            if lines.iter().any(|l| l.ends_with("sent 2 bytes")) {
                Ok(lines)
            } else {
                Err(lines)
            }
        })
    })
    .await
    .unwrap()
    .unwrap_or_else(|lines| panic!("nothing arrived after the collector came up: {lines:?}"));
    assert_eq!(lines[0], "default 127.0.0.1(web)->-(redis) sent 1 bytes", "{lines:?}");
}
