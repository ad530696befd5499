//! The command line (flags and the environment variables Kuma's kuma-prometheus-sd reads), and
//! the checked [`Config`] it becomes: every problem is found before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Kuma's MADS port, when a `--cp-address` names none.
const DEFAULT_MADS_PORT: u16 = 5676;

#[derive(Debug, Parser)]
#[command(name = "kuma-prometheus-sd", version = kuma_build_info::VERSION)]
/// Prometheus service discovery for Kuma: follows the control plane's monitoring assignments
/// and keeps them in a file_sd file.
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Follow the control plane and keep the file_sd file up to date, until stopped.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// MADS address of the control plane, or of several peers to move between, comma-separated:
    /// grpc://HOST:5676, or grpcs:// when kuma-cp serves MADS over TLS.
    #[arg(
        long,
        env = "KUMA_MONITORING_ASSIGNMENT_CLIENT_URL",
        default_value = "grpc://localhost:5676"
    )]
    pub cp_address: String,
    /// The name this client gives the control plane (its node id).
    #[arg(long, env = "KUMA_MONITORING_ASSIGNMENT_CLIENT_NAME", default_value = "kuma_sd")]
    pub name: String,
    /// The file_sd file to keep; Prometheus's file_sd_configs must name the same path.
    #[arg(long, env = "KUMA_PROMETHEUS_OUTPUT_FILE", default_value = "kuma.file_sd.json")]
    pub output_file: PathBuf,
    /// A file holding an operator's user token (viewer is enough), e.g. from
    /// `kumactl generate user-token`; without one only a control plane on this host that counts
    /// loopback as admin answers.
    #[arg(long, env = "KUMA_MONITORING_ASSIGNMENT_CLIENT_AUTH_TOKEN_FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// The CA (PEM) that issued kuma-cp's API certificate, for grpcs:// addresses.
    #[arg(long, env = "KUMA_MONITORING_ASSIGNMENT_CLIENT_CA_CERT_FILE")]
    pub ca_cert_file: Option<PathBuf>,
    /// How long to keep trying when no control plane has answered yet, e.g. 30s or 2m; once one
    /// has, it keeps trying for as long as it runs.
    #[arg(long, env = "KUMA_MONITORING_ASSIGNMENT_CLIENT_STARTUP_TIMEOUT", default_value = "60s")]
    pub startup_timeout: String,
}

/// One `--cp-address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl CpUrl {
    /// Parses `grpc://HOST[:PORT]` or `grpcs://HOST[:PORT]`.
    pub fn parse(text: &str) -> Result<CpUrl, String> {
        let (tls, rest) = if let Some(rest) = text.strip_prefix("grpc://") {
            (false, rest)
        } else if let Some(rest) = text.strip_prefix("grpcs://") {
            (true, rest)
        } else if text.starts_with("http://") || text.starts_with("https://") {
            return Err(format!(
                "{text:?} is an HTTP URL: give kuma-cp's MADS address instead, e.g. grpc://HOST:{DEFAULT_MADS_PORT}"
            ));
        } else {
            return Err(format!(
                "{text:?} must start with grpc:// or grpcs://, e.g. grpc://HOST:{DEFAULT_MADS_PORT}"
            ));
        };
        let authority = rest.trim_end_matches('/');
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("{text:?}: {port:?} is not a port (1-65535)"))?;
                (host, port)
            }
            _ => (authority, DEFAULT_MADS_PORT),
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("{text:?} names no host, e.g. grpc://HOST:{DEFAULT_MADS_PORT}"));
        }
        Ok(CpUrl { tls, host: host.to_string(), port })
    }

    /// The URI tonic dials.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }

    /// The host name the server's certificate must carry (no brackets).
    pub fn server_name(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }
}

impl std::fmt::Display for CpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// Everything `run` needs, checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub urls: Vec<CpUrl>,
    pub name: String,
    pub output_file: PathBuf,
    pub token: Option<String>,
    pub ca_pem: Option<String>,
    pub startup_timeout: Duration,
}

