//! Who among the kuma-cp replicas does the leader-only work, and which replicas are alive, both
//! with `coordination.k8s.io` Leases in the system namespace.
//!
//! - [`elect`]: the replicas compete for one Lease (`kuma-cp-leader`). Its holder renews it every
//!   `renew_every`; another replica takes it over once it has seen no renewal for
//!   `lease_duration` by its own clock (so clocks need not agree), and a holder that cannot renew
//!   for that long stops leading by itself. A replica that stops hands the Lease back at once.
//! - [`heartbeat`]: each replica renews its own Lease (`kuma-cp-instance-<id>`, labelled
//!   [`INSTANCE_LABEL`]) with its xDS address, so the others know which replicas are alive and
//!   where dataplanes may connect ([`live_instances`]).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use tokio::sync::watch;
use tracing::{info, warn};

/// The Lease the replicas compete for.
pub const LEADER_LEASE: &str = "kuma-cp-leader";
/// The label of every replica's own Lease.
pub const INSTANCE_LABEL: &str = "kuma.io/control-plane-instance";
/// The annotation on a replica's Lease with the xDS address it serves (`host:port`).
pub const XDS_ADDRESS: &str = "kuma.io/xds-address";

/// How long a Lease lasts without renewal, and how often its holder renews it.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_every: Duration,
}

impl Default for Timing {
    /// A dead leader's work moves within about 6 s; a holder renews three times per lease.
    fn default() -> Timing {
        Timing { lease_duration: Duration::from_secs(6), renew_every: Duration::from_secs(2) }
    }
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn lease(name: &str, identity: &str, timing: Timing, transitions: i32) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some(name.to_string()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec {
            holder_identity: Some(identity.to_string()),
            lease_duration_seconds: Some(timing.lease_duration.as_secs().max(1) as i32),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref()?.holder_identity.as_deref().filter(|h| !h.is_empty())
}

/// What this replica last saw of the Lease: when its renewal last changed, by our own clock.
#[derive(Debug)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    at: Instant,
}

/// Competes for the leader Lease until `stop` completes; the receiver says whether this replica
/// leads right now. On `stop`, a holder hands the Lease back so another replica takes over at once.
pub fn elect(
    client: Client,
    namespace: &str,
    identity: &str,
    timing: Timing,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> watch::Receiver<bool> {
    let (leading_tx, leading) = watch::channel(false);
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let identity = identity.to_string();
    tokio::spawn(async move {
        tokio::pin!(stop);
        let mut observed: Option<Observed> = None;
        let mut last_renewed: Option<Instant> = None;
        loop {
            let result = try_lead(&api, &identity, timing, &mut observed).await;
            let leads = match result {
                Ok(leads) => {
                    last_renewed = leads.then(Instant::now);
                    leads
                }
                Err(e) => {
                    warn!(error = %e, "could not read or renew the leader Lease");
                    // Keep leading only while the Lease we hold cannot have expired.
                    last_renewed.is_some_and(|at| at.elapsed() < timing.lease_duration)
                }
            };
            if *leading_tx.borrow() != leads {
                match leads {
                    true => {
                        info!(identity = %identity, "this replica now leads (holds the Lease {LEADER_LEASE})")
                    }
                    false => info!(identity = %identity, "this replica no longer leads"),
                }
                leading_tx.send_replace(leads);
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(timing.renew_every) => {}
            }
        }
        if *leading_tx.borrow() {
            leading_tx.send_replace(false);
            release(&api, &identity).await;
        }
    });
    leading
}

/// One round: renew the Lease if this replica holds it, take it if it is free or expired.
/// Returns whether this replica holds it now.
async fn try_lead(
    api: &Api<Lease>,
    identity: &str,
    timing: Timing,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let Some(mut current) = api.get_opt(LEADER_LEASE).await? else {
        let fresh = lease(LEADER_LEASE, identity, timing, 0);
        return match api.create(&PostParams::default(), &fresh).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let held_by = holder(&current).map(str::to_string);
    let spec = current.spec.get_or_insert_with(LeaseSpec::default);
    let renew_time = spec.renew_time.clone();
    let changed =
        observed.as_ref().is_none_or(|o| o.holder != held_by || o.renew_time != renew_time);
    if changed {
        *observed = Some(Observed { holder: held_by.clone(), renew_time, at: Instant::now() });
    }
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(1) as u64))
        .unwrap_or(timing.lease_duration);
    let mine = held_by.as_deref() == Some(identity);
    let expired =
        held_by.is_none() || observed.as_ref().is_some_and(|o| o.at.elapsed() >= duration);
    if !mine && !expired {
        return Ok(false);
    }
    if !mine {
        spec.holder_identity = Some(identity.to_string());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.lease_duration_seconds = Some(timing.lease_duration.as_secs().max(1) as i32);
    }
    spec.renew_time = Some(now());
    // The replace carries the resourceVersion we read: of two replicas taking an expired
    // Lease at once, one wins and the other gets 409.
    match api.replace(LEADER_LEASE, &PostParams::default(), &current).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Hands the Lease back (no holder), so the next replica need not wait for it to expire.
async fn release(api: &Api<Lease>, identity: &str) {
    let Ok(Some(mut current)) = api.get_opt(LEADER_LEASE).await else { return };
    if holder(&current) != Some(identity) {
        return;
    }
    if let Some(spec) = current.spec.as_mut() {
        spec.holder_identity = None;
    }
    match api.replace(LEADER_LEASE, &PostParams::default(), &current).await {
        Ok(_) => info!(identity = %identity, "handed the leader Lease back"),
        Err(e) => warn!(error = %e, "could not hand the leader Lease back; it expires by itself"),
    }
}

/// A Kubernetes object name for a replica's own Lease: lowercase letters, digits and `-`.
pub fn instance_lease_name(identity: &str) -> String {
    let cleaned: String = identity
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    let mut name = format!("kuma-cp-instance-{trimmed}");
    name.truncate(253);
    name
}

/// Renews this replica's own Lease until `stop` completes, then deletes it.
pub fn heartbeat(
    client: Client,
    namespace: &str,
    identity: &str,
    xds_address: &str,
    timing: Timing,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let name = instance_lease_name(identity);
    let mut mine = lease(&name, identity, timing, 0);
    mine.metadata.labels = Some(BTreeMap::from([(INSTANCE_LABEL.to_string(), "true".to_string())]));
    mine.metadata.annotations =
        Some(BTreeMap::from([(XDS_ADDRESS.to_string(), xds_address.to_string())]));
    tokio::spawn(async move {
        tokio::pin!(stop);
        loop {
            if let Some(spec) = mine.spec.as_mut() {
                spec.renew_time = Some(now());
            }
            let params = kube::api::PatchParams::apply("kuma-cp").force();
            let mut applied = mine.clone();
            applied.metadata.resource_version = None;
            let patch = kube::api::Patch::Apply(&applied);
            if let Err(e) = api.patch(&name, &params, &patch).await {
                warn!(error = %e, "could not renew this replica's Lease");
            }
            tokio::select! {
                _ = &mut stop => break,
                _ = tokio::time::sleep(timing.renew_every) => {}
            }
        }
        if let Err(e) = api.delete(&name, &Default::default()).await {
            warn!(error = %e, "could not delete this replica's Lease; it expires by itself");
        }
    });
}

/// A replica that renewed its own Lease recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub identity: String,
    /// Where dataplanes reach its xDS server (`host:port`), when it said.
    pub xds_address: Option<String>,
}

/// The replicas whose Leases were renewed within their duration (with `slack` for clocks that
/// disagree), sorted by identity.
pub async fn live_instances(
    client: Client,
    namespace: &str,
    slack: Duration,
) -> Result<Vec<Instance>, kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    let leases = api.list(&ListParams::default().labels(&format!("{INSTANCE_LABEL}=true"))).await?;
    Ok(live(&leases.items, slack))
}

