//! Opening connections: the driver's config from `PostgresConfig`, the bounded pool the store
//! uses, and single dedicated connections (the LISTEN connection, migrations).

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Connection, Socket};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{tls, PostgresConfig, PostgresError, TlsMode};

/// The stream type of a connection over `MakeRustlsConnect`.
pub(crate) type TlsStream = <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Everything needed to open a connection.
#[derive(Clone)]
pub(crate) struct Connector {
    pg: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio_postgres::Config's Debug redacts the password.
        f.debug_struct("Connector").field("pg", &self.pg).finish_non_exhaustive()
    }
}

impl Connector {
    /// Checks `config` and builds its TLS setup (reading the TLS files).
    pub(crate) fn new(config: &PostgresConfig) -> Result<Connector, PostgresError> {
        config.validate()?;
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(config.port)
            .user(&config.user)
            .password(&config.password)
            .dbname(&config.db_name)
            .application_name("kuma-cp")
            .connect_timeout(config.connection_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .ssl_mode(match config.tls.mode {
                TlsMode::Disable => SslMode::Disable,
                _ => SslMode::Require,
            });
        let tls = MakeRustlsConnect::new(tls::client_config(&config.tls)?);
        Ok(Connector { pg, tls, timeout: config.connection_timeout })
    }

    /// How long opening a connection, waiting for one, or one operation may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A bounded pool: at most `size` connections; waiting for one, opening one and checking a
    /// returned one are each bounded by the connection timeout.
    pub(crate) fn pool(&self, size: usize) -> Pool {
        let manager = Manager::from_config(
            self.pg.clone(),
            self.tls.clone(),
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        Pool::builder(manager)
            .max_size(size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(self.timeout))
            .create_timeout(Some(self.timeout))
            .recycle_timeout(Some(self.timeout))
            .build()
            .expect("a runtime is given, so the pool builds")
    }

    /// One dedicated connection named `application_name`; the caller drives its `Connection`.
    pub(crate) async fn connect_raw(
        &self,
        application_name: &str,
    ) -> Result<(Client, Connection<Socket, TlsStream>), PostgresError> {
        let mut pg = self.pg.clone();
        pg.application_name(application_name);
        match tokio::time::timeout(self.timeout, pg.connect(self.tls.clone())).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(PostgresError::Unavailable {
                reason: format!(
                    "no connection to {} within {:?}",
                    self.describe_target(),
                    self.timeout
                ),
            }),
        }
    }

    /// One dedicated connection whose `Connection` runs on its own task.
    pub(crate) async fn connect(&self, application_name: &str) -> Result<Client, PostgresError> {
        let (client, connection) = self.connect_raw(application_name).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %crate::error::describe(&e), "a PostgreSQL connection ended");
            }
        });
        Ok(client)
    }

    fn describe_target(&self) -> String {
        let host = match self.pg.get_hosts().first() {
            Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
            _ => "?".to_string(),
        };
        let port = self.pg.get_ports().first().copied().unwrap_or_default();
        format!("{host}:{port}")
    }
}
