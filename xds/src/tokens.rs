//! The keys behind dataplane identity, kept in the store: each mesh's token signing keys (Secrets
//! `dataplane-token-signing-key-<mesh>-<kid>`, made by the leader for every mesh, rotated on request),
//! the control plane's TLS CA (the GlobalSecret `control-plane-ca`), and issuing tokens with
//! the newest key of a mesh. Every step is idempotent, so a new leader may run it again.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kuma_ca::{ControlPlaneCa, DataplaneClaims, SigningKey, TokenError, TokenTimes};
use kuma_model::{GlobalSecretSpec, ResourceKey, ResourceType, SecretSpec, Spec};
use kuma_store::{ResourceStore, StoreError};
use tracing::info;

use crate::auth::{signing_key_kid, signing_key_secret_name};

/// The GlobalSecret holding the control plane's TLS CA (certificate, then key).
pub const CONTROL_PLANE_CA_SECRET: &str = "control-plane-ca";

/// How long a dataplane token is valid when no validity is asked for (Kuma's default).
pub const DEFAULT_TOKEN_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("mesh {mesh:?} has no signing key yet: retry in a moment (the leader creates one for every mesh)")]
    NoSigningKey { mesh: String },
    #[error("signing key {name:?} of mesh {mesh:?} does not load: {reason}")]
    BadKey { mesh: String, name: String, reason: String },
    #[error(transparent)]
    Token(#[from] TokenError),
}

fn internal(reason: String) -> StoreError {
    StoreError::Internal { reason }
}

/// The signing keys of `mesh`, by key id (ids are numbers, newest highest).
async fn signing_keys(
    store: &dyn ResourceStore,
    mesh: &str,
) -> Result<BTreeMap<u64, SecretSpec>, StoreError> {
    Ok(kuma_store::list_all(store, ResourceType::Secret, Some(mesh))
        .await?
        .into_iter()
        .filter_map(|r| {
            let kid = signing_key_kid(mesh, &r.key.name)?.parse::<u64>().ok()?;
            Some((kid, r.spec.as_secret()?.clone()))
        })
        .collect())
}

async fn create_signing_key(
    store: &dyn ResourceStore,
    mesh: &str,
    kid: u64,
) -> Result<bool, StoreError> {
    let key = SigningKey::generate(&kid.to_string()).map_err(|e| internal(e.to_string()))?;
    let resource_key =
        ResourceKey::new(ResourceType::Secret, mesh, &signing_key_secret_name(mesh, kid));
    let spec = Spec::Secret(SecretSpec::from_bytes(key.key_pem().as_bytes()));
    match store.create(resource_key, spec).await {
        Ok(_) => {
            info!(mesh, kid, "created a dataplane token signing key");
            Ok(true)
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Gives every mesh without a signing key its first one (key id 1). Returns how many it created.
pub async fn ensure_signing_keys(store: &dyn ResourceStore) -> Result<usize, StoreError> {
    let mut created = 0;
    for mesh in kuma_store::list_all(store, ResourceType::Mesh, None).await? {
        if signing_keys(store, &mesh.key.name).await?.is_empty()
            && create_signing_key(store, &mesh.key.name, 1).await?
        {
            created += 1;
        }
    }
    Ok(created)
}

/// Adds a signing key to `mesh` with the next key id and returns that id. New tokens are signed
/// with it; tokens signed with older keys stay valid until their key's Secret is deleted.
pub async fn rotate_signing_key(store: &dyn ResourceStore, mesh: &str) -> Result<u64, StoreError> {
    store.get(&ResourceKey::mesh(mesh)).await?;
    // Two rotations at once both try the same next id: one wins, the other takes the one after.
    for _ in 0..5 {
        let next = signing_keys(store, mesh).await?.keys().next_back().map_or(1, |k| k + 1);
        if create_signing_key(store, mesh, next).await? {
            return Ok(next);
        }
    }
    Err(StoreError::Unavailable {
        reason: "other signing keys were added at the same time: retry".to_string(),
    })
}

/// What a dataplane token is for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub mesh: String,
    /// Empty for a token scoped by tags (or by mesh alone).
    pub name: String,
    pub tags: BTreeMap<String, BTreeSet<String>>,
    pub valid_for: Duration,
}

/// A token for `request`, signed with the newest signing key of its mesh.
pub async fn issue_dataplane_token(
    store: &dyn ResourceStore,
    request: &TokenRequest,
) -> Result<String, IssueError> {
    store.get(&ResourceKey::mesh(&request.mesh)).await?;
    let keys = signing_keys(store, &request.mesh).await?;
    let (kid, secret) = keys
        .iter()
        .next_back()
        .ok_or_else(|| IssueError::NoSigningKey { mesh: request.mesh.clone() })?;
    let name = signing_key_secret_name(&request.mesh, *kid);
    let bad = |reason: String| IssueError::BadKey {
        mesh: request.mesh.clone(),
        name: name.clone(),
        reason,
    };
    let pem = secret.text().ok_or_else(|| bad("it is not PEM text".to_string()))?;
    let key = SigningKey::from_pem(&kid.to_string(), &pem).map_err(|e| bad(e.to_string()))?;
    let claims = DataplaneClaims {
        mesh: request.mesh.clone(),
        name: request.name.clone(),
        tags: request.tags.clone(),
        times: TokenTimes::starting(chrono::Utc::now().timestamp(), request.valid_for),
    };
    Ok(key.sign(&claims)?)
}

/// The control plane's CA, when the leader made it.
pub async fn control_plane_ca(
    store: &dyn ResourceStore,
) -> Result<Option<ControlPlaneCa>, StoreError> {
    let key = ResourceKey::new(ResourceType::GlobalSecret, "", CONTROL_PLANE_CA_SECRET);
    match store.get(&key).await {
        Ok(resource) => {
            let bundle = resource.spec.as_secret().and_then(SecretSpec::text).unwrap_or_default();
            ControlPlaneCa::from_bundle(&bundle).map(Some).map_err(|e| {
                internal(format!("the GlobalSecret {CONTROL_PLANE_CA_SECRET} does not load: {e}"))
            })
        }
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the control plane's CA unless it exists. Returns whether it created it.
pub async fn ensure_control_plane_ca(store: &dyn ResourceStore) -> Result<bool, StoreError> {
    if control_plane_ca(store).await?.is_some() {
        return Ok(false);
    }
    let ca = ControlPlaneCa::generate().map_err(|e| internal(e.to_string()))?;
    let key = ResourceKey::new(ResourceType::GlobalSecret, "", CONTROL_PLANE_CA_SECRET);
    let spec = Spec::GlobalSecret(GlobalSecretSpec(SecretSpec::from_bytes(ca.bundle().as_bytes())));
    match store.create(key, spec).await {
        Ok(_) => {
            info!("generated the control plane's TLS CA");
            Ok(true)
        }
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}
