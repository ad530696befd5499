//! The `kuma-dp` command line: flags with their `KUMA_*` environment variables and defaults, as
//! Kuma 0.2-0.5 spell them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::admin_port::AdminPort;
use crate::config::{
    check_ca_pem, ConfigError, KumaDpConfig, UrlSetting, BOOTSTRAP_URL_ENV, CONTROL_PLANE_URL_ENV,
    DEFAULT_BOOTSTRAP_URL, STOP_MARGIN,
};

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
    /// peer) is tried in turn until one answers [default: https://localhost:5682].
    #[arg(long, env = BOOTSTRAP_URL_ENV, value_name = "URL[,URL...]")]
    pub bootstrap_server_url: Option<String>,
    /// --bootstrap-server-url under Kuma's newer name (Kuma's injector sets
    /// KUMA_CONTROL_PLANE_URL); --bootstrap-server-url (or KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL)
    /// wins when both are set.
    #[arg(long = "cp-address", env = CONTROL_PLANE_URL_ENV, value_name = "URL[,URL...]")]
    pub control_plane_url: Option<String>,
    /// Mesh the Dataplane belongs to.
    #[arg(long, env = "KUMA_DATAPLANE_MESH")]
    pub mesh: Option<String>,
    /// Name of the Dataplane, as registered with `kumactl apply` (required unless
    /// --dataplane-file names it).
    #[arg(long, env = "KUMA_DATAPLANE_NAME")]
    pub name: Option<String>,
    /// Port of Envoy's admin server, on 127.0.0.1 only: a port (9901), a range to take a free
    /// port from (9901-9999, 9901- or -9901), or "" (or 0) for none (a mesh's prometheus metrics
    /// then answer 503 on this dataplane).
    #[arg(
        long,
        env = "KUMA_DATAPLANE_ADMIN_PORT",
        default_value = "30001-65535",
        value_name = "PORT|FIRST-LAST",
        value_parser = AdminPort::from_str
    )]
    pub admin_port: AdminPort,
    /// Path to the Envoy binary. Default: `envoy` next to kuma-dp, then `envoy` on PATH.
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_BINARY_PATH", value_name = "PATH")]
    pub binary_path: Option<PathBuf>,
    /// Directory the Envoy bootstrap file is written to. Default: <temp dir>/kuma.io/envoy.
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_CONFIG_DIR", value_name = "DIR")]
    pub config_dir: Option<PathBuf>,
    /// File holding the dataplane token (kumactl generate dataplane-token), sent with the
    /// bootstrap request and by Envoy on every xDS stream.
    #[arg(
        long,
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
        default_value = "",
        value_name = "PATH"
    )]
    pub dataplane_token_file: String,
    /// The dataplane token itself, instead of --dataplane-token-file.
    #[arg(
        long,
        env = "KUMA_DATAPLANE_RUNTIME_TOKEN",
        value_name = "TOKEN",
        conflicts_with = "dataplane_token_file",
        hide_env_values = true
    )]
    pub dataplane_token: Option<String>,
    /// The CA certificate (PEM) the Control Plane's certificate must be signed by; required for
    /// https:// bootstrap URLs (kumactl inspect control-plane-ca prints it).
    #[arg(long, env = "KUMA_CONTROL_PLANE_CA_CERT_FILE", value_name = "PATH")]
    pub ca_cert_file: Option<PathBuf>,
    /// The CA certificate itself (PEM text), instead of --ca-cert-file (Kuma's injector sets
    /// KUMA_CONTROL_PLANE_CA_CERT).
    #[arg(
        long,
        env = "KUMA_CONTROL_PLANE_CA_CERT",
        value_name = "PEM",
        conflicts_with = "ca_cert_file",
        hide_env_values = true,
        // PEM text starts with "-----BEGIN": a value, not a flag.
        allow_hyphen_values = true
    )]
    pub ca_cert: Option<String>,
    /// A Dataplane resource (YAML) to register, or update, at start: no kumactl apply needed.
    /// `{{ key }}` placeholders are filled from --dataplane-var.
    #[arg(long, env = "KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH", value_name = "PATH")]
    pub dataplane_file: Option<PathBuf>,
    /// A value for a `{{ key }}` placeholder of --dataplane-file, as key=value (repeatable).
    #[arg(
        long = "dataplane-var",
        env = "KUMA_DATAPLANE_RUNTIME_RESOURCE_VARS",
        value_name = "KEY=VALUE",
        value_delimiter = ',',
        value_parser = parse_var
    )]
    pub dataplane_vars: Vec<(String, String)>,
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

