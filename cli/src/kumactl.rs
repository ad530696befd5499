//! `Kumactl`: one invocation of the CLI. It resolves the config file and mesh, builds the API
//! client only for commands that need one, and dispatches to the command modules.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use kuma_model::rest::TAGLINE;
use serde_json::Value;

use crate::apply::apply;
use crate::args::{
    Args, Command, ConfigCommand, ControlPlanesCommand, GenerateCommand, InspectCommand,
    RaftCommand, SnapshotCommand,
};
use crate::client::{ApiClient, ClientError};
use crate::cluster::{add_peer, inspect_control_planes, remove_peer, transfer_leader};
use crate::config::{Config, ControlPlane, DEFAULT_MESH};
use crate::delete::delete;
use crate::error::CliError;
use crate::export::export;
use crate::generate::{generate_dataplane_token, generate_signing_key, generate_user_token};
use crate::get::get;
use crate::inspect::{
    inspect_dataplane_config_dump, inspect_dataplanes, inspect_meshes, DataplanesQuery,
};
use crate::inspect_policies::inspect_dataplane_policies;
use crate::install::install;
use crate::table::Table;
use crate::terminal::Terminal;
use crate::watch::WatchOptions;

/// One kumactl invocation: the global flags and where output goes.
pub struct Kumactl<'io> {
    config_file: Option<PathBuf>,
    mesh: Option<String>,
    out: &'io mut dyn Write,
    stdin: &'io mut dyn Read,
    terminal: Terminal,
}

impl std::fmt::Debug for Kumactl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kumactl")
            .field("config_file", &self.config_file)
            .field("mesh", &self.mesh)
            .finish_non_exhaustive()
    }
}

/// Runs parsed command-line `args`, printing plain text to `out` and reading `apply -f -` from
/// `stdin`.
pub async fn run(args: Args, out: &mut dyn Write, stdin: &mut dyn Read) -> Result<(), CliError> {
    run_on(args, out, stdin, Terminal::plain()).await
}

/// `run`, printing for `terminal` (colours, `--watch` redrawing in place).
pub async fn run_on(
    args: Args,
    out: &mut dyn Write,
    stdin: &mut dyn Read,
    terminal: Terminal,
) -> Result<(), CliError> {
    let mut kumactl = Kumactl::new(args.config_file, args.mesh, out, stdin);
    kumactl.terminal = terminal;
    kumactl.execute(args.command).await?;
    kumactl.out.flush()?;
    Ok(())
}

