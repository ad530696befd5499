//! Who may act as a dataplane: [`DataplaneAuth`] checks the token that comes with a bootstrap
//! request and opens every ADS and SDS stream. With dataplane tokens (`dpToken`) it checks them
//! against the signing keys and revocation list of the token's mesh, keeping its own view of those
//! Secrets, fed by the same store listing and change feed as the snapshot cache, and says when
//! they changed so open streams check their token again. With Kubernetes service-account tokens
//! (`serviceAccountToken`) an injected [`TokenReviewer`] asks the API server who the token
//! belongs to, and the dataplane must be that pod: named `<pod>.<namespace>`.

mod review_cache;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use kuma_ca::{
    token_kid, unverified_mesh, verify, DataplaneClaims, SigningKey, TokenError, VerifyingKey,
};
use kuma_model::{DataplaneSpec, Resource, ResourceKey, ResourceType};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

use review_cache::ReviewCache;

/// Secrets named `dataplane-token-signing-key-<mesh>-<kid>` hold a mesh's signing keys (Kuma's
/// naming: on Kubernetes the Secrets of every mesh share one namespace).
pub const SIGNING_KEY_PREFIX: &str = "dataplane-token-signing-key-";
/// The Secret `dataplane-token-revocations-<mesh>` lists revoked token ids, comma- or
/// newline-separated.
pub const REVOCATIONS_PREFIX: &str = "dataplane-token-revocations-";

/// How long a positive review of a service-account token is trusted by default.
pub const DEFAULT_REVIEW_TTL: Duration = Duration::from_secs(60);
/// How many reviewed tokens are remembered by default.
pub const DEFAULT_REVIEW_CAPACITY: usize = 10_000;
/// How long one review may take before the API server counts as unreachable.
const REVIEW_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the Secret holding signing key `kid` of `mesh`.
pub fn signing_key_secret_name(mesh: &str, kid: u64) -> String {
    format!("{SIGNING_KEY_PREFIX}{mesh}-{kid}")
}

/// The key id of `mesh`'s signing-key Secret `name`: what follows `<prefix><mesh>-`; `None` when
/// `name` is not one of that mesh's signing keys.
pub fn signing_key_kid<'a>(mesh: &str, name: &'a str) -> Option<&'a str> {
    let kid = name.strip_prefix(SIGNING_KEY_PREFIX)?.strip_prefix(mesh)?.strip_prefix('-')?;
    (!kid.is_empty()).then_some(kid)
}

/// The name of the Secret listing a mesh's revoked token ids.
pub fn revocations_secret_name(mesh: &str) -> String {
    format!("{REVOCATIONS_PREFIX}{mesh}")
}

/// How dataplanes prove who they are (`dpServer.auth.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DpAuthType {
    /// A dataplane token on every bootstrap request and every ADS/SDS stream.
    #[default]
    #[serde(rename = "dpToken")]
    DpToken,
    /// The pod's Kubernetes service-account token, in the same places, checked with the API
    /// server's TokenReview (Kubernetes mode).
    #[serde(rename = "serviceAccountToken")]
    ServiceAccountToken,
    /// Anyone who reaches the ports may act as any dataplane: development only.
    #[serde(rename = "none")]
    None,
}

/// A Kubernetes service account, as the API server vouched for one of its tokens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub service_account: String,
    /// The pod a bound (projected) token belongs to; `None` for a token of the account alone.
    pub pod_name: Option<String>,
}

/// Asks Kubernetes who a service-account token belongs to (a TokenReview). Implemented outside
/// this crate, which never links a Kubernetes client.
#[async_trait::async_trait]
pub trait TokenReviewer: Send + Sync + 'static {
    /// The account `token` belongs to. Errors: [`AuthError::InvalidServiceAccountToken`] when
    /// the API server says the token is not valid, [`AuthError::ReviewUnavailable`] when it
    /// could not be asked (retryable).
    async fn review(&self, token: &str) -> Result<ServiceAccountIdentity, AuthError>;
}

/// Who a dataplane proved to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneIdentity {
    /// A dataplane token (`dpToken`).
    Token(DataplaneClaims),
    /// A Kubernetes service-account token (`serviceAccountToken`).
    ServiceAccount(ServiceAccountIdentity),
}

