//! Which resources of one type a stream asked for: everything (the wildcard, written `"*"` or,
//! on a type's first request, as an empty list) and/or explicit names.

use std::collections::BTreeSet;

pub const WILDCARD: &str = "*";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Subscription {
    pub wildcard: bool,
    pub names: BTreeSet<String>,
    /// Once a stream has named a resource, an empty SotW list means "nothing" rather than "*".
    named_before: bool,
}

impl Subscription {
    /// Applies a state-of-the-world request's full list of names.
    pub fn replace(&mut self, requested: &[String]) {
        if requested.is_empty() {
            self.wildcard = !self.named_before;
            self.names.clear();
            return;
        }
        self.named_before = true;
        self.wildcard = requested.iter().any(|n| n == WILDCARD);
        self.names = requested.iter().filter(|n| *n != WILDCARD).cloned().collect();
    }

    /// Applies a delta request's changes; `first` marks the type's first request, where an
    /// empty subscribe list is the legacy wildcard.
    pub fn change(&mut self, subscribe: &[String], unsubscribe: &[String], first: bool) {
        if first && subscribe.is_empty() {
            self.wildcard = true;
        }
        for name in subscribe {
            if name == WILDCARD {
                self.wildcard = true;
            } else {
                self.names.insert(name.clone());
            }
        }
        for name in unsubscribe {
            if name == WILDCARD {
                self.wildcard = false;
            } else {
                self.names.remove(name);
            }
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_list_is_wildcard_only_until_a_name_was_sent() {
        let mut s = Subscription::default();
        s.replace(&[]);
        assert!(s.wildcard);
        s.replace(&names(&["a"]));
        assert!(!s.wildcard && s.contains("a") && !s.contains("b"));
        s.replace(&[]);
        assert!(!s.wildcard && !s.contains("a"), "empty after names unsubscribes all");
    }

    #[test]
    fn star_is_wildcard_and_may_come_with_names() {
        let mut s = Subscription::default();
        s.replace(&names(&["*", "a"]));
        assert!(s.wildcard && s.contains("zzz"));
        assert_eq!(s.names, BTreeSet::from(["a".to_string()]));
    }

    #[test]
    fn delta_subscribe_and_unsubscribe_including_star() {
        let mut s = Subscription::default();
        s.change(&[], &[], true);
        assert!(s.wildcard);
        s.change(&[], &names(&["*"]), false);
        assert!(!s.wildcard);
        s.change(&names(&["a", "b"]), &names(&["a"]), false);
        assert!(s.contains("b") && !s.contains("a"));
        let mut explicit = Subscription::default();
        explicit.change(&names(&["x"]), &[], true);
        assert!(!explicit.wildcard && explicit.contains("x"));
    }
}
