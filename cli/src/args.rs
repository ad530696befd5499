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
                  control plane through its HTTP API.",
    after_long_help = "Exit status: 0 when the command did what it was asked (also when --watch \
                       is stopped with Ctrl-C or reached --watch-count); 1 when it failed, with \
                       one line on stderr starting with \"Error:\"; 2 when the command line is \
                       wrong. Colours only on a terminal, never with NO_COLOR set."
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
    /// Print every Mesh, Dataplane and policy as YAML that `kumactl apply -f` restores into an
    /// empty control plane
    #[command(
        long_about = "Print every Mesh, then each mesh's Dataplanes and policies (by type, then \
                      name), as one multi-document YAML that `kumactl apply -f FILE` restores into \
                      an empty control plane of any store type. Without --include-secrets (admin \
                      only) Secrets are left out, so the new control plane makes its own builtin \
                      mesh CAs and token signing keys and dataplanes need new tokens from it; with \
                      it they are restored too, and dataplanes keep their tokens."
    )]
    Export(ExportArgs),
    /// Inspect Kuma resources
    #[command(subcommand)]
    Inspect(InspectCommand),
    /// Manage kumactl config
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Change the members of a replicated cluster of control planes (KUMA_STORE_TYPE=raft)
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Generate dataplane tokens and token signing keys
    #[command(subcommand)]
    Generate(GenerateCommand),
    /// Print manifests to install Kuma's parts on Kubernetes
    #[command(subcommand)]
    Install(InstallCommand),
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

    /// Keep watching: on a terminal the output is redrawn in place every --interval; on a pipe
    /// it is printed again, after a blank line, whenever more than its ages changed. Ctrl-C
    /// stops it (exit 0)
    #[arg(short = 'w', long, conflicts_with_all = ["size", "offset"])]
    pub watch: bool,

    /// How often --watch asks the control plane, e.g. 2s or 1m
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "2s",
        value_parser = parse_interval,
        requires = "watch"
    )]
    pub interval: std::time::Duration,

    /// Stop --watch after printing this many times (for scripts)
    #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
    pub watch_count: Option<u64>,
}

/// `kumactl export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output format
    #[arg(short = 'o', long, value_enum, default_value_t = ExportFormat::Yaml)]
    pub output: ExportFormat,
    /// Also export every mesh's Secrets with their contents (mesh CAs, dataplane token signing
    /// keys) and the GlobalSecrets users wrote; admin only. Keep the file as secret as they are.
    #[arg(long)]
    pub include_secrets: bool,
}

/// How `export` prints the state: one multi-document YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Yaml,
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
        /// Also show which control plane each dataplane is connected to
        #[arg(long)]
        wide: bool,
        /// Show, per inbound and outbound of the dataplane NAME, which policy of each type
        /// applies, its rank and why it was chosen
        #[arg(long, requires = "name", conflicts_with_all = ["tags", "wide"])]
        policies: bool,
        /// Print the Envoy config the control plane serving the dataplane NAME generated for
        /// it, as Envoy's config dump JSON (private keys redacted; admin only)
        #[arg(long, requires = "name", conflicts_with_all = ["tags", "wide", "policies"])]
        config_dump: bool,
        /// Keep watching: on a terminal the table is redrawn in place every --interval; on a
        /// pipe a new table is printed, after a blank line, whenever more than its ages changed.
        /// Ctrl-C stops it (exit 0)
        #[arg(short = 'w', long, conflicts_with_all = ["policies", "config_dump"])]
        watch: bool,
        /// How often --watch asks the control plane, e.g. 2s or 1m
        #[arg(
            long,
            value_name = "DURATION",
            default_value = "2s",
            value_parser = parse_interval,
            requires = "watch"
        )]
        interval: std::time::Duration,
        /// Stop --watch after printing this many tables (for scripts)
        #[arg(long, value_name = "N", requires = "watch", value_parser = clap::value_parser!(u64).range(1..))]
        watch_count: Option<u64>,
    },
    /// Inspect Meshes: how many dataplanes and policies each has
    #[command(visible_alias = "mesh")]
    Meshes,
    /// Print the CA certificate of the control plane's TLS ports (for kuma-dp --ca-cert-file)
    #[command(name = "control-plane-ca")]
    ControlPlaneCa,
    /// Inspect the replicated cluster of control planes: each peer's Raft role, term, applied
    /// log index, health, and the xDS and API addresses it serves
    #[command(
        name = "control-planes",
        visible_alias = "control-plane",
        long_about = "Inspect the replicated cluster of control planes, as the active control \
                      plane sees it: one row per peer with its Raft role, term and applied log \
                      index (`-` when it did not answer), whether it leads, whether it is \
                      healthy, and the xDS and API addresses it announced (`-` until it has).\n\n\
                      Only control planes with the Raft store (KUMA_STORE_TYPE=raft) replicate."
    )]
    ControlPlanes {
        /// Output format
        #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
        output: OutputFormat,
    },
}

