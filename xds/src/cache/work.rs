//! Generating configs: each job is one dataplane against one epoch's context, run without the
//! cache's lock and spread over the machine's cores. Identity certificates are issued here too,
//! outside any lock, so issuing one never holds up another dataplane.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kuma_ca::{rotation_time, IssuedCert, MeshCa, DEFAULT_DP_CERT_VALIDITY};
use kuma_model::{parse_duration, DataplaneSpec, MtlsInsight, ResourceType};
use tracing::warn;

use super::ConfigHook;
use crate::generator::{self, MeshContext, Proxy};
use crate::node_id::NodeId;
use crate::snapshot::{Inputs, Snapshot};

/// Below this many jobs per core, spreading them costs more than it saves.
const MIN_JOBS_PER_WORKER: usize = 8;

/// One dataplane's config to (maybe) generate.
pub(super) struct Job {
    pub node: NodeId,
    /// The epoch of `context`: a result never replaces a config of a later epoch.
    pub epoch: u64,
    /// `None`: the Dataplane or its mesh is gone.
    pub dataplane: Option<(Arc<DataplaneSpec>, Arc<MeshContext>)>,
    /// `Some` when only policies changed: the config is generated again only if the policies
    /// chosen for it differ from `chosen`, or one of them is among `changed`.
    pub unless: Option<PolicyCheck>,
}

pub(super) struct PolicyCheck {
    pub chosen: Vec<(ResourceType, String)>,
    pub changed: Arc<BTreeSet<(ResourceType, String)>>,
}

pub(super) enum Outcome {
    Generated(Arc<Snapshot>, Inputs),
    /// The policy check showed nothing of this config can have changed.
    Unaffected,
    Gone,
}

pub(super) struct Done {
    pub node: NodeId,
    pub epoch: u64,
    pub outcome: Outcome,
}

/// Runs `jobs` on up to every core (the calling thread included); results in no set order.
pub(super) fn run_all(
    jobs: Vec<Job>,
    identities: &Identities,
    hook: Option<&ConfigHook>,
) -> Vec<Done> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cores.min(jobs.len() / MIN_JOBS_PER_WORKER).max(1);
    let run = |job: &Job| Done {
        node: job.node.clone(),
        epoch: job.epoch,
        outcome: run_one(job, identities, hook),
    };
    if workers == 1 {
        return jobs.iter().map(run).collect();
    }
    let next = AtomicUsize::new(0);
    let drain = || {
        let mut done = Vec::new();
        while let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
            done.push(run(job));
        }
        done
    };
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..workers).map(|_| scope.spawn(drain)).collect();
        let mut done = drain();
        for helper in helpers {
            done.extend(helper.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        done
    })
}

fn run_one(job: &Job, identities: &Identities, hook: Option<&ConfigHook>) -> Outcome {
    let Some((spec, context)) = &job.dataplane else { return Outcome::Gone };
    if let Some(check) = &job.unless {
        let chosen = generator::policies_for(spec, context);
        if chosen == check.chosen && !chosen.iter().any(|p| check.changed.contains(p)) {
            return Outcome::Unaffected;
        }
    }
    let identity = identities.for_dataplane(&job.node, spec, context);
    let proxy =
        Proxy { mesh: &job.node.mesh, name: &job.node.name, spec, identity: identity.as_ref() };
    let mut resources = generator::generate(&proxy, context);
    if let Some(hook) = hook {
        hook(&proxy, &mut resources);
    }
    let inputs = resources.inputs();
    Outcome::Generated(resources.into_snapshot(), inputs)
}

/// A dataplane's identity certificate and what it was issued for: it is reused (so the config's
/// version stays put) until the services, the CA or the lifetime change, or it is due for
/// rotation.
struct Identity {
    services: Vec<String>,
    ca_cert: String,
    validity: Duration,
    issued_at: SystemTime,
    rotate_at: SystemTime,
    cert: IssuedCert,
    /// Certificates issued to this dataplane since it connected to this peer.
    regenerations: u64,
}

/// The identity certificates of the dataplanes connected to this peer.
#[derive(Default)]
pub(super) struct Identities(Mutex<HashMap<NodeId, Identity>>);

impl Identities {
    fn lock(&self) -> MutexGuard<'_, HashMap<NodeId, Identity>> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn forget(&self, node: &NodeId) {
        self.lock().remove(node);
    }

    /// Dataplanes whose certificate is due for rotation.
    pub fn due(&self) -> Vec<NodeId> {
        let now = SystemTime::now();
        self.lock().iter().filter(|(_, i)| i.rotate_at <= now).map(|(n, _)| n.clone()).collect()
    }

    /// The certificate `node` holds, for its DataplaneInsight; `None` without mTLS.
    pub fn status(&self, node: &NodeId) -> Option<MtlsInsight> {
        let identities = self.lock();
        let identity = identities.get(node)?;
        Some(MtlsInsight {
            certificate_expiration_time: Some(DateTime::<Utc>::from(
                identity.issued_at + identity.validity,
            )),
            last_certificate_regeneration: Some(DateTime::<Utc>::from(identity.issued_at)),
            certificate_regenerations: identity.regenerations,
        })
    }

    /// The identity certificate of `node`, reusing the one it has while it still fits; `None`
    /// when mTLS is off or no CA is available. A new one is issued without holding the lock.
    fn for_dataplane(
        &self,
        node: &NodeId,
        dataplane: &DataplaneSpec,
        mesh: &MeshContext,
    ) -> Option<IssuedCert> {
        let Some(ca) = mesh.ca().filter(|_| mesh.mtls()) else {
            self.forget(node);
            return None;
        };
        let mut services: Vec<String> =
            dataplane.tag_sets().iter().filter_map(|t| t.service()).map(str::to_string).collect();
        services.sort();
        services.dedup();
        let validity = mesh
            .spec
            .dp_cert_expiration()
            .and_then(|e| parse_duration(e).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(DEFAULT_DP_CERT_VALIDITY);
        let now = SystemTime::now();
        if let Some(current) = self.lock().get(node) {
            if current.services == services
                && current.ca_cert == ca.cert_pem()
                && current.validity == validity
                && now < current.rotate_at
            {
                return Some(current.cert.clone());
            }
        }
        let cert = issue(ca, &node.mesh, &services, validity)?;
        let mut identities = self.lock();
        let regenerations = identities.get(node).map_or(0, |i| i.regenerations) + 1;
        identities.insert(
            node.clone(),
            Identity {
                services,
                ca_cert: ca.cert_pem().to_string(),
                validity,
                issued_at: now,
                rotate_at: rotation_time(now, validity),
                cert: cert.clone(),
                regenerations,
            },
        );
        Some(cert)
    }
}

fn issue(ca: &MeshCa, mesh: &str, services: &[String], validity: Duration) -> Option<IssuedCert> {
    let services: Vec<&str> = services.iter().map(String::as_str).collect();
    match ca.issue_identity(mesh, &services, validity) {
        Ok(cert) => Some(cert),
        Err(error) => {
            warn!(%mesh, %error, "could not issue an identity certificate");
            None
        }
    }
}
