//! Raw Envoy resources (a ProxyTemplate's `conf.resources[].resource`): YAML or JSON naming its
//! type with `@type`, read into protobuf with Envoy's own descriptors, so an unknown field, a
//! wrong type or an unknown `@type` is refused with Envoy's field names.

use std::sync::LazyLock;

use envoy_types::pb::google::protobuf::Any;
use kuma_model::policy::ProxyTemplateSpec;
use kuma_model::Violation;
use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::xds_type::XdsType;

/// The descriptors of Envoy's data-plane API that envoy-types generated its types from, taken from
/// that dependency at build time (see `build.rs`).
static ENVOY_DESCRIPTORS: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy-descriptors.bin"));

pub(crate) static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(ENVOY_DESCRIPTORS).expect("the shipped Envoy descriptors decode")
});

/// A raw resource read into protobuf.
#[derive(Clone, Debug, PartialEq)]
pub struct RawResource {
    pub kind: XdsType,
    /// The resource's `name` (`cluster_name` for an endpoint assignment).
    pub name: String,
    pub resource: Any,
}

/// Reads one raw resource; the error says what is wrong, in Envoy's terms.
pub fn parse_raw_resource(text: &str) -> Result<RawResource, String> {
    let mut value: serde_json::Value = serde_yaml::from_str(text)
        .map_err(|e| format!("native Envoy resource is not valid YAML: {e}"))?;
    let object = value.as_object_mut().ok_or("native Envoy resource must be an object")?;
    let type_url = match object.remove("@type") {
        Some(serde_json::Value::String(t)) => t,
        _ => return Err("native Envoy resource must name its type with \"@type\"".into()),
    };
    let kind = XdsType::from_type_url(&type_url).ok_or_else(|| {
        let known: Vec<String> = XdsType::ALL.iter().map(|t| t.type_url()).collect();
        format!(
            "\"@type\" {type_url:?} is not a resource Envoy takes over xDS; use one of {}",
            known.join(", ")
        )
    })?;
    let full_name = type_url.rsplit('/').next().unwrap_or_default();
    let descriptor = POOL
        .get_message_by_name(full_name)
        .ok_or_else(|| format!("no descriptor for {full_name}"))?;
    let message = DynamicMessage::deserialize(descriptor, value)
        .map_err(|e| format!("not a valid {full_name}: {e}"))?;
    let name_field = if kind == XdsType::Endpoint { "cluster_name" } else { "name" };
    let name = message
        .get_field_by_name(name_field)
        .and_then(|v| v.as_str().map(str::to_string))
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("a {full_name} needs a {name_field}"))?;
    use prost::Message;
    Ok(RawResource { kind, name, resource: Any { type_url, value: message.encode_to_vec() } })
}

/// Violations of a ProxyTemplate's raw resources, at `conf.resources[i].resource`: what the API
/// adds to the model's structural checks.
pub fn proxy_template_violations(spec: &ProxyTemplateSpec) -> Vec<Violation> {
    spec.conf
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.resource.trim().is_empty())
        .filter_map(|(i, r)| {
            parse_raw_resource(&r.resource)
                .err()
                .map(|message| Violation::new(format!("conf.resources[{i}].resource"), message))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raw_cluster_becomes_the_envoy_message_it_names() {
        let raw = parse_raw_resource(
            "'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: extra\nconnect_timeout: 2s\ntype: STATIC\n",
        )
        .unwrap();
        assert_eq!((raw.kind, raw.name.as_str()), (XdsType::Cluster, "extra"));
        let cluster =
            <envoy_types::pb::envoy::config::cluster::v3::Cluster as prost::Message>::decode(
                raw.resource.value.as_slice(),
            )
            .unwrap();
        assert_eq!(cluster.connect_timeout.unwrap().seconds, 2);
    }

    #[test]
    fn unknown_fields_types_and_missing_names_are_explained() {
        let err = parse_raw_resource("'@type': type.googleapis.com/envoy.config.cluster.v3.Cluster\nname: x\nconect_timeout: 2s\n").unwrap_err();
        assert!(err.contains("conect_timeout"), "{err}");
        let err =
            parse_raw_resource("'@type': type.googleapis.com/envoy.config.core.v3.Node\nid: x\n")
                .unwrap_err();
        assert!(err.contains("not a resource Envoy takes"), "{err}");
        let err = parse_raw_resource(
            "'@type': type.googleapis.com/envoy.config.listener.v3.Listener\nstat_prefix: x\n",
        )
        .unwrap_err();
        assert!(err.contains("needs a name"), "{err}");
    }
}