/// A `--interval` of at least a second.
fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = kuma_model::parse_duration(text).map_err(|e| e.to_string())?;
    if interval < std::time::Duration::from_secs(1) {
        return Err(format!("{text} is too short: use 1s or more"));
    }
    Ok(interval)
}

/// `kumactl install ...`.
#[derive(Debug, Subcommand)]
pub enum InstallCommand {
    /// Print Kuma's CustomResourceDefinitions (kumactl install crds | kubectl apply -f -)
    Crds,
    /// Print the PostgreSQL store's schema (kumactl install postgres-schema | psql -v ON_ERROR_STOP=1), as kuma-cp migrate up creates it
    PostgresSchema,
    /// Print the manifest of a control plane in Kubernetes mode (kumactl install control-plane |
    /// kubectl apply -f -)
    #[command(
        name = "control-plane",
        long_about = "Print, as one multi-document YAML, everything a control plane in Kubernetes \
                      mode needs: its namespace, service account, the admission webhook's TLS \
                      secret, its config map, Kuma's CRDs (as kumactl install crds prints them), \
                      RBAC, the kuma-control-plane Service and Deployment, and the mutating \
                      webhook that injects kuma-dp into pods of namespaces (or pods) labelled \
                      kuma.io/sidecar-injection=enabled.\n\n\
                      Without --tls-cert, --tls-key and --ca-cert, kumactl generates a CA and a \
                      certificate for kuma-control-plane.NAMESPACE.svc, valid for 10 years; \
                      running it again generates new ones.\n\n\
                      Example: kumactl install control-plane --replicas 2 | kubectl apply -f -"
    )]
    ControlPlane(InstallControlPlaneArgs),
}

/// `kumactl install control-plane`. Every value is checked by kumactl rather than by clap, so
/// each mistake is reported on one line.
#[derive(Debug, clap::Args)]
pub struct InstallControlPlaneArgs {
    /// Namespace of the control plane (a DNS-1123 label)
    #[arg(
        long,
        value_name = "NAMESPACE",
        default_value = "kuma-system",
        allow_hyphen_values = true
    )]
    pub namespace: String,
    /// Image of kuma-cp [default: kuma-rs/kuma-cp:<kumactl's version>]
    #[arg(long, value_name = "IMAGE")]
    pub control_plane_image: Option<String>,
    /// Image of the kuma-dp sidecar the webhook injects [default: kuma-rs/kuma-dp:<version>]
    #[arg(long, value_name = "IMAGE")]
    pub dataplane_image: Option<String>,
    /// Image of the transparent-proxy init container the webhook injects
    /// [default: kuma-rs/kuma-init:<version>]
    #[arg(long, value_name = "IMAGE")]
    pub dataplane_init_image: Option<String>,
    /// Number of kuma-cp replicas, 1 or more
    #[arg(long, value_name = "N", default_value = "1", allow_hyphen_values = true)]
    pub replicas: String,
    /// Certificate (PEM) of the admission webhook server, for
    /// kuma-control-plane.NAMESPACE.svc; needs --tls-key and --ca-cert
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA certificate (PEM) that signed --tls-cert; the apiserver trusts it for the webhook
    #[arg(long, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,
}