fn read_file(flag: &'static str, var: &'static str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| ConfigError::ReadFile {
        flag,
        var,
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

impl RunArgs {
    /// The validated configuration; `log_level` is the global `--log-level`. Reads the token,
    /// CA and Dataplane files, so a missing one fails before anything starts.
    pub fn into_config(self, log_level: LogLevel) -> Result<KumaDpConfig, ConfigError> {
        let dataplane_token = match &self.dataplane_token {
            Some(token) => Some(token.trim().to_string()),
            None if self.dataplane_token_file.is_empty() => None,
            None => Some(
                read_file(
                    "--dataplane-token-file",
                    "KUMA_DATAPLANE_RUNTIME_TOKEN_PATH",
                    Path::new(&self.dataplane_token_file),
                )?
                .trim()
                .to_string(),
            ),
        };
        let ca_cert_pem = match (&self.ca_cert, &self.ca_cert_file) {
            (Some(pem), _) => {
                Some(check_ca_pem("--ca-cert", "KUMA_CONTROL_PLANE_CA_CERT", pem.clone())?)
            }
            (None, Some(path)) => {
                let (flag, var) = ("--ca-cert-file", "KUMA_CONTROL_PLANE_CA_CERT_FILE");
                Some(check_ca_pem(flag, var, read_file(flag, var, path)?)?)
            }
            (None, None) => None,
        };
        let resource = match &self.dataplane_file {
            Some(path) => Some(DataplaneResource::load(
                &read_file("--dataplane-file", "KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH", path)?,
                &self.dataplane_vars,
            )?),
            None => None,
        };
        let (mesh, name) = resolve_identity(self.mesh, self.name, resource.as_ref())?;
        let (urls, setting) = bootstrap_urls(self.bootstrap_server_url, self.control_plane_url);
        let config = KumaDpConfig {
            bootstrap_server_urls: KumaDpConfig::parse_urls_of(&urls, setting)?,
            mesh,
            name,
            dataplane_token,
            ca_cert_pem,
            dataplane_resource: resource.map(|r| r.text),
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

/// The bootstrap URLs and the setting they came from: --bootstrap-server-url (or its variable),
/// else Kuma's newer --cp-address (KUMA_CONTROL_PLANE_URL), else the default. clap takes one
/// variable per flag, so the two names are two flags, resolved here.
fn bootstrap_urls(
    bootstrap_server_url: Option<String>,
    control_plane_url: Option<String>,
) -> (String, UrlSetting) {
    match (bootstrap_server_url, control_plane_url) {
        (Some(urls), _) => (urls, UrlSetting::BootstrapServerUrl),
        (None, Some(urls)) => (urls, UrlSetting::ControlPlaneUrl),
        (None, None) => (DEFAULT_BOOTSTRAP_URL.to_string(), UrlSetting::BootstrapServerUrl),
    }
}

/// The Dataplane given with --dataplane-file, with its placeholders filled.
struct DataplaneResource {
    text: String,
    mesh: String,
    name: String,
}

impl DataplaneResource {
    fn load(template: &str, vars: &[(String, String)]) -> Result<DataplaneResource, ConfigError> {
        let bad = |reason: String| ConfigError::BadDataplane { reason };
        let vars: HashMap<String, String> = vars.iter().cloned().collect();
        let text = kuma_model::render_template(template, &vars).map_err(|e| bad(e.to_string()))?;
        let documents = kuma_model::parse_resources_yaml(&text).map_err(|e| bad(e.to_string()))?;
        let [document] = documents.as_slice() else {
            return Err(bad(format!("it holds {} documents; give one Dataplane", documents.len())));
        };
        let field = |name: &str| document.get(name).and_then(|v| v.as_str()).map(str::to_string);
        if field("type").as_deref() != Some("Dataplane") {
            return Err(bad("its type must be Dataplane".to_string()));
        }
        let name = field("name").ok_or_else(|| bad("it has no name".to_string()))?;
        let mesh = field("mesh").unwrap_or_else(|| "default".to_string());
        Ok(DataplaneResource { text, mesh, name })
    }
}

/// The mesh and name kuma-dp runs as: the flags, else the Dataplane file's; both must agree.
fn resolve_identity(
    mesh: Option<String>,
    name: Option<String>,
    resource: Option<&DataplaneResource>,
) -> Result<(String, String), ConfigError> {
    let Some(resource) = resource else {
        return Ok((mesh.unwrap_or_else(|| "default".to_string()), name.unwrap_or_default()));
    };
    for (flag, given, in_file) in
        [("--mesh", &mesh, &resource.mesh), ("--name", &name, &resource.name)]
    {
        if let Some(given) = given.as_ref().filter(|g| *g != in_file) {
            return Err(ConfigError::BadDataplane {
                reason: format!("it says {flag} {in_file:?} but {flag} {given:?} was given; drop {flag} or make them agree"),
            });
        }
    }
    Ok((resource.mesh.clone(), resource.name.clone()))
}

fn parse_var(value: &str) -> Result<(String, String), String> {
    match value.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{value:?} is not KEY=VALUE")),
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

    /// A self-signed CA certificate (EC P-256), as kumactl inspect control-plane-ca prints one.
    const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----\n\
MIIBizCCATGgAwIBAgIUEvZUbg+uscWfgGJbvDDipJF2yzswCgYIKoZIzj0EAwIw\n\
GjEYMBYGA1UEAwwPa3VtYS1kcCB0ZXN0IENBMCAXDTI2MTIwMjExMzczMFoYDzIx\n\
MjYxMTA4MTEzNzMwWjAaMRgwFgYDVQQDDA9rdW1hLWRwIHRlc3QgQ0EwWTATBgcq\n\
hkjOPQIBBggqhkjOPQMBBwNCAATuTDQm+nrfRUXjtZkgFkGgG/mPokq924q/Wt5c\n\
OW95EAGUsPqjcGVWpaJUtuUMgzss6+m7CvrIIkpEmRNcQ+7Io1MwUTAdBgNVHQ4E\n\
FgQUOeYVIy1ZKdh2oVRC5bH5pqlN9aswHwYDVR0jBBgwFoAUOeYVIy1ZKdh2oVRC\n\
5bH5pqlN9aswDwYDVR0TAQH/BAUwAwEB/zAKBggqhkjOPQQDAgNIADBFAiEA9WyK\n\
oaesxbUPGovw9/CgAX5ZgZcWymSs5B5o+Mr7mZYCIAPpEaF8W3b10uxapiCybUOQ\n\
Y3k395fwETz/tsr7l9oM\n\
-----END CERTIFICATE-----\n";

    fn ca_file() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), CA_PEM).unwrap();
        file
    }

    #[test]
    fn an_https_url_needs_the_control_planes_ca() {
        let run = run_args(&["run", "--name=a"]).expect("parses");
        let err = run.into_config(LogLevel::Info).expect_err("no CA").to_string();
        assert!(
            err.contains("--ca-cert-file") && err.contains("kumactl inspect control-plane-ca"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_token_or_ca_file_is_named_with_its_flag() {
        let url = "--bootstrap-server-url=http://cp:5682";
        let run = run_args(&["run", "--name=a", url, "--dataplane-token-file=/nonexistent/t"])
            .expect("parses");
        let err = run.into_config(LogLevel::Info).expect_err("no file").to_string();
        assert!(err.contains("--dataplane-token-file") && err.contains("/nonexistent/t"), "{err}");
        let run = run_args(&["run", "--name=a", "--ca-cert-file=/nonexistent/ca"]).expect("parses");
        let err = run.into_config(LogLevel::Info).expect_err("no file").to_string();
        assert!(err.contains("KUMA_CONTROL_PLANE_CA_CERT_FILE"), "{err}");
    }

    #[test]
    fn a_dataplane_file_names_the_dataplane_and_takes_variables() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dp.yaml");
        std::fs::write(
            &file,
            "type: Dataplane\nmesh: default\nname: {{ name }}\nnetworking:\n  inbound:\n  - interface: {{ address }}:9000:6379\n    tags:\n      service: redis\n",
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let url = "--bootstrap-server-url=http://cp:5682";
        let run = run_args(&[
            "run",
            url,
            "--dataplane-file",
            file,
            "--dataplane-var",
            "name=redis-7",
            "--dataplane-var",
            "address=10.0.0.7",
        ])
        .expect("parses");
        let config = run.into_config(LogLevel::Info).expect("valid");
        assert_eq!((config.mesh.as_str(), config.name.as_str()), ("default", "redis-7"));
        assert!(config.dataplane_resource.unwrap().contains("10.0.0.7:9000:6379"));

        let run = run_args(&["run", url, "--dataplane-file", file, "--dataplane-var", "name=x"])
            .expect("parses");
        let err = run.into_config(LogLevel::Info).expect_err("address missing").to_string();
        assert!(err.contains("\"address\""), "{err}");

        let run = run_args(&[
            "run",
            url,
            "--name",
            "other",
            "--dataplane-file",
            file,
            "--dataplane-var",
            "name=redis-7",
            "--dataplane-var",
            "address=a",
        ])
        .expect("parses");
        let err = run.into_config(LogLevel::Info).expect_err("names differ").to_string();
        assert!(err.contains("--name") && err.contains("redis-7"), "{err}");
    }

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
        let ca = ca_file();
        let ca = ca.path().to_str().unwrap();
        let run = run_args(&["run", "--name", "redis-1", "--ca-cert-file", ca]).expect("parses");
        let config = run.into_config(LogLevel::Info).expect("valid");
        assert_eq!(config.bootstrap_server_urls.len(), 1);
        assert_eq!(config.bootstrap_server_urls[0].as_str(), "https://localhost:5682/");
        assert_eq!(config.mesh, "default");
        assert_eq!(config.admin_port, AdminPort::DEFAULT);
        assert_eq!(config.retry_backoff, Duration::from_secs(3));
        assert_eq!(config.retry_max_duration, Duration::from_secs(300));
        assert!(config.config_dir.ends_with("kuma.io/envoy"));
        assert_eq!(
            config.bootstrap_file(),
            config.config_dir.join("bootstrap-default.redis-1.yaml")
        );
    }

    #[test]
    fn the_ca_may_be_given_inline_and_is_checked_like_the_file() {
        let url = "--bootstrap-server-url=https://cp:5682";
        let run = run_args(&["run", "--name=a", url, "--ca-cert", CA_PEM]).expect("parses");
        assert_eq!(run.into_config(LogLevel::Info).expect("valid").ca_cert_pem.unwrap(), CA_PEM);
        let file = ca_file();
        let file = format!("--ca-cert-file={}", file.path().display());
        let run = run_args(&["run", "--name=a", url, &file]).expect("parses");
        assert_eq!(run.into_config(LogLevel::Info).expect("valid").ca_cert_pem.unwrap(), CA_PEM);

        let garbage = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(garbage.path(), "not a certificate").unwrap();
        let garbage_file = format!("--ca-cert-file={}", garbage.path().display());
        for (given, named) in [
            (vec!["--ca-cert", "not a certificate"], "--ca-cert (or KUMA_CONTROL_PLANE_CA_CERT)"),
            (vec![garbage_file.as_str()], "--ca-cert-file (or KUMA_CONTROL_PLANE_CA_CERT_FILE)"),
        ] {
            let argv: Vec<&str> = ["run", "--name=a", url].into_iter().chain(given).collect();
            let err = run_args(&argv).expect("parses").into_config(LogLevel::Info).unwrap_err();
            assert!(matches!(err, ConfigError::BadCaCert { .. }), "{err:?}");
            let err = err.to_string();
            assert!(err.starts_with(&format!("{named} is not a PEM CA certificate")), "{err}");
            assert!(err.contains("it holds no PEM certificate"), "{err}");
        }

        let both = run_args(&["run", "--name=a", url, "--ca-cert", CA_PEM, &file]).unwrap_err();
        assert_eq!(both.kind(), clap::error::ErrorKind::ArgumentConflict, "{both}");
        let err = run_args(&["run", "--name=a", url]).unwrap().into_config(LogLevel::Info);
        let err = err.unwrap_err().to_string();
        assert!(err.contains("--ca-cert (or KUMA_CONTROL_PLANE_CA_CERT)"), "{err}");
    }

    #[test]
    fn kumas_newer_control_plane_url_counts_unless_the_bootstrap_url_is_set() {
        let urls = |argv: &[&str]| -> Result<Vec<String>, ConfigError> {
            let argv: Vec<&str> = ["run", "--name=a"].iter().chain(argv).copied().collect();
            let config = run_args(&argv).expect("parses").into_config(LogLevel::Info)?;
            Ok(config.bootstrap_server_urls.iter().map(|u| u.to_string()).collect())
        };
        assert_eq!(urls(&["--cp-address=http://new:5682"]).unwrap(), ["http://new:5682/"]);
        assert_eq!(
            urls(&["--cp-address=http://new:5682", "--bootstrap-server-url=http://old:5682"])
                .unwrap(),
            ["http://old:5682/"],
            "the older, more specific name wins"
        );
        let err = urls(&["--cp-address=ftp://new:21"]).unwrap_err().to_string();
        assert!(err.contains("--cp-address (or KUMA_CONTROL_PLANE_URL) \"ftp://new:21\""), "{err}");
        assert_eq!(
            bootstrap_urls(None, None),
            (DEFAULT_BOOTSTRAP_URL.to_string(), UrlSetting::BootstrapServerUrl)
        );
        assert_eq!(
            bootstrap_urls(Some("http://old".into()), Some("http://new".into())),
            ("http://old".to_string(), UrlSetting::BootstrapServerUrl)
        );
        assert_eq!(
            bootstrap_urls(None, Some("http://new".into())),
            ("http://new".to_string(), UrlSetting::ControlPlaneUrl)
        );
    }

    #[test]
    fn the_admin_port_takes_a_port_a_range_or_nothing() {
        let admin = |value: &str| run_args(&["run", "--name=a", "--admin-port", value]);
        assert_eq!(admin("9901").unwrap().admin_port, AdminPort::Range { first: 9901, last: 9901 });
        assert_eq!(
            admin("9901-").unwrap().admin_port,
            AdminPort::Range { first: 9901, last: 65535 }
        );
        assert_eq!(admin("").unwrap().admin_port, AdminPort::Disabled);
        assert_eq!(admin("0").unwrap().admin_port, AdminPort::Disabled);
        let err = admin("99o1").unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation, "{err}");
        let line = err.to_string();
        let line = line.lines().next().unwrap();
        assert!(line.contains("--admin-port") && line.contains("\"99o1\" is not a port"), "{line}");
        assert!(
            line.contains("9901-9999, 9901- or -9901") && line.contains("\"\" (or 0)"),
            "{line}"
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
        let url = "--bootstrap-server-url=http://cp:5682";
        let run = run_args(&["--log-level", "warn", "run", "--name=a", url]).expect("parses");
        assert_eq!(run.into_config(LogLevel::Warn).expect("valid").envoy_log_level, LogLevel::Warn);
        let run =
            run_args(&["run", "--name=a", url, "--envoy-log-level", "debug"]).expect("parses");
        let config = run.into_config(LogLevel::Info).expect("valid");
        assert_eq!(config.envoy_log_level.as_envoy(), "debug");
        assert_eq!(LogLevel::Warn.as_envoy(), "warning");
    }
}
