//! The work queue of the Pod controller: which pods wait to be reconciled.

use std::collections::{HashSet, VecDeque};

use super::controller::Key;

/// Keys waiting to be reconciled, each at most once, and never two reconciles of one key at once:
/// a key that changes while it runs goes again after.
#[derive(Debug, Default)]
pub(super) struct WorkQueue {
    order: VecDeque<Key>,
    queued: HashSet<Key>,
    running: HashSet<Key>,
    again: HashSet<Key>,
}

impl WorkQueue {
    pub(super) fn push(&mut self, key: Key) {
        if self.running.contains(&key) {
            self.again.insert(key);
        } else if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    pub(super) fn push_all(&mut self, keys: impl IntoIterator<Item = Key>) {
        for key in keys {
            self.push(key);
        }
    }

    pub(super) fn next_to_run(&mut self) -> Option<Key> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        self.running.insert(key.clone());
        Some(key)
    }

    pub(super) fn done(&mut self, key: &Key) {
        self.running.remove(key);
        if self.again.remove(key) {
            self.push(key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Key {
        ("ns".into(), name.into())
    }

    #[test]
    fn a_key_waits_once_and_never_runs_twice_at_once() {
        let mut queue = WorkQueue::default();
        queue.push_all([key("a"), key("b"), key("a")]);
        assert_eq!(queue.next_to_run(), Some(key("a")));
        queue.push(key("a")); // changed while running: again after
        assert_eq!(queue.next_to_run(), Some(key("b")));
        assert_eq!(queue.next_to_run(), None);
        queue.done(&key("a"));
        assert_eq!(queue.next_to_run(), Some(key("a")));
        queue.done(&key("a"));
        queue.done(&key("b"));
        assert_eq!(queue.next_to_run(), None);
    }
}
