//! `BootstrapClient`: `POST <url>/bootstrap` to each control-plane peer in turn until one answers,
//! retrying with a constant backoff while none answers or the Dataplane is not registered yet.

use std::time::{Duration, Instant};

use kuma_model::rest::ErrorBody;
use reqwest::{StatusCode, Url};
use serde::Serialize;

use crate::error::{format_duration, KumaDpError};

/// The body of `POST /bootstrap` (Kuma's field names).
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapRequest {
    pub mesh: String,
    pub name: String,
    pub admin_port: u16,
    pub dataplane_token_path: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dataplane_token: String,
    /// The CA kuma-dp trusts; the bootstrap makes Envoy trust it too.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_cert: String,
    /// A Dataplane to register before the bootstrap is made.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub dataplane_resource: String,
}

impl std::fmt::Debug for BootstrapRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("BootstrapRequest")
            .field("mesh", &self.mesh)
            .field("name", &self.name)
            .field("admin_port", &self.admin_port)
            .finish_non_exhaustive()
    }
}

/// An Envoy bootstrap as a control plane returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bootstrap {
    /// The bootstrap server that answered.
    pub url: Url,
    /// The body, written verbatim to the bootstrap file.
    pub yaml: String,
}

/// Asks the bootstrap servers of the control-plane peers for a Dataplane's Envoy bootstrap.
#[derive(Debug)]
pub struct BootstrapClient {
    http: reqwest::Client,
    urls: Vec<Url>,
    backoff: Duration,
    max_duration: Duration,
}

/// What one request to one URL gave.
enum Attempt {
    Bootstrap(String),
    /// 404: the control plane answered, the Dataplane does not exist (yet).
    NotRegistered(String),
    /// Connection refused, timeout, 5xx: try the next peer.
    Unavailable(String),
}

impl BootstrapClient {
    /// A client for `urls` (tried in this order); one request may take `request_timeout`. With
    /// `ca_pem`, https servers must present a certificate signed by that CA, and no other.
    pub fn new(
        urls: Vec<Url>,
        backoff: Duration,
        max_duration: Duration,
        request_timeout: Duration,
        ca_pem: Option<&str>,
    ) -> Result<BootstrapClient, KumaDpError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("kuma-dp/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(request_timeout.min(Duration::from_secs(3)))
            .timeout(request_timeout);
        if let Some(ca_pem) = ca_pem {
            let certs = crate::config::ca_certificates(ca_pem).map_err(KumaDpError::BadCaCert)?;
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| KumaDpError::HttpClient(describe(&e)))?;
        Ok(BootstrapClient { http, urls, backoff, max_duration })
    }

    /// The bootstrap from the first URL that answers 200. Tries every URL in turn; after a round
    /// where none answered, or where a control plane said the Dataplane does not exist, waits
    /// `backoff` and starts again, until `max_duration` has passed. A 400 (or another 4xx) fails
    /// at once: asking again would not change the answer.
    pub async fn fetch(&self, request: &BootstrapRequest) -> Result<Bootstrap, KumaDpError> {
        let start = Instant::now();
        loop {
            let mut not_registered = None;
            let mut last_error = String::from("no URL was tried");
            for url in &self.urls {
                match self.attempt(url, request).await? {
                    Attempt::Bootstrap(yaml) => {
                        tracing::info!(url = %display_url(url), "received the Envoy bootstrap");
                        return Ok(Bootstrap { url: url.clone(), yaml });
                    }
                    Attempt::NotRegistered(details) => {
                        // Every peer shares the same store: asking the others now would not help.
                        not_registered = Some((url, details));
                        break;
                    }
                    Attempt::Unavailable(cause) => {
                        tracing::warn!(url = %display_url(url), error = %cause, "the Control Plane did not answer");
                        last_error = format!("{}: {cause}", display_url(url));
                    }
                }
            }
            let elapsed = start.elapsed();
            if elapsed >= self.max_duration {
                return Err(match not_registered {
                    Some((url, details)) => KumaDpError::NotRegistered {
                        mesh: request.mesh.clone(),
                        name: request.name.clone(),
                        url: display_url(url).to_string(),
                        details,
                        waited: self.max_duration,
                    },
                    None => KumaDpError::Unreachable {
                        urls: self.urls.iter().map(display_url).collect::<Vec<_>>().join(", "),
                        last_error,
                        waited: self.max_duration,
                    },
                });
            }
            let pause = self.backoff.min(self.max_duration - elapsed);
            match &not_registered {
                Some((url, details)) => tracing::info!(
                    url = %display_url(url),
                    mesh = %request.mesh,
                    dataplane = %request.name,
                    details = %details,
                    "the Dataplane is not registered yet; retrying in {}",
                    format_duration(pause)
                ),
                None => tracing::warn!(
                    "no Control Plane answered; retrying in {}",
                    format_duration(pause)
                ),
            }
            tokio::time::sleep(pause).await;
        }
    }

