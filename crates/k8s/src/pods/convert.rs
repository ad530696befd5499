//! The pure half of Pod -> Dataplane: what Dataplane a Pod becomes, given the Services of its
//! namespace and the namespace itself. No I/O; the controller feeds it from its watches.
//!
//! The rules (Kuma's, as the seeds describe them):
//! - A pod is in the mesh when the injector marked it (`kuma.io/sidecar-injected: "true"`) or
//!   injection is enabled for it (on the pod or its namespace). It gets a Dataplane only once it
//!   has an IP and while it runs (not after it succeeded or failed).
//! - One inbound per TCP port of every Service of the namespace whose (non-empty) selector matches
//!   the pod's labels, on the resolved container port, tagged
//!   `kuma.io/service: <service>_<namespace>_svc_<port>`, the protocol and the pod's labels.
//!   Services are taken by name, ports in order; the first inbound on a port wins.
//! - A pod no Service selects gets one inbound tagged `kuma.io/service: <pod>_<namespace>_svc` on
//!   [`SERVICELESS_PORT`]: our validation (like Kuma's) wants at least one inbound with a port in
//!   1-65535, so port 0 cannot say "no port"; Kuma uses the same reserved port for this.
//! - `prometheus.metrics.kuma.io/port` and `/path` on the pod become the Dataplane's `metrics`
//!   override (a `prometheus` backend; what they leave out comes from the mesh's backend). A bad
//!   value leaves the override out and is carried in [`PodDataplane::ignored`] to be reported.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kuma_model::{
    DataplaneSpec, Inbound, Networking, Outbound, ResourceInput, ResourceKey, ResourceType, Spec,
    Tags, ValidationContext, ValidationError, SERVICE_TAG,
};
use serde_json::{json, Map, Value};

use crate::annotations::{self, BadAnnotation, Meta, MESH, SERVICE_PROTOCOL_SUFFIX};

/// The inbound port of a pod that no Service selects: the last port IANA registers (49151),
/// reserved, so no workload is expected to listen on it.
pub const SERVICELESS_PORT: u32 = 49151;
/// The API version of Kuma's CRDs.
pub const KUMA_API_VERSION: &str = "kuma.io/v1alpha1";
/// Tag and label: the Kubernetes namespace of the pod.
pub const NAMESPACE_TAG: &str = "k8s.kuma.io/namespace";
/// Tag: the Service an inbound comes from.
pub const SERVICE_NAME_TAG: &str = "k8s.kuma.io/service-name";
/// Tag: the Service port an inbound comes from.
pub const SERVICE_PORT_TAG: &str = "k8s.kuma.io/service-port";
/// Tag: the protocol of an inbound.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// Protocols a Service may name; anything else is treated as `tcp`.
const KNOWN_PROTOCOLS: &[&str] = &["tcp", "http", "http2", "grpc"];

/// The Dataplane a pod becomes, with what its Kubernetes object needs beside the spec.
#[derive(Clone, Debug, PartialEq)]
pub struct PodDataplane {
    /// The object's name: the pod's.
    pub name: String,
    /// The object's namespace: the pod's.
    pub namespace: String,
    pub mesh: String,
    /// The object's labels: `kuma.io/mesh` and `k8s.kuma.io/namespace`.
    pub labels: BTreeMap<String, String>,
    /// The pod's uid, for the owner reference; `None` for a pod never stored (tests).
    pub pod_uid: Option<String>,
    pub spec: DataplaneSpec,
    /// Pod annotations left out of the spec because their values are bad (the pod still gets
    /// its Dataplane); the controller reports them on the pod.
    pub ignored: Vec<BadAnnotation>,
}

/// Why a pod in the mesh has no Dataplane: what it would become breaks Kuma's rules (a mesh name
/// with a dot, say). Retrying does not help; the pod or its namespace has to change.
#[derive(Debug, thiserror::Error)]
#[error("pod {namespace}/{pod} cannot become a Dataplane; fix its labels, annotations or Services")]
pub struct ConvertError {
    pub namespace: String,
    pub pod: String,
    #[source]
    pub invalid: ValidationError,
}

impl PodDataplane {
    /// The Dataplane's name in Kuma's API: `<pod>.<namespace>`.
    pub fn kuma_name(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }

