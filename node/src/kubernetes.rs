//! kuma-cp on Kubernetes: the API server as the store, the replicas' leader chosen with a Lease
//! (the default mesh, identity secrets, the Pod controller, closing a dead replica's dataplane
//! subscriptions), each replica's liveness and xDS address in its own Lease, and the admission
//! webhook server with the sidecar injector.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use kuma_k8s::inject::{InjectorConfig, NamespaceCache};
use kuma_k8s::lease::{self, Timing};
use kuma_k8s::KubernetesStore;
use kuma_store::ResourceStore;
use kuma_xds::{SinglePeer, XdsAddress, XdsPeers};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::KumaCpConfig;
use crate::control_plane::ControlPlaneError;

/// How often the leader looks for subscriptions left open by replicas that are gone.
const ORPHAN_CHECK: Duration = Duration::from_secs(5);
/// How often the admission server looks for a renewed certificate in its directory.
const CERT_RELOAD: Duration = Duration::from_secs(10);
/// How often the leader re-checks the identity secrets and each replica its peers' addresses.
const TICK: Duration = Duration::from_secs(1);

fn kubernetes_error(reason: impl std::fmt::Display) -> ControlPlaneError {
    ControlPlaneError::Kubernetes(reason.to_string())
}

/// A client for the API server: in a pod, its service account; elsewhere `$KUBECONFIG` or
/// `~/.kube/config`.
pub async fn client() -> Result<kube::Client, ControlPlaneError> {
    kube::Client::try_default().await.map_err(|e| {
        kubernetes_error(format!(
            "no Kubernetes API server to talk to ({e}): run kuma-cp in a pod with a service account, or set KUBECONFIG"
        ))
    })
}

/// Checks dataplanes' service-account tokens with TokenReviews.
#[derive(Clone)]
pub struct Reviewer(pub kube::Client);

impl std::fmt::Debug for Reviewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reviewer")
    }
}

#[async_trait::async_trait]
impl kuma_xds::TokenReviewer for Reviewer {
    async fn review(
        &self,
        token: &str,
    ) -> Result<kuma_xds::ServiceAccountIdentity, kuma_xds::AuthError> {
        use kuma_k8s::token_review::ReviewError;
        match kuma_k8s::token_review::review(&self.0, token).await {
            Ok(t) => Ok(kuma_xds::ServiceAccountIdentity {
                namespace: t.namespace,
                service_account: t.service_account,
                pod_name: t.pod_name,
            }),
            Err(e @ ReviewError::Api(_)) => {
                Err(kuma_xds::AuthError::ReviewUnavailable { reason: e.to_string() })
            }
            Err(e) => {
                Err(kuma_xds::AuthError::InvalidServiceAccountToken { reason: e.to_string() })
            }
        }
    }
}

/// The store, once every type's first listing is in, its operations timed (`store` metric).
pub async fn start_store(
    client: kube::Client,
    config: &KumaCpConfig,
) -> Result<Arc<dyn ResourceStore>, ControlPlaneError> {
    let namespace = &config.store.kubernetes.system_namespace;
    let store = KubernetesStore::start(client, namespace).await.map_err(kubernetes_error)?;
    Ok(Arc::new(kuma_store::MeteredStore::new(Arc::new(store), "kubernetes")))
}

/// The xDS address this replica announces: the advertised host (the control plane's Service on
/// a real cluster, so every replica announces the same address) and its xDS port.
pub fn xds_address(config: &KumaCpConfig) -> String {
    let params = &config.bootstrap_server.params;
    let port = if params.xds_port == 0 { config.xds_server.grpc_port } else { params.xds_port };
    let host = if params.xds_host.is_empty() {
        format!(
            "{}.{}",
            config.runtime.kubernetes.control_plane_service_name,
            config.store.kubernetes.system_namespace
        )
    } else {
        params.xds_host.clone()
    };
    format!("{host}:{port}")
}

