//! The work one peer does for the whole cluster, whichever leads (a single control plane is its
//! own leader): the `default` mesh, and the secrets behind identity (mesh CAs, token signing keys,
//! the control plane's CA, the user token key and the first admin token). Every step is
//! idempotent, so a new leader may run it again.

use std::collections::BTreeSet;

use chrono::Utc;
use kuma_model::{MeshSpec, ResourceKey, ResourceType, Spec};
use kuma_store::{ResourceStore, StoreError};
use tracing::{info, warn};

/// Creates the `default` mesh unless it exists; safe to run on every start.
pub async fn ensure_default_mesh(store: &dyn ResourceStore) -> Result<(), StoreError> {
    match store.create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default())).await {
        Ok(_) => {
            info!(mesh = "default", "created the default mesh");
            Ok(())
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The leader's share of identity: the builtin CA of every mesh that enables one, a token
/// signing key for every mesh, and the control plane's TLS CA. Idempotent; run every second.
pub async fn ensure_identity_secrets(store: &dyn ResourceStore) {
    if let Err(e) = kuma_xds::ensure_builtin_cas(store).await {
        tracing::warn!(error = %e, "could not generate the builtin mesh CAs yet");
    }
    if let Err(e) = kuma_xds::ensure_signing_keys(store).await {
        tracing::warn!(error = %e, "could not create the dataplane token signing keys yet");
    }
    if let Err(e) = kuma_xds::ensure_control_plane_ca(store).await {
        tracing::warn!(error = %e, "could not generate the control plane's CA yet");
    }
    if let Err(e) = crate::user_tokens::ensure_user_token_material(store).await {
        tracing::warn!(error = %e, "could not create the user token signing key yet");
    }
}

/// Closes the dataplane subscriptions held by control-plane instances that are not `alive` and
/// were already suspected in the `previous` round (so a peer that misses one check keeps its
/// dataplanes). Returns this round's suspects.
pub async fn close_subscriptions_of_dead_peers(
    store: &dyn ResourceStore,
    alive: &BTreeSet<String>,
    previous: BTreeSet<String>,
) -> BTreeSet<String> {
    let mut suspects = BTreeSet::new();
    let insights = match kuma_store::list_all(store, ResourceType::DataplaneInsight, None).await {
        Ok(insights) => insights,
        Err(e) => {
            warn!(error = %e, "could not list DataplaneInsights");
            return previous;
        }
    };
    for insight in insights {
        let Some(spec) = insight.spec.as_dataplane_insight() else { continue };
        let orphaned: Vec<String> = spec
            .subscriptions
            .iter()
            .filter(|s| {
                s.disconnect_time.is_none() && !alive.contains(&s.control_plane_instance_id)
            })
            .map(|s| s.control_plane_instance_id.clone())
            .collect();
        suspects.extend(orphaned.iter().cloned());
        let confirmed: BTreeSet<&String> =
            orphaned.iter().filter(|i| previous.contains(*i)).collect();
        if confirmed.is_empty() {
            continue;
        }
        let mut updated = spec.clone();
        for s in &mut updated.subscriptions {
            if s.disconnect_time.is_none() && confirmed.contains(&s.control_plane_instance_id) {
                s.disconnect_time = Some(Utc::now());
            }
        }
        match store
            .update(insight.key.clone(), Spec::DataplaneInsight(updated), &insight.version)
            .await
        {
            Ok(_) => {
                info!(dataplane = %insight.key.name, "closed the subscriptions of a peer that is gone")
            }
            // Changed meanwhile (the dataplane reconnected): the next round looks again.
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
            Err(e) => warn!(error = %e, "could not close orphaned subscriptions"),
        }
    }
    suspects
}