    /// The owner reference to the pod (Kubernetes deletes the Dataplane with it, where a garbage
    /// collector runs).
    pub fn owner_references(&self) -> Value {
        match &self.pod_uid {
            Some(uid) => json!([{
                "apiVersion": "v1",
                "kind": "Pod",
                "name": self.name,
                "uid": uid,
                "controller": true,
                "blockOwnerDeletion": true,
            }]),
            None => json!([]),
        }
    }

    /// The Kubernetes object: Kuma's CRD shape, `mesh` beside `spec`, `spec` the model's JSON.
    pub fn to_object(&self) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), self.name.clone().into());
        metadata.insert("namespace".into(), self.namespace.clone().into());
        metadata.insert("labels".into(), json!(self.labels));
        if self.pod_uid.is_some() {
            metadata.insert("ownerReferences".into(), self.owner_references());
        }
        json!({
            "apiVersion": KUMA_API_VERSION,
            "kind": "Dataplane",
            "metadata": metadata,
            "mesh": self.mesh,
            "spec": Spec::Dataplane(self.spec.clone()).to_json(),
        })
    }
}

/// Whether a pod belongs in the mesh: the injector marked it, or injection is on for it.
pub fn in_mesh(pod: &Pod, namespace: &Namespace) -> bool {
    let pod_meta = Meta::of(&pod.metadata);
    annotations::already_injected(pod_meta)
        || annotations::injection_enabled(pod_meta, Meta::of(&namespace.metadata))
}

/// The pod's IP while it can serve: `None` before it has one and once it succeeded or failed.
fn serving_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref().map(str::trim).filter(|ip| !ip.is_empty())
}

/// The Dataplane `pod` becomes, `Ok(None)` when it gets none (not in the mesh, no IP yet, done).
/// `services` may hold Services of other namespaces: only those of the pod's are looked at.
pub fn convert<'a>(
    pod: &Pod,
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &Namespace,
) -> Result<Option<PodDataplane>, ConvertError> {
    if !in_mesh(pod, namespace) {
        return Ok(None);
    }
    let Some(ip) = serving_ip(pod) else { return Ok(None) };
    let name = pod.metadata.name.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let mesh = annotations::mesh_of(Meta::of(&pod.metadata), Meta::of(&namespace.metadata));

    let mut in_namespace: Vec<&Service> = services
        .into_iter()
        .filter(|s| s.metadata.namespace.as_deref().unwrap_or_default() == ns)
        .collect();
    in_namespace.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let (services, others): (Vec<&Service>, Vec<&Service>) =
        in_namespace.into_iter().partition(|s| selects(s, pod));

    let pod_tags = pod_label_tags(pod, &ns);
    let mut inbound: Vec<Inbound> = Vec::new();
    for service in services {
        let svc_name = service.metadata.name.as_deref().unwrap_or_default();
        let ports = service.spec.as_ref().and_then(|s| s.ports.as_deref()).unwrap_or_default();
        for port in ports.iter().filter(|p| is_tcp(p.protocol.as_deref())) {
            let Some(container_port) = container_port(pod, port) else { continue };
            if inbound.iter().any(|i| i.port == Some(container_port)) {
                continue;
            }
            let mut tags = pod_tags.clone();
            tags.insert(SERVICE_TAG, format!("{svc_name}_{ns}_svc_{}", port.port));
            tags.insert(PROTOCOL_TAG, protocol(service, port));
            tags.insert(SERVICE_NAME_TAG, svc_name);
            tags.insert(SERVICE_PORT_TAG, port.port.to_string());
            inbound.push(Inbound { port: Some(container_port), tags, ..Default::default() });
        }
    }
    if inbound.is_empty() {
        let mut tags = pod_tags;
        tags.insert(SERVICE_TAG, format!("{name}_{ns}_svc"));
        inbound.push(Inbound { port: Some(SERVICELESS_PORT), tags, ..Default::default() });
    }

    let outbound = outbounds(&others, &ns);
    let (metrics, ignored) = annotations::metrics_override(Meta::of(&pod.metadata));
    let spec = DataplaneSpec {
        networking: Networking {
            address: Some(ip.to_string()),
            inbound,
            outbound,
            ..Default::default()
        },
        metrics,
    };
    let labels =
        BTreeMap::from([(MESH.to_string(), mesh.clone()), (NAMESPACE_TAG.to_string(), ns.clone())]);
    let pod_uid = pod.metadata.uid.clone();
    let dataplane = PodDataplane { name, namespace: ns, mesh, labels, pod_uid, spec, ignored };
    let input = ResourceInput {
        key: ResourceKey::new(ResourceType::Dataplane, &dataplane.mesh, &dataplane.kuma_name()),
        spec: Spec::Dataplane(dataplane.spec.clone()),
    };
    match kuma_model::validate(&input, &ValidationContext::default()) {
        Ok(()) => Ok(Some(dataplane)),
        Err(invalid) => {
            Err(ConvertError { namespace: dataplane.namespace, pod: dataplane.name, invalid })
        }
    }
}

