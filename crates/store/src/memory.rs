//! `MemoryStore`: everything in one process's memory. The default for a single kuma-cp; restarting
//! loses the data, as Kuma's documentation says of the memory backend.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::Utc;
use kuma_model::{Resource, ResourceKey, Spec, Version};
use tokio::sync::broadcast;

use crate::state::{StoreState, HISTORY};
use crate::{
    ListPage, ListQuery, ResourceStore, Revision, StoreError, StoreMetrics, StoreOp, WatchEvent,
    WatchStream,
};
use std::time::Instant;

/// The in-memory `ResourceStore`.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<StoreState>,
    events: broadcast::Sender<WatchEvent>,
    metrics: StoreMetrics,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            state: Mutex::new(StoreState::default()),
            events: broadcast::channel(HISTORY).0,
            metrics: StoreMetrics::new("memory"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StoreState> {
        // A panic while holding the lock leaves the maps consistent (every write is one insert or
        // remove), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, events: Vec<WatchEvent>) {
        for event in events {
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
    }
}

#[async_trait]
impl ResourceStore for MemoryStore {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        let started = Instant::now();
        let result = self.lock().get(key);
        self.metrics.record(StoreOp::Get, started);
        result
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let started = Instant::now();
        let result = self.lock().list(query);
        self.metrics.record(StoreOp::List, started);
        result
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        let started = Instant::now();
        let result = self.lock().create(key, spec, Utc::now()).map(|(resource, events)| {
            self.publish(events);
            resource
        });
        self.metrics.record(StoreOp::Create, started);
        result
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        let started = Instant::now();
        let result =
            self.lock().update(key, spec, expected, Utc::now()).map(|(resource, events)| {
                self.publish(events);
                resource
            });
        self.metrics.record(StoreOp::Update, started);
        result
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.lock().delete(key, expected).map(|events| self.publish(events));
        self.metrics.record(StoreOp::Delete, started);
        result
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.lock().revision())
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        let state = self.lock();
        state.watch(&self.events, from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use kuma_model::ResourceType;
    use std::sync::Arc;

    crate::conformance_suite!(async { Arc::new(MemoryStore::new()) as Arc<dyn ResourceStore> });

    #[tokio::test]
    async fn a_watcher_that_falls_too_far_behind_is_told_and_its_stream_ends() {
        let store = MemoryStore::new();
        store.create(ResourceKey::mesh("default"), Spec::Mesh(Default::default())).await.unwrap();
        let mut events = store.watch(None).await.unwrap();
        for i in 0..HISTORY + 10 {
            let key =
                ResourceKey::new(ResourceType::TrafficPermission, "default", &format!("tp-{i}"));
            store.create(key, Spec::empty(ResourceType::TrafficPermission)).await.unwrap();
        }
        let mut delivered = 0;
        loop {
            match events.next().await {
                Some(Ok(_)) => delivered += 1,
                Some(Err(StoreError::Compacted { .. })) => break,
                other => panic!("expected Compacted after the events kept, got {other:?}"),
            }
        }
        assert!(delivered <= HISTORY, "{delivered} events delivered before the lag was reported");
        assert!(events.next().await.is_none(), "the stream ends after Compacted");
        // Asking for history older than what is kept is refused the same way.
        assert!(matches!(store.watch(Some(Revision(0))).await, Err(StoreError::Compacted { .. })));
    }
}
