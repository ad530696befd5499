//! `KumaDpConfig`: everything `kuma-dp run` needs, validated before anything is started.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

use crate::admin_port::AdminPort;
use crate::args::LogLevel;

/// The environment variable that holds the bootstrap server URL(s), named in error messages.
pub const BOOTSTRAP_URL_ENV: &str = "KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL";
/// Kuma's newer name for it, as Kuma's injector sets it; [`BOOTSTRAP_URL_ENV`] wins over it.
pub const CONTROL_PLANE_URL_ENV: &str = "KUMA_CONTROL_PLANE_URL";
/// The bootstrap server kuma-dp asks when none is given.
pub const DEFAULT_BOOTSTRAP_URL: &str = "https://localhost:5682";

/// Which setting the bootstrap URLs came from, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlSetting {
    /// --bootstrap-server-url or KUMA_CONTROL_PLANE_BOOTSTRAP_SERVER_URL (or the default).
    BootstrapServerUrl,
    /// --cp-address or KUMA_CONTROL_PLANE_URL.
    ControlPlaneUrl,
}

impl std::fmt::Display for UrlSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UrlSetting::BootstrapServerUrl => {
                write!(f, "--bootstrap-server-url (or {BOOTSTRAP_URL_ENV})")
            }
            UrlSetting::ControlPlaneUrl => write!(f, "--cp-address (or {CONTROL_PLANE_URL_ENV})"),
        }
    }
}

/// How much longer than its drain time Envoy may take to stop before it is killed.
pub const STOP_MARGIN: Duration = Duration::from_secs(2);

/// The configuration of one `kuma-dp run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KumaDpConfig {
    /// Bootstrap servers of the control-plane peers, tried in this order.
    pub bootstrap_server_urls: Vec<Url>,
    pub mesh: String,
    pub name: String,
    /// Envoy's admin port on 127.0.0.1, or a range to take a free one from, or none.
    pub admin_port: AdminPort,
    /// `--binary-path`; `None` looks next to kuma-dp, then on `PATH`.
    pub binary_path: Option<PathBuf>,
    /// Where the bootstrap file is written.
    pub config_dir: PathBuf,
    /// Passed through to the control plane as `dataplaneTokenPath`; empty when there is none.
    pub dataplane_token_path: String,
    /// The dataplane token, read from --dataplane-token-file or given with --dataplane-token.
    pub dataplane_token: Option<String>,
    /// The CA (PEM) the control plane's certificate must chain to, from --ca-cert-file or
    /// --ca-cert.
    pub ca_cert_pem: Option<String>,
    /// A Dataplane (YAML, placeholders filled) to register at start, from --dataplane-file.
    pub dataplane_resource: Option<String>,
    /// Pause between two rounds of bootstrap requests.
    pub retry_backoff: Duration,
    /// How long bootstrap requests are retried before kuma-dp gives up.
    pub retry_max_duration: Duration,
    /// Timeout of one bootstrap request.
    pub request_timeout: Duration,
    /// Envoy's `--drain-time-s`.
    pub drain_time: Duration,
    /// How long Envoy may take to stop after the forwarded signal before it is killed:
    /// the drain time plus [`STOP_MARGIN`].
    pub stop_grace: Duration,
    pub envoy_log_level: LogLevel,
}

impl Default for KumaDpConfig {
    fn default() -> Self {
        KumaDpConfig {
            bootstrap_server_urls: vec![Url::parse(DEFAULT_BOOTSTRAP_URL).expect("a valid URL")],
            mesh: "default".to_string(),
            name: String::new(),
            admin_port: AdminPort::DEFAULT,
            binary_path: None,
            config_dir: KumaDpConfig::default_config_dir(),
            dataplane_token_path: String::new(),
            dataplane_token: None,
            ca_cert_pem: None,
            dataplane_resource: None,
            retry_backoff: Duration::from_secs(3),
            retry_max_duration: Duration::from_secs(300),
            request_timeout: Duration::from_secs(5),
            drain_time: Duration::from_secs(5),
            stop_grace: Duration::from_secs(5) + STOP_MARGIN,
            envoy_log_level: LogLevel::Info,
        }
    }
}

