//! `kumactl install ...`: Kubernetes manifests, printed as one multi-document YAML for
//! `kubectl apply -f -`, and the PostgreSQL store's schema for `psql`. Every object is a plain JSON value (kumactl never links kube): the CRDs
//! come from the model's registry, the control plane's objects from `control_plane`.

mod control_plane;
mod error;
mod tls;

#[cfg(test)]
mod tests;

use std::io::Write;

use serde_json::Value;

use crate::args::InstallCommand;
use crate::error::CliError;

pub(crate) use control_plane::ControlPlaneManifest;

/// The PostgreSQL store's schema as one SQL script. kumactl never links the database driver, so it
/// prints the checked-in copy, which the store crate's tests keep equal to what
/// `kuma-cp migrate up` applies.
pub(crate) const POSTGRES_SCHEMA: &str = include_str!("../../crates/store-postgres/schema.sql");
pub use error::InstallError;

/// Runs `kumactl install <command>`, printing the manifest to `out`.
pub(crate) fn install(command: InstallCommand, out: &mut dyn Write) -> Result<(), CliError> {
    let documents = match command {
        InstallCommand::Crds => kuma_model::crds(),
        InstallCommand::ControlPlane(args) => ControlPlaneManifest::from_args(&args)?.documents(),
        InstallCommand::PostgresSchema => {
            out.write_all(POSTGRES_SCHEMA.as_bytes())?;
            return Ok(());
        }
    };
    print_documents(out, &documents)
}

/// Each document as YAML after a `---` line.
fn print_documents(out: &mut dyn Write, documents: &[Value]) -> Result<(), CliError> {
    for document in documents {
        writeln!(out, "---")?;
        crate::output::print_yaml(out, document)?;
    }
    Ok(())
}