/// One outbound per TCP port of every other Service of the namespace that has a ClusterIP, on
/// that ClusterIP and port (Kuma's outbounds before transparent proxying): the pod reaches
/// `<svc>_<ns>_svc_<port>` by the address it already uses for the Service.
fn outbounds(services: &[&Service], namespace: &str) -> Vec<Outbound> {
    let mut outbound = Vec::new();
    for service in services {
        let Some(spec) = &service.spec else { continue };
        let Some(ip) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty() && *ip != "None")
        else {
            continue;
        };
        let name = service.metadata.name.as_deref().unwrap_or_default();
        for port in spec.ports.iter().flatten().filter(|p| is_tcp(p.protocol.as_deref())) {
            let Ok(number) = u32::try_from(port.port) else { continue };
            let mut tags = Tags::default();
            tags.insert(SERVICE_TAG, format!("{name}_{namespace}_svc_{}", port.port));
            outbound.push(Outbound {
                address: Some(ip.to_string()),
                port: Some(number),
                tags: Some(tags),
                ..Default::default()
            });
        }
    }
    outbound
}

/// Whether `service` selects `pod`: a non-empty selector that the pod's labels satisfy; never an
/// ExternalName service.
pub fn selects(service: &Service, pod: &Pod) -> bool {
    let Some(spec) = &service.spec else { return false };
    if spec.type_.as_deref() == Some("ExternalName") {
        return false;
    }
    let Some(selector) = spec.selector.as_ref().filter(|s| !s.is_empty()) else {
        return false;
    };
    let labels = pod.metadata.labels.as_ref();
    selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// Kubernetes defaults a port's protocol to TCP.
fn is_tcp(protocol: Option<&str>) -> bool {
    protocol.is_none_or(|p| p.eq_ignore_ascii_case("TCP"))
}

/// The pod's port a Service port sends to: a numeric targetPort, a named one looked up in the
/// pod's container ports, or the service port itself. `None` when a name matches no port.
fn container_port(pod: &Pod, port: &ServicePort) -> Option<u32> {
    let resolved = match &port.target_port {
        None => port.port,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(name)) => {
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .filter(|p| is_tcp(p.protocol.as_deref()))
                .find(|p| p.name.as_deref() == Some(name.as_str()))?
                .container_port
        }
    };
    u32::try_from(resolved).ok().filter(|p| (1..=65535).contains(p))
}

/// The port's protocol: a known `appProtocol`, else the Service's
/// `<port>.service.kuma.io/protocol` annotation, lowercased; `tcp` when neither names a known one.
fn protocol(service: &Service, port: &ServicePort) -> String {
    let known = |p: &str| {
        let p = p.trim().to_ascii_lowercase();
        KNOWN_PROTOCOLS.contains(&p.as_str()).then_some(p)
    };
    let annotation = format!("{}{SERVICE_PROTOCOL_SUFFIX}", port.port);
    port.app_protocol
        .as_deref()
        .and_then(known)
        .or_else(|| service.metadata.annotations.as_ref()?.get(&annotation).and_then(|p| known(p)))
        .unwrap_or_else(|| "tcp".into())
}

/// The pod's labels as tags (empty values and Kuma's own `*kuma.io/*` keys left out), plus its
/// namespace.
fn pod_label_tags(pod: &Pod, namespace: &str) -> Tags {
    let mut tags: Tags = pod
        .metadata
        .labels
        .iter()
        .flatten()
        .filter(|(k, v)| !v.is_empty() && !k.contains("kuma.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    tags.insert(NAMESPACE_TAG, namespace);
    tags
}
