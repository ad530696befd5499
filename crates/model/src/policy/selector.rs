use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::tags::Tags;

/// `{match: {tag: value | '*'}}`: selects dataplanes (or services) by tags.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    #[serde(default, rename = "match")]
    pub match_tags: Tags,
}

impl Selector {
    /// An empty selector matches everything; otherwise every key must be present with an equal
    /// value, or the selector's value is `*`.
    pub fn matches(&self, tags: &Tags) -> bool {
        self.match_tags
            .iter()
            .all(|(k, v)| tags.get(k).is_some_and(|actual| v == "*" || v == actual))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().copied().collect()
    }

    #[test]
    fn wildcard_and_exact_values_match() {
        let s = Selector { match_tags: tags(&[("service", "*"), ("version", "1")]) };
        assert!(s.matches(&tags(&[("service", "web"), ("version", "1")])));
        assert!(!s.matches(&tags(&[("service", "web"), ("version", "2")])));
        assert!(!s.matches(&tags(&[("version", "1")])));
        assert!(Selector::default().matches(&tags(&[])));
    }
}
