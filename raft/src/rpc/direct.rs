//! The direct form of the peer RPC: the same JSON requests and answers as `CALL_PATH`, framed on
//! a plain (or TLS) connection instead of an HTTP/2 stream, on the same port.
//!
//! Why: a lone write crosses the peer RPC twice (the entries to a follower, its answer back), and
//! over gRPC each crossing passed through tonic's request buffer task, hyper's connection task
//! and a task spawned for the request on the receiving side, each a thread wake-up on this kind
//! of machine. Here the caller's own task writes the request and reads the answer, and the
//! receiving peer serves a connection's requests in one task. A connection carries one request
//! at a time; a peer keeps the idle ones for the next call.
//!
//! ```text
//! caller -> peer   PREFACE
//! peer -> caller   PREFACE                      (a peer of an earlier version answers HTTP/2)
//! caller -> peer   <u32 length> <u8 n> <cluster id: n bytes> <PeerRequest as JSON>
//! peer -> caller   <u32 length> <u8 gRPC status code> <PeerResponse as JSON, or the message>
//! ```
//!
//! The listener tells the two forms apart by a connection's first 24 bytes: `PREFACE`, or the
//! HTTP/2 connection preface, whose connection then goes to tonic as before. A caller that does
//! not get `PREFACE` back (an earlier kuma-cp, during a rolling upgrade) sends its requests to
//! that peer by gRPC for a while (`EARLIER_PEER_RECHECK`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tonic::{Code, Status};
use tracing::{debug, warn};

use super::{PeerHandler, PeerRequest, PeerResponse, MAX_MESSAGE};
use crate::config::PeerTls;
use crate::formation::Admission;

/// The first bytes of a direct connection, both ways; as long as HTTP/2's connection preface
/// (`PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`), which is what the listener compares them with.
pub(crate) const PREFACE: &[u8; 24] = b"KUMA-RAFT-DIRECT/1\r\n\r\n\r\n";

/// A caller has this long to finish its TLS handshake and send its first bytes.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long requests go to a peer by gRPC after it did not answer `PREFACE`.
const EARLIER_PEER_RECHECK: Duration = Duration::from_secs(60);
/// Idle connections kept per peer: openraft's replication stream, its leadership checks (one per
/// consistent read) and heartbeats each hold one while they wait for an answer.
const MAX_IDLE: usize = 32;

/// A peer connection: TCP, under TLS when the cluster has it.
pub(crate) enum PeerStream {
    Plain(TcpStream),
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl PeerStream {
    fn tcp(&self) -> &TcpStream {
        match self {
            PeerStream::Plain(tcp) => tcp,
            PeerStream::Client(tls) => tls.get_ref().0,
            PeerStream::Server(tls) => tls.get_ref().0,
        }
    }

    /// Whether an idle connection is still good to send on: nothing arrived on it since its last
    /// answer (a peer never speaks unasked, so what arrives is the end of the connection). Asks
    /// the socket itself: the runtime may not have seen the end arrive yet.
    fn still_open(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::uninit(); 1];
        let peeked = socket2::SockRef::from(self.tcp()).peek(&mut byte);
        matches!(peeked, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

macro_rules! each_stream {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            PeerStream::Plain($s) => $e,
            PeerStream::Client($s) => $e,
            PeerStream::Server($s) => $e,
        }
    };
}

impl AsyncRead for PeerStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for PeerStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_stream!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            PeerStream::Plain(s) => s.is_write_vectored(),
            PeerStream::Client(s) => s.is_write_vectored(),
            PeerStream::Server(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_stream!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// Writes one frame (`parts` one after the other) and flushes it.
async fn write_frame(stream: &mut PeerStream, parts: &[&[u8]]) -> io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).map_err(|_| io::Error::other("a peer message over 4 GiB"))?;
    let mut frame = Vec::with_capacity(4 + len as usize);
    frame.extend_from_slice(&len.to_be_bytes());
    for part in parts {
        frame.extend_from_slice(part);
    }
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Reads one frame; `None` at the end of the connection before a frame starts.
async fn read_frame(stream: &mut PeerStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match stream.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a peer message of {len} bytes, over the limit of {MAX_MESSAGE}"),
        ));
    }
    // Grown as the bytes arrive, not taken at the announced length up front.
    let mut frame = Vec::with_capacity(len.min(64 * 1024));
    stream.take(len as u64).read_to_end(&mut frame).await?;
    if frame.len() < len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a peer message cut short"));
    }
    Ok(Some(frame))
}

