//! `CliError`: everything a kumactl command can fail with. Its `Display` is the text the user
//! sees after `Error: `, already in Kuma's shape for API and validation errors.
//!
//! An error that has a cause (an I/O error, the API's answer) says what failed and what to do,
//! `could not read kumactl config /c (fix its permissions or pass --config-file FILE)`, and keeps
//! the cause out of its message: the cause is its `source()`, and kumactl prints the chain once,
//! `Error: could not read kumactl config /c (...): Permission denied (os error 13)`
//! ([`CliError::with_causes`]). kuma-cp and kuma-dp print their errors the same way.

use std::path::PathBuf;

use kuma_model::rest::{Cause, ErrorBody};
use kuma_model::Violation;

use crate::client::{format_api_error, ClientError};
use crate::config::ConfigError;
use kuma_model::TemplateError;

/// A failed kumactl command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Install(#[from] crate::install::InstallError),
    #[error(transparent)]
    Snapshot(#[from] crate::raft_snapshot::SnapshotError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// `config control-planes add` reached something that is not a Kuma control plane.
    #[error(
        "{url} is not a Kuma Control Plane API Server ({reason}); check the address, \
         e.g. http://localhost:5681"
    )]
    NotKuma { url: String, reason: String },
    /// `config control-planes add` could not connect to the address at all.
    #[error(
        "could not connect to the Control Plane API Server at {url}: {reason}; check the address \
         and that kuma-cp is running there"
    )]
    CannotConnect { url: String, reason: String },
    /// A resource read from a file failed local checks; printed like the API's validation error.
    #[error("{}", format_api_error(&invalid_body(location.as_deref(), violations)))]
    InvalidResource { location: Option<String>, violations: Vec<Violation> },
    /// One of several resources of an `apply` was refused; the ones before it were applied.
    #[error(
        "could not apply {resource}, resource {position} of {count} (the resources before it \
         were applied, the ones after it were not)"
    )]
    ApplyFailed { source: ClientError, resource: String, position: usize, count: usize },
    /// Flags that do not go together.
    #[error("{0}")]
    Usage(String),
    /// A document is not YAML, or not an object.
    #[error("{0}")]
    Syntax(String),
    /// The input holds no resource.
    #[error("{0} contains no resources")]
    NothingToApply(String),
    /// The file of `apply -f FILE`.
    #[error("could not read {path} (check the file given with -f)")]
    ReadFile { path: PathBuf, source: std::io::Error },
    #[error("could not fetch {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("could not read the resources from stdin")]
    ReadStdin(#[source] std::io::Error),
    /// A `get`/`inspect` of one resource that does not exist.
    #[error("No resources found in {mesh} mesh ({kind} {name:?} does not exist)")]
    NotFound { kind: &'static str, mesh: String, name: String },
    /// A `delete` of a resource that does not exist.
    #[error("there is no {kind} with name {name:?}{}", in_mesh(mesh))]
    NothingToDelete { kind: &'static str, mesh: Option<String>, name: String },
    /// `inspect control-planes` or `raft` against a control plane that forms no cluster.
    #[error(
        "the Control Plane at {url} does not replicate: it keeps its state in memory, on its \
         own; only control planes started with KUMA_STORE_TYPE=raft form a cluster"
    )]
    NotReplicated { url: String },
    /// A membership change sent to a peer that shows the cluster but does not change it.
    #[error(
        "the Control Plane at {url} shows the cluster but does not change its members, as when \
         its API server is read-only (KUMA_API_SERVER_READ_ONLY=true); send the change to a \
         writable peer"
    )]
    MembershipReadOnly { url: String },
    /// The server sent something kumactl could not make sense of.
    #[error("could not read {what} from the API: {reason}")]
    UnexpectedAnswer { what: String, reason: String },
    #[error("could not write the output")]
    Output(#[from] std::io::Error),
    #[error("could not start the async runtime")]
    Runtime(#[source] std::io::Error),
}

fn in_mesh(mesh: &Option<String>) -> String {
    mesh.as_ref().map(|m| format!(" in mesh {m:?}")).unwrap_or_default()
}

fn invalid_body(location: Option<&str>, violations: &[Violation]) -> ErrorBody {
    let details = match location {
        Some(location) => format!("Resource in {location} is not valid"),
        None => "Resource is not valid".to_string(),
    };
    ErrorBody {
        title: "Could not process a resource".to_string(),
        details,
        causes: violations
            .iter()
            .map(|v| Cause { field: v.field.clone(), message: v.message.clone() })
            .collect(),
    }
}

impl CliError {
    /// Whether the failure was a closed stdout (e.g. `kumactl get meshes | head -1`), which is
    /// not worth reporting.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The message and then each cause once, `what failed (what to do): cause: its cause`: the
    /// line kumactl prints after `Error: ` (as `{:#}` prints an `anyhow::Error`).
    pub fn with_causes(&self) -> impl std::fmt::Display + '_ {
        WithCauses(self)
    }
}

