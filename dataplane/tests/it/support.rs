//! Running kuma-dp and kuma-tcp-echo as processes, a fake bootstrap server, stand-in Envoy
//! scripts and a static Envoy bootstrap.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kuma_test_support::{free_port, poll_until};
pub use kuma_test_support::{Exited, Proc};

/// A bootstrap server URL where nothing listens: port 1 (tcpmux) on loopback. A port from
/// `free_port()` could meanwhile be taken by another test process.
pub const CLOSED_URL: &str = "http://127.0.0.1:1";

/// A second closed URL, for lists of unreachable peers.
pub const CLOSED_URL_2: &str = "http://127.0.0.1:2";

/// A self-signed CA certificate (EC P-256), as kumactl inspect control-plane-ca prints one.
pub const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBizCCATGgAwIBAgIUEvZUbg+uscWfgGJbvDDipJF2yzswCgYIKoZIzj0EAwIw\n\
GjEYMBYGA1UEAwwPa3VtYS1kcCB0ZXN0IENBMCAXDTI2MTIwMjExMzczMFoYDzIx\n\
MjYxMTA4MTEzNzMwWjAaMRgwFgYDVQQDDA9rdW1hLWRwIHRlc3QgQ0EwWTATBgcq\n\
hkjOPQIBBggqhkjOPQMBBwNCAATuTDQm+nrfRUXjtZkgFkGgG/mPokq924q/Wt5c\n\
OW95EAGUsPqjcGVWpaJUtuUMgzss6+m7CvrIIkpEmRNcQ+7Io1MwUTAdBgNVHQ4E\n\
FgQUOeYVIy1ZKdh2oVRC5bH5pqlN9aswHwYDVR0jBBgwFoAUOeYVIy1ZKdh2oVRC\n\
5bH5pqlN9aswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA9WyK\n\
oaesxbUPGovw9/CgAX5ZgZcWymSs5B5o+Mr7mZYCIAPpEaF8W3b10uxapiCybUOQ\n\
Y3k395fwETz/tsr7l9oM\n\
-----END CERTIFICATE-----\n";

/// How long a process may take to do what a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Runs `kuma-dp args` with `env` to the end.
pub fn must_run_kuma_dp(args: &[&str], env: &[(&str, &str)]) -> Exited {
    Proc::spawn(Path::new(env!("CARGO_BIN_EXE_kuma-dp")), args, env).must_exit_within(DEADLINE)
}

/// `kuma-dp run` with `args` and `env`, still running.
pub fn spawn_kuma_dp(args: &[&str], env: &[(&str, &str)]) -> Proc {
    Proc::spawn(Path::new(env!("CARGO_BIN_EXE_kuma-dp")), args, env)
}

/// The pid kuma-dp logged for the Envoy it started, once it has.
pub fn must_envoy_pid(dp: &Proc) -> u32 {
    poll_until(DEADLINE, "kuma-dp logs the Envoy pid", || {
        let log = dp.log();
        let at = log.find("Envoy started pid=").ok_or_else(|| log.clone())?;
        let digits: String = log[at + "Envoy started pid=".len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u32>().map_err(|_| log.clone())
    })
}

/// `GET path` on Envoy's admin server at 127.0.0.1:`port`: (status, body).
pub fn envoy_admin_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    kuma_test_support::http_get(port, path).map(|reply| (reply.status, reply.body))
}

/// Whether a process with this pid exists (a reaped child is gone from `/proc`).
pub fn process_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// A kuma-tcp-echo on a free port, accepting connections.
pub fn must_start_tcp_echo() -> (Proc, u16) {
    let port = free_port();
    let echo = Proc::spawn(
        Path::new(env!("CARGO_BIN_EXE_kuma-tcp-echo")),
        &["-port", &port.to_string()],
        &[],
    );
    poll_until(DEADLINE, "kuma-tcp-echo accepts connections", || {
        TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("{e}; log: {}", echo.log()))
    });
    (echo, port)
}

/// Writes `payload` on `stream` from another thread while reading the echo here, so neither side
/// blocks on full socket buffers; returns what came back before the server closed.
pub fn round_trip(stream: TcpStream, payload: &[u8]) -> Vec<u8> {
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
    let mut writer = stream.try_clone().expect("clone the stream");
    let payload = payload.to_vec();
    let sender = std::thread::spawn(move || {
        writer.write_all(&payload).expect("send");
        writer.shutdown(std::net::Shutdown::Write).expect("half-close");
    });
    let mut echoed = Vec::new();
    (&stream).read_to_end(&mut echoed).expect("read the echo");
    sender.join().expect("sender thread");
    echoed
}

/// One request the fake bootstrap server received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A bootstrap server stand-in on 127.0.0.1 that answers each request with the next scripted
/// `(status, body)` (the last one repeats) and records the requests.
pub struct FakeBootstrapServer {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeBootstrapServer {
    pub fn start(replies: Vec<(u16, String)>) -> FakeBootstrapServer {
        assert!(!replies.is_empty(), "at least one reply");
        // Port 0: the kernel picks a port nobody holds, so no other test can take it.
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind the fake server");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let Some(request) = read_request(&stream) else { continue };
                    let mut requests = requests.lock().expect("requests");
                    let (status, body) = &replies[requests.len().min(replies.len() - 1)];
                    requests.push(request);
                    drop(requests);
                    let _ = write!(
                        &stream,
                        "HTTP/1.1 {status} Scripted\r\nContent-Type: text/plain\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })
        };
        FakeBootstrapServer { port, requests, stop, thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("requests").clone()
    }
}

impl Drop for FakeBootstrapServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the blocking accept so the thread sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Recorded { method, path, headers, body: String::from_utf8_lossy(&body).into_owned() })
}

/// A static Envoy v3 bootstrap: admin on `admin_port`, a TCP proxy listener on `listener_port`
/// forwarding to 127.0.0.1:`upstream_port`.
pub fn static_bootstrap(admin_port: u16, listener_port: u16, upstream_port: u16) -> String {
    format!(
        r#"node:
  id: default.web-1
  cluster: web
admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: {admin_port} }}
static_resources:
  listeners:
  - name: inbound
    address:
      socket_address: {{ address: 127.0.0.1, port_value: {listener_port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: inbound
          cluster: echo
  clusters:
  - name: echo
    connect_timeout: 1s
    type: STATIC
    load_assignment:
      cluster_name: echo
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: 127.0.0.1, port_value: {upstream_port} }}
"#
    )
}

/// An executable stand-in for Envoy in `dir`: a shell script that records its arguments in
/// `dir/args` and its pid in `dir/pid`, then runs `body` (where `$DIR` is `dir`).
pub fn must_write_fake_envoy(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\nDIR='{dir}'\necho \"$@\" > \"$DIR/args\"\necho $$ > \"$DIR/pid\"\n{body}\n",
        dir = dir.display()
    );
    std::fs::write(&path, script).expect("write the fake envoy");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

/// Kuma's error body, as a 404 for a missing Dataplane carries it.
pub fn not_found_body(mesh: &str, name: &str) -> String {
    format!(
        r#"{{"title":"Could not generate the bootstrap","details":"Dataplane {mesh}/{name} not found"}}"#
    )
}
