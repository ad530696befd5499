//! Operators' user tokens: JWTs (ES256) naming a user and groups, signed by a key the leader makes
//! once (the GlobalSecret `user-token-signing-key-<kid>`), so a token issued through any peer is
//! good on every other. Ids listed in the GlobalSecret `user-token-revocations` are refused. At
//! first start the leader also issues one admin token (the GlobalSecret `admin-user-token`),
//! which any peer hands only to a client on its own host.

use std::time::Duration;

use kuma_api_server::{Identity, UserTokens, ADMIN_GROUP};
use kuma_ca::{token_kid, verify, SigningKey, TokenError, TokenTimes, UserClaims};
use kuma_model::{GlobalSecretSpec, ResourceKey, ResourceType, SecretSpec, Spec};
use kuma_store::{ResourceStore, StoreError};
use tracing::info;

/// GlobalSecrets named `user-token-signing-key-<kid>` hold the user token signing keys.
pub const USER_SIGNING_KEY_PREFIX: &str = "user-token-signing-key-";
/// The GlobalSecret listing revoked user token ids, comma- or newline-separated.
pub const USER_REVOCATIONS: &str = "user-token-revocations";
/// The GlobalSecret holding the admin token made at first start.
pub const ADMIN_TOKEN: &str = "admin-user-token";
/// How long the first admin token is valid.
const ADMIN_TOKEN_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn global(name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::GlobalSecret, "", name)
}

fn internal(reason: String) -> StoreError {
    StoreError::Internal { reason }
}

async fn text_of(store: &dyn ResourceStore, name: &str) -> Result<Option<String>, StoreError> {
    match store.get(&global(name)).await {
        Ok(resource) => Ok(resource.spec.as_secret().and_then(SecretSpec::text)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn create_global(
    store: &dyn ResourceStore,
    name: &str,
    text: &str,
) -> Result<bool, StoreError> {
    let spec = Spec::GlobalSecret(GlobalSecretSpec(SecretSpec::from_bytes(text.as_bytes())));
    match store.create(global(name), spec).await {
        Ok(_) => Ok(true),
        Err(StoreError::AlreadyExists { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The newest signing key.
async fn newest_key(store: &dyn ResourceStore) -> Result<Option<SigningKey>, StoreError> {
    let mut newest: Option<(u64, String)> = None;
    for resource in kuma_store::list_all(store, ResourceType::GlobalSecret, None).await? {
        let Some(kid) = resource.key.name.strip_prefix(USER_SIGNING_KEY_PREFIX) else {
            continue;
        };
        let (Ok(kid), Some(pem)) =
            (kid.parse::<u64>(), resource.spec.as_secret().and_then(SecretSpec::text))
        else {
            continue;
        };
        if newest.as_ref().is_none_or(|(n, _)| kid > *n) {
            newest = Some((kid, pem));
        }
    }
    newest
        .map(|(kid, pem)| SigningKey::from_pem(&kid.to_string(), &pem))
        .transpose()
        .map_err(|e| internal(format!("a user token signing key does not load: {e}")))
}

/// A token for `name` in `groups`, valid for `valid_for`, signed with the newest key.
pub async fn issue_user_token(
    store: &dyn ResourceStore,
    name: &str,
    groups: &[String],
    valid_for: Duration,
) -> Result<String, StoreError> {
    let key = newest_key(store).await?.ok_or_else(|| StoreError::Unavailable {
        reason: "the user token signing key is not created yet: retry in a moment".to_string(),
    })?;
    let claims = UserClaims {
        name: name.to_string(),
        groups: groups.to_vec(),
        times: TokenTimes::starting(chrono::Utc::now().timestamp(), valid_for),
    };
    key.sign(&claims).map_err(|e| internal(e.to_string()))
}

/// The leader's share: the first signing key and the first admin token, once per cluster.
pub async fn ensure_user_token_material(store: &dyn ResourceStore) -> Result<(), StoreError> {
    if newest_key(store).await?.is_none() {
        let key = SigningKey::generate("1").map_err(|e| internal(e.to_string()))?;
        if create_global(store, &format!("{USER_SIGNING_KEY_PREFIX}1"), key.key_pem()).await? {
            info!("created the user token signing key");
        }
    }
    if text_of(store, ADMIN_TOKEN).await?.is_none() {
        let token =
            issue_user_token(store, ADMIN_GROUP, &[ADMIN_GROUP.to_string()], ADMIN_TOKEN_VALIDITY)
                .await?;
        if create_global(store, ADMIN_TOKEN, &token).await? {
            info!("issued the first admin user token: read it on a control plane's host with GET /tokens/admin");
        }
    }
    Ok(())
}

/// The admin token made at first start, when there is one.
pub async fn admin_token(store: &dyn ResourceStore) -> Result<Option<String>, StoreError> {
    text_of(store, ADMIN_TOKEN).await
}

/// Checks user tokens against the keys and revocation list in the store (this peer's copy).
pub struct StoreUserTokens {
    pub store: std::sync::Arc<dyn ResourceStore>,
}

impl std::fmt::Debug for StoreUserTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreUserTokens").finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl UserTokens for StoreUserTokens {
    async fn authenticate(&self, token: &str) -> Result<Identity, String> {
        let kid = token_kid(token).map_err(|e| user_message(&e))?;
        let key_pem = text_of(self.store.as_ref(), &format!("{USER_SIGNING_KEY_PREFIX}{kid}"))
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!("it is signed by key {kid:?}, which this control plane does not have (deleted, or from another control plane)")
            })?;
        let key = SigningKey::from_pem(&kid, &key_pem)
            .and_then(|k| k.verifying_key())
            .map_err(|e| e.to_string())?;
        let claims: UserClaims = verify(token, &key, "", chrono::Utc::now().timestamp())
            .map_err(|e| user_message(&e))?;
        let revoked = text_of(self.store.as_ref(), USER_REVOCATIONS)
            .await
            .map_err(|e| e.to_string())?
            .unwrap_or_default();
        if revoked.split([',', '\n']).map(str::trim).any(|id| id == claims.times.jti) {
            return Err(format!("token {:?} is revoked", claims.times.jti));
        }
        Ok(Identity::new(claims.name, claims.groups))
    }
}

/// A token refusal in the words of a user token (the shared messages speak of dataplanes).
fn user_message(e: &TokenError) -> String {
    match e {
        TokenError::Malformed { reason } => format!("it is malformed ({reason})"),
        TokenError::Expired { expired_at } => {
            format!("it expired at {expired_at} (unix time): get a new one with kumactl generate user-token")
        }
        TokenError::NotYetValid { not_before } => {
            format!("it is valid only from {not_before} (unix time): check this machine's clock")
        }
        TokenError::BadSignature { kid, .. } => {
            format!("its signature does not match key {kid:?}")
        }
        other => other.to_string(),
    }
}
