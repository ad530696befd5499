//! Formats one access log entry Envoy streamed over gRPC into the line a `file` backend would
//! have written: the control plane already filled in the `%KUMA_*%` parts, and the Envoy command
//! operators left in the format are filled in here from the entry. An operator this formatter does
//! not know becomes `-`, as Envoy prints a value it does not have.

use envoy_types::pb::envoy::config::core::v3::address::Address as AddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::Address;
use envoy_types::pb::envoy::data::accesslog::v3::{
    AccessLogCommon, ResponseFlags, TcpAccessLogEntry,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;

/// Shown for a value the entry does not carry.
const MISSING: &str = "-";

/// `format` with every `%OPERATOR%` replaced by the entry's value.
pub fn format_tcp_entry(format: &str, entry: &TcpAccessLogEntry) -> String {
    let default_common = AccessLogCommon::default();
    let common = entry.common_properties.as_ref().unwrap_or(&default_common);
    let (sent, received) =
        entry.connection_properties.as_ref().map_or((0, 0), |c| (c.sent_bytes, c.received_bytes));
    let mut out = String::with_capacity(format.len() + 64);
    let mut rest = format;
    while let Some(start) = rest.find('%') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('%') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let operator = &after[..end];
        if operator.is_empty() || !operator.starts_with(|c: char| c.is_ascii_uppercase()) {
            // Not an operator (`100%` or a lone `%`): keep the text and look again after it.
            out.push('%');
            rest = after;
            continue;
        }
        out.push_str(&value(operator, common, sent, received));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

fn value(operator: &str, common: &AccessLogCommon, sent: u64, received: u64) -> String {
    let name = operator.split('(').next().unwrap_or(operator);
    match name {
        "START_TIME" => common.start_time.as_ref().map_or_else(
            || MISSING.to_string(),
            |t| {
                chrono::DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32).map_or_else(
                    || MISSING.to_string(),
                    |t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                )
            },
        ),
        "DURATION" => common.duration.as_ref().map_or_else(|| MISSING.to_string(), millis),
        "BYTES_SENT" => sent.to_string(),
        "BYTES_RECEIVED" => received.to_string(),
        "RESPONSE_FLAGS" => response_flags(common.response_flags.as_ref()),
        "UPSTREAM_HOST" | "UPSTREAM_REMOTE_ADDRESS" => {
            address(&common.upstream_remote_address, true)
        }
        "UPSTREAM_LOCAL_ADDRESS" => address(&common.upstream_local_address, true),
        "UPSTREAM_CLUSTER" => non_empty(&common.upstream_cluster),
        "UPSTREAM_TRANSPORT_FAILURE_REASON" => non_empty(&common.upstream_transport_failure_reason),
        "DOWNSTREAM_REMOTE_ADDRESS" => address(&common.downstream_remote_address, true),
        "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT" => {
            address(&common.downstream_remote_address, false)
        }
        "DOWNSTREAM_LOCAL_ADDRESS" => address(&common.downstream_local_address, true),
        "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => address(&common.downstream_local_address, false),
        "CONNECTION_TERMINATION_DETAILS" => non_empty(&common.connection_termination_details),
        _ => MISSING.to_string(),
    }
}

fn millis(d: &PbDuration) -> String {
    (d.seconds.max(0) * 1000 + i64::from(d.nanos.max(0)) / 1_000_000).to_string()
}

fn non_empty(s: &str) -> String {
    if s.is_empty() {
        MISSING.to_string()
    } else {
        s.to_string()
    }
}

fn address(address: &Option<Address>, with_port: bool) -> String {
    match address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(AddressKind::SocketAddress(s)) => match (&s.port_specifier, with_port) {
            (Some(PortSpecifier::PortValue(port)), true) if s.address.contains(':') => {
                format!("[{}]:{port}", s.address)
            }
            (Some(PortSpecifier::PortValue(port)), true) => format!("{}:{port}", s.address),
            _ => s.address.clone(),
        },
        Some(AddressKind::Pipe(p)) => p.path.clone(),
        _ => MISSING.to_string(),
    }
}

/// Envoy's short codes of the flags that are set, comma-separated, or `-`.
fn response_flags(flags: Option<&ResponseFlags>) -> String {
    let Some(f) = flags else { return MISSING.to_string() };
    let codes = [
        (f.failed_local_healthcheck, "LH"),
        (f.no_healthy_upstream, "UH"),
        (f.upstream_request_timeout, "UT"),
        (f.local_reset, "LR"),
        (f.upstream_remote_reset, "UR"),
        (f.upstream_connection_failure, "UF"),
        (f.upstream_connection_termination, "UC"),
        (f.upstream_overflow, "UO"),
        (f.no_route_found, "NR"),
        (f.delay_injected, "DI"),
        (f.fault_injected, "FI"),
        (f.rate_limited, "RL"),
        (f.downstream_connection_termination, "DC"),
        (f.stream_idle_timeout, "SI"),
        (f.no_cluster_found, "NC"),
        (f.duration_timeout, "DT"),
        (f.downstream_remote_reset, "DR"),
    ];
    let set: Vec<&str> = codes.iter().filter(|(on, _)| *on).map(|(_, code)| *code).collect();
    if set.is_empty() {
        MISSING.to_string()
    } else {
        set.join(",")
    }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::config::core::v3::SocketAddress;
    use envoy_types::pb::envoy::data::accesslog::v3::ConnectionProperties;
    use envoy_types::pb::google::protobuf::Timestamp;

    use super::*;

    fn socket(ip: &str, port: u32) -> Option<Address> {
        Some(Address {
            address: Some(AddressKind::SocketAddress(SocketAddress {
                address: ip.to_string(),
                port_specifier: Some(PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        })
    }

    #[test]
    fn kumas_default_tcp_format_is_filled_from_the_entry() {
        let entry = TcpAccessLogEntry {
            common_properties: Some(AccessLogCommon {
                start_time: Some(Timestamp { seconds: 1_700_000_000, nanos: 123_000_000 }),
                duration: Some(PbDuration { seconds: 1, nanos: 500_000_000 }),
                upstream_remote_address: socket("127.0.0.1", 9000),
                ..Default::default()
            }),
            connection_properties: Some(ConnectionProperties { received_bytes: 5, sent_bytes: 7 }),
        };
        let format = "[%START_TIME%] %RESPONSE_FLAGS% default 127.0.0.1(web)->%UPSTREAM_HOST%(redis) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes\n";
        assert_eq!(
            format_tcp_entry(format, &entry),
            "[2023-11-14T22:13:20.123Z] - default 127.0.0.1(web)->127.0.0.1:9000(redis) took 1500ms, sent 7 bytes, received: 5 bytes\n"
        );
    }

    #[test]
    fn unknown_operators_become_a_dash_and_stray_percent_signs_stay() {
        let entry = TcpAccessLogEntry::default();
        assert_eq!(format_tcp_entry("%NOPE% 100% %", &entry), "- 100% %");
    }
}
