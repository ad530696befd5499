//! Who may act as a dataplane: [`DataplaneAuth`] checks the dataplane token that comes with a
//! bootstrap request and opens every ADS and SDS stream, against the signing keys and revocation
//! list of the token's mesh. It keeps its own view of those Secrets, fed by the same store
//! listing and change feed as the snapshot cache, and says when they changed so open streams
//! check their token again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::RwLock;

use kuma_ca::{
    token_kid, unverified_mesh, verify, DataplaneClaims, SigningKey, TokenError, VerifyingKey,
};
use kuma_model::{DataplaneSpec, Resource, ResourceKey, ResourceType};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::warn;

/// Secrets named `dataplane-token-signing-key-<kid>` hold a mesh's signing keys.
pub const SIGNING_KEY_PREFIX: &str = "dataplane-token-signing-key-";
/// The Secret `dataplane-token-revocations-<mesh>` lists revoked token ids, comma- or
/// newline-separated.
pub const REVOCATIONS_PREFIX: &str = "dataplane-token-revocations-";

/// The name of the Secret holding signing key `kid` of a mesh.
pub fn signing_key_secret_name(kid: u64) -> String {
    format!("{SIGNING_KEY_PREFIX}{kid}")
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
    /// Anyone who reaches the ports may act as any dataplane: development only.
    #[serde(rename = "none")]
    None,
}

/// Why a dataplane was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("this control plane has not loaded its signing keys yet: retry in a moment")]
    NotReady,
}

impl AuthError {
    /// True for a genuine token that names another dataplane or mesh.
    pub fn is_permission(&self) -> bool {
        matches!(self, AuthError::Token(e) if e.is_permission())
    }

    /// The gRPC status for this refusal.
    pub fn to_status(&self) -> tonic::Status {
        match self {
            AuthError::NotReady => tonic::Status::unavailable(self.to_string()),
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

/// Checks dataplane tokens; shared by the bootstrap, ADS and SDS servers of one peer.
pub struct DataplaneAuth {
    kind: DpAuthType,
    keys: RwLock<Keys>,
    /// Bumped whenever a signing key or a revocation list changed.
    changes: watch::Sender<u64>,
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
        DataplaneAuth { kind, keys: RwLock::new(Keys::default()), changes: watch::channel(0).0 }
    }

    pub fn kind(&self) -> DpAuthType {
        self.kind
    }

    /// Fires whenever a signing key or a revocation list changed.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Checks `token` for dataplane `mesh`/`name` with `tags`. `Ok(None)` when tokens are off.
    pub fn check(
        &self,
        token: Option<&str>,
        mesh: &str,
        name: &str,
        tags: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<Option<DataplaneClaims>, AuthError> {
        if self.kind == DpAuthType::None {
            return Ok(None);
        }
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
        Ok(Some(claims))
    }

    /// Replaces the whole view after a full listing.
    pub fn reset(&self, resources: &[Resource]) {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.signing.clear();
        keys.revoked.clear();
        for resource in resources {
            apply_one(&mut keys, &resource.key, Some(resource));
        }
        keys.synced = true;
        drop(keys);
        self.changes.send_modify(|n| *n += 1);
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
    if let Some(kid) = key.name.strip_prefix(SIGNING_KEY_PREFIX) {
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