/// What is wrong with the command line, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--cp-address (KUMA_MONITORING_ASSIGNMENT_CLIENT_URL): {0}")]
    Url(String),
    #[error("--cp-address names grpcs:// but no CA to verify kuma-cp with: give --ca-cert-file (KUMA_MONITORING_ASSIGNMENT_CLIENT_CA_CERT_FILE)")]
    NoCa,
    #[error("cannot read {what} {path}: {reason}")]
    Read { what: &'static str, path: PathBuf, reason: String },
    #[error("--auth-token-file {0} is empty: write the user token from `kumactl generate user-token` into it")]
    EmptyToken(PathBuf),
    #[error("--output-file {path}: cannot write in its directory ({reason}); create the directory or choose another path")]
    Output { path: PathBuf, reason: String },
    #[error("--startup-timeout {0:?} is not a duration: use e.g. 30s, 500ms or 2m")]
    Timeout(String),
    #[error("--name must not be empty (KUMA_MONITORING_ASSIGNMENT_CLIENT_NAME)")]
    Name,
}

fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" | "" => Some(Duration::from_secs(number)),
        "m" => Some(Duration::from_secs(number * 60)),
        _ => None,
    }
}

impl Config {
    /// Checks `args` and reads the files they name.
    pub fn from_args(args: RunArgs) -> Result<Config, ConfigError> {
        let urls = args
            .cp_address
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(|u| CpUrl::parse(u).map_err(ConfigError::Url))
            .collect::<Result<Vec<_>, _>>()?;
        if urls.is_empty() {
            return Err(ConfigError::Url(
                "no address given; e.g. grpc://HOST:5676 (several: comma-separated)".to_string(),
            ));
        }
        if args.name.trim().is_empty() {
            return Err(ConfigError::Name);
        }
        let read = |what: &'static str, path: &PathBuf| {
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                what,
                path: path.clone(),
                reason: e.to_string(),
            })
        };
        let ca_pem = args.ca_cert_file.as_ref().map(|p| read("--ca-cert-file", p)).transpose()?;
        if ca_pem.is_none() && urls.iter().any(|u| u.tls) {
            return Err(ConfigError::NoCa);
        }
        let token = match &args.auth_token_file {
            Some(path) => {
                let token = read("--auth-token-file", path)?.trim().to_string();
                if token.is_empty() {
                    return Err(ConfigError::EmptyToken(path.clone()));
                }
                Some(token)
            }
            None => None,
        };
        let startup_timeout = parse_duration(&args.startup_timeout)
            .ok_or_else(|| ConfigError::Timeout(args.startup_timeout.clone()))?;
        check_writable(&args.output_file)?;
        Ok(Config {
            urls,
            name: args.name,
            output_file: args.output_file,
            token,
            ca_pem,
            startup_timeout,
        })
    }
}

/// The output file's directory takes a new file (the file itself is replaced by a rename).
fn check_writable(path: &std::path::Path) -> Result<(), ConfigError> {
    let dir =
        path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    let probe = dir.join(format!(".kuma-prometheus-sd-probe-{}", std::process::id()));
    match std::fs::File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(ConfigError::Output { path: path.to_path_buf(), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_grpc_urls_with_kumas_port_by_default() {
        let url = CpUrl::parse("grpc://cp.local").unwrap();
        assert_eq!((url.tls, url.host.as_str(), url.port), (false, "cp.local", 5676));
        let url = CpUrl::parse("grpcs://10.0.0.1:6676/").unwrap();
        assert_eq!((url.tls, url.host.as_str(), url.port), (true, "10.0.0.1", 6676));
        assert_eq!(CpUrl::parse("grpc://[::1]:7000").unwrap().server_name(), "::1");
        assert!(CpUrl::parse("http://cp:5681").unwrap_err().contains("MADS address"));
        assert!(CpUrl::parse("cp:5676").unwrap_err().contains("grpc://"));
        assert!(CpUrl::parse("grpc://cp:0").is_err());
    }

    #[test]
    fn durations_take_kumas_units() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("soon"), None);
    }
}
