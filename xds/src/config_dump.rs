//! A dataplane's current config rendered the way Envoy's admin `/config_dump` shows it:
//! `{"configs": [ClustersConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump,
//! SecretsConfigDump]}`, each resource in Envoy's JSON form with its version, field names as in
//! the protos (`version_info`, `dynamic_active_clusters`). It is built from what this control
//! plane generated for the dataplane, so it answers without asking Envoy. Private keys and
//! passwords are replaced by `[redacted]`, as Envoy does in its own dump.

use envoy_types::pb::envoy::admin::v3::{
    clusters_config_dump::DynamicCluster, endpoints_config_dump::DynamicEndpointConfig,
    listeners_config_dump::DynamicListener, listeners_config_dump::DynamicListenerState,
    routes_config_dump::DynamicRouteConfig, secrets_config_dump::DynamicSecret, ClustersConfigDump,
    ConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump, SecretsConfigDump,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use prost_reflect::{DynamicMessage, SerializeOptions};
use serde_json::Value;

use crate::raw_resource::POOL;
use crate::snapshot::{Snapshot, TypeSnapshot};
use crate::xds_type::XdsType;

/// What a redacted secret field holds instead of its value.
pub const REDACTED: &str = "[redacted]";

/// Fields whose values never leave the control plane: a TLS certificate's private key and its
/// password, and the value of a generic secret.
const SECRET_FIELDS: &[&str] = &["private_key", "password", "secret"];

/// A config that could not be rendered as JSON (a resource whose type Envoy's descriptors do
/// not have): a bug on our side, never the client's.
#[derive(Debug, thiserror::Error)]
#[error("could not render the config dump as JSON: {reason}")]
pub struct ConfigDumpError {
    pub reason: String,
}

/// `snapshot` as Envoy's config dump, secrets redacted.
pub fn config_dump(snapshot: &Snapshot) -> Result<Value, ConfigDumpError> {
    let versioned = |kind: XdsType| {
        let set: &TypeSnapshot = snapshot.get(kind);
        set.resources
            .iter()
            .map(move |(name, r)| (name.clone(), r.version.clone(), r.resource.clone()))
    };
    let clusters = ClustersConfigDump {
        version_info: snapshot.get(XdsType::Cluster).version.clone(),
        dynamic_active_clusters: versioned(XdsType::Cluster)
            .map(|(_, version_info, cluster)| DynamicCluster {
                version_info,
                cluster: Some(cluster),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let endpoints = EndpointsConfigDump {
        dynamic_endpoint_configs: versioned(XdsType::Endpoint)
            .map(|(_, version_info, endpoint_config)| DynamicEndpointConfig {
                version_info,
                endpoint_config: Some(endpoint_config),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let listeners = ListenersConfigDump {
        version_info: snapshot.get(XdsType::Listener).version.clone(),
        dynamic_listeners: versioned(XdsType::Listener)
            .map(|(name, version_info, listener)| DynamicListener {
                name,
                active_state: Some(DynamicListenerState {
                    version_info,
                    listener: Some(listener),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let routes = RoutesConfigDump {
        dynamic_route_configs: versioned(XdsType::Route)
            .map(|(_, version_info, route_config)| DynamicRouteConfig {
                version_info,
                route_config: Some(route_config),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let secrets = SecretsConfigDump {
        dynamic_active_secrets: versioned(XdsType::Secret)
            .map(|(name, version_info, secret)| DynamicSecret {
                name,
                version_info,
                secret: Some(secret),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let dump = ConfigDump {
        configs: vec![
            pack(clusters),
            pack(endpoints),
            pack(listeners),
            pack(routes),
            pack(secrets),
        ],
    };
    let mut json = to_json(&dump)?;
    redact(&mut json);
    Ok(json)
}

fn pack<T: Name + Message>(message: T) -> Any {
    Any { type_url: T::type_url(), value: message.encode_to_vec() }
}

/// Envoy's JSON form of `dump`, nested `Any`s unpacked with their `@type`.
fn to_json(dump: &ConfigDump) -> Result<Value, ConfigDumpError> {
    let error = |reason: String| ConfigDumpError { reason };
    let descriptor = POOL
        .get_message_by_name(&ConfigDump::full_name())
        .ok_or_else(|| error(format!("no descriptor for {}", ConfigDump::full_name())))?;
    let message = DynamicMessage::decode(descriptor, dump.encode_to_vec().as_slice())
        .map_err(|e| error(e.to_string()))?;
    let options = SerializeOptions::new().use_proto_field_name(true);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .map_err(|e| error(e.to_string()))
}

/// Replaces the value of every secret field, wherever it is (a raw resource of a ProxyTemplate
/// may carry a key inline in a listener).
fn redact(value: &mut Value) {
    match value {
        Value::Object(fields) => {
            for (name, field) in fields.iter_mut() {
                if SECRET_FIELDS.contains(&name.as_str()) && is_data(field) {
                    *field = match field {
                        Value::Object(_) => serde_json::json!({ "inline_string": REDACTED }),
                        _ => Value::String(REDACTED.to_string()),
                    };
                } else {
                    redact(field);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// Whether `field` is secret data (a `DataSource`, or a plain string or bytes), rather than a
/// message that merely has a field of that name, like a DynamicSecret's `secret` that holds
/// the whole Secret resource.
fn is_data(field: &Value) -> bool {
    match field {
        Value::String(_) => true,
        Value::Object(fields) => {
            !fields.contains_key("@type")
                && fields.keys().all(|k| {
                    matches!(
                        k.as_str(),
                        "filename"
                            | "inline_bytes"
                            | "inline_string"
                            | "environment_variable"
                            | "watched_directory"
                    )
                })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
