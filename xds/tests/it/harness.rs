//! An in-process xDS server over a MemoryStore, with helpers to write resources and to build the
//! bootstrap a real Envoy (or a test client) would use.

use std::sync::Arc;
use std::time::Duration;

use kuma_listener::ServerCert;
use kuma_model::{
    parse_resource, DataplaneInsightSpec, MeshSpec, Resource, ResourceKey, ResourceType, Spec,
};
use kuma_store::{MemoryStore, ResourceStore, StoreError};
use kuma_xds::{
    bootstrap, AdsSecurity, BootstrapParams, BootstrapRequest, BootstrapServerConfig, ConfigHook,
    DataplaneAuth, DpAuthType, XdsAddress, XdsApiType, XdsServer, XdsServerConfig,
};
use tokio::sync::oneshot;

pub struct Harness {
    pub store: Arc<MemoryStore>,
    pub xds_port: u16,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

pub fn fast_config() -> XdsServerConfig {
    XdsServerConfig {
        grpc_port: 0,
        push_debounce: Duration::from_millis(10),
        nack_backoff: Duration::from_millis(500),
        dataplane_status_flush_interval: Duration::from_millis(100),
    }
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(fast_config(), None).await
    }

    pub async fn start_with(config: XdsServerConfig, hook: Option<ConfigHook>) -> Harness {
        let store = Arc::new(MemoryStore::new());
        store.create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default())).await.unwrap();
        Harness::serve(store, config, hook, 0).await
    }

    /// Serves `store` on `port` (0: any free port), with tokens off: these tests are about the
    /// xDS protocol; the token checks have tests of their own (identity.rs) with tokens on.
    pub async fn serve(
        store: Arc<MemoryStore>,
        config: XdsServerConfig,
        hook: Option<ConfigHook>,
        port: u16,
    ) -> Harness {
        let auth = Arc::new(DataplaneAuth::new(DpAuthType::None));
        Harness::serve_with(store, config, hook, port, None, auth, None).await
    }

    /// A harness with dataplane tokens on: ADS and SDS over TLS with a certificate from a
    /// control-plane CA, the default mesh with its signing key. Returns the CA (PEM) and the SDS
    /// port too.
    pub async fn start_secure() -> (Harness, String, u16) {
        Harness::start_secure_with(DataplaneAuth::new(DpAuthType::DpToken)).await
    }

    /// [`Harness::start_secure`] with `auth` checking the dataplanes.
    pub async fn start_secure_with(auth: DataplaneAuth) -> (Harness, String, u16) {
        let store = Arc::new(MemoryStore::new());
        store.create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default())).await.unwrap();
        kuma_xds::ensure_signing_keys(store.as_ref()).await.unwrap();
        let ca = kuma_ca::ControlPlaneCa::generate().unwrap();
        let issued = ca.issue_server(&["127.0.0.1".to_string()]).unwrap();
        let cert = ServerCert::new();
        cert.set_pem(&issued.cert_pem, &issued.key_pem).unwrap();
        let sds = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let sds_port = sds.local_addr().unwrap().port();
        let auth = Arc::new(auth);
        let h = Harness::serve_with(
            store,
            fast_config(),
            None,
            0,
            Some((sds, cert.clone())),
            auth,
            Some(cert),
        )
        .await;
        (h, ca.cert_pem().to_string(), sds_port)
    }

    /// A harness whose server also serves SDS over TLS with `tls`; returns the SDS port too.
    pub async fn start_with_sds(tls: Arc<ServerCert>) -> (Harness, u16) {
        let store = Arc::new(MemoryStore::new());
        store.create(ResourceKey::mesh("default"), Spec::Mesh(MeshSpec::default())).await.unwrap();
        let sds = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let sds_port = sds.local_addr().unwrap().port();
        let auth = Arc::new(DataplaneAuth::new(DpAuthType::None));
        let h = Harness::serve_with(store, fast_config(), None, 0, Some((sds, tls)), auth, None);
        (h.await, sds_port)
    }

    async fn serve_with(
        store: Arc<MemoryStore>,
        config: XdsServerConfig,
        hook: Option<ConfigHook>,
        port: u16,
        sds: Option<(tokio::net::TcpListener, Arc<ServerCert>)>,
        auth: Arc<DataplaneAuth>,
        tls: Option<Arc<ServerCert>>,
    ) -> Harness {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let xds_port = listener.local_addr().unwrap().port();
        let dyn_store: Arc<dyn ResourceStore> = store.clone();
        let mut server = XdsServer::new(dyn_store, config, "test-cp".to_string(), auth, hook);
        if let Some(tls) = tls {
            server = server.with_tls(tls);
        }
        if let Some((sds, tls)) = sds {
            server = server.with_sds(sds, tls);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Harness { store, xds_port, stop: Some(stop), server: Some(task) }
    }

    /// Stops the server (streams end, status is flushed) and waits for it.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.server.take() {
            task.await.unwrap();
        }
    }

    pub async fn apply(&self, yaml: &str) -> Resource {
        let input =
            parse_resource(serde_yaml::from_str(yaml).unwrap()).expect("valid test resource");
        let key = input.key;
        let spec = input.spec;
        match self.store.get(&key).await {
            Ok(existing) => self.store.update(key, spec, &existing.version).await.unwrap(),
            Err(StoreError::NotFound { .. }) => self.store.create(key, spec).await.unwrap(),
            Err(e) => panic!("{e}"),
        }
    }

    pub async fn delete(&self, kind: ResourceType, mesh: &str, name: &str) {
        let key = if kind == ResourceType::Mesh {
            ResourceKey::mesh(name)
        } else {
            ResourceKey::new(kind, mesh, name)
        };
        self.store.delete(&key, None).await.unwrap();
    }

    pub async fn insight(&self, mesh: &str, name: &str) -> Option<DataplaneInsightSpec> {
        let key = ResourceKey::new(ResourceType::DataplaneInsight, mesh, name);
        self.store.get(&key).await.ok().and_then(|r| r.spec.as_dataplane_insight().cloned())
    }

    /// The bootstrap kuma-cp would serve for `mesh.name`, as YAML.
    pub fn bootstrap(&self, mesh: &str, name: &str, admin_port: u16, api: XdsApiType) -> String {
        bootstrap_yaml(mesh, name, admin_port, api, &[self.xds_port])
    }
}

