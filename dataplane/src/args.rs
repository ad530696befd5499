//! The `kuma-dp` command line: flags with their `KUMA_*` environment variables and defaults, as
//! Kuma 0.2-0.5 spell them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{ConfigError, KumaDpConfig, STOP_MARGIN};

/// `kuma-dp`.
#[derive(Parser, Debug)]
#[command(
    name = "kuma-dp",
    about = "Dataplane manager for Envoy-based Service Meshes",
    version = kuma_build_info::VERSION
)]
pub struct Args {
    /// Log level of kuma-dp (and of Envoy unless --envoy-log-level is set).
    #[arg(long, global = true, value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Launch the Dataplane: fetch the Envoy bootstrap from the Control Plane and run Envoy.
    Run(Box<RunArgs>),
    /// Print the version.
    Version {
        /// Print build details too.
        #[arg(short = 'a', long)]
        detailed: bool,
    },
}

/// `kuma-dp run` flags.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// URL of the Control Plane bootstrap server; a comma-separated list (one URL per control-plane
    /// peer) is tried in turn until one answers.
    #[arg(
        long,
        env = "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL",
        default_value = "http://localhost:5682",
        value_name = "URL[,URL...]"
    )]
    pub bootstrap_server_url: String,
    /// Mesh the Dataplane belongs to.
    #[arg(long, env = "KUMA_DATAPLANE_MESH", default_value = "default")]
    pub mesh: String,
    /// Name of the Dataplane, as registered with `kumactl apply` (required).
    #[arg(long, env = "KUMA_DATAPLANE_NAME")]
    pub name: Option<String>,
    /// Port of the Envoy admin server on 127.0.0.1; 0 means no admin server.
    #[arg(long, env = "KUMA_DATAPLANE_ADMIN_PORT", default_value_t = 0)]
    pub admin_port: u16,
    /// Path to the Envoy binary. Default: `envoy` next to kuma-dp, then `envoy` on PATH.
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH", value_name = "PATH")]
    pub binary_path: Option<PathBuf>,
    /// Directory the Envoy bootstrap file is written to. Default: <temp dir>/kuma.io/envoy.
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// Path to the Dataplane token file, passed to the Control Plane as `dataplaneTokenPath`.
    #[arg(
        long,
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
        default_value = "",
        value_name = "PATH"
    )]
    pub dataplane_token_file: String,
    /// How long to wait between two rounds of bootstrap requests (e.g. 500ms, 3s).
    #[arg(
        long,
        env = "KUMA_CONTROL_PLANE_RETRY_BACKOFF",
        default_value = "3s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub retry_backoff: Duration,
    /// How long to keep retrying the bootstrap request before giving up (e.g. 30s, 5m).
    #[arg(
        long,
        env = "KUMA_CONTROL_PLANE_RETRY_MAX_DURATION",
        default_value = "5m",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub retry_max_duration: Duration,
    /// Envoy's `--drain-time-s` (rounded up to whole seconds). On a stop signal Envoy gets this
    /// long plus 2s to exit before it is killed.
    #[arg(
        long,
        env = "KUMA_DATAPLANE_DRAIN_TIME",
        default_value = "5s",
        value_parser = parse_duration,
        value_name = "DURATION"
    )]
    pub drain_time: Duration,
    /// Log level of Envoy; defaults to --log-level.
    #[arg(long, value_enum)]
    pub envoy_log_level: Option<LogLevel>,
}

impl RunArgs {
    /// The validated configuration; `log_level` is the global `--log-level`.
    pub fn into_config(self, log_level: LogLevel) -> Result<KumaDpConfig, ConfigError> {
        let config = KumaDpConfig {
            bootstrap_server_urls: KumaDpConfig::parse_urls(&self.bootstrap_server_url)?,
            mesh: self.mesh,
            name: self.name.unwrap_or_default(),
            admin_port: self.admin_port,
            binary_path: self.binary_path,
            config_dir: self.config_dir.unwrap_or_else(KumaDpConfig::default_config_dir),
            dataplane_token_path: self.dataplane_token_file,
            retry_backoff: self.retry_backoff,
            retry_max_duration: self.retry_max_duration,
            drain_time: self.drain_time,
            stop_grace: self.drain_time + STOP_MARGIN,
            envoy_log_level: self.envoy_log_level.unwrap_or(log_level),
            ..KumaDpConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    kuma_model::parse_duration(value).map_err(|e| e.to_string())
}

/// The log levels of kuma-dp and Envoy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    /// The `tracing` filter directive.
    pub fn as_filter(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    /// Envoy's `--log-level` spelling.
    pub fn as_envoy(self) -> &'static str {
        match self {
            LogLevel::Off => "off",
            LogLevel::Error => "error",
            LogLevel::Warn => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(argv: &[&str]) -> Result<RunArgs, clap::Error> {
        let args = Args::try_parse_from(std::iter::once("kuma-dp").chain(argv.iter().copied()))?;
        match args.command {
            Command::Run(run) => Ok(*run),
            other => panic!("not run: {other:?}"),
        }
    }

    #[test]
    fn run_flags_have_kumas_defaults() {
        // Env vars set in the test's environment would change the defaults; tests never set them.
        let run = run_args(&["run", "--name", "redis-1"]).expect("parses");
        let config = run.into_config(LogLevel::Info).expect("valid");
        assert_eq!(config.bootstrap_server_urls.len(), 1);
        assert_eq!(config.bootstrap_server_urls[0].as_str(), "http://localhost:5682/");
        assert_eq!(config.mesh, "default");
        assert_eq!(config.admin_port, 0);
        assert_eq!(config.retry_backoff, Duration::from_secs(3));
        assert_eq!(config.retry_max_duration, Duration::from_secs(300));
        assert!(config.config_dir.ends_with("kuma.io/envoy"));
        assert_eq!(
            config.bootstrap_file(),
            config.config_dir.join("bootstrap-default.redis-1.yaml")
        );
    }

    #[test]
    fn durations_are_parsed_the_kuma_way() {
        let run = run_args(&[
            "run",
            "--name=a",
            "--retry-backoff=500ms",
            "--retry-max-duration=1m30s",
            "--drain-time=2s",
        ])
        .expect("parses");
        assert_eq!(run.retry_backoff, Duration::from_millis(500));
        assert_eq!(run.retry_max_duration, Duration::from_secs(90));
        assert_eq!(run.drain_time, Duration::from_secs(2));
        assert!(run_args(&["run", "--retry-backoff=3"]).is_err());
    }

    #[test]
    fn envoy_log_level_follows_the_global_level_unless_set() {
        let run = run_args(&["--log-level", "warn", "run", "--name=a"]).expect("parses");
        assert_eq!(run.into_config(LogLevel::Warn).expect("valid").envoy_log_level, LogLevel::Warn);
        let run = run_args(&["run", "--name=a", "--envoy-log-level", "debug"]).expect("parses");
        let config = run.into_config(LogLevel::Info).expect("valid");
        assert_eq!(config.envoy_log_level.as_envoy(), "debug");
        assert_eq!(LogLevel::Warn.as_envoy(), "warning");
    }
}
