//! Closing the dataplane subscriptions this peer left open before it restarted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kuma_model::{ResourceType, Spec};
use kuma_store::{ResourceStore, StoreError};
use tracing::warn;

/// Subscriptions this peer left open before it restarted are closed: none of them can still be
/// open. Runs until it succeeds once (the cluster may still be electing at startup).
pub async fn close_own_stale_subscriptions(
    store: Arc<dyn ResourceStore>,
    instance_id: String,
    started: DateTime<Utc>,
) {
    for _ in 0..120 {
        match close_stale(store.as_ref(), &instance_id, started).await {
            Ok(()) => return,
            Err(e) => {
                warn!(error = %e, "could not close this peer's earlier subscriptions yet");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

async fn close_stale(
    store: &dyn ResourceStore,
    instance_id: &str,
    started: DateTime<Utc>,
) -> Result<(), StoreError> {
    store.sync().await?;
    for insight in kuma_store::list_all(store, ResourceType::DataplaneInsight, None).await? {
        let Some(spec) = insight.spec.as_dataplane_insight() else { continue };
        let stale = |s: &kuma_model::DiscoverySubscription| {
            s.disconnect_time.is_none()
                && s.control_plane_instance_id == instance_id
                && s.connect_time.is_some_and(|t| t < started)
        };
        if !spec.subscriptions.iter().any(stale) {
            continue;
        }
        let mut updated = spec.clone();
        for s in &mut updated.subscriptions {
            if stale(s) {
                s.disconnect_time = Some(started);
            }
        }
        match store
            .update(insight.key.clone(), Spec::DataplaneInsight(updated), &insight.version)
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
