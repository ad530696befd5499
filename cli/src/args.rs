//! The command line, as clap parses it. Resource type arguments are read through the model's
//! registry, so adding a type there adds it to `get`, `delete` and their help and completions.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Parser, Subcommand, ValueEnum};
use kuma_model::ResourceType;

/// The command line of `kumactl`.
#[derive(Debug, Parser)]
#[command(
    name = "kumactl",
    about = "Management tool for Kuma",
    long_about = "kumactl is a CLI to interact with Kuma: it reads and changes the state of a \
                  control plane through its HTTP API."
)]
pub struct Args {
    /// Path to the configuration file to use [default: ~/.kumactl/config]
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// Mesh to use [default: the active context's mesh, else "default"]
    #[arg(short = 'm', long, global = true, value_name = "MESH")]
    pub mesh: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or modify Kuma resources
    Apply(ApplyArgs),
    /// Show Kuma resources
    Get(GetArgs),
    /// Delete Kuma resources
    Delete(DeleteArgs),
    /// Inspect Kuma resources
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Manage kumactl config
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Print version
    Version {
        /// Print detailed version
        #[arg(short = 'a', long)]
        detailed: bool,
    },
    /// Output shell completion code for bash, fish or zsh
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `kumactl apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Path to a file with the resource(s) to apply, `-` for stdin, or an http(s) URL
    #[arg(short = 'f', long = "file", value_name = "FILE|-|URL")]
    pub file: String,

    /// Variable to substitute into `{{ key }}` placeholders, as key=value (repeatable)
    #[arg(short = 'v', long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,

    /// Print the resolved resources instead of applying them
    #[arg(long)]
    pub dry_run: bool,
}

/// `kumactl get`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// Resource type, e.g. meshes, dataplanes, traffic-permissions (singular forms work too)
    #[arg(value_parser = ResourceTypeParser, value_name = "TYPE")]
    pub resource_type: ResourceType,

    /// Name of one resource; without it, every resource of the type is listed
    pub name: Option<String>,

    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    /// Maximum number of resources to fetch (one page; without it every page is fetched)
    #[arg(long)]
    pub size: Option<u32>,

    /// The offset of the page to fetch, as printed by a previous paged `get`
    #[arg(long)]
    pub offset: Option<String>,
}

/// `kumactl delete`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// Resource type, e.g. mesh, dataplane, traffic-permission
    #[arg(value_parser = ResourceTypeParser, value_name = "TYPE")]
    pub resource_type: ResourceType,

    /// Name of the resource to delete
    pub name: String,
}

/// `kumactl inspect ...`.
#[derive(Debug, Subcommand)]
pub enum InspectCommand {
    /// Inspect Dataplanes: their tags and connection status
    #[command(visible_alias = "dataplane")]
    Dataplanes {
        /// Show only this dataplane
        name: Option<String>,
        /// Show only dataplanes with this tag, as key=value (repeatable)
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_var)]
        tags: Vec<(String, String)>,
    },
    /// Inspect Meshes: how many dataplanes and policies each has
    #[command(visible_alias = "mesh")]
    Meshes,
}

/// `kumactl config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Show kumactl config
    View,
    /// Manage known Control Planes
    #[command(subcommand, name = "control-planes")]
    ControlPlanes(ControlPlanesCommand),
}

/// `kumactl config control-planes ...`.
#[derive(Debug, Subcommand)]
pub enum ControlPlanesCommand {
    /// List known Control Planes
    List,
    /// Add a Control Plane and make it active
    Add {
        /// Reference name for the Control Plane
        #[arg(long)]
        name: String,
        /// URL of the Control Plane API Server, e.g. http://localhost:5681
        #[arg(long)]
        address: String,
        /// Replace a Control Plane of the same name
        #[arg(long)]
        overwrite: bool,
    },
    /// Remove a Control Plane
    Remove {
        /// Name of the Control Plane to remove
        #[arg(long)]
        name: String,
    },
    /// Switch the active Control Plane
    Switch {
        /// Name of the Control Plane to make active
        #[arg(long)]
        name: String,
    },
}

/// How `get` prints what it fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Yaml,
    Json,
}

/// Reads `key=value` (the value may contain `=`; the key may not be empty).
fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("{s:?} is not of the form key=value")),
    }
}

/// Parses a resource type argument with the registry (`traffic-permissions`,
/// `traffic-permission`, aliases), and offers every accepted spelling to help and completions.
#[derive(Clone, Copy, Debug)]
struct ResourceTypeParser;

impl TypedValueParser for ResourceTypeParser {
    type Value = ResourceType;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<ResourceType, clap::Error> {
        let text = value.to_string_lossy();
        ResourceType::from_cli_name(&text).ok_or_else(|| {
            let mut err = clap::Error::new(clap::error::ErrorKind::InvalidValue).with_cmd(cmd);
            use clap::error::{ContextKind, ContextValue};
            if let Some(arg) = arg {
                err.insert(ContextKind::InvalidArg, ContextValue::String(arg.to_string()));
            }
            err.insert(ContextKind::InvalidValue, ContextValue::String(text.into_owned()));
            let known = ResourceType::descriptors().iter().map(|d| d.path.to_string()).collect();
            err.insert(ContextKind::ValidValue, ContextValue::Strings(known));
            err
        })
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(ResourceType::descriptors().iter().map(|d| {
            PossibleValue::new(d.path).alias(d.singular).aliases(d.aliases.iter().copied())
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn get_accepts_plural_singular_and_alias_type_names() {
        for name in ["traffic-permissions", "traffic-permission", "trafficpermissions"] {
            let args = Args::try_parse_from(["kumactl", "get", name]).unwrap();
            let Command::Get(get) = args.command else { panic!("not get") };
            assert_eq!(get.resource_type, ResourceType::TrafficPermission);
        }
    }

    #[test]
    fn an_unknown_type_is_rejected_with_the_known_ones_listed() {
        let err = Args::try_parse_from(["kumactl", "get", "widgets"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("widgets") && text.contains("traffic-routes"), "{text}");
    }

    #[test]
    fn vars_split_at_the_first_equals_sign() {
        assert_eq!(parse_var("a.b=x=y"), Ok(("a.b".to_string(), "x=y".to_string())));
        assert!(parse_var("novalue").is_err());
        assert!(parse_var("=x").is_err());
    }

    #[test]
    fn global_flags_work_after_the_subcommand() {
        let args = Args::try_parse_from([
            "kumactl",
            "get",
            "dataplanes",
            "-m",
            "demo",
            "--config-file",
            "c",
        ])
        .unwrap();
        assert_eq!(args.mesh.as_deref(), Some("demo"));
        assert_eq!(args.config_file, Some(PathBuf::from("c")));
    }
}
