use kuma_model::{ResourceKey, Version};

/// Why a store operation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum StoreError {
    #[error("{key} not found")]
    NotFound { key: ResourceKey },
    #[error("{key} already exists")]
    AlreadyExists { key: ResourceKey },
    /// Compare-and-set failed: someone else wrote the resource since `expected` was read.
    #[error("{key} was changed concurrently: expected version {expected}, found {actual}")]
    Conflict { key: ResourceKey, expected: Version, actual: Version },
    /// The request itself is malformed (a bad page offset, a key that does not fit its spec).
    #[error("invalid request: {reason}")]
    Invalid { reason: String },
    #[error("mesh {mesh:?} does not exist: create it first")]
    MeshNotFound { mesh: String },
    /// A watcher asked for events the store no longer keeps, or fell too far behind.
    #[error("change events after revision {requested} are no longer available: list again and watch from the current revision")]
    Compacted { requested: u64 },
    /// Temporarily unable to serve (no quorum, connection lost); the same request may succeed later.
    #[error("store unavailable: {reason}")]
    Unavailable { reason: String },
    #[error("internal store error: {reason}")]
    Internal { reason: String },
}

impl StoreError {
    /// True when retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}
