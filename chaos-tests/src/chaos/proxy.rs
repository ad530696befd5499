//! A userspace TCP proxy on one directed link between two peers (etcd's robustness tests do the
//! same): while it is cut, bytes in both directions are read and dropped (a blackhole, so RPCs
//! hang until their own timeouts, as on a real partition) and new connections are accepted but
//! never forwarded. A connection that lost bytes is closed when the link heals, since its stream
//! (TLS records, HTTP/2 frames) cannot be resumed; the peer then dials again.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// One directed link `from -> to`, listening on its own 127.0.0.1 port.
#[derive(Debug)]
pub struct LinkProxy {
    port: u16,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl LinkProxy {
    /// Listens on a free 127.0.0.1 port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<LinkProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let (cut, state) = watch::channel(false);
        let task = tokio::spawn(async move {
            // Dropping the set (when the proxy is dropped) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((inbound, _)) => {
                            let _ = inbound.set_nodelay(true);
                            connections.spawn(serve(inbound, upstream, state.clone()));
                        }
                        // Out of descriptors or similar: try again shortly rather than spin.
                        Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                    },
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        Ok(LinkProxy { port, cut, task })
    }

    /// The port peers dial instead of the real one.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, nothing passes in either direction.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Lets new connections through again; connections that were cut are closed.
    pub fn heal(&self) {
        self.cut.send_replace(false);
    }

    pub fn is_cut(&self) -> bool {
        *self.cut.borrow()
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards one connection until either side closes it, or until the link heals after this
/// connection lost bytes to a cut.
async fn serve(mut inbound: TcpStream, upstream: SocketAddr, mut cut: watch::Receiver<bool>) {
    let mut tainted = *cut.borrow_and_update();
    let mut outbound = if tainted {
        None
    } else {
        match TcpStream::connect(upstream).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                Some(stream)
            }
            // The peer is down: the dialer sees its connection closed, as with no proxy.
            Err(_) => return,
        }
    };
    // The link may have been cut while connecting.
    if *cut.borrow_and_update() {
        tainted = true;
    }
    let mut to_upstream = vec![0u8; 64 * 1024];
    let mut to_downstream = vec![0u8; 64 * 1024];
    let (mut in_read, mut in_write) = inbound.split();
    loop {
        let from_upstream = async {
            match outbound.as_mut() {
                Some(stream) => stream.read(&mut to_downstream).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            read = in_read.read(&mut to_upstream) => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if *cut.borrow() {
                    tainted = true;
                    continue;
                }
                if tainted {
                    return;
                }
                let Some(stream) = outbound.as_mut() else { return };
                if stream.write_all(&to_upstream[..n]).await.is_err() {
                    return;
                }
            }
            read = from_upstream => {
                let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                if *cut.borrow() {
                    tainted = true;
                    continue;
                }
                if tainted {
                    return;
                }
                if in_write.write_all(&to_downstream[..n]).await.is_err() {
                    return;
                }
            }
            changed = cut.changed() => {
                if changed.is_err() {
                    return;
                }
                if *cut.borrow_and_update() {
                    tainted = true;
                } else if tainted {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        address
    }

    async fn roundtrip(stream: &mut TcpStream, text: &[u8]) -> Option<Vec<u8>> {
        stream.write_all(text).await.ok()?;
        let mut buf = vec![0u8; text.len()];
        match tokio::time::timeout(Duration::from_millis(300), stream.read_exact(&mut buf)).await {
            Ok(Ok(_)) => Some(buf),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_cut_link_blackholes_and_a_healed_link_forwards_new_connections() {
        let proxy = LinkProxy::start(echo_server().await).await.expect("proxy");
        let mut before = TcpStream::connect(("127.0.0.1", proxy.port())).await.expect("connect");
        assert_eq!(roundtrip(&mut before, b"one").await.as_deref(), Some(&b"one"[..]));

        proxy.cut();
        assert_eq!(roundtrip(&mut before, b"two").await, None, "bytes pass a cut link");
        let mut during = TcpStream::connect(("127.0.0.1", proxy.port())).await.expect("accepted");
        assert_eq!(roundtrip(&mut during, b"three").await, None, "a new connection passes");

        proxy.heal();
        let mut buf = [0u8; 8];
        let closed = tokio::time::timeout(Duration::from_secs(1), before.read(&mut buf)).await;
        assert!(
            matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
            "a cut connection stays open: {closed:?}"
        );
        let mut after = TcpStream::connect(("127.0.0.1", proxy.port())).await.expect("connect");
        assert_eq!(roundtrip(&mut after, b"four").await.as_deref(), Some(&b"four"[..]));
    }
}
