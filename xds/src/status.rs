//! Dataplane status: every ADS stream is one subscription of its dataplane's DataplaneInsight
//! (who serves it, since when, responses sent / acknowledged / rejected per type). Streams only
//! bump counters in memory; a flusher writes what changed, so a busy mesh never turns ACKs into
//! a write each. What an operator waits for (a stream opened or closed, a config rejected) is
//! written at the next flush; a change of the counters alone waits for `COUNTERS_EVERY` flush
//! intervals since the dataplane's last write: a change that reaches every dataplane would
//! otherwise cost a store write per dataplane per change, which on a replicated store is as much
//! work as serving the change itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::StreamExt;
use kuma_model::{
    DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription, ResourceKey, ResourceType,
    Spec,
};
use kuma_store::{ResourceStore, StoreError};
use tracing::{debug, warn};

use crate::cache::SnapshotCache;
use crate::node_id::NodeId;
use crate::xds_type::XdsType;

/// Subscriptions kept per insight: the open ones plus the latest closed ones.
const KEPT_SUBSCRIPTIONS: usize = 5;
/// Attempts to write one insight when other writers race it.
const WRITE_ATTEMPTS: usize = 5;
/// Status writes of one flush in flight at once.
const FLUSH_CONCURRENCY: usize = 64;
/// Counters alone are written at most once per this many flush intervals (10 s at the default 1 s).
pub const COUNTERS_EVERY: u32 = 10;

struct Entry {
    node: NodeId,
    subscription: DiscoverySubscription,
    /// Something changed since the last write.
    dirty: bool,
    /// What changed must be written at the next flush: the stream opened or closed, or Envoy
    /// rejected a config.
    urgent: bool,
    /// When the subscription was last handed to a write.
    written: Option<Instant>,
    closed: bool,
}

impl Entry {
    fn due(&self, now: Instant, counters_every: Duration) -> bool {
        self.dirty
            && (self.urgent
                || self.written.is_none_or(|at| now.duration_since(at) >= counters_every))
    }
}

/// Collects the status of every stream of this peer and writes it to the store.
pub struct StatusTracker {
    store: Arc<dyn ResourceStore>,
    cache: Arc<SnapshotCache>,
    instance_id: String,
    next_id: AtomicU64,
    entries: Mutex<HashMap<String, Entry>>,
    /// How long a change of counters alone may wait; set by `run` from its interval.
    counters_every: Mutex<Duration>,
}

impl std::fmt::Debug for StatusTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusTracker").field("instance_id", &self.instance_id).finish()
    }
}

/// How long a stopping peer tries to write its dataplanes' last status.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// What the flusher did in one round.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushReport {
    pub written: usize,
    pub failed: usize,
}

