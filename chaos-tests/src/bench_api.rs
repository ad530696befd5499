//! The benchmarks' client of kuma-cp's HTTP API, over loopback (where kuma-cp counts the caller
//! as an admin, as for an operator on the peer's own host), to one or more peers by index.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::LoadError;

/// Answers of 503 (no leader yet, a token or CA not made yet) and, for a `PUT`, 409 (a write
/// that raced another, the API says to retry: e.g. our own earlier attempt, answered 503 but
/// applied) are retried this many times, `RETRY_PAUSE` apart.
const RETRIES: usize = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// HTTP/1.1 with keep-alive to every peer's API port.
#[derive(Debug, Clone)]
pub struct BenchApi {
    http: reqwest::Client,
    bases: Vec<String>,
    /// Requests sent again after a 503 or 409, over every clone of this client.
    retries: Arc<AtomicUsize>,
}

impl BenchApi {
    /// A client of the peers whose API ports are `ports` (peer `i` is `ports[i]`).
    pub fn new(ports: &[u16], timeout: Duration) -> Result<BenchApi, LoadError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(256)
            .build()
            .map_err(|source| LoadError::Http { request: "building the client".into(), source })?;
        let bases = ports.iter().map(|p| format!("http://127.0.0.1:{p}")).collect();
        Ok(BenchApi { http, bases, retries: Arc::default() })
    }

    pub fn peers(&self) -> usize {
        self.bases.len()
    }

    /// Requests sent again after a 503 or a 409 so far.
    pub fn retries(&self) -> usize {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends `method path` (with a JSON body and a bearer token when given) to `peer`; a 503 is
    /// retried for a few seconds. The answer's body when it is a success.
    pub async fn call(
        &self,
        peer: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<String, LoadError> {
        let url = format!("{}{path}", self.bases[peer]);
        let request = format!("{method} {url}");
        let mut attempts = 0;
        loop {
            let mut builder = self.http.request(method.clone(), &url);
            if let Some(body) = body {
                builder = builder.json(body);
            }
            if let Some(token) = token {
                builder = builder.bearer_auth(token);
            }
            let response = builder
                .send()
                .await
                .map_err(|source| LoadError::Http { request: request.clone(), source })?;
            let status = response.status();
            let text = response
                .text()
                .await
                .map_err(|source| LoadError::Http { request: request.clone(), source })?;
            if status.is_success() {
                return Ok(text);
            }
            attempts += 1;
            let retryable = status == reqwest::StatusCode::SERVICE_UNAVAILABLE
                || (status == reqwest::StatusCode::CONFLICT && method == reqwest::Method::PUT);
            if !retryable || attempts >= RETRIES {
                return Err(LoadError::Api { request, status: status.as_u16(), body: text });
            }
            self.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }

    /// A text answer (the CA, a token), trimmed.
    pub async fn text(
        &self,
        peer: usize,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<String, LoadError> {
        let method = if method == "POST" { reqwest::Method::POST } else { reqwest::Method::GET };
        Ok(self.call(peer, method, path, body, None).await?.trim().to_string())
    }

    /// `PUT path` with the resource `body` through `peer`.
    pub async fn put(&self, peer: usize, path: &str, body: &Value) -> Result<(), LoadError> {
        self.call(peer, reqwest::Method::PUT, path, Some(body), None).await.map(drop)
    }

    /// `GET path` through `peer`, as JSON.
    pub async fn get_json(&self, peer: usize, path: &str) -> Result<Value, LoadError> {
        let text = self.call(peer, reqwest::Method::GET, path, None, None).await?;
        serde_json::from_str(&text)
            .map_err(|e| LoadError::Invalid(format!("GET {path}: not JSON ({e})")))
    }

    /// The raw bytes of `GET path` through `peer` with a bearer token (a snapshot file).
    pub async fn get_bytes(
        &self,
        peer: usize,
        path: &str,
        token: &str,
    ) -> Result<Vec<u8>, LoadError> {
        let url = format!("{}{path}", self.bases[peer]);
        let request = format!("GET {url}");
        let response = self
            .http
            .get(&url)
            .bearer_auth(token)
            .send()
            .await
            .map_err(|source| LoadError::Http { request: request.clone(), source })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| LoadError::Http { request: request.clone(), source })?;
        if !status.is_success() {
            let body = String::from_utf8_lossy(&bytes).into_owned();
            return Err(LoadError::Api { request, status: status.as_u16(), body });
        }
        Ok(bytes.to_vec())
    }
}