/// `kumactl generate ...`.
#[derive(Debug, Subcommand)]
pub enum GenerateCommand {
    /// Generate a token a dataplane proves who it is with (kuma-dp --dataplane-token-file)
    #[command(
        name = "dataplane-token",
        long_about = "Generate a dataplane token: a JWT signed by the newest signing key of the \
                      mesh, for one dataplane (--name), for any dataplane whose inbounds carry \
                      the given tags (--tag), or for any dataplane of the mesh. kuma-dp sends it \
                      with every bootstrap request and Envoy with every xDS stream. Issued only \
                      to kumactl running on a control plane's own host.\n\n\
                      Example: kumactl generate dataplane-token --mesh default --name redis-1 \
                      --valid-for 720h > /etc/kuma/redis-1.token"
    )]
    DataplaneToken {
        /// Name of the one dataplane the token is for
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// A tag the dataplane's inbounds must carry, as key=value (repeatable)
        #[arg(long = "tag", value_name = "KEY=VALUE", value_parser = parse_var)]
        tags: Vec<(String, String)>,
        /// How long the token is valid, e.g. 24h, 30m [default: 10 years]
        #[arg(long, value_name = "DURATION")]
        valid_for: Option<String>,
    },
    /// Add a new token signing key to the mesh; new tokens are signed with it
    #[command(
        name = "signing-key",
        long_about = "Add a token signing key to the mesh (--mesh) with the next key id. Tokens \
                      are signed with the newest key from then on; tokens signed with older keys \
                      stay valid until their key is deleted with kumactl delete secret \
                      dataplane-token-signing-key-MESH-ID, which closes their dataplanes' streams."
    )]
    SigningKey,
    /// Generate a token an operator authenticates to the API with
    #[command(
        name = "user-token",
        long_about = "Generate a user token: a JWT naming a user and its groups, valid on every \
                      control plane of the cluster. Members of mesh-system:admin may change \
                      everything; other users read. Only an admin may generate one.\n\n\
                      Example: kumactl generate user-token --name alice --group mesh-system:admin \
                      --valid-for 24h"
    )]
    UserToken {
        /// The user's name
        #[arg(long)]
        name: String,
        /// A group the user is in (repeatable); mesh-system:admin makes an admin
        #[arg(long = "group", value_name = "GROUP")]
        groups: Vec<String>,
        /// How long the token is valid, e.g. 24h
        #[arg(long, value_name = "DURATION")]
        valid_for: String,
    },
}

/// `kumactl raft ...`: membership changes, sent to any peer and carried out by the leader.
#[derive(Debug, Subcommand)]
pub enum RaftCommand {
    /// Add a control plane to the cluster, as a learner that catches up and then as a voter
    #[command(
        name = "add-peer",
        long_about = "Add a control plane to the cluster: the leader adds it as a learner, \
                      waits for it to catch up with the log, then makes it a voter; a peer that \
                      does not catch up in time is not added. Any peer may be asked.\n\n\
                      Start the new kuma-cp first, waiting to be added: KUMA_STORE_TYPE=raft, \
                      KUMA_STORE_RAFT_JOIN=true, KUMA_STORE_RAFT_NODE_ID set to the id given \
                      here, and a certificate from the cluster's CA (kuma-cp raft certs --ids \
                      ID --dir DIR-OF-THE-CA).\n\n\
                      Example: kumactl raft add-peer --id 4 --address 10.0.0.4:5683"
    )]
    AddPeer {
        /// Raft id of the new peer: 1 or more, never used before in this cluster
        #[arg(long, value_name = "ID", value_parser = parse_peer_id)]
        id: u64,
        /// Where the other peers reach its Raft port (KUMA_RAFT_PORT), e.g. 10.0.0.4:5683
        #[arg(long, value_name = "HOST:PORT", value_parser = parse_raft_address)]
        address: String,
    },
    /// Remove a control plane from the cluster for good; its id can never be used again
    #[command(
        name = "remove-peer",
        long_about = "Remove a control plane from the cluster for good: it stops voting and \
                      receiving the log, and its id can never be used again (to bring the \
                      machine back, start it with a new id, empty data and \
                      KUMA_STORE_RAFT_JOIN=true, then add-peer it). Stop its kuma-cp \
                      afterwards.\n\n\
                      Example: kumactl raft remove-peer --id 4"
    )]
    RemovePeer {
        /// Raft id of the peer to remove, as `kumactl inspect control-planes` lists it
        #[arg(long, value_name = "ID", value_parser = parse_peer_id)]
        id: u64,
    },
    /// Hand leadership to another voter, e.g. before maintenance of the leader's machine
    #[command(
        name = "transfer-leader",
        long_about = "Hand leadership to another voter: the leader holds new writes back, waits \
                      for the chosen peer to hold its whole log, steps down and tells it to \
                      campaign at once. Writes sent meanwhile wait and then go to the new leader; \
                      none is lost or applied twice. Any peer may be asked.\n\n\
                      Example: kumactl raft transfer-leader --to 2"
    )]
    TransferLeader {
        /// Raft id of the voter to lead, as `kumactl inspect control-planes` lists it
        #[arg(long, value_name = "ID", value_parser = parse_peer_id)]
        to: u64,
    },
    /// Back up the replicated state
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

