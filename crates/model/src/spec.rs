//! `Spec`: the typed body of a resource, one variant per registered type. The `specs!` list below
//! is the only place that pairs a `ResourceType` with its Rust type.

use schemars::Schema;
use serde_json::Value;

use crate::dataplane::DataplaneSpec;
use crate::insight::DataplaneInsightSpec;
use crate::mesh::MeshSpec;
use crate::policy::{
    HealthCheckSpec, ProxyTemplateSpec, TrafficLogSpec, TrafficPermissionSpec, TrafficRouteSpec,
    TrafficTraceSpec,
};
use crate::registry::ResourceType;
use crate::secret::{GlobalSecretSpec, SecretSpec};
use crate::validation::{Report, Validate, ValidationContext};

macro_rules! specs {
    ($($variant:ident => $ty:ty),* $(,)?) => {
        /// The typed body of a resource.
        #[derive(Clone, Debug, PartialEq)]
        pub enum Spec {
            $($variant($ty),)*
        }

        impl Spec {
            /// The registered type of this spec.
            pub fn resource_type(&self) -> ResourceType {
                match self {
                    $(Spec::$variant(_) => ResourceType::$variant,)*
                }
            }

            /// The spec's fields as a JSON object, as the user wrote them.
            pub fn to_json(&self) -> Value {
                let value = match self {
                    $(Spec::$variant(s) => serde_json::to_value(s),)*
                };
                value.expect("specs are plain data and always serialize")
            }

            /// The spec's fields as JSON text (what `to_json` gives, without building a tree).
            pub fn to_raw_json(&self) -> Box<serde_json::value::RawValue> {
                let text = match self {
                    $(Spec::$variant(s) => serde_json::value::to_raw_value(s),)*
                };
                text.expect("specs are plain data and always serialize")
            }

            /// Reads the spec of `resource_type` from JSON text, naming the failing path.
            pub fn from_json_str(
                resource_type: ResourceType,
                text: &str,
            ) -> Result<Spec, serde_path_to_error::Error<serde_json::Error>> {
                match resource_type {
                    $(ResourceType::$variant => {
                        // Text that reads is the common case (a replica applying its log): read
                        // it without tracking the path, and track it only to say where it fails.
                        if let Ok(spec) = serde_json::from_str(text) {
                            return Ok(Spec::$variant(spec));
                        }
                        let mut json = serde_json::Deserializer::from_str(text);
                        serde_path_to_error::deserialize(&mut json).map(Spec::$variant)
                    })*
                }
            }

            /// Reads the spec of `resource_type` from its JSON fields, naming the failing path.
            pub fn from_json(
                resource_type: ResourceType,
                value: Value,
            ) -> Result<Spec, serde_path_to_error::Error<serde_json::Error>> {
                match resource_type {
                    $(ResourceType::$variant => {
                        serde_path_to_error::deserialize(value).map(Spec::$variant)
                    })*
                }
            }

            pub(crate) fn validate_into(&self, ctx: &ValidationContext<'_>, report: &mut Report) {
                match self {
                    $(Spec::$variant(s) => s.validate(ctx, report),)*
                }
            }

            pub(crate) fn schema_of(
                resource_type: ResourceType,
                generator: &mut schemars::SchemaGenerator,
            ) -> Schema {
                match resource_type {
                    $(ResourceType::$variant => generator.subschema_for::<$ty>(),)*
                }
            }
        }

        $(impl From<$ty> for Spec {
            fn from(spec: $ty) -> Spec {
                Spec::$variant(spec)
            }
        })*
    };
}

specs! {
    Mesh => MeshSpec,
    Dataplane => DataplaneSpec,
    DataplaneInsight => DataplaneInsightSpec,
    TrafficPermission => TrafficPermissionSpec,
    TrafficRoute => TrafficRouteSpec,
    TrafficLog => TrafficLogSpec,
    TrafficTrace => TrafficTraceSpec,
    ProxyTemplate => ProxyTemplateSpec,
    HealthCheck => HealthCheckSpec,
    Secret => SecretSpec,
    GlobalSecret => GlobalSecretSpec,
}

impl Spec {
    /// An empty spec of the given type (every field at its default).
    pub fn empty(resource_type: ResourceType) -> Spec {
        Spec::from_json(resource_type, Value::Object(Default::default()))
            .expect("every spec type accepts an empty object")
    }

    pub fn as_mesh(&self) -> Option<&MeshSpec> {
        match self {
            Spec::Mesh(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_dataplane(&self) -> Option<&DataplaneSpec> {
        match self {
            Spec::Dataplane(d) => Some(d),
            _ => None,
        }
    }

    /// The bytes of a `Secret` or a `GlobalSecret`.
    pub fn as_secret(&self) -> Option<&SecretSpec> {
        match self {
            Spec::Secret(s) | Spec::GlobalSecret(GlobalSecretSpec(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_dataplane_insight(&self) -> Option<&DataplaneInsightSpec> {
        match self {
            Spec::DataplaneInsight(i) => Some(i),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_has_an_empty_spec_of_its_own_type() {
        for t in ResourceType::all() {
            assert_eq!(Spec::empty(t).resource_type(), t);
        }
    }

    #[test]
    fn json_text_reads_back_as_the_same_spec_as_the_json_tree() {
        let value = serde_json::json!({
            "sources": [{"match": {"service": "web"}}],
            "destinations": [{"match": {"service": "backend", "version": "v1"}}],
        });
        let t = ResourceType::TrafficPermission;
        let spec = Spec::from_json(t, value).unwrap();
        let text = spec.to_raw_json().get().to_string();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), spec.to_json());
        assert_eq!(Spec::from_json_str(t, &text).unwrap(), spec);
    }

    #[test]
    fn json_text_of_the_wrong_shape_names_the_failing_path() {
        let err =
            Spec::from_json_str(ResourceType::TrafficPermission, r#"{"sources": 3}"#).unwrap_err();
        assert_eq!(err.path().to_string(), "sources");
    }
}