impl<'io> Kumactl<'io> {
    /// A kumactl with these global flags.
    pub fn new(
        config_file: Option<PathBuf>,
        mesh: Option<String>,
        out: &'io mut dyn Write,
        stdin: &'io mut dyn Read,
    ) -> Kumactl<'io> {
        Kumactl { config_file, mesh, out, stdin, terminal: Terminal::plain() }
    }

    fn load_config(&self) -> Result<(PathBuf, Config), CliError> {
        load_config(self.config_file.as_deref())
    }

    fn connect(&self) -> Result<(ApiClient, String), CliError> {
        connect(self.config_file.as_deref(), self.mesh.as_deref())
    }

    /// Runs one command.
    pub async fn execute(&mut self, command: Command) -> Result<(), CliError> {
        match command {
            Command::Apply(args) => {
                let (config_file, mesh) = (self.config_file.as_deref(), self.mesh.as_deref());
                let client = || connect(config_file, mesh).map(|(client, _)| client);
                apply(args, self.stdin, self.out, client).await
            }
            Command::Get(args) => {
                let (client, mesh) = self.connect()?;
                get(&client, &mesh, args, self.terminal, self.out).await
            }
            Command::Delete(args) => {
                let (client, mesh) = self.connect()?;
                delete(&client, &mesh, args.resource_type, &args.name, self.out).await
            }
            Command::Export(args) => {
                let (client, _) = self.connect()?;
                export(&client, args, self.out).await
            }
            Command::Inspect(InspectCommand::Dataplanes {
                name: Some(name),
                policies: true,
                ..
            }) => {
                let (client, mesh) = self.connect()?;
                inspect_dataplane_policies(&client, &mesh, &name, self.out).await
            }
            Command::Inspect(InspectCommand::Dataplanes {
                name: Some(name),
                config_dump: true,
                ..
            }) => {
                let (client, mesh) = self.connect()?;
                inspect_dataplane_config_dump(&client, &mesh, &name, self.out).await
            }
            Command::Inspect(InspectCommand::Dataplanes {
                name,
                tags,
                wide,
                watch,
                interval,
                watch_count,
                ..
            }) => {
                let (client, mesh) = self.connect()?;
                let query =
                    DataplanesQuery { mesh: &mesh, name: name.as_deref(), tags: &tags, wide };
                let watch = watch.then_some(WatchOptions { interval, count: watch_count });
                inspect_dataplanes(&client, query, watch, self.terminal, self.out).await
            }
            Command::Inspect(InspectCommand::Meshes) => {
                let (client, _) = self.connect()?;
                inspect_meshes(&client, self.out).await
            }
            Command::Inspect(InspectCommand::ControlPlanes { output }) => {
                let (client, _) = self.connect()?;
                inspect_control_planes(&client, output, self.out).await
            }
            Command::Inspect(InspectCommand::ControlPlaneCa) => {
                let (client, _) = self.connect()?;
                write!(self.out, "{}", client.get_text(&["control-plane", "ca"]).await?)?;
                Ok(())
            }
            Command::Generate(GenerateCommand::DataplaneToken { name, tags, valid_for }) => {
                let (client, mesh) = self.connect()?;
                let name = name.unwrap_or_default();
                generate_dataplane_token(&client, &mesh, &name, &tags, valid_for, self.out).await
            }
            Command::Generate(GenerateCommand::UserToken { name, groups, valid_for }) => {
                let (client, _) = self.connect()?;
                generate_user_token(&client, &name, &groups, &valid_for, self.out).await
            }
            Command::Generate(GenerateCommand::SigningKey) => {
                let (client, mesh) = self.connect()?;
                generate_signing_key(&client, &mesh, self.out).await
            }
            Command::Install(command) => install(command, self.out),
            Command::Raft(RaftCommand::AddPeer { id, address }) => {
                let (client, _) = self.connect()?;
                add_peer(&client, id, &address, self.out).await
            }
            Command::Raft(RaftCommand::RemovePeer { id }) => {
                let (client, _) = self.connect()?;
                remove_peer(&client, id, self.out).await
            }
            Command::Raft(RaftCommand::TransferLeader { to }) => {
                let (client, _) = self.connect()?;
                transfer_leader(&client, to, self.out).await
            }
            Command::Raft(RaftCommand::Snapshot(SnapshotCommand::Save { file })) => {
                let (client, _) = self.connect()?;
                crate::raft_snapshot::save(&client, &file, self.out).await
            }
            Command::Config(ConfigCommand::View) => {
                let (_, config) = self.load_config()?;
                write!(self.out, "{}", config.to_yaml())?;
                Ok(())
            }
            Command::Config(ConfigCommand::ControlPlanes(command)) => {
                self.control_planes(command).await
            }
            Command::Version { detailed: false } => {
                writeln!(self.out, "{}", kuma_build_info::VERSION)?;
                Ok(())
            }
            Command::Version { detailed: true } => {
                write!(self.out, "{}", kuma_build_info::detailed("kumactl"))?;
                Ok(())
            }
            Command::Completion { shell } => {
                clap_complete::generate(shell, &mut Args::command(), "kumactl", self.out);
                Ok(())
            }
        }
    }

    async fn control_planes(&mut self, command: ControlPlanesCommand) -> Result<(), CliError> {
        let (path, mut config) = self.load_config()?;
        match command {
            ControlPlanesCommand::List => {
                let mut table = Table::new(["ACTIVE", "NAME", "ADDRESS"]);
                for (cp, active) in config.control_planes() {
                    table.push([if active { "*" } else { "" }, cp.name.as_str(), cp.url()]);
                }
                write!(self.out, "{table}")?;
            }
            ControlPlanesCommand::Add {
                name,
                address,
                overwrite,
                auth_type,
                auth_conf,
                ca_cert_file,
                client_cert_file,
                client_key_file,
                skip_verify,
            } => {
                let mut cp = ControlPlane::new(&name, &address);
                let server = &mut cp.coordinates.api_server;
                server.auth_type = auth_type.unwrap_or_default();
                server.auth_conf = auth_conf.into_iter().collect();
                let absolute = |p: Option<PathBuf>| {
                    p.map(|p| std::path::absolute(&p).unwrap_or(p).display().to_string())
                        .unwrap_or_default()
                };
                server.ca_cert_file = absolute(ca_cert_file);
                server.client_cert_file = absolute(client_cert_file);
                server.client_key_file = absolute(client_key_file);
                server.skip_verify = skip_verify;
                if server.auth_type == "tokens" && server.token().is_none_or(str::is_empty) {
                    return Err(CliError::Usage(
                        "--auth-type tokens needs --auth-conf token=TOKEN (kumactl generate user-token makes one)"
                            .to_string(),
                    ));
                }
                let server = cp.coordinates.api_server.clone();
                config.add_control_plane(cp, overwrite)?;
                check_is_kuma(&server).await?;
                config.save(&path)?;
                writeln!(self.out, "added Control Plane {name:?}")?;
                writeln!(self.out, "switched active Control Plane to {name:?}")?;
            }
            ControlPlanesCommand::Remove { name } => {
                config.remove_control_plane(&name)?;
                config.save(&path)?;
                writeln!(self.out, "removed Control Plane {name:?}")?;
            }
            ControlPlanesCommand::Switch { name } => {
                config.switch(&name)?;
                config.save(&path)?;
                writeln!(self.out, "switched active Control Plane to {name:?}")?;
            }
        }
        Ok(())
    }
}

