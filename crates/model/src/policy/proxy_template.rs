use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Selector;

/// Profiles a ProxyTemplate may import.
pub const PROFILES: &[&str] = &["default-proxy"];

/// Customises the Envoy configuration of the selected dataplanes with raw Envoy resources.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTemplateSpec {
    #[serde(default)]
    pub selectors: Vec<Selector>,
    #[serde(default)]
    pub conf: ProxyTemplateConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTemplateConf {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imports: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ProxyTemplateRawResource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyTemplateRawResource {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub version: String,
    /// A raw Envoy resource (Listener, Cluster, ...) as YAML or JSON with its `@type`.
    #[serde(default)]
    pub resource: String,
}
