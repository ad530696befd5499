use serde::{Deserialize, Serialize};

/// Settings of the HTTP API (`apiServer` in kuma-cp's config).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiServerConfig {
    /// Port of the HTTP API (`KUMA_API_SERVER_PORT`).
    pub port: u16,
    /// Refuse every PUT and DELETE with 405 (`KUMA_API_SERVER_READ_ONLY`).
    pub read_only: bool,
    /// Largest request body accepted; larger ones get 413 (`KUMA_API_SERVER_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Base of the `next` links of paged lists, e.g. `https://kuma.example.com:5682` behind a
    /// proxy (`KUMA_API_SERVER_PUBLIC_URL`); empty means `http://` and the request's Host.
    pub public_url: String,
    pub http: HttpConfig,
    pub https: HttpsConfig,
    pub auth: AuthConfig,
}

/// The plain HTTP listener (`apiServer.http`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the API over plain HTTP on `port` (`KUMA_API_SERVER_HTTP_ENABLED`).
    pub enabled: bool,
    /// Address it binds, e.g. 127.0.0.1 to keep plain HTTP to this host
    /// (`KUMA_API_SERVER_HTTP_INTERFACE`).
    pub interface: String,
}

/// The HTTPS listener (`apiServer.https`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpsConfig {
    /// Serve the API over TLS too (`KUMA_API_SERVER_HTTPS_ENABLED`).
    pub enabled: bool,
    /// Its port (`KUMA_API_SERVER_HTTPS_PORT`).
    pub port: u16,
    /// Address it binds (`KUMA_API_SERVER_HTTPS_INTERFACE`).
    pub interface: String,
    /// Certificate chain (PEM); empty means one issued to this peer by the control plane's CA
    /// (`KUMA_API_SERVER_HTTPS_TLS_CERT_FILE`).
    pub tls_cert_file: String,
    /// Its key (`KUMA_API_SERVER_HTTPS_TLS_KEY_FILE`).
    pub tls_key_file: String,
}

/// Who may do what (`apiServer.auth`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthConfig {
    /// Requests from this host (loopback) are admin without credentials
    /// (`KUMA_API_SERVER_AUTH_LOCALHOST_IS_ADMIN`).
    pub localhost_is_admin: bool,
    /// CA (PEM) whose client certificates authenticate on the HTTPS port: the certificate's
    /// common name is the user, its organizations the groups; empty means no client certificates
    /// (`KUMA_API_SERVER_AUTH_CLIENT_CERTS_CA_FILE`).
    pub client_certs_ca_file: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig { enabled: true, interface: "0.0.0.0".to_string() }
    }
}

impl Default for HttpsConfig {
    fn default() -> Self {
        HttpsConfig {
            enabled: true,
            port: 5684,
            interface: "0.0.0.0".to_string(),
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { localhost_is_admin: true, client_certs_ca_file: String::new() }
    }
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 5681,
            read_only: false,
            max_body_bytes: 1024 * 1024,
            public_url: String::new(),
            http: HttpConfig::default(),
            https: HttpsConfig::default(),
            auth: AuthConfig::default(),
        }
    }
}

impl ApiServerConfig {
    /// Checks values serde cannot: returns every problem as `field: message`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.max_body_bytes < 1024 {
            problems.push(format!(
                "maxBodyBytes: {} is too small; use at least 1024",
                self.max_body_bytes
            ));
        }
        let url = &self.public_url;
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        if !url.is_empty() && !scheme_ok {
            problems.push(format!("publicUrl: {url:?} has to start with http:// or https://"));
        }
        for (field, interface) in
            [("http.interface", &self.http.interface), ("https.interface", &self.https.interface)]
        {
            if interface.parse::<std::net::IpAddr>().is_err() {
                problems.push(format!("{field}: {interface:?} is not an IP address"));
            }
        }
        if !self.http.enabled && !self.https.enabled {
            problems.push(
                "http.enabled, https.enabled: at least one must be true, or no one can reach the API"
                    .to_string(),
            );
        }
        if self.https.tls_cert_file.is_empty() != self.https.tls_key_file.is_empty() {
            problems.push("https.tlsCertFile, https.tlsKeyFile: set both or neither".to_string());
        }
        if self.https.port == self.port && self.http.enabled && self.https.enabled {
            problems.push(format!(
                "https.port: {} is the HTTP port too; give HTTPS its own (5684)",
                self.port
            ));
        }
        problems
    }
}
