//! `KumaDp`: one `kuma-dp run`, from finding Envoy to Envoy's exit.

use std::path::{Path, PathBuf};

use crate::access_log_streamer::{access_log_socket_path, AccessLogStreamer};
use crate::admin_port::{is_taken, AdminPortReservation};
use crate::bootstrap_client::{display_url, BootstrapClient, BootstrapRequest};
use crate::config::KumaDpConfig;
use crate::envoy::{find_envoy, EnvoyCommand};
use crate::error::{with_causes, KumaDpError};
use crate::stop_signals::StopSignals;
use crate::supervisor::{supervise, EnvoyExit};

/// The data-plane launcher: finds Envoy, fetches the bootstrap, writes it, runs Envoy and waits.
#[derive(Debug)]
pub struct KumaDp {
    config: KumaDpConfig,
}

impl KumaDp {
    /// A launcher for a validated configuration.
    pub fn new(config: KumaDpConfig) -> KumaDp {
        KumaDp { config }
    }

    /// Runs until Envoy ends and returns kuma-dp's exit code: Envoy's status after a requested
    /// stop, 0 when a stop signal came before Envoy was started or when Envoy exited 0 on its
    /// own. An Envoy that fails on its own is an error carrying its status.
    ///
    /// Everything that can be checked locally (the Envoy binary, the config dir) is checked
    /// before the control plane is contacted, so a broken setup fails at once.
    pub async fn run(self) -> Result<u8, KumaDpError> {
        let config = &self.config;
        let mut signals = StopSignals::install().map_err(KumaDpError::Signals)?;
        let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
        let path_env = std::env::var_os("PATH");
        let binary =
            find_envoy(config.binary_path.as_deref(), exe_dir.as_deref(), path_env.as_deref())?;
        std::fs::create_dir_all(&config.config_dir)
            .map_err(|source| KumaDpError::ConfigDir { path: config.config_dir.clone(), source })?;

        let client = BootstrapClient::new(
            config.bootstrap_server_urls.clone(),
            config.retry_backoff,
            config.retry_max_duration,
            config.request_timeout,
            config.ca_cert_pem.as_deref(),
        )?;
        // Held from here until Envoy starts, so the port stays free while the bootstrap is fetched.
        let admin = config.admin_port.reserve()?;
        match &admin {
            Some(admin) => tracing::info!(
                admin = %admin.address(),
                from = %config.admin_port,
                "Envoy's admin server gets this port"
            ),
            None => tracing::info!(
                "Envoy gets no admin server (--admin-port \"\"): a mesh's prometheus metrics \
                 answer 503 on this dataplane"
            ),
        }
        let request = BootstrapRequest {
            mesh: config.mesh.clone(),
            name: config.name.clone(),
            admin_port: admin.as_ref().map_or(0, AdminPortReservation::port),
            dataplane_token_path: config.dataplane_token_path.clone(),
            dataplane_token: config.dataplane_token.clone().unwrap_or_default(),
            ca_cert: config.ca_cert_pem.clone().unwrap_or_default(),
            dataplane_resource: config.dataplane_resource.clone().unwrap_or_default(),
        };
        tracing::info!(
            mesh = %config.mesh,
            dataplane = %config.name,
            urls = %config.bootstrap_server_urls.iter().map(display_url).collect::<Vec<_>>().join(","),
            envoy = %binary.display(),
            "fetching the Envoy bootstrap"
        );
        let bootstrap = tokio::select! {
            result = client.fetch(&request) => result?,
            stop = signals.recv() => {
                tracing::info!(signal = %stop, "stopped before Envoy was started");
                return Ok(0);
            }
        };

        let bootstrap_file = config.bootstrap_file();
        write_file(&bootstrap_file, &bootstrap.yaml).map_err(|source| {
            KumaDpError::WriteBootstrap { path: bootstrap_file.clone(), source }
        })?;
        tracing::info!(path = %bootstrap_file.display(), "wrote the Envoy bootstrap");

        // A streamer that cannot bind only costs the `tcp` access logs, never the dataplane.
        let socket = access_log_socket_path(&config.mesh, &config.name);
        let _streamer = match AccessLogStreamer::new().serve(&socket) {
            Ok(task) => Some(StreamerTask { task, socket }),
            Err(error) => {
                tracing::warn!(error = %with_causes(&error), "tcp access logs are off");
                None
            }
        };

        let envoy = EnvoyCommand {
            binary,
            config_path: bootstrap_file.clone(),
            base_id: std::process::id(),
            drain_time: config.drain_time,
            log_level: config.envoy_log_level,
        };
        let admin_port = admin.map(AdminPortReservation::release);
        let mut child = envoy
            .command()
            .spawn()
            .map_err(|source| KumaDpError::SpawnEnvoy { path: envoy.binary.clone(), source })?;
        tracing::info!(
            pid = child.id().unwrap_or_default(),
            command = %envoy.display(),
            "Envoy started"
        );

        let ended = supervise(&mut child, &mut signals, config.stop_grace)
            .await
            .map_err(KumaDpError::Supervise)?;
        match ended.stop {
            Some(signal) => {
                tracing::info!(signal = %signal, killed = ended.killed, "Envoy {}", ended.exit);
                Ok(ended.exit.code())
            }
            None if ended.exit.success() => {
                tracing::info!("Envoy exited on its own with status 0");
                Ok(0)
            }
            // An admin port another process holds now was taken before Envoy could bind it (its
            // own socket is closed): Envoy exits 1 then. A signal is another story.
            None => match admin_port {
                Some(port) if matches!(ended.exit, EnvoyExit::Exited(_)) && is_taken(port) => {
                    Err(KumaDpError::AdminPortTaken { exit: ended.exit, port })
                }
                _ => Err(KumaDpError::EnvoyFailed { exit: ended.exit, bootstrap: bootstrap_file }),
            },
        }
    }
}

/// Writes through a temporary file and a rename, so Envoy (or a person) never reads a half-written
/// bootstrap.
/// The file is readable by its owner only: it holds the dataplane token.
fn write_file(path: &Path, content: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut temp = PathBuf::from(path);
    temp.as_mut_os_string().push(format!(".{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&temp);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?
        .write_all(content.as_bytes())?;
    std::fs::rename(&temp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// Ends the streamer task, and removes its socket, when kuma-dp is done with Envoy.
struct StreamerTask {
    task: tokio::task::JoinHandle<()>,
    socket: PathBuf,
}

impl Drop for StreamerTask {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.socket);
    }
}