fn encode_request(request: &PeerRequest, cluster: Option<&str>) -> Result<Vec<u8>, Status> {
    let cluster = cluster.unwrap_or("").as_bytes();
    let n =
        u8::try_from(cluster.len()).map_err(|_| Status::internal("a cluster id over 255 bytes"))?;
    let mut payload = Vec::with_capacity(256);
    payload.push(n);
    payload.extend_from_slice(cluster);
    serde_json::to_writer(&mut payload, request)
        .map_err(|e| Status::internal(format!("encoding a peer message: {e}")))?;
    Ok(payload)
}

fn decode_request(payload: &[u8]) -> Result<(PeerRequest, Option<&str>), Status> {
    let invalid = |what: &str| Status::invalid_argument(format!("decoding a peer message: {what}"));
    let (&n, rest) = payload.split_first().ok_or_else(|| invalid("empty"))?;
    let n = usize::from(n);
    if rest.len() < n {
        return Err(invalid("shorter than its cluster id"));
    }
    let (cluster, json) = rest.split_at(n);
    let cluster = std::str::from_utf8(cluster).map_err(|_| invalid("cluster id not UTF-8"))?;
    let request = serde_json::from_slice(json).map_err(|e| invalid(&e.to_string()))?;
    Ok((request, (!cluster.is_empty()).then_some(cluster)))
}

fn decode_answer(frame: &[u8]) -> Result<PeerResponse, Status> {
    match frame.split_first() {
        Some((0, json)) => serde_json::from_slice(json)
            .map_err(|e| Status::internal(format!("decoding a peer's answer: {e}"))),
        Some((&code, message)) => {
            Err(Status::new(Code::from(i32::from(code)), String::from_utf8_lossy(message)))
        }
        None => Err(Status::internal("a peer's answer is empty")),
    }
}

// ---------------------------------------------------------------------------------------------
// The caller's side

/// The direct connections to one peer, shared by the clones of its `PeerClient`.
pub(super) struct DirectClient {
    address: Arc<str>,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    idle: Mutex<Vec<PeerStream>>,
    /// When the peer last did not answer `PREFACE`.
    refused: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for DirectClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectClient").field("address", &self.address).finish_non_exhaustive()
    }
}

/// How a connection attempt ended.
enum Dialed {
    Ready(PeerStream),
    /// The peer answered something else than `PREFACE`: it serves gRPC only.
    Earlier,
    Failed(Status),
}

impl DirectClient {
    pub(super) fn new(
        address: Arc<str>,
        tls: Option<&PeerTls>,
        connect_timeout: Duration,
    ) -> Result<DirectClient, String> {
        let tls = tls.map(client_tls).transpose()?;
        Ok(DirectClient {
            address,
            tls,
            connect_timeout,
            idle: Mutex::default(),
            refused: Mutex::default(),
        })
    }

    fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        mutex.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends `request` and waits up to `timeout` for the answer; `None` when the peer serves gRPC
    /// only, for the caller to send it that way.
    pub(super) async fn call(
        &self,
        request: &PeerRequest,
        cluster: Option<&str>,
        timeout: Duration,
    ) -> Option<Result<PeerResponse, Status>> {
        if Self::lock(&self.refused).is_some_and(|at| at.elapsed() < EARLIER_PEER_RECHECK) {
            return None;
        }
        let payload = match encode_request(request, cluster) {
            Ok(payload) => payload,
            Err(status) => return Some(Err(status)),
        };
        let exchange = async {
            let mut stream = match self.take_idle() {
                Some(stream) => stream,
                None => match self.dial().await {
                    Dialed::Ready(stream) => stream,
                    Dialed::Earlier => return None,
                    Dialed::Failed(status) => return Some(Err(status)),
                },
            };
            let answer = match exchange(&mut stream, &payload).await {
                Ok(frame) => frame,
                Err(e) => {
                    let message = format!("peer at {}: {e}", self.address);
                    return Some(Err(Status::unavailable(message)));
                }
            };
            self.put_idle(stream);
            Some(decode_answer(&answer))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(answer) => answer,
            Err(_) => Some(Err(Status::deadline_exceeded("peer did not answer in time"))),
        }
    }