impl DataplaneIdentity {
    /// When the credential stops being valid (unix seconds), when it says so itself.
    pub fn expires_at(&self) -> Option<i64> {
        match self {
            DataplaneIdentity::Token(claims) => Some(claims.times.exp),
            DataplaneIdentity::ServiceAccount(_) => None,
        }
    }
}

/// Why a dataplane was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this control plane has not loaded its signing keys yet: retry in a moment")]
    NotReady,
    #[error(
        "no service-account token was given: kuma-dp must send its pod's token (e.g. \
         KUMA_DATAPLANE_RUNTIME_TOKEN_PATH=/var/run/secrets/kubernetes.io/serviceaccount/token)"
    )]
    MissingServiceAccountToken,
    #[error("the service-account token is not valid: {reason}")]
    InvalidServiceAccountToken { reason: String },
    #[error(
        "could not check the service-account token with the Kubernetes API server \
         ({reason}): retry in a moment"
    )]
    ReviewUnavailable { reason: String },
    #[error(
        "this control plane checks Kubernetes service-account tokens but was started without a \
         token reviewer: serviceAccountToken works in Kubernetes mode only"
    )]
    NoReviewer,
    #[error(
        "dataplane {name:?} is not named <pod>.<namespace>: with service-account tokens a \
         dataplane runs as its pod, e.g. redis-0.demo"
    )]
    NotAPodName { name: String },
    #[error(
        "the service-account token is from namespace {token_namespace:?}, but dataplane {name:?} \
         is in namespace {namespace:?}: a pod may only act as a dataplane of its own namespace"
    )]
    WrongNamespace { name: String, namespace: String, token_namespace: String },
    #[error(
        "the service-account token is bound to pod {bound:?}, not {pod:?} (namespace \
         {namespace:?}): each pod's kuma-dp must send its own token"
    )]
    WrongPod { bound: String, pod: String, namespace: String },
}

impl AuthError {
    /// True for a genuine credential that does not allow this dataplane or mesh.
    pub fn is_permission(&self) -> bool {
        match self {
            AuthError::Token(e) => e.is_permission(),
            AuthError::NotAPodName { .. }
            | AuthError::WrongNamespace { .. }
            | AuthError::WrongPod { .. } => true,
            _ => false,
        }
    }

    /// True when the check could not be made now and asking again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            AuthError::NotReady | AuthError::ReviewUnavailable { .. } | AuthError::NoReviewer
        )
    }

    /// The gRPC status for this refusal.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            e if e.is_retryable() => tonic::Status::unavailable(e.to_string()),
            e if e.is_permission() => tonic::Status::permission_denied(e.to_string()),
            e => tonic::Status::unauthenticated(e.to_string()),
        }
    }
}

#[derive(Default)]
struct Keys {
    /// False until the first full listing is in.
    synced: bool,
    /// Mesh -> key id -> public key.
    signing: HashMap<String, BTreeMap<String, VerifyingKey>>,
    /// Mesh -> revoked token ids.
    revoked: HashMap<String, HashSet<String>>,
}

impl Keys {
    /// The key ids and revoked token ids, to tell whether a listing changed anything. A key
    /// that changes gets a new id.
    fn summary(&self) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
        let mut summary: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        for (mesh, keys) in &self.signing {
            summary.entry(mesh.clone()).or_default().0.extend(keys.keys().cloned());
        }
        for (mesh, revoked) in &self.revoked {
            summary.entry(mesh.clone()).or_default().1.extend(revoked.iter().cloned());
        }
        summary
    }
}

/// Checks dataplane tokens; shared by the bootstrap, ADS and SDS servers of one peer.
pub struct DataplaneAuth {
    kind: DpAuthType,
    keys: RwLock<Keys>,
    /// Bumped whenever a signing key or a revocation list changed.
    changes: watch::Sender<u64>,
    /// With service-account tokens: who asks the API server.
    reviewer: Option<Arc<dyn TokenReviewer>>,
    /// Recent positive reviews, so a stream opening does not cost an API request every time.
    reviews: ReviewCache,
}

