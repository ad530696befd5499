use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Selector;

/// Allows traffic from `sources` to `destinations` (enforced when the mesh has mTLS on).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPermissionSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
}