/// A setting of `kuma-dp run` that cannot work; the message names the flag, its variable and the
/// value, and says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "the Dataplane name is missing: pass --name (or set KUMA_DATAPLANE_NAME) to the name of \
         a Dataplane registered with kumactl apply, e.g. --name redis-1"
    )]
    MissingName,
    #[error(
        "{flag} {value:?} is not valid: {reason} (use letters, digits, '-', '_' and '.', \
         e.g. {example})"
    )]
    BadName { flag: &'static str, value: String, reason: &'static str, example: &'static str },
    #[error(
        "{setting} {value:?} is not a valid URL: {reason}; use https://host:port of a Control \
         Plane bootstrap server, e.g. https://localhost:5682"
    )]
    BadUrl { setting: UrlSetting, value: String, reason: String },
    #[error("--retry-backoff (or KUMA_CONTROL_PLANE_RETRY_BACKOFF) must be more than 0, e.g. 3s")]
    ZeroBackoff,
    #[error("{flag} (or {var}) {}: {reason}; check the path", path.display())]
    ReadFile { flag: &'static str, var: &'static str, path: PathBuf, reason: String },
    #[error(
        "{url} is https: kuma-dp must verify the Control Plane's certificate, so pass \
         --ca-cert-file (or KUMA_CONTROL_PLANE_CA_CERT_FILE) with the CA that signed it, or the \
         PEM itself with --ca-cert (or KUMA_CONTROL_PLANE_CA_CERT); \
         `kumactl inspect control-plane-ca > ca.crt` on a control plane's host prints it"
    )]
    MissingCaCert { url: String },
    #[error(
        "{flag} (or {var}) is not a PEM CA certificate: {reason}; pass the CA that kumactl \
         inspect control-plane-ca prints"
    )]
    BadCaCert { flag: &'static str, var: &'static str, reason: String },
    #[error("--dataplane-file (or KUMA_DATAPLANE_RUNTIME_RESOURCE_PATH): {reason}")]
    BadDataplane { reason: String },
}

impl KumaDpConfig {
    /// `<temp dir>/kuma.io/envoy`.
    pub fn default_config_dir() -> PathBuf {
        std::env::temp_dir().join("kuma.io").join("envoy")
    }

    /// Parses a comma-separated list of bootstrap server URLs (blank entries are skipped).
    pub fn parse_urls(list: &str) -> Result<Vec<Url>, ConfigError> {
        KumaDpConfig::parse_urls_of(list, UrlSetting::BootstrapServerUrl)
    }

    /// [`KumaDpConfig::parse_urls`] of a list given with `setting`, which errors name.
    pub fn parse_urls_of(list: &str, setting: UrlSetting) -> Result<Vec<Url>, ConfigError> {
        let mut urls = Vec::new();
        for value in list.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let bad =
                |reason: String| ConfigError::BadUrl { setting, value: value.to_string(), reason };
            let url = Url::parse(value).map_err(|e| bad(e.to_string()))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!("the scheme {:?} is not http or https", url.scheme())));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(bad("it has no host".to_string()));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(bad("it must not have a query or fragment".to_string()));
            }
            urls.push(url);
        }
        if urls.is_empty() {
            return Err(ConfigError::BadUrl {
                setting,
                value: list.to_string(),
                reason: "it holds no URL".to_string(),
            });
        }
        Ok(urls)
    }

    /// Checks what the types cannot: a name, file-name-safe mesh and name, a backoff.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.trim().is_empty() {
            return Err(ConfigError::MissingName);
        }
        check_name("--name", &self.name, "redis-1")?;
        check_name("--mesh", &self.mesh, "default")?;
        if self.bootstrap_server_urls.is_empty() {
            return Err(ConfigError::BadUrl {
                setting: UrlSetting::BootstrapServerUrl,
                value: String::new(),
                reason: "it holds no URL".to_string(),
            });
        }
        if self.retry_backoff.is_zero() {
            return Err(ConfigError::ZeroBackoff);
        }
        if self.ca_cert_pem.is_none() {
            if let Some(url) = self.bootstrap_server_urls.iter().find(|u| u.scheme() == "https") {
                return Err(ConfigError::MissingCaCert {
                    url: url.as_str().trim_end_matches('/').to_string(),
                });
            }
        }
        Ok(())
    }

    /// `<config dir>/bootstrap-<mesh>.<name>.yaml`: one file per Dataplane, so several kuma-dp on
    /// one host never overwrite each other's bootstrap.
    pub fn bootstrap_file(&self) -> PathBuf {
        self.config_dir.join(format!("bootstrap-{}.{}.yaml", self.mesh, self.name))
    }
}