    /// Idle connections kept, and of those the ones still open.
    #[cfg(test)]
    pub(super) fn idle_connections(&self) -> (usize, usize) {
        let idle = Self::lock(&self.idle);
        (idle.len(), idle.iter().filter(|s| s.still_open()).count())
    }

    fn take_idle(&self) -> Option<PeerStream> {
        let mut idle = Self::lock(&self.idle);
        while let Some(stream) = idle.pop() {
            if stream.still_open() {
                return Some(stream);
            }
        }
        None
    }

    fn put_idle(&self, stream: PeerStream) {
        let mut idle = Self::lock(&self.idle);
        if idle.len() < MAX_IDLE {
            idle.push(stream);
        }
    }

    async fn dial(&self) -> Dialed {
        let unavailable = |e: &dyn std::fmt::Display| {
            Dialed::Failed(Status::unavailable(format!("peer at {}: {e}", self.address)))
        };
        let connecting = async {
            let tcp = TcpStream::connect(&*self.address).await?;
            tcp.set_nodelay(true)?;
            let mut stream = match &self.tls {
                Some((connector, name)) => {
                    PeerStream::Client(Box::new(connector.connect(name.clone(), tcp).await?))
                }
                None => PeerStream::Plain(tcp),
            };
            stream.write_all(PREFACE).await?;
            stream.flush().await?;
            // Up to `PREFACE`'s length, or what came before the connection closed.
            let mut answer = Vec::with_capacity(PREFACE.len());
            (&mut stream).take(PREFACE.len() as u64).read_to_end(&mut answer).await?;
            io::Result::Ok((stream, answer))
        };
        match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok((stream, answer))) if answer == PREFACE => Dialed::Ready(stream),
            Ok(Ok((_, answer))) if answer.is_empty() => {
                unavailable(&"closed the connection without answering")
            }
            Ok(Ok(_)) => {
                *Self::lock(&self.refused) = Some(Instant::now());
                warn!(
                    peer = %self.address,
                    "peer answered something else than the direct peer protocol (an earlier \
                     kuma-cp, or a peer whose TLS settings differ): requests go to it by gRPC \
                     for a while"
                );
                Dialed::Earlier
            }
            Ok(Err(e)) => unavailable(&e),
            Err(_) => unavailable(&"no connection within the connect timeout"),
        }
    }
}

async fn exchange(stream: &mut PeerStream, payload: &[u8]) -> io::Result<Vec<u8>> {
    write_frame(stream, &[payload]).await?;
    read_frame(stream)
        .await?
        .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed"))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("peer TLS certificate: {e}"))
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(ca_pem)? {
        roots.add(ca).map_err(|e| format!("peer TLS CA: {e}"))?;
    }
    Ok(roots)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| format!("peer TLS key: {e}"))
}

/// The caller's TLS: the cluster CA for the peer's certificate, its own for client authentication.
fn client_tls(tls: &PeerTls) -> Result<(TlsConnector, ServerName<'static>), String> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(&tls.ca_pem)?)
        .with_client_auth_cert(certificates(&tls.cert_pem)?, key(&tls.key_pem)?)
        .map_err(|e| format!("peer TLS: {e}"))?;
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("peer TLS server name {:?}: {e}", tls.server_name))?;
    Ok((TlsConnector::from(Arc::new(config)), name))
}

// ---------------------------------------------------------------------------------------------
// The listener's side

