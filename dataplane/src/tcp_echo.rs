//! `kuma-tcp-echo`: the demo application of Kuma's walkthrough. It writes every byte it receives
//! back on the same connection, on as many connections as clients open.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// `-port N` (Go's flag syntax, as Kuma's docs write it; `--port N`, `-port=N` work too).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpEchoArgs {
    pub port: u16,
}

/// A command line `kuma-tcp-echo` cannot run with, or a request for help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TcpEchoArgsError {
    #[error("-h asked for the usage")]
    Help,
    #[error("flag needs an argument: {flag}; pass the port to listen on, e.g. -port 9000")]
    MissingValue { flag: String },
    #[error(
        "invalid value {value:?} for flag -port: expected a TCP port number from 0 to 65535, \
         e.g. -port 9000"
    )]
    BadPort { value: String },
    #[error("flag provided but not defined: {flag}; the only flag is -port, e.g. -port 9000")]
    UnknownFlag { flag: String },
    #[error("unexpected argument {arg:?}; the only flag is -port, e.g. -port 9000")]
    UnexpectedArgument { arg: String },
}

impl TcpEchoArgs {
    /// The port when `-port` is not given, as in Kuma's `kuma-tcp-echo`.
    pub const DEFAULT_PORT: u16 = 8000;

    /// What `-h` prints, in Go's flag package layout.
    pub const USAGE: &'static str = "Usage of kuma-tcp-echo:\n  -port int\n    \tport to listen \
                                     on for TCP connections; every byte received is sent back \
                                     (default 8000)\n";

    /// Parses the arguments after the program name.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<TcpEchoArgs, TcpEchoArgsError> {
        let mut port = TcpEchoArgs::DEFAULT_PORT;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                return Err(TcpEchoArgsError::UnexpectedArgument { arg });
            };
            let (name, inline) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None => (flag, None),
            };
            match name {
                "h" | "help" => return Err(TcpEchoArgsError::Help),
                "port" => {
                    let value = inline.or_else(|| args.next()).ok_or_else(|| {
                        TcpEchoArgsError::MissingValue { flag: format!("-{name}") }
                    })?;
                    port = value.trim().parse().map_err(|_| TcpEchoArgsError::BadPort { value })?;
                }
                _ => return Err(TcpEchoArgsError::UnknownFlag { flag: arg.clone() }),
            }
        }
        Ok(TcpEchoArgs { port })
    }
}

/// The echo server, bound and ready to serve.
#[derive(Debug)]
pub struct TcpEcho {
    listener: TcpListener,
}

impl TcpEcho {
    /// Listens on every interface (`[::]`, which takes IPv4 too; `0.0.0.0` where IPv6 is off),
    /// like Go's `net.Listen("tcp", ":port")`. Port 0 picks a free port.
    pub async fn bind(port: u16) -> std::io::Result<TcpEcho> {
        let listener = match TcpListener::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)))
            .await
        {
            Ok(listener) => listener,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).await?,
        };
        Ok(TcpEcho { listener })
    }

    /// The port listened on.
    pub fn port(&self) -> std::io::Result<u16> {
        Ok(self.listener.local_addr()?.port())
    }

    /// Accepts connections forever, each echoed on its own task.
    pub async fn serve(self) -> std::io::Result<()> {
        loop {
            match self.listener.accept().await {
                Ok((stream, peer)) => {
                    tracing::debug!(%peer, "connection accepted");
                    tokio::spawn(echo(stream));
                }
                // Out of file descriptors and the like: the server itself is fine; back off a
                // little so the loop does not spin while connections close.
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}

/// Copies the connection's input to its output until the client stops sending, then closes the
/// sending side so the client sees the end of the echo.
async fn echo(mut stream: TcpStream) {
    let (mut reader, mut writer) = stream.split();
    if let Err(e) = tokio::io::copy(&mut reader, &mut writer).await {
        tracing::debug!(error = %e, "connection ended");
    }
    let _ = writer.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<TcpEchoArgs, TcpEchoArgsError> {
        TcpEchoArgs::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn the_port_flag_is_accepted_in_every_go_spelling() {
        for args in [&["-port", "9000"][..], &["--port", "9000"], &["-port=9000"], &["--port=9000"]]
        {
            assert_eq!(parse(args), Ok(TcpEchoArgs { port: 9000 }), "{args:?}");
        }
        assert_eq!(parse(&[]), Ok(TcpEchoArgs { port: 8000 }));
    }

    #[test]
    fn bad_command_lines_are_refused() {
        assert!(matches!(parse(&["-port"]), Err(TcpEchoArgsError::MissingValue { .. })));
        assert!(matches!(parse(&["-port", "x"]), Err(TcpEchoArgsError::BadPort { .. })));
        assert!(matches!(parse(&["-port=70000"]), Err(TcpEchoArgsError::BadPort { .. })));
        assert!(matches!(parse(&["-prot", "1"]), Err(TcpEchoArgsError::UnknownFlag { .. })));
        assert!(matches!(parse(&["9000"]), Err(TcpEchoArgsError::UnexpectedArgument { .. })));
        assert_eq!(parse(&["-h"]), Err(TcpEchoArgsError::Help));
    }

    #[tokio::test]
    async fn bytes_come_back_on_the_same_connection() {
        use tokio::io::AsyncReadExt;
        let server = TcpEcho::bind(0).await.expect("bind");
        let port = server.port().expect("port");
        tokio::spawn(server.serve());
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.expect("connect");
        client.write_all(b"ping").await.expect("write");
        client.shutdown().await.expect("half-close");
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.expect("read");
        assert_eq!(echoed, b"ping");
    }
}