struct WithCauses<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for WithCauses<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(e) = cause {
            write!(f, ": {e}")?;
            cause = e.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a cause that was both in the message and the `source` printed twice under
    /// `{:#}` (kuma-cp's `Address already in use (os error 98)`). Each error prints on one line:
    /// what failed, what to do in parentheses, then the cause once.
    #[test]
    fn a_cause_is_printed_once_after_what_to_do() {
        let denied = || std::io::Error::from_raw_os_error(13);
        let errors = [
            (
                CliError::ReadFile { path: "/x.yaml".into(), source: denied() },
                "could not read /x.yaml (check the file given with -f)",
            ),
            (CliError::Output(denied()), "could not write the output"),
            (
                CliError::Config(ConfigError::Read { path: "/c".into(), source: denied() }),
                "could not read kumactl config /c (make it readable, or pass another file with \
                 --config-file)",
            ),
            (
                CliError::Config(ConfigError::Write { path: "/c".into(), source: denied() }),
                "could not write kumactl config /c (make its directory writable, or pass another \
                 file with --config-file)",
            ),
            (
                CliError::Install(crate::install::InstallError::ReadFile {
                    flag: "--tls-cert",
                    path: "/t".into(),
                    source: denied(),
                }),
                "could not read --tls-cert /t (give a readable PEM file)",
            ),
        ];
        for (e, message) in errors {
            let cause = "Permission denied (os error 13)";
            assert_eq!(e.to_string(), message);
            let printed = e.with_causes().to_string();
            assert_eq!(printed, format!("{message}: {cause}"));
            assert_eq!(format!("{:#}", anyhow::Error::from(e)), printed);
        }
    }

    #[test]
    fn a_refused_resource_of_several_is_named_before_the_apis_answer() {
        let e = CliError::ApplyFailed {
            source: ClientError::Api {
                status: 400,
                body: ErrorBody {
                    title: "Could not process a resource".into(),
                    details: "Resource is not valid".into(),
                    causes: vec![Cause {
                        field: "name".into(),
                        message: "field is required".into(),
                    }],
                },
            },
            resource: "Mesh demo".into(),
            position: 2,
            count: 3,
        };
        assert_eq!(
            e.with_causes().to_string(),
            "could not apply Mesh demo, resource 2 of 3 (the resources before it were applied, \
             the ones after it were not): Could not process a resource (Resource is not valid)\n\
             * name: field is required"
        );
    }

    #[test]
    fn local_validation_errors_look_like_the_apis() {
        let err = CliError::InvalidResource {
            location: None,
            violations: vec![Violation::new(
                "networking.inbound[0].tags[\"service\"]",
                "tag has to exist",
            )],
        };
        assert_eq!(
            err.to_string(),
            "Could not process a resource (Resource is not valid)\n\
             * networking.inbound[0].tags[\"service\"]: tag has to exist"
        );
    }

    #[test]
    fn the_failing_document_is_named_when_there_are_several() {
        let err = CliError::InvalidResource {
            location: Some("document 2".into()),
            violations: vec![Violation::new("name", "field is required")],
        };
        assert!(err
            .to_string()
            .starts_with("Could not process a resource (Resource in document 2"));
    }

    #[test]
    fn not_found_messages_name_the_resource() {
        let err =
            CliError::NotFound { kind: "Dataplane", mesh: "default".into(), name: "x".into() };
        assert_eq!(
            err.to_string(),
            "No resources found in default mesh (Dataplane \"x\" does not exist)"
        );
        let err = CliError::NothingToDelete { kind: "Mesh", mesh: None, name: "demo".into() };
        assert_eq!(err.to_string(), "there is no Mesh with name \"demo\"");
        let err = CliError::NothingToDelete {
            kind: "Dataplane",
            mesh: Some("default".into()),
            name: "x".into(),
        };
        assert_eq!(err.to_string(), "there is no Dataplane with name \"x\" in mesh \"default\"");
    }
}
