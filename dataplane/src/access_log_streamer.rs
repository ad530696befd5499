//! `AccessLogStreamer`: the AccessLogService (gRPC, `StreamAccessLogs`) Envoy's `tcp_grpc` access
//! logger streams to, served on a unix socket next to the Envoy. Each stream names its backend in
//! its log name, `ADDRESS;FORMAT` (written by the control plane's TrafficLog generator); every
//! entry becomes one formatted line sent to that address by a [`TcpLogWriter`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::{
    AccessLogService, AccessLogServiceServer,
};
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{
    StreamAccessLogsMessage, StreamAccessLogsResponse,
};
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::access_log_format::format_tcp_entry;
use crate::tcp_log_writer::{TcpLogWriter, DEFAULT_QUEUE};

/// The unix socket the streamer of dataplane `mesh/name` listens on; the control plane points
/// the `access_log_sink` cluster at the same path (kuma-xds `sink_socket_path`, same rule, same
/// tests). A path too long for a unix socket names the dataplane by a hash instead.
pub fn access_log_socket_path(mesh: &str, name: &str) -> PathBuf {
    let path = format!("/tmp/kuma-access-logs-{mesh}-{name}.sock");
    if path.len() <= MAX_SOCKET_PATH {
        return PathBuf::from(path);
    }
    let hash = fnv1a(format!("{mesh}/{name}").as_bytes());
    PathBuf::from(format!("/tmp/kuma-access-logs-{hash:016x}.sock"))
}

/// Longest socket path used as is (below the 107 bytes of `sun_path`, with room to spare).
const MAX_SOCKET_PATH: usize = 100;

/// 64-bit FNV-1a, as the control plane computes it.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Why the streamer could not start; the cause is the `source`.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogStreamerError {
    #[error(
        "cannot listen for Envoy's access logs on {} (remove the file if no other kuma-dp of \
         this dataplane runs)",
        path.display()
    )]
    Bind { path: PathBuf, source: std::io::Error },
}

/// The access log streamer of one kuma-dp.
#[derive(Clone, Debug, Default)]
pub struct AccessLogStreamer {
    writers: Arc<Mutex<HashMap<String, TcpLogWriter>>>,
}

impl AccessLogStreamer {
    /// A streamer with no backend connected yet (writers start on the first line for an address).
    pub fn new() -> AccessLogStreamer {
        AccessLogStreamer::default()
    }

    /// Binds `path` (replacing a stale socket left by an earlier run) and serves until the
    /// returned task is aborted. Binding happens before this returns, so Envoy can connect as
    /// soon as it starts.
    pub fn serve(self, path: &Path) -> Result<tokio::task::JoinHandle<()>, AccessLogStreamerError> {
        let bind = |source| AccessLogStreamerError::Bind { path: path.to_path_buf(), source };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(bind(e)),
        }
        let listener = UnixListener::bind(path).map_err(bind)?;
        let shown = path.display().to_string();
        Ok(tokio::spawn(async move {
            let incoming = UnixListenerStream::new(listener);
            let result = tonic::transport::Server::builder()
                .add_service(AccessLogServiceServer::new(self))
                .serve_with_incoming(incoming)
                .await;
            if let Err(error) = result {
                tracing::warn!(path = %shown, %error, "access log streamer stopped");
            }
        }))
    }

    /// Formats and queues the entries of one message for the stream's backend.
    pub fn accept(&self, log_name: &str, message: StreamAccessLogsMessage) {
        let Some((address, format)) = log_name.split_once(';') else {
            tracing::warn!(
                log_name,
                "access log stream without ADDRESS;FORMAT in its log name; entries dropped"
            );
            return;
        };
        let Some(LogEntries::TcpLogs(entries)) = message.log_entries else {
            return;
        };
        let writer = self.writer(address);
        for entry in &entries.log_entry {
            writer.send(format_tcp_entry(format, entry));
        }
    }

    fn writer(&self, address: &str) -> TcpLogWriter {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        writers
            .entry(address.to_string())
            .or_insert_with(|| TcpLogWriter::spawn(address, DEFAULT_QUEUE))
            .clone()
    }
}

#[tonic::async_trait]
impl AccessLogService for AccessLogStreamer {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        // Only the first message of a stream carries the identifier (and so the log name).
        let mut log_name = String::new();
        while let Some(mut message) = stream.message().await? {
            if let Some(identifier) = message.identifier.take() {
                log_name = identifier.log_name;
            }
            self.accept(&log_name, message);
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::access_log_socket_path;

    // kuma-xds's `sink_socket_path` is tested against the same two paths.
    #[test]
    fn the_socket_is_named_after_the_dataplane_or_its_hash_when_too_long() {
        assert_eq!(
            access_log_socket_path("default", "web-1"),
            Path::new("/tmp/kuma-access-logs-default-web-1.sock")
        );
        let long = "a".repeat(80);
        assert_eq!(
            access_log_socket_path("default", &long),
            Path::new("/tmp/kuma-access-logs-47b801a38fbce473.sock")
        );
    }
}
