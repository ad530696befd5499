//! Following the control plane: one MADS stream at a time, to the peers in the order given. Each
//! answer is acknowledged, and written to the file when its targets differ from the file's. When
//! a stream breaks (the peer died, restarted, or stopped answering keepalives) the next peer is
//! asked at once; the file keeps the last targets meanwhile.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use tonic::{Code, Request};
use tonic_prost::ProstCodec;
use tracing::{info, warn};

use crate::config::{Config, CpUrl};
use crate::file_sd::{target_groups, write_atomically};
use kuma_model::mads::{MonitoringAssignment, STREAM_PATH, TYPE_URL};

/// How long a connection attempt to one peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 pings find a peer that went away without closing the connection.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer taken: tonic's default (4 MiB) is about 18,000 dataplanes' assignments.
const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
/// Pause after every peer failed in a row, before asking the first again.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

/// Why kuma-prometheus-sd stopped; each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no control plane answered within {timeout:?} at {urls} ({last}): check --cp-address and that kuma-cp runs with its MADS port (monitoringAssignmentServer.grpcPort, 5676) reachable")]
    Unreachable { timeout: Duration, urls: String, last: String },
    #[error(
        "{url} refused this client: {message} (give a valid user token with --auth-token-file)"
    )]
    Refused { url: CpUrl, message: String },
    #[error("cannot write {path}: {reason} (check the directory of --output-file)")]
    Write { path: PathBuf, reason: String },
}

enum StreamError {
    Refused(String),
    Write(String),
    Other(String),
}

/// What survives from one stream to the next.
struct State {
    /// The file's content as last written (or found at start).
    written: Option<String>,
    ever_answered: bool,
}

/// Follows the control plane until `shutdown`, or until it cannot go on.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tokio::pin!(shutdown);
    let mut state =
        State { written: std::fs::read_to_string(&config.output_file).ok(), ever_answered: false };
    let started = Instant::now();
    let mut failed_in_a_row = 0;
    let mut last = String::new();
    for index in 0.. {
        let url = &config.urls[index % config.urls.len()];
        let mut answered = false;
        let outcome = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            outcome = follow(url, &config, &mut state, &mut answered) => outcome,
        };
        last = match outcome {
            StreamError::Refused(message) => {
                return Err(RunError::Refused { url: url.clone(), message });
            }
            StreamError::Write(reason) => {
                return Err(RunError::Write { path: config.output_file.clone(), reason });
            }
            StreamError::Other(reason) => format!("{url}: {reason}"),
        };
        if answered {
            failed_in_a_row = 0;
        } else {
            failed_in_a_row += 1;
        }
        let next = &config.urls[(index + 1) % config.urls.len()];
        warn!(peer = %url, next = %next, reason = %last, "MADS stream lost; following the next control plane");
        if !state.ever_answered && started.elapsed() >= config.startup_timeout {
            let urls = config.urls.iter().map(|u| u.to_string()).collect::<Vec<_>>().join(",");
            return Err(RunError::Unreachable { timeout: config.startup_timeout, urls, last });
        }
        if failed_in_a_row >= config.urls.len() {
            failed_in_a_row = 0;
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(ROUND_PAUSE) => {}
            }
        }
    }
    unreachable!("the loop only ends by returning: {last}")
}

fn request(name: &str, version: &str, nonce: &str, error: Option<String>) -> DiscoveryRequest {
    DiscoveryRequest {
        version_info: version.to_string(),
        node: Some(Node { id: name.to_string(), ..Default::default() }),
        type_url: TYPE_URL.to_string(),
        response_nonce: nonce.to_string(),
        error_detail: error.map(|message| RpcStatus { code: 3, message, details: Vec::new() }),
        ..Default::default()
    }
}

fn stream_error(status: tonic::Status) -> StreamError {
    match status.code() {
        Code::Unauthenticated | Code::PermissionDenied => {
            StreamError::Refused(status.message().to_string())
        }
        code => StreamError::Other(format!("{code:?}: {}", status.message())),
    }
}

/// One stream to `url`, until it breaks; `answered` is set once it delivered assignments.
async fn follow(
    url: &CpUrl,
    config: &Config,
    state: &mut State,
    answered: &mut bool,
) -> StreamError {
    let other = |e: &dyn std::fmt::Display| StreamError::Other(e.to_string());
    let endpoint = match Endpoint::from_shared(url.endpoint()) {
        Ok(endpoint) => endpoint,
        Err(e) => return other(&e),
    };
    let mut endpoint = endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if url.tls {
        let ca = config.ca_pem.clone().unwrap_or_default();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(url.server_name());
        endpoint = match endpoint.tls_config(tls) {
            Ok(endpoint) => endpoint,
            Err(e) => return other(&e),
        };
    }
    let channel = match endpoint.connect().await {
        Ok(channel) => channel,
        Err(e) => return other(&format!("cannot connect: {e}")),
    };
    let mut grpc = tonic::client::Grpc::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
    if let Err(e) = grpc.ready().await {
        return other(&e);
    }
    let (tx, rx) = mpsc::channel(4);
    let _ = tx.send(request(&config.name, "", "", None)).await;
    let mut outgoing = Request::new(ReceiverStream::new(rx));
    if let Some(token) = &config.token {
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                outgoing.metadata_mut().insert("authorization", value);
            }
            Err(_) => return StreamError::Refused("the token is not valid metadata".to_string()),
        }
    }
    let codec = ProstCodec::<DiscoveryRequest, DiscoveryResponse>::default();
    let path = PathAndQuery::from_static(STREAM_PATH);
    let mut responses = match grpc.streaming(outgoing, path, codec).await {
        Ok(response) => response.into_inner(),
        Err(status) => return stream_error(status),
    };
    info!(peer = %url, "following the control plane's monitoring assignments");
    let mut accepted_version = String::new();
    loop {
        let response = match responses.message().await {
            Ok(Some(response)) => response,
            Ok(None) => return other(&"the control plane closed the stream"),
            Err(status) => return stream_error(status),
        };
        let decoded: Result<Vec<MonitoringAssignment>, String> = response
            .resources
            .iter()
            .map(|any| {
                if any.type_url != TYPE_URL {
                    return Err(format!(
                        "a resource of type {} is not an assignment",
                        any.type_url
                    ));
                }
                MonitoringAssignment::decode(any.value.as_slice()).map_err(|e| e.to_string())
            })
            .collect();
        let assignments = match decoded {
            Ok(assignments) => assignments,
            Err(error) => {
                warn!(peer = %url, %error, "assignments rejected");
                let nack = request(&config.name, &accepted_version, &response.nonce, Some(error));
                if tx.send(nack).await.is_err() {
                    return other(&"the stream closed");
                }
                continue;
            }
        };
        let groups = target_groups(&assignments);
        let targets = groups.as_array().map_or(0, Vec::len);
        let text = serde_json::to_string_pretty(&groups).unwrap_or_default() + "\n";
        if state.written.as_deref() != Some(text.as_str()) {
            if let Err(e) = write_atomically(&config.output_file, &text) {
                return StreamError::Write(e.to_string());
            }
            info!(file = %config.output_file.display(), targets, version = %response.version_info, "file_sd targets written");
            state.written = Some(text);
        } else {
            info!(peer = %url, targets, version = %response.version_info, "targets unchanged; file left as it is");
        }
        state.ever_answered = true;
        *answered = true;
        accepted_version = response.version_info.clone();
        let ack = request(&config.name, &accepted_version, &response.nonce, None);
        if tx.send(ack).await.is_err() {
            return other(&"the stream closed");
        }
    }
}
