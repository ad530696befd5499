use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::time::Duration;

/// Path of a binary of this workspace, next to the running test executable's `deps/` folder.
/// `cargo build --workspace --bins` (which `make test` runs first) puts them there.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let dir = exe
        .parent()
        .map(|deps| if deps.ends_with("deps") { deps.parent().unwrap_or(deps) } else { deps })
        .expect("the test executable lives in a directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A plain HTTP reply.
#[derive(Debug, Clone)]
pub struct HttpReply {
    pub status: u16,
    pub body: String,
}

/// `GET http://127.0.0.1:port/path`; errors are returned, not panicked, so it can be polled with
/// `eventually!`.
pub fn http_get(port: u16, path: &str) -> std::io::Result<HttpReply> {
    http_request(port, "GET", path, None)
}

/// One HTTP/1.0 request to 127.0.0.1 over a raw socket, with an optional JSON body.
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = json.unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {raw:?}")))?;
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok(HttpReply { status, body })
}
