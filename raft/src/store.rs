//! `RaftStore`: the `ResourceStore` of a Raft peer. Reads come from this peer's replica (call
//! `sync` first for a consistent read); writes go through the Raft log.

use std::sync::Arc;

use async_trait::async_trait;
use kuma_model::{Resource, ResourceKey, Spec, Version};
use kuma_store::{
    check_key, ListPage, ListQuery, ResourceStore, Revision, StoreError, StoreMetrics, StoreOp,
    WatchStream,
};

use crate::command::{Op, Outcome};
use crate::node::RaftNode;
use crate::writer::WriteError;

#[derive(Debug, Clone)]
pub struct RaftStore {
    node: Arc<RaftNode>,
    metrics: StoreMetrics,
}

impl RaftStore {
    pub fn new(node: Arc<RaftNode>) -> RaftStore {
        RaftStore { node, metrics: StoreMetrics::new("raft") }
    }

    async fn write(&self, op: Op) -> Result<Outcome, StoreError> {
        match self.node.writer().write(op).await {
            Ok(Outcome::Failed(error)) => Err(error.into()),
            Ok(outcome) => Ok(outcome),
            Err(WriteError::Unavailable(reason)) => Err(StoreError::Unavailable { reason }),
        }
    }

    async fn written(&self, key: ResourceKey, spec: Spec, op: Op) -> Result<Resource, StoreError> {
        match self.write(op).await? {
            Outcome::Written(written) => Ok(written.into_resource(key, spec)),
            other => Err(StoreError::Internal { reason: format!("a write answered {other:?}") }),
        }
    }
}

#[async_trait]
impl ResourceStore for RaftStore {
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.metrics.time(StoreOp::Get, async { self.node.replica().get(key) }).await
    }

    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.metrics.time(StoreOp::List, async { self.node.replica().list(query) }).await
    }

    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let op = Op::create(key.clone(), &spec);
        self.metrics.time(StoreOp::Create, self.written(key, spec, op)).await
    }

    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        check_key(&key, &spec)?;
        let op = Op::update(key.clone(), &spec, expected.clone());
        self.metrics.time(StoreOp::Update, self.written(key, spec, op)).await
    }

    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        let op = Op::Delete { key: key.clone(), expected: expected.cloned() };
        self.metrics.time(StoreOp::Delete, self.write(op)).await.map(|_| ())
    }

    async fn revision(&self) -> Result<Revision, StoreError> {
        Ok(self.node.replica().revision())
    }

    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        self.node.replica().watch(from)
    }

    async fn sync(&self) -> Result<(), StoreError> {
        self.metrics
            .time(StoreOp::Sync, self.node.read_barrier())
            .await
            .map_err(|WriteError::Unavailable(reason)| StoreError::Unavailable { reason })
    }
}
