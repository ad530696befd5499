use std::sync::Arc;

use kuma_model::{Resource, ResourceKey, Spec, Version};
use kuma_store::{
    ListPage, ListQuery, NameScope, ResourceStore, Revision, StoreError, WatchStream,
};
use kuma_store_postgres::{migrate_up, PostgresConfig, PostgresStore};
use kuma_test_support::{PgServer, PG_DATABASE, PG_PASSWORD, PG_USER};

/// A fresh server (started off the async runtime).
pub async fn must_start_server() -> PgServer {
    tokio::task::spawn_blocking(PgServer::must_start).await.expect("the server starts")
}

/// The config that reaches `server`'s `kuma` database.
pub fn config_for(server: &PgServer) -> PostgresConfig {
    PostgresConfig {
        host: server.host().to_string(),
        port: server.port(),
        user: PG_USER.into(),
        password: PG_PASSWORD.into(),
        db_name: PG_DATABASE.into(),
        connection_timeout: std::time::Duration::from_secs(3),
        ..PostgresConfig::default()
    }
}

/// A fresh server with the schema migrated, and a store on it.
pub async fn must_migrated_store() -> (PgServer, PostgresConfig, PostgresStore) {
    let server = must_start_server().await;
    let config = config_for(&server);
    migrate_up(&config).await.expect("migrate up");
    let store = PostgresStore::connect(&config).await.expect("the store connects");
    (server, config, store)
}

/// The store, then the server it uses (fields drop in order), so a check's server stops with it.
#[derive(Debug)]
pub struct StoreWithServer {
    pub store: PostgresStore,
    pub _server: PgServer,
}

pub async fn fresh_store() -> Arc<dyn ResourceStore> {
    let (server, _, store) = must_migrated_store().await;
    Arc::new(StoreWithServer { store, _server: server })
}

#[async_trait::async_trait]
impl ResourceStore for StoreWithServer {
    fn name_scope(&self) -> NameScope {
        self.store.name_scope()
    }
    async fn get(&self, key: &ResourceKey) -> Result<Resource, StoreError> {
        self.store.get(key).await
    }
    async fn list(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        self.store.list(query).await
    }
    async fn create(&self, key: ResourceKey, spec: Spec) -> Result<Resource, StoreError> {
        self.store.create(key, spec).await
    }
    async fn update(
        &self,
        key: ResourceKey,
        spec: Spec,
        expected: &Version,
    ) -> Result<Resource, StoreError> {
        self.store.update(key, spec, expected).await
    }
    async fn delete(
        &self,
        key: &ResourceKey,
        expected: Option<&Version>,
    ) -> Result<(), StoreError> {
        self.store.delete(key, expected).await
    }
    async fn revision(&self) -> Result<Revision, StoreError> {
        self.store.revision().await
    }
    async fn watch(&self, from: Option<Revision>) -> Result<WatchStream, StoreError> {
        self.store.watch(from).await
    }
}

/// Polls the async `check` until it returns `Ok`, or panics with its last error after `deadline`.
pub async fn must_eventually<T, F, Fut>(
    deadline: std::time::Duration,
    what: &str,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let start = tokio::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        match check().await {
            Ok(value) => return value,
            Err(e) if start.elapsed() >= deadline => {
                panic!("{what} did not hold within {deadline:?}; last error: {e}")
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
        }
    }
}

/// The next event within 10 s.
pub async fn must_next_event(events: &mut WatchStream) -> kuma_store::WatchEvent {
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), events.next())
        .await
        .expect("an event within 10 s")
        .expect("the stream is open")
        .expect("no watch error")
}

pub async fn must_create_mesh(store: &PostgresStore, name: &str) -> Resource {
    store
        .create(ResourceKey::mesh(name), Spec::Mesh(Default::default()))
        .await
        .expect("create a mesh")
}

pub fn route_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(kuma_model::ResourceType::TrafficRoute, mesh, name)
}

pub fn route() -> Spec {
    Spec::empty(kuma_model::ResourceType::TrafficRoute)
}
