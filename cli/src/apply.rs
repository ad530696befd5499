//! `kumactl apply -f FILE|-|URL [-v key=value]... [--dry-run]`: read the text, fill in the
//! variables, check every document locally, then PUT each one (or print them for `--dry-run`).

use std::collections::HashMap;
use std::io::{Read, Write};

use kuma_model::{parse_resource, parse_resources_yaml, ParseError, ResourceInput};
use serde_json::Value;

use crate::args::ApplyArgs;
use crate::client::{http_client, parse_url, root_cause, ApiClient};
use crate::error::CliError;
use crate::output::print_yaml;
use kuma_model::render_template;

/// The resources of an `apply`, read, resolved and checked; nothing has been sent yet.
#[derive(Debug, PartialEq)]
pub(crate) struct Resolved {
    pub(crate) resources: Vec<ResourceInput>,
}

impl Resolved {
    /// Fills in `vars`, splits the documents and reads each as a resource. `source` names the
    /// input in messages.
    pub(crate) fn from_text(
        text: &str,
        vars: &[(String, String)],
        source: &str,
    ) -> Result<Resolved, CliError> {
        let vars: HashMap<String, String> = vars.iter().cloned().collect();
        let text = render_template(text, &vars)?;
        let documents = parse_resources_yaml(&text).map_err(|e| CliError::Syntax(e.to_string()))?;
        if documents.is_empty() {
            return Err(CliError::NothingToApply(source.to_string()));
        }
        let count = documents.len();
        let mut resources = Vec::with_capacity(count);
        for (i, document) in documents.into_iter().enumerate() {
            let document_label = (count > 1).then(|| format!("document {}", i + 1));
            match list_items(document) {
                Ok(items) => {
                    for (j, item) in items.into_iter().enumerate() {
                        let item_label = format!("item {}", j + 1);
                        let label = match &document_label {
                            Some(d) => format!("{d}, {item_label}"),
                            None => item_label,
                        };
                        resources.push(read_resource(item, Some(label))?);
                    }
                }
                Err(document) => resources.push(read_resource(document, document_label)?),
            }
        }
        Ok(Resolved { resources })
    }
}

/// The items of a list as `get -o yaml|json` prints it (`{total, items, next}`: no `type`, an
/// `items` array), so a listing can be applied back; any other document is handed back.
fn list_items(document: Value) -> Result<Vec<Value>, Value> {
    match document {
        Value::Object(mut object)
            if !object.contains_key("type") && object.get("items").is_some_and(Value::is_array) =>
        {
            match object.remove("items") {
                Some(Value::Array(items)) => Ok(items),
                _ => Err(Value::Object(object)),
            }
        }
        other => Err(other),
    }
}

/// Reads one resource; `label` says where it is when the input holds more than one.
fn read_resource(value: Value, label: Option<String>) -> Result<ResourceInput, CliError> {
    match parse_resource(value) {
        Ok(input) => Ok(input),
        Err(ParseError::Invalid(e)) => {
            Err(CliError::InvalidResource { location: label, violations: e.violations })
        }
        Err(ParseError::Syntax(reason)) => Err(CliError::Syntax(match label {
            Some(label) => format!("{label}: {reason}"),
            None => reason,
        })),
    }
}

/// Reads the text `apply -f` names: a file, stdin (`-`) or an http(s) URL.
pub(crate) async fn read_input(file: &str, stdin: &mut dyn Read) -> Result<String, CliError> {
    if file == "-" {
        let mut text = String::new();
        stdin.read_to_string(&mut text).map_err(CliError::ReadStdin)?;
        return Ok(text);
    }
    if file.starts_with("http://") || file.starts_with("https://") {
        return fetch(file).await;
    }
    std::fs::read_to_string(file).map_err(|source| CliError::ReadFile { path: file.into(), source })
}

async fn fetch(url: &str) -> Result<String, CliError> {
    let fetch_err = |reason: String| CliError::Fetch { url: url.to_string(), reason };
    let parsed = parse_url(url)?;
    let response = http_client(&Default::default())?
        .get(parsed)
        .send()
        .await
        .map_err(|e| fetch_err(root_cause(&e)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fetch_err(format!("it answered HTTP {status}")));
    }
    response.text().await.map_err(|e| fetch_err(root_cause(&e)))
}

/// Runs `apply`; `client` is only needed (and only built) when not a dry run.
pub(crate) async fn apply<F>(
    args: ApplyArgs,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
    client: F,
) -> Result<(), CliError>
where
    F: FnOnce() -> Result<ApiClient, CliError>,
{
    let text = read_input(&args.file, stdin).await?;
    let source = if args.file == "-" { "stdin" } else { args.file.as_str() };
    let resolved = Resolved::from_text(&text, &args.vars, source)?;
    if args.dry_run {
        for (i, resource) in resolved.resources.iter().enumerate() {
            if i > 0 {
                writeln!(out, "---")?;
            }
            print_yaml(out, &resource.to_rest_json())?;
        }
        return Ok(());
    }
    let client = client()?;
    let count = resolved.resources.len();
    for (i, resource) in resolved.resources.iter().enumerate() {
        let key = &resource.key;
        let mesh = key.mesh.as_deref().unwrap_or_default();
        let segments = ApiClient::item(key.resource_type, mesh, &key.name);
        match client.put(&segments, &resource.to_rest_json()).await {
            Ok(()) => {}
            // One resource: the API's error says it all, in Kuma's shape.
            Err(e) if count == 1 => return Err(e.into()),
            Err(source) => {
                return Err(CliError::ApplyFailed {
                    source,
                    resource: key.to_string(),
                    position: i + 1,
                    count,
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