impl std::fmt::Debug for DataplaneAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataplaneAuth").field("kind", &self.kind).finish_non_exhaustive()
    }
}

/// The tags of a Dataplane's inbounds (and gateway), each with every value it has. The service
/// tag counts under both of its spellings, `service` and `kuma.io/service`.
pub fn dataplane_tags(spec: &DataplaneSpec) -> BTreeMap<String, BTreeSet<String>> {
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (key, values) in spec.merged_tags() {
        let keys: &[&str] = match key {
            "service" | "kuma.io/service" => &["service", "kuma.io/service"],
            other => &[other][..],
        };
        for k in keys {
            tags.entry(k.to_string()).or_default().extend(values.iter().map(|v| v.to_string()));
        }
    }
    tags
}

impl DataplaneAuth {
    pub fn new(kind: DpAuthType) -> DataplaneAuth {
        DataplaneAuth {
            kind,
            keys: RwLock::new(Keys::default()),
            changes: watch::channel(0).0,
            reviewer: None,
            reviews: ReviewCache::new(DEFAULT_REVIEW_TTL, DEFAULT_REVIEW_CAPACITY),
        }
    }

    /// Checks service-account tokens with `reviewer` (required by `serviceAccountToken`; without
    /// one every such check is refused as unavailable).
    pub fn with_reviewer(mut self, reviewer: Arc<dyn TokenReviewer>) -> DataplaneAuth {
        self.reviewer = Some(reviewer);
        self
    }

    /// Trusts a positive review for `ttl` and remembers at most `capacity` of them (defaults
    /// [`DEFAULT_REVIEW_TTL`], [`DEFAULT_REVIEW_CAPACITY`]); a zero `ttl` or `capacity` asks the
    /// API server every time.
    pub fn with_review_cache(mut self, ttl: Duration, capacity: usize) -> DataplaneAuth {
        self.reviews = ReviewCache::new(ttl, capacity);
        self
    }

    pub fn kind(&self) -> DpAuthType {
        self.kind
    }

    /// Fires whenever a signing key or a revocation list changed (with dataplane tokens only:
    /// other credentials do not depend on them).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Checks `token` for dataplane `mesh`/`name` with `tags`. `Ok(None)` when tokens are off.
    pub async fn check(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
        tags: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Option<DataplaneIdentity>, AuthError> {
        let identity = match self.kind {
            DpAuthType::None => return Ok(None),
            DpAuthType::DpToken => {
                DataplaneIdentity::Token(self.check_dataplane_token(token, mesh, name, tags)?)
            }
            DpAuthType::ServiceAccountToken => {
                DataplaneIdentity::ServiceAccount(self.check_service_account(token, name).await?)
            }
        };
        Ok(Some(identity))
    }

    fn check_dataplane_token(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
        tags: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<DataplaneClaims, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(TokenError::Missing)?;
        let kid = token_kid(token)?;
        // Refused either way (another mesh's key cannot verify it); this way the message says why.
        if let Some(claimed) = unverified_mesh(token).filter(|claimed| claimed != mesh) {
            return Err(
                TokenError::WrongMesh { token: claimed, requested: mesh.to_string() }.into()
            );
        }
        let keys = self.keys.read().unwrap_or_else(|p| p.into_inner());
        if !keys.synced {
            return Err(AuthError::NotReady);
        }
        let key =
            keys.signing.get(mesh).and_then(|k| k.get(&kid)).ok_or_else(|| {
                TokenError::UnknownKey { mesh: mesh.to_string(), kid: kid.clone() }
            })?;
        let now = chrono::Utc::now().timestamp();
        let claims: DataplaneClaims = verify(token, key, mesh, now)?;
        if keys.revoked.get(mesh).is_some_and(|r| r.contains(&claims.times.jti)) {
            return Err(TokenError::Revoked { id: claims.times.jti.clone() }.into());
        }
        claims.check_scope(mesh, name, tags)?;
        Ok(claims)
    }

    /// Kuma's Kubernetes rule: dataplane `<pod>.<namespace>` with a token of that namespace, and
    /// of that pod when the token is bound to one. Any mesh: the pod's labels chose it.
    async fn check_service_account(
        &self,
        token: Option<&str>,
        name: &str,
    ) -> Result<ServiceAccountIdentity, AuthError> {
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::MissingServiceAccountToken)?;
        let identity = self.review(token).await?;
        let Some((pod, namespace)) =
            name.rsplit_once('.').filter(|(pod, ns)| !pod.is_empty() && !ns.is_empty())
        else {
            return Err(AuthError::NotAPodName { name: name.to_string() });
        };
        if namespace != identity.namespace {
            return Err(AuthError::WrongNamespace {
                name: name.to_string(),
                namespace: namespace.to_string(),
                token_namespace: identity.namespace,
            });
        }
        if let Some(bound) = identity.pod_name.as_deref().filter(|bound| *bound != pod) {
            return Err(AuthError::WrongPod {
                bound: bound.to_string(),
                pod: pod.to_string(),
                namespace: namespace.to_string(),
            });
        }
        Ok(identity)
    }

