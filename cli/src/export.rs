//! `kumactl export [-o yaml] [--include-secrets]`: the state users wrote, as one multi-document
//! YAML that `kumactl apply -f` restores into an empty control plane of any store type.
//!
//! Order: every Mesh (by name) first, since everything else lives in one; then, mesh by mesh (by
//! name), its Dataplanes and each policy type in the registry's order, each by name. Left out:
//! status the control plane writes itself (DataplaneInsights), and Secrets and GlobalSecrets,
//! whose contents the API serves only to an admin who asks (a Secret without its bytes cannot be
//! applied). Each resource is written as a user would write it (`type`, `mesh`, `name`, then the
//! spec), without the server's timestamps, so two exports of the same state are byte-identical.
//! Nothing is written before every list has been read to its last page: a failure leaves no
//! partial file.
//!
//! With `--include-secrets` (admin only: the API's `include=data`), the Secrets of every mesh and
//! the GlobalSecrets users wrote come too, in an order apply can restore: every Mesh with
//! `mtls.enabledBackend` removed (a leader that saw mTLS enabled before the CA's Secret exists
//! would generate a CA of its own), the GlobalSecrets, each mesh's Secrets, then each Mesh that
//! lost its `enabledBackend` as exported, then the rest. The control plane's own GlobalSecrets
//! ([`is_control_plane_global_secret`]) are left out: applied to another control plane they
//! would replace its TLS CA and the keys that sign its user tokens.

use std::io::Write;

use kuma_model::rest::ErrorBody;
use kuma_model::{parse_resource, ResourceType, Spec};
use serde_json::Value;

use crate::args::{ExportArgs, ExportFormat};
use crate::client::{ApiClient, ClientError};
use crate::error::CliError;

/// Why `export` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A list could not be read; the API's answer (or why there was none) is the source.
    #[error("could not list {what}, so nothing was exported")]
    List {
        what: String,
        #[source]
        source: ClientError,
    },
    /// The API answered something that is not a resource of the listed type.
    #[error("could not read {what} from the API, so nothing was exported: {reason}")]
    Unexpected { what: String, reason: String },
    /// The API never shows an inline CA key, so the exported Mesh would be refused on apply.
    #[error(
        "Mesh {mesh:?} cannot be exported: the key of its provided CA backend {backend:?} is \
         given inline, which the API never shows, so the exported Mesh would not apply; give the \
         key as conf.key.file or conf.key.secret instead, then export again"
    )]
    InlineCaKey { mesh: String, backend: String },
    /// The control plane would not show secret contents to this user (403).
    #[error("--include-secrets needs an admin, so nothing was exported: {details}")]
    SecretsRefused { details: String },
    /// The API listed a Secret without its bytes: a control plane that does not know
    /// `include=data`.
    #[error(
        "{what} came without its contents, so nothing was exported: this control plane does not \
         serve secret contents (is it older than this kumactl?); export without --include-secrets"
    )]
    NoSecretData { what: String },
    /// A resource could not be written as YAML.
    #[error("could not write {what} as YAML: {reason}")]
    Yaml { what: String, reason: String },
    /// The output went away (a closed pipe too): unlike `get`, an export cut short is a failure.
    #[error("could not write the export, so what was written is incomplete")]
    Write(#[source] std::io::Error),
}

/// Runs `export` against `client`, writing the YAML to `out` once all of it has been read.
pub(crate) async fn export(
    client: &ApiClient,
    args: ExportArgs,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let ExportFormat::Yaml = args.output;
    let resources = fetch(client, args.include_secrets).await?;
    let mut text = String::new();
    if args.include_secrets {
        for line in SECRETS_HEADER {
            text.push_str(&format!("# {line}\n"));
        }
    }
    text.push_str(&render(&resources)?);
    out.write_all(text.as_bytes()).and_then(|()| out.flush()).map_err(ExportError::Write)?;
    Ok(())
}

/// What a file with secrets says above its first document.
const SECRETS_HEADER: &[&str] = &[
    "kumactl export --include-secrets: this file holds the private keys of the mesh CAs and the",
    "dataplane token signing keys; keep it as secret as they are. Dataplane tokens issued by the",
    "exported control plane stay valid where it is applied. Left out: the control plane's own",
    "GlobalSecrets (control-plane-ca, user-token-signing-key-N, admin-user-token,",
    "user-token-revocations): the target keeps its own, so user tokens must be issued again there.",
];

