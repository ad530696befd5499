//! `kumactl delete <type> <name>`.

use std::io::Write;

use kuma_model::ResourceType;

use crate::client::ApiClient;
use crate::error::CliError;

/// Deletes one resource and prints `deleted <Type> "<name>"`, as Kuma does.
pub(crate) async fn delete(
    client: &ApiClient,
    mesh: &str,
    resource_type: ResourceType,
    name: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    client.delete(&ApiClient::item(resource_type, mesh, name)).await.map_err(|e| {
        if e.is_not_found() {
            CliError::NothingToDelete {
                kind: resource_type.name(),
                mesh: resource_type.is_mesh_scoped().then(|| mesh.to_string()),
                name: name.to_string(),
            }
        } else {
            e.into()
        }
    })?;
    writeln!(out, "deleted {} {name:?}", resource_type.name())?;
    Ok(())
}