/// Runs the replicas' shared work on whichever replica holds the leader Lease, and this
/// replica's heartbeat, until `stop` says so.
pub fn start_cluster_work(
    client: kube::Client,
    store: Arc<dyn ResourceStore>,
    config: &KumaCpConfig,
    stop: watch::Receiver<bool>,
) -> Arc<LiveReplicas> {
    let namespace = config.store.kubernetes.system_namespace.clone();
    let identity = config.instance_id();
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    lease::heartbeat(
        client.clone(),
        &namespace,
        &identity,
        &xds_address(config),
        Timing::default(),
        stopped(stop.clone()),
    );
    let leading = lease::elect(
        client.clone(),
        &namespace,
        &identity,
        Timing::default(),
        stopped(stop.clone()),
    );
    let replicas = Arc::new(LiveReplicas::default());
    tokio::spawn(follow_replicas(
        client.clone(),
        namespace.clone(),
        replicas.clone(),
        stop.clone(),
    ));
    tokio::spawn(leader_work(
        client,
        store,
        replicas.clone(),
        !config.defaults.skip_mesh_creation,
        leading,
        stop,
    ));
    replicas
}

/// The replicas whose Leases are fresh, as last read.
#[derive(Debug, Default)]
pub struct LiveReplicas {
    instances: RwLock<Vec<lease::Instance>>,
}

impl LiveReplicas {
    fn set(&self, instances: Vec<lease::Instance>) {
        *self.instances.write().unwrap_or_else(|p| p.into_inner()) = instances;
    }