/// The certificates of a CA bundle (PEM); why not, when it holds none.
pub(crate) fn ca_certificates(pem: &str) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
        .map_err(|e| crate::bootstrap_client::describe(&e))?;
    if certs.is_empty() {
        return Err("it holds no PEM certificate".to_string());
    }
    Ok(certs)
}

/// `pem` when it is a CA bundle; the error names the flag and variable it was given with.
pub(crate) fn check_ca_pem(
    flag: &'static str,
    var: &'static str,
    pem: String,
) -> Result<String, ConfigError> {
    match ca_certificates(&pem) {
        Ok(_) => Ok(pem),
        Err(reason) => Err(ConfigError::BadCaCert { flag, var, reason }),
    }
}

/// Mesh and name become part of a file name and of the node id `<mesh>.<name>`.
fn check_name(flag: &'static str, value: &str, example: &'static str) -> Result<(), ConfigError> {
    let bad = |reason| ConfigError::BadName { flag, value: value.to_string(), reason, example };
    if value.is_empty() {
        return Err(bad("it is empty"));
    }
    if value == "." || value == ".." {
        return Err(bad("it is not a name"));
    }
    if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(bad("it holds a character that is not allowed"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> KumaDpConfig {
        KumaDpConfig {
            name: name.to_string(),
            ca_cert_pem: Some(String::new()),
            ..KumaDpConfig::default()
        }
    }

    #[test]
    fn a_list_of_urls_keeps_its_order_and_skips_blanks() {
        let urls = KumaDpConfig::parse_urls(" http://a:5682 ,,https://b:5682/ ").expect("valid");
        let urls: Vec<&str> = urls.iter().map(Url::as_str).collect();
        assert_eq!(urls, ["http://a:5682/", "https://b:5682/"]);
    }

    #[test]
    fn malformed_urls_are_refused_with_the_value() {
        for bad in ["", " , ", "localhost:5682x", "ftp://a:21", "http://a:5682?x=1", "not a url"] {
            let err = KumaDpConfig::parse_urls(bad).expect_err(bad).to_string();
            assert!(err.contains("is not a valid URL"), "{bad}: {err}");
            assert!(err.contains(BOOTSTRAP_URL_ENV), "{err}");
        }
    }

    #[test]
    fn a_missing_name_says_which_flag_and_variable_to_set() {
        let err = config("").validate().expect_err("no name").to_string();
        assert!(err.contains("--name") && err.contains("KUMA_DATAPLANE_NAME"), "{err}");
    }

    #[test]
    fn names_that_cannot_be_a_file_name_are_refused() {
        for bad in ["a/b", "..", "a b"] {
            assert!(matches!(config(bad).validate(), Err(ConfigError::BadName { .. })), "{bad}");
        }
        let mut c = config("redis-1");
        c.mesh = "../etc".to_string();
        assert!(matches!(c.validate(), Err(ConfigError::BadName { flag: "--mesh", .. })));
        config("redis-1.default_x").validate().expect("valid");
    }

    #[test]
    fn a_zero_backoff_is_refused() {
        let c = KumaDpConfig { retry_backoff: Duration::ZERO, ..config("a") };
        assert_eq!(c.validate(), Err(ConfigError::ZeroBackoff));
    }
}
