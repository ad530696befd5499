//! kuma-cp's configuration: the checked-in defaults YAML, overridden by a config file, overridden
//! by `KUMA_*` environment variables. Every key has an environment variable, derived from its path
//! (`apiServer.port` -> `KUMA_API_SERVER_PORT`), so no variable is ever forgotten.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kuma_api_server::ApiServerConfig;
use kuma_xds::{BootstrapServerConfig, DpServerConfig, XdsServerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The defaults, as shipped; a test keeps them equal to `KumaCpConfig::default()`.
pub const DEFAULTS_YAML: &str = include_str!("../kuma-cp.defaults.yaml");

/// Where kuma-cp runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// VMs and bare metal: resources come through the HTTP API.
    #[default]
    Universal,
    /// Inside Kubernetes: resources are Kuma's CRDs in the API server (the only store there),
    /// Pods become Dataplanes, the injector adds kuma-dp, and the HTTP API is read-only.
    Kubernetes,
}

/// Which backend holds the resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    /// In this process; lost on restart; one control plane only.
    #[default]
    Memory,
    /// Replicated between kuma-cp peers through a Raft log on each peer's disk.
    Raft,
    /// Kuma's CRDs in the Kubernetes API server (environment kubernetes).
    Kubernetes,
    /// A PostgreSQL database that several kuma-cp instances may share (`store.postgres`).
    Postgres,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoreConfig {
    #[serde(rename = "type")]
    pub kind: StoreType,
    pub raft: RaftStoreConfig,
    pub kubernetes: KubernetesStoreConfig,
    /// Where the database is (`store.postgres`, KUMA_STORE_POSTGRES_*); `Debug` never shows
    /// the password.
    pub postgres: kuma_store_postgres::PostgresConfig,
}

/// Settings of the Kubernetes store (`store.kubernetes`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesStoreConfig {
    /// Where the control plane keeps its Secrets and Leases (KUMA_STORE_KUBERNETES_SYSTEM_NAMESPACE).
    pub system_namespace: String,
}

impl Default for KubernetesStoreConfig {
    fn default() -> Self {
        KubernetesStoreConfig { system_namespace: "kuma-system".to_string() }
    }
}

/// Settings of the Kubernetes runtime (`runtime.kubernetes`): the admission webhook server and
/// the sidecar injector.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuntimeConfig {
    pub kubernetes: KubernetesRuntimeConfig,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KubernetesRuntimeConfig {
    pub admission_server: AdmissionServerConfig,
    /// The Service in front of the control plane, which injected sidecars dial
    /// (KUMA_RUNTIME_KUBERNETES_CONTROL_PLANE_SERVICE_NAME).
    pub control_plane_service_name: String,
    pub injector: InjectorSettings,
}

