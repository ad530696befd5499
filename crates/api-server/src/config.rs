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
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            port: 5681,
            read_only: false,
            max_body_bytes: 1024 * 1024,
            public_url: String::new(),
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
        problems
    }
}