/// The listener's TLS: only callers with a certificate from the cluster CA get through the
/// handshake. HTTP/2 is offered for the gRPC callers (tonic's client requires it).
pub(crate) fn server_tls(tls: &PeerTls) -> Result<Arc<rustls::ServerConfig>, String> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(&tls.ca_pem)?),
        provider(),
    )
    .build()
    .map_err(|e| format!("peer TLS CA: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(&tls.cert_pem)?, key(&tls.key_pem)?)
        .map_err(|e| format!("peer TLS: {e}"))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    // Peers reconnect rarely; no resumption tickets to arrive on an idle connection.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// A connection for tonic: the bytes read to tell the forms apart, then the rest.
pub(crate) struct Sniffed {
    head: Vec<u8>,
    read: usize,
    stream: PeerStream,
}

impl tonic::transport::server::Connected for Sniffed {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Sniffed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.read);
            buf.put_slice(&this.head[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Sniffed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The gRPC connections of the peer port, for tonic's `serve_with_incoming`.
pub(crate) type GrpcIncoming = tokio_stream::wrappers::ReceiverStream<io::Result<Sniffed>>;

/// Accepts on the peer port: serves direct connections itself, hands the gRPC ones to tonic
/// through the returned stream. The returned future accepts until `shutdown`; dropping it (or its
/// end) closes the direct connections, which hold the peer's handler.
pub(crate) fn listen(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Arc<dyn PeerHandler>,
    admission: Admission,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (GrpcIncoming, impl Future<Output = ()> + Send + 'static) {
    let (grpc, incoming) = mpsc::channel(64);
    let accepting = async move {
        let mut connections = JoinSet::new();
        let acceptor = tls.map(TlsAcceptor::from);
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => accepted,
                // Reap finished connections as they end.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            };
            let tcp = match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    debug!(%error, "accepting a peer connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let (acceptor, handler, admission, grpc) =
                (acceptor.clone(), handler.clone(), admission.clone(), grpc.clone());
            connections.spawn(async move {
                let opened = tokio::time::timeout(HANDSHAKE_TIMEOUT, open(tcp, acceptor)).await;
                match opened {
                    Ok(Ok((stream, true))) => serve(stream, &*handler, &admission).await,
                    Ok(Ok((stream, false))) => {
                        let _ = grpc.send(Ok(stream)).await;
                    }
                    Ok(Err(error)) => debug!(%error, "a peer connection failed its handshake"),
                    Err(_) => debug!("a peer connection did not finish its handshake in time"),
                }
            });
        }
    };
    (GrpcIncoming::new(incoming), accepting)
}

/// The TLS handshake (with TLS) and the first 24 bytes: the connection, and whether it is direct
/// (in which case `PREFACE` was answered).
async fn open(tcp: TcpStream, acceptor: Option<TlsAcceptor>) -> io::Result<(Sniffed, bool)> {
    tcp.set_nodelay(true)?;
    let mut stream = match acceptor {
        Some(acceptor) => PeerStream::Server(Box::new(acceptor.accept(tcp).await?)),
        None => PeerStream::Plain(tcp),
    };
    let mut head = vec![0u8; PREFACE.len()];
    stream.read_exact(&mut head).await?;
    let direct = head == PREFACE;
    if direct {
        stream.write_all(PREFACE).await?;
        stream.flush().await?;
        head.clear();
    }
    Ok((Sniffed { head, read: 0, stream }, direct))
}

/// Serves a direct connection's requests one after the other until the caller closes it.
async fn serve(connection: Sniffed, handler: &dyn PeerHandler, admission: &Admission) {
    let mut stream = connection.stream;
    loop {
        let payload = match read_frame(&mut stream).await {
            Ok(Some(payload)) => payload,
            Ok(None) => return,
            Err(error) => {
                debug!(%error, "reading a direct peer request");
                return;
            }
        };
        let answer = match answer(handler, admission, &payload).await {
            Ok(json) => [&[0u8][..], &json].concat(),
            Err(status) => [&[status.code() as u8][..], status.message().as_bytes()].concat(),
        };
        if let Err(error) = write_frame(&mut stream, &[&answer]).await {
            debug!(%error, "answering a direct peer request");
            return;
        }
    }
}

async fn answer(
    handler: &dyn PeerHandler,
    admission: &Admission,
    payload: &[u8],
) -> Result<Vec<u8>, Status> {
    let (request, their_cluster) = decode_request(payload)?;
    admission.admits(&request, their_cluster).map_err(super::server::refusal_status)?;
    let response = handler.handle(request).await;
    serde_json::to_vec(&response)
        .map_err(|e| Status::internal(format!("encoding a peer message: {e}")))
}
