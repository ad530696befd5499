//! TrafficLog as an access log on the outbound's TCP proxy: one line per connection, naming the
//! source and destination services, written to the mesh's `file` logging backend (the mesh's
//! default backend when the policy names none).

use envoy_types::pb::envoy::config::accesslog::v3::access_log::ConfigType;
use envoy_types::pb::envoy::config::accesslog::v3::AccessLog;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::substitution_format_string::Format;
use envoy_types::pb::envoy::config::core::v3::{DataSource, SubstitutionFormatString};
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::file_access_log::AccessLogFormat;
use envoy_types::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
use envoy_types::util::pack_any;
use kuma_model::policy::TrafficLogSpec;
use kuma_model::selection::Selected;

use super::{MeshContext, Proxy};

/// Name Envoy knows the file access logger by.
const FILE_LOGGER: &str = "envoy.access_loggers.file";

/// Kuma's default format for TCP connections; `%KUMA_*%` are filled in per outbound.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n";

/// The access log of an outbound to `service` under the chosen TrafficLog; `None` when the
/// backend does not exist or is not a file (a `tcp` backend needs a relay this control plane
/// does not have yet).
pub fn for_outbound(
    proxy: &Proxy<'_>,
    mesh: &MeshContext,
    service: &str,
    selected: &Selected<'_, TrafficLogSpec>,
) -> Option<AccessLog> {
    let logging = mesh.spec.logging.as_ref()?;
    let wanted = selected
        .policy
        .spec
        .conf
        .as_ref()
        .and_then(|c| c.backend.as_deref())
        .filter(|b| !b.is_empty())
        .or(logging.default_backend.as_deref())?;
    let backend = logging.backends.iter().find(|b| b.name == wanted)?;
    if backend.backend_type() != Some("file") {
        return None;
    }
    let path = backend.conf.as_ref().or(backend.file.as_ref()).and_then(|c| c.path.clone())?;
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
