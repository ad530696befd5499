//! `Rank`: how specifically a selector matched a tag set.

use std::cmp::Ordering;
use std::fmt;

use serde::Serialize;

use crate::policy::Selector;
use crate::tags::Tags;

/// How specifically a selector (or a source + destination pair) matched: the number of its tags
/// that matched by exact value and by `'*'`. More tags rank higher; with as many tags, more exact
/// matches rank higher (Kuma 0.5's `Rank.CompareTo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Rank {
    pub exact: usize,
    pub wildcard: usize,
}

impl Rank {
    /// Tags that matched, exact or wildcard.
    pub fn total(self) -> usize {
        self.exact + self.wildcard
    }

    /// The rank of a source and a destination match together.
    pub fn combined_with(self, other: Rank) -> Rank {
        Rank { exact: self.exact + other.exact, wildcard: self.wildcard + other.wildcard }
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Rank) -> Ordering {
        self.total().cmp(&other.total()).then(self.exact.cmp(&other.exact))
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Rank) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} exact, {} wildcard)", self.total(), self.exact, self.wildcard)
    }
}

impl Selector {
    /// The rank of this selector against `tags`, `None` when it does not match. An empty selector
    /// matches everything with rank 0.
    pub fn rank(&self, tags: &Tags) -> Option<Rank> {
        let mut rank = Rank::default();
        for (key, wanted) in self.match_tags.iter() {
            let actual = tags.get(key)?;
            if wanted == "*" {
                rank.wildcard += 1;
            } else if wanted == actual {
                rank.exact += 1;
            } else {
                return None;
            }
        }
        Some(rank)
    }
}

/// The best match of any of `selectors` against any of `tag_sets`: `(index of the selector,
/// rank)`. On equal ranks the first selector wins, so the answer is stable.
pub fn best_match(selectors: &[Selector], tag_sets: &[&Tags]) -> Option<(usize, Rank)> {
    let mut best: Option<(usize, Rank)> = None;
    for (i, selector) in selectors.iter().enumerate() {
        for tags in tag_sets {
            if let Some(rank) = selector.rank(tags) {
                if best.is_none_or(|(_, b)| rank > b) {
                    best = Some((i, rank));
                }
            }
        }
    }
    best
}