impl StatusTracker {
    pub fn new(
        store: Arc<dyn ResourceStore>,
        cache: Arc<SnapshotCache>,
        instance_id: String,
    ) -> StatusTracker {
        StatusTracker {
            store,
            cache,
            instance_id,
            next_id: AtomicU64::new(1),
            entries: Mutex::new(HashMap::new()),
            counters_every: Mutex::new(Duration::ZERO),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new stream of `node`; the handle marks it disconnected when dropped.
    pub fn open(self: &Arc<Self>, node: &NodeId) -> StreamStatus {
        let id = format!(
            "{}-{}-{}",
            self.instance_id,
            Utc::now().timestamp_millis(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let now = Utc::now();
        let subscription = DiscoverySubscription {
            id: id.clone(),
            control_plane_instance_id: self.instance_id.clone(),
            connect_time: Some(now),
            ..Default::default()
        };
        self.lock().insert(
            id.clone(),
            Entry {
                node: node.clone(),
                subscription,
                dirty: true,
                urgent: true,
                written: None,
                closed: false,
            },
        );
        StreamStatus { id, tracker: self.clone() }
    }

    fn update(&self, id: &str, urgent: bool, change: impl FnOnce(&mut DiscoverySubscription)) {
        if let Some(entry) = self.lock().get_mut(id) {
            change(&mut entry.subscription);
            entry.subscription.status.last_update_time = Some(Utc::now());
            entry.dirty = true;
            entry.urgent |= urgent;
        }
    }

    fn close(&self, id: &str) {
        if let Some(entry) = self.lock().get_mut(id) {
            entry.subscription.disconnect_time = Some(Utc::now());
            entry.dirty = true;
            entry.urgent = true;
            entry.closed = true;
        }
    }

    /// Writes every subscription whose change is due (see the module's doc), one store write
    /// per dataplane.
    pub async fn flush(&self) -> FlushReport {
        let counters_every = *self.counters_every.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut by_node: BTreeMap<NodeId, Vec<DiscoverySubscription>> = BTreeMap::new();
        {
            let mut entries = self.lock();
            for entry in entries.values_mut().filter(|e| e.due(now, counters_every)) {
                entry.dirty = false;
                entry.urgent = false;
                entry.written = Some(now);
                by_node.entry(entry.node.clone()).or_default().push(entry.subscription.clone());
            }
            entries.retain(|_, e| !e.closed || e.dirty);
        }
        // Many writes in flight at once, so a replicated store carries them in few log entries
        // (one at a time, a fleet's statuses would take a commit round each).
        let results: Vec<_> = futures::stream::iter(by_node)
            .map(|(node, subscriptions)| async move {
                let result = self.write(&node, subscriptions).await;
                (node, result)
            })
            .buffer_unordered(FLUSH_CONCURRENCY)
            .collect()
            .await;
        let mut report = FlushReport::default();
        for (node, result) in results {
            match result {
                Ok(()) => report.written += 1,
                Err(error) => {
                    report.failed += 1;
                    warn!(dataplane = %node, %error, "could not write the dataplane's status");
                }
            }
        }
        report
    }

    /// Flushes every `interval` until `shutdown`; then marks every stream disconnected and
    /// flushes once more, so a stopped peer leaves no dataplane shown as connected to it.
    pub async fn run(
        self: Arc<Self>,
        interval: Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        *self.counters_every.lock().unwrap_or_else(|p| p.into_inner()) = interval * COUNTERS_EVERY;
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => {
                    // A write waiting for a Raft leader must not hold up a stop.
                    let report = tokio::select! {
                        report = self.flush() => report,
                        _ = &mut shutdown => break,
                    };
                    if report.written > 0 {
                        debug!(written = report.written, "dataplane status flushed");
                    }
                }
            }
        }
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            self.close(&id);
        }
        // Best effort: when every peer stops at once there is no leader to take the writes; the
        // next leader marks the subscriptions of a peer that is gone as disconnected anyway.
        if tokio::time::timeout(FINAL_FLUSH, self.flush()).await.is_err() {
            tracing::info!(
                "the dataplanes' last status could not be written within {FINAL_FLUSH:?}; the \
                 leader marks their subscriptions disconnected when it sees this peer is gone"
            );
        }
    }

    async fn write(
        &self,
        node: &NodeId,
        subscriptions: Vec<DiscoverySubscription>,
    ) -> Result<(), StoreError> {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, &node.mesh, &node.name);
        for _ in 0..WRITE_ATTEMPTS {
            let result = match self.store.get(&key).await {
                Ok(existing) => {
                    let mut spec =
                        existing.spec.as_dataplane_insight().cloned().unwrap_or_default();
                    merge(&mut spec, &subscriptions);
                    spec.mtls = self.cache.mtls_status(node);
                    self.store
                        .update(key.clone(), Spec::DataplaneInsight(spec), &existing.version)
                        .await
                        .map(|_| ())
                }
                Err(StoreError::NotFound { .. }) => {
                    // The dataplane was deleted while connected: its insight went with it.
                    if !self.cache.has_dataplane(node) {
                        return Ok(());
                    }
                    let mut spec = DataplaneInsightSpec::default();
                    merge(&mut spec, &subscriptions);
                    spec.mtls = self.cache.mtls_status(node);
                    self.store.create(key.clone(), Spec::DataplaneInsight(spec)).await.map(|_| ())
                }
                Err(error) => Err(error),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(StoreError::Conflict { .. } | StoreError::AlreadyExists { .. }) => continue,
                Err(StoreError::MeshNotFound { .. }) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
        Err(StoreError::Unavailable {
            reason: format!("{WRITE_ATTEMPTS} attempts to write the insight of {node} raced"),
        })
    }
}

/// Replaces subscriptions by id, adds new ones, and keeps the open ones plus the latest closed.
fn merge(spec: &mut DataplaneInsightSpec, updates: &[DiscoverySubscription]) {
    for update in updates {
        match spec.subscriptions.iter_mut().find(|s| s.id == update.id) {
            Some(existing) => *existing = update.clone(),
            None => spec.subscriptions.push(update.clone()),
        }
    }
    spec.subscriptions.sort_by_key(|s| s.connect_time);
    while spec.subscriptions.len() > KEPT_SUBSCRIPTIONS {
        match spec.subscriptions.iter().position(|s| s.disconnect_time.is_some()) {
            Some(oldest_closed) => {
                spec.subscriptions.remove(oldest_closed);
            }
            None => break,
        }
    }
}

/// One stream's status; counts responses and marks the stream disconnected when dropped.
#[derive(Debug)]
pub struct StreamStatus {
    id: String,
    tracker: Arc<StatusTracker>,
}

impl StreamStatus {
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn sent(&self, kind: XdsType) {
        crate::metrics::XDS.sent(kind);
        self.count(kind, false, |s| s.responses_sent += 1);
    }

    pub fn acknowledged(&self, kind: XdsType) {
        self.count(kind, false, |s| s.responses_acknowledged += 1);
    }

    pub fn rejected(&self, kind: XdsType) {
        self.count(kind, true, |s| s.responses_rejected += 1);
    }

    fn count(&self, kind: XdsType, urgent: bool, bump: impl Fn(&mut DiscoveryServiceStats)) {
        self.tracker.update(&self.id, urgent, |subscription| {
            let status = &mut subscription.status;
            bump(&mut status.total);
            match kind {
                XdsType::Cluster => bump(&mut status.cds),
                XdsType::Endpoint => bump(&mut status.eds),
                XdsType::Listener => bump(&mut status.lds),
                XdsType::Route => bump(&mut status.rds),
                // DataplaneInsight has no SDS counters; SDS counts only in the total.
                XdsType::Secret => {}
            }
        });
    }
}

impl Drop for StreamStatus {
    fn drop(&mut self) {
        self.tracker.close(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sub(id: &str, connected: i64, closed: bool) -> DiscoverySubscription {
        let at = |s| Some(Utc.timestamp_opt(s, 0).unwrap());
        DiscoverySubscription {
            id: id.into(),
            connect_time: at(connected),
            disconnect_time: if closed { at(connected + 1) } else { None },
            ..Default::default()
        }
    }

    #[test]
    fn merge_replaces_by_id_and_drops_the_oldest_closed_first() {
        let mut spec = DataplaneInsightSpec {
            subscriptions: (0..5).map(|i| sub(&format!("s{i}"), i, i != 2)).collect(),
            mtls: None,
        };
        merge(&mut spec, &[sub("s2", 2, true), sub("s9", 9, false)]);
        let ids: Vec<&str> = spec.subscriptions.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["s1", "s2", "s3", "s4", "s9"]);
        assert!(spec.subscriptions[1].disconnect_time.is_some(), "s2 was replaced");
    }

    #[test]
    fn merge_never_drops_an_open_subscription() {
        let mut spec = DataplaneInsightSpec::default();
        let open: Vec<_> = (0..7).map(|i| sub(&format!("s{i}"), i, false)).collect();
        merge(&mut spec, &open);
        assert_eq!(spec.subscriptions.len(), 7);
    }

    #[tokio::test]
    async fn counters_alone_wait_while_opening_rejecting_and_closing_are_written_at_once() {
        let store = Arc::new(kuma_store::MemoryStore::new());
        let cache = Arc::new(SnapshotCache::new(None));
        let tracker = Arc::new(StatusTracker::new(store, cache, "cp-1".into()));
        *tracker.counters_every.lock().unwrap() = Duration::from_millis(200);
        let stream = tracker.open(&NodeId::new("default", "web-1"));
        assert_eq!(tracker.flush().await.written, 1, "a new stream is written at once");
        assert_eq!(tracker.flush().await.written, 0, "nothing changed");

        stream.sent(XdsType::Endpoint);
        stream.acknowledged(XdsType::Endpoint);
        assert_eq!(tracker.flush().await.written, 0, "counters alone wait");
        stream.rejected(XdsType::Listener);
        assert_eq!(tracker.flush().await.written, 1, "a rejection is written at once");

        stream.sent(XdsType::Endpoint);
        assert_eq!(tracker.flush().await.written, 0);
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(tracker.flush().await.written, 1, "counters are written once they waited");

        drop(stream);
        assert_eq!(tracker.flush().await.written, 1, "a closed stream is written at once");
        assert!(tracker.lock().is_empty(), "and forgotten");
    }
}
