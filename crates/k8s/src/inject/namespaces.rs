//! `NamespaceCache`: every Namespace, kept current by a watch, for the injector to read the
//! labels an admission request does not carry.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client};
use tracing::warn;

/// The cluster's namespaces, mirrored by a reflector (a list, then a watch, listing again with a
/// backoff after errors). Clones share one watch, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct NamespaceCache {
    store: Store<Namespace>,
    _watch: Arc<AbortOnDrop>,
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl std::fmt::Debug for NamespaceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamespaceCache").field("namespaces", &self.store.state().len()).finish()
    }
}

impl NamespaceCache {
    /// Starts watching namespaces (needs list and watch on them) and returns once the first
    /// list is in; until the apiserver answers it keeps retrying, so bound it with a timeout if
    /// that matters.
    pub async fn start(client: Client) -> NamespaceCache {
        let (store, writer) = reflector::store::<Namespace>();
        let api: Api<Namespace> = Api::all(client);
        let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    warn!(error = %e, "namespace watch failed; listing again after a backoff");
                }
            }
        });
        let cache = NamespaceCache { store, _watch: Arc::new(AbortOnDrop(task)) };
        // Only fails when the writer is dropped, i.e. the task ended, which it does not.
        let _ = cache.store.wait_until_ready().await;
        cache
    }

    /// The namespace `name` as last seen, if it exists.
    pub fn get(&self, name: &str) -> Option<Namespace> {
        self.store.get(&ObjectRef::new(name)).map(|ns| Namespace::clone(&ns))
    }
}