/// A bootstrap pointing at every xDS port given.
pub fn bootstrap_yaml(
    mesh: &str,
    name: &str,
    admin_port: u16,
    api: XdsApiType,
    xds_ports: &[u16],
) -> String {
    let request = BootstrapRequest {
        mesh: mesh.to_string(),
        name: name.to_string(),
        admin_port: u32::from(admin_port),
        dataplane_token_path: String::new(),
        dataplane_token: String::new(),
        ca_cert: String::new(),
        dataplane_resource: String::new(),
    };
    let params = BootstrapParams { xds_api_type: api, ..BootstrapServerConfig::default().params };
    let peers: Vec<XdsAddress> =
        xds_ports.iter().map(|p| XdsAddress { host: "127.0.0.1".into(), port: *p }).collect();
    let security = AdsSecurity::default();
    serde_yaml::to_string(&bootstrap::generate(&request, &params, &peers, "test", &security))
        .unwrap()
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The seeds' two dataplanes, on the ports given: redis-1 (inbound `dp_port` → `redis_port`)
/// and backend-1 (an outbound on `outbound_port` to redis).
pub fn redis_dataplane(name: &str, dp_port: u16, redis_port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: default\nname: {name}\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{dp_port}:{redis_port}\n    tags:\n      service: redis\n"
    )
}

pub fn backend_dataplane(mesh: &str, outbound_port: u16, inbound_port: u16) -> String {
    format!(
        "type: Dataplane\nmesh: {mesh}\nname: backend-1\nnetworking:\n  inbound:\n  - interface: 127.0.0.1:{inbound_port}:{}\n    tags:\n      service: backend\n  outbound:\n  - interface: :{outbound_port}\n    service: redis\n",
        inbound_port + 1
    )
}
