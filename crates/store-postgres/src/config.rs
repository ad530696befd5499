//! `PostgresConfig`: where the database is and how to reach it, with Kuma's keys and defaults
//! (`store.postgres` in kuma-cp's config file, `KUMA_STORE_POSTGRES_*` in the environment).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pool size when `max_open_connections` is 0 (Kuma's default, "unlimited" in Go's pool):
/// this store always bounds its pool.
pub const DEFAULT_POOL_SIZE: usize = 16;

/// How to reach the database. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PostgresConfig {
    /// `KUMA_STORE_POSTGRES_HOST`; default `127.0.0.1`.
    pub host: String,
    /// `KUMA_STORE_POSTGRES_PORT`; default `15432`.
    pub port: u16,
    /// `KUMA_STORE_POSTGRES_USER`; default `kuma`.
    pub user: String,
    /// `KUMA_STORE_POSTGRES_PASSWORD`; default `kuma`.
    pub password: String,
    /// `KUMA_STORE_POSTGRES_DB_NAME`; default `kuma`.
    pub db_name: String,
    /// `KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT`, in whole seconds; default 5. It bounds opening a
    /// connection, waiting for a free one in the pool, and each store operation.
    #[serde(with = "seconds")]
    pub connection_timeout: Duration,
    /// `KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS`; default 0, meaning [`DEFAULT_POOL_SIZE`].
    pub max_open_connections: usize,
    /// `KUMA_STORE_POSTGRES_TLS_*`.
    pub tls: TlsConfig,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: "127.0.0.1".into(),
            port: 15432,
            user: "kuma".into(),
            password: "kuma".into(),
            db_name: "kuma".into(),
            connection_timeout: Duration::from_secs(5),
            max_open_connections: 0,
            tls: TlsConfig::default(),
        }
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("db_name", &self.db_name)
            .field("connection_timeout", &self.connection_timeout)
            .field("max_open_connections", &self.max_open_connections)
            .field("tls", &self.tls)
            .finish()
    }
}

impl PostgresConfig {
    /// The pool's bound.
    pub fn pool_size(&self) -> usize {
        if self.max_open_connections == 0 {
            DEFAULT_POOL_SIZE
        } else {
            self.max_open_connections
        }
    }

    /// Every problem of this config, one line each naming the key; empty when it is usable.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        if self.host.trim().is_empty() {
            problems.push("store.postgres.host (KUMA_STORE_POSTGRES_HOST) is empty".to_string());
        }
        if self.port == 0 {
            problems.push("store.postgres.port (KUMA_STORE_POSTGRES_PORT) is 0".to_string());
        }
        if self.user.is_empty() {
            problems.push("store.postgres.user (KUMA_STORE_POSTGRES_USER) is empty".to_string());
        }
        if self.db_name.is_empty() {
            problems
                .push("store.postgres.dbName (KUMA_STORE_POSTGRES_DB_NAME) is empty".to_string());
        }
        if self.connection_timeout.is_zero() {
            problems.push(
                "store.postgres.connectionTimeout (KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT) is 0: \
                 give it in seconds, at least 1"
                    .to_string(),
            );
        }
        let tls = &self.tls;
        if tls.cert_path.is_some() != tls.key_path.is_some() {
            problems.push(
                "store.postgres.tls: certPath and keyPath (KUMA_STORE_POSTGRES_TLS_CERT_PATH, \
                 _KEY_PATH) go together: set both or neither"
                    .to_string(),
            );
        }
        if matches!(tls.mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && tls.ca_path.is_none() {
            problems.push(format!(
                "store.postgres.tls.mode {} needs store.postgres.tls.caPath \
                 (KUMA_STORE_POSTGRES_TLS_CA_PATH): the CA that signed the server's certificate",
                tls.mode
            ));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }
}

