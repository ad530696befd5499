//! `kumactl inspect dataplanes|meshes`: the augmented views. Dataplanes are joined with their
//! insights by the API (`dataplanes+insights`); mesh counts are computed here from the lists.
//! `inspect dataplane NAME --config-dump` prints the Envoy config the control plane serving the
//! dataplane generated for it (`/meshes/{mesh}/dataplanes/{name}/xds`).

use std::io::Write;

use chrono::{DateTime, Utc};
use kuma_model::rest::DATAPLANES_WITH_INSIGHTS;
use kuma_model::{DataplaneInsightSpec, DataplaneSpec, ResourceType, Spec, TypeDescriptor};
use serde_json::Value;

use crate::cells;
use crate::client::ApiClient;
use crate::error::CliError;
use crate::get::{not_found, text};
use crate::table::Table;
use crate::terminal::{Terminal, GREEN, RED};
use crate::watch::{View, WatchOptions};

/// Which dataplanes `inspect dataplanes` shows and how.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DataplanesQuery<'a> {
    pub mesh: &'a str,
    pub name: Option<&'a str>,
    pub tags: &'a [(String, String)],
    pub wide: bool,
}

/// The columns of the `inspect dataplanes` table that change by themselves (ages).
const AGE_COLUMNS: [usize; 2] = [4, 5];
/// The STATUS column.
const STATUS_COLUMN: usize = 3;

/// `inspect dataplanes [NAME] [--tag k=v]...`: the table once, or with `watch` again and again
/// (see [`crate::watch`]). Statuses are coloured on a terminal.
pub(crate) async fn inspect_dataplanes(
    client: &ApiClient,
    query: DataplanesQuery<'_>,
    watch: Option<WatchOptions>,
    terminal: Terminal,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let draw = || async move {
        let table =
            dataplanes_table(&dataplane_overviews(client, &query).await?, Utc::now(), query.wide)?;
        let painted = if terminal.colour { paint_status(&table) } else { table.to_string() };
        Ok(View {
            painted,
            plain: table.to_string(),
            key: table.without_columns(&AGE_COLUMNS).to_string(),
        })
    };
    match watch {
        Some(options) => crate::watch::watch(draw, options, terminal, out).await,
        None => {
            write!(out, "{}", draw().await?.painted)?;
            Ok(())
        }
    }
}

/// The table with Online green and Offline red.
fn paint_status(table: &Table) -> String {
    table.painted(|column, cell| match (column, cell) {
        (STATUS_COLUMN, "Online") => Some(GREEN),
        (STATUS_COLUMN, "Offline") => Some(RED),
        _ => None,
    })
}

async fn dataplane_overviews(
    client: &ApiClient,
    query: &DataplanesQuery<'_>,
) -> Result<Vec<Value>, CliError> {
    let mesh = query.mesh;
    Ok(match query.name {
        Some(name) => {
            let overview = client
                .get(&["meshes", mesh, DATAPLANES_WITH_INSIGHTS, name])
                .await
                .map_err(|e| {
                    if e.is_not_found() {
                        not_found(ResourceType::Dataplane, mesh, name)
                    } else {
                        e.into()
                    }
                })?;
            vec![overview]
        }
        None => {
            let query: Vec<_> =
                query.tags.iter().map(|(k, v)| ("tag", format!("{k}:{v}"))).collect();
            client.list_all(&["meshes", mesh, DATAPLANES_WITH_INSIGHTS], &query).await?.items
        }
    })
}

