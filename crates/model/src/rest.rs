//! REST shapes shared by the API server and kumactl: lists, the index, Kuma's error body and the
//! dataplane overview.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::resource::{format_time, Resource};

/// `GET /`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub hostname: String,
    pub tagline: String,
    pub version: String,
}

/// The tagline kumactl checks before adding a control plane.
pub const TAGLINE: &str = "Kuma";

/// A page of a list: `{total, items, next}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceList {
    pub total: u64,
    pub items: Vec<Value>,
    pub next: Option<String>,
}

/// Kuma's error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub title: String,
    pub details: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<Cause>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cause {
    pub field: String,
    pub message: String,
}

/// Page size when none is asked for, and the largest allowed.
pub const DEFAULT_PAGE_SIZE: usize = 100;
pub const MAX_PAGE_SIZE: usize = 1000;

/// The collection segment of dataplanes joined with their insights (`/meshes/{mesh}/dataplanes+insights`).
pub const DATAPLANES_WITH_INSIGHTS: &str = "dataplanes+insights";

/// A Dataplane joined with its insight, as `dataplanes+insights` returns it.
pub fn dataplane_overview(dataplane: &Resource, insight: Option<&Resource>) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), "DataplaneOverview".into());
    object.insert("mesh".into(), dataplane.key.mesh.clone().unwrap_or_default().into());
    object.insert("name".into(), dataplane.key.name.clone().into());
    object.insert("creationTime".into(), format_time(&dataplane.creation_time).into());
    object.insert("modificationTime".into(), format_time(&dataplane.modification_time).into());
    object.insert("dataplane".into(), dataplane.spec.to_json());
    let insight = insight.map(|i| i.spec.to_json()).unwrap_or_else(|| Value::Object(Map::new()));
    object.insert("dataplaneInsight".into(), insight);
    Value::Object(object)
}