/// What is wrong with a [`PostgresConfig`]: one problem per line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", problems.join("; "))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// TLS towards the database (`store.postgres.tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct TlsConfig {
    /// `KUMA_STORE_POSTGRES_TLS_MODE`; default `disable`.
    pub mode: TlsMode,
    /// A client certificate (PEM, the chain leaf first) to present; `KUMA_STORE_POSTGRES_TLS_CERT_PATH`.
    pub cert_path: Option<PathBuf>,
    /// Its private key (PEM); `KUMA_STORE_POSTGRES_TLS_KEY_PATH`.
    pub key_path: Option<PathBuf>,
    /// The CA certificates (PEM) the server's certificate must chain to, for `verify-ca` and
    /// `verify-full`; `KUMA_STORE_POSTGRES_TLS_CA_PATH`.
    pub ca_path: Option<PathBuf>,
}

/// How the connection is protected, as libpq's `sslmode` names it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS, without checking the server's certificate (encryption against passive listeners only).
    Require,
    /// TLS; the server's certificate must chain to `ca_path`, whatever host name it names.
    VerifyCa,
    /// TLS; the certificate must chain to `ca_path` and name the host connected to.
    VerifyFull,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        })
    }
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(s: &str) -> Result<TlsMode, String> {
        match s {
            "disable" => Ok(TlsMode::Disable),
            "require" => Ok(TlsMode::Require),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-full" => Ok(TlsMode::VerifyFull),
            other => Err(format!(
                "TLS mode {other:?} is not one of disable, require, verify-ca, verify-full"
            )),
        }
    }
}

/// A duration as whole seconds, as Kuma's config gives `connectionTimeout`.
mod seconds {
    use super::*;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = PostgresConfig { password: "s3cr3t-pw".into(), ..Default::default() };
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn defaults_are_kumas() {
        let config = PostgresConfig::default();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.1", 15432));
        assert_eq!((config.user.as_str(), config.db_name.as_str()), ("kuma", "kuma"));
        assert_eq!(config.connection_timeout, Duration::from_secs(5));
        assert_eq!(config.tls.mode, TlsMode::Disable);
        assert_eq!(config.pool_size(), DEFAULT_POOL_SIZE);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn reads_kumas_config_keys() {
        let config: PostgresConfig = serde_json::from_str(
            r#"{"host":"db","port":5432,"dbName":"cp","connectionTimeout":3,
                "maxOpenConnections":4,"tls":{"mode":"verify-full","caPath":"/ca.pem"}}"#,
        )
        .unwrap();
        assert_eq!(config.db_name, "cp");
        assert_eq!(config.connection_timeout, Duration::from_secs(3));
        assert_eq!(config.pool_size(), 4);
        assert_eq!(config.tls.mode, TlsMode::VerifyFull);
        assert_eq!(config.validate(), Ok(()));
        let unknown = serde_json::from_str::<PostgresConfig>(r#"{"hots":"db"}"#).unwrap_err();
        assert!(unknown.to_string().contains("hots"), "{unknown}");
    }

    #[test]
    fn the_defaults_serialize_every_key_and_read_back() {
        let value = serde_json::to_value(PostgresConfig::default()).unwrap();
        for pointer in ["/dbName", "/connectionTimeout", "/maxOpenConnections", "/tls/caPath"] {
            assert!(value.pointer(pointer).is_some(), "{pointer} in {value}");
        }
        assert_eq!(value["tls"]["mode"], "disable");
        let back: PostgresConfig = serde_json::from_value(value).unwrap();
        assert_eq!(back, PostgresConfig::default());
    }

    #[test]
    fn verify_modes_need_a_ca_and_a_cert_needs_its_key() {
        let mut config = PostgresConfig::default();
        config.tls.mode = TlsMode::VerifyCa;
        config.tls.cert_path = Some("/client.pem".into());
        let err = config.validate().unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
        assert!(err.to_string().contains("KUMA_STORE_POSTGRES_TLS_CA_PATH"), "{err}");
    }
}
