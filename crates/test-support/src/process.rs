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

/// One HTTP/1.1 request (`Connection: close`) to 127.0.0.1 over a raw socket, with an optional
/// JSON body; chunked replies are decoded. (Envoy's admin refuses HTTP/1.0.)
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<HttpReply> {
    http_request_as(port, method, path, json, None)
}

/// `http_request` with a user token (`Authorization: Bearer`).
pub fn http_request_as(
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<HttpReply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    exchange(&mut stream, port, method, path, json, token)
}

/// `http_request` over TLS: the server's certificate must chain to `ca_pem` and name 127.0.0.1.
pub fn https_request(
    port: u16,
    ca_pem: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
) -> std::io::Result<HttpReply> {
    https_request_as(port, ca_pem, method, path, json, None)
}

/// `https_request` with a bearer token.
pub fn https_request_as(
    port: u16,
    ca_pem: &str,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<HttpReply> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.map_err(std::io::Error::other)?).map_err(std::io::Error::other)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name =
        rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(std::io::Error::other)?;
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .map_err(std::io::Error::other)?;
    let tcp = TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    exchange(&mut stream, port, method, path, json, token)
}

fn exchange(
    stream: &mut (impl Read + Write),
    port: u16,
    method: &str,
    path: &str,
    json: Option<&str>,
    token: Option<&str>,
) -> std::io::Result<HttpReply> {
    let body = json.unwrap_or_default();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    let mut bytes = Vec::new();
    // A TLS peer that closes without close_notify ends the read with an error after the reply.
    match stream.read_to_end(&mut bytes) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !bytes.is_empty() => {}
        Err(e) => return Err(e),
    }
    let raw = String::from_utf8_lossy(&bytes).into_owned();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {raw:?}")))?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw.as_str(), ""));
    let chunked = head
        .lines()
        .any(|l| l.to_ascii_lowercase().replace(' ', "") == "transfer-encoding:chunked");
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    Ok(HttpReply { status, body })
}

fn dechunk(mut rest: &str) -> std::io::Result<String> {
    let mut body = String::new();
    loop {
        let (size, after) = rest
            .split_once("\r\n")
            .ok_or_else(|| std::io::Error::other("truncated chunked body"))?;
        let size = usize::from_str_radix(size.trim(), 16)
            .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
        if size == 0 {
            return Ok(body);
        }
        let chunk = after.get(..size).ok_or_else(|| std::io::Error::other("truncated chunk"))?;
        body.push_str(chunk);
        rest = after.get(size + 2..).unwrap_or_default();
    }
}
