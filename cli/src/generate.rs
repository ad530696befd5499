//! `kumactl generate dataplane-token` and `kumactl generate signing-key`: the API operations that
//! issue dataplane tokens and rotate a mesh's token signing key.

use std::collections::BTreeMap;
use std::io::Write;

use serde_json::{json, Value};

use crate::client::ApiClient;
use crate::error::CliError;

/// Prints a token for dataplane `name` (empty: any dataplane with `tags`) of `mesh`.
pub async fn generate_dataplane_token(
    client: &ApiClient,
    mesh: &str,
    name: &str,
    tags: &[(String, String)],
    valid_for: Option<String>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let mut tag_values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in tags {
        tag_values.entry(k).or_default().push(v);
    }
    let body = json!({
        "mesh": mesh,
        "name": name,
        "tags": tag_values,
        "validFor": valid_for.unwrap_or_default(),
    });
    let token = client.post_for_text(&["tokens", "dataplane"], &body).await?;
    writeln!(out, "{}", token.trim())?;
    Ok(())
}

/// Adds a signing key to `mesh` and says which.
pub async fn generate_signing_key(
    client: &ApiClient,
    mesh: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let answer =
        client.post(&["tokens", "dataplane", "signing-keys"], &json!({"mesh": mesh})).await?;
    let kid = answer.get("kid").and_then(Value::as_str).unwrap_or("?");
    let secret = answer.get("secret").and_then(Value::as_str).unwrap_or("?");
    writeln!(out, "created signing key {kid} of mesh {mesh:?} (Secret {secret}); new tokens are signed with it")?;
    writeln!(
        out,
        "tokens signed with older keys stay valid until you delete their key: kumactl delete secret dataplane-token-signing-key-{mesh}-<id> --mesh {mesh}"
    )?;
    Ok(())
}

/// Prints a user token for `name` in `groups`.
pub async fn generate_user_token(
    client: &ApiClient,
    name: &str,
    groups: &[String],
    valid_for: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let body = json!({"name": name, "groups": groups, "validFor": valid_for});
    let token = client.post_for_text(&["tokens", "user"], &body).await?;
    writeln!(out, "{}", token.trim())?;
    Ok(())
}
