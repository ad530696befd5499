//! The composition root: builds the store and every server of one kuma-cp from its config, runs
//! them, and shuts them down together.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kuma_api_server::{ApiListeners, ApiServer, HttpsListener, ServerInfo, UserTokens};
use kuma_model::Spec;
use kuma_raft::{RaftNode, RaftStore};
use kuma_store::{MemoryStore, ResourceStore, StoreError};
use kuma_xds::mads::{MadsServer, OperatorTokens};
use kuma_xds::{
    BootstrapServer, ControlPlaneCert, DataplaneAuth, SinglePeer, XdsAddress, XdsPeers, XdsServer,
};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;

use crate::config::{KumaCpConfig, StoreType, DEFAULT_MADS_PORT};
use crate::diagnostics::{self, Readiness};
use crate::user_tokens::StoreUserTokens;
use crate::xds_runtime::XdsRuntime;
use crate::{identity_api, leader_work, raft_admin, raft_xds_peers, stale_subscriptions};

/// Why the control plane could not start or stopped with an error. A variant with a cause says
/// what failed and, in parentheses, what to do, and keeps the cause out of its message: the cause
/// is its `source`, which kuma-cp prints after it (`{:#}`), once.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    #[error("{server} could not listen on {address} (stop whatever uses the port or set {variable} to another port)")]
    Bind {
        server: &'static str,
        address: SocketAddr,
        variable: &'static str,
        source: std::io::Error,
    },
    #[error("could not create the default mesh: {0}")]
    DefaultMesh(StoreError),
    #[error(transparent)]
    Raft(#[from] kuma_raft::RaftStartError),
    #[error("{server} failed")]
    Serve { server: &'static str, source: std::io::Error },
    #[error(transparent)]
    Xds(#[from] kuma_xds::XdsError),
    #[error("{variable}: {reason}")]
    Certificate { variable: &'static str, reason: String },
    #[error("{0}")]
    Kubernetes(String),
    #[error(transparent)]
    Postgres(Box<crate::postgres::PostgresStartError>),
}

impl From<crate::postgres::PostgresStartError> for ControlPlaneError {
    fn from(e: crate::postgres::PostgresStartError) -> ControlPlaneError {
        ControlPlaneError::Postgres(Box::new(e))
    }
}

/// One kuma-cp peer.
#[derive(Debug)]
pub struct ControlPlane {
    config: KumaCpConfig,
    info: ServerInfo,
}

async fn bind(
    server: &'static str,
    port: u16,
    variable: &'static str,
) -> Result<TcpListener, ControlPlaneError> {
    bind_on(Ipv4Addr::UNSPECIFIED, server, port, variable).await
}

/// An interface address from the config (validated when loaded).
fn parse_interface(text: &str, variable: &'static str) -> Result<IpAddr, ControlPlaneError> {
    text.parse().map_err(|_| ControlPlaneError::Certificate {
        variable,
        reason: format!("{text:?} is not an IP address"),
    })
}

async fn bind_on(
    ip: impl Into<IpAddr>,
    server: &'static str,
    port: u16,
    variable: &'static str,
) -> Result<TcpListener, ControlPlaneError> {
    let address = SocketAddr::new(ip.into(), port);
    TcpListener::bind(address).await.map_err(|source| ControlPlaneError::Bind {
        server,
        address,
        variable,
        source,
    })
}

/// MADS's listener: `None` when turned off (port 0), or when Kuma's default port is taken
/// (logged: several peers on one host need not all serve it); any other port must bind.
async fn bind_mads(port: u16) -> Result<Option<TcpListener>, ControlPlaneError> {
    const VARIABLE: &str = "KUMA_MONITORING_ASSIGNMENT_SERVER_GRPC_PORT";
    if port == 0 {
        return Ok(None);
    }
    match bind("mads-server", port, VARIABLE).await {
        Ok(listener) => Ok(Some(listener)),
        Err(ControlPlaneError::Bind { source, .. }) if port == DEFAULT_MADS_PORT => {
            tracing::warn!(port, error = %source, "MADS is not served: its default port is taken (set {VARIABLE} to a free port)");
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// MADS takes the API's user tokens: any operator, viewer or admin, may read the assignments.
struct MadsTokens(StoreUserTokens);

#[async_trait::async_trait]
impl OperatorTokens for MadsTokens {
    async fn authenticate(&self, token: &str) -> Result<String, String> {
        UserTokens::authenticate(&self.0, token).await.map(|identity| identity.name)
    }
}

/// A single control plane is its own leader: identity secrets every second until `stop`.
async fn single_peer_leader_work(
    store: Arc<dyn ResourceStore>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        crate::cluster_work::ensure_identity_secrets(store.as_ref()).await;
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// The names this peer's certificate is issued for: loopback, this host's name, and the host it
/// advertises to dataplanes.
fn certificate_names(advertised: &[String]) -> Vec<String> {
    let hostname = gethostname::gethostname().to_string_lossy().to_string();
    let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string(), hostname];
    for host in advertised {
        if !host.is_empty() && !names.contains(host) {
            names.push(host.clone());
        }
    }
    names
}

/// How often a peer issues itself a fresh certificate from the control plane's CA: well within
/// the certificate's year, so a peer that runs for years never serves an expired one.
const REISSUE_EVERY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Gives `cert` the operator's certificate files, or else waits for the control plane's CA to be
/// in the store (the leader makes it once) and issues this peer a certificate from it, then a
/// fresh one every [`REISSUE_EVERY`].
async fn load_certificate(
    store: Arc<dyn ResourceStore>,
    cert: Arc<ControlPlaneCert>,
    advertised: Vec<String>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let names = certificate_names(&advertised);
    loop {
        let mut pause = Duration::from_millis(200);
        match kuma_xds::control_plane_ca(store.as_ref()).await {
            Ok(Some(ca)) => match ca.issue_server(&names) {
                Ok(issued) => {
                    match cert.set(&issued.cert_pem, &issued.key_pem, Some(ca.cert_pem())) {
                        Ok(()) => {
                            info!(names = ?names, "serving dataplanes with a certificate from the control plane's CA");
                            pause = REISSUE_EVERY;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not use the issued certificate")
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not issue this peer's certificate"),
            },
            Ok(None) => tracing::debug!("waiting for the control plane's CA"),
            Err(e) => tracing::debug!(error = %e, "could not read the control plane's CA yet"),
        }
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A file the config names, read at start (`None` when the setting is empty).
fn read_config_file(
    path: &str,
    variable: &'static str,
) -> Result<Option<String>, ControlPlaneError> {
    if path.is_empty() {
        return Ok(None);
    }
    std::fs::read_to_string(path).map(Some).map_err(|e| ControlPlaneError::Certificate {
        variable,
        reason: format!("cannot read {path}: {e}"),
    })
}

/// The HTTPS API's certificate: the operator's files, or the one this peer issued itself from
/// the control plane's CA (the dataplane ports' certificate).
fn api_certificate(
    config: &KumaCpConfig,
    control_plane_cert: &ControlPlaneCert,
) -> Result<Arc<kuma_listener::ServerCert>, ControlPlaneError> {
    let https = &config.api_server.https;
    let Some(chain) =
        read_config_file(&https.tls_cert_file, "KUMA_API_SERVER_HTTPS_TLS_CERT_FILE")?
    else {
        return Ok(control_plane_cert.server_cert());
    };
    let key = read_config_file(&https.tls_key_file, "KUMA_API_SERVER_HTTPS_TLS_KEY_FILE")?
        .unwrap_or_default();
    let cert = kuma_listener::ServerCert::new();
    cert.set_pem(&chain, &key).map_err(|e| ControlPlaneError::Certificate {
        variable: "KUMA_API_SERVER_HTTPS_TLS_CERT_FILE",
        reason: e.to_string(),
    })?;
    Ok(cert)
}

/// The operator's certificate and key files, read and checked before anything is served.
fn provided_certificate(
    config: &KumaCpConfig,
    cert: &ControlPlaneCert,
) -> Result<bool, ControlPlaneError> {
    let general = &config.general;
    if general.tls_cert_file.is_empty() {
        return Ok(false);
    }
    let read = |path: &str, variable: &'static str| {
        std::fs::read_to_string(path).map_err(|e| ControlPlaneError::Certificate {
            variable,
            reason: format!("cannot read {path}: {e}"),
        })
    };
    let chain = read(&general.tls_cert_file, "KUMA_GENERAL_TLS_CERT_FILE")?;
    let key = read(&general.tls_key_file, "KUMA_GENERAL_TLS_KEY_FILE")?;
    cert.set(&chain, &key, None).map_err(|e| ControlPlaneError::Certificate {
        variable: "KUMA_GENERAL_TLS_CERT_FILE",
        reason: e.to_string(),
    })?;
    info!(file = %general.tls_cert_file, "serving dataplanes with the provided certificate");
    Ok(true)
}

impl ControlPlane {
    pub fn new(config: KumaCpConfig, info: ServerInfo) -> ControlPlane {
        ControlPlane { config, info }
    }

    /// Runs until `shutdown` completes, then stops every server, letting requests in flight finish.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), ControlPlaneError> {
        let config = &self.config;
        info!(store = ?config.store.kind, "starting Control Plane");
        let started = chrono::Utc::now();
        let readiness = Readiness::default();

        let diagnostics_listener =
            bind("diagnostics server", config.diagnostics.port, "KUMA_DIAGNOSTICS_PORT").await?;
        let api_config = &config.api_server;
        let http_listener = match api_config.http.enabled {
            true => {
                let ip =
                    parse_interface(&api_config.http.interface, "KUMA_API_SERVER_HTTP_INTERFACE")?;
                Some(bind_on(ip, "api-server", api_config.port, "KUMA_API_SERVER_PORT").await?)
            }
            false => None,
        };
        let https_listener = match api_config.https.enabled {
            true => {
                let ip = parse_interface(
                    &api_config.https.interface,
                    "KUMA_API_SERVER_HTTPS_INTERFACE",
                )?;
                Some(
                    bind_on(
                        ip,
                        "api-server (https)",
                        api_config.https.port,
                        "KUMA_API_SERVER_HTTPS_PORT",
                    )
                    .await?,
                )
            }
            false => None,
        };
        let bootstrap_listener =
            bind("bootstrap-server", config.bootstrap_server.port, "KUMA_BOOTSTRAP_SERVER_PORT")
                .await?;
        let xds_listener =
            bind("xds-server", config.xds_server.grpc_port, "KUMA_XDS_SERVER_GRPC_PORT").await?;
        let sds_listener =
            bind("sds-server", config.sds_server.grpc_port, "KUMA_SDS_SERVER_GRPC_PORT").await?;
        let mads_listener = bind_mads(config.monitoring_assignment_server.grpc_port).await?;

        let (stop_tx, stop_rx) = watch::channel(false);
        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };

        let xds_port = match config.bootstrap_server.params.xds_port {
            0 => config.xds_server.grpc_port,
            port => port,
        };
        let single_peer =
            SinglePeer { host: config.bootstrap_server.params.xds_host.clone(), port: xds_port };
        let control_plane_cert = ControlPlaneCert::new();
        let provided_cert = provided_certificate(config, &control_plane_cert)?;
        let mut advertised_hosts = vec![config.bootstrap_server.params.xds_host.clone()];
        let mut kubernetes: Option<kube::Client> = None;
        let mut postgres: Option<kuma_store_postgres::PostgresStore> = None;
        let (store, raft): (Arc<dyn ResourceStore>, Option<Arc<RaftNode>>) = match config.store.kind
        {
            StoreType::Memory => (Arc::new(MemoryStore::new()), None),
            StoreType::Postgres => {
                let pg = crate::postgres::connect(&config.store.postgres).await?;
                postgres = Some(pg.clone());
                (Arc::new(pg), None)
            }
            StoreType::Kubernetes => {
                let client = crate::kubernetes::client().await?;
                let store = crate::kubernetes::start_store(client.clone(), config).await?;
                kubernetes = Some(client);
                (store, None)
            }
            StoreType::Raft => {
                let raft_config = config
                    .raft_config()
                    .map_err(|p| kuma_raft::RaftStartError::Config(p.join("; ")))?;
                let listener = if raft_config.listen_loopback_only {
                    bind_on(
                        Ipv4Addr::LOCALHOST,
                        "raft peer server",
                        config.raft.port,
                        "KUMA_RAFT_PORT",
                    )
                    .await?
                } else {
                    bind("raft peer server", config.raft.port, "KUMA_RAFT_PORT").await?
                };
                info!(
                    port = config.raft.port,
                    node = raft_config.node_id,
                    "raft peer server starting"
                );
                if let Some(address) = XdsAddress::parse(&raft_config.serves.xds_address) {
                    advertised_hosts.push(address.host);
                }
                let node = RaftNode::start(raft_config, listener, stopped(stop_rx.clone())).await?;
                (Arc::new(RaftStore::new(node.clone())), Some(node))
            }
        };

        let mut peers: Arc<dyn XdsPeers> = Arc::new(single_peer.clone());
        let live_instances = postgres
            .as_ref()
            .map(|pg| crate::postgres_peers::LiveInstances::follow(pg.clone(), stop_rx.clone()));
        match (&raft, &kubernetes) {
            (Some(node), _) => {
                tokio::spawn(leader_work::leader_work(
                    node.clone(),
                    store.clone(),
                    !config.defaults.skip_mesh_creation,
                    stop_rx.clone(),
                ));
                tokio::spawn(stale_subscriptions::close_own_stale_subscriptions(
                    store.clone(),
                    config.instance_id(),
                    started,
                ));
                peers = Arc::new(raft_xds_peers::RaftXdsPeers {
                    node: node.clone(),
                    fallback: single_peer.clone(),
                });
            }
            (None, Some(client)) => {
                let replicas = crate::kubernetes::start_cluster_work(
                    client.clone(),
                    store.clone(),
                    config,
                    stop_rx.clone(),
                );
                tokio::spawn(stale_subscriptions::close_own_stale_subscriptions(
                    store.clone(),
                    config.instance_id(),
                    started,
                ));
                if let Some(address) = XdsAddress::parse(&crate::kubernetes::xds_address(config)) {
                    advertised_hosts.push(address.host);
                }
                peers = Arc::new(crate::kubernetes::KubernetesXdsPeers {
                    replicas,
                    fallback: single_peer.clone(),
                });
            }
            (None, None) if live_instances.is_some() => {
                // The holder of the leader lease creates the default mesh and the identity
                // secrets (started below, once every server listens).
                if let Some(instances) = &live_instances {
                    peers = Arc::new(crate::postgres_peers::PostgresXdsPeers {
                        instances: instances.clone(),
                        fallback: single_peer.clone(),
                    });
                }
                tokio::spawn(stale_subscriptions::close_own_stale_subscriptions(
                    store.clone(),
                    config.instance_id(),
                    started,
                ));
            }
            (None, None) => {
                if !config.defaults.skip_mesh_creation {
                    crate::cluster_work::ensure_default_mesh(store.as_ref())
                        .await
                        .map_err(ControlPlaneError::DefaultMesh)?;
                }
                // A single control plane is its own leader for the mesh CAs and signing keys.
                tokio::spawn(single_peer_leader_work(store.clone(), stopped(stop_rx.clone())));
            }
        }

        let api = ApiServer::new(store.clone(), config.api_server.clone(), self.info.clone())
            .with_validation(Arc::new(|spec: &Spec| match spec {
                // Raw Envoy resources are checked against Envoy's schema when applied.
                Spec::ProxyTemplate(template) => kuma_xds::proxy_template_violations(template),
                // A provided CA given inline or as files must load when the Mesh is written.
                Spec::Mesh(mesh) => kuma_xds::provided_ca_violations(mesh),
                _ => Vec::new(),
            }));
        let mut api = api.with_user_tokens(Arc::new(StoreUserTokens { store: store.clone() }));
        if kubernetes.is_some() {
            api = api.read_only_because(
                "on Kubernetes, Kuma resources are Kubernetes objects (Kuma's CRDs): create and change them with `kubectl apply -f`",
            );
        }
        let https = match https_listener {
            Some(listener) => Some(HttpsListener {
                listener,
                cert: api_certificate(config, &control_plane_cert)?,
                client_ca_pem: read_config_file(
                    &config.api_server.auth.client_certs_ca_file,
                    "KUMA_API_SERVER_AUTH_CLIENT_CERTS_CA_FILE",
                )?,
            }),
            None => None,
        };
        info!(
            port = http_listener.as_ref().map(|_| api_config.port),
            https_port = https.as_ref().map(|_| api_config.https.port),
            "api-server starting"
        );
        if !provided_cert {
            tokio::spawn(load_certificate(
                store.clone(),
                control_plane_cert.clone(),
                advertised_hosts,
                stopped(stop_rx.clone()),
            ));
        }
        let mut auth = DataplaneAuth::new(config.dp_server.auth.kind);
        if let Some(client) = &kubernetes {
            auth = auth.with_reviewer(Arc::new(crate::kubernetes::Reviewer(client.clone())));
        }
        let auth = Arc::new(auth);
        if auth.kind() == kuma_xds::DpAuthType::None {
            tracing::warn!("KUMA_DP_SERVER_AUTH_TYPE=none: anyone who reaches the bootstrap, xDS and SDS ports may act as any dataplane; for development only");
        }
        let xds = XdsServer::new(
            store.clone(),
            config.xds_server.clone(),
            config.instance_id(),
            auth.clone(),
            None,
        );
        let dumps = match &live_instances {
            Some(instances) => crate::config_dump::config_dumps_with(
                xds.cache(),
                store.clone(),
                config.instance_id(),
                instances.clone(),
            ),
            None => crate::config_dump::config_dumps(
                xds.cache(),
                store.clone(),
                config.instance_id(),
                raft.as_ref(),
                kubernetes.is_some(),
            ),
        };
        let api = api.with_config_dumps(dumps);
        let mut extra_routes = identity_api::routes(store.clone());
        if let Some(node) = &raft {
            extra_routes =
                extra_routes.merge(raft_admin::routes(node.clone(), config.api_server.read_only));
        }
        if let Some(pg) = &postgres {
            extra_routes =
                extra_routes.merge(crate::postgres_admin::routes(pg.clone(), config.instance_id()));
        }
        let mut api_task = tokio::spawn(api.serve_with(
            extra_routes,
            ApiListeners { http: http_listener, https },
            stopped(stop_rx.clone()),
        ));
        let dp_tls = config.dp_server.tls.enabled;
        if !dp_tls {
            tracing::warn!("KUMA_DP_SERVER_TLS_ENABLED=false: the bootstrap and xDS servers speak plain text; use only on a trusted network");
        }
        let mut bootstrap = BootstrapServer::new(
            store.clone(),
            config.bootstrap_server.params.clone(),
            peers,
            auth.clone(),
        );
        if dp_tls {
            bootstrap = bootstrap.with_tls(control_plane_cert.clone());
        }
        info!(port = config.bootstrap_server.port, "bootstrap-server starting");
        let mut bootstrap_task =
            tokio::spawn(bootstrap.serve(bootstrap_listener, stopped(stop_rx.clone())));
        let mut xds = xds;
        if dp_tls {
            xds = xds.with_tls(control_plane_cert.server_cert());
        }
        info!(port = config.sds_server.grpc_port, "sds-server starting");
        info!(port = config.xds_server.grpc_port, "xds-server starting");
        let sds_cert = control_plane_cert.server_cert();
        let xds_stop = stopped(stop_rx.clone());
        let xds_runtime = XdsRuntime::new()
            .map_err(|source| ControlPlaneError::Serve { server: "xds-server", source })?;
        let mut xds_task = xds_runtime
            .serve([xds_listener, sds_listener], move |[xds_listener, sds_listener]| async move {
                xds.with_sds(sds_listener, sds_cert)
                    .serve(xds_listener, xds_stop)
                    .await
                    .map_err(std::io::Error::other)
            })
            .map_err(|source| ControlPlaneError::Serve { server: "xds-server", source })?;
        let mut admission_task = match &kubernetes {
            Some(client) => {
                let port = config.runtime.kubernetes.admission_server.port;
                let listener =
                    bind("admission server", port, "KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_PORT")
                        .await?;
                tokio::spawn(crate::kubernetes::serve_admission(
                    listener,
                    client.clone(),
                    store.clone(),
                    config.clone(),
                    stopped(stop_rx.clone()),
                ))
            }
            // No admission server: a task that ends with the others, so shutdown never waits on it.
            None => {
                let stop = stopped(stop_rx.clone());
                tokio::spawn(async move {
                    stop.await;
                    Ok(())
                })
            }
        };
        let mut mads_task = match mads_listener {
            Some(listener) => {
                let tokens: Arc<dyn OperatorTokens> =
                    Arc::new(MadsTokens(StoreUserTokens { store: store.clone() }));
                let mut mads = MadsServer::new(
                    store.clone(),
                    Some(tokens),
                    config.api_server.auth.localhost_is_admin,
                );
                // With the operator's API certificate, MADS is TLS too: the same name, the
                // same CA for kuma-prometheus-sd to trust.
                if !config.api_server.https.tls_cert_file.is_empty() {
                    mads = mads.with_tls(api_certificate(config, &control_plane_cert)?);
                }
                info!(port = config.monitoring_assignment_server.grpc_port, "mads-server starting");
                let stop = stopped(stop_rx.clone());
                tokio::spawn(async move {
                    mads.serve(listener, stop).await.map_err(std::io::Error::other)
                })
            }
            None => {
                let stop = stopped(stop_rx.clone());
                tokio::spawn(async move {
                    stop.await;
                    Ok(())
                })
            }
        };
        info!(port = config.diagnostics.port, "diagnostics server starting");
        let mut diagnostics_task = tokio::spawn(diagnostics::serve(
            diagnostics_listener,
            readiness.clone(),
            stopped(stop_rx.clone()),
        ));

        readiness.set(true);
        // From here readiness follows whether the database answers.
        let mut postgres_instance = postgres.map(|pg| {
            crate::postgres_instance::start_instance(
                pg,
                store.clone(),
                config,
                readiness.clone(),
                stop_rx,
            )
        });
        info!("Control Plane ready");

        let failure = tokio::select! {
            _ = shutdown => None,
            r = &mut api_task => Some(("api-server", r)),
            r = &mut diagnostics_task => Some(("diagnostics server", r)),
            r = &mut bootstrap_task => Some(("bootstrap-server", r)),
            r = &mut xds_task => Some(("xds-server", r)),
            r = &mut admission_task => Some(("admission server", r)),
            r = &mut mads_task => Some(("mads-server", r)),
        };
        readiness.set(false);
        let _ = stop_tx.send(true);
        if let Some(instance) = &mut postgres_instance {
            instance.release().await;
        }
        if let Some((server, result)) = failure {
            let source = match result {
                Ok(Ok(())) => std::io::Error::other("stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(join) => std::io::Error::other(join.to_string()),
            };
            return Err(ControlPlaneError::Serve { server, source });
        }
        info!("stopping Control Plane");
        // In-flight requests get a bounded grace period; a stuck client must not hold up shutdown.
        let grace = Duration::from_secs(10);
        let _ = tokio::time::timeout(grace, async {
            let _ = api_task.await;
            let _ = diagnostics_task.await;
            let _ = bootstrap_task.await;
            let _ = xds_task.await;
            let _ = admission_task.await;
            let _ = mads_task.await;
        })
        .await;
        if let Some(node) = &raft {
            node.shutdown().await;
        }
        drop(xds_runtime);
        info!("Control Plane stopped");
        Ok(())
    }
}
