//! Generating configs: each job is one dataplane against one epoch's context, run without the
//! cache's lock and spread over the machine's cores. Identity certificates are issued here too,
//! outside any lock, so issuing one never holds up another dataplane.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use kuma_ca::{rotation_time, IssuedCert, MeshCa, DEFAULT_DP_CERT_VALIDITY};
use kuma_model::{parse_duration, DataplaneSpec, MtlsInsight, ResourceType};
use tracing::warn;

use super::ConfigHook;
use crate::generator::{self, MeshContext, Proxy};
use crate::node_id::NodeId;
use crate::snapshot::{Inputs, Snapshot};
use crate::xds_type::XdsType;

/// Below this many jobs per core, spreading them costs more than it saves.
const MIN_JOBS_PER_WORKER: usize = 8;

/// One dataplane's config to (maybe) generate.
pub(super) struct Job {
    pub node: NodeId,
    /// The epoch of `context`: a result never replaces a config of a later epoch.
    pub epoch: u64,
    /// `None`: the Dataplane or its mesh is gone.
    pub dataplane: Option<(Arc<DataplaneSpec>, Arc<MeshContext>)>,
    pub kind: JobKind,
    /// When this peer saw the store change the job is for; `None` when it is for none.
    pub changed_at: Option<std::time::Instant>,
}

pub(super) enum JobKind {
    /// Generate the whole config.
    Full,
    /// Only policies changed: the config is generated again only if the policies chosen for it
    /// differ from `chosen`, or one of them is among `changed`.
    UnlessUnchosen {
        chosen: Vec<(ResourceType, String)>,
        changed: Arc<BTreeSet<(ResourceType, String)>>,
    },
    /// Only the instances of `services` changed, and the config holds their shared assignments:
    /// it is `previous` with those assignments swapped, nothing else to generate.
    SwapAssignments { previous: Arc<Snapshot>, inputs: Inputs, services: Vec<String> },
}

pub(super) enum Outcome {
    Generated(Arc<Snapshot>, Inputs),
    Swapped(Arc<Snapshot>, Inputs),
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
    identities: &Arc<Identities>,
    hook: Option<&ConfigHook>,
) -> Vec<Done> {
    let helpers = helpers();
    let wanted = (jobs.len() / MIN_JOBS_PER_WORKER).saturating_sub(1).min(helpers.count);
    let batch = Arc::new(Batch {
        jobs,
        next: AtomicUsize::new(0),
        identities: identities.clone(),
        hook: hook.cloned(),
        helped: Mutex::new(Helped::default()),
        finished: Condvar::new(),
    });
    let mut asked = 0;
    for _ in 0..wanted {
        let batch = batch.clone();
        let sent = helpers
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Box::new(move || batch.help()));
        if sent.is_ok() {
            asked += 1;
        }
    }
    let mut done = batch.drain();
    let mut helped = batch.helped.lock().unwrap_or_else(|p| p.into_inner());
    while helped.finished < asked {
        helped = batch.finished.wait(helped).unwrap_or_else(|p| p.into_inner());
    }
    if let Some(panic) = helped.panic.take() {
        std::panic::resume_unwind(panic);
    }
    done.append(&mut helped.done);
    done
}

/// One batch of jobs, drained by the caller and the helpers it asked.
struct Batch {
    jobs: Vec<Job>,
    next: AtomicUsize,
    identities: Arc<Identities>,
    hook: Option<ConfigHook>,
    helped: Mutex<Helped>,
    finished: Condvar,
}

#[derive(Default)]
struct Helped {
    done: Vec<Done>,
    finished: usize,
    panic: Option<Box<dyn std::any::Any + Send>>,
}

impl Batch {
    fn drain(&self) -> Vec<Done> {
        let mut done = Vec::new();
        while let Some(job) = self.jobs.get(self.next.fetch_add(1, Ordering::Relaxed)) {
            let outcome = run_one(job, &self.identities, self.hook.as_ref());
            done.push(Done { node: job.node.clone(), epoch: job.epoch, outcome });
        }
        done
    }

    fn help(&self) {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.drain()));
        let mut helped = self.helped.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(mut done) => helped.done.append(&mut done),
            Err(panic) => helped.panic = Some(panic),
        }
        helped.finished += 1;
        self.finished.notify_all();
    }
}

type Task = Box<dyn FnOnce() + Send>;

/// Threads that help with big batches: one per core beyond the caller's, started once and
/// kept (a thread per batch would leave an allocator heap behind every time).
struct Helpers {
    tasks: Mutex<mpsc::Sender<Task>>,
    count: usize,
}

fn helpers() -> &'static Helpers {
    static HELPERS: OnceLock<Helpers> = OnceLock::new();
    HELPERS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let (tx, rx) = mpsc::channel::<Task>();
        let rx = Arc::new(Mutex::new(rx));
        let mut count = 0;
        for i in 1..cores {
            let rx = rx.clone();
            let spawned =
                std::thread::Builder::new().name(format!("xds-generate-{i}")).spawn(move || loop {
                    let task = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    match task {
                        Ok(task) => task(),
                        Err(_) => return,
                    }
                });
            if spawned.is_ok() {
                count += 1;
            }
        }
        Helpers { tasks: Mutex::new(tx), count }
    })
}

fn run_one(job: &Job, identities: &Identities, hook: Option<&ConfigHook>) -> Outcome {
    let Some((spec, context)) = &job.dataplane else { return Outcome::Gone };
    match &job.kind {
        JobKind::Full => {}
        JobKind::UnlessUnchosen { chosen: before, changed } => {
            let chosen = generator::policies_for(spec, context);
            if chosen == *before && !chosen.iter().any(|p| changed.contains(p)) {
                return Outcome::Unaffected;
            }
        }
        JobKind::SwapAssignments { previous, inputs, services } => {
            let assignments = services.iter().map(|service| {
                (crate::names::service_cluster(service), context.assignment(service))
            });
            let snapshot = previous.with_replaced(XdsType::Endpoint, assignments);
            return Outcome::Swapped(Snapshot::made_for(snapshot, job.changed_at), inputs.clone());
        }
    }
    let started = std::time::Instant::now();
    let identity = identities.for_dataplane(&job.node, spec, context);
    let proxy =
        Proxy { mesh: &job.node.mesh, name: &job.node.name, spec, identity: identity.as_ref() };
    let mut resources = generator::generate(&proxy, context);
    if let Some(hook) = hook {
        hook(&proxy, &mut resources);
    }
    let inputs = resources.inputs();
    let snapshot = Snapshot::made_for(resources.into_snapshot(), job.changed_at);
    crate::metrics::XDS.generated(started);
    Outcome::Generated(snapshot, inputs)
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
