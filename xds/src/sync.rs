//! Keeps the snapshot cache and the dataplane token keys in step with the store: one full listing, then the change feed,
//! gathered into debounced batches. A watch that falls behind starts over with a new listing.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kuma_model::{Resource, ResourceKey, ResourceType};
use kuma_store::{ResourceStore, StoreError, WatchEvent, WatchStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::auth::DataplaneAuth;
use crate::cache::SnapshotCache;

/// A burst of changes is applied at most this long after its first change.
const MAX_BATCH_DELAY: Duration = Duration::from_millis(500);
/// Wait before listing again after the store failed.
const RETRY_DELAY: Duration = Duration::from_millis(500);

/// Runs until `shutdown` resolves.
pub async fn run(
    store: Arc<dyn ResourceStore>,
    cache: Arc<SnapshotCache>,
    auth: Arc<DataplaneAuth>,
    debounce: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            result = sync_once(store.as_ref(), cache.clone(), &auth, debounce) => {
                if let Err(error) = result {
                    warn!(%error, "xDS view of the store lost; listing again");
                }
            }
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(RETRY_DELAY) => {}
        }
    }
}

/// Lists everything, then follows the change feed until it fails.
async fn sync_once(
    store: &dyn ResourceStore,
    cache: Arc<SnapshotCache>,
    auth: &DataplaneAuth,
    debounce: Duration,
) -> Result<(), StoreError> {
    // Watching before listing: events that raced the listing are applied again on top of it,
    // in order, which ends in the same state.
    let mut feed = config_changes(store.watch(None).await?);
    let all = list_all(store).await?;
    auth.reset(&all);
    let loading = cache.clone();
    generating(move || loading.reset(all)).await;
    debug!("xDS view of the store loaded");
    loop {
        let (batch, seen_at) = next_batch(&mut feed, debounce).await?;
        auth.apply(&batch);
        let applying = cache.clone();
        generating(move || applying.apply_seen_at(&batch, seen_at)).await;
    }
}

/// Runs config generation on a blocking thread (it spreads over the cores itself), so the
/// runtime's workers keep serving streams meanwhile.
async fn generating(work: impl FnOnce() + Send + 'static) {
    if let Err(error) = tokio::task::spawn_blocking(work).await {
        if error.is_panic() {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

async fn list_all(store: &dyn ResourceStore) -> Result<Vec<Resource>, StoreError> {
    let mut all = Vec::new();
    for kind in ResourceType::all().filter(|k| *k != ResourceType::DataplaneInsight) {
        all.extend(kuma_store::list_all(store, kind, None).await?);
    }
    Ok(all)
}

/// The changes that can change a config, read off the store's feed by a task of their own.
/// Dataplanes' statuses are written after every push (a fleet's worth after each change) and
/// are never part of a config: they are dropped as they come, so a burst of them cannot make
/// the feed fall behind while configs are being generated.
struct ConfigChanges {
    /// Each change with when this peer read it off the store's feed.
    rx: mpsc::UnboundedReceiver<(std::time::Instant, Result<WatchEvent, StoreError>)>,
    reader: tokio::task::JoinHandle<()>,
}

impl Drop for ConfigChanges {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn config_changes(mut feed: WatchStream) -> ConfigChanges {
    let (tx, rx) = mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(event) = feed.next().await {
            let observed =
                matches!(&event, Ok(e) if e.key.resource_type == ResourceType::DataplaneInsight);
            if !observed && tx.send((std::time::Instant::now(), event)).is_err() {
                return;
            }
        }
    });
    ConfigChanges { rx, reader }
}

/// Waits for a change, then gathers what follows within the debounce window; with when the
/// first change was seen.
async fn next_batch(
    feed: &mut ConfigChanges,
    debounce: Duration,
) -> Result<(Vec<(ResourceKey, Option<Resource>)>, std::time::Instant), StoreError> {
    let feed = &mut feed.rx;
    let mut batch = Vec::new();
    let (seen_at, first) = feed
        .recv()
        .await
        .ok_or(StoreError::Unavailable { reason: "the store's change feed ended".to_string() })?;
    let first = first?;
    batch.push((first.key, first.resource.map(Arc::unwrap_or_clone)));
    let deadline = Instant::now() + MAX_BATCH_DELAY;
    loop {
        let quiet = (Instant::now() + debounce).min(deadline);
        match tokio::time::timeout_at(quiet, feed.recv()).await {
            Err(_elapsed) => return Ok((batch, seen_at)),
            Ok(None) => return Ok((batch, seen_at)),
            Ok(Some((_, event))) => {
                let event = event?;
                batch.push((event.key, event.resource.map(Arc::unwrap_or_clone)));
            }
        }
    }
}