/// The control plane's own GlobalSecrets (kuma-cp makes them: its TLS CA, the user token signing
/// keys, the first admin token and the user token revocations), which `--include-secrets` leaves
/// out. Applied to another control plane they would replace the CA its peers' certificates come
/// from and the keys that sign its user tokens: tokens it issued would stop working, and the
/// exported one's would work there.
pub(crate) fn is_control_plane_global_secret(name: &str) -> bool {
    matches!(name, "control-plane-ca" | "admin-user-token" | "user-token-revocations")
        || name.strip_prefix("user-token-signing-key-").is_some_and(|kid| !kid.is_empty())
}

/// The types exported in every mesh, in the registry's order: Dataplanes and every policy.
/// Reading `is_policy` from the registry means a new policy type is exported without a change
/// here.
pub(crate) fn mesh_types() -> impl Iterator<Item = ResourceType> {
    ResourceType::all().filter(|t| {
        t.is_mesh_scoped() && (*t == ResourceType::Dataplane || t.descriptor().is_policy)
    })
}

/// One exported resource: its canonical REST form, and comments written above it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Exported {
    pub(crate) value: Value,
    pub(crate) notes: Vec<String>,
}

/// Every Mesh, then each mesh's resources, in export order; with `secrets`, the secrets too.
async fn fetch(client: &ApiClient, secrets: bool) -> Result<Vec<Exported>, ExportError> {
    let meshes = list(client, ResourceType::Mesh, None, secrets).await?;
    let names: Vec<String> = meshes.iter().map(|m| name_of(&m.value).to_string()).collect();
    let mut secret_resources = Vec::new();
    if secrets {
        let globals = list(client, ResourceType::GlobalSecret, None, true).await?;
        secret_resources.extend(
            globals.into_iter().filter(|g| !is_control_plane_global_secret(name_of(&g.value))),
        );
        for mesh in &names {
            secret_resources.extend(list(client, ResourceType::Secret, Some(mesh), true).await?);
        }
    }
    let mut rest = Vec::new();
    for mesh in &names {
        for resource_type in mesh_types() {
            rest.extend(list(client, resource_type, Some(mesh), secrets).await?);
        }
    }
    if !secrets {
        return Ok(meshes.into_iter().chain(rest).collect());
    }
    Ok(restore_order(meshes, secret_resources, rest))
}

/// The order that restores secrets: every Mesh without `mtls.enabledBackend`, the secrets, each
/// Mesh that lost its `enabledBackend` as exported, then the rest.
pub(crate) fn restore_order(
    meshes: Vec<Exported>,
    secrets: Vec<Exported>,
    rest: Vec<Exported>,
) -> Vec<Exported> {
    let mut first = Vec::with_capacity(meshes.len());
    let mut again = Vec::new();
    for mesh in meshes {
        let mut without = mesh.clone();
        let enabled = without
            .value
            .get_mut("mtls")
            .and_then(Value::as_object_mut)
            .and_then(|mtls| mtls.remove("enabledBackend"));
        if let Some(backend) = enabled {
            let backend = backend.as_str().unwrap_or_default();
            without.notes.insert(
                0,
                format!(
                    "mTLS off until the Secrets below are restored (a control plane would make \
                     a CA of its own meanwhile); the Mesh with enabledBackend {backend} follows \
                     them."
                ),
            );
            again.push(Exported {
                value: mesh.value,
                notes: vec!["mTLS on again, with the CA Secrets restored above.".to_string()],
            });
        }
        first.push(without);
    }
    first.into_iter().chain(secrets).chain(again).chain(rest).collect()
}

/// What a list holds, for messages: `the Meshes`, `the Dataplanes of mesh "demo"`.
fn what(resource_type: ResourceType, mesh: Option<&str>) -> String {
    let plural = match resource_type {
        ResourceType::Mesh => "Meshes".to_string(),
        other => format!("{}s", other.name()),
    };
    match mesh {
        Some(mesh) => format!("the {plural} of mesh {mesh:?}"),
        None => format!("the {plural}"),
    }
}

/// Every resource of `resource_type` (in `mesh`), every page, canonical and sorted by name. For
/// secrets, `secrets` asks for their contents (`include=data`); for other types it only says
/// whether their notes may count on the secrets being in the export.
async fn list(
    client: &ApiClient,
    resource_type: ResourceType,
    mesh: Option<&str>,
    secrets: bool,
) -> Result<Vec<Exported>, ExportError> {
    let segments = ApiClient::collection(resource_type, mesh.unwrap_or_default());
    let is_secret = matches!(resource_type, ResourceType::Secret | ResourceType::GlobalSecret);
    let query = if is_secret { vec![("include", "data".to_string())] } else { Vec::new() };
    let fetched = client.list_all(&segments, &query).await.map_err(|source| match source {
        ClientError::Api { status: 403, body } if is_secret => {
            ExportError::SecretsRefused { details: details_of(&body) }
        }
        source => ExportError::List { what: what(resource_type, mesh), source },
    })?;
    let mut items = Vec::with_capacity(fetched.items.len());
    for item in fetched.items {
        if is_secret && item.get("data").is_none() {
            return Err(ExportError::NoSecretData {
                what: format!("{} {:?}", resource_type.name(), name_of(&item)),
            });
        }
        items.push(canonical(resource_type, mesh, item, secrets)?);
    }
    items.sort_by(|a, b| name_of(&a.value).cmp(name_of(&b.value)));
    // Paging over a state that changes may hand out one resource twice.
    items.dedup_by(|a, b| name_of(&a.value) == name_of(&b.value));
    Ok(items)
}

