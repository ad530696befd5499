//! Tags: the labels of a dataplane's inbounds and the `match` of policy selectors.

use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// The service tag as Kuma 0.7+ spells it.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The service tag as the seeds (Kuma 0.1-0.6) spell it.
pub const SERVICE_TAG_LEGACY: &str = "service";

/// A sorted tag map. Whole numbers and booleans written unquoted in YAML (`version: 1`,
/// `canary: true`) are kept as the strings they spell; a decimal number is refused, because YAML
/// has already changed it (`1.10` reads as `1.1`) and a quoted string is what the user meant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(transparent)]
pub struct Tags(pub BTreeMap<String, String>);

impl Tags {
    pub fn new() -> Tags {
        Tags::default()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), value.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The service this tag set names, under either spelling of the service tag.
    pub fn service(&self) -> Option<&str> {
        self.get(SERVICE_TAG).or_else(|| self.get(SERVICE_TAG_LEGACY))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Tags {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Tags(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(TagsVisitor)
    }
}

struct TagsVisitor;

impl<'de> Visitor<'de> for TagsVisitor {
    type Value = Tags;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of tag names to string values")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tags, E> {
        Ok(Tags::default())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tags, A::Error> {
        let mut tags = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<TagValue>()?;
            tags.insert(key, value.0);
        }
        Ok(Tags(tags))
    }
}

struct TagValue(String);

impl<'de> Deserialize<'de> for TagValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TagValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string tag value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<TagValue, E> {
                Ok(TagValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TagValue, E> {
                Ok(TagValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<TagValue, E> {
                Err(E::custom(format!(
                    "tag value {v} is a decimal number, which YAML may have rounded; quote it, e.g. '{v}'"
                )))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_and_booleans_become_the_strings_they_spell() {
        let tags: Tags = serde_yaml::from_str("version: 1\ncanary: true\n").unwrap();
        assert_eq!(tags.get("version"), Some("1"));
        assert_eq!(tags.get("canary"), Some("true"));
    }

    #[test]
    fn unquoted_decimal_numbers_are_refused_rather_than_rounded() {
        // YAML reads `1.10` as the float 1.1: keeping it would route to the wrong version.
        let err = serde_yaml::from_str::<Tags>("version: 1.10\n").unwrap_err().to_string();
        assert!(err.contains("quote it"), "{err}");
        let quoted: Tags = serde_yaml::from_str("version: '1.10'\n").unwrap();
        assert_eq!(quoted.get("version"), Some("1.10"));
    }

    #[test]
    fn service_is_read_under_either_spelling() {
        let legacy: Tags = [("service", "redis")].into_iter().collect();
        let modern: Tags = [("kuma.io/service", "redis")].into_iter().collect();
        assert_eq!(legacy.service(), Some("redis"));
        assert_eq!(modern.service(), Some("redis"));
    }
}
