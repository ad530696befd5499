use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A TCP echo server on 127.0.0.1 in a background thread of the test; it replies to each read
/// with `prefix` followed by the bytes read, so a test can tell instances apart. Lives as long as
/// the test process (threads are cheap, and the port is never reused by `free_port`).
#[derive(Debug, Clone)]
pub struct EchoServer {
    pub port: u16,
}

impl EchoServer {
    pub fn start(prefix: &str) -> EchoServer {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind an echo port");
        let port = listener.local_addr().expect("local address").port();
        let prefix = prefix.as_bytes().to_vec();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let prefix = prefix.clone();
                std::thread::spawn(move || echo(conn, &prefix));
            }
        });
        EchoServer { port }
    }
}

fn echo(mut conn: TcpStream, prefix: &[u8]) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 {
            return;
        }
        let mut reply = prefix.to_vec();
        reply.extend_from_slice(&buf[..n]);
        if conn.write_all(&reply).is_err() {
            return;
        }
    }
}

/// Connects to 127.0.0.1:`port`, writes `payload`, and reads one reply (5 s timeouts).
pub fn tcp_roundtrip(port: u16, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    conn.write_all(payload)?;
    let mut buf = vec![0u8; 4096];
    let n = conn.read(&mut buf)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed without a reply",
        ));
    }
    buf.truncate(n);
    Ok(buf)
}
