//! The Mesh resource: mTLS certificate authorities and the logging, tracing and metrics backends
//! that policies refer to by name. Kuma 0.5's `{name, type, conf}` backends are the main form; the
//! 0.2-0.4 shapes (`mtls.enabled` + `ca`, `file`/`tcp`/`zipkin` keys, `metrics.prometheus`) are
//! accepted too and echoed as written.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mtls {
    /// Name of the backend in `backends` that issues certificates; unset means mTLS is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<CertificateAuthorityBackend>,
    /// Kuma 0.2-0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Kuma 0.2-0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<LegacyCa>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LegacyCa {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<Empty>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provided: Option<Empty>,
}

/// An empty object, `{}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthorityBackend {
    #[serde(default)]
    pub name: String,
    /// `builtin` or `provided`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<DpCert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<CaConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpCert {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<Rotation>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rotation {
    /// Lifetime of a dataplane certificate, e.g. `30d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// `conf` of a CA backend: `caCert` for builtin, `cert` + `key` for provided.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<CaCert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<CaDataSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<CaDataSource>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CaCert {
    #[serde(default, rename = "RSAbits", skip_serializing_if = "Option::is_none")]
    pub rsa_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

/// Where a provided certificate or key comes from: exactly one of the three.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaDataSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<LoggingBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingBackend {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `file` or `tcp` (0.5 form, with `conf`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<LoggingConf>,
    /// 0.2-0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<LoggingConf>,
    /// 0.2-0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<LoggingConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingConf {
    /// File backends: where Envoy writes the access log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// TCP backends: `HOST:PORT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<TracingBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingBackend {
    #[serde(default)]
    pub name: String,
    /// Percentage of requests traced, 0-100 (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<f64>,
    /// `zipkin` (0.5 form, with `conf`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<ZipkinConf>,
    /// 0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<ZipkinConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZipkinConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, rename = "traceId128bit", skip_serializing_if = "Option::is_none")]
    pub trace_id_128bit: Option<bool>,
    /// `httpJsonV1`, `httpJson` or `httpProto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled_backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<MetricsBackend>,
    /// 0.3.2-0.4 form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsBackend {
    #[serde(default)]
    pub name: String,
    /// `prometheus`.
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<PrometheusConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusConf {
    /// Default 5670.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Default `/metrics`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, rename = "skipMTLS", skip_serializing_if = "Option::is_none")]
    pub skip_mtls: Option<bool>,
}

impl MeshSpec {
    /// The CA that issues certificates, as `(name, type)`, when mTLS is on (either form).
    pub fn enabled_ca(&self) -> Option<(String, String)> {
        let mtls = self.mtls.as_ref()?;
        if let Some(name) = &mtls.enabled_backend {
            let backend = mtls.backends.iter().find(|b| &b.name == name)?;
            return Some((backend.name.clone(), backend.kind.clone()));
        }
        if mtls.enabled == Some(true) {
            let kind = match &mtls.ca {
                Some(LegacyCa { provided: Some(_), .. }) => "provided",
                _ => "builtin",
            };
            return Some((kind.to_string(), kind.to_string()));
        }
        None
    }

    /// The enabled CA backend of the 0.5 form (`enabledBackend`), with its `conf` and `dpCert`;
    /// `None` for the 0.4 form or when mTLS is off.
    pub fn enabled_ca_backend(&self) -> Option<&CertificateAuthorityBackend> {
        let mtls = self.mtls.as_ref()?;
        let name = mtls.enabled_backend.as_ref()?;
        mtls.backends.iter().find(|b| &b.name == name)
    }

    /// The lifetime of dataplane certificates as written (`dpCert.rotation.expiration`), if set.
    pub fn dp_cert_expiration(&self) -> Option<&str> {
        self.enabled_ca_backend()?.dp_cert.as_ref()?.rotation.as_ref()?.expiration.as_deref()
    }

    pub fn mtls_enabled(&self) -> bool {
        self.enabled_ca().is_some()
    }

    pub fn has_logging_backend(&self, name: &str) -> bool {
        self.logging.as_ref().is_some_and(|l| l.backends.iter().any(|b| b.name == name))
    }

    pub fn has_tracing_backend(&self, name: &str) -> bool {
        self.tracing.as_ref().is_some_and(|t| t.backends.iter().any(|b| b.name == name))
    }

    /// The enabled metrics backend's type (`prometheus`), if any.
    pub fn enabled_metrics(&self) -> Option<&str> {
        let metrics = self.metrics.as_ref()?;
        if metrics.prometheus.is_some() {
            return Some("prometheus");
        }
        let name = metrics.enabled_backend.as_ref()?;
        metrics.backends.iter().find(|b| &b.name == name).map(|b| b.kind.as_str())
    }
}

impl LoggingBackend {
    /// The backend type under either form: `file`, `tcp`, or what the user wrote.
    pub fn backend_type(&self) -> Option<&str> {
        match (&self.kind, &self.file, &self.tcp) {
            (Some(kind), _, _) => Some(kind.as_str()),
            (None, Some(_), _) => Some("file"),
            (None, None, Some(_)) => Some("tcp"),
            _ => None,
        }
    }
}
