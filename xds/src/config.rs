//! Settings of the xDS and bootstrap servers (`xdsServer` and `bootstrapServer` in kuma-cp's
//! config). Durations are written as Kuma writes them: `5s`, `500ms`.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the ADS server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XdsServerConfig {
    /// Port of the gRPC ADS server (`KUMA_XDS_SERVER_GRPC_PORT`).
    pub grpc_port: u16,
    /// How long a burst of store changes is gathered before configs are regenerated
    /// (`KUMA_XDS_SERVER_PUSH_DEBOUNCE`).
    #[serde(with = "kuma_model::duration_text")]
    pub push_debounce: Duration,
    /// After Envoy rejects a config, no newer config of that type is sent before this has passed
    /// (`KUMA_XDS_SERVER_NACK_BACKOFF`).
    #[serde(with = "kuma_model::duration_text")]
    pub nack_backoff: Duration,
    /// How often the status of connected dataplanes is written as DataplaneInsights
    /// (`KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL`).
    #[serde(with = "kuma_model::duration_text")]
    pub dataplane_status_flush_interval: Duration,
}

impl Default for XdsServerConfig {
    fn default() -> Self {
        XdsServerConfig {
            grpc_port: 5678,
            push_debounce: Duration::from_millis(50),
            nack_backoff: Duration::from_secs(5),
            dataplane_status_flush_interval: Duration::from_secs(1),
        }
    }
}

impl XdsServerConfig {
    /// Every problem, as `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.push_debounce > Duration::from_secs(10) {
            problems.push("xdsServer.pushDebounce: must be at most 10s".to_string());
        }
        if self.dataplane_status_flush_interval < Duration::from_millis(10) {
            problems
                .push("xdsServer.dataplaneStatusFlushInterval: must be at least 10ms".to_string());
        }
        problems
    }
}

/// How dataplanes reach and prove themselves to this peer (`dpServer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpServerConfig {
    pub auth: DpAuthConfig,
    pub tls: DpTlsConfig,
}

/// `dpServer.auth`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpAuthConfig {
    /// `dpToken` (a dataplane token on every bootstrap request and xDS/SDS stream) or `none`
    /// (development only) (`KUMA_DP_SERVER_AUTH_TYPE`).
    #[serde(rename = "type")]
    pub kind: crate::auth::DpAuthType,
}

/// `dpServer.tls`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DpTlsConfig {
    /// The bootstrap and xDS servers speak TLS; `false` serves them in plain text, for a trusted
    /// network only (`KUMA_DP_SERVER_TLS_ENABLED`). SDS always speaks TLS.
    pub enabled: bool,
}

impl Default for DpTlsConfig {
    fn default() -> Self {
        DpTlsConfig { enabled: true }
    }
}

/// Settings of the bootstrap server that kuma-dp asks for Envoy's bootstrap config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapServerConfig {
    /// Port of the HTTP bootstrap server (`KUMA_BOOTSTRAP_SERVER_PORT`).
    pub port: u16,
    pub params: BootstrapParams,
}

/// What goes into every generated bootstrap.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BootstrapParams {
    /// Address Envoy's admin binds to (`KUMA_BOOTSTRAP_SERVER_PARAMS_ADMIN_ADDRESS`).
    pub admin_address: String,
    /// Host Envoy dials for ADS; empty means the host kuma-dp used to reach this bootstrap
    /// server (`KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_HOST`).
    pub xds_host: String,
    /// Port Envoy dials for ADS; 0 means this peer's `xdsServer.grpcPort`
    /// (`KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_PORT`).
    pub xds_port: u16,
    /// Connect timeout of Envoy's `ads_cluster` (`KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_CONNECT_TIMEOUT`).
    #[serde(with = "kuma_model::duration_text")]
    pub xds_connect_timeout: Duration,
    /// `GRPC` (state of the world) or `DELTA_GRPC` (incremental)
    /// (`KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_API_TYPE`).
    pub xds_api_type: XdsApiType,
}

/// How Envoy talks ADS: state of the world or incremental.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum XdsApiType {
    #[default]
    #[serde(rename = "GRPC")]
    Grpc,
    #[serde(rename = "DELTA_GRPC")]
    DeltaGrpc,
}

impl Default for BootstrapServerConfig {
    fn default() -> Self {
        BootstrapServerConfig {
            port: 5682,
            params: BootstrapParams {
                admin_address: "127.0.0.1".to_string(),
                xds_host: String::new(),
                xds_port: 0,
                xds_connect_timeout: Duration::from_secs(1),
                xds_api_type: XdsApiType::Grpc,
            },
        }
    }
}

impl BootstrapServerConfig {
    /// Every problem, as `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.params.admin_address.parse::<std::net::IpAddr>().is_err() {
            problems.push(format!(
                "bootstrapServer.params.adminAddress: {:?} is not an IP address",
                self.params.admin_address
            ));
        }
        if self.params.xds_connect_timeout.is_zero() {
            problems.push("bootstrapServer.params.xdsConnectTimeout: must be above 0".to_string());
        }
        problems
    }
}
