//! The work one peer does for the whole cluster, whichever leads (a single control plane is its
//! own leader): the `default` mesh, and the secrets behind identity (mesh CAs, token signing keys,
//! the control plane's CA, the user token key and the first admin token). Every step is
//! idempotent, so a new leader may run it again.

use kuma_model::{MeshSpec, ResourceKey, Spec};
use kuma_store::{ResourceStore, StoreError};
use tracing::info;

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
