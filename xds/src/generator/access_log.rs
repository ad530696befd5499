//! TrafficLog as an access log on the outbound's TCP proxy: one line per connection, naming the
//! source and destination services, written to the mesh's `file` or `tcp` logging backend (the
//! mesh's default backend when the policy names none).
//!
//! Envoy has no logger that writes lines to a TCP address, so a `tcp` backend is reached the way
//! Kuma does it: Envoy streams each connection's entry over gRPC (`tcp_grpc`, the
//! AccessLogService) to the [`ACCESS_LOG_SINK`] cluster, a unix socket next to the Envoy where
//! kuma-dp listens ([`sink_socket_path`]). The log name carries `ADDRESS;FORMAT`: kuma-dp formats
//! the line with the same format as the file backend and writes it to the address.

use std::collections::HashMap;

use envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::grpc_service::{EnvoyGrpc, TargetSpecifier};
use envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format;
use envoy_types::pb::envoy::config::core::v3::{
    Address, ApiVersion, DataSource, GrpcService, Http2ProtocolOptions, Pipe,
    SubstitutionFormatString,
};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::file_access_log::AccessLogFormat;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::pb::envoy::extensions::access_loggers::grpc::v3::{
    CommonGrpcAccessLogConfig, TcpGrpcAccessLogConfig,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::util::pack_any;
use kuma_model::policy::TrafficLogSpec;
use kuma_model::selection::Selected;

use super::{MeshContext, Proxy};

/// Name Envoy knows the file access logger by.
const FILE_LOGGER: &str = "envoy.access_loggers.file";

/// Name Envoy knows the gRPC TCP access logger by.
const TCP_GRPC_LOGGER: &str = "envoy.access_loggers.tcp_grpc";

/// The cluster of kuma-dp's access log streamer, added when the mesh has a `tcp` backend.
pub const ACCESS_LOG_SINK: &str = "access_log_sink";

/// The unix socket kuma-dp's access log streamer listens on for the dataplane `mesh/name`; kuma-dp
/// computes the same path (`kuma_dp::access_log_socket_path`, same rule, same tests). A path too
/// long for a unix socket (Linux allows 107 bytes) names the dataplane by a hash instead.
pub fn sink_socket_path(mesh: &str, name: &str) -> String {
    let path = format!("/tmp/kuma-access-logs-{mesh}-{name}.sock");
    if path.len() <= MAX_SOCKET_PATH {
        return path;
    }
    format!("/tmp/kuma-access-logs-{:016x}.sock", fnv1a(format!("{mesh}/{name}").as_bytes()))
}

/// Longest socket path used as is (below the 107 bytes of `sun_path`, with room to spare).
const MAX_SOCKET_PATH: usize = 100;

/// 64-bit FNV-1a: tiny, stable across versions and easy to repeat in kuma-dp.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether any logging backend of the mesh is `tcp`, so the sink cluster is needed.
pub fn mesh_has_tcp_backend(mesh: &MeshContext) -> bool {
    mesh.spec
        .logging
        .as_ref()
        .is_some_and(|l| l.backends.iter().any(|b| b.backend_type() == Some("tcp")))
}

/// The cluster Envoy streams `tcp` access logs to: kuma-dp's unix socket, over HTTP/2 (gRPC).
/// When nothing listens there, Envoy drops the entries; traffic is never held up.
pub fn sink_cluster(proxy: &Proxy<'_>) -> Cluster {
    let address = Address {
        address: Some(AddressKind::Pipe(Pipe {
            path: sink_socket_path(proxy.mesh, proxy.name),
            ..Default::default()
        })),
    };
    let http2 = HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    };
    Cluster {
        name: ACCESS_LOG_SINK.to_string(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(super::envoy::pb_duration(super::envoy::CONNECT_TIMEOUT)),
        typed_extension_protocol_options: HashMap::from([(
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions".to_string(),
            pack_any(http2),
        )]),
        load_assignment: Some(super::envoy::load_assignment_of(ACCESS_LOG_SINK, [address])),
        ..Default::default()
    }
}

/// Kuma's default format for TCP connections; `%KUMA_*%` are filled in per outbound.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n";

/// The access log of an outbound to `service` under the chosen TrafficLog; `None` when the
/// backend does not exist or is of an unknown type.
pub fn for_outbound(
    proxy: &Proxy<'_>,
    mesh: &MeshContext,
    service: &str,
    selected: &Selected<'_, TrafficLogSpec>,
) -> Option<AccessLog> {
    let logging = mesh.spec.logging.as_ref()?;
    let named = selected.policy.spec.conf.as_ref().and_then(|c| c.backend.as_deref());
    let wanted = super::chosen_backend(named, logging.default_backend.as_deref())?;
    let backend = logging.backends.iter().find(|b| b.name == wanted)?;
    let kind = backend.backend_type()?;
    if kind != "file" && kind != "tcp" {
        return None;
    }
    let source_address = proxy
        .spec
        .networking
        .inbound
        .iter()
        .find_map(|i| i.resolve(proxy.spec.networking.address.as_deref()))
        .map_or_else(|| "127.0.0.1".to_string(), |i| i.dataplane_ip.to_string());
    let mut format = backend.format.clone().unwrap_or_else(|| DEFAULT_FORMAT.to_string());
    if !format.ends_with('\n') {
        format.push('\n');
    }
    let format = format
        .replace("%KUMA_MESH%", proxy.mesh)
        .replace("%KUMA_SOURCE_SERVICE%", proxy.spec.first_service())
        .replace("%KUMA_DESTINATION_SERVICE%", service)
        .replace("%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%", &source_address)
        .replace("%KUMA_SOURCE_ADDRESS%", &source_address);
    if kind == "tcp" {
        let address =
            backend.conf.as_ref().or(backend.tcp.as_ref()).and_then(|c| c.address.clone())?;
        let grpc = TcpGrpcAccessLogConfig {
            common_config: Some(CommonGrpcAccessLogConfig {
                log_name: format!("{address};{format}"),
                grpc_service: Some(GrpcService {
                    target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                        cluster_name: ACCESS_LOG_SINK.to_string(),
                        ..Default::default()
                    })),
                    ..Default::default()
                }),
                transport_api_version: ApiVersion::V3 as i32,
                ..Default::default()
            }),
        };
        return Some(AccessLog {
            name: TCP_GRPC_LOGGER.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_any(grpc))),
            ..Default::default()
        });
    }
    let path = backend.conf.as_ref().or(backend.file.as_ref()).and_then(|c| c.path.clone())?;
    let file = FileAccessLog {
        path,
        access_log_format: Some(AccessLogFormat::LogFormat(SubstitutionFormatString {
            format: Some(Format::TextFormatSource(DataSource {
                specifier: Some(Specifier::InlineString(format)),
                ..Default::default()
            })),
            ..Default::default()
        })),
    };
    Some(AccessLog {
        name: FILE_LOGGER.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_any(file))),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::sink_socket_path;

    // kuma-dp's `access_log_socket_path` is tested against the same two paths.
    #[test]
    fn the_sink_socket_is_named_after_the_dataplane_or_its_hash_when_too_long() {
        assert_eq!(
            sink_socket_path("default", "web-1"),
            "/tmp/kuma-access-logs-default-web-1.sock"
        );
        let long = "a".repeat(80);
        assert_eq!(
            sink_socket_path("default", &long),
            "/tmp/kuma-access-logs-47b801a38fbce473.sock"
        );
    }
}