    /// The reviewer's answer, from the cache while it is fresh. Only positive answers are kept:
    /// a refusal or an unreachable API server is asked again next time.
    async fn review(&self, token: &str) -> Result<ServiceAccountIdentity, AuthError> {
        if let Some(identity) = self.reviews.get(token) {
            return Ok(identity);
        }
        let reviewer = self.reviewer.as_ref().ok_or(AuthError::NoReviewer)?;
        let identity = tokio::time::timeout(REVIEW_TIMEOUT, reviewer.review(token))
            .await
            .map_err(|_| AuthError::ReviewUnavailable {
                reason: format!("no answer within {}s", REVIEW_TIMEOUT.as_secs()),
            })??;
        self.reviews.insert(token, identity.clone());
        Ok(identity)
    }

    /// Replaces the whole view after a full listing.
    pub fn reset(&self, resources: &[Resource]) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let before = (keys.synced, keys.summary());
        keys.signing.clear();
        keys.revoked.clear();
        for resource in resources {
            apply_one(&mut keys, &resource.key, Some(resource));
        }
        keys.synced = true;
        let same = before == (true, keys.summary());
        drop(keys);
        // A listing again (after the change feed fell behind) that finds the same keys and
        // revocations does not make every open stream check its token again.
        if !same {
            self.changed();
        }
    }

    /// Applies changes (`None` = deleted); says so to open streams when a key or a revocation
    /// list was among them.
    pub fn apply(&self, changes: &[(ResourceKey, Option<Resource>)]) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let mut changed = false;
        for (key, resource) in changes {
            changed |= apply_one(&mut keys, key, resource.as_ref());
        }
        drop(keys);
        if changed {
            self.changed();
        }
    }

    /// Tells open streams to check their token again, when it is a dataplane token.
    fn changed(&self) {
        if self.kind == DpAuthType::DpToken {
            self.changes.send_modify(|n| *n += 1);
        }
    }
}

/// Returns whether `key` was a signing key or a revocation list.
fn apply_one(keys: &mut Keys, key: &ResourceKey, resource: Option<&Resource>) -> bool {
    if key.resource_type != ResourceType::Secret {
        return false;
    }
    let Some(mesh) = key.mesh.as_deref() else { return false };
    if let Some(kid) = signing_key_kid(mesh, &key.name) {
        let text = resource.and_then(|r| r.spec.as_secret()).and_then(|s| s.text());
        let verifying = text.map(|pem| SigningKey::from_pem(kid, &pem)?.verifying_key());
        let mesh_keys = keys.signing.entry(mesh.to_string()).or_default();
        match verifying {
            Some(Ok(verifying)) => {
                mesh_keys.insert(kid.to_string(), verifying);
            }
            Some(Err(e)) => {
                warn!(mesh, secret = %key.name, error = %e, "a signing key does not load; tokens it signed are refused");
                mesh_keys.remove(kid);
            }
            None => {
                mesh_keys.remove(kid);
            }
        }
        return true;
    }
    if key.name == revocations_secret_name(mesh) {
        let text = resource.and_then(|r| r.spec.as_secret()).and_then(|s| s.text());
        let ids: HashSet<String> = text
            .unwrap_or_default()
            .split([',', '\n'])
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
        keys.revoked.insert(mesh.to_string(), ids);
        return true;
    }
    false
}
