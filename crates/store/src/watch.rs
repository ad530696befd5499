use std::fmt;
use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use kuma_model::{Resource, ResourceKey};

use crate::StoreError;

/// A position in the store's change history; every write advances it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    Created,
    Updated,
    Deleted,
}

/// One change, in revision order.
#[derive(Clone, Debug, PartialEq)]
pub struct WatchEvent {
    pub revision: Revision,
    pub kind: EventKind,
    pub key: ResourceKey,
    /// The resource after the change; `None` for a deletion. Shared with the store's own copy
    /// and its history: every watcher of every write holds the same one instead of a copy each.
    pub resource: Option<Arc<Resource>>,
}

/// Change events; an `Err(Compacted)` ends it and means: list again, then watch anew.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>;
