//! `kumactl get <type> [name]`: one resource or a list, as a table, YAML or JSON.

use std::io::Write;

use chrono::{DateTime, Utc};
use kuma_model::{parse_resource, ResourceType, Spec};
use serde_json::{json, Value};

use crate::args::{GetArgs, OutputFormat};
use crate::cells;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::output::print_value;
use crate::table::Table;
use crate::terminal::Terminal;
use crate::watch::{View, WatchOptions};

/// Runs `get` against `client` in `mesh`, once or with `--watch` again and again (see
/// [`crate::watch`]; in a table, ages alone are no change).
pub(crate) async fn get(
    client: &ApiClient,
    mesh: &str,
    args: GetArgs,
    terminal: Terminal,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let Some(options) =
        args.watch.then_some(WatchOptions { interval: args.interval, count: args.watch_count })
    else {
        return print(client, mesh, &args, out).await.map(|_| ());
    };
    let args = &args;
    let draw = || async move {
        let mut text = Vec::new();
        let table = print(client, mesh, args, &mut text).await?;
        let plain = String::from_utf8_lossy(&text).into_owned();
        let key = match table {
            Some(table) => table.without_columns(&table.columns_titled("AGE")).to_string(),
            None => plain.clone(),
        };
        Ok(View { painted: plain.clone(), plain, key })
    };
    crate::watch::watch(draw, options, terminal, out).await
}

/// Prints what `get` shows once; returns the table when it printed one.
async fn print(
    client: &ApiClient,
    mesh: &str,
    args: &GetArgs,
    out: &mut dyn Write,
) -> Result<Option<Table>, CliError> {
    let resource_type = args.resource_type;
    if let Some(name) = &args.name {
        let segments = ApiClient::item(resource_type, mesh, name);
        let value = client.get(&segments).await.map_err(|e| {
            if e.is_not_found() {
                not_found(resource_type, mesh, name)
            } else {
                e.into()
            }
        })?;
        return match args.output {
            OutputFormat::Table => {
                let table =
                    resource_table(resource_type, std::slice::from_ref(&value), Utc::now())?;
                write!(out, "{table}")?;
                Ok(Some(table))
            }
            format => print_value(out, format, &value).map(|()| None),
        };
    }

    let segments = ApiClient::collection(resource_type, mesh);
    let (total, items, next) = if args.size.is_some() || args.offset.is_some() {
        let mut query = Vec::new();
        if let Some(size) = args.size {
            query.push(("size", size.to_string()));
        }
        if let Some(offset) = &args.offset {
            query.push(("offset", offset.clone()));
        }
        let page = client.list_page(&segments, &query).await?;
        (page.total, page.items, page.next)
    } else {
        let list = client.list_all(&segments, &[]).await?;
        (list.total, list.items, None)
    };
    match args.output {
        OutputFormat::Table => {
            let table = resource_table(resource_type, &items, Utc::now())?;
            write!(out, "{table}")?;
            if let Some(offset) = next.as_deref().and_then(offset_of) {
                writeln!(out)?;
                writeln!(
                    out,
                    "Rerun command with --offset={offset} argument to retrieve more resources"
                )?;
            }
            Ok(Some(table))
        }
        format => print_value(out, format, &json!({"total": total, "items": items, "next": next}))
            .map(|()| None),
    }
}

/// The error for a `get` of one resource that does not exist.
pub(crate) fn not_found(resource_type: ResourceType, mesh: &str, name: &str) -> CliError {
    let mesh = if resource_type.is_mesh_scoped() { mesh } else { name };
    CliError::NotFound {
        kind: resource_type.name(),
        mesh: mesh.to_string(),
        name: name.to_string(),
    }
}

/// The `offset` query parameter of a `next` link.
fn offset_of(next: &str) -> Option<String> {
    let url = reqwest::Url::parse(next).ok()?;
    let offset = url.query_pairs().find(|(k, _)| k == "offset").map(|(_, v)| v.into_owned());
    offset
}

/// The table `get` prints for `items` of `resource_type`, ages measured at `now`.
pub(crate) fn resource_table(
    resource_type: ResourceType,
    items: &[Value],
    now: DateTime<Utc>,
) -> Result<Table, CliError> {
    let table = match resource_type {
        ResourceType::Mesh => {
            let mut table = Table::new(["NAME", "mTLS", "METRICS", "LOGGING", "TRACING", "AGE"]);
            for item in items {
                let spec = spec_of(resource_type, item)?;
                let Some(spec) = spec.as_mesh() else { continue };
                let names = |names: Vec<&str>| {
                    if names.is_empty() {
                        "off".to_string()
                    } else {
                        names.join(",")
                    }
                };
                let logging = spec.logging.iter().flat_map(|l| &l.backends);
                let tracing = spec.tracing.iter().flat_map(|t| &t.backends);
                table.push([
                    text(item, "name"),
                    spec.enabled_ca().map(|(_, kind)| kind).unwrap_or_else(|| "off".into()),
                    spec.enabled_metrics().unwrap_or("off").to_string(),
                    names(logging.map(|b| b.name.as_str()).collect()),
                    names(tracing.map(|b| b.name.as_str()).collect()),
                    age(item, now),
                ]);
            }
            table
        }
        ResourceType::Dataplane => {
            let mut table = Table::new(["MESH", "NAME", "TAGS", "AGE"]);
            for item in items {
                let spec = spec_of(resource_type, item)?;
                let Some(spec) = spec.as_dataplane() else {
                    continue;
                };
                table.push([
                    text(item, "mesh"),
                    text(item, "name"),
                    cells::tags(&spec.merged_tags()),
                    age(item, now),
                ]);
            }
            table
        }
        t if !t.is_mesh_scoped() => {
            let mut table = Table::new(["NAME", "AGE"]);
            for item in items {
                table.push([text(item, "name"), age(item, now)]);
            }
            table
        }
        _ => {
            let mut table = Table::new(["MESH", "NAME", "AGE"]);
            for item in items {
                table.push([text(item, "mesh"), text(item, "name"), age(item, now)]);
            }
            table
        }
    };
    Ok(table)
}

/// A string field of an API object, empty when absent.
pub(crate) fn text(item: &Value, field: &str) -> String {
    item.get(field).and_then(Value::as_str).unwrap_or_default().to_string()
}

fn age(item: &Value, now: DateTime<Utc>) -> String {
    cells::ago(cells::parse_time(item.get("creationTime")), now)
}

/// Reads the typed spec of an API object, which must be of `resource_type`.
fn spec_of(resource_type: ResourceType, item: &Value) -> Result<Spec, CliError> {
    let what = || format!("{} {:?}", resource_type.name(), text(item, "name"));
    let input = parse_resource(item.clone())
        .map_err(|e| CliError::UnexpectedAnswer { what: what(), reason: e.to_string() })?;
    if input.key.resource_type != resource_type {
        return Err(CliError::UnexpectedAnswer {
            what: what(),
            reason: format!("it is a {}", input.key.resource_type.name()),
        });
    }
    Ok(input.spec)
}

#[cfg(test)]
mod tests;
