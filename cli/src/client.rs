//! `ApiClient`: the REST client for a control plane's HTTP API. Paths come from the model's type
//! registry; failures come back as `ClientError`, which keeps Kuma's error body intact so it can
//! be printed the way Kuma prints it.

use std::time::Duration;

use kuma_model::rest::{ErrorBody, ResourceList};
use kuma_model::ResourceType;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::config::ApiServer;

/// How long to wait for a TCP connection before calling a control plane unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one request may take in all.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// A list longer than this many pages means the server keeps handing out `next`: stop.
const MAX_PAGES: usize = 10_000;

/// A client of one control plane's HTTP API.
#[derive(Clone, Debug)]
pub struct ApiClient {
    base: Url,
    http: reqwest::Client,
    /// The CA file the server must be signed by, named in errors.
    ca_file: Option<String>,
}

/// What went wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer at all: nothing listens there, DNS failed, or it timed out.
    #[error(
        "could not reach the Control Plane API Server at {url}: {reason}; check that kuma-cp is \
         running there, or point kumactl at another one with \
         kumactl config control-planes add --name NAME --address URL"
    )]
    Unreachable { url: String, reason: String },
    /// It took the request but gave no answer in time: the outcome of a change is unknown.
    #[error(
        "the Control Plane API Server at {url} took the request but did not answer within {}s: \
         it is busy or waiting (a replicated one waits while its cluster has no quorum); a \
         change it was asked for may still be made, so check before retrying",
        REQUEST_TIMEOUT.as_secs()
    )]
    TimedOut { url: String },
    /// The API answered with Kuma's error body.
    #[error("{}", format_api_error(body))]
    Api { status: u16, body: ErrorBody },
    /// The API answered an error status without Kuma's error body.
    #[error("{method} {url} failed with HTTP {status}{}", detail_suffix(body))]
    Status { method: String, url: String, status: u16, body: String },
    /// The answer could not be read or was not the expected JSON.
    #[error("could not read the answer of {url}: {reason}")]
    Decode { url: String, reason: String },
    /// The configured address is not a usable URL.
    #[error("{url:?} is not a valid http(s) URL: {reason}")]
    BadUrl { url: String, reason: String },
    /// Any other transport failure.
    #[error("request to {url} failed: {reason}")]
    Transport { url: String, reason: String },
    /// The server's certificate is not signed by a CA kumactl trusts.
    #[error(
        "the server's certificate at {url} is not signed by {} ({reason}); {}",
        ca_file.as_deref().map_or("a CA kumactl trusts".to_string(), |f| format!("the CA given with --ca-cert-file ({f})")),
        if ca_file.is_some() { "pass the CA that signed it: kumactl inspect control-plane-ca on a control plane's host prints it" } else { "pass it with kumactl config control-planes add ... --ca-cert-file FILE (kumactl inspect control-plane-ca on a control plane's host prints it)" }
    )]
    UntrustedServer { url: String, ca_file: Option<String>, reason: String },
    /// A certificate or key file named in the config cannot be used.
    #[error("{flag} {path}: {reason}")]
    BadFile { flag: &'static str, path: String, reason: String },
}

/// Kuma's rendering of an API error: `Title (details)` and one `* field: message` line per cause.
pub fn format_api_error(body: &ErrorBody) -> String {
    let mut text = if body.details.is_empty() {
        body.title.clone()
    } else {
        format!("{} ({})", body.title, body.details)
    };
    for cause in &body.causes {
        text.push_str(&format!("\n* {}: {}", cause.field, cause.message));
    }
    text
}

fn detail_suffix(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl ClientError {
    /// The HTTP status the API answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the same request may succeed if sent again unchanged: the control plane could
    /// not be reached or did not answer in time, or a proxy or the API said it is unavailable
    /// for now (502, 503, 504).
    /// Everything else (a refusal, a bad answer, a bad address) fails the same way again.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } | ClientError::TimedOut { .. } => true,
            ClientError::Api { status, .. } | ClientError::Status { status, .. } => {
                matches!(status, 502..=504)
            }
            ClientError::Decode { .. }
            | ClientError::BadUrl { .. }
            | ClientError::Transport { .. }
            | ClientError::UntrustedServer { .. }
            | ClientError::BadFile { .. } => false,
        }
    }
}

/// The innermost cause of an error chain: for a refused connection, "Connection refused (os
/// error 111)" rather than reqwest's "error sending request for url".
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(source) = current.source() {
        current = source;
    }
    current.to_string()
}