/// The config file (`--config-file`, else `~/.kumactl/config`) and its content.
fn load_config(config_file: Option<&Path>) -> Result<(PathBuf, Config), CliError> {
    let path = match config_file {
        Some(path) => path.to_path_buf(),
        None => Config::default_path()?,
    };
    let config = Config::load(&path)?;
    Ok((path, config))
}

/// The API client of the active control plane, and the mesh commands act on: `--mesh`, else
/// the active context's default mesh, else `default`.
fn connect(
    config_file: Option<&Path>,
    mesh: Option<&str>,
) -> Result<(ApiClient, String), CliError> {
    let (_, config) = load_config(config_file)?;
    let client = ApiClient::for_server(&config.current_control_plane()?.coordinates.api_server)?;
    let mesh = mesh
        .map(str::to_string)
        .or_else(|| config.current().map(|c| c.defaults.mesh.clone()))
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| DEFAULT_MESH.to_string());
    Ok((client, mesh))
}

/// Refuses an address unless `GET /` answers JSON with Kuma's tagline.
async fn check_is_kuma(server: &crate::config::ApiServer) -> Result<(), CliError> {
    let client = ApiClient::for_server(server)?;
    let url = client.base_url().to_string();
    let not_kuma = |reason: String| CliError::NotKuma { url: url.clone(), reason };
    match client.index().await {
        Ok(index) => match index.get("tagline").and_then(Value::as_str) {
            Some(TAGLINE) => Ok(()),
            Some(other) => Err(not_kuma(format!("its tagline is {other:?}, not {TAGLINE:?}"))),
            None => Err(not_kuma(format!("GET / answered without the tagline {TAGLINE:?}"))),
        },
        Err(ClientError::Unreachable { url, reason }) => {
            Err(CliError::CannotConnect { url, reason })
        }
        Err(ClientError::Decode { .. }) => Err(not_kuma("GET / did not answer JSON".to_string())),
        Err(e @ (ClientError::Api { .. } | ClientError::Status { .. })) => {
            let status = e.status().unwrap_or_default();
            Err(not_kuma(format!("GET / answered HTTP {status}")))
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with_mesh(dir: &Path, mesh: &str) -> PathBuf {
        let path = dir.join("config");
        let mut config = Config::default();
        config.add_control_plane(ControlPlane::new("cp", "http://cp:5681"), false).unwrap();
        config.contexts[1].defaults.mesh = mesh.to_string();
        config.save(&path).unwrap();
        path
    }

    #[test]
    fn the_mesh_is_the_flag_else_the_context_default_else_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = config_with_mesh(dir.path(), "demo");
        let (client, mesh) = connect(Some(&path), None).unwrap();
        assert_eq!((client.base_url().as_str(), mesh.as_str()), ("http://cp:5681/", "demo"));
        assert_eq!(connect(Some(&path), Some("prod")).unwrap().1, "prod");
        let path = config_with_mesh(dir.path(), "");
        assert_eq!(connect(Some(&path), None).unwrap().1, "default");
    }

    #[test]
    fn commands_that_need_no_control_plane_work_with_none_active() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(&path, "currentContext: \"\"\n").unwrap();
        let mut out = Vec::new();
        let args = <Args as clap::Parser>::parse_from(["kumactl", "version"]);
        let args = Args { config_file: Some(path.clone()), ..args };
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        runtime.block_on(run(args, &mut out, &mut std::io::empty())).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), format!("{}\n", kuma_build_info::VERSION));

        let args = <Args as clap::Parser>::parse_from(["kumactl", "get", "meshes"]);
        let args = Args { config_file: Some(path), ..args };
        let err = runtime.block_on(run(args, &mut Vec::new(), &mut std::io::empty())).unwrap_err();
        assert!(err.to_string().contains("no active Control Plane"), "{err}");
    }
}