    async fn attempt(&self, url: &Url, request: &BootstrapRequest) -> Result<Attempt, KumaDpError> {
        let endpoint = format!("{}/bootstrap", display_url(url));
        tracing::debug!(url = %endpoint, "requesting the Envoy bootstrap");
        let response = match self.http.post(&endpoint).json(request).send().await {
            Ok(response) => response,
            // A certificate from another CA does not change by asking again.
            Err(e) if is_untrusted_certificate(&e) => {
                return Err(KumaDpError::UntrustedServer {
                    url: display_url(url).to_string(),
                    reason: describe(&e),
                })
            }
            // A TLS server's alert, read as an HTTP reply: the URL should be https.
            Err(e) if url.scheme() == "http" && describe(&e).contains("invalid HTTP version") => {
                let host_port = match (url.host_str(), url.port()) {
                    (Some(host), Some(port)) => format!("{host}:{port}"),
                    (host, _) => host.unwrap_or_default().to_string(),
                };
                return Err(KumaDpError::SpeaksTls {
                    url: display_url(url).to_string(),
                    host_port,
                });
            }
            Err(e) => return Ok(Attempt::Unavailable(describe(&e))),
        };
        let status = response.status();
        let body = match response.text().await {
            Ok(body) => body,
            Err(e) => return Ok(Attempt::Unavailable(describe(&e))),
        };
        Ok(match status {
            s if s.is_success() => Attempt::Bootstrap(body),
            StatusCode::NOT_FOUND => Attempt::NotRegistered(error_details(&body)),
            s if s.is_server_error()
                || s == StatusCode::REQUEST_TIMEOUT
                || s == StatusCode::TOO_MANY_REQUESTS =>
            {
                Attempt::Unavailable(format!("{s}: {}", error_details(&body)))
            }
            s => {
                return Err(KumaDpError::Rejected {
                    url: display_url(url).to_string(),
                    mesh: request.mesh.clone(),
                    name: request.name.clone(),
                    status: s.as_u16(),
                    details: error_details(&body),
                })
            }
        })
    }
}

/// The URL as a user writes it: without the `/` that parsing adds to an empty path.
pub(crate) fn display_url(url: &Url) -> &str {
    url.as_str().trim_end_matches('/')
}

/// The innermost cause of a request error ("Connection refused (os error 111)"), which is what
/// tells a user what went wrong; reqwest's own message only repeats the URL.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "the request timed out".to_string();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if e.is_connect() {
        format!("could not connect: {cause}")
    } else {
        cause.to_string()
    }
}

/// Whether the server's certificate failed verification (rather than the network failing).
fn is_untrusted_certificate(e: &reqwest::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(e);
    while let Some(c) = cause {
        let text = c.to_string();
        if text.contains("invalid peer certificate") || text.contains("UnknownIssuer") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Kuma's error body `{title, details}` as one line, or the start of whatever else was sent.
fn error_details(body: &str) -> String {
    let text = match serde_json::from_str::<ErrorBody>(body) {
        Ok(error) if !error.details.is_empty() => error.details,
        Ok(error) => error.title,
        Err(_) => body.to_string(),
    };
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None if line.is_empty() => "no details".to_string(),
        None => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_body_uses_kumas_field_names() {
        let mut request = BootstrapRequest {
            mesh: "default".into(),
            name: "redis-1".into(),
            admin_port: 9901,
            dataplane_token_path: "/tmp/token".into(),
            dataplane_token: String::new(),
            ca_cert: String::new(),
            dataplane_resource: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&request).unwrap(),
            r#"{"mesh":"default","name":"redis-1","adminPort":9901,"dataplaneTokenPath":"/tmp/token"}"#
        );
        request.dataplane_token = "secret-token".into();
        let json = serde_json::to_string(&request).unwrap();
        assert!(json.contains(r#""dataplaneToken":"secret-token""#), "{json}");
        assert!(!format!("{request:?}").contains("secret-token"));
    }

    #[test]
    fn error_details_prefer_kumas_details_and_stay_on_one_line() {
        let kuma = r#"{"title":"Could not get a bootstrap","details":"Dataplane not found"}"#;
        assert_eq!(error_details(kuma), "Dataplane not found");
        assert_eq!(error_details(r#"{"title":"Bad Request","details":""}"#), "Bad Request");
        assert_eq!(error_details("<html>\n  <b>oops</b>\n</html>"), "<html> <b>oops</b> </html>");
        assert_eq!(error_details(""), "no details");
        assert!(error_details(&"x".repeat(1000)).ends_with("..."));
    }

    #[test]
    fn urls_are_shown_as_written() {
        let url = Url::parse("http://127.0.0.1:5682").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1:5682");
        let url = Url::parse("http://cp:5682/prefix/").unwrap();
        assert_eq!(display_url(&url), "http://cp:5682/prefix");
    }
}
