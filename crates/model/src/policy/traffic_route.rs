use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Selector;
use crate::tags::Tags;

/// Splits traffic from `sources` to a destination service over weighted subsets.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouteSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: Vec<WeightedDestination>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedDestination {
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub destination: Tags,
}