fn details_of(body: &ErrorBody) -> String {
    if body.details.is_empty() {
        body.title.clone()
    } else {
        body.details.clone()
    }
}

fn name_of(value: &Value) -> &str {
    value.get("name").and_then(Value::as_str).unwrap_or_default()
}

/// A listed item as a user would write it: read as a resource of `resource_type` in `mesh`,
/// then written back without what the server adds; `secrets`: the export holds the secrets.
pub(crate) fn canonical(
    resource_type: ResourceType,
    mesh: Option<&str>,
    item: Value,
    secrets: bool,
) -> Result<Exported, ExportError> {
    let unexpected = |reason: String| ExportError::Unexpected {
        what: format!("{} {:?}", resource_type.name(), name_of(&item)),
        reason,
    };
    let input = parse_resource(item.clone()).map_err(|e| unexpected(e.to_string()))?;
    if input.key.resource_type != resource_type || input.key.mesh.as_deref() != mesh {
        return Err(unexpected(format!(
            "the list of {} holds {}",
            what(resource_type, mesh),
            input.key
        )));
    }
    let mut notes = Vec::new();
    if let Spec::Mesh(spec) = &input.spec {
        for backend in spec.mtls.iter().flat_map(|m| &m.backends) {
            if backend.kind != "provided" {
                continue;
            }
            let key = backend.conf.as_ref().and_then(|c| c.key.as_ref());
            if key.is_none_or(|k| k.file.is_none() && k.secret.is_none() && k.inline.is_none()) {
                return Err(ExportError::InlineCaKey {
                    mesh: input.key.name.clone(),
                    backend: backend.name.clone(),
                });
            }
            let sources = backend.conf.iter().flat_map(|c| [&c.cert, &c.key]).flatten();
            for source in sources {
                if let (Some(secret), false) = (&source.secret, secrets) {
                    notes.push(format!(
                        "The CA backend {:?} reads the Secret {secret:?}, which export leaves \
                         out: create it in this mesh before dataplanes connect.",
                        backend.name
                    ));
                }
                if let Some(file) = &source.file {
                    notes.push(format!(
                        "The CA backend {:?} reads the file {file:?} on the control plane's \
                         host: apply refuses this Mesh where it is missing.",
                        backend.name
                    ));
                }
            }
        }
    }
    Ok(Exported { value: input.to_rest_json(), notes })
}

/// The multi-document YAML of `resources`, in their order.
pub(crate) fn render(resources: &[Exported]) -> Result<String, ExportError> {
    let mut text = String::new();
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            text.push_str("---\n");
        }
        for note in &resource.notes {
            text.push_str(&format!("# {note}\n"));
        }
        text.push_str(&document(&resource.value)?);
    }
    Ok(text)
}

/// One resource as YAML. `apply` fills in `{{ variables }}` before it reads YAML, so a resource
/// holding `{{` in a string (a log format, say) would not apply as written: that one is written
/// as a JSON document (JSON is YAML), every `{` inside its strings escaped as `\u007b`.
fn document(value: &Value) -> Result<String, ExportError> {
    let yaml_error = |reason: String| ExportError::Yaml {
        what: format!(
            "{} {:?}",
            value.get("type").and_then(Value::as_str).unwrap_or_default(),
            name_of(value)
        ),
        reason,
    };
    let yaml = serde_yaml::to_string(value).map_err(|e| yaml_error(e.to_string()))?;
    if !yaml.contains("{{") {
        return Ok(yaml);
    }
    let json = serde_json::to_string(value).map_err(|e| yaml_error(e.to_string()))?;
    let mut escaped = String::with_capacity(json.len() + 16);
    let (mut in_string, mut after_backslash) = (false, false);
    for c in json.chars() {
        match c {
            '{' if in_string => escaped.push_str("\\u007b"),
            _ => escaped.push(c),
        }
        if in_string && after_backslash {
            after_backslash = false;
        } else if in_string && c == '\\' {
            after_backslash = true;
        } else if c == '"' {
            in_string = !in_string;
        }
    }
    escaped.push('\n');
    Ok(escaped)
}

#[cfg(test)]
mod tests;
