//! The Pod controller: keeps every pod's Dataplane in line with the pod, the Services of its
//! namespace and the namespace itself, until told to stop.
//!
//! Four watches (Pods, Services, Namespaces, Dataplanes) fill in-memory stores; every change turns
//! into the names of the pods it may affect, and each is reconciled on its own: convert, compare
//! with the stored Dataplane, write (server-side apply) or delete only when something differs.
//! Nothing is reconciled until all four stores hold a full list, then everything is, so a
//! controller started late over existing state (a new Lease holder) neither flaps a Dataplane to
//! service-less nor takes a Dataplane for an orphan before it has seen every pod.
//!
//! There may be no garbage collector (the test apiserver has none), so the controller deletes the
//! Dataplane of a deleted pod itself, and any Dataplane whose Pod owner is gone; a Dataplane
//! without a Pod owner reference was made by a user and is never touched unless a pod of the
//! mesh has its name.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, FuturesUnordered};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use kube::api::{ApiResource, DynamicObject};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::convert::KUMA_API_VERSION;
use super::queue::WorkQueue;
use super::reconcile::{DisplayChain, ReconcileError, Reconciler};

/// How the Pod controller writes and retries.
#[derive(Clone, Debug)]
pub struct PodControllerConfig {
    /// The server-side apply field manager of the Dataplanes it writes.
    pub field_manager: String,
    /// At most this many Dataplane writes at once.
    pub concurrency: usize,
    /// The first retry of a failed write waits this long, doubling up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for PodControllerConfig {
    fn default() -> Self {
        PodControllerConfig {
            field_manager: "kuma-cp".into(),
            concurrency: 8,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The Dataplane CRD as a dynamic API resource.
pub fn dataplane_resource() -> ApiResource {
    ApiResource {
        group: "kuma.io".into(),
        version: "v1alpha1".into(),
        api_version: KUMA_API_VERSION.into(),
        kind: "Dataplane".into(),
        plural: "dataplanes".into(),
    }
}

/// Keeps every pod's Dataplane in line until `stop` completes, with the default config.
pub async fn run(client: Client, stop: impl Future<Output = ()>) {
    run_with(client, PodControllerConfig::default(), stop).await
}

/// Keeps every pod's Dataplane in line until `stop` completes. Watch and write errors are logged
/// and retried with backoff; it returns only when `stop` does.
pub async fn run_with(client: Client, config: PodControllerConfig, stop: impl Future<Output = ()>) {
    let dp_resource = dataplane_resource();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (services, service_writer) = reflector::store::<Service>();
    let (namespaces, namespace_writer) = reflector::store::<Namespace>();
    let dp_writer = reflector::store::Writer::<DynamicObject>::new(dp_resource.clone());
    let dataplanes = dp_writer.as_reader();

    let pod_events = watch(Api::<Pod>::all(client.clone()), pod_writer, "pods", |event| {
        by_object(event, |pod: &Pod| Trigger::Pod(key_of(pod)))
    });
    let service_events =
        watch(Api::<Service>::all(client.clone()), service_writer, "services", |event| {
            by_object(event, |svc: &Service| {
                Trigger::Namespace(svc.namespace().unwrap_or_default())
            })
        });
    let namespace_events =
        watch(Api::<Namespace>::all(client.clone()), namespace_writer, "namespaces", |event| {
            by_object(event, |ns: &Namespace| Trigger::Namespace(ns.name_any()))
        });
    let dp_events = watch(
        Api::<DynamicObject>::all_with(client.clone(), &dp_resource),
        dp_writer,
        "dataplanes",
        |event| by_object(event, |dp: &DynamicObject| Trigger::Dataplane(key_of(dp))),
    );
    let mut triggers =
        stream::select_all([pod_events, service_events, namespace_events, dp_events]);

    let reconciler = Arc::new(Reconciler {
        client,
        config: config.clone(),
        dp_resource,
        pods: pods.clone(),
        services: services.clone(),
        namespaces: namespaces.clone(),
        dataplanes: dataplanes.clone(),
        reported: Default::default(),
    });
    let mut ready = {
        let (pods, services, namespaces, dataplanes) =
            (pods.clone(), services.clone(), namespaces.clone(), dataplanes.clone());
        async move {
            let _ = futures::join!(
                pods.wait_until_ready(),
                services.wait_until_ready(),
                namespaces.wait_until_ready(),
                dataplanes.wait_until_ready(),
            );
        }
        .boxed()
        .fuse()
    };
    let mut is_ready = false;
    let mut queue = WorkQueue::default();
    let mut running: FuturesUnordered<BoxFuture<'static, (Key, Result<(), ReconcileError>)>> =
        FuturesUnordered::new();
    let mut retries: FuturesUnordered<BoxFuture<'static, Key>> = FuturesUnordered::new();
    let mut failures: HashMap<Key, u32> = HashMap::new();

    let stop = stop.fuse();
    futures::pin_mut!(stop);
    info!("pod controller started");
    loop {
        while is_ready && running.len() < config.concurrency.max(1) {
            let Some(key) = queue.next_to_run() else { break };
            let r = reconciler.clone();
            running.push(
                async move {
                    let result = r.reconcile(&key).await;
                    (key, result)
                }
                .boxed(),
            );
        }
        tokio::select! {
            _ = &mut stop => break,
            _ = &mut ready, if !is_ready => {
                is_ready = true;
                info!(pods = pods.len(), dataplanes = dataplanes.len(), "pod controller synced; reconciling every pod");
                queue.push_all(all_keys(&pods, &dataplanes));
            }
            Some(trigger) = triggers.next() => {
                // Before the stores are full, the first pass reconciles everything anyway.
                if is_ready {
                    queue.push_all(keys_of(trigger, &pods, &dataplanes));
                }
            }
            Some((key, result)) = running.next() => {
                queue.done(&key);
                match result {
                    Ok(()) => { failures.remove(&key); }
                    Err(e) => {
                        let n = failures.entry(key.clone()).or_insert(0);
                        let wait = backoff(&config, *n);
                        *n = n.saturating_add(1);
                        warn!(namespace = %key.0, pod = %key.1, retry_in = ?wait, error = %DisplayChain(&e), "reconciling the pod's Dataplane failed");
                        retries.push(tokio::time::sleep(wait).map(move |_| key).boxed());
                    }
                }
            }
            Some(key) = retries.next() => queue.push(key),
        }
    }
    info!("pod controller stopped");
}

fn backoff(config: &PodControllerConfig, failures: u32) -> Duration {
    config.retry_min.saturating_mul(2u32.saturating_pow(failures.min(16))).min(config.retry_max)
}

/// A pod (and its Dataplane): namespace and name.
pub(super) type Key = (String, String);

fn key_of<K: Resource>(object: &K) -> Key {
    (
        object.meta().namespace.clone().unwrap_or_default(),
        object.meta().name.clone().unwrap_or_default(),
    )
}

/// What a watch event may have changed.
#[derive(Debug)]
enum Trigger {
    /// This pod.
    Pod(Key),
    /// Every pod of this namespace (a Service or the namespace changed).
    Namespace(String),
    /// The pod of this Dataplane's name, and the Dataplane itself (its owner may be gone).
    Dataplane(Key),
    /// Everything: a watch listed again, and objects deleted meanwhile left without an event.
    All,
}

fn by_object<K>(event: watcher::Event<K>, trigger: impl Fn(&K) -> Trigger) -> Option<Trigger> {
    match event {
        watcher::Event::Apply(o) | watcher::Event::Delete(o) | watcher::Event::InitApply(o) => {
            Some(trigger(&o))
        }
        watcher::Event::InitDone => Some(Trigger::All),
        watcher::Event::Init => None,
    }
}

/// One watch, reflected into `writer`'s store, as triggers. Errors are logged; the watcher
/// retries with backoff.
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    what: &'static str,
    to_trigger: fn(watcher::Event<K>) -> Option<Trigger>,
) -> BoxStream<'static, Trigger>
where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        // Nobody reads who wrote which field; the stores keep a copy of every object.
        .modify(|o: &mut K| o.meta_mut().managed_fields = None)
        .reflect(writer)
        .filter_map(move |event| async move {
            match event {
                Ok(event) => to_trigger(event),
                Err(e) => {
                    let hint = match what {
                        "dataplanes" => " (are Kuma's CRDs installed? kumactl install crds | kubectl apply -f -)",
                        _ => "",
                    };
                    warn!(watch = what, error = %DisplayChain(&e), "watch failed; retrying{hint}");
                    None
                }
            }
        })
        .boxed()
}

fn all_keys(pods: &Store<Pod>, dataplanes: &Store<DynamicObject>) -> Vec<Key> {
    let mut keys: Vec<Key> = pods.state().iter().map(|p| key_of(p.as_ref())).collect();
    keys.extend(dataplanes.state().iter().map(|d| key_of(d.as_ref())));
    keys
}

fn keys_of(trigger: Trigger, pods: &Store<Pod>, dataplanes: &Store<DynamicObject>) -> Vec<Key> {
    match trigger {
        Trigger::Pod(key) | Trigger::Dataplane(key) => vec![key],
        Trigger::Namespace(ns) => pods
            .state()
            .iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .map(|p| key_of(p.as_ref()))
            .collect(),
        Trigger::All => all_keys(pods, dataplanes),
    }
}
