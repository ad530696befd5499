//! The latency of store operations, as the `store` histogram (Kuma's name) labelled by
//! `operation` and `store_type`. Each backend times its own operations with a [`StoreMetrics`]
//! made once: the histogram handles are looked up when it is made, so timing an operation is a
//! clock read and an atomic append, with no registry lookup or label allocation per call.

use std::future::Future;
use std::time::Instant;

use metrics::Histogram;

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
}
