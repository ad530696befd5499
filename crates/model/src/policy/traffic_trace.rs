use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Selector;

/// Enables tracing on the selected dataplanes, to one of the mesh's tracing backends.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTraceSpec {
    #[serde(default)]
    pub selectors: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<TrafficTraceConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficTraceConf {
    /// A tracing backend of the mesh; unset means the mesh's `defaultBackend`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
}
