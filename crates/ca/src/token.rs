//! Dataplane tokens: JWTs (ES256) signed by a mesh's signing key, naming the mesh and the
//! dataplane's name or tags, with an expiry and an id that a revocation list can name. Pure
//! functions of their inputs, the clock included, so every refusal is unit-tested.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rcgen::KeyPair;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// How far the clocks of the peer that issued a token and the one checking it may disagree:
/// a token is taken this long before its start and after its expiry.
pub const TOKEN_CLOCK_SKEW: Duration = Duration::from_secs(30);

/// Why a token was refused. Every message says what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no dataplane token was given: pass one with --dataplane-token-file (make it with kumactl generate dataplane-token)")]
    Missing,
    #[error("the dataplane token is malformed ({reason}): pass the exact text kumactl generate dataplane-token printed")]
    Malformed { reason: String },
    #[error("the dataplane token is signed by key {kid:?}, which mesh {mesh:?} does not have (it was deleted, or the token is from another control plane): generate a new token")]
    UnknownKey { mesh: String, kid: String },
    #[error("the dataplane token's signature does not match key {kid:?} of mesh {mesh:?}: generate a new token")]
    BadSignature { mesh: String, kid: String },
    #[error("the dataplane token expired at {expired_at} (unix time): generate a new one with kumactl generate dataplane-token")]
    Expired { expired_at: i64 },
    #[error("the dataplane token is valid only from {not_before} (unix time): check this machine's clock")]
    NotYetValid { not_before: i64 },
    #[error("the dataplane token {id:?} is revoked: generate a new token")]
    Revoked { id: String },
    #[error("the dataplane token is for mesh {token:?}, not {requested:?}: use a token generated with --mesh {requested}")]
    WrongMesh { token: String, requested: String },
    #[error("the dataplane token is for dataplane {token:?}, not {requested:?}: use a token generated with --name {requested}")]
    WrongName { token: String, requested: String },
    #[error("the dataplane token allows tag {tag}={allowed} but the Dataplane has {tag}={actual}: use a token whose --tag values match the Dataplane's inbounds")]
    WrongTags { tag: String, allowed: String, actual: String },
    #[error("could not sign the token: {0}")]
    Sign(String),
}

impl TokenError {
    /// True when the token is genuine but names another dataplane or mesh (403, PERMISSION_DENIED);
    /// false when it proves nothing (401, UNAUTHENTICATED).
    pub fn is_permission(&self) -> bool {
        matches!(
            self,
            TokenError::WrongMesh { .. }
                | TokenError::WrongName { .. }
                | TokenError::WrongTags { .. }
        )
    }
}

/// A private signing key (ECDSA P-256, PKCS#8 PEM) with its key id.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    key_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key named `kid`.
    pub fn generate(kid: &str) -> Result<SigningKey, TokenError> {
        let key = KeyPair::generate().map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(SigningKey { kid: kid.to_string(), key_pem: key.serialize_pem() })
    }

    /// A key read back from its PEM.
    pub fn from_pem(kid: &str, key_pem: &str) -> Result<SigningKey, TokenError> {
        KeyPair::from_pem(key_pem).map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(SigningKey { kid: kid.to_string(), key_pem: key_pem.to_string() })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The private key, PEM: only for storing it as a Secret.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// The public half, which checks tokens.
    pub fn verifying_key(&self) -> Result<VerifyingKey, TokenError> {
        let pair = KeyPair::from_pem(&self.key_pem).map_err(|e| TokenError::Sign(e.to_string()))?;
        let key = DecodingKey::from_ec_pem(pair.public_key_pem().as_bytes())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok(VerifyingKey { kid: self.kid.clone(), key })
    }

    /// Signs `claims`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, TokenError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ec_pem(self.key_pem.as_bytes())
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        jsonwebtoken::encode(&header, claims, &key).map_err(|e| TokenError::Sign(e.to_string()))
    }
}

/// A public key that checks tokens signed with the key of the same `kid`.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    key: DecodingKey,
}

impl std::fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyingKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// When a token is valid, in unix seconds (JWT's `iat`, `nbf`, `exp`) and its id (`jti`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenTimes {
    pub jti: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
}

impl TokenTimes {
    /// Valid from `now` for `valid_for`, with a fresh random id.
    pub fn starting(now: i64, valid_for: Duration) -> TokenTimes {
        let valid_for = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX / 2);
        TokenTimes { jti: random_id(), iat: now, nbf: now, exp: now.saturating_add(valid_for) }
    }

    fn check(&self, now: i64) -> Result<(), TokenError> {
        let skew = TOKEN_CLOCK_SKEW.as_secs() as i64;
        if now > self.exp.saturating_add(skew) {
            return Err(TokenError::Expired { expired_at: self.exp });
        }
        if now < self.nbf.saturating_sub(skew) {
            return Err(TokenError::NotYetValid { not_before: self.nbf });
        }
        Ok(())
    }
}