fn transport_error(url: &Url, e: reqwest::Error, ca_file: Option<&str>) -> ClientError {
    let url = url.to_string();
    let reason = root_cause(&e);
    if reason.contains("invalid peer certificate") {
        return ClientError::UntrustedServer { url, ca_file: ca_file.map(str::to_string), reason };
    }
    // A connect timeout is both; only a request that got through timed out on its answer.
    if e.is_connect() {
        ClientError::Unreachable { url, reason }
    } else if e.is_timeout() {
        ClientError::TimedOut { url }
    } else if e.is_decode() || e.is_body() {
        ClientError::Decode { url, reason }
    } else {
        ClientError::Transport { url, reason }
    }
}

/// Builds the HTTP client for `server`: its CA (and no other), its client certificate, its
/// token on every request.
pub(crate) fn http_client(server: &ApiServer) -> Result<reqwest::Client, ClientError> {
    let read = |flag: &'static str, path: &str| {
        std::fs::read(path).map_err(|e| ClientError::BadFile {
            flag,
            path: path.to_string(),
            reason: e.to_string(),
        })
    };
    let mut builder = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("kumactl/", env!("CARGO_PKG_VERSION")));
    if !server.ca_cert_file.is_empty() {
        let pem = read("--ca-cert-file", &server.ca_cert_file)?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::BadFile {
                flag: "--ca-cert-file",
                path: server.ca_cert_file.clone(),
                reason: root_cause(&e),
            })?;
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if !server.client_cert_file.is_empty() {
        let mut pem = read("--client-cert-file", &server.client_cert_file)?;
        pem.extend(read("--client-key-file", &server.client_key_file)?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|e| ClientError::BadFile {
            flag: "--client-cert-file",
            path: server.client_cert_file.clone(),
            reason: root_cause(&e),
        })?;
        builder = builder.identity(identity);
    }
    if server.skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(token) = server.token() {
        let mut headers = reqwest::header::HeaderMap::new();
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .map_err(|_| ClientError::BadFile {
                flag: "--auth-conf token",
                path: "(the token)".to_string(),
                reason: "it is not a printable ASCII token".to_string(),
            })?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    builder
        .build()
        .map_err(|e| ClientError::Transport { url: String::new(), reason: root_cause(&e) })
}

/// Parses an http(s) URL.
pub(crate) fn parse_url(url: &str) -> Result<Url, ClientError> {
    let bad = |reason: String| ClientError::BadUrl { url: url.to_string(), reason };
    let parsed = Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(format!("the scheme must be http or https, not {:?}", parsed.scheme())));
    }
    if parsed.cannot_be_a_base() || parsed.host().is_none() {
        return Err(bad("it has no host".to_string()));
    }
    Ok(parsed)
}

/// A list fetched by following `next` to the end.
#[derive(Clone, Debug, PartialEq)]
pub struct FetchedList {
    /// `total` as the first page reported it.
    pub total: u64,
    pub items: Vec<Value>,
}

impl ApiClient {
    /// A client of the API at `base_url` (e.g. `http://localhost:5681`), without credentials.
    pub fn new(base_url: &str) -> Result<ApiClient, ClientError> {
        ApiClient::for_server(&ApiServer { url: base_url.to_string(), ..ApiServer::default() })
    }

    /// A client of a configured control plane's API, with its credentials and CA.
    pub fn for_server(server: &ApiServer) -> Result<ApiClient, ClientError> {
        Ok(ApiClient {
            base: parse_url(&server.url)?,
            http: http_client(server)?,
            ca_file: Some(server.ca_cert_file.clone()).filter(|f| !f.is_empty()),
        })
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// The URL of `segments` below the base, each segment percent-encoded.
    pub fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        url.set_query(None);
        url.set_fragment(None);
        {
            let mut path = url.path_segments_mut().expect("parse_url only accepts base URLs");
            path.pop_if_empty().extend(segments);
            if segments.is_empty() {
                path.push("");
            }
        }
        url
    }

    /// The path segments of a resource collection: `meshes` or `meshes/{mesh}/{path}`.
    pub fn collection(resource_type: ResourceType, mesh: &str) -> Vec<&str> {
        let d = resource_type.descriptor();
        if resource_type.is_mesh_scoped() {
            vec!["meshes", mesh, d.path]
        } else {
            vec![d.path]
        }
    }