/// `kumactl raft snapshot ...`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Save a consistent snapshot of the replicated state to a file
    #[command(
        long_about = "Save a consistent snapshot of the replicated state to FILE: the asked \
                      peer (any peer, a follower too) first confirms with the leader how far the \
                      log is committed, so the snapshot holds every write acknowledged before \
                      the command. FILE is replaced whole or not at all, readable only by its \
                      owner: it holds every secret of the mesh. Needs an admin.\n\n\
                      Restore it into a new cluster with kuma-cp raft restore --from FILE on \
                      each new peer.\n\n\
                      Example: kumactl raft snapshot save backup.snap"
    )]
    Save {
        /// Where to write the snapshot
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
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
        /// URL of the Control Plane API Server, e.g. http://localhost:5681 or
        /// https://cp-1.example:5684
        #[arg(long)]
        address: String,
        /// Replace a Control Plane of the same name
        #[arg(long)]
        overwrite: bool,
        /// How kumactl proves who it is: `tokens` (a user token, --auth-conf token=...)
        #[arg(long, value_name = "TYPE", value_parser = ["tokens"])]
        auth_type: Option<String>,
        /// Settings of the auth type, as key=value (repeatable): token=TOKEN
        #[arg(long = "auth-conf", value_name = "KEY=VALUE", value_parser = parse_var, requires = "auth_type")]
        auth_conf: Vec<(String, String)>,
        /// CA certificate (PEM) the server's certificate must be signed by
        #[arg(long, value_name = "FILE")]
        ca_cert_file: Option<PathBuf>,
        /// Client certificate (PEM) presented over HTTPS
        #[arg(long, value_name = "FILE", requires = "client_key_file")]
        client_cert_file: Option<PathBuf>,
        /// Key of the client certificate (PEM)
        #[arg(long, value_name = "FILE", requires = "client_cert_file")]
        client_key_file: Option<PathBuf>,
        /// Do not verify the server's certificate (never on a network you do not trust)
        #[arg(long, conflicts_with = "ca_cert_file")]
        skip_verify: bool,
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

/// Reads a Raft peer id: a whole number, 1 or more (0 is no peer in Raft).
fn parse_peer_id(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(0) => Err("peer ids start at 1".to_string()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("{s:?} is not a peer id: give a whole number, 1 or more")),
    }
}

/// Reads the `HOST:PORT` of a peer's Raft port: a host name, IPv4 address or bracketed IPv6
/// address, and a port from 1 to 65535. No scheme and no path: it is not a URL.
fn parse_raft_address(s: &str) -> Result<String, String> {
    let example = "e.g. 10.0.0.4:5683";
    let bad = |why: &str| Err(format!("{s:?} is not HOST:PORT ({why}), {example}"));
    if s.contains("://") || s.contains('/') {
        return bad("give the Raft port's address, not a URL");
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return bad("the port is missing");
    };
    if host.is_empty() {
        return bad("the host is missing");
    }
    let ipv6 = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    let host_ok = match ipv6 {
        Some(inner) => inner.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')),
    };
    if !host_ok {
        return bad("the host is not a host name or an IP address; write IPv6 as [::1]");
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => bad("the port must be a number from 1 to 65535"),
        Ok(_) => Ok(s.to_string()),
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
    fn peer_ids_start_at_one() {
        assert_eq!(parse_peer_id("4"), Ok(4));
        assert!(parse_peer_id("0").unwrap_err().contains("start at 1"));
        assert!(parse_peer_id("-1").unwrap_err().contains("\"-1\" is not a peer id"));
        assert!(parse_peer_id("four").is_err());
    }

    #[test]
    fn raft_addresses_are_host_and_port_not_urls() {
        for ok in ["10.0.0.4:5683", "kuma-cp-4.internal:5683", "[::1]:5683", "localhost:1"] {
            assert_eq!(parse_raft_address(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("10.0.0.4", "the port is missing"),
            (":5683", "the host is missing"),
            ("10.0.0.4:0", "from 1 to 65535"),
            ("10.0.0.4:99999", "from 1 to 65535"),
            ("http://10.0.0.4:5683", "not a URL"),
            ("::1:5683", "[::1]"),
            ("a b:5683", "not a host name"),
        ] {
            let err = parse_raft_address(bad).unwrap_err();
            assert!(err.contains(why) && err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn add_peer_needs_both_flags_and_remove_peer_an_id() {
        let args =
            Args::try_parse_from(["kumactl", "raft", "add-peer", "--id", "4", "--address", "h:1"])
                .unwrap();
        let Command::Raft(RaftCommand::AddPeer { id, address }) = args.command else {
            panic!("not add-peer")
        };
        assert_eq!((id, address.as_str()), (4, "h:1"));
        assert!(Args::try_parse_from(["kumactl", "raft", "add-peer", "--id", "4"]).is_err());
        assert!(Args::try_parse_from(["kumactl", "raft", "remove-peer"]).is_err());
        let err = Args::try_parse_from(["kumactl", "raft", "remove-peer", "--id", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("peer ids start at 1"), "{err}");
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
