//! TrafficTrace with a real Envoy: HTTP requests through a traced dataplane's outbound are
//! reported as spans to the mesh's zipkin backend.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kuma_test_support::{free_port, try_poll_until};

use crate::harness::Harness;
use crate::mtls::must_start_sidecar;

/// A minimal HTTP/1.1 server: answers every request with 200 `ok` and records each request's
/// request line and body.
struct HttpServer {
    port: u16,
    requests: Arc<Mutex<Vec<(String, String)>>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || serve(conn, &seen));
            }
        });
        HttpServer { port, requests }
    }
}

fn serve(conn: TcpStream, seen: &Mutex<Vec<(String, String)>>) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut writer = conn;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                    chunked = true;
                }
            }
        }
        let body = if chunked {
            match read_chunked(&mut reader) {
                Some(body) => body,
                None => return,
            }
        } else {
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            body
        };
        seen.lock().unwrap().push((
            request_line.trim_end().to_string(),
            String::from_utf8_lossy(&body).to_string(),
        ));
        if writer.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").is_err() {
            return;
        }
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size).ok()?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let mut chunk = vec![0u8; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(b"GET /hello HTTP/1.1\r\nHost: api\r\nConnection: close\r\n\r\n")?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply)?;
    Ok(reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_requests_through_a_traced_dataplane_reach_the_zipkin_backend_as_spans() {
    let h = Harness::start().await;
    let (api, zipkin) = (HttpServer::start(), HttpServer::start());
    h.apply(&format!("type: Mesh\nname: default\ntracing:\n  defaultBackend: zipkin-1\n  backends:\n  - name: zipkin-1\n    type: zipkin\n    sampling: 100\n    conf:\n      url: http://127.0.0.1:{}/api/v2/spans\n", zipkin.port)).await;
    h.apply("type: TrafficTrace\nmesh: default\nname: trace-web\nselectors:\n- match:\n    service: web\n").await;
    h.apply(&format!("type: Dataplane\nmesh: default\nname: api-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{}:8080\n    tags:\n      service: api\n      protocol: http\n", api.port)).await;
    let outbound = free_port();
    h.apply(&format!("type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{}:{}\n    tags:\n      service: web\n  outbound:\n  - interface: :{outbound}\n    service: api\n", free_port(), free_port())).await;
    let _web = must_start_sidecar(&h, "web-1");

    // Envoy sends spans in batches of 5 (or every 5 s).
    for _ in 0..5 {
        let reply = try_poll_until(Duration::from_secs(10), || match http_get(outbound) {
            Ok(reply) if reply.starts_with("HTTP/1.1 200") => Ok(reply),
            other => Err(format!("{other:?}")),
        })
        .expect("the request goes through");
        assert!(reply.ends_with("ok"), "{reply}");
    }
    assert!(api.requests.lock().unwrap().iter().all(|(line, _)| line == "GET /hello HTTP/1.1"));
    let spans = try_poll_until(Duration::from_secs(15), || {
        let posts: Vec<String> = zipkin
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(line, _)| line.starts_with("POST /api/v2/spans"))
            .map(|(_, body)| body.clone())
            .collect();
        if posts.is_empty() {
            Err(())
        } else {
            Ok(posts.join("\n"))
        }
    })
    .expect("spans reach the zipkin backend");
    assert!(spans.contains("traceId"), "{spans:?}");
    assert!(spans.contains("/hello"), "{spans}");
}