    fn get(&self) -> Vec<lease::Instance> {
        self.instances.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// A replica's Lease may be this much older than its duration before the others count it gone.
const LEASE_SLACK: Duration = Duration::from_secs(2);

async fn follow_replicas(
    client: kube::Client,
    namespace: String,
    replicas: Arc<LiveReplicas>,
    mut stop: watch::Receiver<bool>,
) {
    let stopped = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    lease::follow_instances(
        client,
        &namespace,
        LEASE_SLACK,
        TICK,
        |live| replicas.set(live),
        stopped,
    )
    .await;
}

/// The xDS address of every live replica (deduplicated: behind a Service they all announce
/// the same one); this replica's own until the first listing.
#[derive(Debug)]
pub struct KubernetesXdsPeers {
    pub replicas: Arc<LiveReplicas>,
    pub fallback: SinglePeer,
}

impl XdsPeers for KubernetesXdsPeers {
    fn xds_addresses(&self, request_host: &str) -> Vec<XdsAddress> {
        let mut seen = BTreeSet::new();
        let announced: Vec<XdsAddress> = self
            .replicas
            .get()
            .into_iter()
            .filter_map(|i| i.xds_address)
            .filter(|a| seen.insert(a.clone()))
            .filter_map(|a| XdsAddress::parse(&a))
            .collect();
        if announced.is_empty() {
            self.fallback.xds_addresses(request_host)
        } else {
            announced
        }
    }
}

/// While this replica holds the Lease: the default mesh, the identity secrets every second,
/// the Pod controller, and closing the subscriptions of replicas that are gone.
async fn leader_work(
    client: kube::Client,
    store: Arc<dyn ResourceStore>,
    replicas: Arc<LiveReplicas>,
    create_default_mesh: bool,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            return;
        }
        if *leading.borrow_and_update() {
            info!("this replica leads: running the leader-only work and the Pod controller");
            let (controller_stop, controller_stopped) = watch::channel(false);
            let mut stopped = controller_stopped;
            let controller = tokio::spawn(kuma_k8s::pods::run(client.clone(), async move {
                let _ = stopped.wait_for(|s| *s).await;
            }));
            if create_default_mesh {
                if let Err(e) = crate::cluster_work::ensure_default_mesh(store.as_ref()).await {
                    warn!(error = %e, "could not create the default mesh yet");
                }
            }
            let mut suspects = BTreeSet::new();
            let mut last_orphan_check: Option<tokio::time::Instant> = None;
            while *leading.borrow() && !*stop.borrow() {
                if create_default_mesh {
                    if let Err(e) = crate::cluster_work::ensure_default_mesh(store.as_ref()).await {
                        warn!(error = %e, "could not create the default mesh yet");
                    }
                }
                crate::cluster_work::ensure_identity_secrets(store.as_ref()).await;
                if last_orphan_check.is_none_or(|t| t.elapsed() >= ORPHAN_CHECK) {
                    let alive: BTreeSet<String> =
                        replicas.get().into_iter().map(|i| i.identity).collect();
                    if !alive.is_empty() {
                        suspects = crate::cluster_work::close_subscriptions_of_dead_peers(
                            store.as_ref(),
                            &alive,
                            suspects,
                        )
                        .await;
                    }
                    last_orphan_check = Some(tokio::time::Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(TICK) => {}
                    _ = leading.changed() => {}
                    _ = stop.changed() => {}
                }
            }
            let _ = controller_stop.send(true);
            let _ = controller.await;
            info!("this replica stopped the leader-only work");
        }
        tokio::select! {
            changed = leading.changed() => if changed.is_err() { return },
            _ = stop.changed() => {}
        }
    }
}

#[derive(Clone)]
struct AdmissionState {
    namespaces: NamespaceCache,
    store: Arc<dyn ResourceStore>,
    config: Arc<InjectorConfig>,
}

/// POST /inject-sidecar: the AdmissionReview of a Pod, answered with the sidecar patch.
async fn inject_sidecar(State(state): State<AdmissionState>, body: Bytes) -> impl IntoResponse {
    let mut config = (*state.config).clone();
    match kuma_xds::control_plane_ca(state.store.as_ref()).await {
        Ok(Some(ca)) => config.control_plane_ca_pem = ca.cert_pem().to_string(),
        Ok(None) | Err(_) => {
            warn!("the control plane's CA is not ready: injected sidecars carry no CA yet")
        }
    }
    let namespaces = state.namespaces.clone();
    let reply = kuma_k8s::inject::review(&body, |name| namespaces.get(name), &config);
    ([(CONTENT_TYPE, "application/json")], reply)
}

/// Serves the admission webhooks over TLS with the certificate in `cert_dir` until `stop`.
pub async fn serve_admission(
    listener: TcpListener,
    client: kube::Client,
    store: Arc<dyn ResourceStore>,
    config: KumaCpConfig,
    stop: impl std::future::Future<Output = ()> + Send,
) -> Result<(), std::io::Error> {
    let runtime = &config.runtime.kubernetes;
    let dir = std::path::Path::new(&runtime.admission_server.cert_dir);
    let read = |file: &str| {
        std::fs::read_to_string(dir.join(file)).map_err(|e| {
            std::io::Error::other(format!(
                "cannot read {}: {e}; put tls.crt and tls.key there or set KUMA_RUNTIME_KUBERNETES_ADMISSION_SERVER_CERT_DIR",
                dir.join(file).display()
            ))
        })
    };
    let cert = kuma_listener::ServerCert::new();
    let mut loaded = (read("tls.crt")?, read("tls.key")?);
    cert.set_pem(&loaded.0, &loaded.1)
        .map_err(|e| std::io::Error::other(format!("the admission server's certificate: {e}")))?;
    // `kumactl install control-plane` run again replaces the Secret, and the kubelet the
    // mounted files: the server picks them up without a restart.
    let reloaded = cert.clone();
    let dir = dir.to_path_buf();
    let reload = tokio::spawn(async move {
        loop {
            tokio::time::sleep(CERT_RELOAD).await;
            let (Ok(chain), Ok(key)) = (
                std::fs::read_to_string(dir.join("tls.crt")),
                std::fs::read_to_string(dir.join("tls.key")),
            ) else {
                continue;
            };
            if (&chain, &key) == (&loaded.0, &loaded.1) {
                continue;
            }
            match reloaded.set_pem(&chain, &key) {
                Ok(()) => {
                    info!(dir = %dir.display(), "the admission server's certificate changed: serving the new one")
                }
                Err(e) => {
                    warn!(error = %e, "the admission server's new certificate does not load; keeping the old one")
                }
            }
            loaded = (chain, key);
        }
    });
    let namespace = &config.store.kubernetes.system_namespace;
    let injector = InjectorConfig {
        sidecar_image: runtime.injector.sidecar_container_image.clone(),
        init_image: runtime.injector.init_container_image.clone(),
        control_plane_url: format!(
            "https://{}.{namespace}:{}",
            runtime.control_plane_service_name, config.bootstrap_server.port
        ),
        system_namespace: namespace.clone(),
        ..InjectorConfig::default()
    };
    let state = AdmissionState {
        namespaces: NamespaceCache::start(client).await,
        store,
        config: Arc::new(injector),
    };
    let router = Router::new().route("/inject-sidecar", post(inject_sidecar)).with_state(state);
    let tls = kuma_listener::tls_server_config(cert, &[b"http/1.1"]);
    let incoming =
        kuma_listener::TlsIncoming::new(listener, tls, kuma_listener::ConnectionLimit::API);
    info!(port = runtime.admission_server.port, "admission server starting");
    let served =
        kuma_listener::serve_http(incoming, router, kuma_listener::HttpLimits::default(), stop)
            .await;
    reload.abort();
    served
}