/// Of these replica Leases, those renewed within their duration (plus `slack`), sorted by
/// identity.
pub fn live<'a>(leases: impl IntoIterator<Item = &'a Lease>, slack: Duration) -> Vec<Instance> {
    let now = Timestamp::now();
    let mut live: Vec<Instance> = leases
        .into_iter()
        .filter_map(|lease| {
            let spec = lease.spec.as_ref()?;
            let renewed = spec.renew_time.as_ref()?.0;
            let duration = Duration::from_secs(spec.lease_duration_seconds?.max(1) as u64) + slack;
            let age = now.duration_since(renewed);
            if age.as_secs_f64() > duration.as_secs_f64() {
                return None;
            }
            Some(Instance {
                identity: spec.holder_identity.clone()?,
                xds_address: lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(XDS_ADDRESS))
                    .cloned(),
            })
        })
        .collect();
    live.sort_by(|a, b| a.identity.cmp(&b.identity));
    live
}

/// Follows the replicas' Leases with a watch (a replica that starts is known within
/// milliseconds) and calls `update` with the live ones on every change and every `tick` (a
/// replica that stops renewing drops out once its Lease expires), until `stop` completes.
pub async fn follow_instances(
    client: Client,
    namespace: &str,
    slack: Duration,
    tick: Duration,
    update: impl Fn(Vec<Instance>),
    stop: impl std::future::Future<Output = ()>,
) {
    use futures::StreamExt;
    use kube::runtime::watcher::{self, Event};
    use kube::runtime::WatchStreamExt;

    let api: Api<Lease> = Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(&format!("{INSTANCE_LABEL}=true"));
    let mut events = watcher::watcher(api, config).default_backoff().boxed();
    let mut leases: BTreeMap<String, Lease> = BTreeMap::new();
    let mut listing: BTreeMap<String, Lease> = BTreeMap::new();
    let mut ticks = tokio::time::interval(tick);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = ticks.tick() => {}
            event = events.next() => match event {
                None => return,
                Some(Ok(Event::Init)) => listing.clear(),
                Some(Ok(Event::InitApply(lease))) => {
                    listing.insert(lease.metadata.name.clone().unwrap_or_default(), lease);
                }
                Some(Ok(Event::InitDone)) => leases = std::mem::take(&mut listing),
                Some(Ok(Event::Apply(lease))) => {
                    leases.insert(lease.metadata.name.clone().unwrap_or_default(), lease);
                }
                Some(Ok(Event::Delete(lease))) => {
                    leases.remove(lease.metadata.name.as_deref().unwrap_or_default());
                }
                Some(Err(e)) => warn!(error = %e, "watching the replicas' Leases failed; listing again"),
            },
        }
        update(live(leases.values(), slack));
    }
}