/// `inspect dataplane NAME --config-dump`: the Envoy config of dataplane `name` in `mesh`, as
/// Envoy's config dump JSON, from whichever control plane its stream is on (the one asked
/// forwards to it). The API's error says why there is none (not connected anywhere, its peer
/// unreachable, not an admin).
pub(crate) async fn inspect_dataplane_config_dump(
    client: &ApiClient,
    mesh: &str,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let dump = client.get(&["meshes", mesh, "dataplanes", name, "xds"]).await?;
    let text = serde_json::to_string_pretty(&dump).map_err(|e| CliError::UnexpectedAnswer {
        what: format!("the config dump of dataplane {mesh}/{name}"),
        reason: e.to_string(),
    })?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// `inspect meshes`: per mesh, dataplanes online/total and the count of each policy type.
pub(crate) async fn inspect_meshes(
    client: &ApiClient,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let policies = policy_types();
    let meshes = client.list_all(&ApiClient::collection(ResourceType::Mesh, ""), &[]).await?;
    let mut table = Table::new(meshes_header(&policies));
    for mesh in &meshes.items {
        let name = text(mesh, "name");
        let overviews =
            client.list_all(&["meshes", &name, DATAPLANES_WITH_INSIGHTS], &[]).await?.items;
        let mut online = 0;
        for overview in &overviews {
            if read_overview(overview)?.1.is_online() {
                online += 1;
            }
        }
        let mut row = vec![name.clone(), format!("{online}/{}", overviews.len())];
        for policy in &policies {
            let segments = ApiClient::collection(policy.resource_type, &name);
            row.push(client.list_all(&segments, &[]).await?.items.len().to_string());
        }
        table.push(row);
    }
    write!(out, "{table}")?;
    Ok(())
}

/// The policy types `inspect meshes` counts, one column each, in the registry's (Kuma's) order.
fn policy_types() -> Vec<&'static TypeDescriptor> {
    ResourceType::descriptors().iter().filter(|d| d.is_policy).collect()
}

/// The header of the `inspect meshes` table.
fn meshes_header(policies: &[&'static TypeDescriptor]) -> Vec<&'static str> {
    let mut header = vec!["MESH", "DATAPLANES"];
    header.extend(policies.iter().map(|d| d.title));
    header
}

/// The `inspect dataplanes` table for `DataplaneOverview` objects, ages measured at `now`.
/// The table of `inspect dataplanes`: Kuma's columns, plus with `wide` the control plane each
/// dataplane's open stream is served by (on a replicated control plane, which peer).
pub(crate) fn dataplanes_table(
    overviews: &[Value],
    now: DateTime<Utc>,
    wide: bool,
) -> Result<Table, CliError> {
    let mut header = vec![
        "MESH",
        "NAME",
        "TAGS",
        "STATUS",
        "LAST CONNECTED AGO",
        "LAST UPDATED AGO",
        "TOTAL UPDATES",
        "TOTAL ERRORS",
    ];
    if wide {
        header.push("CONTROL PLANE");
    }
    let mut table = Table::new(header);
    for overview in overviews {
        let (dataplane, insight) = read_overview(overview)?;
        let latest = insight.latest();
        let mut row = vec![
            text(overview, "mesh"),
            text(overview, "name"),
            cells::tags(&dataplane.merged_tags()),
            if insight.is_online() { "Online" } else { "Offline" }.to_string(),
            cells::ago(latest.and_then(|s| s.connect_time), now),
            cells::ago(latest.and_then(|s| s.status.last_update_time), now),
            insight.total_updates().to_string(),
            insight.total_errors().to_string(),
        ];
        if wide {
            let serving = insight
                .subscriptions
                .iter()
                .filter(|s| s.connect_time.is_some() && s.disconnect_time.is_none())
                .max_by_key(|s| s.connect_time)
                .map_or("-".to_string(), |s| s.control_plane_instance_id.clone());
            row.push(serving);
        }
        table.push(row);
    }
    Ok(table)
}

/// The dataplane spec and insight of a `DataplaneOverview`; an absent or empty insight is a
/// dataplane that never connected.
fn read_overview(overview: &Value) -> Result<(DataplaneSpec, DataplaneInsightSpec), CliError> {
    let unexpected = |reason: String| CliError::UnexpectedAnswer {
        what: format!("DataplaneOverview {:?}", text(overview, "name")),
        reason,
    };
    let field = |name: &str| match overview.get(name) {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(value) => value.clone(),
    };
    let dataplane = match Spec::from_json(ResourceType::Dataplane, field("dataplane")) {
        Ok(Spec::Dataplane(spec)) => spec,
        Ok(_) => return Err(unexpected("dataplane is not a Dataplane".into())),
        Err(e) => return Err(unexpected(format!("dataplane.{}: {}", e.path(), e.inner()))),
    };
    let insight = match Spec::from_json(ResourceType::DataplaneInsight, field("dataplaneInsight")) {
        Ok(Spec::DataplaneInsight(spec)) => spec,
        Ok(_) => return Err(unexpected("dataplaneInsight is not a DataplaneInsight".into())),
        Err(e) => return Err(unexpected(format!("dataplaneInsight.{}: {}", e.path(), e.inner()))),
    };
    Ok((dataplane, insight))
}

#[cfg(test)]
mod tests;
