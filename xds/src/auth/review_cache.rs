//! Recent positive reviews of service-account tokens, each trusted for a short time, at most a
//! fixed number of them. Entries are keyed by a hash of the token, never the token itself.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::ServiceAccountIdentity;

pub(super) struct ReviewCache {
    ttl: Duration,
    capacity: usize,
    /// Two independently keyed hashes (random keys per process) give a 128-bit key: no token is
    /// kept, and finding another token with the same key would need the keys.
    hashers: [RandomState; 2],
    entries: Mutex<HashMap<u128, Entry>>,
}

struct Entry {
    until: Instant,
    identity: ServiceAccountIdentity,
}

impl ReviewCache {
    pub(super) fn new(ttl: Duration, capacity: usize) -> ReviewCache {
        ReviewCache {
            ttl,
            capacity,
            hashers: [RandomState::new(), RandomState::new()],
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, token: &str) -> u128 {
        let [a, b] = &self.hashers;
        (u128::from(a.hash_one(token)) << 64) | u128::from(b.hash_one(token))
    }

    /// The identity `token` was reviewed as, while that review is fresh.
    pub(super) fn get(&self, token: &str) -> Option<ServiceAccountIdentity> {
        let key = self.key(token);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match entries.get(&key) {
            Some(entry) if entry.until > Instant::now() => Some(entry.identity.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers a positive review. When full, stale entries go first, then the one closest to
    /// going stale.
    pub(super) fn insert(&self, token: &str, identity: ServiceAccountIdentity) {
        if self.ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let key = self.key(token);
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| entry.until > now);
            if entries.len() >= self.capacity {
                let oldest = entries.iter().min_by_key(|(_, entry)| entry.until).map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, Entry { until: now + self.ttl, identity });
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}