/// 128 random bits, hex: a token id.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What a dataplane token says (Kuma's claim names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneClaims {
    #[serde(rename = "Mesh")]
    pub mesh: String,
    /// The one dataplane the token is for; empty for a token scoped by tags or by mesh.
    #[serde(rename = "Name", default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// For each tag, the values the dataplane's inbounds must carry, exactly.
    #[serde(rename = "Tags", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, BTreeSet<String>>,
    #[serde(flatten)]
    pub times: TokenTimes,
}

impl DataplaneClaims {
    /// Whether the token may act as dataplane `mesh`/`name` whose inbounds carry `tags`
    /// (every value of every tag).
    pub fn check_scope(
        &self,
        mesh: &str,
        name: &str,
        tags: &BTreeMap<String, BTreeSet<String>>,
    ) -> Result<(), TokenError> {
        if self.mesh != mesh {
            return Err(TokenError::WrongMesh {
                token: self.mesh.clone(),
                requested: mesh.to_string(),
            });
        }
        if !self.name.is_empty() && self.name != name {
            return Err(TokenError::WrongName {
                token: self.name.clone(),
                requested: name.to_string(),
            });
        }
        let empty = BTreeSet::new();
        for (tag, allowed) in &self.tags {
            let actual = tags.get(tag).unwrap_or(&empty);
            if actual != allowed {
                let join = |set: &BTreeSet<String>| {
                    if set.is_empty() {
                        "(none)".to_string()
                    } else {
                        set.iter().cloned().collect::<Vec<_>>().join(",")
                    }
                };
                return Err(TokenError::WrongTags {
                    tag: tag.clone(),
                    allowed: join(allowed),
                    actual: join(actual),
                });
            }
        }
        Ok(())
    }
}

/// What a user token says (Kuma's claim names): who, in which groups, until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserClaims {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Groups", default)]
    pub groups: Vec<String>,
    #[serde(flatten)]
    pub times: TokenTimes,
}

impl HasTimes for UserClaims {
    fn times(&self) -> &TokenTimes {
        &self.times
    }
}

/// The `kid` of a token's header, before its signature is checked (to find the key).
pub fn token_kid(token: &str) -> Result<String, TokenError> {
    let header = jsonwebtoken::decode_header(token.trim())
        .map_err(|e| TokenError::Malformed { reason: e.to_string() })?;
    if header.alg != Algorithm::ES256 {
        return Err(TokenError::Malformed {
            reason: format!("algorithm {:?} is not ES256", header.alg),
        });
    }
    header.kid.ok_or_else(|| TokenError::Malformed { reason: "it names no key (kid)".to_string() })
}

/// The mesh a token claims, read without checking its signature: only to tell a user that a
/// genuine-looking token is for another mesh, never to grant anything.
pub fn unverified_mesh(token: &str) -> Option<String> {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.insecure_disable_signature_validation();
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token.trim(),
        &DecodingKey::from_secret(&[]),
        &validation,
    )
    .ok()?;
    data.claims.get("Mesh")?.as_str().map(str::to_string)
}

/// Checks the signature of `token` with `key` and its times against `now` (unix seconds), and
/// returns its claims. The scope and the revocation list are the caller's to check.
pub fn verify<C>(token: &str, key: &VerifyingKey, mesh: &str, now: i64) -> Result<C, TokenError>
where
    C: DeserializeOwned + HasTimes,
{
    let mut validation = Validation::new(Algorithm::ES256);
    // Times are checked below against the given clock, with the documented skew.
    validation.validate_exp = false;
    validation.required_spec_claims.clear();
    let data =
        jsonwebtoken::decode::<C>(token.trim(), &key.key, &validation).map_err(|e| {
            match e.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => {
                    TokenError::BadSignature { mesh: mesh.to_string(), kid: key.kid.clone() }
                }
                _ => TokenError::Malformed { reason: e.to_string() },
            }
        })?;
    data.claims.times().check(now)?;
    Ok(data.claims)
}

/// Claims that carry [`TokenTimes`].
pub trait HasTimes {
    fn times(&self) -> &TokenTimes;
}

impl HasTimes for DataplaneClaims {
    fn times(&self) -> &TokenTimes {
        &self.times
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