    /// The path segments of one resource.
    pub fn item<'a>(resource_type: ResourceType, mesh: &'a str, name: &'a str) -> Vec<&'a str> {
        let mut segments = ApiClient::collection(resource_type, mesh);
        segments.push(name);
        segments
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Vec<u8>), ClientError> {
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(body) = body {
            request = request.json(body);
        }
        let ca_file = self.ca_file.as_deref();
        let response = request.send().await.map_err(|e| transport_error(&url, e, ca_file))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| transport_error(&url, e, ca_file))?.to_vec();
        if status.is_client_error() || status.is_server_error() {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api { status: status.as_u16(), body },
                Err(_) => ClientError::Status {
                    method: method.to_string(),
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
                },
            });
        }
        Ok((status, bytes))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: Url) -> Result<T, ClientError> {
        self.json_answer(Method::GET, url, None).await
    }

    /// Sends a request and reads its answer as JSON.
    async fn json_answer<T: serde::de::DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<T, ClientError> {
        let (_, bytes) = self.send(method, url.clone(), body).await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| ClientError::Decode { url: url.to_string(), reason: e.to_string() })
    }

    /// `GET /`, as JSON: `config control-planes add` checks its `tagline` before anything else,
    /// so it must not require the other fields of `Index`.
    pub async fn index(&self) -> Result<Value, ClientError> {
        self.get_json(self.url(&[])).await
    }

    /// `GET` of one object (a resource or an overview) at `segments`.
    pub async fn get(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.get_json(self.url(segments)).await
    }

    /// One page of the list at `segments`, with `query` pairs (`size`, `offset`, `tag`, ...).
    pub async fn list_page(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<ResourceList, ClientError> {
        let mut url = self.url(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.get_json(url).await
    }

    /// Every item of the list at `segments`, following `next` until it is null.
    pub async fn list_all(
        &self,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<FetchedList, ClientError> {
        let first = self.list_page(segments, query).await?;
        let total = first.total;
        let mut items = first.items;
        let mut next = first.next;
        let mut pages = 1;
        while let Some(next_url) = next {
            let url = Url::parse(&next_url).map_err(|e| ClientError::Decode {
                url: self.url(segments).to_string(),
                reason: format!("the next page link {next_url:?} is not a URL: {e}"),
            })?;
            pages += 1;
            if pages > MAX_PAGES {
                return Err(ClientError::Decode {
                    url: url.to_string(),
                    reason: format!("the list did not end after {MAX_PAGES} pages"),
                });
            }
            let page: ResourceList = self.get_json(url).await?;
            items.extend(page.items);
            next = page.next;
        }
        Ok(FetchedList { total, items })
    }

    /// `PUT` of a flat resource object: creates it or replaces it.
    pub async fn put(&self, segments: &[&str], resource: &Value) -> Result<(), ClientError> {
        self.send(Method::PUT, self.url(segments), Some(resource)).await.map(drop)
    }

    /// `DELETE` of the resource at `segments`.
    pub async fn delete(&self, segments: &[&str]) -> Result<(), ClientError> {
        self.send(Method::DELETE, self.url(segments), None).await.map(drop)
    }

    /// `POST` of `body` to `segments`, for the APIs that answer with JSON (the Raft membership).
    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value, ClientError> {
        self.json_answer(Method::POST, self.url(segments), Some(body)).await
    }

    /// `POST` of `body` to `segments`, for the APIs that answer with text (a token).
    pub async fn post_for_text(
        &self,
        segments: &[&str],
        body: &Value,
    ) -> Result<String, ClientError> {
        let (_, bytes) = self.send(Method::POST, self.url(segments), Some(body)).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET` of `segments`, for the APIs that answer with text (a PEM certificate).
    pub async fn get_text(&self, segments: &[&str]) -> Result<String, ClientError> {
        let (_, bytes) = self.send(Method::GET, self.url(segments), None).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `GET` of `segments`, for the APIs that answer with bytes (a Raft snapshot file).
    pub async fn get_bytes(&self, segments: &[&str]) -> Result<Vec<u8>, ClientError> {
        let (_, bytes) = self.send(Method::GET, self.url(segments), None).await?;
        Ok(bytes)
    }

    /// `DELETE` of `segments`, for the APIs that answer with JSON (the Raft membership).
    pub async fn delete_for_answer(&self, segments: &[&str]) -> Result<Value, ClientError> {
        self.json_answer(Method::DELETE, self.url(segments), None).await
    }
}

#[cfg(test)]
mod tests;
