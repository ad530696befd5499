//! The latency of store operations, as the `store` histogram (Kuma's name) labelled by
//! `operation` and `store_type`. A backend times its own operations with a [`StoreMetrics`]
//! made once, or is wrapped in a [`MeteredStore`]: the histogram handles are looked up when it is
//! made, so timing an operation is a clock read and an atomic append, with no registry lookup or
//! label allocation per call.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use kuma_model::{Resource, ResourceKey, Spec, Version};
use metrics::Histogram;

use crate::{ListPage, ListQuery, NameScope, ResourceStore, Revision, StoreError, WatchStream};

/// The histogram's name.
pub const STORE_METRIC: &str = "store";

/// One operation of the [`ResourceStore`](crate::ResourceStore) contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Get,
    List,
    Create,
    Update,
    Delete,
    Revision,
    Watch,
    Sync,
}

impl StoreOp {
    pub const ALL: [StoreOp; 8] = [
        StoreOp::Get,
        StoreOp::List,
        StoreOp::Create,
        StoreOp::Update,
        StoreOp::Delete,
        StoreOp::Revision,
        StoreOp::Watch,
        StoreOp::Sync,
    ];

    /// The `operation` label.
    pub fn label(self) -> &'static str {
        match self {
            StoreOp::Get => "get",
            StoreOp::List => "list",
            StoreOp::Create => "create",
            StoreOp::Update => "update",
            StoreOp::Delete => "delete",
            StoreOp::Revision => "revision",
            StoreOp::Watch => "watch",
            StoreOp::Sync => "sync",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The `store` histograms of one backend (`store_type`: memory, raft, postgres, kubernetes).
/// Made after kuma-cp installed its recorder (handles made before it record nothing).
#[derive(Clone)]
pub struct StoreMetrics {
    ops: [Histogram; 8],
}

impl std::fmt::Debug for StoreMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreMetrics")
    }
}

impl StoreMetrics {
    pub fn new(store_type: &'static str) -> StoreMetrics {
        StoreMetrics {
            ops: StoreOp::ALL.map(|op| {
                metrics::histogram!(STORE_METRIC, "operation" => op.label(), "store_type" => store_type)
            }),
        }
    }

    /// Records how long `op` took from `started`, in seconds.
    pub fn record(&self, op: StoreOp, started: Instant) {
        self.ops[op.index()].record(started.elapsed().as_secs_f64());
    }

    /// Runs `operation` and records how long it took, whatever its outcome.
    pub async fn time<T>(&self, op: StoreOp, operation: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let result = operation.await;
        self.record(op, started);
        result
    }
}

/// Any backend with its operations timed: for a backend that does not time its own.
pub struct MeteredStore {
    inner: Arc<dyn ResourceStore>,
    metrics: StoreMetrics,
}

impl std::fmt::Debug for MeteredStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MeteredStore")
    }
}

impl MeteredStore {
    pub fn new(inner: Arc<dyn ResourceStore>, store_type: &'static str) -> MeteredStore {
        MeteredStore { inner, metrics: StoreMetrics::new(store_type) }
    }
}

#[async_trait]
impl ResourceStore for MeteredStore {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.metrics.time(StoreOp::Get, self.inner.get(key)).await
    }

    fn name_scope(&self) -> NameScope {
        self.inner.name_scope()
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.metrics.time(StoreOp::List, self.inner.list(query)).await
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        self.metrics.time(StoreOp::Create, self.inner.create(key, spec)).await
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        self.metrics.time(StoreOp::Update, self.inner.update(key, spec, expected)).await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        self.metrics.time(StoreOp::Delete, self.inner.delete(key, expected)).await
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        self.metrics.time(StoreOp::Revision, self.inner.revision()).await
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        self.metrics.time(StoreOp::Watch, self.inner.watch(from)).await
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.metrics.time(StoreOp::Sync, self.inner.sync()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_its_own_label_and_slot() {
        let labels: std::collections::BTreeSet<_> =
            StoreOp::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), StoreOp::ALL.len());
        for (i, op) in StoreOp::ALL.iter().enumerate() {
            assert_eq!(op.index(), i, "{op:?} is not at its own index");
        }
    }

    crate::conformance_suite!(async {
        let inner = Arc::new(crate::MemoryStore::new()) as Arc<dyn ResourceStore>;
        Arc::new(MeteredStore::new(inner, "memory")) as Arc<dyn ResourceStore>
    });
}
