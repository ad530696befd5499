//! The Secret resource: bytes the control plane keeps for a mesh, such as the private key of its
//! builtin CA or its dataplane-token signing keys; and the GlobalSecret, the same for the whole
//! control plane (its TLS CA). Its `data` is stored and replicated like any spec but never leaves through the REST
//! form, `Debug` or logs; the one exception is the admin-only list with `?include=data` (backups,
//! moving between stores), served through `Resource::to_rest_json_with_secret_data`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A secret's bytes, base64-encoded as in Kuma's Secret resource.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    /// Base64 of the secret bytes. Write-only: the API shows it only to an admin who lists
    /// secrets with `include=data`.
    #[serde(default)]
    pub data: String,
}

impl std::fmt::Debug for SecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSpec").field("data", &"<redacted>").finish()
    }
}

impl SecretSpec {
    /// A secret holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> SecretSpec {
        SecretSpec { data: STANDARD.encode(bytes) }
    }

    /// The secret's bytes; `None` when `data` is not base64.
    pub fn bytes(&self) -> Option<Vec<u8>> {
        STANDARD.decode(self.data.trim()).ok()
    }

    /// The secret's bytes as UTF-8 text (PEM), when they are.
    pub fn text(&self) -> Option<String> {
        String::from_utf8(self.bytes()?).ok()
    }
}

/// A `GlobalSecret`: the same bytes as a Secret, kept outside every mesh. Its schema is the
/// Secret's fields, inlined, so each resource type's schema is one object.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
#[schemars(inline)]
pub struct GlobalSecretSpec(pub SecretSpec);

impl std::fmt::Debug for GlobalSecretSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_bytes_round_trip_and_never_print() {
        let secret = SecretSpec::from_bytes(b"-----BEGIN PRIVATE KEY-----");
        assert_eq!(secret.text().as_deref(), Some("-----BEGIN PRIVATE KEY-----"));
        assert!(!format!("{secret:?}").contains(&secret.data));
        assert_eq!(SecretSpec { data: "not base64!".into() }.bytes(), None);
    }
}