impl Default for KubernetesRuntimeConfig {
    fn default() -> Self {
        KubernetesRuntimeConfig {
            admission_server: AdmissionServerConfig::default(),
            control_plane_service_name: "kuma-control-plane".to_string(),
            injector: InjectorSettings::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AdmissionServerConfig {
    /// HTTPS port of the admission webhooks (KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_PORT).
    pub port: u16,
    /// Directory with `tls.crt` and `tls.key` for it, as the install manifest mounts them
    /// (KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR).
    pub cert_dir: String,
}

impl Default for AdmissionServerConfig {
    fn default() -> Self {
        AdmissionServerConfig { port: 5443, cert_dir: "/var/run/secrets/kuma.io/tls-cert".into() }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectorSettings {
    /// The kuma-dp image of injected sidecars
    /// (KUMA_RUNTIME_KUBERNETES_INJECTOR_SIDECAR_CONTAINER_IMAGE).
    pub sidecar_container_image: String,
    /// The image of the transparent-proxy init container
    /// (KUMA_RUNTIME_KUBERNETES_INJECTOR_INIT_CONTAINER_IMAGE).
    pub init_container_image: String,
}

impl Default for InjectorSettings {
    fn default() -> Self {
        InjectorSettings {
            sidecar_container_image: "kuma-rs/kuma-dp:latest".to_string(),
            init_container_image: "kuma-rs/kuma-init:latest".to_string(),
        }
    }
}

/// Settings of the Raft store (`store.raft`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RaftStoreConfig {
    /// This peer's id, unique in the cluster and never reused (KUMA_STORE_RAFT_NODE_ID).
    pub node_id: u64,
    /// Every peer of the cluster as `ID=HOST:PORT,...`; empty means a cluster of this peer alone
    /// (KUMA_STORE_RAFT_PEERS).
    pub peers: String,
    /// Where this peer keeps its Raft log and snapshots (KUMA_STORE_RAFT_DATA_DIR).
    pub data_dir: String,
    /// Start without forming a cluster and wait to be added to a running one
    /// (KUMA_STORE_RAFT_JOIN).
    pub join: bool,
    #[serde(with = "kuma_model::duration_text")]
    pub heartbeat_interval: Duration,
    #[serde(with = "kuma_model::duration_text")]
    pub election_timeout_min: Duration,
    #[serde(with = "kuma_model::duration_text")]
    pub election_timeout_max: Duration,
    /// How long a write waits for a leader before failing with 503 (KUMA_STORE_RAFT_WRITE_TIMEOUT).
    #[serde(with = "kuma_model::duration_text")]
    pub write_timeout: Duration,
    pub tls: RaftTlsConfig,
    /// Addresses this peer dials to reach some peers when they differ from those in `peers`
    /// (NAT, a proxy in between), as `ID=HOST:PORT,...` (KUMA_STORE_RAFT_DIAL_ADDRESSES).
    pub dial_addresses: String,
    /// Peers talk without TLS: only for a test cluster on a trusted network
    /// (KUMA_STORE_RAFT_INSECURE).
    pub insecure: bool,
    /// Make this peer the only member of its cluster before it starts, keeping its data: only
    /// from `kuma-cp run --force-new-cluster`, never from a file or the environment, where it
    /// would outlive the one start it is meant for.
    #[serde(skip)]
    pub force_new_cluster: bool,
    /// A snapshot is built once this many entries were appended since the last one
    /// (KUMA_STORE_RAFT_SNAPSHOT_ENTRIES) ...
    pub snapshot_entries: u64,
    /// ... or this many bytes (KUMA_STORE_RAFT_SNAPSHOT_BYTES).
    pub snapshot_bytes: u64,
    /// As leader, send new entries to idle followers while writing them to this peer's own disk,
    /// so the two fsyncs of a lone write overlap; nothing is acknowledged before a majority holds
    /// it on disk either way (KUMA_STORE_RAFT_EARLY_REPLICATION).
    pub early_replication: bool,
    pub autopilot: RaftAutopilotConfig,
}

/// Removing dead peers (`store.raft.autopilot`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RaftAutopilotConfig {
    /// A voter no peer heard from for this long is removed; 0s: never
    /// (KUMA_STORE_RAFT_AUTOPILOT_REMOVE_DEAD_AFTER).
    #[serde(with = "kuma_model::duration_text")]
    pub remove_dead_after: Duration,
    /// Never below this many voters (KUMA_STORE_RAFT_AUTOPILOT_MIN_QUORUM).
    pub min_quorum: u64,
}

/// The peers' mutual TLS files (`kuma-cp raft certs` writes them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RaftTlsConfig {
    /// The cluster CA certificate (KUMA_STORE_RAFT_TLS_CA_FILE).
    pub ca_file: String,
    /// This peer's certificate (KUMA_STORE_RAFT_TLS_CERT_FILE).
    pub cert_file: String,
    /// This peer's private key (KUMA_STORE_RAFT_TLS_KEY_FILE).
    pub key_file: String,
}

impl Default for RaftStoreConfig {
    fn default() -> Self {
        RaftStoreConfig {
            node_id: 1,
            peers: String::new(),
            data_dir: "/var/lib/kuma-cp/raft".to_string(),
            join: false,
            heartbeat_interval: Duration::from_millis(50),
            election_timeout_min: Duration::from_millis(200),
            election_timeout_max: Duration::from_millis(400),
            write_timeout: Duration::from_secs(5),
            tls: RaftTlsConfig::default(),
            dial_addresses: String::new(),
            insecure: false,
            force_new_cluster: false,
            snapshot_entries: 5000,
            snapshot_bytes: 64 * 1024 * 1024,
            early_replication: true,
            autopilot: RaftAutopilotConfig { remove_dead_after: Duration::ZERO, min_quorum: 3 },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortConfig {
    pub port: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcPortConfig {
    pub grpc_port: u16,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultsConfig {
    /// Do not create the `default` mesh on first start.
    pub skip_mesh_creation: bool,
}

/// Settings shared by several servers (`general`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GeneralConfig {
    /// The certificate (chain, PEM) the bootstrap, xDS and SDS servers present; empty means one
    /// issued to this peer by the control plane's own CA (KUMA_GENERAL_TLS_CERT_FILE).
    pub tls_cert_file: String,
    /// Its private key (KUMA_GENERAL_TLS_KEY_FILE).
    pub tls_key_file: String,
}

/// Kuma's MADS port. Unlike the other servers', a taken default port does not stop kuma-cp
/// (MADS is then not served, and the log says so): several peers of one host each set their ports,
/// and only an operator who asked for MADS on a port needs it there.
pub const DEFAULT_MADS_PORT: u16 = 5676;

/// The whole configuration of one kuma-cp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KumaCpConfig {
    pub environment: Environment,
    pub general: GeneralConfig,
    pub store: StoreConfig,
    pub api_server: ApiServerConfig,
    pub bootstrap_server: BootstrapServerConfig,
    pub sds_server: GrpcPortConfig,
    /// MADS, the monitoring assignments kuma-prometheus-sd follows
    /// (KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT; 0 turns it off).
    pub monitoring_assignment_server: GrpcPortConfig,
    pub xds_server: XdsServerConfig,
    pub dp_server: DpServerConfig,
    pub diagnostics: PortConfig,
    pub raft: PortConfig,
    pub defaults: DefaultsConfig,
    pub runtime: RuntimeConfig,
}

impl Default for KumaCpConfig {
    fn default() -> Self {
        KumaCpConfig {
            environment: Environment::Universal,
            general: GeneralConfig::default(),
            store: StoreConfig::default(),
            api_server: ApiServerConfig::default(),
            bootstrap_server: BootstrapServerConfig::default(),
            sds_server: GrpcPortConfig { grpc_port: 5677 },
            monitoring_assignment_server: GrpcPortConfig { grpc_port: DEFAULT_MADS_PORT },
            xds_server: XdsServerConfig::default(),
            dp_server: DpServerConfig::default(),
            diagnostics: PortConfig { port: 5680 },
            raft: PortConfig { port: 5683 },
            defaults: DefaultsConfig::default(),
            runtime: RuntimeConfig::default(),
        }
    }
}

/// Why the configuration could not be loaded; each says what to fix. A file that cannot be read
/// keeps the cause out of the message: it is the `source`, printed after it (`{:#}`), once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {path} (check the path given with -c/--config-file)")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid YAML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{var}={value:?} is not valid: expected {expected}")]
    Env { var: String, value: String, expected: &'static str },
    #[error("{field}: {message} (set by {origin})")]
    Field { field: String, message: String, origin: String },
    #[error("invalid configuration: {}", problems.join("; "))]
    Invalid { problems: Vec<String> },
}

/// `apiServer.port` -> `KUMA_API_SERVER_PORT`.
pub fn env_var_name(path: &[&str]) -> String {
    let mut name = String::from("KUMA");
    for segment in path {
        name.push('_');
        for c in segment.chars() {
            if c.is_ascii_uppercase() {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
    }
    name
}

fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (k, v) in overlay {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Applies `KUMA_*` variables to every leaf the defaults have; records which paths they set.
fn apply_env(
    value: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    set: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if let Value::Object(map) = value {
        for (key, child) in map.iter_mut() {
            path.push(key.clone());
            apply_env(child, path, env, set)?;
            path.pop();
        }
        return Ok(());
    }
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let var = env_var_name(&segments);
    let Some(raw) = env(&var) else { return Ok(()) };
    let parsed = match value {
        Value::Number(_) => {
            raw.trim().parse::<u64>().map(Value::from).map_err(|_| "a non-negative integer")
        }
        Value::Bool(_) => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err("true or false"),
        },
        _ => Ok(Value::String(raw.clone())),
    };
    *value =
        parsed.map_err(|expected| ConfigError::Env { var: var.clone(), value: raw, expected })?;
    set.insert(segments.join("."), var);
    Ok(())
}

impl KumaCpConfig {
    /// Loads defaults < `file` < environment (read through `env`, so tests inject it).
    pub fn load(
        file: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<KumaCpConfig, ConfigError> {
        let mut value =
            serde_json::to_value(KumaCpConfig::default()).expect("the config serializes");
        let mut file_sets_dp_auth = false;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
            let overlay: Value = serde_yaml::from_str(&text).map_err(|e| ConfigError::Syntax {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            file_sets_dp_auth = overlay.pointer("/dpServer/auth/type").is_some();
            if !overlay.is_null() {
                merge(&mut value, overlay);
            }
        }
        let mut from_env = BTreeMap::new();
        apply_env(&mut value, &mut Vec::new(), env, &mut from_env)?;
        let dp_auth_chosen = from_env.contains_key("dpServer.auth.type") || file_sets_dp_auth;

        let config: KumaCpConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = e.path().to_string();
            let origin = match from_env.get(&field) {
                Some(var) => format!("environment variable {var}"),
                None => match file {
                    Some(path) => format!("config file {}", path.display()),
                    None => "the defaults".to_string(),
                },
            };
            ConfigError::Field { field, message: e.inner().to_string(), origin }
        })?;
        let mut config = config;
        if config.environment == Environment::Kubernetes && config.store.kind == StoreType::Memory {
            // On Kubernetes the API server is the store: KUMA_ENVIRONMENT=kubernetes is enough.
            config.store.kind = StoreType::Kubernetes;
        }
        if config.environment == Environment::Kubernetes && !dp_auth_chosen {
            // Sidecars prove themselves with their pod's service-account token, as in Kuma.
            config.dp_server.auth.kind = kuma_xds::DpAuthType::ServiceAccountToken;
        }
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(ConfigError::Invalid { problems });
        }
        Ok(config)
    }

    /// The Raft store's settings, checked; every problem as `field: message`.
    pub fn raft_config(&self) -> Result<kuma_raft::RaftConfig, Vec<String>> {
        let raft = &self.store.raft;
        let mut peers = kuma_raft::RaftConfig::parse_peers(&raft.peers)
            .map_err(|e| vec![format!("store.raft.peers: {e}")])?;
        let alone = peers.is_empty() && !raft.join;
        if alone {
            peers.insert(raft.node_id, format!("127.0.0.1:{}", self.raft.port));
        }
        let tls = self.raft_tls(alone)?;
        let params = &self.bootstrap_server.params;
        let host = if params.xds_host.is_empty() {
            peers
                .get(&raft.node_id)
                .and_then(|a| a.rsplit_once(':'))
                .map_or("127.0.0.1".to_string(), |(host, _)| host.to_string())
        } else {
            params.xds_host.clone()
        };
        let xds_port =
            if params.xds_port == 0 { self.xds_server.grpc_port } else { params.xds_port };
        let bootstrap_scheme = if self.dp_server.tls.enabled { "https" } else { "http" };
        let config = kuma_raft::RaftConfig {
            node_id: raft.node_id,
            peers,
            data_dir: PathBuf::from(&raft.data_dir),
            port: self.raft.port,
            join: raft.join,
            heartbeat: raft.heartbeat_interval,
            election_timeout_min: raft.election_timeout_min,
            election_timeout_max: raft.election_timeout_max,
            write_timeout: raft.write_timeout,
            serves: kuma_raft::PeerInfo {
                id: raft.node_id,
                instance_id: self.instance_id(),
                xds_address: format!("{host}:{xds_port}"),
                api_url: format!("http://{host}:{}", self.api_server.port),
                bootstrap_url: format!(
                    "{bootstrap_scheme}://{host}:{}",
                    self.bootstrap_server.port
                ),
            },
            tls,
            // A development peer alone needs no one to reach its peer RPC.
            listen_loopback_only: alone,
            dial_overrides: kuma_raft::RaftConfig::parse_peers(&raft.dial_addresses)
                .map_err(|e| vec![format!("store.raft.dialAddresses: {e}")])?,
            force_new_cluster: raft.force_new_cluster,
            early_replication: raft.early_replication,
            upkeep: kuma_raft::Upkeep {
                snapshot_entries: raft.snapshot_entries,
                snapshot_bytes: raft.snapshot_bytes,
                remove_dead_after: (!raft.autopilot.remove_dead_after.is_zero())
                    .then_some(raft.autopilot.remove_dead_after),
                min_quorum: raft.autopilot.min_quorum as usize,
            },
        };
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    /// The peers' TLS material, read from the configured files. Required unless this peer is
    /// alone or the cluster is explicitly insecure.
    fn raft_tls(&self, alone: bool) -> Result<Option<kuma_raft::PeerTls>, Vec<String>> {
        let tls = &self.store.raft.tls;
        let files = [
            ("store.raft.tls.caFile", "KUMA_STORE_RAFT_TLS_CA_FILE", &tls.ca_file),
            ("store.raft.tls.certFile", "KUMA_STORE_RAFT_TLS_CERT_FILE", &tls.cert_file),
            ("store.raft.tls.keyFile", "KUMA_STORE_RAFT_TLS_KEY_FILE", &tls.key_file),
        ];
        if files.iter().all(|(_, _, f)| f.is_empty()) {
            if alone || self.store.raft.insecure {
                return Ok(None);
            }
            return Err(vec![
                "store.raft.tls: peers must authenticate each other: set KUMA_STORE_RAFT_TLS_CA_FILE, \
                 KUMA_STORE_RAFT_TLS_CERT_FILE and KUMA_STORE_RAFT_TLS_KEY_FILE (kuma-cp raft certs \
                 writes them), or KUMA_STORE_RAFT_INSECURE=true for a test cluster on a trusted network"
                    .to_string(),
            ]);
        }
        let mut problems = Vec::new();
        let mut read = |(field, var, path): &(&str, &str, &String)| {
            if path.is_empty() {
                problems.push(format!("{field}: must be set with the other TLS files ({var})"));
                return String::new();
            }
            std::fs::read_to_string(path).unwrap_or_else(|e| {
                problems.push(format!("{field}: cannot read {path} ({var}): {e}"));
                String::new()
            })
        };
        let (ca_pem, cert_pem, key_pem) = (read(&files[0]), read(&files[1]), read(&files[2]));
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Some(kuma_raft::PeerTls {
            ca_pem,
            cert_pem,
            key_pem,
            server_name: kuma_ca::PEER_SERVER_NAME.to_string(),
        }))
    }

    /// Names this peer in DataplaneInsights: the host name, and the xDS port that tells peers on
    /// one host apart.
    pub fn instance_id(&self) -> String {
        let host = gethostname::gethostname().to_string_lossy().into_owned();
        format!("{host}:{}", self.xds_server.grpc_port)
    }

    /// Every server port with its key.
    pub fn ports(&self) -> [(&'static str, u16); 7] {
        [
            ("apiServer.port", self.api_server.port),
            ("apiServer.https.port", self.api_server.https.port),
            ("bootstrapServer.port", self.bootstrap_server.port),
            ("sdsServer.grpcPort", self.sds_server.grpc_port),
            ("xdsServer.grpcPort", self.xds_server.grpc_port),
            ("diagnostics.port", self.diagnostics.port),
            ("raft.port", self.raft.port),
        ]
    }

    /// Checks what serde cannot: every problem, as `field: message`.
    pub fn validate(&self) -> Vec<String> {
        let mut problems: Vec<String> =
            self.api_server.validate().into_iter().map(|p| format!("apiServer.{p}")).collect();
        problems.extend(self.xds_server.problems());
        if self.store.kind == StoreType::Raft {
            problems.extend(self.raft_config().err().into_iter().flatten());
        }
        if self.store.kind == StoreType::Postgres {
            if let Err(e) = self.store.postgres.validate() {
                problems.extend(e.problems);
            }
        }
        problems.extend(self.bootstrap_server.problems());
        let general = &self.general;
        if general.tls_cert_file.is_empty() != general.tls_key_file.is_empty() {
            problems.push(
                "general.tlsCertFile, general.tlsKeyFile: set both (KUMA_GENERAL_TLS_CERT_FILE and \
                 KUMA_GENERAL_TLS_KEY_FILE) or neither"
                    .to_string(),
            );
        }
        match (self.environment, self.store.kind) {
            (Environment::Kubernetes, StoreType::Kubernetes)
            | (
                Environment::Universal,
                StoreType::Memory | StoreType::Raft | StoreType::Postgres,
            ) => {}
            (Environment::Kubernetes, other) => {
                let name = match other {
                    StoreType::Raft => "raft",
                    StoreType::Postgres => "postgres",
                    _ => "memory",
                };
                problems.push(format!(
                    "store.type: {name} runs in universal mode; on Kubernetes the store is the API \
                     server (unset KUMA_STORE_TYPE or set it to kubernetes)"
                ))
            }
            (Environment::Universal, StoreType::Kubernetes) => problems.push(
                "store.type: kubernetes needs environment kubernetes (set KUMA_ENVIRONMENT=kubernetes)"
                    .to_string(),
            ),
        }
        let ports = self.ports();
        let mads = self.monitoring_assignment_server.grpc_port;
        if let Some((other, _)) = ports.iter().find(|(_, p)| mads != 0 && *p == mads) {
            problems.push(format!(
                "monitoringAssignmentServer.grpcPort: port {mads} is already used by {other}; give each server its own port"
            ));
        }
        for (i, (name, port)) in ports.iter().enumerate() {
            if *port == 0 {
                problems.push(format!("{name}: 0 is not a port; use 1-65535"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| p == port) {
                problems.push(format!(
                    "{name}: port {port} is already used by {other}; give each server its own port"
                ));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| vars.get(k).cloned()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn checked_in_defaults_equal_the_default_config() {
        let parsed: KumaCpConfig = serde_yaml::from_str(DEFAULTS_YAML).unwrap();
        assert_eq!(parsed, KumaCpConfig::default());
    }

    #[test]
    fn every_port_has_its_documented_variable_and_default() {
        let c = KumaCpConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c.ports().map(|(_, port)| port), [5681, 5684, 5682, 5677, 5678, 5680, 5683]);
        let vars = [
            ("KUMA_API_SERVER_HTTPS_PORT", "6684"),
            ("KUMA_SDS_SERVER_GRPC_PORT", "6677"),
            ("KUMA_XDS_SERVER_GRPC_PORT", "6678"),
            ("KUMA_DIAGNOSTICS_PORT", "6680"),
            ("KUMA_API_SERVER_PORT", "6681"),
            ("KUMA_BOOTSTRAP_SERVER_PORT", "6682"),
            ("KUMA_RAFT_PORT", "6683"),
        ];
        let c = KumaCpConfig::load(None, &env(&vars)).unwrap();
        assert_eq!(c.ports().map(|(_, port)| port), [6681, 6684, 6682, 6677, 6678, 6680, 6683]);
    }

    #[test]
    fn env_overrides_file_which_overrides_defaults() {
        let f = file("apiServer:\n  port: 7000\n  readOnly: true\n");
        let c =
            KumaCpConfig::load(Some(f.path()), &env(&[("KUMA_API_SERVER_PORT", "7001")])).unwrap();
        assert_eq!(c.api_server.port, 7001);
        assert!(c.api_server.read_only);
        assert_eq!(c.diagnostics.port, 5680);
    }

    #[test]
    fn store_type_memory_is_the_default_and_unknown_types_name_the_variable() {
        assert_eq!(KumaCpConfig::load(None, &env(&[])).unwrap().store.kind, StoreType::Memory);
        let err =
            KumaCpConfig::load(None, &env(&[("KUMA_STORE_TYPE", "etcd")])).unwrap_err().to_string();
        assert!(
            err.contains("store.type") && err.contains("KUMA_STORE_TYPE") && err.contains("memory"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_in_the_file_is_refused_with_its_path() {
        let f = file("apiServer:\n  prot: 7000\n");
        let err = KumaCpConfig::load(Some(f.path()), &env(&[])).unwrap_err().to_string();
        assert!(err.contains("apiServer") && err.contains("prot"), "{err}");
    }

    #[test]
    fn malformed_env_value_names_the_variable() {
        let err = KumaCpConfig::load(None, &env(&[("KUMA_API_SERVER_PORT", "http")]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "KUMA_API_SERVER_PORT=\"http\" is not valid: expected a non-negative integer"
        );
        let err = KumaCpConfig::load(None, &env(&[("KUMA_API_SERVER_PORT", "70000")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("apiServer.port") && err.contains("KUMA_API_SERVER_PORT"), "{err}");
    }

    #[test]
    fn two_servers_on_one_port_are_refused() {
        let err = KumaCpConfig::load(None, &env(&[("KUMA_DIAGNOSTICS_PORT", "5681")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("diagnostics.port: port 5681 is already used by apiServer.port"),
            "{err}"
        );
    }

    #[test]
    fn raft_settings_come_from_their_documented_variables() {
        let c = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "raft"),
                ("KUMA_STORE_RAFT_NODE_ID", "2"),
                ("KUMA_STORE_RAFT_PEERS", "1=10.0.0.1:5683,2=10.0.0.2:5683,3=10.0.0.3:5683"),
                ("KUMA_STORE_RAFT_DATA_DIR", "/data/raft"),
                ("KUMA_STORE_RAFT_INSECURE", "true"),
                ("KUMA_RAFT_PORT", "7683"),
            ]),
        )
        .unwrap();
        let raft = c.raft_config().unwrap();
        assert_eq!((raft.node_id, raft.port, raft.peers.len()), (2, 7683, 3));
        assert_eq!(raft.data_dir, PathBuf::from("/data/raft"));
        // Peers reach this one where the peer list says, on its own ports.
        assert_eq!(raft.serves.xds_address, "10.0.0.2:5678");
        assert_eq!(raft.serves.api_url, "http://10.0.0.2:5681");
        assert!(raft.tls.is_none() && !raft.listen_loopback_only);
    }

    #[test]
    fn raft_upkeep_comes_from_its_documented_variables_and_is_checked() {
        let c = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "raft"),
                ("KUMA_STORE_RAFT_SNAPSHOT_ENTRIES", "2000"),
                ("KUMA_STORE_RAFT_SNAPSHOT_BYTES", "8388608"),
                ("KUMA_STORE_RAFT_AUTOPILOT_REMOVE_DEAD_AFTER", "30m"),
                ("KUMA_STORE_RAFT_AUTOPILOT_MIN_QUORUM", "5"),
            ]),
        )
        .unwrap();
        let upkeep = c.raft_config().unwrap().upkeep;
        assert_eq!((upkeep.snapshot_entries, upkeep.snapshot_bytes), (2000, 8 * 1024 * 1024));
        assert_eq!(upkeep.remove_dead_after, Some(Duration::from_secs(30 * 60)));
        assert_eq!(upkeep.min_quorum, 5);
        // Off unless set.
        let c = KumaCpConfig::load(None, &env(&[("KUMA_STORE_TYPE", "raft")])).unwrap();
        assert_eq!(c.raft_config().unwrap().upkeep.remove_dead_after, None);

        let err = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "raft"),
                ("KUMA_STORE_RAFT_AUTOPILOT_REMOVE_DEAD_AFTER", "1h"),
                ("KUMA_STORE_RAFT_AUTOPILOT_MIN_QUORUM", "1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("store.raft.autopilot.minQuorum: must be 3 or more"), "{err}");
    }

    #[test]
    fn a_raft_peer_alone_needs_no_peers_and_listens_on_loopback() {
        let c = KumaCpConfig::load(None, &env(&[("KUMA_STORE_TYPE", "raft")])).unwrap();
        let raft = c.raft_config().unwrap();
        assert_eq!(raft.peers[&1], "127.0.0.1:5683");
        assert!(raft.listen_loopback_only && raft.tls.is_none());
    }

    #[test]
    fn a_raft_cluster_without_tls_files_is_refused_with_the_variables_to_set() {
        let err = KumaCpConfig::load(
            None,
            &env(&[("KUMA_STORE_TYPE", "raft"), ("KUMA_STORE_RAFT_PEERS", "1=a:1,2=b:1,3=c:1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("KUMA_STORE_RAFT_TLS_CA_FILE") && err.contains("kuma-cp raft certs"),
            "{err}"
        );
        let err = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "raft"),
                ("KUMA_STORE_RAFT_PEERS", "1=a:1,2=b:1"),
                ("KUMA_STORE_RAFT_TLS_CA_FILE", "/nonexistent/ca.crt"),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/nonexistent/ca.crt") && err.contains("KUMA_STORE_RAFT_TLS_CERT_FILE"),
            "{err}"
        );
    }

    #[test]
    fn malformed_raft_peers_name_the_field() {
        let err = KumaCpConfig::load(
            None,
            &env(&[("KUMA_STORE_TYPE", "raft"), ("KUMA_STORE_RAFT_PEERS", "1=10.0.0.1")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("store.raft.peers") && err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn the_mads_port_is_kumas_and_set_by_its_variable() {
        let c = KumaCpConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c.monitoring_assignment_server.grpc_port, 5676);
        let vars = [("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", "6676")];
        let c = KumaCpConfig::load(None, &env(&vars)).unwrap();
        assert_eq!(c.monitoring_assignment_server.grpc_port, 6676);
        let clash = [("KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT", "5681")];
        match KumaCpConfig::load(None, &env(&clash)) {
            Err(ConfigError::Invalid { problems }) => assert!(
                problems.iter().any(|p| p.starts_with("monitoringAssignmentServer.grpcPort")),
                "{problems:?}"
            ),
            other => panic!("a MADS port taken by the API is refused, not {other:?}"),
        }
    }

    #[test]
    fn env_var_names_follow_the_key_path() {
        assert_eq!(env_var_name(&["apiServer", "readOnly"]), "KUMA_API_SERVER_READ_ONLY");
        assert_eq!(
            env_var_name(&["defaults", "skipMeshCreation"]),
            "KUMA_DEFAULTS_SKIP_MESH_CREATION"
        );
    }

    #[test]
    fn kubernetes_environment_brings_its_store_and_service_account_tokens() {
        let c = KumaCpConfig::load(None, &env(&[("KUMA_ENVIRONMENT", "kubernetes")])).unwrap();
        assert_eq!(c.store.kind, StoreType::Kubernetes);
        assert_eq!(c.store.kubernetes.system_namespace, "kuma-system");
        assert_eq!(c.dp_server.auth.kind, kuma_xds::DpAuthType::ServiceAccountToken);
        assert_eq!(c.runtime.kubernetes.admission_server.port, 5443);
        // An explicit choice of dataplane auth stays, from the environment or the file.
        let c = KumaCpConfig::load(
            None,
            &env(&[("KUMA_ENVIRONMENT", "kubernetes"), ("KUMA_DP_SERVER_AUTH_TYPE", "dpToken")]),
        )
        .unwrap();
        assert_eq!(c.dp_server.auth.kind, kuma_xds::DpAuthType::DpToken);
        let f = file("dpServer:\n  auth:\n    type: none\n");
        let c = KumaCpConfig::load(Some(f.path()), &env(&[("KUMA_ENVIRONMENT", "kubernetes")]))
            .unwrap();
        assert_eq!(c.dp_server.auth.kind, kuma_xds::DpAuthType::None);
        // Universal keeps dataplane tokens.
        let c = KumaCpConfig::load(None, &env(&[])).unwrap();
        assert_eq!(c.dp_server.auth.kind, kuma_xds::DpAuthType::DpToken);
    }

    #[test]
    fn a_store_of_the_other_environment_is_refused_with_what_to_set() {
        let err = KumaCpConfig::load(
            None,
            &env(&[("KUMA_ENVIRONMENT", "kubernetes"), ("KUMA_STORE_TYPE", "raft")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("store.type: raft") && err.contains("KUMA_STORE_TYPE"), "{err}");
        let err = KumaCpConfig::load(None, &env(&[("KUMA_STORE_TYPE", "kubernetes")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("KUMA_ENVIRONMENT=kubernetes"), "{err}");
    }

    #[test]
    fn postgres_settings_come_from_their_documented_variables() {
        let c = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "postgres"),
                ("KUMA_STORE_POSTGRES_HOST", "db.internal"),
                ("KUMA_STORE_POSTGRES_PORT", "5432"),
                ("KUMA_STORE_POSTGRES_USER", "kuma-cp"),
                ("KUMA_STORE_POSTGRES_PASSWORD", "s3cret-pw"),
                ("KUMA_STORE_POSTGRES_DB_NAME", "mesh"),
                ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "3"),
                ("KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS", "8"),
                ("KUMA_STORE_POSTGRES_TLS_MODE", "verify-full"),
                ("KUMA_STORE_POSTGRES_TLS_CERT_PATH", "/tls/client.crt"),
                ("KUMA_STORE_POSTGRES_TLS_KEY_PATH", "/tls/client.key"),
                ("KUMA_STORE_POSTGRES_TLS_CA_PATH", "/tls/ca.crt"),
            ]),
        )
        .unwrap();
        assert_eq!(c.store.kind, StoreType::Postgres);
        let pg = &c.store.postgres;
        assert_eq!((pg.host.as_str(), pg.port), ("db.internal", 5432));
        assert_eq!((pg.user.as_str(), pg.password.as_str()), ("kuma-cp", "s3cret-pw"));
        assert_eq!(pg.db_name, "mesh");
        assert_eq!(pg.connection_timeout, Duration::from_secs(3));
        assert_eq!(pg.max_open_connections, 8);
        assert_eq!(pg.tls.mode, kuma_store_postgres::TlsMode::VerifyFull);
        assert_eq!(pg.tls.cert_path.as_deref(), Some(Path::new("/tls/client.crt")));
        assert_eq!(pg.tls.key_path.as_deref(), Some(Path::new("/tls/client.key")));
        assert_eq!(pg.tls.ca_path.as_deref(), Some(Path::new("/tls/ca.crt")));
    }

    #[test]
    fn postgres_settings_come_from_the_file_and_the_environment_wins() {
        let f = file(
            "store:\n  type: postgres\n  postgres:\n    host: db.file\n    password: from-file\n    \
             connectionTimeout: 7\n    tls:\n      mode: require\n",
        );
        let c = KumaCpConfig::load(Some(f.path()), &env(&[("KUMA_STORE_POSTGRES_HOST", "db.env")]))
            .unwrap();
        let pg = &c.store.postgres;
        assert_eq!((pg.host.as_str(), pg.password.as_str()), ("db.env", "from-file"));
        assert_eq!(pg.connection_timeout, Duration::from_secs(7));
        assert_eq!(pg.tls.mode, kuma_store_postgres::TlsMode::Require);
        assert_eq!((pg.port, pg.db_name.as_str()), (15432, "kuma"));
    }

    #[test]
    fn a_bad_postgres_config_reports_every_problem_with_its_variable() {
        let err = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "postgres"),
                ("KUMA_STORE_POSTGRES_HOST", ""),
                ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "0"),
                ("KUMA_STORE_POSTGRES_TLS_MODE", "verify-ca"),
                ("KUMA_DIAGNOSTICS_PORT", "5681"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for part in [
            "KUMA_STORE_POSTGRES_HOST",
            "KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT",
            "KUMA_STORE_POSTGRES_TLS_CA_PATH",
            "diagnostics.port",
        ] {
            assert!(err.contains(part), "{part} in {err}");
        }
        let err = KumaCpConfig::load(None, &env(&[("KUMA_STORE_POSTGRES_TLS_MODE", "strict")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.postgres.tls.mode") && err.contains("verify-full"), "{err}");
        // Other stores do not check the postgres section.
        assert!(KumaCpConfig::load(None, &env(&[("KUMA_STORE_POSTGRES_HOST", "")])).is_ok());
    }

    #[test]
    fn the_postgres_password_is_never_shown() {
        let vars = [("KUMA_STORE_TYPE", "postgres"), ("KUMA_STORE_POSTGRES_PASSWORD", "s3cret-pw")];
        let c = KumaCpConfig::load(None, &env(&vars)).unwrap();
        assert!(!format!("{c:?}").contains("s3cret-pw"));
        assert!(!format!("{c:#?}").contains("s3cret-pw"));
        let err = KumaCpConfig::load(
            None,
            &env(&[
                ("KUMA_STORE_TYPE", "postgres"),
                ("KUMA_STORE_POSTGRES_PASSWORD", "s3cret-pw"),
                ("KUMA_STORE_POSTGRES_USER", ""),
            ]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("KUMA_STORE_POSTGRES_USER") && !err.contains("s3cret-pw"), "{err}");
    }

    #[test]
    fn postgres_runs_in_universal_mode_only() {
        let err = KumaCpConfig::load(
            None,
            &env(&[("KUMA_ENVIRONMENT", "kubernetes"), ("KUMA_STORE_TYPE", "postgres")]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("store.type: postgres runs in universal mode"), "{err}");
    }
}
