//! `Accepted`: one accepted connection holding its place under the listener's connection cap
//! until it is closed.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::server::TlsStream;

/// Open connections per client address.
#[derive(Clone, Debug, Default)]
pub(crate) struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

impl PerIp {
    /// A place for one more connection from `ip`, unless it has `limit` already.
    pub(crate) fn take(&self, ip: IpAddr, limit: usize) -> Option<IpSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let count = open.entry(ip).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(IpSlot { open: self.clone(), ip })
    }
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub(crate) struct IpSlot {
    open: PerIp,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.open.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// A connection and its places under the listener's caps: dropping it frees them.
#[derive(Debug)]
pub struct Accepted<T> {
    io: T,
    _permit: OwnedSemaphorePermit,
    _slot: IpSlot,
}

impl<T> Accepted<T> {
    pub(crate) fn new(io: T, permit: OwnedSemaphorePermit, slot: IpSlot) -> Accepted<T> {
        Accepted { io, _permit: permit, _slot: slot }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

/// The certificate a client presented (DER of its leaf), on TLS connections that asked for one.
pub trait PeerCertificate {
    fn peer_certificate(&self) -> Option<&[u8]>;
}

impl PeerCertificate for TcpStream {
    fn peer_certificate(&self) -> Option<&[u8]> {
        None
    }
}

impl PeerCertificate for TlsStream<TcpStream> {
    fn peer_certificate(&self) -> Option<&[u8]> {
        self.get_ref().1.peer_certificates()?.first().map(|c| c.as_ref())
    }
}

impl<T: PeerCertificate> PeerCertificate for Accepted<T> {
    fn peer_certificate(&self) -> Option<&[u8]> {
        self.io.peer_certificate()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Accepted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Accepted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for Accepted<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}
